"""Compile-light sorts of the simulator (first-run compilation): the heapsort of long neighbour rows
and the stable merge sort of an observer's windows give exactly numpy's orders; the hashed cell
list's kernels are compiled once each (one type signature for pairs_within and pairs_within_groups)."""
from __future__ import annotations

import numpy as np
import pytest

from sim.cell_list import _heap_sort
from sim import cell_list
from sim.neighbours import pairs_within, pairs_within_groups
from sim.scanning.accumulate import _merge_sort_rows


@pytest.mark.parametrize("m", [0, 1, 2, 3, 49, 100, 1000])
@pytest.mark.parametrize("dtype", [np.int32, np.uint64])
def test_heap_sort_sorts_the_slice_only(m, dtype):
    a = np.random.default_rng(m).integers(0, 50, m + 10).astype(dtype)      # many ties
    b = a.copy()
    _heap_sort(b, 5, 5 + m)
    assert np.array_equal(b[5:5 + m], np.sort(a[5:5 + m]))
    assert np.array_equal(b[:5], a[:5]) and np.array_equal(b[5 + m:], a[5 + m:])


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
    for name in ("_hist_kernel", "_scatter_kernel", "_bucket_sort_kernel", "_gather_kernel", "_scan_kernel",
                 "_pair_scatter_kernel", "_finish_rows_kernel"):
        assert len(getattr(cell_list, name).signatures) == 1, name
