"""The contact graph of notified contacts (CSR, one edge per pair-day and direction).

:class:`ContactGraph` is a compact CSR adjacency (``scipy.sparse.csr_matrix``, rows = sources) of
*directed* edges i -> j meaning "j would be warned were i an index case" (``notify_j`` of the pair
table; ``notify_i`` gives j -> i). A pair notified on several days has one edge per day (parallel
edges are kept, because each carries its own contact time). Edge arrays ``t_first`` (s), ``minutes``
(min), ``att`` (dB) and ``day`` are aligned with the CSR order (``graph.indices``).

Notification propagation over this graph is :func:`tracing.core.propagation.propagate`.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
import numpy as np
import scipy.sparse as sp

from tracing.core.pairs import PAIR_DTYPE

__all__ = ["ContactGraph", "from_pairs", "to_networkx"]


@dataclass(frozen=True, eq=False)
class ContactGraph:
    """Directed CSR graph of notified contacts: edge e goes ``src -> indices[e]`` for
    ``indptr[src] <= e < indptr[src+1]``.

    ``t_first``: s, first contact time of that pair that day (NaN = unknown); ``minutes``: min, the
    rule's (weighted) exposure minutes; ``att``: dB, typical attenuation (NaN = unknown); ``day``:
    day index. ``n``: number of nodes (agents ``0..n-1``).
    """
    n: int
    indptr: np.ndarray
    indices: np.ndarray
    t_first: np.ndarray
    minutes: np.ndarray
    att: np.ndarray
    day: np.ndarray

    @property
    def n_edges(self) -> int:
        return int(self.indices.size)

    @cached_property
    def csr(self) -> sp.csr_matrix:
        """Adjacency as ``scipy.sparse.csr_matrix`` (n × n, data 1.0 per edge, parallel edges kept as
        separate entries in CSR order, sharing ``indptr``/``indices``; ``.sum_duplicates()`` on a copy
        would count contact days)."""
        return sp.csr_matrix((np.ones(self.n_edges, dtype=np.float32), self.indices, self.indptr),
                             shape=(self.n, self.n))

    def sources(self) -> np.ndarray:
        """Source node of each edge (int64, CSR order)."""
        return np.repeat(np.arange(self.n, dtype=np.int64), np.diff(self.indptr))

    def out_degree(self) -> np.ndarray:
        """Edges leaving each node (parallel edges counted)."""
        return np.diff(self.indptr)

    @classmethod
    def from_pairs(cls, pairs: np.ndarray, n: int, active=None) -> "ContactGraph":
        return from_pairs(pairs, n, active)

    @classmethod
    def from_edges(cls, src, dst, n: int, t_first=None, minutes=None, att=None, day=None
                   ) -> "ContactGraph":
        """Build from edge lists (src -> dst: dst warned were src an index case); optional per-edge
        ``t_first`` (s), ``minutes`` (min), ``att`` (dB), ``day``. Edges are sorted by (src, dst,
        t_first); self-loops are rejected."""
        src = np.asarray(src, dtype=np.int64).reshape(-1)
        dst = np.asarray(dst, dtype=np.int64).reshape(-1)
        m = src.size
        if dst.size != m:
            raise ValueError("src and dst need the same length")
        n = int(n)
        if n < 0:
            raise ValueError("n must be >= 0")
        if m and (min(src.min(), dst.min()) < 0 or max(src.max(), dst.max()) >= n):
            raise ValueError(f"edge endpoints must lie in 0..{n - 1}")
        if np.any(src == dst):
            raise ValueError("self-loops are not contacts")

        def col(x, dtype, fill):
            if x is None:
                return np.full(m, fill, dtype=dtype)
            x = np.asarray(x, dtype=dtype).reshape(-1)
            if x.size != m:
                raise ValueError("edge attribute arrays need one value per edge")
            return x
        t = col(t_first, np.float64, np.nan)
        mi = col(minutes, np.float32, np.nan)
        a = col(att, np.float32, np.nan)
        d = col(day, np.int32, -1)
        order = np.lexsort((t, dst, src))
        counts = np.bincount(src, minlength=n)
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(counts, out=indptr[1:])
        return cls(n=n, indptr=indptr, indices=dst[order], t_first=t[order], minutes=mi[order],
                   att=a[order], day=d[order])


def from_pairs(pairs: np.ndarray, n: int, active=None) -> ContactGraph:
    """Contact graph of a pair table (:data:`tracing.pairs.PAIR_DTYPE`).

    Rows with ``notify_j`` give an edge i -> j, rows with ``notify_i`` an edge j -> i, each with the
    row's ``t_first``, ``minutes``, ``att``, ``day``. ``active``: optional bool mask of length ``n``
    (the app adopters); an edge needs both ends active (both phones run the app). ``n`` must exceed
    every agent index.
    """
    if not isinstance(pairs, np.ndarray) or pairs.dtype.names is None:
        raise ValueError("pairs must be a PAIR_DTYPE structured array")
    missing = [f for f in PAIR_DTYPE.names if f not in pairs.dtype.names]
    if missing:
        raise ValueError(f"pairs lack fields {missing} (expected tracing.pairs.PAIR_DTYPE)")
    n = int(n)
    i = pairs["i"].astype(np.int64)
    j = pairs["j"].astype(np.int64)
    if pairs.size and (min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n):
        raise ValueError(f"pair indices must lie in 0..{n - 1} (n={n})")
    fwd = pairs["notify_j"].astype(bool)
    bwd = pairs["notify_i"].astype(bool)
    if active is not None:
        active = np.asarray(active)
        if active.shape != (n,) or active.dtype != bool:
            raise ValueError(f"active must be a bool mask of length n={n}")
        both = active[i] & active[j]
        fwd &= both
        bwd &= both
    src = np.concatenate([i[fwd], j[bwd]])
    dst = np.concatenate([j[fwd], i[bwd]])
    cols = {f: np.concatenate([pairs[f][fwd], pairs[f][bwd]]) for f in ("t_first", "minutes", "att", "day")}
    return ContactGraph.from_edges(src, dst, n, **cols)


def to_networkx(graph: ContactGraph, multigraph: bool = True):
    """The graph as ``networkx.MultiDiGraph`` (one edge per pair-day, attributes ``t_first``,
    ``minutes``, ``att``, ``day``) or, with ``multigraph=False``, a ``DiGraph`` with parallel edges
    merged (earliest ``t_first``, summed ``minutes``, last ``att``/``day`` in time order). Nodes are
    ``0..n-1``. For interoperability and tests (networkx builds Python objects per edge)."""
    import networkx as nx
    g = nx.MultiDiGraph() if multigraph else nx.DiGraph()
    g.add_nodes_from(range(graph.n))
    src = graph.sources()
    if multigraph:
        attrs = [dict(t_first=t, minutes=m, att=a, day=d) for t, m, a, d in
                 zip(graph.t_first.tolist(), graph.minutes.tolist(), graph.att.tolist(),
                     graph.day.tolist())]
        g.add_edges_from(zip(src.tolist(), graph.indices.tolist(), attrs))
        return g
    # merge parallel edges vectorised: edges are sorted by (src, dst, t_first)
    m = graph.n_edges
    new = np.ones(m, dtype=bool)
    if m:
        new[1:] = (src[1:] != src[:-1]) | (graph.indices[1:] != graph.indices[:-1])
    starts = np.flatnonzero(new)
    last = np.append(starts[1:], m) - 1
    mins = np.add.reduceat(graph.minutes.astype(np.float64), starts) if m else np.zeros(0)
    attrs = [dict(t_first=t, minutes=mi, att=a, day=d) for t, mi, a, d in
             zip(graph.t_first[starts].tolist(), mins.tolist(), graph.att[last].tolist(),
                 graph.day[last].tolist())]
    g.add_edges_from(zip(src[starts].tolist(), graph.indices[starts].tolist(), attrs))
    return g
