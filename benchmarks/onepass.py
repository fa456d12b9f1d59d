"""The adoption curve in one pass (``tracing.coverage.OnePass``) vs re-computing every level.

Input: the pair table (``tracing.pipeline.pairs_from_run`` under the ``bluezone`` rule) of a simulated
``lang-son`` province: 100,000 agents over 14 days (the retention period), seed 0.  Simulating that
takes tens of minutes on two cores, so the run folder and its pair table are simulated **once and
cached** in ``out/benchcache/`` (delete the folder to rebuild; the cache is not timed).  ``--quick``:
800 agents, 1 day, 3 replicates, in a temporary folder.

Full sizes: the first 2,000 agents of that province (the pairs among them; agents are numbered
household by household) with the baseline, and the whole province with the one-pass curves only --
per-level re-computation there is ~10 hours (one ``coverage_at`` call on the 42 M pair-day rows took
177 s at load ~6, and 210 are needed), so it is skipped with that note.

The work timed is a sweep's analysis: 10 replicates (uniform adoption among phone owners,
``phones_only=True`` as ``proxitrace sweep`` does; ``tracing.sweep.replicate.default_index_cases(n)`` index
cases -- 200 at 100,000 agents; per-agent sync phases), each
evaluated at 21 adoption levels ``0, 0.05, .., 1``:

ours
    the pair-day table compacted once (``tracing.core.coverage.compact_pairs``: <= 2 rows per pair,
    what the sweep's curves unit folds day by day; timed), then per replicate one ``OnePass(...)`` on
    it and one ``.evaluate(grid)``.
coverage_at
    per replicate and level one ``tracing.core.coverage.coverage_at(p, ...)`` -- adoption applied
    explicitly, brute force (210 calls).

Agreement: every metric ``coverage_at`` returns equals the one-pass curve at every level (NaN where
NaN; relative tolerance 1e-9 for the float means).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
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


def province(n_agents: int, days: int, cache: bool):
    """(pairs, n, population) of the simulated province; cached in out/benchcache/ if ``cache``."""
    from sim.runfolder import RunFolder
    from tracing.pipeline import pairs_from_run

    if cache:
        folder = CACHE / f"{PRESET}-{n_agents // 1000}k-{days}d"
        if not (folder / "run.json").is_file():
            folder.parent.mkdir(parents=True, exist_ok=True)
            _simulate(n_agents, days, folder)
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


def ours(inp):
    from tracing.core.coverage import OnePass, compact_pairs

    pairs = compact_pairs(inp["pairs"], inp["n"])        # once for all replicates (timed)
    out = []
    for ranks, f0, ph in inp["reps"]:
        out.append(OnePass(pairs, inp["n"], ranks, f0, sync_phase_h=ph).evaluate(GRID))
    return out


def per_level(inp):
    from tracing.core.coverage import coverage_at

    out = []
    for ranks, f0, ph in inp["reps"]:
        rows = [coverage_at(p, inp["pairs"], inp["n"], ranks, f0, sync_phase_h=ph) for p in GRID]
        out.append({k: np.array([r[k] for r in rows], np.float64) for k in rows[0]})
    return out


def agree(curves, name, theirs):
    assert len(curves) == len(theirs)
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
    from tracing.core.coverage import OnePass
    from tracing.core.pairs import PAIR_DTYPE

    p = np.zeros(3, PAIR_DTYPE)
    p["i"], p["j"], p["t_first"] = [0, 1, 1], [1, 2, 3], [100.0, 50.0, 200.0]
    p["true_close"] = p["notify_i"] = p["notify_j"] = True
    OnePass(p, 4, np.array([0.25, 0.5, 0.75, 1.0]), [0]).evaluate(GRID)


BASELINE_MAX = 2_000
BASELINE_NOTE = ("210 coverage_at calls on the 42 M-row pair table of 100,000 agents x 14 days: one "
                 "call measured 177 s (load ~6), i.e. ~10 h")


def cases(quick: bool) -> list[Case]:
    if quick:
        sizes, days, cache, k = [800], 1, False, 3
    else:  # a 2,000-agent part of the province (with the per-level baseline), and the whole of it
        # (one pass only: 210 per-level calls on 10,000 agents did not finish in 21 minutes here)
        sizes, days, cache, k = [2_000, 100_000], 14, True, REPLICATES
    out = []
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
