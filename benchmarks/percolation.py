"""Site percolation: Newman--Ziff (``tracing.core.percolation``) vs one connected-components call per level.

Graph: ``n`` nodes and ``10 n`` random edges (endpoints uniform, mean degree ~20, so the site
percolation threshold is near p = 1/20); adoption ranks are a random permutation of ``(k + 1) / n``
(common random numbers: the adopters at p are ``rank <= p``, nested).  Levels: 21, ``0, 0.05, .., 1``.

ours
    ``tracing.percolation.newman_ziff`` over the nodes in rank order (one pass gives the largest
    cluster after every addition; CSR build included), then the largest cluster read at the 21 levels.
scipy.cc
    per level: the subgraph of adopter-adopter edges as a sparse matrix and one
    ``scipy.sparse.csgraph.connected_components`` call; largest component among the adopters.
networkx
    per level: ``networkx.connected_components`` of the induced subgraph (graph built once, not timed
    per level but inside the call); sizes up to 10^5 nodes only (10^6 edges take ~GB and minutes).

Agreement: identical largest-component sizes (nodes) at all 21 levels.
"""
from __future__ import annotations

import numpy as np

from benchmarks._core import Baseline, Case

NAME = "percolation"
EDGES_PER_NODE = 10
GRID = np.linspace(0.0, 1.0, 21)


def make_graph(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    m = EDGES_PER_NODE * n
    i = rng.integers(0, n, m, dtype=np.int64)
    j = rng.integers(0, n, m, dtype=np.int64)
    ranks = (rng.permutation(n) + 1.0) / n
    return n, i, j, ranks


def ours(inp):
    from tracing.core.percolation import newman_ziff, order_from_ranks

    n, i, j, ranks = inp
    order = order_from_ranks(ranks)
    largest, _ = newman_ziff(n, i, j, order)
    k = np.searchsorted(ranks[order], GRID, side="right")
    return np.where(k > 0, largest[np.maximum(k - 1, 0)], 0).astype(np.int64)


def scipy_cc(inp):
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    n, i, j, ranks = inp
    out = np.zeros(len(GRID), np.int64)
    for k, p in enumerate(GRID):
        adopt = ranks <= p
        if not adopt.any():
            continue
        e = adopt[i] & adopt[j]
        g = sp.csr_matrix((np.ones(int(e.sum()), np.int8), (i[e], j[e])), shape=(n, n))
        _, lab = connected_components(g, directed=False)
        out[k] = np.bincount(lab[adopt]).max()
    return out


def networkx_cc(inp):
    import networkx as nx

    n, i, j, ranks = inp
    g = nx.Graph()
    g.add_nodes_from(range(n))
    g.add_edges_from(zip(i.tolist(), j.tolist()))
    out = np.zeros(len(GRID), np.int64)
    for k, p in enumerate(GRID):
        nodes = np.flatnonzero(ranks <= p).tolist()
        if not nodes:
            continue
        out[k] = max(len(c) for c in nx.connected_components(g.subgraph(nodes)))
    return out


def agree(ours_out, name, theirs):
    assert np.array_equal(ours_out, theirs), f"{name}: largest components differ: {ours_out} vs {theirs}"


def warmup() -> None:
    ours(make_graph(100))


def cases(quick: bool) -> list[Case]:
    sizes = [1_000, 10_000] if quick else [10_000, 100_000, 1_000_000]
    nx_max = 10_000 if quick else 100_000
    try:
        import networkx  # noqa: F401
        have_nx = True
    except ImportError:
        have_nx = False
    out = []
    for n in sizes:
        baselines = [Baseline("scipy.cc", scipy_cc, note="connected_components per level (21 calls)")]
        if have_nx:
            baselines.append(Baseline("networkx", networkx_cc, max_size=nx_max,
                                      note="GBs of memory and minutes at 10^6 nodes / 10^7 edges"))
        out.append(Case(
            name=NAME, variant=f"random-{2 * EDGES_PER_NODE}deg-21lv", size=n, items=n,
            unit="nodes", setup=(lambda n=n: make_graph(n)), ours=ours, baselines=baselines,
            agree=agree, repeat=3 if n >= 1_000_000 else None,
            params={"edges": n * EDGES_PER_NODE, "levels": len(GRID)},
        ))
    return out
