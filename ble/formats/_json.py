"""JSON record input shared by the ``opentrace`` and ``gaen`` readers: a list of objects, an object
holding one, or NDJSON -> a pyarrow struct array, numeric fields with errors that name the record's line."""
from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pajson

from ble.formats._common import FormatError, _check_nonempty, _is_number


def _json_record_line(text: str, k: int) -> int:
    """Line of the k-th object of the top-level array/records list (error path only)."""
    depth, instr, esc, seen, line = 0, False, False, -1, 1
    base = None
    for ch in text:
        if ch == "\n":
            line += 1
        if instr:
            esc = (ch == "\\") and not esc
            if ch == '"' and not esc:
                instr = False
            continue
        if ch == '"':
            instr = True
        elif ch in "[{":
            depth += 1
            if ch == "{" and base is not None and depth == base + 1:
                seen += 1
                if seen == k:
                    return line
            if ch == "[" and base is None:
                base = depth
        elif ch in "]}":
            depth -= 1
    return 0


def _load_json_records(path: Path, keys: tuple[str, ...]) -> tuple[pa.StructArray, str]:
    """A JSON list of objects (or an object holding one under one of ``keys``, or NDJSON) -> struct array."""
    _check_nonempty(path)
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(path, raw[:e.start].count(b"\n") + 1,
                          f"not UTF-8 text (byte {e.start}: {e.reason})") from None
    if not text.strip():
        raise FormatError(path, 0, "empty file")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        # maybe one JSON object per line
        try:
            tab = pajson.read_json(io.BytesIO(text.encode()))
            return pa.StructArray.from_arrays(tab.columns, names=tab.column_names), text
        except Exception:
            raise FormatError(path, e.lineno, f"invalid JSON: {e.msg}") from None
    if isinstance(obj, dict):
        for k in keys:
            if k in obj:
                obj = obj[k]
                break
        else:
            raise FormatError(path, 1, f"expected a list of records or an object with one of {list(keys)}")
    if not isinstance(obj, list):
        raise FormatError(path, 1, "expected a JSON list of records")
    if not obj:
        raise FormatError(path, 1, "no records")
    bad = next((i for i, r in enumerate(obj) if not isinstance(r, dict)), None)
    if bad is not None:
        raise FormatError(path, _json_record_line(text, bad), f"record {bad} is not an object")
    try:
        arr = pa.array(obj)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        # error path only: find the first record whose field type disagrees with the others
        kinds: dict = {}
        for k, r in enumerate(obj):
            for name, v in r.items():
                kind = "null" if v is None else "number" if isinstance(v, (int, float)) \
                    and not isinstance(v, bool) else type(v).__name__
                if kind == "null":
                    continue
                first = kinds.setdefault(name, kind)
                if kind != first:
                    what = f"non-numeric {name} {ascii(v)}" if first == "number" else \
                        f"field {name} is {kind}, earlier records have {first}"
                    raise FormatError(path, _json_record_line(text, k), f"record {k}: {what}") from None
        raise FormatError(path, 0, f"inconsistent record fields: {e}") from None
    return arr, text


def _num_field(arr: pa.StructArray, name: str, path: Path, text: str | None, required=True) -> np.ndarray:
    """Numeric column of a struct array (strings holding numbers accepted); error names the record."""
    names = [arr.type.field(i).name for i in range(arr.type.num_fields)]
    if name not in names:
        if required:
            raise FormatError(path, 1, f"missing field {ascii(name)} (have {ascii(names)})")
        return np.full(len(arr), np.nan)
    col = arr.field(name)
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        try:
            num = pc.cast(pc.if_else(pc.equal(pc.utf8_trim_whitespace(col), ""), None, col), pa.float64())
        except pa.ArrowInvalid:
            vals = col.to_pylist()
            k = next(i for i, v in enumerate(vals) if v not in (None, "") and not _is_number(v))
            line = _json_record_line(text, k) if text is not None else k + 2
            raise FormatError(path, line, f"record {k}: non-numeric {name} {ascii(vals[k])}") from None
        col = num
    elif pa.types.is_null(col.type):
        return np.full(len(arr), np.nan)
    elif not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        vals = col.to_pylist()
        k = next((i for i, v in enumerate(vals) if v is not None and not isinstance(v, (int, float))), 0)
        line = _json_record_line(text, k) if text is not None else k + 2
        raise FormatError(path, line, f"record {k}: non-numeric {name} {ascii(vals[k])}")
    out = np.asarray(col.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False),
                     dtype=np.float64).copy()
    return out
