"""The pairs unit's kernels (tracing.core.pairjoin) against the lexsort + reduceat code they replaced.

The references below are that code, verbatim in substance: the daily sums and the pair table must stay
bit-for-bit equal to it (NaN positions and signed zeros included), on inputs made to exercise what the
simulator's runs rarely show: many windows per (observer, source, day), groups longer than numpy's
pairwise-summation blocks, NaNs, unsorted observers, several days, duplicate ground-truth rows.
"""
import numpy as np
import pyarrow.parquet as pq
import pytest

from ble.schema import GROUND_TRUTH_DTYPE, N_ATT_BUCKETS, WINDOW_DTYPE, to_table, write_parquet
from sim.runfolder import RunFolder
from tracing import pipeline as P
from tracing.core import pairjoin as pj
from tracing.core.pairs import PAIR_DTYPE
from tracing.core.rules import DAILY_DTYPE, RULES, daily_sums, evaluate, load_rule
from tracing.pipeline import pairs_from_daily


# ---------------------------------------------------------------------------------------------------
# references: the code before tracing.core.pairjoin
# ---------------------------------------------------------------------------------------------------
def _wmean(x, wts, starts):
    x = x.astype(np.float64)
    ok = np.isfinite(x) & (wts > 0)
    num = np.add.reduceat(np.where(ok, x * wts, 0.0), starts)
    den = np.add.reduceat(np.where(ok, wts, 0.0), starts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def ref_daily_sums(windows, source, day):
    keep = source >= 0
    windows, source, day = windows[keep], source[keep], day[keep]
    m = len(windows)
    if m == 0:
        return np.zeros(0, DAILY_DTYPE)
    obs, src, day = windows["observer"].astype(np.int64), source.astype(np.int64), day.astype(np.int64)
    order = np.lexsort((day, src, obs))
    obs, src, day, w = obs[order], src[order], day[order], windows[order]
    new = np.ones(m, dtype=bool)
    new[1:] = (obs[1:] != obs[:-1]) | (src[1:] != src[:-1]) | (day[1:] != day[:-1])
    starts = np.flatnonzero(new)
    out = np.zeros(starts.size, dtype=DAILY_DTYPE)
    out["observer"], out["source"], out["day"] = obs[starts], src[starts], day[starts]
    out["t_first"] = np.minimum.reduceat(w["t_start"], starts)
    out["t_last"] = np.maximum.reduceat(w["t_end"], starts)
    out["n_windows"] = np.diff(np.append(starts, m))
    scans = w["n_scans"].astype(np.int64)
    out["n_scans"] = np.add.reduceat(scans, starts)
    dur = w["duration_s"].astype(np.float64)
    out["duration_s"] = np.add.reduceat(dur, starts)
    out["att_secs"] = np.add.reduceat(w["att_secs"].astype(np.float64), starts, axis=0)
    out["rssi_mean"] = _wmean(w["rssi_mean"], scans.astype(np.float64), starts)
    out["att_mean"] = _wmean(w["att_typical"], dur, starts)
    with np.errstate(invalid="ignore"):
        out["rssi_max"] = np.fmax.reduceat(w["rssi_max"].astype(np.float64), starts)
        out["att_min"] = np.fmin.reduceat(w["att_min"].astype(np.float64), starts)
    return out


def _group_starts(*keys):
    order = np.lexsort(keys)
    new = np.zeros(order.size, dtype=bool)
    if order.size:
        new[0] = True
        for k in keys:
            ks = k[order]
            new[1:] |= ks[1:] != ks[:-1]
    return order, np.flatnonzero(new)


def ref_pairs_from_daily(daily, notify, minutes, gt=None, close_minutes=15.0):
    obs, src = daily["observer"].astype(np.int64), daily["source"].astype(np.int64)
    day = daily["day"].astype(np.int64)
    i, j = np.minimum(obs, src), np.maximum(obs, src)
    order, starts = _group_starts(j, i, day)
    i, j, day, obs, nt, mn = i[order], j[order], day[order], obs[order], notify[order], minutes[order]
    d = {f: daily[f][order] for f in ("t_first", "att_mean", "duration_s")}
    det = np.zeros(starts.size, dtype=PAIR_DTYPE)
    if starts.size:
        det["i"], det["j"], det["day"] = i[starts], j[starts], day[starts]
        det["notify_j"] = np.logical_or.reduceat(nt & (obs == j), starts)
        det["notify_i"] = np.logical_or.reduceat(nt & (obs == i), starts)
        det["minutes"] = np.maximum.reduceat(mn, starts)
        det["t_first"] = np.minimum.reduceat(d["t_first"], starts)
        a = d["att_mean"].astype(np.float64)
        wdur = np.where(np.isfinite(a), d["duration_s"], 0.0)
        num = np.add.reduceat(np.where(np.isfinite(a), a, 0.0) * wdur, starts)
        den = np.add.reduceat(wdur, starts)
        with np.errstate(invalid="ignore", divide="ignore"):
            det["att"] = np.where(den > 0, num / den, np.nan)
    if gt is None or len(gt) == 0:
        return det
    gt_t = gt["t_first"].astype(np.float64) if "t_first" in gt.dtype.names else None
    if gt.dtype == GROUND_TRUTH_DTYPE:
        o, s = _group_starts(gt["day"], gt["j"], gt["i"])
        g = gt[o]
        gt = g[s].copy()
        gt["minutes_close"] = np.add.reduceat(g["minutes_close"].astype(np.float64), s)
        gt_t = None
    nd = det.size
    ai = np.concatenate([det["i"], gt["i"].astype(np.int64)])
    aj = np.concatenate([det["j"], gt["j"].astype(np.int64)])
    ad = np.concatenate([det["day"].astype(np.int64), gt["day"].astype(np.int64)])
    order, starts = _group_starts(aj, ai, ad)
    gid = np.empty(ai.size, dtype=np.int64)
    first = np.zeros(ai.size, dtype=bool)
    first[starts] = True
    gid[order] = np.cumsum(first) - 1
    out = np.zeros(starts.size, dtype=PAIR_DTYPE)
    out["i"], out["j"], out["day"] = ai[order][starts], aj[order][starts], ad[order][starts]
    out["t_first"], out["att"] = np.nan, np.nan
    for f in ("notify_j", "notify_i", "minutes", "t_first", "att"):
        out[f][gid[:nd]] = det[f]
    close = np.bincount(gid[nd:], weights=gt["minutes_close"].astype(np.float64), minlength=starts.size)
    out["true_close"] = close >= close_minutes
    if gt_t is not None:
        tf = out["t_first"].copy()
        np.fmin.at(tf, gid[nd:], gt_t)
        out["t_first"] = tf
    return out


# ---------------------------------------------------------------------------------------------------
# random inputs
# ---------------------------------------------------------------------------------------------------
def random_windows(rng, n, agents, sort=True):
    """Windows with many per (observer, source): observers and sources among ``agents`` agents, ~5% NaN
    RSSI/attenuation, a few zero durations and scans, some very long groups (> 128 windows)."""
    w = np.zeros(n, WINDOW_DTYPE)
    w["observer"] = rng.integers(0, agents, n)
    w["observer"][: n // 4] = 3                                # one observer with a long run
    w["t_start"] = rng.uniform(0, 3 * 86400, n)
    w["t_end"] = w["t_start"] + rng.exponential(600, n)
    w["n_scans"] = rng.integers(0, 40, n)
    w["duration_s"] = rng.exponential(300, n).astype(np.float32) * (rng.random(n) > 0.03)
    w["rssi_mean"] = rng.normal(-75, 8, n)
    w["rssi_max"] = w["rssi_mean"] + rng.exponential(3, n)
    w["att_typical"] = rng.normal(60, 10, n)
    w["att_min"] = w["att_typical"] - rng.exponential(3, n)
    w["att_secs"] = rng.exponential(30, (n, N_ATT_BUCKETS)) * (rng.random((n, N_ATT_BUCKETS)) < 0.4)
    for f in ("rssi_mean", "rssi_max", "att_typical", "att_min"):
        w[f][rng.random(n) < 0.05] = np.nan
    if sort:
        w = w[np.argsort(w["observer"], kind="stable")]
    return w


def random_sources(rng, w, agents):
    src = rng.integers(-1, agents, len(w))
    src[: len(w) // 8] = 5                                    # observer 3 logs 5 many times: long groups
    src[src == w["observer"]] = -1
    return src


def same(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# ---------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------
def test_reduceat_sum_is_numpys_pairwise_sum():
    """The kernels' group sum is np.add.reduceat's, bit for bit: first value plus numpy's pairwise sum of
    the rest (8 accumulators above 8 values, halves above 128), -0.0 kept."""
    rng = np.random.default_rng(3)
    for n in list(range(1, 40)) + [127, 128, 129, 130, 255, 256, 257, 300, 1000, 5000]:
        for _ in range(3):
            a = rng.normal(0, 1e3, n) * (rng.random(n) < 0.8)
            a[rng.random(n) < 0.2] = -0.0
            want = np.add.reduceat(a, [0])[0]
            got = pj._reduceat_sum(a, n)
            assert got == want and np.signbit(got) == np.signbit(want), n


@pytest.mark.parametrize("n_rows,keys", [(0, 1), (1, 1), (500, 3), (4000, 2)])
def test_stable_order_is_lexsort(n_rows, keys):
    """Counting-sort passes give np.lexsort's permutation (stable, least significant key first), for
    plain keys and for min/max of two columns; huge key ranges take np.lexsort itself."""
    rng = np.random.default_rng(n_rows)
    a, b = rng.integers(0, 50, n_rows), rng.integers(0, 50, n_rows)
    c = rng.integers(0, 3, n_rows)
    passes = [(a, b, 2), (a, b, 1), (c, None, 0)][:keys]
    want = np.lexsort(tuple(pj._key(x, y, m) for x, y, m in passes))
    assert np.array_equal(pj.stable_order(n_rows, passes), want)
    big = a * 10**12                                           # range far above the rows: lexsort
    assert np.array_equal(pj.stable_order(n_rows, [(b, None, 0), (big, None, 0)]), np.lexsort((b, big)))


@pytest.mark.parametrize("sort", [True, False])
def test_daily_sums_equal_lexsort_reduceat(sort):
    """daily_sums (counting sort or insertion within observer runs, one kernel) equals the lexsort +
    reduceat reference bit for bit, per-window days or one day, records or columns; without att_secs
    the bucket seconds are 0 and everything else is unchanged."""
    rng = np.random.default_rng(11 + sort)
    w = random_windows(rng, 6000, 40, sort)
    src = random_sources(rng, w, 40)
    day = np.floor(w["t_start"] / 86400).astype(np.int64)
    assert same(daily_sums(w, src), ref_daily_sums(w, src, day))
    one = np.full(len(w), 2, np.int64)
    want = ref_daily_sums(w, src, one)
    assert want["n_windows"].max() > 128                      # groups beyond the pairwise blocks
    assert same(daily_sums(w, src, 2), want)
    cols = {f: np.ascontiguousarray(w[f]) for f in WINDOW_DTYPE.names if f != "att_secs"}
    got = daily_sums(cols, src, 2)
    want["att_secs"] = 0.0
    assert same(got, want)
    buf = np.zeros(len(w), DAILY_DTYPE)                       # a reused buffer gives the same rows
    assert same(pj.window_sums(cols, src, np.array([2]), DAILY_DTYPE, out=buf), want)
    with pytest.raises(ValueError, match="out must be"):
        pj.window_sums(cols, src, np.array([2]), DAILY_DTYPE, out=buf[:3])
    assert len(daily_sums(w[:0], src[:0], 0)) == 0 and len(daily_sums(w, np.full(len(w), -1), 0)) == 0


def random_daily(rng, n, agents, days):
    d = np.zeros(n, DAILY_DTYPE)
    d["observer"] = rng.integers(0, agents, n)
    d["source"] = (d["observer"] + rng.integers(1, agents, n)) % agents
    d["day"] = rng.integers(0, days, n)
    d["t_first"] = rng.uniform(0, 86400 * days, n)
    d["duration_s"] = rng.exponential(600, n) * (rng.random(n) > 0.05)
    d["att_mean"] = np.where(rng.random(n) < 0.1, np.nan, rng.normal(60, 10, n))
    return d


@pytest.mark.parametrize("days", [1, 3])
def test_pairs_from_daily_equals_lexsort_reference(days):
    """pairs_from_daily (counting sorts, per-day merge kernels) equals the lexsort + reduceat + bincount
    reference bit for bit: duplicate directed rows, NaN minutes and attenuation, ground truth with
    duplicate rows (merged, float32) or with t_first (not merged, earliest time), rows only there."""
    rng = np.random.default_rng(days)
    daily = random_daily(rng, 5000, 60, days)
    notify = rng.random(len(daily)) < 0.4
    minutes = rng.exponential(10, len(daily))
    minutes[rng.random(len(daily)) < 0.02] = np.nan
    gt = np.zeros(3000, GROUND_TRUTH_DTYPE)
    gt["i"] = rng.integers(0, 59, gt.size)
    gt["j"] = gt["i"] + rng.integers(1, 60 - gt["i"])
    gt["day"] = rng.integers(0, days, gt.size)
    gt["minutes_close"] = rng.exponential(12, gt.size)
    for g in (None, gt, gt[np.lexsort((gt["j"], gt["i"], gt["day"]))]):
        want = ref_pairs_from_daily(daily, notify, minutes, g)
        assert same(pairs_from_daily(daily, notify, minutes, g), want)
    tdt = np.dtype([("i", "i8"), ("j", "i8"), ("day", "i4"), ("minutes_close", "f4"), ("t_first", "f8")])
    gt2 = np.zeros(gt.size, tdt)
    for f in ("i", "j", "day", "minutes_close"):
        gt2[f] = gt[f]
    gt2["t_first"] = np.where(rng.random(gt.size) < 0.3, np.nan, rng.uniform(0, 86400 * days, gt.size))
    assert same(pairs_from_daily(daily, notify, minutes, gt2, 9.0),
                ref_pairs_from_daily(daily, notify, minutes, gt2, 9.0))


def test_pair_table_ordered_is_checked():
    """ordered=True promises rows in pair_order: rows out of it are refused, in it they give the table."""
    rng = np.random.default_rng(5)
    daily = random_daily(rng, 400, 30, 1)
    notify, minutes = rng.random(400) < 0.5, rng.exponential(5, 400)
    cols = (daily["observer"], daily["source"], 0, notify, minutes, daily["t_first"], daily["att_mean"],
            daily["duration_s"])
    with pytest.raises(ValueError, match="not in pair_order"):
        pj.pair_table(*cols, ordered=True)
    o = pj.pair_order(daily["observer"], daily["source"], 0)
    sorted_cols = [c[o] if isinstance(c, np.ndarray) else c for c in cols]
    assert same(pj.pair_table(*sorted_cols, ordered=True), pj.pair_table(*cols))


def test_window_columns_equal_window_blocks(tmp_path):
    """RunFolder.window_columns yields the columns of window_blocks' records block for block (observers
    never split), reads only the columns asked for, and names file and row of a bad value."""
    rng = np.random.default_rng(2)
    w = random_windows(rng, 3000, 50)
    w["rssi_mean"] = np.nan_to_num(w["rssi_mean"], nan=-70.0)
    (tmp_path / "windows").mkdir()
    write_parquet(tmp_path / "windows" / "day-000.parquet", w, "windows")
    run = RunFolder(tmp_path)
    blocks = list(run.window_blocks(0, rows=256))
    cols = list(run.window_columns(0, rows=256))
    assert len(cols) == len(blocks) > 3
    for b, c in zip(blocks, cols):
        assert set(c) == set(WINDOW_DTYPE.names)
        assert all(np.array_equal(b[f], c[f], equal_nan=True) and c[f].flags.c_contiguous for f in c)
    part = next(run.window_columns(0, columns=["n_scans"]))
    assert set(part) == {"observer", "t_start", "t_end", "n_scans"}
    bad = w.copy()
    bad["rssi_max"][1234] = np.inf
    pq.write_table(to_table(bad, "windows"), tmp_path / "windows" / "day-001.parquet")
    with pytest.raises(ValueError, match=r"day-001\.parquet: row 1234: column 'rssi_max'"):
        list(run.window_columns(1, rows=256))
    assert len(list(run.window_columns(1, rows=256, columns=["n_scans"]))) > 1   # rssi_max not read


@pytest.mark.parametrize("name", RULES)
def test_rules_that_skip_att_secs_do_not_read_them(name):
    """The pairs unit leaves the windows' att_secs undecoded for rules that P._reads_att_secs says do
    not read them: their verdicts and minutes do not change when the bucket seconds are zeroed."""
    rule = load_rule(name)
    rng = np.random.default_rng(8)
    w = random_windows(rng, 3000, 30)
    daily = daily_sums(w, random_sources(rng, w, 30), 0)
    zeroed = daily.copy()
    zeroed["att_secs"] = 0.0
    a, b = evaluate(daily, rule), evaluate(zeroed, rule)
    unchanged = np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1], equal_nan=True)
    assert unchanged or P._reads_att_secs(rule)
    if rule.kind in ("weighted_attenuation", "gaen_v2"):
        assert P._reads_att_secs(rule) and not unchanged


def test_pair_order_of_sorted_daily_rows_is_lexsort():
    """Daily rows sorted by (observer, source) take pair_order's shortcut (the rows with observer <
    source are in order; the others sorted by source and merged in): the same permutation as np.lexsort
    by (min, max), ties (both directions of a pair) in row order; any other input takes counting passes."""
    rng = np.random.default_rng(9)
    obs, src = rng.integers(0, 300, 20000), rng.integers(0, 300, 20000)
    keep = obs != src
    key = np.unique(obs[keep] * 1000 + src[keep])
    obs, src = key // 1000, key % 1000                          # sorted by (obs, src), unique
    want = np.lexsort((np.maximum(obs, src), np.minimum(obs, src)))
    assert np.array_equal(pj.pair_order(obs, src, 4), want)
    shuffled = rng.permutation(obs.size)
    o2, s2 = obs[shuffled], src[shuffled]
    assert np.array_equal(pj.pair_order(o2, s2, 4), np.lexsort((np.maximum(o2, s2), np.minimum(o2, s2))))


def test_read_ahead_is_one_block_ahead_in_order_and_stops():
    """The pairs unit's read-ahead thread yields the blocks in order, decodes at most one block beyond the
    caller's (the memory of two blocks), passes a reader's error on after the blocks before it, and stops
    with the caller."""
    import threading
    produced, asked = [], {i: threading.Event() for i in range(12)}

    def gen(n, fail_at=None):
        for i in range(n):
            if i == fail_at:
                raise ValueError(f"bad block {i}")
            produced.append(i)
            asked[i].set()
            yield i

    assert list(P._read_ahead(gen(6))) == list(range(6))
    produced.clear()
    for e in asked.values():
        e.clear()
    it = P._read_ahead(gen(10))
    assert next(it) == 0
    assert asked[1].wait(20)                 # the next block is decoded while the caller holds block 0 ...
    assert not asked[2].wait(0.3)            # ... and no further
    assert next(it) == 1 and asked[2].wait(20)
    it.close()
    assert not any(t.name == "pairs-read-ahead" and t.is_alive() for t in threading.enumerate())
    got = []
    with pytest.raises(ValueError, match="bad block 3"):
        for b in P._read_ahead(gen(6, fail_at=3)):
            got.append(b)
    assert got == [0, 1, 2]


def test_runs_order_is_lexsort_within_observer_runs():
    """window_sums' order for one day's windows sorted by observer (each observer's rows sorted by source:
    insertion up to 32 rows, mergesort above) is np.lexsort's by (observer, source), ties in row order;
    observers out of order are reported (False) so that the counting passes take over."""
    rng = np.random.default_rng(12)
    obs = np.sort(rng.integers(0, 300, 20000))
    obs[5000:5400] = obs[5000]                                   # a run above the insertion sort's 32 rows
    obs = np.maximum.accumulate(obs)
    src = rng.integers(0, 40, obs.size)                          # many ties within a run
    order = np.empty(obs.size, np.int32)
    assert pj._runs_order_kernel(obs, src, order)
    assert np.array_equal(order, np.lexsort((src, obs)))
    assert not pj._runs_order_kernel(obs[::-1].copy(), src, order)


def test_keep_columns_copies_the_pair_fields_of_daily_rows():
    """keep_columns (one pass over the records) writes the daily rows' observer, source, t_first, att_mean
    and duration_s where numpy's per-field copies would; columns of another dtype or too short are refused."""
    rng = np.random.default_rng(4)
    w = random_windows(rng, 3000, 40)
    daily = daily_sums(w, random_sources(rng, w, 40), 0)
    keep = {f: np.full(len(daily) + 10, -7, daily.dtype[f]) for f in pj.KEEP_FIELDS}
    want = {f: v.copy() for f, v in keep.items()}
    for f in pj.KEEP_FIELDS:
        want[f][5:5 + len(daily)] = daily[f]
    pj.keep_columns(daily, keep, 5)
    assert all(same(keep[f], want[f]) for f in pj.KEEP_FIELDS)
    with pytest.raises(ValueError, match="keep_columns"):
        pj.keep_columns(daily, {**keep, "att_mean": keep["att_mean"].astype(np.float64)}, 5)
    with pytest.raises(ValueError, match="keep_columns"):
        pj.keep_columns(daily, keep, 11)


def test_blocks_in_parallel_with_gaps_equal_whole_day(tmp_path, monkeypatch):
    """Blocks computed on BLOCK_THREADS threads, each writing its rows at its windows' offset, then moved
    together: with unmatched windows (fewer rows than windows: gaps to close) and blocks of a few hundred
    windows, the pair table and counts are those of the day read as one block."""
    import sim.runfolder as rf
    from ble.schema import read_parquet
    from sim.run import simulate
    from sim.scenario import preset
    out = simulate(preset("lang-son", 0.001), tmp_path / "run", seed=4, days=1, progress=False)
    f = out / "windows" / "day-000.parquet"
    w = read_parquet(f, "windows")
    rng = np.random.default_rng(1)
    bad = rng.random(len(w)) < 0.2
    w["rid"][bad] = rng.integers(0, 2**63, int(bad.sum())).astype(np.uint64)   # IDs nobody broadcast
    write_parquet(f, w, "windows")
    s_block, s_whole = {}, {}
    monkeypatch.setattr(rf, "WINDOW_BLOCK_ROWS", 300)
    with pytest.warns(UserWarning, match="rolling ID that no phone"):
        got = P.pairs_from_run(out, "gaen-ch", stats=s_block)
    monkeypatch.setattr(rf, "WINDOW_BLOCK_ROWS", 1 << 40)
    with pytest.warns(UserWarning, match="rolling ID that no phone"):
        want = P.pairs_from_run(out, "gaen-ch", stats=s_whole)
    assert s_whole["unmatched"] == int(bad.sum()) and len(want) > 100
    assert same(got, want) and s_block == s_whole
