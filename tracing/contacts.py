"""External contact lists: read them into ``CONTACT_DTYPE`` and turn them into the pair table.

Two input formats
=================
``csv``
    A comma-separated file with a header naming at least ``i`` and ``j`` and optionally ``t`` (s, any
    origin), ``duration_s`` (s) and ``detected`` (``true/false/1/0/yes/no``). IDs may be arbitrary
    integers or strings; they are relabelled to ``0..n-1`` (sorted numerically when every label is an
    integer, lexicographically otherwise) and the label map is returned. Blank lines and lines starting
    with ``#`` are ignored. Without ``duration_s`` every listed pair counts as a true close contact
    (``duration_s`` is NaN = "unknown, listed as close"); without ``detected`` every contact is
    detected; without ``t`` times are NaN (no time order in F2 tracing).
``sociopatterns``
    SocioPatterns RFID lists: whitespace-separated ``t i j [extra ...]`` without header, ``t`` in s at
    20 s resolution; each line means the pair was in face-to-face proximity during ``[t - 20 s, t]``. A
    line becomes one contact with ``t = t_line - 20`` (start of the interval), ``duration_s = 20`` and
    ``detected = True`` (a perfect radio). Extra columns (classes, roles) are ignored.

Files may be gzip-compressed (``.gz``) or a ``.zip`` archive of one file. A malformed line raises ``ValueError`` naming the file and the
1-based line number. Parsing is vectorised through ``pyarrow.csv`` (no Python loop over lines).
"""
from __future__ import annotations

import gzip
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ble.schema import CONTACT_DTYPE
from tracing.core.pairs import PAIR_DTYPE

__all__ = ["FORMATS", "SOCIOPATTERNS_STEP_S", "read_contacts", "pairs_from_contacts"]

#: Time resolution of SocioPatterns badges (s): one line = 20 s in proximity.
SOCIOPATTERNS_STEP_S = 20.0
FORMATS = ("csv", "sociopatterns")

_INT_RE = r"^[+-]?[0-9]+$"
_FLOAT_RE = r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$|^(?i:nan)$"
_TRUE = ("true", "1", "yes", "y", "t")
_FALSE = ("false", "0", "no", "n", "f")


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    elif raw[:4] == b"PK\x03\x04":        # a .zip archive: its one member (issue 15)
        try:
            with zipfile.ZipFile(io.BytesIO(raw)) as z:
                names = [n for n in z.namelist() if not n.endswith("/")]
                if len(names) != 1:
                    raise ValueError(f"{path}: line 0: a .zip archive with {len(names)} files; give one "
                                     "contact list (unpack it, or zip a single file)")
                raw = z.read(names[0])
        except zipfile.BadZipFile as e:
            raise ValueError(f"{path}: line 0: not a readable .zip archive ({e})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ValueError(f"{path}: line {line}: not UTF-8 text (byte {e.start}: {e.reason})") from None


def _content_lines(text: str) -> tuple[str, np.ndarray]:
    """Drop blank and ``#`` lines; return the kept text and the 1-based file line number of each kept
    line (vectorised over the bytes)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    b = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    nl = np.flatnonzero(b == 10)
    starts = np.concatenate(([0], nl + 1))
    ends = np.concatenate((nl, [len(b)]))
    # first non-blank character of each line
    blank = (b == 32) | (b == 9)
    nonblank_pos = np.flatnonzero(~blank & (b != 10))
    k = np.searchsorted(nonblank_pos, starts)
    has = k < len(nonblank_pos)
    first = np.full(len(starts), -1, dtype=np.int64)
    first[has] = nonblank_pos[k[has]]
    keep = has & (first < ends) & (first >= 0)
    keep[keep] &= b[first[keep]] != ord("#")
    lines = np.flatnonzero(keep)
    parts = np.array(text.split("\n"), dtype=object)[lines]
    return "\n".join(parts.tolist()) + ("\n" if len(parts) else ""), lines + 1


def _parse_table(text: str, line_no: np.ndarray, path: Path, delimiter: str, header: bool,
                 expect_min_cols: int) -> pa.Table:
    """Parse ``text`` (content lines only) with pyarrow into string columns; bad rows name the line."""
    bad: list = []

    def handler(row):
        bad.append(row)
        return "error"

    if not text:
        return pa.table({})
    ropts = pacsv.ReadOptions(use_threads=False, autogenerate_column_names=not header,
                              block_size=1 << 26)
    popts = pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=handler, quote_char='"',
                               ignore_empty_lines=True)
    # force every column to string: read the header / first row to learn the column names
    first = text.split("\n", 1)[0].split(delimiter)
    names = [c.strip() for c in first] if header else [f"f{k}" for k in range(len(first))]
    copts = pacsv.ConvertOptions(column_types={nm: pa.string() for nm in names},
                                 strings_can_be_null=False)
    try:
        table = pacsv.read_csv(pa.py_buffer(text.encode("utf-8")), read_options=ropts,
                               parse_options=popts, convert_options=copts)
    except pa.ArrowInvalid as e:
        if bad:
            r = bad[0]
            row = (r.number - 1) if r.number is not None else None  # 1-based, header included
            ln = int(line_no[row]) if row is not None and row < len(line_no) else "?"
            raise ValueError(f"{path}: line {ln}: expected {r.expected_columns} columns, got "
                             f"{r.actual_columns}: {r.text!r}") from e
        # no row-level report (e.g. an unterminated quote): name the first line with an odd
        # number of quote characters, else the first line
        odd = [k for k, ln in enumerate(text.split("\n")) if ln.count('"') % 2]
        ln = int(line_no[odd[0]]) if odd and odd[0] < len(line_no) else int(line_no[0])
        raise ValueError(f"{path}: line {ln}: cannot parse: {e}") from None
    if table.num_columns < expect_min_cols:
        hint = (" (a whitespace-separated t i j list? use format 'sociopatterns')"
                if delimiter == "," else "")
        raise ValueError(f"{path}: line {int(line_no[0])}: expected at least {expect_min_cols} "
                         f"columns, got {table.num_columns}{hint}")
    return table


def _check_regex(col: pa.ChunkedArray, regex: str, path: Path, line_no: np.ndarray, what: str):
    s = pc.utf8_trim_whitespace(col)
    ok = pc.match_substring_regex(s, regex).to_numpy(zero_copy_only=False)
    if not ok.all():
        r = int(np.flatnonzero(~ok)[0])
        raise ValueError(f"{path}: line {int(line_no[r])}: {what} {s[r].as_py()!r} is not a number")
    return s


def _to_float(col: pa.ChunkedArray, path: Path, line_no: np.ndarray, what: str,
              allow_empty: bool = True) -> np.ndarray:
    """String column -> float64 (an empty field is NaN where ``allow_empty``); bad value names line."""
    s = pc.utf8_trim_whitespace(col)
    if allow_empty:
        s = pc.if_else(pc.equal(pc.utf8_length(s), 0), "nan", s)
    s = _check_regex(s, _FLOAT_RE, path, line_no, what)
    return pc.cast(s, pa.float64()).to_numpy(zero_copy_only=False)


def _relabel(i_lab: np.ndarray, j_lab: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    both = np.concatenate([i_lab, j_lab])
    labels, inv = np.unique(both, return_inverse=True)
    n = len(i_lab)
    return inv[:n].astype(np.int64), inv[n:].astype(np.int64), labels


def _labels_of(col: pa.ChunkedArray) -> np.ndarray:
    s = pc.utf8_trim_whitespace(col)
    # integer labels only while they fit int64 (18 digits); longer ones stay strings
    if len(s) and pc.all(pc.match_substring_regex(s, r"^[+-]?[0-9]{1,18}$")).as_py():
        return pc.cast(s, pa.int64()).to_numpy(zero_copy_only=False)
    return np.asarray(s.to_numpy(zero_copy_only=False)).astype(str)


def read_contacts(path, format: str = "csv", *, return_labels: bool = False):
    """Read an external contact list into a ``CONTACT_DTYPE`` array (agents relabelled ``0..n-1``).

    Parameters
    ----------
    path : file (optionally gzip-compressed).
    format : ``"csv"`` or ``"sociopatterns"`` (see the module docstring).
    return_labels : also return the label map ``labels`` (``labels[k]`` is the original ID of agent
        ``k``; ``n = len(labels)`` includes every ID that appears).

    Returns
    -------
    contacts (and labels). Units: ``t`` s (NaN = unknown), ``duration_s`` s (NaN = unknown: the
    listed pair counts as a true close contact in :func:`pairs_from_contacts`).
    """
    path = Path(path)
    if format not in FORMATS:
        raise ValueError(f"unknown contact format {format!r}; expected one of {FORMATS}")
    text, line_no = _content_lines(_read_text(path))
    if format == "sociopatterns":
        text = re.sub(r"[ \t]+", " ", text)
        text = re.sub(r"(?m)^ | $", "", text)
        table = _parse_table(text, line_no, path, " ", header=False, expect_min_cols=3)
        if table.num_columns == 0:
            out = np.zeros(0, CONTACT_DTYPE)
            return (out, np.zeros(0, np.int64)) if return_labels else out
        t = _to_float(table.column(0), path, line_no, "time", allow_empty=False)
        if not np.all(np.isfinite(t)):
            r = int(np.flatnonzero(~np.isfinite(t))[0])
            raise ValueError(f"{path}: line {int(line_no[r])}: time must be finite")
        icol, jcol = table.column(1), table.column(2)
        out = np.zeros(table.num_rows, CONTACT_DTYPE)
        out["t"] = t - SOCIOPATTERNS_STEP_S
        out["duration_s"] = SOCIOPATTERNS_STEP_S
        out["detected"] = True
    else:
        table = _parse_table(text, line_no, path, ",",
                             header=True, expect_min_cols=2)
        if table.num_columns == 0:
            raise ValueError(f"{path}: empty contact list (no header)")
        cols = [c.strip().lower() for c in table.column_names]
        table = table.rename_columns(cols)
        for req in ("i", "j"):
            if req not in cols:
                raise ValueError(f"{path}: line {int(line_no[0])}: header has no column {req!r} "
                                 f"(found {cols})")
        body_lines = line_no[1:]
        icol, jcol = table.column("i"), table.column("j")
        for nm, c in (("i", icol), ("j", jcol)):
            empty = pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(c)), 0).to_numpy(
                zero_copy_only=False)
            if empty.any():
                r = int(np.flatnonzero(empty)[0])
                raise ValueError(f"{path}: line {int(body_lines[r])}: empty ID in column {nm!r}")
        out = np.zeros(table.num_rows, CONTACT_DTYPE)
        if "t" in cols:
            t = _to_float(table.column("t"), path, body_lines, "t")
            if np.isinf(t).any():
                r = int(np.flatnonzero(np.isinf(t))[0])
                raise ValueError(f"{path}: line {int(body_lines[r])}: t must be finite (s) or empty, "
                                 f"got {t[r]}")
            out["t"] = t
        else:
            out["t"] = np.nan
        if "duration_s" in cols:
            d = _to_float(table.column("duration_s"), path, body_lines, "duration_s")
            badd = (d < 0) | ~(d <= np.finfo(np.float32).max) & ~np.isnan(d)   # stored as float32
            if badd.any():
                r = int(np.flatnonzero(badd)[0])
                raise ValueError(f"{path}: line {int(body_lines[r])}: duration_s must be a finite "
                                 f"number >= 0, got {d[r]}")
            out["duration_s"] = d
        else:
            out["duration_s"] = np.nan
        if "detected" in cols:
            s = pc.utf8_lower(pc.utf8_trim_whitespace(table.column("detected")))
            val = s.to_numpy(zero_copy_only=False).astype(str)
            is_t, is_f = np.isin(val, _TRUE), np.isin(val, _FALSE)
            if not np.all(is_t | is_f):
                r = int(np.flatnonzero(~(is_t | is_f))[0])
                raise ValueError(f"{path}: line {int(body_lines[r])}: detected {str(val[r])!r} is not "
                                 f"a boolean (true/false/1/0/yes/no)")
            out["detected"] = is_t
        else:
            out["detected"] = True
        line_no = body_lines
    i_lab, j_lab = _labels_of(icol), _labels_of(jcol)
    if i_lab.dtype.kind != j_lab.dtype.kind:  # mixed: compare as strings
        i_lab, j_lab = i_lab.astype(str), j_lab.astype(str)
    ii, jj, labels = _relabel(i_lab, j_lab)
    self_loop = ii == jj
    if self_loop.any():
        r = int(np.flatnonzero(self_loop)[0])
        raise ValueError(f"{path}: line {int(line_no[r])}: self-contact ({labels[ii[r]].item()!r} with "
                         f"itself)")
    out["i"], out["j"] = ii, jj
    return (out, labels) if return_labels else out


def pairs_from_contacts(contacts: np.ndarray, close_minutes: float = 15.0, day_s: float = 86400.0,
                        *, notify_minutes: float = 0.0, day_origin_s: float = 0.0) -> np.ndarray:
    """Aggregate a contact list into the pair table (``PAIR_DTYPE``), one row per pair and day.

    * day = ``floor((t - day_origin_s) / day_s)`` (0 where ``t`` is NaN);
    * ``minutes`` = cumulative ``duration_s`` / 60 of the pair that day (min; NaN if any duration is
      unknown);
    * ``true_close`` = ``minutes >= close_minutes``; a pair listed without duration (NaN) is a true
      close contact;
    * ``notify_i = notify_j`` = the detected minutes reach ``notify_minutes`` (default 0: any detected
      contact notifies, like Bluezone's client which has no duration filter); without durations, any
      detected row notifies;
    * ``t_first`` = earliest ``t`` of the pair that day (s; NaN without times); ``att`` = NaN.
    """
    c = np.asarray(contacts)
    if c.dtype != CONTACT_DTYPE:
        raise ValueError(f"pairs_from_contacts: expected CONTACT_DTYPE, got {c.dtype}")
    if close_minutes < 0 or day_s <= 0 or notify_minutes < 0:
        raise ValueError("pairs_from_contacts: close_minutes and notify_minutes must be >= 0 and "
                         "day_s > 0")
    if len(c) == 0:
        return np.zeros(0, PAIR_DTYPE)
    if np.any(c["i"] < 0) or np.any(c["j"] < 0) or np.any(c["i"] == c["j"]):
        raise ValueError("pairs_from_contacts: agent indices must be >= 0 and i != j")
    lo = np.minimum(c["i"], c["j"])
    hi = np.maximum(c["i"], c["j"])
    t = c["t"].astype(np.float64)
    day = np.where(np.isnan(t), 0, np.floor((t - day_origin_s) / day_s)).astype(np.int64)
    order = np.lexsort((hi, lo, day))
    lo, hi, day, t = lo[order], hi[order], day[order], t[order]
    dur = c["duration_s"][order].astype(np.float64)
    det = c["detected"][order]
    new = np.ones(len(lo), bool)
    new[1:] = (lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1]) | (day[1:] != day[:-1])
    starts = np.flatnonzero(new)
    out = np.zeros(len(starts), PAIR_DTYPE)
    out["i"], out["j"], out["day"] = lo[starts], hi[starts], day[starts]
    out["t_first"] = np.fmin.reduceat(t, starts)  # fmin ignores NaN; all-NaN stays NaN
    minutes = np.add.reduceat(dur, starts) / 60.0  # NaN if any duration unknown
    det_min = np.add.reduceat(np.where(det, dur, 0.0), starts) / 60.0
    any_det = np.logical_or.reduceat(det, starts)
    unknown = np.isnan(minutes)
    out["minutes"] = minutes
    out["true_close"] = unknown | (minutes >= close_minutes)
    notify = any_det & (np.isnan(det_min) | (det_min >= notify_minutes))
    out["notify_i"] = notify
    out["notify_j"] = notify
    out["att"] = np.nan
    return out
