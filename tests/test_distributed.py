"""Sweeps on dask.distributed: a real LocalCluster of two worker processes gives the same bytes as
the in-process run; multi-scenario x multi-strategy sweeps; results independent of unit order."""
import csv
import json

import numpy as np
import pytest

from tests.test_sweep_resume import (REF_ARGS, assert_same_outputs, one_numba_thread, reference_sweep,
                                     run_sweep)
from tracing.sweep.engines import InProcess
from tracing.sweep.adoption import sweep


def test_local_cluster_gives_the_in_process_bytes(tmp_path, tmp_path_factory):
    pytest.importorskip("distributed")
    ref = reference_sweep(tmp_path_factory)
    out = tmp_path / "dask"
    # processes=True: two worker processes, one thread each (see tracing.distributed.DaskEngine)
    assert run_sweep(REF_ARGS + ["--out", str(out), "--dask", "local", "--workers", "2"]) == 0
    assert_same_outputs(ref, out)
    timings = json.loads((out / "timings.json").read_text())
    assert "LocalCluster (2 worker processes" in timings["engine"]
    assert timings["units_run"] == 6
    # the units themselves are the same files (names carry the parameters' hash)
    assert sorted(p.name for p in (out / "units").iterdir()) == \
        sorted(p.name for p in (ref / "units").iterdir())


def test_unit_order_does_not_matter(tmp_path, tmp_path_factory):
    ref = reference_sweep(tmp_path_factory)
    out = tmp_path / "shuffled"
    # the reference's simulated runs are reused (hash match); pairs and curves units are redone
    # in a random topological order
    import shutil
    shutil.copytree(ref / "runs", out / "runs")
    shutil.copytree(ref / "units", out / "units")
    for p in (out / "units").glob("[pc]*"):
        p.unlink()
    with one_numba_thread():
        sweep(out, preset="lang-son", scale=0.001, days=1, replicates=2, adoption="0:1:0.1", seed=11,
              progress=False, engine=InProcess(shuffle=7))
    assert_same_outputs(ref, out)
    log = (out / "sweep.log").read_text()
    assert log.count("skipped") == 2 and log.count("done ") == 4


def test_units_in_fresh_processes_give_the_same_bytes(tmp_path, tmp_path_factory, monkeypatch):
    """From an estimated peak of ISOLATE_PEAK_BYTES (a 1:1 province) the in-process engine runs each unit
    in a fresh process (memory kept by the allocators after a unit cannot add to the next one's peak):
    the same bytes, the engine named in timings.json."""
    from tracing.sweep import adoption
    ref = reference_sweep(tmp_path_factory)
    out = tmp_path / "isolated"
    monkeypatch.setattr(adoption, "ISOLATE_PEAK_BYTES", 0)
    monkeypatch.setenv("NUMBA_NUM_THREADS", "1")              # the spawned units' numba threads
    sweep(out, preset="lang-son", scale=0.001, days=1, replicates=2, adoption="0:1:0.1", seed=11,
          progress=False)
    assert_same_outputs(ref, out)
    assert "a fresh process per unit" in json.loads((out / "timings.json").read_text())["engine"]


def test_multi_preset_multi_strategy(tmp_path, tmp_path_factory):
    ref = reference_sweep(tmp_path_factory)
    out = tmp_path / "multi"
    rc = run_sweep(["sweep", "--preset", "lang-son,dak-lak", "--strategy", "uniform,household",
               "--scale", "0.001", "--days", "1", "--replicates", "2", "--adoption", "0:1:0.1",
               "--seed", "11", "--no-progress", "--out", str(out)])
    assert rc == 0
    rows = list(csv.DictReader((out / "thresholds.csv").open()))
    assert [(r["scenario"], r["strategy"]) for r in rows] == [
        ("lang-son", "uniform"), ("lang-son", "household"),
        ("dak-lak", "uniform"), ("dak-lak", "household")]
    for r in rows:
        assert (out / r["folder"] / "coverage.csv").exists()
        assert (out / r["folder"] / "threshold.json").exists()
        assert 0 < float(r["owner_share"]) < 1 and int(r["n"]) > 500
        assert 0 <= float(r["f1_at_30"]) <= 1
    assert (out / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    cmp_rows = list(csv.DictReader((out / "comparison.csv").open()))
    assert len(cmp_rows) == 4 * 11
    # a province's results do not depend on the other provinces or strategies of the sweep:
    # lang-son / uniform equals the single-preset reference
    assert_same_outputs(ref, out / "lang-son" / "uniform",
                        ("coverage.csv", "summary.csv", "threshold.json", "report.md"))
    # both strategies of one replicate saw the same simulated province (one run per replicate)
    assert len(list((out / "runs" / "lang-son").iterdir())) == 2
    hh = np.array([float(r["f1_coverage_mean"]) for r in cmp_rows
                   if r["scenario"] == "dak-lak" and r["strategy"] == "household"])
    assert hh[0] == 0 and np.all(np.diff(hh) >= -1e-12)
