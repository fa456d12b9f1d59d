"""The contact process of the epidemic closed loop: a cycle of template days of contact records.

Contact process
---------------
The loop runs on a *day-level contact process*: a cycle of template days (:class:`ContactDays`), each
a table of contact records (``i, j``, time of day, distance, duration, place type, ``close`` = a true
close contact, ``notify_i`` / ``notify_j`` = the Bluetooth rule fires on i's / j's phone) and,
optionally, QR check-ins. Day ``d`` of the epidemic uses template ``d mod D``. Sources:

* :func:`contacts_from_run` -- a simulator run folder: the pair table of the tracing pipeline (the rule
  on the simulated radio) joined with the ground truth (minutes within 2 m, minimum distance) and the
  households (``population.parquet``: a pair of one household is at home). One record per pair and
  day: duration = minutes within the close distance, distance = the midpoint between the minimum
  distance and the close distance (the ground truth keeps no distance profile), place = home or
  unknown (modifier 1). Pairs the radio flagged but that were never within 2 m carry no dose but are
  still notified (false positives).
* :func:`synthetic_contacts` -- households, fixed groups (class/work) on weekdays and random daily
  contacts, for tests and for the theory checks.

So the closed loop is *not* hooked into the simulator's step loop: the simulator's outputs of a few
days are replayed as a weekly cycle, and behavioural feedback acts on that replay: an isolated agent
loses every record away from home (place ``home`` kept), and leaves the environmental mixing. Each
adoption level is a fresh epidemic on the same contact cycle with the same seed (common random
numbers: the same course per agent and the same draw per record and day), so curves are smooth in the
adoption level.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from sim.epidemic import DAY_S, HOME, PLACE_TYPES, EpidemicParams, calibrate_dose_norm, record_doses
from sim.qr import CHECKIN_DTYPE, QRParams
from sim.runfolder import RunFolder
from tracing.pipeline import pairs_from_run

__all__ = ["RECORD_FIELDS", "ContactDays", "synthetic_contacts", "contacts_from_run", "ranges"]


RECORD_FIELDS = ("i", "j", "t", "dist", "dt_s", "place", "close", "notify_i", "notify_j")


@dataclass
class ContactDays:
    """A cycle of template days of contact records (dict of arrays per day; ``t`` = s since the start
    of that day) and optional QR check-ins (``CHECKIN_DTYPE`` per day, ``t`` since the day's start).
    ``household``: household id per agent (−1 = unknown: no manual household tracing)."""
    n: int
    household: np.ndarray
    days: list
    checkins: list | None = None
    source: str = ""
    _rec0: np.ndarray = field(default=None, repr=False)

    def __post_init__(self):
        n = int(self.n)
        self.household = np.asarray(self.household, np.int64)
        if self.household.shape != (n,):
            raise ValueError(f"ContactDays: household needs one value per agent ({n})")
        if not self.days:
            raise ValueError("ContactDays: need at least one template day")
        for k, d in enumerate(self.days):
            missing = [f for f in RECORD_FIELDS if f not in d]
            if missing:
                raise ValueError(f"ContactDays: template day {k} lacks {missing}")
            m = len(d["i"])
            if any(len(d[f]) != m for f in RECORD_FIELDS):
                raise ValueError(f"ContactDays: template day {k}: columns of unequal length")
            if m and (min(d["i"].min(), d["j"].min()) < 0 or max(d["i"].max(), d["j"].max()) >= n):
                raise ValueError(f"ContactDays: template day {k}: agents outside 0..{n - 1}")
            if m and (np.min(d["t"]) < 0 or np.max(d["t"]) >= DAY_S):
                raise ValueError(f"ContactDays: template day {k}: t must be s since the day's start")
        if self.checkins is not None and len(self.checkins) != len(self.days):
            raise ValueError("ContactDays: one check-in table per template day")
        self._rec0 = np.concatenate([[0], np.cumsum([len(d["i"]) for d in self.days])]).astype(np.int64)
        self._adj = [None] * len(self.days)
        self._ids = [None] * len(self.days)
        self._dose = {}

    def ideal(self) -> "ContactDays":
        """The same contact process under the ideal rule: ``notify_i = notify_j = close`` (exactly the
        true close contacts are warned when both run the app; ``tracing/rules/ideal.toml``). The pair
        tables of the simulator hold every ground-truth pair whatever the rule, so the records, their
        doses and their random draws are those of the original (common random numbers)."""
        days = [{**d, "notify_i": d["close"].copy(), "notify_j": d["close"].copy()} for d in self.days]
        return ContactDays(n=self.n, household=self.household, days=days, checkins=self.checkins,
                           source=f"{self.source} (ideal rule)")

    def adjacency(self, k: int):
        """(indptr, rec) of template day k: the records of agent a are ``rec[indptr[a]:indptr[a+1]]``
        (every record listed under both ends)."""
        if self._adj[k] is None:
            d = self.days[k]
            m = len(d["i"])
            ends = np.concatenate([d["i"], d["j"]])
            o = np.argsort(ends, kind="stable")
            ptr = np.zeros(self.n + 1, np.int64)
            np.cumsum(np.bincount(ends, minlength=self.n), out=ptr[1:])
            self._adj[k] = (ptr, (o % m).astype(np.int64) if m else np.zeros(0, np.int64))
        return self._adj[k]

    def rec_ids(self, k: int) -> np.ndarray:
        """Stable record ids of template day k (keys of the transmission draws)."""
        if self._ids[k] is None:
            self._ids[k] = np.arange(self._rec0[k], self._rec0[k + 1], dtype=np.int64)
        return self._ids[k]

    def doses(self, k: int, params: EpidemicParams) -> np.ndarray:
        """Doses of template day k's records under ``params`` (cached per dose-model parameters)."""
        key = (k, params.d0_m, params.distance_exponent, params.max_distance_m, params.outdoor_factor,
               repr(sorted((a, tuple(sorted(b.items()))) for a, b in params.places.items())))
        if key not in self._dose:
            d = self.days[k]
            self._dose[key] = record_doses(d["dist"], d["dt_s"], d["place"], params)
        return self._dose[key]

    def dose_norm(self, params: EpidemicParams) -> float:
        """Mean dose per agent and day over the cycle (the mixing calibration)."""
        return calibrate_dose_norm([self.doses(k, params) for k in range(len(self.days))], self.n)

    def records_of(self, ring: list, agents: np.ndarray) -> dict:
        """Realised records (kept that day) of the ring ``[(day, template k, keep mask)]`` that involve ``agents``: arrays ``self`` (the
        agent of ``agents``), ``other``, ``day``, ``close``, ``self_logs`` (self's log of other passes the
        rule), ``other_logs`` (other's log of self passes: other is warned if self is an F0)."""
        parts = []
        for day, k, keep in ring:                          # loop over the <= lookback days of the ring
            ptr, rec = self.adjacency(k)
            idx = rec[ranges(ptr[agents], ptr[agents + 1])]
            me = np.repeat(agents, ptr[agents + 1] - ptr[agents])
            ok = keep[idx]
            idx, me = idx[ok], me[ok]
            d = self.days[k]
            is_i = d["i"][idx] == me
            parts.append((me, np.where(is_i, d["j"][idx], d["i"][idx]), np.full(len(idx), day, np.int64),
                          d["close"][idx], np.where(is_i, d["notify_i"][idx], d["notify_j"][idx]),
                          np.where(is_i, d["notify_j"][idx], d["notify_i"][idx])))
        names = ("self", "other", "day", "close", "self_logs", "other_logs")
        if not parts:
            return {k: np.zeros(0, np.int64 if k in ("self", "other", "day") else bool) for k in names}
        return {k: np.concatenate([p[c] for p in parts]) for c, k in enumerate(names)}


def synthetic_contacts(n: int, *, seed: int = 0, household_size: int = 4, group_size: int = 10,
                       group_minutes: float = 240.0, random_contacts: float = 2.0,
                       random_minutes: float = 20.0, p_detect: float = 0.9, weekdays: int = 5,
                       cycle_days: int = 7, venues: int = 0, visits_per_day: float = 0.3) -> ContactDays:
    """A synthetic contact process (vectorised numpy): households of ``household_size`` (all pairs,
    8 h at 1.5 m at home every day), fixed groups of ``group_size`` (each member meets 3 neighbours in
    the group for ``group_minutes`` at 1 m, weekdays only), and per day ``random_contacts`` random
    partners per agent (``random_minutes`` at 1-3 m). The radio detects a close contact with
    ``p_detect`` per direction. With ``venues`` > 0, each agent visits a random venue with probability
    ``visits_per_day`` per day (a QR check-in row with ``scan`` = True)."""
    rng = np.random.default_rng(seed)
    n = int(n)
    hh = np.arange(n) // household_size
    # household pairs
    idx = np.arange(n)
    pi, pj = [], []
    for off in range(1, household_size):              # loop over offsets inside a household, not agents
        j = idx + off
        ok = (j < n) & (hh[np.minimum(j, n - 1)] == hh)
        pi.append(idx[ok])
        pj.append(j[ok])
    hi, hj = np.concatenate(pi), np.concatenate(pj)
    perm = rng.permutation(n)
    grp = np.empty(n, np.int64)
    grp[perm] = np.arange(n) // group_size
    # ring of 3 neighbours inside each group (in permutation order)
    gi, gj = [], []
    for off in (1, 2, 3):
        a = perm
        b = np.roll(perm, -off)
        ok = grp[a] == grp[b]
        gi.append(a[ok])
        gj.append(b[ok])
    gi, gj = np.concatenate(gi), np.concatenate(gj)
    days, checkins = [], []
    for d in range(int(cycle_days)):                  # loop over template days
        parts = [(hi, hj, np.full(len(hi), 19 * 3600.0), np.full(len(hi), 1.5), np.full(len(hi), 8 * 3600.0),
                  np.full(len(hi), HOME))]
        if d % 7 < weekdays:
            parts.append((gi, gj, np.full(len(gi), 9 * 3600.0), np.full(len(gi), 1.0),
                          np.full(len(gi), group_minutes * 60.0), np.full(len(gi), PLACE_TYPES.index("workplace"))))
        k = rng.poisson(random_contacts / 2.0 * n)
        ri = rng.integers(0, n, k)
        rj = rng.integers(0, n, k)
        ok = ri != rj
        ri, rj = ri[ok], rj[ok]
        parts.append((ri, rj, rng.uniform(7 * 3600.0, 21 * 3600.0, len(ri)), rng.uniform(1.0, 3.0, len(ri)),
                      np.full(len(ri), random_minutes * 60.0), np.full(len(ri), PLACE_TYPES.index("market"))))
        i = np.concatenate([p[0] for p in parts]).astype(np.int64)
        j = np.concatenate([p[1] for p in parts]).astype(np.int64)
        t = np.concatenate([p[2] for p in parts])
        dist = np.concatenate([p[3] for p in parts])
        dt = np.concatenate([p[4] for p in parts])
        place = np.concatenate([p[5] for p in parts]).astype(np.int64)
        lo, hi_ = np.minimum(i, j), np.maximum(i, j)
        close = (dist <= 2.0) & (dt >= 15 * 60.0)
        days.append(dict(i=lo, j=hi_, t=t, dist=dist, dt_s=dt, place=place, close=close,
                         notify_i=close & (rng.random(len(i)) < p_detect),
                         notify_j=close & (rng.random(len(i)) < p_detect)))
        if venues:
            go = rng.random(n) < visits_per_day
            a = np.flatnonzero(go)
            c = np.zeros(len(a), CHECKIN_DTYPE)
            c["agent"], c["venue"] = a, rng.integers(0, venues, len(a))
            c["t"], c["place_type"], c["scan"] = rng.uniform(8 * 3600.0, 20 * 3600.0, len(a)), \
                PLACE_TYPES.index("market"), True
            checkins.append(c)
    return ContactDays(n=n, household=hh, days=days, checkins=checkins if venues else None,
                       source=f"synthetic(n={n}, seed={seed})")


def _pair_places(sched, inst_type, household, i, j, step_s, chunk: int = 200_000):
    """Place type (``PLACE_TYPES`` index) and start time (s since the day's start) of each pair's
    longest shared schedule segment that day; pairs without one: home if they share a household
    (time 19:00), else unknown (−1, 12:00). Vectorised over pairs x segments x segments in chunks."""
    P = len(i)
    place = np.full(P, -1, np.int64)
    t = np.full(P, 12 * 3600.0)
    M = sched.seg_inst.shape[1]
    for lo in range(0, P, chunk):                       # chunks of pairs (bounded memory)
        sl = slice(lo, min(P, lo + chunk))
        a, b = i[sl], j[sl]
        ia, ib = sched.seg_inst[a], sched.seg_inst[b]
        same = (ia[:, :, None] == ib[:, None, :]) & (ia[:, :, None] >= 0)
        s0 = np.maximum(sched.seg_start[a][:, :, None], sched.seg_start[b][:, None, :])
        ov = np.where(same, np.minimum(sched.seg_end[a][:, :, None], sched.seg_end[b][:, None, :]) - s0, 0)
        flat = ov.reshape(len(a), M * M)
        best = flat.argmax(axis=1)
        has = flat[np.arange(len(a)), best] > 0
        inst = ia[np.arange(len(a)), best // M]
        start = s0.reshape(len(a), M * M)[np.arange(len(a)), best]
        hh = household[a] == household[b]
        place[sl] = np.where(has, inst_type[np.maximum(inst, 0)], np.where(hh, HOME, -1))
        t[sl] = np.where(has, start * float(step_s), np.where(hh, 19 * 3600.0, 12 * 3600.0))
    return place, np.clip(t, 0.0, DAY_S - 1.0)


def contacts_from_run(run_dir, rule="bluezone", *, close_minutes: float | None = None,
                      qr: QRParams | None = None, seed: int = 0, pairs=None,
                      days: int | None = None) -> ContactDays:
    """Template days from a simulator run folder (module docstring): the pair table under ``rule``
    (or ``pairs``, already computed) joined with the ground truth; place types and QR check-ins from
    the run's schedules, rebuilt by :class:`sim.runfolder.RunFolder`. ``days``: use the first ``days``
    simulated days (default: all)."""
    run = RunFolder(run_dir)
    n_days = run.n_days if days is None else int(days)
    if not 1 <= n_days <= run.n_days:
        raise ValueError(f"days: the run {run_dir} has {run.n_days} simulated days, asked for {days}")
    scn, pop, places = run.world
    close_m = float(scn.sim["close_m"])
    close_minutes = float(scn.sim["close_minutes"]) if close_minutes is None else float(close_minutes)
    step_s = int(scn.sim["step_s"])
    if pairs is None:
        pairs = pairs_from_run(run_dir, rule, close_minutes=close_minutes, days=range(n_days))
    n, household = pop.n, pop.household.astype(np.int64)
    gt = run.ground_truth() if run.has_ground_truth() else None
    mins = np.zeros(len(pairs))
    dmin = np.full(len(pairs), np.inf)
    if gt is not None and len(gt) and len(pairs):
        key_p = (pairs["day"].astype(np.int64) * n + pairs["i"]) * n + pairs["j"]
        key_g = (gt["day"].astype(np.int64) * n + gt["i"]) * n + gt["j"]
        o = np.argsort(key_g)
        pos = np.minimum(np.searchsorted(key_g[o], key_p), len(o) - 1)
        hit = key_g[o][pos] == key_p
        mins[hit] = gt["minutes_close"][o][pos[hit]]
        dmin[hit] = gt["min_dist"][o][pos[hit]]
    qr = qr or QRParams()
    days, cks = [], []
    for d in range(n_days):                             # loop over simulated days
        sched = run.schedule(d)
        sel = pairs["day"] == d
        p = pairs[sel]
        pi, pj = p["i"].astype(np.int64), p["j"].astype(np.int64)
        place, t_seg = _pair_places(sched, places.inst_type, household, pi, pj, step_s)
        t = p["t_first"] - d * DAY_S
        t = np.where(np.isfinite(t), np.clip(t, 0.0, DAY_S - 1.0), t_seg)
        dist = np.where(np.isfinite(dmin[sel]), 0.5 * (dmin[sel] + close_m), np.inf)
        days.append(dict(i=pi, j=pj, t=t, dist=dist, dt_s=mins[sel] * 60.0, place=place,
                         close=p["true_close"].astype(bool), notify_i=p["notify_i"].astype(bool),
                         notify_j=p["notify_j"].astype(bool)))
        c = run.checkins(qr, seed, day=d)
        c["t"] -= d * DAY_S
        c["t"] = np.clip(c["t"], 0.0, DAY_S - 1.0)
        cks.append(c)
    return ContactDays(n=n, household=household, days=days, checkins=cks, source=str(run_dir))


def ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Concatenation of ``arange(lo[k], hi[k])`` over k (vectorised)."""
    ln = (hi - lo).astype(np.int64)
    tot = int(ln.sum())
    if tot == 0:
        return np.zeros(0, np.int64)
    return np.repeat(lo - np.concatenate([[0], np.cumsum(ln)[:-1]]), ln) + np.arange(tot)


