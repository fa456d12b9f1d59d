"""Reader of the documented plain CSV (format ``csv``).

Plain CSV (``csv``)
-------------------
Comma-separated, first line the header ``t,observer,rid,rssi,tx_power`` with an optional sixth
column ``distance_m``. ``t``: seconds (UNIX epoch or any origin), non-decreasing; ``observer``:
non-negative integer device index; ``rid``: the rolling ID as an unsigned decimal integer (1-20
digits) or as a hex string of at least 16 digits, e.g. a 24-digit Bluezone or 32-digit GAEN ID
(first 8 bytes used, like :func:`ble.ids.hex_to_u64`); ``rssi``: dBm;
``tx_power``: dBm or empty; ``distance_m``: true distance in metres or empty.

Checked on the input, each error naming the file and line: a time of 1e11 or more is taken as
milliseconds (year 5138 in seconds; the ``opentrace`` importer does the same), converted to seconds and
reported once per file with a :class:`UserWarning` and in the stats (``t_ms_converted``); an RSSI
outside [-140, 30] dBm that is not a sentinel (127, 999, -127), or a TX power outside [-100, 40] dBm that
is not -999, is an error (e.g. swapped columns); bytes that are not UTF-8 are an error naming the line.
A file with the header only is an error ("no data rows").
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ble.formats._common import (RSSI_SENTINELS, TX_SENTINELS, FormatError, _check_nonempty, _check_time, _Chunk, _clean_signal,
                                 _data_line_numbers, _f64, _first_line, _OrderCheck, _sightings,
                                 _stream_csv, _truth)

__all__ = ["PLAIN_CSV_COLUMNS", "read_csv"]

PLAIN_CSV_COLUMNS = ["t", "observer", "rid", "rssi", "tx_power"]


def _rid_column(col: pa.ChunkedArray | pa.Array, path: Path, skip: int, row0: int) -> np.ndarray:
    from ble.ids import hex_to_u64   # lazy: ble.ids loads numba; keep it off the CLI's start-up path
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    col = pc.utf8_trim_whitespace(col.cast(pa.string()))
    dec = pc.match_substring_regex(col, r"^[0-9]{1,20}$").to_numpy(zero_copy_only=False)
    out = np.zeros(len(col), dtype=np.uint64)
    idx = np.flatnonzero(dec)
    bad_row = None
    if idx.size:
        try:
            out[idx] = pc.cast(col.take(pa.array(idx)), pa.uint64()).to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            bad_row, msg = int(idx[0]), "decimal rid does not fit 64 bits"
    hx = np.flatnonzero(~dec)
    if hx.size and bad_row is None:
        try:
            out[hx] = hex_to_u64(np.asarray(col.take(pa.array(hx)).to_numpy(zero_copy_only=False), dtype=str))
        except ValueError as e:
            msg = str(e)
            k = int(msg.split(":")[0].split()[-1]) if msg.startswith("row ") else 0
            bad_row = int(hx[k])
    if bad_row is not None:
        line = int(_data_line_numbers(path, skip, np.array([row0 + bad_row]))[0])
        raise FormatError(path, line, f"rid is neither an unsigned integer nor a hex ID: {msg}")
    return out


MS_THRESHOLD = 1e11   #: a time (s) at or above this is taken as milliseconds (year 5138 in seconds)


def _ms_to_s(t: np.ndarray, path: Path, row0: int, stats: dict, warned: set) -> np.ndarray:
    """Times of 1e11 or more -> ms to s, warned once per file (``warned``: files already warned)."""
    ms = np.abs(t) >= MS_THRESHOLD
    if not ms.any():
        return t
    if str(path) not in warned:
        line = int(_data_line_numbers(path, 1, np.array([row0 + int(np.flatnonzero(ms)[0])]))[0])
        warnings.warn(f"{path}:{line}: t = {float(t[ms][0]):.0f} looks like milliseconds since the epoch; "
                      "times >= 1e11 are divided by 1000", UserWarning, stacklevel=2)
        warned.add(str(path))
    stats["t_ms_converted"] = stats.get("t_ms_converted", 0) + int(ms.sum())
    return np.where(ms, t / 1000.0, t)


def _check_range(v: np.ndarray, sentinels, lim, name: str, unit: str, path: Path, row0: int) -> None:
    """Values outside ``lim`` that are not sentinels or NaN name their input line."""
    with np.errstate(invalid="ignore"):
        bad = ~np.isnan(v) & ~np.isin(v, sentinels) & ~((v >= lim[0]) & (v <= lim[1]))
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        line = int(_data_line_numbers(path, 1, np.array([row0 + r]))[0])
        raise FormatError(path, line, f"{name} {float(v[r]):g} {unit} is outside [{lim[0]:g}, {lim[1]:g}] "
                                      f"{unit} (columns swapped?)")


def read_csv(paths, stats, meta, sort=False, **_):
    """Plain CSV ``t,observer,rid,rssi,tx_power[,distance_m]`` (see the module docstring)."""
    warned: set = set()
    for path in paths:
        _check_nonempty(path)
        head = [c.strip() for c in _first_line(path).split(",")]
        if head[:5] != PLAIN_CSV_COLUMNS or len(head) not in (5, 6) or (len(head) == 6 and head[5] != "distance_m"):
            raise FormatError(path, 1, f"expected header {','.join(PLAIN_CSV_COLUMNS)}[,distance_m], "
                                       f"got {ascii(','.join(head))}")
        has_d = len(head) == 6
        types = {"t": pa.float64(), "observer": pa.int64(), "rid": pa.string(), "rssi": pa.float64(),
                 "tx_power": pa.float64(), "distance_m": pa.float64()}
        numeric = {0: "t", 1: "observer", 3: "rssi", 4: "tx_power"}
        if has_d:
            numeric[5] = "distance_m"
        order = _OrderCheck(path, 1, not sort)
        for batch in _stream_csv(path, head, {k: types[k] for k in head}, ",", 1, numeric, len(head)):
            n = batch.num_rows
            stats["rows_read"] += n
            for name in ("t", "observer", "rid"):
                col = batch.column(head.index(name))
                if col.null_count:
                    r = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                    line = int(_data_line_numbers(path, 1, np.array([order.rows + r]))[0])
                    raise FormatError(path, line, f"missing {name}")
            t = _f64(batch.column(0))
            obs = batch.column(1).to_numpy(zero_copy_only=False)
            if (obs < 0).any():
                r = int(np.flatnonzero(obs < 0)[0])
                line = int(_data_line_numbers(path, 1, np.array([order.rows + r]))[0])
                raise FormatError(path, line, f"negative observer {obs[r]}")
            rid = _rid_column(batch.column(2), path, 1, order.rows)
            _check_time(t, path, 1, order.rows, "t")
            t = _ms_to_s(t, path, order.rows, stats, warned)
            order(t)
            rssi = _f64(batch.column(3))
            tx = _f64(batch.column(4))
            _check_range(rssi, RSSI_SENTINELS, (-140.0, 30.0), "rssi", "dBm", path, order.rows - n)
            _check_range(tx, TX_SENTINELS, (-100.0, 40.0), "tx_power", "dBm", path, order.rows - n)
            keep = _clean_signal(rssi, tx, stats)
            truth = None
            if has_d:
                dist = _f64(batch.column(5))
                with np.errstate(invalid="ignore"):
                    bad = ~np.isnan(dist) & ~((dist >= 0) & np.isfinite(dist))
                if bad.any():
                    r = int(np.flatnonzero(bad)[0])
                    line = int(_data_line_numbers(path, 1, np.array([order.rows - n + r]))[0])
                    raise FormatError(path, line, f"distance_m must be a finite number >= 0 (m) or "
                                                  f"empty, got {dist[r]}")
                truth = _truth(n, dist, -1, -1)[keep]
            yield _Chunk(_sightings(t, obs, rid, rssi, tx)[keep], truth)
