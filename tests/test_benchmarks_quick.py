"""`python -m benchmarks --quick`: runs, outputs agree with the baselines, JSON has the fields.

Timings are never asserted."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ROW_FIELDS = {"name", "variant", "size", "ours_s", "ours_min_s", "ours_max_s", "baseline",
              "baseline_s", "baseline_min_s", "baseline_max_s", "ratio", "throughput", "unit",
              "peak_mem_ours_bytes", "peak_mem_baseline_bytes", "threads", "agree"}
META_FIELDS = {"threads", "threading_layer", "versions", "machine", "memory_method", "timer"}


def test_quick_run_writes_json_and_plot(tmp_path):
    js, png = tmp_path / "bench.json", tmp_path / "bench.png"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--repeat", "2",
                        "--json", str(js), "--plot", str(png)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr      # a disagreement with a baseline fails the run
    assert "neighbours:uniform" in r.stdout and "matching:" in r.stdout
    data = json.loads(js.read_text())
    assert META_FIELDS <= set(data["meta"])
    assert {"python", "numpy", "numba", "scipy"} <= set(data["meta"]["versions"])
    rows = data["results"]
    assert rows
    for row in rows:
        assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
        assert row["agree"] is True
        assert row["ours_s"] > 0 and row["throughput"] > 0
    names = {(r["name"], r["variant"]) for r in rows}
    assert ("neighbours", "uniform") in names and ("neighbours", "clustered") in names
    assert {n for n, _ in names} == {"neighbours", "matching", "percolation", "onepass", "simulation"}
    baselines = {r["baseline"] for r in rows}
    assert {"cKDTree", "brute", "numpy.isin", "scipy.cc", "coverage_at"} <= baselines
    sim = [r for r in rows if r["name"] == "simulation"]
    assert sim and sim[0]["baseline"] is None
    assert set(sim[0]["details"]["shares"]) == {"schedules", "positions", "neighbours", "radio",
                                                "aggregation", "writing"}
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_unknown_benchmark_name_is_an_error():
    r = subprocess.run([sys.executable, "-m", "benchmarks", "nosuch", "--quick"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "unknown benchmark" in (r.stdout + r.stderr)


def test_disagreement_is_detected():
    sys.path.insert(0, str(ROOT))
    import numpy as np
    import pytest

    from benchmarks import matching, neighbours, onepass, percolation

    i = np.array([0, 1], np.int64)
    j = np.array([1, 2], np.int64)
    neighbours.agree((i, j), "cKDTree", np.array([[1, 2], [0, 1]]))
    with pytest.raises(AssertionError):
        neighbours.agree((i, j), "cKDTree", np.array([[0, 2], [0, 1]]))
    with pytest.raises(AssertionError):
        matching.agree(np.array([0, -1]), "numpy.isin", np.array([False, False]))
    with pytest.raises(AssertionError):
        percolation.agree(np.array([1, 5]), "scipy.cc", np.array([1, 4]))
    a = [{"f1_coverage": np.array([0.1, np.nan])}]
    onepass.agree(a, "coverage_at", [{"f1_coverage": np.array([0.1, np.nan])}])
    with pytest.raises(AssertionError):
        onepass.agree(a, "coverage_at", [{"f1_coverage": np.array([0.2, np.nan])}])
    with pytest.raises(AssertionError):
        onepass.agree(a, "coverage_at", [{"f1_coverage": np.array([0.1, 0.0])}])


def test_firstrun_details_break_the_compile_down_per_kernel():
    sys.path.insert(0, str(ROOT))
    from benchmarks import firstrun
    from sim import kernels

    d = firstrun.details({"wall_s": 1.0})
    rec = kernels.recorded_signatures()
    assert d["wall_s"] == 1.0 and set(d["recorded_compile_cpu_s"]) == set(rec)
    secs = list(d["recorded_compile_cpu_s"].values())
    assert secs == sorted(secs, reverse=True)                                    # largest first
    assert abs(sum(d["recorded_compile_cpu_s_per_module"].values()) - sum(secs)) < 0.05
