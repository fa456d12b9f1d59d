"""``report.md``: the answer of an adoption sweep in words (and the closed loop's section), written
atomically."""
from __future__ import annotations

import numpy as np
from scipy import stats

from ble.schema import write_text_atomic
from sim.epidemic import EpidemicParams, generation_interval_mean
from tracing.closedloop.params import Interventions
from tracing.core.checks import quiet_nan

__all__ = ["answer_line", "write_report", "epidemic_answer", "epidemic_report"]


def _at(summary: dict, metric: str, p: float):
    """Mean and 95% interval of ``metric`` at adoption ``p`` (linear interpolation on the grid)."""
    x = np.asarray(summary["adoption"], dtype=float)
    if len(x) == 0 or p < x.min() - 1e-12 or p > x.max() + 1e-12:
        return None
    return tuple(float(np.interp(p, x, summary[f"{metric}_{s}"])) for s in ("mean", "lo", "hi"))


def _saturated(summary: dict, metric: str, share: float):
    """Mean of ``metric`` once every phone owner runs the app: the curve is flat from the owner share
    on, so take the first grid level at or above it (interpolating below it would mix in a level where
    not every owner has adopted)."""
    x = np.asarray(summary["adoption"], dtype=float)
    above = np.flatnonzero(x >= share - 1e-12)
    return float(np.asarray(summary[f"{metric}_mean"])[above[0]]) if above.size else None


def _fmt(v, pct=True):
    if v is None:
        return "n/a"
    m, lo, hi = v
    f = (lambda z: f"{100 * z:.1f}%") if pct else (lambda z: f"{z:.1f}")
    if not np.isfinite(m):
        return "n/a"
    if np.isfinite(lo) and np.isfinite(hi):
        return f"{f(m)} (95% interval {f(lo)}–{f(hi)})"
    return f(m)


def _fmt_th(th: dict) -> str:
    if th.get("adoption") is None:
        return f"not reached — {th.get('reason', '')}"
    ci = th.get("ci")
    s = f"{100 * th['adoption']:.1f}% of the population"
    if ci and ci[0] is not None:
        hi = "unbounded" if ci[1] is None else f"{100 * ci[1]:.1f}%"
        s += f" (95% CI {100 * ci[0]:.1f}%–{hi})"
    return s


#: Half-width of the 95% interval of F1 coverage at 30% above which the report warns.
CI_WARN = 0.05


def _pct(v) -> str:
    return "n/a" if v is None or not np.isfinite(v) else f"{100 * v:.1f}%"


def _level(summary: dict, p: float, share):
    """(adoption actually reached, F1 coverage, ideal F1 coverage, saturated?) at requested ``p``:
    where ``p`` is above the share that can adopt, the saturated row (every owner) with its achieved
    adoption, never labelled with the requested level."""
    sat = share is not None and p > share + 1e-9
    if sat:
        vals = [_saturated(summary, m, share) for m in ("adoption_achieved", "f1_coverage",
                                                          "f1_coverage_ideal", "fp_burden")]
        if vals[0] is None:
            return None
        return vals[0], vals[1], vals[2], vals[3], True
    a = [_at(summary, m, p) for m in ("adoption_achieved", "f1_coverage", "f1_coverage_ideal",
                                      "fp_burden")]
    if a[1] is None:
        return None
    return a[0][0], a[1][0], a[2][0], a[3][0], False


def answer_line(summary: dict, thresholds: dict, meta: dict | None = None) -> str:
    """The answer in plain words (printed by the commands, at the top of ``report.md``): F1 coverage at
    30% and 60% of the population beside the ideal rule's, the false-positive burden, the traceable
    network's percolation threshold with its window, and the ownership assumption."""
    meta = meta or {}
    share = meta.get("owner_share")
    out = []
    head = ", ".join(str(x) for x in (meta.get("place"), meta.get("rule") and f"rule {meta['rule']!r}")
                     if x)
    if head:
        out.append(f"{head}:")
    for k, p in enumerate((0.3, 0.6)):
        lv = _level(summary, p, share)
        if lv is None:
            continue
        ach, f1, ideal, fp, sat = lv
        if sat:
            out.append(f"{100 * p:.0f}% of the population cannot run the app here (only "
                       f"{_pct(share)} own a smartphone); with every owner running it ({_pct(ach)}), it "
                       f"warns {_pct(f1)} of their close contacts (an ideal app: {_pct(ideal)}).")
        elif k == 0:
            out.append(f"If {100 * p:.0f}% of the population run the app, it warns {_pct(f1)} of the close "
                       f"contacts of a confirmed case (an ideal app, warning exactly the close contacts "
                       f"of users: {_pct(ideal)}); for each close contact warned it also warns "
                       f"{fp:.1f} people who were not close contacts." if np.isfinite(fp) else
                       f"If {100 * p:.0f}% of the population run the app, it warns {_pct(f1)} of the close "
                       f"contacts of a confirmed case (an ideal app: {_pct(ideal)}).")
        else:
            out.append(f"At {100 * p:.0f}% it warns {_pct(f1)} (ideal {_pct(ideal)}).")
    pc = thresholds["percolation"]
    win = pc.get("window_days")
    win = f"contacts of {win:g} day(s)" if win else "the whole contact data"
    if pc.get("adoption") is not None:
        ci = pc.get("ci") or [None, None]
        ci_s = (f" (95% CI {_pct(ci[0])}–{_pct(ci[1]) if ci[1] is not None else 'unbounded'})"
                if ci[0] is not None else "")
        out.append(f"Close, warned contacts link app users into one traceable network from "
                   f"{_pct(pc['adoption'])} adoption{ci_s}, over {win}.")
    else:
        out.append(f"Close, warned contacts never link app users into one network ({win}).")
    ct = thresholds["coverage_target"]
    if ct.get("adoption") is not None:
        out.append(f"Warning {100 * ct['target']:.0f}% of close contacts needs "
                   f"{_pct(ct['adoption'])} adoption.")
    else:
        with quiet_nan():
            best = float(np.nanmax(np.asarray(summary["f1_coverage_mean"], dtype=float)))
        out.append(f"Warning {100 * ct['target']:.0f}% of close contacts is out of reach at any adoption "
                   f"(at most {_pct(best)}).")
    if meta.get("owner_words"):
        out.append(f"Assumed: {meta['owner_words']}; index cases {meta.get('index_words', 'drawn uniformly')}.")
    return " ".join(out)


def _replicate_advice(summary: dict, replicates) -> str | None:
    """A warning when the 95% interval of F1 coverage at 30% is wider than ±CI_WARN, with the number
    of replicates that would narrow it (half-width ∝ 1/sqrt(replicates))."""
    v = _at(summary, "f1_coverage", 0.3)
    if v is None or not np.isfinite(v[1]) or not isinstance(replicates, int):
        return None
    half = (v[2] - v[1]) / 2
    if half <= CI_WARN or replicates < 2:
        return None
    sd = half * np.sqrt(replicates) / stats.t.ppf(0.975, replicates - 1)   # replicate spread
    r = np.arange(2, 10_001)
    ok = np.flatnonzero(stats.t.ppf(0.975, r - 1) * sd / np.sqrt(r) <= CI_WARN)
    need = int(r[ok[0]]) if ok.size else 10_000
    return (f"**Warning:** the 95% interval of F1 coverage at 30% is ±{100 * half:.1f} points, wider "
            f"than ±{100 * CI_WARN:.0f}; about {need} replicates (instead of {replicates}) would narrow "
            f"it to ±{100 * CI_WARN:.0f}.")


def write_report(path, *, summary: dict, thresholds: dict, meta: dict) -> str:
    """Write ``report.md``; ``meta`` describes the input (``source``, ``n``, ``strategy``,
    ``replicates``, ``index_cases``, ``index_words``, ``close_rule``, ``rule_words``, ``owner_share``,
    ``owner_words``, ``window_days``, ``delay``). Returns the text."""
    ms = ("adoption_achieved", "f1_coverage", "f1_coverage_ideal", "f2_coverage", "f2_coverage_ideal",
          "f1_precision", "fp_burden", "f2_fp_burden", "largest_component")
    share = meta.get("owner_share")
    pc, ct = thresholds["percolation"], thresholds["coverage_target"]
    lines = [
        "# Does 30% adoption make Bluetooth contact tracing work?",
        "",
        f"**Answer.** {answer_line(summary, thresholds, meta)}",
        "",
    ]
    adv = _replicate_advice(summary, meta.get("replicates"))
    if adv:
        lines += [adv, ""]
    lines += [
        "## Input and assumptions",
        f"- contacts: {meta.get('source', '?')}",
        f"- population: {meta.get('n', '?')} agents; adoption strategy `{meta.get('strategy')}`; "
        f"{meta.get('replicates')} replicates (seed {meta.get('seed')})",
        f"- phone ownership: {meta.get('owner_words', 'not modelled')}",
        f"- index cases: {meta.get('index_cases')} per replicate, "
        f"{meta.get('index_words', 'drawn uniformly from the whole population (app or not)')}",
        f"- close contact: {meta.get('close_rule', 'cumulative ≥ 15 min within 2 m in one day')}; "
        f"notification: {meta.get('rule_words', meta.get('rule', '?'))}; the *ideal* rule warns exactly "
        "the close contacts when both run the app",
        f"- look-back window: {meta.get('window_days', '?')} day(s) of contacts",
        f"- notification delay: a model input, not a result (h): {meta.get('delay', '')}",
        "",
        "## Coverage at the official levels",
        "| requested adoption | adoption reached | F1 coverage | F2 coverage | "
        "F1 precision | false positives per close contact warned: F1, F2 | largest traceable "
        "component |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in (0.3, 0.6):
        sat = share is not None and p > share + 1e-9
        if sat:
            d = {m: _saturated(summary, m, share) for m in ms}
            d = {m: (v, np.nan, np.nan) if v is not None else None for m, v in d.items()}
        else:
            d = {m: _at(summary, m, p) for m in ms}
        if d["f1_coverage"] is None:
            continue
        g = lambda m, pct=True: _fmt(d[m], pct)  # noqa: E731
        fp = lambda m: "n/a" if d[m] is None or not np.isfinite(d[m][0]) else f"{d[m][0]:.1f}"  # noqa: E731
        lines.append(f"| {100 * p:.0f}% | {_pct(d['adoption_achieved'][0])}"
                     f"{' (saturated: every owner)' if sat else ''} "
                     f"| {g('f1_coverage')}; ideal {_pct(d['f1_coverage_ideal'][0])} | {g('f2_coverage')}; "
                     f"ideal {_pct(d['f2_coverage_ideal'][0])} | {g('f1_precision')} | {fp('fp_burden')}, "
                     f"{fp('f2_fp_burden')} | {g('largest_component')} |")
    lines += [
        "",
        "Intervals are 95% intervals of the replicate mean (Student t over replicates). A requested level "
        "above the phone-owner share is shown at the adoption actually reached. F2: second-degree "
        "contacts reached through a warned contact's upload (Bluezone traces two hops, no further).",
        "",
        "## Why this coverage: the decomposition",
    ]
    dec = {m: _at(summary, m, 0.3) for m in ("owner_pair_share", "rule_sensitivity", "f1_decomposition",
                                              "f1_coverage", "adoption_achieved")}
    if all(v is not None and np.isfinite(v[0]) for v in dec.values()):
        s_own = share if share else 1.0
        lines.append(
            f"A contact is warned only when both people run the app and the rule fires. At 30% adoption: "
            f"share of true close contacts in which both people own a smartphone "
            f"{_pct(dec['owner_pair_share'][0])} × chance both owners run the app "
            f"(({_pct(dec['adoption_achieved'][0])} / {_pct(s_own)})² = "
            f"{_pct((dec['adoption_achieved'][0] / s_own) ** 2)}) × the rule's sensitivity on owner pairs "
            f"{_pct(dec['rule_sensitivity'][0])} = {_pct(dec['f1_decomposition'][0])}; measured F1 "
            f"coverage {_pct(dec['f1_coverage'][0])}. The product holds for uniform adoption among owners; "
            f"any nearness to p² = 9% is a coincidence of these three terms.")
    lines += [
        "",
        "## Thresholds",
        f"- **percolation** (traceable network: close and warned contacts): {_fmt_th(pc)}. "
        f"{pc['definition']}.",
    ]
    for name, lab in (("ideal_percolation", "ideal rule"), ("notified_percolation",
                                                            "every notified contact, close or not — "
                                                            "a second criterion, not the headline")):
        if name in thresholds:
            lines.append(f"- **{name}** ({lab}): {_fmt_th(thresholds[name])}. "
                         f"{thresholds[name]['definition']}.")
    lines += [
        f"- **coverage target** (F1 coverage ≥ {ct['target']:g}): {_fmt_th(ct)}. {ct['definition']}.",
        "",
        "Bluezone traces two hops (F1, F2); being in a giant component of the traceable network adds no "
        "reach beyond them, so the percolation point says where chains of close, warned contacts "
        "connect, not how many people a trace reaches.",
        "",
    ]
    if share:
        s30 = _at(summary, "f1_coverage", 0.3 * share)
        if s30:
            lines += [f"The provincial letters count adoption among smartphone users: '30% of smartphone "
                      f"users' is {_pct(0.3 * share)} of the population here, where F1 coverage is "
                      f"{_pct(s30[0])}.", ""]
    lines += ["## Files",
              "- `coverage.csv`: every replicate × adoption level; `summary.csv`: mean and 95% "
              "interval per level (with `adoption_achieved`); `threshold.json`; `coverage.png`; "
              "`percolation.png`.", ""]
    text = "\n".join(lines)
    write_text_atomic(path, text)
    return text


def _mean_at(rows: dict, sel, col: str):
    x = np.asarray(rows[col], float)[sel]
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else float("nan")


def epidemic_answer(th: dict, rows: dict) -> str:
    """One line: does tracing bring R_eff below 1, the attack rate without the app and at the official
    30 % (or the nearest level) with the rule and with the ideal rule, and the isolation burden there."""
    v, rule = th.get("variant", ""), th.get("rule", "")
    sel = (rows["variant"] == v) & (rows["rule"] == rule)
    a = rows["adoption"][sel]
    p30 = a[np.argmin(np.abs(a - 0.3))]
    at = sel & np.isclose(rows["adoption"], p30)
    lo = _mean_at(rows, sel & np.isclose(rows["adoption"], a.min()), "attack_rate")
    if th.get("adoption") is not None:
        ci = th.get("ci")
        head = (f"epidemic ({rule}, {v}): R_eff falls below 1 from {th['adoption']:.1%} adoption"
                + (f" (95% CI {ci[0]:.1%}-{ci[1]:.1%})" if ci else " (no interval)"))
    else:
        head = f"epidemic ({rule}, {v}): R_eff does not fall below 1 ({th.get('reason')})"
    burden = _mean_at(rows, at, "isolation_days_per_infection_averted")
    unin = _mean_at(rows, at, "isolation_days_uninfected") / max(_mean_at(rows, at, "isolation_days"), 1e-12)
    return (f"{head}; attack rate {lo:.1%} at {a.min():.0%} adoption, at {p30:.0%} "
            f"{_mean_at(rows, at, 'attack_rate'):.1%} ({_mean_at(rows, at, 'attack_rate_ideal'):.1%} with the "
            f"ideal rule), {burden:,.0f} isolation-days per infection averted, {unin:.0%} of isolated "
            f"person-days on people not infected")


def epidemic_report(grid, rows: dict, th: dict, calib: list, iv: Interventions, n_days=None) -> str:
    """The report section of the closed loop (markdown)."""
    g = np.asarray(grid, float)
    cyc = sorted(set(n_days or []))
    lines = ["## Epidemic closed loop", "",
             f"Contact process: a **replayed contact cycle of {', '.join(map(str, cyc))} distinct simulated "
             "days** per replicate (whole weeks: weekdays and weekends; epidemic day d replays simulated day "
             "d mod N); isolated agents lose every contact away from home. Each adoption level is a fresh "
             "epidemic on that cycle with the same seed at every level, rule and variant (common random "
             f"numbers). {iv.days} epidemic days. Disease: SEIR with pre-symptomatic, symptomatic and "
             "asymptomatic phases, R0 = 2.0 split 0.9 / 0.8 / 0.1 / 0.2 (pre-symptomatic / symptomatic / "
             "asymptomatic / environmental, Ferretti et al. 2020). Every rule is shown beside the *ideal* "
             "rule (exactly the true close contacts warned when both run the app).", "",
             f"Interventions: symptomatic cases tested with probability {iv.p_test:g}, result "
             f"{iv.test_delay_d} d after onset; app F1 warned {iv.app_delay_d} d after confirmation "
             f"(look-back {iv.lookback_days} d); compliance {iv.contact_compliance:g}, isolation "
             f"{iv.isolation_d} d, dropout {iv.dropout_per_day:g}/d; manual household tracing "
             f"{'on' if iv.manual_household else 'off'}. Isolation burden: isolation-days (cases and "
             "contacts), of them on people not infected (yet), and the extra isolation-days per infection "
             "averted relative to no app.", ""]
    if calib:
        unreach = [c for c in calib if c.get("reachable") is False]
        if unreach:
            rmax = max(h[1] for c in unreach for h in c["history"])
            lines += [f"Calibration: on {len(unreach)} of {len(calib)} replicates the contact network "
                      f"could not carry R0 = 2 through recorded contacts (early-generation R saturates "
                      f"near {rmax:.2f} + 0.2 environmental): households and fixed groups saturate.", ""]
    diag = [c.get("diagnostics") for c in calib if c.get("diagnostics")]
    if diag:
        f = {k: float(np.nanmean([d[k] for d in diag])) for k in diag[0]}
        lines += [f"Realised transmission without interventions at the calibrated dose (early "
                  f"generations, mean over replicates): generation interval {f['generation_interval_d']:.1f} d "
                  f"(theory of the course alone {generation_interval_mean(EpidemicParams()):.1f} d; "
                  f"Ferretti 5.0 d), {f['household_share']:.0%} of infections within households, household "
                  f"secondary attack rate {f['household_sar']:.0%} (pooled literature estimate 16.6 %, "
                  f"Madewell et al. 2020), environmental {f['environmental_share']:.0%}.", ""]
    lines += ["| rule | variant | adoption | attack rate (ideal rule) | R_eff [95% CI] (cases) | "
              "isolation-days (not infected) | per infection averted |", "|---|---|---|---|---|---|---|"]
    for rule, v in dict.fromkeys(zip(rows["rule"].tolist(), rows["variant"].tolist())):
        for p in sorted({float(x) for x in g if min(abs(x - t) for t in (0.0, 0.3, 0.6, g.max())) < 1e-9}):
            sel = (rows["rule"] == rule) & (rows["variant"] == v) & np.isclose(rows["adoption"], p)
            if not sel.any():
                continue
            re = (f"{_mean_at(rows, sel, 'r_eff'):.2f} [{_mean_at(rows, sel, 'r_eff_lo'):.2f}-"
                  f"{_mean_at(rows, sel, 'r_eff_hi'):.2f}] ({_mean_at(rows, sel, 'r_eff_cases'):.0f})")
            pa = _mean_at(rows, sel, "isolation_days_per_infection_averted")
            lines.append(f"| {rule} | {v} | {p:.0%} | {_mean_at(rows, sel, 'attack_rate'):.1%} "
                         f"({_mean_at(rows, sel, 'attack_rate_ideal'):.1%}) | {re} | "
                         f"{_mean_at(rows, sel, 'isolation_days'):,.0f} "
                         f"({_mean_at(rows, sel, 'isolation_days_uninfected'):,.0f}) | "
                         f"{'n/a' if not np.isfinite(pa) else f'{pa:,.0f}'} |")
    lines += ["", f"**r_below_one** ({th.get('rule')}, {th.get('variant')}): " +
              (f"{th['adoption']:.1%}" + (f" (95% CI {th['ci'][0]:.1%}-{th['ci'][1]:.1%})" if th.get("ci") else "")
               if th.get("adoption") is not None else f"none -- {th.get('reason')}")
              + (f" ({th['ci_note'].strip()})" if th.get("ci_note") else ""), ""]
    for v, t in th.get("by_variant", {}).items():
        lines.append(f"- {v}: " + (f"{t['adoption']:.1%}" if t.get("adoption") is not None else
                                  f"none ({t.get('reason')})"))
    lines += ["", "Files: `epidemic.csv`, `epidemic_daily.csv`, `epidemic.png`, `epidemic_meta.json`.", ""]
    return "\n".join(lines)
