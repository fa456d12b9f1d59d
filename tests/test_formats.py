"""Importers of real BLE log formats (ble.formats) and ``proxitrace import``."""
import json

import numpy as np
import pytest

from ble import formats as F
from ble import schema
from tests.conftest import data_path

BZ_A = "0a1b2c3d4e5f60718293a4b5"
BZ_B = "ffeeddccbbaa998877665544"


def _bluezone(tmp_path, lines, name="bz.tsv"):
    p = tmp_path / name
    p.write_text("".join(line + "\n" for line in lines))
    return p


def test_bluezone_sentinels_and_ids(tmp_path):
    p = _bluezone(tmp_path, [
        f"{BZ_A}\t{BZ_B}\t-70\t1600000000000",
        f"{BZ_A}\t{BZ_B}\t127\t1600000001000",      # iOS "not available" -> dropped
        f"{BZ_A}\t{BZ_B}\t999\t1600000002000",      # CovidSafe dummy -> dropped
        f"{BZ_A}\t{BZ_A}\t-127\t1600000003000",
        f"{BZ_A}\t{BZ_A}\t-60.5\t1600000004500",
    ])
    imp = F.read_full("bluezone", [p])
    r = imp.records
    assert imp.kind == "sightings" and imp.truth is None
    assert len(r) == 2 and imp.stats["rssi_sentinel"] == 3 and imp.stats["rows_read"] == 5
    assert r["rid"][0] == np.uint64(int(BZ_B[:16], 16))
    np.testing.assert_allclose(r["t"], [1600000000.0, 1600000004.5])
    np.testing.assert_allclose(r["rssi"], [-70, -60.5])
    assert np.isnan(r["tx_power"]).all() and (r["observer"] == 0).all()
    # a header line is accepted
    p2 = _bluezone(tmp_path, ["own_id\tcontact_id\trssi\ttimestamp", f"{BZ_A}\t{BZ_B}\t-70\t1600000000000"],
                   "h.tsv")
    records, kind, truth = F.read("bluezone", [p2])
    assert len(records) == 1 and kind == "sightings"


@pytest.mark.parametrize("bad_line, what", [
    (f"{BZ_A}\t{BZ_B}\t-70", "truncated"),
    (f"{BZ_A}\t{BZ_B}\t-70\t1600000000000\textra", "too many"),
    (f"{BZ_A}\t{BZ_B}\tstrong\t1600000000000", "non-numeric rssi"),
    (f"{BZ_A}\tnothex-nothex-nothex\t-70\t1600000000000", "contact ID"),
    (f"{BZ_A}\t{BZ_B}\t-70\t1500000000000", "earlier than"),
])
def test_bluezone_errors_name_file_and_line(tmp_path, bad_line, what):
    p = _bluezone(tmp_path, [f"{BZ_A}\t{BZ_B}\t-70\t1600000000000",
                             f"{BZ_A}\t{BZ_B}\t-71\t1600000001000", bad_line])
    with pytest.raises(F.FormatError) as e:
        F.read("bluezone", [p])
    assert str(e.value).startswith(f"{p}:3:"), str(e.value)
    assert what in str(e.value)


def test_empty_file_and_unsorted_option(tmp_path):
    p = tmp_path / "empty.tsv"
    p.write_text("")
    with pytest.raises(F.FormatError, match="empty file"):
        F.read("bluezone", [p])
    q = _bluezone(tmp_path, [f"{BZ_A}\t{BZ_B}\t-70\t1600000005000", f"{BZ_A}\t{BZ_B}\t-71\t1600000001000"],
                  "u.tsv")
    with pytest.raises(F.FormatError, match=r":2: timestamp"):
        F.read("bluezone", [q])
    imp = F.read_full("bluezone", [q], sort=True)
    assert np.all(np.diff(imp.records["t"]) >= 0) and imp.stats["sorted"]


def test_opentrace_csv_and_json(tmp_path):
    rows = [
        dict(id=1, v=2, msg="QUJDRA==", org="SG_MOH", modelP="Pixel 3", modelC="SM-G960F", rssi=-65,
             txPower=-7, timestamp=1590000002000),
        dict(id=2, v=2, msg="RUZHSA==", org="SG_MOH", modelP="iPhone", modelC="SM-G960F", rssi=999,
             txPower=-7, timestamp=1590000001000),
        dict(id=3, v=2, msg="QUJDRA==", org="SG_MOH", modelP="Pixel 3", modelC="SM-G960F", rssi=-80,
             txPower=None, timestamp=1590000000000),
    ]
    pj = tmp_path / "ot.json"
    pj.write_text(json.dumps({"records": rows}, indent=1))
    imp = F.read_full("opentrace", [pj])
    r = imp.records
    assert len(r) == 2 and imp.stats["rssi_sentinel"] == 1
    np.testing.assert_allclose(r["t"], [1590000000.0, 1590000002.0])     # sorted, ms -> s
    assert r["rid"][0] == r["rid"][1] and np.isnan(r["tx_power"][0]) and r["tx_power"][1] == -7
    pc = tmp_path / "ot.csv"
    pc.write_text("id,v,msg,org,modelP,modelC,rssi,txPower,timestamp\n" + "".join(
        f"{d['id']},{d['v']},{d['msg']},{d['org']},{d['modelP']},{d['modelC']},{d['rssi']},"
        f"{'' if d['txPower'] is None else d['txPower']},{d['timestamp']}\n" for d in rows))
    r2 = F.read("opentrace", [pc])[0]
    for name in r.dtype.names:
        np.testing.assert_array_equal(r2[name], r[name])
    # a bad RSSI in record 1 names its line in the JSON
    rows[1]["rssi"] = "loud"
    pj.write_text(json.dumps(rows, indent=1))
    with pytest.raises(F.FormatError, match=r"ot.json:\d+: record 1: non-numeric rssi"):
        F.read("opentrace", [pj])


def test_gaen_windows(tmp_path):
    doc = {"exposureWindows": [
        {"dateMillisSinceEpoch": 1600041600000, "distance_m": 1.0, "scanInstances": [
            {"typicalAttenuationDb": 45, "minAttenuationDb": 40, "secondsSinceLastScan": 300},
            {"typicalAttenuationDb": 60, "minAttenuationDb": 52, "secondsSinceLastScan": 200}]},
        {"dateMillisSinceEpoch": 1600041600000, "distance_m": 4.0, "scanInstances": [
            {"typicalAttenuationDb": 80, "minAttenuationDb": 75, "secondsSinceLastScan": 120}]},
    ]}
    p = tmp_path / "w.json"
    p.write_text(json.dumps(doc))
    w, kind, truth = F.read("gaen", [p])
    assert kind == "windows" and len(w) == 2
    schema.validate(w, "windows")
    np.testing.assert_allclose(w["duration_s"], [500, 120])
    np.testing.assert_allclose(w["att_typical"], [52.5, 80])
    np.testing.assert_allclose(w["att_min"], [40, 75])
    np.testing.assert_allclose(w["att_secs"].sum(axis=1), w["duration_s"])
    assert w["att_secs"][0, np.searchsorted(schema.ATT_EDGES, 45)] == 300
    np.testing.assert_allclose(truth["distance_m"], [1, 4])
    # a negative secondsSinceLastScan (clock change) is skipped, as the Corona-Warn-App does
    doc["exposureWindows"][0]["scanInstances"][1]["secondsSinceLastScan"] = -5
    p.write_text(json.dumps(doc, indent=1))
    imp = F.read_full("gaen", [p])
    assert imp.stats["scans_negative_seconds"] == 1
    np.testing.assert_allclose(imp.records["duration_s"], [300, 120])
    np.testing.assert_allclose(imp.records["att_typical"], [45, 80])
    # a missing value still names the window's line
    doc["exposureWindows"][1]["scanInstances"][0]["typicalAttenuationDb"] = None
    p.write_text(json.dumps(doc, indent=1))
    with pytest.raises(F.FormatError, match=r"w\.json:\d+: window 1"):
        F.read("gaen", [p])


def test_gaen_cwa_naming_and_test_case_wrapper(tmp_path):
    doc = {"testCases": [
        {"description": "a", "exposureWindows": [
            {"ageInDays": 1, "reportType": 1, "infectiousness": 2, "calibrationConfidence": 0,
             "scanInstances": [{"minAttenuation": 30, "typicalAttenuation": 40, "secondsSinceLastScan": 300}]}]},
        {"description": "b", "exposureWindows": [
            {"ageInDays": 3, "reportType": 1, "infectiousness": 1, "calibrationConfidence": 1,
             "scanInstances": [{"minAttenuation": 60, "typicalAttenuation": 66, "secondsSinceLastScan": 200},
                               {"minAttenuation": 61, "typicalAttenuation": 64, "secondsSinceLastScan": 100}]}]},
    ]}
    p = tmp_path / "cases.json"
    p.write_text(json.dumps(doc, indent=2))
    w, kind, _ = F.read("gaen", [p])
    assert w["observer"].tolist() == [0, 1]                    # one observer per test case
    np.testing.assert_allclose(w["t_start"], [-86400.0, -3 * 86400.0])   # ageInDays before day 0
    np.testing.assert_allclose(w["duration_s"], [300, 300])
    np.testing.assert_allclose(w["att_min"], [30, 60])
    wm, _, _ = F.read("gaen", [p], attenuation="min")        # buckets by the minimum attenuation
    assert wm["att_secs"][1, np.searchsorted(schema.ATT_EDGES, 60)] == 300
    assert w["att_secs"][1, np.searchsorted(schema.ATT_EDGES, 66)] == 300 and w["att_secs"][1, np.searchsorted(schema.ATT_EDGES, 60)] == 0
    # an error inside a case names the window's own line
    doc["testCases"][1]["exposureWindows"][0]["scanInstances"][0]["secondsSinceLastScan"] = "x"
    p.write_text(json.dumps(doc, indent=2))
    with pytest.raises(F.FormatError, match="cases.json:"):
        F.read("gaen", [p])
    doc["testCases"][1]["exposureWindows"][0]["scanInstances"][0]["secondsSinceLastScan"] = None
    p.write_text(json.dumps(doc, indent=2))
    line = json.dumps(doc, indent=2).splitlines().index('      "exposureWindows": [', 20) + 2
    with pytest.raises(F.FormatError, match=f"cases.json:{line}: window 1"):
        F.read("gaen", [p])


def test_plain_csv(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("t,observer,rid,rssi,tx_power,distance_m\n"
                 "0,0,42,-60,-8,1.5\n"
                 "1,0,00112233445566778899aabb,-70,,3\n"
                 "2,1,42,127,,\n"
                 "3,1,42,-75,-999,\n")
    imp = F.read_full("csv", [p])
    assert len(imp.records) == 3 and imp.stats["rssi_sentinel"] == 1 and imp.stats["tx_sentinel"] == 1
    assert np.isnan(imp.records["tx_power"][2]) and imp.stats["tx_unknown"] == 2
    assert imp.records["rid"][0] == 42 and imp.records["rid"][1] == np.uint64(0x0011223344556677)
    np.testing.assert_allclose(imp.truth["distance_m"], [1.5, 3, np.nan])
    p.write_text("t,observer,rid,rssi,tx_power\n0,0,1,-60,-8\n1,0,1,-6x,-8\n")
    with pytest.raises(F.FormatError, match=r"s.csv:3: non-numeric rssi"):
        F.read("csv", [p])
    p.write_text("time,obs,rid,rssi,tx\n")
    with pytest.raises(F.FormatError, match=r":1: expected header"):
        F.read("csv", [p])


def test_tram_bucket_matrix_conserves_time():
    m = F.tram_bucket_matrix()
    np.testing.assert_allclose(m.sum(axis=1), 1.0)
    # 54-56 dB straddles the 55 dB edge: half on each side
    k55 = int(np.searchsorted(schema.ATT_EDGES, 55.0))
    assert m[3, k55] == pytest.approx(0.5) and m[3, k55 + 1] == pytest.approx(0.5)


def test_dublin_tram():
    folder = data_path("dublintram-gaen")
    w, kind, truth = F.read("dublin-tram", [folder])
    assert kind == "windows" and len(w) == 72 and len(truth) == 72
    assert len(np.unique(w["rid"])) == 72
    assert truth["distance_m"].min() == pytest.approx(0.5) and truth["distance_m"].max() == pytest.approx(5.15, abs=0.01)
    raw = np.loadtxt(folder / "dublintram_dataset_attenuations.txt", comments="#")
    np.testing.assert_allclose(w["duration_s"], raw.sum(axis=1) * 60)
    np.testing.assert_allclose(w["att_secs"].sum(axis=1), w["duration_s"], rtol=1e-6)
    assert (w["duration_s"] == 0).sum() == 2          # two all-zero rows are kept as empty windows


@pytest.mark.parametrize("fmt, folder, rows, sentinel", [
    ("mit", "mit-matrix-data", 62252, 899),
    ("pcng", "pcng-rss-smartphone", 123718, 0),
])
def test_real_datasets(fmt, folder, rows, sentinel):
    imp = F.read_full(fmt, [data_path(folder)])
    assert len(imp.records) == rows and imp.stats["rssi_sentinel"] == sentinel
    assert len(imp.truth) == rows and np.isfinite(imp.truth["distance_m"]).all()
    assert not np.isin(imp.records["rssi"], F.RSSI_SENTINELS).any()


def test_herald_single_file():
    p = data_path("herald-edison-rssi", "20210107-2245-A.csv")
    imp = F.read_full("herald", [p])
    assert len(imp.records) == 13908
    assert imp.truth["distance_m"].max() == pytest.approx(3.0)


def test_import_command_writes_parquet_atomically(tmp_path):
    from tracing.cli import main
    p = _bluezone(tmp_path, [f"{BZ_A}\t{BZ_B}\t-70\t1600000000000", f"{BZ_A}\t{BZ_B}\t127\t1600000001000"])
    out = tmp_path / "out"
    assert main(["import", "--format", "bluezone", str(p), "--out", str(out)]) == 0
    s = schema.read_parquet(out / "sightings.parquet")
    assert len(s) == 1
    summary = json.loads((out / "import.json").read_text())
    assert summary["stats"]["rssi_sentinel"] == 1 and summary["truth_file"] is None
    # a malformed file: exit 2, nothing written
    bad = _bluezone(tmp_path, [f"{BZ_A}\t{BZ_B}\t-70"], "bad.tsv")
    out2 = tmp_path / "out2"
    assert main(["import", "--format", "bluezone", str(bad), "--out", str(out2)]) == 2
    assert not (out2 / "sightings.parquet").exists()
    assert not any(out2.glob(".*tmp")) if out2.exists() else True


def test_import_command_with_truth(tmp_path):
    from tracing.cli import main
    out = tmp_path / "tram"
    assert main(["import", "--format", "dublin-tram", str(data_path("dublintram-gaen")), "--out", str(out)]) == 0
    w = schema.read_parquet(out / "windows.parquet")
    truth, meta = F.read_truth(out / "truth.parquet")
    assert len(w) == len(truth) == 72 and len(meta["sessions"]) == 72


def test_streaming_in_small_blocks(tmp_path, monkeypatch):
    """Parsing is chunked (pyarrow blocks); errors still name the right line across chunk boundaries."""
    import pyarrow.parquet as pq
    monkeypatch.setattr("ble.formats._common._BLOCK", 1024)   # bytes per block -> many chunks
    n = 2000
    lines = [f"{BZ_A}\t{BZ_B}\t{-40 - k % 50}\t{1600000000000 + 1000 * k}" for k in range(n)]
    p = _bluezone(tmp_path, lines, "big.tsv")
    out = tmp_path / "big"
    summary = F.import_files("bluezone", [p], out)
    assert summary["records"] == n
    assert pq.ParquetFile(out / "sightings.parquet").num_row_groups > 1
    np.testing.assert_allclose(schema.read_parquet(out / "sightings.parquet")["t"], 1.6e9 + np.arange(n))
    lines[1500] = f"{BZ_A}\t{BZ_B}\t-50\t1600000000000"      # goes back in time, deep in the file
    q = _bluezone(tmp_path, lines, "bad.tsv")
    with pytest.raises(F.FormatError, match=r"bad.tsv:1501: timestamp"):
        F.import_files("bluezone", [q], tmp_path / "bad")
    assert not (tmp_path / "bad" / "sightings.parquet").exists()
