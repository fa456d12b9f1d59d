"""Issue 13: households with generations, scale-free places, and ``proxitrace validate`` against Prem 2021."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sim.places import T, build_places
from sim.population import _match, make_population
from sim.scenario import preset
from sim.validate import AGE_GROUPS, household_stats, load_prem
from tracing.cli import main

PREM = Path(__file__).resolve().parents[2] / "shared" / "data" / "prem2021-vietnam"
needs_prem = pytest.mark.skipif(not (PREM / "all.csv").is_file(), reason="staged Prem 2021 CSVs not found")


def test_match_pairs_nearest_ages_without_reuse():
    rng = np.random.default_rng(0)
    pool = np.array([30, 31, 31, 50, 70])
    m = _match(np.array([31.2, 31.0, 30.0, 49.0, 90.0]), pool, rng, max_off=5)
    assert sorted(m[:3].tolist()) == [0, 1, 2]         # the three 30-31 year-olds, each once
    assert m[3] == 3 and m[4] == -1                     # 50 within 1 year; nobody near 90


def test_households_have_generations():
    # 15,600 persons: the shares below have binomial sd < 0.5 %
    pop = make_population(preset("lang-son", 0.02), np.random.default_rng(1))
    hs = household_stats(pop)
    assert hs["child_no_adult"] < 0.01
    assert hs["child_with_parent_gap"] > 0.95
    assert hs["eldest_within_10"] > 0.70
    assert abs(hs["mean_size"] - 3.5) < 0.1             # census 2019 mean
    assert hs["age_corr"] > 0.2                         # ages were dealt at random before (0.00)
    assert 0.05 < hs["size_share"][0] < 0.15            # one-person households: a low share
    assert hs["kind_share"][4] > 0.1                    # three-generation households exist
    # the population pyramid is kept (drawn first; households only group it): 0-9 15.9 %, sd ~0.3 %
    assert abs((pop.age < 10).mean() - 0.159) < 0.015
    # Dak Lak's larger households (3.83)
    dl = make_population(preset("dak-lak", 0.01), np.random.default_rng(1))
    assert abs(household_stats(dl)["mean_size"] - 3.83) < 0.1


def _occupancy(scale):
    scn = preset("lang-son", scale)
    pop = make_population(scn, np.random.default_rng(2))
    pl = build_places(scn, pop, np.random.default_rng(3))
    out = {}
    # fixed-membership places (visit places in a partial commune of a small miniature are not yet
    # scale-free: see the issue-13 note)
    for t in ("school", "office", "workplace", "factory"):
        k = np.flatnonzero(pl.inst_type == T[t])
        out[t] = float(pl.inst_cap[k].mean())
    return out


def test_places_scale_with_population_not_crowding():
    small, large = _occupancy(0.005), _occupancy(0.04)
    for t in small:
        assert large[t] == pytest.approx(small[t], rel=0.15), t


@needs_prem
def test_load_prem_reads_staged_csvs_and_names_bad_lines(tmp_path):
    prem = load_prem(PREM)
    assert set(prem) == {"all", "home", "school", "work", "community"}
    assert prem["all"].shape == (16, 16)
    parts = prem["home"] + prem["school"] + prem["work"] + prem["community"]
    assert np.allclose(parts, prem["all"], rtol=1e-3, atol=1e-4)
    bad = tmp_path / "prem"
    shutil.copytree(PREM, bad)
    lines = (bad / "work.csv").read_text().splitlines()
    lines[3] = lines[3].replace(",", ",x", 1)
    (bad / "work.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"work.csv: line 4"):
        load_prem(bad)
    with pytest.raises(ValueError, match="no such file"):
        load_prem(tmp_path)


@needs_prem
def test_validate_command_meets_prem_within_tolerances(tmp_path, capsys):
    out = tmp_path / "val"
    rc = main(["validate", "--preset", "lang-son", "--scale", "0.002", "--seed", "0", "--prem-dir", str(PREM),
               "--out", str(out)])
    assert rc == 0
    for f in ("contacts_by_age.csv", "matrices.csv", "households.csv", "validation.json", "validation.png"):
        assert (out / f).is_file(), f
    rows = list(csv.DictReader((out / "contacts_by_age.csv").open()))
    assert {r["setting"] for r in rows} == {"home", "school", "work", "community", "all"}
    assert [r["age_group"] for r in rows if r["setting"] == "all"] == list(AGE_GROUPS) + ["all"]
    for r in rows:   # >= 15 min is a subset of any time within 2 m
        assert float(r["close_15min"]) <= float(r["any_duration"]) + 1e-9
    checks = json.loads((out / "validation.json").read_text())["checks"]
    # issue 13's tolerances: 10-year bands +-30 % (all settings), all ages +-15 %, settings +-40 % where
    # Prem >= 1 a day; households. At 1,563 agents a band's mean has a sampling error of ~3-5 %.
    for s in ("all", "home", "school", "work", "community"):
        assert checks[s]["ok"], (s, checks[s]["rel_diff"])
    assert checks["all_ages"]["ok"], checks["all_ages"]
    assert checks["households"]["ok"], checks["households"]
    assert "close contacts" in capsys.readouterr().out


def test_validate_without_reference_fails_before_work(tmp_path, capsys, monkeypatch):
    import builtins
    real = builtins.__import__

    def no_ssd(name, *a, **k):
        if name == "starsim_data":
            raise ImportError(name)
        return real(name, *a, **k)
    monkeypatch.setattr(builtins, "__import__", no_ssd)
    rc = main(["validate", "--preset", "lang-son", "--scale", "0.002", "--out", str(tmp_path / "v")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "starsim-data" in err and "--prem-dir" in err
    assert not (tmp_path / "v").exists()


@needs_prem
def test_starsim_data_matrices_equal_the_staged_csvs():
    """The field's own package (optional extra ``validate``) gives the staged Prem 2021 Vietnam matrices."""
    pytest.importorskip("starsim_data")
    staged, packaged = load_prem(PREM), load_prem(None, "Vietnam")
    for setting, m in staged.items():
        np.testing.assert_allclose(packaged[setting], m, atol=1e-5)
