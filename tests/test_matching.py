"""tracing.core.matching: hash join vs numpy.isin and a dict, edge values, duplicates, determinism."""
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numba
from numba import njit

from tracing.core._prefetch import prefetch
from tracing.core.matching import (_BLOCK, _FIB, _HITS_CAP, _PARALLEL_MIN, _build, _build_table_kernel, _filter_bits,
                                   _filter_pos, _table_bits, _zeros_hugepages, match_hits, match_ids, match_mask)

ROOT = Path(__file__).resolve().parents[1]
U64MAX = np.iinfo(np.uint64).max


def ref_idx(log, pub):
    first = {}
    for k, v in enumerate(pub.tolist()):
        first.setdefault(v, k)
    return np.array([first.get(v, -1) for v in log.tolist()], dtype=np.int64)


def check(log, pub):
    idx = match_ids(log, pub)
    assert idx.dtype == np.int64 and idx.shape == log.shape
    np.testing.assert_array_equal(idx, ref_idx(log, pub))
    mask = match_mask(log, pub)
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, np.isin(log, pub))
    rec, hidx = match_hits(log, pub)
    assert rec.dtype == np.int64 and hidx.dtype == np.int64
    np.testing.assert_array_equal(rec, np.flatnonzero(idx >= 0))
    np.testing.assert_array_equal(hidx, idx[rec])
    return idx


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("n_log,n_pub", [(1, 1), (10, 3), (5000, 700), (20000, 13440)])
def test_random_vs_dict_and_isin(seed, n_log, n_pub):
    rng = np.random.default_rng(seed)
    pub = rng.integers(0, U64MAX, n_pub, dtype=np.uint64, endpoint=True)
    log = rng.integers(0, U64MAX, n_log, dtype=np.uint64, endpoint=True)
    hit = rng.random(n_log) < 0.3
    log[hit] = pub[rng.integers(0, n_pub, hit.sum())]
    check(log, pub)


def test_small_value_range_collisions():
    # many keys sharing low bits / consecutive values: stresses linear probing
    rng = np.random.default_rng(7)
    pub = (np.arange(5000, dtype=np.uint64) << np.uint64(40)) | np.uint64(3)
    log = np.concatenate([pub[rng.integers(0, 5000, 3000)], np.arange(3000, dtype=np.uint64)])
    check(log, pub)
    pub2 = np.arange(10000, dtype=np.uint64)
    check(rng.integers(0, 20000, 5000).astype(np.uint64), pub2)


def test_empty_inputs():
    e = np.empty(0, np.uint64)
    x = np.array([1, 2, 3], np.uint64)
    assert match_ids(e, x).shape == (0,) and match_ids(e, x).dtype == np.int64
    np.testing.assert_array_equal(match_ids(x, e), [-1, -1, -1])
    np.testing.assert_array_equal(match_mask(x, e), [False] * 3)
    assert match_ids(e, e).size == 0 and match_mask(e, e).size == 0


def test_all_match_and_no_match():
    rng = np.random.default_rng(8)
    pub = np.unique(rng.integers(0, U64MAX, 3000, dtype=np.uint64, endpoint=True))
    perm = rng.permutation(pub.size)
    idx = check(pub[perm], pub)
    np.testing.assert_array_equal(idx, perm)
    other = rng.integers(0, U64MAX, 4000, dtype=np.uint64, endpoint=True)
    other = other[~np.isin(other, pub)]
    assert (check(other, pub) == -1).all()


def test_extreme_values_zero_and_max():
    pub = np.array([U64MAX, 0, 5, U64MAX - 1], np.uint64)
    log = np.array([0, U64MAX, 1, U64MAX - 1, 0, 5, 2**63], np.uint64)
    np.testing.assert_array_equal(check(log, pub), [1, 0, -1, 3, 1, 2, -1])
    # 0 absent from published must not match an empty slot
    np.testing.assert_array_equal(match_ids(np.array([0], np.uint64), np.array([7], np.uint64)), [-1])
    np.testing.assert_array_equal(match_ids(np.array([U64MAX], np.uint64),
                                            np.array([0], np.uint64)), [-1])


def test_duplicated_published_ids_return_first_occurrence():
    pub = np.array([9, 4, 9, 7, 4, 4, 0, 0], np.uint64)
    log = np.array([4, 9, 0, 7, 8], np.uint64)
    np.testing.assert_array_equal(check(log, pub), [1, 0, 6, 3, -1])
    rng = np.random.default_rng(9)
    base = rng.integers(0, U64MAX, 2000, dtype=np.uint64, endpoint=True)
    pub = base[rng.integers(0, 2000, 20000)]             # heavy duplication
    check(base, pub)


def test_validation():
    good = np.zeros(3, np.uint64)
    for bad in (np.zeros(3, np.int64), np.zeros(3, np.float64), np.zeros((3, 1), np.uint64),
                [1, 2, 3], np.zeros(3, np.uint32)):
        for f in (match_ids, match_mask):
            with pytest.raises(ValueError, match="log_rids"):
                f(bad, good)
            with pytest.raises(ValueError, match="published_rids"):
                f(good, bad)


def test_non_contiguous_input():
    rng = np.random.default_rng(10)
    pub = rng.integers(0, U64MAX, 400, dtype=np.uint64, endpoint=True)
    log = np.repeat(pub, 2)[::3]
    check(log, pub[::2])


_DET = """
import numpy as np, hashlib
from tracing.core.matching import match_hits, match_ids, match_mask
rng = np.random.default_rng(12)
pub = rng.integers(0, 2**64 - 1, 50000, dtype=np.uint64, endpoint=True)
pub = np.concatenate([pub, pub[:1000]])
log = rng.integers(0, 2**64 - 1, 300000, dtype=np.uint64, endpoint=True)
log[::7] = pub[rng.integers(0, pub.size, log[::7].size)]
h = hashlib.sha256(match_ids(log, pub).tobytes() + match_mask(log, pub).tobytes()
                   + b"".join(a.tobytes() for a in match_hits(log, pub)))
print(h.hexdigest())
"""


def test_deterministic_across_thread_counts():
    outs = []
    for t in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=t)
        r = subprocess.run([sys.executable, "-c", _DET], capture_output=True, text=True, env=env,
                           cwd=ROOT, timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.strip())
    assert outs[0] == outs[1]


def test_out_buffer_is_reused_and_validated():
    rng = np.random.default_rng(13)
    pub = rng.integers(0, U64MAX, 3000, dtype=np.uint64, endpoint=True)
    log = rng.integers(0, U64MAX, 5000, dtype=np.uint64, endpoint=True)
    log[::3] = pub[rng.integers(0, pub.size, log[::3].size)]
    buf = np.full(log.size, 12345, np.int64)
    got = match_ids(log, pub, out=buf)
    assert got is buf
    np.testing.assert_array_equal(buf, ref_idx(log, pub))
    mbuf = np.ones(log.size, bool)
    assert match_mask(log, pub, out=mbuf) is mbuf
    np.testing.assert_array_equal(mbuf, np.isin(log, pub))
    # empty published: the buffer is overwritten, not left stale
    np.testing.assert_array_equal(match_ids(log, pub[:0], out=buf), -1)
    assert not match_mask(log, pub[:0], out=mbuf).any()
    for bad in (np.empty(log.size, np.int32), np.empty(log.size + 1, np.int64),
                np.empty((log.size, 1), np.int64), np.empty(2 * log.size, np.int64)[::2], [0] * log.size):
        with pytest.raises(ValueError, match="out"):
            match_ids(log, pub, out=bad)
    with pytest.raises(ValueError, match="out"):
        match_mask(log, pub, out=np.empty(log.size, np.int64))


@pytest.mark.parametrize("frac", [0.0, 0.02, 0.5, 1.0])
def test_hits_none_some_most_all_match(frac):
    """match_hits keeps up to _HITS_CAP hits per block in its first pass and redoes fuller blocks:
    no matches, a few, most and all (every block overflows), with duplicated published IDs, over a
    log long enough for the parallel path."""
    rng = np.random.default_rng(21)
    pub = rng.integers(0, U64MAX, 3000, dtype=np.uint64, endpoint=True)
    pub = np.concatenate([pub, pub[:300], pub[::7]])           # duplicates: the first occurrence wins
    log = rng.integers(0, U64MAX, 150_000, dtype=np.uint64, endpoint=True)
    hit = rng.random(log.size) < frac
    log[hit] = pub[rng.integers(0, pub.size, hit.sum())]
    idx = check(log, pub)
    per_block = np.bincount(np.flatnonzero(idx >= 0) // _BLOCK, minlength=1)
    assert (per_block.max() > _HITS_CAP) == (frac >= 0.5)       # both passes are exercised


def test_hits_empty_and_invalid():
    e = np.empty(0, np.uint64)
    x = np.array([1, 2, 3], np.uint64)
    for a, b in ((e, x), (x, e), (e, e)):
        rec, idx = match_hits(a, b)
        assert rec.shape == idx.shape == (0,) and rec.dtype == idx.dtype == np.int64
    with pytest.raises(ValueError, match="log_rids"):
        match_hits(x.astype(np.int64), x)
    with pytest.raises(ValueError, match="published_rids"):
        match_hits(x, x.reshape(3, 1))


def test_hits_block_with_exactly_cap_hits_then_a_false_positive():
    """A block whose first pass keeps exactly _HITS_CAP hits and then meets a filter false positive
    (a candidate that is no hit): the kept hits stay intact."""
    rng = np.random.default_rng(22)
    pub = rng.integers(0, U64MAX, 3000, dtype=np.uint64, endpoint=True)
    table, filt, bits, fbits = _build(pub)
    fshift = np.uint64(64 - fbits)
    published = set(pub.tolist())
    fp = None
    while fp is None:                  # a key that passes the filter but was not published
        key = np.uint64(rng.integers(0, U64MAX, dtype=np.uint64, endpoint=True))
        w, m = _filter_pos(key, fshift)
        if (int(filt[w]) & int(m)) == int(m) and int(key) not in published:
            fp = key
    log = rng.integers(0, U64MAX, 3 * _BLOCK, dtype=np.uint64, endpoint=True)
    log[:_HITS_CAP] = pub[:_HITS_CAP]
    log[_HITS_CAP] = fp
    idx = check(log, pub)
    assert (idx[:_HITS_CAP] == np.arange(_HITS_CAP)).all() and idx[_HITS_CAP] == -1


def _keys_with_slots(slots, bits, rng):
    """Keys whose table home slot (top ``bits`` bits of ``key * _FIB``) is ``slots[i]``: the hash is
    invertible (``_FIB`` is odd), so pick the hash and multiply by the inverse of ``_FIB`` mod 2**64."""
    inv = pow(int(_FIB), -1, 2**64)
    low = rng.integers(0, 2**(64 - bits), len(slots), dtype=np.uint64).tolist()
    return np.array([(((int(s) << (64 - bits)) | lo) * inv) % 2**64 for s, lo in zip(slots, low)], np.uint64)


def test_build_keys_running_past_their_region_with_duplicates():
    """Keys crowding the last slots of a table region (and of the table: the probe wraps to slot 0)
    overflow into the next region and are inserted after all regions; duplicated among them, and
    among keys homed there, the first occurrence must still win."""
    rng = np.random.default_rng(23)
    n_rand = 3000
    bits = _table_bits(n_rand + 200)
    region = (1 << bits) // 256                       # 256 build regions (the filter has >= 256 words)
    crowd = np.concatenate([np.full(60, 5 * region - 2), np.full(60, (1 << bits) - 1),
                            np.arange(5 * region, 5 * region + 40)])   # homed where the overflow lands
    keys = _keys_with_slots(crowd, bits, rng)
    pub = np.concatenate([rng.integers(0, U64MAX, n_rand, dtype=np.uint64, endpoint=True), keys])
    pub = np.concatenate([pub, keys[::3], keys[::7]])[rng.permutation(pub.size + keys[::3].size + keys[::7].size)]
    assert _build(pub)[2] == bits
    log = np.concatenate([pub, _keys_with_slots(crowd, bits, rng),       # absent keys probing the crowd
                          rng.integers(0, U64MAX, 5000, dtype=np.uint64, endpoint=True)])
    idx = check(log[rng.permutation(log.size)], pub)
    assert (idx >= 0).sum() == pub.size


@njit   # (not cached: a function loaded from the cache has no assembly to inspect)
def _sum_with_prefetch(a, ahead):
    s = np.uint64(0)
    for i in range(a.shape[0]):
        prefetch(a, min(i + ahead, a.shape[0] - 1))
        s += a[i]
    return s


def test_prefetch_intrinsic_compiles_and_changes_no_result():
    a = np.arange(1000, dtype=np.uint64) * np.uint64(2654435761)
    assert _sum_with_prefetch(a, 16) == a.sum()
    asm = _sum_with_prefetch.inspect_asm(_sum_with_prefetch.signatures[0])
    if platform.machine() in ("x86_64", "AMD64"):
        assert "prefetch" in asm                                 # the instruction is really emitted


def test_zeros_hugepages():
    small = _zeros_hugepages(1000, np.uint64)
    assert small.dtype == np.uint64 and small.shape == (1000,) and not small.any()
    big = _zeros_hugepages(1 << 20, np.uint32)                   # 4 MiB: cut 2 MiB-aligned
    assert big.dtype == np.uint32 and big.shape == (1 << 20,) and not big.any()
    assert big.ctypes.data % (1 << 21) == 0 and big.flags.c_contiguous and big.flags.writeable


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs 2 numba threads")
def test_parallel_build_is_identical_for_any_thread_count():
    """The build's chunked counting sort and regional fill (parallel above _PARALLEL_MIN published
    IDs) give the same table and filter bytes on 1 and 2 threads, duplicates and overflowing regions
    included."""
    rng = np.random.default_rng(24)
    n = _PARALLEL_MIN + 20_000
    bits = _table_bits(n)
    crowd = _keys_with_slots(np.full(300, (1 << bits) // 256 * 9 - 3), bits, rng)
    pub = np.concatenate([rng.integers(0, U64MAX, n - 600, dtype=np.uint64, endpoint=True), crowd, crowd[::-1]])
    fbits = _filter_bits(n)
    outs = []
    old = numba.get_num_threads()
    try:
        for t in (1, 2):
            numba.set_num_threads(t)
            table, filt = np.zeros(1 << bits, np.uint32), np.zeros(1 << fbits, np.uint64)
            _build_table_kernel(pub, bits, fbits, table, filt)
            outs.append((table, filt))
    finally:
        numba.set_num_threads(old)
    assert np.array_equal(outs[0][0], outs[1][0]) and np.array_equal(outs[0][1], outs[1][1])
    table, filt, _, _ = _build(pub)
    assert np.array_equal(table, outs[0][0]) and np.array_equal(filt, outs[0][1])
    log = np.concatenate([pub[::50], crowd, rng.integers(0, U64MAX, 3000, dtype=np.uint64, endpoint=True)])
    idx = match_ids(log, pub)
    np.testing.assert_array_equal(idx, ref_idx(log, pub))
