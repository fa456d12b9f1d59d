"""Adoption sweeps: replicates -> one-pass curves -> tables, thresholds, plots and a report.

Two drivers share one analysis:

* :func:`coverage_from_contacts` -- an external contact list (``proxitrace coverage``): every replicate
  draws new adoption ranks and index cases on the same network.
* :func:`sweep` -- simulated provinces (``proxitrace sweep``): one or several scenarios (presets or
  TOML files) × one or several adoption strategies. The work is cut into units
  (:mod:`tracing.sweep.tasks`: simulate a replicate into ``out/runs/[<scenario>/]rep-XXX/``; one day
  of its pair table under the rule (:func:`tracing.pipeline.pairs_from_run`); ranks, index cases and
  the one-pass curves of a replicate under a strategy) whose results are kept in a content-addressed
  store (:mod:`tracing.sweep.store`, ``out/units/``). Units run in-process or on Dask (``--dask``);
  ``--resume`` skips every finished unit (simulated runs with a matching hash are always reused).
  The tables are assembled from the unit files in sorted unit order, so they are the same bytes
  whichever engine ran the units, in whatever order they finished.

Seeds: ``numpy.random.SeedSequence(seed).spawn(replicates)``; replicate r's child is split again into
(simulation seed, adoption/index-case generator), so results do not depend on the number of
replicates run before, nor on the other scenarios or strategies of the sweep.

Outputs in the output folder (written atomically): ``coverage.csv`` (one row per replicate and
adoption level), ``summary.csv`` (per level: mean and 95% t-interval of the replicate mean of every
metric), ``threshold.json``, ``coverage.png``, ``percolation.png``, ``report.md``, ``meta.json`` --
in ``out/<scenario>/<strategy>/`` when a sweep has several combinations -- and for every sweep
``thresholds.csv``, ``comparison.csv``, ``comparison.png`` (see :func:`write_comparison`), plus
``timings.json`` and ``sweep.log`` (engine and wall-clock times: the only files that differ between
runs).
"""
from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sim import budget
from sim.strategies import STRATEGIES, priorities
from tracing.closedloop.params import load_closed_loop_params
from tracing.contacts import pairs_from_contacts, read_contacts
from tracing.core.checks import check_fraction
from tracing.core.coverage import METRICS, DelayModel
from tracing.core.thresholds import compute_thresholds
from tracing.report.markdown import answer_line, write_report
from tracing.report.plots import plot_comparison, plot_coverage, plot_percolation
from tracing.report.staging import StagedOutputs
from tracing.report.tables import summarise, write_comparison, write_csv, write_json
from tracing.sweep.channels import channel_sweep
from tracing.sweep.engines import ISOLATE_PEAK_BYTES, RunLog, make_engine, write_timings
from tracing.sweep.epidemic import cycle_days, default_variants, epidemic_from_store
from tracing.sweep.plan import (parse_adoption, parse_channels, parse_owner_shares, plan_epidemic, plan_sweep,
                                rule_desc_of, scenarios_of, split_list, with_owner_shares)
from tracing.sweep.replicate import (FINE_GRID, default_index_cases, index_spec, one_replicate, replicate_seeds,
                                     resolve_index_cases)
from tracing.sweep.store import Store

__all__ = ["CSV_COLUMNS", "analyse", "coverage_from_contacts", "sweep"]

#: ``coverage.csv``: one row per replicate and adoption level, every metric of
#: :data:`tracing.core.coverage.METRICS` (``summary.csv``: their means and intervals per level).
CSV_COLUMNS = ("adoption", "replicate") + tuple(METRICS)

#: Index cases: how they are drawn, in words for the report (``--index-cases-from``).
INDEX_WORDS = {"uniform": "drawn uniformly from the whole population (app or not)",
               "contacts": "drawn in proportion to their number of true close contacts (a proxy for "
                           "who gets infected), app or not"}


def analyse(out_dir, grid, curves: list[dict], fine: list[dict], perc: list[float], *, target: float,
            seed: int, meta: dict, provinces=None, title: str = "", plots: bool = True) -> dict:
    """Write every output of a sweep into ``out_dir``; return the summary, thresholds and answer.
    ``plots=False`` leaves out ``coverage.png`` and ``percolation.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = len(curves)
    rows = {"adoption": np.tile(grid, r), "replicate": np.repeat(np.arange(r), len(grid))}
    for m in METRICS:
        rows[m] = np.concatenate([c[m] for c in curves])
    write_csv(out / "coverage.csv", list(CSV_COLUMNS), rows)
    summary = summarise(grid, curves)
    scol = ["adoption"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "lo", "hi")]
    write_csv(out / "summary.csv", scol, summary)
    f1 = np.vstack([c["f1_coverage"] for c in fine])
    chi = {k: np.vstack([c[f"{k}mean_finite_cluster"] for c in fine]) for k in ("", "notified_", "ideal_")}
    th = compute_thresholds(FINE_GRID, f1, chi[""], target=target, seed=seed,
                            replicate_percolation=perc, notified_chi=chi["notified_"],
                            ideal_chi=chi["ideal_"], window_days=meta.get("window_days"))
    write_json(out / "threshold.json", th, sort_keys=False)
    if plots:
        fine_sum = summarise(FINE_GRID, fine)
        plot_coverage(out / "coverage.png", summary, th, provinces=provinces, title=title,
                      owner_share=meta.get("owner_share"))
        plot_percolation(out / "percolation.png", fine_sum, th, title=title)
    write_report(out / "report.md", summary=summary, thresholds=th, meta=meta)
    write_json(out / "meta.json", meta, default=str)
    return {"summary": summary, "thresholds": th, "answer": answer_line(summary, th, meta)}


def coverage_from_contacts(path, out_dir, *, format: str = "csv", adoption: str | None = None,
                           replicates: int = 20, seed: int = 0, strategy: str = "uniform",
                           index_cases: int | None = None, target: float = 0.5, close_minutes: float = 15.0,
                           delay: DelayModel | None = None, progress: bool = True, notify_minutes: float = 0.0,
                           index_from: str = "uniform") -> dict:
    """``proxitrace coverage``: curves for an external contact list (see the module docstring).

    A pair is truly close when its cumulative duration in one day reaches ``close_minutes``; the
    app notifies it when its detected duration that day reaches ``notify_minutes`` (0: any detected
    contact, as Bluezone's client; e.g. 15 for a duration-filtering app). The traceable network (the
    headline percolation threshold) is close and notified; the ideal rule notifies exactly the close
    pairs. ``index_from``: ``uniform`` or ``contacts`` (see :data:`INDEX_WORDS`)."""
    if replicates < 1:
        raise ValueError("--replicates must be >= 1")
    if not notify_minutes >= 0:
        raise ValueError(f"--notify-minutes must be >= 0 (min), got {notify_minutes}")
    check_fraction("--target", target, open_low=True)
    spec = index_spec(index_cases, index_from)
    grid = parse_adoption(adoption)
    delay = delay or DelayModel()
    contacts, labels = read_contacts(path, format=format, return_labels=True)
    n = len(labels)
    if n < 2:
        raise ValueError(f"{path}: fewer than 2 individuals")
    if strategy != "uniform":
        priorities(strategy, n, np.random.default_rng(0))  # raises the clear error
    pairs = pairs_from_contacts(contacts, close_minutes=close_minutes, notify_minutes=notify_minutes)
    mode, index_cases = resolve_index_cases(spec, n)
    days = pairs["day"].astype(np.int64)
    window = int(days.max() - days.min() + 1) if len(days) else 1
    curves, fine, perc = [], [], []
    for _, rng in tqdm(replicate_seeds(seed, replicates), desc="replicates", unit="rep",
                       disable=None if progress else True):    # None: on terminals only
        c, f, p = one_replicate(pairs, n, n, strategy, rng, (mode, index_cases), grid, delay)
        curves.append(c)
        fine.append(f)
        perc.append(p)
    meta = {"command": "coverage", "source": f"{path} ({format})", "n": n,
            "pairs": int(len(np.unique(pairs["i"] * n + pairs["j"]))),
            "true_close_pairs": int(len(np.unique((pairs["i"] * n + pairs["j"])[pairs["true_close"]]))),
            "strategy": strategy, "replicates": replicates, "seed": seed,
            "index_cases": min(index_cases, n), "index_from": mode,
            "index_words": INDEX_WORDS[mode],
            "close_rule": f"cumulative ≥ {close_minutes:g} min in proximity in one day",
            "rule": "any detected contact" if notify_minutes == 0 else
                    f"≥ {notify_minutes:g} detected minutes in one day",
            "rule_words": "every detected contact notifies" if notify_minutes == 0 else
                          f"a contact notifies when detected for ≥ {notify_minutes:g} min in one day",
            "window_days": window, "owner_share": None, "place": Path(path).name,
            "owner_words": "no phone data: everyone can run the app",
            "delay": asdict(delay), "target": target}
    stage = StagedOutputs(out_dir)      # a failed re-run leaves the previous results intact
    res = analyse(stage.dir, grid, curves, fine, perc, target=target, seed=seed, meta=meta,
                  title=f"{Path(path).name} ({strategy} adoption, {replicates} replicates)")
    stage.commit()
    return res


def _owner_words(sc, shares, phones_only: bool) -> str:
    """The phone-ownership assumption of a combination, in words."""
    if not phones_only:
        return "anyone may run the app, phone or not (--allow-phoneless)"
    got = f"{100 * float(np.mean(shares)):.1f}% of the population" if shares else "an unknown share"
    osh = sc.phones.get("owner_share")
    if osh is not None:
        return (f"{got} own a smartphone (set with --phone-owners {osh:g}, the preset's age gradient "
                "kept)")
    return (f"{got} own a smartphone (the preset's assumption: {100 * sc.phones['adult_share']:.0f}% "
            "of adults, fewer children; change it with --phone-owners)")


def _check_memory(scenarios, days: int, dask, workers: int, engine, *, epidemic: bool = False,
                  levels: int = 0, channels=("ble",), ideal_only: bool = False) -> tuple[list, int]:
    """Refuse (``ValueError``, one line, :func:`sim.budget.check_fits`) a sweep whose largest replicate
    cannot fit this machine's available memory -- times the worker processes of a local Dask cluster;
    not checked for a remote scheduler or a given engine (their memory is elsewhere). With ``epidemic``
    the closed loop over each scenario's replayed cycle counts too (``levels`` adoption levels, every
    variant of ``channels``, the rule and the ideal rule). Returns one line of estimate per scenario
    for the log and the largest estimated peak of a replicate (bytes)."""
    lines, peak = [], 0
    for _label, sc, display, pkey, s in scenarios:
        cyc = runs = 0
        if epidemic:
            _, iv, _ = load_closed_loop_params(None if pkey else display)
            cyc = cycle_days(days, iv.cycle_days)
            runs = 1 + (1 if ideal_only else 2) * len(default_variants(channels, iv, True)) * int(levels)
        est = budget.estimate_sweep(sc.n_agents, days, epidemic_days=cyc, epidemic_runs=runs)
        avail = budget.available_bytes()
        if engine is None and dask in (None, "local"):
            k = max(int(workers), 1) if dask == "local" else 1
            if avail is not None:
                avail //= k                 # k replicates' units may run at once
            budget.check_fits(f"sweep {display}", s, est, avail)
        lines.append(f"{display} x{s:g}, per replicate: {budget.describe(est, avail)}")
        peak = max(peak, est["peak_bytes"])
    return lines, peak


def sweep(out_dir, *, preset=None, scenario=None, scale: float | None = None,
          days: int = 3, rule: str = "bluezone", strategy="uniform", replicates: int = 4,
          seed: int = 0, adoption: str | None = None, index_cases: int | None = None, target: float = 0.5,
          delay: DelayModel | None = None, phones_only: bool = True, progress: bool = True,
          resume: bool = False, dask: str | None = None, workers: int = 2, engine=None,
          combination_plots: bool = True, epidemic: bool = False, channels=None, phone_owners=None,
          index_from: str = "uniform") -> dict:
    """``proxitrace sweep``: simulate ``replicates`` provinces per scenario and analyse them.

    ``phone_owners``: share of the whole population owning a smartphone (scenario key
    ``phones.owner_share``, the preset's age gradient kept), or several as a comma list (``preset``
    for the scenario's own), each a combination of its own. ``index_from``: index cases drawn
    ``uniform`` over the population or in proportion to their ``contacts`` (close-contact degree).

    ``preset`` / ``scenario`` / ``strategy``: one name or several (comma list or list; ``preset="all"``
    for every preset). The work is cut into units (:mod:`tracing.sweep.tasks`) whose results go to a
    content-addressed store under ``out_dir/units`` (:mod:`tracing.sweep.store`); simulated runs whose hash
    matches are always reused, and with ``resume`` every finished unit is. ``dask``: run the units on a
    Dask scheduler (an address, or ``"local"`` for a ``LocalCluster`` of ``workers`` processes); the
    outputs are the same bytes whichever engine runs them (``engine``: an engine object of
    :mod:`tracing.sweep.tasks` instead, e.g. ``InProcess(shuffle=seed)``). ``combination_plots=False``
    skips the per-combination ``coverage.png``/``percolation.png`` of a multi-combination sweep
    (``comparison.png`` is always drawn).

    Outputs: one combination (scenario × strategy) writes ``coverage.csv``, ``summary.csv``,
    ``threshold.json``, ``coverage.png``, ``percolation.png``, ``report.md`` and ``meta.json`` in
    ``out_dir``; several write them in ``out_dir/<scenario>/<strategy>/``. Always: ``thresholds.csv``
    (one row per combination), ``comparison.csv`` (mean curves of every combination),
    ``comparison.png``, ``timings.json`` and ``sweep.log`` (the only non-deterministic files).

    ``phones_only`` (default): only phone owners can run the app under every strategy, so adoption
    p is the fraction of the population running the app and curves stop growing at the owner share.

    ``channels`` (``"ble"``, ``"qr"``, ``"ble,qr"``): with QR, every combination also gets
    ``channels.csv`` / ``channels.png`` (coverage and precision of ``ble``, ``qr`` and ``ble+qr``,
    :func:`tracing.qr.channel_sweep`). ``epidemic``: the closed loop on every replicate's run
    (:func:`tracing.closedloop.epidemic_sweep`: ``epidemic.csv``, ``epidemic_daily.csv``,
    ``epidemic.png``, ``r_below_one`` in ``threshold.json``, a section of ``report.md``) as store
    units (:func:`tracing.sweep.plan.plan_epidemic`): a replayed contact cycle of at least 14 distinct
    simulated days (a separate 14-day run per replicate when ``days`` < 14), each adoption level a
    fresh epidemic with common random numbers, the rule beside the ideal rule.
    """
    if (not split_list(preset)) == (not split_list(scenario)):
        raise ValueError("give exactly one of --preset NAME[,NAME...] or --scenario FILE[,FILE...]")
    if replicates < 1 or days < 1 or (scale is not None and scale <= 0):
        raise ValueError("--replicates and --days must be >= 1 and --scale > 0")
    check_fraction("--target", target, open_low=True)
    strategies = split_list(strategy) or ["uniform"]
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad:
        raise ValueError(f"--strategy {','.join(bad)}: unknown; choose from {', '.join(STRATEGIES)}")
    channel_list = parse_channels(channels)
    grid = parse_adoption(adoption)
    delay = delay or DelayModel()
    scenarios = with_owner_shares(scenarios_of(preset, scenario, scale), parse_owner_shares(phone_owners))
    ispec = index_spec(index_cases, index_from)
    rule_spec, rule_desc = rule_desc_of(rule)
    # one-line refusal before any work
    fits, peak = _check_memory(scenarios, int(days), dask, workers, engine, epidemic=bool(epidemic),
                               levels=len(grid), channels=channel_list, ideal_only=rule_desc["name"] == "ideal")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store = Store(out)
    store.clean_temp()
    tasks, curves_units = plan_sweep(
        out, scenarios, days=int(days), rule_spec=rule_spec, rule_desc=rule_desc,
        strategies=strategies, replicates=int(replicates), seed=int(seed), grid=grid,
        index_cases=ispec, delay=delay, phones_only=bool(phones_only), resume=bool(resume))
    epi_units = {}
    if epidemic:                  # the closed loop as store units too (resumable, distributed)
        etasks, epi_units = plan_epidemic(
            out, scenarios, days=int(days), rule_spec=rule_spec, rule_desc=rule_desc, strategies=strategies,
            replicates=int(replicates), seed=int(seed), grid=grid, phones_only=bool(phones_only),
            resume=bool(resume), channels=channel_list)
        tasks += etasks
    log = RunLog(out / "sweep.log", echo=progress)
    engine = engine or make_engine(dask, workers, isolate=peak >= ISOLATE_PEAK_BYTES)
    log.note(f"# sweep {time.strftime('%Y-%m-%dT%H:%M:%S')}: {len(tasks)} units, engine "
             f"{engine.name}, resume={bool(resume)}")
    for line in fits:
        log.note(f"# {line}")
    t0 = time.time()
    try:
        engine.run(tasks, log)
    finally:
        engine.close()
    stage = StagedOutputs(out)          # outputs replace the previous ones whole, at the end
    write_timings(stage.dir, engine.name, time.time() - t0, log.results)

    results = {}
    single = len(scenarios) == 1 and len(strategies) == 1
    for label, sc, display, pkey, s in scenarios:
        for strat in strategies:
            curves, fine, perc, ns, shares = [], [], [], [], []
            for u in curves_units[(label, strat)]:          # replicate order, whatever finished first
                c, f, p, rec = store.read_curves(u)
                curves.append(c)
                fine.append(f)
                perc.append(p)
                ns.append(int(rec["n"]))
                if rec.get("owner_share") is not None:
                    shares.append(float(rec["owner_share"]))
            meta = {"command": "sweep", "source": f"simulated {'preset ' + pkey if pkey else display}"
                                                  f" at scale {s:g}, {days} days, rule {rule}",
                    "n": ns[0] if len(set(ns)) == 1 else ns, "strategy": strat,
                    "replicates": replicates, "seed": seed, "rule": rule, "phones_only": phones_only,
                    "owner_share": float(np.mean(shares)) if shares else None,
                    "owner_words": _owner_words(sc, shares, phones_only),
                    "index_cases": index_cases if index_cases is not None else
                    f"{default_index_cases(min(ns))} (10% of the population, at most 200)",
                    "index_from": index_from, "index_words": INDEX_WORDS[index_from],
                    "close_rule": "ground truth: cumulative ≥ 15 min within 2 m in one day",
                    "rule_words": f"the {rule!r} rule on the simulated radio", "window_days": int(days),
                    "place": f"{pkey or Path(display).stem} ×{s:g}",
                    "delay": asdict(delay), "target": target,
                    "units": [u.name for u in curves_units[(label, strat)]]}
            folder = stage.dir if single else stage.dir / label / strat
            title = (f"{pkey or Path(display).name} ×{s:g}, {days} d "
                     f"({strat} adoption, {replicates} replicates)")
            res = analyse(folder, grid, curves, fine, perc, target=target, seed=seed, meta=meta,
                          provinces=[pkey] if pkey else [], title=title,
                          plots=combination_plots or single)
            res.update(scenario=label, strategy=strat, folder=folder, meta=meta, display=display,
                       preset=pkey)
            if epidemic or channel_list != ("ble",):            # closed loop / QR channel (additive)
                run_dirs = [out / ("runs" if len(scenarios) == 1 else f"runs/{label}") / f"rep-{r:03d}"
                            for r in range(replicates)]
                scn_file = None if pkey else display
                if channel_list != ("ble",):
                    channel_sweep(folder, run_dirs, grid, strategy=strat, seed=seed, rule=rule_spec,
                                  phones_only=phones_only, index_cases=index_cases, delay=delay,
                                  scenario=scn_file)
                if epidemic:
                    er = epidemic_from_store(folder, store, epi_units[(label, strat)], grid, strategy=strat,
                                             seed=seed, rule=rule_spec, channels=channel_list, scenario=scn_file)
                    res["thresholds"]["r_below_one"] = er["thresholds"]
                    res["answer"] = res["answer"] + "\n" + er["answer"]
            results[(label, strat)] = res
    table = write_comparison(stage.dir, results, target=target)
    plot_comparison(stage.dir / "comparison.png", results)
    stage.commit()
    for res in results.values():
        res["folder"] = stage.final(res["folder"])
    if single:
        res = next(iter(results.values()))
        res["combinations"] = results
        res["thresholds_table"] = table
        return res
    lines = [f"{r['scenario']} / {r['strategy']}: {r['answer']}" for r in results.values()]
    return {"answer": "\n".join(lines), "combinations": results, "thresholds_table": table}


