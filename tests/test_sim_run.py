"""End-to-end simulation: determinism (repeat and thread count), schemas, the CLI, and the sanity of
places and positions (household members are close contacts, random market visitors are not)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from ble.ids import sim_rids, slot_of
from ble.schema import ATT_EDGES, read_meta, read_parquet
from sim.places import PLACE_TYPES, T
from sim.run import build_world, day_schedule, simulate
from sim.scenario import preset
from sim.schedule import VISIT

ROOT = Path(__file__).resolve().parents[1]
SCALE, DAYS, SEED = 0.002, 2, 11          # 1,563 agents of Lạng Sơn, two days (Mon, Tue)


def _run_subprocess(out: Path, threads: int):
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    code = (f"from sim.scenario import preset; from sim.run import simulate; "
            f"simulate(preset('lang-son', {SCALE}), {str(out)!r}, seed={SEED}, days={DAYS}, progress=False)")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT, timeout=600)


def _files(d: Path):
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*") if p.is_file())


def _run_json(d: Path):
    r = json.loads((d / "run.json").read_text())
    r.pop("timings")
    return r


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("sim")
    a, b, c = base / "t1", base / "t2", base / "again"
    _run_subprocess(a, 1)
    _run_subprocess(b, 2)
    simulate(preset("lang-son", SCALE), c, seed=SEED, days=DAYS, progress=False)
    return a, b, c


def test_byte_identical_repeat_and_threads(runs):
    a, b, c = runs
    files = _files(a)
    assert "population.parquet" in files and "keys.parquet" in files and "ground_truth.parquet" in files
    assert [f"windows/day-{d:03d}.parquet" for d in range(DAYS)] == [f for f in files if f.startswith("windows/")]
    assert files == _files(b) == _files(c)
    for f in files:
        if f == "run.json":
            continue
        assert (a / f).read_bytes() == (b / f).read_bytes(), f"{f} differs between 1 and 2 threads"
        assert (a / f).read_bytes() == (c / f).read_bytes(), f"{f} differs on repeat"
    assert _run_json(a) == _run_json(b) == _run_json(c)
    t = json.loads((b / "run.json").read_text())["timings"]
    assert t["numba_threads"] == 2 and set(t["stages_s"]) >= {"schedules", "positions", "neighbours",
                                                              "radio", "aggregation", "writing"}


def test_outputs_validate_and_are_consistent(runs):
    d = runs[0]
    run = json.loads((d / "run.json").read_text())
    assert run["window_merge"] == "day" and run["seed"] == SEED and run["days"] == DAYS
    n = run["n_agents"]
    assert n == round(781_655 * SCALE)
    pop = pq.read_table(d / "population.parquet")
    assert pop.column_names[:9] == ["agent", "age", "household", "has_phone", "platform", "device_model",
                                    "carriage", "role", "place_types"]
    assert str(pop.schema.field("age").type) == "int16" and str(pop.schema.field("place_types").type) == "int32"
    P = {k: pop.column(k).to_numpy() for k in pop.column_names}
    assert (P["agent"] == np.arange(n)).all()
    assert ((P["platform"] == -1) == ~P["has_phone"]).all()
    assert ((P["device_model"] == -1) == ~P["has_phone"]).all()
    assert (P["place_types"] & 1).all()                     # everyone is at home at some time
    assert (P["place_types"] < (1 << len(PLACE_TYPES))).all()
    keys = pq.read_table(d / "keys.parquet")
    agents, kv = keys.column("agent").to_numpy(), keys.column("key").to_numpy()
    assert (agents == np.flatnonzero(P["has_phone"])).all() and kv.dtype == np.uint64
    key_of = dict(zip(agents.tolist(), kv.tolist()))
    gt = read_parquet(d / "ground_truth.parquet", "ground_truth")     # validates
    assert set(np.unique(gt["day"])) == set(range(DAYS))
    assert (gt["min_dist"] <= 2.0 + 1e-6).all() and (gt["minutes_close"] > 0).all()
    assert not (gt["detected"] & ~(P["has_phone"][gt["i"]] & P["has_phone"][gt["j"]])).any()
    for day in range(DAYS):
        w = read_parquet(d / "windows" / f"day-{day:03d}.parquet", "windows")   # validates
        assert read_meta(d / "windows" / f"day-{day:03d}.parquet")["window_merge"] == "day"
        assert len(w) > 0
        assert P["has_phone"][w["observer"]].all()
        assert ((w["t_start"] >= day * 86400) & (w["t_end"] < (day + 1) * 86400)).all()
        assert np.allclose(w["att_secs"].sum(axis=1), w["duration_s"])
        assert np.allclose(w["duration_s"], 300.0 * w["n_scans"])
        assert np.allclose(w["att_typical"], w["tx_power"] - w["rssi_mean"], atol=1e-3)
        assert (w["rssi_max"] >= w["rssi_mean"] - 1e-3).all()
        assert (w["rssi_mean"] >= run["radio_params"]["floor_dbm"] - 1e-3).all()
        # rows sorted by (observer, rid)
        o = np.lexsort((w["rid"], w["observer"]))
        assert (o == np.arange(len(w))).all()
        # every rid is the rolling ID of some phone in the slot of the window's first scan
        slots = slot_of(w["t_start"])
        cand = sim_rids(kv[None, :], slots[:200, None])
        assert (cand == w["rid"][:200, None]).any(axis=1).all()
        # detected close pairs appear in the windows of one of them
        g = gt[(gt["day"] == day) & gt["detected"]][:50]
        for i, j in zip(g["i"], g["j"]):
            rid_j = sim_rids(np.uint64(key_of[int(j)]), slot_of(w["t_start"][w["observer"] == i]))
            rid_i = sim_rids(np.uint64(key_of[int(i)]), slot_of(w["t_start"][w["observer"] == j]))
            assert np.isin(rid_j, w["rid"][w["observer"] == i]).any() or \
                np.isin(rid_i, w["rid"][w["observer"] == j]).any()
    # orders of magnitude per agent-day (documented in the report)
    per = run["per_agent_day"]
    assert 1 < per["ground_truth_rows"] < 200 and 1 < per["windows"] < 2000
    assert len(ATT_EDGES) + 1 == w["att_secs"].shape[1]


def test_household_members_close_market_visitors_not(runs):
    """Household pairs: >= 15 min within 2 m on most days (sleeping rooms, small homes). Market
    co-visitors (different households, same market at the same time): rarely."""
    d = runs[0]
    scn = preset("lang-son", SCALE)
    gt = read_parquet(d / "ground_truth.parquet", "ground_truth")
    pop, places, *_ = build_world(scn, SEED)
    hh = pop.household
    day = 0
    g = gt[gt["day"] == day]
    close = {(int(i), int(j)) for i, j, m in zip(g["i"], g["j"], g["minutes_close"]) if m >= 15}
    # household pairs (patients sleep in hospital: exclude households with an in-patient)
    sizes = pop.hh_size
    ii, jj = [], []
    for h in np.flatnonzero(sizes >= 2):
        mem = np.arange(pop.hh_start[h], pop.hh_start[h] + sizes[h])
        a, b = np.triu_indices(len(mem), 1)
        ii.append(mem[a])
        jj.append(mem[b])
    ii, jj = np.concatenate(ii), np.concatenate(jj)
    pat = pop.role == 5
    keep = ~(pat[ii] | pat[jj])
    hh_frac = np.mean([(int(i), int(j)) in close for i, j in zip(ii[keep], jj[keep])])
    # market co-visitors from the day's schedule
    sched = day_schedule(scn, pop, places, SEED, day)
    m = (sched.seg_kind == VISIT) & (sched.seg_inst >= 0)
    m &= places.inst_type[np.maximum(sched.seg_inst, 0)] == T["market"]
    ag, sl = np.nonzero(m)
    inst, s0, s1 = sched.seg_inst[ag, sl], sched.seg_start[ag, sl], sched.seg_end[ag, sl]
    pairs = set()
    for k in np.unique(inst):
        sel = np.flatnonzero(inst == k)
        a, b = np.triu_indices(len(sel), 1)
        a, b = sel[a], sel[b]
        ov = (s0[a] < s1[b]) & (s0[b] < s1[a]) & (hh[ag[a]] != hh[ag[b]])
        for x, y in zip(ag[a][ov], ag[b][ov]):
            pairs.add((min(x, y), max(x, y)))
    assert len(pairs) > 300
    mk_frac = np.mean([p in close for p in pairs])
    # household: expect > 0.9; with ~2,000 pairs the sampling sd is < 0.01
    assert hh_frac > 0.85, hh_frac
    # market co-visitors: expect a few percent (chance encounters, plus colleagues/classmates)
    assert mk_frac < 0.15, mk_frac
    print(f"household close fraction {hh_frac:.3f} ({keep.sum()} pairs); market co-visitors "
          f"{mk_frac:.3f} ({len(pairs)} pairs)")


def test_cli_simulate(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "tracing.cli", "simulate", "--preset", "lang-son", "--scale",
                        "0.01", "--days", "2", "--out", str(out), "--seed", "5"],
                       env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    run = json.loads((out / "run.json").read_text())
    assert run["n_agents"] == 7817 and run["days"] == 2 and run["seed"] == 5
    assert (out / "windows" / "day-001.parquet").exists()
    # issue 17: stderr is a pipe here, so no progress bar (its \r frames used to leak into logs)
    assert "\r" not in r.stderr and "%|" not in r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[places.school]\nclass_size = -3\n")
    r = subprocess.run([sys.executable, "-m", "tracing.cli", "simulate", "--scenario", str(bad), "--out",
                        str(tmp_path / "x")], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2
    assert "bad.toml: places.school.class_size: must be a positive integer, got -3" in r.stderr


def test_background_write_error_surfaces_and_leaves_no_file(tmp_path, monkeypatch):
    """Parquet writes run on a background thread: an error there stops the run with that error, and
    neither the day's windows file nor run.json is left behind (ground truth removed as well; the keys,
    written first, stay)."""
    import sim.run as run_mod
    real = run_mod._write_sliced

    def failing(appender, arr):
        if appender.kind == "windows":
            raise OSError("disk full (test)")
        real(appender, arr)

    monkeypatch.setattr(run_mod, "_write_sliced", failing)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="disk full"):
        simulate(preset("lang-son", 0.0005), out, seed=1, days=2, progress=False)
    assert not (out / "run.json").exists()
    assert not list((out / "windows").glob("day-*.parquet"))
    assert not (out / "ground_truth.parquet").exists()
    assert [p.name for p in out.rglob("*") if p.is_file()] == ["keys.parquet"]     # no partial files


def test_writer_keeps_submission_order():
    """The background writer runs its writes one at a time in submission order (the bytes of inline
    writes) and re-raises a failed write at the next wait."""
    from sim.run import _Writer
    done = []
    w = _Writer()
    for k in range(20):
        w.submit(done.append, k)
    w.wait()
    assert done == list(range(20))
    w.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        w.wait()
    w.close()
