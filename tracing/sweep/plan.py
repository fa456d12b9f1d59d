"""The plan of a sweep: adoption grid, scenarios, rule and channels from the arguments, and the work
units (:mod:`tracing.sweep.tasks`) in a topological order."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from sim.scenario import PRESETS, load_scenario
from sim.scenario import preset as load_preset
from tracing.core.qr import CHANNELS
from tracing.core.rules import load_rule
from tracing.sweep.replicate import FINE_GRID_DIGEST, sim_seed_of
from tracing.sweep.store import Unit, safe_label
from tracing.closedloop.params import load_closed_loop_params
from tracing.sweep.epidemic import cycle_days, default_variants
from tracing.sweep.tasks import Task, curves_task, epidemic_task, pairs_task, sim_task

__all__ = ["parse_adoption", "parse_channels", "parse_owner_shares", "with_owner_shares", "split_list",
           "scenarios_of", "rule_desc_of", "plan_sweep",
           "plan_epidemic"]


#: most adoption levels a sweep may ask for (a typo such as 0:1:1e-9 would otherwise exhaust memory)
MAX_LEVELS = 10_000


def parse_adoption(spec: str | None) -> np.ndarray:
    """``"0:1:0.05"`` (start:stop:step, stop included) or ``"0.1,0.3"`` -> sorted adoption levels."""
    if spec is None or spec == "":
        spec = "0:1:0.05"
    try:
        if ":" in spec:
            parts = [float(x) for x in spec.split(":")]
            if len(parts) != 3 or parts[2] <= 0:
                raise ValueError
            a, b, s = parts
            k = int(np.floor((b - a) / s + 1e-9))
            if k > MAX_LEVELS:
                raise ValueError(f"--adoption {spec!r}: more than {MAX_LEVELS} levels")
            grid = a + s * np.arange(k + 1)
        else:
            grid = np.array([float(x) for x in spec.split(",") if x.strip()])
    except ValueError:
        raise ValueError(f"--adoption {spec!r}: expected START:STOP:STEP (e.g. 0:1:0.05) or a comma "
                         f"list (e.g. 0.1,0.3)") from None
    if not np.all(np.isfinite(grid)):
        raise ValueError(f"--adoption {spec!r}: levels must be finite numbers in [0, 1]")
    grid = np.unique(np.round(grid, 12))
    if len(grid) == 0 or grid.min() < 0 or grid.max() > 1:
        raise ValueError(f"--adoption {spec!r}: levels must lie in [0, 1]")
    return grid


def split_list(value) -> list[str]:
    """``"a,b"`` or ``["a", "b"]`` -> ``["a", "b"]`` (order kept, duplicates dropped)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    out = []
    for x in (str(v).strip() for v in items):
        if x and x not in out:
            out.append(x)
    return out


def scenarios_of(preset, scenario, scale):
    """``[(label, Scenario, display name, preset key or None, scale)]`` of a sweep; ``preset="all"``
    means every packaged preset."""
    out, labels = [], set()
    names = split_list(preset)
    if names == ["all"]:
        names = list(PRESETS)
    for name in names:
        s = 0.01 if scale is None else scale
        sc = load_preset(name, s)
        out.append([safe_label(name.lower().replace("_", "-")), sc, name, name, s])
    for path in split_list(scenario):
        sc = load_scenario(path, None if scale is None else {"scale": scale})
        s = getattr(sc, "scale", scale if scale is not None else 1.0)
        out.append([safe_label(Path(path).stem), sc, path, None, s])
    for item in out:                      # distinct folder labels (two files with one stem)
        base, k = item[0], 1
        while item[0] in labels:
            k += 1
            item[0] = f"{base}-{k}"
        labels.add(item[0])
    return [tuple(x) for x in out]


def parse_owner_shares(spec) -> list:
    """``--phone-owners``: ``"0.775"``, ``"preset,0.775"`` (a comma list; ``preset`` keeps the
    scenario's own ownership) -> ``[None or fraction, ...]``; each fraction in (0, 0.98] is the share
    of the WHOLE population owning a smartphone (scenario key ``phones.owner_share``)."""
    if isinstance(spec, (int, float)) and not isinstance(spec, bool):
        spec = [spec]                      # the Python API may pass one number
    out = []
    for x in split_list(spec):
        if x.lower() == "preset":
            out.append(None)
            continue
        try:
            f = float(x)
        except ValueError:
            f = float("nan")
        if not 0 < f <= 0.98:
            raise ValueError(f"--phone-owners {spec!r}: {x!r} must be a fraction of the population in "
                             "(0, 0.98] or 'preset'")
        out.append(f)
    return out or [None]


def with_owner_shares(scenarios, shares) -> list:
    """The scenarios of :func:`scenarios_of` once per phone-ownership share (``None``: the scenario's
    own). One share keeps the labels; several label each ``<label>-owners-<share|preset>``."""
    out = []
    for label, sc, display, pkey, s in scenarios:
        for f in shares:
            sc2 = sc if f is None else sc.with_overrides({"phones": {"owner_share": f}},
                                                         f"--phone-owners {f:g}")
            lab = label if len(shares) == 1 else f"{label}-owners-{'preset' if f is None else f'{f:g}'}"
            out.append((lab, sc2, display, pkey, s))
    return out


def rule_desc_of(rule) -> tuple[str, dict]:
    """(spec to hand to workers, hashable description) of a rule name or TOML path."""
    r = load_rule(rule)
    spec = str(rule)
    p = Path(spec)
    if p.suffix == ".toml" or p.is_file():
        spec = str(p.resolve())
    return spec, {"name": r.name, "kind": r.kind, "params": dict(r.params)}


def plan_sweep(out, scenarios, *, days, rule_spec, rule_desc, strategies, replicates, seed, grid,
               index_cases, delay, phones_only, resume):
    """Work units of a sweep (:mod:`tracing.sweep.tasks`), in a topological order that keeps one
    replicate's files together. Returns ``(tasks, curves_units)`` with ``curves_units[(label,
    strategy)] = [unit of replicate 0, 1, ...]``."""
    tasks, curves_units = [], {}
    rlab = safe_label(rule_desc["name"])
    single = len(scenarios) == 1
    for label, sc, *_ in scenarios:
        scn = {k: v for k, v in sc.to_dict().items() if k != "source"}
        for r in range(replicates):
            run_rel = f"runs/rep-{r:03d}" if single else f"runs/{label}/rep-{r:03d}"
            su = Unit("sim", f"{label}-r{r:03d}",
                      {"kind": "sim", "scenario": scn, "days": days, "seed": seed, "replicate": r})
            tasks.append(Task(su.name, sim_task,
                                (str(out), su, sc, run_rel, days, sim_seed_of(seed, r)), unit=su))
            pus = []
            for d in range(days):
                pu = Unit("pairs", f"{label}-r{r:03d}-{rlab}-d{d:03d}",
                          {"kind": "pairs", "sim": su.hash, "rule": rule_desc, "day": d})
                tasks.append(Task(pu.name, pairs_task, (str(out), pu, run_rel, rule_spec, d, resume),
                                    deps=(su.name,), unit=pu))
                pus.append(pu)
            for strat in strategies:
                cu = Unit("curves", f"{label}-r{r:03d}-{rlab}-{safe_label(strat)}",
                          {"kind": "curves", "pairs": [u.hash for u in pus], "strategy": strat,
                           "seed": seed, "replicate": r, "grid": grid, "fine_grid": FINE_GRID_DIGEST,
                           "index_cases": index_cases, "delay": asdict(delay),
                           "phones_only": phones_only})
                tasks.append(Task(cu.name, curves_task,
                                    (str(out), cu, run_rel, pus, strat, seed, r, grid, index_cases,
                                     delay, phones_only, resume),
                                    deps=tuple(u.name for u in pus), unit=cu))
                curves_units.setdefault((label, strat), []).append(cu)
    return tasks, curves_units


def plan_epidemic(out, scenarios, *, days, rule_spec, rule_desc, strategies, replicates, seed, grid,
                  phones_only, resume, channels):
    """Work units of ``--epidemic`` (after :func:`plan_sweep`'s): per scenario, replicate and strategy
    one ``epidemic`` unit on a replayed cycle of :func:`tracing.sweep.epidemic.cycle_days` distinct
    days (``[epidemic.interventions] cycle_days``, default 14). With at least that many simulated
    days it depends on the sweep's own pair units (reused, not planned again); with fewer, a separate
    run of that many days per replicate (``runs/[<scenario>/]epidemic-rep-NNN``, same scenario and
    simulation seed) and its pair units are planned, in the store like the others. Returns ``(tasks, epidemic_units)`` with ``epidemic_units[(label, strategy)] = [unit of
    replicate 0, 1, ...]``."""
    tasks, units = [], {}
    rlab = safe_label(rule_desc["name"])
    single = len(scenarios) == 1
    for label, sc, display, pkey, _ in scenarios:
        scn = {k: v for k, v in sc.to_dict().items() if k != "source"}
        scn_file = None if pkey else display
        epi, iv, qr = load_closed_loop_params(scn_file)
        cyc = cycle_days(days, iv.cycle_days)
        closed = {"epidemic": epi.to_dict(), "interventions": asdict(iv), "qr": asdict(qr),
                  "variants": default_variants(channels, iv, True)}
        for r in range(replicates):
            own = cyc <= days
            sim_days = days if own else cyc
            prefix = "rep" if own else "epidemic-rep"
            run_rel = f"runs/{prefix}-{r:03d}" if single else f"runs/{label}/{prefix}-{r:03d}"
            sim_label = f"{label}-r{r:03d}" if own else f"{label}-r{r:03d}-epidemic"
            su = Unit("sim", sim_label,
                      {"kind": "sim", "scenario": scn, "days": sim_days, "seed": seed, "replicate": r})
            if not own:
                tasks.append(Task(su.name, sim_task,
                                  (str(out), su, sc, run_rel, sim_days, sim_seed_of(seed, r)), unit=su))
            pus = []
            for d in range(cyc):
                pu = Unit("pairs", f"{sim_label}-{rlab}-d{d:03d}",
                          {"kind": "pairs", "sim": su.hash, "rule": rule_desc, "day": d})
                if not own:
                    tasks.append(Task(pu.name, pairs_task, (str(out), pu, run_rel, rule_spec, d, resume),
                                      deps=(su.name,), unit=pu))
                pus.append(pu)
            for strat in strategies:
                eu = Unit("epidemic", f"{label}-r{r:03d}-{rlab}-{safe_label(strat)}",
                          {"kind": "epidemic", "pairs": [u.hash for u in pus], "strategy": strat, "seed": seed,
                           "replicate": r, "grid": grid, "phones_only": phones_only,
                           "channels": list(channels), "closed_loop": closed})
                tasks.append(Task(eu.name, epidemic_task,
                                  (str(out), eu, run_rel, pus, r, seed, strat, rule_desc["name"], grid,
                                   phones_only, tuple(channels), scn_file, resume),
                                  deps=tuple(u.name for u in pus), unit=eu))
                units.setdefault((label, strat), []).append(eu)
    return tasks, units


def parse_channels(spec) -> tuple:
    """``"ble"``, ``"qr"`` or ``"ble,qr"`` -> a tuple of channel names (validated, ordered)."""
    if spec is None or spec == "":
        return ("ble",)
    items = [x.strip().lower() for x in (spec.split(",") if isinstance(spec, str) else spec) if x.strip()]
    bad = [x for x in items if x not in CHANNELS]
    if not items or bad:
        raise ValueError(f"--channels {spec!r}: choose from {', '.join(CHANNELS)} (comma separated)")
    return tuple(c for c in CHANNELS if c in items)
