"""Site percolation of the traceable contact network by the Newman–Ziff algorithm.

Adopters join in priority order (common random numbers: at adoption ``p`` the adopters are the agents
with ``rank <= p``). Adding nodes one at a time and merging clusters with a union-find gives, in one
O(N + E) pass, the size of the largest cluster and the mean finite-cluster size after *every* addition
(M. E. J. Newman & R. M. Ziff, PRL 85, 4104 (2000)).

Mean finite-cluster size (the susceptibility) after k additions is
``chi = sum_{C != largest} |C|^2 / sum_{C != largest} |C|`` -- the expected size of the cluster of a
randomly chosen occupied node outside the largest cluster (0 when every occupied node is in the largest
cluster). Its peak marks the percolation point: the adoption level where multi-hop tracing starts to
reach a giant component. For an Erdős–Rényi graph with mean degree c the infinite-size site threshold
is p_c = 1/c.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

__all__ = ["newman_ziff", "newman_ziff_csr", "order_from_ranks", "percolation_curve"]


@numba.njit(cache=True)
def _find(parent, x):
    root = x
    while parent[root] != root:
        root = parent[root]
    while parent[x] != root:  # path compression
        nxt = parent[x]
        parent[x] = root
        x = nxt
    return root


@numba.njit(cache=True)
def _newman_ziff_kernel(indptr, indices, order, n):
    """Add nodes ``order[0], order[1], ...``; after addition k (1-based) record the largest cluster
    size and (sum of squares, sum) of cluster sizes outside the largest."""
    m = order.shape[0]
    parent = np.full(n, -1, np.int64)  # -1 = not occupied
    size = np.zeros(n, np.int64)
    largest = np.zeros(m, np.int64)
    chi = np.zeros(m, np.float64)
    big = 0
    sum_sq = 0  # sum over all clusters of |C|^2
    for k in range(m):
        v = order[k]
        parent[v] = v
        size[v] = 1
        sum_sq += 1
        rv = v
        for e in range(indptr[v], indptr[v + 1]):
            u = indices[e]
            if parent[u] < 0:
                continue
            ru = _find(parent, u)
            if ru == rv:
                continue
            su, sv = size[ru], size[rv]
            sum_sq += 2 * su * sv  # (su + sv)^2 - su^2 - sv^2
            if su < sv:
                parent[ru] = rv
                size[rv] = su + sv
            else:
                parent[rv] = ru
                size[ru] = su + sv
                rv = ru
        if size[rv] > big:
            big = size[rv]
        largest[k] = big
        rest = (k + 1) - big
        if rest > 0:
            chi[k] = (sum_sq - big * big) / rest
    return largest, chi


def _csr(n: int, i: np.ndarray, j: np.ndarray):
    i = np.asarray(i, dtype=np.int64)
    j = np.asarray(j, dtype=np.int64)
    if i.shape != j.shape or i.ndim != 1:
        raise ValueError("newman_ziff: edge arrays i and j must be 1-D of equal length")
    if len(i) and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n):
        raise ValueError(f"newman_ziff: edge endpoints must lie in 0..{n - 1}")
    keep = i != j
    i, j = i[keep], j[keep]
    data = np.ones(2 * len(i), dtype=np.int8)
    a = sp.csr_matrix((data, (np.concatenate([i, j]), np.concatenate([j, i]))), shape=(n, n))
    a.sum_duplicates()
    return a.indptr.astype(np.int64), a.indices.astype(np.int64)


def newman_ziff(n: int, edges_i, edges_j, order) -> tuple[np.ndarray, np.ndarray]:
    """Site percolation in one pass.

    Parameters
    ----------
    n : number of nodes (agents ``0..n-1``).
    edges_i, edges_j : undirected edges (duplicates and self-loops are ignored).
    order : the nodes in the order they are occupied (distinct; may be a prefix of all nodes, e.g.
        only agents who can ever adopt).

    Returns
    -------
    largest : int64 array, ``largest[k-1]`` = nodes in the largest cluster after k additions.
    mean_finite_cluster : float64 array, the susceptibility after k additions (nodes; see module
        docstring).
    """
    n = int(n)
    if n < 0:
        raise ValueError("newman_ziff: n must be >= 0")
    order = np.asarray(order, dtype=np.int64)
    if order.ndim != 1 or (len(order) and (order.min() < 0 or order.max() >= n)):
        raise ValueError(f"newman_ziff: order must be a 1-D array of nodes in 0..{n - 1}")
    if len(np.unique(order)) != len(order):
        raise ValueError("newman_ziff: order has repeated nodes")
    indptr, indices = _csr(n, edges_i, edges_j)
    if len(order) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    return _newman_ziff_kernel(indptr, indices, order, n)


def newman_ziff_csr(indptr: np.ndarray, indices: np.ndarray, order: np.ndarray):
    """:func:`newman_ziff` on a graph given as a symmetric CSR (``indptr`` int64 (n+1,), ``indices``
    int64: both directions of every edge, no self-loops; repeated neighbours are harmless) and a valid
    ``order`` (distinct nodes, e.g. from :func:`order_from_ranks`); no checks, for callers that built
    the CSR themselves (the one-pass curves)."""
    n = len(indptr) - 1
    if len(order) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    return _newman_ziff_kernel(indptr, indices, order, n)


def order_from_ranks(ranks: np.ndarray) -> np.ndarray:
    """Nodes that can adopt (finite rank) sorted by rank: the Newman–Ziff addition order."""
    ranks = np.asarray(ranks, dtype=np.float64)
    fin = np.flatnonzero(np.isfinite(ranks))
    return fin[np.argsort(ranks[fin], kind="stable")]


def percolation_curve(n: int, edges_i, edges_j, ranks, grid) -> dict:
    """Largest cluster (fraction of the population) and mean finite-cluster size at each adoption
    level of ``grid``, plus the percolation threshold (adoption at the peak of the mean finite-cluster
    size, exact: the rank of the node whose addition gives the peak).
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    if len(ranks) != n:
        raise ValueError(f"percolation_curve: {len(ranks)} ranks for {n} agents")
    order = order_from_ranks(ranks)
    largest, chi = newman_ziff(n, edges_i, edges_j, order)
    sr = ranks[order]
    k = np.searchsorted(sr, np.asarray(grid, dtype=np.float64), side="right")
    lg = np.where(k > 0, largest[np.maximum(k - 1, 0)] if len(largest) else 0, 0) / max(n, 1)
    ch = np.where(k > 0, chi[np.maximum(k - 1, 0)] if len(chi) else 0.0, 0.0)
    if len(chi) and chi.max() > 0:
        kpk = int(np.argmax(chi))
        p_c = float(sr[kpk])
    else:
        p_c = float("nan")
    return {"largest_component": lg.astype(np.float64), "mean_finite_cluster": ch, "threshold": p_c}
