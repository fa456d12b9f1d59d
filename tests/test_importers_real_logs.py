"""Importer paths for real logs (issue 15): CWA's GAEN naming, MIT logs without the Matrix header or with
another beacon, labelled plain CSV for ``calibrate``, millisecond timestamps, non-UTF-8 bytes, swapped
columns, header-only files, ``.zip`` -- each bad input named by its *input* file and line, bytes escaped."""
import json
import shutil

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ble import formats as F
from ble.datasets import DatasetError
from ble.formats.labelled_csv import load_labelled_csv
from tests.conftest import DATA
from tests.test_hypothesis_importers import POSITION, SETTINGS, _check, damage

MIT_GENERIC = """2021-03-01 10:00:00.000,Bluetooth,AAAA-1,-60,Charles,-999.0,1.0
2021-03-01 10:00:01.000,Bluetooth,BBBB-2,-80,None,8.0,2.0
2021-03-01 10:00:02.000,Bluetooth,AAAA-1,-61,Charles,-999.0,3.0
2021-03-01 10:00:03.000,Heading,1,2,3
2021-03-01 10:00:04.000,Bluetooth,AAAA-1,127,Charles,-999.0,4.0
"""


def test_mit_log_without_matrix_header_any_beacon(tmp_path):
    p = tmp_path / "static_log.txt"
    p.write_text(MIT_GENERIC)
    imp = F.read_full("mit", [p])
    # every advertisement but the RSSI-127 one; one rolling ID per advertiser of the log
    assert len(imp.records) == 3 and imp.stats["rssi_sentinel"] == 1
    assert len(np.unique(imp.records["rid"])) == 2
    assert np.isnan(imp.truth["distance_m"]).all()          # no Range header: distance unknown
    assert imp.meta["devices"][1:] == ["id:AAAA-1", "id:BBBB-2"]
    # with a Range header (feet), the distance is known
    p.write_text("2021-03-01 09:59:59.000,Range,6\n" + MIT_GENERIC)
    imp = F.read_full("mit", [p])
    np.testing.assert_allclose(imp.truth["distance_m"], 6 * 0.3048, rtol=1e-6)


def test_staged_mit_still_keeps_only_the_matrix_beacon():
    imp = F.read_full("mit", [DATA / "mit-matrix-data"])
    assert len(np.unique(imp.records["rid"])) == 20                   # one per file (one range each)


@SETTINGS
@given(data=st.data())
def test_mit_generic_damaged(tmp_path, data):
    p = tmp_path / "g_log.txt"
    p.write_bytes(data.draw(damage(MIT_GENERIC, ",")))
    _check("mit", [p], [str(p), p.name])


def test_csv_milliseconds_converted_with_a_warning(tmp_path):
    p = tmp_path / "ms.csv"
    p.write_text("t,observer,rid,rssi,tx_power\n1600000000000,0,5,-60,-20\n1600000030000,0,5,-61,-20\n")
    with pytest.warns(UserWarning, match=r"ms\.csv:2: .*milliseconds"):
        imp = F.read_full("csv", [p])
    np.testing.assert_allclose(imp.records["t"], [1.6e9, 1.6e9 + 30])
    assert imp.stats["t_ms_converted"] == 2


@pytest.mark.parametrize("row, what", [
    ("1600000040,0,5,1600000000,-61", r"sw\.csv:4: rssi 1\.6e\+09 dBm is outside"),
    ("1600000040,0,5,-61,1600000000", r"sw\.csv:4: tx_power 1\.6e\+09 dBm is outside"),
])
def test_csv_swapped_columns_name_the_input_line(tmp_path, row, what):
    p = tmp_path / "sw.csv"
    p.write_text(f"t,observer,rid,rssi,tx_power\n1600000000,0,5,-60,-20\n1600000030,0,5,-61,-20\n{row}\n")
    with pytest.raises(F.FormatError, match=what):
        F.read_full("csv", [p])


@pytest.mark.parametrize("fmt, text", [
    ("csv", b"t,observer,rid,rssi,tx_power\n1600000000,0,5,-60,-20\n1600000030,0,caf\xe9,-61,-20\n"),
    ("bluezone", b"aa01\tbb02\t-60\t1600000000000\naa01\tbb0\xe9\t-61\t1600000030000\n"),
])
def test_latin1_byte_names_file_and_line_escaped(tmp_path, fmt, text):
    p = tmp_path / "latin.txt"
    p.write_bytes(text)
    with pytest.raises(F.FormatError) as e:
        F.read_full(fmt, [p])
    msg = str(e.value)
    assert msg.startswith(f"{p}:") and "not UTF-8" in msg and "\\xe9" in msg
    assert msg.split(":")[1] in ("2", "3") and msg.isascii()


def _herald_copy(tmp_path, header_only: bool):
    src = DATA / "herald-edison-rssi"
    d = tmp_path / "herald"
    d.mkdir()
    for n in ("metadata.csv", "phones.csv", "20210107-2245-A.csv", "20210111-1015-A.csv"):
        shutil.copy(src / n, d / n)
    if header_only:
        f = d / "20210107-2245-A.csv"
        f.write_text(f.read_text().splitlines()[0] + "\n")
    return d


def test_herald_header_only_file_is_an_error_naming_it(tmp_path):
    d = _herald_copy(tmp_path, True)
    with pytest.raises(F.FormatError, match=r"20210107-2245-A\.csv:1: no herald data rows"):
        F.read_full("herald", [d / "20210107-2245-A.csv"])
    assert len(F.read_full("herald", [d / "20210111-1015-A.csv"]).records) > 1000   # a sibling still reads


def test_herald_non_utf8_names_the_input_file_and_line(tmp_path):
    d = _herald_copy(tmp_path, False)
    f = d / "20210111-1015-A.csv"
    n = len(f.read_bytes().splitlines())
    with open(f, "ab") as fh:
        fh.write(b"2021-01-11 12:00:00,-6\xe9,10\n")
    with pytest.raises(F.FormatError, match=rf"20210111-1015-A\.csv:{n + 1}: not UTF-8 .*\\xe9"):
        F.read_full("herald", [f])


LABELLED = "rssi,distance_m,carriage_tx,carriage_rx,platform_rx,session\n" + "".join(
    f"{-55 - 20 * np.log10(d) + e:.1f},{d},hand,,{'ios' if s else 'android'},run{s}\n"
    for s in range(2) for d in (0.5, 1.0, 2.0, 3.0) for e in (-3.0, 0.0, 3.0))


def test_labelled_csv_loader(tmp_path):
    p = tmp_path / "lab.csv"
    p.write_text(LABELLED)
    data = load_labelled_csv(p)
    assert len(data) == 24 and data.datasets == ("csv:lab",) and len(data.sessions) == 2
    assert set(data.carriage_tx.tolist()) == {0} and set(data.carriage_rx.tolist()) == {-1}
    assert data.platform_rx.tolist().count(1) == 12
    p.write_text(LABELLED.replace(",hand,", ",pocket,", 1))
    with pytest.raises(DatasetError, match=r"lab\.csv: line 2: carriage_tx 'pocket'"):
        load_labelled_csv(p)
    p.write_text("rssi,distance_m\n")
    with pytest.raises(DatasetError, match=r"lab\.csv: line 1: no data rows"):
        load_labelled_csv(p)


@SETTINGS
@given(data=st.data())
def test_labelled_csv_damaged(tmp_path, data):
    p = tmp_path / "lab.csv"
    p.write_bytes(data.draw(damage(LABELLED, ",")))
    try:
        d = load_labelled_csv(p)
    except ValueError as e:
        msg = str(e)
        assert str(p) in msg and POSITION.search(msg), msg
        return
    assert np.all(np.isfinite(d.distance_m) & (d.distance_m >= 0)) and np.all(np.isfinite(d.rssi))


def test_calibrate_a_labelled_csv_is_out_of_sample(tmp_path, capsys):
    from tracing.cli import main
    p = tmp_path / "lab.csv"
    p.write_text(LABELLED)
    assert main(["calibrate", "--data", str(p), "--out", str(tmp_path / "r.toml")]) == 0
    out = capsys.readouterr().out
    assert "csv:lab" in out and "in-sample" not in out and "default*" not in out
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["evaluation"]["csv:lab"]["default_in_sample"] is False
    zp = tmp_path / "lab.zip"
    zp.write_bytes(b"PK\x03\x04")
    assert main(["calibrate", "--data", str(zp), "--out", str(tmp_path / "z.toml")]) == 2
    assert "unpack it" in capsys.readouterr().err


@SETTINGS
@given(data=st.data())
def test_gaen_cwa_wrapper_damaged(tmp_path, data):
    doc = {"testCases": [{"description": "x", "exposureWindows": [
        {"ageInDays": 1, "reportType": 2, "infectiousness": 2, "calibrationConfidence": 0,
         "scanInstances": [{"minAttenuation": 30, "typicalAttenuation": 25, "secondsSinceLastScan": 300},
                           {"minAttenuation": 70, "typicalAttenuation": 72, "secondsSinceLastScan": -20}]}]}]}
    p = tmp_path / "cases.json"
    p.write_bytes(data.draw(damage(json.dumps(doc, indent=1), ":")))
    _check("gaen", [p], [str(p), p.name])


def test_zip_contact_list_read_or_named(tmp_path):
    import zipfile

    from tracing.contacts import read_contacts
    z1 = tmp_path / "one.zip"
    with zipfile.ZipFile(z1, "w") as z:
        z.writestr("c.csv", "i,j\n0,1\n1,2\n")
    c = read_contacts(z1)
    assert c["i"].tolist() == [0, 1] and c["j"].tolist() == [1, 2]
    z2 = tmp_path / "two.zip"
    with zipfile.ZipFile(z2, "w") as z:
        z.writestr("a.csv", "i,j\n0,1\n")
        z.writestr("b.csv", "i,j\n0,1\n")
    with pytest.raises(ValueError, match=r"two\.zip: line 0: a \.zip archive with 2 files"):
        read_contacts(z2)


def test_mit_tx_power_outside_a_radio_range_names_its_line(tmp_path):
    # a damaged TX power must not become inf in the float32 column: it names its line instead
    p = tmp_path / "tx_log.txt"
    p.write_text(MIT_GENERIC.replace(",8.0,2.0", ",1e40,2.0"))
    with pytest.raises(F.FormatError, match=r"tx_log\.txt:2: TX power 1e\+40 dBm is outside"):
        F.read_full("mit", [p])


@pytest.mark.filterwarnings("error")
def test_labelled_csv_bad_row_that_is_not_utf8_names_its_line_quietly(tmp_path):
    # a row with too many fields and a non-UTF-8 byte: pyarrow cannot pass it to the bad-row handler
    # (an "Exception ignored" on stderr); the UTF-8 check before reading names the line instead
    p = tmp_path / "lab.csv"
    p.write_bytes(LABELLED.encode() + b"-60,1.0,hand,,ios,run0,\xed\n")
    with pytest.raises(DatasetError, match=r"lab\.csv: line 26: not UTF-8 text"):
        load_labelled_csv(p)
