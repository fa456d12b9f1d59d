"""The previous round's one-pass curves (``tracing/core/coverage.py`` at commit f579ba8), kept verbatim
for the side-by-side rows of :mod:`benchmarks.onepass`: a stable ``argsort`` of ``i * n + j`` and ufunc
``reduceat`` to collapse, a compact table re-sorted at every fold, per replicate a fresh collapse and a
directed CSR by ``argsort``, three ``f2_thresholds`` walks and ``newman_ziff`` (a scipy CSR) per network.
``evaluate`` is the current one (unchanged since)."""
from __future__ import annotations

import numpy as np

from tracing.core.checks import quiet_nan
from tracing.core.coverage import DelayModel, OnePass, _check_inputs
from tracing.core.pairs import PAIR_DTYPE
from tracing.core.percolation import newman_ziff, order_from_ranks
from tracing.core.propagation import f2_thresholds


def collapse_pairs(pairs: np.ndarray, n: int) -> dict:
    """Merge the day rows of each unordered pair: true (any day), notify_j / notify_i (any day),
    t_min / t_max (s, min / max of ``t_first``; NaN if unknown)."""
    p = np.asarray(pairs)
    if p.dtype != PAIR_DTYPE:
        raise ValueError(f"expected a PAIR_DTYPE array, got {p.dtype}")
    if len(p):
        if p["i"].min() < 0 or p["j"].max() >= n:
            raise ValueError(f"pair table has agents outside 0..{n - 1}")
        if np.any(p["i"] >= p["j"]):
            raise ValueError("pair table rows must have i < j")
    key = p["i"].astype(np.int64) * n + p["j"].astype(np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    new = np.ones(len(key), bool)
    new[1:] = key[1:] != key[:-1]
    s = np.flatnonzero(new)
    t = p["t_first"][order].astype(np.float64)
    if len(s) == 0:
        e = np.zeros(0)
        return dict(i=e.astype(np.int64), j=e.astype(np.int64), true=e.astype(bool),
                    notify_j=e.astype(bool), notify_i=e.astype(bool), t_min=e, t_max=e)
    return dict(
        i=p["i"][order][s].astype(np.int64), j=p["j"][order][s].astype(np.int64),
        true=np.logical_or.reduceat(p["true_close"][order], s),
        notify_j=np.logical_or.reduceat(p["notify_j"][order], s),
        notify_i=np.logical_or.reduceat(p["notify_i"][order], s),
        t_min=np.fmin.reduceat(t, s), t_max=np.fmax.reduceat(t, s))


def compact_pairs(pairs: np.ndarray, n: int) -> np.ndarray:
    """A pair table with at most two rows per unordered pair whose :func:`collapse_pairs` equals that of
    ``pairs``: one row carries ``t_first = t_min``, a second one (only where ``t_max`` differs) carries
    ``t_max``; both carry the pair's any-day ``true_close`` / ``notify_j`` / ``notify_i``.  ``day``,
    ``minutes`` and ``att`` are not kept (0, 0, NaN): the one-pass analysis (:class:`OnePass`,
    :func:`close_degree`) reads only what :func:`collapse_pairs` returns.  Sorted by (i, j).

    Compacting ``concatenate([compact_pairs(a, n), b])`` again equals compacting ``concatenate([a, b])``,
    so a run's day tables can be folded in one at a time (:func:`compact_stream`): memory then grows with
    the distinct pairs, not with the days.
    """
    c = collapse_pairs(pairs, n)
    m = len(c["i"])
    two = ~(c["t_max"] == c["t_min"]) & ~np.isnan(c["t_min"])     # NaN t_min <=> NaN t_max
    pos = np.arange(m, dtype=np.int64)
    if m:
        pos[1:] += np.cumsum(two)[:-1]
    out = np.zeros(m + int(two.sum()), PAIR_DTYPE)
    out["att"] = np.nan
    for at, t, sel in ((pos, c["t_min"], slice(None)), (pos[two] + 1, c["t_max"][two], two)):
        out["i"][at] = c["i"][sel]
        out["j"][at] = c["j"][sel]
        out["t_first"][at] = t
        out["true_close"][at] = c["true"][sel]
        out["notify_j"][at] = c["notify_j"][sel]
        out["notify_i"][at] = c["notify_i"][sel]
    return out


def compact_stream(tables, n: int) -> np.ndarray:
    """Fold an iterable of pair tables (e.g. a run's days, read one at a time) into one
    :func:`compact_pairs` table; peak memory ~ the compact table + one day's table + their sort."""
    acc = np.zeros(0, PAIR_DTYPE)
    for t in tables:
        acc = compact_pairs(np.concatenate([acc, np.asarray(t)]), n)
    return acc


def _directed_csr(c: dict, n: int):
    """Directed adjacency (both directions of every pair) sorted by source, with edge attributes:
    ``warn[e]`` = dst is warned if src is an index case; ``logs[e]`` = src's log of dst passes."""
    src = np.concatenate([c["i"], c["j"]])
    dst = np.concatenate([c["j"], c["i"]])
    true = np.concatenate([c["true"], c["true"]])
    warn = np.concatenate([c["notify_j"], c["notify_i"]])
    logs = np.concatenate([c["notify_i"], c["notify_j"]])
    tmin = np.concatenate([c["t_min"], c["t_min"]])
    tmax = np.concatenate([c["t_max"], c["t_max"]])
    o = np.argsort(src, kind="stable")
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(src, minlength=n), out=indptr[1:])
    return indptr, dst[o], true[o], warn[o], logs[o], tmin[o], tmax[o]


class OnePassPrevious(OnePass):
    """The previous ``OnePass.__init__``; ``evaluate`` / ``percolation_threshold`` inherited."""

    def __init__(self, pairs, n, ranks, f0, *, delay: DelayModel | None = None,
                 sync_phase_h: np.ndarray | None = None):
        n, ranks, f0 = _check_inputs(pairs, n, ranks, f0)
        self.n, self.ranks, self.f0 = n, ranks, f0
        self.delay = delay or DelayModel()
        if sync_phase_h is None:
            sync_phase_h = np.full(n, self.delay.sync_interval_h / 2)
        sync_phase_h = np.asarray(sync_phase_h, dtype=np.float64)
        if sync_phase_h.shape != (n,):
            raise ValueError("coverage: sync_phase_h must have one value per agent")
        c = collapse_pairs(pairs, n)
        is_f0 = np.zeros(n, bool)
        is_f0[f0] = True
        # directed F0 -> contact edges
        fi, fj = is_f0[c["i"]], is_f0[c["j"]]
        a = np.concatenate([c["i"][fi], c["j"][fj]])
        b = np.concatenate([c["j"][fi], c["i"][fj]])
        true = np.concatenate([c["true"][fi], c["true"][fj]])
        notif = np.concatenate([c["notify_j"][fi], c["notify_i"][fj]])
        thr = np.maximum(ranks[a], ranks[b])
        f1_delay = self.delay.publish_h + sync_phase_h
        self.n_f1_true = int(true.sum())
        self._thr_true_notif = np.sort(thr[true & notif])
        self._thr_true = np.sort(thr[true])
        # decomposition terms: owners = agents who can adopt (finite rank)
        can = np.isfinite(ranks)
        self.owner_share = float(can.mean())
        own_pair = true & np.isfinite(thr)
        with quiet_nan():
            self.owner_pair_share = own_pair.sum() / self.n_f1_true if self.n_f1_true else np.nan
            self.rule_sensitivity = (own_pair & notif).sum() / own_pair.sum() if own_pair.any() else np.nan
        o = np.argsort(thr[notif], kind="stable")
        self._thr_notif = thr[notif][o]
        self._cum_delay = np.concatenate([[0.0], np.cumsum(f1_delay[b[notif]][o])])
        # F2
        indptr, dst, etrue, warn, logs, tmin, tmax = _directed_csr(c, n)
        f2_thr, f2_del = f2_thresholds(indptr, dst, etrue, warn, logs, tmin, tmax, ranks,
                                    f1_delay + self.delay.upload_h + self.delay.processing_h,
                                    f0, is_f0)
        self.n_f2_true = len(f2_thr)
        o2 = np.argsort(f2_thr, kind="stable")
        self._thr_f2 = f2_thr[o2]
        fin = np.isfinite(self._thr_f2)
        self._cum_f2_delay = np.concatenate([[0.0], np.cumsum(f2_del[o2][fin])])
        # ideal rule (notifies exactly the true close contacts) and every reached second-degree person
        self._thr_f2_ideal = np.sort(f2_thresholds(indptr, dst, etrue, etrue, etrue, tmin, tmax, ranks,
                                                   np.zeros(n), f0, is_f0)[0])
        anyedge = etrue | warn | logs
        self._thr_f2_all = np.sort(f2_thresholds(indptr, dst, anyedge, warn, logs, tmin, tmax, ranks,
                                                 np.zeros(n), f0, is_f0)[0])
        # traceable network (truly close and notified), notified network, close-contact network
        notified = c["notify_i"] | c["notify_j"]
        self._order = order_from_ranks(ranks)
        self._sorted_ranks = ranks[self._order]
        self._nets = {}
        for name, e in (("", c["true"] & notified), ("notified_", notified), ("ideal_", c["true"])):
            self._nets[name] = newman_ziff(n, c["i"][e], c["j"][e], self._order)
        self._largest, self._chi = self._nets[""]

