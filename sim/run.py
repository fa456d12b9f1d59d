"""``simulate``: a scenario -> a run folder of BLE exposure windows and ground truth, day by day.

Run folder (``docs/internals.md``): ``population.parquet``, ``keys.parquet``,
``windows/day-NNN.parquet``, ``ground_truth.parquet``, ``run.json``. Parquet files are byte-identical
for the same scenario and seed whatever the thread count (rows sorted; counter-based randomness);
``run.json`` is too except for its ``timings`` entry (wall-clock seconds and peak memory, for benchmarks).

Seeds: ``SeedSequence(seed, spawn_key=(stage, day))`` per stage (population, places, keys, the day's
schedule) and one 64-bit hash seed for all counter-based draws (positions, scans).

Time steps and the static-night episode
---------------------------------------
A day has ``86400 / step_s`` steps (288 at 300 s = one Bluezone scan period). Each step every phone scans
once (at a fixed per-phone phase inside the step) and every scan that saw an advertiser counts
``step_s`` seconds in its window. The ground truth is evaluated ``gt_substeps`` times per step (at
``step_s / gt_substeps`` intervals, 1 by default), each close (sub)step counting that many seconds.

Steps before the earliest activity of the day and after the latest (by default ~05:15 and ~23:00, see
``DaySchedule.static_lo/hi``) are the **static night**: every agent is at its night spot (bed, ward bed,
night-shift station) without fidgeting. These steps are evaluated once: one neighbour search, then per
pair the ground truth counts all the static (sub)steps at the same distance, and the radio kernel loops
over the static scans drawing exactly the random numbers that a step-by-step evaluation would draw
(counter-based by step), so the result is identical to evaluating each night step (up to float32
rounding of RSSI sums; ``tests/test_sim_scanning.py`` checks it), only without repeating positions and
neighbour searches (~27 % of the steps of a day).

Seated stays
------------
Between the static night's ends, an agent at its own spot in its primary instance (class, office,
factory floor, ward, stall, counter, bus driver's seat: segment kinds ``OWN`` and ``NIGHT``) is in a
**seated stay** until a later segment overrides it or the segment ends; its position at each step is a
pure function of (seed, day, step, agent) (seat + fidgeting, or elsewhere in the room with the type's
``move_prob``: :func:`sim.positions.seat_position`). Every pair of agents with overlapping stays in one
instance (74 % of the phone-pair evaluations of a Monday of 10^5 agents of Lạng Sơn) is evaluated once
per stay overlap (:mod:`sim.scanning.stays`): an inner loop over the overlap's steps recomputes both
positions, applies the same distance tests and draws the same counter-based numbers as the per-step
path, and aggregates in place; the day's hash map gets one partial row per ordered pair and overlap.
The per-step path leaves those pairs out (and the instances with nobody else present out of the
neighbour search); pairs of a seated agent and anyone else (visitors, customers, patients' visitors)
stay per step. Same windows and ground truth as evaluating every step, except that RSSI sums are added
in another order (one float32 sum per overlap instead of one per run of steps in range, inserted before
the per-step runs): ``rssi_mean`` and ``att_typical`` of ~6 % of windows differ in the last float32 bits
(≤ 6e-5 dB; ``tests/test_sim_stays.py``).

Pairs per step
--------------
Members of one household who are both at home are paired directly from a precomputed list (households
are small, so no search is needed); everyone away from home goes through one call of
``sim.neighbours.pairs_within_groups`` (group = place instance) — radius ``radio_range_m`` among phone
owners for the radio, ``close_m`` among everyone for the ground truth — except pairs of two agents in a
seated stay (above). Scans of pairs that persist from step to step are summed by
:class:`sim.scanning.PairRuns` and reach the day's hash map once per run; the same for close pairs of
the ground truth (:class:`sim.scanning.CloseRuns`: close (sub)steps and minimum distance).

Writing
-------
Parquet files are written on background threads (:class:`_Writer`: one for the ground truth, one for
the windows) in the order the blocks are made, so the bytes are those of writing inline: a day's
ground truth while its windows are extracted and written, each window block while the next is
extracted, a day's last block while the next day is simulated.

``run.json["timings"]``: wall-clock seconds per stage (schedules, positions, neighbours, radio,
aggregation, writing — the main thread's time submitting writes and waiting for them, not the
writer's own time), their shares, agent-steps per second, peak RSS (MB) and the numba thread count.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ble.ids import sim_keys
from ble.schema import WINDOW_DTYPE, ParquetAppender, atomic_path, write_text_atomic
from sim import budget, kernels
from sim.neighbours import pairs_within_groups
from sim.places import PLACE_TYPES, build_places
from sim.population import ROLES, make_population
from sim.positions import positions
from sim.rng import STAGE_DEVICE_KEYS, STAGE_HASH_SEED, STAGE_PLACES, STAGE_POPULATION, STAGE_SCHEDULE
from sim.scanning import (CloseRuns, DayAccumulator, PairRuns, Radio, cutoff_report, eval_close, eval_scan_rssi,
                          eval_static, eval_stays, radio_params, scan_p_seen, seated_stays)
from sim.scanning.accumulate import initial_caps
from sim.schedule import make_day

WINDOW_BLOCK = 4_000_000      #: windows per observer block (sets the windows files' row groups)
#: rows per write to a ParquetAppender: pyarrow's default maximum row-group length (1 Mi rows), so
#: writing a block in slices of it yields the very row groups (and bytes) of writing it whole, while
#: the Arrow copy and the validation temporaries stay one slice large
WRITE_SLICE = 1 << 20
#: windows per extraction piece (whole observers; memory: ~160 bytes a window while it is made)
WINDOW_PIECE = 1 << 18
STAGES = ("schedules", "positions", "neighbours", "radio", "aggregation", "writing")
#: the numba kernels every simulation runs (their callees compile with them; kernels of rarer paths such
#: as map growth are left out): a first run announces their compilation (tests/test_sim_budget.py checks
#: that a run uses every one)
RUN_KERNELS = {
    "sim.positions": ("_positions_kernel",),
    "sim.neighbours": ("_bounds_kernel",),
    "sim.cell_list": ("_buckets_kernel", "_pair_scatter_kernel", "_points_kernel", "_scan_kernel"),
    "sim.scanning.step": ("_close_kernel", "_eval_static_kernel", "_eval_step_kernel", "_phases"),
    "sim.scanning.runs": ("_close_runs_kernel", "_runs_compact_kernel", "_runs_merge_kernel"),
    "sim.scanning.stays": ("_candidates_kernel", "_eval_stays_kernel", "_stays_kernel"),
    "sim.scanning.accumulate": ("_contains_kernel", "_gt_insert_kernel", "_shard_order_kernel", "_win_insert_kernel"),
    "sim.scanning.extract": ("_obs_counts_kernel", "_piece_slots_kernel", "_window_fill_kernel",
                             "_window_heads_kernel", "_window_order_kernel", "_window_sort_kernel"),
}
#: CPU seconds of a first run's compilation of RUN_KERNELS: 35 s cold less 2.4 s warm for a tiny run at load 2.6
#: (benchmarks/firstrun.py; README Performance; 59-72 s before the scanning kernels ran serial on run_blocks)
FIRST_RUN_COMPILE_S = 33.0


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("proxitrace")
    except Exception:  # pragma: no cover - source tree without install
        return "0.0.0+unknown"


#: file kinds that make up the installed code and its packaged data (pyproject's package-data globs)
_DIGEST_SUFFIXES = (".py", ".toml", ".csv")


def code_digest(packages: tuple = ("ble", "sim", "tracing"), base: str | None = None) -> str:
    """SHA-256 (16 hex digits) of the source and packaged data (``*.py``, ``*.toml``, ``*.csv``) of
    ``packages``, by relative path in sorted order: a stored result made by other code or by other
    packaged defaults (``python -m ble.radio --fit`` rewrites ``ble/radio_default.toml``) never matches
    one made now. Packages are located without being imported (or under the folder ``base``); cached
    per process."""
    return _digest(tuple(packages), base) if base is not None else _installed_digest(tuple(packages))


@functools.lru_cache(maxsize=None)
def _installed_digest(packages: tuple) -> str:
    return _digest(packages, None)


def _digest(packages: tuple, base: str | None) -> str:
    h = hashlib.sha256()
    for name in packages:
        if base is not None:
            root = Path(base) / name
        else:
            spec = importlib.util.find_spec(name)
            if spec is None or not spec.submodule_search_locations:
                raise ValueError(f"code_digest: package {name!r} not found")
            root = Path(list(spec.submodule_search_locations)[0])
        files = sorted(p for p in root.rglob("*") if p.suffix in _DIGEST_SUFFIXES and p.is_file()
                       and "__pycache__" not in p.parts)
        for p in files:
            h.update(f"{name}/{p.relative_to(root).as_posix()}\0".encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()[:16]


def _write_table(path: Path, table: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def _write_sliced(appender, arr: np.ndarray) -> None:
    for lo in range(0, max(len(arr), 1), WRITE_SLICE):
        appender.write(arr[lo:lo + WRITE_SLICE])


def _rng(seed: int, stage: int, day: int = 0) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stage, day)))


class _Writer:
    """Parquet writes on one background thread, in the order they are submitted (so the files are the
    bytes of writing inline): a day's ground truth and window blocks are written while the next block
    is extracted and while the next day is simulated (pyarrow's encoding and zstd run without the GIL).
    At most one write waits or runs at a time (memory: one block); an error surfaces at the next
    :meth:`submit` or :meth:`wait`."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="proxitrace-writer")
        self._pending = None

    def submit(self, fn, *args) -> None:
        self.wait()
        self._pending = self._pool.submit(fn, *args)

    def wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)


def _close_appender(appender) -> None:
    """Close a day's windows file (atomic rename), on the writer thread after its last slice."""
    appender.close()


class _Slicer:
    """Re-cuts a stream of record arrays into arrays of exactly ``size`` rows from the start of a block
    (its last one shorter): the slices that writing each block whole in slices of ``size`` would make.

    The rows gather in a buffer of ``size`` rows and some room beyond: :meth:`room` hands out the
    place of the next rows, so a producer can write them there directly (:meth:`commit` then takes
    them, no copy), or :meth:`feed` copies an array in. A complete slice is a view of its buffer, which
    the slicer then leaves to it (the rows beyond go to a fresh buffer), so a slice stays valid while a
    writer holds it."""

    def __init__(self, size: int):
        self.size, self._buf, self._n = int(size), None, 0

    def room(self, n: int) -> np.ndarray:
        """A view of the buffer's next ``n`` rows (``n`` rows of the dtype of the first array ever fed
        or committed: ``WINDOW_DTYPE`` unless :meth:`feed` saw another), to be written and then
        :meth:`commit`-ted."""
        return self._room(int(n), WINDOW_DTYPE if self._buf is None else self._buf.dtype)

    def _room(self, n: int, dtype) -> np.ndarray:
        if self._buf is None or self._buf.dtype != dtype:
            self._buf, self._n = np.empty(self.size + max(n, self.size // 4), dtype), 0
        elif self._n + n > len(self._buf):                   # a piece larger than the room: grow
            buf = np.empty(self._n + n, dtype)
            buf[:self._n] = self._buf[:self._n]
            self._buf = buf
        return self._buf[self._n:self._n + n]

    def commit(self, n: int, end: bool = False) -> list:
        """Take the ``n`` rows written into the last :meth:`room`; returns the complete slices (``end``:
        the block ends with them, its remainder is a slice too)."""
        self._n += int(n)
        out = []
        while self._n >= self.size:
            full, rest = self._buf[:self.size], self._buf[self.size:self._n]
            self._buf = np.empty(max(len(self._buf), self.size + len(rest)), full.dtype)
            self._buf[:len(rest)] = rest
            self._n = len(rest)
            out.append(full)
        if end and self._n:
            out.append(self._buf[:self._n])
            self._buf, self._n = None, 0
        return out

    def feed(self, arr: np.ndarray, end: bool = False) -> list:
        """The complete slices after adding ``arr`` (copied in; no slice keeps ``arr`` alive); ``end``:
        the block ends with ``arr``, its remainder is a slice too."""
        self._room(len(arr), arr.dtype)[:] = arr
        return self.commit(len(arr), end)


def window_pieces(counts: np.ndarray, edges: np.ndarray, rows: int):
    """Pieces of the windows' extraction: each observer block ``[edges[k], edges[k + 1])`` split into
    observer ranges that start a new piece every ``rows`` windows (``counts``: windows per observer).
    Returns (piece of each observer (non-decreasing), block of each piece); every block has at least
    one piece (an empty block: one empty piece)."""
    n = len(counts)
    cum = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=cum[1:])
    blk = np.searchsorted(edges, np.arange(n), side="right") - 1
    local = (cum[:-1] - cum[edges[blk]]) // max(int(rows), 1)
    n_local = np.ones(len(edges) - 1, np.int64)
    np.maximum.at(n_local, blk, local + 1)
    base = np.cumsum(n_local) - n_local
    return base[blk] + local, np.repeat(np.arange(len(n_local)), n_local)


class _Timer:
    def __init__(self):
        self.t = {k: 0.0 for k in STAGES}

    def add(self, stage, t0):
        t1 = time.perf_counter()
        self.t[stage] += t1 - t0
        return t1


def _pairs_subset(idx: np.ndarray, x, y, g, radius: float):
    """Pairs (global indices, i < j) among agents ``idx`` in the same group within ``radius``."""
    if len(idx) < 2:
        e = np.zeros(0, np.int64)
        return e, e
    xy = np.empty((len(idx), 2))
    xy[:, 0] = x[idx]
    xy[:, 1] = y[idx]
    a, b = pairs_within_groups(xy, g[idx], radius)
    return idx[a], idx[b]          # idx increasing: order and i < j preserved


def build_world(scn, seed: int):
    """(population, places, radio params, device keys per agent (0 without phone), hash seed) of a run."""
    pop = make_population(scn, _rng(seed, STAGE_POPULATION))
    places = build_places(scn, pop, _rng(seed, STAGE_PLACES))
    params = radio_params(scn)
    pop.tx_power = np.where(pop.has_phone, params.tx_dbm + pop.tx_offset, np.nan).astype(np.float32)
    phones = np.flatnonzero(pop.has_phone)
    keys_all = np.zeros(pop.n, np.uint64)
    keys_all[phones] = sim_keys(len(phones), _rng(seed, STAGE_DEVICE_KEYS))
    hseed = int(np.random.SeedSequence(seed, spawn_key=(STAGE_HASH_SEED,)).generate_state(1, np.uint64)[0])
    return pop, places, params, keys_all, hseed


def day_schedule(scn, pop, places, seed: int, day: int):
    """The schedule of ``day`` exactly as :func:`simulate` draws it."""
    return make_day(scn, pop, places, day, _rng(seed, STAGE_SCHEDULE, day))


def household_pairs(pop, mask=None):
    """All pairs (i < j) of members of the same household (agents are contiguous per household),
    optionally only among agents where ``mask`` is true."""
    a = np.arange(pop.n, dtype=np.int64)
    end = pop.hh_start[pop.household] + pop.hh_size[pop.household]
    c = end - a - 1
    pi = np.repeat(a, c)
    off = np.repeat(np.cumsum(c) - c, c)
    pj = pi + 1 + (np.arange(len(pi), dtype=np.int64) - off)
    if mask is not None:
        k = mask[pi] & mask[pj]
        pi, pj = pi[k], pj[k]
    return pi, pj


class _PairFinder:
    """Pairs of one step: members of one household both at home are paired directly (households are
    small; no search needed), everyone else through ``sim.neighbours.pairs_within_groups`` on the agents
    not at home (one call for all places of the step)."""

    def __init__(self, pop):
        self.household = pop.household
        self.n_households = pop.n_households
        self.has_phone = pop.has_phone
        self.hh_all = household_pairs(pop)
        self.hh_phone = household_pairs(pop, pop.has_phone)

    def at_home(self, g):
        """Agents paired directly as household members at home (their group is their own home and no
        visitor is there; visitors in another household's home (issue 13) and their hosts join the
        search)."""
        at_home = g == self.household
        vis = ~at_home & (g < self.n_households)
        if vis.any():
            hosted = np.zeros(self.n_households, bool)
            hosted[g[vis]] = True
            at_home &= ~hosted[self.household]
        return at_home

    def streams(self, g, x, y, radius, phones_only, at_home=None, seated=None):
        """((home i, home j), (away i, away j)): each sorted by (i, j); ``at_home``: :meth:`at_home` of
        ``g`` if already known. ``seated`` (bool per agent, :meth:`sim.scanning.Stays.seated_at`): pairs
        of two seated agents are left out (evaluated per stay), and so are, from the search, the seated
        agents of instances where nobody else (of the stream) is."""
        if at_home is None:
            at_home = self.at_home(g)
        hi, hj = self.hh_phone if phones_only else self.hh_all
        k = at_home[hi] & at_home[hj]
        away = ~at_home
        if phones_only:
            away &= self.has_phone
        if seated is not None:
            mixed = np.zeros(int(g.max(initial=0)) + 1, bool)
            mixed[g[away & ~seated]] = True
            away &= ~seated | mixed[g]
        oi, oj = _pairs_subset(np.flatnonzero(away), x, y, g, radius)
        if seated is not None:
            keep = ~(seated[oi] & seated[oj])
            oi, oj = oi[keep], oj[keep]
        return (hi[k], hj[k]), (oi, oj)

    def __call__(self, g, x, y, radius, phones_only):
        (hi, hj), (oi, oj) = self.streams(g, x, y, radius, phones_only)
        return np.concatenate([hi, oi]), np.concatenate([hj, oj])


def _simulate_day(day, scn, seed, pop, places, hseed, radio, find, place_mask, counts, bar, T, t0, acc_cap,
                  per_stay=True):
    """All steps of ``day``: the static night at once, the seated stays once per stay, then the rest step
    by step (module docstring). Returns (the day's :class:`DayAccumulator`, its capacity for the next
    day, the timer's clock); updates ``place_mask`` and ``counts``. ``per_stay=False``: the seated stays
    step by step too (the reference the per-stay evaluation equals, ``tests/test_sim_stays.py``)."""
    sim = scn.sim
    step_s, sub = int(sim["step_s"]), int(sim["gt_substeps"])
    sub_s = step_s / sub
    R, close = float(sim["radio_range_m"]), float(sim["close_m"])
    S = 86400 // step_s
    sched = day_schedule(scn, pop, places, seed, day)
    place_mask |= sched.place_mask(places.inst_type)
    acc = DayAccumulator(acc_cap)
    runs = (PairRuns(), PairRuns())            # home and away pair streams
    cruns = (CloseRuns(), CloseRuns())         # the same for the ground truth's close pairs
    buf = (np.empty(pop.n, np.int64), np.empty(pop.n), np.empty(pop.n))
    t0 = T.add("schedules", t0)
    # static night episode
    static_steps = np.r_[np.arange(0, sched.static_lo), np.arange(sched.static_hi, S)].astype(np.int64)
    if len(static_steps):
        g, x, y = positions(hseed, sched, pop, places, 0, day * 86400.0, True, sim["jitter_m"], out=buf)
        t0 = T.add("positions", t0)
        pi, pj = find(g, x, y, R, True)
        ci, cj = find(g, x, y, close, False)
        t0 = T.add("neighbours", t0)
        part = eval_static(radio, day, static_steps, pi, pj, x, y, R)
        cl = eval_close(ci, cj, x, y, close, mult=len(static_steps) * sub)
        counts["scans_logged"] += int(part[2].sum())
        counts["phone_pairs_evaluated"] += len(pi) * len(static_steps)
        t0 = T.add("radio", t0)
        acc.add_partial(*part)
        acc.add_close(*cl)
        del part, cl
        t0 = T.add("aggregation", t0)
        counts["static_steps"] += len(static_steps)
        if bar is not None:
            bar.update(len(static_steps))
    # seated stays: pairs of agents seated in the same instance, once per stay overlap
    stays = None
    if per_stay and sched.static_hi > sched.static_lo:
        stays = seated_stays(sched, pop.n_households, sched.static_lo, sched.static_hi)
        t0 = T.add("schedules", t0)
        for part, cl, n_eval in eval_stays(radio, stays, day, places, pop.has_phone, sim["jitter_m"], R, close, sub):
            counts["scans_logged"] += int(part[2].sum())
            counts["phone_pairs_evaluated"] += n_eval
            counts["stay_pair_steps"] += n_eval
            t0 = T.add("radio", t0)
            acc.add_partial(*part)
            acc.add_close(*cl)
            del part, cl
            t0 = T.add("aggregation", t0)
    for step in range(sched.static_lo, sched.static_hi):
        seated = stays.seated_at(step) if stays is not None else None
        for k in range(sub):
            t = day * 86400.0 + step * step_s + k * sub_s
            g, x, y = positions(hseed, sched, pop, places, step, t, False, sim["jitter_m"], out=buf)
            t0 = T.add("positions", t0)
            home = find.at_home(g)
            if k == 0:
                streams = find.streams(g, x, y, R, True, home, seated)
                t0 = T.add("neighbours", t0)
                for (pi, pj), run in zip(streams, runs):
                    rssi = eval_scan_rssi(radio, day, step, pi, pj, x, y, R)
                    counts["scans_logged"] += int(np.count_nonzero(rssi == rssi))
                    counts["phone_pairs_evaluated"] += len(pi)
                    t0 = T.add("radio", t0)
                    for part in run.update_groups(pi, pj, rssi, step, radio.tx_power):
                        acc.add_partial(*part)
                    t0 = T.add("aggregation", t0)
            cstreams = find.streams(g, x, y, close, False, home, seated)
            t0 = T.add("neighbours", t0)
            for (ci, cj), crun in zip(cstreams, cruns):
                cl = eval_close(ci, cj, x, y, close)
                t0 = T.add("radio", t0)
                acc.add_close(*crun.update(cl[0], cl[1], cl[3]))
                t0 = T.add("aggregation", t0)
        if bar is not None:
            bar.update(1)
    for run in runs:
        for part in run.flush_all_groups(radio.tx_power):
            acc.add_partial(*part)
    for crun in cruns:
        acc.add_close(*crun.flush_all())
    return acc, acc.caps, t0


def simulate(scenario, out_dir, seed: int = 0, days: int = 1, progress: bool = True) -> Path:
    """Simulate ``days`` days of ``scenario`` with ``seed`` and write the run folder ``out_dir``.

    Returns the folder path. Memory is bounded by one day's accumulators (windows and close pairs of
    that day) plus the population; each day is written before the next starts.
    """
    if int(days) != days or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    seed, days = int(seed), int(days)
    scn = scenario
    est, avail = budget.estimate(scn.n_agents, days), budget.available_bytes()
    budget.check_fits(scn.name, scn.scale, est, avail)      # one-line refusal before any work
    if progress:
        print(f"simulate {scn.name} x{scn.scale:g}: {budget.describe(est, avail)}", file=sys.stderr, flush=True)
        kernels.announce_compilation(RUN_KERNELS, FIRST_RUN_COMPILE_S)
    out = Path(out_dir)
    (out / "windows").mkdir(parents=True, exist_ok=True)
    (out / "run.json").unlink(missing_ok=True)  # stale-run guard: run.json is written last (complete run)
    T = _Timer()
    wall0 = time.perf_counter()
    t0 = time.perf_counter()

    pop, places, params, keys_all, hseed = build_world(scn, seed)
    phones = np.flatnonzero(pop.has_phone)
    sim = scn.sim
    step_s, sub = int(sim["step_s"]), int(sim["gt_substeps"])
    sub_s = step_s / sub
    R, close = float(sim["radio_range_m"]), float(sim["close_m"])
    radio = Radio(params, pop, scan_p_seen(scn), hseed, step_s)
    find = _PairFinder(pop)
    t0 = T.add("schedules", t0)

    _write_table(out / "keys.parquet", pa.table({"agent": pa.array(phones.astype(np.int64)),
                                                 "key": pa.array(keys_all[phones])}))
    t0 = T.add("writing", t0)

    place_mask = np.zeros(pop.n, np.int32)
    S = 86400 // step_s
    counts = {"windows": 0, "ground_truth": 0, "scans_logged": 0, "agent_steps": 0, "phone_pairs_evaluated": 0,
              "static_steps": 0, "stay_pair_steps": 0}
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=days * S, unit="step", desc=f"simulate {scn.name}", file=sys.stderr,
                   dynamic_ncols=True, disable=None)       # None: on terminals only, never into logs
    gt_meta = {"close_m": close, "close_minutes": sim["close_minutes"], "sub_step_s": sub_s}
    acc_cap = initial_caps(pop.n)              # the next days: the previous day's capacities
    peak_acc = 0
    gt_writer, writer = _Writer(), _Writer()     # ground truth and windows: two files, written in parallel
    w_out = None
    with ParquetAppender(out / "ground_truth.parquet", "ground_truth", meta=gt_meta) as gt_out:
        try:
            for day in range(days):
                acc, acc_cap, t0 = _simulate_day(day, scn, seed, pop, places, hseed, radio, find, place_mask,
                                                 counts, bar, T, t0, acc_cap)
                peak_acc = max(peak_acc, acc.nbytes)
                gt = acc.ground_truth(day, sub_s, release=True)       # its map freed: not needed below
                t0 = T.add("aggregation", t0)
                gt_writer.submit(_write_sliced, gt_out, gt)
                counts["ground_truth"] += len(gt)
                del gt
                t0 = T.add("writing", t0)
                # windows in observer blocks of ~WINDOW_BLOCK rows (deterministic blocking: the file's row
                # groups are each block's slices of WRITE_SLICE rows), each extracted in pieces of whole
                # observers of ~WINDOW_PIECE rows re-cut into those slices (bounded memory: a piece and a
                # slice), each slice written while the next is made, the day's last while the next day runs
                n_blocks = max(1, -(-acc.n_windows // WINDOW_BLOCK))
                edges = np.linspace(0, pop.n, n_blocks + 1).astype(np.int64)
                piece_of_obs, piece_block = window_pieces(acc.window_counts(pop.n), edges, WINDOW_PIECE)
                w_out = ParquetAppender(out / "windows" / f"day-{day:03d}.parquet", "windows",
                                        meta={"day": day, "window_merge": "day"})
                slicer = _Slicer(WRITE_SLICE)
                t0 = T.add("aggregation", t0)
                for p, win in acc.window_pieces(keys_all, pop.tx_power, float(step_s), day, radio.phase,
                                                piece_of_obs, len(piece_block), room=slicer.room):
                    t0 = T.add("aggregation", t0)
                    counts["windows"] += len(win)
                    end = p == len(piece_block) - 1 or piece_block[p + 1] != piece_block[p]
                    for sl in slicer.commit(len(win), end):      # the piece was made in the slicer's room
                        writer.submit(_write_sliced, w_out, sl)
                    del win
                    t0 = T.add("writing", t0)
                writer.submit(_close_appender, w_out)
                w_out = None                                # the writer closes it
                counts["agent_steps"] += pop.n * S
                del acc
                t0 = T.add("writing", t0)
                if bar is not None:                                 # progress per day
                    bar.write(f"day {day + 1}/{days} done: {time.perf_counter() - wall0:.0f} s elapsed, "
                              f"peak RSS {_peak_rss_mb() / 1024:.2f} GB, {counts['windows']:,} windows so far",
                              file=sys.stderr)
            writer.wait()
            gt_writer.wait()
            t0 = T.add("writing", t0)
        finally:                                # no write outlives its file (nor the ground truth's)
            try:
                writer.close()
            finally:
                gt_writer.close()
            if w_out is not None:               # an error while its blocks were being made
                w_out.close(RuntimeError)
    if bar is not None:
        bar.close()

    popt = pa.table({
        "agent": pa.array(np.arange(pop.n, dtype=np.int64)),
        "age": pa.array(pop.age.astype(np.int16)),
        "household": pa.array(pop.household.astype(np.int64)),
        "has_phone": pa.array(pop.has_phone),
        "platform": pa.array(pop.platform.astype(np.int8)),
        "device_model": pa.array(pop.device_model.astype(np.int32)),
        "carriage": pa.array(pop.carriage.astype(np.int8)),
        "role": pa.array(pop.role.astype(np.int8)),
        "place_types": pa.array(place_mask.astype(np.int32)),
        "urban": pa.array(pop.urban),
        "commune": pa.array(pop.commune.astype(np.int32)),
        "district": pa.array(pop.district.astype(np.int32)),
    }).replace_schema_metadata({"proxitrace.kind": "population",
                                "proxitrace.roles": json.dumps(ROLES),
                                "proxitrace.place_types": json.dumps(PLACE_TYPES)})
    _write_table(out / "population.parquet", popt)
    t0 = T.add("writing", t0)
    wall = time.perf_counter() - wall0
    peak_mb = _peak_rss_mb()
    agent_days = pop.n * days
    run = {
        "proxitrace_version": _version(),
        "code_digest": code_digest(("ble", "sim")),
        "seed": seed,
        "days": days,
        "t0": 0.0,
        "n_agents": pop.n,
        "n_households": pop.n_households,
        "n_phones": int(len(phones)),
        "n_place_instances": int(places.n_inst),
        "place_instances_by_type": {t: int((places.inst_type == k).sum()) for k, t in enumerate(PLACE_TYPES)},
        "roles": {r: int((pop.role == k).sum()) for k, r in enumerate(ROLES)},
        "window_merge": "day",
        "scan_seconds_per_scan": step_s,
        "step_s": step_s,
        "gt_substeps": sub,
        "p_seen": radio.p_seen,
        "radio_params": params.to_dict(),
        "radio_cutoff": cutoff_report(params, R),
        "static_night": "steps before the day's first activity and after its last are evaluated once per day "
                        "(fixed night spots, same counter-based draws as step-by-step)",
        "scenario": scn.to_dict(),
        "counts": counts,
        "per_agent_day": {"windows": counts["windows"] / agent_days,
                          "ground_truth_rows": counts["ground_truth"] / agent_days},
        "timings": {"wall_s": round(wall, 3),
                    "stages_s": {k: round(v, 3) for k, v in T.t.items()},
                    "shares": {k: round(v / max(wall, 1e-9), 4) for k, v in T.t.items()},
                    "agent_steps_per_s": round(counts["agent_steps"] / max(wall, 1e-9), 1),
                    "peak_rss_mb": round(peak_mb, 1),
                    "peak_accumulator_mb": round(peak_acc / 2**20, 1),
                    "numba_threads": _threads()},
    }
    for p in (out / "windows").glob("day-*.parquet"):   # stale-run guard: days of an earlier, longer run
        if not p.stem[4:].isdigit() or int(p.stem[4:]) >= days:
            p.unlink()
    write_text_atomic(out / "run.json", json.dumps(run, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    return out


def _peak_rss_mb() -> float:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if sys.platform == "darwin":  # pragma: no cover - bytes there
        peak_mb /= 1024.0
    return peak_mb


def _threads() -> int:
    import numba
    return int(numba.get_num_threads())
