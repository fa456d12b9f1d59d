"""ID matching: ``tracing.matching.match_ids`` vs ``numpy.isin`` and a pandas merge.

Published IDs: ``N_CASES x 14 days x 96 IDs per day`` random uint64 (1,000 cases -> 1,344,000 IDs;
``--quick``: 20 cases).  Log records: random uint64 of which a fraction ``MATCH_FRACTION`` (1%) are
drawn from the published IDs -- in a real log most sighted IDs belong to people who are not cases.

*ours*: ``match_ids(log, published, out=buf)`` with the int64 result buffer allocated once in setup
(the intended use when a log is matched chunk by chunk).  At 10^8 records a fresh 800 MB result costs
more in page faults / huge-page compaction than the probe itself, so the same call *without* ``out=``
is reported as an extra row (``ours-alloc``) -- that row's ratio is "how much ``out=`` saves",
not a baseline to beat.

Baselines (same inputs, same process):
* ``numpy.isin(log, published)`` -- only a boolean mask (less than ``match_ids`` returns); agreement:
  ``isin == (idx >= 0)``.
* pandas ``merge(how="left")`` of the log against ``(rid, first index)`` of the published IDs -- the
  same output as ``match_ids``; agreement: identical index arrays.  Sizes <= 10^7 only: at 10^8 the
  merge needs several GB and minutes.

Memory at 10^8 records: the log is 800 MB and the int64 result another 800 MB (fine on this 24 GB
machine); ``numpy.isin`` sorts the concatenation of both inputs and needs several GB more.
"""
from __future__ import annotations

import numpy as np

from benchmarks._core import Baseline, Case
from tracing.core.matching import match_ids, match_mask

NAME = "matching"
N_CASES = 1_000
DAYS = 14
IDS_PER_DAY = 96
MATCH_FRACTION = 0.01


def make_inputs(n_log: int, n_cases: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pub = rng.integers(0, np.iinfo(np.uint64).max, n_cases * DAYS * IDS_PER_DAY,
                       dtype=np.uint64, endpoint=True)
    log = rng.integers(0, np.iinfo(np.uint64).max, n_log, dtype=np.uint64, endpoint=True)
    k = int(round(n_log * MATCH_FRACTION))
    if k:
        at = rng.integers(0, n_log, k)         # a few positions repeat: slightly under 1%
        log[at] = pub[rng.integers(0, pub.size, k)]
    buf = np.empty(n_log, np.int64)
    buf.fill(0)                                # touched once: the pages exist before timing
    return log, pub, buf


def ours(inp):
    log, pub, buf = inp
    return match_ids(log, pub, out=buf)


def ours_alloc(inp):
    return match_ids(inp[0], inp[1])


def isin(inp):
    return np.isin(inp[0], inp[1])


def pandas_merge(inp):
    import pandas as pd

    log, pub = inp[0], inp[1]
    right = pd.DataFrame({"rid": pub, "idx": np.arange(len(pub), dtype=np.int64)})
    right = right.drop_duplicates("rid", keep="first")
    m = pd.DataFrame({"rid": log}).merge(right, on="rid", how="left", sort=False)
    return m["idx"].fillna(-1).to_numpy(np.int64)


def agree(idx, name, theirs):
    if name == "numpy.isin":
        assert np.array_equal(idx >= 0, theirs), "numpy.isin: masks differ"
    else:
        assert np.array_equal(idx, theirs), f"{name}: indices differ"


def warmup() -> None:
    log, pub, buf = make_inputs(1000, 2)
    match_ids(log, pub, out=buf)
    match_mask(log, pub)


def cases(quick: bool) -> list[Case]:
    if quick:
        sizes, n_cases = [10_000, 30_000, 100_000], 20
    else:
        sizes, n_cases = [100_000, 1_000_000, 10_000_000, 100_000_000], N_CASES
    out = []
    try:
        import pandas  # noqa: F401
        have_pandas = True
    except ImportError:
        have_pandas = False
    for n in sizes:
        baselines = [Baseline("numpy.isin", isin, note="boolean mask only"),
                     Baseline("ours-alloc", ours_alloc,
                              note="ours without out=: a fresh result array every call")]
        if have_pandas:
            baselines.append(Baseline("pandas.merge", pandas_merge, max_size=10_000_000,
                                      note="several GB and minutes at 1e8"))
        out.append(Case(
            name=NAME, variant=f"{n_cases * DAYS * IDS_PER_DAY}pub", size=n, items=n, unit="records",
            setup=(lambda n=n: make_inputs(n, n_cases)),
            ours=ours, baselines=baselines, agree=agree,
            repeat=3 if n >= 100_000_000 else None,
            params={"published": n_cases * DAYS * IDS_PER_DAY, "match_fraction": MATCH_FRACTION},
        ))
    return out
