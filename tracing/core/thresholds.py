"""Named adoption thresholds with bootstrap confidence intervals over replicates.

Every replicate (one rank draw and one F0 sample; in a sweep also one simulated province) gives exact
curves on a fine adoption grid. A threshold is computed from the replicate-mean curve; its 95% CI is the
percentile interval of the same statistic over bootstrap resamples of the replicates (with replacement).

``percolation``
    adoption at the peak of the mean finite-cluster size of the traceable contact network (adopters
    joined by contacts that were truly close *and* notified by the rule), over the look-back window
    of the pair table (``window_days``).
``notified_percolation``
    the same for the network of every notified contact, close or not (a second criterion, never the
    headline: under an any-sighting rule it is mostly false positives).
``ideal_percolation``
    the same for the ideal rule (the close-contact network among adopters).
``coverage_target``
    the lowest adoption at which the mean F1 coverage reaches the target (default 0.5), linearly
    interpolated between grid points; ``null`` with a reason if never reached.
``r_below_one``
    (closed loop) the adoption at which the replicate-mean R_eff falls below 1 (:func:`r_below_one`).
"""
from __future__ import annotations

import math

import numpy as np

from tracing.core.checks import quiet_nan

__all__ = ["PERCOLATION_DEF", "TARGET_DEF", "crossing", "crossing_rows", "peak", "peak_rows",
           "compute_thresholds", "r_below_one"]

PERCOLATION_DEF = ("site percolation point of the {net}: the adoption level "
                   "(fraction of the population) at the peak of the replicate-mean mean finite-"
                   "cluster size (susceptibility) of adopters linked by {links} over a look-back "
                   "window of {window}, computed by Newman-Ziff (exact per replicate) on an adoption "
                   "grid of step {step}; 95% CI: bootstrap over {r} replicates")
#: (network name, links) of the three percolation criteria
NETWORKS = {"percolation": ("traceable network", "contacts that were truly close (2 m / 15 min) and "
                            "notified by the rule"),
            "notified_percolation": ("notified network", "every notified contact, close or not"),
            "ideal_percolation": ("close-contact network (ideal rule)", "every true close contact")}
TARGET_DEF = ("lowest adoption level (fraction of the population) at which the replicate-mean F1 "
              "coverage (fraction of index cases' true close contacts notified, over a look-back "
              "window of {window}) reaches {target:g}, linearly interpolated on an adoption grid of "
              "step {step}; 95% CI: bootstrap over {r} replicates")


def crossing_rows(grid: np.ndarray, curves: np.ndarray, target: float) -> np.ndarray:
    """Per row of ``curves`` (R, G): the first adoption where the curve reaches ``target``, linearly
    interpolated between grid points; NaN where never reached."""
    grid = np.asarray(grid, dtype=np.float64)
    c = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    with np.errstate(invalid="ignore"):
        hit = c >= target
    k = np.argmax(hit, axis=1)
    rows = np.arange(len(c))
    out = np.full(len(c), np.nan)
    ok = hit[rows, k]
    km = np.maximum(k - 1, 0)
    y0, y1 = c[rows, km], c[rows, k]
    x0, x1 = grid[km], grid[k]
    with quiet_nan():
        interp = np.where((k > 0) & np.isfinite(y0) & (y1 > y0),
                          x0 + (target - y0) * (x1 - x0) / (y1 - y0), x1)
    out[ok] = interp[ok]
    return out


def peak_rows(grid: np.ndarray, curves: np.ndarray) -> np.ndarray:
    """Per row: adoption at the (first) maximum; NaN for rows with no positive value."""
    c = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    c0 = np.where(np.isfinite(c), c, -np.inf)
    k = np.argmax(c0, axis=1)
    out = np.asarray(grid, dtype=np.float64)[k]
    return np.where(np.any(c0 > 0, axis=1), out, np.nan)


def crossing(grid: np.ndarray, curve: np.ndarray, target: float) -> float:
    """First adoption where ``curve`` reaches ``target`` (linear interpolation); NaN if never."""
    return float(crossing_rows(grid, curve, target)[0])


def peak(grid: np.ndarray, curve: np.ndarray) -> float:
    """Adoption at the maximum of ``curve`` (first maximum); NaN if the curve is all zero/NaN."""
    return float(peak_rows(grid, curve)[0])


def _bootstrap(stat, curves: np.ndarray, rng: np.random.Generator, n_boot: int):
    """Percentile 95% CI of ``stat(mean curves) -> one value per row`` over bootstrap resamples of the rows of ``curves``;
    NaN statistics (e.g. target not reached) are treated as +inf (upper bound then unbounded).
    Resampled mean curves are weight-matrix products (memory n_boot x grid, not x replicates)."""
    r = curves.shape[0]
    idx = rng.integers(0, r, size=(n_boot, r))
    w = np.zeros((n_boot, r))
    np.add.at(w, (np.repeat(np.arange(n_boot), r), idx.ravel()), 1.0)
    fin = np.isfinite(curves)
    with quiet_nan():
        means = (w @ np.where(fin, curves, 0.0)) / (w @ fin.astype(float))
    vals = stat(means)  # vectorised over resamples
    vals = np.where(np.isnan(vals), np.inf, vals)
    lo, hi = np.quantile(vals, [0.025, 0.975])
    return (None if not np.isfinite(lo) else float(lo)), (None if not np.isfinite(hi) else float(hi))


def _percolation(name, grid, chi, rng, n_boot, step, window, replicate_values) -> dict:
    r = chi.shape[0]
    net, links = NETWORKS[name]
    p_c = peak(grid, np.nanmean(chi, axis=0))
    perc = {"adoption": None if np.isnan(p_c) else p_c, "ci": None, "network": net,
            "definition": PERCOLATION_DEF.format(net=net, links=links, window=window, step=step, r=r),
            "replicates": r}
    if np.isnan(p_c):
        perc["reason"] = f"the {net} has no finite clusters (no such links)"
    elif r > 1:
        perc["ci"] = list(_bootstrap(lambda m: peak_rows(grid, m), chi, rng, n_boot))
    else:
        perc["reason_no_ci"] = "one replicate: no bootstrap interval"
    if replicate_values is not None:
        perc["replicate_values"] = [None if not np.isfinite(v) else float(v)
                                    for v in np.asarray(replicate_values, dtype=float)]
    return perc


def compute_thresholds(grid, f1_curves, chi_curves, *, target: float = 0.5, seed: int = 0,
                       n_boot: int = 2000, replicate_percolation=None, notified_chi=None,
                       ideal_chi=None, window_days=None, replicate_notified=None,
                       replicate_ideal=None) -> dict:
    """The ``threshold.json`` object.

    Parameters
    ----------
    grid : fine adoption grid (fractions of the population), ascending.
    f1_curves, chi_curves : (replicates, len(grid)) F1 coverage and mean finite-cluster size of the
        traceable network (``percolation``).
    target : F1 coverage target. seed : bootstrap seed. replicate_percolation : optional exact
        per-replicate percolation thresholds (reported alongside).
    notified_chi, ideal_chi : optional (replicates, len(grid)) mean finite-cluster sizes of the
        notified and of the close-contact network (``notified_percolation``, ``ideal_percolation``),
        with their exact per-replicate values ``replicate_notified`` / ``replicate_ideal``.
    window_days : look-back window of the contact data (days), stated in every definition.
    """
    grid = np.asarray(grid, dtype=np.float64)
    f1 = np.atleast_2d(np.asarray(f1_curves, dtype=np.float64))
    chis = {"percolation": (chi_curves, replicate_percolation),
            "notified_percolation": (notified_chi, replicate_notified),
            "ideal_percolation": (ideal_chi, replicate_ideal)}
    chis = {k: (np.atleast_2d(np.asarray(c, dtype=np.float64)), v) for k, (c, v) in chis.items()
            if c is not None}
    if f1.shape[1] != len(grid) or any(c.shape[1] != len(grid) for c, _ in chis.values()):
        raise ValueError("compute_thresholds: curves must have one column per grid point")
    if not 0 < target <= 1:
        raise ValueError(f"coverage target must be in (0, 1], got {target}")
    if window_days is not None and not window_days > 0:
        raise ValueError(f"window_days must be > 0 (days), got {window_days}")
    r = f1.shape[0]
    d = np.diff(grid)
    step = (f"{d.min():g}" if len(d) and np.allclose(d, d.min()) else
            f"{d.min():g} to {d.max():g}" if len(d) else "n/a")
    window = f"{window_days:g} day(s)" if window_days is not None else "the whole contact data"
    rng = np.random.default_rng(seed)
    out = {}
    for name, (chi, values) in chis.items():
        out[name] = _percolation(name, grid, chi, rng, n_boot, step, window, values)
        if window_days is not None:
            out[name]["window_days"] = float(window_days)
    # coverage target
    x = crossing(grid, np.nanmean(f1, axis=0), target)
    cov = {"adoption": None if np.isnan(x) else x, "ci": None, "target": target,
           "definition": TARGET_DEF.format(target=target, step=step, r=r, window=window), "replicates": r}
    if np.isnan(x):
        reached = np.nanmax(np.nanmean(f1, axis=0)) if np.any(np.isfinite(f1)) else float("nan")
        cov["reason"] = (f"mean F1 coverage never reaches {target:g} on [{grid[0]:g}, {grid[-1]:g}] "
                         f"(maximum {reached:.3g}; e.g. adoption saturates at the phone-owner share)")
    elif r > 1:
        cov["ci"] = list(_bootstrap(lambda m: crossing_rows(grid, m, target), f1, rng, n_boot))
    else:
        cov["reason_no_ci"] = "one replicate: no bootstrap interval"
    if window_days is not None:
        cov["window_days"] = float(window_days)
    out["coverage_target"] = cov
    return out


def r_below_one(grid, r_eff: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> dict:
    """The adoption level at which the replicate-mean R_eff first falls below 1 (linear
    interpolation between grid levels), with a bootstrap 95% interval over replicates (rows of
    ``r_eff``: replicates, columns: levels). ``value`` None with a ``reason`` where R_eff is below 1
    already without the app or never falls below 1 on the grid."""
    g = np.asarray(grid, float)
    r = np.atleast_2d(np.asarray(r_eff, float))

    def cross(curve):
        c = np.asarray(curve, float)
        ok = np.isfinite(c)
        if not ok.any():
            return np.nan, "no replicate produced cases in the R generations"
        gg, cc = g[ok], c[ok]
        if cc[0] < 1:
            return np.nan, f"R_eff is already below 1 without the app ({cc[0]:.2f} at {gg[0]:.0%})"
        below = np.flatnonzero(cc < 1)
        if not len(below):
            return np.nan, f"R_eff stays above 1 up to {gg[-1]:.0%} adoption (min {cc.min():.2f})"
        k = below[0]
        x0, x1, y0, y1 = gg[k - 1], gg[k], cc[k - 1], cc[k]
        return float(x0 + (y0 - 1) / (y0 - y1) * (x1 - x0)), ""

    with quiet_nan():
        mean = np.nanmean(r, axis=0)
    val, reason = cross(mean)
    out = {"name": "r_below_one",
           "definition": "adoption (fraction of the population) at which the mean R_eff over replicates "
                         "(secondary infections per case of the early generations, closed loop with "
                         "app tracing) falls below 1; linear interpolation between levels",
           "adoption": None if not math.isfinite(val) else val, "ci": None, "reason": reason or None,
           "r_eff_mean": [None if not np.isfinite(x) else float(x) for x in mean]}
    if math.isfinite(val) and r.shape[0] > 1:
        rng = np.random.default_rng(seed)
        bs = []
        for _ in range(n_boot):                          # bootstrap resamples, not agents
            idx = rng.integers(0, r.shape[0], r.shape[0])
            with quiet_nan():
                v, _ = cross(np.nanmean(r[idx], axis=0))
            bs.append(v)
        bs = np.asarray(bs)
        if np.isfinite(bs).sum() >= 0.5 * n_boot:
            out["ci"] = [float(np.nanpercentile(bs, 2.5)), float(np.nanpercentile(bs, 97.5))]
            out["ci_note"] = f"{int(np.isfinite(bs).sum())} of {n_boot} bootstrap resamples cross 1"
    return out
