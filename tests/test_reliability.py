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
