"""ID matching, the tracing core's hot loop: which logged rolling IDs were published by a case?

``match_ids(log_rids, published_rids) -> idx``: for every logged ID, the index of that ID in
``published_rids`` (int64; -1 where it was not published).  ``match_mask`` is the boolean form
(``idx >= 0``), the same as ``numpy.isin(log_rids, published_rids)``.
``match_hits(log_rids, published_rids) -> (rec, idx)`` is the compact form: only the matched records
(``rec``, ascending) and their IDs' indices -- what the callers use, without an 8-byte result per
record (at 10^8 records that result alone is 800 MB of memory traffic).

Algorithm: a numba open-addressing hash join.

* Table: ``2**k`` slots with load ``<= 0.5`` (in practice <= 0.375 after rounding up), linear probing,
  Fibonacci hashing (``(key * 0x9E3779B97F4A7C15) >> (64 - k)``, i.e. the top bits of a
  multiplicative hash of the uint64).  Each slot is a uint32 ``index + 1`` into the published array
  (16 MiB for 1.3 M IDs, 4x less than storing keys: fewer page faults and cache misses to build it);
  the key is compared as ``published[index]``; ``0`` marks an empty slot, so every uint64 value, 0 and
  2**64-1 included, is a valid key.  A blocked Bloom filter (one 64-bit word per ID with 3 bits set, >= 10
  bits per published ID: 2 MiB for 1.3 M IDs; the word from the top bits of the table's hash, the bit
  numbers from a second multiplicative hash) is checked first: lookups of IDs that were *not*
  published -- the common case -- end there without touching the table (false positive rate ~1.4%
  at 1.3 M IDs, which then just probe the table).  Measured on the 2-vCPU EPYC benchmark machine,
  the 2 MiB filter probes 2x faster than a 4 MiB one (fewer cache misses outweigh the extra false
  positives); 1 MiB was no faster and passes 7% of the records.  (Issue 16, with today's filter
  pass, one thread, 10^7 records, load 8: 32 KiB / 1 / 2 / 4 / 16 MiB of filter 29 / 37 / 42 / 50 /
  110 ms.)
* Build: the published IDs are put in order of table region (a stable counting sort by the top 8
  bits of the slot that also copies the keys, so the inserts read them sequentially; counted and
  scattered in 16 fixed chunks in parallel); the 256 regions are then filled in parallel
  (``prange``): a region's keys set only that region's filter words (the filter word is the top bits
  of the same hash) and insert into that region's slots, a key whose probe would run past its
  region's last slot is left for a serial pass afterwards (linear probing gives a valid table in any
  insertion order).  Inserts do not look for duplicates: equal keys share a home slot and are
  inserted in index order (stable sort, late keys in order), so the first occurrence holds the slot
  a lookup reaches first (the duplicate check read ``published`` at random on every collision: 2/3
  of the inserts' time).  Table and filter are allocated by numpy, 2 MiB-aligned, so they sit on
  transparent huge pages where the system gives them.  **Duplicated published IDs: the first
  occurrence wins** -- ``match_ids`` returns the smallest index ``k`` with ``published_rids[k] == id``,
  like ``dict`` built with ``setdefault``.  This is deterministic.
* Probe: ``prange`` over blocks of 2048 records.  Per block a branch-free filter pass lists the
  candidates (no unpredictable branch, so the out-of-order core keeps many filter loads in flight;
  1.4-1.9x faster than branching per record), prefetching the filter word of the record 32 ahead
  (``tracing.core._prefetch``, LLVM's ``llvm.prefetch``).  Then only the candidates probe the table,
  group-prefetched: all of the block's candidates' home slots are requested, then read (requesting
  the published key each names), then compared -- their cache misses overlap instead of waiting one
  by one behind a mispredicted branch.  Every output element depends only on its own record, so the
  result is identical for any number of threads.
* ``match_hits``: the same blocks, each keeping up to 64 hits (record offset, index) in a first
  pass; the rare block with more (a log that mostly matches) is redone with room for all its records,
  and the kept hits are concatenated in block order.
* ``out=``: ``match_ids`` and ``match_mask`` can write into a caller's buffer (reused from call to call when a log is
  matched in chunks).  At 10^8 records a fresh 800 MB result costs more in page faults (and, with
  transparent huge pages, compaction) than the whole probe; reusing the buffer avoids that.

Measured (issue 16, 2-vCPU EPYC Milan VM, L2 512 KiB/core, L3 32 MiB, shared: 1-minute load 5-8
throughout, so single-threaded CPU time, min of 7-9 interleaved runs, 1,344,000 published IDs):
``match_hits`` at 10^7 records 169-188 -> 98-106 ms CPU, at 10^8 1118 -> 703 ms; the build 60-88 ->
37-50 ms; with both threads (wall, min of 3-9, load 4-6) 294 -> 189 ms at 10^7 and 1714-1779 ->
834-861 ms at 10^8 (the build alone is slower on 2 threads than on 1 under such load: 78 vs 47 ms).
Where a probe's time goes at 10^7 (one thread): reading and hashing the log 11 ms, the
filter pass 26-31 ms more (with a 32 KiB filter: 18 ms more -- mostly instructions, not misses), the
candidates 13 ms.  Steps: build without the duplicate check, table fill 37 -> 13 ms; candidates
group-prefetched, ~36 -> ~14 ms; the filter word prefetched 32 records ahead, filter pass 48.6 ->
41 ms; hashes in a vectorised loop and unsigned indices, 40.7 -> 33.6 ms.  Tried without gain
(same setting, ms): prefetching the filter word inside the hash loop 47 / not at all 51 (vs 41);
requesting a whole block's filter words before testing 46-59; prefetching 16 / 64 records ahead
(whole ``match_hits``) 92 / 90 (vs 89); ``prefetchnta`` of the log 41-42 (vs
42.6); one multiply for word and bits 37.1 (vs 37.1); blocks of 1024 / 4096 / 8192 records 93 / 87 /
87 (vs 89); a two-level filter (512 or 256 KiB first level, passes 24-53%) 64-68 (vs 42); the
candidates' table stages pipelined across blocks 53-56 (vs 56); building each region by a counting
sort on the home slot and a sweep 27 (vs 22.5); 2**21 / 2**23 table slots 18.7 / 25.4 (vs 18.0);
dynamic scheduling (``parallel_chunksize`` 16 / 128, 2 threads, wall) 119 / 120 (vs 108); the
candidates' home slot tested branch-free, only collisions probed on: 90 / 89 ms at 10^7 and 626 at
10^8 (vs 99 / 87 / 566: noise either way); huge pages
for table and filter: no difference measurable under this load (kept: it costs nothing measurable).
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit, prange

from tracing.core._prefetch import prefetch

__all__ = ["match_ids", "match_mask", "match_hits"]

_FIB = np.uint64(0x9E3779B97F4A7C15)      # table: Fibonacci hashing, top bits of key * 2**64/phi
_FILT = np.uint64(0xD6E8FEB86659FD93)     # filter: another odd multiplier, top bits again
_MAX_LOAD = 0.375          # table size 2**k with n_published / 2**k <= this (<= 0.5 as required)
_FILTER_BITS_PER_KEY = 10  # blocked Bloom filter: >= 10 bits per published ID, 3 bits per ID
_BUILD_CHUNKS = 16         # chunks of the published IDs counted / scattered in parallel by the build


@njit(cache=True, inline="always")
def _filter_pos(key, fshift):
    """Word of the blocked Bloom filter and the mask of the key's 3 bits in it: the word from the top
    ``64 - fshift`` bits of the table's hash (so the keys of one table region set the words of one
    filter region: the build runs region by region in parallel), the bit numbers from the top 18 bits
    of another multiplicative hash."""
    word = (key * _FIB) >> fshift
    g = key * _FILT
    b1 = g >> np.uint64(58)
    b2 = (g >> np.uint64(52)) & np.uint64(63)
    b3 = (g >> np.uint64(46)) & np.uint64(63)
    one = np.uint64(1)
    return word, (one << b1) | (one << b2) | (one << b3)


@njit(cache=True, parallel=True)
def _build_table_kernel(published, bits, fbits, table, filt):
    """Fill ``table``, an open-addressing table of 2**bits uint32 slots holding ``index + 1`` into
    ``published`` (0 = empty; linear probing; the key itself is read from ``published``), and ``filt``,
    a blocked Bloom filter of 2**fbits 64-bit words; both zeros on entry.  A lookup finds the first
    occurrence of a duplicated key."""
    size = np.int64(1) << bits
    mask = np.uint64(size - 1)
    shift = np.uint64(64 - bits)
    fshift = np.uint64(64 - fbits)
    # stable counting sort by region (the top rbits of the slot, and so of the filter word), in
    # _BUILD_CHUNKS chunks counted and scattered in parallel: each region's keys then fill that
    # region's slots and filter words only -- the regions run in parallel, and each sweeps its slots
    # instead of missing the cache at every insert; stability keeps duplicated keys in order.
    n = published.shape[0]
    rbits = min(bits, fbits, 8)
    nreg = 1 << rbits
    rshift = np.uint64(64 - rbits)
    clen = (n + _BUILD_CHUNKS - 1) // _BUILD_CHUNKS
    at = np.zeros((_BUILD_CHUNKS, nreg), np.int64)
    for c in prange(_BUILD_CHUNKS):
        for k in range(c * clen, min(c * clen + clen, n)):
            at[c, np.int64((published[k] * _FIB) >> rshift)] += 1
    start = np.empty(nreg + 1, np.int64)
    p = 0
    for b in range(nreg):                # region-major, chunk-minor: stable
        start[b] = p
        for c in range(_BUILD_CHUNKS):
            cnt = at[c, b]
            at[c, b] = p
            p += cnt
    start[nreg] = p
    perm = np.empty(n, np.uint32)       # (n < 2**32 - 1: checked by _build)
    keys = np.empty(n, np.uint64)        # the keys in region order: read sequentially below
    for c in prange(_BUILD_CHUNKS):
        for k in range(c * clen, min(c * clen + clen, n)):
            key = published[k]
            b = np.int64((key * _FIB) >> rshift)
            perm[at[c, b]] = k
            keys[at[c, b]] = key
            at[c, b] += 1
    late = np.zeros(n, np.bool_)         # keys whose probe ran past their region's last slot
    for b in prange(nreg):
        end = (b + 1) << (bits - rbits)
        for kk in range(start[b], start[b + 1]):
            key = keys[kk]
            w, m = _filter_pos(key, fshift)
            filt[w] |= m
            late[kk] = _insert(table, perm[kk], (key * _FIB) >> shift, end, mask)
    for kk in range(n):                  # those, in order (linear probing takes any insertion order)
        if late[kk]:
            _insert(table, perm[kk], (keys[kk] * _FIB) >> shift, -1, mask)


@njit(cache=True, inline="always")
def _insert(table, k, s, end, mask):
    """Put ``k + 1`` into the first empty slot from ``s`` on; stop before slot ``end`` (not inserted:
    returns True), or never (``end`` = -1: the probe wraps around).  No duplicate check: equal keys
    share a home slot and are inserted in index order, so the first occurrence takes the slot a
    lookup reaches first."""
    while True:
        si = np.int64(s)
        if table[si] == 0:
            table[si] = np.uint32(k + 1)
            return False
        if si + 1 == end:                # (the last region's end is the table size: no wrap-around)
            return True
        s = (s + np.uint64(1)) & mask


_BLOCK = 2048    # records per probe block
_AHEAD = 32      # the filter word of record r + _AHEAD is prefetched while record r is tested
_AHEAD_U = np.uint64(_AHEAD)


@njit(cache=True, inline="always")
def _scratch():
    """Per-block work arrays of ``_probe_block``: filter words (with ``_AHEAD`` spare), bit masks,
    candidates, their results."""
    return (np.empty(_BLOCK + _AHEAD, np.uint64), np.empty(_BLOCK, np.uint64),
            np.empty(_BLOCK, np.int64), np.empty(_BLOCK, np.int64))


@njit(cache=True, inline="always")
def _probe_block(log, lo, hi, published, table, filt, shift, mask, fshift, ws, ms, cand, cres):
    """Records lo..hi.  First every record's filter word and bit mask (``ws``, ``ms``: a loop LLVM
    vectorises), then a branch-free filter pass (no unpredictable branch, so the out-of-order core
    keeps many filter loads in flight; the word ``_AHEAD`` records on is prefetched; unsigned
    indices, so no negative-index wrap-around code) that lists the candidates ``cand[:nc]``
    (ascending; returns ``nc``), then the table lookups of the candidates only, group-prefetched:
    all their home slots are requested first, then read (and the published key each one names
    requested), then compared -- the cache misses overlap instead of queueing behind mispredicted
    branches.  ``cres[k]``: the index of record ``cand[k]``'s ID in ``published``, or -1."""
    n = np.uint64(hi - lo)
    ulo = np.uint64(lo)
    for i in range(n):
        ws[i], ms[i] = _filter_pos(log[ulo + i], fshift)
    for i in range(n, n + _AHEAD_U):
        ws[i] = 0
    for i in range(_AHEAD_U):
        prefetch(filt, ws[i])
    nc = np.uint64(0)
    for i in range(n):
        prefetch(filt, ws[i + _AHEAD_U])
        m = ms[i]
        cand[nc] = lo + np.int64(i)
        nc += np.uint64((filt[ws[i]] & m) == m)
    for k in range(nc):
        prefetch(table, (log[cand[k]] * _FIB) >> shift)
    for k in range(nc):
        v = np.int64(table[(log[cand[k]] * _FIB) >> shift])
        cres[k] = v - 1
        prefetch(published, max(v - 1, 0))
    for k in range(nc):
        key = log[cand[k]]
        s = (key * _FIB) >> shift
        v = cres[k] + 1
        while True:
            if v == 0:
                cres[k] = -1
                break
            if published[v - 1] == key:
                cres[k] = v - 1
                break
            s = (s + np.uint64(1)) & mask
            v = np.int64(table[s])
    return np.int64(nc)


@njit(cache=True, parallel=True)
def _probe_idx_kernel(log, published, table, filt, bits, fbits, out):
    shift = np.uint64(64 - bits)
    mask = np.uint64((np.int64(1) << bits) - 1)
    fshift = np.uint64(64 - fbits)
    n = log.shape[0]
    nblocks = (n + _BLOCK - 1) // _BLOCK
    for b in prange(nblocks):
        lo = b * _BLOCK
        hi = min(lo + _BLOCK, n)
        ws, ms, cand, cres = _scratch()
        for r in range(lo, hi):
            out[r] = -1
        nc = _probe_block(log, lo, hi, published, table, filt, shift, mask, fshift, ws, ms, cand, cres)
        for k in range(nc):
            out[cand[k]] = cres[k]


_HITS_CAP = 64   # hits kept per probe block in the first pass (a block of 2048 records at 1% has ~20)


@njit(cache=True, parallel=True)
def _probe_hits_kernel(log, published, table, filt, bits, fbits, blocks, cap, off, idx, cnt):
    """Blocks ``blocks[j]`` of ``_BLOCK`` records: ``cnt[j]`` hits, the first ``min(cnt[j], cap)`` of
    them (ascending) as ``off[j, :]`` (record - block start) and ``idx[j, :]`` (index in ``published``),
    both of ``cap + 1`` columns (the last one scratch); a block with ``cnt[j] > cap`` is to be redone
    with a larger ``cap``."""
    shift = np.uint64(64 - bits)
    mask = np.uint64((np.int64(1) << bits) - 1)
    fshift = np.uint64(64 - fbits)
    n = log.shape[0]
    for j in prange(blocks.shape[0]):
        lo = blocks[j] * _BLOCK
        hi = min(lo + _BLOCK, n)
        ws, ms, cand, cres = _scratch()
        nc = _probe_block(log, lo, hi, published, table, filt, shift, mask, fshift, ws, ms, cand, cres)
        h = 0
        for k in range(nc):                # branch-free append; a miss is overwritten by what follows
            hh = min(h, cap)               # column cap: scratch, never a kept hit
            off[j, hh] = cand[k] - lo
            idx[j, hh] = cres[k]
            h += np.int64(cres[k] >= 0)
        cnt[j] = h


@njit(cache=True)
def _gather_hits_kernel(blocks, cnt, off, idx, over_cnt, over_off, over_idx):
    """Concatenate the hits of all blocks in block order (the overflowed ones from ``over_*``, in the
    order they appear in ``blocks``): ``(rec, idx)`` int64."""
    total = 0
    for j in range(blocks.shape[0]):
        total += cnt[j]
    rec_o = np.empty(total, np.int64)
    idx_o = np.empty(total, np.int64)
    p = 0
    q = 0
    cap = off.shape[1] - 1
    for j in range(blocks.shape[0]):
        base = blocks[j] * _BLOCK
        if cnt[j] <= cap:
            for h in range(cnt[j]):
                rec_o[p] = base + off[j, h]
                idx_o[p] = idx[j, h]
                p += 1
        else:
            for h in range(over_cnt[q]):
                rec_o[p] = base + over_off[q, h]
                idx_o[p] = over_idx[q, h]
                p += 1
            q += 1
    return rec_o, idx_o


def _check(name: str, a) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of uint64 rolling IDs, got shape {arr.shape}")
    if arr.dtype != np.uint64:
        raise ValueError(f"{name} must have dtype uint64 (see ble.ids.id_to_u64), got {arr.dtype}")
    return np.ascontiguousarray(arr)


def _table_bits(n_published: int) -> int:
    bits = 6
    while n_published > _MAX_LOAD * (1 << bits):
        bits += 1
    return bits


def _filter_bits(n_published: int) -> int:
    fbits = 1
    while (64 << fbits) < _FILTER_BITS_PER_KEY * n_published:
        fbits += 1
    return min(fbits, 40)


_HUGE = 1 << 21    # bytes in a transparent huge page (x86-64)


def _zeros_hugepages(n: int, dtype) -> np.ndarray:
    """``np.zeros(n, dtype)`` on transparent huge pages where the system has them: numpy advises huge
    pages (``madvise``) for allocations of >= 4 MiB, so a table or filter of >= 1 MiB is cut, 2 MiB
    aligned, out of one of >= 4 MiB + 2 MiB (``calloc``: the unused rest is never touched, so never
    backed by memory).  Random probes into 2-16 MiB then miss the TLB far less often than on 4 KiB
    pages (numba's own allocations get none)."""
    nbytes = n * np.dtype(dtype).itemsize
    if nbytes < _HUGE // 2:
        return np.zeros(n, dtype)
    raw = np.zeros(max(nbytes, 2 * _HUGE) + _HUGE, np.uint8)
    at = -raw.ctypes.data % _HUGE
    return raw[at:at + nbytes].view(dtype)


def _build(published: np.ndarray):
    if published.shape[0] >= 2**32 - 1:
        raise ValueError(f"at most 2**32 - 2 published IDs are supported, got {published.shape[0]}")
    bits = _table_bits(published.shape[0])
    fbits = _filter_bits(published.shape[0])
    old = numba.get_num_threads()
    if published.shape[0] < _PARALLEL_MIN:
        numba.set_num_threads(1)   # waking the worker pool would cost more than the work
    try:
        table = _zeros_hugepages(1 << bits, np.uint32)
        filt = _zeros_hugepages(1 << fbits, np.uint64)
        _build_table_kernel(published, bits, fbits, table, filt)
    finally:
        numba.set_num_threads(old)
    return table, filt, bits, fbits


_PARALLEL_MIN = 100_000    # below this many log records (published IDs: the build) one thread runs it


def _probe(kernel, log, pub, out):
    table, filt, bits, fbits = _build(pub)
    old = numba.get_num_threads()
    if log.shape[0] < _PARALLEL_MIN:
        numba.set_num_threads(1)   # waking the worker pool would cost more than the work
    try:
        kernel(log, pub, table, filt, bits, fbits, out)
    finally:
        numba.set_num_threads(old)
    return out


def _check_out(out, n: int, dtype) -> np.ndarray:
    if out is None:
        return np.empty(n, dtype)
    if not isinstance(out, np.ndarray):
        raise ValueError(f"out must be a numpy array, got {type(out).__name__}")
    if out.dtype != dtype or out.ndim != 1 or out.shape[0] != n:
        raise ValueError(f"out must be a 1-D {np.dtype(dtype).name} array of length {n} (one per "
                         f"log record), got dtype {out.dtype} and shape {out.shape}")
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    return out


def match_ids(log_rids, published_rids, out=None) -> np.ndarray:
    """Index into ``published_rids`` of every logged rolling ID, ``-1`` where it was not published.

    Both inputs are 1-D ``uint64`` arrays (``ValueError`` otherwise).  Where an ID occurs more than once
    in ``published_rids``, the index of its **first** occurrence is returned.  Output: int64, same
    length as ``log_rids``; identical for any number of numba threads.  ``out``: optional int64
    C-contiguous array of that length to write the result into (returned); it must not overlap
    the inputs.
    """
    log = _check("log_rids", log_rids)
    pub = _check("published_rids", published_rids)
    out = _check_out(out, log.shape[0], np.int64)
    if log.shape[0] == 0:
        return out
    if pub.shape[0] == 0:
        out.fill(-1)
        return out
    return _probe(_probe_idx_kernel, log, pub, out)


def match_mask(log_rids, published_rids, out=None) -> np.ndarray:
    """Boolean mask: was each logged rolling ID published?  Equal to ``numpy.isin(log, published)``.
    ``out``: optional bool C-contiguous array of ``len(log_rids)`` to write into (returned).  The
    records of :func:`match_hits` set in a cleared mask (one kernel fewer to compile)."""
    log = _check("log_rids", log_rids)
    pub = _check("published_rids", published_rids)
    out = _check_out(out, log.shape[0], np.bool_)
    out.fill(False)
    if log.shape[0] and pub.shape[0]:
        out[match_hits(log, pub)[0]] = True
    return out


def match_hits(log_rids, published_rids) -> tuple[np.ndarray, np.ndarray]:
    """The matched records only: ``(rec, idx)``, ``rec`` the positions in ``log_rids`` whose ID was
    published (ascending) and ``idx`` the index of that ID in ``published_rids`` (its **first**
    occurrence), both int64 of length (number of matches).  The same information as
    :func:`match_ids` (``match_ids(...)[rec] == idx``, -1 elsewhere) without a result per record --
    what the callers use -- so at 1% matches it writes ~1/50 of the bytes.  Identical for any number
    of numba threads.  Two passes: every block keeps up to ``_HITS_CAP`` hits; the rare block with
    more (a log that mostly matches) is redone with room for all of its records.
    """
    log = _check("log_rids", log_rids)
    pub = _check("published_rids", published_rids)
    n = log.shape[0]
    if n == 0 or pub.shape[0] == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    table, filt, bits, fbits = _build(pub)
    blocks = np.arange((n + _BLOCK - 1) // _BLOCK, dtype=np.int64)
    old = numba.get_num_threads()
    if n < _PARALLEL_MIN:
        numba.set_num_threads(1)   # waking the worker pool would cost more than the work
    try:
        cnt = np.empty(len(blocks), np.int64)
        off = np.empty((len(blocks), _HITS_CAP + 1), np.int16)
        idx = np.empty((len(blocks), _HITS_CAP + 1), np.int64)
        _probe_hits_kernel(log, pub, table, filt, bits, fbits, blocks, _HITS_CAP, off, idx, cnt)
        over = blocks[cnt > _HITS_CAP]
        ocnt = np.empty(len(over), np.int64)
        ooff, oidx = np.empty((len(over), _BLOCK + 1), np.int16), np.empty((len(over), _BLOCK + 1), np.int64)
        if len(over):
            _probe_hits_kernel(log, pub, table, filt, bits, fbits, over, _BLOCK, ooff, oidx, ocnt)
    finally:
        numba.set_num_threads(old)
    return _gather_hits_kernel(blocks, cnt, off, idx, ocnt, ooff, oidx)
