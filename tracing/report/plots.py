"""Figures of an adoption sweep (matplotlib, Agg backend; written atomically as PNG).

``coverage.png``: F1 coverage, F2 coverage and F1 precision of the chosen rule (solid, 95% bands) beside
the ideal rule's coverage (dashed) against the adoption actually reached (fraction of the population;
the curves end where every phone owner runs the app), vertical lines at the official 30% and 60%
levels on both denominators (population, smartphone users), the computed thresholds and the provinces'
reported adoption.
``percolation.png``: largest component and mean finite-cluster size of the traceable network (close
and notified contacts) against the adoption reached, with its threshold and CI, the ideal rule's
(close-contact network) curve beside it and the notified network's threshold as a second criterion.
``comparison.png``: every scenario × strategy of a sweep on one figure.
``channels.png``: coverage and precision per notification channel (Bluetooth, QR, both).
``epidemic.png``: attack rate and R_eff against adoption per closed-loop variant.
"""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ble.schema import atomic_path  # noqa: E402
from tracing.core.checks import quiet_nan  # noqa: E402
from tracing.report.tables import mean_ci  # noqa: E402

__all__ = ["OFFICIAL_LEVELS", "PROVINCE_ADOPTION", "plot_coverage", "plot_percolation",
           "plot_comparison", "plot_channels", "plot_epidemic"]

#: Official reference levels (fraction of the population): the campaigns' "effectiveness threshold"
#: and the national target (DESIGN.md, "The seeds in numbers").
OFFICIAL_LEVELS = {"official 30%": 0.30, "national target 60%": 0.60}

#: Reported adoption of the seed provinces as a fraction of the population (DESIGN.md / FACTS.md):
#: Lạng Sơn 152,411 installs (25.16% of 605,768 smartphone users) / 781,655 inhabitants (2019 census);
#: Đắk Lắk ~190,000 subscribers = 10.32% of its population (16 Aug 2020).
PROVINCE_ADOPTION = {"lang-son": ("Lạng Sơn (25.2% of smartphone users)", 152411 / 781655),
                     "dak-lak": ("Đắk Lắk", 0.1032)}


def _save(fig, path):
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def _finish(fig, path, title: str = ""):
    """Title, tight layout, atomic PNG."""
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)


def _band(ax, x, s, name, color, label):
    m = s[f"{name}_mean"]
    ax.plot(x, m, color=color, lw=2, label=label)
    lo, hi = s[f"{name}_lo"], s[f"{name}_hi"]
    if np.any(np.isfinite(lo)):
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0)


def _reached(s: dict):
    """x of a summary: the adoption actually reached (where the sweep recorded it), else requested;
    levels past saturation collapse onto the owner share, so keep the first of equal x."""
    x = np.asarray(s.get("adoption_achieved_mean", s["adoption"]), dtype=float)
    keep = np.ones(len(x), bool)
    keep[1:] = np.diff(x) > 1e-12
    return x, keep


def plot_coverage(path, summary: dict, thresholds: dict, *, provinces=None, title: str = "",
                  owner_share: float | None = None):
    """``summary``: arrays ``adoption`` and ``{metric}_{mean,lo,hi}``; ``provinces``: keys of
    :data:`PROVINCE_ADOPTION` to mark (default all); ``owner_share``: smartphone owners' share of
    the population, if known (marks 30% and 60% of smartphone users, the letters' own denominator)."""
    x, keep = _reached(summary)
    s = {k: np.asarray(v)[keep] for k, v in summary.items()}
    x = x[keep]
    fig, ax = plt.subplots(figsize=(9, 5.8))
    _band(ax, x, s, "f1_coverage", "C0", "F1 coverage (close contacts warned)")
    _band(ax, x, s, "f2_coverage", "C2", "F2 coverage (second-degree reached)")
    _band(ax, x, s, "f1_precision", "C3", "F1 precision (warned who were close)")
    for name, col in (("f1_coverage_ideal", "navy"), ("f2_coverage_ideal", "darkgreen")):
        if f"{name}_mean" in s:      # on top (it may coincide with the rule's curve)
            ax.plot(x, s[f"{name}_mean"], color=col, ls=(0, (4, 3)), lw=1.3, zorder=4,
                    label=f"{name[:2].upper()} coverage, ideal rule (exactly the close contacts)")
    for k, (lab, v) in enumerate(OFFICIAL_LEVELS.items()):
        ax.axvline(v, color="k", ls="--", lw=1)
        ax.text(v, 1.01, f"{lab} of pop.", rotation=0, ha="center", va="bottom", fontsize=8,
                transform=ax.get_xaxis_transform())
    colors = {"percolation": "C4", "coverage_target": "C1"}
    for name, th in thresholds.items():
        v = th.get("adoption")
        if v is None or name not in colors:
            continue
        ci = th.get("ci") or [None, None]
        lab = {"percolation": f"traceable-network percolation ({th.get('window_days', 0):g} d)",
               "coverage_target": f"F1 coverage = {th.get('target', 0.5):g}"}.get(name, name)
        ax.axvline(v, color=colors.get(name, "C5"), lw=1.5, label=f"{lab}: {v:.3f}")
        if ci[0] is not None and ci[1] is not None:
            ax.axvspan(ci[0], ci[1], color=colors.get(name, "C5"), alpha=0.1, lw=0)
    if owner_share is not None and np.isfinite(owner_share):
        for f, ls in ((0.3, ":"), (0.6, "-.")):
            ax.axvline(f * owner_share, color="0.3", ls=ls, lw=1.2,
                       label=f"{f:.0%} of smartphone users = {f * owner_share:.1%} of pop.")
        ax.axvspan(owner_share, 1, color="0.85", alpha=0.5, lw=0,
                   label=f"not reachable: only {owner_share:.1%} own a smartphone")
    for key in (PROVINCE_ADOPTION if provinces is None else provinces):
        if key in PROVINCE_ADOPTION:
            lab, v = PROVINCE_ADOPTION[key]
            ax.axvline(v, color="C5", ls="-", lw=1, label=f"reported: {lab} = {v:.1%} of pop.")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("adoption reached (fraction of the population running the app)")
    ax.set_ylabel("fraction")
    ax.set_title("Notification coverage vs adoption, 95% bands" + (f" — {title}" if title else ""),
                 fontsize=10, pad=16)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    _save(fig, path)


def plot_percolation(path, fine: dict, thresholds: dict, *, title: str = ""):
    """``fine``: arrays ``adoption`` and ``{largest_component,mean_finite_cluster}_{mean,lo,hi}`` (the
    traceable network; ``ideal_largest_component_mean`` beside it if present) on the fine grid."""
    x, keep = _reached(fine)
    fine = {k: np.asarray(v)[keep] for k, v in fine.items()}
    x = x[keep]
    fig, ax = plt.subplots(figsize=(8.5, 5.0))
    _band(ax, x, fine, "largest_component", "C0", "largest component, traceable network (fraction of pop.)")
    if "ideal_largest_component_mean" in fine:      # on top (it may coincide with the rule's curve)
        ax.plot(x, fine["ideal_largest_component_mean"], color="navy", ls=(0, (4, 3)), lw=1.2, zorder=4,
                label="largest component, ideal rule (close contacts)")
    nth = thresholds.get("notified_percolation", {})
    if nth.get("adoption") is not None:
        ax.axvline(nth["adoption"], color="0.5", ls=":", lw=1.2,
                   label=f"notified network (close or not): {nth['adoption']:.3f}, not the headline")
    ax.set_xlabel("adoption reached (fraction of the population running the app)")
    ax.set_ylabel("largest component / population", color="C0")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax2 = ax.twinx()
    _band(ax2, x, fine, "mean_finite_cluster", "C3", "mean finite-cluster size (nodes)")
    ax2.set_ylabel("mean finite-cluster size (nodes)", color="C3")
    ax2.set_ylim(bottom=0)
    th = thresholds.get("percolation", {})
    if th.get("adoption") is not None:
        v = th["adoption"]
        ax.axvline(v, color="C4", lw=1.5,
                   label=f"traceable percolation {v:.3f} ({th.get('window_days', 0):g}-day window)")
        ci = th.get("ci") or [None, None]
        if ci[0] is not None and ci[1] is not None:
            ax.axvspan(ci[0], ci[1], color="C4", alpha=0.15, lw=0, label="95% CI")
    for lab, v in OFFICIAL_LEVELS.items():
        ax.axvline(v, color="k", ls="--", lw=1)
    if th.get("adoption") is not None and th["adoption"] < 0.15:
        # the peak sits at low adoption: zoom on it in an inset
        z = min(1.0, max(4 * th["adoption"], 0.02))
        ins = ax.inset_axes([0.08, 0.55, 0.33, 0.38])
        m = x <= z
        ins.plot(x[m], fine["mean_finite_cluster_mean"][m], color="C3", lw=1.5)
        lo, hi = fine["mean_finite_cluster_lo"][m], fine["mean_finite_cluster_hi"][m]
        if np.any(np.isfinite(lo)):
            ins.fill_between(x[m], lo, hi, color="C3", alpha=0.2, lw=0)
        ins.axvline(th["adoption"], color="C4", lw=1.2)
        ci = th.get("ci") or [None, None]
        if ci[0] is not None and ci[1] is not None:
            ins.axvspan(ci[0], ci[1], color="C4", alpha=0.15, lw=0)
        ins.set_xlim(0, z)
        ins.set_title("zoom: mean finite-cluster size", fontsize=7)
        ins.tick_params(labelsize=7)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=7.5, loc="upper right")
    ax.set_title("Site percolation of the traceable network (close and warned contacts)"
                 + (f"\n{title}" if title else ""), fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def plot_comparison(path, results: dict):
    """``comparison.png`` of a sweep: mean F1 coverage (95% band) against adoption, one panel per
    scenario (province), one line per adoption strategy, with the official 30% line, each strategy's
    percolation threshold (marker on its curve) and "30% of smartphone users" where known.

    ``results``: ``{(scenario, strategy): {"summary", "thresholds", "meta", "preset"}}`` as built by
    :func:`tracing.sweep.sweep`."""
    scen = list(dict.fromkeys(k[0] for k in results))
    strats = list(dict.fromkeys(k[1] for k in results))
    ncol = min(len(scen), 2)
    nrow = -(-len(scen) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.9 * nrow), squeeze=False,
                             sharex=True, sharey=True)
    for k, sname in enumerate(scen):
        ax = axes[k // ncol][k % ncol]
        share = None
        for c, st in enumerate(strats):
            r = results.get((sname, st))
            if r is None:
                continue
            x, keep = _reached(r["summary"])
            s = {k: np.asarray(v)[keep] for k, v in r["summary"].items()}
            x = x[keep]
            _band(ax, x, s, "f1_coverage", f"C{c}", st)
            if "f1_coverage_ideal_mean" in s:     # wider, beneath: visible where it coincides
                ax.plot(x, s["f1_coverage_ideal_mean"], color=f"C{c}", ls=":", lw=3.5, alpha=0.6,
                        zorder=1)
            pc = r["thresholds"]["percolation"].get("adoption")
            if pc is not None and pc <= x.max():
                ax.plot([pc], [np.interp(pc, x, s["f1_coverage_mean"])], marker="o", ms=6,
                        color=f"C{c}", mec="k", ls="none")
            share = r["meta"].get("owner_share") or share
        ax.axvline(0.3, color="k", ls="--", lw=1)
        if share:
            ax.axvline(0.3 * share, color="0.3", ls=":", lw=1.2)
        ax.set_title(str(sname), fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        if k % ncol == 0:
            ax.set_ylabel("F1 coverage")
        if k // ncol == nrow - 1:
            ax.set_xlabel("adoption reached (fraction of the population)")
    for k in range(len(scen), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    h, lab = axes[0][0].get_legend_handles_labels()
    h += [plt.Line2D([], [], color="0.5", ls=":", lw=3.5, alpha=0.6), plt.Line2D([], [], color="k", ls="--"),
          plt.Line2D([], [], color="0.3", ls=":"),
          plt.Line2D([], [], marker="o", color="0.5", mec="k", ls="none")]
    lab += ["ideal rule (wide dotted)", "official 30%", "30% of smartphone users",
            "traceable-network percolation"]
    lcol = min(len(lab), 4 if ncol > 1 else 2)
    fig.legend(h, lab, fontsize=8, loc="lower center", ncol=lcol, frameon=False)
    fig.suptitle("F1 coverage vs adoption by province and adoption strategy (95% bands)", fontsize=10)
    fig.tight_layout(rect=(0, 0.03 + 0.05 * -(-len(lab) // lcol) / nrow, 1, 0.97))
    _save(fig, path)


def plot_channels(path, grid, rows: dict, title: str = "") -> None:
    """``channels.png``: F1 coverage and F1 precision against adoption per channel (replicate mean)."""
    g = np.asarray(grid, float)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for k, name in enumerate(("ble", "qr", "ble+qr")):
        sel = rows["channel"] == name
        for ax, m in zip(axes, ("f1_coverage", "f1_precision")):
            vals = np.asarray(rows[m][sel], float).reshape(-1, len(g))
            with quiet_nan():
                ax.plot(g, np.nanmean(vals, axis=0), color=f"C{k}", lw=2, label=name)
    for ax, lab in zip(axes, ("F1 coverage (true close contacts warned)", "F1 precision (warned truly close)")):
        for x in (0.3, 0.6):
            ax.axvline(x, color="k", ls="--", lw=1)
        ax.set_xlabel("adoption (fraction of the population running the app)")
        ax.set_ylabel(lab)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _finish(fig, path, title)


def plot_epidemic(path, grid, rows: dict, thresholds: dict, title: str = ""):
    """``epidemic.png``: attack rate and R_eff against adoption per rule and variant (replicate mean,
    95% t-band of the main variant of each rule; colour = variant, solid = the chosen rule, dashed =
    the ideal rule), the official 30%
    and 60% lines, R = 1 and the ``r_below_one`` threshold."""
    g = np.asarray(grid, float)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    rule_col = rows["rule"] if "rule" in rows else np.full(len(rows["variant"]), "")
    rules = list(dict.fromkeys(rule_col.tolist()))
    variants = list(dict.fromkeys(rows["variant"].tolist()))
    for rule, v in dict.fromkeys(zip(rule_col.tolist(), rows["variant"].tolist())):
        k = variants.index(v)
        sel = (rows["variant"] == v) & (rule_col == rule)
        reps = np.unique(rows["replicate"][sel])
        for ax, metric in zip(axes, ("attack_rate", "r_eff")):
            a = np.full((len(reps), len(g)), np.nan)
            for ri, r in enumerate(reps):              # loop over replicates
                s2 = sel & (rows["replicate"] == r)
                a[ri, np.searchsorted(g, rows["adoption"][s2])] = rows[metric][s2]
            m, lo, hi = mean_ci(a)
            ax.plot(g, m, color=f"C{k}", lw=2, ls=("-", "--", ":", "-.")[rules.index(rule) % 4],
                    label=f"{rule} {v}".strip())
            if k == 0 and np.any(np.isfinite(lo)):      # one band per rule: the main variant's
                ax.fill_between(g, lo, hi, color=f"C{k}", alpha=0.12 if rules.index(rule) else 0.2, lw=0)
    for ax in axes:
        for lab, x in (("official 30%", 0.3), ("national target 60%", 0.6)):
            ax.axvline(x, color="k", ls="--", lw=1)
            ax.text(x, 1.01, lab, ha="center", va="bottom", fontsize=8, transform=ax.get_xaxis_transform())
        ax.set_xlabel("adoption (fraction of the population running the app)")
        ax.set_xlim(0, max(1e-9, g.max()))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("attack rate (fraction ever infected)")
    axes[0].set_ylim(0, None)
    axes[1].set_ylabel("R_eff (secondary infections per case, early generations)")
    axes[1].axhline(1.0, color="C3", lw=1)
    axes[1].set_ylim(bottom=0)
    th = thresholds.get("r_below_one", {})
    if th.get("adoption") is not None:
        axes[1].axvline(th["adoption"], color="C3", ls=":", lw=1.5, label=f"R_eff < 1 from {th['adoption']:.0%}")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    _finish(fig, path, title)
