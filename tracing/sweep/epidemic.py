"""``proxitrace sweep ... --epidemic``: the closed loop (:mod:`tracing.closedloop`) on every
replicate's simulated province, per adoption level, channel variant and rule; ``epidemic.csv``,
``epidemic_daily.csv``, ``epidemic.png``, ``epidemic_meta.json``, ``r_below_one`` in
``threshold.json`` and a report section.

Contact process: a *replayed contact cycle* of at least :data:`MIN_CYCLE_DAYS` distinct simulated days
(two weeks: weekdays and weekends in the simulator's week). When the coverage sweep simulated fewer
days, the plan (:func:`tracing.sweep.plan.plan_epidemic`) adds a separate simulated run of
``MIN_CYCLE_DAYS`` days per replicate (same scenario and simulation seed) and its pair-table units,
all in the store, so a resumed or repeated sweep reuses them; with at least 14 days the sweep's own
run and pair units are reused, cut to whole weeks. Running the epidemic inside the simulator's day loop
would re-simulate the radio for every adoption level, rule and variant (tens of epidemics per
replicate): the replay costs one simulation per replicate.

Rules: every row of the chosen rule has the *ideal* rule's attack rate beside it (same contact
records, same seed; ``notify`` = exactly the true close contacts, :meth:`ContactDays.ideal`), and the
ideal rule's own rows follow, so the effect of the radio rule and the effect of perfect tracing are
read side by side with their isolation burden.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ble.schema import write_text_atomic
from sim.epidemic import EpidemicParams
from sim.qr import QRParams
from sim.rng import SALT_ADOPTION, SALT_EPIDEMIC_SEED
from sim.runfolder import RunFolder
from sim.strategies import priorities
from tracing.closedloop.calibration import calibrate_network
from tracing.closedloop.contacts import ContactDays, contacts_from_run
from tracing.closedloop.loop import DAILY_COUNTS, run_closed_loop
from tracing.closedloop.params import Interventions, load_closed_loop_params
from tracing.core.checks import quiet_nan
from tracing.core.rules import load_rule
from tracing.core.thresholds import r_below_one
from tracing.report.markdown import epidemic_answer, epidemic_report
from tracing.report.plots import plot_epidemic
from tracing.report.tables import write_csv, write_json

__all__ = ["MIN_CYCLE_DAYS", "EPIDEMIC_COLUMNS", "DAILY_COLUMNS", "sweep_closed_loop", "default_variants",
           "cycle_days", "replicate_closed_loop", "write_epidemic_outputs", "epidemic_sweep",
           "read_epidemic_units", "epidemic_from_store",
           "r_below_one_with_interval"]

MIN_CYCLE_DAYS = 14     #: distinct simulated days in the replayed contact cycle (two weeks)

EPIDEMIC_COLUMNS = ("adoption", "replicate", "rule", "variant", "attack_rate", "attack_rate_ideal",
                    "peak_prevalence", "peak_day", "isolation_days", "isolation_days_uninfected",
                    "isolation_days_per_infection_averted", "r_eff", "r_eff_lo", "r_eff_hi", "r_eff_cases",
                    "confirmed", "notified", "notified_infected", "notified_app", "notified_f2", "notified_qr",
                    "notified_manual")
_RUN_COLUMNS = tuple(c for c in EPIDEMIC_COLUMNS if c not in ("replicate", "rule", "variant",
                                                            "attack_rate_ideal",
                                                            "isolation_days_per_infection_averted"))
DAILY_COLUMNS = DAILY_COUNTS


def cycle_days(sweep_days: int, minimum: int = MIN_CYCLE_DAYS) -> int:
    """Days of the replayed cycle for a sweep that simulated ``sweep_days``: whole weeks of the sweep's
    run when it holds at least ``minimum`` days (``Interventions.cycle_days``, default
    :data:`MIN_CYCLE_DAYS`), else ``minimum`` (a separate run of that length)."""
    d, m = int(sweep_days), int(minimum)
    if d < m:
        return m
    return max(m, 7 * (d // 7)) if m >= 7 else m


def sweep_closed_loop(contacts: ContactDays, grid, ranks_list, seeds, *, params=None, interventions=None,
                      variants: dict | None = None, qr: QRParams | None = None, days: int | None = None,
                      progress: bool = False) -> dict:
    """Closed-loop curves on one contact process: for each replicate (its ranks and epidemic seed),
    each variant (name -> dict of ``Interventions`` overrides and ``channels``) and each adoption level
    of ``grid``, a fresh epidemic (common random numbers across levels and variants). Returns
    ``{"rows": {column: array}, "daily": {(variant, replicate, level index): daily dict}}`` with the
    per-run columns (no rule, no ideal comparison)."""
    params = params or EpidemicParams()
    base = interventions or Interventions()
    variants = variants or {"ble": {"channels": ("ble",)}}
    norm = params.dose_norm or contacts.dose_norm(params)
    cols = ("adoption", "replicate", "variant") + _RUN_COLUMNS[1:]
    rows = {c: [] for c in cols}
    daily = {}
    bar = tqdm(total=len(ranks_list) * len(variants) * len(grid), desc="closed loop", unit="run",
               disable=None if progress else True)    # None: on terminals only
    for r, (ranks, sd) in enumerate(zip(ranks_list, seeds)):
        for vname, v in variants.items():
            v = dict(v)
            ch = tuple(v.pop("channels", ("ble",)))
            iv = Interventions(**{**asdict(base), **v})
            for li, p in enumerate(np.asarray(grid, float)):
                res = run_closed_loop(contacts, params, iv, ranks=ranks, adoption=float(p), channels=ch,
                                      qr=qr, seed=sd, days=days, dose_norm=norm)
                s = res["summary"]
                for c in cols:
                    rows[c].append(r if c == "replicate" else vname if c == "variant" else s[c])
                daily[(vname, r, li)] = res["daily"]
                bar.update(1)
    bar.close()
    return {"rows": {c: np.asarray(v) for c, v in rows.items()}, "daily": daily}


def default_variants(channels, interventions: Interventions, have_checkins: bool) -> dict:
    """The main variant (``channels``, the scenario's F2 setting) and the comparisons the report
    needs: with F2 (if the main one has none) and with QR added (if check-ins exist and QR is not
    already a channel)."""
    ch = tuple(channels)
    main = "+".join(ch) + ("+f2" if interventions.f2 else "")
    out = {main: {"channels": ch}}
    if not interventions.f2:
        out["+".join(ch) + "+f2"] = {"channels": ch, "f2": True}
    if have_checkins and "qr" not in ch:
        out["+".join(ch + ("qr",)) + ("+f2" if interventions.f2 else "")] = {"channels": ch + ("qr",)}
    return out


def _per_averted(att, iso, att0, iso0, n):
    """Extra isolation-days per infection averted relative to no app (NaN where none is averted)."""
    averted = (att0 - att) * n
    with quiet_nan():
        return np.where(averted > 0.5, (iso - iso0) / np.where(averted > 0.5, averted, 1.0), np.nan)


def replicate_closed_loop(run_dir, grid, *, replicate: int, seed: int = 0, strategy: str = "uniform",
                          rule_name: str = "bluezone", rule="bluezone", phones_only: bool = True,
                          channels=("ble",), scenario=None, variants: dict | None = None, pairs=None,
                          progress: bool = False) -> dict:
    """The closed loop of one replicate: its contact cycle (:func:`contacts_from_run` on ``run_dir``,
    with the stored ``pairs`` when given), adoption ranks from ``priorities(strategy, population,
    default_rng([seed, replicate, SALT_ADOPTION]), phones_only=...)``, the dose normalisation (network
    calibration to R0 unless ``calibration = "mixing"`` or a given ``dose_norm``) and, for the rule
    and the ideal rule, every variant and adoption level, a fresh epidemic with one epidemic seed
    (common random numbers). The cycle: whole weeks of the run when it has at least
    :data:`MIN_CYCLE_DAYS` days, else every simulated day (the sweep plans runs long enough).
    Returns ``{"rows", "daily", "calibration", "cycle_days", "n"}`` (arrays)."""
    params, iv, qr = load_closed_loop_params(scenario)
    grid = np.asarray(grid, float)
    r = int(replicate)
    n_sim = RunFolder(run_dir).n_days
    cd = contacts_from_run(run_dir, rule, qr=qr, seed=seed + r, pairs=pairs,
                           days=min(n_sim, cycle_days(n_sim, iv.cycle_days)))
    pop = RunFolder(run_dir).population()
    ranks = priorities(strategy, pop, np.random.default_rng([seed, r, SALT_ADOPTION]), phones_only=phones_only)
    epi_seed = int(np.random.SeedSequence([seed, r, SALT_EPIDEMIC_SEED]).generate_state(1)[0])
    if params.dose_norm > 0:
        norm, cal = params.dose_norm, {"dose_norm": params.dose_norm, "method": "given"}
    elif params.calibration == "network":
        cal = calibrate_network(cd, params, seed=epi_seed)
        norm = cal["dose_norm"]
        cal["method"] = "network"
    else:
        norm = cd.dose_norm(params)
        cal = {"dose_norm": norm, "method": "mixing"}
    vs = variants or default_variants(channels, iv, cd.checkins is not None)
    p = EpidemicParams(**{**params.to_dict(), "dose_norm": norm})
    rules = [(rule_name, cd)] + ([("ideal", cd.ideal())] if rule_name != "ideal" else [])
    # the no-app baseline (no channel warns anyone at adoption 0): one run for every rule and variant
    base = run_closed_loop(cd, p, iv, ranks=ranks, adoption=0.0, channels=("ble",), qr=qr, seed=epi_seed,
                           dose_norm=norm)["summary"]
    parts, daily = [], {c: [] for c in ("rule", "variant", "adoption", "day") + DAILY_COLUMNS + ("r_cohort",)}
    for rname, contacts in rules:                         # the rule, then the ideal rule
        res = sweep_closed_loop(contacts, grid, [ranks], [epi_seed], params=p, interventions=iv,
                                variants=vs, qr=qr, progress=progress)
        rows = res["rows"]
        rows["rule"] = np.full(len(rows["adoption"]), rname)
        parts.append(rows)
        for (vname, _, li), dd in res["daily"].items():   # loop over the runs of this rule
            nd = len(dd["incidence"])
            daily["rule"].append(np.full(nd, rname))
            daily["variant"].append(np.full(nd, vname))
            daily["adoption"].append(np.full(nd, grid[li]))
            daily["day"].append(np.arange(nd))
            for c in DAILY_COLUMNS + ("r_cohort",):
                daily[c].append(dd[c])
    rows = {c: np.concatenate([q[c] for q in parts]) for c in parts[0]}
    rows["replicate"] = np.full(len(rows["adoption"]), r)
    ideal_att = parts[-1]["attack_rate"]
    rows["attack_rate_ideal"] = np.concatenate([ideal_att] * len(parts))
    rows["isolation_days_per_infection_averted"] = _per_averted(
        rows["attack_rate"], rows["isolation_days"].astype(float), base["attack_rate"],
        float(base["isolation_days"]), cd.n)
    cal["no_app"] = {k: base[k] for k in ("attack_rate", "isolation_days", "isolation_days_uninfected",
                                          "r_eff", "r_eff_se", "r_eff_cases")}
    return {"rows": {c: rows[c] for c in EPIDEMIC_COLUMNS},
            "daily": {c: np.concatenate(v) for c, v in daily.items()},
            "calibration": cal, "cycle_days": len(cd.days), "n": cd.n}


def r_below_one_with_interval(grid, r_mean, r_se, *, seed: int = 0, n_draws: int = 1000) -> dict:
    """:func:`tracing.core.thresholds.r_below_one` over replicates (rows of ``r_mean``); with one
    replicate the interval comes from the sampling error of each R_eff instead (``r_se``: normal draws
    per level, independent; the common random numbers make neighbouring levels positively correlated,
    so this interval is, if anything, wide). ``ci`` stays None with ``ci_note`` saying why otherwise."""
    r_mean = np.atleast_2d(np.asarray(r_mean, float))
    th = r_below_one(grid, r_mean, seed=seed)
    if th.get("adoption") is None or th.get("ci") is not None:
        if th.get("adoption") is not None:
            th["ci_note"] = th.get("ci_note", "") + " (bootstrap over replicates)"
        return th
    se = np.atleast_2d(np.asarray(r_se, float))
    if r_mean.shape[0] != 1 or not np.isfinite(se).all():
        th["ci_note"] = "no interval: too few replicates crossing 1 and no sampling error per level"
        return th
    rng = np.random.default_rng(seed)
    draws = r_mean[0] + se[0] * rng.standard_normal((n_draws, r_mean.shape[1]))
    xs = np.array([r_below_one(grid, d[None, :])["adoption"] or np.nan for d in draws], float)
    if np.isfinite(xs).sum() >= 0.5 * n_draws:
        th["ci"] = [float(np.nanpercentile(xs, 2.5)), float(np.nanpercentile(xs, 97.5))]
        th["ci_note"] = (f"one replicate: {int(np.isfinite(xs).sum())} of {n_draws} normal draws of R_eff "
                         f"(its standard error per level) cross 1")
    else:
        th["ci_note"] = "one replicate: fewer than half the draws within R_eff's sampling error cross 1"
    return th


def write_epidemic_outputs(out_dir, grid, results: list, *, strategy: str, seed: int, params: EpidemicParams,
                           iv: Interventions, qr: QRParams, variants: dict, rule_name: str) -> dict:
    """``epidemic.csv``, ``epidemic_daily.csv``, ``epidemic.png``, ``epidemic_meta.json``,
    ``r_below_one`` in ``threshold.json`` and the report section from the replicates' results (list of
    :func:`replicate_closed_loop` dicts, replicate order). Returns ``{"rows", "thresholds",
    "calibration", "daily", "answer"}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = np.asarray(grid, float)
    rows = {c: np.concatenate([res["rows"][c] for res in results]) for c in EPIDEMIC_COLUMNS}
    dcols = list(results[0]["daily"])
    daily = {"replicate": np.concatenate([np.full(len(res["daily"]["day"]), k) for k, res in enumerate(results)])}
    daily.update({c: np.concatenate([res["daily"][c] for res in results]) for c in dcols})
    order = ["rule", "variant", "replicate", "adoption", "day"]
    write_csv(out / "epidemic.csv", EPIDEMIC_COLUMNS, rows, float_format="%.6g")
    write_csv(out / "epidemic_daily.csv", tuple(order + [c for c in dcols if c not in order]), daily,
              float_format="%.6g")
    calib = [res["calibration"] for res in results]
    reps = np.unique(rows["replicate"])
    keys = list(dict.fromkeys(zip(rows["rule"].tolist(), rows["variant"].tolist())))

    def matrix(rule, v, col):
        a = np.full((len(reps), len(grid)), np.nan)
        for ri, rr in enumerate(reps):                  # loop over replicates
            s2 = (rows["rule"] == rule) & (rows["variant"] == v) & (rows["replicate"] == rr)
            a[ri, np.searchsorted(grid, rows["adoption"][s2])] = rows[col][s2]
        return a

    def thr(rule, v):
        se = (matrix(rule, v, "r_eff_hi") - matrix(rule, v, "r_eff")) / 1.96
        return r_below_one_with_interval(grid, matrix(rule, v, "r_eff"), se, seed=seed)
    th_main = thr(*keys[0])
    th_main["rule"], th_main["variant"] = keys[0]
    th_main["closed_loop"] = (f"replayed contact cycle of {results[0]['cycle_days']} distinct simulated days "
                              "per replicate; each adoption level a fresh epidemic with the same seed "
                              "(common random numbers)")
    th_main["by_variant"] = {f"{a}/{b}": {k: x for k, x in thr(a, b).items() if k in ("adoption", "ci", "reason")}
                             for a, b in keys}
    thr_path = out / "threshold.json"
    th = json.loads(thr_path.read_text(encoding="utf-8")) if thr_path.is_file() else {}
    th["r_below_one"] = th_main
    write_json(thr_path, th, default=float)
    plot_epidemic(out / "epidemic.png", grid, rows, th,
                  title=f"closed loop: attack rate and R_eff vs adoption ({strategy}, {len(reps)} reps)")
    n_days = [res["cycle_days"] for res in results]
    meta = {"epidemic": params.to_dict(), "interventions": asdict(iv), "qr": asdict(qr),
            "rule": rule_name,
            "variants": {k: {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()}
                         for k, v in variants.items()},
            "calibration": calib,
            "contact_process": f"replayed contact cycle of {sorted(set(n_days))} distinct simulated days "
                               "(whole weeks, weekdays and weekends) per replicate, isolation removing "
                               "contacts away from home; see tracing/sweep/epidemic.py"}
    write_json(out / "epidemic_meta.json", meta, default=str)
    text = epidemic_report(grid, rows, th_main, calib, iv, n_days=n_days)
    rep = out / "report.md"
    old = rep.read_text(encoding="utf-8") if rep.is_file() else ""
    if "\n## Epidemic closed loop" in old:
        old = old[:old.index("\n## Epidemic closed loop")] + "\n"
    write_text_atomic(rep, old + ("\n" if old else "") + text)
    return {"rows": rows, "thresholds": th_main, "calibration": calib, "daily": daily,
            "answer": epidemic_answer(th_main, rows)}


def read_epidemic_units(store, units: list) -> list:
    """The :func:`replicate_closed_loop` results of finished epidemic units (replicate order)."""
    out = []
    for u in units:                                       # one unit per replicate
        arrays, rec = store.read_arrays(u)
        out.append({"rows": {k[5:]: v for k, v in arrays.items() if k.startswith("row__")},
                    "daily": {k[5:]: v for k, v in arrays.items() if k.startswith("day__")},
                    "calibration": rec["calibration"], "cycle_days": int(rec["cycle_days"]), "n": int(rec["n"])})
    return out


def epidemic_from_store(out_dir, store, units: list, grid, *, strategy: str, seed: int, rule="bluezone",
                        channels=("ble",), scenario=None) -> dict:
    """The sweep's epidemic outputs from its finished epidemic units (:func:`write_epidemic_outputs`)."""
    params, iv, qr = load_closed_loop_params(scenario)
    return write_epidemic_outputs(out_dir, grid, read_epidemic_units(store, units), strategy=strategy,
                                  seed=seed, params=params, iv=iv, qr=qr,
                                  variants=default_variants(channels, iv, True), rule_name=load_rule(rule).name)


def epidemic_sweep(out_dir, run_dirs, grid, *, strategy: str = "uniform", seed: int = 0,
                   rule="bluezone", phones_only: bool = True, channels=("ble",), scenario=None,
                   variants: dict | None = None, pairs_list=None, progress: bool = True) -> dict:
    """The closed loop on every replicate's run folder in this process (the sweep runs the same
    computation as store units, :func:`tracing.sweep.tasks.epidemic_task`): :func:`replicate_closed_loop`
    per replicate, then :func:`write_epidemic_outputs`. ``scenario``: TOML file with ``[epidemic]``,
    ``[epidemic.interventions]``, ``[qr]`` (defaults otherwise)."""
    params, iv, qr = load_closed_loop_params(scenario)
    name = load_rule(rule).name
    results = [replicate_closed_loop(rd, grid, replicate=r, seed=seed, strategy=strategy, rule_name=name,
                                     rule=rule, phones_only=phones_only, channels=channels, scenario=scenario,
                                     variants=variants, pairs=None if pairs_list is None else pairs_list[r],
                                     progress=progress)
               for r, rd in enumerate(run_dirs)]
    vs = variants or default_variants(channels, iv, True)
    return write_epidemic_outputs(out_dir, grid, results, strategy=strategy, seed=seed, params=params, iv=iv,
                                  qr=qr, variants=vs, rule_name=name)
