"""First-run compilation of the numba kernels: find the kernels whose on-disk cache is missing or stale,
and say so on the terminal before a long silent compile.

Every kernel is ``@njit(cache=True)``: numba writes the machine code next to the module (in
``__pycache__``, or under ``NUMBA_CACHE_DIR``) the first time a kernel runs and loads it afterwards.  The
first run after an install or an edit therefore compiles; :func:`announce_compilation` prints one line
such as ``compiling 27 kernels, first run only, ~40 s`` to stderr when that is about to happen.

A kernel counts as cached when its cache index exists and is fresh (numba stores the source file's
modification time and size in it; an edited file makes it stale).  The index is per kernel, not per
signature, so a kernel cached for other argument types still counts as cached (the kernels here are
called with one set of types each).
"""
from __future__ import annotations

import sys
import time
from types import ModuleType

from numba.core.registry import CPUDispatcher

__all__ = ["announce_compilation", "uncached_kernels", "SECONDS_PER_KERNEL"]

#: CPU seconds to compile one kernel, measured on the reference machine (2 cores, cold cache, numba 0.68:
#: the simulator's 27 kernels in ~41 CPU s, i.e. ~1.5 s each; parallel kernels take longer, serial ones less)
SECONDS_PER_KERNEL = 1.5


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


def uncached_kernels(modules) -> list[str]:
    """Names (``module.kernel``) of the ``cache=True`` kernels defined in ``modules`` that have no fresh
    on-disk cache and have not been compiled in this process yet.

    Parameters
    ----------
    modules : iterable of modules
        Modules whose top-level numba dispatchers are checked (inlined helpers are compiled into
        their callers and counted there).
    """
    out = []
    for m in modules:
        for name, d in _dispatchers(m):
            if d.signatures:              # already compiled or loaded in this process
                continue
            if getattr(d, "targetoptions", {}).get("inline") == "always":
                continue
            if not _is_cached(d):
                out.append(f"{m.__name__}.{name}")
    return out


def announce_compilation(modules, stream=None) -> float:
    """Print ``compiling N kernels, first run only, ~S s`` to ``stream`` (default stderr) when kernels of
    ``modules`` are about to be compiled; returns the estimate in seconds (0 when all are cached)."""
    t0 = time.perf_counter()
    names = uncached_kernels(modules)
    if not names:
        return 0.0
    est = len(names) * SECONDS_PER_KERNEL
    stream = sys.stderr if stream is None else stream
    print(f"compiling {len(names)} numba kernels, first run only, ~{est:.0f} s on an idle 2-core machine "
          f"(cached afterwards; check took {time.perf_counter() - t0:.2f} s)", file=stream, flush=True)
    return est
