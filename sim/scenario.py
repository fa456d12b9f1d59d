"""Scenarios: every parameter of a simulation, from a province preset or a TOML file.

A scenario is a nested set of sections (``population``, ``phones``, ``roles``, ``schedule``,
``places.<type>``, ``sim``, ``radio``, ``meta``). :data:`DEFAULTS` holds the national defaults (facts
from ``FACTS.md``); a preset (:func:`preset`) overlays a province's census figures; a TOML file
(:func:`load_scenario`) may start from a preset (``preset = "lang-son"``) and override any key.
Unknown keys and invalid values raise :class:`ValueError` naming the TOML key, e.g.
``scenario.toml: places.school.class_size: must be a positive integer, got -3``.

Units: times in minutes of the day (``schedule.*``, ``places.*.open``/``close``) or minutes of
duration (``dwell_min``), distances in metres, areas in m² per person (``density_m2``), the BLE step in
seconds (``sim.step_s``), RSSI in dBm.

Sources of the defaults (see ``../shared/FACTS.md``): age bands UN WPP 2020 (10-year, %), household
mean 3.5 (census 2019; Đắk Lắk 3.83), adults with a smartphone 73.5 % in March 2022 (53 % in 2017;
18–36 much higher than 37+), OS share Android 63 % / iOS 36 % (2020), class caps 35 (primary) / 45
(secondary), average primary class ~32, labour force ~74 % of 15+, agriculture ~33 % of employment.
"""
from __future__ import annotations

import copy
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from sim.scanning import radio_params

#: Place-type parameters (one table per type in ``places``). ``layout``: ``seated`` (grid of seats
#: ``spacing_m`` apart, fixed per member), ``tables`` (seats at tables of 4, a fresh seat per visit),
#: ``mobile`` (random waypoint inside the place), ``home`` (rooms; static sleeping spots at night).
#: ``size``: members per instance (class, office, ward, factory floor, bus seats, home: not used);
#: ``per_people``: one instance per this many residents (visit places); ``density_m2``: floor area
#: per person (m²); ``dwell_min``: mean visit length (min); ``visit_weekday``/``visit_weekend``:
#: probability per agent-day of a visit (for agents who may visit); ``open``/``close``: minutes of day.
_PLACES = {
    # home visits (issue 13): a household visits a neighbouring household (within ``visit_range``
    # households, i.e. the same hamlet) with probability visit_weekday/visit_weekend per day, in the
    # evening, all members free at that time together; calibrated so that the home matrix of Prem 2021
    # (which counts visitors at home, ~5 contacts a day) is met within its tolerance
    "home":       dict(layout="home", density_m2=14.0, room_size=2, room_gap_m=3.5, visit_weekday=0.45,
                       visit_weekend=0.6, dwell_min=75.0, open=1050, close=1260, visit_range=30),
    # two-pupil benches: desks 1.2 m apart (1.0 m gave every pupil ~12 classmates within 2 m all day,
    # twice Prem's school contacts for ages 5-14)
    # preschool/primary classes (ages <= primary_max_age) in staggered rows primary_spacing_m apart
    # (6 nearest classmates; the square grid gave 8.6 close contacts a day at ages 5-9 vs Prem's 6.0)
    "school":     dict(layout="seated", class_size=32, density_m2=1.6, spacing_m=1.2,
                       move_prob=0.05, primary_spacing_m=1.5, primary_max_age=10),
    "university": dict(layout="seated", class_size=60, density_m2=1.5, spacing_m=1.1,
                       move_prob=0.05),
    # work spacings calibrated to Prem 2021's work matrix (4.6-5.7 contacts a day at ages 30-59)
    "office":     dict(layout="seated", size=12, density_m2=6.0, spacing_m=1.4, move_prob=0.15,
                       visit_weekday=0.02, visit_weekend=0.0, dwell_min=30.0, per_people=800),
    # service workplaces; farm work teams (agriculture, ~1/3 of employment) use the same type with
    # ``farm_team`` workers each, working side by side
    "workplace":  dict(layout="seated", size=8, density_m2=8.0, spacing_m=1.5, move_prob=0.2, farm_team=6),
    "factory":    dict(layout="seated", size=80, density_m2=4.0, spacing_m=1.2, move_prob=0.05),
    "hospital":   dict(layout="seated", size=24, density_m2=6.0, spacing_m=2.0, move_prob=0.1,
                       visit_weekday=0.012, visit_weekend=0.008, dwell_min=60.0, per_people=4000,
                       patients_per_1000=3.0),
    "market":     dict(layout="mobile", size=40, density_m2=3.0, spacing_m=2.5, leg_s=90.0,
                       visit_weekday=0.3, visit_weekend=0.4, dwell_min=40.0, per_people=4000,
                       open=330, close=1080),
    "restaurant": dict(layout="tables", size=6, density_m2=2.0, spacing_m=0.8, table_gap_m=2.5,
                       visit_weekday=0.2, visit_weekend=0.25, dwell_min=45.0, per_people=250,
                       open=360, close=1320, young_adult_factor=2.2),
    # hotels and guest houses (nha nghi), one per ~1,300 residents; station halls: a district's bus
    # station (or airport) as halls of ~2,000 residents' travellers each, with their counter staff -- a
    # modelling unit so that a hall's crowding does not grow with --scale (sim.places: scale-free)
    "hotel":      dict(layout="mobile", size=10, density_m2=10.0, spacing_m=2.0, leg_s=300.0,
                       visit_weekday=0.002, visit_weekend=0.003, dwell_min=120.0, per_people=1300,
                       open=480, close=1320),
    "station":    dict(layout="mobile", size=10, density_m2=3.0, spacing_m=2.0, leg_s=120.0,
                       visit_weekday=0.004, visit_weekend=0.006, dwell_min=45.0, per_people=2000,
                       open=300, close=1260),
    # neighbourhood gathering spots (courtyard, tea stall, playground, pagoda yard): one per
    # ``per_people`` residents, each serving a fixed block of neighbouring households; visited in the
    # afternoon/evening (children ``child_factor`` times as often as adults). Calibrated to the community
    # matrix of Prem 2021 (other locations: ~5 contacts a day)
    "gathering":  dict(layout="mobile", size=6, density_m2=3.0, spacing_m=1.5, leg_s=600.0,
                       visit_weekday=0.45, visit_weekend=0.55, dwell_min=80.0, per_people=150,
                       open=960, close=1260, child_factor=2.0, elder_factor=0.5),
    "bus":        dict(layout="seated", size=40, density_m2=0.6, spacing_m=0.8, move_prob=0.0,
                       share_urban=0.08, share_rural=0.02, ride_min=30.0),
}

#: National defaults. Every leaf may be overridden in a TOML scenario.
DEFAULTS: dict = {
    "name": "vietnam-default",
    "scale": 1.0,
    "population": {
        "size": 100_000,                     # persons at scale 1
        "urban_share": 0.344,
        "household_mean": 3.5,               # persons per household (census 2019, FACTS.md S3)
        "household_max": 12,                 # upper bound on household_mean (validation only)
        # households with generations (sim.population._households); ESTIMATES where marked:
        "young_adult_at_home": 0.6,          # ESTIMATE: share of 18-24 living with their parents (unmarried)
        "parent_gap_mean": 27.0,             # years, mother's age at birth ~27 (census 2019 fertility
        "parent_gap_sd": 5.0,                #   schedule peaks at 25-29); clipped to 18-45
        "siblings_share": [0.33, 0.45, 0.16, 0.06],   # ESTIMATE: families with 1, 2, 3, 4 co-resident
        #                                      children (TFR 2.09 in census 2019; two-child norm)
        "single_parent_share": 0.08,         # ESTIMATE: families with children and one parent
        "spouse_gap_sd": 3.0,                # years, spouses' age difference (husband ~2-3 years older)
        "one_person_share": 0.10,            # ESTIMATE: one-person households ("a very low proportion")
        "elder_with_children": 0.65,         # ESTIMATE: persons 60+ co-residing with a child's family
        #                                      (Viet Nam Aging Survey 2011: about two thirds)
        "commune_size": 8000,                # persons per commune (markets, primary schools)
        "district_size": 120000,             # persons per district (hospital, station, university)
        # UN WPP 2020 ten-year bands (FACTS.md S6), percent; the last band 80-95
        "age_band_edges": [0, 10, 20, 30, 40, 50, 60, 70, 80, 96],
        "age_band_share": [15.9, 14.0, 15.8, 16.6, 13.9, 11.4, 7.5, 2.9, 1.9],
    },
    "phones": {
        # Adults (18+) using a smartphone: 73.5 % in March 2022 (S16: OpenGov Asia 2022; Hai Phong 78.4,
        # Da Nang 77.8, HCMC 75.7, Ha Noi 74.5, Ha Giang 56.1); 53 % in 2017 (S17: Pew via Saigoneer).
        # The campaign year's (2020) share is NOT FOUND (a straight line 2017 -> 2022 gives ~65 %); the
        # default is the sourced 2022 figure (issue 13), so coverage is, if anything, overstated for 2020.
        # A province's own count goes through phones.owner_share (proxitrace sweep --phone-owners).
        "adult_share": 0.735,
        "owner_share": None,                 # if set: share of the WHOLE population owning one (gradient kept)
        # relative ownership per age group 18-36, 37-59, 60+ (proportional, capped at 0.98). Pew 2017
        # (S17): 88 % of 18-36 vs 38 % of 37+ (ratio 2.3; "internet or smartphone"); the weights give that
        # ratio at the 2017 adult share (0.79 vs 0.34 at 53 %) and 0.98 vs 0.56 at 2022's 73.5 %
        # (carrying 2017's odds ratio of 12 to 2022 would give 0.95 vs 0.59). The split of 37+ into
        # 37-59 and 60+ is an ESTIMATE (no source by age in FACTS.md; Pew 2018 (S18): 97 % have a mobile).
        "weight_18_36": 1.0,
        "weight_37_59": 0.52,
        "weight_60p": 0.22,
        # children: ESTIMATES (no Vietnamese source found): few own a phone of their own before lower
        # secondary school, most by upper secondary
        "child_share_0_11": 0.02,
        "child_share_12_14": 0.25,
        "child_share_15_17": 0.6,
        "urban_factor": 1.1,                 # ESTIMATE: multiplier on adult ownership weights for urban residents
        "ios_share": 0.36,                   # Android 63 % / iOS 36 % (2020)
        "android_share": 0.63,
        # carriage habits, probabilities in the order of ble.radio.CARRIAGES
        "carriage_probs": [0.2, 0.35, 0.1, 0.25, 0.1],
    },
    "roles": {
        "employment_rate": 0.74,             # of persons aged 18-64 (labour force 15+ ~74 %)
        # employment by age: relative factors for the bands starting at these ages (the last ends at
        # 64), rescaled so that the 18-64 mean is employment_rate. ESTIMATE calibrated to the age profile
        # of Prem 2021's work contacts for Vietnam (which follows labour-force participation by age):
        # few at 18-19 (school), entry at 20-24, peak at 40-49, retirement (statutory age 55 women /
        # 60 men until 2020, Labour Code 2012) at 55-64
        "employment_age_edges": [18, 20, 25, 30, 35, 40, 50, 55, 60],
        "employment_by_age": [0.05, 0.4, 0.85, 0.85, 0.95, 1.0, 0.9, 0.55, 0.22],
        "agriculture_share": 0.33,           # of the employed: farm work, no workplace in the model
        "civil_servant_share": 0.04,
        "teacher_per_class": 1.2,            # teachers per school class (derived count, not a share)
        "health_worker_share": 0.015,
        "transport_worker_share": 0.03,
        "factory_share": 0.25,
        "market_vendor_share": 0.05,
        "restaurant_staff_share": 0.05,
        "hotel_staff_share": 0.01,
        "university_share": 0.3,             # of persons aged 18-22 who study at a university
        "night_shift_share": 0.25,           # of health workers on a night shift on a given day
    },
    "schedule": {                            # minutes of the day
        "wake": 360, "wake_jitter": 45,
        "sleep": 1320, "sleep_jitter": 45,
        "work_start": 450, "work_end": 1020, "lunch_start": 690, "lunch_end": 810,
        "school_start": 420, "school_end": 990,
        "factory_start": 420, "factory_end": 1020,
        "start_jitter": 15,
        "home_lunch_share": 0.5,             # workers and pupils who go home at lunch
        "saturday_work_share": 0.5,          # offices/workplaces open on Saturday for this share
        "evening_start": 1080, "evening_end": 1260,
        "weekday_of_day0": 0,                # 0 = Monday
    },
    "places": copy.deepcopy(_PLACES),
    "sim": {
        "step_s": 300,                       # s, BLE scan period and schedule step
        "gt_substeps": 1,                    # ground-truth positions per step (5 -> every 60 s)
        "close_m": 2.0,                      # m, close distance of the ground truth
        "close_minutes": 15.0,               # min per day for a true close contact (metadata)
        "radio_range_m": 12.0,               # m, pairs beyond are never evaluated by the radio
        "jitter_m": 0.15,                    # m, per-step fidgeting around a seat
        "scan_config": "BLUEZONE",
    },
    "radio": {},                             # overrides of ble.radio.RadioParams fields
    "meta": {},                              # free metadata (reported adoption etc.), copied to run.json
}

#: Province presets: census 2019 population (FACTS.md §2), urban share and the reported Bluezone
#: figures (``meta.reported_adoption``), one TOML file each in ``sim/presets/``.
PRESET_DIR = Path(__file__).with_name("presets")
PRESETS: dict[str, dict] = {p.stem: tomllib.loads(p.read_text(encoding="utf-8"))
                            for p in sorted(PRESET_DIR.glob("*.toml"))}

_PROB_KEYS = {"urban_share", "young_adult_at_home", "single_parent_share", "elder_with_children", "one_person_share", "adult_share", "child_share_0_11", "child_share_12_14", "child_share_15_17",
              "ios_share", "android_share", "employment_rate", "agriculture_share", "civil_servant_share",
              "health_worker_share", "transport_worker_share", "factory_share", "market_vendor_share",
              "restaurant_staff_share", "hotel_staff_share", "university_share", "night_shift_share",
              "home_lunch_share", "saturday_work_share", "move_prob", "visit_weekday",
              "visit_weekend", "share_urban", "share_rural"}
_INT_POS = {"size", "class_size", "household_max", "commune_size", "district_size", "step_s",
            "gt_substeps", "per_people", "room_size", "farm_team", "visit_range", "primary_max_age"}
_MINUTE_OF_DAY = {"wake", "sleep", "work_start", "work_end", "lunch_start", "lunch_end", "school_start",
                  "school_end", "factory_start", "factory_end", "evening_start", "evening_end", "open",
                  "close"}
_LAYOUTS = ("seated", "tables", "mobile", "home")


@dataclass
class Scenario:
    """All parameters of a simulation (nested dicts, validated). ``n_agents`` = round(size × scale)."""
    name: str
    scale: float
    population: dict
    phones: dict
    roles: dict
    schedule: dict
    places: dict
    sim: dict
    radio: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    source: str = "<defaults>"

    @property
    def n_agents(self) -> int:
        return max(1, int(round(self.population["size"] * self.scale)))

    def to_dict(self) -> dict:
        return {"name": self.name, "scale": self.scale, "population": self.population,
                "phones": self.phones, "roles": self.roles, "schedule": self.schedule,
                "places": self.places, "sim": self.sim, "radio": self.radio, "meta": self.meta,
                "source": self.source}

    def with_overrides(self, overrides: dict, source: str = "<overrides>") -> "Scenario":
        """A new scenario with ``overrides`` (nested dict, TOML layout) merged and validated."""
        d = copy.deepcopy(self.to_dict())      # never merge into this scenario's own dicts
        d.pop("source")
        _merge(d, overrides, source, "")
        return _build(d, source)


def _merge(base: dict, over: dict, source: str, prefix: str) -> None:
    for k, v in over.items():
        key = f"{prefix}{k}"
        if k not in base:
            if prefix in ("meta.", "radio.") or prefix.startswith(("meta.", "radio.")):
                base[k] = copy.deepcopy(v)
                continue
            if prefix == "" and k in ("preset", "seed", "days", "epidemic", "qr"):   # epidemic/qr: read by
                # tracing.closedloop.load_closed_loop_params from the same file
                continue
            raise ValueError(f"{source}: {key}: unknown key")
        if isinstance(base[k], dict):
            if not isinstance(v, dict):
                raise ValueError(f"{source}: {key}: must be a table, got {v!r}")
            _merge(base[k], v, source, key + ".")
        else:
            base[k] = copy.deepcopy(v)


def _fail(source, key, what, v):
    raise ValueError(f"{source}: {key}: must be {what}, got {v!r}")


def _check_leaf(source: str, key: str, name: str, v, default) -> None:
    if isinstance(default, bool):
        if not isinstance(v, bool):
            _fail(source, key, "true or false", v)
        return
    if isinstance(default, str):
        if not isinstance(v, str):
            _fail(source, key, "a string", v)
        if name == "layout" and v not in _LAYOUTS:
            _fail(source, key, f"one of {', '.join(_LAYOUTS)}", v)
        return
    if isinstance(default, list):
        if not isinstance(v, list) or not v or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
                for x in v):
            _fail(source, key, "a non-empty list of non-negative numbers", v)
        return
    if isinstance(default, (int, float)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            _fail(source, key, "a number", v)
        if name in _INT_POS:
            if not isinstance(v, int) or v <= 0:
                _fail(source, key, "a positive integer", v)
        elif name in _PROB_KEYS:
            if not 0.0 <= v <= 1.0:
                _fail(source, key, "a probability in [0, 1]", v)
        elif name in _MINUTE_OF_DAY:
            if not 0 <= v <= 1440:
                _fail(source, key, "a minute of the day in [0, 1440]", v)
        elif name == "scale":
            if not v > 0:
                _fail(source, key, "a positive number", v)
        elif name in ("household_mean",):
            if not v >= 1.0:
                _fail(source, key, "a number >= 1 (persons per household)", v)
        elif name in ("weekday_of_day0",):
            if not (isinstance(v, int) and 0 <= v <= 6):
                _fail(source, key, "an integer 0 (Monday) .. 6 (Sunday)", v)
        elif name in ("density_m2", "radio_range_m", "close_m", "spacing_m", "leg_s", "dwell_min",
                      "ride_min", "table_gap_m", "room_gap_m", "primary_spacing_m"):
            if not v > 0:
                _fail(source, key, "a positive number", v)
        elif not v >= 0:
            _fail(source, key, "a non-negative number", v)
        return


def _validate(d: dict, source: str, defaults: dict, prefix: str = "") -> None:
    for k, dv in defaults.items():
        if k in ("radio", "meta") and prefix == "":
            continue
        key = f"{prefix}{k}"
        v = d.get(k)
        if isinstance(dv, dict):
            _validate(v, source, dv, key + ".")
        else:
            _check_leaf(source, key, k, v, dv)


def _build(d: dict, source: str) -> Scenario:
    """Validate the merged dict and make a :class:`Scenario`."""
    # place tables: validate each against the default of its own type (new types are not allowed)
    _validate({k: v for k, v in d.items() if k != "places"}, source,
              {k: v for k, v in DEFAULTS.items() if k != "places"})
    for pt, tbl in d["places"].items():
        _validate(tbl, source, _PLACES[pt], f"places.{pt}.")
    pop, ph, sc, sim = d["population"], d["phones"], d["schedule"], d["sim"]
    edges, share = pop["age_band_edges"], pop["age_band_share"]
    if len(edges) != len(share) + 1 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"{source}: population.age_band_edges: must be increasing with one more entry "
                         f"than population.age_band_share, got {edges!r}")
    if sum(share) <= 0:
        _fail(source, "population.age_band_share", "shares with a positive sum", share)
    if pop["household_mean"] >= pop["household_max"]:
        raise ValueError(f"{source}: population.household_mean: must be below population.household_max "
                         f"({pop['household_max']}), got {pop['household_mean']!r}")
    ro = d["roles"]
    if len(ro["employment_age_edges"]) != len(ro["employment_by_age"]) or any(
            b <= a for a, b in zip(ro["employment_age_edges"], ro["employment_age_edges"][1:])):
        raise ValueError(f"{source}: roles.employment_age_edges: must be increasing with one entry per "
                         f"roles.employment_by_age factor, got {ro['employment_age_edges']!r}")
    if ph["ios_share"] + ph["android_share"] <= 0:
        _fail(source, "phones.ios_share", "positive together with phones.android_share", ph["ios_share"])
    osh = ph.get("owner_share")
    if osh is not None and (isinstance(osh, bool) or not isinstance(osh, (int, float)) or not 0 < osh <= 0.98):
        _fail(source, "phones.owner_share", "a fraction of the whole population in (0, 0.98]", osh)
    if len(ph["carriage_probs"]) != 5 or sum(ph["carriage_probs"]) <= 0:
        _fail(source, "phones.carriage_probs", "5 non-negative weights (ble.radio.CARRIAGES order)",
              ph["carriage_probs"])
    if 86400 % sim["step_s"] or sim["step_s"] % 60:
        _fail(source, "sim.step_s", "a whole number of minutes dividing the day (s)", sim["step_s"])
    if sim["radio_range_m"] < sim["close_m"]:
        _fail(source, "sim.radio_range_m", f"at least sim.close_m ({sim['close_m']})", sim["radio_range_m"])
    if sim["scan_config"] not in ("BLUEZONE", "GAEN"):
        _fail(source, "sim.scan_config", "BLUEZONE or GAEN", sim["scan_config"])
    for a, b in (("wake", "sleep"), ("work_start", "work_end"), ("school_start", "school_end"),
                 ("factory_start", "factory_end"), ("lunch_start", "lunch_end"),
                 ("evening_start", "evening_end")):
        if not sc[a] < sc[b]:
            raise ValueError(f"{source}: schedule.{a}: must be before schedule.{b}, got {sc[a]!r}")
    for pt, tbl in d["places"].items():
        if "open" in tbl and not tbl["open"] < tbl["close"]:
            raise ValueError(f"{source}: places.{pt}.open: must be before places.{pt}.close, "
                             f"got {tbl['open']!r}")
    if not isinstance(d["name"], str):
        _fail(source, "name", "a string", d["name"])
    scn = Scenario(name=d["name"], scale=float(d["scale"]), population=pop, phones=ph, roles=d["roles"],
                   schedule=sc, places=d["places"], sim=sim, radio=d.get("radio", {}),
                   meta=d.get("meta", {}), source=source)
    if scn.radio:   # validate the [radio] overrides now, not when a simulation starts
        radio_params(scn)
    return scn


def preset(name: str, scale: float = 1.0) -> Scenario:
    """A province preset (``lang-son``, ``nam-dinh``, ``dak-lak``, ``khanh-hoa``) at ``scale``.

    ``scale`` multiplies the census population (0.01 → 1 % of the province's persons; places scale
    with it because instances are per head).
    """
    key = str(name).lower().replace("_", "-")
    if key not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    d = copy.deepcopy(DEFAULTS)
    _merge(d, copy.deepcopy(PRESETS[key]), f"preset {key}", "")
    _merge(d, {"scale": scale}, f"preset {key}", "")
    return _build(d, f"preset:{key}")


def default_scenario(size: int = 100_000, scale: float = 1.0) -> Scenario:
    """The national defaults with ``size`` persons at scale 1."""
    d = copy.deepcopy(DEFAULTS)
    d["population"]["size"] = size
    d["scale"] = scale
    return _build(d, "<defaults>")


def read_toml(path: str | Path) -> dict:
    """The one reader of a scenario file: its TOML as a dict (every table: the scenario's own, and
    ``[epidemic]`` and ``[qr]`` for ``sim.epidemic.load_epidemic`` and the closed loop). Errors name
    the file and, for bad bytes, the line."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ValueError(f"{path.name}: line {line}: not UTF-8 text "
                         f"(byte {e.start}: {e.reason})") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path.name}: not valid TOML: {e}") from e


def load_scenario(path: str | Path, overrides: dict | None = None) -> Scenario:
    """Read a TOML scenario. ``preset = "<name>"`` at the top starts from that preset (else the
    national defaults); every other key overrides the matching parameter. Errors name the file and key.
    """
    path = Path(path)
    raw = read_toml(path)
    source = path.name
    base = copy.deepcopy(DEFAULTS)
    pname = (overrides or {}).get("preset") or raw.get("preset")
    if pname is not None:
        pname = str(pname).lower()
        if pname not in PRESETS:
            raise ValueError(f"{source}: preset: unknown preset {pname!r}; choose one of "
                             f"{', '.join(PRESETS)}")
        _merge(base, copy.deepcopy(PRESETS[pname]), source, "")
    _merge(base, raw, source, "")
    if overrides:
        _merge(base, overrides, source, "")
    return _build(base, source)
