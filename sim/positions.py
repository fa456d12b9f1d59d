"""Positions inside places (metres, local coordinates of each place instance) at a given time.

One numba kernel (:func:`_positions_kernel`, serial over a block of agents, run on one block per numba
thread in threads) computes, for a step and a time, every agent's place instance and (x, y). All
randomness is counter-based (:func:`sim.rng.hash4` of the run seed, day, step, agent, … and a
``sim.rng.SALT_*``), so results do not depend on the thread count. :func:`seat_position` (the seated /
own-spot model) is shared with kernels that evaluate a stay at once.

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
import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np
from numba import njit

from sim.rng import (SALT_BUS_SEAT, SALT_JITTER, SALT_MOVE, SALT_TABLE_SEAT, SALT_WAYPOINT_PHASE, STEP_STRIDE,
                     hash4, mix64, normal2, u01)

__all__ = ["positions", "seat_position"]

MIN_BLOCK = 4096        #: agents per thread at least (fewer run in the calling thread alone)


@njit(cache=True)
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
def _seat_grid(s, cap, spacing):
    """Seat ``s`` of a square grid of ``cap`` seats ``spacing`` m apart (m, place-local)."""
    cols = np.int64(math.ceil(math.sqrt(max(cap, 1))))
    return ((s % cols) + 0.5) * spacing, ((s // cols) + 0.5) * spacing


@njit(cache=True, inline="always")
def _table_seat(s, cap, gap):
    """Seat ``s`` of ``cap`` seats at tables of 4 (0.8 m across) on a square grid ``gap`` m apart (m)."""
    tb = s // 4
    k = s % 4
    ntab = max((cap + 3) // 4, 1)
    cols = np.int64(math.ceil(math.sqrt(ntab)))
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
    return x, y


@njit(cache=True, inline="always")
def seat_position(seed, day, step, i, seat_x, seat_y, kind, move_p, w, h, jitter):
    """Position of agent ``i`` at its fixed seat or own spot in ``step`` of ``day`` (not the static night).

    Parameters
    ----------
    seed : uint64
        The run's hash seed.
    day, step : int64
        Day of the run and scan step of the day (the key ``day * STEP_STRIDE + step`` of the draws).
    i : int64
        Agent index.
    seat_x, seat_y : float32 or float64
        The agent's seat (m, place-local), :mod:`sim.places`.
    kind : int
        Segment kind: 0 own spot (moves elsewhere with probability ``move_p``), 2 seated (never moves).
    move_p : float
        Probability per step that an own-spot agent is elsewhere in the room (``type_move``).
    w, h : float
        The room's width and depth (m): where a moved agent is (uniform).
    jitter : float64
        Standard deviation (m) of the Gaussian fidgeting per step and axis (``scenario.sim.jitter_m``).

    Returns
    -------
    (x, y) : float64, float64
        Metres, place-local: the seat plus ``jitter`` times two standard normals, or (own spot, with
        probability ``move_p``) a uniform point of the ``w`` x ``h`` room.
    """
    key = day * STEP_STRIDE + step
    if kind == 0:
        hm = hash4(seed, key, i, SALT_MOVE)
        if u01(hm) < move_p:
            return u01(mix64(hm)) * w, u01(mix64(hm + np.uint64(1))) * h
    z1, z2 = normal2(hash4(seed, key, i, SALT_JITTER))
    return np.float64(seat_x) + jitter * z1, np.float64(seat_y) + jitter * z2


@njit(cache=True, nogil=True)
def _positions_kernel(lo, hi, seed, day, step, t, static, seg_start, seg_end, seg_inst, seg_kind, wake, sleep,
                      household, seat_x, seat_y, sleep_x, sleep_y, inst_type, inst_layout, inst_w, inst_h,
                      inst_cap, type_spacing, type_move, type_leg, type_gap, home_leg, jitter,
                      out_group, out_x, out_y):
    """Place instance and (x, y) (m) of agents ``lo..hi-1`` at ``step`` / time ``t`` (s) into ``out_*``
    (shape (n,)); the other arrays as :func:`positions` passes them (schedule (n, M), agents (n,),
    instances, types). Serial and GIL-free: :func:`positions` runs blocks of agents in threads (a
    ``prange`` here would compile the body twice and lower a large parallel loop: 2-3x the compile)."""
    for i in range(lo, hi):
        inst = np.int64(-1)
        kind = 0
        slot = 0
        for m in range(seg_start.shape[1]):
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
                out_x[i], out_y[i] = _waypoint(seed, i, hh, t, home_leg, inst_w[hh], inst_h[hh])
            continue
        out_group[i] = inst
        if static:
            out_x[i] = seat_x[i]
            out_y[i] = seat_y[i]
            continue
        lay = inst_layout[inst]
        ty = inst_type[inst]
        x = np.float64(seat_x[i])          # seated / own spot; visitors: where they are before fidgeting
        y = np.float64(seat_y[i])
        if kind != 0 and kind != 2:        # visitor
            kind = 2                       # ... fidgets like a seated person, never "elsewhere"
            if lay == 2 or (lay == 1 and ty == 11):    # a seat per visit: tables of 4 / bus seats
                salt = SALT_TABLE_SEAT if lay == 2 else SALT_BUS_SEAT
                s = np.int64(u01(hash4(seed, day, i, salt + slot)) * inst_cap[inst])
                if lay == 2:
                    x, y = _table_seat(s, inst_cap[inst], type_gap[ty])
                else:
                    x, y = _seat_grid(s, inst_cap[inst], type_spacing[ty])
            else:                          # random waypoint
                leg = type_leg[ty] if lay == 3 else 300.0
                x, y = _waypoint(seed, i, inst, t, leg, inst_w[inst], inst_h[inst])
        out_x[i], out_y[i] = seat_position(seed, day, step, i, x, y, kind, type_move[ty], inst_w[inst],
                                           inst_h[inst], jitter)


def positions(seed: int, sched, pop, places, step: int, t: float, static: bool, jitter_m: float,
              home_leg_s: float = 600.0, out=None):
    """(group, x, y) of every agent at ``step`` of ``sched`` and time ``t`` (s since the run start).

    ``group`` is the place instance (int64; homes are instances ``0..n_households-1``), ``x``/``y`` in
    metres (float64), each of shape (n,) (written into ``out`` when given). ``static`` puts everyone at
    the night spot (see module docstring). The agents are split into ``numba.get_num_threads()``
    contiguous blocks (at least :data:`MIN_BLOCK` agents each) run in threads: identical for any number.
    """
    n = pop.n
    if out is None:
        out = (np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.float64))
    g, x, y = out
    args = (np.uint64(seed), np.int64(sched.day), np.int64(step), float(t), bool(static),
            sched.seg_start, sched.seg_end, sched.seg_inst, sched.seg_kind, sched.wake,
            sched.sleep, pop.household, places.seat_x, places.seat_y, places.sleep_x,
            places.sleep_y, places.inst_type, places.inst_layout, places.inst_w, places.inst_h,
            places.inst_cap, places.type_spacing, places.type_move, places.type_leg,
            places.type_gap, float(home_leg_s), float(jitter_m), g, x, y)
    k = max(1, min(numba.get_num_threads(), n // MIN_BLOCK))
    cuts = [n * j // k for j in range(k + 1)]          # contiguous blocks: agents are independent
    if k == 1:
        _positions_kernel(np.int64(0), np.int64(n), *args)
    else:
        list(_pool(k).map(lambda j: _positions_kernel(np.int64(cuts[j]), np.int64(cuts[j + 1]), *args),
                          range(k)))
    return g, x, y


def _pool(k: int) -> ThreadPoolExecutor:
    """A persistent pool of ``k`` threads, re-made when ``k`` changes or in a forked child (whose copy
    of the parent's pool has no threads)."""
    global _POOL
    key = (k, os.getpid())
    if _POOL is None or _POOL[0] != key:
        _POOL = (key, ThreadPoolExecutor(k, thread_name_prefix="proxitrace-positions"))
    return _POOL[1]


_POOL = None      #: ((threads, pid), ThreadPoolExecutor) of :func:`_pool`
