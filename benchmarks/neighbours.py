"""Neighbour search: ``sim.neighbours.pairs_within`` vs scipy's cKDTree and brute force.

Variants
--------
uniform
    n points uniform in a square sized for ~3 neighbours within r = 2 m (side sqrt(n pi r^2 / 3)).
clustered
    many small dense clusters, like classrooms, offices and buses: cluster sizes drawn from
    {5..60} (mean ~30), points normal around the cluster centre with sigma 3 m, centres uniform over an
    area of ~2,500 m^2 per cluster (so clusters rarely overlap); r = 2 m.  The cell grid is sparse
    (~20 M cells for 10^6 points): the sorted cell list keeps only occupied keys.

Baselines: ``cKDTree(xy).query_pairs(r, output_type="ndarray")`` including the tree build (its pairs
come unsorted; ours are sorted by (i, j) -- sorting is part of our timed work, not theirs), and a
chunked numpy brute force (all n^2 distances; sizes <= 10^4 only, <= 3,000 with --quick).  Agreement: identical pair sets.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from benchmarks._core import Baseline, Case
from sim.neighbours import pairs_within, pairs_within_groups

NAME = "neighbours"
R = 2.0


def uniform(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    side = np.sqrt(n * np.pi * R * R / 3.0)
    return rng.random((n, 2)) * side


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    sizes = []
    tot = 0
    while tot < n:
        s = int(rng.integers(5, 61))
        s = min(s, n - tot)
        sizes.append(s)
        tot += s
    k = len(sizes)
    side = np.sqrt(k * 2500.0)
    centres = rng.random((k, 2)) * side
    lab = np.repeat(np.arange(k), sizes)
    xy = centres[lab] + rng.normal(0.0, 3.0, (n, 2))
    return xy[rng.permutation(n)]                  # agents are not stored cluster by cluster


def ckdtree_pairs(xy: np.ndarray):
    return cKDTree(xy).query_pairs(R, output_type="ndarray")


def brute_pairs(xy: np.ndarray):
    """All pairs by brute force, in blocks of rows, same float expression as cKDTree (dx*dx+dy*dy)."""
    n = len(xy)
    x, y = xy[:, 0], xy[:, 1]
    r2 = R * R
    out_i, out_j = [], []
    block = max(1, 2_000_000 // max(n, 1))
    for a in range(0, n, block):
        b = min(n, a + block)
        dx = x[a:b, None] - x[None, :]
        dy = y[a:b, None] - y[None, :]
        hit = (dx * dx + dy * dy <= r2) & (np.arange(n)[None, :] > np.arange(a, b)[:, None])
        ii, jj = np.nonzero(hit)
        out_i.append(ii + a)
        out_j.append(jj)
    return np.concatenate(out_i), np.concatenate(out_j)


def _as_sorted(p):
    if isinstance(p, tuple):
        i, j = p
    else:
        i, j = p[:, 0].astype(np.int64), p[:, 1].astype(np.int64)
    o = np.lexsort((j, i))
    return i[o], j[o]


def agree(ours, name, theirs):
    i, j = ours
    ti, tj = _as_sorted(theirs)
    assert np.all(i < j), "ours: i < j violated"
    assert len(i) == len(ti), f"{name}: {len(ti)} pairs, ours {len(i)}"
    assert np.array_equal(i, ti) and np.array_equal(j, tj), f"{name}: pair sets differ"


def warmup() -> None:
    xy = uniform(200)
    pairs_within(xy, R)
    pairs_within(clustered(200), R)
    pairs_within_groups(xy, np.arange(200) % 3, R)


def cases(quick: bool) -> list[Case]:
    sizes = [1_000, 3_000, 10_000] if quick else [1_000, 10_000, 100_000, 1_000_000]
    out = []
    for variant, gen in (("uniform", uniform), ("clustered", clustered)):
        for n in sizes:
            out.append(Case(
                name=NAME, variant=variant, size=n, items=n, unit="points",
                setup=(lambda n=n, gen=gen: gen(n)),
                ours=lambda xy: pairs_within(xy, R),
                baselines=[
                    Baseline("cKDTree", ckdtree_pairs,
                             note="build + query_pairs(output_type='ndarray'), unsorted"),
                    Baseline("brute", brute_pairs, max_size=3_000 if quick else 10_000, note="O(n^2)"),
                ],
                agree=agree, params={"radius_m": R},
            ))
    return out
