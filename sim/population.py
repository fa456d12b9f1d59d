"""Synthetic population: ages, households, communes, smartphones, platforms, devices, carriage, roles.

Everything is vectorised numpy (no Python loop over agents). Units: ages in years; probabilities.

Model (defaults in :mod:`sim.scenario`, facts in ``FACTS.md``)
-------------------------------------------------------------
* **Households.** Sizes are ``1 + Poisson(mean − 1)`` truncated at ``household_max`` (mean 3.5
  nationally, 3.83 for Đắk Lắk; the census gives no size distribution). Households are urban with
  probability ``urban_share``; urban households come first and are cut into communes of
  ``commune_size`` persons (wards), then rural ones; communes are grouped into districts of about
  ``district_size`` persons.
* **Ages.** All N ages are drawn from the age-band shares (uniform inside a band), so the population
  pyramid is exact in expectation. Each household gets one head aged 20+, the others are dealt at
  random into the remaining places — members of a household are therefore of mixed ages but not
  organised into parent/child generations (documented simplification).
* **Smartphones.** Adults 18+: ownership ∝ weight of the age group (18–36, 37–59, 60+; Pew 2017 found
  88 % vs 38 % for 18–36 vs 37+), urban residents with odds × ``urban_factor``; a common factor is solved
  so that the adult share equals ``phones.adult_share`` (73.5 % in 2022, ~68 % by default for 2020).
  Children: fixed shares per age group. Platform iOS with probability ios/(ios+android) (36 : 63).
* **Devices.** ``device_model`` is a row of Google's calibration table drawn through
  ``ble.radio.device_offsets`` (TX/RX offsets in dB); carriage habit from ``phones.carriage_probs``
  over ``ble.radio.CARRIAGES``.
* **Roles** (:data:`ROLES`): children 3–17 attend school (net attendance by level), a share of the
  18–22 year-olds study at a university; of those 18–64 not studying, ``employment_rate`` work, split
  into agriculture (role ``other``, no workplace in the model), civil servants, health workers, transport
  workers, factory workers, market vendors, restaurant/hotel staff and other services; teachers are drawn
  from the employed to staff the school classes; in-patients (``patients_per_1000``, more often old) are
  in hospital for the whole run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


__all__ = ["ROLES", "R", "WORK_NONE", "WORK_SERVICE", "WORK_RESTAURANT", "WORK_HOTEL", "WORK_AGRI", "Population",
           "make_population"]

ROLES = ("other", "civil_servant", "student", "teacher", "health_worker", "patient", "transport_worker",
         "factory_worker", "market_vendor")
R = {name: k for k, name in enumerate(ROLES)}

#: work-place type of employed "other" agents (index into sim.places.PLACE_TYPES is resolved there)
WORK_NONE, WORK_SERVICE, WORK_RESTAURANT, WORK_HOTEL, WORK_AGRI = 0, 1, 2, 3, 4

# net attendance rates 2020-21 (MICS6, FACTS.md): age 3-4 80.5 %, 5 97.6 %, primary (6-10) 98.2 %,
# lower secondary (11-14) 93.0 %, upper secondary (15-17) 78.1 %
_ATTEND_AGE = np.array([0, 0, 0, 0.805, 0.805, 0.976] + [0.982] * 5 + [0.93] * 4 + [0.781] * 3)


@dataclass
class Population:
    """Agents ``0..n-1`` (device index = agent index). Arrays of length ``n`` unless noted."""
    n: int
    age: np.ndarray            #: i2, years
    household: np.ndarray      #: i8, household index (households are numbered 0..n_households-1)
    hh_size: np.ndarray        #: i4, per household (length n_households)
    hh_start: np.ndarray       #: i8, first agent of each household (agents are contiguous per household)
    urban: np.ndarray          #: bool
    commune: np.ndarray        #: i4
    district: np.ndarray       #: i4
    has_phone: np.ndarray      #: bool
    platform: np.ndarray       #: i1, 0 Android, 1 iOS, -1 none
    device_model: np.ndarray   #: i4, row of the calibration table or -1
    tx_offset: np.ndarray      #: f4, dB, device TX offset (0 without phone)
    rx_offset: np.ndarray      #: f4, dB, device RX offset
    tx_power: np.ndarray       #: f4, dBm, advertised TX power (NaN without phone)
    carriage: np.ndarray       #: i1, index in ble.radio.CARRIAGES
    role: np.ndarray           #: i1, index in ROLES
    work_kind: np.ndarray      #: i1, WORK_* for employed agents of role "other"
    bus_user: np.ndarray       #: bool, commutes by bus on working/school days

    @property
    def n_households(self) -> int:
        return len(self.hh_size)


def _household_sizes(n: int, mean: float, hmax: int, rng: np.random.Generator) -> np.ndarray:
    """Sizes 1 + Poisson(mean - 1) truncated at hmax, summing exactly to n (last one trimmed)."""
    m = int(n / mean * 1.3) + 16
    sizes = np.minimum(1 + rng.poisson(mean - 1.0, size=m), hmax)
    while sizes.sum() < n:
        sizes = np.concatenate([sizes, np.minimum(1 + rng.poisson(mean - 1.0, size=m), hmax)])
    cs = np.cumsum(sizes)
    k = int(np.searchsorted(cs, n))          # household k completes n
    sizes = sizes[:k + 1].copy()
    sizes[-1] -= cs[k] - n
    return sizes[sizes > 0].astype(np.int32)


def _ages(n: int, edges, share, rng) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    p = np.asarray(share, dtype=np.float64)
    p = p / p.sum()
    band = rng.choice(len(p), size=n, p=p)
    return np.floor(edges[band] + rng.random(n) * (edges[band + 1] - edges[band])).astype(np.int16)


def _solve_factor(w: np.ndarray, target: float, cap: float = 0.98) -> float:
    """c such that mean(min(cap, c * w)) = target (bisection; deterministic)."""
    if len(w) == 0 or target <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    while np.minimum(cap, hi * w).mean() < target and hi < 1e6:
        hi *= 2
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.minimum(cap, mid * w).mean() < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def owner_share_probability(p_phone: np.ndarray, owner_share: float, cap: float = 0.98) -> np.ndarray:
    """Phone probabilities rescaled so that their mean over the WHOLE population is ``owner_share``.

    ``p_phone``: float array (n,), the preset's probability per person (its age/urban gradient);
    returns ``min(cap, c * p_phone)`` with c found by bisection (:func:`_solve_factor`), so the
    gradient is kept (up to the cap) and the expected share of owners is ``owner_share`` (scenario
    key ``phones.owner_share``; ``proxitrace sweep --phone-owners``). Deterministic, draws nothing.
    """
    p = np.asarray(p_phone, dtype=np.float64)
    if not 0.0 < owner_share <= np.minimum(cap, p * 1e6).mean() + 1e-12:
        raise ValueError(f"phones.owner_share: must be in (0, {cap}] and reachable by the preset's "
                         f"gradient, got {owner_share!r}")
    return np.minimum(cap, _solve_factor(p, owner_share, cap) * p)


def _device_offsets(rng: np.random.Generator, n: int):
    """(model, tx_offset, rx_offset, tx_power) through ``ble.radio.device_offsets``; see sim.scanning."""
    # the radio (numba) loads when a population is drawn, so that `proxitrace --help` stays light
    from sim.scanning import device_table
    return device_table(rng, n)


def make_population(scn, rng: np.random.Generator) -> Population:
    """Draw the population of scenario ``scn`` (``scn.n_agents`` persons) with generator ``rng``."""
    n = scn.n_agents
    P, ph, ro = scn.population, scn.phones, scn.roles
    sizes = _household_sizes(n, float(P["household_mean"]), int(P["household_max"]), rng)
    H = len(sizes)
    hh_urban = rng.random(H) < P["urban_share"]
    # urban households first (stable), then rural; agents contiguous per household
    order = np.argsort(~hh_urban, kind="stable")
    sizes, hh_urban = sizes[order], hh_urban[order]
    hh_start = np.zeros(H, np.int64)
    hh_start[1:] = np.cumsum(sizes)[:-1]
    household = np.repeat(np.arange(H, dtype=np.int64), sizes)
    urban = np.repeat(hh_urban, sizes)
    # communes: consecutive persons, urban and rural separately; districts: consecutive communes
    cs = int(P["commune_size"])
    n_urb = int(urban.sum())
    pos_in = np.where(urban, np.arange(n), np.arange(n) - n_urb)
    hh_first = hh_start[household]
    pos_hh = np.where(urban, hh_first, hh_first - n_urb)      # commune by household (not split)
    n_urb_comm = -(-n_urb // cs) if n_urb else 0
    commune = np.where(urban, pos_hh // cs, n_urb_comm + pos_hh // cs).astype(np.int32)
    del pos_in
    per_dist = max(1, int(round(P["district_size"] / cs)))
    district = (commune // per_dist).astype(np.int32)

    # ages: draw all, heads 20+ first in each household, the rest dealt at random
    ages = _ages(n, P["age_band_edges"], P["age_band_share"], rng)
    perm = rng.permutation(n)
    ages = ages[perm]
    is_head_cand = ages >= 20
    cand = np.flatnonzero(is_head_cand)
    age = np.empty(n, np.int16)
    n_heads = min(H, len(cand))
    heads = cand[:n_heads]
    rest = np.setdiff1d(np.arange(n), heads, assume_unique=True)
    rest = rest[rng.permutation(len(rest))]
    head_slots = hh_start[:n_heads]
    other_slots = np.setdiff1d(np.arange(n), head_slots, assume_unique=True)
    age[head_slots] = ages[heads]
    age[other_slots] = ages[rest]

    # smartphones
    a = age.astype(np.int64)
    adult = a >= 18
    w = np.where(a <= 36, ph["weight_18_36"], np.where(a <= 59, ph["weight_37_59"], ph["weight_60p"]))
    w = w * np.where(urban, ph["urban_factor"], 1.0)
    c = _solve_factor(w[adult], ph["adult_share"])
    p_phone = np.where(adult, np.minimum(0.98, c * w),
                       np.where(a <= 11, ph["child_share_0_11"],
                                np.where(a <= 14, ph["child_share_12_14"], ph["child_share_15_17"])))
    if ph.get("owner_share") is not None:
        p_phone = owner_share_probability(p_phone, float(ph["owner_share"]))
    has_phone = rng.random(n) < p_phone
    p_ios = ph["ios_share"] / (ph["ios_share"] + ph["android_share"])
    platform = np.where(has_phone, (rng.random(n) < p_ios).astype(np.int8), np.int8(-1)).astype(np.int8)
    model, txo, rxo, txp = _device_offsets(rng, n)
    device_model = np.where(has_phone, model, -1).astype(np.int32)
    tx_offset = np.where(has_phone, txo, 0.0).astype(np.float32)
    rx_offset = np.where(has_phone, rxo, 0.0).astype(np.float32)
    tx_power = np.where(has_phone, txp, np.nan).astype(np.float32)
    cp = np.asarray(ph["carriage_probs"], dtype=np.float64)
    carriage = rng.choice(len(cp), size=n, p=cp / cp.sum()).astype(np.int8)

    # roles
    role = np.zeros(n, np.int8)
    work_kind = np.zeros(n, np.int8)
    u = rng.random(n)
    att = np.where(a < len(_ATTEND_AGE), _ATTEND_AGE[np.minimum(a, len(_ATTEND_AGE) - 1)], 0.0)
    pupil = u < att
    uni = (a >= 18) & (a <= 22) & (u < ro["university_share"])
    role[pupil | uni] = R["student"]
    working_age = (a >= 18) & (a <= 64) & ~uni
    employed = working_age & (rng.random(n) < ro["employment_rate"])
    shares = np.array([ro["agriculture_share"], ro["civil_servant_share"], ro["health_worker_share"],
                       ro["transport_worker_share"], ro["factory_share"], ro["market_vendor_share"],
                       ro["restaurant_staff_share"], ro["hotel_staff_share"]])
    if shares.sum() > 1.0:
        raise ValueError(f"{scn.source}: roles: sector shares sum to {shares.sum():.3f} > 1")
    sector = np.searchsorted(np.cumsum(shares), rng.random(n), side="right")  # 8 = other services
    emp = np.flatnonzero(employed)
    sec = sector[emp]
    role[emp[sec == 1]] = R["civil_servant"]
    role[emp[sec == 2]] = R["health_worker"]
    role[emp[sec == 3]] = R["transport_worker"]
    role[emp[sec == 4]] = R["factory_worker"]
    role[emp[sec == 5]] = R["market_vendor"]
    work_kind[emp[sec == 0]] = WORK_AGRI
    work_kind[emp[sec == 6]] = WORK_RESTAURANT
    work_kind[emp[sec == 7]] = WORK_HOTEL
    work_kind[emp[sec == 8]] = WORK_SERVICE
    # teachers: one per class, more per class for teacher_per_class > 1, from the "other services" pool
    n_pupils = int(pupil.sum())
    n_classes = -(-n_pupils // int(scn.places["school"]["class_size"]))
    n_teach = int(round(n_classes * ro["teacher_per_class"]))
    pool = emp[sec == 8]
    pool = pool[rng.permutation(len(pool))][:n_teach]
    role[pool] = R["teacher"]
    work_kind[pool] = WORK_NONE
    # in-patients: weighted to the old
    n_pat = int(round(n * scn.places["hospital"]["patients_per_1000"] / 1000.0))
    if n_pat:
        wp = np.where(a >= 60, 4.0, np.where(a < 5, 1.5, 1.0))
        wp = np.where(role == R["student"], wp * 0.5, wp)
        # Gumbel top-k: weighted sampling without replacement, vectorised
        keys = np.log(rng.random(n)) / wp
        pat = np.argsort(-keys, kind="stable")[:n_pat]
        role[pat] = R["patient"]
        work_kind[pat] = WORK_NONE
    # bus commuters among pupils/students and workers with a workplace
    commuter = np.isin(role, [R["student"], R["civil_servant"], R["teacher"], R["health_worker"],
                              R["factory_worker"]]) | ((role == R["other"]) & (work_kind == WORK_SERVICE))
    bus = scn.places["bus"]
    bus_user = commuter & (rng.random(n) < np.where(urban, bus["share_urban"], bus["share_rural"]))
    return Population(n=n, age=age, household=household, hh_size=sizes.astype(np.int32), hh_start=hh_start,
                      urban=urban, commune=commune, district=district, has_phone=has_phone,
                      platform=platform, device_model=device_model, tx_offset=tx_offset,
                      rx_offset=rx_offset, tx_power=tx_power, carriage=carriage, role=role,
                      work_kind=work_kind, bus_user=bus_user)
