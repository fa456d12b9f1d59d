"""The neighbour-search hot loop: all pairs of points within a radius, by a cell list.

``pairs_within(xy, radius)`` returns exactly the pairs ``scipy.spatial.cKDTree(xy).query_pairs(radius)``
returns, as two int64 arrays ``(i, j)`` with ``i < j``, sorted by ``(i, j)``.
``pairs_within_groups(xy, group, radius)`` does the same but only pairs two points that carry the same
group id (e.g. the same place at the same time step), so the simulator can search all places of a step in
one call even though every place has its own local coordinates.

Algorithm (see ``../shared/DESIGN.md``, Performance rules):

1. Cell size ``h >= radius``: every pair within ``radius`` lies in the same or in adjacent cells.
   ``h`` is ``radius`` enlarged by a relative ``2**-16`` (so float rounding in the cell index can never
   put two points at distance exactly ``radius`` two cells apart) and never smaller than
   ``max(extent, |coordinate|) * 2**-30`` (so cell indices fit in 31 bits and the rounding error of
   ``x - xmin`` stays far below one cell even for huge coordinates).

``pairs_within`` (no groups) -- a sorted cell list (:mod:`sim.cell_list`):

2. Every point gets the cell key ``cx * ny + cy`` (< 2**62).  Dense grid (``nx * ny <= 2 n + 1024``):
   one counting-sort pass over all cells; the three stencil columns ``(cx-1..cx+1, cy-1..cy+1)`` of a
   cell are three contiguous ranges found by index.  Otherwise (clustered points over a large area,
   e.g. 10^6 points in 20 M cells): a stable LSD radix sort of the keys (11-bit digits) and the list
   of occupied cells; the same three column ranges of every occupied cell are found by a merge sweep
   (their key bounds only grow with the cell's key: six pointers, no search, no hash, no filtering of
   foreign cells).  Memory is O(n) whatever the extent.
3. Coordinates are gathered in cell order (locality).  One scan, ``prange`` over cells, with a *half
   stencil*: point p (sorted position) tests only the later points of its own column range (the rest
   of its cell and the cell above: one contiguous range ``p + 1 ..``) and the three cells of column
   ``cx + 1``, so every pair is tested from exactly one end (half the candidates of a full 3 x 3
   stencil).  Hits (``dx*dx + dy*dy <= radius*radius``, the comparison cKDTree makes for p=2: squared
   Euclidean distance against the squared radius) are written as keys
   ``min(orig) << 32 | max(orig)`` into a row with room for every candidate (no counting pass),
   branch-free.
4. One radix sort of the keys to ``(i, j)`` order: pass 1 scatters the keys into ~2048 buckets by the
   top bits of ``i`` (sequential reads, few write streams); pass 2 (``prange`` over buckets, each
   cache-resident) counting-sorts each bucket by the low bits of ``i`` and sorts every (short) run of
   equal ``i`` by ``j``.  The output is identical whatever the number of threads.

``pairs_within_groups`` -- hashed cells (the simulator's path):

2'. bucket = a 64-bit hash of the 4 x 4 super-cell ``(group, cx >> 2, cy >> 2)`` into
   ``2**k > n / 4`` super-buckets, times 16, plus the cell's place in its super-cell (so neighbouring
   cells stay close in memory); points in a bucket are filtered by their exact cell and group.
3'. Stable counting sort of the points by bucket; coordinates and cells are copied in that order.
   Two passes, ``prange`` over the points in bucket order ``p``: pass 1 counts the partners, a prefix
   sum gives every point its row, pass 2 writes the rows branch-free and sorts each row.
4'. The rows are moved to original index order (row of point ``i`` at the prefix sum of the row
   lengths in original order).

Inputs below 20,000 points run on one thread (waking the worker pool costs more than the work).
"""
from __future__ import annotations

import numpy as np
import numba
from numba import njit, prange

from sim.cell_list import _cell_of, _counting_sort_kernel, _sort_row, pairs_sorted
from sim.rng import GOLDEN, K2, K3, mix64

__all__ = ["pairs_within", "pairs_within_groups"]

_CELL_BITS = 30                    # cell indices per axis < 2**30
_H_INFLATE = 1.0 + 2.0 ** -16      # cell size slightly above the radius (see module docstring)


# ----------------------------------------------------------------------------------------------
# kernels: hashed cell list (pairs_within_groups)
# ----------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _super_hash(g, sx, sy, shift):
    """Hashed super-bucket (already shifted left by 4) of super-cell (g, sx, sy)."""
    h = mix64(np.uint64(g) * GOLDEN + np.uint64(sx) * K2 + np.uint64(sy) * K3)
    return np.int64(h >> np.uint64(shift)) << 4


@njit(cache=True, inline="always")
def _hash_cell(g, cx, cy, shift):
    """Bucket of cell (g, cx, cy) in the hashed cell list.  Cells are grouped in 4 x 4 super-cells:
    the super-cell (g, cx >> 2, cy >> 2) is hashed (splitmix64 finaliser of a multiplicative
    combination, top ``64 - shift`` bits) and the cell's position inside it gives the low 4 bits, so
    the 3 x 3 stencil of a cell mostly reads 16 consecutive buckets (locality), whatever the extent."""
    return _super_hash(g, cx >> 2, cy >> 2, shift) | ((cx & 3) << 2) | (cy & 3)


@njit(cache=True)
def _bounds_kernel(a):
    """(first row with a non-finite coordinate or -1, xmin, xmax, ymin, ymax) in one pass (serial: a
    few ms at 10^6 points, less than one wake-up of the thread pool on a busy machine)."""
    n = a.shape[0]
    bad = n
    x0 = np.inf
    x1 = -np.inf
    y0 = np.inf
    y1 = -np.inf
    for p in range(n):
        x = a[p, 0]
        y = a[p, 1]
        if np.isfinite(x) and np.isfinite(y):
            x0 = min(x0, x)
            x1 = max(x1, x)
            y0 = min(y0, y)
            y1 = max(y1, y)
        else:
            bad = min(bad, p)
    return (bad if bad < n else -1), x0, x1, y0, y1


@njit(cache=True)
def _buckets_kernel(a, group, x0, y0, h, shift):
    """Bucket of every point: the hash of its cell (group, cx, cy)."""
    n = a.shape[0]
    bucket = np.empty(n, np.int64)
    for p in range(n):
        cx, cy = _cell_of(a[p, 0], a[p, 1], x0, y0, h)
        bucket[p] = _hash_cell(group[p], cx, cy, shift)
    return bucket


@njit(cache=True, parallel=True)
def _gather_kernel(order, a, group, x0, y0, h, xs, ys, cxs, cys, gs):
    """Coordinates, cells and groups in bucket order (cells recomputed: identical, and cheaper than
    gathering them)."""
    for k in prange(order.shape[0]):
        p = order[k]
        x = a[p, 0]
        y = a[p, 1]
        xs[k] = x
        ys[k] = y
        cx, cy = _cell_of(x, y, x0, y0, h)
        cxs[k] = cx
        cys[k] = cy
        gs[k] = group[p]


@njit(cache=True, parallel=True)
def _scan_hashed_kernel(xs, ys, cxs, cys, gs, orig, start, shift, r2, fill, offs, counts, out_j):
    """Over the points p in bucket order.  Pass 1 (fill=False): counts[p] = number of partners q
    with orig[q] > orig[p].  Pass 2 (fill=True): writes their orig[q] at out_j[offs[p]:offs[p+1]],
    sorted.  Both passes read and write sequentially; the count loop is branch-free (the hit test is
    ~50/50 and unpredictable).  Buckets are hashed: candidates are filtered by their exact cell (two
    super-cells may share a super-bucket; the 9 stencil cells still have 9 distinct buckets, since
    their positions (cx & 3, cy & 3) inside a super-cell differ, so the filter counts every point
    once).  The 3 x 3 stencil touches at most 2 x 2 super-cells: their hashes are computed once per
    point, and each stencil column is 1 or 2 contiguous bucket ranges."""
    n = xs.shape[0]
    for p in prange(n):
        xp = xs[p]
        yp = ys[p]
        oi = orig[p]
        cx = cxs[p]
        cy = cys[p]
        g = gs[p]
        c = 0
        w = offs[p] + p if fill else 0     # row p has counts[p] slots + 1 pad slot
        sx0 = (cx - 1) >> 2
        sy0 = (cy - 1) >> 2
        h00 = _super_hash(g, sx0, sy0, shift)
        h01 = _super_hash(g, sx0, sy0 + 1, shift) if ((cy + 1) >> 2) != sy0 else h00
        if ((cx + 1) >> 2) != sx0:
            h10 = _super_hash(g, sx0 + 1, sy0, shift)
            h11 = _super_hash(g, sx0 + 1, sy0 + 1, shift) if ((cy + 1) >> 2) != sy0 else h10
        else:
            h10 = h00
            h11 = h01
        split = ((cy + 1) >> 2) != sy0     # the stencil column spans two super-rows
        for ix in range(cx - 1, cx + 2):
            sub = (ix & 3) << 2
            hx0 = (h00 if (ix >> 2) == sx0 else h10) | sub
            hx1 = (h01 if (ix >> 2) == sx0 else h11) | sub
            # cells (ix, cy-1..cy+1) are consecutive buckets within one super-row: 1 or 2 ranges
            for part in range(2 if split else 1):
                if not split:
                    lo = start[hx0 | ((cy - 1) & 3)]
                    hi = start[(hx0 | ((cy + 1) & 3)) + 1]
                elif part == 0:
                    lo = start[hx0 | ((cy - 1) & 3)]
                    hi = start[(hx0 | 3) + 1]
                else:
                    lo = start[hx1]
                    hi = start[(hx1 | ((cy + 1) & 3)) + 1]
                for q in range(lo, hi):
                    oq = orig[q]
                    dx = xp - xs[q]
                    dy = yp - ys[q]
                    dc = cys[q] - cy
                    hit = ((oq > oi) & (cxs[q] == ix) & (dc >= -1) & (dc <= 1) & (gs[q] == g)
                           & (dx * dx + dy * dy <= r2))
                    if fill:
                        out_j[w + c] = oq
                    c += np.int64(hit)
        if fill:
            _sort_row(out_j, w, w + c)
        else:
            counts[p] = c


@njit(cache=True)
def _offsets_kernel(counts):
    n = counts.shape[0]
    offs = np.empty(n + 1, np.int64)
    offs[0] = 0
    for k in range(n):
        offs[k + 1] = offs[k] + counts[k]
    return offs


@njit(cache=True)
def _orig_offsets_kernel(order, counts_s):
    """Row offsets in original index order: the point at bucket position p is order[p]."""
    n = order.shape[0]
    counts = np.empty(n, np.int64)
    for p in range(n):
        counts[order[p]] = counts_s[p]
    offs = np.empty(n + 1, np.int64)
    offs[0] = 0
    for i in range(n):
        offs[i + 1] = offs[i] + counts[i]
    return offs


@njit(cache=True, parallel=True)
def _reorder_kernel(order, offs_s, offs_o, out_s, out_i, out_j):
    """Rows from bucket order (padded) to original order: sequential reads, each row written as one
    block at its place (faster here than gathering rows in original order)."""
    for p in prange(order.shape[0]):
        i = order[p]
        w = offs_o[i]
        lo = offs_s[p] + p
        for k in range(offs_s[p + 1] - offs_s[p]):
            out_i[w + k] = i
            out_j[w + k] = out_s[lo + k]


# ----------------------------------------------------------------------------------------------
# Python wrappers
# ----------------------------------------------------------------------------------------------
def _check_xy(xy) -> np.ndarray:
    a = np.asarray(xy)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"xy must be a real numeric array of shape (n, 2), got dtype {a.dtype}")
    if a.ndim != 2 or a.shape[1] != 2:
        raise ValueError(f"xy must have shape (n, 2), got {a.shape}")
    return np.ascontiguousarray(a, dtype=np.float64)


def _check_radius(radius) -> float:
    try:
        r = float(radius)
    except (TypeError, ValueError):
        raise ValueError(f"radius must be a positive finite number, got {radius!r}") from None
    if not (np.isfinite(r) and r > 0):
        raise ValueError(f"radius must be a positive finite number, got {radius!r}")
    return r


_EMPTY = np.empty(0, np.int64)
_EMPTY32 = np.empty(0, np.int32)   # the count pass's out_j: same type as the fill pass' (one specialisation)
_PARALLEL_MIN = 20_000     # below this many points the kernels run on one thread


class _threads:
    """Run the kernels with at most ``k`` numba threads (restored afterwards).  Small inputs use one
    thread: waking the worker pool costs more than the work (milliseconds on a busy machine)."""

    def __init__(self, k):
        self.k = k

    def __enter__(self):
        self.old = numba.get_num_threads()
        if self.k < self.old:
            numba.set_num_threads(self.k)

    def __exit__(self, *exc):
        numba.set_num_threads(self.old)


def _pairs(a: np.ndarray, group, r: float):
    with _threads(1 if a.shape[0] < _PARALLEL_MIN else numba.get_num_threads()):
        return _pairs_impl(a, group, r)


def _pairs_impl(a: np.ndarray, group, r: float):
    n = a.shape[0]
    if n >= 2**31 - 1:
        raise ValueError(f"at most 2**31 - 2 points are supported, got {n}")
    if n == 0:
        return _EMPTY.copy(), _EMPTY.copy()
    bad, x0, x1, y0, y1 = _bounds_kernel(a)
    if bad >= 0:
        raise ValueError(f"xy has a non-finite coordinate in row {bad}: {a[bad].tolist()}")
    if n == 1:
        return _EMPTY.copy(), _EMPTY.copy()
    big = max(x1 - x0, y1 - y0, abs(x0), abs(x1), abs(y0), abs(y1))
    h = max(r, big * 2.0 ** -_CELL_BITS) * _H_INFLATE
    if group is None:
        nx = int((x1 - x0) // h) + 1
        ny = int((y1 - y0) // h) + 1
        return pairs_sorted(a, r, x0, y0, h, nx, ny)
    return _pairs_hashed(a, group, r, x0, y0, h)


def _pairs_hashed(a: np.ndarray, group, r: float, x0, y0, h):
    """pairs_within_groups: the hashed cell list (steps 2'-4' of the module docstring)."""
    n = a.shape[0]
    k = max(int(n // 4).bit_length(), 2)       # 2**k super-buckets > n / 4, 16 buckets each
    n_buckets, shift = 16 << k, 64 - k
    bucket = _buckets_kernel(a, group, x0, y0, h, shift)
    start, order = _counting_sort_kernel(bucket, n_buckets)
    del bucket
    xs = np.empty(n)
    ys = np.empty(n)
    cxs = np.empty(n, np.int64)
    cys = np.empty(n, np.int64)
    gs = np.zeros(n, np.int64)                 # group of every point
    _gather_kernel(order, a, group, x0, y0, h, xs, ys, cxs, cys, gs)
    r2 = r * r
    counts_s = np.empty(n, np.int64)
    zero = np.zeros(1, np.int64)
    _scan_hashed_kernel(xs, ys, cxs, cys, gs, order, start, shift, r2, False, zero, counts_s, _EMPTY32)
    offs_s = _offsets_kernel(counts_s)
    m = int(offs_s[-1])
    out_s = np.empty(m + n, np.int32)
    _scan_hashed_kernel(xs, ys, cxs, cys, gs, order, start, shift, r2, True, offs_s, counts_s, out_s)
    del xs, ys, cxs, cys, gs
    offs_o = _orig_offsets_kernel(order, counts_s)
    out_i = np.empty(m, np.int64)
    out_j = np.empty(m, np.int64)
    _reorder_kernel(order, offs_s, offs_o, out_s, out_i, out_j)
    return out_i, out_j


def pairs_within(xy, radius):
    """All pairs of points at Euclidean distance ``<= radius``.

    Parameters
    ----------
    xy : array_like, shape (n, 2)
        Point coordinates (any real dtype; used as float64).  NaN or infinite coordinates raise
        ``ValueError`` naming the first bad row.
    radius : float
        Positive, finite.

    Returns
    -------
    i, j : int64 arrays
        ``i < j``, sorted by ``(i, j)``; exactly the set ``cKDTree(xy).query_pairs(radius)`` returns
        (distance compared as ``dx*dx + dy*dy <= radius*radius``).  Identical for any number of
        numba threads.
    """
    a = _check_xy(xy)
    r = _check_radius(radius)
    return _pairs(a, None, r)


def pairs_within_groups(xy, group, radius):
    """As :func:`pairs_within`, but only pairs of points with the same ``group`` id.

    ``group`` is a 1-D integer array of length n (any int64 values, e.g. ``place * n_steps + step``).
    The result equals the union over groups of ``cKDTree(xy[group == g]).query_pairs(radius)`` mapped
    back to the original indices, sorted by ``(i, j)``.  Coordinates of different groups may overlap
    (each place can have its own local frame): cells are keyed by ``(group, cx, cy)`` in a hashed
    cell list, so memory stays O(n) whatever the number of groups.
    """
    a = _check_xy(xy)
    r = _check_radius(radius)
    g = np.asarray(group)
    if g.ndim != 1 or g.shape[0] != a.shape[0]:
        raise ValueError(f"group must be a 1-D array of length {a.shape[0]}, got shape {g.shape}")
    if g.size and not (np.issubdtype(g.dtype, np.integer) or g.dtype == np.bool_):
        raise ValueError(f"group must be an integer array, got dtype {g.dtype}")
    if g.dtype == np.uint64 and g.size and g.max() > np.iinfo(np.int64).max:
        g = g.view(np.int64)          # only equality matters
    g = np.ascontiguousarray(g, dtype=np.int64)
    return _pairs(a, g, r)
