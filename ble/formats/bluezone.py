"""Reader of the Bluezone trace export (format ``bluezone``): TAB-separated own ID, contact ID, RSSI,
timestamp (ms), optional header line."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ble.formats._common import (FormatError, _check_nonempty, _check_time, _Chunk, _clean_signal,
                                 _data_line_numbers, _f64, _first_line, _is_number, _OrderCheck,
                                 _sightings, _stream_csv)

__all__ = ["read_bluezone"]


def read_bluezone(paths, stats, meta, sort=False, **_):
    """Bluezone trace export: own ID hex, contact ID hex, RSSI (dBm), timestamp (ms); TAB-separated.

    ``observer`` is the index of the file (one export = one phone), ``rid`` the first 8 bytes of
    the contact's 12-byte ID, TX power NaN (not exported).
    """
    from ble.ids import hex_to_u64   # lazy: ble.ids loads numba; keep it off the CLI's start-up path
    names = ["own_id", "contact_id", "rssi", "timestamp_ms"]
    types = {"own_id": pa.string(), "contact_id": pa.string(), "rssi": pa.float64(),
             "timestamp_ms": pa.float64()}
    meta.setdefault("own_ids", {})
    for fi, path in enumerate(paths):
        _check_nonempty(path)
        first = _first_line(path).split("\t")
        skip = 1 if len(first) >= 3 and not _is_number(first[2].strip()) else 0
        order = _OrderCheck(path, skip, not sort)
        own = set()
        for batch in _stream_csv(path, names, types, "\t", skip,
                                 {2: "rssi", 3: "timestamp"}, 4):
            n = batch.num_rows
            stats["rows_read"] += n
            cid = batch.column(1).to_numpy(zero_copy_only=False)
            try:
                rid = hex_to_u64(np.asarray(cid, dtype=str))
            except ValueError as e:
                row = int(str(e).split(":")[0].split()[-1]) if str(e).startswith("row ") else 0
                line = int(_data_line_numbers(path, skip, np.array([order.rows + row]))[0])
                raise FormatError(path, line, f"contact ID: {e}") from None
            own.update(pc.unique(batch.column(0)).to_pylist())
            t = _f64(batch.column(3)) / 1000.0
            if np.isnan(t).any():
                r = int(np.flatnonzero(np.isnan(t))[0])
                line = int(_data_line_numbers(path, skip, np.array([order.rows + r]))[0])
                raise FormatError(path, line, "missing timestamp")
            _check_time(t, path, skip, order.rows)
            order(t)
            rssi = _f64(batch.column(2))
            tx = np.full(n, np.nan)
            keep = _clean_signal(rssi, tx, stats)
            yield _Chunk(_sightings(t, fi, rid, rssi, tx)[keep], None)
        meta["own_ids"][str(path)] = len(own)
