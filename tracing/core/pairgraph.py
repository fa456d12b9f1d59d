"""Numba kernels behind the one-pass curves (:mod:`tracing.core.coverage`): collapse a pair table
and build the contact graph -- linear passes over flat arrays, no comparison sort.

* :func:`pair_order` -- the stable order of a pair table by ``(i, j)``: the permutation of
  ``numpy.argsort(i * n + j, kind="stable")``: identity for a sorted table (every compact table), a
  k-way merge for a few sorted runs (a run's day tables one after the other), else two counting sorts
  (by ``j``, then by ``i``; O(rows + n)).
* :func:`collapse_sorted` -- merge the rows of each pair (in that order): any-day flags, ``fmin`` /
  ``fmax`` of the times (NaN ignored; NaN when all are NaN), exactly what ``numpy.logical_or.reduceat``
  and ``numpy.fmin.reduceat`` give.
* :func:`merge_compact` -- fold one collapsed day into a compact table (both sorted by ``(i, j)``): a
  merge of two sorted lists, so the fold's memory is the two inputs and the output, not a re-sort of
  their concatenation; the result equals ``compact_pairs(concatenate([acc, day]))``.
* :class:`PairGraph` -- the folded pairs (:mod:`tracing.core.pairfold`), each stored once, with a
  reverse index: both directions of every pair grouped by source without a second copy of the pairs;
  the F0 edges, the F2 walk and the networks' percolation read it.

The wrappers in :mod:`tracing.core.coverage` validate; the kernels assume valid input (``0 <= i < j <
n``).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from tracing.core.pairfold import FoldedPairs
from tracing.core.percolation import _find

__all__ = ["pair_order", "collapse_sorted", "merge_compact", "PairGraph"]


@numba.njit(cache=True)
def _counting_pass(key, src, n):
    """Stable counting sort of the positions ``src`` (or 0..m-1 when ``src`` is empty) by ``key[pos]``
    in ``0..n-1``; returns the sorted positions (int64 (m,))."""
    m = key.shape[0]
    start = np.zeros(n + 1, np.int64)
    for k in range(m):
        start[key[k] + 1] += 1
    for v in range(n):
        start[v + 1] += start[v]
    out = np.empty(m, np.int64)
    ident = src.shape[0] == 0
    for kk in range(m):
        k = kk if ident else src[kk]
        v = key[k]
        out[start[v]] = k
        start[v] += 1
    return out


@numba.njit(cache=True)
def _run_starts(i, j, most):
    """Starts of the maximal runs sorted by (i, j) (and len(i) last); None-like (length 0) if more
    than ``most`` runs."""
    starts = np.empty(most + 1, np.int64)
    starts[0] = 0
    r = 1
    for k in range(1, i.shape[0]):
        if i[k] < i[k - 1] or (i[k] == i[k - 1] and j[k] < j[k - 1]):
            if r == most:
                return starts[:0]
            starts[r] = k
            r += 1
    starts[r] = i.shape[0]
    return starts[:r + 1]


@numba.njit(cache=True, inline="always")
def _less(key, heap, c, x):
    """Heap entry c before entry x: by the runs' current keys, ties by run (earlier rows first)."""
    rc, rx = heap[c], heap[x]
    return key[rc] < key[rx] or (key[rc] == key[rx] and rc < rx)


@numba.njit(cache=True, inline="always")
def _sift(key, heap, x, size):
    while True:
        c = 2 * x + 1
        if c >= size:
            return
        if c + 1 < size and _less(key, heap, c + 1, c):
            c += 1
        if not _less(key, heap, c, x):
            return
        heap[x], heap[c] = heap[c], heap[x]
        x = c


@numba.njit(cache=True)
def _merge_runs_kernel(i, j, starts, n):
    """The stable (i, j) order of rows made of sorted runs (``starts``): a k-way merge with a binary
    heap of the runs' current keys ``i * n + j`` (O(m log runs), reading every run in sequence)."""
    r = starts.shape[0] - 1
    head = starts[:-1].copy()
    key = np.empty(r, np.int64)
    for run in range(r):
        key[run] = np.int64(i[head[run]]) * n + j[head[run]]
    heap = np.arange(r)
    for h in range(r // 2 - 1, -1, -1):
        _sift(key, heap, h, r)
    out = np.empty(i.shape[0], np.int64)
    size = r
    for q in range(i.shape[0]):
        run = heap[0]
        p = head[run]
        out[q] = p
        p += 1
        head[run] = p
        if p == starts[run + 1]:                # the run is exhausted: the last entry takes its place
            size -= 1
            heap[0] = heap[size]
        else:
            key[run] = np.int64(i[p]) * n + j[p]
        _sift(key, heap, 0, size)
    return out


_MAX_RUNS = 256        # merge up to this many sorted runs (a run's days); counting sorts otherwise


def pair_order(i: np.ndarray, j: np.ndarray, n: int) -> np.ndarray:
    """int64 (m,): the stable order of rows by ``(i, j)`` (agents in ``0..n-1``): identity when sorted,
    a k-way merge when the rows are a few sorted runs (day tables one after the other), else two
    counting sorts."""
    starts = _run_starts(i, j, _MAX_RUNS)
    if len(starts) == 2 or len(i) == 0:
        return np.arange(len(i), dtype=np.int64)
    if len(starts):
        return _merge_runs_kernel(i, j, starts, n)
    by_j = _counting_pass(j, np.zeros(0, np.int64), n)
    return _counting_pass(i, by_j, n)


@numba.njit(cache=True)
def _collapse_kernel(order, i, j, t, tc, nj, ni):
    m = order.shape[0]
    g = 0
    for kk in range(m):
        k = order[kk]
        if kk == 0 or i[k] != i[order[kk - 1]] or j[k] != j[order[kk - 1]]:
            g += 1
    oi = np.empty(g, np.int32)        # agents < 2**31 (checked by the wrappers): 8 bytes a pair less
    oj = np.empty(g, np.int32)
    otc = np.zeros(g, np.bool_)
    onj = np.zeros(g, np.bool_)
    oni = np.zeros(g, np.bool_)
    tmin = np.full(g, np.nan)
    tmax = np.full(g, np.nan)
    q = -1
    for kk in range(m):
        k = order[kk]
        if kk == 0 or i[k] != i[order[kk - 1]] or j[k] != j[order[kk - 1]]:
            q += 1
            oi[q] = i[k]
            oj[q] = j[k]
        otc[q] |= tc[k]
        onj[q] |= nj[k]
        oni[q] |= ni[k]
        x = np.float64(t[k])
        if not np.isnan(x):                   # fmin / fmax: NaN ignored, NaN if all NaN
            if np.isnan(tmin[q]) or x < tmin[q]:
                tmin[q] = x
            if np.isnan(tmax[q]) or x > tmax[q]:
                tmax[q] = x
    return oi, oj, otc, onj, oni, tmin, tmax


def collapse_sorted(order, i, j, t, tc, nj, ni) -> dict:
    """The collapsed pairs (``coverage.collapse_pairs``' dict) of the rows taken in ``order``."""
    r = _collapse_kernel(order, i, j, t, tc, nj, ni)
    return dict(zip(("i", "j", "true", "notify_j", "notify_i", "t_min", "t_max"), r))


@numba.njit(cache=True)
def _fold_kernel(ai, aj, at, atc, anj, ani, di, dj, dtc, dnj, dni, dmin, dmax, write,
                 oi, oj, ot, otc, onj, oni):
    """Merge the compact rows ``a*`` (sorted, <= 2 rows per pair) and the collapsed day ``d*`` (sorted,
    one row per pair) into compact rows; counts them only unless ``write``.  Returns the row count."""
    na, nd = ai.shape[0], di.shape[0]
    ka, kd, q = 0, 0, 0
    while ka < na or kd < nd:
        if kd >= nd or (ka < na and (ai[ka] < di[kd] or (ai[ka] == di[kd] and aj[ka] < dj[kd]))):
            x, y, tmin, tmax = ai[ka], aj[ka], np.nan, np.nan
            tc, nj, ni = False, False, False
        else:
            x, y, tmin, tmax = di[kd], dj[kd], dmin[kd], dmax[kd]
            tc, nj, ni = dtc[kd], dnj[kd], dni[kd]
            kd += 1
        while ka < na and ai[ka] == x and aj[ka] == y:      # the pair's compact rows
            tc |= atc[ka]
            nj |= anj[ka]
            ni |= ani[ka]
            v = at[ka]
            if not np.isnan(v):
                if np.isnan(tmin) or v < tmin:
                    tmin = v
                if np.isnan(tmax) or v > tmax:
                    tmax = v
            ka += 1
        two = not np.isnan(tmin) and tmax != tmin
        if write:
            for r in range(2 if two else 1):
                oi[q + r] = x
                oj[q + r] = y
                ot[q + r] = tmin if r == 0 else tmax
                otc[q + r] = tc
                onj[q + r] = nj
                oni[q + r] = ni
        q += 2 if two else 1
    return q


def merge_compact(acc: np.ndarray, day: dict, out_dtype) -> np.ndarray:
    """Compact table (``out_dtype``, ``day``/``minutes`` 0, ``att`` NaN) of the compact table ``acc``
    and the collapsed day table ``day`` (:func:`collapse_sorted`'s dict)."""
    a = (acc["i"], acc["j"], acc["t_first"], acc["true_close"], acc["notify_j"], acc["notify_i"])
    d = tuple(day[k] for k in ("i", "j", "true", "notify_j", "notify_i", "t_min", "t_max"))
    e64, eb, ef = np.zeros(0, np.int64), np.zeros(0, np.bool_), np.zeros(0)
    m = _fold_kernel(*a, *d, False, e64, e64, ef, eb, eb, eb)
    out = np.zeros(m, out_dtype)
    out["att"] = np.nan
    _fold_kernel(*a, *d, True, out["i"], out["j"], out["t_first"], out["true_close"], out["notify_j"],
                 out["notify_i"])
    return out


# directed edge flags: bit 0 truly close, bit 1 dst warned if src is an index case, bit 2 src's log
# of dst passes the rule (a pair's byte is that of its edge i -> j: true, notify_j, notify_i)
_TRUE, _WARN, _LOGS = 1, 2, 4
# the networks of the curves: (flags all needed, flags one of which is needed) of a pair
_NETWORKS = {"": (_TRUE, _WARN | _LOGS), "notified_": (0, _WARN | _LOGS), "ideal_": (_TRUE, 0)}


@numba.njit(cache=True, nogil=True)
def _up32(t):
    """The smallest float32 >= t (NaN stays NaN)."""
    u = np.float32(t)
    return np.nextafter(u, np.float32(np.inf)) if np.float64(u) < t else u


@numba.njit(cache=True)
def _reverse_kernel(indptr, nbr, fl, tmax):
    """Fill the lower half of the graph (``nbr`` / ``fl`` hold the F pairs' ``j`` / flags in their first
    halves, length 2F): directed edge F + r, r-th in the order of the pairs (i, v) by v then pair order,
    gets ``nbr`` = i, ``fl`` = the flags of v -> i (bits 1 and 2 exchanged).  Returns ``rptr`` int64
    (n+1,) (edges of v: ``rptr[v]:rptr[v+1]``, from F on) and ``rt`` float32 (F,): the pair's ``tmax``
    rounded up (the F2 walk's time test reads it in sequence, the exact value only on a tie)."""
    n, m = indptr.shape[0] - 1, indptr[-1]
    rptr = np.zeros(n + 1, np.int64)
    for e in range(m):
        rptr[nbr[e] + 1] += 1
    rptr[0] = m
    for v in range(n):
        rptr[v + 1] += rptr[v]
    cur = rptr[:-1].copy()
    rt = np.empty(m, np.float32)
    for s in range(n):
        for e in range(indptr[s], indptr[s + 1]):
            x = cur[nbr[e]]
            cur[nbr[e]] = x + 1
            nbr[x] = s
            rt[x - m] = _up32(tmax[e])
            f = fl[e]
            fl[x] = (f & _TRUE) | ((f & _WARN) << 1) | ((f & _LOGS) >> 1)
    return rptr, rt


@numba.njit(cache=True, nogil=True)
def _pair_id(indptr, nbr, i, j):
    """The id of the pair (i, j) (present, i < j): a binary search of i's upper edges."""
    lo, hi = indptr[i], indptr[i + 1]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if nbr[mid] <= j:
            lo = mid
        else:
            hi = mid
    return lo


@numba.njit(cache=True)
def _f0_edges_kernel(g, f0):
    """Directed edges from the index cases ``f0`` (sorted): those to a larger agent (pair (a, b) with
    a = i), then those to a smaller one (pair (b, a)).  Returns a, b, truly close, notified."""
    indptr, rptr, nbr, fl = g[0], g[1], g[2], g[3]
    m1, m2 = 0, 0
    for a in f0:
        m1 += indptr[a + 1] - indptr[a]
        m2 += rptr[a + 1] - rptr[a]
    a_out = np.empty(m1 + m2, np.int64)
    b_out = np.empty(m1 + m2, np.int64)
    tc = np.empty(m1 + m2, np.bool_)
    nt = np.empty(m1 + m2, np.bool_)
    q = np.array([0, m1])
    for a in f0:
        for h in range(2):                       # upper edges (b > a), then lower ones
            lo, hi = (indptr[a], indptr[a + 1]) if h == 0 else (rptr[a], rptr[a + 1])
            for x in range(lo, hi):
                a_out[q[h]], b_out[q[h]] = a, nbr[x]
                tc[q[h]] = (fl[x] & _TRUE) != 0
                nt[q[h]] = (fl[x] & _WARN) != 0
                q[h] += 1
    return a_out, b_out, tc, nt, m1


@numba.njit(cache=True)
def _degree_kernel(g, bit):
    """Directed edges out of every agent whose flags have ``bit`` (int64 (n,))."""
    indptr, rptr, fl = g[0], g[1], g[3]
    n = indptr.shape[0] - 1
    out = np.zeros(n, np.int64)
    for s in range(n):
        c = 0
        for x in range(indptr[s], indptr[s + 1]):
            c += (fl[x] & bit) != 0
        for x in range(rptr[s], rptr[s + 1]):
            c += (fl[x] & bit) != 0
        out[s] = c
    return out


@numba.njit(cache=True)
def _newman_ziff_kernel(g, masks, order):
    """:func:`tracing.core.percolation.newman_ziff_csr` on k networks at once, one scan of each added
    node's edges: network q holds the pairs whose flags have every bit of ``masks[q, 0]`` and (unless
    0) some bit of ``masks[q, 1]`` (both symmetric in the two directions).  The same union-find per
    network -- the largest cluster and the mean finite cluster size after each addition depend on the
    network only, not on the order of a node's edges.  Returns (largest, chi), (k, len(order))."""
    indptr, rptr, nbr, fl = g[0], g[1], g[2], g[3]
    n, m, k = indptr.shape[0] - 1, order.shape[0], masks.shape[0]
    parent = np.full((n, k), -1, np.int64)  # -1 = not occupied (the same nodes in every network)
    size = np.zeros((n, k), np.int64)
    largest = np.zeros((k, m), np.int64)
    chi = np.zeros((k, m), np.float64)
    big, sum_sq, rv = np.zeros(k, np.int64), np.zeros(k, np.int64), np.empty(k, np.int64)
    for t in range(m):
        v = order[t]
        parent[v, :] = v
        size[v, :] = 1
        sum_sq += 1
        rv[:] = v
        for h in range(2):
            lo, hi = (indptr[v], indptr[v + 1]) if h == 0 else (rptr[v], rptr[v + 1])
            for x in range(lo, hi):
                u, f = nbr[x], fl[x]
                if parent[u, 0] < 0:
                    continue
                for q in range(k):
                    if (f & masks[q, 0]) != masks[q, 0] or (masks[q, 1] != 0 and (f & masks[q, 1]) == 0):
                        continue
                    ru = _find(parent[:, q], u)
                    if ru == rv[q]:
                        continue
                    su, sv = size[ru, q], size[rv[q], q]
                    sum_sq[q] += 2 * su * sv  # (su + sv)^2 - su^2 - sv^2
                    if su < sv:
                        parent[ru, q] = rv[q]
                        size[rv[q], q] = su + sv
                    else:
                        parent[rv[q], q] = ru
                        size[ru, q] = su + sv
                        rv[q] = ru
        for q in range(k):
            big[q] = max(big[q], size[rv[q], q])
            largest[q, t] = big[q]
            if t + 1 > big[q]:
                chi[q, t] = (sum_sq[q] - big[q] * big[q]) / (t + 1 - big[q])
    return largest, chi


@numba.njit(cache=True, nogil=True)
def _grow(x, m, need):
    if m + need <= x.shape[0]:
        return x
    cap = x.shape[0]
    while m + need > cap:
        cap *= 2
    y = np.empty(cap)
    y[:m] = x[:m]
    return y


# per-agent state of the F2 walk: one 64-byte row (one cache line) per agent, as float64
_S1, _S2, _S3, _SB, _BEST, _BESTD, _BESTI, _RANK = range(8)


@numba.njit(cache=True, nogil=True, inline="always")
def _f2_visit(st, c, fa, x, thr, true_path, warn_path, d, lst, nl, lst3, nl3):
    """One path a -> b -> c of index case number ``fa`` reaching c (not F0, not a true close contact
    of a; ``x`` = c's ``_S1``), at threshold ``thr``: c listed as a true F2 (``true_path``: both hops
    truly close; its best ideal threshold kept), the rule's best (threshold, delay ``d``) kept where
    the path notifies (``warn_path``), and c listed as reached over any pair unless a contact of a.
    Returns the lists' new lengths (nl, nl3)."""
    if true_path:
        if st[c, _S2] != fa:
            st[c, _S2] = fa
            lst[nl] = c
            nl += 1
            st[c, _BESTI] = thr
        elif thr < st[c, _BESTI]:
            st[c, _BESTI] = thr
    if warn_path:
        if st[c, _SB] != fa:
            st[c, _SB] = fa
            st[c, _BEST] = thr
            st[c, _BESTD] = d
        elif thr < st[c, _BEST] or (thr == st[c, _BEST] and d < st[c, _BESTD]):
            st[c, _BEST] = thr
            st[c, _BESTD] = d
    if x != 2.0 * fa and st[c, _S3] != fa:
        st[c, _S3] = fa
        lst3[nl3] = c
        nl3 += 1
    return nl, nl3


@numba.njit(cache=True, nogil=True, inline="always")
def _f2_emit(st, fa, lst, nl, lst3, nl3, o_thr, o_del, o_id, o_any, m, m3):
    """Append index case ``fa``'s results (module doc of :func:`_f2_kernel`) from its lists to the
    outputs (grown as needed); returns them and their new lengths."""
    o_thr, o_del, o_id = _grow(o_thr, m, nl), _grow(o_del, m, nl), _grow(o_id, m, nl)
    for k in range(nl):
        c = lst[k]
        hit = st[c, _SB] == fa
        o_thr[m] = st[c, _BEST] if hit else np.inf
        o_del[m] = st[c, _BESTD] if hit else np.nan
        o_id[m] = st[c, _BESTI]
        m += 1
    o_any = _grow(o_any, m3, nl3)
    for k in range(nl3):
        o_any[m3] = st[lst3[k], _BEST] if st[lst3[k], _SB] == fa else np.inf
        m3 += 1
    return o_thr, o_del, o_id, o_any, m, m3


@numba.njit(cache=True, nogil=True)
def _f2_kernel(g, ranks, delay_b, f0, st):
    """The three all-levels F2 passes of the one-pass curves in one walk over the paths a -> b -> c
    (a in ``f0``; the rule of ``propagation.f2_thresholds``, whose three calls this equals): per index
    case, its true second-degree contacts c (a -> b and b -> c truly close, c not a truly close
    contact of a, not in F0, time order) with the threshold ``min_b max(rank_a, rank_b, rank_c)`` over
    notifying paths (warn a -> b, logs b -> c) and that path's delay ``delay_b[b]`` (h; ties: the
    shortest), and over truly close paths (the ideal rule); and the second-degree people reached over
    any detected or notified pair (c not any contact of a) with the rule's threshold.

    ``st``: (n, 8) float64 scratch, rows 64-byte aligned (all the walk reads and writes of an agent c
    in one cache line), column ``_S1`` -1 for F0 members and -3 elsewhere.  Returns (thr, delay,
    thr_ideal, thr_any) float64: the first three per true F2, in order of discovery.  Each index case's
    results depend on it alone (so ``f0`` may be split between threads)."""
    indptr, rptr, nbr, fl, rt, tmin, tmax = g
    n, nf = indptr.shape[0] - 1, indptr[-1]
    for c in range(n):
        st[c, _S2] = -1.0            # c listed as a true F2 of a (its ideal threshold set with it)
        st[c, _S3] = -1.0            # c listed as reached over any pair
        st[c, _SB] = -1.0            # the rule's best threshold set for c
        st[c, _RANK] = ranks[c]
    lst, lst3 = np.empty(n, np.int64), np.empty(n, np.int64)
    o_thr, o_del, o_id, o_any = np.empty(1024), np.empty(1024), np.empty(1024), np.empty(1024)
    m, m3 = 0, 0
    for ia in range(f0.shape[0]):
        a = f0[ia]
        fa = np.float64(ia)
        ra = ranks[a]
        for x in list(range(indptr[a], indptr[a + 1])) + list(range(rptr[a], rptr[a + 1])):
            if fl[x] != 0 and st[nbr[x], _S1] != -1.0:     # S1: 2 ia + 1 true close contact, 2 ia any
                st[nbr[x], _S1] = 2.0 * fa + (fl[x] & _TRUE)
        nl, nl3 = 0, 0
        for x1 in list(range(indptr[a], indptr[a + 1])) + list(range(rptr[a], rptr[a + 1])):
            f1, b = fl[x1], nbr[x1]
            pt, pw = (f1 & _TRUE) != 0, (f1 & _WARN) != 0
            thr_ab = max(ra, ranks[b])
            t1 = tmin[x1] if x1 < nf else tmin[_pair_id(indptr, nbr, b, a)]
            t1u = _up32(t1)
            d = delay_b[b]
            for h in range(2):                          # b's upper edges, then its lower ones
                lo, hi = (indptr[b], indptr[b + 1]) if h == 0 else (rptr[b], rptr[b + 1])
                for x2 in range(lo, hi):
                    c, f2 = nbr[x2], fl[x2]
                    if c == a:
                        continue
                    if not np.isnan(t1):                      # time order (unknown times pass)
                        if h == 0:
                            if tmax[x2] < t1:
                                continue
                        else:          # tmax rounded up: below t1 -> earlier; above up(t1) -> not
                            u = rt[x2 - nf]
                            if u < t1 or (u == t1u and tmax[_pair_id(indptr, nbr, c, b)] < t1):
                                continue
                    x = st[c, _S1]
                    if x == -1.0 or x == 2.0 * fa + 1.0:        # F0, or a true close contact of a
                        continue
                    nl, nl3 = _f2_visit(st, c, fa, x, max(thr_ab, st[c, _RANK]), pt and (f2 & _TRUE) != 0,
                                        pw and (f2 & _LOGS) != 0, d, lst, nl, lst3, nl3)
        o_thr, o_del, o_id, o_any, m, m3 = _f2_emit(st, fa, lst, nl, lst3, nl3, o_thr, o_del, o_id, o_any, m, m3)
    return o_thr[:m].copy(), o_del[:m].copy(), o_id[:m].copy(), o_any[:m3].copy()


def _f2_scratch(n: int, is_f0: np.ndarray) -> np.ndarray:
    """(n, 8) float64 with 64-byte aligned rows; column _S1 -1 for F0 members, -3 elsewhere."""
    buf = np.empty(8 * n + 8)
    off = (-buf.ctypes.data % 64) // 8
    st = buf[off:off + 8 * n].reshape(n, 8)
    st[:, _S1] = np.where(is_f0, -1.0, -3.0)
    return st


class PairGraph:
    """The replicate-independent part of the one-pass curves (:class:`tracing.core.coverage.OnePass`):
    the F flagged pairs, each stored once, as a directed graph.  Directed edges 0..F-1 are the pairs
    (i, j) grouped by i (``indptr`` int64 (n+1,)), edges F..2F-1 the same pairs grouped by j in pair
    order (``rptr`` int64 (n+1,), from F on; ``rt`` float32 (F,): the pair's ``tmax`` rounded up); per
    directed edge ``nbr`` int32 (the other end) and ``fl`` uint8 (bit 0 truly close, bit 1 the other end warned
    if this one is an index case, bit 2 this one's log of it passes the rule); per pair ``tmin`` /
    ``tmax`` float64 s.  A source's edges -- ``indptr[s]:indptr[s+1]``, then ``rptr[s]:rptr[s+1]`` --
    come in the order of ``argsort(concatenate([i, j]), kind="stable")`` over the pairs.  Pairs without
    any flag are left out (they count in no metric); the three networks of the curves (traceable,
    notified, ideal) are read off the flags (:meth:`percolation`).  Built once per pair table, shared by
    every replicate drawn on it: 30 bytes per flagged pair.

    ``pairs``: a :class:`tracing.core.pairfold.FoldedPairs` (its arrays become the graph's: it is
    emptied) or :func:`tracing.core.coverage.collapse_pairs`' dict; ``n``: the population size;
    ``consume``: empty the dict (``dict.clear``) once it has been read.
    """

    def __init__(self, pairs, n: int, consume: bool = False):
        if n >= 2**31:
            raise ValueError(f"PairGraph: at most 2**31 - 1 agents, got n={n}")
        self.n = int(n)
        if isinstance(pairs, dict):
            f = FoldedPairs.from_collapsed(pairs, self.n)
            if consume:
                pairs.clear()
        else:
            f = pairs
        self.n_pairs = f.n_pairs
        f.drop_unflagged()
        m = f.n_pairs
        if m >= 2**31:
            raise ValueError(f"PairGraph: at most 2**31 - 1 flagged pairs, got {m}")
        self.indptr, self.nbr, self.fl, self.tmin, self.tmax = f.ptr, f.j, f.flags, f.tmin, f.tmax
        f.__init__(0)                                            # the arrays are ours now
        for a in (self.nbr, self.fl):
            a.resize(2 * m, refcheck=False)                     # realloc: room for the lower half
        self.rptr, self.rt = _reverse_kernel(self.indptr, self.nbr, self.fl, self.tmax)

    @property
    def arrays(self) -> tuple:
        """(indptr, rptr, nbr, fl, rt, tmin, tmax): the kernels' graph argument."""
        return (self.indptr, self.rptr, self.nbr, self.fl, self.rt, self.tmin, self.tmax)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)

    def close_degree(self) -> np.ndarray:
        """Distinct truly close contacts per agent (int64 (n,))."""
        return _degree_kernel(self.arrays, _TRUE)

    def percolation(self, order: np.ndarray, networks=("", "notified_", "ideal_")) -> dict:
        """Newman--Ziff (``percolation.newman_ziff_csr``'s ``largest``, ``chi``) of each network: ``""``
        traceable (truly close and notified either way), ``"notified_"``, ``"ideal_"`` (truly close),
        adding the agents ``order`` (distinct); all in one scan of the graph."""
        masks = np.array([_NETWORKS[name] for name in networks], np.int64).reshape(-1, 2)
        if len(order) == 0:
            return {name: (np.zeros(0, np.int64), np.zeros(0, np.float64)) for name in networks}
        largest, chi = _newman_ziff_kernel(self.arrays, masks, np.asarray(order, np.int64))
        return {name: (largest[q], chi[q]) for q, name in enumerate(networks)}

    def f0_edges(self, f0: np.ndarray):
        """``(a, b, true, notified)`` of every pair with an index case a (``f0`` sorted, distinct): the
        pairs with ``i`` in F0 then those with ``j`` in F0, each in (i, j) order -- the order of
        ``collapse_pairs``' rows, which the curve's delay sums keep."""
        a, b, tc, nt, m1 = _f0_edges_kernel(self.arrays, f0)
        o = m1 + np.argsort(b[m1:], kind="stable")       # (b, a) order: pairs (i = b, j = a)
        for x in (a, b, tc, nt):
            x[m1:] = x[o]
        return a, b, tc, nt

    def f2(self, ranks, delay_b, f0, is_f0):
        """:func:`_f2_kernel` on this graph; the index cases split into ``numba.get_num_threads()``
        contiguous parts run in threads (the kernel releases the GIL), results concatenated in order:
        identical for any number of threads."""
        args = (self.arrays, ranks, delay_b)
        k = max(1, min(numba.get_num_threads(), len(f0) // 8))
        parts = np.array_split(f0, k)
        if k == 1:
            return _f2_kernel(*args, f0, _f2_scratch(self.n, is_f0))
        with ThreadPoolExecutor(k) as ex:
            res = list(ex.map(lambda p: _f2_kernel(*args, p, _f2_scratch(self.n, is_f0)), parts))
        return tuple(np.concatenate([r[q] for r in res]) for q in range(4))
