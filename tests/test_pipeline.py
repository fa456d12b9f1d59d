"""Pipeline: a tiny hand-made run folder -> the exact pair table; matching and unmatched reporting."""
import json
import warnings

import numpy as np
import pytest

from ble.ids import sim_keys, sim_rids
from ble.schema import ATT_EDGES, GROUND_TRUTH_DTYPE, N_ATT_BUCKETS, WINDOW_DTYPE, write_parquet
from tracing import pipeline as P
from tracing.core.pairs import PAIR_DTYPE
from tracing.pipeline import pairs_from_run, pairs_from_windows, resolve_sources

DAY = 86400.0


def window(observer, rid, t_start, minutes, att_db, rssi_max=-60.0):
    w = np.zeros(1, dtype=WINDOW_DTYPE)
    secs = np.zeros(N_ATT_BUCKETS)
    secs[np.searchsorted(ATT_EDGES, att_db, side="left")] = 60.0 * minutes
    w["observer"], w["rid"], w["t_start"] = observer, rid, t_start
    w["t_end"] = t_start + 60.0 * minutes
    w["n_scans"] = max(1, int(minutes * 60 // 300))
    w["duration_s"] = 60.0 * minutes
    w["rssi_mean"], w["rssi_max"], w["tx_power"] = rssi_max - 2, rssi_max, -10.0
    w["att_typical"], w["att_min"] = att_db, att_db - 1
    w["att_secs"] = secs
    return w


@pytest.fixture
def run(tmp_path):
    """Agents 0..3; phones 0, 1, 2 (agent 3 has none). Two days of windows, ground truth, keys."""
    agents = np.array([0, 1, 2], dtype=np.int64)
    keys = sim_keys(3, 7)

    def rid(agent, t):
        return np.uint64(sim_rids(keys[agent], int(t // 900)))
    t_a, t_b, t_c, t_d = 40 * 900 + 10.0, 41 * 900 + 5.0, 50 * 900 + 1.0, DAY + 10 * 900 + 30.0
    d0 = np.concatenate([
        window(1, rid(0, t_a), t_a, 20, 45.0),      # 1 logs 0: 20 min <= 50 dB -> CH notify_j (0,1)
        window(0, rid(1, t_b), t_b, 5, 45.0),       # 0 logs 1: 5 min -> CH no (notify_i of (0,1))
        window(2, rid(0, t_c), t_c, 16, 52.0),      # 2 logs 0: 16 min in (51, 55] -> 8 weighted, no
        window(2, np.uint64(12345), t_c, 30, 40.0),  # a rolling ID nobody broadcast: unmatched
        window(0, rid(0, t_a), t_a, 30, 40.0),      # 0's own ID in its log: ignored, counted
    ])
    d1 = np.concatenate([
        window(2, rid(1, t_d), t_d, 10, 40.0),      # 2 logs 1, two windows: 10 + 8 min -> 18, notify_j
        window(2, rid(1, t_d + 3600), t_d + 3600, 8, 49.0),
        window(0, rid(1, t_d - DAY), t_d, 30, 40.0),  # yesterday's ID of 1 logged today: no match
    ])
    gt = np.zeros(4, dtype=GROUND_TRUTH_DTYPE)
    gt["i"], gt["j"], gt["day"] = [0, 0, 1, 1], [1, 2, 3, 2], [0, 0, 0, 1]
    gt["minutes_close"] = [25, 5, 30, 18]
    gt["min_dist"] = [0.5, 1.5, 0.3, 0.8]
    gt["detected"] = [True, True, False, True]
    (tmp_path / "windows").mkdir()
    write_parquet(tmp_path / "windows" / "day-000.parquet", d0, "windows")
    write_parquet(tmp_path / "windows" / "day-001.parquet", d1, "windows")
    write_parquet(tmp_path / "ground_truth.parquet", gt, "ground_truth")
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"agent": agents, "key": keys}), tmp_path / "keys.parquet")
    (tmp_path / "run.json").write_text(json.dumps({"n_agents": 4, "days": 2, "window_merge": "day"}))
    return dict(dir=tmp_path, keys=keys, d0=d0, d1=d1, gt=gt, t=(t_a, t_b, t_c, t_d))


def expected_ch(t):
    t_a, t_b, t_c, t_d = t
    e = np.zeros(4, dtype=PAIR_DTYPE)
    e["i"], e["j"], e["day"] = [0, 0, 1, 1], [1, 2, 3, 2], [0, 0, 0, 1]
    e["t_first"] = [t_a, t_c, np.nan, t_d]
    e["true_close"] = [True, False, True, True]
    e["notify_j"] = [True, False, False, True]
    e["notify_i"] = [False, False, False, False]
    e["minutes"] = [20.0, 8.0, 0.0, 18.0]
    # (0,1): 20 min at 45 dB and 5 min at 45 dB; (0,2): 52 dB; (1,2): (10*40 + 8*49)/18
    e["att"] = [45.0, 52.0, np.nan, (10 * 40 + 8 * 49) / 18]
    return e


def assert_pairs_equal(got, exp):
    assert got.dtype == PAIR_DTYPE
    assert len(got) == len(exp), got
    for f in ("i", "j", "day", "true_close", "notify_j", "notify_i"):
        assert np.array_equal(got[f], exp[f]), (f, got[f], exp[f])
    for f in ("t_first", "minutes", "att"):
        assert np.allclose(got[f], exp[f], equal_nan=True, rtol=1e-6), (f, got[f], exp[f])


def test_run_folder_gives_exact_pair_table(run):
    stats = {}
    with pytest.warns(UserWarning, match="2 of 8 exposure windows"):
        pairs = pairs_from_run(run["dir"], "gaen-ch", stats=stats)
    assert_pairs_equal(pairs, expected_ch(run["t"]))
    assert stats["windows"] == 8 and stats["unmatched"] == 2 and stats["own_id"] == 1
    assert stats["matched"] == 6 and stats["slot_mismatch"] == 0
    assert stats["per_day"][0]["unmatched"] == 1 and stats["per_day"][1]["unmatched"] == 1


def test_run_folder_other_rules_and_options(run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        bz = pairs_from_run(run["dir"], "bluezone")
        # every matched window notifies under Bluezone's client rule
        assert bz["notify_j"].tolist() == [True, True, False, True]
        assert bz["notify_i"].tolist() == [True, False, False, False]
        assert bz["minutes"].tolist() == [20.0, 16.0, 0.0, 18.0]
        strict = pairs_from_run(run["dir"], "gaen-ch", close_minutes=26)
        assert strict["true_close"].tolist() == [False, False, True, False]
        one = pairs_from_run(run["dir"], "gaen-ch", days=[1])
        assert_pairs_equal(one, expected_ch(run["t"])[3:])


def test_pairs_from_windows_matches_run(run):
    w, keys = run["d0"], run["keys"]
    src, slot = resolve_sources(w["rid"], np.arange(3), keys, 0)
    assert src.tolist() == [0, 1, 0, -1, 0]
    assert np.array_equal(slot[src >= 0], np.floor(w["t_start"][src >= 0] / 900).astype(int))
    got = pairs_from_windows(w, src, 0, run["gt"][run["gt"]["day"] == 0], "gaen-ch")
    assert_pairs_equal(got, expected_ch(run["t"])[:3])
    # no ground truth: only detected pairs, true_close False
    got = pairs_from_windows(w, src, None, None, "gaen-ch")
    assert got[["i", "j"]].tolist() == [(0, 1), (0, 2)] and not got["true_close"].any()


def test_resolve_sources_chunked_and_unchunked_agree():
    keys = sim_keys(50, 1)
    agent = np.arange(100, 150)
    rng = np.random.default_rng(0)
    who = rng.integers(0, 50, 300)
    slots = 96 * 3 + rng.integers(0, 96, 300)
    rids = sim_rids(keys[who], slots)
    rids[::10] = rng.integers(0, 2**63, 30).astype(np.uint64)        # foreign IDs
    a, s = resolve_sources(rids, agent, keys, 3)
    b, t = resolve_sources(rids, agent, keys, 3, chunk_ids=96 * 7)   # 8 chunks
    exp = np.where(np.arange(300) % 10 == 0, -1, agent[who])
    assert np.array_equal(a, exp) and np.array_equal(b, exp) and np.array_equal(s, t)
    assert np.array_equal(s[exp >= 0], slots[exp >= 0])


def test_ground_truth_duplicates_and_errors(run):
    gt = np.concatenate([run["gt"], run["gt"][:1]])                  # (0,1,day0) twice: 25 + 25 min
    w = run["d0"][:1]
    got = pairs_from_windows(w, np.array([0]), 0, gt[gt["day"] == 0], "gaen-ch", close_minutes=40)
    assert got["true_close"].tolist() == [True, False, False]
    with pytest.raises(ValueError, match="one entry per window"):
        pairs_from_windows(w, np.array([0, 1]), 0, None, "gaen-ch")
    with pytest.raises(ValueError, match="does not exist"):
        pairs_from_run(run["dir"] / "nope", "gaen-ch")


def test_run_pair_table_streamed_in_observer_blocks_equals_whole_days(tmp_path, monkeypatch):
    """pairs_from_run reads each day's windows in blocks of whole observers (memory of one block): with
    blocks of a few hundred rows (observers split across Parquet batches, carried over) the pair table
    and its statistics are those of reading the days whole."""
    import sim.runfolder as rf
    from ble.schema import iter_parquet, read_parquet
    from sim.run import simulate
    from sim.scenario import preset
    out = simulate(preset("lang-son", 0.001), tmp_path / "run", seed=2, days=2, progress=False)
    f = out / "windows" / "day-001.parquet"
    whole = read_parquet(f, "windows")
    blocks = list(iter_parquet(f, "windows", 300, "observer"))
    assert len(blocks) > 3 and np.array_equal(np.concatenate(blocks), whole)
    assert all(b["observer"][-1] < c["observer"][0] for b, c in zip(blocks, blocks[1:]))  # no observer split
    s_block, s_whole = {}, {}
    monkeypatch.setattr(rf, "WINDOW_BLOCK_ROWS", 257)
    got = pairs_from_run(out, "bluezone", stats=s_block)
    monkeypatch.setattr(rf, "WINDOW_BLOCK_ROWS", 1 << 40)
    want = pairs_from_run(out, "bluezone", stats=s_whole)
    assert len(want) > 100 and got.tobytes() == want.tobytes() and s_block == s_whole
    unsorted = whole[::-1].copy()                       # not sorted by observer: read whole
    write_parquet(tmp_path / "u.parquet", unsorted, "windows")
    assert [len(b) for b in iter_parquet(tmp_path / "u.parquet", "windows", 300, "observer")] == [len(whole)]
