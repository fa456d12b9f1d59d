"""sim.positions: the kernel against a per-agent Python transcription of the model (module docstring),
bit for bit, over steps of the static night, the waking day and two days; and ``seat_position`` (the
seated / own-spot helper other kernels call) against the kernel and its own statistics."""
import math

import numpy as np
import pytest
from numba import njit

from sim import positions as P
from sim.rng import SALT_BUS_SEAT, SALT_JITTER, SALT_MOVE, SALT_TABLE_SEAT, STEP_STRIDE, hash4, mix64, normal2, u01
from sim.run import build_world, day_schedule
from sim.scenario import preset
from sim.schedule import NIGHT, OWN

SEED = 5
JITTER = 0.15


@pytest.fixture(scope="module")
def world():
    scn = preset("lang-son", 0.002)
    pop, places, _, _, hseed = build_world(scn, SEED)
    return scn, pop, places, np.uint64(hseed)


def _h(*a):
    """hash4 as a NumPy uint64 (numba hands a uint64 back to Python as an int)."""
    return np.uint64(hash4(*a))


def _reference(i, seed, sched, pop, pl, step, t, static, home_leg=600.0):
    """(group, x, y) of agent ``i``: a plain transcription of the model, one agent at a time."""
    day = sched.day
    inst, kind, slot = -1, 0, 0
    for m in range(sched.seg_inst.shape[1]):
        if sched.seg_inst[i, m] >= 0 and sched.seg_start[i, m] <= step < sched.seg_end[i, m]:
            if not static or sched.seg_kind[i, m] == NIGHT:
                inst, kind, slot = int(sched.seg_inst[i, m]), int(sched.seg_kind[i, m]), m
    if inst < 0:
        hh = int(pop.household[i])
        if static or step < sched.wake[i] or step >= sched.sleep[i]:
            return hh, float(pl.sleep_x[i]), float(pl.sleep_y[i])
        return (hh, *P._waypoint(seed, i, hh, t, home_leg, pl.inst_w[hh], pl.inst_h[hh]))
    ty, lay = int(pl.inst_type[inst]), int(pl.inst_layout[inst])
    w, h = float(pl.inst_w[inst]), float(pl.inst_h[inst])      # Python floats: float64 arithmetic
    key = day * STEP_STRIDE + step
    if static:
        return inst, float(pl.seat_x[i]), float(pl.seat_y[i])
    if kind == OWN:
        hm = _h(seed, key, i, SALT_MOVE)
        if u01(hm) < float(pl.type_move[ty]):
            return inst, float(u01(np.uint64(mix64(hm))) * w), float(u01(np.uint64(mix64(hm + np.uint64(1)))) * h)
    if kind in (OWN, NIGHT):
        z1, z2 = normal2(_h(seed, key, i, SALT_JITTER))
        return inst, float(pl.seat_x[i]) + JITTER * z1, float(pl.seat_y[i]) + JITTER * z2
    cap = int(pl.inst_cap[inst])
    if lay == 2:                                       # tables of 4, 0.8 m across
        s = int(u01(_h(seed, day, i, SALT_TABLE_SEAT + slot)) * cap)
        cols = math.ceil(math.sqrt(max((cap + 3) // 4, 1)))
        tb, k = divmod(s, 4)
        gap = float(pl.type_gap[ty])
        x, y = ((tb % cols) + 0.5) * gap, ((tb // cols) + 0.5) * gap
        x, y = x + (-0.4, 0.4, 0.0, 0.0)[k], y + (0.0, 0.0, -0.4, 0.4)[k]
    elif lay == 1 and ty == 11:                        # bus seat per ride
        s = int(u01(_h(seed, day, i, SALT_BUS_SEAT + slot)) * cap)
        cols = math.ceil(math.sqrt(max(cap, 1)))
        sp = float(pl.type_spacing[ty])
        x, y = ((s % cols) + 0.5) * sp, ((s // cols) + 0.5) * sp
    else:
        leg = float(pl.type_leg[ty]) if lay == 3 else 300.0
        x, y = P._waypoint(seed, i, inst, t, leg, w, h)
    z1, z2 = normal2(_h(seed, key, i, SALT_JITTER))
    return inst, x + JITTER * z1, y + JITTER * z2


def test_kernel_matches_the_model_bit_for_bit(world):
    scn, pop, places, seed = world
    seen = set()
    for day, steps in ((0, (3, 100, 130, 200)), (1, (110, 250))):
        sched = day_schedule(scn, pop, places, SEED, day)
        for step in steps:
            for static in (False, True):
                t = day * 86400.0 + step * 300.0 + 17.0
                g, x, y = P.positions(seed, sched, pop, places, step, t, static, JITTER)
                ref = np.array([_reference(i, seed, sched, pop, places, step, t, static) for i in range(pop.n)])
                np.testing.assert_array_equal(g, ref[:, 0].astype(np.int64))
                assert x.tobytes() == ref[:, 1].tobytes() and y.tobytes() == ref[:, 2].tobytes()
                seen |= {int(places.inst_layout[k]) for k in np.unique(g[g >= pop.hh_start.shape[0]])}
    assert seen >= {1, 2, 3}           # seated, tables and mobile places were all exercised


@njit(cache=True)
def _seat_positions(seed, day, step, ids, sx, sy, kind, move_p, w, h, jitter):
    x, y = np.empty(len(ids)), np.empty(len(ids))
    for k in range(len(ids)):
        x[k], y[k] = P.seat_position(seed, day, step, ids[k], sx[k], sy[k], kind[k], move_p[k], w[k], h[k], jitter)
    return x, y


def test_seat_position_is_what_the_kernel_uses(world):
    scn, pop, places, seed = world
    sched = day_schedule(scn, pop, places, SEED, 0)
    step = 130
    g, x, y = P.positions(seed, sched, pop, places, step, step * 300.0, False, JITTER)
    live = (sched.seg_inst >= 0) & (sched.seg_start <= step) & (step < sched.seg_end)
    m = np.where(live.any(1), sched.seg_inst.shape[1] - 1 - np.argmax(live[:, ::-1], axis=1), 0)
    kind = sched.seg_kind[np.arange(pop.n), m]
    ids = np.flatnonzero(live.any(1) & ((kind == OWN) | (kind == NIGHT)))
    assert len(ids) > 50
    inst = g[ids]
    sx, sy = _seat_positions(seed, np.int64(0), np.int64(step), ids, places.seat_x[ids], places.seat_y[ids],
                             kind[ids], places.type_move[places.inst_type[inst]], places.inst_w[inst],
                             places.inst_h[inst], JITTER)
    assert sx.tobytes() == x[ids].tobytes() and sy.tobytes() == y[ids].tobytes()


def test_seat_position_statistics():
    """Seated: seat + N(0, jitter^2) per axis; own spot: elsewhere (uniform in the room) with
    probability move_p. Tolerances: 5 standard errors of n = 20,000 draws."""
    n = 20_000
    ids = np.arange(n, dtype=np.int64)
    seed, jit = np.uint64(99), 0.3
    sx, sy = np.full(n, 5.0, np.float32), np.full(n, 4.0, np.float32)
    w, h = np.full(n, 10.0, np.float32), np.full(n, 8.0, np.float32)
    x, y = _seat_positions(seed, np.int64(2), np.int64(40), ids, sx, sy, np.full(n, NIGHT, np.int8),
                           np.full(n, 0.9, np.float32), w, h, jit)       # move_p ignored when seated
    for d in (x - 5.0, y - 4.0):
        assert abs(d.mean()) < 5 * jit / math.sqrt(n)
        assert abs(d.std() / jit - 1) < 5 / math.sqrt(2 * n)
    p = 0.25
    x, y = _seat_positions(seed, np.int64(2), np.int64(40), ids, sx, sy, np.full(n, OWN, np.int8),
                           np.full(n, p, np.float32), w, h, jit)
    moved = np.hypot(x - 5.0, y - 4.0) > 10 * jit
    # a uniform point of the 10 x 8 room lands within 10 jitter (3 m) of the seat w.p. pi*3^2/80
    p_moved = p * (1 - math.pi * 9 / 80)
    assert abs(moved.mean() - p_moved) < 5 * math.sqrt(p_moved * (1 - p_moved) / n)
    assert x.min() >= 0 and x.max() < 10 and y.min() >= 0 and y.max() < 8


def test_blocks_in_threads_give_the_same_bytes(world, monkeypatch):
    """positions() splits the agents into one block per numba thread, run in threads: the same bytes as
    one block in the calling thread (agents are independent)."""
    import numba
    if numba.get_num_threads() < 2:
        pytest.skip("one numba thread: nothing runs in parallel")
    scn, pop, places, seed = world
    sched = day_schedule(scn, pop, places, SEED, 0)
    for step in (3, 100, 130, 200):
        monkeypatch.setattr(P, "MIN_BLOCK", 10**9)
        one = P.positions(seed, sched, pop, places, step, step * 300.0, False, JITTER)
        monkeypatch.setattr(P, "MIN_BLOCK", 97)
        many = P.positions(seed, sched, pop, places, step, step * 300.0, False, JITTER)
        assert all(a.tobytes() == b.tobytes() for a, b in zip(one, many))
