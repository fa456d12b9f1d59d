"""Issue 17 (reliability): stale results are never reused, leftovers of a killed run are cleaned,
Dask without workers (or with workers of other code) fails in one line, progress bars stay off pipes,
arguments are checked before any work, and a failed re-run leaves the previous results intact."""
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from sim.run import code_digest
from tracing.sweep import store as store_mod
from tracing.sweep.store import Store, Unit

ROOT = Path(__file__).resolve().parents[1]


# ---- item 5: a unit's hash covers the code and the packaged data ---------------------------------
def test_code_digest_covers_code_and_packaged_data(tmp_path):
    shutil.copytree(ROOT / "ble", tmp_path / "ble", ignore=shutil.ignore_patterns("__pycache__"))
    d0 = code_digest(("ble",), str(tmp_path))
    assert d0 == code_digest(("ble",), str(tmp_path))               # deterministic
    (tmp_path / "ble" / "__pycache__").mkdir()
    (tmp_path / "ble" / "__pycache__" / "x.py").write_text("# bytecode cache is not code\n")
    assert code_digest(("ble",), str(tmp_path)) == d0
    toml = tmp_path / "ble" / "radio_default.toml"                   # what `python -m ble.radio --fit` rewrites
    toml.write_text(toml.read_text().replace("sigma_db = ", "sigma_db = 1"))
    d1 = code_digest(("ble",), str(tmp_path))
    (tmp_path / "ble" / "ids.py").write_text((tmp_path / "ble" / "ids.py").read_text() + "\n# edit\n")
    assert len({d0, d1, code_digest(("ble",), str(tmp_path))}) == 3


def test_stale_sim_unit_of_other_code_is_not_reused(tmp_path, monkeypatch):
    """Before issue 17 the hash held the scenario and the version string only: a run simulated by other
    code or other packaged radio defaults was reused silently."""
    params = {"kind": "sim", "seed": 1, "replicate": 0}
    u = Unit("sim", "x-r000", params)
    assert u.params["code"] == code_digest()
    run = tmp_path / "runs" / "rep-000"
    run.mkdir(parents=True)
    (run / "run.json").write_text("{}")
    monkeypatch.setattr(store_mod, "code_digest", lambda: "0" * 16)   # made by other code
    old = Unit("sim", "x-r000", params)
    Store(tmp_path).write_sim(old, run)
    monkeypatch.undo()
    assert old.hash != u.hash and not Store(tmp_path).done(u, "runs/rep-000")


# ---- item 4: Dask without workers, or with workers of other code -------------------------------
def _add(a, b):
    return {"unit": f"add-{a + b}", "status": "done", "seconds": 0.0}


def _in_thread(fn, timeout=60):
    """Run ``fn()`` in a thread; (finished, exception or result). A hang shows as finished=False."""
    box = {}

    def target():
        try:
            box["r"] = fn()
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            box["r"] = e
    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(timeout)
    return not th.is_alive(), box.get("r")


@pytest.fixture
def cluster():
    distributed = pytest.importorskip("distributed")
    c = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None,
                                 silence_logs=40)
    yield c
    c.close()


def test_dask_without_workers_fails_in_one_line(cluster):
    from tracing.sweep.engines import DaskEngine, RunLog, Task
    eng = DaskEngine(cluster.scheduler_address, worker_timeout_s=1.0)
    log = RunLog(Path("/dev/null"))
    eng.run([Task("a", _add, (1, 2))], log)                   # with a worker: runs
    assert log.results[0]["unit"] == "add-3"
    cluster.scale(0)                                          # the workers go away
    finished, err = _in_thread(lambda: eng.run([Task("b", _add, (2, 2))], log))
    assert finished, "the engine waited silently for a worker"
    assert isinstance(err, TimeoutError) and "no worker for 1 s" in str(err) and "\n" not in str(err)
    eng.close()
    # a scheduler that has no worker at all is refused at start
    finished, err = _in_thread(lambda: DaskEngine(cluster.scheduler_address, worker_timeout_s=0.5))
    assert finished and isinstance(err, TimeoutError) and "no worker joined" in str(err)


def test_dask_worker_of_other_code_is_refused(cluster, monkeypatch):
    from tracing.sweep import engines
    eng = engines.DaskEngine(cluster.scheduler_address, worker_timeout_s=5.0)   # same code: accepted
    eng.close()
    mine = {**engines.environment(), "numba": "0.0.1"}                           # the client differs
    monkeypatch.setattr(engines.DaskEngine, "_local_environment", lambda self: mine)
    with pytest.raises(ValueError, match=r"worker .* runs numba .* but this process runs 0\.0\.1"):
        engines.DaskEngine(cluster.scheduler_address, worker_timeout_s=5.0)
    with pytest.raises(ValueError, match="cannot run proxitrace's environment check"):
        engines.check_environments(mine, {"tcp://w:1": ImportError("no module named tracing")}, "--dask x")


# ---- item 6: nothing at run time needs a dev extra ---------------------------------------------
#: packages of the ``dev`` extra (pyproject.toml): never imported by ble, sim or tracing
DEV_ONLY = {"pandas", "pytest", "hypothesis", "nbclient", "nbformat", "ipykernel"}


def test_runtime_code_needs_no_dev_extra():
    """Before issue 17, ``sweep --epidemic`` called pyarrow's ``to_pandas()`` (pandas is a dev extra)
    and crashed on a plain ``pip install``. CI also runs .ci/plain_install.sh; this is the fast guard."""
    import ast
    bad = []
    for pkg in ("ble", "sim", "tracing"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                if any(n.split(".")[0] in DEV_ONLY for n in names):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {names}")
                if isinstance(node, ast.Attribute) and node.attr in ("to_pandas", "to_pandas_df"):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} calls .{node.attr}() (needs pandas)")
    assert not bad, bad
    ci = (ROOT / ".ci" / "run").read_text()
    assert "plain_install.sh" in ci and (ROOT / ".ci" / "plain_install.sh").is_file()


# ---- item 7: progress bars on terminals only ----------------------------------------------------
def test_every_progress_bar_is_off_when_not_on_a_terminal():
    """Every tqdm bar of ble, sim and tracing passes ``disable=None`` (tqdm: off unless its stream is a
    terminal) when progress is asked for; tests/test_sim_run.py::test_cli_simulate checks a piped
    ``proxitrace simulate`` prints no bar."""
    import ast
    calls = []
    for pkg in ("ble", "sim", "tracing"):
        for path in sorted((ROOT / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "tqdm":
                    kw = {k.arg: k.value for k in node.keywords}
                    ok = "disable" in kw and any(isinstance(c, ast.Constant) and c.value is None
                                                 for c in ast.walk(kw["disable"]))
                    calls.append((f"{path.relative_to(ROOT)}:{node.lineno}", ok))
    assert len(calls) >= 4 and all(ok for _, ok in calls), calls


def test_tqdm_disable_none_means_no_frames_on_a_pipe(capsys):
    from tqdm import tqdm
    for _ in tqdm(range(3), desc="bar", disable=None):
        pass
    assert "bar" not in capsys.readouterr().err


# ---- item 8: leftovers of a killed run are cleaned on resume -------------------------------------
def test_clean_temp_removes_partial_run_folders_and_tmp_files(tmp_path):
    store = Store(tmp_path)
    partial = tmp_path / "runs" / "rep-000"                    # killed while simulating
    (partial / "windows").mkdir(parents=True)
    (partial / "windows" / "day-000.parquet").write_bytes(b"PAR1")
    (partial / ".ground_truth.parquet.x1.tmp").write_bytes(b"PAR1")
    partial2 = tmp_path / "runs" / "dak-lak" / "epidemic-rep-001"   # multi-scenario, epidemic run
    partial2.mkdir(parents=True)
    (partial2 / "population.parquet").write_bytes(b"PAR1")
    done = tmp_path / "runs" / "dak-lak" / "rep-000"           # finished: unit.json is written last
    done.mkdir(parents=True)
    for name in ("run.json", "unit.json", "population.parquet"):
        (done / name).write_text("{}")
    (done / ".unit.json.x2.tmp").write_text("{")
    (tmp_path / "units").mkdir()
    (tmp_path / "units" / ".sim-x.json.x3.tmp").write_text("{")
    (tmp_path / ".coverage.csv.x4.tmp").write_text("a,")
    (tmp_path / "runs" / "notes").mkdir()                       # not a run folder: left alone
    assert store.clean_temp() == 5                      # 2 folders, 3 temporary files
    assert not partial.exists() and not partial2.exists()
    assert sorted(p.name for p in done.iterdir()) == ["population.parquet", "run.json", "unit.json"]
    assert not list(tmp_path.rglob("*.tmp")) and (tmp_path / "runs" / "notes").is_dir()
    assert store.clean_temp() == 0


# ---- item 2: every argument checked before any work ---------------------------------------------
def _no_work(*a, **k):
    raise AssertionError("work started before the arguments were checked")


@pytest.mark.parametrize("extra, word", [
    (["--adoption", "nan"], "--adoption"), (["--adoption", "0,nan"], "--adoption"),
    (["--adoption", "0:1:1e-9"], "--adoption"), (["--target", "2"], "--target"),
    (["--target", "nan"], "--target"), (["--index-cases", "-5"], "--index-cases"),
    (["--workers", "0"], "--workers"), (["--seed", "-1"], "--seed"), (["--days", "0"], "--days"),
    (["--scale", "nan"], "--scale"), (["--replicates", "0"], "--replicates")])
def test_sweep_arguments_checked_before_any_work(tmp_path, monkeypatch, capsys, extra, word):
    from tracing.cli import main
    from tracing.sweep import adoption
    monkeypatch.setattr(adoption, "sweep", _no_work)
    rc = main(["sweep", "--preset", "lang-son", "--scale", "0.001", "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and word in err and "\n" not in err, err
    assert not (tmp_path / "o").exists()


def test_bad_out_and_other_arguments_refused_before_work(tmp_path, monkeypatch, capsys):
    from tracing.cli import main
    from tracing.sweep import adoption
    import importlib
    replay_mod = importlib.import_module("tracing.replay")
    from ble import calibration
    from sim import run as sim_run
    monkeypatch.setattr(sim_run, "simulate", _no_work)
    monkeypatch.setattr(adoption, "coverage_from_contacts", _no_work)
    monkeypatch.setattr(replay_mod, "replay", _no_work)
    monkeypatch.setattr(calibration, "calibrate", _no_work)
    afile = tmp_path / "a-file"
    afile.write_text("x")
    contacts = tmp_path / "c.csv"
    contacts.write_text("i,j\n0,1\n")
    cases = [
        (["coverage", "--contacts", str(contacts), "--out", str(afile / "sub")], "--out"),
        (["coverage", "--contacts", str(contacts), "--out", str(afile)], "--out"),
        (["coverage", "--contacts", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")], "--contacts"),
        (["coverage", "--contacts", str(contacts), "--close-minutes", "-1", "--out", str(tmp_path / "o")],
         "--close-minutes"),
        (["replay", "--format", "csv", str(contacts), "--rule", "bluezone", "--close-m", "-1", "--out",
          str(tmp_path / "o")], "--close-m"),
        (["calibrate", "--data", str(tmp_path), "--out", str(afile / "p.toml")], "--out"),
        (["calibrate", "--data", str(tmp_path), "--out", str(tmp_path)], "--out"),
        (["simulate", "--scale", "0.001", "--out", str(afile)], "--out"),
        (["simulate", "--scale", "0.001", "--days", "0", "--out", str(tmp_path / "o")], "--days"),
    ]
    for argv, word in cases:
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and word in err and "\n" not in err, (argv, err)
        assert not (tmp_path / "o").exists(), argv


def test_entry_functions_check_too(tmp_path):
    """The library entry points refuse what the command line refuses (before reading any file)."""
    from tracing.replay import replay
    from tracing.sweep.plan import parse_adoption
    with pytest.raises(ValueError, match="--close-m"):
        replay("csv", [str(tmp_path / "missing.csv")], "bluezone", None, close_m=-1.0)
    for bad in ("nan", "0,nan", "0:1:1e-9", "0:nan:0.1"):
        with pytest.raises(ValueError, match="--adoption"):
            parse_adoption(bad)


# ---- item 3: a failed re-run leaves the previous results intact ----------------------------------
def _contacts(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    i = rng.integers(0, 40, 300)
    j = (i + rng.integers(1, 40, 300)) % 40
    lines = ["i,j,t,duration_s"] + [f"{a},{b},{int(t)},900" for a, b, t in
                                    zip(i, j, rng.integers(0, 86400 * 2, 300))]
    path.write_text("\n".join(lines) + "\n")
    return path


def _snapshot(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and ".staging" not in p.parts}


def test_failed_rerun_leaves_previous_results_intact(tmp_path, monkeypatch, capsys):
    """Before issue 17 a re-run into an existing --out that failed while writing left new
    coverage.csv/summary.csv beside the previous report.md: a mixed folder that looked complete."""
    from tracing.cli import main
    from tracing.report.staging import MANIFEST, read_manifest
    from tracing.sweep import adoption
    c = _contacts(tmp_path / "c.csv", 1)
    out = tmp_path / "out"
    args = ["coverage", "--contacts", str(c), "--out", str(out), "--replicates", "2", "--adoption", "0:1:0.25",
            "--no-progress"]
    assert main(args + ["--seed", "1"]) == 0
    first = _snapshot(out)
    man = read_manifest(out)
    assert MANIFEST in first and set(man["files"]) == set(first) - {MANIFEST}
    assert {"coverage.csv", "summary.csv", "report.md", "threshold.json"} <= set(man["files"])

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(adoption, "write_report", boom)        # fails after coverage.csv was written
    assert main(args + ["--seed", "2"]) == 2
    assert _snapshot(out) == first                              # nothing of the failed run in place
    monkeypatch.undo()
    (out / "stray-from-user.txt").write_text("kept")            # not ours: never removed
    assert main(args + ["--seed", "2"]) == 0                     # the next good run replaces all of it
    second = _snapshot(out)
    assert second["coverage.csv"] != first["coverage.csv"] and second["stray-from-user.txt"] == b"kept"
    assert not (out / ".staging").exists()
    assert set(read_manifest(out)["files"]) == set(man["files"])


def test_staged_outputs_replace_whole_and_drop_stale_files(tmp_path):
    from tracing.report.staging import MANIFEST, StagedOutputs, read_manifest
    s = StagedOutputs(tmp_path)
    (s.dir / "sub").mkdir()
    (s.dir / "a.csv").write_text("1")
    (s.dir / "sub" / "epidemic.csv").write_text("2")
    s.commit()
    assert read_manifest(tmp_path)["files"]["sub/epidemic.csv"]["bytes"] == 1
    s = StagedOutputs(tmp_path)
    (s.dir / "a.csv").write_text("3")
    assert s.final(s.dir / "a.csv") == tmp_path / "a.csv"
    s.commit()                                                  # epidemic.csv is stale now: removed
    assert (tmp_path / "a.csv").read_text() == "3" and not (tmp_path / "sub" / "epidemic.csv").exists()
    assert sorted(read_manifest(tmp_path)["files"]) == ["a.csv"] and (tmp_path / MANIFEST).is_file()
    (tmp_path / ".staging").mkdir()                             # a killed run's leftover
    (tmp_path / ".staging" / "a.csv").write_text("partial")
    s = StagedOutputs(tmp_path)
    assert list(s.dir.iterdir()) == []


# ---- item 9: smaller ones -----------------------------------------------------------------------
def test_bare_proxitrace_prints_usage_and_exits_2(capsys):
    from tracing.cli import main
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: proxitrace") and "COMMAND is required" in err


def test_schema_messages_show_values_not_numpy_reprs():
    from ble.schema import RecordError, empty, validate
    w = empty("windows", 1)
    w["rssi_max"] = np.float32(30.125925)
    with pytest.raises(RecordError) as e:
        validate(w, "windows", "w.parquet")
    assert "value 30.125925 outside" in str(e.value) and "np.float32" not in str(e.value)


def test_capture_keeps_other_devices_payloads_only_on_request_and_saves_on_sigterm(tmp_path):
    import os
    import signal
    from types import SimpleNamespace

    import pyarrow.parquet as pq

    from ble import capture as C
    from tests.test_capture import ADVERTS, FakeScanner, _factory
    out = tmp_path / "a.parquet"
    C.capture(out, 0.3, scanner_factory=_factory(), platform="linux")
    raw = pq.read_table(out.with_suffix(".raw.parquet")).to_pydict()
    assert raw["service"] == ["bluezone", "gaen", "", "bluezone"]
    assert raw["payload"][2] == "" and raw["payload"][0] and raw["payload"][1]   # tracing's kept
    C.capture(out, 0.3, scanner_factory=_factory(), platform="linux", keep_payloads=True)
    assert "md:76=1005" in pq.read_table(out.with_suffix(".raw.parquet")).to_pydict()["payload"][2]

    class TermScanner(FakeScanner):
        async def _run(self):
            for k, (addr, adv) in enumerate(self.adverts):
                await __import__("asyncio").sleep(0.01)
                self.callback(SimpleNamespace(address=addr), adv)
                if k == 1:
                    os.kill(os.getpid(), signal.SIGTERM)      # a service manager stops the capture
                    await __import__("asyncio").sleep(1.0)
    before = signal.getsignal(signal.SIGTERM)
    s = C.capture(tmp_path / "t.parquet", 30.0, scanner_factory=lambda cb, m, b: TermScanner(cb, m, b),
                  platform="linux")
    assert s["interrupted"] and s["sightings"] == 2 and signal.getsignal(signal.SIGTERM) == before
    assert len(ADVERTS) == 4
    # the signal stopped the scan without killing the scanner's task with an exception (which asyncio
    # reports as "Task exception was never retrieved"): the task was cancelled at the loop's end
    task = FakeScanner.instances[-1].task
    assert task.cancelled(), task


def test_failed_simulate_into_an_old_run_folder_does_not_look_complete(tmp_path, monkeypatch):
    """simulate writes run.json last: a re-run that fails must not leave the old run.json claiming
    that new partial windows belong to a complete run."""
    from sim import run as sim_run
    from sim.scenario import preset
    out = tmp_path / "run"
    (out / "windows").mkdir(parents=True)
    (out / "run.json").write_text('{"days": 8}')
    (out / "windows" / "day-007.parquet").write_bytes(b"PAR1")

    def boom(*a, **k):
        raise OSError("killed")
    monkeypatch.setattr(sim_run, "build_world", boom)
    with pytest.raises(OSError):
        sim_run.simulate(preset("lang-son", 0.0005), out, days=1, progress=False)
    assert not (out / "run.json").exists()


def _rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def test_release_memory_hands_freed_heap_back_to_the_system():
    from tracing.sweep import engines
    if engines._MALLOC_TRIM is None or not Path("/proc/self/status").exists():
        pytest.skip("glibc's malloc_trim and /proc are needed")
    # freeing a 16 MiB block raises glibc's mmap threshold, so the 1 MiB arrays that follow come from
    # the heap, as a simulated day's medium arrays do; the last one pins the heap's top, so nothing is
    # returned when the others are freed until malloc_trim releases their pages
    big = np.ones((16 << 20) // 8)
    del big
    arrs = [np.ones((1 << 20) // 8) for _ in range(200)]
    keep = arrs[-1]
    del arrs
    before = _rss_bytes()
    engines.release_memory()
    assert before - _rss_bytes() > 150 << 20          # of the 199 MiB freed
    assert keep.sum() == len(keep)


def _fails(msg):
    raise ValueError(msg)


def test_run_isolated_runs_in_another_process_and_returns_its_result_or_error():
    import os
    from tracing.sweep import engines
    assert engines.run_isolated(os.getpid) != os.getpid()
    assert engines.run_isolated(divmod, 7, 2) == (3, 1)
    with pytest.raises(ValueError, match="^windows.parquet: line 3: bad rssi$"):
        engines.run_isolated(_fails, "windows.parquet: line 3: bad rssi")


def _write_pid_and_sleep(path):
    import os
    import time
    Path(path).write_text(str(os.getpid()))
    time.sleep(120)


def test_an_isolated_unit_dies_with_the_sweep(tmp_path):
    """A killed sweep does not leave its unit computing on alone (PR_SET_PDEATHSIG)."""
    import os
    import signal
    import subprocess
    import sys
    import time
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux's")
    pid_file = tmp_path / "child.pid"
    code = ("import sys; from tests.test_reliability import _write_pid_and_sleep as f; "
            "from tracing.sweep.engines import run_isolated; run_isolated(f, sys.argv[1])")
    parent = subprocess.Popen([sys.executable, "-c", code, str(pid_file)], cwd=Path(__file__).parents[1])
    try:
        for _ in range(600):                       # wait for the unit's process to start
            if pid_file.exists() and pid_file.read_text():
                break
            time.sleep(0.1)
        child = int(pid_file.read_text())
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)

        def running():
            try:
                state = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                return False
            return state != "Z"
        for _ in range(100):
            if not running():
                break
            time.sleep(0.1)
        alive = running()
        if alive:
            os.kill(child, signal.SIGKILL)
        assert not alive
    finally:
        parent.kill()


def test_in_process_engine_releases_memory_after_every_unit(monkeypatch):
    from tracing.sweep import engines
    from tracing.sweep.tasks import Task
    calls = []
    monkeypatch.setattr(engines, "release_memory", lambda: calls.append("release"))
    tasks = [Task(key=f"k{i}", fn=lambda i=i: calls.append(i) or {"unit": f"u{i}", "status": "done"}, args=(),
                  deps=()) for i in range(3)]
    engines.InProcess().run(tasks, lambda res: None)
    assert calls == [0, "release", 1, "release", 2, "release"]
