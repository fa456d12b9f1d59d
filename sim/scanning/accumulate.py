"""The day's accumulators: open-addressing hash maps sharded by key into 64 regions so that each thread
owns whole regions (deterministic at any thread count).

Memory (issue 16): a region holds ``cap`` slots, any count (not a power of two): a key's home slot is
the multiply-shift range reduction ``(h * cap) >> 32`` of 32 bits of its hash ``h`` (below the shard
bits), probing linearly and wrapping at ``cap``. A map grows to ``GROWTH`` x its capacity (or more,
for a large batch) before any region would pass a load of ``LOAD_MAX``, and it grows **in place**: its
arrays are views on anonymous mappings that reserve address space without committing memory
(``MAP_NORESERVE``; pages count only once touched), so a larger capacity is a longer view of the same
memory, and the regions are re-inserted from the last to the first, a batch of ``_REHASH_BATCH`` at a
time through a copy of just that batch (a region's new place never overlaps an unmoved region). The
transient of growing is that batch, not the old plus the new table (at 10^6 agents the former doubling
held 3 + 6 GB at once). Slot order never reaches an output: windows and ground truth are sorted.

Windows are keyed by (observer, advertiser) and hold the number of scans, RSSI sum and max, first and
last scan step and scans per attenuation bucket (``ble.schema.ATT_EDGES``, attenuation = advertiser's
TX power − RSSI); ground truth is keyed by (i, j), i < j, and holds the number of close (sub)steps and
the minimum distance.
"""
from __future__ import annotations

import math
import mmap
import os
import sys

import numpy as np
from numba import njit, prange

from ble._prefetch import prefetch
from ble.ids import sim_rids, slot_of
from ble.schema import GROUND_TRUTH_DTYPE, N_ATT_BUCKETS, WINDOW_DTYPE
from sim.kernels import even_cuts, par_cuts, run_blocks
from sim.rng import mix64
from sim.scanning.extract import (EMPTY, _obs_counts_kernel, _piece_slots_kernel, _used_slots_kernel,
                                  _window_fill_kernel, _window_heads_kernel, _window_order_kernel,
                                  _window_sort_kernel)

__all__ = ["N_SHARDS", "EMPTY", "WIN_SLOT", "GT_SLOT", "LOAD_MAX", "GROWTH", "GROWTH_LARGE", "DayAccumulator",
           "WINDOWS_PER_AGENT_DAY", "CLOSE_PAIRS_PER_AGENT_DAY", "LOAD_START", "initial_caps"]

N_SHARDS = 64
_SHARD_SHIFT = np.uint64(58)            # top 6 bits of the key hash choose the shard
_HOME_SHIFT = np.uint64(26)             # the 32 bits below them choose the home slot in the shard
_LOW32 = np.uint64(0xFFFFFFFF)
#: a map grows before an insert could push any region above this load (linear probing: ~3.8 probes
#: per hit, ~22 per miss at 0.85)
LOAD_MAX = 0.85
#: a growing map's capacity factor (at least; a large batch may need more): the final load of a day
#: lies in [LOAD_MAX / GROWTH, LOAD_MAX], and re-inserting costs ~1 / (GROWTH - 1) x the keys in all
GROWTH = 1.3
#: the factor once the map holds more than ``LARGE_BYTES``: the last growths of a large day decide its
#: peak memory (10^6 agents: 63 M windows ended at a load of 0.69 with 1.3, 4.2 GB of slots)
GROWTH_LARGE = 1.15
LARGE_BYTES = 1 << 29
#: regions re-inserted per batch while growing (the transient: this many regions' old slots)
_REHASH_BATCH = 4
#: expected windows and close pairs (ground-truth rows) per agent of a day, to size a run's first day's maps
#: (:func:`initial_caps`): Lạng Sơn measured 61.2 / 19.7 at 10^5 agents and 63.1 / 19.9 at 10^6. Growing
#: from a small map re-inserted ~2x the final keys at 10^5 agents (10^6: ~7x, at 1.15x per growth) —
#: more work than the inserts themselves; a day with more windows than this still grows (correct, slower)
WINDOWS_PER_AGENT_DAY = 64.0
CLOSE_PAIRS_PER_AGENT_DAY = 20.5
#: the load a first day's maps reach at the expected counts (below LOAD_MAX: a day slightly above the
#: expectation does not grow)
LOAD_START = 0.8
#: records merged per call of the insert kernels (DayAccumulator.add_partial / add_close)
ADD_CHUNK = 1 << 22


# ------------------------------------------------------------------------------------------------
# kernels: sharded hash maps
# ------------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _shard(key):
    return np.int64(mix64(key) >> _SHARD_SHIFT)


@njit(cache=True)
def _shard_order_kernel(keys, n_shards):
    """Stable counting sort of record indices by shard: (start offsets (n_shards + 1), order)."""
    n = keys.shape[0]
    sh = np.empty(n, np.int64)
    start = np.zeros(n_shards + 1, np.int64)
    for r in range(n):
        s = _shard(keys[r])
        sh[r] = s
        start[s + 1] += 1
    for s in range(n_shards):
        start[s + 1] += start[s]
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    for r in range(n):
        s = sh[r]
        order[fill[s]] = r
        fill[s] += 1
    return start, order


@njit(cache=True, inline="always")
def _find(tkeys, base, cap, key):
    """Slot of ``key`` in the shard region at ``base`` of ``cap`` slots (any count < 2^32): existing or
    first empty, probing linearly from ``(h * cap) >> 32`` (h: 32 hash bits below the shard's)."""
    h = (mix64(key) >> _HOME_SHIFT) & _LOW32
    pos = np.int64((h * np.uint64(cap)) >> np.uint64(32))
    while True:
        k = tkeys[base + pos]
        if k == key or k == EMPTY:
            return base + pos
        pos += 1
        if pos == cap:
            pos = 0


@njit(cache=True, inline="always")
def _claim(tkeys, counts, s, base, cap, key):
    """Slot of ``key`` in shard ``s`` (region at ``base``), inserted if absent (``counts[s]`` + 1):
    (slot, True if the key is new)."""
    slot = _find(tkeys, base, cap, key)
    new = tkeys[slot] == EMPTY
    if new:
        tkeys[slot] = key
        counts[s] += 1
    return slot, new


#: one window-accumulator slot (packed scalars; the bucket counts live in a parallel (slots, 11) array —
#: numba's nested arrays in records did not write through reliably inside prange loops)
#: (14 bytes, packed: scans ≤ 65535 per day, first/last scan as step indices, RSSI max and sum in float32;
#: with the key and the bucket counts 44 bytes a slot; issue 16: no padding, 2 bytes x ~80 M slots at 10^6
#: agents)
WIN_SLOT = np.dtype([("n", "u2"), ("s0", "u2"), ("s1", "u2"), ("rmax", "f4"), ("rsum", "f4")])
GT_SLOT = np.dtype([("n", "i4"), ("dmin", "f4")])


#: records whose home slots are requested at once (group prefetching: their cache misses overlap)
_GROUP = 32


@njit(cache=True, inline="always")
def _home(key, base, cap):
    """Home slot of ``key`` in the shard region at ``base`` of ``cap`` slots (:func:`_find`)."""
    h = (mix64(key) >> _HOME_SHIFT) & _LOW32
    return base + np.int64((h * np.uint64(cap)) >> np.uint64(32))


@njit(cache=True, inline="always")
def _group(keys, r, n, sh_lo, sh_hi, cap, tkeys, tvals, tbc, gr, gs, gh):
    """The next (up to :data:`_GROUP`) records from ``r`` on whose shard lies in ``sh_lo..sh_hi``, in input
    order: their indices, shards and home slots into ``gr``, ``gs``, ``gh``, the lines of their home
    slots (key, values, bucket counts; the values and counts of the next slot too: a slot's 14 and 22
    bytes may cross a cache line). Returns (records in the group, the next ``r``)."""
    m = 0
    last = tkeys.shape[0] - 1
    while r < n and m < _GROUP:
        key = keys[r]
        s = _shard(key)
        if s >= sh_lo and s < sh_hi:
            h = _home(key, s * cap, cap)
            h1 = min(h + 1, last)
            prefetch(tkeys, h)
            prefetch(tvals, h)
            prefetch(tvals, h1)
            prefetch(tbc, h)
            prefetch(tbc, h1)
            gr[m] = r
            gs[m] = s
            gh[m] = h
            m += 1
        r += 1
    return m, r


@njit(cache=True, inline="always")
def _claim_at(tkeys, counts, s, base, cap, key, pos):
    """:func:`_claim` from the home slot ``pos`` (absolute, already computed)."""
    pos -= base
    while True:
        k = tkeys[base + pos]
        if k == key or k == EMPTY:
            break
        pos += 1
        if pos == cap:
            pos = 0
    slot = base + pos
    new = tkeys[slot] == EMPTY
    if new:
        tkeys[slot] = key
        counts[s] += 1
    return slot, new


@njit(cache=True, nogil=True)
def _win_insert_kernel(tkeys, tvals, tbc, counts, cap, keys, n_in, rsum_in, rmax_in, s0_in, s1_in, bc_in,
                       bucket_in, single, sh_lo, sh_hi):
    """Merge the records (``keys``, input order) of the shards ``sh_lo..sh_hi`` into the window map
    (serial, ``nogil``: run over chunks of shards by :func:`sim.kernels.run_blocks`,
    :func:`_shard_cuts`); ``single``: each record is one scan in bucket ``bucket_in`` (``bc_in``
    unused), else a partial aggregate with bucket counts ``bc_in``. Records are read in input order
    (each shard merges its records in that order, whatever the chunks) and merged in groups whose
    home slots are prefetched together (:func:`_group`)."""
    gr = np.empty(_GROUP, np.int64)
    gs = np.empty(_GROUP, np.int64)
    gh = np.empty(_GROUP, np.int64)
    n = keys.shape[0]
    r = 0
    while r < n:
        m, r = _group(keys, r, n, sh_lo, sh_hi, cap, tkeys, tvals, tbc, gr, gs, gh)
        for g in range(m):
            q = gr[g]
            s = gs[g]
            slot, new = _claim_at(tkeys, counts, s, s * cap, cap, keys[q], gh[g])
            v = tvals[slot]
            if new:
                v.n = 0
                v.rsum = 0.0
                v.rmax = -np.inf
                v.s0 = 65535
                v.s1 = 0
                for b in range(tbc.shape[1]):
                    tbc[slot, b] = 0
            v.n += n_in[q]
            v.rsum += rsum_in[q]
            if rmax_in[q] > v.rmax:
                v.rmax = rmax_in[q]
            if s0_in[q] < v.s0:
                v.s0 = s0_in[q]
            if s1_in[q] > v.s1:
                v.s1 = s1_in[q]
            if single:
                tbc[slot, bucket_in[q]] += 1
            else:
                for b in range(tbc.shape[1]):
                    tbc[slot, b] += bc_in[q, b]


def _shard_cuts(start) -> tuple:
    """``(threads, cuts of the shards)`` for :func:`sim.kernels.run_blocks` merging the records of the
    shards ``start`` (n_shards + 1 offsets; one call for few records). Every chunk reads all the
    records' keys (in input order), so there are few: two a thread."""
    threads, cuts = par_cuts(int(start[-1]))
    return threads, even_cuts(len(start) - 1, min(len(cuts) - 1, 2 * threads))


@njit(cache=True, nogil=True)
def _gt_insert_kernel(tkeys, tvals, counts, cap, keys, n_in, d_in, sh_lo, sh_hi):
    """:func:`_win_insert_kernel` for the ground truth's map (close (sub)steps ``n_in``, distance
    ``d_in`` m)."""
    gr = np.empty(_GROUP, np.int64)
    gs = np.empty(_GROUP, np.int64)
    gh = np.empty(_GROUP, np.int64)
    n = keys.shape[0]
    r = 0
    while r < n:
        m, r = _group(keys, r, n, sh_lo, sh_hi, cap, tkeys, tvals, tvals, gr, gs, gh)
        for g in range(m):
            q = gr[g]
            s = gs[g]
            slot, new = _claim_at(tkeys, counts, s, s * cap, cap, keys[q], gh[g])
            v = tvals[slot]
            if new:
                v.n = 0
                v.dmin = np.inf
            v.n += n_in[q]
            if d_in[q] < v.dmin:
                v.dmin = d_in[q]


@njit(cache=True, parallel=True)
def _regrow_kernel(keys, vals, bc, old_keys, old_vals, old_bc, lo, hi, old_cap, cap):
    """Shards ``lo <= s < hi`` re-inserted into their regions of ``cap`` slots (at ``s * cap``) from a
    copy of their old regions (``old_*``: slots ``[lo * old_cap, hi * old_cap)``, in old slot order);
    ``*vals``: the packed slots viewed as (slots, itemsize) bytes. The caller goes from the last shards
    to the first: a new region never overlaps an old region not yet copied."""
    for s in prange(lo, hi):
        base = s * cap
        for q in range(base, base + cap):
            keys[q] = EMPTY
        for q in range((s - lo) * old_cap, (s - lo + 1) * old_cap):
            k = old_keys[q]
            if k != EMPTY:
                slot = _find(keys, base, cap, k)
                keys[slot] = k
                for b in range(old_vals.shape[1]):
                    vals[slot, b] = old_vals[q, b]
                for b in range(old_bc.shape[1]):
                    bc[slot, b] = old_bc[q, b]


@njit(cache=True, nogil=True)
def _absent_kernel(tkeys, cap, start, order, keys, absent, sh_lo, sh_hi):
    """Per shard s in ``sh_lo..sh_hi``, ``absent[s]`` = the incoming records ``order[start[s]:start[s +
    1]]`` whose key is not in the map yet (an upper bound on the keys they add)."""
    for s in range(sh_lo, sh_hi):
        c = 0
        for q in range(start[s], start[s + 1]):
            key = keys[order[q]]
            c += np.int64(tkeys[_find(tkeys, s * cap, cap, key)] != key)
        absent[s] = c


@njit(cache=True, nogil=True)
def _contains_kernel(tkeys, cap, keys, out, r_lo, r_hi):
    """``out[r]`` = ``keys[r]`` is in the map, for ``r_lo <= r < r_hi``: groups of :data:`_GROUP` keys
    whose home slots are requested together, then probed."""
    gh = np.empty(_GROUP, np.int64)
    for g0 in range(r_lo, r_hi, _GROUP):
        g1 = min(g0 + _GROUP, r_hi)
        for r in range(g0, g1):
            key = keys[r]
            s = _shard(key)
            h = _home(key, s * cap, cap)
            prefetch(tkeys, h)
            gh[r - g0] = h
        for r in range(g0, g1):
            key = keys[r]
            base = _shard(key) * cap
            pos = gh[r - g0] - base
            while True:
                k = tkeys[base + pos]
                if k == key or k == EMPTY:
                    break
                pos += 1
                if pos == cap:
                    pos = 0
            out[r] = k == key


def _phys_bytes() -> int:
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - no sysconf
        return 1 << 34


#: address space reserved per growable array: this machine's memory (no map outgrows it), at least twice
#: the first request; nothing is committed until touched
_RESERVE_BYTES = _phys_bytes()
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000 if sys.platform.startswith("linux") else 0)


class _Growable:
    """A byte buffer whose prefix views grow without moving: an anonymous private mapping of
    ``_RESERVE_BYTES`` (Linux: ``MAP_NORESERVE``, so only touched pages use memory); elsewhere, or if
    the mapping fails or is outgrown, a plain allocation that is copied when it grows."""

    def __init__(self):
        self._buf = None
        self._size = 0

    def view(self, nbytes: int) -> np.ndarray:
        """The first ``nbytes`` bytes (``uint8``), keeping the bytes already there."""
        nbytes = max(int(nbytes), 1)
        if nbytes > self._size:
            old, old_size = self._buf, self._size
            self._buf, self._size = self._allocate(nbytes)
            if old is not None:          # outgrown (or no mapping): copy, the transient is old + new
                np.frombuffer(self._buf, np.uint8, old_size)[:] = np.frombuffer(old, np.uint8, old_size)
        return np.frombuffer(self._buf, np.uint8, nbytes)

    @staticmethod
    def _allocate(nbytes: int):
        if _MAP_NORESERVE:
            size = max(_RESERVE_BYTES, 2 * nbytes)
            try:
                m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
                if hasattr(mmap, "MADV_HUGEPAGE"):
                    m.madvise(mmap.MADV_HUGEPAGE)
                return m, size
            except (OSError, ValueError, OverflowError):  # pragma: no cover - e.g. an address-space limit
                pass
        return bytearray(nbytes), nbytes  # pragma: no cover - not Linux


class _ShardedMap:
    """Open-addressing hash map over ``uint64`` keys in :data:`N_SHARDS` regions of ``cap`` slots (any
    count); values in one packed record array (``slot_dtype``) and ``n_buckets`` ``uint16`` counts per
    slot. Grows in place (module docstring) before an insert could push any region above a load of
    :data:`LOAD_MAX` (:meth:`reserve`: incoming keys already present are not counted once the
    worst-case bound is reached)."""

    def __init__(self, slot_dtype: np.dtype, cap: int = 1024, n_buckets: int = 0):
        self.dtype = np.dtype(slot_dtype)
        self.nb = n_buckets
        self._mem = (_Growable(), _Growable(), _Growable())
        self.counts = np.zeros(N_SHARDS, np.int64)
        self._views(int(cap))
        self.keys[:] = EMPTY

    def _views(self, cap: int) -> None:
        n = N_SHARDS * cap
        self.keys = self._mem[0].view(8 * n).view(np.uint64)
        self.vals = self._mem[1].view(self.dtype.itemsize * n)[:self.dtype.itemsize * n].view(self.dtype)
        self.bc = self._mem[2].view(2 * self.nb * n)[:2 * self.nb * n].view(np.uint16).reshape(n, self.nb)
        self.cap = cap

    def reserve(self, start: np.ndarray, order: np.ndarray, keys: np.ndarray) -> None:
        """Room for the incoming records (``keys[order[start[s]:start[s + 1]]]`` into shard s): grows
        when a shard could exceed a load of :data:`LOAD_MAX` — first assuming every record is a new
        key, and if that bound is exceeded, counting the records whose key is absent (so a nearly full
        map does not grow for keys it already holds)."""
        incoming = np.diff(start)
        need = int((self.counts + incoming).max()) if len(incoming) else 0
        if need > LOAD_MAX * self.cap:
            absent = np.zeros(len(incoming), np.int64)
            run_blocks(_absent_kernel, *_shard_cuts(start), self.keys, self.cap, start, order, keys, absent)
            need = int((self.counts + absent).max())
        if need > LOAD_MAX * self.cap:
            factor = GROWTH if self.nbytes < LARGE_BYTES else GROWTH_LARGE
            self.grow(max(int(self.cap * factor), int(need / LOAD_MAX) + 1))

    def grow(self, cap: int) -> None:
        """Re-insert every key into regions of ``cap`` (> current) slots, in place: regions from the
        last to the first, :data:`_REHASH_BATCH` at a time through a copy of their old slots."""
        old = self.cap
        if cap <= old:
            raise ValueError(f"grow: capacity must increase, got {cap} <= {old}")
        if N_SHARDS * cap >= 1 << 32 or cap >= 1 << 32:
            raise ValueError(f"grow: capacity {cap} per shard is beyond this map's 32-bit slot hashing")
        isz = self.dtype.itemsize
        self._views(cap)
        vals = self.vals.view(np.uint8).reshape(-1, isz)
        for hi in range(N_SHARDS, 0, -_REHASH_BATCH):
            lo = max(hi - _REHASH_BATCH, 0)
            sl = slice(lo * old, hi * old)
            _regrow_kernel(self.keys, vals, self.bc, self.keys[sl].copy(), vals[sl].copy(), self.bc[sl].copy(),
                           lo, hi, old, cap)

    def items(self, lo: int = 0, hi: int | None = None):
        """(keys, values, bucket counts) of the used slots, optionally only keys with ``lo <= key >> 32
        < hi`` (an observer / first-agent range)."""
        used = self.keys != EMPTY
        if lo or hi is not None:
            top = self.keys >> np.uint64(32)
            used &= top >= np.uint64(lo)
            if hi is not None:
                used &= top < np.uint64(hi)
        return self.keys[used], self.vals[used], self.bc[used]

    @property
    def nbytes(self) -> int:
        return self.keys.nbytes + self.vals.nbytes + self.bc.nbytes


def initial_caps(n_agents: int, min_cap: int = 1024) -> tuple:
    """(windows', ground truth's) slots per shard for the first day of ``n_agents`` agents: the expected
    counts (:data:`WINDOWS_PER_AGENT_DAY`, :data:`CLOSE_PAIRS_PER_AGENT_DAY`) at a load of
    :data:`LOAD_START`, at least ``min_cap``. Only the slot order depends on it, and no output does."""
    n = max(int(n_agents), 0)
    return tuple(max(int(min_cap), int(math.ceil(per * n / (LOAD_START * N_SHARDS))))
                 for per in (WINDOWS_PER_AGENT_DAY, CLOSE_PAIRS_PER_AGENT_DAY))


class DayAccumulator:
    """Windows and ground truth of one day, fed step by step (or by static episodes)."""

    def __init__(self, cap=1024):
        """``cap``: slots per shard of both maps, or (windows', ground truth's) — a previous day's
        :attr:`caps`, so that a day like it does not grow them."""
        win_cap, gt_cap = (cap, cap) if np.ndim(cap) == 0 else cap
        self.win = _ShardedMap(WIN_SLOT, int(win_cap), N_ATT_BUCKETS)
        self.gt = _ShardedMap(GT_SLOT, int(gt_cap))
        self._empty_bc = np.zeros((0, N_ATT_BUCKETS), np.uint16)
        self._empty_b = np.zeros(0, np.int8)

    def add_scans(self, keys, steps, rssi, bucket):
        """Single scans: key = observer << 32 | advertiser, step, RSSI (dBm), attenuation bucket."""
        if len(keys) == 0:
            return
        start, order = _shard_order_kernel(keys, N_SHARDS)
        self.win.reserve(start, order, keys)
        run_blocks(_win_insert_kernel, *_shard_cuts(start), self.win.keys, self.win.vals, self.win.bc,
                   self.win.counts, self.win.cap, keys, np.ones(len(keys), np.uint16), rssi, rssi,
                   steps, steps, self._empty_bc, bucket, True)

    def add_partial(self, obs, adv, n, rsum, rmax, t0, t1, bc):
        """Aggregates of several scans of one ordered pair (static episodes). Merged :data:`ADD_CHUNK`
        records at a time (the day's last flush is tens of millions of records at 10^6 agents: keys and
        shard order are 24 bytes a record); each shard still merges its records in input order, so
        the sums are those of one pass."""
        for lo in range(0, len(obs), ADD_CHUNK):
            sl = slice(lo, lo + ADD_CHUNK)
            keys = (obs[sl].astype(np.uint64) << np.uint64(32)) | adv[sl].astype(np.uint64)
            start, order = _shard_order_kernel(keys, N_SHARDS)
            self.win.reserve(start, order, keys)
            run_blocks(_win_insert_kernel, *_shard_cuts(start), self.win.keys, self.win.vals, self.win.bc,
                       self.win.counts, self.win.cap, keys, n[sl].astype(np.uint16), rsum[sl],
                       rmax[sl], t0[sl], t1[sl], bc[sl], self._empty_b, False)

    def add_close(self, i, j, n, d):
        """Close (sub)steps of pairs i < j: ``n`` close (sub)steps at distance ``d`` (m)."""
        for lo in range(0, len(i), ADD_CHUNK):                   # in chunks, as add_partial
            sl = slice(lo, lo + ADD_CHUNK)
            keys = (i[sl].astype(np.uint64) << np.uint64(32)) | j[sl].astype(np.uint64)
            start, order = _shard_order_kernel(keys, N_SHARDS)
            self.gt.reserve(start, order, keys)
            run_blocks(_gt_insert_kernel, *_shard_cuts(start), self.gt.keys, self.gt.vals, self.gt.counts,
                       self.gt.cap, keys, n[sl].astype(np.int32), d[sl].astype(np.float32))

    @property
    def nbytes(self) -> int:
        return self.win.nbytes + self.gt.nbytes

    @property
    def caps(self) -> tuple:
        """(windows' capacity, ground truth's capacity) per shard: the next day's ``cap``."""
        return self.win.cap, self.gt.cap

    @property
    def n_windows(self) -> int:
        return int(self.win.counts.sum())

    def windows(self, rid_keys: np.ndarray, tx_power: np.ndarray, scan_s: float, day: int,
                phase: np.ndarray, obs_lo: int = 0, obs_hi: int | None = None) -> np.ndarray:
        """The day's windows (``WINDOW_DTYPE``) of observers ``obs_lo <= observer < obs_hi``, sorted by
        (observer, rid); rid = ``sim_rids(key of the advertiser, slot of the first scan seen)``; every scan
        counts ``scan_s`` seconds; times (s) = day start + step × scan_s + the observer's scan phase."""
        m = self.win
        hi = (1 << 32) if obs_hi is None else int(obs_hi)
        slots = _used_slots_kernel(m.keys, np.uint64(max(int(obs_lo), 0)), np.uint64(max(hi, 0)))
        return self._windows_of(slots, rid_keys, tx_power, scan_s, day, phase)

    def window_counts(self, n_obs: int) -> np.ndarray:
        """Windows per observer ``0 <= o < n_obs`` (``int64``), one pass over the map."""
        out = np.zeros(int(n_obs), np.int64)
        _obs_counts_kernel(self.win.keys, out)
        return out

    def window_pieces(self, rid_keys: np.ndarray, tx_power: np.ndarray, scan_s: float, day: int,
                      phase: np.ndarray, piece_of_obs: np.ndarray, n_pieces: int, room=None):
        """The day's windows piece by piece: yields ``(p, windows of the observers o with
        piece_of_obs[o] == p)`` for p = 0 .. n_pieces - 1 (as :meth:`windows`, the same rows and order),
        each piece an observer range (``piece_of_obs`` non-decreasing). The map is read twice to bucket
        its used slots by piece (4 bytes a window), not once per piece. ``room``: ``room(n)`` gives the
        array (``WINDOW_DTYPE``, ``n`` rows) a piece of ``n`` windows is written into (default: a new
        one), e.g. the place of the next rows of a writer's slice."""
        start, idx = _piece_slots_kernel(self.win.keys, piece_of_obs.astype(np.int64), int(n_pieces))
        for p in range(int(n_pieces)):
            n = int(start[p + 1] - start[p])
            out = None if room is None else room(n)
            if out is not None and (out.dtype != WINDOW_DTYPE or out.shape != (n,)):
                raise ValueError(f"window_pieces: room({n}) must give {n} rows of WINDOW_DTYPE, got "
                                 f"{out.shape} {out.dtype}")
            yield p, self._windows_of(idx[start[p]:start[p + 1]].astype(np.int64), rid_keys, tx_power, scan_s,
                                      day, phase, out)

    def _windows_of(self, slots, rid_keys, tx_power, scan_s, day, phase, out=None) -> np.ndarray:
        """Window rows of the used map ``slots`` (in slot order), sorted (:meth:`windows`); into ``out``
        (every field of every row is written) if given."""
        m = self.win
        n = len(slots)
        day_t = day * 86400.0
        tx_power = np.ascontiguousarray(tx_power, dtype=np.float32)   # one specialisation (dBm, as stored)
        obs = np.empty(n, np.int64)
        adv = np.empty(n, np.int64)
        t0 = np.empty(n, np.float64)
        _window_heads_kernel(slots, m.keys, m.vals["s0"], phase, day_t, float(scan_s), obs, adv, t0)
        rid = sim_rids(rid_keys[adv], slot_of(t0))
        # order by (observer, rid, t_start), stable (= np.lexsort((t_start, rid, observer))): counting
        # sort by observer, then a sort of each observer's few windows (numba, parallel over observers)
        lo = int(obs.min()) if n else 0
        start, order, rid_o, t0_o = _window_order_kernel(obs, rid, t0, lo, (int(obs.max()) + 1 - lo) if n else 0)
        run_blocks(_window_sort_kernel, *par_cuts(len(start) - 1, 1 << 12), order, start, rid, t0, rid_o, t0_o)
        del rid_o, t0_o
        w = np.zeros(n, WINDOW_DTYPE) if out is None else out
        if n:
            dest = np.empty(n, np.int64)
            dest[order] = np.arange(n, dtype=np.int64)
            run_blocks(_window_fill_kernel, *par_cuts(n), dest, slots, obs, adv, t0, rid, m.vals["n"], m.vals["s1"],
                       m.vals["rsum"], m.vals["rmax"], m.bc, phase, tx_power, day_t, float(scan_s), w["observer"],
                       w["rid"], w["t_start"], w["t_end"], w["n_scans"], w["duration_s"], w["rssi_mean"],
                       w["rssi_max"], w["tx_power"], w["att_typical"], w["att_min"], w["att_secs"])
        return w

    def ground_truth(self, day: int, sub_s: float, release: bool = False) -> np.ndarray:
        """The day's ground truth (``GROUND_TRUTH_DTYPE``) sorted by (i, j); ``sub_s`` seconds per
        close (sub)step; ``detected`` = a window exists in either direction. ``release``: free the
        close-pair map once read (the windows' extraction does not need it; :attr:`caps` then reports
        an empty map, so take it before). Temporaries: one 8-byte array of the rows at a time besides
        the keys and the result (at 10^6 agents ~20 M rows)."""
        keys, c, _ = self.gt.items()
        if release:
            self.gt = _ShardedMap(GT_SLOT, 1)
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        c = c[order]
        del order
        g = np.zeros(len(keys), GROUND_TRUTH_DTYPE)
        g["i"] = keys >> np.uint64(32)
        g["j"] = keys & np.uint64(0xFFFFFFFF)
        g["day"] = day
        g["minutes_close"] = c["n"] * (sub_s / 60.0)
        g["min_dist"] = c["dmin"]
        del c
        fwd = np.empty(len(keys), np.bool_)
        run_blocks(_contains_kernel, *par_cuts(len(keys)), self.win.keys, self.win.cap, keys, fwd)
        keys = (keys << np.uint64(32)) | (keys >> np.uint64(32))        # (j, i): the reverse direction
        rev = np.empty(len(keys), np.bool_)
        run_blocks(_contains_kernel, *par_cuts(len(keys)), self.win.keys, self.win.cap, keys, rev)
        g["detected"] = fwd | rev
        return g
