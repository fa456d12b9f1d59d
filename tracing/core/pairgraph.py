"""Numba kernels behind the one-pass curves (:mod:`tracing.core.coverage`): collapse a pair table,
fold day tables into a compact one, and build the directed contact graph -- linear passes over flat
arrays, no comparison sort.

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
* :func:`directed_csr` -- both directions of every pair grouped by source (a stable counting sort: the
  order of ``numpy.argsort(concatenate([i, j]), kind="stable")``) with the edge attributes.
* :func:`sub_csr` -- the CSR of the directed edges selected by a mask (Newman--Ziff's input).

The wrappers in :mod:`tracing.core.coverage` validate; the kernels assume valid input (``0 <= i < j <
n``).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

__all__ = ["pair_order", "collapse_sorted", "merge_compact", "fold_collapsed", "PairGraph"]


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


@numba.njit(cache=True)
def _fold_collapsed_kernel(ai, aj, atc, anj, ani, amin, amax, di, dj, dtc, dnj, dni, dmin, dmax, write, o):
    """Merge two collapsed tables (sorted by (i, j), one row per pair) into ``o`` (i, j, true, notify_j,
    notify_i, t_min, t_max arrays); counts the pairs only unless ``write``.  Returns the count."""
    oi, oj, otc, onj, oni, omin, omax = o
    na, nd = ai.shape[0], di.shape[0]
    ka, kd, q = 0, 0, 0
    while ka < na or kd < nd:
        if kd >= nd:
            ta, td = True, False
        elif ka >= na:
            ta, td = False, True
        else:
            ta = ai[ka] < di[kd] or (ai[ka] == di[kd] and aj[ka] <= dj[kd])
            td = di[kd] < ai[ka] or (di[kd] == ai[ka] and dj[kd] <= aj[ka])
        if write:
            tc, nj, ni, lo, hi = False, False, False, np.nan, np.nan
            if ta:
                oi[q], oj[q] = ai[ka], aj[ka]
                tc, nj, ni, lo, hi = atc[ka], anj[ka], ani[ka], amin[ka], amax[ka]
            else:
                oi[q], oj[q] = di[kd], dj[kd]
            if td:
                tc |= dtc[kd]
                nj |= dnj[kd]
                ni |= dni[kd]
                if not np.isnan(dmin[kd]) and (np.isnan(lo) or dmin[kd] < lo):
                    lo = dmin[kd]
                if not np.isnan(dmax[kd]) and (np.isnan(hi) or dmax[kd] > hi):
                    hi = dmax[kd]
            otc[q], onj[q], oni[q], omin[q], omax[q] = tc, nj, ni, lo, hi
        ka += ta
        kd += td
        q += 1
    return q


_KEYS = ("i", "j", "true", "notify_j", "notify_i", "t_min", "t_max")


def fold_collapsed(acc: dict, day: dict) -> dict:
    """The collapsed table (``coverage.collapse_pairs``' dict) of the rows of two collapsed tables: the
    same as collapsing all their rows at once (``fmin`` / ``fmax`` and ``or`` are exact)."""
    args = tuple(acc[k] for k in _KEYS) + tuple(day[k] for k in _KEYS)
    e32, eb, ef = np.zeros(0, np.int32), np.zeros(0, np.bool_), np.zeros(0)
    g = _fold_collapsed_kernel(*args, False, (e32, e32, eb, eb, eb, ef, ef))
    o = (np.empty(g, np.int32), np.empty(g, np.int32), np.empty(g, np.bool_), np.empty(g, np.bool_),
         np.empty(g, np.bool_), np.empty(g), np.empty(g))
    _fold_collapsed_kernel(*args, True, o)
    return dict(zip(_KEYS, o))


# directed edge flags: bit 0 truly close, bit 1 dst warned if src is an index case, bit 2 src's log
# of dst passes the rule
_TRUE, _WARN, _LOGS = 1, 2, 4


@numba.njit(cache=True)
def _csr_kernel(i, j, tc, nj, ni, tmin, tmax, n):
    """Both directions of every pair with a flag grouped by source, the i -> j edges first then j -> i
    (the stable order of ``argsort(concatenate([i, j]))``).  Pairs neither truly close nor notified either
    way count nowhere in the curves (no F1, no F2 path, no network) and are left out.  Returns indptr
    (n+1,), dst int32, flags uint8, tmin, tmax (s) per directed edge."""
    m = i.shape[0]
    indptr = np.zeros(n + 1, np.int64)
    for k in range(m):
        if tc[k] or nj[k] or ni[k]:
            indptr[i[k] + 1] += 1
            indptr[j[k] + 1] += 1
    for v in range(n):
        indptr[v + 1] += indptr[v]
    cur = indptr[:-1].copy()
    dst = np.empty(indptr[n], np.int32)
    flags = np.empty(indptr[n], np.uint8)
    t0 = np.empty(indptr[n])
    t1 = np.empty(indptr[n])
    for half in range(2):
        for k in range(m):
            if not (tc[k] or nj[k] or ni[k]):
                continue
            s, d = (i[k], j[k]) if half == 0 else (j[k], i[k])
            w, lg = (nj[k], ni[k]) if half == 0 else (ni[k], nj[k])
            e = cur[s]
            cur[s] += 1
            dst[e] = d
            flags[e] = np.uint8(_TRUE * tc[k] + _WARN * w + _LOGS * lg)
            t0[e] = tmin[k]
            t1[e] = tmax[k]
    return indptr, dst, flags, t0, t1


@numba.njit(cache=True)
def _sub_csr_kernel(indptr, dst, flags, need_all, need_any):
    """CSR (indptr, int32 indices) of the directed edges whose flags have every bit of ``need_all`` and
    (unless it is 0) some bit of ``need_any`` -- in the same order."""
    n = indptr.shape[0] - 1
    out_ptr = np.zeros(n + 1, np.int64)
    for v in range(n):
        c = 0
        for e in range(indptr[v], indptr[v + 1]):
            f = flags[e]
            c += (f & need_all) == need_all and (need_any == 0 or (f & need_any) != 0)
        out_ptr[v + 1] = out_ptr[v] + c
    out = np.empty(out_ptr[n], np.int32)
    q = 0
    for e in range(dst.shape[0]):
        f = flags[e]
        if (f & need_all) == need_all and (need_any == 0 or (f & need_any) != 0):
            out[q] = dst[e]
            q += 1
    return out_ptr, out


@numba.njit(cache=True)
def _f0_edges_kernel(indptr, dst, flags, f0):
    """Directed edges from the index cases ``f0`` (sorted): those to a larger agent (pair (a, b) with
    a = i), then those to a smaller one (pair (b, a)).  Returns a, b, truly close, notified."""
    m1, m2 = 0, 0
    for a in f0:
        for e in range(indptr[a], indptr[a + 1]):
            if dst[e] > a:
                m1 += 1
            else:
                m2 += 1
    a_out = np.empty(m1 + m2, np.int64)
    b_out = np.empty(m1 + m2, np.int64)
    tc = np.empty(m1 + m2, np.bool_)
    nt = np.empty(m1 + m2, np.bool_)
    q1, q2 = 0, m1
    for a in f0:
        for e in range(indptr[a], indptr[a + 1]):
            q = q1 if dst[e] > a else q2
            a_out[q], b_out[q] = a, dst[e]
            tc[q] = (flags[e] & _TRUE) != 0
            nt[q] = (flags[e] & _WARN) != 0
            if dst[e] > a:
                q1 += 1
            else:
                q2 += 1
    return a_out, b_out, tc, nt, m1


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


@numba.njit(cache=True, nogil=True)
def _f2_kernel(indptr, dst, flags, tmin, tmax, ranks, delay_b, f0, st):
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
    n = indptr.shape[0] - 1
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
        for e in range(indptr[a], indptr[a + 1]):      # S1: 2 ia + 1 true close contact, 2 ia any
            if flags[e] != 0 and st[dst[e], _S1] != -1.0:
                st[dst[e], _S1] = 2.0 * fa + (flags[e] & _TRUE)
        nl, nl3 = 0, 0
        for e1 in range(indptr[a], indptr[a + 1]):
            f1 = flags[e1]
            pt, pw = (f1 & _TRUE) != 0, (f1 & _WARN) != 0
            b = dst[e1]
            thr_ab = max(ra, ranks[b])
            t1 = tmin[e1]
            d = delay_b[b]
            for e2 in range(indptr[b], indptr[b + 1]):
                c = dst[e2]
                t2 = tmax[e2]
                if c == a or not (np.isnan(t1) or np.isnan(t2) or t2 >= t1):
                    continue
                x = st[c, _S1]
                if x == -1.0 or x == 2.0 * fa + 1.0:        # F0, or a true close contact of a
                    continue
                f2 = flags[e2]
                thr = max(thr_ab, st[c, _RANK])
                if pt and (f2 & _TRUE):
                    if st[c, _S2] != fa:
                        st[c, _S2] = fa
                        lst[nl] = c
                        nl += 1
                        st[c, _BESTI] = thr
                    elif thr < st[c, _BESTI]:
                        st[c, _BESTI] = thr
                if pw and (f2 & _LOGS):
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
            c = lst3[k]
            o_any[m3] = st[c, _BEST] if st[c, _SB] == fa else np.inf
            m3 += 1
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
    the collapsed pairs as a directed graph -- both directions of every pair grouped by source
    (``indptr`` int64 (n+1,), ``dst`` int32, ``flags`` uint8 (bit 0 truly close, bit 1 dst warned if
    src is an index case, bit 2 src's log of dst passes), ``tmin`` / ``tmax`` float64 s) -- and the
    symmetric CSRs (indptr, int32 indices) of its three networks (``nets``: ``""`` traceable = close and
    notified, ``"notified_"``, ``"ideal_"`` = close).  Pairs without any flag are left out (they count in
    no metric).  Built once per pair table, shared by every
    replicate drawn on it; 42 bytes per flagged pair plus the networks (~9 more; the collapsed dict is not
    kept).

    ``collapsed``: :func:`tracing.core.coverage.collapse_pairs`' dict; ``n``: the population size;
    ``consume``: empty ``collapsed`` (``dict.clear``) once the directed graph is built, before the
    networks are, so that its arrays (27 bytes a pair) are freed there where nothing else holds them
    (a sweep's curves unit: the peak is then the larger of collapsed + graph and graph + networks).
    """

    def __init__(self, collapsed: dict, n: int, consume: bool = False):
        if n >= 2**31:
            raise ValueError(f"PairGraph: at most 2**31 - 1 agents, got n={n}")
        self.n = int(n)
        self.n_pairs = len(collapsed["i"])
        c = collapsed
        self.indptr, self.dst, self.flags, self.tmin, self.tmax = _csr_kernel(
            c["i"], c["j"], c["true"], c["notify_j"], c["notify_i"], c["t_min"], c["t_max"], self.n)
        if consume:
            collapsed.clear()
        del c
        self.nets = {name: _sub_csr_kernel(self.indptr, self.dst, self.flags, need_all, need_any)
                     for name, need_all, need_any in (("", _TRUE, _WARN | _LOGS), ("notified_", 0, _WARN | _LOGS),
                                                      ("ideal_", _TRUE, 0))}

    @property
    def nbytes(self) -> int:
        arrays = [self.indptr, self.dst, self.flags, self.tmin, self.tmax]
        return sum(a.nbytes for a in arrays) + sum(p.nbytes + x.nbytes for p, x in self.nets.values())

    def close_degree(self) -> np.ndarray:
        """Distinct truly close contacts per agent (int64 (n,))."""
        cs = np.zeros(len(self.flags) + 1, np.int64)
        np.cumsum((self.flags & _TRUE) != 0, out=cs[1:])
        return cs[self.indptr[1:]] - cs[self.indptr[:-1]]

    def f0_edges(self, f0: np.ndarray):
        """``(a, b, true, notified)`` of every pair with an index case a (``f0`` sorted, distinct): the
        pairs with ``i`` in F0 then those with ``j`` in F0, each in (i, j) order -- the order of
        ``collapse_pairs``' rows, which the curve's delay sums keep."""
        a, b, tc, nt, m1 = _f0_edges_kernel(self.indptr, self.dst, self.flags, f0)
        o = m1 + np.argsort(b[m1:], kind="stable")       # (b, a) order: pairs (i = b, j = a)
        for x in (a, b, tc, nt):
            x[m1:] = x[o]
        return a, b, tc, nt

    def f2(self, ranks, delay_b, f0, is_f0):
        """:func:`_f2_kernel` on this graph; the index cases split into ``numba.get_num_threads()``
        contiguous parts run in threads (the kernel releases the GIL), results concatenated in order:
        identical for any number of threads."""
        args = (self.indptr, self.dst, self.flags, self.tmin, self.tmax, ranks, delay_b)
        k = max(1, min(numba.get_num_threads(), len(f0) // 8))
        parts = np.array_split(f0, k)
        if k == 1:
            return _f2_kernel(*args, f0, _f2_scratch(self.n, is_f0))
        with ThreadPoolExecutor(k) as ex:
            res = list(ex.map(lambda p: _f2_kernel(*args, p, _f2_scratch(self.n, is_f0)), parts))
        return tuple(np.concatenate([r[q] for r in res]) for q in range(4))
