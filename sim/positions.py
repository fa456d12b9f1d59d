"""Positions inside places (metres, local coordinates of each place instance) at a given time.

One numba kernel (:func:`_positions_kernel`, ``prange`` over agents) computes, for a step and a time,
every agent's place instance and (x, y). All randomness is counter-based (:func:`sim.rng.hash4` of the
run seed, day, step, agent, … and a ``sim.rng.SALT_*``), so results do not depend on the thread count.

Models (parameters ``scenario.places.<type>`` and ``scenario.sim.jitter_m``):

* **seated, own spot** (classes, offices, workplaces, factory floors, wards, vendors' stalls, staff
  counters, bus drivers): the fixed seat of :mod:`sim.places` plus Gaussian fidgeting of ``jitter_m``
  (0.15 m) per step; with probability ``move_prob`` per step the person is elsewhere in the room
  (uniform) — teachers walking the aisle, colleagues at a neighbour's desk.
* **tables** (restaurant/café visitors): a seat at a table of 4 (0.8 m across), drawn once per visit.
* **bus riders**: a seat drawn once per ride.
* **mobile** (market, station, hotel visitors; office and hospital visitors): random waypoint — legs of
  ``leg_s`` seconds between uniform waypoints of the floor, walking the first half of a leg and pausing
  the second half; the waypoint sequence is a hash of (agent, instance, leg), so positions are continuous
  in time at any step length (finer ground-truth sub-steps see the same walk).
* **home, awake**: random waypoint over the home's floor with 600 s legs (rooms are small, so family
  members are mostly within a few metres); **asleep**: the fixed sleeping spot (beds 0.6 m apart in rooms
  of ``room_size``, rooms ``room_gap_m`` apart).
* **static night** (``static=True``): everyone at the night spot with no fidgeting — the premise of the
  static-episode evaluation in :mod:`sim.scanning`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from sim.rng import (SALT_BUS_SEAT, SALT_JITTER, SALT_MOVE, SALT_TABLE_SEAT, SALT_WAYPOINT_PHASE, STEP_STRIDE,
                     hash4, mix64, normal2, u01)

__all__ = ["positions", "seated_xy"]

@njit(cache=True, inline="always")
def _waypoint(seed, agent, inst, t, leg, w, h):
    """Random-waypoint position at time t (s): walk the first half of each leg, pause the second."""
    ph = u01(hash4(seed, agent, inst, SALT_WAYPOINT_PHASE)) * leg
    f = (t + ph) / leg
    k = math.floor(f)
    fr = f - k
    ki = np.int64(k)
    h0 = hash4(seed, agent, inst, ki)
    h1 = hash4(seed, agent, inst, ki + 1)
    x0, y0 = u01(h0) * w, u01(mix64(h0)) * h
    x1, y1 = u01(h1) * w, u01(mix64(h1)) * h
    g = fr * 2.0
    if g > 1.0:
        g = 1.0
    return x0 + g * (x1 - x0), y0 + g * (y1 - y0)


@njit(cache=True, inline="always")
def seated_xy(seed, day, step, i, kind, sx, sy, w, h, move, jitter):
    """Position (m) of agent ``i`` seated in its primary instance at a (non-static) ``step`` of ``day``:
    its seat (``sx``, ``sy``) plus Gaussian fidgeting of ``jitter`` m; an own-spot agent (``kind`` 0)
    is instead uniformly elsewhere in the ``w`` x ``h`` room with probability ``move`` (kind 2, the
    night spot, never moves). Counter-based: the same (seed, day, step, i) always gives the same spot
    (:mod:`sim.scanning.stays` evaluates whole stays from it)."""
    if kind == 0:
        hm = hash4(seed, day * STEP_STRIDE + step, i, SALT_MOVE)
        if u01(hm) < move:
            return u01(mix64(hm)) * w, u01(mix64(hm + np.uint64(1))) * h
    z1, z2 = normal2(hash4(seed, day * STEP_STRIDE + step, i, SALT_JITTER))
    return sx + jitter * z1, sy + jitter * z2


@njit(cache=True, inline="always")
def _seat_grid(s, cap, spacing):
    cols = np.int64(math.ceil(math.sqrt(max(cap, 1))))
    return ((s % cols) + 0.5) * spacing, ((s // cols) + 0.5) * spacing


@njit(cache=True, parallel=True)
def _positions_kernel(seed, day, step, t, static, seg_start, seg_end, seg_inst, seg_kind, wake, sleep,
                      household, seat_x, seat_y, sleep_x, sleep_y, inst_type, inst_layout, inst_w, inst_h,
                      inst_cap, type_spacing, type_move, type_leg, type_gap, home_leg, jitter,
                      out_group, out_x, out_y):
    n = seg_start.shape[0]
    M = seg_start.shape[1]
    for i in prange(n):
        inst = np.int64(-1)
        kind = 0
        slot = 0
        for m in range(M):
            if seg_inst[i, m] >= 0 and seg_start[i, m] <= step and step < seg_end[i, m]:
                if (not static) or seg_kind[i, m] == 2:
                    inst = seg_inst[i, m]
                    kind = seg_kind[i, m]
                    slot = m
        if inst < 0:                       # at home
            hh = household[i]
            out_group[i] = hh
            if static or step < wake[i] or step >= sleep[i]:
                out_x[i] = sleep_x[i]
                out_y[i] = sleep_y[i]
            else:
                x, y = _waypoint(seed, i, hh, t, home_leg, inst_w[hh], inst_h[hh])
                out_x[i] = x
                out_y[i] = y
            continue
        out_group[i] = inst
        lay = inst_layout[inst]
        ty = inst_type[inst]
        w = inst_w[inst]
        hgt = inst_h[inst]
        if static:
            x, y = seat_x[i], seat_y[i]
        elif kind == 2 or kind == 0:       # seated: night spot, or own spot (moves with type_move)
            x, y = seated_xy(seed, day, step, i, kind, seat_x[i], seat_y[i], w, hgt, type_move[ty], jitter)
        else:                              # visitor
            if lay == 2:                   # tables of 4
                s = np.int64(u01(hash4(seed, day, i, SALT_TABLE_SEAT + slot)) * inst_cap[inst])
                tb = s // 4
                k = s % 4
                ntab = max((inst_cap[inst] + 3) // 4, 1)
                cols = np.int64(math.ceil(math.sqrt(ntab)))
                gap = type_gap[ty]
                x = ((tb % cols) + 0.5) * gap
                y = ((tb // cols) + 0.5) * gap
                if k == 0:
                    x -= 0.4
                elif k == 1:
                    x += 0.4
                elif k == 2:
                    y -= 0.4
                else:
                    y += 0.4
            elif lay == 1 and ty == 11:    # bus seat per ride
                s = np.int64(u01(hash4(seed, day, i, SALT_BUS_SEAT + slot)) * inst_cap[inst])
                x, y = _seat_grid(s, inst_cap[inst], type_spacing[ty])
            else:
                leg = type_leg[ty] if lay == 3 else 300.0
                x, y = _waypoint(seed, i, inst, t, leg, w, hgt)
            z1, z2 = normal2(hash4(seed, day * STEP_STRIDE + step, i, SALT_JITTER))
            x += jitter * z1
            y += jitter * z2
        out_x[i] = x
        out_y[i] = y


def positions(seed: int, sched, pop, places, step: int, t: float, static: bool, jitter_m: float,
              home_leg_s: float = 600.0, out=None):
    """(group, x, y) of every agent at ``step`` of ``sched`` and time ``t`` (s since the run start).

    ``group`` is the place instance (int64; homes are instances ``0..n_households-1``), ``x``/``y`` in
    metres (float64). ``static`` puts everyone at the night spot (see module docstring).
    """
    n = pop.n
    if out is None:
        out = (np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.float64))
    g, x, y = out
    _positions_kernel(np.uint64(seed), np.int64(sched.day), np.int64(step), float(t), bool(static),
                      sched.seg_start, sched.seg_end, sched.seg_inst, sched.seg_kind, sched.wake,
                      sched.sleep, pop.household, places.seat_x, places.seat_y, places.sleep_x,
                      places.sleep_y, places.inst_type, places.inst_layout, places.inst_w, places.inst_h,
                      places.inst_cap, places.type_spacing, places.type_move, places.type_leg,
                      places.type_gap, float(home_leg_s), float(jitter_m), g, x, y)
    return g, x, y
