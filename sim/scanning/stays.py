"""Seated stays evaluated once per stay: pairs whose place does not change between steps.

A **seated stay** is a maximal run of (non-static) steps ``[a, b)`` during which an agent is at its own
spot in its primary instance: a schedule segment of kind ``OWN`` (0) or ``NIGHT`` (2) at a non-home
instance, minus the steps where a later segment of the agent overrides it (:mod:`sim.schedule`: the
last covering segment wins). During a stay the agent's position at each step is a pure function of
(seed, day, step, agent) (:func:`sim.positions.seat_position`: seat + fidgeting, or elsewhere in the room
with the type's ``move_prob``), so two agents with stays in the same instance form a pair for the whole
overlap of their stays: one kernel call per instance recomputes both positions per step, tests
``dx*dx + dy*dy <= R*R`` exactly as the neighbour search and :func:`sim.scanning.step._eval_step_kernel`
do, draws exactly the counter-based numbers of :func:`sim.scanning.step._pair_draw` that the
step-by-step evaluation draws, and aggregates the scans per ordered pair in place (number, RSSI sum and
max, first and last step, bucket counts) — one :meth:`DayAccumulator.add_partial` row per pair and
stay overlap instead of a neighbour search, a merge-join and a run per step. The ground truth likewise
(close (sub)steps and minimum distance per pair and overlap).

The per-step path skips exactly these pairs: at each step :meth:`Stays.seated_at` marks the agents in
a stay; a pair of two marked agents (necessarily in the same instance) is left out, and instances with
only marked agents are left out of the neighbour search altogether. Pairs of a seated agent and anyone
else (visitors, staff on their feet) still go step by step. The result equals the step-by-step
evaluation except for the float32 rounding of RSSI sums (``tests/test_sim_stays.py``).
"""
from __future__ import annotations

import math

import numba
import numpy as np
from numba import njit

from ble.schema import N_ATT_BUCKETS
from sim.kernels import par_cuts, run_blocks, weighted_cuts
from sim.positions import seat_position
from sim.rng import step_seed
from sim.scanning.runs import _add_scan, _start_run
from sim.scanning.step import _EDGES, _offset, _pair_draw

__all__ = ["Stays", "seated_stays", "eval_stays"]

#: candidate pairs (of every agent, phone or not) per evaluation block: bounds the block's output arrays
#: (~60 bytes per candidate)
STAY_BLOCK = 1 << 20


@njit(cache=True)
def _stays_kernel(seg_start, seg_end, seg_inst, seg_kind, lo, hi, n_homes, count, start, agent, inst, kind, a, b):
    """Seated stays of every agent (segments of kind 0 or 2 at instances >= ``n_homes``, clipped to
    steps ``[lo, hi)``, minus every later used segment of the agent).

    Parameters
    ----------
    seg_start, seg_end, seg_inst, seg_kind : (n, M) arrays of a :class:`sim.schedule.DaySchedule`.
    count : bool
        True: only fill ``start[i + 1]`` with agent i's number of stays; False: write agent i's stays
        from row ``start[i]`` into ``agent``, ``inst``, ``kind``, ``a`` (first step), ``b`` (end step).
    """
    n, M = seg_start.shape
    pa = np.empty(M + 1, np.int64)
    pb = np.empty(M + 1, np.int64)
    for i in range(n):
        r = 0 if count else start[i]
        for m in range(M):
            if seg_inst[i, m] < n_homes or (seg_kind[i, m] != 0 and seg_kind[i, m] != 2):
                continue
            k = 1
            pa[0] = max(np.int64(seg_start[i, m]), lo)
            pb[0] = min(np.int64(seg_end[i, m]), hi)
            for m2 in range(m + 1, M):        # a later segment overrides: cut its steps out
                if seg_inst[i, m2] < 0:
                    continue
                c0, c1 = np.int64(seg_start[i, m2]), np.int64(seg_end[i, m2])
                k2 = k
                for p in range(k2):
                    if pa[p] < c1 and c0 < pb[p]:
                        if c1 < pb[p]:        # right remainder as a new piece
                            pa[k] = c1
                            pb[k] = pb[p]
                            k += 1
                        pb[p] = max(c0, pa[p])
            for p in range(k):
                if pb[p] > pa[p]:
                    if not count:
                        agent[r] = i
                        inst[r] = seg_inst[i, m]
                        kind[r] = seg_kind[i, m]
                        a[r] = pa[p]
                        b[r] = pb[p]
                    r += 1
        if count:
            start[i + 1] = r


class Stays:
    """The day's seated stays sorted by (instance, agent, first step): ``agent``, ``inst``, ``kind``
    (0 own spot, 2 night spot), ``a``/``b`` (first step, end step), ``blocks`` (row offsets of the
    instances, shape (n_instances_with_stays + 1,))."""

    def __init__(self, agent, inst, kind, a, b, n_agents: int):
        order = np.lexsort((a, agent, inst))
        self.agent, self.inst, self.kind = agent[order], inst[order], kind[order]
        self.a, self.b = a[order], b[order]
        cut = np.flatnonzero(np.diff(self.inst)) + 1
        self.blocks = np.r_[0, cut, len(self.inst)].astype(np.int64) if len(self.inst) else np.zeros(1, np.int64)
        self._by_a = np.argsort(self.a, kind="stable")
        self._by_b = np.argsort(self.b, kind="stable")
        self._sa, self._sb = self.a[self._by_a], self.b[self._by_b]
        self._seated = np.zeros(n_agents, bool)

    def __len__(self):
        return len(self.agent)

    def seated_at(self, step: int) -> np.ndarray:
        """Agents in a stay at ``step`` (bool, shape (n,)); call with increasing steps (the mask is
        updated by the stays that end and start there)."""
        sa, sb = self._sa, self._sb
        end = self._by_b[np.searchsorted(sb, step):np.searchsorted(sb, step, "right")]
        self._seated[self.agent[end]] = False      # ends first: a stay may start where another ends
        beg = self._by_a[np.searchsorted(sa, step):np.searchsorted(sa, step, "right")]
        self._seated[self.agent[beg]] = True
        return self._seated


def seated_stays(sched, n_homes: int, lo: int, hi: int) -> Stays:
    """The seated stays of ``sched`` (:class:`sim.schedule.DaySchedule`) in steps ``[lo, hi)``; homes
    are the instances ``< n_homes`` (never a stay)."""
    n = sched.seg_start.shape[0]
    start = np.zeros(n + 1, np.int64)
    e = np.zeros(0, np.int64)
    args = (sched.seg_start, sched.seg_end, sched.seg_inst, sched.seg_kind, np.int64(lo), np.int64(hi),
            np.int64(n_homes))
    _stays_kernel(*args, True, start, e, e, e.astype(np.int8), e, e)
    np.cumsum(start, out=start)
    m = int(start[-1])
    agent, inst, a, b = (np.empty(m, np.int64) for _ in range(4))
    kind = np.empty(m, np.int8)
    _stays_kernel(*args, False, start, agent, inst, kind, a, b)
    return Stays(agent, inst, kind, a, b, n)


@njit(cache=True, nogil=True)
def _candidates_kernel(blocks, agent, a, b, phone, n_gt, n_ph, c_lo, c_hi):
    """Per instance c in ``c_lo..c_hi`` (rows ``blocks[c]:blocks[c + 1]`` of the stays; serial, ``nogil``:
    run over chunks by :func:`sim.kernels.run_blocks`): the stay pairs of different agents that overlap
    in time (``n_gt[c]``) and of those, pairs of two phones (``n_ph[c]``)."""
    for c in range(c_lo, c_hi):
        g = 0
        p = 0
        for u in range(blocks[c], blocks[c + 1]):
            for v in range(u + 1, blocks[c + 1]):
                if agent[u] != agent[v] and max(a[u], a[v]) < min(b[u], b[v]):
                    g += 1
                    p += np.int64(phone[agent[u]] and phone[agent[v]])
        n_gt[c] = g
        n_ph[c] = p


@njit(cache=True, inline="always")
def _stay_xy(lo, hi, agent, kind, inst, a, b, seed, day, seat_x, seat_y, inst_type, inst_w, inst_h, type_move,
             jitter):
    """Positions (m) of stays ``lo..hi`` at each of their steps: (x, y, offsets), stay u's step s at
    ``offsets[u - lo] + s - a[u]``."""
    off = np.empty(hi - lo + 1, np.int64)
    off[0] = 0
    for u in range(lo, hi):
        off[u - lo + 1] = off[u - lo] + b[u] - a[u]
    xs = np.empty(off[hi - lo])
    ys = np.empty(off[hi - lo])
    for u in range(lo, hi):
        c = inst[u]
        for s in range(a[u], b[u]):
            q = off[u - lo] + s - a[u]
            xs[q], ys[q] = seat_position(seed, day, s, agent[u], seat_x[agent[u]], seat_y[agent[u]], kind[u],
                                         type_move[inst_type[c]], inst_w[c], inst_h[c], jitter)
    return xs, ys, off


@njit(cache=True)
def _pair_steps(s0, s1, qi, qj, xs, ys, i, j, ph, g, p, sseed, range2, close2, sub, p_seen, off_ij, off_ji,
                ref, expo, sigma, dmin, floor, ceil, edges, tx_power, gn, gd, n_out, rsum, rmax, sfirst, slast, bc):
    """One stay pair (i < j, phones if ``ph``) over steps ``s0..s1`` (positions at ``xs/ys[qi + s - s0]``
    and ``[qj + s - s0]``; ``sseed``: the steps' stream seeds, :func:`sim.rng.step_seed`): close
    (sub)steps and minimum distance into ground-truth row ``g``, logged scans into radio rows ``2p`` (j
    seen by i) and ``2p + 1``; returns the phone pair-steps in range."""
    ne = 0
    for s in range(s0, s1):
        dx = xs[qi + s - s0] - xs[qj + s - s0]
        dy = ys[qi + s - s0] - ys[qj + s - s0]
        d2 = dx * dx + dy * dy
        if d2 <= close2:
            gn[g] += sub
            gd[g] = min(gd[g], np.float32(math.sqrt(d2)))
        if not ph or d2 > range2:
            continue
        ne += 1
        d = math.sqrt(d2)
        r_ij, r_ji = _pair_draw(sseed[s], i, j, p_seen, math.log10(d if d > dmin else dmin),
                                off_ij, off_ji, ref, expo, sigma, floor, ceil)
        if r_ij == r_ij:
            _add_scan(2 * p, r_ij, s, j, tx_power, edges, n_out, rsum, rmax, sfirst, slast, bc)
        if r_ji == r_ji:
            _add_scan(2 * p + 1, r_ji, s, i, tx_power, edges, n_out, rsum, rmax, sfirst, slast, bc)
    return ne


@njit(cache=True, nogil=True)
def _eval_stays_kernel(c0, blocks, agent, kind, inst, a, b, phone, gt_off, ph_off, seed, day, seat_x,
                       seat_y, inst_type, inst_w, inst_h, type_move, jitter, range2, close2, sub, p_seen, carriage,
                       platform, tx_off, rx_off, car_db, plat_db, ref, expo, sigma, dmin, floor, ceil, edges,
                       tx_power, gi, gj, gn, gd, ro, ra, n_out, rsum, rmax, sfirst, slast, bc, n_eval, c_lo, c_hi):
    """Instances ``c_lo..c_hi`` (rows of ``blocks``) of the block from instance ``c0`` (serial, ``nogil``:
    run over chunks by :func:`sim.kernels.run_blocks`): every overlapping stay pair (i < j) at each step
    of its overlap, exactly as step by step (:func:`_pair_steps`). Ground-truth row ``gt_off[c] -
    gt_off[c0] + k`` of the instance's k-th pair: (i ``gi``, j ``gj``, close (sub)steps ``gn``, min
    distance ``gd`` m, float32); radio rows ``2 p`` (observer ``ro`` i, advertiser ``ra`` j) and ``2 p +
    1`` (j, i) of its k'-th phone pair (p = ``ph_off[c] - ph_off[c0] + k'``): scans (u2), RSSI sum
    and max (dBm, f4), first and last step (u2), bucket counts (u2, (rows, N_ATT_BUCKETS)); ``n_eval[c]``:
    phone pair-steps within range."""
    sseed = np.empty(b.max() + 1 if b.shape[0] else 1, np.uint64)    # each step's stream seed, once
    for s in range(sseed.shape[0]):
        sseed[s] = step_seed(seed, day, s)
    for c in range(c_lo, c_hi):
        lo, hi = blocks[c], blocks[c + 1]
        xs, ys, off = _stay_xy(lo, hi, agent, kind, inst, a, b, seed, day, seat_x, seat_y, inst_type, inst_w,
                               inst_h, type_move, jitter)
        g, p, ne = gt_off[c] - gt_off[c0], ph_off[c] - ph_off[c0], 0
        for u in range(lo, hi):
            for v in range(u + 1, hi):
                s0, s1 = max(a[u], a[v]), min(b[u], b[v])
                if agent[u] == agent[v] or s0 >= s1:
                    continue
                uu, vv = (u, v) if agent[u] < agent[v] else (v, u)
                i, j = agent[uu], agent[vv]
                ph = phone[i] and phone[j]
                gi[g], gj[g], gn[g], gd[g] = i, j, 0, np.inf
                off_ij = off_ji = 0.0
                if ph:
                    off_ij = _offset(i, j, carriage, platform, tx_off, rx_off, car_db, plat_db)
                    off_ji = _offset(j, i, carriage, platform, tx_off, rx_off, car_db, plat_db)
                    ro[2 * p], ra[2 * p], ro[2 * p + 1], ra[2 * p + 1] = i, j, j, i
                    _start_run(2 * p, n_out, rsum, rmax, sfirst, slast, bc)
                    _start_run(2 * p + 1, n_out, rsum, rmax, sfirst, slast, bc)
                ne += _pair_steps(s0, s1, off[uu - lo] + s0 - a[uu], off[vv - lo] + s0 - a[vv], xs, ys, i, j, ph,
                                  g, p, sseed, range2, close2, sub, p_seen, off_ij, off_ji, ref, expo, sigma,
                                  dmin, floor, ceil, edges, tx_power, gn, gd, n_out, rsum, rmax, sfirst, slast, bc)
                g += 1
                p += np.int64(ph)
        n_eval[c] = ne


def eval_stays(radio, stays: Stays, day: int, places, phone, jitter_m: float, range_m: float, close_m: float,
               sub: int):
    """Evaluate every pair of overlapping seated stays (:class:`Stays`) at each step of its overlap, in
    blocks of instances of at most ~:data:`STAY_BLOCK` candidate pairs. Yields per block ``(partial,
    close, n_eval)``: the radio's partial aggregates ``(observer, advertiser, n, rsum, rmax, first step,
    last step, bucket counts)`` for :meth:`DayAccumulator.add_partial`, the ground truth ``(i, j, close
    (sub)steps, min distance m)`` for :meth:`DayAccumulator.add_close` (``sub`` per close step), and the
    number of phone pair-steps within ``range_m`` (the step path's phone-pair evaluations).

    ``radio``: :class:`sim.scanning.Radio` (its seed is the positions' seed); ``places``:
    :class:`sim.places.Places`; ``phone``: bool per agent."""
    nb = len(stays.blocks) - 1
    n_gt, n_ph = np.zeros(nb, np.int64), np.zeros(nb, np.int64)
    if nb:
        run_blocks(_candidates_kernel, *par_cuts(nb, 1 << 10), stays.blocks, stays.agent, stays.a,
                   stays.b, phone, n_gt, n_ph)
    gt_off, ph_off = np.r_[0, np.cumsum(n_gt)], np.r_[0, np.cumsum(n_ph)]
    (p_seen, car, plat, txo, rxo, cdb, pdb, ref, expo, sig, dmin, floor, ceil) = radio.args()
    c = 0
    while c < nb:
        c_hi = int(min(nb, max(c + 1, np.searchsorted(gt_off, gt_off[c] + STAY_BLOCK, "right") - 1)))
        G, P = int(gt_off[c_hi] - gt_off[c]), int(ph_off[c_hi] - ph_off[c])
        gi, gj = np.empty(G, np.int64), np.empty(G, np.int64)
        gn, gd = np.empty(G, np.int32), np.empty(G, np.float32)
        ro, ra = np.empty(2 * P, np.int64), np.empty(2 * P, np.int64)
        n, s0, s1 = np.empty(2 * P, np.uint16), np.empty(2 * P, np.uint16), np.empty(2 * P, np.uint16)
        rsum, rmax = np.empty(2 * P, np.float32), np.empty(2 * P, np.float32)
        bc = np.empty((2 * P, N_ATT_BUCKETS), np.uint16)
        n_eval = np.zeros(nb, np.int64)
        threads = numba.get_num_threads()       # dynamic chunks: instance sizes vary (offices 12, factories 80)
        cuts = [c + t for t in weighted_cuts(gt_off[c:c_hi + 1], 16 * threads if threads > 1 else 1)]
        run_blocks(_eval_stays_kernel, threads, cuts, c, stays.blocks, stays.agent, stays.kind, stays.inst,
                   stays.a, stays.b, phone, gt_off, ph_off, radio.seed, np.int64(day), places.seat_x,
                   places.seat_y, places.inst_type, places.inst_w, places.inst_h, places.type_move,
                   float(jitter_m), float(range_m) ** 2, float(close_m) ** 2, np.int64(sub), p_seen, car, plat,
                   txo, rxo, cdb, pdb, ref, expo, sig, dmin, floor, ceil, _EDGES, radio.tx_power, gi, gj, gn, gd,
                   ro, ra, n, rsum, rmax, s0, s1, bc, n_eval)
        k = np.flatnonzero(n > 0)
        g = np.flatnonzero(gn > 0)
        yield ((ro[k], ra[k], n[k], rsum[k], rmax[k], s0[k], s1[k], bc[k]), (gi[g], gj[g], gn[g], gd[g]),
               int(n_eval.sum()))
        c = c_hi
