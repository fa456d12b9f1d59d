"""Parquet writer options per record kind (ble.schema.PARQUET_ENCODING, issue 16): the chosen encodings
reach the file, the data reads back equal, both writers write the same bytes, and validation's fast
path still names the first bad row."""
from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from ble.schema import (PARQUET_ENCODING, ParquetAppender, RecordError, empty, parquet_options, read_parquet,
                        validate, write_parquet)


def _windows(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    w = empty("windows", n)
    w["observer"] = np.sort(rng.integers(0, 200, n))
    w["rid"] = rng.integers(0, 50, n).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)   # repeated IDs
    w["t_start"] = rng.uniform(0, 86400, n)
    w["t_end"] = w["t_start"] + 300.0 * rng.integers(0, 20, n)
    w["n_scans"] = rng.integers(1, 30, n)
    w["duration_s"] = 300.0 * w["n_scans"]
    w["rssi_mean"] = rng.uniform(-100, -40, n)
    w["rssi_max"] = w["rssi_mean"] + rng.uniform(0, 5, n)
    w["tx_power"] = np.where(rng.random(n) < 0.1, np.nan, -17.0)
    w["att_typical"] = w["tx_power"] - w["rssi_mean"]
    w["att_min"] = w["tx_power"] - w["rssi_max"]
    w["att_secs"][np.arange(n), rng.integers(0, 11, n)] = w["duration_s"]
    return w


def _ground_truth(n=2000, seed=1):
    rng = np.random.default_rng(seed)
    g = empty("ground_truth", n)
    g["i"] = np.sort(rng.integers(0, 10_000, n))
    g["j"] = g["i"] + 1 + rng.integers(0, 100, n)
    g["day"] = 2
    g["minutes_close"] = 5.0 * rng.integers(1, 10, n)
    g["min_dist"] = rng.uniform(0, 2, n)
    g["detected"] = rng.random(n) < 0.5
    return g


def _chunks(path):
    md = pq.ParquetFile(path).metadata
    rg = md.row_group(0)
    return {rg.column(c).path_in_schema.split(".")[0]: rg.column(c) for c in range(rg.num_columns)}


@pytest.mark.parametrize("kind, make", [("windows", _windows), ("ground_truth", _ground_truth)])
def test_encodings_reach_the_file_and_the_data_reads_back_equal(tmp_path, kind, make):
    arr = make()
    enc = PARQUET_ENCODING[kind]
    path = tmp_path / f"{kind}.parquet"
    with ParquetAppender(path, kind, meta={"day": 2}) as app:
        app.write(arr[:1000])
        app.write(arr[1000:])
    back = read_parquet(path, kind)
    assert back.tobytes() == arr.tobytes()                          # the same data, bit for bit (NaN too)
    for name, ch in _chunks(path).items():
        encodings = set(ch.encodings)
        assert (ch.dictionary_page_offset is not None) == (name in enc["dict"]), name
        assert ("BYTE_STREAM_SPLIT" in encodings) == (name in enc["split"]), name
        assert ch.is_stats_set == (name in enc["stats"]), name
        assert ch.compression == "ZSTD"
    # every column is either dictionary, split or plain, and named once
    names = set(arr.dtype.names)
    assert set(enc["dict"]) | set(enc["split"]) | set(enc["stats"]) <= names
    assert not set(enc["dict"]) & set(enc["split"])


def test_both_writers_write_the_same_bytes_and_other_kinds_keep_defaults(tmp_path):
    w = _windows(500)
    write_parquet(tmp_path / "a.parquet", w, "windows", meta={"x": 1})
    with ParquetAppender(tmp_path / "b.parquet", "windows", meta={"x": 1}) as app:
        app.write(w)
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()
    assert parquet_options("sightings") == {"compression": "zstd"}
    s = empty("sightings", 100)
    s["rssi"] = -60.0
    write_parquet(tmp_path / "s.parquet", s, "sightings")
    assert all(ch.dictionary_page_offset is not None and ch.is_stats_set
               for ch in _chunks(tmp_path / "s.parquet").values())


@pytest.mark.parametrize("field, row, value, message", [
    ("rssi_mean", 7, np.inf, "column 'rssi_mean' has non-finite"),       # NaN allowed, inf not
    ("duration_s", 11, np.nan, "column 'duration_s' has non-finite"),    # NaN not allowed
    ("n_scans", 3, -1, "column 'n_scans' value -1 outside"),
    ("att_secs", 9, -5.0, "column 'att_secs' value"),                    # a 2-D column
])
def test_fast_validation_still_names_the_first_bad_row(tmp_path, field, row, value, message):
    w = _windows(50)
    if field == "att_secs":
        w["att_secs"][row, 4] = value
    else:
        w[field][row] = value
    with pytest.raises(RecordError, match=f"row {row}: {message}"):
        validate(w, "windows")
    with pytest.raises(RecordError, match=f"row {row + 100}: {message}"):
        with ParquetAppender(tmp_path / "w.parquet", "windows") as app:
            app.write(_windows(100))
            app.write(w)
    assert not (tmp_path / "w.parquet").exists()
    with pytest.raises(RecordError, match="missing fields"):
        ParquetAppender(tmp_path / "x.parquet", "windows").write(_ground_truth(5))
