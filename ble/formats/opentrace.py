"""Reader of OpenTrace/BlueTrace encounter records (format ``opentrace``): CSV with a header, a JSON list
(or ``{"records": [...]}``), or NDJSON."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ble.formats._common import (FormatError, _check_nonempty, _Chunk, _clean_signal, _first_line,
                                 _sightings, _stream_csv, u64_of_strings)
from ble.formats._json import _json_record_line, _load_json_records, _num_field

__all__ = ["read_opentrace"]

_OT_FIELDS = ("id", "v", "msg", "org", "modelP", "modelC", "rssi", "txPower", "timestamp")


def _hash_column(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 ID per row of a string column, hashing only the distinct values (vectorised)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    enc = pc.dictionary_encode(col.cast(pa.string()))
    codes = enc.indices.to_numpy(zero_copy_only=False)
    return u64_of_strings(enc.dictionary.to_pylist())[codes]


def read_opentrace(paths, stats, meta, **_):
    """OpenTrace/BlueTrace encounter records (CSV with header, JSON list/``records``, or NDJSON).

    ``rid``: stable 64-bit hash of the temporary ID ``msg`` (base64 text); ``timestamp`` in ms (values
    below 1e11 are taken as seconds, as in the BlueTrace upload); rows are sorted by time (records
    are stored in database order). ``observer`` = file index; RSSI 999/127/-127 dropped.
    """
    for fi, path in enumerate(paths):
        _check_nonempty(path)
        head = _first_line(path).lstrip()
        text = None
        if head.startswith("[") or head.startswith("{"):
            arr, text = _load_json_records(path, ("records", "streetPassRecords", "encounters"))
            if "msg" not in [arr.type.field(i).name for i in range(arr.type.num_fields)]:
                raise FormatError(path, 1, "missing field 'msg'")
            msg = arr.field("msg")
        else:
            cols = [c.strip() for c in head.split(",")]
            for req in ("msg", "rssi", "timestamp"):
                if req not in cols:
                    raise FormatError(path, 1, f"header lacks column {ascii(req)} (have {ascii(cols)})")
            types = {c: pa.string() for c in cols}
            numeric = {i: c for i, c in enumerate(cols) if c in ("rssi", "txPower", "timestamp")}
            batches = list(_stream_csv(path, cols, types, ",", 1, numeric, len(cols)))
            tab = pa.Table.from_batches(batches)
            arr = pa.StructArray.from_arrays([c.combine_chunks() for c in tab.columns], names=cols)
            msg = arr.field("msg")
        n = len(arr)
        stats["rows_read"] += n
        t = _num_field(arr, "timestamp", path, text)
        if np.isnan(t).any():
            k = int(np.flatnonzero(np.isnan(t))[0])
            raise FormatError(path, _json_record_line(text, k) if text else k + 2, f"record {k}: missing timestamp")
        if not np.isfinite(t).all():
            k = int(np.flatnonzero(~np.isfinite(t))[0])
            raise FormatError(path, _json_record_line(text, k) if text else k + 2,
                              f"record {k}: timestamp must be a finite number, got {t[k]!r}")
        # per value, as documented: ms, or s when below 1e11 (a file-wide median silently
        # mis-scaled the odd record in the other unit)
        t = np.where(np.abs(t) >= 1e11, t / 1000.0, t)
        rssi = _num_field(arr, "rssi", path, text)
        tx = _num_field(arr, "txPower", path, text, required=False)
        if msg.null_count:
            k = int(np.flatnonzero(msg.is_null().to_numpy(zero_copy_only=False))[0])
            raise FormatError(path, _json_record_line(text, k) if text else k + 2, f"record {k}: missing msg")
        rid = _hash_column(msg)
        keep = _clean_signal(rssi, tx, stats)
        rec = _sightings(t, fi, rid, rssi, tx)[keep]
        order = np.argsort(rec["t"], kind="stable")
        if np.any(order != np.arange(len(order))):
            stats["sorted"] = True
        yield _Chunk(rec[order], None)
