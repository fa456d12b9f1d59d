"""Small numeric helpers shared inside :mod:`ble`."""
from __future__ import annotations

import numpy as np

__all__ = ["quiet_divide"]


def quiet_divide(num, den):
    """``num / den`` without numpy's divide-by-zero / invalid warnings: the inf or NaN of x/0 and 0/0 is
    the intended result (callers mask or keep it)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den
