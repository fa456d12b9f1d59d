"""Radio model: formula, sampling statistics, TOML, device offsets, and the fit (synthetic + real)."""
import math

import numba
import numpy as np
import pytest

from ble import radio
from ble.datasets import RssiData
from ble.radio import CARRIAGES, RadioParams, default_params, mean_rssi, sample_rssi
from conftest import data_path


def params():
    return RadioParams(ref_rssi_1m=-65.0, exponent=1.5, sigma_db=6.0,
                       carriage_db={"trouser_pocket": -7.0, "bag": -3.0, "backpack": -8.0, "shirt_pocket": -6.0},
                       floor_dbm=-100.0, min_distance_m=0.1, tx_dbm=-20.0)


def test_mean_formula_offsets_and_vectorisation():
    p = params()
    assert mean_rssi(1.0, p) == pytest.approx(-65.0)
    assert mean_rssi(10.0, p) - mean_rssi(1.0, p) == pytest.approx(-15.0)
    assert mean_rssi(0.0, p) == pytest.approx(mean_rssi(0.1, p))            # min_distance_m clamp
    d = np.array([[0.5, 1.0, 2.0], [3.0, 4.0, 5.0]])
    assert mean_rssi(d, p).shape == (2, 3)
    got = mean_rssi(2.0, p, carriage_tx="trouser_pocket", carriage_rx=CARRIAGES.index("bag"),
                    tx_offset=1.5, rx_offset=-0.5, platform_tx="ios", platform_rx=0)
    want = -65.0 - 15 * math.log10(2.0) - 7.0 - 3.0 + 1.5 - 0.5 + p.platform_db["android<-ios"]
    assert got == pytest.approx(want)
    ct = np.array([0, 1, 3, -1])
    np.testing.assert_allclose(mean_rssi(np.ones(4), p, carriage_tx=ct) + 65.0, [0, -7, -3, 0])
    assert p.platform_matrix()[1, 0] == p.platform_db["ios<-android"]
    with pytest.raises(ValueError, match="unknown carriage 'knee'"):
        mean_rssi(1.0, p, carriage_tx="knee")
    with pytest.raises(ValueError, match="distance"):
        mean_rssi(-1.0, p)
    with pytest.raises(ValueError, match="unknown carriage"):
        RadioParams(carriage_db={"knee": 1.0})


@numba.njit
def _caller(d, z, ref, n, s, dmin):
    out = np.empty(d.shape[0])
    for i in range(d.shape[0]):
        out[i] = radio._rssi_kernel(d[i], -2.0, z[i], ref, n, s, dmin)
    return out


def test_kernel_callable_from_numba():
    p = params()
    d = np.array([0.05, 1.0, 3.0])
    z = np.array([0.0, 1.0, -1.0])
    got = _caller(d, z, p.ref_rssi_1m, p.exponent, p.sigma_db, p.min_distance_m)
    np.testing.assert_allclose(got, mean_rssi(d, p) - 2.0 + p.sigma_db * z)


def test_sample_statistics_floor_and_determinism():
    p = params()
    n = 40000
    d = np.repeat([1.0, 3.0], n)
    a = sample_rssi(np.random.default_rng(1), d, p, floor=False)
    b = sample_rssi(np.random.default_rng(1), d, p, floor=False)
    np.testing.assert_array_equal(a, b)
    for k, dist in enumerate([1.0, 3.0]):
        x = a[k * n:(k + 1) * n]
        assert abs(x.mean() - mean_rssi(dist, p)) < 4 * p.sigma_db / math.sqrt(n)
        assert abs(x.std() - p.sigma_db) < 4 * p.sigma_db / math.sqrt(2 * n)
    # floor: fraction received equals p_received within binomial error
    dfar = np.full(n, 30.0)
    r = sample_rssi(np.random.default_rng(2), dfar, p, carriage_tx="backpack")
    assert np.nanmin(r) >= p.floor_dbm
    pr = float(radio.p_received(30.0, p, offset_db=p.carriage_db["backpack"]))
    assert 0.1 < pr < 0.9
    assert abs(np.isfinite(r).mean() - pr) < 4 * math.sqrt(pr * (1 - pr) / n)
    with pytest.raises(ValueError, match="Generator"):
        sample_rssi(1, d, p)


def test_toml_roundtrip_and_errors(tmp_path):
    p = params()
    path = tmp_path / "r.toml"
    p.to_toml(path, header="a comment\nline two", extra={"device_offsets": {"tx": [1, 2], "count": [3, 4]}})
    q = RadioParams.from_toml(path)
    for k in ("ref_rssi_1m", "exponent", "sigma_db", "floor_dbm", "min_distance_m", "tx_dbm"):
        assert getattr(q, k) == pytest.approx(getattr(p, k), abs=1e-4)
    assert q.carriage_db == pytest.approx(p.carriage_db, abs=1e-4)
    assert q.platform_db == p.platform_db
    assert path.read_text().startswith("# a comment\n# line two\n")
    path.write_text(path.read_text().replace("sigma_db", "sigma"))
    with pytest.raises(ValueError, match=r"unknown key\(s\) in \[radio\]: \['sigma'\]"):
        RadioParams.from_toml(path)
    path.write_text("[other]\nx = 1\n")
    with pytest.raises(ValueError, match=r"no \[radio\] table"):
        RadioParams.from_toml(path)


def test_default_params_sane():
    p = default_params()
    assert p is not default_params()
    # orders of magnitude from PROTOCOLS.md ("What the real data shows")
    assert 0.5 < p.exponent < 2.0
    assert 4.5 < p.sigma_db < 8.0
    assert -80 < p.ref_rssi_1m < -50
    assert p.carriage_db["hand"] == 0.0
    assert all(-15 < v <= 3 for v in p.carriage_db.values())
    assert p.platform_db == radio.BLUEZONE_PLATFORM_DB
    assert -115 <= p.floor_dbm <= -95


def test_device_offsets_packaged():
    tx, rx = radio.device_offsets(np.random.default_rng(3), 50000)
    tx2, rx2 = radio.device_offsets(np.random.default_rng(3), 50000)
    np.testing.assert_array_equal(tx, tx2)
    corr, txs, w, _ = radio._table_arrays()
    pw = w / w.sum()
    sd_tx = math.sqrt(np.dot(pw, (txs - np.dot(pw, txs)) ** 2))
    sd_rx = math.sqrt(np.dot(pw, (corr - np.dot(pw, corr)) ** 2))
    assert abs(tx.mean()) < 4 * sd_tx / math.sqrt(len(tx))
    assert abs(rx.mean()) < 4 * sd_rx / math.sqrt(len(rx))
    for x, v in ((tx, txs), (rx, corr)):               # SE of a sample sd: sqrt((mu4 - s^4) / n) / (2 s)
        c = v - np.dot(pw, v)
        s2, mu4 = np.dot(pw, c ** 2), np.dot(pw, c ** 4)
        se_sd = math.sqrt((mu4 - s2 ** 2) / len(x)) / (2 * math.sqrt(s2))
        assert abs(x.std() - math.sqrt(s2)) < 4 * se_sd
    _, _, rows = radio.device_offsets(np.random.default_rng(3), 10, return_rows=True)
    assert rows.min() >= 0 and rows.max() < len(w)


def test_device_offsets_summary_matches_table():
    from ble.datasets import load_calibration_table
    t = load_calibration_table(data_path("dublintram-gaen", "EN Calibration June 13th.csv"))
    s = radio.calibration_summary(t)
    corr, tx, w, _ = radio._table_arrays()
    np.testing.assert_array_equal(corr, s["rssi_correction"])
    np.testing.assert_array_equal(tx, s["tx"])
    np.testing.assert_array_equal(w, s["count"])
    a, b, rows = radio.device_offsets(np.random.default_rng(4), 1000, table=t, return_rows=True)
    assert t.measured[rows].all()
    np.testing.assert_allclose(a, t.tx[rows] - t.tx[t.measured].mean())


def _synthetic(rng, truth, n_per=20000):
    """Three data sets of crossed device pairs, random carriages, platforms and distances 0.2-5 m."""
    parts = []
    dso = {"a": 2.0, "b": -3.0, "c": 1.0}
    dev_tx = rng.normal(0, 3, 12)
    dev_rx = rng.normal(0, 3, 12)
    for k, name in enumerate(dso):
        devs = np.arange(4 * k, 4 * k + 4)
        dev_tx[devs] -= dev_tx[devs].mean()
        dev_rx[devs] -= dev_rx[devs].mean()
        i = rng.integers(0, 4, n_per)
        j = (i + rng.integers(1, 4, n_per)) % 4
        dt, dr = devs[i], devs[j]
        d = np.exp(rng.uniform(np.log(0.2), np.log(5.0), n_per))
        ct = rng.integers(-1, 5, n_per)
        cr = rng.integers(-1, 5, n_per)
        pt = rng.integers(0, 2, n_per)
        pr = rng.integers(0, 2, n_per)
        y = sample_rssi(rng, d, truth, carriage_tx=ct, carriage_rx=cr, platform_tx=pt, platform_rx=pr,
                        tx_offset=dev_tx[dt] + dso[name], rx_offset=dev_rx[dr], floor=False)
        n = n_per
        parts.append(RssiData(rssi=y, distance_m=d, t_s=np.zeros(n), tx_power=np.full(n, np.nan),
                              carriage_tx=ct, carriage_rx=cr, platform_tx=pt, platform_rx=pr,
                              device_tx=dt - 4 * k, device_rx=dr - 4 * k, session=np.zeros(n),
                              file=np.zeros(n), dataset=np.zeros(n), split=np.full(n, -1),
                              devices=tuple(f"{name}{q}" for q in range(4)), sessions=(name,),
                              files=(name,), datasets=(name,)))
    return RssiData.concat(*parts), dso


def test_fit_recovers_synthetic_truth():
    truth = params()
    data, dso = _synthetic(np.random.default_rng(5), truth)
    res = radio.fit_radio(data=data, device_datasets=("a", "b", "c"), min_distance_m=truth.min_distance_m,
                          fit_min_distance_m=0.2)
    p = res.params
    assert res.n_used == len(data) and res.n_excluded == 0
    # tolerances: 4 standard errors of the estimates (iid noise here, so the sandwich SEs are valid)
    mean_dso = np.mean(list(dso.values()))      # the sum-to-zero constraint moves the mean into ref
    assert abs(p.ref_rssi_1m - (truth.ref_rssi_1m + mean_dso)) < 4 * res.se["ref_rssi_1m"]
    assert abs(p.exponent - truth.exponent) < 4 * res.se["exponent"]
    for c in CARRIAGES[1:]:
        assert abs(p.carriage_db[c] - truth.carriage_db[c]) < 4 * res.se[f"carriage:{c}"], c
    se_a, se_b = res.se["dataset:a"], res.se["dataset:b"]
    tol = {"a": 4 * se_a, "b": 4 * se_b, "c": 4 * (se_a + se_b)}   # c = -(a + b): sd <= se_a + se_b
    for k, v in dso.items():
        assert abs(res.dataset_offset_db[k] - (v - mean_dso)) < tol[k], k
    assert abs(p.sigma_db - truth.sigma_db) < 4 * truth.sigma_db / math.sqrt(2 * len(data))
    for k, r in res.residuals.items():
        assert abs(r["bias_db"]) < 1e-6
        assert abs(r["rmse_db"] - truth.sigma_db) < 4 * truth.sigma_db / math.sqrt(2 * r["n"])
    assert 0 < res.se["exponent"] < 0.05
    assert "ref_rssi_1m" in res.table()


@pytest.fixture(scope="module")
def real_fit(shared_data):
    return radio.fit_radio(shared_data, tram_dir=shared_data / "dublintram-gaen")


def test_default_params_match_fresh_fit(real_fit):
    p, f = default_params(), real_fit.params
    # the fit is deterministic; the TOML stores 4 decimals
    assert mean_rssi(1.0, p) == pytest.approx(mean_rssi(1.0, f), abs=1e-3)
    slope_p = mean_rssi(10.0, p) - mean_rssi(1.0, p)
    slope_f = mean_rssi(10.0, f) - mean_rssi(1.0, f)
    assert slope_p == pytest.approx(slope_f, abs=1e-3)
    assert p.sigma_db == pytest.approx(f.sigma_db, abs=1e-3)
    assert p.carriage_db == pytest.approx(f.carriage_db, abs=1e-3)
    assert p.tx_dbm == pytest.approx(f.tx_dbm, abs=1e-3)
    assert p.floor_dbm == f.floor_dbm


def test_real_fit_residuals(real_fit):
    r = real_fit.residuals
    assert set(r) == {"mit", "herald", "pcng"}
    assert r["mit"]["n"] == 62252 and r["pcng"]["n"] == 123718
    for k, v in r.items():
        assert 4.0 < v["rmse_db"] < 8.0, k              # PROTOCOLS: sigma 5.5-7.6 dB at fixed distance
        assert abs(v["bias_db"]) < 0.05
    assert abs(sum(real_fit.dataset_offset_db.values())) < 1e-9
    # carriage dominates: every non-hand carriage except the purse/bag costs several dB
    assert real_fit.params.carriage_db["trouser_pocket"] < -3
    assert real_fit.params.carriage_db["backpack"] < -3


def test_fit_refuses_unidentifiable():
    truth = params()
    data, _ = _synthetic(np.random.default_rng(6), truth, n_per=2000)
    one_d = data.subset(np.flatnonzero(data.dataset == 0))
    flat = RssiData(**{**{k: getattr(one_d, k) for k in RssiData._ARRAYS},
                       "distance_m": np.full(len(one_d), 1.5)},
                    devices=one_d.devices, sessions=one_d.sessions, files=one_d.files, datasets=one_d.datasets)
    with pytest.raises(ValueError, match="not identifiable.*exponent"):
        radio.fit_radio(data=flat)
    with pytest.raises(ValueError, match="no rows at distance"):
        radio.fit_radio(data=one_d, fit_min_distance_m=10.0)


def test_fit_on_a_subset_of_data_sets(real_fit, shared_data):
    from ble.datasets import load_herald, load_pcng
    both = RssiData.concat(load_herald(shared_data / "herald-edison-rssi"),
                           load_pcng(shared_data / "pcng-rss-smartphone"))
    res = radio.fit_radio(data=both)
    assert set(res.residuals) == {"herald", "pcng"}
    # leaving MIT out moves the slope little (the slope is shared by all data sets)
    assert abs(res.params.exponent - real_fit.params.exponent) < 0.3


def test_receiver_saturation_ceiling():
    """Issue 17 item 1: RSSI is capped at ``max_rssi_dbm`` (validated), so extreme device offsets at
    0.1 m never exceed the record schema's +30 dBm limit."""
    p = default_params()
    assert radio.MAX_RSSI_RANGE_DBM[0] <= p.max_rssi_dbm <= radio.MAX_RSSI_RANGE_DBM[1]
    q = RadioParams(**{**params().__dict__, "max_rssi_dbm": -10.0})
    # +60 dB of offsets at 0.1 m: the mean is ~-20 dBm, a third of the draws would be above the cap
    r = sample_rssi(np.random.default_rng(3), np.full(5000, 0.1), q, tx_offset=27.3, rx_offset=33.6)
    assert np.nanmax(r) == -10.0 and (r == -10.0).mean() > 0.5
    assert (sample_rssi(np.random.default_rng(3), np.full(100, 0.1), q, floor=False) <= -10.0).all()
    # a [radio] table may leave the key out (the default applies); bad values are one clear line
    d = params().to_dict()
    d.pop("max_rssi_dbm")
    assert RadioParams.from_dict(d).max_rssi_dbm == RadioParams().max_rssi_dbm
    for bad in (31.0, -200.0, float("nan"), "x"):
        with pytest.raises(ValueError, match="max_rssi_dbm"):
            RadioParams.from_dict({**d, "max_rssi_dbm": bad}, "s.toml")
    with pytest.raises(ValueError, match="above floor_dbm"):
        RadioParams(floor_dbm=-20.0, max_rssi_dbm=-25.0)
