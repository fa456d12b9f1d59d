"""Contact graph: CSR from the pair table, time-ordered F0 -> F1 -> F2 propagation, networkx checks."""
import networkx as nx
import numpy as np
import pytest

from tracing.core.graph import ContactGraph, from_pairs, to_networkx
from tracing.core.propagation import propagate
from tracing.core.pairs import PAIR_DTYPE

DAY = 86400.0


def graph(edges, n, times=None):
    src, dst = zip(*edges) if edges else ((), ())
    return ContactGraph.from_edges(src, dst, n, t_first=times)


def test_time_order_contact_before_exposure_not_propagated():
    # F0 = 0 confirmed on day 10. 0 -> 1 on day 5 (1 exposed day 5).
    # 1 -> 2 on day 4 (before 1's exposure: not passed on); 1 -> 3 on day 6 (after: passed on).
    g = graph([(0, 1), (1, 2), (1, 3)], 4, [5 * DAY, 4 * DAY, 6 * DAY])
    hop, t_notify, t_exp = propagate(g, [0], 10 * DAY, delay_s=3600.0, return_exposure=True)
    assert hop.tolist() == [0, 1, -1, 2]
    assert t_notify[0] == 10 * DAY and t_notify[1] == 10 * DAY + 3600 and t_notify[3] == 10 * DAY + 7200
    assert np.isnan(t_notify[2])
    assert np.isnan(t_exp[0]) and t_exp[1] == 5 * DAY and t_exp[3] == 6 * DAY
    # the same contact at exactly the exposure time passes
    g = graph([(0, 1), (1, 2)], 3, [5 * DAY, 5 * DAY])
    assert propagate(g, [0], 10 * DAY).hop.tolist() == [0, 1, 2]


def test_fourteen_day_window_and_contacts_after_confirmation():
    # F0 0 confirmed on day 20: contacts on day 5 (15 d before: out), day 7 (in), day 21 (after: out)
    g = graph([(0, 1), (0, 2), (0, 3)], 4, [5 * DAY, 7 * DAY, 21 * DAY])
    assert propagate(g, [0], 20 * DAY).hop.tolist() == [0, -1, 1, -1]
    assert propagate(g, [0], 20 * DAY, window_s=16 * DAY).hop.tolist() == [0, 1, 1, -1]
    # F1's window counts from its own notification (delay 2 days): 2 -> 4 on day 8 is within
    # [22 - 14, 22] = [8, 22]; on day 7.5 it is not (and both are after 2's exposure on day 7)
    g = graph([(0, 2), (2, 4), (2, 5)], 6, [7 * DAY, 8 * DAY, 7.5 * DAY])
    hop = propagate(g, [0], 20 * DAY, delay_s=2 * DAY).hop
    assert hop.tolist() == [0, -1, 1, -1, 2, -1]


def test_parallel_edges_and_earliest_parent():
    # pair (0,1) on two days; the day-3 contact is out of the window, the day-12 one is in
    g = graph([(0, 1), (0, 1), (2, 1), (1, 3)], 4, [3 * DAY, 12 * DAY, 13 * DAY, 12.5 * DAY])
    hop, t_notify, t_exp = propagate(g, [0, 2], [20 * DAY, 19 * DAY], delay_s=[100.0, 10.0],
                                     return_exposure=True)
    assert hop.tolist() == [0, 1, 0, 2]
    assert t_notify[1] == 19 * DAY + 100 and t_exp[1] == 12 * DAY   # earliest of both parents
    assert t_notify[3] == 19 * DAY + 110
    # hops limit
    assert propagate(g, [0, 2], [20 * DAY, 19 * DAY], hops=1).hop.tolist() == [0, 1, 0, -1]
    assert propagate(g, [0], 20 * DAY, hops=0).hop.tolist() == [0, -1, -1, -1]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reachability_matches_networkx_without_times(seed):
    rng = np.random.default_rng(seed)
    n, m = 300, 700
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    keep = src != dst
    g = ContactGraph.from_edges(src[keep], dst[keep], n)          # all times NaN: no ordering
    f0 = rng.choice(n, 5, replace=False)
    nxg = to_networkx(g)
    assert nxg.number_of_edges() == keep.sum()
    for hops in (1, 2, 3):
        hop = propagate(g, f0, np.nan, hops=hops).hop
        dist = nx.multi_source_dijkstra_path_length(nxg, set(f0.tolist()), cutoff=hops)
        exp = np.full(n, -1)
        exp[list(dist)] = list(dist.values())
        assert np.array_equal(hop, exp), hops


def test_from_pairs_directions_active_and_alignment():
    p = np.zeros(4, dtype=PAIR_DTYPE)
    p["i"], p["j"], p["day"] = [0, 0, 1, 2], [1, 2, 3, 3], [0, 1, 1, 2]
    p["t_first"] = [100.0, DAY + 5, DAY + 7, 2 * DAY + 1]
    p["notify_j"] = [True, False, True, True]
    p["notify_i"] = [True, True, False, False]
    p["minutes"] = [20, 16, 30, 5]
    p["att"] = [45, 50, 40, np.nan]
    g = from_pairs(p, 5)
    src = g.sources()
    got = sorted(zip(src.tolist(), g.indices.tolist(), g.t_first.tolist(), g.minutes.tolist(), g.day.tolist()))
    assert got == [(0, 1, 100.0, 20.0, 0), (1, 0, 100.0, 20.0, 0), (1, 3, DAY + 7, 30.0, 1),
                   (2, 0, DAY + 5, 16.0, 1), (2, 3, 2 * DAY + 1, 5.0, 2)]
    # CSR order: the scipy matrix and the edge arrays line up
    csr = g.csr
    coo_rows = np.repeat(np.arange(5), np.diff(csr.indptr))
    assert np.array_equal(coo_rows, src) and np.array_equal(csr.indices, g.indices)
    assert csr.shape == (5, 5) and csr.nnz == 5
    # adopters: agent 3 without the app removes its edges
    active = np.array([True, True, True, False, True])
    ga = from_pairs(p, 5, active=active)
    assert sorted(zip(ga.sources().tolist(), ga.indices.tolist())) == [(0, 1), (1, 0), (2, 0)]
    nxg = to_networkx(g, multigraph=False)
    assert nxg.edges[1, 3]["minutes"] == 30.0 and nxg.number_of_edges() == 5
    with pytest.raises(ValueError, match=r"0\.\.2"):
        from_pairs(p, 3)
    with pytest.raises(ValueError, match="bool mask"):
        from_pairs(p, 5, active=np.ones(4, bool))


def test_propagate_input_checks():
    g = graph([(0, 1)], 2, [1.0])
    with pytest.raises(ValueError, match="one value per index case"):
        propagate(g, [0, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="f0 indices"):
        propagate(g, [2], 0.0)
    with pytest.raises(ValueError, match="delay_s"):
        propagate(g, [0], 0.0, delay_s=[1.0])
    mask = np.array([True, False])
    assert propagate(g, mask, 2.0).hop.tolist() == [0, 1]
