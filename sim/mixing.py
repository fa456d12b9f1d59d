"""A synthetic well-mixed contact process (for theory checks and tests of :mod:`sim.epidemic`).

Each agent starts a fixed number of contacts per day with uniformly random partners (fresh every day);
all draws are counter-based (:mod:`sim.rng`, streams ``ST_MIX_*``), so a day depends on
(seed, day) only. Units: times in seconds (day ``d`` is ``[86400 d, 86400 (d + 1))``), distances in
metres, durations in seconds.
"""
from __future__ import annotations

import numba
import numpy as np

from sim.rng import ST_MIX_DIST, ST_MIX_PARTNER, ST_MIX_TIME, stream_hash, unif

__all__ = ["well_mixed_day"]


@numba.njit(parallel=True, cache=True)
def _mixing_kernel(n, k_per_agent, day, seed, dist_lo, dist_hi, dur_s, oi, oj, ot, od):
    """Contacts of one day, ``k_per_agent`` started by each agent.

    Parameters
    ----------
    n, k_per_agent, day : int
    seed : uint64
    dist_lo, dist_hi : float
        m, range of the uniform distance.
    dur_s : float
        s, duration of every contact (unused here; the caller fills ``dt_s``).

    Returns
    -------
    None; fills row ``a * k_per_agent + k`` of ``oi``, ``oj`` (int64, shape (n k,): agents), ``ot``
    (float64, s) and ``od`` (float64, m).
    """
    for a in numba.prange(n):
        for k in range(k_per_agent):
            r = a * k_per_agent + k
            b = np.int64(stream_hash(seed, ST_MIX_PARTNER, day, a, k) % np.uint64(n - 1))
            if b >= a:
                b += 1
            oi[r] = a
            oj[r] = b
            ot[r] = day * 86400.0 + 86400.0 * unif(seed, ST_MIX_TIME, day, a, k)
            od[r] = dist_lo + (dist_hi - dist_lo) * unif(seed, ST_MIX_DIST, day, a, k)


def well_mixed_day(n: int, contacts_per_agent: int, day: int, seed: int, dist_m=(0.5, 2.0),
                   duration_s: float = 900.0) -> dict:
    """One day of a well-mixed contact process: each agent starts ``contacts_per_agent`` contacts with
    uniformly random partners (fresh every day), at uniform times of the day, at a distance uniform in
    ``dist_m`` (m), lasting ``duration_s`` (s), place unknown (modifier 1). Returns record arrays."""
    n, k = int(n), int(contacts_per_agent)
    if n < 2 or k < 0:
        raise ValueError("well_mixed_day: need n >= 2 and contacts_per_agent >= 0")
    m = n * k
    oi, oj = np.empty(m, np.int64), np.empty(m, np.int64)
    ot, od = np.empty(m), np.empty(m)
    _mixing_kernel(n, k, int(day), np.uint64(seed), float(dist_m[0]), float(dist_m[1]), float(duration_s),
                   oi, oj, ot, od)
    return dict(i=oi, j=oj, t=ot, dist=od, dt_s=np.full(m, float(duration_s)), place=np.full(m, -1, np.int64))
