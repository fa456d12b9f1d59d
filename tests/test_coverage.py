"""One-pass coverage curves: p^2 law, household clustering, and exact agreement with brute force.

Statistical tolerances: each replicate draws new ranks and index cases; the replicate mean's standard
error is estimated from the replicate spread (contacts of one index case share nodes, so a binomial
error over contacts would be too small), and the test allows 4 standard errors around the exact
expectation k(k-1)/(n(n-1)) for k = floor(p n) adopters drawn without replacement (= p^2 - O(1/n)).
"""
import numpy as np
import pytest

from conftest import data_path
from tracing.contacts import pairs_from_contacts, read_contacts
from tracing.core.coverage import OnePass, coverage_at, coverage_curve, sample_index_cases
from tracing.core.pairs import PAIR_DTYPE
from sim.strategies import priorities

GRID = np.array([0.2, 0.3, 0.5, 0.6, 0.8])


def _pairs_from_edges(i, j, *, true=None, notify=True, t=np.nan, day=0):
    i, j = np.asarray(i), np.asarray(j)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = np.unique(np.stack([lo, hi], 1)[lo != hi], axis=0)
    p = np.zeros(len(key), PAIR_DTYPE)
    p["i"], p["j"], p["day"] = key[:, 0], key[:, 1], day
    p["t_first"] = t
    p["true_close"] = True if true is None else true
    p["notify_i"] = p["notify_j"] = notify
    p["minutes"] = 20
    p["att"] = np.nan
    return p


def _replicates(pairs, n, population, strategy, k_f0, reps, seed):
    out = []
    for ss in np.random.SeedSequence(seed).spawn(reps):
        rng = np.random.default_rng(ss)
        ranks = priorities(strategy, population, rng)
        f0 = sample_index_cases(n, k_f0, rng)
        out.append(coverage_curve(pairs, n, ranks, f0, GRID)["f1_coverage"])
    return np.array(out)


def _assert_p2(cov, n):
    k = np.floor(GRID * n + 1e-9)
    expect = k * (k - 1) / (n * (n - 1))
    se = cov.std(axis=0, ddof=1) / np.sqrt(len(cov))
    assert np.all(np.abs(cov.mean(axis=0) - expect) < 4 * se + 1e-12), (cov.mean(0), expect, se)
    assert np.all(se < 0.02)  # the test has power: the band is narrow


def test_uniform_perfect_detection_gives_p_squared_on_sociopatterns():
    c, labels = read_contacts(data_path("sociopatterns", "highschool_thiers13",
                                        "HighSchool2013_proximity_net.csv.gz"),
                              "sociopatterns", return_labels=True)
    pairs = pairs_from_contacts(c)
    n = len(labels)
    _assert_p2(_replicates(pairs, n, n, "uniform", 60, 40, 11), n)


def test_uniform_perfect_detection_gives_p_squared_on_random_graph():
    n = 3000
    rng = np.random.default_rng(5)
    pairs = _pairs_from_edges(rng.integers(0, n, 12000), rng.integers(0, n, 12000))
    _assert_p2(_replicates(pairs, n, n, "uniform", 300, 30, 12), n)


def test_household_adoption_beats_p_squared_on_household_network():
    n_hh, size = 800, 4
    n = n_hh * size
    hh = np.repeat(np.arange(n_hh), size)
    a, b = np.triu_indices(size, 1)
    wi = (np.arange(n_hh)[:, None] * size + a).ravel()
    wj = (np.arange(n_hh)[:, None] * size + b).ravel()
    rng = np.random.default_rng(8)
    oi, oj = rng.integers(0, n, n), rng.integers(0, n, n)  # some contacts outside the household
    pairs = _pairs_from_edges(np.concatenate([wi, oi]), np.concatenate([wj, oj]))
    pop = {"household": hh}
    cov = _replicates(pairs, n, pop, "household", 300, 20, 13)
    se = cov.std(axis=0, ddof=1) / np.sqrt(len(cov))
    assert np.all(cov.mean(axis=0) > GRID ** 2 + 4 * se)


def _random_case(seed, n=60, m=400, days=3):
    rng = np.random.default_rng(seed)
    i, j = rng.integers(0, n, m), rng.integers(0, n, m)
    keep = i != j
    lo, hi = np.minimum(i, j)[keep], np.maximum(i, j)[keep]
    p = np.zeros(len(lo), PAIR_DTYPE)
    p["i"], p["j"] = lo, hi
    p["day"] = rng.integers(0, days, len(lo))
    p["t_first"] = np.where(rng.random(len(lo)) < 0.1, np.nan,
                            p["day"] * 86400.0 + rng.random(len(lo)) * 86400)
    p["true_close"] = rng.random(len(lo)) < 0.5
    p["notify_i"] = rng.random(len(lo)) < 0.7
    p["notify_j"] = rng.random(len(lo)) < 0.7
    # one row per (pair, day)
    _, first = np.unique(np.stack([p["i"], p["j"], p["day"]], 1), axis=0, return_index=True)
    p = p[np.sort(first)]
    ranks = priorities("uniform", n, rng)
    ranks[rng.random(n) < 0.1] = np.inf  # some never adopt
    f0 = sample_index_cases(n, 12, rng)
    phases = rng.random(n) * 6
    return p, n, ranks, f0, phases


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_pass_equals_per_level_exactly(seed):
    pairs, n, ranks, f0, ph = _random_case(seed)
    op = OnePass(pairs, n, ranks, f0, sync_phase_h=ph)
    levels = np.concatenate([np.unique(ranks[np.isfinite(ranks)])[::5], [0.0, 0.33, 1.0]])
    curve = op.evaluate(levels)
    assert op.n_f2_true > 0
    for k, p in enumerate(levels):
        brute = coverage_at(p, pairs, n, ranks, f0, sync_phase_h=ph)
        for name, v in brute.items():
            got = curve[name][k]
            if np.isnan(v):
                assert np.isnan(got), (name, p)
            else:
                assert got == pytest.approx(v, rel=1e-12, abs=1e-12), (name, p, got, v)


def test_time_order_excludes_earlier_second_hop():
    # a=0 meets b=1 at t=100; b met c=2 before (t=50) and d=3 after (t=200): only d is second-degree
    p = np.zeros(3, PAIR_DTYPE)
    p["i"], p["j"], p["t_first"] = [0, 1, 1], [1, 2, 3], [100.0, 50.0, 200.0]
    p["true_close"] = p["notify_i"] = p["notify_j"] = True
    op = OnePass(p, 4, np.array([0.25, 0.5, 0.75, 1.0]), [0])
    assert op.n_f1_true == 1 and op.n_f2_true == 1
    r = op.evaluate([0.5, 0.99, 1.0])
    assert r["f2_coverage"].tolist() == [0.0, 0.0, 1.0]
    assert r["f1_coverage"].tolist() == [1.0, 1.0, 1.0]


def test_input_validation():
    p = _pairs_from_edges([0], [1])
    with pytest.raises(ValueError, match="ranks"):
        OnePass(p, 3, np.array([0.5, 1.0]), [0])
    with pytest.raises(ValueError, match="index cases"):
        OnePass(p, 2, np.array([0.5, 1.0]), [5])


def test_thresholds_crossing_peak_and_bootstrap():
    from tracing.core.thresholds import compute_thresholds, crossing
    g = np.linspace(0, 1, 101)
    assert crossing(g, g ** 2, 0.5) == pytest.approx(np.sqrt(0.5), abs=2e-3)
    rng = np.random.default_rng(0)
    f1 = np.array([(g * s) ** 2 for s in rng.uniform(0.95, 1.05, 30)])
    chi = np.array([np.exp(-((g - c) / 0.05) ** 2) for c in rng.normal(0.2, 0.01, 30)])
    th = compute_thresholds(g, f1, chi, target=0.5, seed=1)
    pc, ct = th["percolation"], th["coverage_target"]
    assert pc["ci"][0] <= pc["adoption"] <= pc["ci"][1] and abs(pc["adoption"] - 0.2) <= 0.02
    assert ct["ci"][0] <= ct["adoption"] <= ct["ci"][1]
    assert abs(ct["adoption"] - np.sqrt(0.5)) < 0.03
    never = compute_thresholds(g, 0.3 * f1, chi, target=0.5)["coverage_target"]
    assert never["adoption"] is None and "never reaches 0.5" in never["reason"]
