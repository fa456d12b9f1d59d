"""Logs -> contacts: from a simulator run folder (or in-memory windows) to the pair table.

Steps, day by day. Memory: the day's rolling-ID matches (12 bytes a window) and 41 bytes per directed
daily row, plus one block of 2**19 windows (whole observers, ``RunFolder.window_columns``: columns, no
records) with its daily sums and the next block (read ahead on a thread while this one is computed), and
one chunk of regenerated IDs -- about 8 KB per agent at its peak, flat in the days:

1. **Matching** (what the health service and the phones do): every phone's 96 rolling IDs of the day
   are regenerated from ``keys.parquet`` (:func:`ble.ids.sim_rids`, one ID per 900 s slot) and
   hash-joined with the windows' rolling IDs (:func:`tracing.core.matching.match_ids`); a matched window
   gets its advertiser device as ``source``. Unmatched windows are counted and reported (a warning
   and the ``stats`` dict), never silently dropped.
2. **Daily sums** per (observer, source, day) (:func:`tracing.rules.daily_sums`) and the close-contact
   rule (:func:`tracing.rules.evaluate`), block by block; the window columns a rule does not read
   (the attenuation buckets of ``any_match``) are not decoded.
3. **Pair table** (:data:`tracing.pairs.PAIR_DTYPE`): one row per unordered pair ``i < j`` and day;
   ``notify_j`` from j's windows of i's IDs, ``notify_i`` from i's windows of j's IDs; outer-joined
   with ``ground_truth.parquet`` (``true_close = minutes_close >= close_minutes``). Grouping is by
   counting sorts and merge kernels (:mod:`tracing.core.pairjoin`) with numpy's arithmetic: the tables
   are those of the lexsort + reduceat code before it, byte for byte.

Units: times in seconds (simulator time: seconds since the start of day 0), minutes where a name
says so, attenuation in dB. The simulator merges a device's sightings per observer over a whole day
into one window whose ``rid`` is the ID of the first slot seen (``run.json``: ``window_merge =
"day"``), so matching against the day's 96 slots resolves every window.
"""
from __future__ import annotations

import logging
import threading
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from tqdm import tqdm

from ble.ids import BLUEZONE_IDS_PER_DAY, BLUEZONE_SLOT_S, sim_rids
from ble.schema import WINDOW_DTYPE
from sim.runfolder import RunFolder
from tracing.core.coverage import compact_pairs
from tracing.core.matching import match_ids
from tracing.core.pairjoin import WINDOW_FIELDS, keep_columns, pair_order, pair_table, window_sums
from tracing.core.pairs import PAIR_DTYPE
from tracing.core.rules import DAILY_DTYPE, Rule, daily_sums, evaluate, load_rule

__all__ = ["pairs_from_run", "pairs_from_windows", "pairs_from_daily", "resolve_sources"]

log = logging.getLogger(__name__)

#: IDs regenerated per chunk when matching (8 Mi uint64 = 64 MiB): bounds memory for large runs.
CHUNK_IDS = 1 << 23


# ----------------------------------------------------------------------------------------------------
# Matching
# ----------------------------------------------------------------------------------------------------


def resolve_sources(rids, agent, key, day: int, chunk_ids: int = CHUNK_IDS
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Advertiser of each rolling ID seen on ``day``: regenerate every phone's 96 IDs of the day.

    ``rids``: uint64 IDs from the windows; ``agent``/``key``: phone owners and their 64-bit keys
    (``keys.parquet``); ``day``: day index (slots ``96·day .. 96·day+95``, 900 s each). Returns
    ``(source, slot)``: int64 agent (−1 = no phone broadcast that ID that day) and int64 global slot
    index of the matched ID (−1 if unmatched). Keys are processed in chunks of ``chunk_ids`` IDs.
    """
    rids = np.ascontiguousarray(rids, dtype=np.uint64)
    agent = np.asarray(agent, dtype=np.int64)
    key = np.asarray(key, dtype=np.uint64)
    if agent.shape != key.shape or agent.ndim != 1:
        raise ValueError("agent and key must be 1-d arrays of equal length")
    source = np.full(rids.size, -1, dtype=np.int64)
    slot = np.full(rids.size, -1, dtype=np.int64)
    if rids.size == 0 or key.size == 0:
        return source, slot
    slots = int(day) * BLUEZONE_IDS_PER_DAY + np.arange(BLUEZONE_IDS_PER_DAY, dtype=np.int64)
    per_chunk = max(1, int(chunk_ids) // BLUEZONE_IDS_PER_DAY)
    for lo in range(0, key.size, per_chunk):          # loop over key chunks, not over windows
        k = key[lo:lo + per_chunk]
        published = np.ascontiguousarray(sim_rids(k[:, None], slots[None, :]).reshape(-1))
        # match_ids, one index per record: nearly every window matches, where match_hits (made for
        # logs that mostly do not) would probe most blocks twice
        if lo == 0:                                     # every window still unresolved: no index copy
            idx = match_ids(rids, published)
            h = np.flatnonzero(idx >= 0)
            idx = idx[h]
        else:
            todo = np.flatnonzero(source < 0)
            if todo.size == 0:
                break
            idx = match_ids(rids[todo], published)
            ok = np.flatnonzero(idx >= 0)
            idx, h = idx[ok], todo[ok]
            del todo, ok
        source[h] = agent[lo + idx // BLUEZONE_IDS_PER_DAY]
        slot[h] = slots[idx % BLUEZONE_IDS_PER_DAY]
    return source, slot


# ----------------------------------------------------------------------------------------------------
# Pair table
# ----------------------------------------------------------------------------------------------------
def pairs_from_daily(daily: np.ndarray, notify, minutes, ground_truth=None,
                     close_minutes: float = 15.0) -> np.ndarray:
    """Pair table from per-(observer, source, day) sums and the rule's verdicts on them.

    ``daily``: :data:`tracing.rules.DAILY_DTYPE` (observer != source); ``notify``/``minutes``: the
    rule's bool verdict and minutes per row. Rows whose observer is j (the larger index) and source i
    give ``notify_j``; the reverse gives ``notify_i``. ``minutes`` is the larger of the directions;
    ``att`` the duration-weighted mean attenuation of both directions (dB, NaN if unknown);
    ``t_first`` the earliest window start of either direction (s), or the ground truth's ``t_first``
    where its array carries one and it is earlier. Outer-joined with ``ground_truth``
    (``GROUND_TRUTH_DTYPE``; rows only there get notify False, minutes 0, att and t_first NaN).
    Sorted by (day, i, j). Counting sorts and one merge kernel (:func:`tracing.core.pairjoin.pair_table`).
    """
    notify = np.asarray(notify, dtype=bool)
    minutes = np.asarray(minutes, dtype=np.float64)
    if notify.shape != (len(daily),) or minutes.shape != (len(daily),):
        raise ValueError("notify and minutes need one entry per daily row")
    if len(daily) and np.any(daily["observer"] == daily["source"]):
        raise ValueError("daily rows with observer == source (a phone's own IDs) are not contacts")
    close_minutes = float(close_minutes)
    if not close_minutes >= 0:
        raise ValueError(f"close_minutes must be >= 0 (min), got {close_minutes}")
    gt = ground_truth if ground_truth is not None and len(ground_truth) else None
    if gt is not None:
        for f in ("i", "j", "day", "minutes_close"):
            if gt.dtype.names is None or f not in gt.dtype.names:
                raise ValueError(f"ground_truth lacks field {f!r} (expected ble.schema.GROUND_TRUTH_DTYPE)")
        if np.any(gt["i"] >= gt["j"]):
            raise ValueError("ground_truth rows must have i < j")
    return pair_table(daily["observer"], daily["source"], daily["day"], notify, minutes, daily["t_first"],
                      daily["att_mean"], daily["duration_s"], gt, close_minutes)


def pairs_from_windows(windows: np.ndarray, source, day, ground_truth, rule,
                       close_minutes: float = 15.0) -> np.ndarray:
    """Pair table from in-memory windows whose advertiser (``source``) is already resolved.

    ``windows``: ``WINDOW_DTYPE``; ``source``: int array per window (−1 = unmatched, left out; the
    caller reports them); ``day``: int scalar/array per window or None for ``floor(t_start/86400)``;
    ``ground_truth``: ``GROUND_TRUTH_DTYPE`` array or None; ``rule``: :class:`tracing.rules.Rule` or
    name. Windows of a phone's own IDs (observer == source) are ignored. See :func:`pairs_from_daily`.
    """
    rule = rule if isinstance(rule, Rule) else load_rule(rule)
    if windows.dtype != WINDOW_DTYPE:
        raise ValueError(f"windows must have ble.schema.WINDOW_DTYPE, got {windows.dtype}")
    source = np.asarray(source)
    if source.shape != (len(windows),):
        raise ValueError(f"source needs one entry per window ({len(windows)}), got shape {source.shape}")
    source = np.where(source.astype(np.int64) == windows["observer"], -1, source.astype(np.int64))
    return _pairs_from_sums(daily_sums(windows, source, day), ground_truth, rule, close_minutes)


def _pairs_from_sums(daily, ground_truth, rule: Rule, close_minutes: float) -> np.ndarray:
    """The pair table of directed daily sums (``daily_sums``) under ``rule``."""
    notify, minutes, _ = evaluate(daily, rule)
    out = pairs_from_daily(daily, notify, minutes, ground_truth, close_minutes)
    if rule.kind == "ideal":     # the ideal rule notifies exactly the true close contacts
        out["notify_i"] = out["true_close"]
        out["notify_j"] = out["true_close"]
    return out


# ----------------------------------------------------------------------------------------------------
# Run folders
# ----------------------------------------------------------------------------------------------------


#: the directed daily rows one day keeps for its pair table (the rest of DAILY_DTYPE is dropped per block)
_SLIM = (("observer", np.int64), ("source", np.int64), ("notify", np.bool_), ("minutes", np.float32),
         ("t_first", np.float64), ("att_mean", np.float32), ("duration_s", np.float64))


def _reads_att_secs(rule: Rule) -> bool:
    """Whether ``rule``'s verdicts depend on the daily seconds per attenuation bucket (``att_secs``, half
    of a windows file's decoding): every kind but ``any_match``, ``ideal`` and a plain GAEN v1 score."""
    if rule.kind in ("any_match", "ideal"):
        return False
    return not (rule.kind == "v1_risk_score" and rule.params["attenuation_duration"] is None)


def _read_ahead(blocks):
    """Iterate ``blocks`` (a generator) one item ahead on a background thread: the next block is read
    and decoded (pyarrow decodes without the GIL) while the caller computes on the current one, so at
    most two blocks are in memory (the caller's and the next). Items, and an exception raised by
    ``blocks``, arrive in order; a caller that stops early stops the thread (after its current item)."""
    slot, ready, done = threading.Semaphore(0), [], threading.Event()
    cond = threading.Condition()

    def work():
        try:
            for item in blocks:
                with cond:
                    ready.append(("item", item))
                    cond.notify()
                del item
                slot.acquire()                              # wait until the caller took it
                if done.is_set():
                    return
        except BaseException as e:                          # handed to the caller, raised there
            with cond:
                ready.append(("error", e))
                cond.notify()
            return
        finally:
            blocks.close()
        with cond:
            ready.append(("end", None))
            cond.notify()

    t = threading.Thread(target=work, name="pairs-read-ahead", daemon=True)
    t.start()
    try:
        while True:
            with cond:
                while not ready:
                    cond.wait()
                kind, item = ready.pop(0)
            if kind == "end":
                return
            if kind == "error":
                raise item
            slot.release()                                  # the worker may decode the next one
            yield item
            del item
    finally:
        done.set()
        slot.release()
        t.join()


def _day_pairs(run: RunFolder, d: int, agent, key, rule: Rule, have_gt: bool, close_minutes: float,
               chunk_ids: int) -> tuple[np.ndarray, dict]:
    """Day ``d``'s pair table and match counts. Memory: the day's rolling-ID matches (12 bytes a window),
    one block of windows as columns with its daily sums and verdicts and the next block (read ahead on a
    thread, :func:`_read_ahead`), 41 bytes per directed daily row kept (:data:`_SLIM`) for the pair
    table, and the day's ground truth (read on a second thread meanwhile)."""
    with ThreadPoolExecutor(1, thread_name_prefix="pairs-gt") as pool:   # the ground truth read meanwhile
        gt = pool.submit(run.ground_truth, d) if have_gt else None
        cols = [f for f in WINDOW_FIELDS if f != "att_secs" or _reads_att_secs(rule)]
        blocks = _read_ahead(run.window_columns(d, columns=cols))   # first blocks decoded during matching
        try:
            return _day_rows(run, d, agent, key, rule, close_minutes, chunk_ids, blocks,
                             gt.result if gt is not None else lambda: None)
        finally:
            blocks.close()                               # stops the reading thread on an error


#: threads computing window blocks' daily rows at once (deterministic: each writes its own rows)
BLOCK_THREADS = 2


def _block_rows(w: dict, src, sl, d: int, rule: Rule, keep: dict, at: int, bufs) -> tuple[int, dict]:
    """One block of window columns ``w`` with its windows' ``src``/``sl`` (resolved advertiser and slot):
    its directed daily rows (sums and the rule's verdicts, :data:`_SLIM`) written to ``keep[f][at:at + g]``
    (g <= the block's windows); returns g and the block's match counts. ``bufs``: thread-local daily-sums
    buffer, reused block after block."""
    m = len(w["observer"])
    unmatched = int(np.count_nonzero(src < 0))
    own = (src >= 0) & (src == w["observer"])
    t_slot = np.floor(w["t_start"] / BLUEZONE_SLOT_S).astype(np.int64)
    counts = dict(windows=m, matched=m - unmatched, unmatched=unmatched, own_id=int(np.count_nonzero(own)),
                  slot_mismatch=int(np.count_nonzero((src >= 0) & (t_slot != sl))))
    buf = getattr(bufs, "buf", None)
    if buf is None or len(buf) < m:                      # one daily-sums buffer per thread
        buf = bufs.buf = np.zeros(m + m // 4, DAILY_DTYPE)
    daily = window_sums(w, np.where(own, -1, src), d, DAILY_DTYPE, out=buf)
    del w, own, t_slot
    notify, minutes, _ = evaluate(daily, rule)           # the rule is per directed daily row
    g = len(daily)
    keep["notify"][at:at + g] = notify
    keep["minutes"][at:at + g] = minutes
    keep_columns(daily, keep, at)                        # observer, source, t_first, att_mean, duration_s
    return g, counts


def _collect(item, st: dict) -> tuple[int, int]:
    """Wait for one block of :func:`_block_rows`: add its counts to ``st``; return (offset, rows)."""
    at, fut = item
    g, counts = fut.result()
    for k, v in counts.items():
        st[k] += v
    return at, g


def _day_rows(run: RunFolder, d: int, agent, key, rule: Rule, close_minutes: float, chunk_ids: int, blocks,
              ground_truth) -> tuple[np.ndarray, dict]:
    """The body of :func:`_day_pairs`: ``blocks``, the day's window column blocks; ``ground_truth()``,
    the day's ground truth (or None)."""
    st = dict(windows=0, matched=0, unmatched=0, own_id=0, slot_mismatch=0)
    source, slot = resolve_sources(run.window_rids(d), agent, key, d, chunk_ids)  # IDs regenerated once
    slot = slot.astype(np.int32)            # global 900 s slot (< 2**31 up to day 22 million)
    n = source.size
    keep = {f: np.empty(n, t) for f, t in _SLIM}           # at most one daily row per window
    lo, segs, pending, bufs = 0, [], deque(), threading.local()
    with ThreadPoolExecutor(BLOCK_THREADS, thread_name_prefix="pairs-block") as pool:
        for w in blocks:                                 # blocks of whole observers, in file order
            m = len(w["observer"])
            if lo + m > n:                               # more windows than IDs read: refused below
                lo += m
                break
            # each block's rows go to keep at its windows' offset (disjoint: g <= m), in parallel
            pending.append((lo, pool.submit(_block_rows, w, source[lo:lo + m], slot[lo:lo + m], d, rule, keep,
                                            lo, bufs)))
            lo += m
            del w
            while len(pending) >= BLOCK_THREADS:         # at most BLOCK_THREADS blocks in flight
                segs.append(_collect(pending.popleft(), st))
        while pending:
            segs.append(_collect(pending.popleft(), st))
    if lo != n:
        raise ValueError(f"{run.path}: day {d}: the windows file changed while it was read ({lo} of {n} rows)")
    r = 0
    for at, g in segs:                                   # close the gaps (none where every window is a row)
        if at != r:
            for f in keep:
                keep[f][r:r + g] = keep[f][at:at + g]    # moved left; numpy copes with the overlap
        r += g
    del source, slot, bufs
    gt = ground_truth()
    order = pair_order(keep["observer"][:r], keep["source"][:r], d)
    for f in keep:                                       # one column at a time: one extra column of memory
        keep[f] = keep[f][:r][order]                     # (the merge reading through order instead: 2x slower)
    del order
    k = keep
    part = pair_table(k["observer"], k["source"], d, k["notify"], k["minutes"], k["t_first"], k["att_mean"],
                      k["duration_s"], gt if gt is not None and len(gt) else None, close_minutes, ordered=True)
    del keep, k, gt
    if rule.kind == "ideal":     # the ideal rule notifies exactly the true close contacts
        part["notify_i"] = part["true_close"]
        part["notify_j"] = part["true_close"]
    return part, st


def pairs_from_run(run_dir, rule, days=None, progress: bool = False, close_minutes: float = 15.0,
                   stats: dict | None = None, chunk_ids: int = CHUNK_IDS, compact: bool = False) -> np.ndarray:
    """The pair table (:data:`tracing.pairs.PAIR_DTYPE`) of a simulator run folder under ``rule``.

    ``run_dir``: folder written by ``sim.run.simulate`` (``keys.parquet``, ``windows/day-NNN.parquet``,
    ``ground_truth.parquet``); ``rule``: :class:`tracing.rules.Rule` or a name for
    :func:`tracing.rules.load_rule`; ``days``: day indices to process (default: every day with a
    window file or ground-truth rows); ``close_minutes``: min within the close distance per day for
    ``true_close`` (default 15); ``stats``: optional dict filled with counts (``windows``, ``matched``,
    ``unmatched``, ``own_id``, ``slot_mismatch``, and ``per_day``). Streams day by day. Windows whose
    rolling ID matches no phone's ID of that day are counted and reported with a warning. Returns rows
    sorted by (day, i, j).

    ``compact=True``: instead of every pair-day row, the :func:`tracing.core.coverage.compact_pairs` table
    (at most two rows per pair, sorted by (i, j); enough for :class:`tracing.core.coverage.OnePass`),
    folded in day by day: memory stays flat in the days (the distinct pairs plus one day), where the
    full table grows by one day of rows per day.
    """
    run = RunFolder(run_dir)
    if not run.exists():
        raise ValueError(f"run folder {run_dir} does not exist")
    rule = rule if isinstance(rule, Rule) else load_rule(rule)
    merge = run.meta.get("window_merge", "day")
    if merge != "day":
        log.info("run %s: window_merge=%r; matching still uses each window's day", run_dir, merge)
    agent, key = run.keys()
    have_gt = run.has_ground_truth()
    if not have_gt:
        warnings.warn(f"{run.ground_truth_path} is missing: true_close is False everywhere", stacklevel=2)
    if days is None:
        days = run.days()
    else:
        days = sorted({int(d) for d in np.atleast_1d(np.asarray(days, dtype=np.int64))})
    if stats is None:
        stats = {}
    stats.update(windows=0, matched=0, unmatched=0, own_id=0, slot_mismatch=0, per_day={})

    it = tqdm(days, desc=f"pairs ({rule.name})", unit="day", disable=None) if progress else days  # terminals only
    parts = []
    n_agents = int(run.meta.get("n_agents", 0)) if compact else 0
    for d in it:                                         # loop over days (streaming), not windows
        part, day_stats = _day_pairs(run, d, agent, key, rule, have_gt, close_minutes, chunk_ids)
        stats["per_day"][d] = day_stats
        for k, v in day_stats.items():
            stats[k] += v
        if compact:                                      # fold the day in: memory flat in days
            n_c = max(n_agents, int(part["j"].max()) + 1 if len(part) else 1,
                      int(parts[0]["j"].max()) + 1 if parts and len(parts[0]) else 1)
            parts = [compact_pairs(np.concatenate(parts + [part]), n_c)]
        else:
            parts.append(part)
        del part
    if stats["unmatched"]:
        warnings.warn(f"run {run_dir}: {stats['unmatched']} of {stats['windows']} exposure windows "
                      "carry a rolling ID that no phone of keys.parquet broadcast that day; they were "
                      "left out (see stats['per_day'])", stacklevel=2)
    if stats["slot_mismatch"]:
        log.info("run %s: %d matched windows start outside their ID's 900 s slot", run_dir,
                 stats["slot_mismatch"])
    if not parts:
        return np.zeros(0, dtype=PAIR_DTYPE)
    return np.concatenate(parts)
