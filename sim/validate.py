"""``proxitrace validate``: the simulated contact structure against Prem et al. 2021, and households.

The simulator's places and schedules are run for a weekday, a Saturday and a Sunday (weights 5/7, 1/7,
1/7: an average day of the week, as the survey-based matrices are) with the same positions as
:func:`sim.run.simulate`; every pair of agents in one place instance within ``sim.close_m`` (2 m) at a
step counts ``step_s`` seconds (the static night counts its steps once each, as in the run). Per person
and day, a *partner* in a setting is another agent with any time within 2 m there (``any_duration``)
or with at least ``sim.close_minutes`` (15 min) cumulative there (``close_15min``); ``all`` counts the
day's distinct partners with the 15 minutes summed over every setting (the official close contact).

Mapping of places to Prem's four settings (from the respondent's side, as a survey records it):

=============  ================================================================================
``home``       one's own home (household members; the survey's home matrix is household-based)
``school``     school classes and university lecture groups (pupils, students, and their teachers)
``work``       one's own workplace (office, service workplace, factory floor, hospital ward as staff,
               stall at the market, restaurant/hotel/station staff, bus driver)
``community``  everything else: markets, restaurants, hotels and stations as visitors, buses as
               riders, offices and hospitals as visitors, in-patients in their ward
=============  ================================================================================

Reference matrices: Prem K et al. (2021) PLoS Comput Biol 17(7): e1009098, 16 five-year age groups,
mean contacts per day by age of the respondent (row) and of the contact (column). Read from a folder
of CSVs (``all.csv``, ``home.csv``, ``school.csv``, ``work.csv``, ``community.csv``; the layout of
``../shared/data/prem2021-vietnam/``) or, when no folder is given, from the optional package
``starsim-data`` (``pip install starsim-data``: Prem 2021 for 177 countries; the scenario's
``meta.country``, default Vietnam).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.neighbours import pairs_within_groups
from sim.places import T
from sim.population import R
from sim.positions import positions

__all__ = ["SETTINGS", "AGE_GROUPS", "DAY_KINDS", "age_group", "agent_settings", "ContactTally",
           "measure_day", "contacts_by_age", "load_prem", "household_stats"]

SETTINGS = ("home", "school", "work", "community")
HOME, SCHOOL, WORK, COMMUNITY = range(4)
#: Prem's 16 age groups
AGE_GROUPS = tuple(f"{5 * k}-{5 * k + 4}" for k in range(15)) + ("75+",)
#: (weekday index 0 Monday .. 6 Sunday, weight in an average week)
DAY_KINDS = (("weekday", 0, 5 / 7), ("saturday", 5, 1 / 7), ("sunday", 6, 1 / 7))


def age_group(age: np.ndarray) -> np.ndarray:
    """Index (0..15) of Prem's five-year age group of ``age`` (years, int array (n,))."""
    return np.minimum(np.asarray(age, np.int64) // 5, 15)


def agent_settings(g: np.ndarray, pop, places) -> np.ndarray:
    """Setting code (0 home, 1 school, 2 work, 3 community) of every agent at place instance ``g``
    (int64 (n,), as returned by :func:`sim.positions.positions`). See the module's mapping table."""
    t = places.inst_type[g]
    s = np.full(len(g), COMMUNITY, np.int8)
    own = (g == places.primary) & (pop.role != R["patient"])
    s[own] = WORK
    s[(t == T["school"]) | (t == T["university"])] = SCHOOL
    s[t == T["home"]] = HOME
    return s


@dataclass
class ContactTally:
    """Directed partner seconds of one day: ``src`` met ``dst`` for ``seconds`` within the close
    distance while ``src`` was in ``setting`` (arrays of equal length, one row per (src, dst, setting))."""
    src: np.ndarray       # i8
    dst: np.ndarray       # i8
    setting: np.ndarray   # i1
    seconds: np.ndarray   # f8


def _reduce(keys: list, secs: list):
    k = np.concatenate(keys)
    w = np.concatenate(secs)
    u, inv = np.unique(k, return_inverse=True)
    return [u], [np.bincount(inv, weights=w, minlength=len(u))]


def measure_day(scn, pop, places, sched, hseed: int, radius: float | None = None, only=None,
                stride: int = 1) -> ContactTally:
    """Close-distance partner seconds of one scheduled day (positions exactly as the run draws them).

    ``sched``: a :class:`sim.schedule.DaySchedule`; ``hseed``: the run's counter-based hash seed;
    ``radius``: m (default ``sim.close_m``); ``only``: bool (n,) restricting the pairs to those agents
    (e.g. phone owners); ``stride``: evaluate every ``stride``-th active step, each counting ``stride``
    steps (a cheaper estimate of the same day). Cost: one positions call and one neighbour search per
    evaluated step (and one for the static night).
    """
    n = pop.n
    step_s = float(scn.sim["step_s"])
    close = float(scn.sim["close_m"]) if radius is None else float(radius)
    stride = int(stride)
    if stride < 1:
        raise ValueError(f"stride: must be a positive integer, got {stride!r}")
    sub = np.flatnonzero(only) if only is not None else None
    S = sched.n_steps
    static_steps = sched.static_lo + (S - sched.static_hi)
    plan = [(0, True, static_steps * step_s)] if static_steps else []
    plan += [(s, False, step_s * min(stride, sched.static_hi - s))
             for s in range(sched.static_lo, sched.static_hi, stride)]
    keys, secs = [], []
    xy = np.empty((n, 2))
    for k, (step, static, w) in enumerate(plan):
        g, x, y = positions(hseed, sched, pop, places, step, sched.day * 86400.0 + step * step_s, static,
                            scn.sim["jitter_m"])
        xy[:, 0], xy[:, 1] = x, y
        if sub is None:
            i, j = pairs_within_groups(xy, g, close)
        else:
            i, j = pairs_within_groups(xy[sub], g[sub], close)
            i, j = sub[i], sub[j]
        if len(i) == 0:
            continue
        s = agent_settings(g, pop, places).astype(np.int64)
        keys.append(np.concatenate([(i * n + j) * 4 + s[i], (j * n + i) * 4 + s[j]]))
        secs.append(np.full(2 * len(i), w))
        if len(keys) >= 24:
            keys, secs = _reduce(keys, secs)
    if not keys:
        e = np.zeros(0, np.int64)
        return ContactTally(e, e, e.astype(np.int8), e.astype(np.float64))
    keys, secs = _reduce(keys, secs)
    k, w = keys[0], secs[0]
    pair = k // 4
    return ContactTally(src=pair // n, dst=pair % n, setting=(k % 4).astype(np.int8), seconds=w)


def _count(src, dst, grp, n_grp, n_per):
    """(mean partners per person (n_grp,), matrix (n_grp, n_grp) of partners per person)."""
    m = np.zeros((n_grp, n_grp))
    np.add.at(m, (grp[src], grp[dst]), 1.0)
    per = np.where(n_per > 0, n_per, 1).astype(np.float64)
    return m.sum(axis=1) / per, m / per[:, None]


def contacts_by_age(tally: ContactTally, age: np.ndarray, close_s: float) -> dict:
    """Mean partners per person-day by Prem age group, per setting and ``all``.

    Returns ``{setting: {"any": (16,), "close": (16,), "any_matrix": (16, 16), "close_matrix":
    (16, 16)}}`` for the four settings and ``"all"``; ``close_s`` is the close-contact time (s).
    """
    grp = age_group(age)
    n_per = np.bincount(grp, minlength=16)
    out = {}
    for s, name in enumerate(SETTINGS):
        m = tally.setting == s
        a_any, m_any = _count(tally.src[m], tally.dst[m], grp, 16, n_per)
        c = m & (tally.seconds >= close_s)
        a_cl, m_cl = _count(tally.src[c], tally.dst[c], grp, 16, n_per)
        out[name] = {"any": a_any, "close": a_cl, "any_matrix": m_any, "close_matrix": m_cl}
    # all settings: one partner per (src, dst), time summed over settings
    n = len(age)
    pair = tally.src * n + tally.dst
    u, inv = np.unique(pair, return_inverse=True)
    tot = np.bincount(inv, weights=tally.seconds, minlength=len(u))
    src, dst = u // n, u % n
    a_any, m_any = _count(src, dst, grp, 16, n_per)
    c = tot >= close_s
    a_cl, m_cl = _count(src[c], dst[c], grp, 16, n_per)
    out["all"] = {"any": a_any, "close": a_cl, "any_matrix": m_any, "close_matrix": m_cl}
    return out


def load_prem(prem_dir=None, country: str = "Vietnam") -> dict:
    """Prem 2021 matrices ``{setting: (16, 16) float}`` for ``all`` and the four settings.

    ``prem_dir``: a folder with ``<setting>.csv`` (first column ``age_group``, then the 16 contact age
    groups); without it, the optional package ``starsim-data`` is asked for ``country``. Errors name
    the file and line, or say how to get the package.
    """
    out = {}
    if prem_dir is not None:
        d = Path(prem_dir)
        for s in ("all",) + SETTINGS:
            p = d / f"{s}.csv"
            if not p.is_file():
                raise ValueError(f"--prem-dir: {p}: no such file (need all, home, school, work, community .csv)")
            lines = p.read_text(encoding="utf-8").strip().splitlines()
            head = lines[0].split(",")
            if head[1:] != list(AGE_GROUPS) or len(lines) != 17:
                raise ValueError(f"{p}: line 1: expected age_group and the 16 groups {AGE_GROUPS[0]}..75+ "
                                 f"and 16 rows")
            rows = []
            for ln, line in enumerate(lines[1:], start=2):
                f = line.split(",")
                try:
                    vals = [float(v) for v in f[1:]]
                except ValueError:
                    raise ValueError(f"{p}: line {ln}: not numbers") from None
                if f[0] != AGE_GROUPS[ln - 2] or len(vals) != 16 or not all(np.isfinite(vals)) \
                        or min(vals) < 0:
                    raise ValueError(f"{p}: line {ln}: expected age group {AGE_GROUPS[ln - 2]} and 16 "
                                     f"non-negative numbers")
                rows.append(vals)
            out[s] = np.asarray(rows)
        return out
    try:
        import starsim_data as ssd      # optional extra, heavy (sciris, h5py, pandas)
    except ImportError:
        raise ValueError("no reference matrices: pass --prem-dir DIR (CSV files all/home/school/work/"
                         "community.csv) or install the optional package: pip install starsim-data") from None
    for s in ("all",) + SETTINGS:
        try:
            m = np.asarray(ssd.load(location=country, which="prem2021", kind=s), dtype=np.float64)
        except (KeyError, ValueError) as e:
            raise ValueError(f"starsim-data: no Prem 2021 matrix {s!r} for {country!r}: {e}") from None
        if m.shape != (16, 16):
            raise ValueError(f"starsim-data: Prem 2021 {s!r} for {country!r} has shape {m.shape}, not (16, 16)")
        out[s] = m
    return out


def household_stats(pop) -> dict:
    """Household size and composition checks of a population (see ``sim.population``).

    Returns ``size_share`` (share of households of size 1..6, the last 6+), ``mean_size``,
    ``child_no_adult`` (share of children under 15 without a member 18+), ``child_with_parent_gap``
    (share of children under 15 with a member 18-45 years older), ``eldest_within_10`` (of households
    with two or more members aged 20-59: share whose two eldest such members are within 10 years),
    ``elder_with_child`` (share of persons 60+ with a member 18-45 years younger: co-residence with a
    child's family), ``one_person_share``,
    ``age_corr`` (correlation of ages of pairs of household members) and ``kind_share`` (share of
    households per :data:`sim.population.HH_KINDS`, when the population records it).
    """
    age = pop.age.astype(np.int64)
    hh = pop.household
    H = pop.n_households
    sizes = pop.hh_size.astype(np.int64)
    size_share = np.bincount(np.minimum(sizes, 6), minlength=7)[1:] / H
    # pairs of members (i < j) within households
    a = np.arange(pop.n, dtype=np.int64)
    end = pop.hh_start[hh] + sizes[hh]
    c = end - a - 1
    pi = np.repeat(a, c)
    off = np.repeat(np.cumsum(c) - c, c)
    pj = pi + 1 + (np.arange(len(pi), dtype=np.int64) - off)
    corr = float(np.corrcoef(age[pi], age[pj])[0, 1]) if len(pi) > 2 else float("nan")
    adult_hh = np.bincount(hh, weights=(age >= 18), minlength=H) > 0
    child = age < 15
    n_child = int(child.sum())
    # a member 18-45 years older, over both orders of each pair
    gap = np.concatenate([age[pj] - age[pi], age[pi] - age[pj]])
    young = np.concatenate([pi, pj])
    ok = (gap >= 18) & (gap <= 45)
    has_parent = np.zeros(pop.n, bool)
    has_parent[young[ok]] = True
    old_ = np.concatenate([pj, pi])
    has_child = np.zeros(pop.n, bool)
    has_child[old_[ok]] = True
    elder = age >= 60
    # two eldest members aged 20-59
    mid = (age >= 20) & (age <= 59)
    idx = np.flatnonzero(mid)
    o = np.lexsort((-age[idx], hh[idx]))
    idx = idx[o]
    first = np.r_[True, hh[idx][1:] != hh[idx][:-1]]
    starts = np.flatnonzero(first)
    cnt = np.diff(np.r_[starts, len(idx)])
    two = starts[cnt >= 2]
    within = np.abs(age[idx[two]] - age[idx[two + 1]]) <= 10
    out = {"n_households": H, "mean_size": float(sizes.mean()), "size_share": size_share,
           "child_no_adult": float((~adult_hh[hh[child]]).mean()) if n_child else 0.0,
           "child_with_parent_gap": float(has_parent[child].mean()) if n_child else 1.0,
           "eldest_within_10": float(within.mean()) if len(two) else float("nan"),
           "elder_with_child": float(has_child[elder].mean()) if elder.any() else float("nan"),
           "one_person_share": float(size_share[0]),
           "age_corr": corr}
    kind = getattr(pop, "hh_kind", None)
    if kind is not None:
        out["kind_share"] = np.bincount(kind, minlength=int(kind.max()) + 1) / H
    return out
