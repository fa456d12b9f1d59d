"""Reader of GAEN v2 exposure windows as JSON (format ``gaen``), with optional per-window ``distance_m``.

Accepted layouts: a list of windows; an object holding one under ``exposureWindows`` or ``windows``;
one window per line (NDJSON); or the Corona-Warn-App's test-vector file, ``{"testCases": [{
"exposureWindows": [...]}, ...]}`` (every case's windows, in order; :func:`parse_gaen` keeps the case
index). Field names: the GAEN API's (``typicalAttenuationDb``, ``minAttenuationDb``,
``dateMillisSinceEpoch``) or CWA's (``typicalAttenuation``, ``minAttenuation``, ``ageInDays``);
``secondsSinceLastScan``; optional ``reportType``, ``infectiousness``, ``calibrationConfidence``.

A scan instance with a **negative** ``secondsSinceLastScan`` (a clock change; CWA counts it as 0 s) is
skipped and counted in the stats (``scans_negative_seconds``); a missing or non-numeric value names
its file and line.
"""
from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from ble._util import quiet_divide
from ble.formats._common import FormatError, _Chunk, _truth, u64_of_strings
from ble.formats._json import _json_record_line, _load_json_records, _num_field
from ble.schema import ATT_EDGES, N_ATT_BUCKETS, WINDOW_DTYPE

__all__ = ["read_gaen", "parse_gaen", "GAEN_WINDOW_KEYS"]

GAEN_WINDOW_KEYS = ("exposureWindows", "windows")   #: keys of an object holding the windows
_DAY_S = 86400.0


def _buckets_of(att: np.ndarray) -> np.ndarray:
    return np.searchsorted(ATT_EDGES, att, side="left")


def _window_lines(text: str) -> list[int]:
    """Line of every window object of a ``testCases`` file, in order (error path and metadata)."""
    lines, stack, key, line = [], [], None, 1
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\n":
            line += 1
        elif ch == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            key = text[i + 1:j]
            i = j
        elif ch == "[":
            stack.append(key if stack and stack[-1] == "{" else None)
            stack.append("[")
        elif ch == "{":
            if len(stack) >= 2 and stack[-1] == "[" and stack[-2] in GAEN_WINDOW_KEYS:
                lines.append(line)
            stack.append("{")
        elif ch in "]}":
            stack.pop()
            if ch == "]":
                stack.pop()
        i += 1
    return lines


def _is_num(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool))


def _first_non_numeric(wins) -> tuple[int, str]:
    """(window index, message) of the first non-numeric value (error path only)."""
    for k, w in enumerate(wins):
        for name, v in w.items():
            if name == "scanInstances":
                for si in v if isinstance(v, list) else [v]:
                    bad = [(n, x) for n, x in (si.items() if isinstance(si, dict) else [("scan", si)])
                           if not _is_num(x)]
                    if bad:
                        return k, f"non-numeric {bad[0][0]} {ascii(bad[0][1])[:40]}"
            elif not _is_num(v) and name != "description":
                return k, f"non-numeric {name} {ascii(v)[:40]}"
    return 0, "inconsistent field types"


def _load(path):
    """(struct array of windows, text, case index per window or None, line per window or None)."""
    raw = path.read_bytes() if path.exists() else b""
    if raw.lstrip()[:1] == b"{" and b'"testCases"' in raw:
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            obj = None                       # _load_json_records names the line below
        if isinstance(obj, dict) and isinstance(obj.get("testCases"), list):
            text = raw.decode("utf-8")
            wins, case = [], []
            for k, tc in enumerate(obj["testCases"]):
                ew = tc.get("exposureWindows") if isinstance(tc, dict) else None
                if not isinstance(ew, list):
                    raise FormatError(path, 1, f"testCases[{k}] has no 'exposureWindows' list")
                wins.extend(ew)
                case.extend([k] * len(ew))
            lines = _window_lines(text)
            bad = next((i for i, w in enumerate(wins) if not isinstance(w, dict)), None)
            if bad is not None:
                raise FormatError(path, lines[bad] if bad < len(lines) else 1, f"window {bad} is not an object")
            try:
                arr = pa.array(wins) if wins else pa.array([], pa.struct([]))
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                k, what = _first_non_numeric(wins)
                raise FormatError(path, lines[k] if k < len(lines) else 0, f"window {k}: {what}") from None
            return arr, text, np.array(case, dtype=np.int64), lines
    arr, text = _load_json_records(path, GAEN_WINDOW_KEYS)
    return arr, text, None, None


def _field(arr, names, path, text, required):
    have = [arr.type.field(i).name for i in range(arr.type.num_fields)]
    for nm in names:
        if nm in have:
            return _num_field(arr, nm, path, text, required=True)
    if required:
        raise FormatError(path, 1, f"missing field {ascii(names[0])} (or {names[1:]}); have {ascii(have)}")
    return np.full(len(arr), np.nan)


def parse_gaen(path, stats: dict | None = None) -> dict:
    """One GAEN JSON file -> dict of numpy arrays, windows and their scan instances.

    Per window (n): ``case`` (test-case index, 0 without a ``testCases`` wrapper), ``t_start`` (s:
    ``dateMillisSinceEpoch`` / 1000, else ``−ageInDays`` × 86400, i.e. days before a reference day 0,
    else 0), ``day`` (``floor(t_start / 86400)``), ``report_type``, ``infectiousness``,
    ``calibration_confidence`` (−1 where absent), ``distance_m`` (NaN where absent), ``line`` (of the
    window in the file, 0 where unknown). Per scan instance (m, negative seconds skipped): ``window``
    (index), ``seconds`` (s), ``min_att``, ``typical_att`` (dB; a missing minimum = the typical value).
    """
    stats = {} if stats is None else stats
    arr, text, case, lines = _load(path)
    n = len(arr)
    names = [arr.type.field(i).name for i in range(arr.type.num_fields)]
    if n and "scanInstances" not in names:
        raise FormatError(path, 1, "windows lack 'scanInstances'")

    def line_of(k):
        if lines is not None:
            return lines[k] if k < len(lines) else 0
        return _json_record_line(text, k)
    out = {"case": case if case is not None else np.zeros(n, np.int64)}
    day_ms = _field(arr, ("dateMillisSinceEpoch",), path, text, False)
    age = _field(arr, ("ageInDays",), path, text, False)
    t0 = np.where(np.isfinite(day_ms), day_ms / 1000.0, np.where(np.isfinite(age), -age * _DAY_S, 0.0))
    out["t_start"] = t0
    out["day"] = np.floor(t0 / _DAY_S).astype(np.int64)
    for key, nm in (("report_type", "reportType"), ("infectiousness", "infectiousness"),
                    ("calibration_confidence", "calibrationConfidence")):
        v = _field(arr, (nm,), path, text, False)
        out[key] = np.where(np.isfinite(v), v, -1).astype(np.int64)
    out["distance_m"] = _field(arr, ("distance_m",), path, text, False)
    out["line"] = np.array([line_of(k) for k in range(n)] if lines is not None else np.zeros(n), np.int64)
    if n:
        si = arr.field("scanInstances")
        if not pa.types.is_list(si.type):
            raise FormatError(path, line_of(0), "scanInstances is not a list")
        if si.null_count:
            k = int(np.flatnonzero(si.is_null().to_numpy(zero_copy_only=False))[0])
            raise FormatError(path, line_of(k), f"window {k}: scanInstances missing")
        counts = np.diff(si.offsets.to_numpy())
        flat = si.flatten()
    else:
        counts, flat = np.zeros(0, np.int64), None
    owner = np.repeat(np.arange(n), counts)
    if flat is not None and len(flat) and flat.type.num_fields:
        typ = _field(flat, ("typicalAttenuationDb", "typicalAttenuation"), path, text, True)
        mn = _field(flat, ("minAttenuationDb", "minAttenuation"), path, text, False)
        secs = _field(flat, ("secondsSinceLastScan",), path, text, True)
        bad = np.flatnonzero(np.isnan(typ) | np.isnan(secs))
        if bad.size:
            k = int(owner[bad[0]])
            raise FormatError(path, line_of(k), f"window {k}: scan instance without typical attenuation "
                                                f"or secondsSinceLastScan")
        mn = np.where(np.isnan(mn), typ, mn)
        neg = secs < 0
        stats["scans_negative_seconds"] = stats.get("scans_negative_seconds", 0) + int(neg.sum())
        owner, typ, mn, secs = owner[~neg], typ[~neg], mn[~neg], secs[~neg]
    else:
        typ = mn = secs = np.zeros(0)
        owner = owner[:0]
    out.update(window=owner, seconds=secs, min_att=mn, typical_att=typ, n_windows=n)
    return out


def read_gaen(paths, stats, meta, attenuation: str = "typical", **_):
    """GAEN v2 exposure windows (JSON). One window per record; ``rid`` a hash of (file, window index).

    ``t_start`` as :func:`parse_gaen` (the API gives only the day), ``t_end`` = ``t_start`` + Σ
    ``secondsSinceLastScan``. ``att_typical`` is the mean of the typical attenuation over the scans,
    ``att_min`` the minimum of the minimum attenuation, ``att_secs`` the scan seconds per attenuation
    bucket by the typical attenuation (``attenuation="min"``: by the minimum, as CWA weights them).
    RSSI and TX are NaN (the API only reports attenuation). With a ``testCases`` wrapper the observer
    is the test case (so cases never mix), else the file's index.
    """
    if attenuation not in ("typical", "min"):
        raise ValueError(f"attenuation must be 'typical' or 'min', got {attenuation!r}")
    for fi, path in enumerate(paths):
        g = parse_gaen(path, stats)
        n = g["n_windows"]
        stats["rows_read"] += n
        owner, secs, typ, mn = g["window"], g["seconds"], g["typical_att"], g["min_att"]
        counts = np.bincount(owner, minlength=n)
        rec = np.zeros(n, dtype=WINDOW_DTYPE)
        rec["observer"] = fi + g["case"] * len(paths)
        rec["rid"] = u64_of_strings([f"{path.name}#{k}" for k in range(n)])
        rec["t_start"] = g["t_start"]
        dur = np.bincount(owner, weights=secs, minlength=n)
        rec["t_end"] = rec["t_start"] + dur
        rec["n_scans"] = counts
        rec["duration_s"] = dur
        rec["att_typical"] = quiet_divide(np.bincount(owner, weights=typ, minlength=n), counts)
        att_min = np.full(n, np.inf)
        np.minimum.at(att_min, owner, mn)
        rec["att_min"] = np.where(np.isfinite(att_min), att_min, np.nan)
        rec["rssi_mean"] = rec["rssi_max"] = rec["tx_power"] = np.nan
        att_secs = np.zeros((n, N_ATT_BUCKETS))
        np.add.at(att_secs, (owner, _buckets_of(typ if attenuation == "typical" else mn)), secs)
        rec["att_secs"] = att_secs
        dist = g["distance_m"]
        truth = _truth(n, dist, -1, -1) if np.isfinite(dist).any() else None
        yield _Chunk(rec, truth)
