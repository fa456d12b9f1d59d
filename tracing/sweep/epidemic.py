"""``proxitrace sweep ... --epidemic``: the closed loop (:mod:`tracing.closedloop`) on every
replicate's simulated run, per adoption level and variant; ``epidemic.csv``, ``epidemic_daily.csv``,
``epidemic.png``, ``epidemic_meta.json``, ``r_below_one`` in ``threshold.json`` and a report section."""
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
from tracing.core.thresholds import r_below_one
from tracing.report.markdown import epidemic_answer, epidemic_report
from tracing.report.plots import plot_epidemic
from tracing.report.tables import write_csv, write_json

__all__ = ["EPIDEMIC_COLUMNS", "DAILY_COLUMNS", "sweep_closed_loop", "default_variants", "epidemic_sweep"]


EPIDEMIC_COLUMNS = ("adoption", "replicate", "variant", "attack_rate", "peak_prevalence", "peak_day",
                    "person_days_isolated", "person_days_isolated_fp", "r_eff", "confirmed", "notified",
                    "notified_infected", "notified_app", "notified_f2", "notified_qr", "notified_manual")


def sweep_closed_loop(contacts: ContactDays, grid, ranks_list, seeds, *, params=None, interventions=None,
                      variants: dict | None = None, qr: QRParams | None = None, days: int | None = None,
                      progress: bool = False) -> dict:
    """Closed-loop curves: for each replicate (its ranks and epidemic seed), each variant (name ->
    dict of ``Interventions`` overrides and ``channels``) and each adoption level of ``grid``, a fresh
    epidemic (common random numbers across levels and variants). Returns ``{"rows": {column: array},
    "daily": {(variant, replicate, level index): daily dict}}``."""
    params = params or EpidemicParams()
    base = interventions or Interventions()
    variants = variants or {"ble": {"channels": ("ble",)}}
    norm = params.dose_norm or contacts.dose_norm(params)
    rows = {c: [] for c in EPIDEMIC_COLUMNS}
    daily = {}
    total = len(ranks_list) * len(variants) * len(grid)
    bar = None
    if progress:
        bar = tqdm(total=total, desc="closed loop", unit="run")
    for r, (ranks, sd) in enumerate(zip(ranks_list, seeds)):
        for vname, v in variants.items():
            v = dict(v)
            ch = tuple(v.pop("channels", ("ble",)))
            iv = Interventions(**{**asdict(base), **v})
            for li, p in enumerate(np.asarray(grid, float)):
                res = run_closed_loop(contacts, params, iv, ranks=ranks, adoption=float(p), channels=ch,
                                      qr=qr, seed=sd, days=days, dose_norm=norm)
                s = res["summary"]
                for c in EPIDEMIC_COLUMNS:
                    rows[c].append(r if c == "replicate" else vname if c == "variant" else s[c])
                daily[(vname, r, li)] = res["daily"]
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return {"rows": {c: np.asarray(v) for c, v in rows.items()}, "daily": daily}


DAILY_COLUMNS = DAILY_COUNTS


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


def epidemic_sweep(out_dir, run_dirs, grid, *, strategy: str = "uniform", seed: int = 0,
                   rule="bluezone", phones_only: bool = True, channels=("ble",), scenario=None,
                   variants: dict | None = None, pairs_list=None, progress: bool = True) -> dict:
    """``proxitrace sweep ... --epidemic``: the closed loop on every replicate's run folder.

    Per replicate r: the contact cycle of its run (:func:`contacts_from_run`), adoption ranks from
    ``priorities(strategy, population, default_rng([seed, r, SALT_ADOPTION]), phones_only=...)``, the dose
    normalisation (network calibration to R0 unless ``calibration = "mixing"``), and for every variant
    and adoption level a fresh epidemic with the same epidemic seed (common random numbers).
    ``scenario``: TOML file with ``[epidemic]``, ``[epidemic.interventions]``, ``[qr]`` (defaults
    otherwise). Writes ``epidemic.csv``, ``epidemic_daily.csv``, ``epidemic.png``, adds ``r_below_one``
    to ``threshold.json`` and returns ``{"rows", "thresholds", "calibration"}``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params, iv, qr = load_closed_loop_params(scenario)
    grid = np.asarray(grid, float)
    all_rows = {c: [] for c in EPIDEMIC_COLUMNS}
    daily_rows = {c: [] for c in ("variant", "replicate", "adoption", "day") + DAILY_COLUMNS + ("r_cohort",)}
    calib = []
    cycle_lengths = []
    for r, run_dir in enumerate(run_dirs):              # loop over replicates
        cd = contacts_from_run(run_dir, rule, qr=qr, seed=seed + r,
                               pairs=None if pairs_list is None else pairs_list[r])
        cycle_lengths.append(len(cd.days))
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
        calib.append(cal)
        vs = variants or default_variants(channels, iv, cd.checkins is not None)
        p = EpidemicParams(**{**params.to_dict(), "dose_norm": norm})
        res = sweep_closed_loop(cd, grid, [ranks], [epi_seed], params=p, interventions=iv, variants=vs, qr=qr,
                                progress=progress)
        rows = res["rows"]
        rows["replicate"] = np.full(len(rows["replicate"]), r)
        for c in EPIDEMIC_COLUMNS:
            all_rows[c].append(rows[c])
        for (vname, _, li), dd in res["daily"].items():   # loop over runs of this replicate
            nd = len(dd["incidence"])
            daily_rows["variant"].append(np.full(nd, vname))
            daily_rows["replicate"].append(np.full(nd, r))
            daily_rows["adoption"].append(np.full(nd, grid[li]))
            daily_rows["day"].append(np.arange(nd))
            for c in DAILY_COLUMNS + ("r_cohort",):
                daily_rows[c].append(dd[c])
    rows = {c: np.concatenate(v) for c, v in all_rows.items()}
    daily = {c: np.concatenate(v) for c, v in daily_rows.items()}
    write_csv(out / "epidemic.csv", EPIDEMIC_COLUMNS, rows, float_format="%.6g")
    write_csv(out / "epidemic_daily.csv", tuple(daily), daily, float_format="%.6g")
    # thresholds: the main variant, and every variant for the report
    names = list(dict.fromkeys(rows["variant"].tolist()))
    reps = np.unique(rows["replicate"])

    def r_matrix(v):
        a = np.full((len(reps), len(grid)), np.nan)
        for ri, rr in enumerate(reps):                  # loop over replicates
            s2 = (rows["variant"] == v) & (rows["replicate"] == rr)
            a[ri, np.searchsorted(grid, rows["adoption"][s2])] = rows["r_eff"][s2]
        return a
    th_main = r_below_one(grid, r_matrix(names[0]), seed=seed)
    th_main["variant"] = names[0]
    th_main["closed_loop"] = ("each adoption level re-simulated (fresh epidemic on the replicate's "
                              "contact cycle, same seed: common random numbers)")
    th_main["by_variant"] = {v: {k: x for k, x in r_below_one(grid, r_matrix(v), seed=seed).items()
                                 if k in ("adoption", "ci", "reason")} for v in names}
    thr_path = out / "threshold.json"
    th = json.loads(thr_path.read_text(encoding="utf-8")) if thr_path.is_file() else {}
    th["r_below_one"] = th_main
    write_json(thr_path, th, default=float)
    plot_epidemic(out / "epidemic.png", grid, rows, th,
                  title=f"closed loop: attack rate and R_eff vs adoption ({strategy}, {len(reps)} reps)")
    meta = {"epidemic": params.to_dict(), "interventions": asdict(iv), "qr": asdict(qr),
            "variants": {k: {kk: list(vv) if isinstance(vv, tuple) else vv for kk, vv in v.items()}
                         for k, v in (variants or default_variants(channels, iv, True)).items()},
            "calibration": calib,
            "contact_process": "day-level replay of each replicate's simulated days (weekly cycle) "
                               "with isolation removing contacts away from home; see tracing/closedloop/"}
    write_json(out / "epidemic_meta.json", meta, default=str)
    text = epidemic_report(grid, rows, th_main, calib, iv, n_days=cycle_lengths)
    rep = out / "report.md"
    old = rep.read_text(encoding="utf-8") if rep.is_file() else ""
    if "\n## Epidemic closed loop" in old:
        old = old[:old.index("\n## Epidemic closed loop")] + "\n"
    write_text_atomic(rep, old + ("\n" if old else "") + text)
    return {"rows": rows, "thresholds": th_main, "calibration": calib, "daily": daily,
            "answer": epidemic_answer(th_main, rows)}
