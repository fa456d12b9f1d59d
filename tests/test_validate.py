"""Issue 13: households with generations, scale-free places, and ``proxitrace validate`` against Prem 2021."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from sim.places import T, build_places
from sim.population import R, _match, employment_probability, make_population
from sim.scenario import preset
from sim.validate import AGE_GROUPS, household_stats, load_prem
from sim.validate_report import scale_stats
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
    # fixed-membership places: members per instance; visit places: floor capacity (sized for the
    # catchment's expected peak) and residents per instance
    for t in ("school", "office", "workplace", "factory", "market", "restaurant", "gathering", "hotel",
              "station"):
        k = np.flatnonzero(pl.inst_type == T[t])
        out[t] = float(pl.inst_cap[k].mean())
        out[t + "_per_head"] = pop.n / len(k)
    # riders per bus (vehicles follow the realised riders; staff counts per instance are left out: at
    # x0.005 they are binomial counts of ~30-100 with a 10-18 % sampling error)
    out["bus_riders"] = float(pop.bus_user.sum()) / (pl.inst_type == T["bus"]).sum()
    return out


def test_places_scale_with_population_not_crowding():
    """Issue 13: the number of places scales with the population, not their crowding (x0.005 = 3,908
    persons vs x0.04 = 31,266: every kind of instance has the same members/catchment within 15 %)."""
    small, large = _occupancy(0.005), _occupancy(0.04)
    for t in small:
        if t == "bus_riders":     # one vehicle per round(riders / size): within +-25 % of size once >= 2
            for occ in (small[t], large[t]):
                assert occ == pytest.approx(preset("lang-son").places["bus"]["size"], rel=0.25)
            continue
        assert large[t] == pytest.approx(small[t], rel=0.15), (t, small[t], large[t])


def test_per_agent_statistics_do_not_drift_with_scale():
    """Close contacts and radio-range partners per agent-day within 15 % between x0.005 and x0.04 (one
    weekday, every 3rd active step evaluated: the same estimator at both scales). Sampling error: the
    per-agent means over 3,908 / 31,266 agents have a standard error of ~1-2 %."""
    small = scale_stats(preset("lang-son", 0.005), seed=0)
    large = scale_stats(preset("lang-son", 0.04), seed=0)
    for k in ("close_per_agent_day", "radio_partners_per_agent_day"):
        assert large[k] == pytest.approx(small[k], rel=0.15), (k, small[k], large[k])


def test_primary_pupils_sit_in_staggered_rows_secondary_on_a_grid():
    scn = preset("lang-son", 0.005)
    pop = make_population(scn, np.random.default_rng(2))
    pl = build_places(scn, pop, np.random.default_rng(3))
    p = scn.places["school"]
    pupils = np.flatnonzero((pop.role == R["student"]) & (pop.age <= 17))
    for young, d_near, n_near in ((True, p["primary_spacing_m"], 6), (False, p["spacing_m"] * 2 ** 0.5, 8)):
        grp = pupils[(pop.age[pupils] <= p["primary_max_age"]) == young]
        cls = pl.primary[grp]
        # nearest classmates of every pupil (a few classes; pairwise distances inside each class)
        counts = []
        for c in np.unique(cls)[:6]:
            m = grp[cls == c]
            dx = pl.seat_x[m][:, None] - pl.seat_x[m][None, :]
            dy = pl.seat_y[m][:, None] - pl.seat_y[m][None, :]
            counts.append(((np.hypot(dx, dy) <= d_near + 1e-3).sum(axis=1) - 1))
        counts = np.concatenate(counts)
        assert counts.max() == n_near                    # interior seats
        # the next ring is beyond reach of 2 m with the 0.15 m fidgeting (>= 2.4 m) for primary classes
        if young:
            dmin2 = []
            for c in np.unique(cls)[:6]:
                m = grp[cls == c]
                d = np.hypot(pl.seat_x[m][:, None] - pl.seat_x[m][None, :], pl.seat_y[m][:, None] - pl.seat_y[m][None, :])
                dmin2.append(d[(d > d_near + 1e-3)].min())
            assert min(dmin2) >= 2.4


def test_phone_ownership_2022_by_age_and_provincial_override():
    """FACTS.md S16: 73.5 % of adults in March 2022; Pew 2017 (S17): 18-36 vs 37+ ratio 88/38 = 2.3;
    children fewer. 15,633 persons: binomial sd of a share < 0.5 %."""
    scn = preset("lang-son", 0.02)
    pop = make_population(scn, np.random.default_rng(5))
    a, h = pop.age, pop.has_phone
    assert h[a >= 18].mean() == pytest.approx(0.735, abs=0.015)
    assert h[a < 18].mean() < 0.25
    assert h[(a >= 18) & (a <= 36)].mean() > h[(a >= 37) & (a <= 59)].mean() > h[a >= 60].mean()
    # the 2017 adult share gives Pew's gradient (ratio of 18-36 to 37+)
    p17 = make_population(scn.with_overrides({"phones": {"adult_share": 0.53}}), np.random.default_rng(5))
    a, h = p17.age, p17.has_phone
    ratio = h[(a >= 18) & (a <= 36)].mean() / h[a >= 37].mean()
    assert ratio == pytest.approx(88 / 38, abs=0.3)
    # provincial override (sweep --phone-owners): share of the WHOLE population, gradient kept
    pov = make_population(scn.with_overrides({"phones": {"owner_share": 0.775}}), np.random.default_rng(5))
    a, h = pov.age, pov.has_phone
    assert h.mean() == pytest.approx(0.775, abs=0.012)
    assert h[(a >= 18) & (a <= 36)].mean() > h[a >= 60].mean()


def test_employment_by_age_profile():
    scn = preset("lang-son", 0.02)
    pop = make_population(scn, np.random.default_rng(6))
    a = pop.age.astype(int)
    ro = scn.roles
    wa = (a >= 18) & (a <= 64)
    p = employment_probability(a, wa, ro)
    assert p[wa].mean() == pytest.approx(ro["employment_rate"], abs=1e-6)
    prob = {k: p[(a >= lo) & (a <= hi)].mean() for k, lo, hi in
            (("20-24", 20, 24), ("25-29", 25, 29), ("40-49", 40, 49), ("55-59", 55, 59), ("60-64", 60, 64))}
    assert prob["20-24"] < prob["25-29"] < prob["40-49"]
    assert prob["40-49"] > prob["55-59"] > prob["60-64"]
    assert p[a >= 65].max() == 0.0 and p[a < 18].max() == 0.0
    with pytest.raises(ValueError, match="roles.employment_age_edges"):
        scn.with_overrides({"roles": {"employment_by_age": [1.0, 1.0]}})


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
    rc = main(["validate", "--preset", "lang-son", "--scale", "0.005", "--seed", "0", "--prem-dir", str(PREM),
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
    # Prem >= 1 a day; households. At x0.005 (3,908 agents, a scale users run) a band's mean has a
    # sampling error of ~3-6 % (seeds 0 and 1 at x0.01 differ by up to 8 %); the calibration is held to
    # +-25 % in every judged band and setting, so a drift is seen before the tolerances break.
    for s in ("all", "home", "school", "work", "community"):
        assert checks[s]["ok"], (s, checks[s]["rel_diff"])
        rel = np.array(checks[s]["rel_diff"])[np.array(checks[s]["judged"])]
        assert np.all(np.abs(rel) <= 0.25), (s, checks[s]["rel_diff"])
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


def test_schedule_gatherings_before_home_visits_and_age_factors():
    """Home visitors and hosts leave a gathering before the visit starts; cafés: ages 18-29
    ``young_adult_factor`` x as often in the evening; gatherings: persons 70+ ``elder_factor`` x.
    15,633 persons: the rates below have binomial errors of 1-2 % (relative ~10 %)."""
    from sim.schedule import make_day
    scn = preset("lang-son", 0.02)
    pop = make_population(scn, np.random.default_rng(2))
    pl = build_places(scn, pop, np.random.default_rng(3))
    d = make_day(scn, pop, pl, 2, np.random.default_rng(4))          # a Wednesday
    both = (d.seg_inst[:, 8] >= 0) & (d.seg_inst[:, 9] >= 0)
    assert both.sum() > 50
    assert np.all(d.seg_end[both, 8] <= d.seg_start[both, 9])
    hosting = np.zeros(pop.n_households, bool)
    hosting[d.seg_inst[d.seg_inst[:, 9] >= 0, 9]] = True
    host_g = hosting[pop.household] & (d.seg_inst[:, 8] >= 0)
    first = np.full(pop.n_households, d.n_steps)
    v = np.flatnonzero(d.seg_inst[:, 9] >= 0)
    np.minimum.at(first, d.seg_inst[v, 9], d.seg_start[v, 9])
    assert host_g.sum() > 50
    assert np.all(d.seg_end[host_g, 8] <= first[pop.household[host_g]])
    a = pop.age
    evening = d.seg_inst[:, 6] >= 0
    young, mid = (a >= 18) & (a <= 29), (a >= 30) & (a <= 59)
    f = scn.places["restaurant"]["young_adult_factor"]
    assert evening[young].mean() / evening[mid].mean() == pytest.approx(f, rel=0.2)
    g = d.seg_inst[:, 8] >= 0
    old, adult = a >= 70, (a >= 18) & (a <= 69)
    assert g[old].mean() / g[adult].mean() < 0.75        # elder_factor 0.5 (adults also lose gatherings to visits)
