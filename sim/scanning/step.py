"""Radio per scan: pair draws, the radio evaluation of a step, of a static episode and of the ground
truth's close pairs, and the flat radio arrays (:class:`Radio`) the kernels read.

Per scan (one per step of ``step_s`` seconds, every phone scans once at its own phase inside the step)
and per ordered pair (observer, advertiser) of phone owners in the same place instance within
``radio_range_m``:

* the scan sees the advertiser with probability ``p_seen(scan config)`` (:mod:`ble.scan`; 1.0 for
  Bluezone's 40 s scan against 15 s on / 15 s off advertising);
* its RSSI (dBm) is ``ble.radio._rssi_kernel(d, offset, z, ...)`` with offset = carriage of both
  phones + platform pair (rx<-tx) + the advertiser's TX and the observer's RX device offsets, and one
  standard-normal draw z per scan (``sigma_db`` is the fitted per-advertisement spread; using it per
  scan is conservative);
* it is logged if RSSI >= ``floor_dbm``, capped at ``max_rssi_dbm`` (receiver saturation). Both
  directions are drawn separately.

Random numbers are counter-based (:mod:`sim.rng`): ``pair_hash(step_seed(seed, day, step), i, j)`` of
the unordered pair gives both directions' p_seen draws and normal draws, so results are identical
whatever the number of threads and whatever the order of evaluation — and a static episode evaluated
once per pair with an inner loop over its scans (:func:`eval_static`) draws exactly the numbers the
step-by-step evaluation would have drawn.

The radio cut-off (``radio_range_m``) is discussed in :mod:`sim.scanning`; :func:`cutoff_report` gives
its probabilities for ``run.json``.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ble import scan
from ble.radio import RadioParams, default_params, device_offsets
from ble.schema import ATT_EDGES, N_ATT_BUCKETS
from sim.kernels import par_cuts, run_blocks
from sim.rng import SALT_SCAN_PHASE, hash4, pair_hash, pair_normals, step_seed, u01, u32_pair

__all__ = ["Radio", "device_table", "radio_params", "scan_p_seen", "cutoff_report", "eval_scan_rssi",
           "eval_scan_step", "eval_static", "eval_close"]

_EDGES = np.ascontiguousarray(ATT_EDGES, dtype=np.float64)   #: attenuation bucket edges (dB)


# ------------------------------------------------------------------------------------------------
# devices and radio parameters
# ------------------------------------------------------------------------------------------------
def device_table(rng: np.random.Generator, n: int):
    """(model row i4, tx_offset dB, rx_offset dB, advertised TX power dBm) for ``n`` devices, drawn
    through ``ble.radio.device_offsets`` (Google's calibration table); TX power = ``tx_dbm`` +
    tx_offset."""
    tx_off, rx_off, rows = device_offsets(rng, n, return_rows=True)
    return (rows.astype(np.int32), tx_off.astype(np.float32), rx_off.astype(np.float32),
            (default_params().tx_dbm + tx_off).astype(np.float32))


def radio_params(scn):
    """``ble.radio.default_params()`` with the scenario's ``[radio]`` overrides."""
    d = default_params().to_dict()
    for k, v in scn.radio.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {**d[k], **v}
        else:
            d[k] = v
    return RadioParams.from_dict(d, f"{scn.source}: radio")


def scan_p_seen(scn) -> float:
    """Probability that one scan of the scenario's ``sim.scan_config`` sees an advertiser in range."""
    return float(scan.p_seen(getattr(scan, scn.sim["scan_config"])))


def cutoff_report(params, range_m: float) -> dict:
    """Probability that one scan at the cut-off distance would be above the floor / −88 dBm."""
    from scipy.special import ndtr  # heavy optional import: only run.json's report needs scipy
    car = params.carriage_vector()
    med_car = float(np.median(car))
    out = {"radio_range_m": range_m, "floor_dbm": params.floor_dbm}
    for name, off in (("median", 2 * med_car), ("loudest", 2 * float(car.max()) + max(params.platform_db.values()))):
        m = params.ref_rssi_1m + off - 10 * params.exponent * math.log10(range_m)
        s = max(params.sigma_db, 1e-9)
        out[f"{name}_mean_rssi_at_cutoff_dbm"] = round(m, 2)
        out[f"{name}_p_above_floor_at_cutoff"] = round(float(ndtr((m - params.floor_dbm) / s)), 4)
        out[f"{name}_p_above_-88dbm_at_cutoff"] = round(float(ndtr((m + 88.0) / s)), 4)
    return out


# ------------------------------------------------------------------------------------------------
# kernels: radio evaluation
# ------------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _pair_draw(sseed, i, j, p_seen, logd, off_ij, off_ji, ref, expo, sigma, floor, ceil):
    """One scan step of the unordered pair (i < j): (RSSI of j seen by i, RSSI of i seen by j), NaN
    where not seen (missed by the scan with probability 1 − p_seen, or below the floor); capped at
    ``ceil`` (dBm, receiver saturation).

    One 64-bit hash of (step seed, i, j) gives the two p_seen draws (32 bits each); its mix gives the two
    normal draws (Box–Muller). ``logd`` = log10(max(d, dmin)); RSSI = ble.radio._rssi_kernel's formula
    ref + offset − 10·n·logd + σ·z (inlined so the log is taken once for both directions).
    """
    h = pair_hash(sseed, i, j)
    z1, z2 = pair_normals(h)
    base = ref - 10.0 * expo * logd
    r_ij = base + off_ij + sigma * z1
    r_ji = base + off_ji + sigma * z2
    if p_seen < 1.0:
        u_ij, u_ji = u32_pair(h)
        if u_ij >= p_seen:
            r_ij = np.nan
        if u_ji >= p_seen:
            r_ji = np.nan
    r_ij = r_ij if r_ij >= floor else np.nan        # selects: the floor test is unpredictable
    r_ji = r_ji if r_ji >= floor else np.nan
    r_ij = ceil if r_ij > ceil else r_ij
    r_ji = ceil if r_ji > ceil else r_ji
    return r_ij, r_ji


@njit(cache=True, inline="always")
def _offset(obs, adv, carriage, platform, tx_off, rx_off, car_db, plat_db):
    return (car_db[carriage[adv]] + car_db[carriage[obs]] + plat_db[max(platform[obs], 0), max(platform[adv], 0)]
            + tx_off[adv] + rx_off[obs])


@njit(cache=True, inline="always")
def _bucket(a, edges):
    """Attenuation bucket of ``a`` (dB): the number of ``edges`` (ascending) below it, i.e. the first
    edge not below it (0 for NaN). Counted without branches (the exit of a search loop mispredicts)."""
    b = 0
    for k in range(edges.shape[0]):
        b += np.int64(a > edges[k])
    return b


@njit(cache=True, nogil=True)
def _eval_step_kernel(seed, day, step, pi, pj, x, y, range2, p_seen, carriage, platform, tx_off, rx_off,
                      car_db, plat_db, ref, expo, sigma, dmin, floor, ceil, rssi, p_lo, p_hi):
    """Both directions of the phone pairs ``p_lo..p_hi`` (serial, ``nogil``: run over chunks by
    :func:`sim.kernels.run_blocks`): rssi[2p] = j seen by i, rssi[2p + 1] = i seen by j (NaN: not logged,
    also beyond ``range2`` (m²))."""
    sseed = step_seed(seed, day, step)
    for p in range(p_lo, p_hi):
        i = pi[p]
        j = pj[p]
        dx = x[i] - x[j]
        dy = y[i] - y[j]
        d2 = dx * dx + dy * dy
        if d2 > range2:
            rssi[2 * p] = np.nan
            rssi[2 * p + 1] = np.nan
            continue
        d = math.sqrt(d2)
        logd = math.log10(d if d > dmin else dmin)
        a, b = _pair_draw(sseed, i, j, p_seen, logd,
                          _offset(i, j, carriage, platform, tx_off, rx_off, car_db, plat_db),
                          _offset(j, i, carriage, platform, tx_off, rx_off, car_db, plat_db),
                          ref, expo, sigma, floor, ceil)
        rssi[2 * p] = a
        rssi[2 * p + 1] = b


@njit(cache=True, nogil=True)
def _eval_static_kernel(seed, day, steps, step_s, day_t0, phase, pi, pj, x, y, range2, p_seen, carriage,
                        platform, tx_off, rx_off, car_db, plat_db, ref, expo, sigma, dmin, floor, ceil, edges,
                        tx_power, n_out, rsum, rmax, sfirst, slast, bc, p_lo, p_hi):
    """A static episode: fixed positions over the scans ``steps``; per ordered pair ``p_lo..p_hi`` (row
    2p: j seen by i, 2p + 1: i seen by j; serial, ``nogil``: run over chunks by
    :func:`sim.kernels.run_blocks`) the aggregate of the scans it was logged in — exactly the draws of
    the step-by-step evaluation."""
    for p in range(p_lo, p_hi):
        i = pi[p]
        j = pj[p]
        dx = x[i] - x[j]
        dy = y[i] - y[j]
        d2 = dx * dx + dy * dy
        for q in range(2 * p, 2 * p + 2):
            n_out[q] = 0
            rsum[q] = 0.0
            rmax[q] = -np.inf
            sfirst[q] = 0
            slast[q] = 0
            for b in range(bc.shape[1]):
                bc[q, b] = 0
        if d2 > range2:
            continue
        d = math.sqrt(d2)
        logd = math.log10(d if d > dmin else dmin)
        off_ij = _offset(i, j, carriage, platform, tx_off, rx_off, car_db, plat_db)
        off_ji = _offset(j, i, carriage, platform, tx_off, rx_off, car_db, plat_db)
        for m in range(steps.shape[0]):
            st = steps[m]
            a, b = _pair_draw(step_seed(seed, day, st), i, j, p_seen, logd, off_ij, off_ji, ref, expo, sigma,
                              floor, ceil)
            for k in range(2):
                r = a if k == 0 else b
                if r >= floor:
                    q = 2 * p + k
                    adv = j if k == 0 else i
                    n_out[q] += 1
                    rsum[q] += r
                    if r > rmax[q]:
                        rmax[q] = r
                    if n_out[q] == 1 or st < sfirst[q]:
                        sfirst[q] = st
                    if n_out[q] == 1 or st > slast[q]:
                        slast[q] = st
                    bc[q, _bucket(tx_power[adv] - r, edges)] += 1


@njit(cache=True, nogil=True)
def _close_kernel(pi, pj, x, y, close2, ok, dist, p_lo, p_hi):
    for p in range(p_lo, p_hi):
        dx = x[pi[p]] - x[pj[p]]
        dy = y[pi[p]] - y[pj[p]]
        d2 = dx * dx + dy * dy
        ok[p] = d2 <= close2
        dist[p] = math.sqrt(d2)



# ------------------------------------------------------------------------------------------------
# the per-step and per-episode drivers
# ------------------------------------------------------------------------------------------------
class Radio:
    """Flat arrays of the radio model and the devices, for the kernels."""

    def __init__(self, params, pop, p_seen: float, seed: int, step_s: int):
        self.params = params
        self.car_db = params.carriage_vector().astype(np.float64)
        self.plat_db = params.platform_matrix().astype(np.float64)
        self.p_seen = float(p_seen)
        self.carriage = pop.carriage.astype(np.int64)
        self.platform = pop.platform.astype(np.int64)
        self.tx_off = pop.tx_offset.astype(np.float64)
        self.rx_off = pop.rx_offset.astype(np.float64)
        self.tx_power = pop.tx_power.astype(np.float64)
        self.seed = np.uint64(seed)
        self.step_s = float(step_s)
        idx = np.arange(pop.n, dtype=np.uint64)
        # each phone scans at a fixed phase inside the step (s)
        self.phase = _phases(self.seed, idx) * self.step_s

    def args(self):
        p = self.params
        return (self.p_seen, self.carriage, self.platform, self.tx_off, self.rx_off, self.car_db,
                self.plat_db, p.ref_rssi_1m, p.exponent, p.sigma_db, p.min_distance_m, p.floor_dbm,
                p.max_rssi_dbm)


@njit(cache=True)
def _phases(seed, idx):
    out = np.empty(idx.shape[0])
    for k in range(idx.shape[0]):
        out[k] = u01(hash4(seed, idx[k], SALT_SCAN_PHASE, SALT_SCAN_PHASE))
    return out


@njit(cache=True)
def _compact_scans_kernel(rssi, pi, pj, step, tx_power, edges, keys, r, b):
    """Logged scans -> (key = observer << 32 | advertiser, RSSI dBm, attenuation bucket)."""
    m = 0
    for q in range(rssi.shape[0]):
        if rssi[q] == rssi[q]:
            p = q >> 1
            if q & 1 == 0:
                obs, adv = pi[p], pj[p]
            else:
                obs, adv = pj[p], pi[p]
            keys[m] = (np.uint64(obs) << np.uint64(32)) | np.uint64(adv)
            r[m] = rssi[q]
            b[m] = _bucket(tx_power[adv] - rssi[q], edges)
            m += 1
    return m


def eval_scan_rssi(radio: Radio, day: int, step: int, pi, pj, x, y, range_m: float) -> np.ndarray:
    """One scan of every phone pair (pi, pj in the same place): RSSI (dBm) of j seen by i at [2p] and of
    i seen by j at [2p + 1]; NaN where not logged (missed, below the floor or beyond ``range_m``)."""
    npair = len(pi)
    rssi = np.empty(2 * npair, np.float64)
    (p_seen, car, plat, txo, rxo, cdb, pdb, ref, expo, sig, dmin, floor, ceil) = radio.args()
    if npair:
        run_blocks(_eval_step_kernel, *par_cuts(npair), radio.seed, np.int64(day), np.int64(step), pi, pj, x, y,
                   float(range_m) ** 2, p_seen, car, plat, txo, rxo, cdb, pdb, ref, expo, sig, dmin, floor, ceil, rssi)
    return rssi


def eval_scan_step(radio: Radio, day: int, step: int, pi, pj, x, y, range_m: float):
    """One scan of every phone pair within ``range_m``, both directions, as single-scan records
    (key = observer << 32 | advertiser, step, RSSI dBm, bucket) for :meth:`DayAccumulator.add_scans`."""
    rssi = eval_scan_rssi(radio, day, step, pi, pj, x, y, range_m)
    npair = len(pi)
    keys = np.empty(2 * npair, np.uint64)
    r = np.empty(2 * npair, np.float32)
    b = np.empty(2 * npair, np.int8)
    m = _compact_scans_kernel(rssi, pi, pj, step, radio.tx_power, _EDGES, keys, r, b)
    return keys[:m], np.full(m, step, np.uint16), r[:m], b[:m]



def eval_static(radio: Radio, day: int, steps: np.ndarray, pi, pj, x, y, range_m: float):
    """A static episode (positions fixed over scans ``steps``): same draws as step by step. Returns
    partial aggregates ``(observer, advertiser, n, rsum, rmax, first step, last step, bucket counts)`` for
    :meth:`DayAccumulator.add_partial`."""
    npair = len(pi)
    n = np.zeros(2 * npair, np.int32)
    rsum = np.empty(2 * npair, np.float32)
    rmax = np.empty(2 * npair, np.float32)
    t0 = np.empty(2 * npair, np.uint16)
    t1 = np.empty(2 * npair, np.uint16)
    bc = np.empty((2 * npair, N_ATT_BUCKETS), np.uint16)
    (p_seen, car, plat, txo, rxo, cdb, pdb, ref, expo, sig, dmin, floor, ceil) = radio.args()
    if npair and len(steps):
        run_blocks(_eval_static_kernel, *par_cuts(npair, max(64, (1 << 14) // len(steps))), radio.seed,
                   np.int64(day), steps.astype(np.int64), radio.step_s, day * 86400.0, radio.phase, pi, pj, x, y,
                   float(range_m) ** 2, p_seen, car, plat, txo, rxo, cdb, pdb, ref, expo, sig, dmin, floor, ceil,
                   _EDGES, radio.tx_power, n, rsum, rmax, t0, t1, bc)
    idx = np.flatnonzero(n > 0)
    p, k = idx >> 1, idx & 1
    obs = np.where(k == 0, pi[p], pj[p])
    adv = np.where(k == 0, pj[p], pi[p])
    return obs, adv, n[idx], rsum[idx], rmax[idx], t0[idx], t1[idx], bc[idx]


def eval_close(pi, pj, x, y, close_m: float, mult: int = 1):
    """Ground truth of one (sub)step (or ``mult`` identical ones): the pairs within ``close_m`` as
    ``(i, j, n, distance m)`` for :meth:`DayAccumulator.add_close`."""
    ok = np.empty(len(pi), np.bool_)
    dist = np.empty(len(pi), np.float64)
    if len(pi):
        run_blocks(_close_kernel, *par_cuts(len(pi), 1 << 16), pi, pj, x, y, float(close_m) ** 2, ok, dist)
    idx = np.flatnonzero(ok)
    return pi[idx], pj[idx], np.full(len(idx), mult, np.int32), dist[idx]
