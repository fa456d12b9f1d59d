"""Work units of an adoption sweep (the engines that run them: :mod:`tracing.sweep.engines`).

Units (each one a pure function of its parameters; results go to the store, :mod:`tracing.sweep.store`)
----------------------------------------------------------------------------------------------
``sim``     scenario × replicate: ``sim.run.simulate`` into ``runs/[<scenario>/]rep-NNN/`` (the
            simulator streams day by day, so a worker holds one day of one replicate's logs at most).
``pairs``   scenario × replicate × rule × day: that day of the pair table
            (:func:`tracing.pipeline.pairs_from_run` with ``days=[day]``: one day of windows in memory)
            -> ``units/pairs-...parquet``. Depends on the ``sim`` unit.
``curves``  scenario × replicate × rule × strategy: adoption ranks, index cases and the one-pass curves
            of the replicate (:func:`tracing.sweep.replicate.one_replicate`) from the concatenated day tables
            -> ``units/curves-...npz``. Depends on the replicate's ``pairs`` units.
``epidemic`` scenario × replicate × rule × strategy (``--epidemic``): the closed loop of the replicate
            (:func:`tracing.sweep.epidemic.replicate_closed_loop`) on the replayed cycle of its stored
            day tables -> ``units/epidemic-...npz``. Depends on the ``pairs`` units of the cycle's days
            (those of the sweep's run, or of the epidemic's own longer run: :func:`tracing.sweep.plan.plan_epidemic`).

Large tables travel as files in the shared output folder; a task returns a small dict (unit name,
status, seconds), never an array, so the Dask scheduler only moves a few hundred bytes per unit.

Seeds: replicate ``r`` uses ``SeedSequence(seed, spawn_key=(r,))`` -- the ``r``-th child of
``SeedSequence(seed).spawn(...)`` -- split into (simulation seed, analysis generator) exactly as
:func:`tracing.sweep.replicate.replicate_seeds`; every curves unit builds its own generator from it, so no unit
depends on another unit's draws, on completion order, on the engine or on the thread count. Scenario and
strategy are not part of the key: a province's results do not depend on which other provinces or
strategies share the sweep (and strategies of one replicate are compared on the same province).
"""
from __future__ import annotations

import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sim.run import simulate
from sim.runfolder import RunFolder
from tracing.core.coverage import fold_stream, pair_graph
from tracing.pipeline import pairs_from_run
from tracing.sweep.epidemic import replicate_closed_loop
from tracing.sweep.replicate import analysis_rng, one_replicate, resolve_index_cases
from tracing.sweep.store import Store, Unit, read_pair_columns

__all__ = ["Task", "sim_task", "pairs_task", "curves_task", "epidemic_task"]


@dataclass
class Task:
    """One unit to run: ``fn(*args)`` after the tasks named in ``deps``."""
    key: str
    fn: object
    args: tuple
    deps: tuple = ()
    unit: Unit | None = None


# ------------------------------------------------------------------------------------------------
# unit functions (top level: picklable by name for Dask workers)
# ------------------------------------------------------------------------------------------------
def _inside(root: Path, p: Path) -> Path:
    root, p = Path(root).resolve(), Path(p).resolve()
    if root != p and root not in p.parents:
        raise ValueError(f"{p} is outside the output folder {root}")
    return p


def sim_task(out: str, unit: Unit, scenario, run_rel: str, days: int, sim_seed: int, *_deps) -> dict:
    """Simulate one replicate unless the store holds it finished with these parameters."""
    t0 = time.perf_counter()
    store = Store(out)
    if store.done(unit, run_rel):
        return {"unit": unit.name, "status": "skipped", "seconds": 0.0}
    run_dir = _inside(store.root, store.root / run_rel)
    if run_dir.exists():          # a partial run or one of other parameters: start clean
        shutil.rmtree(run_dir)
    simulate(scenario, run_dir, seed=int(sim_seed), days=int(days), progress=False)
    store.write_sim(unit, run_dir)
    return {"unit": unit.name, "status": "done", "seconds": round(time.perf_counter() - t0, 3)}


def pairs_task(out: str, unit: Unit, run_rel: str, rule: str, day: int, reuse: bool, *_deps) -> dict:
    """One day of a replicate's pair table under ``rule`` -> a Parquet unit file."""
    t0 = time.perf_counter()
    store = Store(out)
    if reuse and store.done(unit):
        return {"unit": unit.name, "status": "skipped", "seconds": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # unmatched-window counts are in the run's own stats
        pairs = pairs_from_run(store.root / run_rel, rule, days=[int(day)])
    store.write_pairs(unit, pairs)
    return {"unit": unit.name, "status": "done", "rows": int(len(pairs)),
            "seconds": round(time.perf_counter() - t0, 3)}


#: the columns of a stored day table the curves read (agents as int32: 19 bytes a row)
_CURVES_COLUMNS = {"i": np.int32, "j": np.int32, "t_first": np.float64, "true_close": np.bool_,
                   "notify_j": np.bool_, "notify_i": np.bool_}


def curves_task(out: str, unit: Unit, run_rel: str, pair_units: list, strategy: str, seed: int,
                replicate: int, grid, index_cases, delay, phones_only: bool, reuse: bool,
                *_deps) -> dict:
    """Curves of one replicate under one strategy -> an ``.npz`` unit file."""
    t0 = time.perf_counter()
    store = Store(out)
    if reuse and store.done(unit):
        return {"unit": unit.name, "status": "skipped", "seconds": 0.0}
    pop = RunFolder(store.root / run_rel).population()
    n = len(next(iter(pop.values())))
    # the day tables' pairs folded in one day at a time, in place (21 bytes a distinct pair), then the
    # replicate-independent graph OnePass reads, made of the same arrays (30 bytes a flagged pair)
    pairs = pair_graph(fold_stream((read_pair_columns(store.path(u), _CURVES_COLUMNS) for u in pair_units),
                                   n), n)
    share = float(np.mean(pop["has_phone"])) if "has_phone" in pop else None
    k = resolve_index_cases(index_cases, n)     # (mode, number): uniform or by close contacts
    c, f, p = one_replicate(pairs, n, pop, strategy, analysis_rng(seed, replicate), k,
                            np.asarray(grid, dtype=np.float64), delay, phones_only)
    store.write_curves(unit, c, f, p, n=n, owner_share=share)
    return {"unit": unit.name, "status": "done", "seconds": round(time.perf_counter() - t0, 3)}


def epidemic_task(out: str, unit: Unit, run_rel: str, pair_units: list, replicate: int, seed: int,
                  strategy: str, rule_name: str, grid, phones_only: bool, channels, scenario, reuse: bool,
                  *_deps) -> dict:
    """The closed loop of one replicate under one strategy (every variant, the rule and the ideal rule)
    -> an ``.npz`` unit file of its ``epidemic.csv`` rows (``row__*``) and daily rows (``day__*``)."""
    t0 = time.perf_counter()
    store = Store(out)
    if reuse and store.done(unit):
        return {"unit": unit.name, "status": "skipped", "seconds": 0.0}
    pairs = np.concatenate([store.read_pairs(u) for u in pair_units])
    res = replicate_closed_loop(store.root / run_rel, np.asarray(grid, np.float64), replicate=int(replicate),
                                seed=int(seed), strategy=strategy, rule_name=rule_name, pairs=pairs,
                                phones_only=phones_only, channels=tuple(channels), scenario=scenario)
    arrays = {f"row__{k}": v for k, v in res["rows"].items()}
    arrays.update({f"day__{k}": v for k, v in res["daily"].items()})
    store.write_arrays(unit, arrays, calibration=res["calibration"], cycle_days=res["cycle_days"], n=res["n"])
    return {"unit": unit.name, "status": "done", "seconds": round(time.perf_counter() - t0, 3)}


# ------------------------------------------------------------------------------------------------
# engines
# ------------------------------------------------------------------------------------------------


