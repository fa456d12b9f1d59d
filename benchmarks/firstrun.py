"""First run after install: a tiny ``proxitrace simulate`` with an empty numba cache (every kernel
compiled) vs the same command with the cache filled (kernels loaded from disk).

*ours* runs ``proxitrace simulate --preset lang-son --scale 0.0005 --days 1`` (about 390 agents: the
simulation itself takes well under a second, so the time is interpreter start-up, imports and the
kernels) in a fresh interpreter with ``NUMBA_CACHE_DIR`` pointing at a new empty folder; the
baseline ``warm-cache`` runs the same command with the folder the cold run filled -- the floor a
compilation-free first run could reach.  ``details`` has the CPU seconds of both (user + system of the
child: steadier than wall-clock on a loaded machine), the number of kernels compiled, the line the
simulator printed to announce it, and the per-kernel breakdown (each kernel's cold compile CPU seconds
as ``--record`` measured them, and their sum per module).

Since issue 16 the cold run compiles in parallel: ``sim.kernels.announce_compilation`` splits the
kernels between the simulating process and a worker process per further core (``sim.kernels``' docstring),
by their argument types and compile times recorded in ``sim/kernel_signatures.py``.  The baseline
``serial-cold`` is the same cold command with ``PROXITRACE_COMPILE_WORKERS=0`` (one process compiles
everything, as before).  ``details`` has wall and CPU seconds of all runs.

``python -m benchmarks.firstrun --record`` rewrites ``sim/kernel_signatures.py``: the kernels' argument
types from a tiny simulation in a fresh interpreter, and each kernel's compile seconds from another
fresh interpreter with an empty cache compiling them one by one (run it after a kernel's arguments
change; ``tests/test_sim_budget.py`` fails while the file is stale).

Not in ``--quick`` (a cold compile takes a minute or more on two cores).  One repetition.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import weakref
from pathlib import Path

from benchmarks._core import Baseline, Case

NAME = "firstrun"
SCALE = 0.0005


ROOT = Path(__file__).resolve().parents[1]


def _env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **extra)


def _simulate(cache_dir: str, workers: int | None = None) -> dict:
    """Run the tiny simulation in a fresh interpreter with ``cache_dir``; wall/CPU seconds and stderr
    (``workers``: ``PROXITRACE_COMPILE_WORKERS``; default: the machine's)."""
    env = _env(NUMBA_CACHE_DIR=cache_dir)
    if workers is not None:
        env["PROXITRACE_COMPILE_WORKERS"] = str(workers)
    out = tempfile.mkdtemp(prefix="proxitrace-bench-firstrun-")
    try:
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", "from tracing.cli import main; import sys; sys.exit(main())",
                            "simulate", "--preset", "lang-son", "--scale", str(SCALE), "--days", "1",
                            "--out", str(Path(out) / "run")],
                           env=env, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if p.returncode != 0:
        raise RuntimeError(f"simulate failed: {p.stderr[-2000:]}")
    nbc = sum(1 for _ in Path(cache_dir).rglob("*.nbc"))
    announce = [ln for ln in p.stderr.splitlines() if ln.startswith("compiling ")]
    return {"wall_s": round(wall, 2), "cpu_s": round((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), 2),
            "cached_specialisations": nbc, "announced": announce[0] if announce else ""}


class _Inputs:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="proxitrace-bench-numba-"))
        weakref.finalize(self, shutil.rmtree, str(self.root), True)     # caches removed with the inputs
        self.warm: str | None = None
        self.k = 0


def cold(inp: _Inputs) -> dict:
    inp.k += 1
    d = str(inp.root / f"cold-{inp.k}")
    facts = _simulate(d)
    if inp.warm is None:
        inp.warm = d                     # the baseline loads what this run compiled
    return facts


def serial_cold(inp: _Inputs) -> dict:
    inp.k += 1
    return _simulate(str(inp.root / f"cold-{inp.k}"), workers=0)


def warm(inp: _Inputs) -> dict:
    return _simulate(inp.warm)


def details(out: dict) -> dict:
    """The same dict (agree() adds the baselines' facts to it) with the per-kernel breakdown: every
    recorded kernel's cold compile CPU seconds (``--record``'s measurement in ``sim/kernel_signatures.py``,
    largest first) and their sum per module."""
    from sim import kernels                # noqa: PLC0415 - numba only when this benchmark runs

    rec = sorted(((nm, secs) for nm, (_, secs) in kernels.recorded_signatures().items()), key=lambda x: -x[1])
    out["recorded_compile_cpu_s"] = dict(rec)
    per_mod: dict = {}
    for nm, secs in rec:
        mod = nm.rpartition(".")[0]
        per_mod[mod] = round(per_mod.get(mod, 0.0) + secs, 2)
    out["recorded_compile_cpu_s_per_module"] = per_mod
    return out


def agree(ours, name, theirs):
    assert ours["announced"].startswith("compiling "), "the cold run did not announce its compilation"
    if name == "warm-cache":
        assert theirs["announced"] == "", f"{name}: the warm run announced a compilation"
    else:
        assert theirs["announced"].startswith("compiling "), f"{name}: the cold run did not announce"
    key = name.replace("-", "_")
    ours[f"{key}_wall_s"], ours[f"{key}_cpu_s"] = theirs["wall_s"], theirs["cpu_s"]
    ours[f"{key}_cached_specialisations"] = theirs["cached_specialisations"]


def warmup() -> None:
    """Nothing: this benchmark times the compilation itself."""


def cases(quick: bool) -> list[Case]:
    if quick:
        return []
    return [Case(name=NAME, variant="simulate-tiny", size=1, items=1, unit="runs",
                 setup=_Inputs, ours=cold,
                 baselines=[Baseline("warm-cache", warm, note="same command, numba cache filled"),
                            Baseline("serial-cold", serial_cold,
                                     note="same cold command compiled in one process (PROXITRACE_COMPILE_WORKERS=0)")],
                 agree=agree, repeat=1, details=details,
                 params={"preset": "lang-son", "scale": SCALE, "days": 1})]


# ----------------------------------------------------------------------------------------------------
# python -m benchmarks.firstrun --record: rewrite sim/kernel_signatures.py
# ----------------------------------------------------------------------------------------------------
_SIGS_CODE = """
import json, sys, tempfile
from sim import kernels
from sim.run import RUN_KERNELS, simulate
from sim.scenario import preset
simulate(preset("lang-son", %r), tempfile.mkdtemp() + "/run", seed=0, days=1, progress=False)
print(json.dumps({n: [str(s) for s in d.signatures] for n, d in kernels.resolve(RUN_KERNELS)}))
"""
_TIMES_CODE = """
import json, sys, time
from sim import kernels
from sim.run import RUN_KERNELS
sigs = json.load(open(sys.argv[1]))
out = {}
for name, d in kernels.resolve(RUN_KERNELS):
    t0 = time.process_time()
    for s in sigs[name]:
        d.compile(tuple(eval(s, dict(kernels._SIG_NS))))
    out[name] = round(time.process_time() - t0, 2)
print(json.dumps(out))
"""


def record(path: Path = ROOT / "sim" / "kernel_signatures.py") -> Path:
    """Rewrite ``sim/kernel_signatures.py`` (see the module docstring); returns its path."""
    import json

    import numba

    p = subprocess.run([sys.executable, "-c", _SIGS_CODE % SCALE], env=_env(), capture_output=True, text=True,
                       check=True)
    sigs = json.loads(p.stdout.strip().splitlines()[-1])
    tmp = Path(tempfile.mkdtemp(prefix="proxitrace-record-"))
    try:
        (tmp / "sigs.json").write_text(json.dumps(sigs))
        p = subprocess.run([sys.executable, "-c", _TIMES_CODE, str(tmp / "sigs.json")],
                           env=_env(NUMBA_CACHE_DIR=str(tmp / "cache")), capture_output=True, text=True, check=True)
        secs = json.loads(p.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    lines = ['"""Argument types of the simulator\'s numba kernels (``sim.run.RUN_KERNELS``) and the CPU seconds',
             "each took to compile cold, for the parallel first-run compile (:mod:`sim.kernels`).",
             "",
             "Generated by ``python -m benchmarks.firstrun --record`` -- do not edit; re-record after a kernel's",
             'arguments change (``tests/test_sim_budget.py`` checks them against a simulation)."""',
             f"NUMBA_VERSION = {numba.__version__!r}",
             "",
             "KERNELS = {"]
    for name in sigs:
        lines.append(f"    {name!r}: (  # {secs[name]:.2f} s")
        lines.append(f"        {sigs[name]!r},")
        lines.append(f"        {secs[name]!r}),")
    lines.append("}")
    from ble.schema import write_text_atomic
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python -m benchmarks.firstrun --record")
    print(f"wrote {record()}")
