"""`--scale 1` as a supported path: the estimate before a simulation, the one-line refusal when it does
not fit, progress per day, and the first-run compilation announcement (sim.budget, sim.kernels)."""
from __future__ import annotations

import importlib
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sim import budget, kernels
from sim.run import RUN_KERNELS, simulate
from sim.scenario import preset


def test_estimate_is_linear_in_agents_and_days():
    a = budget.estimate(100_000, 1)
    b = budget.estimate(200_000, 3)
    assert b["seconds"] == pytest.approx(6 * a["seconds"])
    assert b["peak_bytes"] - a["peak_bytes"] == budget.BYTES_PER_AGENT * 100_000   # memory: not in days
    assert budget.estimate(200_000, 14)["peak_bytes"] == b["peak_bytes"]
    line = budget.describe(budget.estimate(781_655, 14), 20 * 10**9)
    assert "781,655 agents x 14 days" in line and "GB" in line and "20.0 GB available" in line


def test_check_fits_refuses_in_one_line_with_the_scale_that_fits():
    est = budget.estimate(781_655, 14)
    budget.check_fits("lang-son", 1.0, est, None)                 # unknown memory: no check
    budget.check_fits("lang-son", 1.0, est, 10 * est["peak_bytes"])
    with pytest.raises(ValueError) as e:
        budget.check_fits("lang-son", 1.0, est, est["peak_bytes"] // 2)
    msg = str(e.value)
    assert "\n" not in msg and "lang-son x1 does not fit" in msg and "largest scale that fits" in msg
    fit = float(msg.split("fits is ~")[1].split()[0])
    assert 0 < fit < 1.0
    fitted = budget.estimate(int(781_655 * fit), 14)
    budget.check_fits("lang-son", fit, fitted, est["peak_bytes"] // 2)   # the advised scale fits


def test_simulate_refuses_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "available_bytes", lambda: 1 << 20)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="does not fit this machine"):
        simulate(preset("lang-son", 0.001), out, days=1, progress=False)
    assert not out.exists()


def test_sweep_refuses_what_its_pair_tables_cannot_hold(tmp_path, monkeypatch):
    """The sweep's estimate of a day takes the largest stage peak (the pair-table unit's, since it is larger
    than the simulated day's) and refuses before any work, with a scale that fits, where only the
    simulation would fit. The 1:1 province's day of pair tables fits 8 GB (issue 16; it was killed at
    24.4 GB before)."""
    from tracing.sweep.adoption import sweep
    n = 781_655
    sim_only, full = budget.estimate(n, 1), budget.estimate_sweep(n, 1)
    assert full["peak_bytes"] >= sim_only["peak_bytes"] and full["seconds"] > sim_only["seconds"]
    assert budget.BASE_BYTES + budget.ANALYSIS_BYTES_PER_AGENT * n < 8e9
    if full["bytes_per_agent"] != budget.ANALYSIS_BYTES_PER_AGENT or full["peak_bytes"] <= sim_only["peak_bytes"]:
        pytest.skip("the pair-table unit does not set a day's peak")
    between = int((sim_only["peak_bytes"] + full["peak_bytes"]) / 2 / budget.HEADROOM)
    monkeypatch.setattr(budget, "available_bytes", lambda: between)
    out = tmp_path / "sweep"
    with pytest.raises(ValueError) as e:
        sweep(out, preset="lang-son", scale=1.0, days=1, replicates=1, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "sweep lang-son x1 does not fit" in msg and not out.exists()
    fit = float(msg.split("fits is ~")[1].split()[0])
    assert 0.2 < fit < 1.0
    budget.check_fits("x", fit, budget.estimate_sweep(int(n * fit), 1), between)
    monkeypatch.setattr(budget, "available_bytes", lambda: 2 * between)
    with pytest.raises(ValueError, match="does not fit"):       # two local workers: half each
        sweep(out, preset="lang-son", scale=1.0, days=1, replicates=2, progress=False, dask="local")


def test_progress_prints_the_estimate_and_one_line_per_day(tmp_path, capsys):
    simulate(preset("lang-son", 0.0005), tmp_path / "run", seed=1, days=2, progress=True)
    err = capsys.readouterr().err
    assert "simulate lang-son x0.0005:" in err and "agents x 2 days" in err
    assert "day 1/2 done" in err and "day 2/2 done" in err
    # every kernel the first-run announcement watches was run (so a warm run announces nothing)
    unused = [name for name, d in kernels.resolve(RUN_KERNELS) if not d.signatures]
    assert unused == []
    assert kernels.uncached_kernels(RUN_KERNELS) == []


def test_uncached_kernels_and_announcement(tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    (tmp_path / "h16_jitmod.py").write_text(
        "from numba import njit\n\n@njit(cache=True)\ndef twice(x):\n    return 2 * x\n\n"
        "@njit(cache=True, inline='always')\ndef inl(x):\n    return x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("h16_jitmod")
    assert kernels.uncached_kernels([mod]) == ["h16_jitmod.twice"]      # inlined helpers not counted
    buf = io.StringIO()
    assert kernels.announce_compilation([mod], 7.0, stream=buf) == 7.0
    assert buf.getvalue().startswith("compiling 1 numba kernels, first run only, ~7 s")
    assert kernels.uncached_kernels({"h16_jitmod": ("twice",)}) == ["h16_jitmod.twice"]
    assert mod.twice(3) == 6                                           # compiles and writes the cache
    assert kernels.uncached_kernels([mod]) == []
    del sys.modules["h16_jitmod"]
    fresh = importlib.import_module("h16_jitmod")                      # a new process would see this
    assert kernels.uncached_kernels([fresh]) == []                     # fresh on-disk index
    buf = io.StringIO()
    assert kernels.announce_compilation([fresh], 7.0, stream=buf) == 0.0 and buf.getvalue() == ""


def test_recorded_kernel_signatures_match_a_simulation(tmp_path):
    """sim/kernel_signatures.py (the parallel first compile's argument types) is current: re-record it
    with `python -m benchmarks.firstrun --record` when this fails."""
    simulate(preset("lang-son", 0.0005), tmp_path / "run", seed=3, days=1, progress=False)
    rec = kernels.recorded_signatures()
    for name, d in kernels.resolve(RUN_KERNELS):
        assert name in rec, f"{name} has no recorded signature"
        assert rec[name][0] == list(d.signatures), f"{name}: recorded argument types are stale"


def test_precompile_splits_kernels_between_processes(tmp_path, monkeypatch):
    from numba.core import types

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    (tmp_path / "h16_par.py").write_text(
        "from numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return x + 1\n\n"
        "@njit(cache=True)\ndef g(x):\n    return x * 2.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    mod = importlib.import_module("h16_par")
    sigs = {"h16_par.f": ([(types.int64,)], 2.0), "h16_par.g": ([(types.float64,)], 1.0)}
    disp = dict(kernels.resolve([mod]))
    assert sorted(kernels.uncached_kernels([mod])) == ["h16_par.f", "h16_par.g"]
    mine = kernels.precompile(disp, list(sigs), 1, sigs)
    assert mine[0] == "h16_par.f" and mod.f.signatures     # the longest first, here; g by whoever took it
    del sys.modules["h16_par"]
    fresh = importlib.import_module("h16_par")
    assert kernels.uncached_kernels([fresh]) == []          # both in the on-disk cache
    assert fresh.g(2.0) == 4.0 and fresh.f(1) == 2


def test_compile_worker_takes_only_unclaimed_kernels(tmp_path, monkeypatch):
    # the claim files share the kernels between processes: a worker process skips a kernel another
    # process has claimed and compiles (into the on-disk cache) the rest
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    (tmp_path / "h16_claim.py").write_text(
        "from numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return x + 1\n\n"
        "@njit(cache=True)\ndef g(x):\n    return x * 2.0\n")
    claims = tmp_path / "claims"
    claims.mkdir()
    assert kernels._claim(str(claims), "h16_claim.f") and not kernels._claim(str(claims), "h16_claim.f")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), str(Path(kernels.__file__).parents[1])]))
    env.pop("NUMBA_CACHE_DIR", None)
    job = {"claims": str(claims), "kernels": {"h16_claim.f": ["(int64,)"], "h16_claim.g": ["(float64,)"]}}
    subprocess.run([sys.executable, "-m", "sim.kernels", "--compile"], input=json.dumps(job), text=True, env=env,
                   check=True, timeout=300)
    assert sorted(p.name for p in claims.iterdir()) == ["h16_claim.f", "h16_claim.g"]
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("h16_claim")
    assert kernels.uncached_kernels([mod]) == ["h16_claim.f"]      # g compiled by the worker, f left


def test_sweep_estimate_grows_with_the_distinct_pairs_of_its_curves_unit(monkeypatch):
    """The curves unit holds every distinct pair of the run: its per-agent bytes follow the measured
    table (monotone in days, extrapolated with the last day's increment) and set the sweep's peak once
    they exceed the other stages'. The 1:1 province over 14 days fits 8 GB (issue 16: 19.7 GB modelled
    when the curves unit held every pair twice)."""
    t = budget.DISTINCT_PAIRS_PER_AGENT
    assert all(b > a for a, b in zip(t, t[1:])) and budget.distinct_pairs_per_agent(0) == t[0]
    assert budget.distinct_pairs_per_agent(16) == pytest.approx(t[-1] + 2 * (t[-1] - t[-2]))
    monkeypatch.setattr(budget, "ANALYSIS_BYTES_PER_AGENT", 1_000)
    n = 781_655
    one, two_weeks = budget.estimate_sweep(n, 1), budget.estimate_sweep(n, 14)
    curves = budget.CURVES_BYTES_PER_PAIR * t[-1] + budget.CURVES_DAY_BYTES_PER_AGENT
    assert two_weeks["bytes_per_agent"] == math.ceil(curves) > one["bytes_per_agent"]
    assert two_weeks["peak_bytes"] == budget.BASE_BYTES + two_weeks["bytes_per_agent"] * n
    assert two_weeks["peak_bytes"] < 8e9


def test_run_blocks_any_split_and_errors():
    # serial nogil kernels over chunks of blocks on Python threads: the same output for any number of
    # threads and any cuts; an error in any chunk reaches the caller
    import numpy as np
    from numba import njit

    @njit(nogil=True)
    def fill(out, b0, b1):
        for b in range(b0, b1):
            if b == out.shape[0]:
                raise ValueError("block out of range")
            out[b] = b * b + 1

    want = np.arange(50) ** 2 + 1
    for threads in (1, 2, 3, 7):
        for cuts in (kernels.even_cuts(50, 64), kernels.even_cuts(50, 3), [0, 1, 49, 50]):
            out = np.zeros(50, np.int64)
            kernels.run_blocks(fill, threads, cuts, out)
            assert np.array_equal(out, want)
    assert kernels.even_cuts(3, 5) == [0, 1, 2, 3] and kernels.even_cuts(64, 2) == [0, 32, 64]
    with pytest.raises(ValueError, match="out of range"):
        kernels.run_blocks(fill, 2, kernels.even_cuts(51, 8), np.zeros(50, np.int64))


def test_sweep_refuses_an_epidemic_its_closed_loop_cannot_hold(tmp_path, monkeypatch):
    """``--epidemic`` holds its replayed cycle's contact records whole: the estimate grows with the cycle's
    days, adds a separate run of the cycle where the sweep simulated fewer days, and the sweep refuses
    in one line, naming the stage, a run whose closed loop would not fit where the sweep alone would
    (the 1:1 province: ~8 GB without, far over 24 GB with the closed loop)."""
    from tracing.sweep.adoption import sweep
    n = 781_655
    plain = budget.estimate_sweep(n, 1)
    short = budget.estimate_sweep(n, 1, epidemic_days=14, epidemic_runs=127)
    own = budget.estimate_sweep(n, 14, epidemic_days=14, epidemic_runs=127)
    three = budget.estimate_sweep(n, 21, epidemic_days=21, epidemic_runs=127)
    assert short["peak_stage"] == own["peak_stage"] == "epidemic closed loop over 14 days"
    assert short["peak_bytes"] == own["peak_bytes"] < three["peak_bytes"]
    extra = (budget.SECONDS_PER_AGENT_DAY + budget.ANALYSIS_SECONDS_PER_AGENT_DAY) * n * 14
    base14 = budget.estimate_sweep(n, 14)["seconds"] - budget.estimate_sweep(n, 1)["seconds"]
    assert short["seconds"] - plain["seconds"] == pytest.approx(own["seconds"] - plain["seconds"] - base14 + extra)
    room = int(2 * plain["peak_bytes"] / budget.HEADROOM)           # twice what the sweep alone needs
    assert own["peak_bytes"] > budget.HEADROOM * room
    monkeypatch.setattr(budget, "available_bytes", lambda: room)
    out = tmp_path / "sweep"
    with pytest.raises(ValueError) as e:
        sweep(out, preset="lang-son", scale=1.0, days=1, replicates=1, progress=False, epidemic=True)
    msg = str(e.value)
    assert "\n" not in msg and "set by the epidemic closed loop" in msg and not out.exists()
    fit = float(msg.split("fits is ~")[1].split()[0])
    budget.check_fits("x", fit, budget.estimate_sweep(int(n * fit), 1, epidemic_days=14, epidemic_runs=127), room)
