"""Places: types, instances (one room, floor or vehicle each), their floor plans and members.

:data:`PLACE_TYPES` fixes the order (index = bit in the population's ``place_types`` mask). Every place
instance is one contiguous floor with its own local coordinates (metres, origin at a corner; width
``inst_w`` and depth ``inst_h`` in m); pairs are only ever formed inside one instance. Members with a
fixed spot (``primary``, ``seat_x``/``seat_y`` in m) sit on a grid; visitors move (see
:mod:`sim.positions`). Parameters are ``scenario.places.<type>`` (:mod:`sim.scenario`); distances in m,
areas in m² per person (``density_m2``), visit rates per person-day, times in minutes.

==========  ========================================================================  ===========
type        model                                                                     setting
==========  ========================================================================  ===========
home        one per household; floor ``size × density_m2`` (14 m² per person); beds    home
            0.6 m apart in rooms of ``room_size`` persons, rooms ``room_gap_m`` apart;
            **home visits**: a household visits a household within ``visit_range``
            households in the evening (``visit_weekday``/``visit_weekend`` per
            household-day, ``dwell_min``), its members moving through the host's floor
school      classes of ``class_size`` pupils of one age and school zone + ~1.2           school
            teachers; preschool/primary (ages <= ``primary_max_age``) in staggered rows
            ``primary_spacing_m`` (1.5 m) apart (6 nearest classmates), secondary on a
            square grid ``spacing_m`` (1.2 m) apart (8 nearest); the teacher in front
university  lecture groups of ``class_size`` students per district                     school
office      public offices of ``size`` civil servants per district (``spacing_m``);    work (staff)
            citizens' errands (``visit_*``) walk through a ward/office of the district community
workplace   service workplaces of ``size`` workers per commune; **farm teams** of      work
            ``farm_team`` agricultural workers per commune working side by side
            (same type, ``spacing_m`` apart)
factory     production floors of ``size`` workers per district                         work
hospital    wards of ``size`` (staff + in-patients) per district; outpatients and      work (staff),
            visitors (``visit_*``) walk through a ward of their district               community
market      one per block of ~``per_people`` residents; vendors at stalls on a grid    work (vendors),
            ``spacing_m`` apart, visitors moving (legs of ``leg_s`` s)                 community
restaurant  restaurants/cafés per ~``per_people`` residents, tables of 4 (0.8 m        work (staff),
            across, ``table_gap_m`` apart); staff at fixed spots; lunch and evening    community
            visits (young adults ``young_adult_factor`` × as often in the evening)
hotel       one per ~``per_people`` residents; staff and guests moving                 work/community
station     station halls (bus station, airport), one per ~``per_people`` residents;   work/community
            half the transport workers at counters, travellers moving
bus         one vehicle per ~``size`` commuters of a district (``size`` seats          community
            ``spacing_m`` apart, a fresh seat per ride); the other transport workers     (riders),
            drive them                                                                 work (drivers)
gathering   **neighbourhood gathering spots** (courtyard, tea stall, playground,       community
            pagoda yard), one per block of ~``per_people`` neighbouring residents, who
            all use their block's spot (afternoon/evening, ``visit_*``; children
            ``child_factor`` ×, persons 70+ ``elder_factor`` × as often)
==========  ========================================================================  ===========

The **setting** column is the mapping to Prem et al.'s four settings used by ``proxitrace validate``
(:func:`sim.validate.agent_settings`): a person at its own fixed place is at work (school for pupils,
students and teachers), at any home (own or visited) at home, anywhere else in the community.

Scale-free miniatures (issue 13): the number of instances scales with the population, not their
crowding. Fixed-membership places (classes, offices, workplaces, farm teams, factory floors, wards) are
filled in balanced chunks of their ``size`` (occupancy independent of ``--scale``; classes over school
zones of ``commune_size`` persons, so a small miniature's partial commune does not make small classes).
Visit places (market, restaurant, gathering, hotel, station) cut the population (consecutive persons =
neighbouring households) into ``K = max(1, round(n / per_people))`` equal blocks, one instance per
block: every instance has the catchment ``n / K`` (within ±25 % of ``per_people`` once
``n >= 2 per_people``, exactly as at full scale), and a floor for its expected peak occupancy
``max(size, 1.5 × catchment × visit rate × dwell / opening hours) × density_m2``; consecutive blocks
form a choice area of ~``commune_size`` (market, restaurant) or ~``district_size`` (hotel, station)
persons among which a visitor picks at random. Buses: one vehicle per ~``size`` riders. No real size
effect is kept: a district's one bus station is modelled as halls of ``per_people`` catchment each
(its staff and travellers spread over them), and its hospital as wards of ``size``; the crowd of a
whole provincial station or hospital is therefore not represented. Below ``n ≈ 2 per_people`` (markets:
8,000 persons) a miniature's only instance has a smaller catchment than ``per_people``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.population import R, WORK_AGRI, WORK_HOTEL, WORK_RESTAURANT, WORK_SERVICE

__all__ = ["PLACE_TYPES", "T", "LAYOUTS", "L", "Places", "build_places", "visit_area", "visit_instances"]

PLACE_TYPES = ("home", "school", "university", "office", "workplace", "factory", "hospital", "market",
               "restaurant", "hotel", "station", "bus", "gathering")
T = {name: k for k, name in enumerate(PLACE_TYPES)}
LAYOUTS = ("home", "seated", "tables", "mobile")
L = {name: k for k, name in enumerate(LAYOUTS)}


@dataclass
class Places:
    """Instances (arrays per instance) and each agent's fixed places (arrays per agent).

    Lengths: ``n_inst`` for ``inst_*``; ``n`` agents for the agent arrays. Distances in metres.
    Per type ``t``: visit instances of commune/district ``c`` are ``visit_first[t][c] + k`` for
    ``0 <= k < visit_count[t][c]`` (``visit_level[t]``: 0 commune, 1 district).
    """
    inst_type: np.ndarray      # i1
    inst_w: np.ndarray         # f4, m
    inst_h: np.ndarray         # f4, m
    inst_cap: np.ndarray       # i4, seats (seated/tables), stalls
    inst_layout: np.ndarray    # i1, index in LAYOUTS
    primary: np.ndarray        # i8, work/school/ward/bus-driver instance of each agent, -1 none
    seat_x: np.ndarray         # f4, m, fixed spot in the primary instance
    seat_y: np.ndarray
    sleep_x: np.ndarray        # f4, m, sleeping spot at home (or in the ward for in-patients)
    sleep_y: np.ndarray
    bus_route: np.ndarray      # i8, bus instance used for commuting, -1 none
    visit_first: dict
    visit_count: dict
    visit_level: dict
    type_spacing: np.ndarray   # f4 per type, m
    type_move: np.ndarray      # f4 per type, probability per step of leaving one's seat
    type_leg: np.ndarray       # f4 per type, s, random-waypoint leg duration
    type_gap: np.ndarray       # f4 per type, m, table gap (tables layout)
    gathering: np.ndarray | None = None   # i8 per agent: neighbourhood gathering instance (-1 none)
    visit_area: dict | None = None        # type -> i8 per agent: its choice area (index into visit_first)

    @property
    def n_inst(self) -> int:
        return len(self.inst_type)


def _chunks(members: np.ndarray, key: np.ndarray, size: int):
    """Split ``members`` (already in the wanted order) into consecutive groups of ``size`` per ``key``
    value. Returns (local instance index per member, rank in instance, n instances, key per instance)."""
    if len(members) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), 0, np.zeros(0, np.int64)
    order = np.argsort(key, kind="stable")
    k = key[order]
    first = np.r_[0, np.flatnonzero(k[1:] != k[:-1]) + 1]
    grp_len = np.diff(np.r_[first, len(k)])
    rank_in_key = np.arange(len(k)) - np.repeat(first, grp_len)
    n_chunks = -(-grp_len // size)
    chunk0 = np.r_[0, np.cumsum(n_chunks)[:-1]]
    # balanced: a key's members are spread evenly over its ceil(len / size) instances (sizes differ by
    # at most one), so the occupancy does not depend on the remainder, i.e. on the scale (issue 13)
    L = np.repeat(grp_len, grp_len)
    kc = np.repeat(n_chunks, grp_len)
    chunk = rank_in_key * kc // L
    inst_sorted = np.repeat(chunk0, grp_len) + chunk
    inst = np.empty(len(k), np.int64)
    inst[order] = inst_sorted
    # ranks within instance, in order: rank minus the first rank of its chunk, ceil(chunk * L / kc)
    rank = np.empty(len(k), np.int64)
    rank[order] = rank_in_key - (chunk * L + kc - 1) // kc
    key_of_inst = np.repeat(k[first], n_chunks)
    return inst, rank, int(n_chunks.sum()), key_of_inst


def _grid(rank: np.ndarray, cap: np.ndarray, spacing: float):
    """Seat position of ``rank`` on a near-square grid of ``cap`` seats ``spacing`` m apart."""
    cols = np.ceil(np.sqrt(np.maximum(cap, 1))).astype(np.int64)
    x = ((rank % cols) + 0.5) * spacing
    y = ((rank // cols) + 0.5) * spacing
    return x.astype(np.float32), y.astype(np.float32)


def _grid_staggered(rank: np.ndarray, cap: np.ndarray, spacing: float):
    """Seat position of ``rank`` in staggered rows (every other row shifted by half a seat) of a
    near-square block of ``cap`` seats: each seat has 6 nearest seats at ``spacing`` m (2 beside, 2 in
    front, 2 behind), the next ring at ``sqrt(3) * spacing`` m."""
    cols = np.ceil(np.sqrt(np.maximum(cap, 1))).astype(np.int64)
    row = rank // cols
    x = ((rank % cols) + 0.5 + 0.5 * (row % 2)) * spacing
    y = (row + 0.5) * spacing * (np.sqrt(3.0) / 2.0)
    return x.astype(np.float32), y.astype(np.float32)


def _room(cap: np.ndarray, spacing: float, density: float):
    """Floor (w, h) in m holding a grid of ``cap`` seats and at least ``cap × density`` m²."""
    cols = np.ceil(np.sqrt(np.maximum(cap, 1)))
    rows = np.ceil(np.maximum(cap, 1) / cols)
    side = np.sqrt(np.maximum(cap, 1) * density)
    w = np.maximum(cols * spacing, side)
    h = np.maximum(rows * spacing, np.maximum(cap, 1) * density / w)
    return w.astype(np.float32), h.astype(np.float32)


def build_places(scn, pop, rng: np.random.Generator) -> Places:
    """Place instances for population ``pop`` of scenario ``scn`` and everyone's fixed places."""
    n = pop.n
    PL = scn.places
    a = pop.age.astype(np.int64)
    types, ws, hs, caps, lays = [], [], [], [], []
    n_inst = 0
    primary = np.full(n, -1, np.int64)
    seat_x = np.zeros(n, np.float32)
    seat_y = np.zeros(n, np.float32)
    rnd_key = rng.random(n)

    def add(t, w, h, cap, layout):
        nonlocal n_inst
        k = len(w)
        types.append(np.full(k, T[t], np.int8))
        ws.append(np.asarray(w, np.float32))
        hs.append(np.asarray(h, np.float32))
        caps.append(np.asarray(cap, np.int32))
        lays.append(np.full(k, L[layout], np.int8))
        first = n_inst
        n_inst += k
        return first

    # homes: instance id = household id
    H = pop.n_households
    hp = PL["home"]
    area = pop.hh_size * hp["density_m2"]
    n_rooms = -(-pop.hh_size // int(hp["room_size"]))
    w = np.maximum(np.sqrt(area), n_rooms * hp["room_gap_m"])
    add("home", w, area / w, pop.hh_size, "home")
    rank_hh = np.arange(n) - pop.hh_start[pop.household]
    room = rank_hh // int(hp["room_size"])
    sleep_x = ((room + 0.5) * hp["room_gap_m"] + (rank_hh % int(hp["room_size"])) * 0.6 - 0.3)
    sleep_x = np.minimum(sleep_x, w[pop.household] - 0.1).astype(np.float32)
    sleep_y = (0.5 * (area / w))[pop.household].astype(np.float32) + np.float32(0.0)

    def assign_fixed(t, members, key, size, layout="seated", order_key=None):
        """Members -> consecutive instances of ``size`` per key; fixed seats on a grid."""
        p = PL[t]
        if order_key is not None:
            o = np.lexsort((order_key[members], key))
            members, key = members[o], key[o]
        inst, rank, k, _ = _chunks(members, key, size)
        if k == 0:
            return
        cnt = np.bincount(inst, minlength=k)
        w, h = _room(cnt, p["spacing_m"], p["density_m2"])
        first = add(t, w, h, cnt, layout)
        primary[members] = first + inst
        sx, sy = _grid(rank, cnt[inst], p["spacing_m"])
        seat_x[members], seat_y[members] = sx, sy

    role = pop.role
    # school classes: pupils by (commune, age), teachers spread over the classes in district order
    pupils = np.flatnonzero((role == R["student"]) & (a <= 17))
    cs = int(PL["school"]["class_size"])
    if len(pupils):
        # school zones: the population cut into round(n / commune_size) equal blocks of consecutive
        # persons (urban and rural together), so that a small miniature's partial urban commune does
        # not make small classes (class occupancy independent of the scale, issue 13)
        n_zones = max(1, int(round(n / float(scn.population["commune_size"]))))
        zone = (np.arange(n, dtype=np.int64) * n_zones) // n
        key = zone[pupils] * 32 + a[pupils]
        inst, rank, k, key_inst = _chunks(pupils, key, cs)
        teachers = np.flatnonzero(role == R["teacher"])
        teachers = teachers[np.lexsort((rnd_key[teachers], pop.district[teachers]))]
        cls_of_t = (np.arange(len(teachers)) * k) // max(len(teachers), 1)
        cnt = np.bincount(inst, minlength=k) + np.bincount(cls_of_t, minlength=k)
        p = PL["school"]
        # preschool and primary classes (one age per class, age <= primary_max_age) sit in staggered
        # rows primary_spacing_m apart (6 nearest classmates), secondary classes on a square grid of
        # spacing_m (8 nearest: beside, in front, behind and diagonal); calibrated to Prem 2021's school
        # contacts per pupil (~6 at ages 3-10, ~7.5 at 11-14, ~9 at 15-17)
        young = (key_inst % 32) <= int(p["primary_max_age"])
        sp_y = float(p["primary_spacing_m"])
        wv, hv = _room(cnt, p["spacing_m"], p["density_m2"])
        wy, hy = _room(cnt, sp_y, p["density_m2"])
        wv = np.where(young, wy + 0.5 * sp_y, wv).astype(np.float32)
        hv = np.where(young, hy, hv).astype(np.float32)
        first = add("school", wv, hv + 1.5, cnt, "seated")       # +1.5 m in front for the teacher
        primary[pupils] = first + inst
        sx, sy = _grid(rank, cnt[inst], p["spacing_m"])
        yx, yy = _grid_staggered(rank, cnt[inst], sp_y)
        yp = young[inst]
        seat_x[pupils], seat_y[pupils] = np.where(yp, yx, sx), np.where(yp, yy, sy) + 1.5
        primary[teachers] = first + cls_of_t
        seat_x[teachers] = wv[cls_of_t] / 2
        seat_y[teachers] = 0.5
    else:
        # no pupils: teachers work like other service staff
        role[role == R["teacher"]] = R["other"]
    uni = np.flatnonzero((role == R["student"]) & (a >= 18))
    assign_fixed("university", uni, pop.district[uni].astype(np.int64), int(PL["university"]["class_size"]),
                 order_key=rnd_key)
    cs_ = np.flatnonzero(role == R["civil_servant"])
    assign_fixed("office", cs_, pop.district[cs_].astype(np.int64), int(PL["office"]["size"]), order_key=rnd_key)
    sv = np.flatnonzero((role == R["other"]) & (pop.work_kind == WORK_SERVICE))
    assign_fixed("workplace", sv, pop.commune[sv].astype(np.int64), int(PL["workplace"]["size"]),
                 order_key=rnd_key)
    farm = np.flatnonzero((role == R["other"]) & (pop.work_kind == WORK_AGRI))
    assign_fixed("workplace", farm, pop.commune[farm].astype(np.int64) + (1 << 40), int(PL["workplace"]["farm_team"]),
                 order_key=rnd_key)
    fw = np.flatnonzero(role == R["factory_worker"])
    assign_fixed("factory", fw, pop.district[fw].astype(np.int64), int(PL["factory"]["size"]), order_key=rnd_key)
    hw = np.flatnonzero((role == R["health_worker"]) | (role == R["patient"]))
    assign_fixed("hospital", hw, pop.district[hw].astype(np.int64), int(PL["hospital"]["size"]),
                 order_key=rnd_key)
    # in-patients sleep in their ward bed
    pat = np.flatnonzero(role == R["patient"])
    sleep_x[pat], sleep_y[pat] = seat_x[pat], seat_y[pat]

    # visit places (market, restaurant, gathering spot: neighbourhood level; hotel, station hall: district
    # level) are scale-free: the population (consecutive persons = neighbouring households, urban first)
    # is cut into K = max(1, round(n / per_people)) equal blocks, one instance per block, so every
    # instance has the catchment n / K ~ per_people persons at any --scale (communes of a small miniature
    # are partial; sizing per commune made its market smaller than a real one). Consecutive blocks form
    # a choice area of ~commune_size (neighbourhood level) or ~district_size persons; a visitor picks an
    # instance of its area at random (gathering spots: always its own block's).
    n_dist = int(pop.district.max()) + 1
    visit_first, visit_count, visit_level, visit_area = {}, {}, {}, {}
    block_of = {}
    agents = np.arange(n, dtype=np.int64)
    for t, level in (("market", 0), ("restaurant", 0), ("hotel", 1), ("station", 1), ("gathering", 0)):
        p = PL[t]
        K = max(1, int(round(n / float(p["per_people"]))))
        block = agents * K // n
        area_size = scn.population["commune_size"] if level == 0 else scn.population["district_size"]
        m = max(1, int(round(float(area_size) / float(p["per_people"]))))
        cnt = np.bincount(np.arange(K) // m)
        catch = n / K
        occ = 1.5 * catch * 0.5 * (p["visit_weekday"] + p["visit_weekend"]) * p["dwell_min"] / \
            max(p["close"] - p["open"], 1)
        cap = max(int(p["size"]), int(np.ceil(occ)))
        cap_i = np.full(K, cap, np.int64)
        if t == "restaurant":
            tables = -(-cap_i // 4)
            cols = np.ceil(np.sqrt(tables))
            w = cols * p["table_gap_m"]
            h = np.ceil(tables / cols) * p["table_gap_m"]
            cap_i = tables * 4
            layout = "tables"
        else:
            w, h = _room(cap_i, p["spacing_m"], p["density_m2"])
            layout = "mobile"
        first = add(t, w, h, cap_i, layout)
        visit_first[t] = first + np.r_[0, np.cumsum(cnt)[:-1]]
        visit_count[t] = cnt
        visit_level[t] = level
        visit_area[t] = block // m
        block_of[t] = first + block
    # offices and hospital wards as visit places (citizens, outpatients and visitors): by district
    for t in ("office", "hospital"):
        ids = np.flatnonzero(np.concatenate(types) == T[t]) if types else np.zeros(0, np.int64)
        # instances of type t, grouped by the district of their first member
        mem = np.flatnonzero((primary >= 0))
        mem = mem[np.isin(primary[mem], ids)]
        inst_d = np.full(n_inst, -1, np.int64)
        inst_d[primary[mem]] = pop.district[mem]
        ids = ids[np.lexsort((ids, inst_d[ids]))]
        cnt = np.bincount(inst_d[ids], minlength=n_dist) if len(ids) else np.zeros(n_dist, np.int64)
        first = np.r_[0, np.cumsum(cnt)[:-1]]
        # visit_first indexes into a permutation table: store ids directly via offsets
        visit_first[t] = (first, ids)
        visit_count[t] = cnt
        visit_level[t] = 1

    # neighbourhood gathering spot of every agent: the spot of its block of neighbouring households
    gathering = block_of["gathering"]

    def place_staff(t, members):
        """Staff at fixed spots in the visit instances of their commune/district."""
        if len(members) == 0:
            return
        area = visit_area[t][members]
        o = np.lexsort((rnd_key[members], area))
        members, area = members[o], area[o]
        _, first_idx = np.unique(area, return_index=True)
        grp = np.searchsorted(area[first_idx], area)
        rank = np.arange(len(members)) - first_idx[grp]
        inst = visit_first[t][area] + rank % visit_count[t][area]
        primary[members] = inst
        within = rank // visit_count[t][area]
        capv = np.concatenate(caps)[inst]
        sx, sy = _grid(within, np.maximum(capv, within + 1), PL[t]["spacing_m"])
        seat_x[members], seat_y[members] = sx, sy

    place_staff("market", np.flatnonzero(role == R["market_vendor"]))
    place_staff("restaurant", np.flatnonzero((role == R["other"]) & (pop.work_kind == WORK_RESTAURANT)))
    place_staff("hotel", np.flatnonzero((role == R["other"]) & (pop.work_kind == WORK_HOTEL)))
    tw = np.flatnonzero(role == R["transport_worker"])
    half = rnd_key[tw] < 0.5
    place_staff("station", tw[half])
    drivers = tw[~half]

    # buses: routes per district, sized for the district's commuters (two rides a day, 4 trips per bus)
    bp = PL["bus"]
    bus_route = np.full(n, -1, np.int64)
    users = np.flatnonzero(pop.bus_user)
    n_users = np.bincount(pop.district[users], minlength=n_dist)
    n_drivers = np.bincount(pop.district[drivers], minlength=n_dist)
    # one instance per busload: ~size riders per route (the morning and evening rides of a route's
    # riders overlap), so a bus's crowding does not depend on the scale
    n_routes = np.maximum(np.round(n_users / float(bp["size"])), 1).astype(np.int64)
    n_routes = np.where(n_users + n_drivers > 0, n_routes, 0)
    if n_routes.sum():
        w, h = _room(np.full(int(n_routes.sum()), int(bp["size"])), bp["spacing_m"], bp["density_m2"])
        first = add("bus", w, h, np.full(int(n_routes.sum()), int(bp["size"])), "seated")
        r0 = first + np.r_[0, np.cumsum(n_routes)[:-1]]
        d = pop.district[users]
        bus_route[users] = r0[d] + (np.floor(rnd_key[users] * 1e6).astype(np.int64) % np.maximum(n_routes[d], 1))
        dd = pop.district[drivers]
        primary[drivers] = r0[dd] + (np.floor(rnd_key[drivers] * 1e6).astype(np.int64)
                                     % np.maximum(n_routes[dd], 1))
        seat_x[drivers], seat_y[drivers] = 0.5, 0.5
    else:
        role[drivers] = R["other"]

    ntypes = len(PLACE_TYPES)
    spacing = np.array([PL[t].get("spacing_m", 1.0) for t in PLACE_TYPES], np.float32)
    move = np.array([PL[t].get("move_prob", 0.0) for t in PLACE_TYPES], np.float32)
    leg = np.array([PL[t].get("leg_s", 600.0) for t in PLACE_TYPES], np.float32)
    gap = np.array([PL[t].get("table_gap_m", 2.5) for t in PLACE_TYPES], np.float32)
    assert len(spacing) == ntypes
    return Places(inst_type=np.concatenate(types), inst_w=np.concatenate(ws), inst_h=np.concatenate(hs),
                  inst_cap=np.concatenate(caps), inst_layout=np.concatenate(lays), primary=primary,
                  seat_x=seat_x, seat_y=seat_y, sleep_x=sleep_x, sleep_y=sleep_y, bus_route=bus_route,
                  visit_first=visit_first, visit_count=visit_count, visit_level=visit_level,
                  type_spacing=spacing, type_move=move, type_leg=leg, type_gap=gap, gathering=gathering,
                  visit_area=visit_area)


def visit_area(places: Places, t: str, pop) -> np.ndarray:
    """Choice area (int64 (n,)) of every agent for visit type ``t``: its block group for market,
    restaurant, hotel, station and gathering (:attr:`Places.visit_area`), its district for office and
    hospital visits."""
    if places.visit_area is not None and t in places.visit_area:
        return places.visit_area[t]
    return pop.district.astype(np.int64)


def visit_instances(places: Places, t: str, area: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Instance of type ``t`` visited by agents of choice area ``area`` (:func:`visit_area`) given
    uniform draws ``u`` in [0, 1) (-1 where the area has no such place)."""
    cnt = places.visit_count[t][area]
    k = np.minimum((u * cnt).astype(np.int64), np.maximum(cnt - 1, 0))
    vf = places.visit_first[t]
    if isinstance(vf, tuple):
        first, ids = vf
        idx = first[area] + k
        out = np.where(cnt > 0, ids[np.minimum(idx, max(len(ids) - 1, 0))] if len(ids) else -1, -1)
    else:
        out = np.where(cnt > 0, vf[area] + k, -1)
    return out.astype(np.int64)
