"""Adoption strategies as priorities (common random numbers).

Every agent gets one adoption rank per replicate. Ranks of agents who can adopt are the distinct values
``1/n, 2/n, ..., m/n`` (a permutation divided by the population size ``n``), so that at adoption level
``p`` -- a *fraction of the whole population* -- the adopters are ``rank <= p``: exactly
``floor(p * n)`` agents, and the adopter sets are nested as ``p`` grows. One simulation therefore
yields the whole coverage-vs-adoption curve: a contact between i and j is traceable from
``p = max(rank_i, rank_j)`` on. Agents who can never adopt get ``rank = +inf``.

Strategies (the order in which a campaign reaches people, random within ties):

``uniform``
    random order.
``smartphone``
    only phone owners (``has_phone``) can adopt, in random order; non-owners never adopt
    (``rank = inf``), so adoption and coverage saturate at the owner share. Ownership carries the age
    dependence (the simulator draws ``has_phone`` by age).
``household``
    door-to-door drives: households in random order, all members of a household contiguous (a family
    installs together; random order inside the family).
``institution``
    the provincial letters' order: civil servants, then students and teachers, then health workers
    and patients, then transport workers, then factory workers, then everyone else.
``venue``
    everyone who entered a gated place type (default: markets, hospitals, bus stations, where entry
    required the app; ``station`` is the simulator's bus station / transport hub) first, then the rest.

``population`` is either an integer ``n`` (an external contact list: only ``uniform`` applies) or a
table with the columns of the simulator's ``population.parquet`` (a numpy structured array, a dict of
arrays, a pyarrow Table or a pandas DataFrame).
"""
from __future__ import annotations

import numpy as np

from sim.places import PLACE_TYPES
from sim.population import ROLES

__all__ = ["STRATEGIES", "INSTITUTION_ORDER", "DEFAULT_GATED", "priorities", "adopters"]

STRATEGIES = ("uniform", "smartphone", "household", "institution", "venue")


#: Campaign order of the provincial letters (group index = position; roles not listed come last).
INSTITUTION_ORDER = (("civil_servant",), ("student", "teacher"), ("health_worker", "patient"),
                     ("transport_worker",), ("factory_worker",))

#: Place types whose entry was gated by the app / QR check-in in the campaign (``station`` = the
#: simulator's bus stations / transport hubs, ``sim.places.PLACE_TYPES``).
DEFAULT_GATED = ("market", "hospital", "station")



def _column(population, name):
    """Column ``name`` of a population table as a numpy array (``name=None``: the row count)."""
    try:
        if isinstance(population, np.ndarray) and population.dtype.names:
            if name is None:
                return len(population)
            return np.asarray(population[name])
        if hasattr(population, "column_names") and hasattr(population, "num_rows"):  # pyarrow
            if name is None:
                return population.num_rows
            return population.column(name).to_numpy(zero_copy_only=False)
        if name is None:
            first = next(iter(population.keys() if hasattr(population, "keys") else population))
            return len(population[first])
        return np.asarray(population[name])
    except (KeyError, ValueError, TypeError, StopIteration) as e:
        raise ValueError(f"population table has no column {name!r}") from e


def _has(population, name) -> bool:
    if isinstance(population, (int, np.integer)):
        return False
    if isinstance(population, np.ndarray):
        return bool(population.dtype.names) and name in population.dtype.names
    if hasattr(population, "column_names"):
        return name in population.column_names
    return name in population


def _ranks_from_keys(rng: np.random.Generator, n: int, group: np.ndarray | None = None,
                     can_adopt: np.ndarray | None = None) -> np.ndarray:
    """Random order within ``group`` (ascending group first); agents with ``can_adopt == False`` are
    ordered last and get ``inf``, so that adopters keep the consecutive ranks ``1/n .. m/n``."""
    u = rng.random(n)
    keys = (u,) if group is None else (u, group)
    if can_adopt is not None:
        keys = keys + ((~can_adopt).astype(np.int8),)
    order = np.lexsort(keys)
    rank = np.empty(n, np.float64)
    rank[order] = np.arange(1, n + 1, dtype=np.float64) / n
    if can_adopt is not None:
        rank[~can_adopt] = np.inf
    return rank


def priorities(name: str, population, rng: np.random.Generator, *,
               gated: tuple[str, ...] = DEFAULT_GATED, phones_only: bool = False) -> np.ndarray:
    """Adoption ranks (float64, one per agent) for strategy ``name``; adopters at p: ``rank <= p``.

    Ranks of agents who can adopt are distinct multiples of ``1/n`` in (0, 1]; ``inf`` marks agents
    who never adopt (non-owners under ``smartphone``). ``gated`` (``venue`` only) names the place
    types whose visitors adopt first. ``phones_only`` (needs ``has_phone``): every strategy orders
    only the phone owners and non-owners never adopt -- what the sweep uses on simulated
    populations, so that adoption p means "a fraction p of the population runs the app" (``uniform``
    then coincides with ``smartphone``).
    """
    if name not in STRATEGIES:
        raise ValueError(f"unknown adoption strategy {name!r}; expected one of {STRATEGIES}")
    if not isinstance(rng, np.random.Generator):
        raise ValueError("priorities: rng must be a numpy.random.Generator")
    if isinstance(population, (int, np.integer)):
        n = int(population)
        if n < 0:
            raise ValueError("priorities: population size must be >= 0")
        if name != "uniform":
            raise ValueError(f"strategy {name!r} needs a population table (has_phone, household, "
                             f"role, place_types); an external contact list has only n nodes -- use "
                             f"'uniform'")
        return _ranks_from_keys(rng, n)
    n = int(_column(population, None))
    owners = None
    if phones_only:
        if not _has(population, "has_phone"):
            raise ValueError("phones_only needs population column 'has_phone'")
        owners = _column(population, "has_phone").astype(bool)
    if name == "uniform":
        return _ranks_from_keys(rng, n, can_adopt=owners)
    need = {"smartphone": "has_phone", "household": "household", "institution": "role",
            "venue": "place_types"}[name]
    if not _has(population, need):
        raise ValueError(f"strategy {name!r} needs population column {need!r}")
    col = _column(population, need)
    if name == "smartphone":
        own = col.astype(bool)
        return _ranks_from_keys(rng, n, group=(~own).astype(np.int8), can_adopt=own)
    if name == "household":
        hh, inv = np.unique(col, return_inverse=True)
        hh_pos = rng.permutation(len(hh))[inv]
        return _ranks_from_keys(rng, n, group=hh_pos, can_adopt=owners)
    if name == "institution":
        role = col.astype(np.int64)
        if len(role) and (role.min() < 0 or role.max() >= len(ROLES)):
            raise ValueError(f"strategy 'institution': role codes must lie in 0..{len(ROLES) - 1}")
        group_of_role = np.full(len(ROLES), len(INSTITUTION_ORDER), np.int64)
        for g, names in enumerate(INSTITUTION_ORDER):  # loop over 5 groups, not agents
            for r in names:
                if r in ROLES:
                    group_of_role[ROLES.index(r)] = g
        return _ranks_from_keys(rng, n, group=group_of_role[role], can_adopt=owners)
    # venue
    types = tuple(PLACE_TYPES)
    unknown = [g for g in gated if g not in types]
    if unknown:
        raise ValueError(f"strategy 'venue': unknown place types {unknown}; known: {list(types)}")
    mask = 0
    for g in gated:
        mask |= 1 << types.index(g)
    visited = (col.astype(np.int64) & mask) != 0
    return _ranks_from_keys(rng, n, group=(~visited).astype(np.int8), can_adopt=owners)


def adopters(ranks: np.ndarray, p: float) -> np.ndarray:
    """Boolean mask of adopters at adoption level ``p`` (fraction of the population)."""
    return np.asarray(ranks) <= p
