"""Adoption priorities: distinct ranks, nested adopter sets, each strategy's order."""
import numpy as np
import pytest

from sim.population import ROLES
from sim.strategies import priorities


def _pop(n, rng):
    return {"agent": np.arange(n), "has_phone": rng.random(n) < 0.7,
            "household": rng.integers(0, n // 3, n), "role": rng.integers(0, len(ROLES), n),
            "place_types": rng.integers(0, 64, n)}


def test_uniform_ranks_are_a_permutation_over_n():
    r = priorities("uniform", 1000, np.random.default_rng(1))
    assert np.array_equal(np.sort(r), np.arange(1, 1001) / 1000)
    for p in (0.1, 0.3, 0.75):  # nested sets of exactly floor(p n) adopters
        assert (r <= p).sum() == int(np.floor(p * 1000 + 1e-9))
    assert np.all((r <= 0.3) <= (r <= 0.6))


def test_smartphone_only_owners_ever_adopt():
    rng = np.random.default_rng(2)
    pop = _pop(900, rng)
    r = priorities("smartphone", pop, rng)
    own = pop["has_phone"]
    assert np.all(np.isinf(r[~own]))
    assert np.array_equal(np.sort(r[own]), np.arange(1, own.sum() + 1) / 900)
    assert (r <= 1.0).sum() == own.sum()  # saturates at the owner share


def test_household_members_are_contiguous():
    rng = np.random.default_rng(3)
    pop = _pop(600, rng)
    r = priorities("household", pop, rng)
    pos = np.rint(r * 600).astype(int)
    hh = pop["household"]
    u, inv, cnt = np.unique(hh, return_inverse=True, return_counts=True)
    span = np.zeros(len(u), int)
    np.maximum.at(span, inv, pos)
    lo = np.full(len(u), 10**9)
    np.minimum.at(lo, inv, pos)
    assert np.array_equal(span - lo + 1, cnt)


def test_institution_follows_campaign_order():
    rng = np.random.default_rng(4)
    pop = _pop(2000, rng)
    r = priorities("institution", pop, rng)
    role = np.array(ROLES)[pop["role"]]
    groups = [["civil_servant"], ["student", "teacher"], ["health_worker", "patient"],
              ["transport_worker"], ["factory_worker"]]
    prev = 0.0
    for g in groups:
        m = np.isin(role, g)
        assert r[m].min() > prev
        prev = r[m].max()
    rest = ~np.isin(role, sum(groups, []))
    assert r[rest].min() > prev


def test_venue_visitors_first():
    pytest.importorskip("sim.places", reason="sim.places.PLACE_TYPES not built yet")
    from sim.places import PLACE_TYPES
    from sim.strategies import DEFAULT_GATED
    if not all(g in PLACE_TYPES for g in DEFAULT_GATED):
        pytest.skip(f"simulator place types {PLACE_TYPES} lack {DEFAULT_GATED}")
    rng = np.random.default_rng(5)
    pop = _pop(500, rng)
    pop["place_types"] = rng.integers(0, 1 << len(PLACE_TYPES), 500)
    mask = sum(1 << PLACE_TYPES.index(g) for g in DEFAULT_GATED)
    vis = (pop["place_types"] & mask) != 0
    r = priorities("venue", pop, rng)
    assert r[vis].max() < r[~vis].min()


def test_external_list_allows_only_uniform():
    with pytest.raises(ValueError, match="household"):
        priorities("household", 50, np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown adoption strategy 'bogus'"):
        priorities("bogus", 50, np.random.default_rng(0))
    with pytest.raises(ValueError, match="has_phone"):
        priorities("smartphone", {"agent": np.arange(3)}, np.random.default_rng(0))


def test_phones_only_orders_owners_and_keeps_household_blocks():
    rng = np.random.default_rng(6)
    pop = _pop(600, rng)
    own = pop["has_phone"]
    for name in ("uniform", "household", "institution"):
        r = priorities(name, pop, rng, phones_only=True)
        assert np.all(np.isinf(r[~own]))
        assert np.array_equal(np.sort(r[own]), np.arange(1, own.sum() + 1) / 600)
    r = priorities("household", pop, rng, phones_only=True)
    hh = pop["household"][own]
    pos = np.rint(r[own] * 600).astype(int)
    u, inv, cnt = np.unique(hh, return_inverse=True, return_counts=True)
    hi, lo = np.zeros(len(u), int), np.full(len(u), 10**9)
    np.maximum.at(hi, inv, pos)
    np.minimum.at(lo, inv, pos)
    assert np.array_equal(hi - lo + 1, cnt)  # owners of one household install together
