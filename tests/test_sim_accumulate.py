"""The day's window map (sim.scanning.accumulate): capacities that are not powers of two, growth in
place (issue 16: no old + new table at once), every key found and every value kept after growth."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from ble.schema import N_ATT_BUCKETS
from sim.scanning.accumulate import (EMPTY, GROWTH, GROWTH_LARGE, LOAD_MAX, N_SHARDS, DayAccumulator,
                                     _contains_kernel, _shard_order_kernel)


def _partial(keys, n, rsum, s0):
    """add_partial's arguments for records ``keys`` (observer << 32 | advertiser)."""
    m = len(keys)
    bc = np.zeros((m, N_ATT_BUCKETS), np.uint16)
    bc[np.arange(m), (keys % np.uint64(N_ATT_BUCKETS)).astype(np.int64)] = n
    return ((keys >> np.uint64(32)).astype(np.int64), (keys & np.uint64(0xFFFFFFFF)).astype(np.int64),
            n.astype(np.int32), rsum, rsum, s0, s0 + np.uint16(1), bc)


def _contains(acc, keys):
    out = np.empty(len(keys), np.bool_)
    _contains_kernel(acc.win.keys, acc.win.cap, keys, out, 0, len(keys))
    return out


def test_odd_capacity_grows_in_place_and_keeps_every_key():
    rng = np.random.default_rng(11)
    acc = DayAccumulator(37)                                 # not a power of two
    assert acc.win.cap == 37 and acc.win.keys.shape == (N_SHARDS * 37,)
    address = acc.win.keys.__array_interface__["data"][0]
    keys = np.unique((rng.integers(0, 3000, 60_000).astype(np.uint64) << np.uint64(32)) |
                     rng.integers(0, 3000, 60_000).astype(np.uint64))
    rng.shuffle(keys)
    caps = []
    for lo in range(0, len(keys), 7_000):                  # batches: several growths
        k = keys[lo:lo + 7_000]
        acc.add_partial(*_partial(k, np.full(len(k), 2), np.full(len(k), -140.0, np.float32),
                                  np.full(len(k), 5, np.uint16)))
        caps.append(acc.win.cap)
    assert len(set(caps)) >= 3 and all(c & (c - 1) for c in set(caps))      # grew; never a power of two
    assert all(b >= a * GROWTH - 1 or b == a for a, b in zip(caps, caps[1:]))
    # in place: the same memory, only a longer view of it (Linux: the anonymous mapping)
    if sys.platform.startswith("linux"):
        assert acc.win.keys.__array_interface__["data"][0] == address
    # every key is found where the probe sequence expects it; loads stay below LOAD_MAX
    assert _contains(acc, keys).all()
    absent = keys + np.uint64(1 << 44)
    assert not _contains(acc, absent).any()
    start, _ = _shard_order_kernel(keys, N_SHARDS)
    assert np.diff(start).max() <= LOAD_MAX * acc.win.cap
    assert acc.n_windows == len(keys) and int((acc.win.keys != EMPTY).sum()) == len(keys)
    # every value survived the re-insertions, and merging into a grown map still adds up
    acc.add_partial(*_partial(keys, np.ones(len(keys)), np.full(len(keys), -60.0, np.float32),
                              np.full(len(keys), 3, np.uint16)))
    got_k, vals, bc = acc.win.items()
    o = np.argsort(got_k)
    assert np.array_equal(got_k[o], np.sort(keys))
    assert np.all(vals["n"] == 3) and np.all(vals["s0"] == 3) and np.all(vals["s1"] == 6)
    assert np.allclose(vals["rsum"], -200.0) and np.all(vals["rmax"] == -60.0)
    assert np.array_equal(bc.sum(axis=1), vals["n"].astype(np.int64))
    assert np.array_equal(bc[o].argmax(axis=1), (np.sort(keys) % np.uint64(N_ATT_BUCKETS)).astype(np.int64))


def test_grow_checks_and_a_large_batch_grows_once_to_fit():
    acc = DayAccumulator(16)
    with pytest.raises(ValueError, match="capacity must increase"):
        acc.win.grow(16)
    keys = np.arange(1, 20_001, dtype=np.uint64) << np.uint64(32)
    acc.add_partial(*_partial(keys, np.ones(len(keys)), np.full(len(keys), -70.0, np.float32),
                              np.zeros(len(keys), np.uint16)))
    start, _ = _shard_order_kernel(keys, N_SHARDS)
    biggest = int(np.diff(start).max())
    assert acc.win.cap == int(biggest / LOAD_MAX) + 1      # straight to the need, not by repeated factors
    assert _contains(acc, keys).all()


def test_caps_carry_both_maps_to_the_next_day():
    acc = DayAccumulator((50, 20))
    assert acc.caps == (50, 20) and acc.gt.keys.shape == (N_SHARDS * 20,)
    i = np.arange(0, 3000, dtype=np.int64)
    acc.add_close(i, i + 1, np.ones(3000, np.int32), np.ones(3000, np.float32))
    assert acc.caps[0] == 50 and acc.caps[1] > 20
    nxt = DayAccumulator(acc.caps)
    assert nxt.caps == acc.caps and (nxt.gt.keys == EMPTY).all()
    g = acc.ground_truth(0, 60.0)
    assert np.array_equal(g["i"], i) and np.array_equal(g["j"], i + 1) and not g["detected"].any()


def test_large_maps_grow_by_the_smaller_factor(monkeypatch):
    from sim.scanning import accumulate
    keys = np.arange(1, 30_001, dtype=np.uint64) << np.uint64(32)
    caps = {}
    for large in (1 << 40, 1):                              # never / always "large"
        monkeypatch.setattr(accumulate, "LARGE_BYTES", large)
        acc = DayAccumulator(40)
        seen = [acc.win.cap]
        for lo in range(0, len(keys), 500):
            k = keys[lo:lo + 500]
            acc.add_partial(*_partial(k, np.ones(len(k)), np.full(len(k), -70.0, np.float32),
                                      np.zeros(len(k), np.uint16)))
            seen.append(acc.win.cap)
        steps = [b / a for a, b in zip(seen, seen[1:]) if b != a]
        caps[large] = steps
        assert _contains(acc, keys).all()
    assert np.median(caps[1 << 40]) == pytest.approx(GROWTH, abs=0.02)         # (integer capacities)
    assert np.median(caps[1]) == pytest.approx(GROWTH_LARGE, abs=0.02)
    assert len(caps[1]) > len(caps[1 << 40])               # more, smaller steps: a tighter final load


def test_ground_truth_release_frees_the_map_and_changes_nothing():
    rng = np.random.default_rng(4)
    out = []
    for release in (False, True):
        acc = DayAccumulator(64)
        i = rng.integers(0, 1000, 5000)
        j = i + 1 + rng.integers(0, 50, 5000)
        acc.add_close(i, j, np.ones(5000, np.int32), rng.uniform(0, 2, 5000).astype(np.float32))
        ki = np.unique((i.astype(np.uint64) << np.uint64(32)) | j.astype(np.uint64))[::3]
        acc.add_partial(*_partial(ki, np.ones(len(ki)), np.full(len(ki), -70.0, np.float32),
                                  np.zeros(len(ki), np.uint16)))
        caps = acc.caps
        out.append(acc.ground_truth(1, 30.0, release=release))
        assert (acc.gt.cap == 1) == release and caps[1] >= 64
        rng = np.random.default_rng(4)
    a, b = out
    assert a.tobytes() == b.tobytes() and a["detected"].mean() == pytest.approx(1 / 3, abs=0.02)
    assert np.all(np.diff(a["i"] * 2000 + a["j"]) > 0)                          # sorted by (i, j), unique
    assert np.allclose(a["minutes_close"] * 2, np.round(a["minutes_close"] * 2))


def test_chunked_merges_equal_one_pass(monkeypatch):
    """add_partial / add_close in chunks of ADD_CHUNK records give the very sums of one pass (each
    shard merges its records in input order either way)."""
    from sim.scanning import accumulate
    rng = np.random.default_rng(8)
    keys = (rng.integers(0, 300, 40_000).astype(np.uint64) << np.uint64(32)) | \
        rng.integers(0, 300, 40_000).astype(np.uint64)
    args = _partial(keys, rng.integers(1, 5, len(keys)), rng.uniform(-300, -100, len(keys)).astype(np.float32),
                    rng.integers(0, 200, len(keys)).astype(np.uint16))
    out = []
    for chunk in (1 << 22, 997):
        monkeypatch.setattr(accumulate, "ADD_CHUNK", chunk)
        acc = DayAccumulator(64)
        acc.add_partial(*args)
        acc.add_close(args[0], args[1] + 300, args[2], -args[3] / 100)
        k, v, b = acc.win.items()
        o = np.argsort(k)
        out.append((k[o].tobytes(), v[o].tobytes(), b[o].tobytes(), acc.ground_truth(0, 60.0).tobytes()))
    assert out[0] == out[1]


def test_initial_caps_hold_the_expected_day_without_growing():
    """A run's first day's maps are sized from the expected windows / close pairs per agent (issue 16:
    growing from 1,024 slots re-inserted ~2x the final keys at 10^5 agents, ~7x at 10^6): at those
    counts the maps stay below LOAD_MAX and do not grow; a tiny run keeps the minimum."""
    from sim.scanning.accumulate import CLOSE_PAIRS_PER_AGENT_DAY, WINDOWS_PER_AGENT_DAY, initial_caps
    n = 20_000                       # 1.3 M windows: the shards' spread is well below LOAD_MAX - LOAD_START
    caps = initial_caps(n)
    assert initial_caps(10) == (1024, 1024)
    for per, cap in zip((WINDOWS_PER_AGENT_DAY, CLOSE_PAIRS_PER_AGENT_DAY), caps):
        assert per * n <= LOAD_MAX * N_SHARDS * cap and per * n >= 0.75 * N_SHARDS * cap
    acc = DayAccumulator(caps)
    rng = np.random.default_rng(3)
    keys = np.unique((rng.integers(0, n, int(1.3 * WINDOWS_PER_AGENT_DAY * n)).astype(np.uint64) << np.uint64(32))
                     | rng.integers(0, n, int(1.3 * WINDOWS_PER_AGENT_DAY * n)).astype(np.uint64))
    keys = keys[rng.permutation(len(keys))[:int(WINDOWS_PER_AGENT_DAY * n)]]
    acc.add_partial(*_partial(keys, np.ones(len(keys)), np.full(len(keys), -70.0, np.float32),
                              np.full(len(keys), 3, np.uint16)))
    ci = np.sort(keys[:int(CLOSE_PAIRS_PER_AGENT_DAY * n)])
    acc.add_close((ci >> np.uint64(32)).astype(np.int64), (ci & np.uint64(0xFFFFFFFF)).astype(np.int64),
                  np.ones(len(ci), np.int32), np.ones(len(ci)))
    assert acc.caps == caps and acc.n_windows == len(keys)


def test_window_pieces_are_the_blocks_rows_in_order():
    """The windows extracted piece by piece (whole observers, one bucketing pass over the map) and re-cut
    into slices are exactly the rows and the slices of extracting each observer block whole."""
    from sim.run import _Slicer, window_pieces
    rng = np.random.default_rng(5)
    n_obs = 400
    keys = np.unique((rng.integers(0, n_obs, 20_000).astype(np.uint64) << np.uint64(32)) |
                     rng.integers(0, 50, 20_000).astype(np.uint64))
    keys = keys[(keys >> np.uint64(32)) % np.uint64(7) != 3]          # some observers without windows
    acc = DayAccumulator(64)
    acc.add_partial(*_partial(keys, np.full(len(keys), 2), rng.normal(-70, 5, len(keys)).astype(np.float32),
                              rng.integers(0, 280, len(keys)).astype(np.uint16)))
    args = (rng.integers(1, 1 << 62, n_obs, dtype=np.int64).astype(np.uint64), rng.normal(-10, 3, n_obs),
            300.0, 1, rng.uniform(0, 300, n_obs))
    counts = acc.window_counts(n_obs)
    assert counts.sum() == len(keys) and (counts[3::7] == 0).all()
    edges = np.array([0, 150, 151, 400])                              # an empty block in the middle
    piece_of_obs, piece_block = window_pieces(counts, edges, 97)
    assert (np.diff(piece_of_obs) >= 0).all() and set(piece_block) == {0, 1, 2}
    got, slices, direct = {0: [], 1: [], 2: []}, {0: [], 1: [], 2: []}, {0: [], 1: [], 2: []}
    slicer = _Slicer(250)
    for p, w in acc.window_pieces(*args, piece_of_obs, len(piece_block)):
        k = piece_block[p]
        got[k].append(w)
        assert len(w) <= 97 + counts.max()
        end = p == len(piece_block) - 1 or piece_block[p + 1] != k
        slices[k] += slicer.feed(w, end)
    # the same pieces made in place in the slicer's room (run.py): the same slices, no copy of a piece
    slicer = _Slicer(250)
    for p, w in acc.window_pieces(*args, piece_of_obs, len(piece_block), room=slicer.room):
        k = piece_block[p]
        end = p == len(piece_block) - 1 or piece_block[p + 1] != k
        direct[k] += slicer.commit(len(w), end)          # views the slicer no longer writes
    with pytest.raises(ValueError, match="room"):
        next(acc.window_pieces(*args, piece_of_obs, len(piece_block), room=lambda n: np.zeros(n + 1, w.dtype)))
    for k in range(3):
        whole = acc.windows(*args, edges[k], edges[k + 1])
        assert np.concatenate(got[k]).tobytes() == whole.tobytes()
        want = [whole[lo:lo + 250] for lo in range(0, len(whole), 250)]
        assert [s.tobytes() for s in slices[k]] == [s.tobytes() for s in want]
        assert [s.tobytes() for s in direct[k]] == [s.tobytes() for s in want]
    assert len(slices[1]) == 0 and len(slices[0]) >= 2


def test_map_kernels_prefetch_their_slots_and_results_do_not_change():
    """The inserts, probes and the extraction group-prefetch the map's lines (ble._prefetch, 1-D and 2-D
    arrays); the merged values are those of the records whatever the group boundaries."""
    import platform

    from ble._prefetch import prefetch
    from numba import njit

    from sim.scanning.accumulate import _GROUP

    @njit
    def rows_sum(a):                       # prefetch of a 2-D array's rows: a no-op for the result
        t = 0
        for i in range(a.shape[0]):
            prefetch(a, min(i + 4, a.shape[0] - 1))
            t += a[i, 1]
        return t

    a = np.arange(60, dtype=np.int64).reshape(20, 3)
    assert rows_sum(a) == a[:, 1].sum()
    keys = (np.arange(5 * _GROUP + 3, dtype=np.uint64) % np.uint64(7)) << np.uint64(32)   # 7 keys, repeated
    acc = DayAccumulator(64)
    acc.add_partial(*_partial(keys, np.ones(len(keys)), np.full(len(keys), -50.0, np.float32),
                              np.arange(len(keys), dtype=np.uint16)))
    k, vals, _ = acc.win.items()
    o = np.argsort(k)
    expect = np.bincount((keys >> np.uint64(32)).astype(np.int64), minlength=7)
    assert np.array_equal(vals["n"][o], expect)
    assert np.array_equal(vals["s0"][o], np.arange(7)) and np.allclose(vals["rsum"][o], -50.0 * expect)
    assert _contains(acc, keys).all()
    if platform.machine() in ("x86_64", "AMD64"):        # (a kernel loaded from numba's cache has no asm)
        assert "prefetch" in rows_sum.inspect_asm(rows_sum.signatures[0])


def test_window_rows_sorted_by_observer_rid_and_start_as_lexsort():
    """Extraction order = np.lexsort((t_start, rid, observer)), for observers with few windows (insertion
    sort) and with more than 64 (merge sort), with equal rids (one advertiser key, one slot) broken by
    the start time; every row's fields follow its rid."""
    rng = np.random.default_rng(5)
    obs = np.r_[np.zeros(150, np.int64), np.repeat(np.arange(1, 40), 7)]         # observer 0: 150 windows
    adv = np.r_[np.arange(1, 151), np.tile(np.arange(100, 107), 39)].astype(np.int64)
    m = len(obs)
    keys = (obs.astype(np.uint64) << np.uint64(32)) | adv.astype(np.uint64)
    bc = np.zeros((m, N_ATT_BUCKETS), np.uint16)
    bc[:, 2] = 1
    s0 = rng.integers(0, 3, m).astype(np.uint16)              # few start steps: equal rids (same slot)
    acc = DayAccumulator(64)
    acc.add_partial(obs, adv, np.ones(m, np.int32), (-60.0 - adv % 5).astype(np.float32),
                    np.full(m, -60.0, np.float32), s0, s0, bc)
    rid_keys = (np.arange(200) % 3).astype(np.uint64) + np.uint64(1)          # three device keys: rid ties
    w = acc.windows(rid_keys, np.full(200, -10.0, np.float32), 300.0, 0, np.zeros(200))
    assert len(w) == m
    assert np.array_equal(np.lexsort((w["t_start"], w["rid"], w["observer"])), np.arange(m))
    assert np.array_equal(np.sort(w["rssi_mean"]), np.sort((-60.0 - adv % 5).astype(np.float32)))
