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
"""
from __future__ import annotations

import sys
import time
from types import ModuleType

from numba.core.registry import CPUDispatcher

__all__ = ["announce_compilation", "uncached_kernels", "resolve"]


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


def announce_compilation(spec, seconds: float, stream=None) -> float:
    """Print ``compiling N numba kernels, first run only, ~S s`` to ``stream`` (default stderr) when
    kernels of ``spec`` are about to be compiled; ``seconds``: the measured time to compile all of them
    (the estimate is its share for the uncached ones).  Returns the estimate (0 when all are cached)."""
    t0 = time.perf_counter()
    todo = uncached_kernels(spec)
    if not todo:
        return 0.0
    est = seconds * len(todo) / max(len(resolve(spec)), 1)
    stream = sys.stderr if stream is None else stream
    print(f"compiling {len(todo)} numba kernels, first run only, ~{est:.0f} s on an idle 2-core machine "
          f"(cached afterwards; check took {time.perf_counter() - t0:.2f} s)", file=stream, flush=True)
    return est
