"""Sightings -> exposure windows: exact hand-made case, streaming == one-shot, Parquet round trip."""
import numpy as np
import pytest

from ble.schema import ATT_EDGES, N_ATT_BUCKETS, SIGHTING_DTYPE, WINDOW_DTYPE, read_parquet, write_parquet
from ble.windows import WindowAggregator, aggregate

NAN = np.nan


def _sightings(rows):
    out = np.zeros(len(rows), dtype=SIGHTING_DTYPE)
    for k, name in enumerate(SIGHTING_DTYPE.names):
        out[name] = [r[k] for r in rows]
    return out


# (t, observer, rid, rssi, tx)
HAND = [
    (0.0, 1, 10, -60, -10), (2.0, 1, 10, -70, -10),     # scan A: rssi -65, att (50+60)/2 = 55
    (100.0, 1, 10, -50, -10),                            # scan B: att 40, dt 100
    (700.0, 1, 10, -80, -10),                            # 600 s after B: new window, att 70
    (10.0, 1, 11, -60, NAN), (400.0, 1, 11, -70, NAN),   # no TX: seconds in the last bucket
    (5.0, 2, 10, NAN, -10),                              # NaN RSSI: dropped
    (50.0, 2, 10, -55, -10), (109.0, 2, 10, -65, -10),   # one scan (gap 59 < 60): rssi -60, att 50
    (170.0, 2, 10, -45, -10),                            # gap 61: new scan, att 35, dt 120
]


def _secs(**kv):
    s = np.zeros(N_ATT_BUCKETS, dtype=np.float32)
    for k, v in kv.items():
        s[int(k[1:])] = v
    return s


def _check(w, **expected):
    for k, v in expected.items():
        if k == "att_secs":
            np.testing.assert_array_equal(w[k], v)
        elif isinstance(v, float) and np.isnan(v):
            assert np.isnan(w[k]), k
        else:
            assert w[k] == pytest.approx(v, abs=1e-6), k


def test_hand_made_log_exact_windows():
    stats = {}
    w = aggregate(_sightings(HAND), stats=stats)
    assert stats == {"n_sightings": 10, "n_dropped_nan_rssi": 1}
    assert w.dtype == WINDOW_DTYPE and len(w) == 4
    assert list(zip(w["observer"], w["rid"], w["t_start"])) == [(1, 10, 0.0), (1, 10, 700.0),
                                                                (1, 11, 10.0), (2, 10, 50.0)]
    _check(w[0], t_end=100.0, n_scans=2, duration_s=400.0, rssi_mean=-57.5, rssi_max=-50.0,
           tx_power=-10.0, att_typical=47.5, att_min=40.0, att_secs=_secs(b6=300, b4=100))
    _check(w[1], t_end=700.0, n_scans=1, duration_s=300.0, rssi_mean=-80.0, rssi_max=-80.0,
           tx_power=-10.0, att_typical=70.0, att_min=70.0, att_secs=_secs(b8=300))
    _check(w[2], t_end=400.0, n_scans=2, duration_s=600.0, rssi_mean=-65.0, rssi_max=-60.0,
           tx_power=NAN, att_typical=NAN, att_min=NAN, att_secs=_secs(b10=600))
    _check(w[3], t_end=170.0, n_scans=2, duration_s=420.0, rssi_mean=-52.5, rssi_max=-45.0,
           tx_power=-10.0, att_typical=42.5, att_min=35.0, att_secs=_secs(b4=420))
    np.testing.assert_allclose(w["att_secs"].sum(axis=1), w["duration_s"])


def test_default_tx_buckets_unknown_tx():
    w = aggregate(_sightings(HAND), default_tx_dbm=-20.0)
    # (1, 11): attenuations -20 - (-60) = 40 and -20 - (-70) = 50, both bucket 4 (33 < a <= 50)
    _check(w[2], tx_power=NAN, att_typical=45.0, att_min=40.0, att_secs=_secs(b4=600))


def test_unsorted_input_and_parameters():
    s = _sightings(HAND)
    ref = aggregate(s)
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(aggregate(s[rng.permutation(len(s))]).tobytes(), ref.tobytes())
    # a shorter cap and first-scan credit
    w = aggregate(s, first_scan_s=60.0, cap_s=30.0)
    assert w[0]["duration_s"] == 90.0
    with pytest.raises(ValueError, match="scan_merge_s"):
        aggregate(s, scan_merge_s=0)
    with pytest.raises(ValueError, match="edges"):
        aggregate(s, edges=[1.0, 2.0])
    with pytest.raises(ValueError, match="SIGHTING_DTYPE"):
        aggregate(np.zeros(3))
    assert len(aggregate(np.zeros(0, dtype=SIGHTING_DTYPE))) == 0


def _random_log(seed, n_obs=30, n_rid=40, n=20000, t_span=20000.0):
    """Scans of 4 s every ~300 s with sporadic contacts, random TX (some unknown) and NaN RSSI."""
    rng = np.random.default_rng(seed)
    s = np.zeros(n, dtype=SIGHTING_DTYPE)
    scan_start = rng.integers(0, int(t_span / 300), n) * 300.0 + rng.uniform(0, 40, n)
    s["t"] = scan_start + rng.uniform(0, 4, n)
    s["observer"] = rng.integers(0, n_obs, n)
    s["rid"] = rng.integers(0, n_rid, n).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    s["rssi"] = rng.uniform(-100, -40, n)
    s["rssi"][rng.random(n) < 0.02] = np.nan
    s["tx_power"] = rng.choice([-10.0, -4.0, np.nan], n)
    return s


def _sort(w):
    return w[np.lexsort((w["t_start"], w["rid"], w["observer"]))]


def test_streaming_equals_one_shot():
    s = _random_log(1)
    ref = aggregate(s)
    s_t = s[np.argsort(s["t"], kind="stable")]
    cuts = np.sort(np.random.default_rng(2).choice(len(s), 25, replace=False))
    agg = WindowAggregator()
    parts, max_open = [], 0
    for chunk in np.split(s_t, cuts):
        rng = np.random.default_rng(len(chunk))
        parts.append(agg.add(chunk[rng.permutation(len(chunk))]))   # unsorted inside the chunk
        max_open = max(max_open, agg.n_open)
    parts.append(agg.flush())
    got = _sort(np.concatenate(parts))
    assert len(got) == len(ref) > 1000
    assert got.tobytes() == ref.tobytes()
    assert agg.n_dropped == int(np.isnan(s["rssi"]).sum())
    # memory: at most one open window per (observer, rid) pair
    assert max_open <= 30 * 40


def test_streaming_closes_windows_early_and_rejects_going_back():
    s = _sightings(HAND)
    agg = WindowAggregator()
    out1 = agg.add(s[s["t"] <= 100.0])
    assert len(out1) == 0 and agg.n_open == 3
    out2 = agg.add(s[(s["t"] > 100.0) & (s["t"] <= 700.0)])
    # at T = 700 only (1,10)'s first window (last scan at 100 s, 600 s ago) can no longer grow;
    # (2,10) (last scan 170 s) and (1,11) (400 s) might still be continued
    assert [(o, r, t) for o, r, t in zip(out2["observer"], out2["rid"], out2["t_start"])] == \
        [(1, 10, 0.0)]
    with pytest.raises(ValueError, match="back in time"):
        agg.add(_sightings([(699.0, 1, 10, -60, -10)]))
    rest = agg.flush()
    assert len(rest) == 3
    assert _sort(np.concatenate([out1, out2, rest])).tobytes() == aggregate(s).tobytes()
    with pytest.raises(ValueError, match="flushed"):
        agg.add(s[:0])


def test_window_parquet_round_trip_bit_exact(tmp_path):
    w = aggregate(_random_log(3, n=3000))
    assert np.isnan(w["att_typical"]).any() and np.isnan(w["tx_power"]).any()
    p = tmp_path / "w.parquet"
    write_parquet(p, w, "windows")
    back = read_parquet(p)
    assert back.dtype == WINDOW_DTYPE
    assert back.tobytes() == w.tobytes()


# ---------------------------------------------------------------------------------------------------
# Durations from the log itself (cadences)
# ---------------------------------------------------------------------------------------------------
def _every(step_s, minutes, rid=7, rssi=-55.0, tx=-15.0, t0=1.6e9):
    t = t0 + np.arange(0.0, minutes * 60.0 + 1e-9, step_s)
    return _sightings([(ti, 0, rid, rssi, tx) for ti in t])


def test_continuous_log_is_credited_its_own_duration():
    s = _every(2.0, 18.0)                                  # a sighting every 2 s for 18 minutes
    old = aggregate(s)                                     # the historical (periodic-300) credit
    assert len(old) == 1 and old["duration_s"][0] == 300.0
    w = aggregate(s, cadence="continuous")
    assert len(w) == 1 and w["duration_s"][0] == pytest.approx(18 * 60.0)
    assert w["t_end"][0] - w["t_start"][0] == pytest.approx(18 * 60.0)
    # a 3-minute hole is credited the cap (60 s), a 12-minute hole splits the window
    hole = np.concatenate([_every(2.0, 5.0), _every(2.0, 5.0, t0=1.6e9 + 480.0)])
    assert aggregate(hole, cadence="continuous")["duration_s"][0] == pytest.approx(600.0 + 60.0)
    split = np.concatenate([_every(2.0, 5.0), _every(2.0, 5.0, t0=1.6e9 + 1020.0)])
    assert aggregate(split, cadence="continuous")["duration_s"].tolist() == [300.0, 300.0]


def test_periodic_log_keeps_its_behaviour():
    """A log with a scan every 5 minutes (3 packets per 40-s scan) is credited 300 s per scan, with the
    default cadence exactly as with the historical explicit parameters."""
    rows = [(1.6e9 + 300.0 * k + dt, 0, 7, -60.0, -15.0) for k in range(6) for dt in (0.0, 12.0, 31.0)]
    s = _sightings(rows)
    w = aggregate(s)
    ref = aggregate(s, scan_merge_s=60.0, max_gap_s=600.0, first_scan_s=300.0, cap_s=300.0)
    assert w.tobytes() == ref.tobytes()
    assert w["duration_s"].tolist() == [1800.0] and w["n_scans"].tolist() == [6]


def test_streaming_equals_one_shot_for_continuous():
    s = np.concatenate([_every(1.5, 20.0), _every(7.0, 20.0, rid=9, rssi=-80.0)])
    s = s[np.argsort(s["t"], kind="stable")]
    ref = aggregate(s, cadence="continuous")
    agg = WindowAggregator(cadence="continuous")
    parts = [agg.add(c) for c in np.array_split(s, 7)] + [agg.flush()]
    out = np.concatenate(parts)
    out = out[np.lexsort((out["t_start"], out["rid"], out["observer"]))]
    assert out.tobytes() == ref.tobytes()


def test_cadence_errors_name_the_argument():
    s = _every(2.0, 1.0)
    with pytest.raises(ValueError, match="cadence must be one of"):
        aggregate(s, cadence="weekly")
    with pytest.raises(ValueError, match="cap_s"):
        aggregate(s, cadence="continuous", cap_s=-1.0)
