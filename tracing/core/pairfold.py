"""A run's distinct pairs folded in one day table at a time, in place: the compact form the one-pass
curves' graph (:class:`tracing.core.pairgraph.PairGraph`) is built on without a second copy.

:class:`FoldedPairs` holds the collapsed pairs (``coverage.collapse_pairs``' content) as the upper half
of a CSR: ``ptr`` int64 (n+1,) over the agents ``i``, and per pair (sorted by ``(i, j)``) ``j`` int32,
``flags`` uint8 (bit 0 truly close on any day, bit 1 ``notify_j``, bit 2 ``notify_i``: exactly the
directed flags of the edge i -> j), ``tmin`` / ``tmax`` float64 s (``fmin`` / ``fmax`` of ``t_first``,
NaN if unknown) -- 21 bytes a pair.  A day is merged into it from the back, agent by agent, after the
arrays have been grown in place (``ndarray.resize``: ``realloc``, which moves large blocks by
``mremap`` without copying), so a fold never holds the old and the new table together.

The kernels assume valid input (``0 <= i < j < n``, the day sorted by ``(i, j)`` with one row per pair);
the wrappers in :mod:`tracing.core.coverage` check it.
"""
from __future__ import annotations

import numba
import numpy as np

__all__ = ["FoldedPairs", "strictly_sorted"]


@numba.njit(cache=True)
def strictly_sorted(i, j) -> bool:
    """Whether the rows are sorted by ``(i, j)`` with no pair twice (a stored day table is)."""
    for k in range(1, i.shape[0]):
        if i[k] < i[k - 1] or (i[k] == i[k - 1] and j[k] <= j[k - 1]):
            return False
    return True


@numba.njit(cache=True)
def _fold_count(ptr, aj, di, dj):
    """The row pointer (int64 (n+1,)) of the fold of the CSR pairs (``ptr``, ``aj``) and the day's
    pairs ``(di, dj)`` (sorted, unique): the agent's old pairs plus its day pairs not among them."""
    n = ptr.shape[0] - 1
    new = np.empty(n + 1, np.int64)
    new[0] = 0
    kd, nd = 0, di.shape[0]
    for a in range(n):
        ka, ea = ptr[a], ptr[a + 1]
        add = 0
        while kd < nd and di[kd] == a:
            y = dj[kd]
            while ka < ea and aj[ka] < y:
                ka += 1
            if ka == ea or aj[ka] != y:
                add += 1
            kd += 1
        new[a + 1] = new[a] + (ea - ptr[a]) + add
    return new


@numba.njit(cache=True, inline="always")
def _fmin(a, b):
    return b if np.isnan(a) or (not np.isnan(b) and b < a) else a


@numba.njit(cache=True, inline="always")
def _fmax(a, b):
    return b if np.isnan(a) or (not np.isnan(b) and b > a) else a


@numba.njit(cache=True)
def _fold_fill(ptr, new, j, flags, tmin, tmax, di, dj, dmin, dmax, dtc, dnj, dni):
    """Merge the day's pairs (``di, dj`` sorted, unique; times ``dmin`` / ``dmax`` s; flags ``dtc``,
    ``dnj``, ``dni``) into the CSR arrays ``j, flags, tmin, tmax`` (old row pointer ``ptr``; already
    grown to ``new[n]`` rows) in place: agents from the last, each one's rows from its end, so no row is
    overwritten before it is read (``new[a] >= ptr[a]``).  A pair seen before: flags or-ed, times
    ``fmin`` / ``fmax`` (NaN ignored)."""
    n = ptr.shape[0] - 1
    kd = di.shape[0] - 1
    for a in range(n - 1, -1, -1):
        lo, ka, w = ptr[a], ptr[a + 1] - 1, new[a + 1] - 1
        while kd >= 0 and di[kd] == a:
            y = dj[kd]
            while ka >= lo and j[ka] > y:                  # old pairs after y move back
                j[w], flags[w], tmin[w], tmax[w] = j[ka], flags[ka], tmin[ka], tmax[ka]
                ka -= 1
                w -= 1
            f = np.uint8(dtc[kd] + 2 * dnj[kd] + 4 * dni[kd])
            t0, t1 = dmin[kd], dmax[kd]
            if ka >= lo and j[ka] == y:                    # the pair seen before
                f |= flags[ka]
                t0, t1 = _fmin(tmin[ka], t0), _fmax(tmax[ka], t1)
                ka -= 1
            j[w], flags[w], tmin[w], tmax[w] = y, f, t0, t1
            w -= 1
            kd -= 1
        while ka >= lo and w != ka:                        # the agent's first old pairs, shifted
            j[w], flags[w], tmin[w], tmax[w] = j[ka], flags[ka], tmin[ka], tmax[ka]
            ka -= 1
            w -= 1


@numba.njit(cache=True)
def _drop_unflagged(ptr, j, flags, tmin, tmax):
    """Move the pairs with a flag to the front (order kept) and rewrite ``ptr`` in place; returns
    their number."""
    q, lo = 0, ptr[0]
    for a in range(ptr.shape[0] - 1):
        hi = ptr[a + 1]
        for e in range(lo, hi):
            if flags[e] != 0:
                j[q], flags[q], tmin[q], tmax[q] = j[e], flags[e], tmin[e], tmax[e]
                q += 1
        ptr[a + 1] = q
        lo = hi
    return q


class FoldedPairs:
    """The distinct pairs of the day tables added so far (module docstring): ``ptr`` int64 (n+1,),
    ``j`` int32, ``flags`` uint8, ``tmin`` / ``tmax`` float64 (s) per pair, sorted by ``(i, j)``;
    ``n_pairs`` their number.  :meth:`add` merges one day in place."""

    def __init__(self, n: int):
        self.n = int(n)
        self.ptr = np.zeros(self.n + 1, np.int64)
        self.j = np.empty(0, np.int32)
        self.flags = np.empty(0, np.uint8)
        self.tmin = np.empty(0)
        self.tmax = np.empty(0)

    @property
    def n_pairs(self) -> int:
        return int(self.ptr[-1])

    def _resize(self, m: int):
        for a in (self.j, self.flags, self.tmin, self.tmax):    # realloc: no copy for large arrays
            a.resize(m, refcheck=False)

    def add(self, i, j, tmin, tmax, true, notify_j, notify_i):
        """Fold in a day's pairs: ``i``, ``j`` int32 (sorted by ``(i, j)``, one row per pair, ``0 <= i <
        j < n``), ``tmin`` / ``tmax`` float64 (s), the three flags bool; all contiguous."""
        new = _fold_count(self.ptr, self.j, i, j)
        self._resize(int(new[-1]))
        _fold_fill(self.ptr, new, self.j, self.flags, self.tmin, self.tmax, i, j, tmin, tmax, true,
                   notify_j, notify_i)
        self.ptr = new

    def drop_unflagged(self):
        """Remove the pairs with no flag (they count in no metric), in place."""
        self._resize(_drop_unflagged(self.ptr, self.j, self.flags, self.tmin, self.tmax))

    def to_dict(self) -> dict:
        """``coverage.collapse_pairs``' dict (i, j int32, true, notify_j, notify_i bool, t_min, t_max)."""
        i = np.repeat(np.arange(self.n, dtype=np.int32), np.diff(self.ptr))
        return {"i": i, "j": self.j.copy(), "true": (self.flags & 1) != 0, "notify_j": (self.flags & 2) != 0,
                "notify_i": (self.flags & 4) != 0, "t_min": self.tmin.copy(), "t_max": self.tmax.copy()}

    @classmethod
    def from_collapsed(cls, c: dict, n: int) -> FoldedPairs:
        """From ``coverage.collapse_pairs``' dict (copied)."""
        f = cls(n)
        f.ptr[1:] = np.cumsum(np.bincount(c["i"], minlength=f.n))
        f.j = np.array(c["j"], dtype=np.int32)
        f.flags = (np.asarray(c["true"], np.uint8) | (np.asarray(c["notify_j"], np.uint8) << 1)
                   | (np.asarray(c["notify_i"], np.uint8) << 2))
        f.tmin = np.array(c["t_min"], dtype=np.float64)
        f.tmax = np.array(c["t_max"], dtype=np.float64)
        return f
