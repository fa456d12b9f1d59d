"""One home for argument checks and quiet NaN arithmetic (the scikit-learn ``utils/validation`` idea).

Every check raises ``ValueError`` with one line naming the argument, so that the command line can
print it as it is (``tracing.cli``) before any work starts.
"""
from __future__ import annotations

import contextlib
import math
import warnings

import numpy as np

from ble.schema import check_out_path, shown

__all__ = ["quiet_nan", "check_fraction", "check_int", "check_positive", "check_seed", "check_out_path"]


@contextlib.contextmanager
def quiet_nan():
    """Silence numpy's invalid/divide warnings and the RuntimeWarnings of ``nanmean`` & co. on
    all-NaN slices: inside, NaN is an expected answer ("no data at this level"), not an accident."""
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _number(name: str, v) -> float:
    if isinstance(v, bool):
        raise ValueError(f"{name} must be a number, got {shown(v)}")
    try:
        x = float(v)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {shown(v)}") from None
    if not math.isfinite(x):
        raise ValueError(f"{name} must be a finite number, got {shown(v)}")
    return x


def check_fraction(name: str, v, *, open_low: bool = False) -> float:
    """A number in [0, 1] (``open_low``: (0, 1])."""
    x = _number(name, v)
    if not (0 < x <= 1 if open_low else 0 <= x <= 1):
        raise ValueError(f"{name} must lie in {'(0' if open_low else '[0'}, 1], got {shown(v)}")
    return x


def check_positive(name: str, v, *, allow_zero: bool = False) -> float:
    """A finite number > 0 (``allow_zero``: >= 0)."""
    x = _number(name, v)
    if not (x >= 0 if allow_zero else x > 0):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {shown(v)}")
    return x


def check_int(name: str, v, *, minimum: int = 0) -> int:
    """An integer >= ``minimum``."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {shown(v)}")
    return int(v)


def check_seed(name: str, v) -> int:
    """A seed: an integer in [0, 2**63)."""
    s = check_int(name, v, minimum=0)
    if s >= 2 ** 63:
        raise ValueError(f"{name} must be < 2**63, got {shown(v)}")
    return s

