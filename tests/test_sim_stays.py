"""Seated stays evaluated once per stay (sim.scanning.stays): the stays of a schedule, the per-step
mask, and a whole day equal to the step-by-step evaluation (windows and ground truth)."""
import time
from types import SimpleNamespace

import numpy as np
import pytest

from sim import run as R
from sim.scanning import Radio, scan_p_seen, seated_stays
from sim.scenario import preset
from sim.schedule import NIGHT, OWN, VISIT


def _sched(rows):
    """A DaySchedule stand-in: one agent per row of (start, end, inst, kind) segments."""
    M = max(len(r) for r in rows)
    n = len(rows)
    st, en = np.zeros((n, M), np.int32), np.zeros((n, M), np.int32)
    inst, kind = np.full((n, M), -1, np.int64), np.zeros((n, M), np.int8)
    for i, segs in enumerate(rows):
        for m, (a, b, c, k) in enumerate(segs):
            st[i, m], en[i, m], inst[i, m], kind[i, m] = a, b, c, k
    return SimpleNamespace(seg_start=st, seg_end=en, seg_inst=inst, seg_kind=kind)


def test_stays_are_own_spot_segments_minus_later_segments():
    sch = _sched([
        [(10, 100, 50, OWN), (40, 60, 70, VISIT), (95, 120, 71, VISIT)],   # cut twice: [20, 40) [60, 95)
        [(0, 288, 60, NIGHT)],                                              # clipped to [20, 200)
        [(30, 80, 3, OWN), (30, 80, 61, VISIT)],                           # a home (< 5) and a visit
        [(50, 70, 62, OWN), (10, 90, 62, OWN)],                            # overridden by a later own spot
        [(100, 150, 63, OWN), (100, 150, -1, VISIT)],                      # unused later slot: no cut
    ])
    st = seated_stays(sch, 5, 20, 200)
    got = sorted(zip(st.agent.tolist(), st.inst.tolist(), st.kind.tolist(), st.a.tolist(), st.b.tolist()))
    assert got == [(0, 50, OWN, 20, 40), (0, 50, OWN, 60, 95), (1, 60, NIGHT, 20, 200), (3, 62, OWN, 20, 90),
                   (4, 63, OWN, 100, 150)]
    assert (np.diff(st.inst) >= 0).all() and st.blocks[-1] == len(st)
    # the per-step mask follows the stays (agent 0 leaves at 40 and is back at 60)
    seated = {s: st.seated_at(s).copy() for s in range(20, 200)}
    assert seated[20].tolist() == [True, True, False, True, False]
    assert not seated[40][0] and not seated[59][0] and seated[60][0] and not seated[95][0]
    assert seated[100][4] and not seated[150][4] and not seated[90][3]


@pytest.fixture(scope="module")
def world():
    scn = preset("lang-son", 0.001)
    seed = 3
    pop, places, params, keys_all, hseed = R.build_world(scn, seed)
    radio = Radio(params, pop, scan_p_seen(scn), hseed, int(scn.sim["step_s"]))
    return scn, seed, pop, places, keys_all, hseed, radio


def _day(world, day, per_stay):
    scn, seed, pop, places, keys_all, hseed, radio = world
    counts = {"scans_logged": 0, "phone_pairs_evaluated": 0, "static_steps": 0, "stay_pair_steps": 0}
    acc, _, _ = R._simulate_day(day, scn, seed, pop, places, hseed, radio, R._PairFinder(pop),
                                np.zeros(pop.n, np.int32), counts, None, R._Timer(), time.perf_counter(), 1024,
                                per_stay=per_stay)
    return (acc.windows(keys_all, pop.tx_power, float(scn.sim["step_s"]), day, radio.phase),
            acc.ground_truth(day, float(scn.sim["step_s"])), counts)


def test_day_per_stay_equals_step_by_step(world):
    """A weekday (school and work) of 782 agents: the same windows (every column; RSSI means up to
    float32 summation order) and the same ground truth, scans and phone-pair evaluations, with most of
    the evaluations done per stay."""
    w0, g0, c0 = _day(world, 0, False)
    w1, g1, c1 = _day(world, 0, True)
    assert c1["stay_pair_steps"] > 0.4 * c1["phone_pairs_evaluated"]
    assert c0["scans_logged"] == c1["scans_logged"] and c0["phone_pairs_evaluated"] == c1["phone_pairs_evaluated"]
    assert len(w0) == len(w1) > 1000
    for f in w0.dtype.names:
        if f in ("rssi_mean", "att_typical"):
            np.testing.assert_allclose(w1[f], w0[f], atol=1e-3)
        else:
            assert np.array_equal(w0[f], w1[f]), f
    assert len(g0) == len(g1) > 100
    for f in g0.dtype.names:
        assert np.array_equal(g0[f], g1[f]), f
