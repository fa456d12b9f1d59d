"""The neighbour-search hot loop: all pairs of points within a radius, by a cell list.

``pairs_within(xy, radius)`` returns exactly the pairs ``scipy.spatial.cKDTree(xy).query_pairs(radius)``
returns, as two int64 arrays ``(i, j)`` with ``i < j``, sorted by ``(i, j)``.
``pairs_within_groups(xy, group, radius)`` does the same but only pairs two points that carry the same
group id (e.g. the same place at the same time step), so the simulator can search all places of a step in
one call even though every place has its own local coordinates.

Algorithm (see ``../shared/DESIGN.md``, Performance rules), a sorted cell list (:mod:`sim.cell_list`):

1. Column width ``h >= radius``: every pair within ``radius`` lies in the same or in adjacent columns.
   ``h`` is ``radius`` enlarged by a relative ``2**-16`` (so float rounding in the cell index can never
   put two points at distance exactly ``radius`` two cells apart) and never smaller than
   ``max(extent, |coordinate|) * 2**-30`` (so cell indices fit in 31 bits and the rounding error of
   ``x - xmin`` stays far below one cell even for huge coordinates).  Each column is cut into levels of
   height ``h / q`` (``q = 8``, a power of two, so ``floor((y - ymin) / h * q)`` inherits the rounding
   argument: a pair within ``radius`` is at most ``q`` levels apart).
2. Every point gets the key ``(group * (nx + 1) + cx) * nyl + ly`` with ``nyl = q (ny + 1)`` levels per
   column (q empty levels on top, one empty column after each group's ``nx``: no stencil range wraps into
   another column or group).  ``q`` is halved, then ``h`` doubled, while the packed keys of step 3 would
   not fit in 64 bits (huge extents only; any ``h >= radius`` finds every pair).  Group ids that are
   negative or ``>= 2**31`` are replaced by their ranks (``np.unique``).
3. Points sorted by key: one parallel radix pass scatters ``(key mod 2**shift) << bits(n) | row``
   (uint64) into <= 256 buckets of the key's top bits (per-block histograms and prefix sums: stable,
   the same for any number of threads), each bucket (cache-resident) is radix-sorted over its own key
   span, and the coordinates are gathered in key order (locality for the scan).  Memory is O(n)
   whatever the extent: no array over the cells.
4. One scan with a *half stencil*: sorted point p tests the later points of its own column up to ``q``
   levels above (one contiguous range ``p + 1 ..``) and the ``2q + 1`` levels of column ``cx + 1``
   around its own (one contiguous range), so every pair is tested from exactly one end: at 10^6 uniform
   points with ~3 neighbours 3.0 M candidates for 1.5 M pairs (square cells of side ``radius`` with
   a 3 x 3 stencil test ~9 M).  The range ends are three pointers swept monotonically over the sorted
   keys (a merge: no search, no hash).  Hits (``dx*dx + dy*dy <= radius*radius``, the comparison
   cKDTree makes for p=2: squared Euclidean distance against the squared radius) are written
   branch-free as keys ``min(row) << 32 | max(row)``, compacted per block of points, into room for 4
   hits per point; a block that runs out of room stops and a second round scans its rest with the
   exact room (its candidates counted first).
5. One radix sort of the pair keys to ``(i, j)`` order: pass 1 scatters them into <= 256 buckets by the
   top bits of ``i`` (per-block histograms counted during the scan, prefix sums); pass 2 (``prange``
   over buckets, each cache-resident) radix-sorts every bucket by ``(i, j)`` and writes ``i`` and
   ``j``.  The output is identical whatever the number of threads.

``pairs_within_groups`` runs the same code with the group in the key; the distances are computed from
the points' own coordinates (groups may overlap in space).

Inputs below 20,000 points run on one thread (waking the worker pool costs more than the work); from
100,000 points on at most as many threads as there are cores no other task occupies (:func:`_n_threads`).
The kernels are serial (``nogil``) and run over chunks of blocks on Python threads (:func:`sim.cell_list._run`):
they compile several times faster than ``parallel=True`` loops.
"""
from __future__ import annotations

import os

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


_LOAD_CHECK_MIN = 100_000  # from this many points a saturated machine is checked for (~0.1 ms)


def _runnable_elsewhere() -> int:
    """Tasks runnable on the machine right now that are not threads of this process (/proc/loadavg's
    running count less this process's threads in state R; 0 where /proc cannot be read)."""
    try:
        with open("/proc/loadavg") as f:
            running = int(f.read().split()[3].split("/")[0])
        own = 0
        for t in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{t}/stat") as f:
                st = f.read()
            own += st[st.rindex(")") + 2] == "R"
        return max(running - own, 0)            # two snapshots: never below 0
    except (OSError, ValueError, IndexError):
        return 0


def _n_threads(n: int) -> int:
    """Threads for n points: one below _PARALLEL_MIN; from _LOAD_CHECK_MIN points at most the cores
    that no other task occupies right now (the run queue now, not the load average; at least one);
    else numba's setting (``NUMBA_NUM_THREADS``).  With numba's OpenMP pool a parallel region waited
    for its slowest worker, descheduled for whole time slices on a busy core (at load ~4 on 2 cores,
    10^5 points took 25 ms on 1 thread and 112 ms on 2); the cell list's passes now hand out chunks
    dynamically to Python threads, and at load ~8 one and two threads take the same time at 10^6
    points (uniform 253 vs 266 ms, clustered 315 vs 319 ms), so a busy machine keeps one thread and
    leaves the other cores to the other tasks.  The output is the same for any number of threads."""
    k = numba.get_num_threads()
    if n < _PARALLEL_MIN:
        return 1
    if k > 1 and n >= _LOAD_CHECK_MIN:
        k = max(1, min(k, len(os.sched_getaffinity(0)) - _runnable_elsewhere()))
    return k


def _pairs(a: np.ndarray, group, r: float):
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
    return pairs_sorted(a, r, x0, y0, x1 - x0, y1 - y0, h, group, threads=_n_threads(n))


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
