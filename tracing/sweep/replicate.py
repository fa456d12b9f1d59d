"""One replicate of an adoption sweep: its seeds and its curves.

Seeds: ``numpy.random.SeedSequence(seed).spawn(replicates)``; replicate r's child is split again into
(simulation seed, adoption/index-case generator), so results do not depend on the number of
replicates run before, nor on the other scenarios or strategies of the sweep.
"""
from __future__ import annotations

import hashlib

import numpy as np

from sim.strategies import priorities
from tracing.core.coverage import DelayModel, OnePass, close_degree, sample_index_cases

__all__ = ["FINE_GRID", "FINE_GRID_DIGEST", "INDEX_FROM", "replicate_seeds", "sim_seed_of", "analysis_rng",
           "default_index_cases", "index_spec", "resolve_index_cases", "one_replicate"]

#: How index cases are drawn: ``uniform`` over the whole population (app or not), or ``contacts``:
#: in proportion to the number of true close contacts (a proxy for who gets infected).
INDEX_FROM = ("uniform", "contacts")


#: Fine grid (fraction of the population) on which thresholds and the percolation plot are computed:
#: step 1e-4 up to 0.1 (dense contact networks percolate at a few per cent), 5e-4 above.
FINE_GRID = np.unique(np.round(np.concatenate([np.linspace(0.0, 0.1, 1001),
                                               np.linspace(0.1, 1.0, 1801)]), 12))


#: Digest of :data:`FINE_GRID` (part of every curves unit's parameters).
FINE_GRID_DIGEST = hashlib.sha256(FINE_GRID.tobytes()).hexdigest()[:16]


def replicate_seeds(seed: int, replicates: int):
    """Per replicate: (simulation seed as int, numpy Generator for ranks / index cases / phases)."""
    out = []
    for child in np.random.SeedSequence(int(seed)).spawn(int(replicates)):
        sim_ss, rng_ss = child.spawn(2)
        out.append((int(sim_ss.generate_state(1, np.uint32)[0]), np.random.default_rng(rng_ss)))
    return out


def index_spec(index_cases: int | None, index_from: str = "uniform"):
    """The index-case parameter of a curves unit: ``index_cases`` itself (int or None) for uniform
    draws (so that earlier units keep their hash), ``"contacts:K"`` / ``"contacts"`` otherwise."""
    if index_from not in INDEX_FROM:
        raise ValueError(f"--index-cases-from {index_from!r}: choose from {', '.join(INDEX_FROM)}")
    if index_cases is not None and int(index_cases) < 1:
        raise ValueError("--index-cases must be >= 1")
    if index_from == "uniform":
        return index_cases
    return "contacts" if index_cases is None else f"contacts:{int(index_cases)}"


def resolve_index_cases(spec, n: int) -> tuple[str, int]:
    """``(mode, k)`` of a unit's index-case parameter (:func:`index_spec`) for ``n`` agents."""
    mode, k = "uniform", spec
    if isinstance(spec, str):
        mode, _, k = spec.partition(":")
        k = k or None
    return mode, default_index_cases(n) if k is None else int(k)


def one_replicate(pairs, n, population, strategy, rng, index_cases, grid,
                  delay: DelayModel, phones_only: bool = False) -> tuple[dict, dict, float]:
    """Curves of one replicate on ``grid`` and on :data:`FINE_GRID`, and its exact percolation
    threshold (traceable network). ``index_cases``: a number (drawn uniformly) or ``(mode, k)`` from
    :func:`resolve_index_cases` (``contacts``: in proportion to the close-contact degree)."""
    mode, k = index_cases if isinstance(index_cases, tuple) else ("uniform", index_cases)
    ranks = priorities(strategy, population, rng, phones_only=phones_only)
    if mode == "contacts":
        f0 = sample_index_cases(n, k, rng, weights=close_degree(pairs, n).astype(np.float64))
    else:
        f0 = sample_index_cases(n, k, rng)
    phases = delay.sync_phases(rng, n)
    op = OnePass(pairs, n, ranks, f0, delay=delay, sync_phase_h=phases)
    return op.evaluate(grid), op.evaluate(FINE_GRID), op.percolation_threshold()


def default_index_cases(n: int) -> int:
    """Default number of index cases: 10% of the population, at least 1, at most 200 (a sample,
    so that F2 -- contacts outside F0 -- stays meaningful on small networks)."""
    return int(min(200, max(1, round(0.1 * n))))


def analysis_rng(seed: int, replicate: int) -> np.random.Generator:
    """The replicate's analysis generator (second child of its seed sequence)."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(int(replicate),))
                                 .spawn(2)[1])


def sim_seed_of(seed: int, replicate: int) -> int:
    """The replicate's simulation seed (first child of its seed sequence, as a 32-bit int)."""
    ss = np.random.SeedSequence(int(seed), spawn_key=(int(replicate),)).spawn(2)[0]
    return int(ss.generate_state(1, np.uint32)[0])
