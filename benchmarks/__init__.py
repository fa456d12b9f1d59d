"""proxitrace benchmarks: side-by-side timings of the hot loops against strong baselines.

Run ``python -m benchmarks [NAMES...] [--quick] [--json FILE] [--plot FILE] [--repeat N] [--max-size N]``
(``NAMES`` from :data:`BENCHMARKS`; default: all).  For every case the harness

1. calls the module's ``warmup()`` once (numba compilation and cache loading are never timed),
2. builds the inputs once (``Case.setup``, not timed) and runs *ours* and every baseline on the *same*
   inputs in the same process, interleaved repetition by repetition (so a noisy machine hurts both
   alike), keeping median / min / max wall-clock seconds (``time.perf_counter``),
3. checks that the outputs agree (``Case.agree(ours_out, baseline_name, baseline_out)`` raises
   ``AssertionError`` otherwise -- a benchmark that disagrees is a failure, not a number),
4. measures the peak memory of one call of each implementation (see :mod:`benchmarks._core`:
   ``VmHWM`` of the process after resetting it through ``/proc/self/clear_refs``, i.e. peak resident
   set size during that call minus the resident size before it; ``ru_maxrss`` where that is
   unavailable -- the method used is written in the JSON ``meta``),
5. prints a table and optionally writes JSON and a log-log scaling plot (time vs size).

Adding a benchmark
------------------
Write a module ``benchmarks/<name>.py`` and add ``<name>`` to :data:`BENCHMARKS`.  The module provides

``NAME``: str
    The benchmark's name (the module name).
``warmup() -> None``
    Compile / load every numba kernel that ``ours`` uses, on tiny inputs.
``cases(quick: bool) -> list[benchmarks._core.Case]``
    The cases to run, small sizes only when ``quick`` (the whole ``--quick`` run stays well under a
    minute).  A :class:`~benchmarks._core.Case` has ``name`` (the benchmark), ``variant`` (e.g.
    ``"uniform"``), ``size`` (x axis of the plot), ``items`` (what the throughput counts, per call),
    ``unit`` (e.g. ``"points"``), ``setup() -> inputs``, ``ours(inputs) -> out``, ``baselines`` (a list
    of :class:`~benchmarks._core.Baseline`: name, ``fn(inputs) -> out``, optional ``max_size`` above
    which it is skipped and a ``note`` saying why) and ``agree(ours_out, baseline_name, baseline_out)``.

Optionally ``details(ours_out) -> dict`` on a case adds facts from ours' output to the row (JSON
``details``; e.g. the simulator's per-stage time shares).

The benchmarks
--------------
``neighbours``  ``sim.neighbours.pairs_within`` vs cKDTree and brute force (uniform, clustered points)
``matching``    ``tracing.matching.match_ids`` vs ``numpy.isin``, pandas, polars and duckdb (extra ``bench``)
``simulation``  agent-steps/s of ``sim.run.simulate``, one day of a 10^5 / 10^6-agent province (no baseline)
``onepass``     the one-pass adoption curve (``tracing.coverage.OnePass``) vs ``coverage_at`` per level
``firstrun``    a tiny ``proxitrace simulate`` with an empty numba cache vs a filled one (not in --quick)
``percolation`` Newman--Ziff (``tracing.core.percolation``) vs connected components per level (scipy, networkx)
"""

BENCHMARKS = ("neighbours", "matching", "percolation", "onepass", "simulation", "firstrun")
