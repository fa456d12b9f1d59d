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

``pairs_within_groups`` -- the same sorted cell list with the group in the cell key (the simulator's
path): key ``(group * (nx + 1) + cx) * ny + cy``, so every group is a block of ``nx`` cell columns
followed by one empty column and no stencil reaches into another group; the distances are computed from
the points' own coordinates (groups may overlap in space).  Group ids that are negative or too large
for the key (``>= 2**62`` with the cells) are replaced by their ranks (``np.unique``).

Inputs below 20,000 points run on one thread (waking the worker pool costs more than the work).
"""
from __future__ import annotations

import numpy as np
import numba
from numba import njit

from sim.cell_list import pairs_sorted

__all__ = ["pairs_within", "pairs_within_groups"]

_CELL_BITS = 30                    # cell indices per axis < 2**30
_GROUP_LIMIT = 2**31               # group ids at or above this (or negative) are replaced by ranks
_H_INFLATE = 1.0 + 2.0 ** -16      # cell size slightly above the radius (see module docstring)


# ----------------------------------------------------------------------------------------------
# kernels
# ----------------------------------------------------------------------------------------------
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
    if group is not None and (int(group.min()) < 0 or int(group.max()) >= _GROUP_LIMIT):
        _, inv = np.unique(group, return_inverse=True)     # ids outside the cell key's range: ranks
        group = inv.astype(np.int64).reshape(-1)
    return pairs_sorted(a, r, x0, y0, x1 - x0, y1 - y0, h, group)


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
    (each place can have its own local frame): cells are keyed by ``(group, cx, cy)`` in the sorted
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
