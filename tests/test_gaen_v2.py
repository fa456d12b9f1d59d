"""GAEN v2 as the Corona-Warn-App runs it: the app's 29 exposure-window test vectors, the cwa-v2 rule."""
import json
from pathlib import Path

import numpy as np
import pytest

from ble.formats import read_full
from ble.formats.gaen import parse_gaen
from ble.schema import ATT_EDGES, N_ATT_BUCKETS
from tracing.core import gaen_v2
from tracing.core.rules import DAILY_DTYPE, evaluate, load_rule

VECTORS = Path(__file__).parent / "data" / "cwa" / "exposure-windows-risk-calculation.json"


def _cases():
    return json.loads(VECTORS.read_text())["testCases"]


def test_rule_params_are_the_vectors_configuration():
    """cwa-v2.toml holds exactly the configuration the test vectors use."""
    cfg = json.loads(VECTORS.read_text())["defaultRiskCalculationConfiguration"]
    p = load_rule("cwa-v2").params
    assert [(r["min"], r["max"], r["max_exclusive"], r["weight"]) for r in p["attenuation_weights"]] == \
        [(w["attenuationRange"]["min"], w["attenuationRange"]["max"], w["attenuationRange"].get("maxExclusive", False),
          w["weight"]) for w in cfg["minutesAtAttenuationWeights"]]
    for key, ck in (("window_risk_levels", "normalizedTimePerEWToRiskLevelMapping"),
                    ("day_risk_levels", "normalizedTimePerDayToRiskLevelMapping")):
        assert [(r["min"], r["max"], r["max_exclusive"], r["risk_level"]) for r in p[key]] == \
            [(m["normalizedTimeRange"]["min"], m["normalizedTimeRange"]["max"],
              m["normalizedTimeRange"].get("maxExclusive", False), m["riskLevel"]) for m in cfg[ck]]
    enc = cfg["trlEncoding"]
    assert dict(p["trl_encoding"]) == {
        "infectiousness_offset_standard": enc["infectiousnessOffsetStandard"],
        "infectiousness_offset_high": enc["infectiousnessOffsetHigh"],
        "report_type_offset_recursive": enc["reportTypeOffsetRecursive"],
        "report_type_offset_self_report": enc["reportTypeOffsetSelfReport"],
        "report_type_offset_confirmed_clinical_diagnosis": enc["reportTypeOffsetConfirmedClinicalDiagnosis"],
        "report_type_offset_confirmed_test": enc["reportTypeOffsetConfirmedTest"]}
    assert list(p["transmission_risk_values"]) == [m["transmissionRiskValue"] for m in
                                                   sorted(cfg["transmissionRiskValueMapping"],
                                                          key=lambda m: m["transmissionRiskLevel"])]
    assert cfg["trlFilters"] == [] and cfg["minutesAtAttenuationFilters"] == [] and p["trl_filters"] == ()


def test_all_29_cwa_vectors_agree():
    cases = _cases()
    assert len(cases) == 29
    stats = {}
    g = parse_gaen(VECTORS, stats)
    assert stats["scans_negative_seconds"] == 1          # case 27: skipped, as the app does
    res = gaen_v2.risk_from_scans(g["window"], g["seconds"], g["min_att"], g["typical_att"], g["day"],
                                  g["report_type"], g["infectiousness"], load_rule("cwa-v2").params,
                                  window_group=g["case"])
    total = np.ones(len(cases), np.int64)
    total[:len(res["total_level"])] = res["total_level"]
    expected = np.array([c["expTotalRiskLevel"] for c in cases])
    assert total.tolist() == expected.tolist()
    # days with high / low risk, as the vectors state them
    hi = np.bincount(res["group"][res["day_level"] == 2], minlength=len(cases))
    lo = np.bincount(res["group"][res["day_level"] == 1], minlength=len(cases))
    assert hi.tolist() == [c["expNumberOfDaysWithHighRisk"] for c in cases]
    assert lo.tolist() == [c["expNumberOfDaysWithLowRisk"] for c in cases]


def test_v1_rule_disagrees_where_v2_matters():
    """The June-2020 v1 rule buckets by typical attenuation and has no per-day v2 logic: on the vector of
    a 10-minute window at 73 dB minimum / 25 dB typical attenuation it differs from the app."""
    g = parse_gaen(VECTORS)
    case3 = np.flatnonzero(g["case"] == 2)          # "keep Exposure Windows (>= 73 dB)": low risk
    sel = np.isin(g["window"], case3)
    res = gaen_v2.risk_from_scans(np.zeros(sel.sum(), np.int64), g["seconds"][sel], g["min_att"][sel],
                                  g["typical_att"][sel], g["day"][case3], g["report_type"][case3],
                                  g["infectiousness"][case3], load_rule("cwa-v2").params)
    assert res["total_level"].tolist() == [1]
    typical = load_rule("cwa-v2", attenuation="typical").params
    res_t = gaen_v2.risk_from_scans(np.zeros(sel.sum(), np.int64), g["seconds"][sel], g["min_att"][sel],
                                    g["typical_att"][sel], g["day"][case3], g["report_type"][case3],
                                    g["infectiousness"][case3], typical)
    assert res_t["total_level"].tolist() == [2]      # by typical attenuation (25 dB) it would be high


def _daily(secs_per_bucket):
    d = np.zeros(len(secs_per_bucket), dtype=DAILY_DTYPE)
    d["att_secs"] = secs_per_bucket
    d["duration_s"] = d["att_secs"].sum(axis=1)
    return d


def test_cwa_v2_on_daily_sums():
    """On exposure windows: 0.8 below 63 dB, 1.0 in (63, 73], 0 above; x 1.4 (confirmed test, standard)."""
    b = np.searchsorted(ATT_EDGES, [40.0, 68.0, 80.0])
    secs = np.zeros((4, N_ATT_BUCKETS))
    secs[0, b[0]] = 480.0          # 8 min x 0.8 x 1.4 = 8.96 -> 9.0 after rounding: high
    secs[1, b[0]] = 420.0          # 7 min -> 7.84: low, not notified
    secs[2, b[1]] = 390.0          # 6.5 min x 1.0 x 1.4 = 9.1: high
    secs[3, b[2]] = 3600.0         # an hour far away: 0
    notify, norm, level = evaluate(_daily(secs), "cwa-v2")
    assert notify.tolist() == [True, False, True, False]
    assert level.tolist() == [2, 1, 2, 0]
    np.testing.assert_allclose(norm, [8.96, 7.84, 9.1, 0.0])
    w, exact = gaen_v2.bucket_weights(load_rule("cwa-v2").params)
    assert not exact and w[-1] == 0.0 and w[b[1]] == 1.0
    # a recursive report with high infectiousness: TRL 2, value 0 -> nobody is notified
    assert not evaluate(_daily(secs), load_rule("cwa-v2", report_type=4, infectiousness=2)).notify.any()


@pytest.mark.parametrize("bad, msg", [
    ({"attenuation": "max"}, "attenuation must be"),
    ({"report_type": 7}, "report_type"),
    ({"transmission_risk_values": [1.0] * 7}, "transmission_risk_values"),
    ({"attenuation_weights": [{"min": 0, "weight": 1.0}]}, "attenuation_weights"),
])
def test_bad_parameters_name_the_key(bad, msg):
    with pytest.raises(ValueError, match=msg):
        load_rule("cwa-v2", **bad)


def test_gaen_format_reads_the_cwa_file():
    imp = read_full("gaen", [VECTORS])
    n = sum(len(c["exposureWindows"]) for c in _cases())
    assert len(imp.records) == n and imp.stats["scans_negative_seconds"] == 1
    # the negative scan (-86160 s) is skipped: case 27 keeps 3 x 300 s
    assert imp.records["duration_s"][imp.records["observer"] == 27].tolist() == [900.0]
