"""The simulator's threaded kernels (serial ``nogil`` kernels over chunks, :func:`sim.kernels.run_blocks`)
give the same bytes for any split: a day simulated in one call per kernel and one split into many small
chunks on three threads (grains forced to 1 item) writes identical Parquet files."""
from pathlib import Path

import numba
import numpy as np

import sim.kernels as K
import sim.scanning.accumulate as acc_mod
import sim.scanning.runs as runs_mod
import sim.scanning.stays as stays_mod
import sim.scanning.step as step_mod
from sim.kernels import even_cuts, par_cuts, weighted_cuts
from sim.run import simulate
from sim.scenario import preset


def test_cuts_cover_every_item_once():
    assert even_cuts(0, 4) == [0, 0] and even_cuts(10, 3) == [0, 3, 6, 10]
    assert weighted_cuts(np.array([5, 5, 105, 106, 107, 207]), 2) == [0, 3, 5]    # 101 + 101
    assert weighted_cuts(np.array([3, 7]), 8) == [0, 1] and weighted_cuts(np.array([0]), 4) == [0, 0]
    threads, cuts = par_cuts(100, 1 << 14)
    assert threads == 1 and cuts == [0, 100]           # few items: one call on this thread


def _files(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*.parquet"))}


def test_day_same_bytes_for_any_split(tmp_path, monkeypatch):
    scn = preset("lang-son", 0.001)
    one = simulate(scn, tmp_path / "one", seed=5, days=1, progress=False)
    monkeypatch.setattr(numba, "get_num_threads", lambda: 3)
    fine = lambda n, grain=0: K.par_cuts(n, 1)                      # noqa: E731 - every item a chunk's worth
    monkeypatch.setattr(step_mod, "par_cuts", fine)
    monkeypatch.setattr(acc_mod, "par_cuts", fine)
    monkeypatch.setattr(stays_mod, "par_cuts", fine)
    monkeypatch.setattr(runs_mod, "_merge_chunks", lambda work: 5)
    assert fine(1000)[0] == 3 and len(fine(1000)[1]) == 13
    split = simulate(scn, tmp_path / "split", seed=5, days=1, progress=False)
    a, b = _files(Path(one)), _files(Path(split))
    assert len(a) >= 4 and a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
