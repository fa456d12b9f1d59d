"""Engines that run the work units of a sweep (:mod:`tracing.sweep.tasks`).

Engines: :class:`InProcess` (the default: units one after the other in topological order) and
:class:`DaskEngine` (``--dask ADDRESS`` of a running scheduler, or ``--dask local`` for a
``LocalCluster`` of ``--workers`` processes with one thread each). Workers must import the same
``proxitrace`` and see the output folder at the same path (a shared file system).

A Dask engine never waits silently: it waits at most ``worker_timeout_s`` for a first worker, and while
units are pending it fails with one line once the scheduler has had no worker for that long. Every
worker must run the same code (:func:`environment`: proxitrace version, digest of the installed code
and packaged data, Python, numpy, numba, pyarrow); a worker that differs is refused with one line
(before any unit is submitted, and when it joins later), so no unit is computed by other code.
"""
from __future__ import annotations

import ctypes
import json
import multiprocessing
import platform
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numba
import numpy as np
import pyarrow

from ble.schema import write_text_atomic
from sim.run import code_digest
from tracing.sweep.tasks import Task
from tracing.version import __version__

__all__ = ["RunLog", "InProcess", "DaskEngine", "make_engine", "write_timings", "environment",
           "check_environments", "release_memory", "run_unit", "run_isolated", "ISOLATE_PEAK_BYTES"]

#: estimated peak of a replicate (:func:`sim.budget.estimate_sweep`) from which the in-process engine
#: runs each unit in a fresh process: memory a unit freed but the allocators kept (glibc's heaps of the
#: simulator's threads, fragments between live blocks) cannot raise the next unit's peak. The 1:1 Lang
#: Son x 14 days sweep peaked at 7.96 GiB in its curves unit in one process, with malloc_trim and
#: pyarrow's release after each unit, against 7.08 GiB for that unit alone, and at 7.14 GiB with a fresh
#: process per unit (same bytes out); a fresh process costs ~2 s (imports, kernels from numba's cache):
#: 39 s of that sweep's 28.5 min, whose units take 30 s and more
ISOLATE_PEAK_BYTES = 4 * 2**30

#: seconds a Dask engine waits for a worker (at start, and while units are pending) before failing
WORKER_TIMEOUT_S = 60.0

try:                                  # glibc's malloc_trim (absent on macOS, musl, Windows)
    _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim
except (OSError, AttributeError, TypeError):
    _MALLOC_TRIM = None


def release_memory() -> None:
    """Hand the memory a finished unit freed back to the system, so that the next unit of a long-lived
    process (the sweep's own, a Dask worker) starts from the interpreter's size: pyarrow's pool
    (mimalloc and jemalloc keep freed pages) and glibc's malloc (freed chunks inside its heaps, one per
    thread that allocated -- the simulator's writer and kernel threads -- stay resident until trimmed).
    Measured (issue 16): after a simulated unit of 50,026 agents x 2 days the process held 684 MiB,
    344 MiB after this; the 1:1 Lang Son x 14 days sweep peaked at 8.45 GiB in its curves unit in the
    sweep's process, 7.96 GiB with this, against 7.08 GiB in a fresh one (hence
    :data:`ISOLATE_PEAK_BYTES`: 7.14 GiB for that sweep with a fresh process per unit)."""
    pyarrow.default_memory_pool().release_unused()
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def run_unit(fn, *args):
    """``fn(*args)`` (a unit of :mod:`tracing.sweep.tasks`), then :func:`release_memory`."""
    try:
        return fn(*args)
    finally:
        release_memory()


def _die_with_parent() -> None:
    """Linux: the unit's process gets SIGTERM when the sweep's process dies (killed, say), instead of
    computing on alone (beside a resumed sweep that would compute the same unit)."""
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)          # PR_SET_PDEATHSIG
    except (OSError, AttributeError, TypeError):
        pass


def run_isolated(fn, *args):
    """``fn(*args)`` in a fresh (spawned) process, its result or exception returned to this one; the
    unit's memory is the system's again when it ends. ``spawn``, not ``fork``: numba's and pyarrow's
    thread pools of this process must not be copied mid-use."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_die_with_parent) as ex:
        return ex.submit(fn, *args).result()


def environment() -> dict:
    """What a process must share with the client to compute the same bytes (run on every worker)."""
    return {"proxitrace": __version__, "code": code_digest(), "python": platform.python_version(),
            "numpy": np.__version__, "numba": numba.__version__, "pyarrow": pyarrow.__version__}


def check_environments(mine: dict, workers: dict, where: str) -> None:
    """Raise a one-line ValueError naming the first worker (of ``{address: environment}``) whose
    environment differs from ``mine``."""
    for addr in sorted(workers):
        theirs = workers[addr]
        if not isinstance(theirs, dict):
            raise ValueError(f"{where}: worker {addr} cannot run proxitrace's environment check "
                             f"({type(theirs).__name__}: {theirs}); refusing it")
        diff = [k for k in mine if theirs.get(k) != mine[k]]
        if diff:
            k = diff[0]
            raise ValueError(f"{where}: worker {addr} runs {k} {theirs.get(k)!s} but this process runs "
                             f"{mine[k]} ({', '.join(diff)} differ); refusing it (results would differ)")


@dataclass
class RunLog:
    """Appends one line per finished unit to ``out/sweep.log`` (and stderr when ``echo``)."""
    path: Path
    echo: bool = False
    results: list = field(default_factory=list)

    def __call__(self, res: dict) -> None:
        self.results.append(res)
        line = f"{res['status']:8s} {res['unit']} ({res.get('seconds', 0):.2f} s)"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        if self.echo:
            print(line, file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(text + "\n")
        if self.echo:
            print(text, file=sys.stderr, flush=True)


class InProcess:
    """Run the tasks one after the other, in the (topological) order given; with ``shuffle`` (a
    seed) in a random topological order instead (tests: results must not depend on the order); with
    ``isolate`` each in a fresh process (:func:`run_isolated`; the sweep asks for it from
    :data:`ISOLATE_PEAK_BYTES`), else in this one followed by :func:`release_memory`."""

    def __init__(self, shuffle: int | None = None, isolate: bool = False):
        self.shuffle = shuffle
        self.isolate = bool(isolate)
        self.name = "in-process, a fresh process per unit" if self.isolate else "in-process"

    def run(self, tasks: list[Task], log: RunLog) -> None:
        if self.shuffle is not None:
            tasks = _random_topological(tasks, np.random.default_rng(self.shuffle))
        for t in tasks:
            log(run_isolated(t.fn, *t.args) if self.isolate else run_unit(t.fn, *t.args))

    def close(self):
        pass


def _random_topological(tasks: list[Task], rng: np.random.Generator) -> list[Task]:
    """The tasks in a random order that still runs every task after its dependencies."""
    left, done, out = list(tasks), set(), []
    while left:
        ready = [t for t in left if all(d in done for d in t.deps)]
        t = ready[int(rng.integers(len(ready)))]
        left.remove(t)
        done.add(t.key)
        out.append(t)
    return out


class DaskEngine:
    """Run the tasks on a Dask scheduler (``address``) or on a fresh ``LocalCluster``
    (``address="local"``: ``workers`` processes, one thread each)."""

    def __init__(self, address: str, workers: int = 2, worker_timeout_s: float = WORKER_TIMEOUT_S):
        try:  # dask is imported only when a Dask engine is asked for (a heavy import)
            from distributed import Client, LocalCluster
        except ImportError as e:  # pragma: no cover - dask is a declared dependency
            raise ValueError(f"--dask needs dask.distributed: {e}") from e
        self.cluster = None
        self.where = f"--dask {address}"
        self.worker_timeout_s = float(worker_timeout_s)
        self.checked: set = set()
        if address == "local":
            if workers < 1:
                raise ValueError("--workers must be >= 1")
            # one core per worker: numba kernels run single-threaded in each worker process (the
            # results do not depend on it; oversubscribed numba thread pools are very slow)
            self.cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=40,
                                        env={"NUMBA_NUM_THREADS": "1"})
            self.client = Client(self.cluster)
            self.name = f"dask LocalCluster ({workers} worker processes × 1 thread)"
        else:
            try:
                self.client = Client(address, timeout="20s")
            except OSError as e:
                raise ValueError(f"--dask {address}: cannot reach the scheduler: {e}") from e
            self.name = f"dask scheduler {address}"
        try:
            try:
                self.client.wait_for_workers(1, timeout=self.worker_timeout_s)
            except TimeoutError as e:
                raise TimeoutError(f"{self.where}: no worker joined the scheduler within "
                                 f"{self.worker_timeout_s:g} s") from e
            self._check_workers()
        except BaseException:
            self.close()
            raise

    def _local_environment(self) -> dict:
        return environment()

    def _check_workers(self) -> int:
        """Check the environment of workers not seen before; return the number of workers now."""
        try:
            info = self.client.scheduler_info(n_workers=-1)     # every worker (distributed >= 2025)
        except TypeError:                                       # older distributed lists them all anyway
            info = self.client.scheduler_info()
        addrs = set(info.get("workers", {}))
        new = sorted(addrs - self.checked)
        if new:
            envs = self.client.run(environment, workers=new, on_error="return")
            check_environments(self._local_environment(), envs, self.where)
            self.checked.update(new)
        return len(addrs)

    def run(self, tasks: list[Task], log: RunLog) -> None:
        from distributed import wait  # heavy optional import, only with --dask
        futures = {}
        for t in tasks:
            deps = [futures[k] for k in t.deps]
            futures[t.key] = self.client.submit(run_unit, t.fn, *t.args, *deps, key=t.key, pure=False,
                                                retries=1)
        pending = set(futures.values())
        poll = min(5.0, max(self.worker_timeout_s / 4, 0.05))
        alone_since = None            # monotonic time since when the scheduler has had no worker
        try:
            while pending:
                try:
                    done = wait(list(pending), timeout=poll, return_when="FIRST_COMPLETED").done
                except TimeoutError:
                    done = set()
                for fut in sorted(done, key=lambda f: str(f.key)):
                    pending.discard(fut)
                    log(fut.result())
                if not pending:
                    break
                if self._check_workers() > 0:
                    alone_since = None
                elif alone_since is None:
                    alone_since = time.monotonic()
                elif time.monotonic() - alone_since > self.worker_timeout_s:
                    raise TimeoutError(f"{self.where}: the scheduler has had no worker for "
                                       f"{self.worker_timeout_s:g} s with {len(pending)} unit(s) pending")
        except BaseException:
            for fut in futures.values():
                fut.cancel()
            raise

    def close(self):
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def make_engine(dask: str | None, workers: int = 2, worker_timeout_s: float = WORKER_TIMEOUT_S, *,
                isolate: bool = False):
    """:class:`DaskEngine` for ``--dask``, else :class:`InProcess` (``isolate``: a fresh process per unit)."""
    return InProcess(isolate=isolate) if not dask else DaskEngine(dask, workers, worker_timeout_s)


def write_timings(out: Path, engine: str, seconds: float, results: list) -> None:
    """``timings.json``: the engine and wall-clock times (the only output that differs between runs)."""
    done = [r for r in results if r["status"] == "done"]
    write_text_atomic(Path(out) / "timings.json", json.dumps({
        "engine": engine, "wall_s": round(seconds, 2), "units": len(results),
        "units_run": len(done), "units_skipped": len(results) - len(done),
        "unit_seconds": round(sum(r.get("seconds", 0) for r in done), 2)}, indent=2) + "\n")
