"""Coverage of app notifications as a function of adoption -- the whole curve from one pass.

Definitions (``../shared/DESIGN.md``, "Definitions")
===================================================
Inputs: the pair table (``tracing.pairs.PAIR_DTYPE``, one row per unordered pair and day), the
population size ``n``, adoption ranks (``tracing.strategies.priorities``: adopters at level p are
``rank <= p``; ``inf`` = never adopts) and the index cases F0 (sampled uniformly from the whole
population, app or not: :func:`sample_index_cases`). The whole pair table is the look-back window (the
simulator's runs are shorter than the 14-day retention); rows of one pair on different days are merged:
a pair is *truly close* if it was truly close on any day, *notified towards j* if ``notify_j`` on any
day, and its contact times span ``[min t_first, max t_first]``.

F1 coverage(p)
    Of all true close contacts of all index cases -- the unique directed pairs (a, b), a in F0, (a, b)
    truly close -- the fraction notified: b's log of a passes the rule (``notify_j`` / ``notify_i``
    from a's side) and ``max(rank_a, rank_b) <= p``.
F1 precision(p)
    Of all (a, b), a in F0, notified at p, the fraction truly close (NaN when nobody is notified).
F2 coverage(p)
    True second-degree contacts of a in F0 are the c with a truly close b and (b, c) truly close,
    c not in F0, c not a true close contact of a, c != a, in time order: the (b, c) contact is not
    earlier than the (a, b) contact (``max t(b, c) >= min t(a, b)``; unknown times pass). c is reached
    at p through any b with a -> b notified, b's own log of c passing the rule (what b's upload shows
    the health service), the same time order, and ``max(rank_a, rank_b, rank_c) <= p``. So c is
    reached from the threshold ``min_b max(rank_a, rank_b, rank_c)`` on (numba kernel). F2 coverage =
    reached / true second-degree (a, c) pairs.
Notification delay (:class:`DelayModel`, hours after the F0's confirmation)
    F1: ``publish_h`` (test result -> keys on the server) + the phone's sync phase, uniform in
    ``[0, sync_interval_h)`` per agent (drawn once per replicate). F2: the F1's delay + ``upload_h``
    (the F1 uploads its log) + ``processing_h`` (the health service calls the contact). The F2 delay
    of a reached c is that of the path that opens first as adoption rises (smallest threshold; ties:
    the shortest delay).
Traceable network and its largest component(p)
    The traceable network links two adopters whose contact was truly close *and* notified by the rule
    (``true_close and (notify_i or notify_j)``): the links along which the app can follow a
    transmission chain. ``largest_component`` is the fraction of the population in its largest
    connected component among adopters, ``mean_finite_cluster`` its susceptibility -- site percolation
    by Newman–Ziff (:mod:`tracing.core.percolation`). The network of every notified contact (close or
    not) is a second, differently named object: ``notified_largest_component`` /
    ``notified_mean_finite_cluster``; under Bluezone's any-sighting rule it is mostly false positives.
    ``ideal_*``: the same for the ideal rule (notifies exactly the true close contacts), i.e. the
    close-contact network among adopters.
Ideal rule (``*_ideal``)
    The same F1 / F2 coverage had the rule notified exactly the true close contacts of adopters:
    what the radio costs (``f1_coverage_ideal - f1_coverage``).
False-positive burden
    ``fp_burden``: notified contacts of the index cases that were not close contacts, per true close
    contact notified (NaN when none is). ``f2_fp_burden``: people reached through an F1's upload who
    are not true second-degree contacts (reached second-degree contacts over every detected or
    notified pair, not already a contact of the index case, minus the true second-degree contacts
    reached), per true second-degree contact reached.
Adoption achieved and the decomposition of F1 coverage
    ``adoption_achieved``: the fraction of the population with ``rank <= p`` (saturates at the share
    that can adopt, the phone owners). With uniform adoption among owners, F1 coverage factors as
    ``owner_pair_share × (adoption_achieved / owner_share)² × rule_sensitivity``: the share of true
    close F0 contacts in which both people can adopt (own a phone), the chance both adopt, and the
    share of those owner pairs that the rule notifies; ``f1_decomposition`` is that product (constant
    terms repeated on the grid so they travel with the curves).

One pass: every directed F0 contact gets the threshold ``max(rank_a, rank_b)``; sorting the thresholds
and taking cumulative counts gives the exact curve at every p (:class:`OnePass`). :func:`coverage_at`
applies adoption explicitly at one level (an independent brute-force implementation used to
cross-check the one-pass curve in tests).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numba
import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from tracing.core.checks import quiet_nan
from tracing.core.pairfold import FoldedPairs, strictly_sorted
from tracing.core.pairgraph import PairGraph, collapse_sorted, merge_compact, pair_order
from tracing.core.pairs import PAIR_DTYPE
from tracing.core.percolation import order_from_ranks

__all__ = ["METRICS", "DelayModel", "sample_index_cases", "close_degree", "collapse_pairs", "compact_pairs",
           "compact_stream", "fold_stream", "collapse_stream", "pair_graph", "PairGraph", "OnePass",
           "coverage_curve", "coverage_at"]

METRICS = ("f1_coverage", "f1_precision", "f2_coverage", "largest_component", "mean_finite_cluster",
           "mean_notify_delay_h", "mean_f2_delay_h", "adoption_achieved", "f1_coverage_ideal",
           "f2_coverage_ideal", "fp_burden", "f2_fp_burden", "notified_largest_component",
           "notified_mean_finite_cluster", "ideal_largest_component", "ideal_mean_finite_cluster",
           "owner_pair_share", "rule_sensitivity", "f1_decomposition")


@dataclass(frozen=True)
class DelayModel:
    """Notification delay model (hours). Assumed defaults, not measured: Bluezone's server published
    a confirmed case's keys after the health service's confirmation (``publish_h``); phones fetch
    new keys periodically (``sync_interval_h``); an F1 uploads its log after being called
    (``upload_h``) and the health service then traces the F1's contacts (``processing_h``)."""
    publish_h: float = 12.0
    sync_interval_h: float = 6.0
    upload_h: float = 12.0
    processing_h: float = 24.0

    def __post_init__(self):
        for k, v in asdict(self).items():
            if not (v >= 0 and np.isfinite(v)):
                raise ValueError(f"DelayModel.{k} must be a finite number >= 0, got {v}")

    def sync_phases(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """Per-agent phone sync phase (h), uniform in [0, sync_interval_h)."""
        return rng.random(n) * self.sync_interval_h


def sample_index_cases(n: int, k: int, rng: np.random.Generator, weights=None) -> np.ndarray:
    """``min(k, n)`` distinct index cases (sorted): uniform over the whole population, or, with
    ``weights`` (float array (n,), >= 0, e.g. the close-contact degree: a proxy for who gets
    infected), drawn without replacement in proportion to them (at most the number of positive
    weights)."""
    if k < 1:
        raise ValueError("index cases: need at least 1")
    if weights is None:
        return np.sort(rng.choice(n, size=min(int(k), int(n)), replace=False)).astype(np.int64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"index cases: weights must be {n} finite values >= 0 with a positive sum")
    m = min(int(k), int(np.count_nonzero(w)))
    return np.sort(rng.choice(n, size=m, replace=False, p=w / w.sum())).astype(np.int64)


def close_degree(pairs, n: int) -> np.ndarray:
    """Number of distinct true close contacts of every agent (int64 (n,)) over the pair table (or a
    :class:`PairGraph` of it)."""
    if isinstance(pairs, PairGraph):
        if pairs.n != n:
            raise ValueError(f"close_degree: the PairGraph has {pairs.n} agents, not n={n}")
        return pairs.close_degree()
    c = collapse_pairs(pairs, n)
    t = c["true"]
    return np.bincount(np.concatenate([c["i"][t], c["j"][t]]), minlength=n).astype(np.int64)


def collapse_pairs(pairs: np.ndarray, n: int) -> dict:
    """Merge the day rows of each unordered pair: i, j (int32, sorted by (i, j)), true (any day),
    notify_j / notify_i (any day), t_min / t_max (s, min / max of ``t_first``; NaN if unknown);
    27 bytes a pair.  ``n`` (the population) must be below 2**31."""
    p = np.asarray(pairs)
    if p.dtype != PAIR_DTYPE:
        raise ValueError(f"expected a PAIR_DTYPE array, got {p.dtype}")
    if not 1 <= int(n) < 2**31:
        raise ValueError(f"coverage: population size n must be in 1..2**31-1, got {n}")
    if len(p):
        if p["i"].min() < 0 or p["j"].max() >= n:
            raise ValueError(f"pair table has agents outside 0..{n - 1}")
        if np.any(p["i"] >= p["j"]):
            raise ValueError("pair table rows must have i < j")
    order = pair_order(p["i"], p["j"], n)        # = argsort(i * n + j, kind="stable"), linear time
    return collapse_sorted(order, p["i"], p["j"], p["t_first"], p["true_close"], p["notify_j"],
                           p["notify_i"])


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
    return merge_compact(np.zeros(0, PAIR_DTYPE), collapse_pairs(pairs, n), PAIR_DTYPE)


def compact_stream(tables, n: int) -> np.ndarray:
    """Fold an iterable of pair tables (e.g. a run's days, read one at a time) into one
    :func:`compact_pairs` table; peak memory ~ the compact table + one day's table + their sort."""
    acc = np.zeros(0, PAIR_DTYPE)
    for t in tables:        # merge the collapsed day into the sorted compact table: no re-sort of acc
        acc = merge_compact(acc, collapse_pairs(t, n), PAIR_DTYPE)
    return acc


_DAY_COLUMNS = ("i", "j", "t_first", "true_close", "notify_j", "notify_i")


def fold_stream(tables, n: int) -> FoldedPairs:
    """The distinct pairs of an iterable of pair tables (e.g. a run's days, read one at a time; each a
    ``PAIR_DTYPE`` array or a mapping of its columns ``i, j, t_first, true_close, notify_j, notify_i``)
    folded in one table at a time, in place (:class:`tracing.core.pairfold.FoldedPairs`, 21 bytes a
    pair): memory is the distinct pairs plus one day, never the whole pair-day table.  A table sorted by
    ``(i, j)`` with one row per pair (a stored day) is merged as it is, any other is collapsed first."""
    if not 1 <= int(n) < 2**31:
        raise ValueError(f"coverage: population size n must be in 1..2**31-1, got {n}")
    acc = FoldedPairs(n)
    for t in tables:
        if isinstance(t, np.ndarray) and t.dtype != PAIR_DTYPE:
            raise ValueError(f"expected a PAIR_DTYPE array, got {t.dtype}")
        cols = [np.asarray(t[k]) for k in _DAY_COLUMNS]
        i, j = cols[0], cols[1]
        if len(i) and (i.min() < 0 or j.max() >= n):
            raise ValueError(f"pair table has agents outside 0..{n - 1}")
        if np.any(i >= j):
            raise ValueError("pair table rows must have i < j")
        if strictly_sorted(i, j):
            i, j = (np.ascontiguousarray(x, dtype=np.int32) for x in (i, j))    # agents < 2**31
            t0, tc, nj, ni = (np.ascontiguousarray(x, dtype=PAIR_DTYPE[k])
                              for x, k in zip(cols[2:], _DAY_COLUMNS[2:]))
            acc.add(i, j, t0, t0, tc, nj, ni)
            continue
        c = collapse_sorted(pair_order(i, j, n), *cols)
        acc.add(c["i"], c["j"], c["t_min"], c["t_max"], c["true"], c["notify_j"], c["notify_i"])
    return acc


def collapse_stream(tables, n: int) -> dict:
    """:func:`collapse_pairs` of the concatenation of an iterable of pair tables, folded in one table at
    a time (:func:`fold_stream`)."""
    return fold_stream(tables, n).to_dict()


def pair_graph(pairs, n: int, consume: bool = False) -> PairGraph:
    """The replicate-independent part of :class:`OnePass` (:class:`PairGraph`) for a ``PAIR_DTYPE``
    table, a :func:`collapse_pairs` / :func:`collapse_stream` dict or a :func:`fold_stream` result (its
    arrays become the graph's); build it once and pass it to every ``OnePass`` (and
    :func:`close_degree`) of replicates drawn on the same pairs.  ``consume``: a given dict is emptied
    once the graph has read it."""
    n = int(n)
    if n < 1:
        raise ValueError("coverage: population size n must be >= 1")
    if isinstance(pairs, FoldedPairs):
        if pairs.n != n:
            raise ValueError(f"pair_graph: the folded pairs have {pairs.n} agents, not n={n}")
        return PairGraph(pairs, n)
    if isinstance(pairs, dict):
        return PairGraph(pairs, n, consume=consume)
    return PairGraph(collapse_pairs(pairs, n), n, consume=True)     # our own dict: freed early


def _check_inputs(pairs, n, ranks, f0):
    n = int(n)
    if n < 1:
        raise ValueError("coverage: population size n must be >= 1")
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.shape != (n,):
        raise ValueError(f"coverage: expected {n} ranks, got shape {ranks.shape}")
    if np.any(np.isnan(ranks)) or np.any(ranks <= 0):
        raise ValueError("coverage: ranks must be > 0 (inf = never adopts), not NaN")
    f0 = np.unique(np.asarray(f0, dtype=np.int64))
    if len(f0) == 0 or f0.min() < 0 or f0.max() >= n:
        raise ValueError(f"coverage: index cases must be a non-empty set of agents in 0..{n - 1}")
    return n, ranks, f0


def _cum_at(sorted_thr: np.ndarray, grid: np.ndarray) -> np.ndarray:
    return np.searchsorted(sorted_thr, grid, side="right")


class OnePass:
    """Exact coverage curves for one replicate (one rank draw, one F0 sample); evaluate on any grid.

    Parameters
    ----------
    pairs : ``PAIR_DTYPE`` table, or its :func:`pair_graph` (built once, shared by the replicates drawn
    on one table); n : population size; ranks : adoption ranks (``inf`` = never);
    f0 : index cases; delay : :class:`DelayModel`; sync_phase_h : per-agent sync phase (h; default
    ``delay.sync_interval_h / 2`` for everyone).
    """

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
        g = pairs if isinstance(pairs, PairGraph) else pair_graph(pairs, n)
        if g.n != n:
            raise ValueError(f"coverage: the PairGraph has {g.n} agents, not n={n}")
        is_f0 = np.zeros(n, bool)
        is_f0[f0] = True
        # directed F0 -> contact edges (pairs with i in F0, then with j in F0, each in (i, j) order)
        a, b, true, notif = g.f0_edges(f0)
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
        # F2 under the rule, under the ideal rule (notifies exactly the true close contacts) and every
        # second-degree person reached over any pair: one walk over the two-hop paths
        f2_thr, f2_del, f2_ideal, f2_all = g.f2(ranks, f1_delay + self.delay.upload_h + self.delay.processing_h,
                                                f0, is_f0)
        self.n_f2_true = len(f2_thr)
        o2 = np.argsort(f2_thr, kind="stable")
        self._thr_f2 = f2_thr[o2]
        fin = np.isfinite(self._thr_f2)
        self._cum_f2_delay = np.concatenate([[0.0], np.cumsum(f2_del[o2][fin])])
        self._thr_f2_ideal = np.sort(f2_ideal)
        self._thr_f2_all = np.sort(f2_all)
        # traceable network (truly close and notified), notified network, close-contact network
        self._order = order_from_ranks(ranks)
        self._sorted_ranks = ranks[self._order]
        self._nets = g.percolation(self._order)
        self._largest, self._chi = self._nets[""]

    def evaluate(self, grid) -> dict:
        """Metrics at each adoption level of ``grid`` (fractions of the population):
        ``f1_coverage``, ``f1_precision`` (NaN if nobody notified), ``f2_coverage``,
        ``largest_component`` (fraction of the population), ``mean_finite_cluster`` (nodes),
        ``mean_notify_delay_h`` / ``mean_f2_delay_h`` (h; NaN if nobody notified / reached).
        Coverage is NaN where the index cases have no true close (second-degree) contact. The
        other metrics of :data:`METRICS` are defined in the module docstring."""
        g = np.asarray(grid, dtype=np.float64)
        nan = np.full(len(g), np.nan)
        with quiet_nan():
            k_tn = _cum_at(self._thr_true_notif, g)
            k_n = _cum_at(self._thr_notif, g)
            k_f2 = _cum_at(self._thr_f2, g)
            k_f2i = _cum_at(self._thr_f2_ideal, g)
            k_f2a = _cum_at(self._thr_f2_all, g)
            k_nodes = _cum_at(self._sorted_ranks, g)
            achieved = k_nodes / self.n
            out = {
                "f1_coverage": k_tn / self.n_f1_true if self.n_f1_true else nan,
                "f1_precision": np.where(k_n > 0, k_tn / np.maximum(k_n, 1), np.nan),
                "f2_coverage": k_f2 / self.n_f2_true if self.n_f2_true else nan,
                "mean_notify_delay_h": np.where(k_n > 0, self._cum_delay[k_n] / np.maximum(k_n, 1),
                                                np.nan),
                "mean_f2_delay_h": np.where(k_f2 > 0, self._cum_f2_delay[k_f2] / np.maximum(k_f2, 1),
                                            np.nan),
                "adoption_achieved": achieved,
                "f1_coverage_ideal": _cum_at(self._thr_true, g) / self.n_f1_true if self.n_f1_true
                else nan,
                "f2_coverage_ideal": k_f2i / self.n_f2_true if self.n_f2_true else nan,
                "fp_burden": np.where(k_tn > 0, (k_n - k_tn) / np.maximum(k_tn, 1), np.nan),
                "f2_fp_burden": np.where(k_f2 > 0, np.maximum(k_f2a - k_f2, 0) / np.maximum(k_f2, 1),
                                         np.nan),
                "owner_pair_share": np.full(len(g), self.owner_pair_share),
                "rule_sensitivity": np.full(len(g), self.rule_sensitivity),
                "f1_decomposition": self.owner_pair_share * self.rule_sensitivity * (
                    achieved / self.owner_share) ** 2 if self.owner_share > 0 else nan,
            }
            for name, (largest, chi) in self._nets.items():
                out[f"{name}largest_component"] = np.where(
                    k_nodes > 0, largest[np.maximum(k_nodes - 1, 0)] if len(largest) else 0, 0) / self.n
                out[f"{name}mean_finite_cluster"] = np.where(
                    k_nodes > 0, chi[np.maximum(k_nodes - 1, 0)] if len(chi) else 0.0, 0.0)
        return {k: np.asarray(out[k], dtype=np.float64) for k in METRICS}

    def percolation_threshold(self, network: str = "traceable") -> float:
        """Adoption at the peak of the mean finite-cluster size (exact: the rank of the agent whose
        adoption gives the peak) of the ``network``: ``"traceable"`` (truly close and notified, the
        default), ``"notified"`` or ``"ideal"`` (truly close); NaN if it has no finite cluster."""
        key = {"traceable": "", "notified": "notified_", "ideal": "ideal_"}.get(network)
        if key is None:
            raise ValueError(f"network must be traceable, notified or ideal, got {network!r}")
        chi = self._nets[key][1]
        if len(chi) == 0 or chi.max() <= 0:
            return float("nan")
        return float(self._sorted_ranks[int(np.argmax(chi))])


def coverage_curve(pairs, n, ranks, f0, grid, *, delay: DelayModel | None = None,
                   sync_phase_h=None) -> dict:
    """All metrics of :meth:`OnePass.evaluate` on ``grid``, from one pass (exact at every level)."""
    return OnePass(pairs, n, ranks, f0, delay=delay, sync_phase_h=sync_phase_h).evaluate(grid)


def coverage_at(p: float, pairs, n, ranks, f0, *, delay: DelayModel | None = None,
                sync_phase_h=None) -> dict:
    """Brute force at one adoption level: apply adoption explicitly (adopters = ``rank <= p``) and
    count; independent of the threshold bookkeeping of :class:`OnePass` (used to cross-check it).
    Returns scalars with the names of :meth:`OnePass.evaluate` (except ``mean_finite_cluster``,
    computed from the connected components of the adopters)."""
    n, ranks, f0 = _check_inputs(pairs, n, ranks, f0)
    delay = delay or DelayModel()
    if sync_phase_h is None:
        sync_phase_h = np.full(n, delay.sync_interval_h / 2)
    sync_phase_h = np.asarray(sync_phase_h, dtype=np.float64)
    adopt = ranks <= p
    c = collapse_pairs(pairs, n)
    is_f0 = np.zeros(n, bool)
    is_f0[f0] = True
    # directed edge list of the whole graph
    src = np.concatenate([c["i"], c["j"]])
    dst = np.concatenate([c["j"], c["i"]])
    true = np.concatenate([c["true"], c["true"]])
    warn = np.concatenate([c["notify_j"], c["notify_i"]]) & adopt[src] & adopt[dst]
    logs = np.concatenate([c["notify_i"], c["notify_j"]]) & adopt[src] & adopt[dst]
    tmin = np.concatenate([c["t_min"], c["t_min"]])
    tmax = np.concatenate([c["t_max"], c["t_max"]])
    from0 = is_f0[src]
    n_true = int((true & from0).sum())
    n_notif = int((warn & from0).sum())
    n_tn = int((true & warn & from0).sum())
    f1_delay = delay.publish_h + sync_phase_h
    res = {
        "f1_coverage": n_tn / n_true if n_true else np.nan,
        "f1_precision": n_tn / n_notif if n_notif else np.nan,
        "mean_notify_delay_h": f1_delay[dst[warn & from0]].mean() if n_notif else np.nan,
    }
    # two-hop paths a -> b -> c by a join on b (edges sorted by source)
    o = np.argsort(src, kind="stable")
    src, dst, true, warn, logs, tmin, tmax = (x[o] for x in (src, dst, true, warn, logs, tmin, tmax))
    start = np.searchsorted(src, np.arange(n), side="left")
    deg = np.bincount(src, minlength=n)
    e1 = np.flatnonzero(is_f0[src])
    cnt = deg[dst[e1]]
    e1r = np.repeat(e1, cnt)
    within = np.arange(cnt.sum()) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    e2 = start[dst[e1r]] + within
    a, b, cc = src[e1r], dst[e1r], dst[e2]
    f1_pairs = np.unique(src[true & is_f0[src]] * n + dst[true & is_f0[src]])
    ac = a * n + cc
    ok = (cc != a) & ~is_f0[cc] & ~np.isin(ac, f1_pairs)
    t1, t2 = tmin[e1r], tmax[e2]
    ok &= np.isnan(t1) | np.isnan(t2) | (t2 >= t1)
    true_f2 = np.unique(ac[ok & true[e1r] & true[e2]])
    reach = ok & warn[e1r] & logs[e2] & adopt[cc]
    reached = np.isin(true_f2, ac[reach])
    res["f2_coverage"] = reached.mean() if len(true_f2) else np.nan
    # F2 delay: among reaching paths, the one with the smallest threshold, ties the smallest delay
    if reached.any():
        thr = np.maximum(np.maximum(ranks[a], ranks[b]), ranks[cc])[reach]
        dl = (f1_delay[b] + delay.upload_h + delay.processing_h)[reach]
        key = ac[reach]
        keep = np.isin(key, true_f2)
        key, thr, dl = key[keep], thr[keep], dl[keep]
        oo = np.lexsort((dl, thr, key))
        first = np.ones(len(oo), bool)
        first[1:] = key[oo][1:] != key[oo][:-1]
        res["mean_f2_delay_h"] = dl[oo][first].mean()
    else:
        res["mean_f2_delay_h"] = np.nan
    res["f1_coverage_ideal"] = int((true & is_f0[src] & adopt[src] & adopt[dst]).sum()) / n_true \
        if n_true else np.nan
    res["fp_burden"] = (n_notif - n_tn) / n_tn if n_tn else np.nan
    res["adoption_achieved"] = adopt.mean()
    # components among adopters (scipy connected components) of the traceable (close and notified),
    # notified and close-contact networks
    notified = c["notify_i"] | c["notify_j"]
    for name, e in (("", c["true"] & notified), ("notified_", notified), ("ideal_", c["true"])):
        e = e & adopt[c["i"]] & adopt[c["j"]]
        g = sp.coo_matrix((np.ones(int(e.sum())), (c["i"][e], c["j"][e])), shape=(n, n))
        _, lab = connected_components(g, directed=False)
        sizes = np.bincount(lab[adopt], minlength=n) if adopt.any() else np.zeros(1, np.int64)
        res[f"{name}largest_component"] = sizes.max() / n
        big = sizes.max()
        rest = adopt.sum() - big
        res[f"{name}mean_finite_cluster"] = ((sizes.astype(np.float64) ** 2).sum() - float(big) ** 2) \
            / rest if rest > 0 else 0.0
    return res
