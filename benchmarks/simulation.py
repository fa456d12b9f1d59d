"""Simulation throughput: agent-steps per second of ``sim.run.simulate`` for one simulated day.

Cases: the ``lang-son`` preset (781,655 persons at scale 1) scaled to 100,000 and to 1,000,000 agents
(``--quick``: 1,000 agents and 48 steps of 1,800 s, a smoke test: the per-step overhead dominates at
that size), one day (288 steps of 300 s), seed 0, written to a temporary folder that
is deleted afterwards.  Throughput = ``n_agents x 288`` agent-steps over the wall-clock time of the
whole ``simulate`` call (world building, all steps, writing the run folder).

Each row carries ``details``: the process's CPU seconds (all threads: under load they compare better
than the wall time), the per-stage seconds and shares that ``run.json["timings"]`` records
(schedules, positions, neighbours, radio, aggregation, writing), the simulator's own agent-steps/s, its
peak RSS and the day's peak accumulator (window and close-pair maps), counts (phone pairs evaluated,
windows, ground-truth rows) and the bytes of the Parquet files written (windows, ground truth).

Baseline: none.  There is no natural external baseline for a whole agent simulation (and the previous
version of the simulator is not kept alongside), so only the throughput is reported.  One repetition
per case (a 1,000,000-agent day takes many minutes on two cores).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from benchmarks._core import Case

NAME = "simulation"
PRESET = "lang-son"
PRESET_SIZE = 781_655            # sim/presets/lang-son.toml population.size
DAYS = 1


def scenario(n_agents: int, step_s: int = 300):
    from sim.scenario import preset

    scn = preset(PRESET, n_agents / PRESET_SIZE)
    scn.sim["step_s"] = int(step_s)
    return scn


def simulate_once(scn, days: int = DAYS, seed: int = 0) -> dict:
    """Simulate into a temporary folder; return its run.json plus ``files_bytes`` (sizes of the
    windows' and the ground truth's Parquet files); the folder is removed."""
    from sim.run import simulate

    tmp = Path(tempfile.mkdtemp(prefix="proxitrace-bench-sim-"))
    try:
        c0 = os.times()
        out = simulate(scn, tmp / "run", seed=seed, days=days, progress=False)
        c1 = os.times()
        run = json.loads((out / "run.json").read_text(encoding="utf-8"))
        run["cpu_s"] = round(c1.user + c1.system - c0.user - c0.system, 1)    # all threads (numba, writers)
        run["files_bytes"] = {"windows": sum(p.stat().st_size for p in (out / "windows").glob("*.parquet")),
                              "ground_truth": (out / "ground_truth.parquet").stat().st_size}
        return run
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def details(run: dict) -> dict:
    t = run["timings"]
    c = run["counts"]
    return {"n_agents": run["n_agents"], "days": run["days"], "wall_s": t["wall_s"], "cpu_s": run.get("cpu_s"),
            "stages_s": t["stages_s"], "shares": t["shares"],
            "agent_steps_per_s": t["agent_steps_per_s"], "peak_rss_mb": t["peak_rss_mb"],
            "peak_accumulator_mb": t.get("peak_accumulator_mb"),
            "phone_pairs_evaluated": c.get("phone_pairs_evaluated"), "windows": c.get("windows"),
            "ground_truth_rows": c.get("ground_truth"), "files_bytes": run.get("files_bytes")}


def warmup() -> None:
    simulate_once(scenario(300, step_s=3600))


def cases(quick: bool) -> list[Case]:
    sizes, step_s = ([1_000], 1800) if quick else ([100_000, 1_000_000], 300)
    out = []
    for n in sizes:
        scn = scenario(n, step_s)
        n_agents = scn.n_agents
        steps = 86400 // step_s
        out.append(Case(
            name=NAME, variant=f"{PRESET}-1day", size=n_agents, items=n_agents * steps * DAYS,
            unit="agent-steps", size_unit="agents", setup=(lambda scn=scn: scn), ours=simulate_once, baselines=[],
            agree=lambda *a: None, repeat=1, details=details,
            params={"preset": PRESET, "scale": scn.scale, "days": DAYS, "seed": 0, "step_s": step_s},
        ))
    return out
