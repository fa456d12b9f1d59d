"""Scenario loading: presets scale correctly, every key overridable, TOML errors name the key."""
import numpy as np
import pytest

from sim.population import make_population
from sim.scenario import PRESETS, load_scenario, preset

CENSUS = {"lang-son": 781_655, "nam-dinh": 1_780_393, "dak-lak": 1_869_322, "khanh-hoa": 1_231_107}


@pytest.mark.parametrize("name", sorted(CENSUS))
def test_preset_population_scales(name):
    assert set(PRESETS) == set(CENSUS)
    for scale in (1.0, 0.01, 0.0005):
        s = preset(name, scale)
        assert s.n_agents == round(CENSUS[name] * scale)
    assert preset(name, 0.003).meta["census_population_2019"] == CENSUS[name]


def test_preset_reported_adoption_metadata():
    ls = preset("lang-son").meta
    assert ls["reported_adoption"] == pytest.approx(152_411 / 605_768, abs=1e-4)
    dl = preset("dak-lak")
    assert dl.meta["reported_adoption"] == pytest.approx(0.1032)
    assert dl.population["household_mean"] == 3.83


def test_population_scaled_draw_matches_census_and_households():
    s = preset("dak-lak", 0.01)
    pop = make_population(s, np.random.default_rng(3))
    assert pop.n == s.n_agents == 18_693
    # mean household size: 1 + Poisson(2.83) truncated at 12 -> mean 3.83; sampling sd ~ 1.7/sqrt(4900)
    assert pop.hh_size.sum() == pop.n
    assert abs(pop.n / pop.n_households - 3.83) < 0.1
    adult = pop.age >= 18
    # adults with a smartphone: calibrated to phones.adult_share (0.735 by default); binomial sd ~0.004
    assert abs(pop.has_phone[adult].mean() - s.phones["adult_share"]) < 0.03
    young = (pop.age >= 18) & (pop.age <= 36)
    old = pop.age >= 37
    assert pop.has_phone[young].mean() > pop.has_phone[old].mean() + 0.15
    assert pop.has_phone[pop.age < 12].mean() < 0.06
    ios = (pop.platform[pop.has_phone] == 1).mean()
    assert abs(ios - 0.36 / 0.99) < 0.03
    # urban share of persons ~ 0.245 (household-level draw, sd ~ 0.006)
    assert abs(pop.urban.mean() - 0.245) < 0.03
    # every household's first member (a parent, or the eldest of a couple) is an adult
    assert (pop.age[pop.hh_start] >= 18).all()


def test_scenario_toml_overrides(tmp_path):
    p = tmp_path / "scenario.toml"
    p.write_text('preset = "khanh-hoa"\nscale = 0.002\n[places.school]\nclass_size = 40\n'
                 '[sim]\nclose_m = 1.5\n[meta]\nnote = "x"\n', encoding="utf-8")
    s = load_scenario(p)
    assert s.name == "khanh-hoa" and s.scale == 0.002
    assert s.places["school"]["class_size"] == 40
    assert s.sim["close_m"] == 1.5
    assert s.meta["note"] == "x"
    assert s.n_agents == round(1_231_107 * 0.002)


@pytest.mark.parametrize("text, message", [
    ("[places.school]\nclass_size = -3\n",
     "scenario.toml: places.school.class_size: must be a positive integer, got -3"),
    ("[population]\nurban_share = 1.5\n", "scenario.toml: population.urban_share: must be a probability"),
    ("[sim]\nstep_s = 7\n", "scenario.toml: sim.step_s:"),
    ("[places.market]\ndensity_m2 = 0\n", "scenario.toml: places.market.density_m2: must be a positive number"),
    ("[places.nightclub]\nsize = 3\n", "scenario.toml: places.nightclub: unknown key"),
    ("[population]\nsizes = 3\n", "scenario.toml: population.sizes: unknown key"),
    # attendance is drawn per age from MICS6 (sim.population); a place-type key for it did nothing
    ("[places.school]\nattendance = 0.9\n", "scenario.toml: places.school.attendance: unknown key"),
    ("preset = \"hanoi\"\n", "scenario.toml: preset: unknown preset"),
    ("[phones]\ncarriage_probs = [1, 2]\n", "scenario.toml: phones.carriage_probs:"),
    ("[schedule]\nwake = 1500\n", "scenario.toml: schedule.wake: must be a minute of the day"),
    ("scale = \"big\"\n", "scenario.toml: scale: must be a number"),
    ("[sim]\nradio_range_m = 1.0\n", "scenario.toml: sim.radio_range_m: must be at least sim.close_m"),
])
def test_scenario_errors_name_the_key(tmp_path, text, message):
    p = tmp_path / "scenario.toml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError) as e:
        load_scenario(p)
    assert message in str(e.value)


def test_invalid_toml_syntax(tmp_path):
    p = tmp_path / "scenario.toml"
    p.write_text("[sim\nstep_s = 300\n", encoding="utf-8")
    with pytest.raises(ValueError, match="scenario.toml: not valid TOML"):
        load_scenario(p)
