"""Compile-light sorts of the simulator (first-run compilation): the sorted cell list's in-bucket sort
and the stable merge sort of an observer's windows give exactly numpy's orders; the sorted cell
list's kernels are compiled once each (one type signature for pairs_within and pairs_within_groups)."""
from __future__ import annotations

import numpy as np
import pytest

from sim import cell_list
from sim.neighbours import pairs_within, pairs_within_groups
from sim.scanning.extract import _merge_sort_rows


@pytest.mark.parametrize("m", [0, 1, 2, 48, 49, 300, 5000])
@pytest.mark.parametrize("ib, digit, span", [(20, 8, 2**15), (13, 11, 2**30), (13, 8, 1), (0, 11, 2**40)])
def test_sort_packed_is_numpys_order(m, ib, digit, span):
    # values key << ib | row with rows increasing (as the stable scatter leaves them): sorting by the
    # key stably is numpy's sort of the values; many ties when span is small
    rng = np.random.default_rng(m + ib)
    key = rng.integers(7, 7 + span, m).astype(np.uint64)
    v = (key << np.uint64(ib)) | (np.arange(m, dtype=np.uint64) & np.uint64((1 << ib) - 1 if ib else 0))
    if ib == 0:
        v = key
    got = v.copy()
    cell_list._sort_packed(got, np.empty(m, np.uint64), ib, digit)
    assert np.array_equal(got, np.sort(v))


@pytest.mark.parametrize("m", [0, 1, 65, 300, 1999])
def test_merge_sort_rows_is_the_two_pass_stable_argsort(m):
    rng = np.random.default_rng(m)
    rid = rng.integers(0, 5, 2000).astype(np.uint64)
    t0 = rng.integers(0, 4, 2000).astype(np.float64)               # ties in both keys
    order = rng.permutation(2000).astype(np.int64)
    ref = order.copy()
    seg = ref[1:1 + m].copy()
    seg = seg[np.argsort(t0[seg], kind="mergesort")]
    seg = seg[np.argsort(rid[seg], kind="mergesort")]
    ref[1:1 + m] = seg
    _merge_sort_rows(order, 1, 1 + m, rid, t0)
    assert np.array_equal(order, ref)


def test_sorted_scan_kernel_has_one_specialisation():
    rng = np.random.default_rng(0)
    xy = rng.random((500, 2)) * 20
    i, j = pairs_within_groups(xy, np.arange(500) % 4, 2.0)
    assert len(i) > 0
    xy = rng.random((500, 2)) * 2000                 # sparse: the occupied-cells scan without groups too
    assert len(pairs_within(xy, 2.0)[0]) >= 0
    for name in ("_points_kernel", "_buckets_kernel", "_scan_kernel", "_pair_scatter_kernel"):
        assert len(getattr(cell_list, name).signatures) == 1, name
