"""ID matching: ``tracing.matching.match_hits`` vs ``numpy.isin``, a pandas merge, polars and duckdb.

Published IDs: ``N_CASES x 14 days x 96 IDs per day`` random uint64 (1,000 cases -> 1,344,000 IDs;
``--quick``: 20 cases).  Log records: random uint64 of which a fraction ``MATCH_FRACTION`` (1%) are
drawn from the published IDs -- in a real log most sighted IDs belong to people who are not cases.

*ours*: ``match_hits(log, published) -> (rec, idx)``: the matched records (ascending) and the index of
each one's ID in ``published`` (first occurrence) -- what every caller of the matching uses (they all
did ``idx = match_ids(...); hit = idx >= 0; idx[hit]``), without an 8-byte result per record.  Our
earlier per-record form is reported as extra rows, not baselines to beat: ``ours-idx``,
``match_ids(log, published, out=buf)`` with the int64 result buffer allocated once in setup (at 10^8
records writing that result is 800 MB of memory traffic), and ``ours-alloc``, the same without
``out=`` (a fresh 800 MB result costs more in page faults / huge-page compaction than the probe).

What each baseline produces (the agreement check compares exactly that):
*full*: the same information as ours (every matched record and its ID's first index): pandas.merge,
polars.join (an index per record, -1 / null where unmatched), duckdb.join (the (record, index) pairs,
in any order); *mask*: only whether each record matched (less than ours): numpy.isin, polars.is_in,
duckdb.semi (the matched row numbers, turned into a mask).

Baselines (same inputs, same process):
* ``numpy.isin(log, published)`` -- only a boolean mask (less than ``match_ids`` returns); agreement:
  ``isin == (idx >= 0)``.
* pandas ``merge(how="left")`` of the log against ``(rid, first index)`` of the published IDs -- the
  same output as ``match_ids``; agreement: identical index arrays.  Sizes <= 10^7 only: at 10^8 the
  merge needs several GB and minutes.

* polars ``Series.is_in`` (mask) and a polars left join against ``(rid, first index)`` (indices), a
  duckdb semi-join (``SELECT k FROM lg SEMI JOIN pb USING (rid)`` over the numpy arrays; the mask from the
  matched row numbers) and a duckdb join against ``(rid, min(index))`` (the pairs) -- the engines built
  for this scan-and-join.  Optional: installed by the ``bench`` extra
  (``pip install -e .[bench]``); rows are skipped with a note when the package is missing.  Threads:
  both engines use every core of the machine, as ours does.

Memory at 10^8 records: the log is 800 MB; ours' result is 16 bytes per match (~16 MB at 1%), the
``ours-idx`` row's int64 result another 800 MB (fine on this 24 GB machine); ``numpy.isin`` sorts the
concatenation of both inputs and needs several GB more.
"""
from __future__ import annotations

import numpy as np

from benchmarks._core import Baseline, Case
from tracing.core.matching import match_hits, match_ids, match_mask

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
    return match_hits(inp[0], inp[1])


def ours_idx(inp):
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


def polars_is_in(inp):
    import polars as pl  # optional benchmark dependency (extra 'bench')

    return pl.Series("rid", inp[0]).is_in(pl.Series("pub", inp[1])).to_numpy()


def polars_join(inp):
    import polars as pl  # optional benchmark dependency (extra 'bench')

    log, pub = inp[0], inp[1]
    right = pl.DataFrame({"rid": pub, "idx": np.arange(len(pub), dtype=np.int64)}).unique("rid", keep="first")
    m = pl.DataFrame({"rid": log}).join(right, on="rid", how="left", maintain_order="left")
    return m["idx"].fill_null(-1).to_numpy()


def duckdb_semi(inp):
    import duckdb  # optional benchmark dependency (extra 'bench')

    log, pub = inp[0], inp[1]
    con = duckdb.connect()
    try:
        con.register("lg", {"rid": log, "k": np.arange(len(log), dtype=np.int64)})
        con.register("pb", {"rid": pub})
        hit = con.execute("SELECT k FROM lg SEMI JOIN pb USING (rid)").fetchnumpy()["k"]
    finally:
        con.close()
    mask = np.zeros(len(log), bool)
    mask[hit] = True
    return mask


def duckdb_join(inp):
    import duckdb  # optional benchmark dependency (extra 'bench')

    log, pub = inp[0], inp[1]
    con = duckdb.connect()
    try:
        con.register("lg", {"rid": log, "k": np.arange(len(log), dtype=np.int64)})
        con.register("pb", {"rid": pub, "idx": np.arange(len(pub), dtype=np.int64)})
        got = con.execute("SELECT k, idx FROM lg JOIN (SELECT rid, min(idx) AS idx FROM pb GROUP BY rid) "
                          "USING (rid)").fetchnumpy()
    finally:
        con.close()
    return got["k"], got["idx"]


def _have(name: str) -> bool:
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def agree(ours, name, theirs):
    """``ours``: ``(rec, idx)`` (or a per-record index array, turned into that); ``theirs`` a mask, an
    index per record or (record, index) pairs in any order (module docstring)."""
    if isinstance(ours, np.ndarray):
        ours = (np.flatnonzero(ours >= 0), ours[ours >= 0])
    rec, idx = ours
    if name in ("numpy.isin", "polars.is_in", "duckdb.semi"):
        assert np.array_equal(np.flatnonzero(theirs), rec), f"{name}: masks differ"
    elif name == "duckdb.join":
        o = np.argsort(theirs[0], kind="stable")
        assert np.array_equal(theirs[0][o], rec) and np.array_equal(theirs[1][o], idx), f"{name}: pairs differ"
    else:
        assert np.array_equal(np.flatnonzero(theirs >= 0), rec) and np.array_equal(theirs[rec], idx), \
            f"{name}: indices differ"


def warmup() -> None:
    log, pub, buf = make_inputs(1000, 2)
    match_ids(log, pub, out=buf)
    match_mask(log, pub)
    match_hits(log, pub)


def cases(quick: bool) -> list[Case]:
    if quick:
        sizes, n_cases = [10_000, 30_000, 100_000], 20
    else:
        sizes, n_cases = [100_000, 1_000_000, 10_000_000, 100_000_000], N_CASES
    out = []
    have_pandas, have_polars, have_duckdb = _have("pandas"), _have("polars"), _have("duckdb")
    for n in sizes:
        baselines = [Baseline("numpy.isin", isin, note="boolean mask only"),
                     Baseline("ours-idx", ours_idx,
                              note="our match_ids(out=buf): an int64 index per record (not a baseline)"),
                     Baseline("ours-alloc", ours_alloc,
                              note="match_ids without out=: a fresh result array every call")]
        if have_pandas:
            baselines.append(Baseline("pandas.merge", pandas_merge, max_size=10_000_000,
                                      note="several GB and minutes at 1e8"))
        if have_polars:
            baselines.append(Baseline("polars.is_in", polars_is_in, note="boolean mask only"))
            baselines.append(Baseline("polars.join", polars_join, max_size=10_000_000,
                                      note="left join on (rid, first index): same output as ours"))
        if have_duckdb:
            baselines.append(Baseline("duckdb.semi", duckdb_semi,
                                      note="SEMI JOIN over the numpy arrays (mask via matched row numbers)"))
            baselines.append(Baseline("duckdb.join", duckdb_join,
                                      note="JOIN on (rid, first index): the (record, index) pairs, as ours"))
        out.append(Case(
            name=NAME, variant=f"{n_cases * DAYS * IDS_PER_DAY}pub", size=n, items=n, unit="records",
            setup=(lambda n=n: make_inputs(n, n_cases)),
            ours=ours, baselines=baselines, agree=agree,
            repeat=3 if n >= 100_000_000 else None,
            params={"published": n_cases * DAYS * IDS_PER_DAY, "match_fraction": MATCH_FRACTION},
        ))
    return out
