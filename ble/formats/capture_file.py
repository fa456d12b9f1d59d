"""Reader of ``proxitrace capture`` output (format ``capture``): the sightings Parquet file, or the CSV
journal (:data:`JOURNAL_COLUMNS`) left by a capture whose conversion never ran."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ble import schema
from ble.formats._common import (FormatError, _check_nonempty, _check_time, _Chunk, _clean_signal,
                                 _data_line_numbers, _f64, _first_line, _OrderCheck, _sightings,
                                 _stream_csv)

__all__ = ["JOURNAL_COLUMNS", "read_capture"]

#: Columns of the capture journal (CSV, header line first); see :mod:`ble.capture`.
JOURNAL_COLUMNS = ["t", "observer", "rid", "rssi", "tx_power", "addr_hash", "service", "payload"]


def read_capture(paths, stats, meta, sort=False, **_):
    """``proxitrace capture`` output: the sightings Parquet file, or the CSV journal left by a capture
    whose conversion never ran (e.g. killed); the journal's extra columns go to the raw side table."""
    for path in paths:
        _check_nonempty(path)
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic == b"PAR1":
            try:
                pf = pq.ParquetFile(path)
            except (OSError, pa.ArrowException, UnicodeDecodeError) as e:   # incl. corrupt schema names
                raise FormatError(path, 0, f"not a readable Parquet file: {e}") from None
            kind = (pf.schema_arrow.metadata or {}).get(b"proxitrace.kind", b"").decode()
            if kind != "sightings":
                raise FormatError(path, 0, f"expected a sightings file from proxitrace capture, got {kind!r}")
            row0 = 0
            last = -np.inf
            for rg in range(pf.num_row_groups):
                try:
                    tab = pf.read_row_group(rg)
                except (OSError, pa.ArrowException) as e:   # corrupt pages / column chunks
                    raise FormatError(path, 0, f"row group {rg}: not readable: {e}") from None
                try:
                    rec = schema.from_table(tab, "sightings", str(path))
                except schema.RecordError as e:
                    msg = str(e).removeprefix(f"{path}: ")
                    raise FormatError(path, 0, f"row group {rg}: {msg}") from None
                bad = np.flatnonzero(~np.isfinite(rec["t"]))
                if bad.size:
                    raise FormatError(path, 0, f"row {row0 + bad[0]}: t must be a finite number")
                stats["rows_read"] += len(rec)
                if not sort and len(rec):
                    tt = np.concatenate([[last], rec["t"]])
                    bad = np.flatnonzero(np.diff(tt) < 0)
                    if bad.size:
                        raise FormatError(path, 0, f"row {row0 + bad[0]}: timestamps out of order")
                    last = rec["t"][-1]
                row0 += len(rec)
                keep = _clean_signal(rec["rssi"], rec["tx_power"], stats)
                yield _Chunk(rec[keep], None)
            continue
        head = [c.strip() for c in _first_line(path).split(",")]
        if head != JOURNAL_COLUMNS:
            raise FormatError(path, 1, f"not a capture journal: header {head}")
        types = {c: pa.string() for c in JOURNAL_COLUMNS}
        types.update(t=pa.float64(), observer=pa.int64(), rid=pa.uint64(), rssi=pa.float64(),
                     tx_power=pa.float64())
        order = _OrderCheck(path, 1, not sort)
        for batch in _stream_csv(path, JOURNAL_COLUMNS, types, ",", 1,
                                 {0: "t", 1: "observer", 2: "rid", 3: "rssi", 4: "tx_power"},
                                 len(JOURNAL_COLUMNS)):
            n = batch.num_rows
            stats["rows_read"] += n
            for k, name in ((1, "observer"), (2, "rid")):
                col = batch.column(k)
                if col.null_count:
                    r = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                    line = int(_data_line_numbers(path, 1, np.array([order.rows + r]))[0])
                    raise FormatError(path, line, f"missing {name}")
            t = _f64(batch.column(0))
            _check_time(t, path, 1, order.rows, "t")
            order(t)
            rssi, tx = _f64(batch.column(3)), _f64(batch.column(4))
            keep = _clean_signal(rssi, tx, stats)
            rec = _sightings(t, batch.column(1).to_numpy(zero_copy_only=False),
                             batch.column(2).to_numpy(zero_copy_only=False), rssi, tx)
            yield _Chunk(rec[keep], None)
