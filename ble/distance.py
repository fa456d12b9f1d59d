"""Distance from RSSI (dBm) or GAEN attenuation (dB) under the log-normal radio model of :mod:`ble.radio`.

The model says ``rssi = ref + offset - 10 n log10(d / 1 m) + sigma z`` (``ref = params.ref_rssi_1m``,
``n = params.exponent``, ``sigma = params.sigma_db``, z standard normal), so ``x = log10 d`` has, given one
reading, the Gaussian likelihood with mean ``x_hat = (ref + offset - rssi) / (10 n)`` and standard
deviation ``s = sigma / (10 n)``. Everything here is closed form and vectorised.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from ble._util import quiet_divide
from ble.radio import RadioParams, default_params

__all__ = ["estimate_distance", "p_within"]


def _rssi_input(rssi, attenuation, p: RadioParams, tx_dbm):
    if (rssi is None) == (attenuation is None):
        raise ValueError("pass exactly one of rssi= (dBm) or attenuation= (dB)")
    if rssi is not None:
        r = np.asarray(rssi, dtype=np.float64)
    else:
        tx = p.tx_dbm if tx_dbm is None else np.asarray(tx_dbm, dtype=np.float64)
        r = tx - np.asarray(attenuation, dtype=np.float64)     # attenuation = tx - rssi
    if np.isinf(r).any():
        raise ValueError("rssi / attenuation must not be infinite (NaN = missing is passed through)")
    return r


def estimate_distance(rssi=None, attenuation=None, params: RadioParams | None = None, tx_dbm=None,
                      level: float = 0.68, offset_db=0.0):
    """Maximum-likelihood distance (m) and a ``level`` interval from one RSSI or attenuation reading.

    ``rssi`` in dBm, or ``attenuation`` in dB (converted with ``rssi = tx - attenuation``, ``tx`` =
    ``tx_dbm`` or ``params.tx_dbm``). ``offset_db``: known carriage/platform/device offset of the pair
    (dB, as in :func:`ble.radio.mean_rssi`). Returns ``(d_ml, d_lo, d_hi)`` in metres, arrays shaped like
    the input (NaN where the input is NaN):

    - ``d_ml = 10 ** ((ref + offset - rssi) / (10 n))`` inverts the mean exactly;
    - ``[d_lo, d_hi] = d_ml * 10 ** (-/+ k sigma / (10 n))`` with ``k = Phi^-1((1 + level) / 2)``: for any
      true distance, the interval covers it with probability ``level`` (it is a pivot: the error of
      ``log10 d_ml`` is N(0, s^2)).

    The model's mean is flat below ``params.min_distance_m``, so all three are clipped from below there.
    """
    p = params if params is not None else default_params()
    if not (0.0 < level < 1.0):
        raise ValueError(f"level must be in (0, 1), got {level}")
    r = _rssi_input(rssi, attenuation, p, tx_dbm)
    x = (p.ref_rssi_1m + np.asarray(offset_db, dtype=np.float64) - r) / (10.0 * p.exponent)
    half = ndtri(0.5 * (1.0 + level)) * p.sigma_db / (10.0 * p.exponent)
    dmin = p.min_distance_m
    d_ml = np.maximum(10.0 ** x, dmin)
    d_lo = np.maximum(10.0 ** (x - half), dmin)
    d_hi = np.maximum(10.0 ** (x + half), dmin)
    return d_ml, d_lo, d_hi


def _trunc_normal_cdf(x0, m, s, a, b):
    """P(X <= x0) for X ~ N(m, s^2) truncated to [a, b]; stable in both tails."""
    za, zb, z0 = (a - m) / s, (b - m) / s, (np.clip(x0, a, b) - m) / s
    upper = za > 0                        # whole window in the upper tail: use survival functions
    num_lo = ndtr(z0) - ndtr(za)
    den_lo = ndtr(zb) - ndtr(za)
    num_up = ndtr(-za) - ndtr(-z0)
    den_up = ndtr(-za) - ndtr(-zb)
    num = np.where(upper, num_up, num_lo)
    den = np.where(upper, den_up, den_lo)
    out = quiet_divide(num, den)
    # window far in a tail: all mass at the bound nearest the mean
    degenerate = ~(den > 0)
    nearest = np.where(m <= a, a, b)
    out = np.where(degenerate, (nearest <= x0).astype(float), out)
    return np.clip(out, 0.0, 1.0)


def p_within(rssi, d0, params: RadioParams | None = None, *, max_range_m: float = 20.0, offset_db=0.0):
    """P(true distance <= ``d0`` m | one reading ``rssi`` dBm), vectorised over ``rssi`` and ``d0``.

    Prior: the other phone is uniformly distributed over the area of a disc of radius ``max_range_m``
    (m) around the receiver, outside ``params.min_distance_m`` -- density proportional to d on
    ``[min_distance_m, max_range_m]``; beyond ``max_range_m`` nothing is heard. In ``x = log10 d`` this
    prior is proportional to ``10 ** (2 x)``, which tilts the Gaussian likelihood (mean ``x_hat``, sd
    ``s``, see the module docstring) into a Gaussian with mean ``x_hat + 2 ln(10) s^2`` and sd ``s``,
    truncated to the prior's range: the posterior CDF is closed form. Receiver sensitivity (the floor)
    does not enter: a received reading carries no extra information about d beyond its value.
    ``offset_db`` as in :func:`estimate_distance`. NaN readings give NaN.
    """
    p = params if params is not None else default_params()
    if not (max_range_m > p.min_distance_m):
        raise ValueError(f"max_range_m ({max_range_m}) must exceed min_distance_m ({p.min_distance_m})")
    r = _rssi_input(rssi, None, p, None)
    d0 = np.asarray(d0, dtype=np.float64)
    if (d0 <= 0).any():
        raise ValueError("d0 (m) must be > 0")
    a, b = np.log10(p.min_distance_m), np.log10(max_range_m)
    if p.sigma_db == 0:
        d_ml = np.clip(10.0 ** ((p.ref_rssi_1m + offset_db - r) / (10.0 * p.exponent)), p.min_distance_m,
                       max_range_m)
        return np.where(np.isnan(r), np.nan, (d_ml <= d0).astype(float))
    s = p.sigma_db / (10.0 * p.exponent)
    x_hat = (p.ref_rssi_1m + np.asarray(offset_db, dtype=np.float64) - r) / (10.0 * p.exponent)
    m = x_hat + 2.0 * np.log(10.0) * s * s
    out = _trunc_normal_cdf(np.log10(d0), m, s, a, b)
    return np.where(np.isnan(r), np.nan, out)
