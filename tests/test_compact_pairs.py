"""Memory flat in days: a run's day tables folded into a compact pair table (<= 2 rows per pair) give
exactly the collapsed pairs, the one-pass curves and the close-contact degrees of the full table."""
from __future__ import annotations

import numpy as np

from sim.run import simulate
from sim.scenario import preset
from tracing.core.coverage import OnePass, close_degree, collapse_pairs, compact_pairs, compact_stream
from tracing.core.pairs import PAIR_DTYPE
from tracing.pipeline import pairs_from_run


def _days(n=300, n_days=5, m=2000, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for d in range(n_days):
        a, b = rng.integers(0, n, m), rng.integers(0, n, m)
        k = a != b
        p = np.zeros(int(k.sum()), PAIR_DTYPE)
        p["i"], p["j"], p["day"] = np.minimum(a[k], b[k]), np.maximum(a[k], b[k]), d
        t = d * 86400 + rng.random(len(p)) * 86400
        p["t_first"] = np.where(rng.random(len(p)) < 0.2, np.nan, t)        # some unknown times
        for f in ("true_close", "notify_j", "notify_i"):
            p[f] = rng.random(len(p)) < 0.3
        out.append(p)
    return out


def _same(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        assert np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True), k


def test_compact_table_collapses_like_the_full_one():
    n, days = 300, _days()
    full = np.concatenate(days)
    c = compact_pairs(full, n)
    _same(collapse_pairs(full, n), collapse_pairs(c, n))
    key = c["i"] * n + c["j"]
    assert np.all(np.diff(key) >= 0)                                      # sorted by (i, j)
    assert np.bincount(np.unique(key, return_inverse=True)[1]).max() <= 2
    assert len(c) < len(full)
    folded = compact_stream(days, n)                                     # one day at a time
    _same(collapse_pairs(full, n), collapse_pairs(folded, n))
    assert np.array_equal(close_degree(full, n), close_degree(folded, n))
    assert len(compact_stream([], n)) == 0


def test_one_pass_curves_identical_on_the_folded_table():
    n, days = 300, _days(seed=3)
    rng = np.random.default_rng(1)
    ranks = np.where(rng.random(n) < 0.2, np.inf, rng.random(n) + 0.01)
    f0 = rng.choice(n, 30, replace=False)
    grid = np.linspace(0, 1, 21)
    a = OnePass(np.concatenate(days), n, ranks, f0)
    b = OnePass(compact_stream(days, n), n, ranks, f0)
    _same(a.evaluate(grid), b.evaluate(grid))
    assert a.percolation_threshold() == b.percolation_threshold()


def test_pairs_from_run_compact_matches_the_full_table(tmp_path):
    run = simulate(preset("lang-son", 0.0005), tmp_path / "run", seed=2, days=2, progress=False)
    full = pairs_from_run(run, "bluezone")
    comp = pairs_from_run(run, "bluezone", compact=True)
    n = int(max(full["j"].max(), 1)) + 1
    assert len(comp) < len(full)
    _same(collapse_pairs(full, n), collapse_pairs(comp, n))

