"""Before a long simulation starts: an estimate of its time and peak memory, and a one-line refusal when
this machine cannot hold it.

The model is linear in the population and measured (``python -m benchmarks simulation``, README
Performance): one simulated day holds that day's window and close-pair accumulators, so the peak
resident memory grows with the agents and not with the days (each day is written before the next
starts); the time grows with agent-days.

Constants (2-core reference machine, numba 0.68, Lạng Sơn settings), re-measured for issue 16
(``benchmarks/simulation.py``'s ``scenario(n)``, one day, 2 numba threads, load 1.1-1.5): a
10^6-agent day takes 380 s (596 CPU-s) and peaks at 7.8 GB resident (12.4 GB measured just before the
window map stopped doubling for keys it already held); a 10^5-agent day takes 36 s and peaks at 1.8 GB.
Re-measured on the calibrated province (issue 13: 61 windows per agent-day instead of ~45), quiet (load
1.0-1.6): a 10^6-agent day took 434 s (~620 CPU-s) and peaked at 12.8 GB, because its window map (63 M
windows) crossed the next power of two (6.4 GB of slots, doubled with old and new alive); a 10^5-agent
day 38 s, 1.9 GB. Re-measured after the window map stopped doubling (issue 16: any capacity, grown by
1.3x / 1.15x in place, ``sim/scanning/accumulate.py``), the Parquet encodings were chosen per column
(``ble.schema.PARQUET_ENCODING``) and stays were evaluated once (``sim.run``), load 1.0-2.0: a
10^6-agent day takes 280 s (449 CPU-s) and peaks at 7.08 GiB = 7.6 GB (window and close-pair maps 3.9 GiB, the
rest the day's last flush of pair runs, the ground truth and the window blocks being written); a
10^5-agent day 26 s, 1.79 GiB. The memory is no longer a step function of the windows per day (the map
ends at a load of 0.74-0.85); the constant below takes the 10^6 measurement. Then (issue 16,
simulation) the first day's maps were sized from the expected windows per agent (no regrowth), the
windows extracted in pieces of whole observers and the pair runs flushed in key-range groups: a
10^6-agent day used 347 CPU-s at load ~5 (~220 s quiet by the former wall / CPU ratio) and peaked at
6,785 MiB, set by the evening peak of away pairs (their runs' state, ~190 B a pair) on top of the 3.9 GiB
maps; a 10^5-agent day 1,351 MiB. Re-measured quiet on the final code of that round (the scanning kernels
serial on ``sim.kernels.run_blocks`` threads too; load 1.2-2.0): a 10^6-agent day took 263 s (418 CPU-s)
and peaked at 6,962 MiB; a 10^5-agent day 25.7 s, 1,367 MiB. With the day maps' lines prefetched in
groups, the windows sorted on contiguous copies and extracted straight into the writer's buffer (same
bytes; load 1.0-1.6): 224 s (344 CPU-s) and 6,852 MiB at 10^6 agents, 22.9 s and 1,344 MiB at 10^5. (A
later session's machine, ~1.5-2x faster: 115 s at 10^6 agents; the constants keep the slower one.)

A sweep (``proxitrace sweep``) also builds each day's pair table, which holds that day's windows whole
(``tracing.pipeline.pairs_from_run``): measured on Lạng Sơn x0.128 (100,000 agents), one day, one
replicate, in-process, load 1.4: the pairs unit took 29.3 s and the sweep peaked at 4.68 GB resident
(the simulation alone at 1.8 GB); the 1:1 province (781,655 agents) was killed by the kernel at 24.4 GB
in its pairs unit after its simulated day had finished (215 s). :func:`estimate_sweep` takes the larger
of the two peaks, so such a sweep is refused before it starts. The pairs unit then read each day's
windows in blocks of whole observers with the rolling IDs resolved once per day, and gathered only the
three fields of the daily sums it needs: 24.5 s and a sweep peak of 4.08 GB at 10^5 agents (the pair
table's lexsort of 5.5 M directed sums now sets it). Then (issue 16, analysis) the unit read the windows as
columns (not the attenuation buckets where the rule ignores them), evaluated the rule per block of
2**19 windows and kept 41 bytes per directed daily row, and grouped by counting sorts and numba merge
kernels instead of lexsort (``tracing.core.pairjoin``; same pair tables byte for byte): the unit
(``tracing.sweep.tasks.pairs_task``, fresh process, rule bluezone, writing included) takes 7.1 s wall and
peaks at 1.14 GB at 10^5 agents (load 2.5; it was 29.5 s and 3.88 GB back to back), 22.1 s and 2.70 GB
at 312,662 agents (load 2.0; gaen-ch, which decodes the buckets: 28.8 s, 2.61 GB). The constants below
take ~8 KB per agent above the fixed part (7.6 KB at 312,662 agents, 8.3 KB at 10^5, block buffers
included; 7.3 KB between the two) and 8e-5 s per agent-day: a 1:1 province's day of pair tables needs
~7 GB and ~1 minute, 14 days ~15 min.
"""
from __future__ import annotations

import math

__all__ = ["BYTES_PER_AGENT", "BASE_BYTES", "SECONDS_PER_AGENT_DAY", "ANALYSIS_BYTES_PER_AGENT",
           "ANALYSIS_SECONDS_PER_AGENT_DAY", "CURVES_BYTES_PER_PAIR", "PAIR_ROWS_PER_AGENT_DAY",
           "EPIDEMIC_BYTES_PER_ROW", "EPIDEMIC_BYTES_PER_AGENT", "EPIDEMIC_SECONDS_PER_ROW_RUN",
           "EPIDEMIC_CALIBRATION_RUNS", "available_bytes", "distinct_pairs_per_agent", "estimate",
           "estimate_sweep", "check_fits", "describe"]

#: peak resident bytes per agent of one simulated day (6,962 MiB at 10^6 agents, less the fixed part)
BYTES_PER_AGENT = 7_000
#: fixed resident bytes (interpreter, numpy/pyarrow/numba, compiled kernels)
BASE_BYTES = 300 * 2**20
#: wall seconds per agent-day on the reference machine at load 1-2 (224 s for 10^6 agents x 1 day)
SECONDS_PER_AGENT_DAY = 2.25e-4
#: peak resident bytes per agent of a sweep's pair-table unit of one day (2.70 GB at 312,662 agents and
#: 1.14 GB at 10^5, less the fixed part: 7.6 and 8.3 KB; rounded up)
ANALYSIS_BYTES_PER_AGENT = 8_500
#: wall seconds per agent-day of a sweep's pair-table units (22.1 s for 312,662 agents x 1 day, 7.1 s for
#: 10^5, rule bluezone, load 2-2.5; rounded up)
ANALYSIS_SECONDS_PER_AGENT_DAY = 8.0e-5
#: distinct pairs per agent (a detection or a ground-truth row on any day) after 1, 2, ..., 14 days,
#: measured on Lang Son x0.064 (50,026 agents, seed 0, rule bluezone); later days add the last increment
#: each.  The contact structure is per agent (42.3 pair rows per agent-day at x0.128, 42.1 here), but
#: a larger province repeats fewer of its chance contacts: after 14 days x0.0256 had 312.1 per agent,
#: x0.064 326.6 (+4.6%), the 1:1 province 342.2 (+4.8%; covered by ``CURVES_BYTES_PER_PAIR``)
DISTINCT_PAIRS_PER_AGENT = (42.1, 72.6, 100.8, 126.8, 151.7, 177.7, 200.0, 220.5, 239.4, 259.0, 276.9,
                            294.9, 311.7, 326.6)
#: peak resident bytes of a sweep's curves unit per distinct pair of the run (the pairs folded in place,
#: 21 B each, then the graph, 30 B per flagged pair: 84% of them under bluezone) and per agent (the
#: replicate's arrays and a day's columns, ~370 B, and the unit's fixed ~200 MB spread over a 1:1
#: province), above ``BASE_BYTES``: 50,026 agents x 14 days (16.3 M pairs) peaked at 910 MiB (25.4 B a
#: pair in the graph); the real 1:1 Lang Son x 14 days (267.5 M pairs, 342 per agent) at 7,253 MiB
#: (7.6 GB, 27.2 B a pair above the interpreter), which 27 B a pair with the x0.064 table covers
CURVES_BYTES_PER_PAIR = 27
CURVES_DAY_BYTES_PER_AGENT = 700
#: pair-table rows per agent and simulated day, rule bluezone, 14 days: 41.8 at Lang Son x0.02, 42.3 at
#: x0.04, 43.6 at 1:1 (476.6 M rows)
PAIR_ROWS_PER_AGENT_DAY = 43.6
#: peak resident bytes of a sweep's epidemic unit (``--epidemic``: the closed loop holds its replayed
#: cycle's pair tables, ground truth and contact records whole, with an adjacency, doses and the ideal
#: rule's copy) per pair-day row of the cycle and per agent, above ``BASE_BYTES``. Measured (in a
#: resumed sweep that ran only that unit, 14-day cycle): Lang Son x0.02 (15,633 agents, 9.14 M rows)
#: 2,496,024 KiB, x0.04 (31,266 agents, 18.53 M rows) 4,383,340 KiB: 206 B a row between the two; the
#: per-agent part covers x0.04 (x0.02 is 6% above the model). The 1:1 province's 14-day loop would need
#: ~109 GB.
EPIDEMIC_BYTES_PER_ROW = 210
EPIDEMIC_BYTES_PER_AGENT = 11_000
#: wall seconds of the epidemic unit per pair-day row of its cycle and per closed-loop run of the default
#: 120 days (x0.02: 588 s, x0.04: 1,063 s for 127 runs and the calibration: 4.8e-7 and 4.3e-7, both
#: measured beside another sweep, load 2.5-3.5, so an upper figure)
EPIDEMIC_SECONDS_PER_ROW_RUN = 4.5e-7
#: closed-loop runs of the default length that the network calibration costs (5 x 6 runs of 25 days / 120)
EPIDEMIC_CALIBRATION_RUNS = 6.25
#: head-room kept free when deciding whether a run fits (the page cache of the Parquet writes, others)
HEADROOM = 0.9


def available_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (None where unreadable, e.g. not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def estimate(n_agents: int, days: int) -> dict:
    """``{"n_agents", "days", "peak_bytes", "seconds"}`` of a simulation (see the module docstring).

    Parameters
    ----------
    n_agents : int
        Persons simulated (``Scenario.n_agents``).
    days : int
        Simulated days.
    """
    n, d = int(n_agents), int(days)
    return {"n_agents": n, "days": d, "peak_bytes": BASE_BYTES + BYTES_PER_AGENT * n,
            "seconds": SECONDS_PER_AGENT_DAY * n * d}


def distinct_pairs_per_agent(days: int) -> float:
    """Distinct pairs per agent of a run of ``days`` days (``DISTINCT_PAIRS_PER_AGENT``, extrapolated
    linearly with its last increment beyond 14 days)."""
    d, t = max(int(days), 1), DISTINCT_PAIRS_PER_AGENT
    return t[d - 1] if d <= len(t) else t[-1] + (t[-1] - t[-2]) * (d - len(t))


def estimate_sweep(n_agents: int, days: int, *, epidemic_days: int = 0, epidemic_runs: int = 0) -> dict:
    """:func:`estimate` of a sweep replicate: the simulation, the day's pair tables (one at a time),
    then the curves over all days' distinct pairs and, with ``epidemic_days`` (the replayed cycle of
    ``--epidemic``, :func:`tracing.sweep.epidemic.cycle_days`), the closed loop over that cycle's pair
    tables (a separate simulation and pair tables of that many days where the sweep simulated fewer),
    ``epidemic_runs`` closed-loop runs. ``peak_bytes`` is the largest stage peak, ``seconds`` the sum of
    the stages (curves are seconds), ``bytes_per_agent`` the per-agent bytes of the stage that sets the
    peak and ``peak_stage`` its name."""
    n, d, cyc = int(n_agents), int(days), int(epidemic_days)
    est = estimate(n, d)
    curves = CURVES_BYTES_PER_PAIR * distinct_pairs_per_agent(d) + CURVES_DAY_BYTES_PER_AGENT
    stages = {"simulation": BYTES_PER_AGENT, "pair-table units": ANALYSIS_BYTES_PER_AGENT,
              "curves unit": int(math.ceil(curves))}
    seconds = est["seconds"] + ANALYSIS_SECONDS_PER_AGENT_DAY * n * d
    if cyc > 0:
        rows = PAIR_ROWS_PER_AGENT_DAY * cyc * n
        per_agent = EPIDEMIC_BYTES_PER_ROW * PAIR_ROWS_PER_AGENT_DAY * cyc + EPIDEMIC_BYTES_PER_AGENT
        stages[f"epidemic closed loop over {cyc} days"] = int(math.ceil(per_agent))
        if cyc > d:                     # its own run of the cycle's days, and their pair tables
            seconds += (SECONDS_PER_AGENT_DAY + ANALYSIS_SECONDS_PER_AGENT_DAY) * n * cyc
        runs = max(int(epidemic_runs), 0) + EPIDEMIC_CALIBRATION_RUNS
        seconds += EPIDEMIC_SECONDS_PER_ROW_RUN * rows * runs
    stage = max(stages, key=stages.get)
    est.update(peak_bytes=BASE_BYTES + stages[stage] * n, bytes_per_agent=stages[stage], peak_stage=stage,
               seconds=seconds)
    return est


def describe(est: dict, available: int | None) -> str:
    """One line: ``781,655 agents x 14 days: ~79 min on an idle 2-core machine, peak ~10.1 GB (24.8 GB
    available)``, with ``, set by the curves unit`` after the peak where a sweep stage other than the
    simulation sets it (``est["peak_stage"]``)."""
    s = est["seconds"]
    t = f"{s:.0f} s" if s < 120 else (f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h")
    av = f" ({available / 1e9:.1f} GB available)" if available is not None else ""
    stage = est.get("peak_stage", "simulation")
    where = f", set by the {stage}" if stage != "simulation" else ""
    return (f"{est['n_agents']:,} agents x {est['days']} day{'s' if est['days'] != 1 else ''}: ~{t} on an "
            f"idle 2-core machine, peak ~{est['peak_bytes'] / 1e9:.1f} GB{where}{av}")


def check_fits(name: str, scale: float, est: dict, available: int | None) -> None:
    """Raise ``ValueError`` (one line: the estimate, the memory available and the largest scale that
    fits) when the run's estimated peak exceeds ``HEADROOM`` x the available memory.  Nothing is
    checked where the available memory is unknown."""
    if available is None or est["peak_bytes"] <= HEADROOM * available:
        return
    room = HEADROOM * available - BASE_BYTES
    fit = max(room, 0) / est.get("bytes_per_agent", BYTES_PER_AGENT) / max(est["n_agents"], 1) * scale
    if fit > 0:                          # rounded down to the 3 digits shown: the advised scale fits
        step = 10.0 ** (math.floor(math.log10(fit)) - 2)
        fit = math.floor(fit / step) * step
    raise ValueError(f"{name} x{scale:g} does not fit this machine: {describe(est, available)}; "
                     f"the largest scale that fits is ~{fit:.3g} (or free memory)")

