"""F0 -> F1 -> F2: who is warned, in one place.

The hop rule (Bluezone's, ``../shared/DESIGN.md``)
    An index case F0 confirmed at ``t_confirm`` publishes its keys; a contact j is an **F1** when j's
    own log of F0 passes the rule, both run the app and the contact lies in the look-back window
    ``t_confirm - window_s <= t <= t_confirm``. A notified F1 uploads its log at ``t_notify``; a contact k
    of the F1 is an **F2** when that upload (the F1's log of k) passes the rule, k runs the app, the
    contact is not earlier than the F1's own exposure (``t >= t_exposed``: a contact before it cannot
    carry the infection onwards) and lies in ``t_notify - window_s <= t <= t_notify``. F0s are never
    F1s, F1s never F2s. A NaN contact time means "unknown" and passes every time test.

Two entry points apply the rule:

* :func:`propagate` -- at one adoption level, hop by hop over a :class:`~tracing.core.graph.ContactGraph`
  whose edge u -> v means "v is warned when u is traced" (level-synchronous BFS kernel). The epidemic
  closed loop and the graph API use it.
* :func:`f2_thresholds` -- at every adoption level at once: for the one-pass coverage curve, the
  adoption from which each true second-degree contact is reached (checked against
  ``coverage.coverage_at``, a brute force at one level, in the tests).

Details of :func:`propagate`:

:func:`propagate` walks the graph hop by hop from the index cases (F0, hop 0) with a small numba
kernel (level-synchronous BFS over the CSR; no Python loop over edges):

* an F0 confirmed at ``t_confirm`` publishes its keys; a contact j of F0 i is notified (F1, hop 1)
  if their contact time t satisfies ``t_confirm - window_s <= t <= t_confirm`` (the 14-day look-back;
  contacts after the confirmation do not count);
* a notified F1 j uploads its log at its notification time ``t_notify[j]`` and so passes the
  warning to its contacts k (F2, hop 2) whose contact time t satisfies ``t >= t_exposed[j]`` (the
  F1's own exposure: a contact *before* it cannot carry the infection onwards) and ``t_notify[j] -
  window_s <= t <= t_notify[j]``;
* ``t_notify`` of a node reached at hop h is the earliest ``t_notify[parent] + delay_s[h-1]`` over its
  qualifying parents; ``t_exposed`` the earliest qualifying contact time.

A NaN contact time means "unknown": that edge passes every time test (no ordering, no window), and a
node exposed through it has no exposure-time constraint downstream. With all times NaN the hops are
plain BFS distances (checked against networkx in the tests).
"""
from __future__ import annotations

from typing import NamedTuple

import numba
import numpy as np

from tracing.core.graph import ContactGraph

__all__ = ["Propagation", "propagate", "f2_thresholds", "WINDOW_S"]

DAY_S = 86400.0  #: s
WINDOW_S = 14 * DAY_S  #: s, Bluezone/GAEN retention for tracing (14 days)


# ----------------------------------------------------------------------------------------------------
class Propagation(NamedTuple):
    """Per node: ``hop`` (int8: 0 = F0, 1 = F1, 2 = F2, ..., −1 = not reached) and ``t_notify`` (s:
    confirmation time for F0, notification time otherwise; NaN if not reached or unknown)."""
    hop: np.ndarray
    t_notify: np.ndarray


@numba.njit(cache=True)
def _propagate_kernel(indptr, indices, t_edge, f0, t_conf, window_s, delays, hop, t_notify, t_exp):
    """Level-synchronous BFS with time tests. ``t_exp`` uses −inf for "no constraint" (F0, unknown)."""
    n = hop.shape[0]
    frontier = np.empty(n, dtype=np.int64)
    nf = 0
    for k in range(f0.shape[0]):
        u = f0[k]
        tc = t_conf[k]
        if hop[u] != 0:
            hop[u] = 0
            frontier[nf] = u
            nf += 1
            t_notify[u] = tc
            t_exp[u] = -np.inf
        elif not np.isnan(tc) and (np.isnan(t_notify[u]) or tc < t_notify[u]):
            t_notify[u] = tc
    nxt = np.empty(n, dtype=np.int64)
    for h in range(1, delays.shape[0] + 1):
        delay = delays[h - 1]
        nn = 0
        for a in range(nf):
            u = frontier[a]
            tn = t_notify[u]
            eu = t_exp[u]
            for e in range(indptr[u], indptr[u + 1]):
                v = indices[e]
                if hop[v] != -1 and hop[v] != h:
                    continue
                t = t_edge[e]
                if not np.isnan(t):
                    if t < eu:
                        continue                      # contact before u's own exposure
                    if not np.isnan(tn):
                        if t > tn or t < tn - window_s:
                            continue                  # after upload, or outside the look-back
                if hop[v] == -1:
                    hop[v] = h
                    nxt[nn] = v
                    nn += 1
                    t_exp[v] = np.inf
                    t_notify[v] = np.nan
                te = -np.inf if np.isnan(t) else t
                if te < t_exp[v]:
                    t_exp[v] = te
                cand = tn + delay
                if not np.isnan(cand) and (np.isnan(t_notify[v]) or cand < t_notify[v]):
                    t_notify[v] = cand
        for a in range(nn):
            frontier[a] = nxt[a]
        nf = nn
        if nf == 0:
            break


def propagate(graph: ContactGraph, f0, t_confirm, window_s: float = WINDOW_S, hops: int = 2,
              delay_s=0.0, return_exposure: bool = False):
    """Notification reach from index cases, hop by hop (F0 -> F1 -> F2 ...), respecting time order.

    ``f0``: index-case node indices (int array) or a bool mask of length ``graph.n``; ``t_confirm``:
    s, confirmation (key publication) time, a scalar or one per index case (NaN = unknown: no
    look-back window from that case); ``window_s``: s, look-back (default 14 days); ``hops``: how far
    (2 = F2); ``delay_s``: s, from a parent's confirmation/notification to the child's notification,
    a scalar or one value per hop (default 0). Returns :class:`Propagation` ``(hop, t_notify)``; with
    ``return_exposure`` also ``t_exposed`` (s, earliest qualifying contact; NaN for F0 and where
    unknown) as a third array.
    """
    if not isinstance(graph, ContactGraph):
        raise ValueError("graph must be a ContactGraph")
    n = graph.n
    f0 = np.asarray(f0)
    if f0.dtype == bool:
        if f0.shape != (n,):
            raise ValueError(f"a bool f0 mask needs length n={n}")
        f0 = np.flatnonzero(f0)
    f0 = f0.astype(np.int64).reshape(-1)
    if f0.size and (f0.min() < 0 or f0.max() >= n):
        raise ValueError(f"f0 indices must lie in 0..{n - 1}")
    t_conf = np.asarray(t_confirm, dtype=np.float64)
    if t_conf.ndim == 0:
        t_conf = np.full(f0.size, float(t_conf))
    t_conf = t_conf.reshape(-1)
    if t_conf.size != f0.size:
        raise ValueError(f"t_confirm needs one value per index case ({f0.size}) or a scalar")
    hops = int(hops)
    if not 0 <= hops <= 127:
        raise ValueError(f"hops must be in 0..127, got {hops}")
    window_s = float(window_s)
    if not window_s >= 0:
        raise ValueError(f"window_s must be >= 0 (s), got {window_s}")
    delays = np.asarray(delay_s, dtype=np.float64)
    if delays.ndim == 0:
        delays = np.full(hops, float(delays))
    if delays.shape != (hops,) or not np.all(np.isfinite(delays)) or np.any(delays < 0):
        raise ValueError(f"delay_s must be a finite scalar >= 0 or {hops} such values (s)")
    hop = np.full(n, -1, dtype=np.int8)
    t_notify = np.full(n, np.nan)
    t_exp = np.full(n, np.nan)
    _propagate_kernel(graph.indptr, graph.indices, np.ascontiguousarray(graph.t_first, dtype=np.float64),
                      f0, t_conf, window_s, delays, hop, t_notify, t_exp)
    if return_exposure:
        t_exp = np.where(np.isinf(t_exp), np.nan, t_exp)
        return hop, t_notify, t_exp
    return Propagation(hop, t_notify)


@numba.njit(cache=True)
def f2_thresholds(indptr, dst, true, warn, logs, tmin, tmax, ranks, delay_b, f0, is_f0):
    """All-levels F2 for the one-pass coverage curve (``tracing.core.coverage``).

    For each index case ``a`` of ``f0``: its true second-degree contacts c (through a truly close b,
    the time-order rule of the module docstring) and, for each, the adoption threshold
    ``min_b max(rank_a, rank_b, rank_c)`` over paths a -> b -> c that notify (``warn[a->b]``: b's log of
    a passes; ``logs[b->c]``: b's own log of c passes, what b's upload shows), ``inf`` if none, and
    that path's delay (h, ``delay_b[b]``). CSR inputs: both directions of every pair grouped by source, in
    the order a ``pairgraph.PairGraph`` walks them (length E):
    ``indptr`` (n+1,), ``dst``, ``true``, ``warn``, ``logs``, ``tmin``/``tmax`` (s, NaN = unknown);
    ``ranks`` (n,); ``is_f0`` (n,) bool. Returns ``(thresholds, delays)``, float64, one per true F2.
    The one-pass curves run its three uses in one walk (``pairgraph._f2_kernel``); this is their
    reference in the tests.
    """
    n = indptr.shape[0] - 1
    stamp1 = np.full(n, -1, np.int64)   # c is a true F1 of a
    stamp2 = np.full(n, -1, np.int64)   # c is a true F2 of a
    stampb = np.full(n, -1, np.int64)   # best threshold set for c
    best = np.full(n, np.inf)
    bestd = np.full(n, np.inf)
    cap = 1024
    out_thr = np.empty(cap)
    out_del = np.empty(cap)
    m = 0
    lst = np.empty(n, np.int64)
    for ia in range(f0.shape[0]):
        a = f0[ia]
        ra = ranks[a]
        for e in range(indptr[a], indptr[a + 1]):
            if true[e]:
                stamp1[dst[e]] = ia
        nl = 0
        for e1 in range(indptr[a], indptr[a + 1]):
            pt = true[e1]
            pn = warn[e1]
            if not (pt or pn):
                continue
            b = dst[e1]
            thr_ab = max(ra, ranks[b])
            t1 = tmin[e1]
            for e2 in range(indptr[b], indptr[b + 1]):
                c = dst[e2]
                if c == a or is_f0[c] or stamp1[c] == ia:
                    continue
                t2 = tmax[e2]
                if not (np.isnan(t1) or np.isnan(t2) or t2 >= t1):
                    continue
                if pt and true[e2] and stamp2[c] != ia:
                    stamp2[c] = ia
                    lst[nl] = c
                    nl += 1
                if pn and logs[e2]:
                    thr = max(thr_ab, ranks[c])
                    d = delay_b[b]
                    if stampb[c] != ia:
                        stampb[c] = ia
                        best[c] = thr
                        bestd[c] = d
                    elif thr < best[c] or (thr == best[c] and d < bestd[c]):
                        best[c] = thr
                        bestd[c] = d
        if m + nl > cap:
            while m + nl > cap:
                cap *= 2
            nt = np.empty(cap)
            nd = np.empty(cap)
            nt[:m] = out_thr[:m]
            nd[:m] = out_del[:m]
            out_thr = nt
            out_del = nd
        for k in range(nl):
            c = lst[k]
            if stampb[c] == ia:
                out_thr[m] = best[c]
                out_del[m] = bestd[c]
            else:
                out_thr[m] = np.inf
                out_del[m] = np.nan
            m += 1
    return out_thr[:m].copy(), out_del[:m].copy()
