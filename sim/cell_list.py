"""The sorted cell list behind :func:`sim.neighbours.pairs_within` and ``pairs_within_groups`` (steps 2-5
of :mod:`sim.neighbours`' docstring), and the row sorts the simulator shares (heapsort, insertion sort).

Every point gets the key ``(group * (nx + 1) + cx) * nyl + ly``: its column ``cx`` (width ``h >= r``)
and its level ``ly`` (height ``h / q``) in that column.  The points are sorted by key (one parallel
radix pass on the top bits, then a cache-resident sort inside every bucket), one pointer sweep over the
sorted keys scans a half stencil (the rest of the own column up to ``q`` levels above, and ``2q + 1``
levels of the next column), every pair within ``r`` is written once as a key ``i << 32 | j`` and one
two-pass radix sort orders them.  All passes are parallel over fixed blocks whose results are placed
by prefix sums, so the output does not depend on the number of threads.
"""
from __future__ import annotations

import threading

import numpy as np
from numba import njit, prange

__all__ = ["pairs_sorted", "release_workspace"]

_INSERTION_MAX = 48                # rows longer than this are heap-sorted
_MSD_BITS = 8                      # first radix pass of points and pairs: at most 2**8 buckets
_LOCAL_BITS = 8                    # digit of the radix passes inside a bucket
_Q_MAX = 8                         # levels per column width (a taller stencil of shorter cells)
_BLOCK = 16384                     # points per parallel block (about)
_MAX_BLOCKS = 64
_ROOM = 4                          # first scan round: room for this many hits per point (allocated, not
_ROOM_SLACK = 64                   # initialised) and this many more per block


# ----------------------------------------------------------------------------------------------
# row sorts (also used by the simulator)
# ----------------------------------------------------------------------------------------------
@njit(cache=True)
def _heap_sort(a, lo, hi):
    """Sort a[lo:hi] in place, O(m log m) (heapsort: a few lines for numba to compile, where
    ``np.sort`` pulls in its generic quicksort)."""
    m = hi - lo
    for root in range(m // 2 - 1, -1, -1):
        _sift_down(a, lo, root, m)
    for end in range(m - 1, 0, -1):
        v = a[lo]
        a[lo] = a[lo + end]
        a[lo + end] = v
        _sift_down(a, lo, 0, end)


@njit(cache=True, inline="always")
def _sift_down(a, lo, root, m):
    v = a[lo + root]
    while True:
        c = 2 * root + 1
        if c >= m:
            break
        if c + 1 < m and a[lo + c + 1] > a[lo + c]:
            c += 1
        if not a[lo + c] > v:
            break
        a[lo + root] = a[lo + c]
        root = c
    a[lo + root] = v


@njit(cache=True, inline="always")
def _sort_row(a, lo, hi):
    """Sort a[lo:hi] in place (insertion sort for short rows, heapsort for long ones)."""
    if hi - lo > _INSERTION_MAX:
        _heap_sort(a, lo, hi)
        return
    for k in range(lo + 1, hi):
        v = a[k]
        m = k - 1
        while m >= lo and a[m] > v:
            a[m + 1] = a[m]
            m -= 1
        a[m + 1] = v


# ----------------------------------------------------------------------------------------------
# points: keys, one radix pass on the top bits, a cache-resident sort inside every bucket
# ----------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _key(a, group, p, x0, y0, h, fq, cols, nyl):
    """Key of point p: ``(group * cols + cx) * nyl + ly``, ``cx = floor((x - x0) / h)``,
    ``ly = floor((y - y0) / h * q)`` (group: int64 (n,), or (0,) for none)."""
    c = np.int64(np.floor((a[p, 0] - x0) / h))
    if group.shape[0] > 0:
        c += group[p] * cols
    return c * nyl + np.int64(np.floor((a[p, 1] - y0) / h * fq))


@njit(cache=True, parallel=True)
def _hist_kernel(a, group, x0, y0, h, q, cols, nyl, shift, hist):
    """Histogram of the keys' top bits (``key >> shift``) per block of points.

    Parameters
    ----------
    a : float64 (n, 2)
        Coordinates (m).  ``x0, y0`` the smallest ones, ``h`` the column width (m, >= r).
    group : int64 (n,) or (0,)
        Group of every point (>= 0), or empty for none.
    q, cols, nyl : int
        Levels per ``h``, columns per group (``nx + 1``), levels per column (``q (ny + 1)``).
    hist : int64 (n_blocks, n_buckets), out, zeroed
        Points of block b (``b n // n_blocks ..``) in every bucket.
    """
    n = a.shape[0]
    nblk = hist.shape[0]
    fq = np.float64(q)
    for b in prange(nblk):
        for p in range(b * n // nblk, (b + 1) * n // nblk):
            hist[b, _key(a, group, p, x0, y0, h, fq, cols, nyl) >> shift] += 1


@njit(cache=True, parallel=True)
def _scatter_kernel(a, group, x0, y0, h, q, cols, nyl, shift, ib, pos, packed):
    """Stable scatter of the points into their buckets as ``(key mod 2**shift) << ib | p`` (uint64).

    pos : int64 (n_blocks, n_buckets)
        First slot of every (block, bucket), consumed (blocks and keys as in :func:`_hist_kernel`).
    packed : uint64 (n,), out
    """
    n = a.shape[0]
    nblk = pos.shape[0]
    fq = np.float64(q)
    low = (np.int64(1) << shift) - 1
    for b in prange(nblk):
        for p in range(b * n // nblk, (b + 1) * n // nblk):
            k = _key(a, group, p, x0, y0, h, fq, cols, nyl)
            d = k >> shift
            t = pos[b, d]
            pos[b, d] = t + 1
            packed[t] = np.uint64(((k & low) << ib) | p)


@njit(cache=True)
def _sort_packed(v, tmp, ib, digit):
    """Sort v (uint64, m) by ``v >> ib`` in place, stably (tmp: scratch of the same size): insertion
    sort for short rows, else LSD radix passes of <= ``digit`` bits over the keys' own span."""
    m = v.shape[0]
    if m <= _INSERTION_MAX:
        _sort_row(v, 0, m)                           # the low bits (p) make the order stable
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
        cnt[:] = 0
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
        v[:] = tmp


@njit(cache=True, parallel=True)
def _bucket_sort_kernel(bstart, packed, shift, ib, skey, orig):
    """Every bucket of :func:`_scatter_kernel`'s output (``bstart``: n_buckets + 1 offsets) sorted by
    key in place (equal keys in input order) and decoded: skey (int64, n + 1: the keys, then a
    sentinel larger than every key), orig (int32, n: the points' input rows)."""
    nb = bstart.shape[0] - 1
    imask = np.uint64((1 << ib) - 1)
    for b in prange(nb):
        lo = bstart[b]
        hi = bstart[b + 1]
        if hi == lo:
            continue
        v = packed[lo:hi]
        _sort_packed(v, np.empty(hi - lo, np.uint64), ib, _LOCAL_BITS)
        base = np.int64(b) << shift
        for t in range(hi - lo):
            skey[lo + t] = base | np.int64(v[t] >> np.uint64(ib))
            orig[lo + t] = np.int32(v[t] & imask)
    skey[skey.shape[0] - 1] = np.iinfo(np.int64).max


@njit(cache=True, parallel=True)
def _gather_kernel(orig, a, xs, ys):
    """Coordinates in sorted order: xs[t], ys[t] = a[orig[t]] (one flat loop: faster than per bucket)."""
    for t in prange(orig.shape[0]):
        p = orig[t]
        xs[t] = a[p, 0]
        ys[t] = a[p, 1]


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
def _start(skey, p, q, nyl):
    """The stencil pointers of sorted point p by binary search (the start of a block)."""
    k = skey[p]
    h0 = np.searchsorted(skey, k + q, side="right")
    l2 = np.searchsorted(skey, k + nyl - q, side="left")
    h2 = np.searchsorted(skey, k + nyl + q, side="right")
    return h0, l2, h2


@njit(cache=True, parallel=True)
def _count_kernel(skey, q, nyl, plo, phi, cand):
    """Candidates of the half stencils of the sorted points ``plo[b] .. phi[b] - 1`` of every range b
    into cand (int64, n_ranges): the room their hits may need."""
    for b in prange(plo.shape[0]):
        c = 0
        if plo[b] < phi[b]:
            h0, l2, h2 = _start(skey, plo[b], q, nyl)
            for p in range(plo[b], phi[b]):
                h0, l2, h2 = _advance(skey, skey[p], q, nyl, h0, l2, h2)
                c += h0 - p - 1 + h2 - l2
        cand[b] = c


@njit(cache=True, inline="always")
def _emit(xs, ys, orig, p, qa, qb, r2, out, w, hist, b, shift):
    """Test sorted point p against qa .. qb - 1; each hit written branch-free as
    ``min(orig) << 32 | max(orig)`` at out[w] (w advances on a hit) and counted in hist[b, i >> shift]."""
    xp = xs[p]
    yp = ys[p]
    oi = np.uint64(orig[p])
    for t in range(qa, qb):
        ot = np.uint64(orig[t])
        dx = xp - xs[t]
        dy = yp - ys[t]
        lo = min(oi, ot)
        out[w] = (lo << np.uint64(32)) | (oi ^ ot ^ lo)
        hit = np.int64(dx * dx + dy * dy <= r2)
        hist[b, np.int64(lo >> np.uint64(shift))] += hit
        w += hit
    return w


@njit(cache=True, parallel=True)
def _scan_kernel(xs, ys, orig, skey, q, nyl, r2, plo, phi, boff, shift, out, nhit, stop, hist):
    """Every pair within r (``dx*dx + dy*dy <= r2``) once, from the earlier point of its half stencil.

    Range b (sorted points ``plo[b] .. phi[b] - 1``) writes its hits into out[boff[b]:boff[b + 1]],
    their number into nhit[b] and the histogram of ``i >> shift`` into hist[b] (zeroed); it stops
    before the first point whose candidates might not fit: stop[b] (``phi[b]`` when it did not)."""
    for b in prange(plo.shape[0]):
        w = boff[b]
        p = plo[b]
        if p < phi[b]:
            h0, l2, h2 = _start(skey, p, q, nyl)
            while p < phi[b]:
                h0, l2, h2 = _advance(skey, skey[p], q, nyl, h0, l2, h2)
                if w + (h0 - p - 1) + (h2 - l2) > boff[b + 1]:
                    break
                w = _emit(xs, ys, orig, p, p + 1, h0, r2, out, w, hist, b, shift)
                w = _emit(xs, ys, orig, p, l2, h2, r2, out, w, hist, b, shift)
                p += 1
        nhit[b] = w - boff[b]
        stop[b] = p


@njit(cache=True, parallel=True)
def _pair_scatter_kernel(out, boff, nhit, shift, pos, keys):
    """Stable scatter of every block's hits (out[boff[b]:boff[b] + nhit[b]]) into the buckets of
    ``i >> shift``; pos (n_blocks, n_buckets): first slot of every (block, bucket), consumed."""
    nblk = pos.shape[0]
    sh = np.uint64(32 + shift)
    for b in prange(nblk):
        for t in range(boff[b], boff[b] + nhit[b]):
            v = out[t]
            d = np.int64(v >> sh)
            u = pos[b, d]
            pos[b, d] = u + 1
            keys[u] = v


@njit(cache=True, parallel=True)
def _finish_rows_kernel(keys, start, shift, ib, out_i, out_j):
    """Pass 2: every bucket of keys ``i << 32 | j`` (``start``: n_buckets + 1; i, j < 2**ib) copied as
    ``(i mod 2**shift) << ib | j``, radix-sorted in cache (passes of <= 11 bits) and decoded into
    out_i / out_j (int64; keys may be out_i's memory: a bucket is read before it is written).
    Buckets are independent (prange): the full (i, j) order, whatever the number of threads."""
    nb = start.shape[0] - 1
    jmask = np.uint64((1 << ib) - 1)
    sh = np.uint64(ib)
    for b in prange(nb):
        lo = start[b]
        hi = start[b + 1]
        if hi == lo:
            continue
        base = np.uint64(b << shift)
        v = np.empty(hi - lo, np.uint64)
        for t in range(hi - lo):
            k = keys[lo + t]
            v[t] = (((k >> np.uint64(32)) - base) << sh) | (k & jmask)
        _sort_packed(v, np.empty(hi - lo, np.uint64), 0, 11)
        for t in range(hi - lo):
            out_i[lo + t] = np.int64((v[t] >> sh) + base)
            out_j[lo + t] = np.int64(v[t] & jmask)


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


def _scan_round(xs, ys, orig, skey, q, nyl, r, plo, phi, boff, pshift, npb, slot):
    """One call of :func:`_scan_kernel` over the ranges ``plo .. phi`` with room ``boff``: (hits,
    boff, hits per range, where each range stopped, pair histogram per range)."""
    m = plo.shape[0]
    out, nhit, stop = _scratch(slot, int(boff[-1]), np.uint64), np.empty(m, np.int64), np.empty(m, np.int64)
    phist = np.zeros((m, npb), np.int64)
    _scan_kernel(xs, ys, orig, skey, q, nyl, r * r, plo, phi, boff, pshift, out, nhit, stop, phist)
    return out, boff, nhit, stop, phist


def pairs_sorted(a: np.ndarray, r: float, x0: float, y0: float, wx: float, wy: float, h: float,
                 group=None):
    """All pairs (i < j, sorted by (i, j)) of the points ``a`` within ``r``, by the sorted cell list.

    Parameters
    ----------
    a : float64 array, shape (n, 2)
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
    hist = np.zeros((nblk, ((n_groups * cols * nyl - 1) >> shift) + 1), np.int64)
    _hist_kernel(a, g, x0, y0, h, q, cols, nyl, shift, hist)
    pos, bstart = _block_prefix(hist)
    packed = _scratch(0, n, np.uint64)
    _scatter_kernel(a, g, x0, y0, h, q, cols, nyl, shift, ib, pos, packed)
    skey, orig = _scratch(1, n + 1, np.int64), _scratch(2, n, np.int32)
    xs, ys = _scratch(3, n, np.float64), _scratch(4, n, np.float64)
    _bucket_sort_kernel(bstart, packed, shift, ib, skey, orig)
    del packed
    _gather_kernel(orig, a, xs, ys)
    bounds = np.arange(nblk + 1, dtype=np.int64) * n // nblk
    pshift = max(ib - _MSD_BITS, 0)
    npb = ((n - 1) >> pshift) + 1
    # round 1: room for _ROOM hits per point; ranges that run out of room stop, round 2 scans the rest
    # of them with the exact room (their candidates)
    boff = bounds * _ROOM + np.arange(nblk + 1) * _ROOM_SLACK
    rounds = [_scan_round(xs, ys, orig, skey, q, nyl, r, bounds[:-1], bounds[1:], boff, pshift, npb, 5)]
    stop = rounds[0][3]
    rest = np.flatnonzero(stop < bounds[1:])
    if rest.size:
        plo, phi = stop[rest], bounds[1:][rest]
        cand = np.empty(rest.size, np.int64)
        _count_kernel(skey, q, nyl, plo, phi, cand)
        boff2 = np.zeros(rest.size + 1, np.int64)
        np.cumsum(cand, out=boff2[1:])
        rounds.append(_scan_round(xs, ys, orig, skey, q, nyl, r, plo, phi, boff2, pshift, npb, 0))
    del xs, ys, orig, skey
    ppos, pstart = _block_prefix(np.concatenate([rd[4] for rd in rounds]))
    out_i = np.empty(int(pstart[-1]), np.int64)
    k = 0
    for out, boff_r, nhit, _, phist in rounds:
        _pair_scatter_kernel(out, boff_r, nhit, pshift, ppos[k:k + nhit.shape[0]], out_i.view(np.uint64))
        k += nhit.shape[0]
    del rounds
    out_j = np.empty(out_i.shape[0], np.int64)
    _finish_rows_kernel(out_i.view(np.uint64), pstart, pshift, ib, out_i, out_j)
    return out_i, out_j
