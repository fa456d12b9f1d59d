"""Daily schedules: where every agent is at every time step of one day.

A day has ``S = 86400 / step_s`` steps (288 at the default 300 s). Every agent gets up to :data:`M`
*segments* ``[start, end)`` (in steps) at a place instance; at a step the **last** segment that covers it
wins (visits are listed after work, so a market trip overrides the desk). Outside every segment the agent
is at home: awake between its ``wake`` and ``sleep`` steps, asleep (static) otherwise.

Routines (times in minutes of the day, durations in minutes, in ``scenario.schedule`` and
``scenario.places.<type>``; probabilities per person-day; day-to-day randomness from the day's generator;
every start jittered by ± ``start_jitter``):

* pupils/students (slot 0-1): school Mon–Fri ``school_start``–``school_end``; at lunch either home
  (``home_lunch_share``) or stay in class;
* civil servants, service workers, farm workers, teachers: ``work_start``–``work_end`` Mon–Fri,
  Saturday with probability ``saturday_work_share``; lunch at home, at a restaurant (slot 2,
  probability 2.5 × ``restaurant.visit_weekday`` of those not going home) or at the desk;
* factory workers ``factory_start``–``factory_end`` Mon–Sat (canteen in the factory);
* health workers: day shift 07:00–17:00, or (``roles.night_shift_share`` per day) a night shift
  00:00–07:00 and 19:00–24:00; in-patients in their ward all day;
* market vendors at their stall from the market's ``open`` to ``close``; restaurant, hotel and
  station staff and bus drivers ``work_start - 90`` to ``work_end + 60`` on 6 days of 7;
* bus commuters (slots 3-4) ride ``bus.ride_min`` before work/school and after it;
* visits (slots 5-7) with per-day probabilities ``visit_weekday``/``visit_weekend`` of each visit type
  (adults; children 6+ at a third of the rate), after work for those working: market (between its
  ``open`` and ``close``), evening restaurant/café (``evening_start``–``evening_end``; ages 18-29
  ``young_adult_factor`` × as often), and one rarer errand: office (weekdays), hospital (outpatients and
  visitors), hotel, station. Visit lengths are ``dwell_min × U(0.5, 1.5)``. A visitor picks an instance
  of its choice area (:func:`sim.places.visit_area`);
* **home visits** (slot 9): each household visits, with probability ``home.visit_weekday``/
  ``visit_weekend``, a household within ``home.visit_range`` households (neighbours and relatives of
  the hamlet), starting uniformly between ``home.open`` and ``home.close - dwell`` and lasting
  ``home.dwell_min × U(0.5, 1.5)``; the members who are free then (not working, not on a night shift,
  not in-patients) go together;
* **neighbourhood gathering** (slot 8): persons 3+ go with probability ``gathering.visit_*`` (children
  3-17 × ``child_factor``, persons 70+ × ``elder_factor``) to the gathering spot of their block of
  households, between ``gathering.open`` (or the end of work) and ``close``, for ``dwell_min ×
  U(0.5, 1.5)``; visitors and hosts of a home visit leave before the visit starts.

Segment kinds: :data:`OWN` (the agent's fixed spot in its primary instance), :data:`VISIT` (a random
spot / random waypoint), :data:`NIGHT` (own spot, also valid during the static night).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sim.places import visit_area, visit_instances
from sim.population import R, WORK_AGRI, WORK_HOTEL, WORK_RESTAURANT, WORK_SERVICE

__all__ = ["M", "OWN", "VISIT", "NIGHT", "DaySchedule", "make_day"]

M = 10                     #: segments per agent and day
OWN, VISIT, NIGHT = 0, 1, 2


@dataclass
class DaySchedule:
    """One day's schedule. ``seg_*`` have shape (n, M); steps are ints in [0, S]."""
    day: int
    weekday: int               #: 0 Monday .. 6 Sunday
    n_steps: int               #: steps per day
    seg_start: np.ndarray      # i4
    seg_end: np.ndarray        # i4
    seg_inst: np.ndarray       # i8, -1 = unused slot
    seg_kind: np.ndarray       # i1
    wake: np.ndarray           # i4, step of getting up
    sleep: np.ndarray          # i4, step of going to bed
    static_lo: int             #: steps [0, static_lo) and [static_hi, S) are the static night
    static_hi: int

    def place_mask(self, inst_type: np.ndarray) -> np.ndarray:
        """i4 bitmask per agent of place types (bit = PLACE_TYPES index) of the day's segments."""
        used = self.seg_inst >= 0
        bits = np.where(used, np.left_shift(1, inst_type[np.maximum(self.seg_inst, 0)].astype(np.int32)), 0)
        return np.bitwise_or.reduce(bits.astype(np.int32), axis=1) | 1      # everyone is at home


def make_day(scn, pop, places, day: int, rng: np.random.Generator) -> DaySchedule:
    """Schedule of day ``day`` (0-based) drawn with ``rng`` (vectorised over agents)."""
    n = pop.n
    step_s = int(scn.sim["step_s"])
    S = 86400 // step_s
    sc, PL = scn.schedule, scn.places
    weekday = (int(sc["weekday_of_day0"]) + day) % 7
    weekend = weekday >= 5

    def st(minutes):
        return np.clip(np.round(np.asarray(minutes, np.float64) * 60.0 / step_s), 0, S).astype(np.int32)

    start = np.zeros((n, M), np.int32)
    end = np.zeros((n, M), np.int32)
    inst = np.full((n, M), -1, np.int64)
    kind = np.zeros((n, M), np.int8)
    role, a, wk = pop.role, pop.age.astype(np.int64), pop.work_kind
    prim = places.primary

    def put(slot, mask, s0, s1, where, k=OWN):
        m = mask & (where >= 0) & (s1 > s0)
        idx = np.flatnonzero(m)
        start[idx, slot] = np.broadcast_to(s0, (n,))[idx]
        end[idx, slot] = np.broadcast_to(s1, (n,))[idx]
        inst[idx, slot] = np.broadcast_to(where, (n,))[idx]
        kind[idx, slot] = k

    jit = lambda: rng.uniform(-sc["start_jitter"], sc["start_jitter"], n)  # noqa: E731
    wake = st(sc["wake"] + rng.uniform(-sc["wake_jitter"], sc["wake_jitter"], n))
    sleep = st(sc["sleep"] + rng.uniform(-sc["sleep_jitter"], sc["sleep_jitter"], n))

    # -- primary activity --------------------------------------------------------------------------
    sat = weekday == 5
    pupil = role == R["student"]
    office_like = (role == R["civil_servant"]) | (role == R["teacher"]) | \
        ((role == R["other"]) & ((wk == WORK_SERVICE) | (wk == WORK_AGRI)))
    works_today = np.zeros(n, bool)
    s0 = np.zeros(n, np.int32)
    s1 = np.zeros(n, np.int32)
    if not weekend:
        m = pupil
        s0 = np.where(m, st(sc["school_start"] + jit()), s0)
        s1 = np.where(m, st(sc["school_end"] + jit()), s1)
        works_today |= m
    work_day = np.full(n, not weekend) | (sat & (rng.random(n) < sc["saturday_work_share"]))
    m = office_like & work_day
    s0 = np.where(m, st(sc["work_start"] + jit()), s0)
    s1 = np.where(m, st(sc["work_end"] + jit()), s1)
    works_today |= m
    m = (role == R["factory_worker"]) & (weekday != 6)
    s0 = np.where(m, st(sc["factory_start"] + jit()), s0)
    s1 = np.where(m, st(sc["factory_end"] + jit()), s1)
    works_today |= m
    hw = role == R["health_worker"]
    night = hw & (rng.random(n) < scn.roles["night_shift_share"])
    day_shift = hw & ~night & (weekday != 6)
    s0 = np.where(day_shift, st(420 + jit()), s0)
    s1 = np.where(day_shift, st(1020 + jit()), s1)
    works_today |= day_shift
    mk = role == R["market_vendor"]
    s0 = np.where(mk, st(PL["market"]["open"] + jit()), s0)
    s1 = np.where(mk, st(PL["market"]["close"] + jit()), s1)
    works_today |= mk
    staff = ((role == R["other"]) & ((wk == WORK_RESTAURANT) | (wk == WORK_HOTEL))) | \
        (role == R["transport_worker"])
    staff &= rng.random(n) < 6.0 / 7.0
    s0 = np.where(staff, st(sc["work_start"] - 90 + jit()), s0)
    s1 = np.where(staff, st(sc["work_end"] + 60 + jit()), s1)
    works_today |= staff
    works_today &= prim >= 0
    # lunch break: home, restaurant or stay (pupils, office-like; factories have a canteen)
    lunch_home = (pupil | office_like) & works_today & (rng.random(n) < sc["home_lunch_share"])
    ls, le = st(sc["lunch_start"] + jit()), st(sc["lunch_end"] + jit())
    put(0, works_today & ~lunch_home, s0, s1, prim)
    put(0, lunch_home, s0, ls, prim)
    put(1, lunch_home, le, s1, prim)
    p_lunch_rest = min(1.0, 2.5 * PL["restaurant"]["visit_weekday"])
    lunch_rest = office_like & works_today & ~lunch_home & (rng.random(n) < p_lunch_rest)
    u = rng.random(n)
    rest = visit_instances(places, "restaurant", visit_area(places, "restaurant", pop), u)
    put(2, lunch_rest, ls, np.minimum(le, ls + st(PL["restaurant"]["dwell_min"])), rest, VISIT)
    # night shift and in-patients: valid in the static night too
    put(0, night, np.zeros(n, np.int32), st(420), prim, NIGHT)
    put(1, night, st(1140), np.full(n, S, np.int32), prim, NIGHT)
    pat = role == R["patient"]
    put(0, pat, np.zeros(n, np.int32), np.full(n, S, np.int32), prim, NIGHT)

    # -- bus rides -----------------------------------------------------------------------------------
    ride = st(PL["bus"]["ride_min"])
    bus = pop.bus_user & works_today & (places.bus_route >= 0)
    put(3, bus, np.maximum(s0 - ride, 0), s0, places.bus_route, VISIT)
    put(4, bus, s1, np.minimum(s1 + ride, S), places.bus_route, VISIT)

    # -- visits --------------------------------------------------------------------------------------
    can_visit = (a >= 6) & (role != R["patient"])
    rate = np.where(a >= 18, 1.0, 1.0 / 3.0)
    busy_end = np.where(works_today, s1, 0)

    def visit(slot, t, lo_min, hi_min, area, mask=None):
        p = PL[t]
        prob = p["visit_weekend"] if weekend else p["visit_weekday"]
        f = rate
        if "young_adult_factor" in p:      # cafés: young adults go out more often (calibration, sim.scenario)
            f = rate * np.where((a >= 18) & (a <= 29), p["young_adult_factor"], 1.0)
        go = can_visit & (rng.random(n) < prob * f)
        if mask is not None:
            go &= mask
        dwell = st(p["dwell_min"] * rng.uniform(0.5, 1.5, n))
        dwell = np.maximum(dwell, 1)
        lo = np.maximum(st(lo_min), np.where(works_today, busy_end, 0)) if t != "hospital" else st(lo_min)
        hi = st(hi_min) - dwell
        ok = go & (hi > lo)
        t0 = lo + np.floor(rng.random(n) * np.maximum(hi - lo, 1)).astype(np.int32)
        where = visit_instances(places, t, area, rng.random(n))
        put(slot, ok, t0, t0 + dwell, where, VISIT)

    visit(5, "market", PL["market"]["open"], PL["market"]["close"], visit_area(places, "market", pop))
    visit(6, "restaurant", sc["evening_start"], sc["evening_end"], visit_area(places, "restaurant", pop))
    # one of the rarer errands per day, drawn by type in turn (later types override earlier slot 7)
    for t, lo_m, hi_m in (("office", sc["work_start"], sc["work_end"]),
                          ("hospital", sc["work_start"], sc["work_end"]),
                          ("hotel", PL["hotel"]["open"], PL["hotel"]["close"]),
                          ("station", PL["station"]["open"], PL["station"]["close"])):
        if t in ("office",) and weekend:
            continue
        visit(7, t, lo_m, hi_m, visit_area(places, t, pop))

    # home visits (slot 9): a household visits a neighbouring household; its members free then go
    hp = PL["home"]
    busy_from = np.full(n, S, np.int32)
    H = pop.n_households
    if H > 1:
        hprob = hp["visit_weekend"] if weekend else hp["visit_weekday"]
        hgo = rng.random(H) < hprob
        r = int(hp["visit_range"])
        off = rng.integers(1, r + 1, H) * np.where(rng.random(H) < 0.5, -1, 1)
        host = np.clip(np.arange(H) + off, 0, H - 1)
        host = np.where(host == np.arange(H), np.where(np.arange(H) > 0, host - 1, host + 1), host)
        hdw = np.maximum(st(hp["dwell_min"] * rng.uniform(0.5, 1.5, H)), 1)
        ht0 = st(hp["open"]) + np.floor(rng.random(H) * np.maximum(st(hp["close"]) - hdw - st(hp["open"]), 1)
                                        ).astype(np.int32)
        hh = pop.household
        free = ~works_today | (s1 <= ht0[hh])
        m = hgo[hh] & free & (role != R["patient"]) & ~night
        put(9, m, ht0[hh], ht0[hh] + hdw[hh], host[hh], VISIT)
        # the visitors and their hosts are busy from the visit's start: a gathering ends before it
        host_from = np.full(H, S, np.int32)
        np.minimum.at(host_from, host[hgo], ht0[hgo])
        busy_from = np.minimum(np.where(m, ht0[hh], S), host_from[hh]).astype(np.int32)

    # neighbourhood gathering (slot 8): afternoon/evening, a fixed spot per block of households
    gp = PL["gathering"]
    if places.gathering is not None:
        prob = gp["visit_weekend"] if weekend else gp["visit_weekday"]
        kid = (a >= 3) & (a < 18)
        go = (role != R["patient"]) & (a >= 3) & \
            (rng.random(n) < prob * np.where(kid, gp["child_factor"], np.where(a >= 70, gp["elder_factor"], 1.0)))
        dwell = np.maximum(st(gp["dwell_min"] * rng.uniform(0.5, 1.5, n)), 1)
        lo = np.maximum(st(gp["open"]), np.where(works_today, s1, 0))
        hi = np.minimum(st(gp["close"]), busy_from) - dwell
        t0 = lo + np.floor(rng.random(n) * np.maximum(hi - lo, 1)).astype(np.int32)
        put(8, go & (hi > lo), t0, t0 + dwell, places.gathering, VISIT)
    # static night: no agent is anywhere but its night spot before static_lo or from static_hi on
    active = (inst >= 0) & (kind != NIGHT)
    lo = int(min(wake.min(initial=S), np.where(active, start, S).min(initial=S)))
    hi = int(max(sleep.max(initial=0), np.where(active, end, 0).max(initial=0)))
    hi = max(hi, lo)
    return DaySchedule(day=day, weekday=weekday, n_steps=S, seg_start=start, seg_end=end, seg_inst=inst,
                       seg_kind=kind, wake=wake, sleep=sleep, static_lo=lo, static_hi=hi)
