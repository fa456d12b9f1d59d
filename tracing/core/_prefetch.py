"""``prefetch(arr, i)``: a software prefetch of ``arr[i]`` for numba kernels (the ID matching's group
prefetching, :mod:`tracing.core.matching`).  The intrinsic lives in :mod:`ble._prefetch` (the simulator
uses it too, and ``sim`` does not import ``tracing``); this module re-exports it."""
from __future__ import annotations

from ble._prefetch import prefetch

__all__ = ["prefetch"]
