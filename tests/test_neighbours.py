"""sim.neighbours: exact agreement with scipy's cKDTree.query_pairs, validation, determinism."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial import cKDTree

import numba

from sim import cell_list, neighbours
from sim.neighbours import _H_INFLATE, pairs_within, pairs_within_groups

ROOT = Path(__file__).resolve().parents[1]


def ref_pairs(xy, r):
    """cKDTree.query_pairs as sorted (i, j) int64 arrays."""
    xy = np.asarray(xy, dtype=np.float64)
    if len(xy) < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    p = cKDTree(xy).query_pairs(r, output_type="ndarray").astype(np.int64)
    o = np.lexsort((p[:, 1], p[:, 0]))
    return p[o, 0], p[o, 1]


def ref_groups(xy, group, r):
    ii, jj = [np.empty(0, np.int64)], [np.empty(0, np.int64)]
    for g in np.unique(group):
        idx = np.flatnonzero(group == g)
        a, b = ref_pairs(xy[idx], r)
        ii.append(idx[a])
        jj.append(idx[b])
    i, j = np.concatenate(ii), np.concatenate(jj)
    o = np.lexsort((j, i))
    return i[o], j[o]


def assert_same(got, want):
    i, j = got
    assert i.dtype == np.int64 and j.dtype == np.int64
    assert np.all(i < j)
    np.testing.assert_array_equal(i, want[0])
    np.testing.assert_array_equal(j, want[1])


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 500, 5000])
@pytest.mark.parametrize("seed", [0, 1])
def test_uniform_matches_ckdtree(n, seed):
    rng = np.random.default_rng(seed)
    xy = rng.random((n, 2)) * np.sqrt(max(n, 1) * np.pi / 3)   # ~3 neighbours within r = 1
    assert_same(pairs_within(xy, 1.0), ref_pairs(xy, 1.0))


@pytest.mark.parametrize("r", [1.0, 2.0, np.sqrt(2.0), 5.0, 0.5, 2.5])
def test_lattice_points_exactly_at_radius(r):
    # integer lattice: many pairs at exactly r (1, 2, sqrt 2 diagonal, 3-4-5 triangles for r = 5)
    g = np.arange(-7, 13, dtype=np.float64)
    xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    assert_same(pairs_within(xy, r), ref_pairs(xy, r))


def test_lattice_decimal_spacing_and_offset():
    # 0.1 spacing is not exact in binary: the boundary decisions must still equal cKDTree's
    g = np.arange(40) * 0.1
    xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2) + 1234.5
    for r in (0.1, 0.2, 0.30000000000000004, 0.3, np.hypot(0.1, 0.1)):
        assert_same(pairs_within(xy, r), ref_pairs(xy, r))


def test_duplicates_and_collinear():
    xy = np.array([[0, 0], [0, 0], [1, 0], [2, 0], [0, 0], [3, 0.0]])
    assert_same(pairs_within(xy, 1.0), ref_pairs(xy, 1.0))


def test_integer_input_and_list():
    xy = [[0, 0], [1, 0], [5, 5], [5, 6]]
    assert_same(pairs_within(xy, 1), ref_pairs(np.array(xy, float), 1.0))


def test_clustered_points():
    rng = np.random.default_rng(3)
    centres = rng.random((60, 2)) * 1e5                  # sparse clusters over 100 km: hashed cells
    sizes = rng.integers(1, 80, 60)
    xy = np.concatenate([c + rng.normal(0, 2.0, (s, 2)) for c, s in zip(centres, sizes)])
    rng.shuffle(xy)
    assert_same(pairs_within(xy, 2.0), ref_pairs(xy, 2.0))


def test_dense_cluster_long_rows():
    # everyone within r of everyone: rows longer than the insertion-sort limit
    rng = np.random.default_rng(4)
    xy = rng.random((300, 2))
    assert_same(pairs_within(xy, 2.0), ref_pairs(xy, 2.0))


def test_huge_extent_is_sparse_and_exact():
    rng = np.random.default_rng(5)
    base = np.array([[0.0, 0.0], [1e12, 3e11], [-5e11, 7e11]])
    xy = np.concatenate([b + rng.random((50, 2)) * 3 for b in base])
    assert_same(pairs_within(xy, 1.0), ref_pairs(xy, 1.0))
    # large absolute coordinates (UTM-like) with small radius
    xy2 = rng.random((2000, 2)) * 50 + np.array([6.5e5, 2.3e6])
    assert_same(pairs_within(xy2, 1.5), ref_pairs(xy2, 1.5))


def test_validation():
    with pytest.raises(ValueError, match="row 2"):
        pairs_within(np.array([[0, 0], [1, 1], [np.nan, 0], [np.inf, 1]]), 1.0)
    with pytest.raises(ValueError, match="row 1"):
        pairs_within(np.array([[0, 0], [0, -np.inf]]), 1.0)
    with pytest.raises(ValueError, match="shape"):
        pairs_within(np.zeros((4, 3)), 1.0)
    with pytest.raises(ValueError, match="shape"):
        pairs_within(np.zeros(4), 1.0)
    with pytest.raises(ValueError, match="dtype"):
        pairs_within(np.array([["a", "b"]]), 1.0)
    for bad in (0, -1, np.nan, np.inf, "x", None):
        with pytest.raises(ValueError, match="radius"):
            pairs_within(np.zeros((3, 2)), bad)
    with pytest.raises(ValueError, match="group"):
        pairs_within_groups(np.zeros((3, 2)), np.zeros(2, int), 1.0)
    with pytest.raises(ValueError, match="group"):
        pairs_within_groups(np.zeros((3, 2)), np.zeros(3), 1.0)


def test_empty_and_single():
    for xy in (np.empty((0, 2)), np.zeros((1, 2))):
        i, j = pairs_within(xy, 1.0)
        assert i.size == 0 and j.size == 0 and i.dtype == np.int64
        i, j = pairs_within_groups(xy, np.zeros(len(xy), np.int64), 1.0)
        assert i.size == 0 and j.dtype == np.int64


def test_groups_match_per_group_ckdtree():
    rng = np.random.default_rng(6)
    n = 4000
    group = rng.integers(-5, 40, n)                          # places; coordinates overlap across places
    xy = rng.random((n, 2)) * 12
    assert_same(pairs_within_groups(xy, group, 1.0), ref_groups(xy, group, 1.0))
    # one group = plain pairs_within
    assert_same(pairs_within_groups(xy, np.full(n, 7), 1.0), pairs_within(xy, 1.0))
    # uint64 group ids above 2**63 are fine (only equality matters)
    g64 = group.astype(np.uint64) + np.uint64(2**63)
    assert_same(pairs_within_groups(xy, g64, 1.0), ref_groups(xy, group, 1.0))


def test_points_on_column_and_level_boundaries():
    # coordinates exactly on the column (h) and level (h / 8) boundaries, and pairs at exactly r on them
    r = 1.0
    h = r * _H_INFLATE
    gx = np.arange(0, 12) * h
    gy = np.arange(0, 40) * (h / 8)
    xy = np.stack(np.meshgrid(gx, gy), -1).reshape(-1, 2)
    xy = np.concatenate([xy, xy + [r, 0.0], xy + [0.0, r], xy[:50] + [0.6, 0.8]])
    assert_same(pairs_within(xy, r), ref_pairs(xy, r))


def test_all_points_in_one_cell_and_identical_points():
    rng = np.random.default_rng(7)
    xy = rng.random((200, 2)) * 0.1 + 5.0                    # one cell, one bucket, > 48 points
    assert_same(pairs_within(xy, 1.0), ref_pairs(xy, 1.0))
    same = np.full((130, 2), 3.25)                          # one key: the in-bucket sort has nothing to do
    i, j = pairs_within(same, 0.5)
    assert len(i) == 130 * 129 // 2
    assert_same((i, j), ref_pairs(same, 0.5))


@pytest.mark.parametrize("room", [0, 1, 1000])
def test_scan_rounds_room(monkeypatch, room):
    # room 0: every block runs out at once and the second round (exact room) scans everything;
    # room 1: blocks stop midway; room 1000: one round
    monkeypatch.setattr(cell_list, "_ROOM", room)
    monkeypatch.setattr(cell_list, "_BLOCK", 512)          # many blocks even for a small input
    rng = np.random.default_rng(8)
    xy = rng.random((6000, 2)) * 40                          # ~11 neighbours within r = 1
    assert_same(pairs_within(xy, 1.0), ref_pairs(xy, 1.0))
    group = rng.integers(0, 5, 6000)
    assert_same(pairs_within_groups(xy, group, 1.0), ref_groups(xy, group, 1.0))


def test_large_group_ids_and_many_groups():
    rng = np.random.default_rng(9)
    n = 5000
    xy = rng.random((n, 2)) * 6
    group = rng.integers(0, 300, n)
    assert_same(pairs_within_groups(xy, group, 0.7), ref_groups(xy, group, 0.7))
    big = group.astype(np.int64) * 2**33 + 5                 # >= 2**31: ranked, same pairs
    assert_same(pairs_within_groups(xy, big, 0.7), ref_groups(xy, group, 0.7))


def test_layout_fits_and_coarsens_only_when_needed():
    h, nx, ny, q, bits = cell_list._layout(10**6, 1, 2000.0, 2000.0, 2.0)
    assert (h, q) == (2.0, 8) and nx == ny == 1001                  # the ordinary case: q = 8, h kept
    assert bits == int(1 * (nx + 1) * q * (ny + 1) - 1).bit_length()
    for n, groups, w in ((150, 1, 1.5e12), (10**6, 2**31 - 1, 5e4), (2**31 - 2, 2**31 - 1, 1e9)):
        h, nx, ny, q, bits = cell_list._layout(n, groups, w, w, 1.0)
        assert bits - min(cell_list._MSD_BITS, bits) + int(n - 1).bit_length() <= 63
        assert bits == int(groups * (nx + 1) * q * (ny + 1) - 1).bit_length()
        if q < 8:                                                   # q only drops when 2q would not fit
            b2 = int(groups * (nx + 1) * 2 * q * (ny + 1) - 1).bit_length()
            assert b2 - min(cell_list._MSD_BITS, b2) + int(n - 1).bit_length() > 63


def test_workspace_reuse_grow_and_release():
    rng = np.random.default_rng(10)
    big, small = rng.random((30000, 2)) * 100, rng.random((700, 2)) * 15
    want_big, want_small = ref_pairs(big, 1.0), ref_pairs(small, 1.0)
    cell_list.release_workspace()
    for xy, want in ((small, want_small), (big, want_big), (small, want_small), (big, want_big)):
        got = pairs_within(xy, 1.0)
        assert_same(got, want)
        assert not any(np.shares_memory(g, b) for g in got for b in cell_list._WORKSPACE.bufs.values())
    cell_list.release_workspace()
    assert cell_list._WORKSPACE.bufs == {}
    assert_same(pairs_within(big, 1.0), want_big)


def test_thread_choice_small_inputs_and_busy_cores(monkeypatch):
    k = numba.get_num_threads()
    cores = len(os.sched_getaffinity(0))
    monkeypatch.setattr(neighbours, "_runnable_elsewhere", lambda: 0)
    assert neighbours._n_threads(1000) == 1 and neighbours._n_threads(10**6) == min(k, cores)
    monkeypatch.setattr(neighbours, "_runnable_elsewhere", lambda: cores - 1)     # one core left
    assert neighbours._n_threads(10**6) == 1 and neighbours._n_threads(50_000) == k
    monkeypatch.setattr(neighbours, "_runnable_elsewhere", lambda: 10**6)       # every core taken
    assert neighbours._n_threads(10**6) == 1
    xy = np.random.default_rng(12).random((120_000, 2)) * 400
    assert_same(pairs_within(xy, 1.0), ref_pairs(xy, 1.0))             # the one-thread path
    assert numba.get_num_threads() == k                                 # restored


def test_runnable_elsewhere_reads_proc():
    v = neighbours._runnable_elsewhere()
    assert isinstance(v, int) and v >= 0 or not os.path.exists("/proc/loadavg")


_DET = """
import numpy as np, hashlib
import numba

from sim import cell_list, neighbours
from sim.neighbours import _H_INFLATE, pairs_within, pairs_within_groups
rng = np.random.default_rng(11)
xy = rng.random((70000, 2)) * 280                      # 4 blocks of points
g = rng.integers(0, 9, 70000)
h = hashlib.sha256()
for a in (*pairs_within(xy, 1.0), *pairs_within_groups(xy, g, 1.0)):
    h.update(a.tobytes())
print(h.hexdigest())
"""


def test_deterministic_across_thread_counts():
    outs = []
    for t in ("1", "2", "3"):                           # odd thread counts: blocks split unevenly
        env = dict(os.environ, NUMBA_NUM_THREADS=t)
        r = subprocess.run([sys.executable, "-c", _DET], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.strip())
    assert outs[0] == outs[1]


def test_thread_split_does_not_change_the_pairs(monkeypatch):
    # the kernels run over contiguous block ranges on Python threads: any number of threads, and
    # ranges cut anywhere (many small blocks), give the same pairs in the same order
    monkeypatch.setattr(cell_list, "_BLOCK", 700)
    monkeypatch.setattr(cell_list, "_ROOM", 1)                    # second rounds too
    rng = np.random.default_rng(13)
    xy = np.concatenate([rng.random((5000, 2)) * 60, rng.normal(30, 0.7, (3000, 2))])   # a dense spot
    g = rng.integers(0, 3, xy.shape[0])
    want, want_g = ref_pairs(xy, 1.0), ref_groups(xy, g, 1.0)
    x0, y0 = xy.min(0)
    wx, wy = xy.max(0) - xy.min(0)
    h = 1.0 * _H_INFLATE
    for threads in (1, 2, 3, 5):
        assert_same(cell_list.pairs_sorted(xy, 1.0, x0, y0, wx, wy, h, threads=threads), want)
        assert_same(cell_list.pairs_sorted(xy, 1.0, x0, y0, wx, wy, h, g.astype(np.int64), threads=threads), want_g)


def test_weighted_cuts_balance_rows():
    start = np.array([0, 0, 90, 91, 92, 100, 200], np.int64)     # 6 buckets, 200 rows
    assert cell_list._weighted(start, 1) == [0, 6]
    cuts = cell_list._weighted(start, 2)
    assert cuts[0] == 0 and cuts[-1] == 6 and len(cuts) == 3 and cuts[1] == 5     # 100 rows each side
    cuts = cell_list._weighted(start, 4)
    assert cuts == sorted(cuts) and cuts[0] == 0 and cuts[-1] == 6
    assert cell_list._even(3, 5) == [0, 1, 2, 3] and cell_list._even(64, 2) == [0, 32, 64]


_FORK = """
import multiprocessing as mp
import numpy as np
from sim import cell_list
from sim.neighbours import _H_INFLATE
xy = np.random.default_rng(14).random((40000, 2)) * 150
args = (xy, 1.0, 0.0, 0.0, 150.0, 150.0, _H_INFLATE)
want = cell_list.pairs_sorted(*args, threads=2)                 # the pool exists in the parent
def child(q):
    i, j = cell_list.pairs_sorted(*args, threads=2)             # a forked child makes its own pool
    q.put(bool(np.array_equal(i, want[0]) and np.array_equal(j, want[1])))
ctx = mp.get_context("fork")
q = ctx.Queue()
p = ctx.Process(target=child, args=(q,))
p.start()
print(q.get(timeout=120))
p.join(60)
"""


def test_forked_child_uses_its_own_thread_pool():
    r = subprocess.run([sys.executable, "-c", _FORK], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True"
