"""Tables of results: the one CSV writer, the replicate mean with its interval, the per-level summary
and the cross-combination comparison tables of a sweep.

Every file is written atomically (``ble.schema.write_text_atomic``): a reader never sees half a table.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from ble.schema import write_text_atomic
from tracing.core.checks import quiet_nan
from tracing.core.coverage import METRICS

__all__ = ["mean_ci", "FRACTIONS", "summarise", "write_csv", "write_json", "THRESHOLD_COLUMNS",
           "write_comparison", "write_channels_csv", "CHANNEL_COLUMNS"]


def mean_ci(a: np.ndarray):
    """Mean over replicates (axis 0, NaN ignored) and the 95% t-interval of that mean (NaN where fewer
    than two replicates have a value). ``a``: (replicates, levels). Returns ``(mean, lo, hi)``."""
    a = np.asarray(a, dtype=float)
    with quiet_nan():
        m = np.nanmean(a, axis=0)
        k = np.sum(np.isfinite(a), axis=0)
        sd = np.nanstd(a, axis=0, ddof=1) if a.shape[0] > 1 else np.full(a.shape[1], np.nan)
        h = stats.t.ppf(0.975, np.maximum(k - 1, 1)) * sd / np.sqrt(np.maximum(k, 1))
        h = np.where(k > 1, h, np.nan)
    return m, m - h, m + h


#: Metrics that are fractions: their intervals are clipped to [0, 1].
FRACTIONS = ("f1_coverage", "f1_precision", "f2_coverage", "largest_component", "adoption_achieved",
             "f1_coverage_ideal", "f2_coverage_ideal", "notified_largest_component",
             "ideal_largest_component", "owner_pair_share", "rule_sensitivity", "f1_decomposition")


def summarise(grid, curves: list[dict]) -> dict:
    """Per adoption level: ``{metric}_mean``, ``{metric}_lo``, ``{metric}_hi`` (95% t-interval of
    the replicate mean; fractions clipped to [0, 1])."""
    out = {"adoption": np.asarray(grid, dtype=float)}
    for m in METRICS:
        arr = np.vstack([c[m] for c in curves])
        mean, lo, hi = mean_ci(arr)
        if m in FRACTIONS:
            lo, hi = np.clip(lo, 0, 1), np.clip(hi, 0, 1)
        else:  # sizes and delays are >= 0
            lo = np.maximum(lo, 0)
        out[f"{m}_mean"], out[f"{m}_lo"], out[f"{m}_hi"] = mean, lo, hi
    return out


def write_csv(path, columns, data: dict, float_format: str = "%.10g") -> None:
    """The one CSV writer: columns of equal length -> ``path`` atomically. Integers as integers,
    strings and booleans as text, floats with ``float_format``; NaN as an empty field."""
    cols = [np.asarray(data[c]) for c in columns]
    lines = [",".join(columns)]
    if len(cols[0]):
        body = np.column_stack([np.char.mod("%d", c) if c.dtype.kind in "iu" else
                                c.astype(str) if c.dtype.kind in "USOb" else
                                np.char.mod(float_format, c.astype(float)) for c in cols])
        lines += [",".join(r) for r in body.tolist()]
    write_text_atomic(path, "\n".join(lines).replace("nan", "") + "\n")


def write_json(path, obj: dict, **kw) -> None:
    """``obj`` as indented JSON, atomically (``kw``: passed to ``json.dumps``)."""
    write_text_atomic(path, json.dumps(obj, indent=2, **kw) + "\n")


THRESHOLD_COLUMNS = ("scenario", "strategy", "rule", "n", "owner_share", "percolation",
                     "percolation_lo", "percolation_hi", "coverage_target", "target_adoption",
                     "target_adoption_lo", "target_adoption_hi", "f1_at_30", "f1_at_30_of_owners",
                     "f1_at_all_owners", "folder", "window_days", "notified_percolation",
                     "ideal_percolation", "f1_ideal_at_30", "fp_burden_at_30")


def _num(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return str(int(v))
    v = float(v)
    return "" if not np.isfinite(v) else f"{v:.10g}"


def write_comparison(out: Path, results: dict, *, target: float) -> list[dict]:
    """``thresholds.csv`` (one row per scenario × strategy) and ``comparison.csv`` (every combination's
    mean curves with 95% intervals); returns the threshold rows."""
    rows, lines = [], []
    cmp_cols = ["scenario", "strategy", "adoption"] + [f"{m}_{s}" for m in
                                                       ("f1_coverage", "f2_coverage",
                                                        "largest_component")
                                                       for s in ("mean", "lo", "hi")] + [
        "adoption_achieved_mean", "f1_coverage_ideal_mean"]
    for (label, strat), r in results.items():
        s, th, meta = r["summary"], r["thresholds"], r["meta"]
        share = meta.get("owner_share")
        x = np.asarray(s["adoption"], dtype=float)
        f1 = np.asarray(s["f1_coverage_mean"], dtype=float)

        def at(p, y=f1):
            return None if p is None or p < x.min() - 1e-12 or p > x.max() + 1e-12 \
                else float(np.interp(p, x, y))
        pc, ct = th["percolation"], th["coverage_target"]
        rows.append({
            "scenario": label, "strategy": strat, "rule": meta["rule"],
            "n": meta["n"] if isinstance(meta["n"], int) else float(np.mean(meta["n"])),
            "owner_share": share, "percolation": pc.get("adoption"),
            "percolation_lo": (pc.get("ci") or [None, None])[0],
            "percolation_hi": (pc.get("ci") or [None, None])[1],
            "coverage_target": ct.get("target", target), "target_adoption": ct.get("adoption"),
            "target_adoption_lo": (ct.get("ci") or [None, None])[0],
            "target_adoption_hi": (ct.get("ci") or [None, None])[1],
            "f1_at_30": at(0.3), "f1_at_30_of_owners": at(0.3 * share) if share else None,
            "f1_at_all_owners": at(share) if share else None,
            "folder": Path(r["folder"]).resolve().relative_to(out.resolve()).as_posix() or ".",
            "window_days": pc.get("window_days"),
            "notified_percolation": th.get("notified_percolation", {}).get("adoption"),
            "ideal_percolation": th.get("ideal_percolation", {}).get("adoption"),
            "f1_ideal_at_30": at(0.3, np.asarray(s["f1_coverage_ideal_mean"], dtype=float))
            if "f1_coverage_ideal_mean" in s else None,
            "fp_burden_at_30": at(0.3, np.asarray(s["fp_burden_mean"], dtype=float))
            if "fp_burden_mean" in s else None,
        })
        for k in range(len(x)):
            lines.append(",".join([label, strat, _num(x[k])] + [
                _num(s[c][k]) if c in s else "" for c in cmp_cols[3:]]))
    text = [",".join(THRESHOLD_COLUMNS)] + [
        ",".join(row[c] if isinstance(row[c], str) else _num(row[c]) for c in THRESHOLD_COLUMNS)
        for row in rows]
    write_text_atomic(out / "thresholds.csv", "\n".join(text) + "\n")
    write_text_atomic(out / "comparison.csv", "\n".join([",".join(cmp_cols)] + lines) + "\n")
    return rows


CHANNEL_COLUMNS = ("adoption", "replicate", "channel", "f1_coverage", "f1_precision", "f2_coverage")


def write_channels_csv(path, rows_list: list) -> None:
    """``channels.csv``: adoption, replicate, channel, f1_coverage, f1_precision, f2_coverage."""
    write_csv(path, CHANNEL_COLUMNS, {k: np.concatenate([r[k] for r in rows_list]) for k in CHANNEL_COLUMNS},
              float_format="%.6g")
