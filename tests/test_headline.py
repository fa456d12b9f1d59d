"""Issue 12: the answer a health official can trust -- ideal rule, traceable network, ownership,
false-positive burden, decomposition."""
import numpy as np
import pytest

from ble.schema import GROUND_TRUTH_DTYPE, N_ATT_BUCKETS, WINDOW_DTYPE
from tracing.core.rules import classify, daily_sums, load_rule
from tracing.pipeline import pairs_from_windows


def _windows(observers, sources, minutes):
    w = np.zeros(len(observers), dtype=WINDOW_DTYPE)
    w["observer"] = observers
    w["t_start"] = 100.0
    w["t_end"] = 100.0 + 60.0 * np.asarray(minutes, dtype=float)
    w["duration_s"] = 60.0 * np.asarray(minutes, dtype=float)
    w["n_scans"] = 1
    secs = np.zeros((len(observers), N_ATT_BUCKETS))
    secs[:, 3] = w["duration_s"]
    w["att_secs"] = secs
    w["att_typical"] = w["att_min"] = 45.0
    w["rssi_mean"] = w["rssi_max"] = -60.0
    return w, np.asarray(sources, dtype=np.int64)


def test_ideal_rule_notifies_exactly_the_true_close_contacts():
    rule = load_rule("ideal")
    assert rule.kind == "ideal"
    # 1 sees 0 (close), 2 sees 0 (far: not close), 3 sees 1 (close); (1, 4) close but never detected
    w, src = _windows([1, 2, 3], [0, 0, 1], [20, 30, 16])
    assert not classify(daily_sums(w, src, 0), rule).any()   # radio data alone notifies nobody
    gt = np.zeros(3, dtype=GROUND_TRUTH_DTYPE)
    gt["i"], gt["j"], gt["day"] = [0, 1, 1], [1, 3, 4], 0
    gt["minutes_close"] = [20, 16, 30]
    pairs = pairs_from_windows(w, src, 0, gt, rule)
    assert pairs[["i", "j"]].tolist() == [(0, 1), (0, 2), (1, 3), (1, 4)]
    assert pairs["true_close"].tolist() == [True, False, True, True]
    assert np.array_equal(pairs["notify_i"], pairs["true_close"])
    assert np.array_equal(pairs["notify_j"], pairs["true_close"])
    # precision exactly 1: every notified pair is truly close
    notified = pairs["notify_i"] | pairs["notify_j"]
    assert notified.sum() == 3 and pairs["true_close"][notified].all()
    # the same windows under bluezone notify the far pair too
    bz = pairs_from_windows(w, src, 0, gt, "bluezone")
    assert bz["notify_j"].tolist() == [True, True, True, False]


def test_owner_share_overrides_ownership_keeping_the_gradient():

    from sim.population import make_population, owner_share_probability
    from sim.scenario import preset
    base = preset("lang-son", 0.005)
    for share in (0.775, 0.5):
        scn = base.with_overrides({"phones": {"owner_share": share}})
        pop = make_population(scn, np.random.default_rng(3))
        n = pop.has_phone.size
        assert abs(pop.has_phone.mean() - share) < 4 * np.sqrt(share * (1 - share) / n)
        # the gradient is kept: 18-36 own more often than 60+
        a = pop.age
        assert pop.has_phone[(a >= 18) & (a <= 36)].mean() > pop.has_phone[a >= 60].mean()
    p = np.array([0.1, 0.2, 0.4])
    q = owner_share_probability(p, 0.35)
    assert q.mean() == pytest.approx(0.35) and np.allclose(q / p, q[0] / p[0])
    with pytest.raises(ValueError, match="phones.owner_share"):
        base.with_overrides({"phones": {"owner_share": 1.2}})
    with pytest.raises(ValueError, match="phones.owner_share"):
        base.with_overrides({"phones": {"owner_share": "half"}})


# ----------------------------------------------------------------------------------------------------
# traceable network, ideal reference, burden, decomposition
# ----------------------------------------------------------------------------------------------------
from tracing.core.coverage import OnePass, coverage_at, sample_index_cases  # noqa: E402
from tracing.core.pairs import PAIR_DTYPE  # noqa: E402


def _pairs(edges, close, notified):
    p = np.zeros(len(edges), PAIR_DTYPE)
    e = np.asarray(edges)
    p["i"], p["j"] = e.min(1), e.max(1)
    p["t_first"] = np.nan
    p["true_close"] = close
    p["notify_i"] = p["notify_j"] = notified
    return p[np.lexsort((p["j"], p["i"]))]


def test_traceable_network_is_close_and_notified_on_a_hand_made_network():
    #   0-1 close+notified, 1-2 close only, 2-3 notified only, 3-4 and 4-5 close+notified
    pairs = _pairs([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)], [1, 1, 0, 1, 1], [1, 0, 1, 1, 1])
    ranks = np.arange(1, 7) / 6.0
    op = OnePass(pairs, 6, ranks, [0])
    got = op.evaluate([1.0])
    assert got["largest_component"][0] == 3 / 6           # {3, 4, 5}
    assert got["notified_largest_component"][0] == 4 / 6  # {2, 3, 4, 5}
    assert got["ideal_largest_component"][0] == 3 / 6     # {0, 1, 2} and {3, 4, 5}
    brute = coverage_at(1.0, pairs, 6, ranks, [0])
    for m in ("largest_component", "notified_largest_component", "ideal_largest_component"):
        assert brute[m] == got[m][0]
    # on a random network where most notified links are not close, the traceable network
    # percolates far later than the notified one (the audit's mistake)
    rng = np.random.default_rng(5)
    n = 3000
    close = rng.integers(0, n, (2 * n, 2))          # mean close degree 4
    noise = rng.integers(0, n, (12 * n, 2))         # mean non-close notified degree 24
    e = np.vstack([close, noise])
    keep = e[:, 0] != e[:, 1]
    cl = np.r_[np.ones(len(close), bool), np.zeros(len(noise), bool)][keep]
    nt = np.r_[rng.random(len(close)) < 0.5, np.ones(len(noise), bool)][keep]   # half the close notified
    e = e[keep]
    key = np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1])
    _, first = np.unique(key, return_index=True)
    pairs = _pairs(e[first], cl[first], nt[first])
    ranks = rng.permutation(n) / n + 1.0 / n
    op = OnePass(pairs, n, ranks, sample_index_cases(n, 50, rng))
    p_tr, p_nt, p_id = (op.percolation_threshold(k) for k in ("traceable", "notified", "ideal"))
    # Erdős–Rényi site thresholds 1/c: traceable c = 2 -> 0.5, close c = 4 -> 0.25, notified c = 26
    assert 0.35 < p_tr < 0.65 and 0.15 < p_id < 0.35 and p_nt < 0.08


def test_ideal_precision_is_one_and_burden_zero():
    rng = np.random.default_rng(1)
    n = 400
    e = rng.integers(0, n, (1600, 2))
    e = e[e[:, 0] != e[:, 1]]
    key = np.minimum(e[:, 0], e[:, 1]) * n + np.maximum(e[:, 0], e[:, 1])
    _, first = np.unique(key, return_index=True)
    e = e[first]
    close = rng.random(len(e)) < 0.3
    ideal = _pairs(e, close, close)          # what the ideal rule's pair table looks like
    noisy = _pairs(e, close, np.ones(len(e), bool))
    ranks = rng.permutation(n) / n + 1.0 / n
    f0 = sample_index_cases(n, 60, rng)
    grid = np.linspace(0.05, 1, 20)
    a = OnePass(ideal, n, ranks, f0).evaluate(grid)
    ok = np.isfinite(a["f1_precision"])
    assert ok.sum() > 10 and np.all(a["f1_precision"][ok] == 1.0)
    assert np.all(a["fp_burden"][np.isfinite(a["fp_burden"])] == 0.0)
    assert np.array_equal(a["f1_coverage"], a["f1_coverage_ideal"])
    b = OnePass(noisy, n, ranks, f0).evaluate(grid)
    # every contact notified: same coverage as ideal, burden = non-close per close notified
    assert np.array_equal(b["f1_coverage"], a["f1_coverage"])
    k = -1
    br = coverage_at(grid[k], noisy, n, ranks, f0)
    assert b["fp_burden"][k] == br["fp_burden"] > 1.5      # ~ 0.7 / 0.3 non-close per close
    assert np.all(b["f2_fp_burden"][np.isfinite(b["f2_fp_burden"])] > 0)


def test_high_school_traceable_threshold(shared_data):
    from tracing.contacts import pairs_from_contacts, read_contacts
    from tracing.core.thresholds import peak
    from tracing.sweep.replicate import FINE_GRID
    f = shared_data / "sociopatterns" / "highschool_thiers13" / "HighSchool2013_proximity_net.csv.gz"
    contacts, labels = read_contacts(f, format="sociopatterns", return_labels=True)
    n = len(labels)
    pairs = pairs_from_contacts(contacts, close_minutes=15.0)
    chi, chi_n = [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        op = OnePass(pairs, n, rng.permutation(n) / n + 1.0 / n, sample_index_cases(n, 30, rng))
        c = op.evaluate(FINE_GRID)
        chi.append(c["mean_finite_cluster"])
        chi_n.append(c["notified_mean_finite_cluster"])
    p_tr = peak(FINE_GRID, np.mean(chi, axis=0))
    p_nt = peak(FINE_GRID, np.mean(chi_n, axis=0))
    assert 0.6 < p_tr < 0.9, p_tr
    assert p_nt < 0.2, p_nt      # the all-notified network's point: the audit's 0.07


def test_phone_owners_set_the_adoption_that_can_be_achieved():
    from sim.population import make_population
    from sim.scenario import preset
    from sim.strategies import priorities
    got = {}
    for share in (0.775, 0.5):
        scn = preset("lang-son", 0.01).with_overrides({"phones": {"owner_share": share}})
        pop = make_population(scn, np.random.default_rng(7))
        n = pop.has_phone.size
        rng = np.random.default_rng(8)
        ranks = priorities("uniform", {"has_phone": pop.has_phone}, rng, phones_only=True)
        op = OnePass(_pairs([(0, 1)], [1], [1]), n, ranks, [0])
        got[share] = (op.evaluate([0.5, 0.75])["adoption_achieved"], pop.has_phone.mean(), n)
    a, s, n = got[0.775]
    assert abs(a[1] - 0.75) < 1.0 / n and abs(a[0] - 0.5) < 1.0 / n   # 0.75 reached
    a, s, n = got[0.5]
    assert a[1] == s and abs(s - 0.5) < 4 * np.sqrt(0.25 / n)           # saturates at the owners


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """One replicate of Lạng Sơn ×0.001 for 1 day with half the population owning a phone, index
    cases by close contacts."""
    from tracing.cli import main
    out = tmp_path_factory.mktemp("sw")
    rc = main(["sweep", "--preset", "lang-son", "--scale", "0.001", "--days", "1", "--replicates", "1",
               "--adoption", "0.1,0.3,0.7", "--phone-owners", "0.5", "--index-cases-from", "contacts",
               "--out", str(out), "--no-progress", "--seed", "2"])
    assert rc == 0
    return out


def test_sweep_phone_owners_adoption_achieved_and_answer(tiny_sweep, capsys):
    import csv
    import json
    rows = list(csv.DictReader((tiny_sweep / "summary.csv").open()))
    meta = json.loads((tiny_sweep / "meta.json").read_text())
    share = meta["owner_share"]
    assert abs(share - 0.5) < 4 * np.sqrt(0.25 / meta["n"])
    ach = [float(r["adoption_achieved_mean"]) for r in rows]
    assert abs(ach[1] - 0.3) < 2.0 / meta["n"] and ach[2] == pytest.approx(share)   # 0.7 saturates
    th = json.loads((tiny_sweep / "threshold.json").read_text())
    assert {"percolation", "notified_percolation", "ideal_percolation", "coverage_target"} <= set(th)
    assert th["percolation"]["window_days"] == 1 and "1 day(s)" in th["percolation"]["definition"]
    assert meta["index_from"] == "contacts"
    report = (tiny_sweep / "report.md").read_text()
    # a saturated row is never labelled with the requested level
    assert "60% of the population cannot run the app here" in report
    assert "(saturated: every owner)" in report
    assert "in proportion to their number of true close contacts" in report
    assert "p² = 9% for uniform" not in report and "giant component adds no reach" not in report


def test_decomposition_matches_measured_f1_on_a_simulated_province(tiny_sweep):
    import warnings
    from sim.runfolder import RunFolder
    from sim.strategies import priorities
    from tracing.pipeline import pairs_from_run
    run = tiny_sweep / "runs" / "rep-000"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pairs = pairs_from_run(run, "bluezone")
    pop = RunFolder(run).population()
    n = len(pop["has_phone"])
    diff = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        ranks = priorities("uniform", pop, rng, phones_only=True)
        c = OnePass(pairs, n, ranks, sample_index_cases(n, 60, rng)).evaluate([0.3])
        diff.append(c["f1_coverage"][0] - c["f1_decomposition"][0])
        assert 0 < c["rule_sensitivity"][0] <= 1 and 0 < c["owner_pair_share"][0] < 1
    diff = np.asarray(diff)
    se = diff.std(ddof=1) / np.sqrt(len(diff))
    assert abs(diff.mean()) < 4 * se + 1e-3, (diff.mean(), se)


def test_coverage_notify_minutes_models_a_duration_filtering_app(tmp_path):
    import csv
    from tracing.cli import main
    f = tmp_path / "contacts.csv"
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, 60, 400), rng.integers(0, 60, 400)
    keep = i != j
    lines = ["i,j,t,duration_s"] + [f"p{a},p{b},{t:.0f},{d:.0f}" for a, b, t, d in
                                     zip(i[keep], j[keep], rng.random(400)[keep] * 8e4,
                                         rng.random(400)[keep] * 1800)]
    f.write_text("\n".join(lines) + "\n")
    prec = {}
    for m in ("0", "15"):
        out = tmp_path / f"o{m}"
        assert main(["coverage", "--contacts", str(f), "--out", str(out), "--replicates", "2",
                     "--adoption", "0.5,1", "--no-progress", "--notify-minutes", m]) == 0
        rows = list(csv.DictReader((out / "summary.csv").open()))
        prec[m] = [float(r["f1_precision_mean"]) for r in rows]
        burden = [float(r["fp_burden_mean"]) for r in rows]
        if m == "15":     # notify exactly at the close-contact duration: the ideal rule
            assert prec[m] == [1.0, 1.0] and burden == [0.0, 0.0]
            assert [r["f1_coverage_mean"] for r in rows] == [r["f1_coverage_ideal_mean"] for r in rows]
    assert max(prec["0"]) < 0.9
    assert main(["coverage", "--contacts", str(f), "--out", str(tmp_path / "bad"), "--no-progress",
                 "--notify-minutes", "-1"]) == 2


def test_parse_owner_shares():
    from tracing.sweep.plan import parse_owner_shares
    assert parse_owner_shares(0.775) == [0.775]
    assert parse_owner_shares("preset,0.5") == [None, 0.5]
    assert parse_owner_shares(None) == [None]
    for bad in ("1.5", "0", "half"):
        with pytest.raises(ValueError, match="--phone-owners"):
            parse_owner_shares(bad)
