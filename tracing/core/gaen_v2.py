"""GAEN v2 risk calculation as the Corona-Warn-App runs it (the ``gaen_v2`` rule kind).

The app's calculation (``DefaultRiskLevels.kt`` of corona-warn-app/cwa-app-android; the exposure-window
test vectors in ``tests/data/cwa/``), per exposure window and then per day:

1. **Transmission risk level** (TRL) of a window = ``report_type_offset[report type] +
   infectiousness_offset[infectiousness]`` (the ``trl_encoding``); windows whose TRL falls in a
   ``trl_filters`` range are dropped. ENF codes: report type 1 confirmed test, 2 confirmed clinical
   diagnosis, 3 self report, 4 recursive; infectiousness 1 standard, 2 high.
2. **Weighted seconds** = Σ over the window's scan instances of ``max(secondsSinceLastScan, 0)`` ×
   the weight of the first ``attenuation_weights`` range holding the scan's attenuation (0 if none).
   The attenuation used is a rule setting, ``attenuation = "min"`` (``minAttenuationDb``, as CWA
   since November 2020) or ``"typical"``; a negative ``secondsSinceLastScan`` (clock change) counts 0.
3. **Normalized time** of the window = transmission risk value (``transmission_risk_values[TRL − 1]``)
   × weighted minutes; its **window risk level** = the first ``window_risk_levels`` range holding it
   (no range: the window is dropped).
4. **Per day**: the normalized times of the kept windows of one day are summed and rounded to one
   decimal (``Math.round(x · 10) / 10``); the **day risk level** is the first ``day_risk_levels``
   range holding the sum (none: 0). The **total risk level** is the highest day level (CWA: 2 "high"
   if any day is high, else 1 "low").

Ranges are tables ``{min, max, min_exclusive = false, max_exclusive = false}`` as in the app's
protocol buffers. Risk levels: 1 low, 2 high (0: none).

Two entry points:

:func:`risk_from_scans`
    The exact calculation on scan instances (what the app sees): used on the CWA test vectors and on
    GAEN JSON read by :func:`ble.formats.gaen.parse_gaen`.
:func:`evaluate_daily`
    The rule on per-(observer, source, day) sums of exposure windows (:data:`tracing.core.rules.
    DAILY_DTYPE`), as every pipeline calls rules: the source's report type and infectiousness are rule
    parameters, the day's seconds per attenuation bucket (``ble.schema.ATT_EDGES``) are weighted by
    :func:`bucket_weights`, the window mapping is applied to the day's total. Windows carry seconds
    by *typical* (per-scan mean) attenuation only, so on windows ``attenuation = "min"`` is evaluated
    on the typical attenuation, and a bucket that straddles a range bound takes the smaller weight
    (CWA's 73–79 dB band at 0.1 lies inside the open ``> 73 dB`` bucket, so on windows it counts 0):
    the result is exact where :func:`bucket_weights` says so, otherwise a lower bound of the
    normalized time.

Units: seconds, minutes where a name says so, attenuation in dB.
"""
from __future__ import annotations

from types import MappingProxyType

import numpy as np

from ble.schema import ATT_EDGES, N_ATT_BUCKETS

__all__ = ["SPEC", "check_params", "in_ranges", "bucket_weights", "transmission_risk_level",
           "risk_from_scans", "evaluate_daily", "round_half_up"]

#: Parameters of the ``gaen_v2`` kind: {name: (type, required, default)} (see tracing.core.rules).
SPEC = {
    "attenuation": (str, False, "min"),
    "attenuation_weights": (list, True, None),
    "trl_encoding": (dict, True, None),
    "trl_filters": (list, False, []),
    "transmission_risk_values": (list, True, None),
    "window_risk_levels": (list, True, None),
    "day_risk_levels": (list, True, None),
    "report_type": (int, False, 1),
    "infectiousness": (int, False, 1),
    "notify_min_risk_level": (int, False, 2),
}
_TRL_KEYS = ("infectiousness_offset_standard", "infectiousness_offset_high", "report_type_offset_recursive",
             "report_type_offset_self_report", "report_type_offset_confirmed_clinical_diagnosis",
             "report_type_offset_confirmed_test")
_RANGE_KEYS = {"min", "max", "min_exclusive", "max_exclusive"}


def _check_ranges(ranges, value_key: str, where: str, key: str) -> tuple:
    out = []
    for k, r in enumerate(ranges):
        if not isinstance(r, dict) or not {"min", "max", value_key} <= set(r) \
                or set(r) - _RANGE_KEYS - {value_key}:
            raise ValueError(f"{where}: {key}[{k}] must be a table {{min, max, [min_exclusive], "
                             f"[max_exclusive], {value_key}}}, got {r!r}")
        lo, hi, v = r["min"], r["max"], r[value_key]
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in (lo, hi, v)) \
                or not (np.isfinite([lo, hi, v]).all() and lo <= hi and v >= 0):
            raise ValueError(f"{where}: {key}[{k}] needs finite numbers min <= max and {value_key} >= 0")
        out.append(MappingProxyType({"min": float(lo), "max": float(hi), value_key: float(v),
                                     "min_exclusive": bool(r.get("min_exclusive", False)),
                                     "max_exclusive": bool(r.get("max_exclusive", False))}))
    return tuple(out)


def check_params(p: dict, where: str) -> dict:
    """Validate the ``gaen_v2`` parameters (after the type check); one-line ``ValueError`` naming them."""
    if p["attenuation"] not in ("min", "typical"):
        raise ValueError(f"{where}: attenuation must be 'min' or 'typical', got {p['attenuation']!r}")
    p["attenuation_weights"] = _check_ranges(p["attenuation_weights"], "weight", where, "attenuation_weights")
    p["window_risk_levels"] = _check_ranges(p["window_risk_levels"], "risk_level", where, "window_risk_levels")
    p["day_risk_levels"] = _check_ranges(p["day_risk_levels"], "risk_level", where, "day_risk_levels")
    p["trl_filters"] = _check_ranges([dict(r, drop=1) for r in p["trl_filters"]], "drop", where, "trl_filters")
    enc = dict(p["trl_encoding"])
    if set(enc) != set(_TRL_KEYS) or not all(isinstance(v, int) and not isinstance(v, bool) for v in enc.values()):
        raise ValueError(f"{where}: trl_encoding needs the integers {list(_TRL_KEYS)}, got {sorted(enc)}")
    p["trl_encoding"] = MappingProxyType(enc)
    trv = np.asarray(p["transmission_risk_values"], dtype=np.float64)
    if trv.shape != (8,) or not np.all(np.isfinite(trv)) or np.any(trv < 0):
        raise ValueError(f"{where}: transmission_risk_values needs 8 finite values >= 0 (TRL 1..8)")
    if p["report_type"] not in (1, 2, 3, 4):
        raise ValueError(f"{where}: report_type must be an ENF report type 1..4, got {p['report_type']}")
    if p["infectiousness"] not in (1, 2):
        raise ValueError(f"{where}: infectiousness must be 1 (standard) or 2 (high), got {p['infectiousness']}")
    if p["notify_min_risk_level"] < 1:
        raise ValueError(f"{where}: notify_min_risk_level must be >= 1")
    return p


def round_half_up(x, decimals: int = 1) -> np.ndarray:
    """Kotlin's ``(x · 10^d).roundToLong() / 10^d`` (``Math.round``: half up), as CWA rounds day sums."""
    f = 10.0 ** decimals
    return np.floor(np.asarray(x, dtype=np.float64) * f + 0.5) / f


def in_ranges(x, ranges, value_key: str, default: float = 0.0) -> np.ndarray:
    """Value of the first range holding each ``x`` (``default`` where none does); vectorised."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full(x.shape, np.nan)
    for r in ranges:
        lo_ok = x > r["min"] if r["min_exclusive"] else x >= r["min"]
        hi_ok = x < r["max"] if r["max_exclusive"] else x <= r["max"]
        out = np.where(np.isnan(out) & lo_ok & hi_ok, r[value_key], out)
    return np.where(np.isnan(out), default, out)


def transmission_risk_level(report_type, infectiousness, enc) -> np.ndarray:
    """TRL per window from ENF report type (1..4) and infectiousness (1, 2) via ``trl_encoding``."""
    rt = np.asarray(report_type, dtype=np.int64)
    inf = np.asarray(infectiousness, dtype=np.int64)
    if np.any((rt < 1) | (rt > 4)):
        raise ValueError("report_type must be an ENF report type 1..4 (confirmed test, clinical "
                         "diagnosis, self report, recursive)")
    rt_off = np.array([0, enc["report_type_offset_confirmed_test"],
                       enc["report_type_offset_confirmed_clinical_diagnosis"],
                       enc["report_type_offset_self_report"], enc["report_type_offset_recursive"]])
    inf_off = np.where(inf == 2, enc["infectiousness_offset_high"], enc["infectiousness_offset_standard"])
    return rt_off[rt] + inf_off


def risk_from_scans(scan_window, seconds, min_att, typical_att, window_day, report_type, infectiousness,
                    params, window_group=None) -> dict:
    """The app's calculation on scan instances (module docstring, steps 1–4).

    ``scan_window`` (n_scans,) int: index of each scan's window; ``seconds`` (n_scans,) s:
    ``secondsSinceLastScan`` (negative counts 0); ``min_att``/``typical_att`` (n_scans,) dB.
    ``window_day`` (n_windows,) int: day of each window (e.g. −ageInDays); ``report_type``,
    ``infectiousness`` (n_windows,) ENF codes. ``window_group`` (n_windows,) int, optional: windows of
    different groups (e.g. test cases, or observers) never share a day sum. ``params``: the rule's
    parameters. Returns a dict of arrays: per window ``trl``, ``normalized_time``, ``window_level``
    (0 = dropped); per (group, day) ``group``, ``day``, ``day_time``, ``day_level`` (sorted); per group
    ``total_level`` (length ``max(group) + 1``; 1 for a group without any day at risk, as CWA reports
    "low" when nothing is found).
    """
    scan_window = np.asarray(scan_window, dtype=np.int64)
    window_day = np.asarray(window_day, dtype=np.int64)
    n = window_day.shape[0]
    group = np.zeros(n, np.int64) if window_group is None else np.asarray(window_group, dtype=np.int64)
    if scan_window.size and (scan_window.min() < 0 or scan_window.max() >= n):
        raise ValueError(f"scan_window must index the {n} windows")
    att = np.asarray(min_att if params["attenuation"] == "min" else typical_att, dtype=np.float64)
    secs = np.maximum(np.asarray(seconds, dtype=np.float64), 0.0)       # CWA: max(seconds, 0)
    w = in_ranges(att, params["attenuation_weights"], "weight")
    weighted_min = np.bincount(scan_window, weights=secs * w, minlength=n) / 60.0
    trl = transmission_risk_level(report_type, infectiousness, params["trl_encoding"])
    trv = np.asarray(params["transmission_risk_values"], dtype=np.float64)[np.clip(trl, 1, 8) - 1]
    trv = np.where((trl >= 1) & (trl <= 8), trv, 0.0)
    norm = trv * weighted_min
    level = in_ranges(norm, params["window_risk_levels"], "risk_level").astype(np.int64)
    level[in_ranges(trl, params["trl_filters"], "drop") > 0] = 0
    keep = level > 0
    key = np.stack([group, window_day], axis=1)
    ukey, inv = np.unique(key, axis=0, return_inverse=True)
    inv = inv.ravel()
    day_time = round_half_up(np.bincount(inv, weights=np.where(keep, norm, 0.0), minlength=len(ukey)))
    has = np.bincount(inv, weights=keep.astype(np.float64), minlength=len(ukey)) > 0
    day_level = np.where(has, in_ranges(day_time, params["day_risk_levels"], "risk_level"), 0).astype(np.int64)
    n_groups = int(group.max()) + 1 if n else 0
    total = np.ones(n_groups, np.int64)
    if len(ukey):
        np.maximum.at(total, ukey[:, 0], day_level)
    return {"trl": trl, "normalized_time": norm, "window_level": level, "group": ukey[:, 0],
            "day": ukey[:, 1], "day_time": day_time, "day_level": day_level, "total_level": total}


def bucket_weights(params) -> tuple[np.ndarray, bool]:
    """Weight of each ``att_secs`` bucket (``ble.schema.ATT_EDGES``, bucket k = (edge[k-1], edge[k]])
    under ``attenuation_weights``, and whether every bucket lies inside one weight (exact).

    A bucket straddling a range bound gets the smallest weight it meets (a lower bound). Bucket 0 is
    taken as [0, 10] dB; a range bound that equals a bucket edge splits nothing (an attenuation of
    exactly that value has probability zero for continuous attenuations)."""
    lo = np.append(0.0, ATT_EDGES)           # attenuation >= 0 dB (TX power above the RSSI)
    hi = np.append(ATT_EDGES, 1e3)
    bounds = np.array(sorted({r[k] for r in params["attenuation_weights"] for k in ("min", "max")}))
    out = np.empty(N_ATT_BUCKETS)
    exact = True
    for k in range(N_ATT_BUCKETS):            # 11 buckets: a fixed, tiny loop
        inner = bounds[(bounds > lo[k]) & (bounds < hi[k])]    # single points have measure zero
        pts = np.concatenate([[lo[k] + 1e-6, hi[k] - 1e-6], inner + 1e-6, inner - 1e-6])
        w = in_ranges(pts, params["attenuation_weights"], "weight")
        out[k] = w.min()
        exact &= bool(np.all(w == w[0]))
    return out, exact


def evaluate_daily(att_secs, params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(notify, normalized_time, day_level)`` per row of per-day bucket seconds ``att_secs``
    ((n, N_ATT_BUCKETS) s), the source's report type and infectiousness from ``params``."""
    w, _ = bucket_weights(params)
    weighted_min = np.asarray(att_secs, dtype=np.float64).reshape(-1, N_ATT_BUCKETS) @ w / 60.0
    trl = int(transmission_risk_level(params["report_type"], params["infectiousness"],
                                      params["trl_encoding"]))
    trv = float(params["transmission_risk_values"][trl - 1]) if 1 <= trl <= 8 else 0.0
    if in_ranges(float(trl), params["trl_filters"], "drop") > 0:
        trv = 0.0
    norm = trv * weighted_min
    kept = in_ranges(norm, params["window_risk_levels"], "risk_level") > 0
    day_time = round_half_up(np.where(kept, norm, 0.0))
    level = np.where(kept, in_ranges(day_time, params["day_risk_levels"], "risk_level"), 0).astype(np.int64)
    return level >= params["notify_min_risk_level"], norm, level
