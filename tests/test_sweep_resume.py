"""The results store: a sweep killed with SIGKILL and restarted with --resume gives the same bytes as an
uninterrupted run and does not redo finished units; unit files of other parameters are never reused."""
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tracing.cli import main
from tracing.sweep.store import Store, Unit, canonical_json, safe_label, unit_hash

ROOT = Path(__file__).resolve().parents[1]

#: A tiny sweep shared by the resume, Dask and determinism tests (one reference run per session).
REF_ARGS = ["sweep", "--preset", "lang-son", "--scale", "0.001", "--days", "1", "--replicates", "2",
            "--adoption", "0:1:0.1", "--seed", "11", "--no-progress"]
#: Outputs compared byte for byte (timings.json and sweep.log hold wall-clock times by design).
COMPARED = ("coverage.csv", "summary.csv", "threshold.json", "report.md", "meta.json",
            "thresholds.csv", "comparison.csv", "coverage.png", "percolation.png", "comparison.png")


@contextlib.contextmanager
def one_numba_thread():
    """numba kernels single-threaded for in-process sweeps of these tests (the results do not depend
    on it -- test_determinism checks -- but on a loaded 2-core machine a 2-thread pool is ~10x
    slower); restores the previous setting."""
    import numba
    k = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(k)


def run_sweep(args) -> int:
    with one_numba_thread():
        return main(args)


def reference_sweep(tmp_path_factory) -> Path:
    """The uninterrupted in-process run of :data:`REF_ARGS` with one numba thread (computed once per
    session)."""
    out = tmp_path_factory.getbasetemp() / "sweep-reference"
    if not (out / "comparison.png").exists():
        assert run_sweep(REF_ARGS + ["--out", str(out)]) == 0
    return out


def assert_same_outputs(a: Path, b: Path, names=COMPARED):
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), f"{name} differs: {a} vs {b}"


def _unit_files(out: Path) -> dict:
    d = out / "units"
    if not d.is_dir():
        return {}
    return {p.name: p.stat().st_mtime_ns for p in d.iterdir() if not p.name.startswith(".")}


def test_kill_and_resume_gives_the_same_bytes(tmp_path, tmp_path_factory):
    ref = reference_sweep(tmp_path_factory)
    n_units = len(_unit_files(ref))
    assert n_units == 6                      # 2 replicates x (sim, pairs of day 0, curves)
    env = dict(os.environ, PYTHONPATH=str(ROOT), NUMBA_NUM_THREADS="1")
    # kill as soon as the first simulated replicate is stored; on a badly overloaded host the
    # poller may wake too late (every unit done already): then try again in a fresh folder
    for attempt in range(4):
        out = tmp_path / f"killed-{attempt}"
        proc = subprocess.Popen([sys.executable, "-m", "tracing.cli", *REF_ARGS, "--out", str(out)],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        t_end = time.time() + 240
        try:
            while time.time() < t_end:
                if any(n.startswith("sim-") for n in _unit_files(out)):
                    break
                assert proc.poll() is None, proc.stderr.read().decode()
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.wait()
        before = _unit_files(out)
        if proc.returncode == -signal.SIGKILL and len(before) < n_units:
            break
    assert proc.returncode == -signal.SIGKILL
    assert 1 <= len(before) < n_units, before          # killed mid-way
    assert not (out / "coverage.csv").exists()
    time.sleep(0.05)                                   # coarse-mtime file systems
    assert run_sweep(REF_ARGS + ["--out", str(out), "--resume"]) == 0
    assert_same_outputs(ref, out)
    after = _unit_files(out)
    assert set(after) == set(_unit_files(ref))        # same unit names, i.e. the same hashes
    for name, mtime in before.items():                 # finished units were not redone
        assert after[name] == mtime, name
    log = (out / "sweep.log").read_text().split("# sweep")[-1]
    for name in before:
        assert f"skipped  {Path(name).stem}" in log
    timings = json.loads((out / "timings.json").read_text())
    assert timings["units_skipped"] == len(before)
    assert timings["units_run"] == n_units - len(before)


def test_resume_after_complete_run_redoes_nothing(tmp_path, tmp_path_factory):
    ref = reference_sweep(tmp_path_factory)
    out = tmp_path / "copy"
    import shutil
    shutil.copytree(ref, out)
    before = _unit_files(out)
    (out / "coverage.csv").unlink()
    assert run_sweep(REF_ARGS + ["--out", str(out), "--resume"]) == 0
    assert _unit_files(out) == before
    assert_same_outputs(ref, out)
    assert json.loads((out / "timings.json").read_text())["units_run"] == 0


def test_units_of_other_parameters_are_not_reused(tmp_path):
    store = Store(tmp_path)
    base = {"kind": "curves", "strategy": "uniform", "seed": 1, "replicate": 0, "grid": [0.0, 0.5]}
    u = Unit("curves", "x-r000-bluezone-uniform", base)
    c = {"f1_coverage": np.array([0.0, 0.25])}
    store.write_curves(u, c, c, 0.1, n=10)
    assert store.done(u)
    # a different seed, grid or version gives another hash and another file name
    for change in ({"seed": 2}, {"grid": [0.0, 0.5, 1.0]}, {"version": "9.9"}):
        v = Unit("curves", "x-r000-bluezone-uniform", {**base, **change})
        assert v.hash != u.hash and not store.done(v)
    # a file under the right name but holding other parameters is not taken for the unit
    w = Unit("curves", "x-r000-bluezone-uniform", {**base, "seed": 3})
    forged = Unit("curves", "x-r000-bluezone-uniform", {**base, "seed": 4})
    store.write_curves(forged, c, c, 0.1, n=10)
    os.replace(store.path(forged), store.path(w))
    assert not store.done(w)
    # a truncated file (not what atomic writes leave, but a copy gone wrong) is not finished either
    data = store.path(u).read_bytes()
    store.path(u).write_bytes(data[: len(data) // 2])
    assert not store.done(u)


def test_sim_unit_needs_its_own_run_folder(tmp_path):
    store = Store(tmp_path)
    u = Unit("sim", "x-r000", {"kind": "sim", "seed": 1, "replicate": 0})
    other = Unit("sim", "x-r000", {"kind": "sim", "seed": 2, "replicate": 0})
    run = tmp_path / "runs" / "rep-000"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    store.write_sim(u, run)
    assert store.done(u)
    store.write_sim(other, run)       # the folder now holds a run of other parameters
    assert store.done(other) and not store.done(u)
    (run / "run.json").unlink()       # a run folder without run.json is not finished
    assert not store.done(other)


def test_hash_is_canonical_and_labels_stay_inside():
    a = {"b": 1.0, "a": [1, 2.5, float("nan")], "c": {"y": np.float64(0.1), "x": np.int64(3)}}
    b = {"c": {"x": 3, "y": 0.1}, "a": [1, 2.5, float("nan")], "b": 1.0}
    assert canonical_json(a) == canonical_json(b) and unit_hash(a) == unit_hash(b)
    assert unit_hash({**a, "b": 1.0000000000000002}) != unit_hash(a)
    for evil in ("../../etc", "/abs/path", "..", ".hidden", "a/b\\c", ""):
        lab = safe_label(evil)
        assert "/" not in lab and "\\" not in lab and not lab.startswith(".") and lab
    store = Store(Path("/tmp/x"))
    assert store.path(Unit("sim", safe_label("../../x"), {})).parent == Path("/tmp/x/units")


def test_sweep_rejects_bad_strategy_list(tmp_path, capsys):
    rc = main(["sweep", "--preset", "lang-son", "--strategy", "uniform,nope", "--out",
               str(tmp_path / "o"), "--no-progress"])
    assert rc == 2 and "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sweep", "--preset", "lang-son", "--scenario", "x.toml", "--out", str(tmp_path)])
