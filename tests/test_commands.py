"""``proxitrace coverage`` / ``proxitrace sweep``: outputs exist and have their columns."""
import csv
import importlib.util
import json

import numpy as np
import pytest

from conftest import data_path
from tracing.cli import main
from tracing.sweep.plan import parse_adoption

COVERAGE_COLS = {"adoption", "replicate", "f1_coverage", "f1_precision", "f2_coverage",
                 "largest_component", "mean_notify_delay_h"}
OUTPUTS = ("coverage.csv", "summary.csv", "threshold.json", "coverage.png", "percolation.png",
           "report.md")


def _check_outputs(out, n_levels, reps):
    for name in OUTPUTS:
        assert (out / name).stat().st_size > 0, name
    rows = list(csv.DictReader((out / "coverage.csv").open()))
    assert COVERAGE_COLS <= set(rows[0])
    assert len(rows) == n_levels * reps
    summ = list(csv.DictReader((out / "summary.csv").open()))
    assert len(summ) == n_levels
    for m in ("f1_coverage", "f2_coverage", "f1_precision", "largest_component"):
        assert {f"{m}_mean", f"{m}_lo", f"{m}_hi"} <= set(summ[0])
    th = json.loads((out / "threshold.json").read_text())
    for name in ("percolation", "coverage_target"):
        assert {"adoption", "ci", "definition"} <= set(th[name])
    assert (out / "coverage.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return rows, summ, th


def test_parse_adoption():
    assert parse_adoption("0:1:0.25").tolist() == [0, 0.25, 0.5, 0.75, 1.0]
    assert parse_adoption("0.3,0.1").tolist() == [0.1, 0.3]
    with pytest.raises(ValueError, match="--adoption"):
        parse_adoption("0:1")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        parse_adoption("0.5,1.5")


def test_coverage_on_sociopatterns_file(tmp_path, capsys):
    f = data_path("sociopatterns", "hospital_lh10", "hospital_lyon_contacts.dat.gz")
    out = tmp_path / "out"
    rc = main(["coverage", "--contacts", str(f), "--format", "sociopatterns", "--out", str(out),
               "--replicates", "3", "--adoption", "0:1:0.1", "--seed", "4", "--no-progress"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "If 30% of the population run the app" in printed and str(out) in printed
    rows, summ, th = _check_outputs(out, 11, 3)
    f1 = np.array([float(r["f1_coverage_mean"]) for r in summ])
    assert f1[0] == 0 and f1[-1] == 1 and np.all(np.diff(f1) >= 0)
    assert th["coverage_target"]["adoption"] is not None
    assert "30%" in (out / "report.md").read_text()


def test_coverage_on_hand_made_csv_and_resume_independence(tmp_path, capsys):
    f = tmp_path / "contacts.csv"
    rng = np.random.default_rng(0)
    ids = np.array([f"p{k}" for k in range(80)])
    i, j = rng.integers(0, 80, 300), rng.integers(0, 80, 300)
    keep = i != j
    lines = ["i,j,t,duration_s"] + [f"{ids[a]},{ids[b]},{t:.0f},{d:.0f}" for a, b, t, d in
                                     zip(i[keep], j[keep], rng.random(300)[keep] * 1e5,
                                         rng.random(300)[keep] * 1800)]
    f.write_text("\n".join(lines) + "\n")
    out = tmp_path / "o"
    args = ["coverage", "--contacts", str(f), "--out", str(out), "--replicates", "2",
            "--adoption", "0.1,0.3,0.6", "--no-progress", "--index-cases", "20"]
    assert main(args) == 0
    _check_outputs(out, 3, 2)
    first = (out / "coverage.csv").read_text()
    assert main(args) == 0  # same seed, same numbers
    assert (out / "coverage.csv").read_text() == first


def test_coverage_errors_are_one_line(tmp_path, capsys):
    f = tmp_path / "bad.csv"
    f.write_text("i,j\n1,2\n3\n")
    rc = main(["coverage", "--contacts", str(f), "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 2
    assert "bad.csv: line 3" in capsys.readouterr().err
    f.write_text("i,j\n1,2\n2,3\n")
    rc = main(["coverage", "--contacts", str(f), "--out", str(tmp_path / "o"), "--no-progress",
               "--strategy", "household"])
    assert rc == 2
    assert "household" in capsys.readouterr().err


def _sim_ready():
    for mod in ("sim.run", "sim.scenario", "tracing.pipeline"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not built yet"
    return None


@pytest.mark.skipif(_sim_ready() is not None, reason=str(_sim_ready()))
def test_sweep_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "sw"
    args = ["sweep", "--preset", "lang-son", "--scale", "0.001", "--days", "1", "--replicates", "2",
            "--adoption", "0:1:0.25", "--out", str(out), "--no-progress", "--seed", "3"]
    assert main(args) == 0
    _check_outputs(out, 5, 2)
    assert (out / "runs" / "rep-000" / "run.json").exists()
    assert (out / "runs" / "rep-001" / "run.json").exists()
    first = (out / "coverage.csv").read_text()
    stamp = (out / "runs" / "rep-000" / "run.json").stat().st_mtime_ns
    assert main(args) == 0  # resumes: runs are not simulated again, numbers identical
    assert (out / "runs" / "rep-000" / "run.json").stat().st_mtime_ns == stamp
    assert (out / "coverage.csv").read_text() == first
