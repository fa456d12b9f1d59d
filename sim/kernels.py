"""First-run compilation of the numba kernels: find the kernels whose on-disk cache is missing or stale,
and say so on the terminal before a long silent compile.

Every kernel is ``@njit(cache=True)``: numba writes the machine code next to the module (in
``__pycache__``, or under ``NUMBA_CACHE_DIR``) the first time a kernel runs and loads it afterwards.  The
first run after an install or an edit therefore compiles; :func:`announce_compilation` prints one line
such as ``compiling 23 numba kernels, first run only, ~90 s`` to stderr when that is about to happen.

A kernel counts as cached when its cache index exists and is fresh (numba stores the source file's
modification time and size in it; an edited file makes it stale).  The index is per kernel, not per
signature, so a kernel cached for other argument types still counts as cached (the kernels here are
called with one set of types each).

Parallel first compile: numba compiles one kernel at a time per process (a global compiler lock), so
on a cold cache :func:`announce_compilation` also splits the uncached kernels between this process and
``min(cores, kernels) - 1`` worker processes (``python -m sim.kernels --compile``) that compile
their share with the argument types recorded in :mod:`sim.kernel_signatures` and write it to the
on-disk cache (numba keeps one index file per kernel and writes every cache file through a temporary
file and a rename, so processes filling the cache with different kernels do not collide); this
process compiles its own share meanwhile and afterwards loads the workers' kernels from the cache.  The
shares are dynamic: every process takes the longest kernel that no process has taken yet (one claim
file per kernel, created atomically), so the processes finish within about one kernel of each other
whatever their start-up delays; the CPU time is unchanged.  Kernels without a recorded signature (or with stale ones: then the
specialisation compiled ahead is just not used) compile on first call as before.
``PROXITRACE_COMPILE_WORKERS=0`` turns the workers off.  ``python -m sim.kernels --compile-all`` (run by
``make install``) fills the cache ahead, so that even the first run loads every kernel.  ``python -m benchmarks.firstrun --record`` rewrites
:mod:`sim.kernel_signatures` after a kernel's argument types change (``tests/test_sim_budget.py`` checks
that they match what a simulation passes).
"""
from __future__ import annotations

import importlib
import json
import os
import shutil
import itertools
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType

import numba
import numpy as np
from numba.core import types as nbtypes
from numba.core.registry import CPUDispatcher

__all__ = ["announce_compilation", "uncached_kernels", "resolve", "recorded_signatures", "precompile",
           "compile_all", "run_blocks", "even_cuts",
           "weighted_cuts", "par_cuts"]


def _dispatchers(module: ModuleType):
    for name in sorted(vars(module)):
        obj = getattr(module, name)
        if isinstance(obj, CPUDispatcher) and getattr(obj, "__module__", None) == module.__name__:
            yield name, obj


def _is_cached(disp) -> bool:
    cache = getattr(disp, "_cache", None)
    index = getattr(getattr(cache, "_cache_file", None), "_load_index", None)
    if index is None:                 # no cache (cache=False) or a numba without this layout
        return True                   # nothing to announce rather than a wrong announcement
    try:
        return bool(index())
    except Exception:                 # unreadable index: numba will recompile
        return False


def resolve(spec) -> list[tuple[str, object]]:
    """``[(qualified name, dispatcher)]`` of ``spec``: ``{module name: kernel names}`` (modules must be
    imported already) or an iterable of modules (every top-level ``cache=True`` kernel, inlined
    helpers left out: they are compiled into their callers)."""
    out = []
    if isinstance(spec, dict):
        for mod, names in spec.items():
            m = sys.modules[mod]
            out += [(f"{mod}.{k}", getattr(m, k)) for k in names]
        return out
    for m in spec:
        out += [(f"{m.__name__}.{k}", d) for k, d in _dispatchers(m)
                if getattr(d, "targetoptions", {}).get("inline") != "always"]
    return out


def uncached_kernels(spec) -> list[str]:
    """Names of the kernels of ``spec`` (see :func:`resolve`) that have no fresh on-disk cache and have
    not been compiled or loaded in this process yet."""
    return [name for name, d in resolve(spec) if not d.signatures and not _is_cached(d)]


def announce_compilation(spec, seconds: float, stream=None, workers: int | None = None) -> float:
    """Print ``compiling N numba kernels, first run only, ~S s`` to ``stream`` (default stderr) when
    kernels of ``spec`` are about to be compiled, then compile them ahead in parallel (:func:`precompile`)
    where their argument types are recorded; ``seconds``: the measured CPU time to compile all of them
    (the estimate is its share for the uncached ones, divided among the processes).  ``workers``: extra
    processes (default: cores - 1, or ``PROXITRACE_COMPILE_WORKERS``).  Returns the estimate (s, wall;
    0 when all are cached)."""
    t0 = time.perf_counter()
    todo = uncached_kernels(spec)
    if not todo:
        return 0.0
    sigs = recorded_signatures()
    known = [k for k in todo if k in sigs]
    procs = 1 + min(_workers() if workers is None else int(workers), max(len(known) - 1, 0))
    est = seconds * len(todo) / max(len(resolve(spec)), 1)
    if procs > 1:            # the unknown kernels' share, and the largest of the parallel shares
        rec = {k: sigs[k][1] for k in known}
        share = max(sum(rec[k] for k in b) for b in _shares(known, sigs, procs)) / max(sum(rec.values()), 1e-9)
        est = est * (len(todo) - len(known)) / len(todo) + est * len(known) / len(todo) * share
    stream = sys.stderr if stream is None else stream
    how = f" in {procs} processes" if procs > 1 else ""
    print(f"compiling {len(todo)} numba kernels{how}, first run only, ~{est:.0f} s on an idle 2-core "
          f"machine (cached afterwards; check took {time.perf_counter() - t0:.2f} s)", file=stream, flush=True)
    if procs > 1:
        precompile(dict(resolve(spec)), known, procs - 1, sigs)
    return est


def _workers() -> int:
    env = os.environ.get("PROXITRACE_COMPILE_WORKERS")
    if env is not None and env.strip().isdigit():
        return int(env)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:          # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(cores - 1, 0)


_SIG_NS = {k: getattr(nbtypes, k) for k in dir(nbtypes) if not k.startswith("_")}
_SIG_NS.update({"bool": nbtypes.boolean, "Array": nbtypes.Array, "Record": nbtypes.Record})


def recorded_signatures() -> dict:
    """``{qualified kernel name: (signatures as numba type tuples, compile seconds)}`` from
    :mod:`sim.kernel_signatures`; empty when it was recorded with another numba or is unreadable."""
    try:
        from sim import kernel_signatures as ks
    except ImportError:
        return {}
    if getattr(ks, "NUMBA_VERSION", None) != numba.__version__:
        return {}
    out = {}
    for name, (sigs, secs) in ks.KERNELS.items():
        try:
            out[name] = ([tuple(eval(s, dict(_SIG_NS))) for s in sigs], float(secs))
        except Exception:          # a type this numba cannot rebuild: compiled on first call instead
            continue
    return out


def _compile(name: str, disp, sigs) -> None:
    for sig in sigs:
        try:
            disp.compile(sig)      # loads from or writes to the on-disk cache (cache=True)
        except Exception:          # stale signature: the kernel compiles on first call instead
            pass


def _shares(names: list, sigs: dict, k: int) -> list[list]:
    """Split ``names`` into ``k`` lists of about equal recorded compile time (longest first)."""
    bins, load = [[] for _ in range(k)], [0.0] * k
    for nm in sorted(names, key=lambda x: -sigs[x][1]):
        b = load.index(min(load))
        bins[b].append(nm)
        load[b] += sigs[nm][1]
    return bins


def _claim(claims: str, name: str) -> bool:
    """Claim kernel ``name`` for this process: True for the one process that creates its claim file in
    the folder ``claims`` (``O_CREAT | O_EXCL``: atomic, so every kernel is compiled exactly once)."""
    try:
        os.close(os.open(os.path.join(claims, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        return False


def _compile_claimed(claims: str, order: list, dispatchers, sigs) -> list:
    """Compile, longest first, every kernel of ``order`` that this process claims; returns those."""
    mine = []
    for nm in order:
        if _claim(claims, nm):
            _compile(nm, dispatchers(nm), sigs[nm])
            mine.append(nm)
    return mine


def precompile(dispatchers: dict, names: list, workers: int, sigs: dict | None = None) -> list:
    """Compile the kernels ``names`` (keys of ``dispatchers``: qualified name -> dispatcher) with their
    recorded signatures in this process and ``workers`` worker processes (``python -m sim.kernels
    --compile``, writing the on-disk cache).  Every process takes the longest kernel nobody has taken
    yet (a claim file each, in a fresh temporary folder), so the processes end within about one
    kernel of each other whatever their start-up delays; this one then waits for the workers.
    Returns the kernels compiled in this process."""
    sigs = recorded_signatures() if sigs is None else sigs
    order = sorted((n for n in names if n in sigs), key=lambda n: -sigs[n][1])
    if not order:
        return []
    claims = tempfile.mkdtemp(prefix="proxitrace-compile-")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))     # where the sim package lies
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    procs = []
    try:
        for _ in range(min(workers, len(order) - 1)):     # {claims, kernels: {name: [signature repr]}}
            p = subprocess.Popen([sys.executable, "-m", "sim.kernels", "--compile"], env=env, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            p.stdin.write(json.dumps({"claims": claims,
                                      "kernels": {nm: [str(sig) for sig in sigs[nm][0]] for nm in order}}))
            p.stdin.close()
            procs.append(p)
        mine = _compile_claimed(claims, order, dispatchers.__getitem__, {nm: sigs[nm][0] for nm in order})
        for p in procs:
            try:
                p.wait(timeout=1800)
            except subprocess.TimeoutExpired:      # pragma: no cover - the kernels compile on first call
                p.kill()
    finally:
        shutil.rmtree(claims, ignore_errors=True)
    return mine


def _worker(job: dict) -> int:
    """Compile the kernels of ``{"claims": folder, "kernels": {qualified name: [signature repr, ...]}}``
    that this process claims, in the given order (``python -m sim.kernels --compile``)."""
    def disp(nm):
        mod, _, kern = nm.rpartition(".")
        return getattr(importlib.import_module(mod), kern)
    todo = job["kernels"]
    _compile_claimed(job["claims"], list(todo), disp,
                     {nm: [tuple(eval(s, dict(_SIG_NS))) for s in sg] for nm, sg in todo.items()})
    return 0


def compile_all(stream=None) -> int:
    """Fill the on-disk cache with every recorded kernel (``python -m sim.kernels --compile-all``: the
    install step of ``make install``), in parallel processes; returns the number compiled."""
    t0 = time.perf_counter()
    sigs = recorded_signatures()
    disp = {}
    for nm in sigs:
        mod, _, kern = nm.rpartition(".")
        disp[nm] = getattr(importlib.import_module(mod), kern)
    todo = [nm for nm, d in disp.items() if not _is_cached(d)]
    precompile(disp, todo, _workers(), sigs)
    print(f"compiled {len(todo)} of {len(sigs)} numba kernels in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr if stream is None else stream, flush=True)
    return len(todo)


# ----------------------------------------------------------------------------------------------------
# parallel passes without parallel=True: serial nogil kernels over chunks of blocks on Python threads
# ----------------------------------------------------------------------------------------------------
_POOL: list = [None, 0]            # [ThreadPoolExecutor, the pid that made it] (a forked child makes its own)
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    with _POOL_LOCK:
        if _POOL[0] is None or _POOL[1] != os.getpid():
            _POOL[0], _POOL[1] = ThreadPoolExecutor(max_workers=64, thread_name_prefix="proxitrace-kernel"), os.getpid()
        return _POOL[0]


def run_blocks(kernel, threads: int, cuts, *args) -> None:
    """``kernel(*args, b0, b1)`` over the blocks ``cuts[0] .. cuts[-1] - 1`` in the chunks ``cuts[c] ..
    cuts[c + 1] - 1``: one call over everything for one thread, else ``threads`` threads (this one and
    pool threads) take the next chunk until none is left.  ``kernel``: ``@njit(cache=True, nogil=True)``
    (it must release the GIL), serial, writing every block's output to its own place, so the result
    is the same for any split and any order.  A serial kernel compiles several times faster than a
    ``parallel=True`` one (each ``prange`` is outlined and compiled as a separate gufunc: the sorted
    cell list went from 14.5 to 4.0 CPU s), and a thread the OS deschedules delays only the chunk it
    holds (a static split waits for its slowest part)."""
    cuts = [int(c) for c in cuts]
    nch = len(cuts) - 1
    if threads <= 1 or nch <= 1:
        kernel(*args, cuts[0], cuts[-1])
        return
    nxt = itertools.count()               # next() is atomic under the GIL

    def work():
        c = next(nxt)
        while c < nch:
            kernel(*args, cuts[c], cuts[c + 1])
            c = next(nxt)

    futs = [_pool().submit(work) for _ in range(min(threads, nch) - 1)]
    try:
        work()
    finally:
        for f in futs:
            f.result()


def even_cuts(nblk: int, parts: int) -> list:
    """Cuts of ``nblk`` blocks into ``min(parts, nblk)`` contiguous chunks of equal count (for
    :func:`run_blocks`)."""
    k = max(1, min(parts, nblk))
    return [t * nblk // k for t in range(k + 1)]


def weighted_cuts(start, parts: int) -> list:
    """Cuts of the blocks of the offsets ``start`` (n_blocks + 1, non-decreasing) into at most ``parts``
    contiguous chunks of about equal weight ``start[b + 1] - start[b]`` (for :func:`run_blocks`; block
    indices 0 .. n_blocks, empty chunks dropped)."""
    nb = len(start) - 1
    if parts <= 1 or nb <= 1:
        return [0, max(nb, 0)]
    s = np.asarray(start, np.int64) - int(start[0])
    mid = np.searchsorted(s, np.arange(1, parts, dtype=np.int64) * int(s[-1]) // parts, side="right") - 1
    return sorted({0, nb, *np.clip(mid, 0, nb).tolist()})


def par_cuts(n: int, grain: int = 1 << 14) -> tuple:
    """``(threads, cuts)`` for :func:`run_blocks` over ``n`` independent items (the iterations of a
    former ``prange`` loop): numba's thread count (``NUMBA_NUM_THREADS``, as ``prange`` used) and about
    four chunks a thread of at least ``grain`` items; one call (no thread) below ``2 grain`` items."""
    threads = numba.get_num_threads()
    k = max(1, min(4 * threads, n // grain)) if threads > 1 else 1
    return (threads if k > 1 else 1), even_cuts(n, k)


if __name__ == "__main__":          # python -m sim.kernels --compile-all | --compile NAME ... (a worker)
    if sys.argv[1:] == ["--compile-all"]:
        compile_all()
        sys.exit(0)
    if sys.argv[1:] != ["--compile"]:
        sys.exit("usage: python -m sim.kernels --compile-all | --compile < {name: [signature, ...]} (JSON)")
    sys.exit(_worker(json.load(sys.stdin)))
