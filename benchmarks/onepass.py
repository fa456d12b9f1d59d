"""The adoption curve in one pass (``tracing.coverage.OnePass``) vs the previous round's code and vs
re-computing every level.

The work timed is a sweep's analysis: 10 replicates (uniform adoption among phone owners,
``phones_only=True`` as ``proxitrace sweep`` does; ``tracing.sweep.replicate.default_index_cases(n)`` index
cases -- 200 at 100,000 agents; per-agent sync phases), each evaluated at 21 adoption levels
``0, 0.05, .., 1``:

ours
    ``tracing.core.coverage.pair_graph`` of the pair-day table once (collapse by counting sorts, each
    pair stored once with a reverse index; timed), then per replicate ``OnePass(graph, ...)`` and one
    ``.evaluate(grid)``.
previous
    the previous round's code (:mod:`benchmarks._onepass_previous`, verbatim): the table compacted once
    (``compact_pairs``: argsort + reduceat), then per replicate ``OnePass`` on it (a fresh collapse and
    CSR by argsort, three F2 walks, scipy CSRs for Newman--Ziff).  Agreement: identical bytes.
coverage_at
    per replicate and level one ``tracing.core.coverage.coverage_at(p, ...)`` -- adoption applied
    explicitly, brute force (210 calls).  Agreement: every metric it returns equals the one-pass curve
    at every level (NaN where NaN; relative tolerance 1e-9 for the float means).

Inputs
    ``synthetic``: :func:`synthetic_days` -- 30 pair-day rows per agent and day (10^5 agents x 14 days =
    42 M rows, as the simulated province), calibrated on a simulated ``lang-son`` sweep's pair tables
    (``bluezone`` rule: ~30% truly close, ~47% notified each way, ~1/3 without any flag, ~half the
    first-contact times unknown, ~1/3 of a day's pairs met again every day).  Cheap to build, so the
    full size runs in the harness.  ``lang-son``: the pair table (``tracing.pipeline.pairs_from_run``
    under ``bluezone``) of a simulated province of 100,000 agents over 14 days, seed 0 -- simulated
    **once and cached** in ``out/benchcache/`` (tens of minutes; delete the folder to rebuild); the first
    2,000 agents of it with the per-level baseline (per-level re-computation of the whole province is
    ~10 hours).  ``--quick``: 800 simulated agents x 1 day and a 3,000-agent x 3-day synthetic table,
    3 replicates.
Memory as days grow (``analysis-memory``, size = days)
    the sweep's analysis of one replicate of a simulated 20,000-agent province (cached like the
    province): the ``pairs`` units (``pairs_from_run`` one day at a time, each day saved to a file) and
    then the ``curves`` unit (ours: the days folded in one at a time, in place, into a ``PairGraph``,
    as ``tracing.sweep.tasks.curves_task``; previous: ``compact_stream`` + ``OnePass`` on the compact
    table) for 1, 2, 6 and 14 days.  The row's peak memory is that of the whole analysis.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from pathlib import Path

import numpy as np

from benchmarks._core import Baseline, Case

NAME = "onepass"
PRESET = "lang-son"
PRESET_SIZE = 781_655
REPLICATES = 10
GRID = np.linspace(0.0, 1.0, 21)
CACHE = Path(__file__).resolve().parents[1] / "out" / "benchcache"


def _simulate(n_agents: int, days: int, folder: Path) -> Path:
    from sim.run import simulate
    from sim.scenario import preset

    tmp = folder.with_name(folder.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    simulate(preset(PRESET, n_agents / PRESET_SIZE), tmp, seed=0, days=days, progress=False)
    os.replace(tmp, folder)
    return folder


def subset(pairs, pop: dict, k: int):
    """The first ``k`` agents of a province (agents are numbered household by household, so this is
    a contiguous part of the population) and the pairs among them."""
    keep = (pairs["i"] < k) & (pairs["j"] < k)
    return pairs[keep], k, {c: v[:k] for c, v in pop.items()}


def cached_run(n_agents: int, days: int) -> Path:
    """The run folder of the province at ``n_agents`` x ``days`` (seed 0), simulated once into
    ``out/benchcache/``."""
    folder = CACHE / f"{PRESET}-{n_agents // 1000}k-{days}d"
    if not (folder / "run.json").is_file():
        folder.parent.mkdir(parents=True, exist_ok=True)
        _simulate(n_agents, days, folder)
    return folder


def province(n_agents: int, days: int, cache: bool):
    """(pairs, n, population) of the simulated province; cached in out/benchcache/ if ``cache``."""
    from sim.runfolder import RunFolder
    from tracing.pipeline import pairs_from_run

    if cache:
        folder = cached_run(n_agents, days)
        pfile = folder / "pairs-bluezone.npy"
        if pfile.is_file():
            pairs = np.load(pfile)
        else:
            pairs = pairs_from_run(folder, "bluezone")
            np.save(folder / "pairs-bluezone.tmp.npy", pairs)
            os.replace(folder / "pairs-bluezone.tmp.npy", pfile)
        pop = RunFolder(folder).population()
        n = json.loads((folder / "run.json").read_text())["n_agents"]
        return pairs, n, pop
    tmp = Path(tempfile.mkdtemp(prefix="proxitrace-bench-onepass-"))
    try:
        folder = _simulate(n_agents, days, tmp / "run")
        pairs = pairs_from_run(folder, "bluezone")
        pop = RunFolder(folder).population()
        n = json.loads((folder / "run.json").read_text())["n_agents"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return pairs, n, pop


def replicates(pairs, n, pop, k: int = REPLICATES, seed: int = 0):
    """Per replicate (ranks, index cases, sync phases), drawn as ``tracing.sweep.one_replicate`` does."""
    from tracing.core.coverage import DelayModel, sample_index_cases
    from sim.strategies import priorities
    from tracing.sweep.replicate import default_index_cases

    delay = DelayModel()
    reps = []
    for child in np.random.SeedSequence(seed).spawn(k):
        rng = np.random.default_rng(child)
        ranks = priorities("uniform", pop, rng, phones_only=True)
        f0 = sample_index_cases(n, default_index_cases(n), rng)
        phases = delay.sync_phases(rng, n)
        reps.append((ranks, f0, phases))
    return {"pairs": pairs, "n": n, "reps": reps}


def synthetic_days(n: int, days: int, seed: int = 0, rows_per_agent_day: int = 30) -> list:
    """Day tables (``PAIR_DTYPE``, each sorted by (i, j) without repeated pairs, as ``pairs_from_run``
    writes them) of ``n`` agents: a third of a day's pairs are fixed pairs of nearby agents (households,
    classes, offices: truly close 70% of days) met every day, the rest random pairs (truly close 15%);
    notified each way 47% (mostly both ways), a third without any flag, half the times unknown."""
    from tracing.core.pairs import PAIR_DTYPE

    rng = np.random.default_rng(seed)
    per_day = rows_per_agent_day * n
    a = rng.integers(0, n, per_day // 3)
    b = np.clip(a + rng.integers(1, 30, len(a)), 0, n - 1)
    fixed = np.unique(np.minimum(a, b) * n + np.maximum(a, b))
    fixed = fixed[fixed // n != fixed % n]
    out = []
    for d in range(days):
        a, b = rng.integers(0, n, per_day - len(fixed)), rng.integers(0, n, per_day - len(fixed))
        rand = np.minimum(a, b) * n + np.maximum(a, b)
        rand = rand[a != b]
        key, first = np.unique(np.concatenate([fixed, rand]), return_index=True)
        p = np.zeros(len(key), PAIR_DTYPE)
        p["i"], p["j"], p["day"] = key // n, key % n, d
        p["t_first"] = np.where(rng.random(len(p)) < 0.5, np.nan, d * 86400.0 + rng.random(len(p)) * 86400.0)
        p["true_close"] = rng.random(len(p)) < np.where(first < len(fixed), 0.7, 0.15)
        both = rng.random(len(p)) < 0.44
        p["notify_j"] = both | (rng.random(len(p)) < 0.05)
        p["notify_i"] = both | (rng.random(len(p)) < 0.05)
        p["minutes"] = rng.random(len(p)) * 30
        p["att"] = 60 + rng.random(len(p)) * 20
        out.append(p)
    return out


def ours(inp):
    from tracing.core.coverage import OnePass, pair_graph

    g = pair_graph(inp["pairs"], inp["n"])          # once for all replicates (timed)
    return [OnePass(g, inp["n"], ranks, f0, sync_phase_h=ph).evaluate(GRID) for ranks, f0, ph in inp["reps"]]


def previous(inp):
    from benchmarks._onepass_previous import OnePassPrevious, compact_pairs

    pairs = compact_pairs(inp["pairs"], inp["n"])   # once for all replicates (timed)
    return [OnePassPrevious(pairs, inp["n"], ranks, f0, sync_phase_h=ph).evaluate(GRID)
            for ranks, f0, ph in inp["reps"]]


def per_level(inp):
    from tracing.core.coverage import coverage_at

    out = []
    for ranks, f0, ph in inp["reps"]:
        rows = [coverage_at(p, inp["pairs"], inp["n"], ranks, f0, sync_phase_h=ph) for p in GRID]
        out.append({k: np.array([r[k] for r in rows], np.float64) for k in rows[0]})
    return out


def agree(curves, name, theirs):
    assert len(curves) == len(theirs)
    if name == "previous":                     # the same computation: the same bytes
        for r, (a, b) in enumerate(zip(curves, theirs)):
            assert all(a[k].tobytes() == b[k].tobytes() for k in b), f"{name}: replicate {r} differs"
        return
    for r, (a, b) in enumerate(zip(curves, theirs)):
        for k, v in b.items():
            got = a[k]
            assert np.array_equal(np.isnan(got), np.isnan(v)), f"{name}: replicate {r} {k}: NaN differ"
            ok = ~np.isnan(v)
            assert np.allclose(got[ok], v[ok], rtol=1e-9, atol=1e-12), \
                f"{name}: replicate {r} {k} differs: {got} vs {v}"


def details(curves) -> dict:
    m = np.nanmean([c["f1_coverage"] for c in curves], axis=0)
    return {"f1_coverage_mean_at_0.3": float(m[6]), "f1_coverage_mean_at_0.6": float(m[12])}


def warmup() -> None:
    """Every kernel of ours and of the previous code on a tiny table (compilation is never timed)."""
    from benchmarks._onepass_previous import OnePassPrevious, compact_stream
    from tracing.core.coverage import OnePass, fold_stream, pair_graph

    days = synthetic_days(40, 2, rows_per_agent_day=3)
    inp = synthetic_replicates(np.concatenate(days), 40, k=1)
    agree(ours(inp), "previous", previous(inp))
    ranks, f0, ph = inp["reps"][0]
    OnePass(pair_graph(fold_stream(days, 40), 40), 40, ranks, f0, sync_phase_h=ph).evaluate(GRID)
    OnePassPrevious(compact_stream(days, 40), 40, ranks, f0, sync_phase_h=ph).evaluate(GRID)


BASELINE_MAX = 2_000
BASELINE_NOTE = ("210 coverage_at calls on the 42 M-row pair table of 100,000 agents x 14 days: one "
                 "call measured 177 s (load ~6), i.e. ~10 h")


def synthetic_replicates(pairs, n: int, k: int = REPLICATES, seed: int = 0):
    """Per replicate (ranks: uniform among a random 55% of phone owners, index cases, sync phases)."""
    from tracing.core.coverage import DelayModel, sample_index_cases
    from tracing.sweep.replicate import default_index_cases

    reps = []
    for child in np.random.SeedSequence(seed).spawn(k):
        rng = np.random.default_rng(child)
        ranks = np.where(rng.random(n) < 0.55, rng.random(n), np.inf)
        reps.append((ranks, sample_index_cases(n, default_index_cases(n), rng), DelayModel().sync_phases(rng, n)))
    return {"pairs": pairs, "n": n, "reps": reps}


MEM_AGENTS = 20_000
MEM_DAYS = (1, 2, 6, 14)


def _mem_setup(days: int, n_agents: int = MEM_AGENTS, run_days: int = 14):
    from sim.runfolder import RunFolder

    folder = cached_run(n_agents, run_days) if n_agents >= MEM_AGENTS else None
    tmp = Path(tempfile.mkdtemp(prefix="proxitrace-bench-mem-"))
    if folder is None:                                   # --quick: a tiny run in the temporary folder
        folder = _simulate(n_agents, run_days, tmp / "run")
    inp = _MemInputs(run=folder, days=days, tmp=tmp, n=json.loads((folder / "run.json").read_text())["n_agents"],
                     pop=RunFolder(folder).population())
    weakref.finalize(inp, shutil.rmtree, str(tmp), True)       # the day files go with the inputs
    return inp


class _MemInputs(dict):
    """The inputs of a memory case (a dict that can be weakly referenced)."""


def _analysis(inp, onepass_of_days):
    """The pairs units (one day at a time, saved) and one curves unit (``onepass_of_days(files)``)."""
    import warnings

    from tracing.core.coverage import DelayModel, sample_index_cases
    from sim.strategies import priorities
    from tracing.pipeline import pairs_from_run
    from tracing.sweep.replicate import FINE_GRID, analysis_rng, default_index_cases

    files = []
    for d in range(inp["days"]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            p = pairs_from_run(inp["run"], "bluezone", days=[d])
        files.append(inp["tmp"] / f"day-{d:03d}.npy")
        np.save(files[-1], p)
        del p
    n, rng = inp["n"], analysis_rng(0, 0)
    ranks = priorities("uniform", inp["pop"], rng, phones_only=True)
    f0 = sample_index_cases(n, default_index_cases(n), rng)
    op = onepass_of_days(files, n, ranks, f0, DelayModel().sync_phases(rng, n))
    return [op.evaluate(GRID), op.evaluate(FINE_GRID)]


def mem_ours(inp):
    from tracing.core.coverage import OnePass, fold_stream, pair_graph

    def one(files, n, ranks, f0, ph):
        g = pair_graph(fold_stream((np.load(f) for f in files), n), n)
        return OnePass(g, n, ranks, f0, sync_phase_h=ph)
    return _analysis(inp, one)


def mem_previous(inp):
    from benchmarks._onepass_previous import OnePassPrevious, compact_stream

    def one(files, n, ranks, f0, ph):
        return OnePassPrevious(compact_stream((np.load(f) for f in files), n), n, ranks, f0, sync_phase_h=ph)
    return _analysis(inp, one)


PREVIOUS_NOTE = "the previous round's code (benchmarks/_onepass_previous.py)"


def cases(quick: bool) -> list[Case]:
    out = []
    # synthetic pair tables: ours vs the previous code (the largest size: ours only)
    syn = [(3_000, 3, 3)] if quick else [(20_000, 14, REPLICATES), (100_000, 14, REPLICATES)]
    for size, days, k in syn:
        out.append(Case(
            name=NAME, variant=f"synthetic-{days}d-{k}rep-21lv", size=size, items=k * len(GRID),
            unit="curve-points", ours=ours, agree=agree, repeat=1 if size > 3_000 else None,
            details=details,
            setup=(lambda size=size, days=days, k=k:
                   synthetic_replicates(np.concatenate(synthetic_days(size, days)), size, k=k)),
            baselines=[Baseline("previous", previous, max_size=20_000,
                                note=PREVIOUS_NOTE + "; ~10 min at 10^5 agents x 14 days")],
            params={"replicates": k, "levels": len(GRID), "days": days, "rows_per_agent_day": 30},
        ))
    # memory of the analysis as days grow (pairs units + one curves unit of a simulated province)
    mem_agents, mem_days = (800, (2,)) if quick else (MEM_AGENTS, MEM_DAYS)
    for d in mem_days:
        out.append(Case(
            name=NAME, variant=f"analysis-memory-{mem_agents}ag", size=d, items=1, unit="analyses",
            setup=(lambda d=d: _mem_setup(d, mem_agents, max(mem_days))), ours=mem_ours,
            baselines=[Baseline("previous", mem_previous, note=PREVIOUS_NOTE + ": compact table + OnePass")],
            agree=lambda a, name, b: agree(a, "previous", b), repeat=1,
            params={"agents": mem_agents, "days": d, "rule": "bluezone", "replicates": 1},
        ))
    if quick:         # the simulated province
        sizes, days, cache, k = [800], 1, False, 3
    else:  # a 2,000-agent part of the province (with the per-level baseline), and the whole of it
        # (one pass only: 210 per-level calls on 10,000 agents did not finish in 21 minutes here)
        sizes, days, cache, k = [2_000, 100_000], 14, True, REPLICATES
    for size in sizes:
        def setup(size=size):
            if quick:
                return replicates(*province(size, days, cache), k=k)
            pairs, n, pop = province(100_000, days, cache)
            if size < n:
                pairs, n, pop = subset(pairs, pop, size)
            return replicates(pairs, n, pop, k=k)

        out.append(Case(
            name=NAME, variant=f"{PRESET}-{days}d-{k}rep-21lv", size=size,
            items=k * len(GRID), unit="curve-points", setup=setup, ours=ours,
            baselines=[Baseline("coverage_at", per_level, max_size=BASELINE_MAX,
                                note=BASELINE_NOTE)],
            agree=agree, repeat=1, details=details,
            params={"replicates": k, "levels": len(GRID), "days": days, "cached_in_out": cache,
                    "part_of": None if quick or size == 100_000 else "first agents of the 100,000"},
        ))
    return out
