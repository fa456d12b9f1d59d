"""Close-contact rules: packaged TOML rules, the generic evaluators, daily sums, config fidelity."""
import json
import re

import numpy as np
import pytest

from ble.schema import ATT_EDGES, N_ATT_BUCKETS, WINDOW_DTYPE
from tests.conftest import data_path
from tracing.core import rules as R
from tracing.core.rules import DAILY_DTYPE, RULES, classify, daily_sums, evaluate, load_rule


def bucket(att_db: float) -> int:
    """Index in att_secs of an attenuation (dB): edges[k-1] < a <= edges[k]."""
    return int(np.searchsorted(ATT_EDGES, att_db, side="left"))


def make_windows(rows):
    """rows: (observer, t_start_s, [(minutes, att_db), ...], rssi_max_dbm)."""
    w = np.zeros(len(rows), dtype=WINDOW_DTYPE)
    for k, (obs, t0, parts, rssi_max) in enumerate(rows):
        secs = np.zeros(N_ATT_BUCKETS)
        num = 0.0
        for minutes, att in parts:
            secs[bucket(att)] += 60.0 * minutes
            num += 60.0 * minutes * att
        dur = secs.sum()
        w[k]["observer"] = obs
        w[k]["rid"] = 1000 + k
        w[k]["t_start"] = t0
        w[k]["t_end"] = t0 + dur
        w[k]["n_scans"] = max(1, int(dur // 300))
        w[k]["duration_s"] = dur
        w[k]["rssi_mean"] = rssi_max - 3
        w[k]["rssi_max"] = rssi_max
        w[k]["tx_power"] = -10.0
        w[k]["att_typical"] = num / dur if dur else np.nan
        w[k]["att_min"] = min(a for _, a in parts) if parts else np.nan
        w[k]["att_secs"] = secs
    return w


def one_day(parts, rssi_max=-60.0):
    """Daily sums of a single (observer 1, source 0, day 0) made of one window per part."""
    w = make_windows([(1, 3600.0 + 2000 * k, [p], rssi_max) for k, p in enumerate(parts)])
    d = daily_sums(w, np.zeros(len(w), dtype=np.int64), 0)
    assert len(d) == 1
    return d


def test_packaged_rules_load():
    assert set(RULES) == {"bluezone", "gaen-de", "gaen-ch", "gaen-it", "distance", "ideal", "cwa-v2"}
    kinds = {n: load_rule(n).kind for n in RULES}
    assert kinds == {"bluezone": "any_match", "gaen-de": "v1_risk_score", "gaen-ch": "weighted_attenuation",
                     "gaen-it": "v1_risk_score", "distance": "distance_duration", "ideal": "ideal",
                     "cwa-v2": "gaen_v2"}
    for n in RULES:
        r = load_rule(n)
        assert r.description and r.source, n
    assert load_rule("bluezone").options == ("2m15", "rssi-88")


def test_att_edges_hold_every_threshold():
    for t in (50, 55, 63, 70, 10, 15, 27, 33, 51, 73):
        assert t in ATT_EDGES
    assert np.allclose(R.GAEN_V1_ATT_EDGES, [10, 15, 27, 33, 51, 63, 73])


def test_gaen_ch_weighted_minutes():
    rule = load_rule("gaen-ch")
    d = one_day([(10, 45.0), (12, 52.0)])            # 10 x 1.0 + 12 x 0.5 = 16 weighted min
    notify, minutes, score = evaluate(d, rule)
    assert notify.tolist() == [True]
    assert minutes[0] == pytest.approx(16.0)
    d = one_day([(10, 45.0), (9, 52.0)])             # 14.5 weighted min
    assert classify(d, rule).tolist() == [False]
    d = one_day([(14, 50.0), (1, 60.0), (3, 54.9)])  # 50 dB is in the full-weight class: 15.5
    assert evaluate(d, rule).minutes[0] == pytest.approx(15.5)
    assert classify(d, rule).tolist() == [True]
    d = one_day([(120, 56.0)])                        # > 55 dB counts nothing
    assert classify(d, rule).tolist() == [False]


def test_gaen_de_cwa_formula():
    rule = load_rule("gaen-de")
    # 14 min <= 55 dB + 2 min in (55, 63]: weighted 15; risk 1*5*1*5 = 25 -> score 25/25*15 = 15 (HIGH)
    res = evaluate(one_day([(14, 40.0), (2, 60.0)]), rule)
    assert res.notify.tolist() == [True] and res.score[0] == pytest.approx(15.0)
    assert res.minutes[0] == pytest.approx(15.0)
    # 14.5 weighted minutes -> 14.5 < 15
    res = evaluate(one_day([(14, 40.0), (1, 60.0)]), rule)
    assert res.notify.tolist() == [False] and res.score[0] == pytest.approx(14.5)
    # exactly 10 minutes: duration level 0 (gt_5_le_10 not set) -> risk 0 -> no warning
    assert classify(one_day([(10, 40.0)]), rule).tolist() == [False]
    # 10.5 min: level 5 gives 10.5 (LOW); transmission level 8 gives 40/25*10.5 = 16.8 (HIGH)
    d = one_day([(10.5, 40.0)])
    assert classify(d, rule).tolist() == [False]
    res = evaluate(d, rule.with_params(transmission_level=8))
    assert res.notify.tolist() == [True] and res.score[0] == pytest.approx(16.8)
    # transmission level 2: risk 5*2 = 10 < minRiskScore 11 -> exposure dropped, however long
    assert classify(one_day([(60, 40.0)]), rule.with_params(transmission_level=2)).tolist() == [False]
    # each attenuation class capped at 30 min: 40 min low + 40 min mid = 30 + 15 = 45
    res = evaluate(one_day([(40, 40.0), (40, 60.0)]), rule)
    assert res.minutes[0] == pytest.approx(45.0) and res.score[0] == pytest.approx(45.0)
    # attenuation above 73 dB scores 0
    assert classify(one_day([(60, 80.0)]), rule).tolist() == [False]


def test_gaen_it_v1_score():
    rule = load_rule("gaen-it")
    res = evaluate(one_day([(16, 60.0)]), rule)      # att score 5 x duration score 5 = 25 >= 20
    assert res.notify.tolist() == [True] and res.score[0] == 25
    assert classify(one_day([(15, 60.0)]), rule).tolist() == [False]   # <= 15 min scores 0
    assert classify(one_day([(40, 74.0)]), rule).tolist() == [False]   # > 73 dB scores 0
    assert classify(one_day([(10, 20.0), (10, 72.0)]), rule).tolist() == [True]  # mean 46 dB, 20 min
    # the notification threshold is the config's exposure_info_minimum_risk_score
    assert classify(one_day([(16, 60.0)]), rule.with_params(notify_min_score=26)).tolist() == [False]


def test_bluezone_any_match_and_rssi_option():
    d = np.concatenate([one_day([(0.5, 70.0)], rssi_max=-90.0), one_day([(0.5, 70.0)], rssi_max=-85.0)])
    assert classify(d, "bluezone").tolist() == [True, True]
    assert classify(d, "bluezone:rssi-88").tolist() == [False, True]
    assert classify(d, load_rule("bluezone", min_rssi_dbm=-80.0)).tolist() == [False, False]


@pytest.fixture
def fake_distance(monkeypatch):
    """A log-distance estimate: attenuation 40 dB at 1 m, 20 dB/decade (a = 40 + 20 log10 d)."""
    def estimate_distance(rssi=None, attenuation=None, params=None):
        a = np.asarray(attenuation if attenuation is not None else -np.asarray(rssi) - 10.0, dtype=float)
        d = 10 ** ((a - 40.0) / 20.0)
        return d, d / 2, d * 2
    monkeypatch.setattr(R, "estimate_distance", estimate_distance)
    monkeypatch.setattr(R, "_CACHE", {})
    return estimate_distance


def test_distance_rule_with_fake_estimator(fake_distance):
    a_star = R.attenuation_at_distance(2.0)
    assert a_star == pytest.approx(40 + 20 * np.log10(2.0), abs=0.02)
    rule = load_rule("distance")
    assert classify(one_day([(16, 30.0)]), rule).tolist() == [True]    # (27, 33] dB: all within 2 m
    assert classify(one_day([(14, 30.0)]), rule).tolist() == [False]
    assert classify(one_day([(60, 52.0)]), rule).tolist() == [False]   # (51, 55]: beyond 2 m
    # bucket (33, 50] straddles a* = 46.02 dB: counts by the linear fraction of its width
    res = evaluate(one_day([(34, 40.0)]), rule)
    assert res.minutes[0] == pytest.approx(34 * (a_star - 33.0) / 17.0, rel=1e-3)
    assert classify(one_day([(16, 30.0)]), "bluezone:2m15").tolist() == [True]
    # without TX power: the scan-weighted mean RSSI decides (fake: a = -rssi - 10)
    d = one_day([(20, 30.0)])
    d["att_mean"] = np.nan
    d["rssi_mean"] = -52.0                            # -> 42 dB -> 1.26 m
    assert classify(d, rule).tolist() == [True]
    d["rssi_mean"] = -70.0                            # -> 60 dB -> 10 m
    assert classify(d, rule).tolist() == [False]


def test_distance_rule_with_real_estimator():
    """ble.distance's log-distance ML estimate: a*(d) = tx - ref_1m + 10 n log10(d)."""
    import dataclasses
    from ble.radio import default_params
    p = default_params()
    for d in (1.0, 2.0, 3.0):
        assert R.attenuation_at_distance(d) == pytest.approx(
            p.tx_dbm - p.ref_rssi_1m + 10 * p.exponent * np.log10(d), abs=0.02)
    steep = dataclasses.replace(p, exponent=2.0)
    a2 = R.attenuation_at_distance(2.0, steep)
    assert a2 == pytest.approx(p.tx_dbm - p.ref_rssi_1m + 20 * np.log10(2.0), abs=0.02)
    rule = load_rule("distance")
    a_star = R.attenuation_at_distance(2.0)
    near = one_day([(20, a_star - 10.0)])
    far = one_day([(20, a_star + 10.0)])
    assert classify(near, rule).tolist() == [True] and classify(far, rule).tolist() == [False]
    # the radio parameters reach the estimate: a 10 dB louder reference moves 2 m 10 dB lower
    loud = dataclasses.replace(p, ref_rssi_1m=p.ref_rssi_1m + 10.0)
    mid = one_day([(20, a_star - 5.0)])
    assert classify(mid, rule).tolist() == [True] and classify(mid, rule, radio=loud).tolist() == [False]


def test_rule_validation(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('kind = "weighted_attenuation"\n[params]\nthresholds_db = [52, 60]\n'
                   'weights = [1.0, 0.5, 0.0]\nmin_weighted_minutes = 15\n')
    with pytest.raises(ValueError, match="ATT_EDGES"):
        load_rule(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text('kind = "any_match"\n[params]\nmin_rssi = -88\n')
    with pytest.raises(ValueError, match="unknown parameter"):
        load_rule(typo)
    ok = tmp_path / "mine.toml"
    ok.write_text('kind = "weighted_attenuation"\n[params]\nthresholds_db = [50, 70]\n'
                  'weights = [1.0, 0.25, 0.0]\nmin_weighted_minutes = 10\n')
    r = load_rule(ok)
    assert r.name == "mine" and classify(one_day([(8, 45.0), (8, 65.0)]), r).tolist() == [True]
    with pytest.raises(ValueError, match="no option"):
        load_rule("bluezone:nope")
    with pytest.raises(ValueError, match="unknown rule"):
        load_rule("gaen-xx")
    with pytest.raises(ValueError, match="transmission_level"):
        load_rule("gaen-de", transmission_level=9)


def test_daily_sums_against_pandas():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(3)
    n = 2000
    w = np.zeros(n, dtype=WINDOW_DTYPE)
    w["observer"] = rng.integers(0, 20, n)
    w["t_start"] = rng.uniform(0, 3 * 86400, n)
    w["att_secs"] = rng.uniform(0, 100, (n, N_ATT_BUCKETS)) * (rng.random((n, N_ATT_BUCKETS)) < 0.3)
    w["duration_s"] = w["att_secs"].sum(1)
    w["t_end"] = w["t_start"] + w["duration_s"]
    w["n_scans"] = rng.integers(1, 10, n)
    w["rssi_mean"] = rng.uniform(-90, -50, n)
    w["rssi_max"] = w["rssi_mean"] + 5
    w["rssi_max"][::7] = np.nan
    w["att_typical"] = rng.uniform(30, 80, n)
    w["att_typical"][::5] = np.nan
    w["att_min"] = w["att_typical"] - 3
    src = rng.integers(-1, 20, n)
    d = daily_sums(w, src, None)
    df = pd.DataFrame({"o": w["observer"], "s": src, "d": (w["t_start"] // 86400).astype(int),
                       "dur": w["duration_s"].astype(float), "sc": w["n_scans"],
                       "rmax": w["rssi_max"].astype(float), "t0": w["t_start"],
                       "a": w["att_typical"].astype(float)})
    df = df[df.s >= 0]
    df["aw"] = np.where(np.isnan(df.a), 0.0, df.a * df.dur)
    df["wd"] = np.where(np.isnan(df.a), 0.0, df.dur)
    g = df.groupby(["o", "s", "d"], sort=True).agg(dur=("dur", "sum"), sc=("sc", "sum"), rmax=("rmax", "max"),
                                                   t0=("t0", "min"), aw=("aw", "sum"), wd=("wd", "sum"),
                                                   n=("dur", "size")).reset_index()
    assert len(d) == len(g)
    assert np.array_equal(d["observer"], g.o) and np.array_equal(d["source"], g.s)
    assert np.array_equal(d["day"], g.d) and np.array_equal(d["n_windows"], g.n)
    assert np.allclose(d["duration_s"], g.dur) and np.array_equal(d["n_scans"], g.sc)
    assert np.allclose(d["duration_s"], d["att_secs"].sum(1))
    assert np.allclose(d["rssi_max"], g.rmax, equal_nan=True)
    assert np.array_equal(d["t_first"], g.t0)
    assert np.allclose(d["att_mean"], np.where(g.wd > 0, g.aw / g.wd.where(g.wd > 0, 1), np.nan),
                       equal_nan=True, rtol=1e-5)
    assert d.dtype == DAILY_DTYPE


def _cwa_value(text, key):
    m = re.search(rf"\b{key}:\s*([-\d.]+)", text)
    assert m, key
    return float(m.group(1))


def test_gaen_de_matches_cwa_config():
    text = data_path("dublintram-gaen", "cwa_config.txt").read_text()
    p = load_rule("gaen-de").params
    assert p["minimum_risk_score"] == _cwa_value(text, "minRiskScore")
    high = text[text.index('label: "HIGH"'):]
    assert p["notify_min_score"] == _cwa_value(high, "min")
    ad = p["attenuation_duration"]
    assert ad["thresholds_db"] == [_cwa_value(text, "lower"), _cwa_value(text, "upper")]
    assert ad["weights"][:2] == [_cwa_value(text, "low"), _cwa_value(text, "mid")]
    assert ad["normalization_divisor"] == _cwa_value(text, "riskScoreNormalizationDivisor")
    levels = {"LOWEST": 1, "LOW": 2, "LOW_MEDIUM": 3, "MEDIUM": 4, "MEDIUM_HIGH": 5, "HIGH": 6,
              "VERY_HIGH": 7, "HIGHEST": 8}

    def block(name):
        body = re.search(name + r"\s*\{([^}]*)\}", text).group(1)
        return dict(re.findall(r"(\w+):\s*(\w+)", body))
    att = block("attenuation")
    gaen_att = ["gt_73_dbm", "gt_63_le_73_dbm", "gt_51_le_63_dbm", "gt_33_le_51_dbm", "gt_27_le_33_dbm",
                "gt_15_le_27_dbm", "gt_10_le_15_dbm", "lt_10_dbm"]
    assert p["attenuation_scores"] == [levels.get(att.get(k), 0) for k in gaen_att]
    dur = block("duration")
    gaen_dur = ["eq_0_min", "gt_0_le_5_min", "gt_5_le_10_min", "gt_10_le_15_min", "gt_15_le_20_min",
                "gt_20_le_25_min", "gt_25_le_30_min", "gt_30_min"]
    assert p["duration_scores"] == [levels.get(dur.get(k), 0) for k in gaen_dur]
    days = block("daysSinceLastExposure")
    assert p["days_scores"] == [levels[v] for v in days.values()]
    tr = block("transmission")
    assert p["transmission_scores"] == [levels[tr[f"appDefined_{k}"]] for k in range(1, 9)]


def test_gaen_it_matches_immuni_config():
    text = data_path("dublintram-gaen", "immuni_config_settings.txt").read_text()
    cfg = json.loads(text[text.index("{"):])
    ec = cfg["exposure_configuration"]
    p = load_rule("gaen-it").params
    assert p["attenuation_scores"] == ec["attenuation_bucket_scores"]
    assert p["duration_scores"] == ec["duration_bucket_scores"]
    assert p["days_scores"] == ec["days_since_last_exposure_bucket_scores"]
    assert p["transmission_scores"] == ec["transmission_risk_bucket_scores"]
    assert p["minimum_risk_score"] == ec["minimum_risk_score"]
    assert p["notify_min_score"] == cfg["exposure_info_minimum_risk_score"]
