"""First run after install: a tiny ``proxitrace simulate`` with an empty numba cache (every kernel
compiled) vs the same command with the cache filled (kernels loaded from disk).

*ours* runs ``proxitrace simulate --preset lang-son --scale 0.0005 --days 1`` (about 390 agents: the
simulation itself takes well under a second, so the time is interpreter start-up, imports and the
kernels) in a fresh interpreter with ``NUMBA_CACHE_DIR`` pointing at a new empty folder; the
baseline ``warm-cache`` runs the same command with the folder the cold run filled -- the floor a
compilation-free first run could reach.  ``details`` has the CPU seconds of both (user + system of the
child: steadier than wall-clock on a loaded machine), the number of kernels compiled and the line the
simulator printed to announce it.

Not in ``--quick`` (a cold compile takes a minute or more on two cores).  One repetition.
"""
from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import weakref
from pathlib import Path

from benchmarks._core import Baseline, Case

NAME = "firstrun"
SCALE = 0.0005


def _simulate(cache_dir: str) -> dict:
    """Run the tiny simulation in a fresh interpreter with ``cache_dir``; wall/CPU seconds and stderr."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir,
               PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tempfile.mkdtemp(prefix="proxitrace-bench-firstrun-")
    try:
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.run([sys.executable, "-c", "from tracing.cli import main; import sys; sys.exit(main())",
                            "simulate", "--preset", "lang-son", "--scale", str(SCALE), "--days", "1",
                            "--out", str(Path(out) / "run")],
                           env=env, capture_output=True, text=True, timeout=3600)
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if p.returncode != 0:
        raise RuntimeError(f"simulate failed: {p.stderr[-2000:]}")
    nbc = sum(1 for _ in Path(cache_dir).rglob("*.nbc"))
    announce = [ln for ln in p.stderr.splitlines() if ln.startswith("compiling ")]
    return {"cpu_s": round((r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), 2),
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


def warm(inp: _Inputs) -> dict:
    return _simulate(inp.warm)


def details(out: dict) -> dict:
    return out                 # the same dict: agree() adds the warm run's facts to it


def agree(ours, name, theirs):
    assert ours["announced"].startswith("compiling "), "the cold run did not announce its compilation"
    assert theirs["announced"] == "", f"{name}: the warm run announced a compilation"
    ours["warm_cpu_s"] = theirs["cpu_s"]


def warmup() -> None:
    """Nothing: this benchmark times the compilation itself."""


def cases(quick: bool) -> list[Case]:
    if quick:
        return []
    return [Case(name=NAME, variant="simulate-tiny", size=1, items=1, unit="runs",
                 setup=_Inputs, ours=cold,
                 baselines=[Baseline("warm-cache", warm, note="same command, numba cache filled")],
                 agree=agree, repeat=1, details=details,
                 params={"preset": "lang-son", "scale": SCALE, "days": 1})]
