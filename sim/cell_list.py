"""The sorted cell list behind :func:`sim.neighbours.pairs_within` and ``pairs_within_groups`` (steps 2-5
of :mod:`sim.neighbours`' docstring).

Every point gets the key ``(group * (nx + 1) + cx) * nyl + ly``: its column ``cx`` (width ``h >= r``)
and its level ``ly`` (height ``h / q``) in that column.  The points are sorted by key (one radix pass
on the top bits, then a cache-resident sort inside every bucket), one pointer sweep over the sorted
keys scans a half stencil (the rest of the own column up to ``q`` levels above, and ``2q + 1`` levels
of the next column), every pair within ``r`` is written once as a key ``i << bits(n) | j`` and one
two-pass radix sort orders them.  Every pass works on fixed blocks (of points, ranges or buckets)
whose results are placed by prefix sums, so the output does not depend on the number of threads.

Four small serial kernels (``nogil``), each over a range of blocks: :func:`sim.kernels.run_blocks`
hands chunks of blocks to ``threads`` Python threads (this one and a persistent pool), the next chunk
to whichever thread is free.  Serial kernels compile in a fraction of the time of numba's
``parallel=True`` loops (each ``prange`` is outlined and compiled as a separate gufunc): the cell
list's first-run compilation went from 14.5 CPU s (eight kernels) to 4.0 (four).
"""
from __future__ import annotations

import threading

import numpy as np
from numba import njit

from sim.kernels import even_cuts as _even
from sim.kernels import run_blocks as _run

__all__ = ["pairs_sorted", "release_workspace"]

_INSERTION_MAX = 48                # buckets up to this size are insertion-sorted
_MSD_BITS = 8                      # first radix pass of points and pairs: at most 2**8 buckets
_RADIX_BITS = 11                   # digit of the radix passes inside a bucket (points and pairs)
_Q_MAX = 8                         # levels per column width (a taller stencil of shorter cells)
_BLOCK = 16384                     # points per block (about)
_MAX_BLOCKS = 64
_CHUNKS = 64                       # work items of a parallel pass (blocks, ranges or groups of buckets)
_ROOM = 4                          # first scan round: room for this many hits per point (allocated, not
_ROOM_SLACK = 64                   # initialised) and this many more per block


# ----------------------------------------------------------------------------------------------
# points: keys, one radix pass on the top bits
# ----------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _points_kernel(a, group, x0, y0, h, q, cols, nyl, shift, ib, scatter, cnt, packed, b0, b1):
    """Count (``scatter`` False) or stably scatter (True) the points of blocks ``b0 .. b1 - 1`` by the
    top bits of their keys ``(group * cols + cx) * nyl + ly`` (``cx = floor((x - x0) / h)``,
    ``ly = floor((y - y0) / h * q)``).

    Parameters
    ----------
    a : float64 (n, 2)
        Coordinates (m).  ``x0, y0`` the smallest ones, ``h`` the column width (m, >= r).
    group : int64 (n,) or (0,)
        Group of every point (>= 0), or empty for none.
    q, cols, nyl : int
        Levels per ``h``, columns per group (``nx + 1``), levels per column (``q (ny + 1)``).
    shift, ib : int
        Bucket of a key: ``key >> shift``; the scattered value is ``(key mod 2**shift) << ib | p``.
    cnt : int64 (n_blocks, n_buckets)
        Counting: the points of block b (rows ``b n // n_blocks ..``) per bucket (zeroed, out).
        Scattering: the first slot of every (block, bucket), consumed.
    packed : uint64 (n,), out (scattering only)
    """
    n = a.shape[0]
    nblk = cnt.shape[0]
    fq = np.float64(q)
    low = (np.int64(1) << shift) - 1
    grouped = group.shape[0] > 0
    for b in range(b0, b1):
        for p in range(b * n // nblk, (b + 1) * n // nblk):
            k = np.int64(np.floor((a[p, 0] - x0) / h))
            if grouped:
                k += group[p] * cols
            k = k * nyl + np.int64(np.floor((a[p, 1] - y0) / h * fq))
            d = k >> shift
            if scatter:
                t = cnt[b, d]
                cnt[b, d] = t + 1
                packed[t] = np.uint64(((k & low) << ib) | p)
            else:
                cnt[b, d] += 1


@njit(cache=True)
def _sort_packed(v, tmp, ib, digit):
    """Sort v (uint64, m) by ``v >> ib`` in place, stably (tmp: scratch of the same size): insertion
    sort for short rows, else LSD radix passes of <= ``digit`` bits over the keys' own span."""
    m = v.shape[0]
    if m <= _INSERTION_MAX:                          # insertion sort of the whole values: the low
        for t in range(1, m):                        # bits (row, j) make the order stable
            x = v[t]
            u = t - 1
            while u >= 0 and v[u] > x:
                v[u + 1] = v[u]
                u -= 1
            v[u + 1] = x
        return
    sh0 = np.uint64(ib)
    kmin = v[0] >> sh0
    kmax = kmin
    for t in range(m):
        kmin = min(kmin, v[t] >> sh0)
        kmax = max(kmax, v[t] >> sh0)
    bits = 0
    while ((kmax - kmin) >> np.uint64(bits)) > 0:
        bits += 1
    if bits == 0:                                    # one key: in order already
        return
    passes = (bits + digit - 1) // digit
    width = (bits + passes - 1) // passes
    mask = np.uint64((1 << width) - 1)
    cnt = np.empty((1 << width) + 1, np.int64)
    src, dst = v, tmp
    for ps in range(passes):
        sh = np.uint64(ps * width)
        for d in range(cnt.shape[0]):
            cnt[d] = 0
        for t in range(m):
            cnt[np.int64(((src[t] >> sh0) - kmin) >> sh & mask) + 1] += 1
        for d in range(1 << width):
            cnt[d + 1] += cnt[d]
        for t in range(m):
            d = np.int64(((src[t] >> sh0) - kmin) >> sh & mask)
            dst[cnt[d]] = src[t]
            cnt[d] += 1
        src, dst = dst, src
    if passes % 2 == 1:
        for t in range(m):
            v[t] = tmp[t]


@njit(cache=True, nogil=True)
def _buckets_kernel(v, start, shift, ib, sshift, a, hi, lo, xs, ys, b0, b1):
    """Sort the buckets ``b0 .. b1 - 1`` of v in place, stably by ``v >> sshift``, and decode them.

    Parameters
    ----------
    v : uint64 (m,)
        Bucket b is ``v[start[b]:start[b + 1]]`` (start: int64, n_buckets + 1); its values are
        ``(key mod 2**shift) << ib | row`` of keys ``key >> shift == b``.
    sshift : int
        Sort by ``v >> sshift`` (``ib``: by key, rows of equal keys kept in order; 0: by key and row)
        in radix passes of <= ``_RADIX_BITS`` bits.
    a : float64 (n, 2) or (0, 2)
        Coordinates to gather, or empty for none.
    hi, lo : int64 (m,), out
        ``hi[t] = key`` (``b << shift | v[t] >> ib``) and ``lo[t] = row`` (``v[t] mod 2**ib``).
    xs, ys : float64 (m,) or (0,), out
        ``a[lo[t]]`` (when ``a`` is not empty).
    """
    big = 0
    for b in range(b0, b1):
        big = max(big, start[b + 1] - start[b])
    tmp = np.empty(big, np.uint64)
    mask = np.uint64((1 << ib) - 1)
    sh = np.uint64(ib)
    for b in range(b0, b1):
        s = start[b]
        e = start[b + 1]
        if e == s:
            continue
        _sort_packed(v[s:e], tmp[:e - s], sshift, _RADIX_BITS)      # a constant digit: faster passes
        base = np.int64(b) << shift
        for t in range(s, e):
            x = v[t]
            hi[t] = base | np.int64(x >> sh)
            lo[t] = np.int64(x & mask)
    if a.shape[0] > 0:                   # one flat loop: twice as fast as per bucket (measured)
        for t in range(start[b0], start[b1]):
            r = lo[t]
            xs[t] = a[r, 0]
            ys[t] = a[r, 1]


# ----------------------------------------------------------------------------------------------
# the scan: one pointer sweep over the sorted keys, a half stencil per point
# ----------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _advance(skey, k, q, nyl, h0, l2, h2):
    """The stencil pointers of the point with key k, moved forward (monotone in k): ``h0`` ends its own
    column's range (keys <= k + q: the rest of its level and the q levels above), ``[l2, h2)`` is the
    range of the next column (keys ``k + nyl - q .. k + nyl + q``).  skey ends with a sentinel.  Two
    branch-free steps first (the pointers move about one point per point), then loops."""
    e0 = k + q
    e1 = k + nyl - q
    e2 = k + nyl + q
    for _ in range(2):
        h0 += np.int64(skey[h0] <= e0)
        l2 += np.int64(skey[l2] < e1)
        h2 += np.int64(skey[h2] <= e2)
    while skey[h0] <= e0:
        h0 += 1
    while skey[l2] < e1:
        l2 += 1
    h2 = max(h2, l2)
    while skey[h2] <= e2:
        h2 += 1
    return h0, l2, h2


@njit(cache=True, inline="always")
def _first_above(skey, v):
    """First index t with skey[t] > v (binary search; skey sorted, ending with a sentinel > v)."""
    lo = 0
    hi = skey.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        if skey[mid] > v:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(cache=True, inline="always")
def _start(skey, p, q, nyl):
    """The stencil pointers of sorted point p by binary search (the start of a block; a few lines
    instead of ``np.searchsorted``, which compiles slowly)."""
    k = skey[p]
    return _first_above(skey, k + q), _first_above(skey, k + nyl - q - 1), _first_above(skey, k + nyl + q)


@njit(cache=True, nogil=True)
def _scan_kernel(xs, ys, orig, skey, q, nyl, r2, plo, phi, boff, shift, ib, out, nhit, stop, cand, hist, b0, b1):
    """Every pair within r (``dx*dx + dy*dy <= r2``) once, from the earlier point of its half stencil.

    Range b (``b0 <= b < b1``: sorted points ``plo[b] .. phi[b] - 1``) writes its hits branch-free as
    ``min(row) << ib | max(row)`` (uint64) into out[boff[b]:boff[b + 1]], their number into nhit[b]
    and the histogram of ``min(row) >> shift`` into hist[b] (int64 (n_ranges, n_buckets), zeroed).
    It stops emitting before the first point whose candidates might not fit: stop[b] (``phi[b]``
    when it did not), and counts the candidates of the points it did not emit into cand[b] (the
    exact room a second round needs).  xs, ys, orig: coordinates and rows of the sorted points;
    skey (n + 1): their keys and a sentinel above every key."""
    sib = np.uint64(ib)
    for b in range(b0, b1):
        w = boff[b]
        p = plo[b]
        c = 0
        full = False
        if p < phi[b]:
            h0, l2, h2 = _start(skey, p, q, nyl)
            while p < phi[b]:
                h0, l2, h2 = _advance(skey, skey[p], q, nyl, h0, l2, h2)
                m = (h0 - p - 1) + (h2 - l2)
                if not full and w + m > boff[b + 1]:
                    full = True
                    stop[b] = p
                if full:
                    c += m
                else:
                    xp = xs[p]
                    yp = ys[p]
                    oi = np.uint64(orig[p])
                    for side in range(2):          # own column above p, then the next column
                        qa = p + 1 if side == 0 else l2
                        qb = h0 if side == 0 else h2
                        for t in range(qa, qb):
                            ot = np.uint64(orig[t])
                            dx = xp - xs[t]
                            dy = yp - ys[t]
                            lo = min(oi, ot)
                            out[w] = (lo << sib) | (oi ^ ot ^ lo)
                            hit = np.int64(dx * dx + dy * dy <= r2)
                            hist[b, np.int64(lo >> np.uint64(shift))] += hit
                            w += hit
                p += 1
        if not full:
            stop[b] = p
        nhit[b] = w - boff[b]
        cand[b] = c


@njit(cache=True, nogil=True)
def _pair_scatter_kernel(out, boff, nhit, shift, ib, pos, keys, b0, b1):
    """Stable scatter of the hits of ranges ``b0 .. b1 - 1`` (out[boff[b]:boff[b] + nhit[b]], values
    ``i << ib | j``) into the buckets of ``i >> shift`` as ``(i mod 2**shift) << ib | j`` (keys,
    uint64); pos (int64 (n_ranges, n_buckets)): first slot of every (range, bucket), consumed."""
    sh = np.uint64(ib + shift)
    low = (np.uint64(1) << sh) - np.uint64(1)
    for b in range(b0, b1):
        for t in range(boff[b], boff[b] + nhit[b]):
            v = out[t]
            d = np.int64(v >> sh)
            u = pos[b, d]
            pos[b, d] = u + 1
            keys[u] = v & low


# ----------------------------------------------------------------------------------------------
# wrapper
# ----------------------------------------------------------------------------------------------
_NO_GROUP = np.empty(0, np.int64)
_WORKSPACE = threading.local()


def _scratch(slot: int, size: int, dtype) -> np.ndarray:
    """An uninitialised array of ``size`` elements from this thread's reusable scratch buffer ``slot``.

    A fresh large array is a fresh mapping whose pages the kernel zero-fills on first touch (0.1-0.6
    ms per MB on this machine: a fifth of a 10^6-point call); the scratch buffers are kept and grown
    to the largest call so far (about 60 bytes per point; :func:`release_workspace` frees them).
    Never returned to callers."""
    nbytes = size * np.dtype(dtype).itemsize
    bufs = getattr(_WORKSPACE, "bufs", None)
    if bufs is None:
        bufs = _WORKSPACE.bufs = {}
    buf = bufs.get(slot)
    if buf is None or buf.nbytes < nbytes:
        bufs[slot] = None                       # drop the old buffer before allocating the larger one
        buf = bufs[slot] = np.empty(max(nbytes, 1), np.uint8)
    return buf[:nbytes].view(dtype)


def release_workspace() -> None:
    """Free this thread's scratch buffers (the next call allocates them again)."""
    _WORKSPACE.bufs = {}


def _block_prefix(hist: np.ndarray):
    """Slots of a stable scatter from per-block histograms ``hist`` (n_blocks, n_buckets): (first slot
    of every (block, bucket) (n_blocks, n_buckets), first slot of every bucket (n_buckets + 1))."""
    nblk, nb = hist.shape
    c = hist.T.reshape(-1)                       # bucket-major, blocks in order inside a bucket
    ex = np.cumsum(c) - c
    starts = np.empty(nb + 1, np.int64)
    starts[:nb] = ex[::nblk]
    starts[nb] = ex[-1] + c[-1]
    return np.ascontiguousarray(ex.reshape(nb, nblk).T), starts


def _n_cells(extent: float, h: float) -> int:
    """Cells along an axis: the kernels' own ``floor(d / h)`` of the largest offset, plus one (Python's
    ``//`` on floats can be one less than ``floor(d / h)`` when ``d / h`` rounds up to an integer)."""
    return int(np.floor(extent / h)) + 1


def _layout(n: int, n_groups: int, wx: float, wy: float, h: float):
    """(h, nx, ny, q, bits of the key bound): the largest ``q <= _Q_MAX`` (a power of two) whose packed
    keys fit (``bits - _MSD_BITS + bits of n <= 63``), doubling ``h`` while none does (any
    ``h >= r`` finds every pair; only the candidates grow).  Terminates for ``n_groups <= 2**31``."""
    ib = max(int(n - 1).bit_length(), 1)
    while True:
        nx, ny = _n_cells(wx, h), _n_cells(wy, h)
        q = _Q_MAX
        while q >= 1:
            bits = int(n_groups * (nx + 1) * q * (ny + 1) - 1).bit_length()
            if bits - min(_MSD_BITS, bits) + ib <= 63:
                return h, nx, ny, q, bits
            q //= 2
        h *= 2.0


def _weighted(start: np.ndarray, parts: int) -> list:
    """Cuts of the buckets ``start`` (n_buckets + 1 offsets) into at most ``parts`` contiguous chunks of
    about equal size (sum of their rows; empty chunks dropped)."""
    nb = start.shape[0] - 1
    if parts <= 1 or nb <= 1:
        return [0, nb]
    want = np.arange(1, parts, dtype=np.int64) * int(start[-1]) // parts
    mid = np.searchsorted(start, want, side="right") - 1
    return sorted({0, nb, *np.clip(mid, 0, nb).tolist()})


def _scan_round(xs, ys, orig, skey, q, nyl, r, plo, phi, boff, pshift, ib, npb, slot, threads):
    """One pass of :func:`_scan_kernel` over the ranges ``plo .. phi`` with room ``boff``: (hits,
    boff, hits per range, where each range stopped, candidates left per range, pair histogram per
    range)."""
    m = plo.shape[0]
    out, nhit, stop = _scratch(slot, int(boff[-1]), np.uint64), np.empty(m, np.int64), np.empty(m, np.int64)
    cand, phist = np.empty(m, np.int64), np.zeros((m, npb), np.int64)
    _run(_scan_kernel, threads, _even(m, _CHUNKS), xs, ys, orig, skey, q, nyl, r * r, plo, phi, boff, pshift, ib,
         out, nhit, stop, cand, phist)
    return out, boff, nhit, stop, cand, phist


_NO_POINTS = np.empty((0, 2), np.float64)
_NO_FLOAT = np.empty(0, np.float64)


def pairs_sorted(a: np.ndarray, r: float, x0: float, y0: float, wx: float, wy: float, h: float,
                 group=None, threads: int = 1):
    """All pairs (i < j, sorted by (i, j)) of the points ``a`` within ``r``, by the sorted cell list.

    Parameters
    ----------
    a : float64 array, shape (n, 2), C-contiguous
        Finite coordinates (m, or any unit of ``r``), 2 <= n < 2**31 - 1.
    r : float
        Radius.
    x0, y0, wx, wy : float
        Smallest coordinates and the extents (largest minus smallest).
    h : float
        Column width, >= r and enlarged so that float rounding of ``(x - x0) / h`` never puts a pair
        within ``r`` two columns apart (levels are ``h / q`` with q a power of two: the same holds).
    group : int64 array, shape (n,), optional
        Group of every point, ``0 <= group < 2**31``: only points of one group are paired (each
        group is a block of ``nx + 1`` columns, the last one empty).
    threads : int
        Threads to use (>= 1); the result does not depend on it.

    Returns
    -------
    i, j : int64 arrays, shape (m,)
    """
    n = a.shape[0]
    n_groups = 1 if group is None else int(group.max()) + 1
    h, nx, ny, q, bits = _layout(n, n_groups, wx, wy, h)
    cols, nyl = nx + 1, q * (ny + 1)             # q empty levels atop every column: no stencil wraps
    shift, ib = bits - min(_MSD_BITS, bits), max(int(n - 1).bit_length(), 1)
    g = _NO_GROUP if group is None else group
    nblk = min(_MAX_BLOCKS, max(1, n // _BLOCK))
    cuts = _even(nblk, _CHUNKS)
    cnt = np.zeros((nblk, ((n_groups * cols * nyl - 1) >> shift) + 1), np.int64)
    packed = _scratch(0, n, np.uint64)
    _run(_points_kernel, threads, cuts, a, g, x0, y0, h, q, cols, nyl, shift, ib, False, cnt, packed)
    pos, bstart = _block_prefix(cnt)
    _run(_points_kernel, threads, cuts, a, g, x0, y0, h, q, cols, nyl, shift, ib, True, pos, packed)
    skey, orig = _scratch(1, n + 1, np.int64), _scratch(2, n, np.int64)
    xs, ys = _scratch(3, n, np.float64), _scratch(4, n, np.float64)
    _run(_buckets_kernel, threads, _weighted(bstart, _CHUNKS), packed, bstart, shift, ib, ib,
         a, skey, orig, xs, ys)
    skey[n] = np.iinfo(np.int64).max                  # the sentinel the stencil pointers stop at
    del packed
    bounds = np.arange(nblk + 1, dtype=np.int64) * n // nblk
    pshift = max(ib - _MSD_BITS, 0)
    npb = ((n - 1) >> pshift) + 1
    # round 1: room for _ROOM hits per point; ranges that run out of room stop and count the
    # candidates of their rest, which round 2 scans with that exact room
    boff = bounds * _ROOM + np.arange(nblk + 1) * _ROOM_SLACK
    rounds = [_scan_round(xs, ys, orig, skey, q, nyl, r, bounds[:-1], bounds[1:], boff, pshift, ib, npb, 5,
                          threads)]
    stop, cand = rounds[0][3], rounds[0][4]
    rest = np.flatnonzero(stop < bounds[1:])
    if rest.size:
        boff2 = np.zeros(rest.size + 1, np.int64)
        np.cumsum(cand[rest], out=boff2[1:])
        rounds.append(_scan_round(xs, ys, orig, skey, q, nyl, r, stop[rest], bounds[1:][rest], boff2, pshift, ib,
                                  npb, 0, threads))
    del xs, ys, orig, skey
    ppos, pstart = _block_prefix(np.concatenate([rd[5] for rd in rounds]))
    keys = _scratch(1, int(pstart[-1]), np.uint64)
    k = 0
    for out, boff_r, nhit, *_ in rounds:
        m = nhit.shape[0]
        _run(_pair_scatter_kernel, threads, _even(m, _CHUNKS), out, boff_r, nhit, pshift, ib, ppos[k:k + m], keys)
        k += m
    del rounds
    out_i = np.empty(keys.shape[0], np.int64)
    out_j = np.empty(keys.shape[0], np.int64)
    _run(_buckets_kernel, threads, _weighted(pstart, _CHUNKS), keys, pstart, pshift, ib, 0,
         _NO_POINTS, out_i, out_j, _NO_FLOAT, _NO_FLOAT)
    return out_i, out_j
