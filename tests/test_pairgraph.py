"""The linear-time kernels of the one-pass curves (tracing.core.pairgraph) give exactly, byte for byte,
what the sorting / per-call code they replaced gave: the stable (i, j) order, the collapsed pairs, the
day-by-day fold, the F0 edges in collapse order, the three F2 walks in one, and the curves of a
PairGraph shared by replicates."""
from __future__ import annotations

import numpy as np
import pytest

from tracing.core import pairgraph as pg
from tracing.core.pairfold import strictly_sorted
from tracing.core.coverage import (OnePass, close_degree, collapse_pairs, collapse_stream, compact_stream,
                                   pair_graph)
from tracing.core.pairs import PAIR_DTYPE
from tracing.core.propagation import f2_thresholds

FINE = np.linspace(0.0, 1.0, 401)


def _days(n=400, n_days=4, m=3000, seed=0, jitter=False):
    """Random day tables with repeated pairs (across and within days), unknown times and a few
    rows without any flag; ``jitter``: times 0-39 ms off the quarter hours (many within one float32
    step of each other)."""
    rng = np.random.default_rng(seed)
    home = rng.integers(0, n - 5, m // 4)
    out = []
    for d in range(n_days):
        a = np.concatenate([home, rng.integers(0, n, m)])
        b = np.concatenate([home + rng.integers(1, 5, len(home)), rng.integers(0, n, m)])
        k = a != b
        p = np.zeros(int(k.sum()), PAIR_DTYPE)
        p["i"], p["j"], p["day"] = np.minimum(a[k], b[k]), np.maximum(a[k], b[k]), d
        t = d * 86400 + np.round(rng.random(len(p)) * 96) * 900                # ties in times
        t += rng.integers(0, 40, len(p)) * 0.001 if jitter else 0.0
        p["t_first"] = np.where(rng.random(len(p)) < 0.1, np.nan, t)
        for f, q in (("true_close", 0.2), ("notify_j", 0.5), ("notify_i", 0.5)):
            p[f] = rng.random(len(p)) < q
        out.append(np.concatenate([p, p[: len(p) // 5]]))                       # duplicated rows
    return out


def _reference_collapse(p, n):
    """The previous implementation: a stable argsort of i * n + j and ufunc reduceat."""
    key = p["i"].astype(np.int64) * n + p["j"]
    o = np.argsort(key, kind="stable")
    new = np.ones(len(o), bool)
    new[1:] = key[o][1:] != key[o][:-1]
    s = np.flatnonzero(new)
    t = p["t_first"][o].astype(np.float64)
    return dict(i=p["i"][o][s].astype(np.int32), j=p["j"][o][s].astype(np.int32),    # int32: 27 B a pair
                true=np.logical_or.reduceat(p["true_close"][o], s),
                notify_j=np.logical_or.reduceat(p["notify_j"][o], s),
                notify_i=np.logical_or.reduceat(p["notify_i"][o], s),
                t_min=np.fmin.reduceat(t, s), t_max=np.fmax.reduceat(t, s))


def _bytes_equal(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), k


def _directed(g):
    """The graph's directed edges grouped by source in the kernels' order (a source's upper edges, then
    its lower ones): indptr, dst, flags, tmin, tmax per directed edge."""
    n, m = g.n, g.indptr[-1]
    up, low = np.diff(g.indptr), np.diff(g.rptr)
    src = np.concatenate([np.repeat(np.arange(n), up), np.repeat(np.arange(n), low)])
    o = np.argsort(src, kind="stable")
    i = np.repeat(np.arange(n), up)                            # the pairs' i; lower edge F + r: (nbr, v)
    v = np.repeat(np.arange(n), low)
    pair = np.concatenate([np.arange(m), np.searchsorted(i * n + g.nbr[:m], g.nbr[m:] * n + v)])
    t, r = g.tmax[pair[m:]], g.rt                              # the lower edges' tmax rounded up
    assert np.array_equal(np.isnan(r), np.isnan(t))
    r, t = r[~np.isnan(t)], t[~np.isnan(t)]
    assert np.all(r >= t) and np.all(np.nextafter(r, np.float32(-np.inf)) < t)
    cols = (g.nbr, g.fl, g.tmin[pair], g.tmax[pair])
    return (np.concatenate([[0], np.cumsum(up + low)]),) + tuple(x[o] for x in cols)


def test_pairs_are_stored_once_and_read_in_the_old_directed_order():
    """Both directions of every flagged pair grouped by source as the directed graph that stored each
    direction (the stable argsort of concatenate([i, j])) had them, from one copy of the pairs."""
    n, full = 400, np.concatenate(_days(seed=7))
    c = collapse_pairs(full, n)
    k = c["true"] | c["notify_j"] | c["notify_i"]
    assert not k.all()
    i, j, tc, nj, ni = (c[x][k] for x in ("i", "j", "true", "notify_j", "notify_i"))
    src, o = np.concatenate([i, j]), np.argsort(np.concatenate([i, j]), kind="stable")
    want = (np.concatenate([[0], np.cumsum(np.bincount(src, minlength=n))]), np.concatenate([j, i])[o],
            np.concatenate([tc + 2 * nj + 4 * ni, tc + 2 * ni + 4 * nj]).astype(np.uint8)[o],
            np.concatenate([c["t_min"][k]] * 2)[o], np.concatenate([c["t_max"][k]] * 2)[o])
    g = pair_graph(c, n)
    for w, x in zip(want, _directed(g)):
        assert np.asarray(w).tobytes() == np.asarray(x, w.dtype).tobytes()
    assert len(g.nbr) == 2 * k.sum() and g.nbytes == 30 * k.sum() + 2 * 8 * (n + 1)


def test_sorted_day_tables_fold_in_place_like_the_collapse():
    """Stored day tables (sorted, one row per pair) are merged as they are, from a PAIR_DTYPE array or a
    mapping of its columns, mixed with tables that need collapsing first: the same collapsed pairs."""
    n, days = 400, _days(seed=8, n_days=5)
    stored = [compact_stream([d], n) for d in days]             # sorted by (i, j): one row per pair kept
    stored = [s[np.r_[True, (np.diff(s["i"]) != 0) | (np.diff(s["j"]) != 0)]] for s in stored]
    assert all(strictly_sorted(s["i"], s["j"]) for s in stored)
    assert not any(strictly_sorted(d["i"], d["j"]) for d in days)
    mixed = [stored[0], {k: stored[1][k] for k in stored[1].dtype.names}, days[2], stored[3], days[4]]
    got = collapse_stream(mixed, n)
    want = _reference_collapse(np.concatenate([stored[0], stored[1], days[2], stored[3], days[4]]), n)
    _bytes_equal(want, got)
    with pytest.raises(ValueError, match="outside 0..399"):
        collapse_stream([{**{k: stored[0][k] for k in stored[0].dtype.names}, "j": stored[0]["j"] + 400}], n)


def test_pair_order_is_the_stable_argsort():
    n, full = 400, np.concatenate(_days())
    assert np.array_equal(pg.pair_order(full["i"], full["j"], n),
                          np.argsort(full["i"] * n + full["j"], kind="stable"))
    days = [d[np.argsort(d["i"] * n + d["j"], kind="stable")] for d in _days(seed=4)]
    runs = np.concatenate(days)                                # sorted runs: merged
    assert np.array_equal(pg.pair_order(runs["i"], runs["j"], n),
                          np.argsort(runs["i"] * n + runs["j"], kind="stable"))
    many = np.concatenate([runs[k::300] for k in range(300)])  # more runs than merged: counting sorts
    assert np.array_equal(pg.pair_order(many["i"], many["j"], n),
                          np.argsort(many["i"] * n + many["j"], kind="stable"))
    c = compact_stream([full], n)                              # sorted input: recognised, identity
    assert np.array_equal(pg.pair_order(c["i"], c["j"], n), np.arange(len(c)))


def test_collapse_and_folds_match_the_reference_byte_for_byte():
    n, days = 400, _days(seed=1)
    full = np.concatenate(days)
    ref = _reference_collapse(full, n)
    _bytes_equal(ref, collapse_pairs(full, n))
    _bytes_equal(ref, collapse_stream(days, n))                # collapsed, folded day by day
    _bytes_equal(ref, collapse_pairs(compact_stream(days, n), n))
    _bytes_equal(collapse_pairs(np.zeros(0, PAIR_DTYPE), n), collapse_stream([], n))
    assert np.array_equal(close_degree(pair_graph(full, n), n), close_degree(full, n))


def test_a_consumed_collapse_builds_the_same_graph_and_is_freed():
    n, full = 400, np.concatenate(_days(seed=3))
    keep, c = pair_graph(collapse_pairs(full, n), n), collapse_pairs(full, n)
    g = pair_graph(c, n, consume=True)
    assert c == {}                                             # emptied: its arrays can be freed
    for x, y in zip(g.arrays, keep.arrays):
        assert x.tobytes() == y.tobytes()
    with pytest.raises(ValueError, match="2\\*\\*31"):
        collapse_pairs(full, 2**31)


def test_f0_edges_in_collapse_order():
    n, full = 400, np.concatenate(_days(seed=2))
    c = collapse_pairs(full, n)
    f0 = np.sort(np.random.default_rng(0).choice(n, 25, replace=False))
    is_f0 = np.zeros(n, bool)
    is_f0[f0] = True
    flagged = c["true"] | c["notify_j"] | c["notify_i"]     # pairs without a flag count nowhere: left out
    assert not flagged.all()
    fi, fj = is_f0[c["i"]] & flagged, is_f0[c["j"]] & flagged
    want = (np.concatenate([c["i"][fi], c["j"][fj]]), np.concatenate([c["j"][fi], c["i"][fj]]),
            np.concatenate([c["true"][fi], c["true"][fj]]),
            np.concatenate([c["notify_j"][fi], c["notify_i"][fj]]))
    for w, g in zip(want, pair_graph(c, n).f0_edges(f0)):
        assert np.array_equal(w, g)


@pytest.mark.parametrize("jitter", [False, True])
def test_one_walk_equals_the_three_f2_passes_for_any_split(jitter):
    n, full = 400, np.concatenate(_days(seed=3, jitter=jitter))
    g = pair_graph(full, n)
    rng = np.random.default_rng(4)
    ranks = np.where(rng.random(n) < 0.3, np.inf, rng.random(n))
    ranks[:50] = 0.5                                           # tied thresholds
    delay = rng.random(n)
    delay[::3] = 1.0                                           # tied delays
    f0 = np.sort(rng.choice(n, 40, replace=False))
    is_f0 = np.zeros(n, bool)
    is_f0[f0] = True
    indptr, dst, flags, tmin, tmax = _directed(g)
    etrue, warn, logs = ((flags & b) != 0 for b in (1, 2, 4))
    args = (indptr, dst.astype(np.int64), etrue)
    thr, dl = f2_thresholds(*args, warn, logs, tmin, tmax, ranks, delay, f0, is_f0)
    ideal = f2_thresholds(*args, etrue, etrue, tmin, tmax, ranks, np.zeros(n), f0, is_f0)[0]
    anyr = f2_thresholds(*args[:2], etrue | warn | logs, warn, logs, tmin, tmax, ranks, np.zeros(n),
                         f0, is_f0)[0]
    assert len(thr) > 100 and np.isfinite(thr).any() and np.isinf(thr).any()
    for parts in (1, 3):          # the index cases split between threads: the same bytes
        got = [np.concatenate(x) for x in zip(*(pg._f2_kernel(g.arrays, ranks, delay, p,
                                                               pg._f2_scratch(n, is_f0))
                                                for p in np.array_split(f0, parts)))]
        assert got[0].tobytes() == thr.tobytes() and got[1].tobytes() == dl.tobytes()
        assert np.sort(got[2]).tobytes() == np.sort(ideal).tobytes()
        assert np.sort(got[3]).tobytes() == np.sort(anyr).tobytes()
    got = g.f2(ranks, delay, f0, is_f0)
    assert got[0].tobytes() == thr.tobytes() and got[1].tobytes() == dl.tobytes()


def test_a_shared_graph_gives_the_curves_of_the_table():
    n, days = 400, _days(seed=5)
    full = np.concatenate(days)
    g = pair_graph(collapse_stream(days, n), n)
    for r in range(3):
        rng = np.random.default_rng(10 + r)
        ranks = np.where(rng.random(n) < 0.2, np.inf, rng.random(n) + 0.01)
        f0 = rng.choice(n, 30, replace=False)
        ph = rng.random(n) * 6
        a, b = OnePass(full, n, ranks, f0, sync_phase_h=ph), OnePass(g, n, ranks, f0, sync_phase_h=ph)
        _bytes_equal(a.evaluate(FINE), b.evaluate(FINE))
        for net in ("traceable", "notified", "ideal"):
            assert np.float64(a.percolation_threshold(net)).tobytes() == \
                np.float64(b.percolation_threshold(net)).tobytes()


def test_networks_percolate_like_the_edge_lists():
    from tracing.core.percolation import newman_ziff, order_from_ranks

    n, full = 400, np.concatenate(_days(seed=6))
    c = collapse_pairs(full, n)
    g = pair_graph(c, n)
    order = order_from_ranks(np.where(np.random.default_rng(7).random(n) < 0.3, np.inf,
                                      np.random.default_rng(8).random(n)))
    notified = c["notify_i"] | c["notify_j"]
    nets = g.percolation(order)
    for name, e in (("", c["true"] & notified), ("notified_", notified), ("ideal_", c["true"])):
        for x, y in zip(newman_ziff(n, c["i"][e], c["j"][e], order), nets[name]):
            assert x.tobytes() == y.tobytes()
        for x, y in zip(nets[name], g.percolation(order, (name,))[name]):     # alone: the same
            assert x.tobytes() == y.tobytes()


def test_graph_of_another_population_is_refused():
    import pytest

    g = pair_graph(np.concatenate(_days(n=50, n_days=1, m=100)), 50)
    with pytest.raises(ValueError, match="PairGraph has 50 agents"):
        OnePass(g, 60, np.ones(60), [0])


def test_pairs_without_any_flag_change_nothing():
    n, days = 400, _days(seed=9)
    full = np.concatenate(days)
    extra = np.zeros(500, PAIR_DTYPE)                      # new pairs, neither close nor notified
    extra["i"], extra["j"] = np.arange(500) % 200, 200 + np.arange(500) % 200
    extra["t_first"] = 1000.0
    seen = np.isin(extra["i"] * n + extra["j"], full["i"] * n + full["j"])
    more = np.concatenate([full, extra[~seen]])
    rng = np.random.default_rng(3)
    ranks = np.where(rng.random(n) < 0.2, np.inf, rng.random(n) + 0.01)
    f0 = rng.choice(n, 30, replace=False)
    _bytes_equal(OnePass(full, n, ranks, f0).evaluate(FINE), OnePass(more, n, ranks, f0).evaluate(FINE))
    assert pair_graph(more, n).nbytes == pair_graph(full, n).nbytes


def test_curves_unit_reads_six_columns_one_row_group_at_a_time(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tracing.sweep.store import read_pair_columns
    from tracing.sweep.tasks import _CURVES_COLUMNS

    n, day = 400, compact_stream(_days(seed=10, n_days=1), 400)
    day = day[np.r_[True, (np.diff(day["i"]) != 0) | (np.diff(day["j"]) != 0)]]     # a stored day
    path = tmp_path / "day.parquet"
    pq.write_table(pa.table({k: np.ascontiguousarray(day[k]) for k in day.dtype.names}), path,
                   row_group_size=500)
    assert pq.ParquetFile(path).num_row_groups > 2
    cols = read_pair_columns(path, _CURVES_COLUMNS)
    assert list(cols) == ["i", "j", "t_first", "true_close", "notify_j", "notify_i"]
    assert cols["i"].dtype == cols["j"].dtype == np.int32
    for k, x in cols.items():
        assert np.array_equal(x, day[k], equal_nan=True)
    _bytes_equal(collapse_pairs(day, n), collapse_stream([cols], n))
    bad = day.copy()
    bad["j"][-1] = 2**31
    pq.write_table(pa.table({k: np.ascontiguousarray(bad[k]) for k in bad.dtype.names}), path)
    with pytest.raises(ValueError, match="day.parquet: agent ids outside 0..2147483647"):
        read_pair_columns(path, _CURVES_COLUMNS)
