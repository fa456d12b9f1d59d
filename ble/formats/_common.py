"""Shared pieces of the importers: record and truth arrays, signal cleaning, streaming CSV and errors.

:class:`FormatError` (message ``FILE:LINE: ...``) and :class:`Imported` (the result of a read), the truth
dtype :data:`TRUTH_DTYPE` and its builder, RSSI/TX sentinel cleaning, the vectorised streaming CSV reader
(``pyarrow.csv``) and the line-by-line scans that name the offending line once a vectorised parse failed.
"""
from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ble._util import first_non_utf8
from ble.schema import SIGHTING_DTYPE

__all__ = ["CHUNK_ROWS", "RSSI_SENTINELS", "TRUTH_DTYPE", "TX_SENTINELS", "FormatError", "Imported",
           "u64_of_strings"]

#: Per-row ground truth aligned with the records.
TRUTH_DTYPE = np.dtype([
    ("distance_m", "f4"),   # m, true distance; NaN = unknown
    ("session", "i4"),      # index into meta["sessions"]; -1 = none
    ("carriage_tx", "i1"),  # index into ble.radio.CARRIAGES of the transmitting phone; -1 = unknown
    ("carriage_rx", "i1"),  # same for the receiving phone
])

RSSI_SENTINELS = (127.0, 999.0, -127.0)   #: dBm values that mean "no RSSI" (iOS, CovidSafe, others)
TX_SENTINELS = (-999.0,)                  #: dBm values that mean "no TX power" (MIT logs)
CHUNK_ROWS = 1 << 18                      #: rows per streamed chunk (bounded memory)
_BLOCK = 1 << 22                          #: bytes per pyarrow CSV block when streaming


class FormatError(ValueError):
    """Malformed input; the message starts with ``FILE:LINE:`` (line 0 when it concerns the whole file)."""

    def __init__(self, path, line: int, msg: str):
        self.path, self.line = str(path), int(line)
        super().__init__(f"{path}:{line}: {msg}")


@dataclasses.dataclass
class Imported:
    """The result of reading files: records of one ``kind`` and, if known, truth aligned with them."""
    records: np.ndarray
    kind: str                      # "sightings" or "windows"
    truth: np.ndarray | None       # TRUTH_DTYPE, len(records), or None
    stats: dict
    meta: dict


@dataclasses.dataclass
class _Chunk:
    records: np.ndarray
    truth: np.ndarray | None


def u64_of_strings(values: Iterable[str]) -> np.ndarray:
    """Stable 64-bit IDs for strings (first 8 bytes, big-endian, of SHA-256 of the UTF-8 text)."""
    return np.array([int.from_bytes(hashlib.sha256(str(v).encode()).digest()[:8], "big")
                     for v in values], dtype=np.uint64)


def _new_stats() -> dict:
    return {"files": 0, "rows_read": 0, "rows_kept": 0, "rssi_sentinel": 0, "rssi_missing": 0,
            "tx_sentinel": 0, "tx_unknown": 0, "sorted": False}


def _clean_signal(rssi: np.ndarray, tx: np.ndarray, stats: dict) -> np.ndarray:
    """Map sentinels to NaN in place; return the mask of rows to keep (RSSI present)."""
    sent = np.isin(rssi, RSSI_SENTINELS)
    missing = np.isnan(rssi)
    stats["rssi_sentinel"] += int(sent.sum())
    stats["rssi_missing"] += int(missing.sum())
    rssi[sent] = np.nan
    txs = np.isin(tx, TX_SENTINELS)
    stats["tx_sentinel"] += int(txs.sum())
    tx[txs] = np.nan
    keep = ~(sent | missing)
    stats["tx_unknown"] += int(np.isnan(tx[keep]).sum())
    return keep


# ----------------------------------------------------------------------------- error locating
def _iter_lines(path: Path):
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            yield no, raw.rstrip(b"\r\n").decode("utf-8", errors="replace")


def _first_non_utf8(path: Path) -> "FormatError | None":
    """The first line that is not UTF-8 text, as a :class:`FormatError` (bytes escaped), or None."""
    bad = first_non_utf8(path)
    if bad is None:
        return None
    no, pos, text, raw = bad
    return FormatError(path, no, f"not UTF-8 text (byte {pos} of the line, {raw}): {text}; "
                                 "re-save the file as UTF-8")


def _locate_bad_line(path: Path, delimiter: str, ncols: int | tuple, numeric: dict, skip: int,
                     fallback: str) -> FormatError:
    """Scan ``path`` line by line (only after a vectorised parse failed) for the first bad line.

    ``numeric`` maps column index -> column name that must parse as a number; ``ncols`` is the
    allowed field count (or a tuple of counts).
    """
    allowed = (ncols,) if isinstance(ncols, int) else tuple(ncols)
    bad = _first_non_utf8(path)
    if bad is not None:
        return bad
    for no, line in _iter_lines(path):
        if no <= skip or not line.strip():
            continue
        fields = line.split(delimiter)
        if len(fields) not in allowed:
            what = "truncated line" if len(fields) < min(allowed) else "too many fields"
            return FormatError(path, no, f"{what}: expected {' or '.join(map(str, allowed))} "
                                         f"columns, got {len(fields)}: {ascii(line[:80])}")
        for idx, name in numeric.items():
            v = fields[idx].strip()
            if v == "" and name in ("tx_power", "distance_m"):
                continue
            try:
                float(v)
            except ValueError:
                return FormatError(path, no, f"non-numeric {name} {ascii(v[:40])}")
    return FormatError(path, 0, fallback)


def _data_line_numbers(path: Path, skip: int, rows: np.ndarray) -> np.ndarray:
    """Physical line numbers of data rows ``rows`` (0-based, blank lines skipped) -- error path only."""
    want = set(int(r) for r in rows)
    out, k = {}, -1
    for no, line in _iter_lines(path):
        if no <= skip or not line.strip():
            continue
        k += 1
        if k in want:
            out[k] = no
            if len(out) == len(want):
                break
    return np.array([out.get(int(r), 0) for r in rows])


def _check_nonempty(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.is_file() and path.stat().st_size == 0:
        raise FormatError(path, 0, "empty file")


def _stream_csv(path: Path, names: list[str], types: dict, delimiter: str, skip: int,
                numeric: dict, ncols) -> Iterator[pa.RecordBatch]:
    """Vectorised streaming CSV reader; translates pyarrow errors into :class:`FormatError`."""
    ropts = pacsv.ReadOptions(column_names=names, skip_rows=skip, block_size=_BLOCK)
    popts = pacsv.ParseOptions(delimiter=delimiter)
    copts = pacsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                 null_values=[""], quoted_strings_can_be_null=False)
    try:
        reader = pacsv.open_csv(path, read_options=ropts, parse_options=popts, convert_options=copts)
        n = 0
        for batch in reader:
            n += batch.num_rows
            yield batch
    except (pa.ArrowInvalid, UnicodeDecodeError) as e:
        raise _locate_bad_line(path, delimiter, ncols, numeric, skip, f"cannot parse: {e}") from None
    if n == 0:
        raise FormatError(path, skip, "no data rows (empty file or header only)")


def _first_line(path: Path) -> str:
    with open(path, "rb") as f:
        return f.readline().decode("utf-8", errors="replace").rstrip("\r\n")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


class _OrderCheck:
    """Rejects timestamps that go backwards within one file (where order matters)."""

    def __init__(self, path: Path, skip: int, enabled: bool):
        self.path, self.skip, self.enabled = path, skip, enabled
        self.last, self.rows = -np.inf, 0

    def __call__(self, t: np.ndarray) -> None:
        if self.enabled and len(t):
            prev = np.concatenate([[self.last], t[:-1]])
            bad = np.flatnonzero(t < prev)
            if bad.size:
                r = int(bad[0])
                line = int(_data_line_numbers(self.path, self.skip, np.array([self.rows + r]))[0])
                raise FormatError(self.path, line,
                                  f"timestamp {t[r]!r} s is earlier than the previous row's "
                                  f"{prev[r]!r} s (rows must be in time order; use sort=True / --sort)")
            self.last = float(t[-1])
        self.rows += len(t)


def _check_time(t: np.ndarray, path: Path, skip: int, row0: int, what: str = "timestamp") -> None:
    """Sighting times must be finite numbers (NaN, inf or an overflowing value name their line)."""
    bad = ~np.isfinite(t)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        line = int(_data_line_numbers(path, skip, np.array([row0 + r]))[0])
        raise FormatError(path, line, f"{what} must be a finite number, got {t[r]!r}")


def _sightings(t, observer, rid, rssi, tx) -> np.ndarray:
    out = np.empty(len(t), dtype=SIGHTING_DTYPE)
    # an absurd RSSI/TX (e.g. 1e300) becomes inf in float32; schema validation then rejects its row
    with np.errstate(over="ignore"):
        out["t"], out["observer"], out["rid"], out["rssi"], out["tx_power"] = t, observer, rid, rssi, tx
    return out


def _truth(n, distance=np.nan, session=-1, carriage=-1) -> np.ndarray:
    tr = np.empty(n, dtype=TRUTH_DTYPE)
    tr["distance_m"], tr["session"] = distance, session
    tr["carriage_tx"] = tr["carriage_rx"] = carriage
    return tr


def _f64(col) -> np.ndarray:
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64).copy()
