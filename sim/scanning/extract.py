"""The window extraction's kernels (:meth:`sim.scanning.accumulate.DayAccumulator.windows` and
``window_pieces``): the used slots of the window map by observer range or piece, the windows' heads
(observer, advertiser, first scan time), their order by (observer, rid, t_start) and the rows written
into the output record array. The map's slots of one piece are spread over the whole map, so the
sequential passes request them :data:`_AHEAD` rows ahead (:func:`ble._prefetch.prefetch`).
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ble._prefetch import prefetch

__all__ = []

EMPTY = np.uint64(0xFFFFFFFFFFFFFFFF)      #: an unused slot's key (sim.scanning.accumulate's maps)
#: rows ahead whose map slots a sequential extraction requests (software pipelining)
_AHEAD = 16


@njit(cache=True)
def _used_slots_kernel(tkeys, lo, hi):
    """Slots (in slot order) of the used keys with ``lo <= key >> 32 < hi``."""
    n = 0
    for q in range(tkeys.shape[0]):
        k = tkeys[q]
        if k != EMPTY and (k >> np.uint64(32)) >= lo and (k >> np.uint64(32)) < hi:
            n += 1
    out = np.empty(n, np.int64)
    n = 0
    for q in range(tkeys.shape[0]):
        k = tkeys[q]
        if k != EMPTY and (k >> np.uint64(32)) >= lo and (k >> np.uint64(32)) < hi:
            out[n] = q
            n += 1
    return out


@njit(cache=True)
def _obs_counts_kernel(tkeys, out):
    """``out[o]`` += the used keys with observer (``key >> 32``) o."""
    for q in range(tkeys.shape[0]):
        k = tkeys[q]
        if k != EMPTY:
            out[np.int64(k >> np.uint64(32))] += 1


@njit(cache=True)
def _piece_slots_kernel(tkeys, piece_of_obs, n_pieces):
    """Used slots bucketed by piece (``piece_of_obs[key >> 32]``), in slot order within a piece:
    (start offsets (n_pieces + 1), slots ``uint32``)."""
    start = np.zeros(n_pieces + 1, np.int64)
    for q in range(tkeys.shape[0]):
        k = tkeys[q]
        if k != EMPTY:
            start[piece_of_obs[np.int64(k >> np.uint64(32))] + 1] += 1
    for p in range(n_pieces):
        start[p + 1] += start[p]
    fill = start[:-1].copy()
    out = np.empty(start[n_pieces], np.uint32)
    for q in range(tkeys.shape[0]):
        k = tkeys[q]
        if k != EMPTY:
            p = piece_of_obs[np.int64(k >> np.uint64(32))]
            out[fill[p]] = q
            fill[p] += 1
    return start, out


@njit(cache=True)
def _window_heads_kernel(slots, tkeys, s0, phase, day_t, scan_s, obs, adv, t0):
    """Observer, advertiser and first scan time (s) of the used map ``slots`` (their key and value lines
    requested :data:`_AHEAD` rows ahead: the slots are spread over the whole map)."""
    n = slots.shape[0]
    for r in range(n):
        if r + _AHEAD < n:
            prefetch(tkeys, slots[r + _AHEAD])
            prefetch(s0, slots[r + _AHEAD])
        k = tkeys[slots[r]]
        o = np.int64(k >> np.uint64(32))
        obs[r] = o
        adv[r] = np.int64(k & np.uint64(0xFFFFFFFF))
        t0[r] = day_t + np.float64(s0[slots[r]]) * scan_s + phase[o]


@njit(cache=True, nogil=True)
def _window_fill_kernel(dest, slots, obs, adv, t0, rid, vn, vs1, vrsum, vrmax, vbc, phase, tx_power, day_t,
                        scan_s, w_obs, w_rid, w_t0, w_t1, w_n, w_dur, w_mean, w_max, w_tx, w_att, w_attmin,
                        w_secs, u_lo, u_hi):
    """Window rows ``u_lo..u_hi`` (in slot order) to their sorted positions ``dest`` (the inverse of the
    row order) straight into the (strided) fields of the output record array, with the arithmetic (and
    float32 roundings) of the former numpy expressions (serial, ``nogil``: run over chunks by
    :func:`sim.kernels.run_blocks`). Reads go in slot order; the slots, spread over the whole map, and
    the output rows are requested :data:`_AHEAD` rows ahead."""
    f_scan = np.float32(scan_s)
    for u in range(u_lo, u_hi):
        if u + _AHEAD < u_hi:
            qa = slots[u + _AHEAD]
            prefetch(vn, qa)
            prefetch(vrsum, qa)                     # the slot's last bytes: it may cross a line
            prefetch(vbc, qa)
            prefetch(vbc, min(qa + 1, vbc.shape[0] - 1))
            prefetch(w_secs, dest[u + _AHEAD])
            prefetch(w_obs, dest[u + _AHEAD])
        r = dest[u]
        q = slots[u]
        o = obs[u]
        a = adv[u]
        n = vn[q]
        w_obs[r] = o
        w_rid[r] = rid[u]
        w_t0[r] = t0[u]
        w_t1[r] = day_t + np.float64(vs1[q]) * scan_s + phase[o]
        w_n[r] = n
        w_dur[r] = np.float32(np.float64(n) * scan_s)
        mean = np.float32(vrsum[q] / np.float32(max(n, 1)))
        w_mean[r] = mean
        w_max[r] = vrmax[q]
        tx = tx_power[a]
        w_tx[r] = tx
        w_att[r] = tx - mean
        w_attmin[r] = tx - vrmax[q]
        for b in range(vbc.shape[1]):
            w_secs[r, b] = np.float32(vbc[q, b]) * f_scan


@njit(cache=True, inline="always")
def _win_less(rid, t0, u, v):
    return rid[u] < rid[v] or (rid[u] == rid[v] and t0[u] < t0[v])


@njit(cache=True)
def _window_order_kernel(obs, rid, t0, lo, n_obs):
    """Row order by observer (a stable counting sort) and the observers' segments ``start`` (n_obs + 1)
    of it, with ``rid`` and ``t0`` in that order: ``(start, order, rid_o, t0_o)``;
    :func:`_window_sort_kernel` then sorts each segment by (rid, t_start), ties in input order
    (together ``np.lexsort((t0, rid, obs))``)."""
    n = obs.shape[0]
    start = np.zeros(n_obs + 1, np.int64)
    for r in range(n):
        start[obs[r] - lo + 1] += 1
    for s in range(n_obs):
        start[s + 1] += start[s]
    fill = start[:-1].copy()
    order = np.empty(n, np.int64)
    rid_o = np.empty(n, np.uint64)
    t0_o = np.empty(n, np.float64)
    for r in range(n):
        o = obs[r] - lo
        f = fill[o]
        order[f] = r
        rid_o[f] = rid[r]
        t0_o[f] = t0[r]
        fill[o] = f + 1
    return start, order, rid_o, t0_o


@njit(cache=True, nogil=True)
def _window_sort_kernel(order, start, rid, t0, rid_o, t0_o, s_lo, s_hi):
    """Sort the observers' segments ``s_lo..s_hi`` (``start``) of ``order`` by (rid, t_start), ties in
    input order: an insertion sort of the segment's (rid, t_start, row) in place, from the copies
    ``rid_o``, ``t0_o`` of ``rid``, ``t0`` in ``order``'s order (read in sequence; stable, so ties keep
    the rows' increasing input order; a stable
    two-pass merge sort for long segments, :func:`_merge_sort_rows`), the copies permuted with the
    rows; serial, ``nogil``: run over chunks by :func:`sim.kernels.run_blocks`."""
    for s in range(s_lo, s_hi):
        a = start[s]
        b = start[s + 1]
        if b - a > 64:
            _merge_sort_rows(order, a, b, rid, t0)
            for q in range(a, b):                   # the copies follow the rows
                rid_o[q] = rid[order[q]]
                t0_o[q] = t0[order[q]]
            continue
        for q in range(a + 1, b):
            v = order[q]
            r = rid_o[q]
            t = t0_o[q]
            k = q - 1
            while k >= a and (r < rid_o[k] or (r == rid_o[k] and t < t0_o[k])):
                rid_o[k + 1] = rid_o[k]
                t0_o[k + 1] = t0_o[k]
                order[k + 1] = order[k]
                k -= 1
            rid_o[k + 1] = r
            t0_o[k + 1] = t
            order[k + 1] = v


@njit(cache=True)
def _merge_sort_rows(order, a, b, rid, t0):
    """Stable bottom-up merge sort of ``order[a:b]`` by (rid, t0) (:func:`_win_less`): the order of two
    stable ``argsort(kind="mergesort")`` passes (t0, then rid), without compiling numba's generic sorts
    (a first run compiles this in a fraction of their time)."""
    n = b - a
    src = order[a:b].copy()
    dst = np.empty(n, order.dtype)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i = lo
            j = mid
            for k in range(lo, hi):
                if i < mid and (j >= hi or not _win_less(rid, t0, src[j], src[i])):
                    dst[k] = src[i]
                    i += 1
                else:
                    dst[k] = src[j]
                    j += 1
        src, dst = dst, src
        width *= 2
    for k in range(n):              # a loop: a slice assignment compiles numba's shape-error path
        order[a + k] = src[k]
