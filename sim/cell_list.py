"""The sorted cell list: ``pairs_within`` without groups (steps 2-4 of :mod:`sim.neighbours`' docstring),
and the cell primitives both cell lists share (cell of a point, stable counting sort, row sort).

Every point gets the cell key ``cx * ny + cy``; a dense grid is sorted by one counting-sort pass, a
sparse one by an LSD radix sort with a merge sweep for the stencil ranges of the occupied cells; one
scan over a half stencil writes every pair once as a key ``i << 32 | j``, and one two-pass radix sort orders them.  The
output does not depend on the number of threads.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["pairs_sorted"]

_DENSE_SLACK = 1024
_INSERTION_MAX = 48                # rows longer than this are heap-sorted
_RADIX_BITS = 11


# ----------------------------------------------------------------------------------------------
# shared cell primitives
# ----------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _cell_of(x, y, x0, y0, h):
    return np.int64(np.floor((x - x0) / h)), np.int64(np.floor((y - y0) / h))


@njit(cache=True)
def _counting_sort_kernel(bucket, n_buckets):
    """Stable counting sort by bucket: (start offsets of every bucket (n_buckets + 1), order of the
    points).  Serial: parallel chunked histograms were no faster on two
    cores and every parallel region costs a wake-up of the thread pool."""
    n = bucket.shape[0]
    start = np.zeros(n_buckets + 1, np.int64)
    for p in range(n):
        start[bucket[p] + 1] += 1
    for b in range(n_buckets):
        start[b + 1] += start[b]
    pos = start[:-1].copy()
    order = np.empty(n, np.int32)       # int32 internally (n < 2**31): half the memory traffic
    for p in range(n):
        b = bucket[p]
        k = pos[b]
        order[k] = np.int32(p)
        pos[b] = k + 1
    return start, order


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
# sorted cell list: LSD radix sort by cell key, per-cell stencil ranges by a monotone merge sweep,
# one final radix pass ordering the rows by i
# ----------------------------------------------------------------------------------------------
@njit(cache=True)
def _cell_keys_kernel(a, x0, y0, h, ny):
    """Cell key ``cx * ny + cy`` of every point (< 2**62) and the largest key."""
    n = a.shape[0]
    key = np.empty(n, np.int64)
    kmax = np.int64(0)
    for p in range(n):
        cx, cy = _cell_of(a[p, 0], a[p, 1], x0, y0, h)
        k = cx * ny + cy
        key[p] = k
        kmax = max(kmax, k)
    return key, kmax


@njit(cache=True)
def _group_cell_keys_kernel(a, group, x0, y0, h, nx, ny):
    """Cell key ``(group * (nx + 1) + cx) * ny + cy`` of every point (groups >= 0; one empty column
    after each group's ``nx`` columns, so no stencil reaches into another group) and the largest key."""
    n = a.shape[0]
    key = np.empty(n, np.int64)
    kmax = np.int64(0)
    for p in range(n):
        cx, cy = _cell_of(a[p, 0], a[p, 1], x0, y0, h)
        k = (group[p] * (nx + 1) + cx) * ny + cy
        key[p] = k
        kmax = max(kmax, k)
    return key, kmax


@njit(cache=True)
def _radix_sort_points_kernel(key, kmax):
    """Stable LSD radix sort of the points by cell key (11-bit digits, as many passes as the
    largest key needs): (sorted keys, point order as int32).  Sequential reads, writes into
    2**11 streams: cache-friendly where a counting sort over all cells scatters at random."""
    n = key.shape[0]
    bits = 1
    while (np.int64(1) << bits) <= kmax:
        bits += 1
    passes = (bits + _RADIX_BITS - 1) // _RADIX_BITS
    width = (bits + passes - 1) // passes
    nb = 1 << width
    mask = np.int64(nb - 1)
    ka = key.copy()
    pa = np.arange(n).astype(np.int32)
    kb = np.empty(n, np.int64)
    pb = np.empty(n, np.int32)
    cnt = np.empty(nb + 1, np.int64)
    for ps in range(passes):
        sh = ps * width
        cnt[:] = 0
        for p in range(n):
            cnt[((ka[p] >> sh) & mask) + 1] += 1
        for b in range(nb):
            cnt[b + 1] += cnt[b]
        for p in range(n):
            d = (ka[p] >> sh) & mask
            k = cnt[d]
            kb[k] = ka[p]
            pb[k] = pa[p]
            cnt[d] = k + 1
        ka, kb = kb, ka
        pa, pb = pb, pa
    return ka, pa


@njit(cache=True)
def _cells_kernel(skey, ny, nx):
    """Occupied cells of the sorted keys: the point ranges of every cell's three stencil columns
    (n_cells, 6; own column, column cx - 1, column cx + 1, each the cells with
    cy - 1 <= cy' <= cy + 1, contiguous in key order), the first point of every cell
    (n_cells + 1) and every cell's candidate count (the sum of the three range lengths).  The
    bounds of each column's key range only grow with the cell's key, so six pointers sweep the
    cells once (a merge: no search, no hash)."""
    n = skey.shape[0]
    nc = 0
    for p in range(n):
        if p == 0 or skey[p] != skey[p - 1]:
            nc += 1
    cstart = np.empty(nc + 1, np.int32)
    ckey = np.empty(nc, np.int64)
    c = 0
    for p in range(n):
        if p == 0 or skey[p] != skey[p - 1]:
            cstart[c] = p
            ckey[c] = skey[p]
            c += 1
    cstart[nc] = n
    rng = np.zeros((nc, 6), np.int32)
    lo_ptr = np.zeros(3, np.int64)
    hi_ptr = np.zeros(3, np.int64)
    for c in range(nc):
        k = ckey[c]
        cx = k // ny
        cy = k - cx * ny
        klo = k - (cy - max(cy - 1, 0))
        khi = k + (min(cy + 1, ny - 1) - cy)
        for col in range(3):
            if col == 0:
                dk = np.int64(0)
            elif col == 1:
                if cx == 0:
                    continue
                dk = -ny
            else:
                if cx == nx - 1:
                    continue
                dk = ny
            lo = klo + dk
            hi = khi + dk
            a = lo_ptr[col]
            while a < nc and ckey[a] < lo:
                a += 1
            lo_ptr[col] = a
            b = max(hi_ptr[col], a)
            while b < nc and ckey[b] <= hi:
                b += 1
            hi_ptr[col] = b
            rng[c, 2 * col] = cstart[a]
            rng[c, 2 * col + 1] = cstart[b]
    return cstart, rng


@njit(cache=True)
def _bound_offsets_kernel(cstart, rng):
    """Row offsets (n + 1) from the per-point upper bound of the half stencil: point p of cell c
    gets a slot for every later point of its own column range (``p + 1 .. rng[c, 1]``: the rest of
    its cell and the cell above) and for every point of column cx + 1 (``rng[c, 4] .. rng[c, 5]``)."""
    nc = cstart.shape[0] - 1
    n = cstart[nc]
    offs = np.empty(n + 1, np.int64)
    offs[0] = 0
    for c in range(nc):
        right = rng[c, 5] - rng[c, 4]
        for p in range(cstart[c], cstart[c + 1]):
            offs[p + 1] = offs[p] + (rng[c, 1] - p - 1) + right
    return offs


@njit(cache=True, parallel=True)
def _gather_sorted_kernel(order, a, xs, ys):
    for k in prange(order.shape[0]):
        p = order[k]
        xs[k] = a[p, 0]
        ys[k] = a[p, 1]


@njit(cache=True, inline="always")
def _half_row(xs, ys, orig, p, b0, a2, b2, r2, out, w):
    """Half stencil of point p (sorted position): candidates q in ``p + 1 .. b0`` (rest of its cell
    and the cell above, contiguous in key order) and ``a2 .. b2`` (column cx + 1, rows cy - 1 ..
    cy + 1), so every pair is tested from exactly one end.  Writes the keys
    ``min(orig) << 32 | max(orig)`` of the hits at out[w:] branch-free (the row has room for every
    candidate); returns their number."""
    xp = xs[p]
    yp = ys[p]
    oi = np.uint64(orig[p])
    cnt = 0
    for part in range(2):
        qa = p + 1 if part == 0 else a2
        qb = b0 if part == 0 else b2
        for q in range(qa, qb):
            oq = np.uint64(orig[q])
            dx = xp - xs[q]
            dy = yp - ys[q]
            lo = min(oi, oq)
            out[w + cnt] = (lo << np.uint64(32)) | (oi ^ oq ^ lo)
            cnt += np.int64(dx * dx + dy * dy <= r2)
    return cnt


@njit(cache=True, parallel=True)
def _scan_cells_kernel(xs, ys, orig, cstart, rng, r2, offs, counts, out):
    """One pass, prange over the occupied cells: every point's half-stencil hits (:func:`_half_row`)
    at out[offs[p]:], counts[p] = their number.  Each pair within r2 is found exactly once."""
    nc = cstart.shape[0] - 1
    for c in prange(nc):
        for p in range(cstart[c], cstart[c + 1]):
            counts[p] = _half_row(xs, ys, orig, p, rng[c, 1], rng[c, 4], rng[c, 5], r2, out, offs[p])


@njit(cache=True, inline="always")
def _grid_ranges(start, c, nx, ny):
    """Point ranges of the three stencil columns of dense cell c = cx * ny + cy."""
    cx = c // ny
    cy = c - cx * ny
    ylo = max(cy - 1, 0)
    yhi = min(cy + 1, ny - 1)
    a0 = start[c - cy + ylo]
    b0 = start[c - cy + yhi + 1]
    a1 = b1 = a2 = b2 = np.int64(0)
    if cx > 0:
        a1 = start[c - ny - cy + ylo]
        b1 = start[c - ny - cy + yhi + 1]
    if cx < nx - 1:
        a2 = start[c + ny - cy + ylo]
        b2 = start[c + ny - cy + yhi + 1]
    return a0, b0, a1, b1, a2, b2


@njit(cache=True)
def _grid_bound_offsets_kernel(start, nx, ny):
    """As _bound_offsets_kernel for the dense grid (start: first point of every cell)."""
    ncell = start.shape[0] - 1
    n = start[ncell]
    offs = np.empty(n + 1, np.int64)
    offs[0] = 0
    for c in range(ncell):
        lo = start[c]
        hi = start[c + 1]
        if hi == lo:
            continue
        a0, b0, a1, b1, a2, b2 = _grid_ranges(start, c, nx, ny)
        for p in range(lo, hi):
            offs[p + 1] = offs[p] + (b0 - p - 1) + (b2 - a2)
    return offs


@njit(cache=True, parallel=True)
def _scan_grid_kernel(xs, ys, orig, start, nx, ny, r2, offs, counts, out):
    """As _scan_cells_kernel on the dense grid (prange over all cells, empty ones skipped)."""
    ncell = start.shape[0] - 1
    for c in prange(ncell):
        lo = start[c]
        hi = start[c + 1]
        if hi == lo:
            continue
        a0, b0, a1, b1, a2, b2 = _grid_ranges(start, c, nx, ny)
        for p in range(lo, hi):
            counts[p] = _half_row(xs, ys, orig, p, b0, a2, b2, r2, out, offs[p])


@njit(cache=True)
def _bucket_rows_kernel(buf, offs, counts, shift, nb):
    """Pass 1 of sorting the pairs: the keys ``i << 32 | j`` of every row, scattered by the top
    bits of i (``i >> shift``) into nb buckets (sequential reads, nb write streams).
    Returns (keys, bucket starts)."""
    n = counts.shape[0]
    sh = np.uint64(32 + shift)
    start = np.zeros(nb + 1, np.int64)
    for p in range(n):
        lo = offs[p]
        for k in range(lo, lo + counts[p]):
            start[np.int64(buf[k] >> sh) + 1] += 1
    for b in range(nb):
        start[b + 1] += start[b]
    pos = start[:-1].copy()
    keys = np.empty(start[nb], np.uint64)
    for p in range(n):
        lo = offs[p]
        for k in range(lo, lo + counts[p]):
            v = buf[k]
            b = np.int64(v >> sh)
            keys[pos[b]] = v
            pos[b] += 1
    return keys, start


@njit(cache=True, parallel=True)
def _finish_rows_kernel(keys, start, shift, out_i, out_j):
    """Pass 2: inside every bucket (a few hundred values of i, cache-resident) a counting sort by
    the low bits of i, then every run of equal i sorted by j (short: the partners of one point),
    decoded into out_i / out_j.  Buckets are independent (prange); the result is the full (i, j)
    order, whatever the number of threads."""
    nb = start.shape[0] - 1
    width = np.int64(1) << shift
    for b in prange(nb):
        lo = start[b]
        hi = start[b + 1]
        if hi == lo:
            continue
        cnt = np.zeros(width + 1, np.int64)
        for k in range(lo, hi):
            cnt[np.int64(keys[k] >> np.uint64(32)) - (b << shift) + 1] += 1
        for d in range(width):
            cnt[d + 1] += cnt[d]
        tmp = np.empty(hi - lo, np.uint64)
        for k in range(lo, hi):
            v = keys[k]
            d = np.int64(v >> np.uint64(32)) - (b << shift)
            tmp[cnt[d]] = v
            cnt[d] += 1
        a = 0
        for d in range(width):                 # cnt[d] is now the end of the run of i = d: sort it by j
            e = cnt[d]
            if e - a > 1:
                _sort_row(tmp, a, e)
            a = e
        for k in range(hi - lo):
            v = tmp[k]
            out_i[lo + k] = np.int64(v >> np.uint64(32))
            out_j[lo + k] = np.int64(v & np.uint64(0xFFFFFFFF))


def pairs_sorted(a: np.ndarray, r: float, x0, y0, h, nx, ny, group=None):
    """All pairs (i < j, sorted by (i, j)) of the points ``a`` within ``r``, by the sorted cell list.

    Parameters
    ----------
    a : float64 array, shape (n, 2)
        Finite coordinates (m, or any unit of ``r``), n >= 2.
    r : float
        Radius.
    x0, y0 : float
        Smallest coordinates; ``h`` the cell size (>= r), ``nx``, ``ny`` cells per axis.
    group : int64 array, shape (n,), optional
        Group of every point, ``0 <= group`` and ``(max + 1) * (nx + 1) * ny < 2**62``: only points of
        one group are paired (each group is a block of ``nx + 1`` cell columns, the last one empty).

    Returns
    -------
    i, j : int64 arrays, shape (m,)
    """
    n = a.shape[0]
    if group is None:
        key, kmax = _cell_keys_kernel(a, x0, y0, h, ny)
    else:
        key, kmax = _group_cell_keys_kernel(a, group, x0, y0, h, nx, ny)
        nx = int(kmax // ny) + 1                # the columns of all groups (the key's column part)
    dense = nx * ny <= 2 * n + _DENSE_SLACK
    if dense:                                   # one counting-sort pass, cells found by index
        start, order = _counting_sort_kernel(key, nx * ny)
    else:                                       # radix sort, occupied cells only
        skey, order = _radix_sort_points_kernel(key, kmax)
        cstart, rng = _cells_kernel(skey, ny, nx)
        del skey
    del key
    xs = np.empty(n)
    ys = np.empty(n)
    _gather_sorted_kernel(order, a, xs, ys)
    counts = np.empty(n, np.int64)
    if dense:
        offs = _grid_bound_offsets_kernel(start, nx, ny)
        buf = np.empty(int(offs[-1]), np.uint64)
        _scan_grid_kernel(xs, ys, order, start, nx, ny, r * r, offs, counts, buf)
        del start
    else:
        offs = _bound_offsets_kernel(cstart, rng)
        buf = np.empty(int(offs[-1]), np.uint64)
        _scan_cells_kernel(xs, ys, order, cstart, rng, r * r, offs, counts, buf)
        del cstart, rng
    del xs, ys
    shift = max(int(n - 1).bit_length() - 11, 0)
    nb = ((n - 1) >> shift) + 1
    keys, bstart = _bucket_rows_kernel(buf, offs, counts, shift, nb)
    del buf, offs, counts, order
    m = keys.shape[0]
    out_i = np.empty(m, np.int64)
    out_j = np.empty(m, np.int64)
    _finish_rows_kernel(keys, bstart, shift, out_i, out_j)
    return out_i, out_j
