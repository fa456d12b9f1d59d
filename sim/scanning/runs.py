"""Run-length merge: pairs are produced per step in streams sorted by (i, j) (household members at
home; everyone else from the neighbour search); while a pair stays in its stream its scans (or close
(sub)steps) are summed in place by a sequential merge-join, and only when it leaves (or at the end of
the day) is its run merged into the day's hash map (:class:`sim.scanning.accumulate.DayAccumulator`) —
one insert per run instead of one per scan.
"""
from __future__ import annotations

import numba
import numpy as np
from numba import njit

from ble.schema import N_ATT_BUCKETS
from sim.kernels import even_cuts, run_blocks
from sim.scanning.step import _EDGES, _bucket

__all__ = ["PairRuns", "CloseRuns"]


@njit(cache=True, inline="always")
def _copy_run(n, rs, rm, s0, s1, bc, src, dn, drs, drm, ds0, ds1, dbc, dst):
    """Row ``src`` of one run table (scans, RSSI sum and max dBm, first and last step, bucket counts) to
    row ``dst`` of another (or the same)."""
    dn[dst] = n[src]
    drs[dst] = rs[src]
    drm[dst] = rm[src]
    ds0[dst] = s0[src]
    ds1[dst] = s1[src]
    for u in range(bc.shape[1]):
        dbc[dst, u] = bc[src, u]


@njit(cache=True, inline="always")
def _start_run(q, cn, crs, crm, cs0, cs1, cbc):
    """Row ``q`` of the run table: an empty run."""
    cn[q] = 0
    crs[q] = 0.0
    crm[q] = -np.inf
    cs0[q] = 0
    cs1[q] = 0
    for u in range(cbc.shape[1]):
        cbc[q, u] = 0


@njit(cache=True, inline="always")
def _add_scan(q, r, step, adv, tx_power, edges, cn, crs, crm, cs0, cs1, cbc):
    """One logged scan (RSSI ``r`` dBm of advertiser ``adv`` at ``step``) into run row ``q``."""
    first = cn[q] == 0
    cs0[q] = step if first else cs0[q]      # selects, not branches (unpredictable per scan)
    cs1[q] = step
    cn[q] += 1
    crs[q] += r
    m = crm[q]
    crm[q] = np.float32(r) if r > m else m
    cbc[q, _bucket(tx_power[adv] - r, edges)] += 1


@njit(cache=True)
def _runs_merge_range(a, na, b, nb, nf, pk, pn, prs, prm, ps0, ps1, pbc, ck, pi, pj, rssi, step, tx_power, edges,
                      cn, crs, crm, cs0, cs1, cbc, fo, fa, fn, frs, frm, fs0, fs1, fbc):
    """Merge-join of the previous step's runs with the current pairs over one key range.

    Parameters
    ----------
    a, na, b, nb : int
        Old runs ``a <= . < na`` and current pairs ``b <= . < nb`` of the range.
    nf : int
        First flush row of the range.
    pk, ck : uint64 arrays
        Sorted pair keys ``i << 32 | j`` of the old runs and of the current pairs.
    pn, prs, prm, ps0, ps1, pbc : arrays, 2 rows per old pair
        The old runs (scans, RSSI sum / max dBm, first / last step, bucket counts).
    pi, pj, rssi : current pairs (i < j) and their scans (RSSI dBm at [2b] j seen by i, [2b + 1] i by j;
        NaN = not logged).
    step : uint16; ``tx_power`` (dBm per agent), ``edges`` (attenuation bucket edges, dB).

    Returns
    -------
    int
        The row after the last flushed. Continuing pairs carry their run into ``cn .. cbc`` (rows 2b,
        2b + 1), new pairs start one, the current scans are added; runs of pairs no longer present go to
        the flush arrays ``fo`` (observer), ``fa`` (advertiser), ``fn .. fbc``.
    """
    low = np.uint64(0xFFFFFFFF)
    while a < na or b < nb:
        if b >= nb or (a < na and pk[a] < ck[b]):
            i = np.int64(pk[a] >> np.uint64(32))
            j = np.int64(pk[a] & low)
            for k in range(2):
                q = 2 * a + k
                if pn[q] > 0:
                    fo[nf] = i if k == 0 else j
                    fa[nf] = j if k == 0 else i
                    _copy_run(pn, prs, prm, ps0, ps1, pbc, q, fn, frs, frm, fs0, fs1, fbc, nf)
                    nf += 1
            a += 1
            continue
        if a < na and pk[a] == ck[b]:
            for k in range(2):
                _copy_run(pn, prs, prm, ps0, ps1, pbc, 2 * a + k, cn, crs, crm, cs0, cs1, cbc, 2 * b + k)
            a += 1
        else:
            for q in range(2 * b, 2 * b + 2):
                _start_run(q, cn, crs, crm, cs0, cs1, cbc)
        for k in range(2):
            q = 2 * b + k
            r = rssi[q]
            if r == r:
                _add_scan(q, r, step, pj[b] if k == 0 else pi[b], tx_power, edges, cn, crs, crm, cs0, cs1, cbc)
        b += 1
    return nf


@njit(cache=True, nogil=True)
def _runs_merge_kernel(pk, pn, prs, prm, ps0, ps1, pbc, ck, pi, pj, rssi, step, tx_power, edges,
                       cn, crs, crm, cs0, cs1, cbc, fo, fa, fn, frs, frm, fs0, fs1, fbc, a_lo, b_lo, nf_end, c_lo,
                       c_hi):
    """:func:`_runs_merge_range` over the key ranges ``c_lo..c_hi`` of ``a_lo``, ``b_lo`` (serial, ``nogil``:
    run over chunks of ranges by :func:`sim.kernels.run_blocks`; :func:`_runs_merge`). Rows of the current
    runs have fixed positions (2b, 2b + 1); each range flushes into its own part of the flush arrays (at
    most two rows per old run, from row 2a on; its end in ``nf_end``)."""
    for c in range(c_lo, c_hi):
        nf_end[c] = _runs_merge_range(a_lo[c], a_lo[c + 1], b_lo[c], b_lo[c + 1], 2 * a_lo[c], pk, pn, prs, prm, ps0,
                                      ps1, pbc, ck, pi, pj, rssi, step, tx_power, edges, cn, crs, crm, cs0, cs1,
                                      cbc, fo, fa, fn, frs, frm, fs0, fs1, fbc)


@njit(cache=True)
def _runs_compact_kernel(a_lo, nf_end, fo, fa, fn, frs, frm, fs0, fs1, fbc):
    """Compact the flushed rows of the key ranges (range c: rows 2 ``a_lo[c]`` .. ``nf_end[c]``) in range
    order; returns the number flushed."""
    pos = nf_end[0]
    for c in range(1, nf_end.shape[0]):
        for src in range(2 * a_lo[c], nf_end[c]):
            if pos != src:
                fo[pos] = fo[src]
                fa[pos] = fa[src]
                _copy_run(fn, frs, frm, fs0, fs1, fbc, src, fn, frs, frm, fs0, fs1, fbc, pos)
            pos += 1
    return pos


def _runs_merge(pk, pn, prs, prm, ps0, ps1, pbc, ck, pi, pj, rssi, step, tx_power, edges,
                cn, crs, crm, cs0, cs1, cbc, fo, fa, fn, frs, frm, fs0, fs1, fbc, nchunk):
    """:func:`_runs_merge_range` over ``nchunk`` key ranges in parallel (Python threads,
    :func:`sim.kernels.run_blocks`), the flushed rows compacted in range order — so the result is the same
    as one sequential merge whatever ``nchunk`` and the thread count. Returns the number flushed."""
    na = pk.shape[0]
    nb = ck.shape[0]
    c = np.arange(nchunk + 1, dtype=np.int64)
    if nb > 0:
        b_lo = c * nb // nchunk
        a_lo = np.searchsorted(pk, ck[np.minimum(b_lo, nb - 1)]).astype(np.int64)
    else:
        b_lo = np.zeros(nchunk + 1, np.int64)
        a_lo = c * na // nchunk
    a_lo[0], b_lo[0], a_lo[nchunk], b_lo[nchunk] = 0, 0, na, nb
    nf_end = np.empty(nchunk, np.int64)
    run_blocks(_runs_merge_kernel, numba.get_num_threads(), even_cuts(nchunk, nchunk), pk, pn, prs, prm, ps0, ps1,
               pbc, ck, pi, pj, rssi, step, tx_power, edges, cn, crs, crm, cs0, cs1, cbc, fo, fa, fn, frs, frm, fs0,
               fs1, fbc, a_lo, b_lo, nf_end)
    # called for one range too (a no-op then): every run uses it, so a first run precompiles it
    return int(_runs_compact_kernel(a_lo, nf_end, fo, fa, fn, frs, frm, fs0, fs1, fbc))


#: pairs per merge group of :meth:`PairRuns.update_groups` (memory: the flush buffer holds ~2 rows of 52
#: bytes per pair of a group; at 10^6 agents ~7 M pairs of an evening burst end their runs in one step)
MERGE_GROUP = 1 << 20


def _merge_chunks(work: int) -> int:
    """Key ranges for a parallel merge of ``work`` rows (1 below ~32k rows; the result does not depend
    on it)."""
    return int(max(1, min(4 * numba.get_num_threads(), work // 32768)))


class PairRuns:
    """Run-length accumulation of one stream of pairs (sorted by (i, j) every step): while a pair stays
    in the stream from step to step its scans are summed in place (a sequential merge-join, no hashing);
    when it leaves, its run (both directions) goes to the day's hash map as one partial aggregate. The
    result is the same as inserting every scan (up to float32 rounding of the RSSI sums)."""

    def __init__(self):
        self.keys = np.zeros(0, np.uint64)
        # state (current runs, 2 rows per pair) double-buffered and a flush buffer, kept between steps
        # and grown by 1.1x: no fresh (page-faulting) allocation per step
        self._state = [self._alloc(0), self._alloc(0)]
        self._flush = self._alloc(0, True)

    @staticmethod
    def _alloc(rows, flush=False):
        d = {"n": np.zeros(rows, np.uint16), "rsum": np.zeros(rows, np.float32),
             "rmax": np.zeros(rows, np.float32), "s0": np.zeros(rows, np.uint16),
             "s1": np.zeros(rows, np.uint16), "bc": np.zeros((rows, N_ATT_BUCKETS), np.uint16)}
        if flush:
            d["o"] = np.zeros(rows, np.int64)
            d["a"] = np.zeros(rows, np.int64)
        return d

    @staticmethod
    def _fit(buf, rows, flush=False):
        if len(buf["n"]) >= rows:
            return buf
        return PairRuns._alloc(max(rows, int(1.1 * len(buf["n"])) + 1024), flush)

    def update(self, pi, pj, rssi, step: int, tx_power):
        """Add one step's pairs (sorted by (i, j)) and scans; returns the flushed partial aggregates
        (observer, advertiser, n, rsum, rmax, first step, last step, bucket counts) — all groups of
        :meth:`update_groups` at once (views of a buffer that the next call overwrites if one group)."""
        parts = [tuple(np.array(v, copy=True) for v in part) for part in self.update_groups(pi, pj, rssi, step,
                                                                                             tx_power)]
        return parts[0] if len(parts) == 1 else tuple(np.concatenate(v) for v in zip(*parts))

    def update_groups(self, pi, pj, rssi, step: int, tx_power):
        """:meth:`update` in key-range groups of at most ~:data:`MERGE_GROUP` current (or, at the end of the
        day, previous) pairs: yields each group's flushed partial aggregates, in key order (together those
        of one merge), as views of a buffer that the next group overwrites — so the flush buffer holds one
        group, not all the runs that end at once. Consume it whole (the state advances at its end)."""
        ck = (pi.astype(np.uint64) << np.uint64(32)) | pj.astype(np.uint64)
        pk = self.keys
        old = self._state[0]
        new = self._state[1] = self._fit(self._state[1], 2 * len(ck))
        na, nb = len(pk), len(ck)
        n_groups = max(1, -(-max(na, nb) // MERGE_GROUP))
        if nb:
            b_lo = np.arange(n_groups + 1, dtype=np.int64) * nb // n_groups
            a_lo = np.searchsorted(pk, ck[np.minimum(b_lo, nb - 1)])
            a_lo[0], a_lo[-1] = 0, na
        else:
            b_lo = np.zeros(n_groups + 1, np.int64)
            a_lo = np.arange(n_groups + 1, dtype=np.int64) * na // n_groups
        step = np.uint16(step)
        for g in range(n_groups):
            a0, a1, b0, b1 = int(a_lo[g]), int(a_lo[g + 1]), int(b_lo[g]), int(b_lo[g + 1])
            f = self._flush = self._fit(self._flush, 2 * (a1 - a0), True)
            oa, ob = slice(2 * a0, 2 * a1), slice(2 * b0, 2 * b1)
            nf = _runs_merge(pk[a0:a1], old["n"][oa], old["rsum"][oa], old["rmax"][oa], old["s0"][oa],
                                    old["s1"][oa], old["bc"][oa], ck[b0:b1], pi[b0:b1], pj[b0:b1], rssi[ob], step,
                                    tx_power, _EDGES, new["n"][ob], new["rsum"][ob], new["rmax"][ob], new["s0"][ob],
                                    new["s1"][ob], new["bc"][ob], f["o"], f["a"], f["n"], f["rsum"], f["rmax"],
                                    f["s0"], f["s1"], f["bc"], _merge_chunks((a1 - a0) + (b1 - b0)))
            yield (f["o"][:nf], f["a"][:nf], f["n"][:nf], f["rsum"][:nf], f["rmax"][:nf], f["s0"][:nf],
                   f["s1"][:nf], f["bc"][:nf])
        self.keys = ck
        self._state.reverse()

    def flush_all(self, tx_power):
        """End of the day: every open run as partial aggregates; the state is emptied."""
        e = np.zeros(0, np.int64)
        return self.update(e, e, np.zeros(0), 0, tx_power)

    def flush_all_groups(self, tx_power):
        """:meth:`flush_all` group by group (:meth:`update_groups`)."""
        e = np.zeros(0, np.int64)
        return self.update_groups(e, e, np.zeros(0), 0, tx_power)


@njit(cache=True)
def _close_runs_kernel(pk, pn, pd, ck, cd, cn, cdm, fk, fn, fd):
    """Merge-join of the previous (sub)step's close runs (sorted keys ``pk``: close (sub)steps ``pn``,
    minimum distance ``pd``) with the current close pairs (sorted ``ck``, distances ``cd``): continuing
    pairs carry their run, runs of pairs no longer present go to the flush arrays. Returns the number
    flushed."""
    a = 0
    b = 0
    nf = 0
    na = pk.shape[0]
    nb = ck.shape[0]
    while a < na or b < nb:
        if b >= nb or (a < na and pk[a] < ck[b]):
            fk[nf] = pk[a]
            fn[nf] = pn[a]
            fd[nf] = pd[a]
            nf += 1
            a += 1
            continue
        d = np.float32(cd[b])
        if a < na and pk[a] == ck[b]:
            cn[b] = pn[a] + 1
            cdm[b] = d if d < pd[a] else pd[a]
            a += 1
        else:
            cn[b] = 1
            cdm[b] = d
        b += 1
    return nf


class CloseRuns:
    """Run-length accumulation of the ground truth of one stream of close pairs (sorted by (i, j) every
    (sub)step): while a pair stays close its (sub)steps are counted and its minimum distance kept in
    place; when it leaves, the run goes to the day's map once (:meth:`DayAccumulator.add_close`). Exact:
    counts add and float32 minima do not depend on the order."""

    def __init__(self):
        self.keys = np.zeros(0, np.uint64)
        self.n = np.zeros(0, np.int32)
        self.dmin = np.zeros(0, np.float32)

    def update(self, i, j, d):
        """Add one (sub)step's close pairs (sorted by (i, j)) at distances ``d``; returns the flushed
        runs ``(i, j, n, dmin)``."""
        ck = (i.astype(np.uint64) << np.uint64(32)) | j.astype(np.uint64)
        m = len(self.keys)
        fk, fn, fd = np.empty(m, np.uint64), np.empty(m, np.int32), np.empty(m, np.float32)
        cn, cdm = np.empty(len(ck), np.int32), np.empty(len(ck), np.float32)
        nf = _close_runs_kernel(self.keys, self.n, self.dmin, ck, np.ascontiguousarray(d, np.float64), cn, cdm,
                                fk, fn, fd)
        self.keys, self.n, self.dmin = ck, cn, cdm
        fk = fk[:nf]
        return ((fk >> np.uint64(32)).astype(np.int64), (fk & np.uint64(0xFFFFFFFF)).astype(np.int64),
                fn[:nf], fd[:nf])

    def flush_all(self):
        """End of the day: every open run; the state is emptied."""
        e = np.zeros(0, np.int64)
        return self.update(e, e, np.zeros(0))
