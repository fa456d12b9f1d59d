"""Record schemas: sightings, exposure windows, ground truth, contact lists.

In memory every record kind is a numpy structured array; on disk it is Parquet (one column per field,
fixed-size lists for 2-D fields) with the schema name and version in the file metadata. Writing is
atomic (temporary file in the same folder, then ``os.replace``); reading checks columns, dtypes and
value ranges and names the file and row of the first bad value.

Units: times in seconds (float64; UNIX epoch for real logs, seconds since the start of the run for the
simulator), RSSI and TX power in dBm, attenuation in dB, distances in metres. Missing RSSI or TX power is
NaN -- importers map the sentinels (RSSI 127 / 999 / -127, TX -999) to NaN explicitly.

Rolling IDs are stored as ``uint64``: the first 8 bytes (big-endian) of the broadcast ID for real
Bluezone/GAEN IDs (see :func:`ble.ids.id_to_u64`), or the simulator's keyed 64-bit PRF output.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["SCHEMA_VERSION", "ATT_EDGES", "N_ATT_BUCKETS", "SIGHTING_DTYPE", "WINDOW_DTYPE",
           "GROUND_TRUTH_DTYPE", "CONTACT_DTYPE", "CHECKIN_DTYPE", "SCHEMAS", "RecordError", "empty", "validate", "validate_columns", "to_table",
           "from_table", "atomic_path", "write_atomic_bytes", "write_text_atomic", "write_parquet",
           "read_parquet", "read_meta", "ParquetAppender", "PARQUET_ENCODING", "parquet_options", "shown",
           "check_out_path"]

SCHEMA_VERSION = 1

#: Attenuation bucket edges (dB) of exposure windows. The union of every rule's thresholds (GAEN v1
#: buckets 10/15/27/33/51/63/73, Swiss 50/55, German 55/63, Italian 50/70), so that each rule's
#: weighted duration is exact. Bucket k holds attenuations a with edges[k-1] < a <= edges[k]
#: (``np.searchsorted(edges, a, side="left")``); bucket 0 is a <= 10, the last a > 73.
ATT_EDGES = np.array([10.0, 15.0, 27.0, 33.0, 50.0, 51.0, 55.0, 63.0, 70.0, 73.0])
N_ATT_BUCKETS = len(ATT_EDGES) + 1

SIGHTING_DTYPE = np.dtype([
    ("t", "f8"),          # s
    ("observer", "i8"),   # device index of the phone that scanned
    ("rid", "u8"),        # advertised rolling ID (64-bit form)
    ("rssi", "f4"),       # dBm, NaN = not available
    ("tx_power", "f4"),   # dBm, NaN = not advertised
])

WINDOW_DTYPE = np.dtype([
    ("observer", "i8"),
    ("rid", "u8"),
    ("t_start", "f8"),        # s, time of the first scan in the window
    ("t_end", "f8"),          # s, time of the last scan
    ("n_scans", "i4"),        # scans in which the ID was seen
    ("duration_s", "f4"),     # s, sum of the seconds attributed to the scans (= att_secs.sum())
    ("rssi_mean", "f4"),      # dBm, mean of per-scan RSSI
    ("rssi_max", "f4"),       # dBm
    ("tx_power", "f4"),       # dBm, NaN if unknown
    ("att_typical", "f4"),    # dB, mean per-scan attenuation (TX - RSSI); NaN if TX unknown
    ("att_min", "f4"),        # dB
    ("att_secs", "f4", (N_ATT_BUCKETS,)),  # s per attenuation bucket (ATT_EDGES)
])

GROUND_TRUTH_DTYPE = np.dtype([
    ("i", "i8"),              # agent index, i < j
    ("j", "i8"),
    ("day", "i4"),
    ("minutes_close", "f4"),  # min within the close distance (2 m) that day
    ("min_dist", "f4"),       # m
    ("detected", "?"),        # the radio saw the pair (either direction) that day, had both run the app
])

CONTACT_DTYPE = np.dtype([
    ("i", "i8"),
    ("j", "i8"),
    ("t", "f8"),              # s, NaN = unknown (no time order)
    ("duration_s", "f4"),
    ("detected", "?"),
])

#: QR venue check-ins (``sim.qr`` writes them, ``tracing.core.qr`` warns from them).
CHECKIN_DTYPE = np.dtype([
    ("agent", "i8"),
    ("venue", "i8"),        # place instance
    ("t", "f8"),            # s, entry (check-in) time
    ("place_type", "i1"),   # index in sim.places.PLACE_TYPES
    ("scan", "?"),          # would scan the code were the agent an app user
])

SCHEMAS = {
    "sightings": SIGHTING_DTYPE,
    "windows": WINDOW_DTYPE,
    "ground_truth": GROUND_TRUTH_DTYPE,
    "contacts": CONTACT_DTYPE,
}

# Physical ranges: (lo, hi) inclusive; NaN allowed only where listed.
_RANGES = {
    "rssi": (-140.0, 30.0),
    "rssi_mean": (-140.0, 30.0),
    "rssi_max": (-140.0, 30.0),
    "tx_power": (-100.0, 40.0),
    "att_typical": (-60.0, 200.0),
    "att_min": (-60.0, 200.0),
    "n_scans": (0, 2**31 - 1),
    "duration_s": (0.0, 1e9),
    "att_secs": (0.0, 1e9),
    "minutes_close": (0.0, 1e7),
    "min_dist": (0.0, 1e7),
    "day": (0, 10**6),
    "observer": (0, 2**62),
    "i": (0, 2**62),
    "j": (0, 2**62),
}
_NAN_OK = {"rssi", "tx_power", "rssi_mean", "rssi_max", "att_typical", "att_min", "t"}
# contact lists: NaN duration = "listed as close, duration unknown" (tracing.contacts.read_contacts)
_NAN_OK_BY_KIND = {"contacts": _NAN_OK | {"duration_s"}}


#: Parquet column encodings per record kind (issue 16: the simulator writes ~63 M windows per 10^6
#: agent-days, and encoding them was a quarter of a simulated day). The data read back is the same
#: whatever the options; the bytes differ from pyarrow's defaults (dictionary encoding and statistics
#: for every column) only for the kinds listed here:
#:
#: - ``"dict"``: columns worth a dictionary (few distinct values per row group: observers, rolling IDs —
#:   many observers log the same ID —, scan counts, durations, TX powers, bucket seconds, days; Parquet
#:   never dictionary-encodes booleans).
#:   Every other column is written without one: a dictionary of floats that hardly repeat (mean RSSI,
#:   attenuations, distances, start/end times) cost 5-10x the column's zstd time and came out larger.
#: - ``"split"``: float columns written ``BYTE_STREAM_SPLIT`` (exponent and mantissa bytes apart: ~10%
#:   smaller under zstd for such noisy float32s, no slower).
#: - ``"stats"``: the columns with min/max statistics (what readers filter or sort by: ``RunFolder``
#:   reads a day of the ground truth with a ``day`` filter); value columns go without (~10% of the time).
#:
#: Kinds not listed (sightings, contacts) keep pyarrow's defaults. Compression: zstd at pyarrow's
#: default level for all kinds.
PARQUET_ENCODING = {
    "windows": {"dict": ("observer", "rid", "n_scans", "duration_s", "tx_power", "att_secs"),
                "split": ("rssi_mean", "rssi_max", "att_typical", "att_min"),
                "stats": ("observer", "rid", "t_start", "t_end")},
    "ground_truth": {"dict": ("day", "minutes_close"),
                     "split": ("min_dist",),
                     "stats": ("i", "j", "day")},
}


def parquet_options(kind: str) -> dict:
    """Keyword arguments of ``pyarrow.parquet.ParquetWriter`` / ``write_table`` for a file of ``kind``
    records (:data:`PARQUET_ENCODING`); the same for :func:`write_parquet` and :class:`ParquetAppender`,
    so that either writes the same bytes for the same records."""
    opts = {"compression": "zstd"}
    enc = PARQUET_ENCODING.get(kind)
    if enc is not None:
        dtype = SCHEMAS[kind]
        # pyarrow names a fixed-size-list column's values by their leaf path
        leaf = {n: f"{n}.list.element" if dtype[n].shape else n for n in dtype.names}
        opts["use_dictionary"] = [leaf[c] for c in enc["dict"]]
        opts["column_encoding"] = {leaf[c]: "BYTE_STREAM_SPLIT" for c in enc["split"]}
        opts["write_statistics"] = [leaf[c] for c in enc["stats"]]
    return opts


class RecordError(ValueError):
    """A record file or array that does not satisfy its schema; the message names file and row."""


def empty(kind: str, n: int = 0) -> np.ndarray:
    """A zero-filled structured array of ``kind`` ('sightings', 'windows', ...) with ``n`` rows."""
    return np.zeros(n, dtype=SCHEMAS[kind])


def shown(v) -> str:
    """``v`` as a message shows it: numpy scalars and arrays by value (``30.125925``, not
    ``np.float32(30.125925)``), anything else by ``repr``."""
    if isinstance(v, (np.generic, np.ndarray)):
        return str(v)
    return repr(v)


def check_out_path(name: str, path, kind: str = "folder") -> Path:
    """Check, before any work, that ``path`` can be written as a ``kind`` ("folder" or "file"): it is
    not an existing file (folder) / folder (file), and its nearest existing ancestor is a folder this
    process may write into. Raise ``ValueError`` with one line naming the argument ``name``; return the
    path. Nothing is created."""
    if kind not in ("folder", "file"):
        raise ValueError(f"check_out_path: kind must be 'folder' or 'file', got {kind!r}")
    p = Path(path)
    if str(path) == "":
        raise ValueError(f"{name}: empty path")
    if p.exists():
        if kind == "folder" and not p.is_dir():
            raise ValueError(f"{name} {p}: exists and is not a folder")
        if kind == "file" and p.is_dir():
            raise ValueError(f"{name} {p}: is a folder, expected a file")
        if not os.access(p if kind == "folder" else p.parent, os.W_OK | os.X_OK):
            raise ValueError(f"{name} {p}: not writable")
        return p
    anc = p.absolute().parent
    while not anc.exists():
        anc = anc.parent
    if not anc.is_dir():
        raise ValueError(f"{name} {p}: cannot be created ({anc} is a file)")
    if not os.access(anc, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {p}: cannot be created ({anc} is not writable)")
    return p


def _all_valid(col2: np.ndarray, name: str, kind: str) -> bool:
    """Fast path of :func:`validate` for one column (rows x values): True when its minimum and maximum
    show every value finite (or NaN where allowed) and in range; False sends the column through the
    row-by-row checks, which name the first bad row (a NaN minimum or maximum always does)."""
    if col2.size == 0:
        return True
    lo, hi = _RANGES.get(name, (None, None))
    if col2.dtype.kind == "f":
        if name in _NAN_OK_BY_KIND.get(kind, _NAN_OK):
            mn, mx = np.fmin.reduce(col2, axis=None), np.fmax.reduce(col2, axis=None)   # NaN skipped
        else:
            mn, mx = col2.min(), col2.max()                                             # NaN propagates
        if not (np.isfinite(mn) and np.isfinite(mx)):
            return False
    elif lo is None:
        return True
    else:
        mn, mx = col2.min(), col2.max()
    return lo is None or bool(lo <= mn and mx <= hi)


def validate(arr: np.ndarray, kind: str, source: str = "<array>", row_offset: int = 0, *,
             columns: dict | None = None) -> np.ndarray:
    """Check dtype, finiteness and ranges of a record array; raise :class:`RecordError` naming the row.

    ``row_offset`` is added to reported row numbers (for chunked reads). ``columns``: contiguous copies
    of ``arr``'s fields by name (:class:`ParquetAppender` makes them for the table anyway; checking them
    is several times faster than checking the strided fields). Returns ``arr`` unchanged. To check some
    fields held as columns, without records: :func:`validate_columns`.
    """
    dtype = SCHEMAS[kind]
    if arr.dtype != dtype:
        missing = [n for n in dtype.names if arr.dtype.names is None or n not in arr.dtype.names]
        raise RecordError(f"{source}: not a {kind} array (missing fields {missing or '?'}; "
                          f"dtype {arr.dtype})")
    _check_values(columns if columns is not None else arr, dtype.names, len(arr), kind, source, row_offset)
    return arr


def validate_columns(columns: dict, kind: str, source: str = "<columns>", row_offset: int = 0) -> dict:
    """Check the given fields of ``kind`` records held as columns, and only those.

    ``columns``: ``{field: array}`` for any subset of ``SCHEMAS[kind]``'s fields, each of the field's
    dtype and of shape ``(n,) + field shape`` (one ``n`` for all). Each column's values are checked as
    :func:`validate` checks them (finite, NaN only where allowed, in range; same messages), and the checks
    between fields (windows: ``t_end >= t_start``; ground truth: ``i < j``) where both fields are given.
    Raises :class:`RecordError` naming ``source`` and the row (from ``row_offset``), or the column whose
    name, dtype or shape is wrong. Returns ``columns`` unchanged.
    """
    dtype = SCHEMAS[kind]
    n = None
    for name, col in columns.items():
        if name not in dtype.names:
            raise RecordError(f"{source}: {name!r} is not a field of {kind} records (fields: "
                              f"{', '.join(dtype.names)})")
        want, shape = dtype[name], np.shape(col)
        if (getattr(col, "dtype", None) != want.base or len(shape) != 1 + len(want.shape)
                or shape[1:] != want.shape or (n is not None and shape[0] != n)):
            raise RecordError(f"{source}: column {name!r} has dtype {getattr(col, 'dtype', type(col).__name__)} "
                              f"and shape {shape}, expected {want.base} and shape "
                              f"{('n' if n is None else n,) + want.shape}")
        n = shape[0]
    names = [f for f in dtype.names if f in columns]
    _check_values(columns, names, n or 0, kind, source, row_offset)
    return columns


def _check_values(cols, names, n: int, kind: str, source: str, row_offset: int) -> None:
    """The value checks of :func:`validate` on fields ``names`` of ``cols`` (records or columns by name,
    ``n`` rows): finiteness and ranges per field, then the checks between fields where both are among
    ``names``."""
    for name in names:
        col = cols[name]
        if col.ndim > 1:
            col2 = col.reshape(len(col), int(np.prod(col.shape[1:])))  # -1 fails on 0 rows
        else:
            col2 = col.reshape(len(col), 1)
        if _all_valid(col2, name, kind):
            continue
        if col2.dtype.kind == "f":
            bad = ~np.isfinite(col2)
            if name in _NAN_OK_BY_KIND.get(kind, _NAN_OK):
                bad &= ~np.isnan(col2)
            rows = np.flatnonzero(bad.any(axis=1))
            if rows.size:
                r = rows[0]
                raise RecordError(f"{source}: row {r + row_offset}: column {name!r} has non-finite "
                                  f"value {shown(col[r])}")
        if name in _RANGES:
            lo, hi = _RANGES[name]
            with np.errstate(invalid="ignore"):
                bad = (col2 < lo) | (col2 > hi)
            rows = np.flatnonzero(bad.any(axis=1))
            if rows.size:
                r = rows[0]
                raise RecordError(f"{source}: row {r + row_offset}: column {name!r} value {shown(col[r])} "
                                  f"outside [{lo}, {hi}]")
    if kind == "windows" and n and "t_start" in names and "t_end" in names:
        rows = np.flatnonzero(cols["t_end"] < cols["t_start"])
        if rows.size:
            raise RecordError(f"{source}: row {rows[0] + row_offset}: t_end before t_start")
    if kind in ("ground_truth",) and n and "i" in names and "j" in names:
        rows = np.flatnonzero(cols["i"] >= cols["j"])
        if rows.size:
            raise RecordError(f"{source}: row {rows[0] + row_offset}: expected i < j")


def to_table(arr: np.ndarray, kind: str, meta: dict | None = None, *, columns: dict | None = None) -> pa.Table:
    """Structured array -> pyarrow Table with schema metadata (kind, version, extra ``meta`` as JSON);
    ``columns``: contiguous copies of its fields by name, used as they are (see :func:`validate`)."""
    dtype = SCHEMAS[kind]
    cols, names = [], []
    for name in dtype.names:
        col = columns[name] if columns is not None else np.ascontiguousarray(arr[name])
        if col.ndim == 2:
            flat = pa.array(col.reshape(-1))
            cols.append(pa.FixedSizeListArray.from_arrays(flat, col.shape[1]))
        else:
            cols.append(pa.array(col))
        names.append(name)
    md = {"proxitrace.kind": kind, "proxitrace.schema_version": str(SCHEMA_VERSION)}
    if kind == "windows":
        md["proxitrace.att_edges"] = json.dumps(ATT_EDGES.tolist())
    if meta:
        md["proxitrace.meta"] = json.dumps(meta, sort_keys=True)
    return pa.table(cols, names=names).replace_schema_metadata(md)


def from_table(table: pa.Table, kind: str, source: str = "<table>", row_offset: int = 0) -> np.ndarray:
    """pyarrow Table -> validated structured array of ``kind`` (errors name rows from ``row_offset``)."""
    dtype = SCHEMAS[kind]
    _need_columns(table.column_names, kind, source)
    out = np.empty(table.num_rows, dtype=dtype)
    for name in dtype.names:
        _arrow_column(table.column(name), name, dtype[name], table.num_rows, source, row_offset, out[name])
    return validate(out, kind, source, row_offset=row_offset)


def _need_columns(have, kind: str, source: str) -> None:
    """``RecordError`` naming ``source`` unless the column names ``have`` include every field of ``kind``."""
    missing = [n for n in SCHEMAS[kind].names if n not in have]
    if missing:
        raise RecordError(f"{source}: missing columns {missing} for {kind}")


def _arrow_column(col, name: str, dt: np.dtype, n: int, source: str, row_offset: int, dst=None):
    """One Arrow column (``Array`` or ``ChunkedArray``, ``n`` rows) of field ``name`` (dtype ``dt``) as
    numpy: written into ``dst`` (a record array's field), or returned contiguous of ``dt.base`` and shape
    ``(n,) + dt.shape``. Nulls: NaN in float fields, else ``RecordError`` naming the row (from
    ``row_offset``); values that do not convert: ``RecordError`` naming the column."""
    try:
        if dt.shape:
            if isinstance(col, pa.ChunkedArray):
                col = col.combine_chunks()
            a = col.flatten().to_numpy(zero_copy_only=False).reshape(n, *dt.shape)
        else:
            if col.null_count:
                row = row_offset + int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
                if dt.kind != "f":
                    raise RecordError(f"{source}: row {row}: column {name!r} is null")
                col = col.fill_null(float("nan"))
            a = col.to_numpy(zero_copy_only=False)
        if dst is None:
            return np.ascontiguousarray(a, dtype=dt.base)
        dst[...] = a
    except RecordError:
        raise
    except (ValueError, TypeError, pa.ArrowInvalid) as e:
        raise RecordError(f"{source}: column {name!r} cannot be read as {dt}: {e}") from e
    return None


def atomic_path(path: str | os.PathLike):
    """Context manager yielding a temporary path next to ``path``; renamed onto it on success."""
    return _AtomicPath(Path(path))


class _AtomicPath:
    def __init__(self, path: Path):
        self.path = path

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        self.tmp = Path(tmp)
        return self.tmp

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            # mkstemp creates 0600 files; give results the usual permissions (0666 minus umask)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.tmp, 0o666 & ~umask)
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
        return False


def write_atomic_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_atomic_bytes(path, text.encode("utf-8"))


def write_parquet(path: str | os.PathLike, arr: np.ndarray, kind: str, meta: dict | None = None) -> None:
    """Validate ``arr`` and write it atomically as Parquet (zstd, :func:`parquet_options`), deterministic
    bytes for equal input."""
    validate(arr, kind, str(path))
    table = to_table(arr, kind, meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **parquet_options(kind))


def read_parquet(path: str | os.PathLike, kind: str | None = None) -> np.ndarray:
    """Read a proxitrace Parquet file; ``kind`` defaults to the one stored in its metadata."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise RecordError(f"{path}: not a readable Parquet file: {e}") from e
    return from_table(table, _stored_kind(path, table.schema.metadata, kind), str(path))


def _stored_kind(path: Path, md: dict | None, kind: str | None) -> str:
    """The record kind of a file with schema metadata ``md``: the stored one, checked against ``kind``
    and against this proxitrace's schema version (``RecordError`` naming ``path``)."""
    md = md or {}
    stored = md.get(b"proxitrace.kind", b"").decode() or None
    if kind is None:
        if stored is None:
            raise RecordError(f"{path}: no proxitrace kind in metadata; pass kind=")
        kind = stored
    elif stored is not None and stored != kind:
        raise RecordError(f"{path}: holds {stored!r} records, expected {kind!r}")
    ver = int(md.get(b"proxitrace.schema_version", b"1"))
    if ver > SCHEMA_VERSION:
        raise RecordError(f"{path}: schema version {ver} is newer than this proxitrace ({SCHEMA_VERSION})")
    return kind


def iter_parquet(path: str | os.PathLike, kind: str, rows: int, key: str, columns=None):
    """A proxitrace Parquet file's records of ``kind`` in blocks of about ``rows`` rows, in file order,
    none splitting a run of equal ``key`` values (the last value's rows move to the next block), so
    that per-key reductions of the blocks, concatenated, equal those of the whole file. Memory: about
    one block. A file not sorted by ``key``, or of at most ``rows`` rows, is yielded whole (one block).

    ``columns``: ``None`` yields record arrays (``SCHEMAS[kind]``, validated as :func:`read_parquet`'s);
    a list of field names yields the same blocks as dicts ``{field: array}`` of those fields and ``key``
    (contiguous, the field's dtype, shape ``(n,) + field shape``), checked by :func:`validate_columns`:
    the other columns are neither decoded nor checked, and no records are built (about 100 bytes a
    window where records and their Arrow batch take 250). Errors name the file and row; a name that is
    not a field of ``kind``: ``ValueError`` before the file is opened."""
    path = Path(path)
    dtype = SCHEMAS[kind]
    names = None
    if columns is not None:
        if isinstance(columns, str):
            columns = [columns]
        bad = [c for c in columns if c not in dtype.names]
        if bad or key not in dtype.names:
            raise ValueError(f"iter_parquet: columns {bad or [key]} are not fields of {kind} records "
                             f"(fields: {', '.join(dtype.names)})")
        names = [n for n in dtype.names if n in columns or n == key]
    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowInvalid) as e:
        raise RecordError(f"{path}: not a readable Parquet file: {e}") from e
    _stored_kind(path, pf.schema_arrow.metadata, kind)
    _need_columns(pf.schema_arrow.names, kind, str(path))
    try:
        k = pf.read(columns=[key]).column(key).to_numpy()   # 8 bytes a row: is it sorted?
    except (OSError, pa.ArrowInvalid) as e:
        raise RecordError(f"{path}: not a readable Parquet file: {e}") from e
    sorted_keys = bool(np.all(k[1:] >= k[:-1]))
    del k
    if not sorted_keys or pf.metadata.num_rows <= rows:
        if names is None:
            yield read_parquet(path, kind)
        else:
            yield _block_columns(pf.read(columns=names), kind, path, 0)
        return
    carry, offset = None, 0
    for batch in pf.iter_batches(batch_size=int(rows), columns=names):
        if names is None:
            a = from_table(pa.Table.from_batches([batch]), kind, str(path), offset)
        else:
            a = _block_columns(batch, kind, path, offset)
        offset += batch.num_rows
        if carry is not None:
            a = np.concatenate([carry, a]) if names is None else {n: np.concatenate([carry[n], v])
                                                                  for n, v in a.items()}
        k = a[key]
        cut = int(np.searchsorted(k, k[-1], "left"))
        carry = a[cut:] if names is None else {n: v[cut:] for n, v in a.items()}
        if cut:
            yield a[:cut] if names is None else {n: v[:cut] for n, v in a.items()}
    if carry is not None and len(carry[key]):
        yield carry


def _block_columns(batch, kind: str, path: Path, offset: int) -> dict:
    """A record batch or table of ``kind`` columns -> ``{field: contiguous array}``, checked by
    :func:`validate_columns` (errors name ``path`` and rows from ``offset``)."""
    dtype, n = SCHEMAS[kind], batch.num_rows
    out = {name: _arrow_column(batch.column(name), name, dtype[name], n, str(path), offset)
           for name in batch.schema.names}
    return validate_columns(out, kind, str(path), offset)


def read_meta(path: str | os.PathLike) -> dict:
    """The extra metadata dict written with :func:`write_parquet` (empty if none)."""
    md = pq.read_schema(path).metadata or {}
    raw = md.get(b"proxitrace.meta")
    return json.loads(raw) if raw else {}


class ParquetAppender:
    """Stream record chunks of one kind into a Parquet file, atomically renamed on :meth:`close`.

    Memory is bounded by one chunk. Use as a context manager; on an exception the partial file is
    removed and nothing replaces ``path``.
    """

    def __init__(self, path: str | os.PathLike, kind: str, meta: dict | None = None):
        self.path, self.kind, self.meta = Path(path), kind, meta
        self._ctx = atomic_path(self.path)
        self._tmp = self._ctx.__enter__()
        self._writer = pq.ParquetWriter(self._tmp, to_table(empty(kind), kind, meta).schema,
                                        **parquet_options(kind))
        self.rows = 0

    def write(self, arr: np.ndarray) -> None:
        if arr.dtype != SCHEMAS[self.kind]:
            validate(arr, self.kind, str(self.path), row_offset=self.rows)     # names what is missing
        cols = {name: np.ascontiguousarray(arr[name]) for name in SCHEMAS[self.kind].names}
        validate(arr, self.kind, str(self.path), row_offset=self.rows, columns=cols)
        if len(arr):
            self._writer.write_table(to_table(arr, self.kind, self.meta, columns=cols))
            self.rows += len(arr)

    def close(self, exc_type=None) -> None:
        self._writer.close()
        self._ctx.__exit__(exc_type, None, None)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        self.close(exc_type)
        return False
