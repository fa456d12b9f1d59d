"""ble.schema's columns mode: iter_parquet(..., columns=[...]) and validate_columns.

One reader per file format: RunFolder.window_columns is a call to this mode, so what it promises (the
record mode's blocks, cut at the same observer boundaries; the same checks and messages on the columns
read; nothing decoded or checked beyond them) is tested here on files made to exercise it.
"""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ble.schema import (GROUND_TRUTH_DTYPE, N_ATT_BUCKETS, WINDOW_DTYPE, RecordError, iter_parquet, to_table,
                        validate, validate_columns, write_parquet)


def _windows(n=2000, observers=40, seed=1):
    rng = np.random.default_rng(seed)
    w = np.zeros(n, WINDOW_DTYPE)
    w["observer"] = np.sort(rng.integers(0, observers, n))
    if n > 900:
        w["observer"][300:900] = w["observer"][300]             # one observer longer than a batch
        w["observer"] = np.maximum.accumulate(w["observer"])
    w["rid"] = rng.integers(0, 2**63, n).astype(np.uint64)
    w["t_start"] = rng.uniform(0, 86400, n)
    w["t_end"] = w["t_start"] + rng.exponential(300, n)
    w["n_scans"] = rng.integers(1, 30, n)
    w["duration_s"] = rng.exponential(200, n)
    w["rssi_mean"] = rng.normal(-70, 5, n)
    w["rssi_max"] = w["rssi_mean"] + 2
    w["tx_power"] = np.where(rng.random(n) < 0.1, np.nan, -10.0)
    w["att_typical"] = w["tx_power"] - w["rssi_mean"]
    w["att_min"] = w["att_typical"] - 2
    w["att_secs"] = rng.exponential(10, (n, N_ATT_BUCKETS))
    return w


@pytest.mark.parametrize("rows", [64, 257, 600, 1999, 5000])
def test_column_blocks_are_the_record_blocks(tmp_path, rows):
    """Columns mode yields the record mode's blocks, cut at the same observer boundaries (an observer
    longer than a batch, a file of at most ``rows`` rows: one block), each column contiguous and of the
    field's dtype, only the fields asked for and the key."""
    w = _windows()
    f = tmp_path / "w.parquet"
    write_parquet(f, w, "windows")
    recs = list(iter_parquet(f, "windows", rows, "observer"))
    cols = list(iter_parquet(f, "windows", rows, "observer", columns=list(WINDOW_DTYPE.names)))
    assert len(cols) == len(recs) and (len(recs) == 1) == (rows >= len(w))
    for r, c in zip(recs, cols):
        assert list(c) == list(WINDOW_DTYPE.names)
        for name, v in c.items():
            assert v.dtype == WINDOW_DTYPE[name].base and v.shape == (len(r),) + WINDOW_DTYPE[name].shape
            assert v.flags.c_contiguous and np.array_equal(v, r[name], equal_nan=True)
    assert all(a["observer"][-1] < b["observer"][0] for a, b in zip(cols, cols[1:]))    # no observer split
    some = list(iter_parquet(f, "windows", rows, "observer", columns=["att_secs", "n_scans"]))
    assert [list(b) for b in some] == [["observer", "n_scans", "att_secs"]] * len(recs)
    assert [len(b["observer"]) for b in some] == [len(r) for r in recs]


def test_unsorted_file_is_one_block(tmp_path):
    w = _windows()[::-1].copy()
    write_parquet(tmp_path / "u.parquet", w, "windows")
    blocks = list(iter_parquet(tmp_path / "u.parquet", "windows", 100, "observer", columns=["t_start"]))
    assert len(blocks) == 1 and np.array_equal(blocks[0]["observer"], w["observer"])


def test_bad_column_name_is_refused_before_reading(tmp_path):
    with pytest.raises(ValueError, match=r"iter_parquet: columns \['rsi_mean'\] are not fields of windows"):
        next(iter_parquet(tmp_path / "absent.parquet", "windows", 100, "observer", columns=["rsi_mean"]))
    with pytest.raises(ValueError, match=r"columns \['agent'\] are not fields of windows"):
        next(iter_parquet(tmp_path / "absent.parquet", "windows", 100, "agent", columns=["t_start"]))


def test_bad_values_named_by_file_and_row_only_in_columns_read(tmp_path):
    """A bad value is reported as the record mode reports it (file, row, column) when its column is read,
    and not looked at when it is not; nulls in an integer column and missing columns are refused."""
    w = _windows()
    w["rssi_max"][1234] = np.inf
    f = tmp_path / "bad.parquet"
    pq.write_table(to_table(w, "windows"), f)
    with pytest.raises(RecordError, match=r"bad\.parquet: row 1234: column 'rssi_max' has non-finite"):
        list(iter_parquet(f, "windows", 256, "observer"))
    with pytest.raises(RecordError, match=r"bad\.parquet: row 1234: column 'rssi_max' has non-finite"):
        list(iter_parquet(f, "windows", 256, "observer", columns=["rssi_max"]))
    assert len(list(iter_parquet(f, "windows", 256, "observer", columns=["n_scans"]))) > 1
    w = _windows()
    w["t_end"][77] = w["t_start"][77] - 1
    pq.write_table(to_table(w, "windows"), f)
    with pytest.raises(RecordError, match=r"bad\.parquet: row 77: t_end before t_start"):
        list(iter_parquet(f, "windows", 256, "observer", columns=["t_start", "t_end"]))
    assert len(list(iter_parquet(f, "windows", 256, "observer", columns=["t_end"]))) > 1
    t = to_table(_windows(), "windows")
    scans = t.column("n_scans").to_pylist()
    scans[1500] = None
    t = t.set_column(t.schema.get_field_index("n_scans"), "n_scans", pa.array(scans, pa.int32()))
    pq.write_table(t, f)
    with pytest.raises(RecordError, match=r"bad\.parquet: row 1500: column 'n_scans' is null"):
        list(iter_parquet(f, "windows", 256, "observer", columns=["n_scans"]))
    pq.write_table(t.drop_columns(["att_min"]), f)
    with pytest.raises(RecordError, match=r"bad\.parquet: missing columns \['att_min'\] for windows"):
        next(iter_parquet(f, "windows", 256, "observer", columns=["n_scans"]))


def test_validate_columns_checks_names_dtypes_shapes_and_values():
    """validate_columns checks each given column's name, dtype and shape, then its values as validate
    does (same message, rows from row_offset), and the checks between fields only where both are given."""
    w = _windows(50)
    cols = {f: np.ascontiguousarray(w[f]) for f in ("observer", "t_start", "rssi_mean", "att_secs")}
    assert validate_columns(cols, "windows") is cols
    with pytest.raises(RecordError, match=r"src: column 'rssi_mean' has dtype float64 and shape \(50,\), "
                                          r"expected float32"):
        validate_columns({**cols, "rssi_mean": w["rssi_mean"].astype(np.float64)}, "windows", "src")
    with pytest.raises(RecordError, match=r"column 'att_secs' has dtype float32 and shape \(50, 3\)"):
        validate_columns({**cols, "att_secs": cols["att_secs"][:, :3].copy()}, "windows")
    with pytest.raises(RecordError, match=r"column 't_start' has dtype float64 and shape \(49,\)"):
        validate_columns({**cols, "t_start": cols["t_start"][1:]}, "windows")
    with pytest.raises(RecordError, match=r"'rssi' is not a field of windows records"):
        validate_columns({"rssi": cols["rssi_mean"]}, "windows")
    bad = {**cols, "rssi_mean": cols["rssi_mean"].copy()}
    bad["rssi_mean"][7] = 99.0
    want = r"f: row 107: column 'rssi_mean' value 99.0 outside \[-140.0, 30.0\]"
    with pytest.raises(RecordError, match=want):
        validate_columns(bad, "windows", "f", row_offset=100)
    w["rssi_mean"][7] = 99.0
    with pytest.raises(RecordError, match=want):
        validate(w, "windows", "f", row_offset=100)
    g = np.zeros(3, GROUND_TRUTH_DTYPE)
    g["i"], g["j"] = [0, 5, 1], [1, 2, 2]
    validate_columns({"i": g["i"].copy()}, "ground_truth")                  # j not given: not compared
    with pytest.raises(RecordError, match="row 1: expected i < j"):
        validate_columns({"i": g["i"].copy(), "j": g["j"].copy()}, "ground_truth")
