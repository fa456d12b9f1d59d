"""Grouped reductions of agent-keyed rows, by counting sorts and small numba kernels, with numpy's arithmetic.

Two steps of "logs -> contacts" group rows by small integer keys (agent indices, day indices):

* :func:`window_sums` -- exposure windows -> per-(observer, source, day) sums (the body of
  :func:`tracing.core.rules.daily_sums`);
* :func:`pair_table` -- directed daily rows and the rule's verdicts -> one row per (day, i < j), outer-joined
  with the ground truth (the body of :func:`tracing.pipeline.pairs_from_daily`).

Rows are put in order by stable LSD counting sorts over the keys (O(rows + key range) per key, no
comparison sort, no copy of the rows; :func:`stable_order`), falling back to ``np.lexsort`` where a key's
range is far larger than the rows. A stable sort by the same keys is one permutation whichever way it is
computed, and the reductions reproduce numpy's exactly (``np.add.reduceat``: the first element plus the
pairwise sum of the rest, numpy's ``pairwise_sum``; ``np.maximum``/``np.minimum``/``np.fmax``/``np.fmin``
with their NaN rules; ``np.bincount``'s sequential sum from 0), so the results are bit-for-bit those of the
lexsort + reduceat code these kernels replaced, in a fraction of its time and memory.

Units: times in seconds, durations in seconds or minutes as named, attenuation in dB, RSSI in dBm.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from ble.schema import GROUND_TRUTH_DTYPE
from tracing.core.pairs import PAIR_DTYPE

__all__ = ["stable_order", "window_sums", "keep_columns", "pair_order", "pair_table", "WINDOW_FIELDS"]

#: a key is counting-sorted while its range is at most this many buckets per row (else np.lexsort)
_BUCKETS_PER_ROW = 8
#: ... or at most this many buckets whatever the rows (an int64 count each: 32 MiB)
_MIN_BUCKETS = 1 << 22


# ----------------------------------------------------------------------------------------------------
# numpy's arithmetic, element by element
# ----------------------------------------------------------------------------------------------------
@njit(cache=True)
def _pw_leaf(buf, lo, n):
    """numpy's ``pairwise_sum`` of ``buf[lo:lo + n]`` for n <= 128 (float64): sequential from -0.0 below 8
    values, else 8 accumulators combined as a tree, then the rest sequentially."""
    if n < 8:
        res = -0.0
        for k in range(lo, lo + n):
            res += buf[k]
        return res
    r0, r1, r2, r3 = buf[lo], buf[lo + 1], buf[lo + 2], buf[lo + 3]
    r4, r5, r6, r7 = buf[lo + 4], buf[lo + 5], buf[lo + 6], buf[lo + 7]
    i = 8
    while i < n - n % 8:
        r0 += buf[lo + i]
        r1 += buf[lo + i + 1]
        r2 += buf[lo + i + 2]
        r3 += buf[lo + i + 3]
        r4 += buf[lo + i + 4]
        r5 += buf[lo + i + 5]
        r6 += buf[lo + i + 6]
        r7 += buf[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += buf[lo + i]
        i += 1
    return res


@njit(cache=True)
def _pairwise(buf, lo, n):
    """numpy's ``pairwise_sum`` of ``buf[lo:lo + n]``: above 128 values, the sum of the two halves (the
    first a multiple of 8), recursively -- here with an explicit stack (a cached numba function must not
    call itself)."""
    if n <= 128:
        return _pw_leaf(buf, lo, n)
    slo, sn, sph, sv = np.empty(64, np.int64), np.empty(64, np.int64), np.zeros(64, np.int64), np.empty(64)
    top, ret = 0, 0.0
    slo[0], sn[0] = lo, n
    while top >= 0:
        l, m, ph = slo[top], sn[top], sph[top]
        h = m // 2 - (m // 2) % 8
        if m <= 128:
            ret = _pw_leaf(buf, l, m)
            top -= 1
        elif ph < 2:                                  # descend into the first (0) or second (1) half
            if ph == 1:
                sv[top] = ret
            sph[top] = ph + 1
            top += 1
            slo[top], sn[top], sph[top] = (l, h, 0) if ph == 0 else (l + h, m - h, 0)
        else:
            ret = sv[top] + ret
            top -= 1
    return ret


@njit(cache=True, inline="always")
def _reduceat_sum(buf, n):
    """``np.add.reduceat`` of one group held in ``buf[:n]`` (n >= 1): first value + pairwise sum of the rest."""
    if n == 1:
        return buf[0]
    return buf[0] + _pairwise(buf, 1, n - 1)


@njit(cache=True, inline="always")
def _np_max(a, b):
    """``np.maximum``: NaN propagates."""
    return a if (a >= b or a != a) else b


@njit(cache=True, inline="always")
def _np_min(a, b):
    """``np.minimum``: NaN propagates."""
    return a if (a <= b or a != a) else b


@njit(cache=True, inline="always")
def _np_fmax(a, b):
    """``np.fmax``: NaN ignored."""
    return a if (a >= b or b != b) else b


@njit(cache=True, inline="always")
def _np_fmin(a, b):
    """``np.fmin``: NaN ignored."""
    return a if (a <= b or b != b) else b


# ----------------------------------------------------------------------------------------------------
# Stable order by small integer keys
# ----------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _count_pass(a, b, mode, base, nb, perm, out):
    """One stable counting-sort pass: ``out`` = ``perm`` reordered by the rows' keys.

    Parameters
    ----------
    a, b : (n,) int64
        Key of row p: ``a[p]`` (mode 0), ``min(a[p], b[p])`` (mode 1) or ``max(a[p], b[p])`` (mode 2).
    mode, base, nb : int
        Key kind; keys lie in ``[base, base + nb)``.
    perm, out : (m,) int32 or int64
        Row indices in, and the same reordered (stable: equal keys keep ``perm``'s order).
    """
    counts = np.zeros(nb + 1, np.int64)
    for k in range(perm.size):
        p = perm[k]
        key = a[p] if mode == 0 else (min(a[p], b[p]) if mode == 1 else max(a[p], b[p]))
        counts[key - base + 1] += 1
    for c in range(nb):
        counts[c + 1] += counts[c]
    for k in range(perm.size):
        p = perm[k]
        key = a[p] if mode == 0 else (min(a[p], b[p]) if mode == 1 else max(a[p], b[p]))
        c = key - base
        out[counts[c]] = p
        counts[c] += 1


def _key(a, b, mode):
    return a if mode == 0 else (np.minimum(a, b) if mode == 1 else np.maximum(a, b))


def stable_order(n: int, passes) -> np.ndarray:
    """Stable sort order of ``n`` rows by integer keys, least significant key first.

    ``passes``: sequence of ``(a, b, mode)``: (n,) int64 arrays and the key of row p, ``a[p]`` (mode 0),
    ``min(a[p], b[p])`` (1) or ``max(a[p], b[p])`` (2); ``b`` is ignored for mode 0. Returns int32 row
    indices (int64 from 2**31 rows): the permutation ``np.lexsort`` of the keys gives, computed by one
    counting-sort pass per key whose values vary (``np.lexsort`` itself where a key's range is far larger
    than the rows).
    """
    n = int(n)
    idx = np.int32 if n < 2**31 else np.int64
    keyed = []
    for a, b, mode in passes:
        a = np.ascontiguousarray(a, dtype=np.int64)
        b = a if mode == 0 else np.ascontiguousarray(b, dtype=np.int64)
        if a.shape != (n,) or b.shape != (n,) or mode not in (0, 1, 2):
            raise ValueError(f"stable_order: keys need shape ({n},) and mode 0, 1 or 2")
        if n == 0:
            continue
        lo = int(min(a.min(), b.min()))
        hi = int(max(a.max(), b.max()))
        if hi > lo:
            keyed.append((a, b, mode, lo, hi - lo + 1))
    if not keyed:
        return np.arange(n, dtype=idx)
    if max(k[4] for k in keyed) > max(_BUCKETS_PER_ROW * n, _MIN_BUCKETS):
        return np.lexsort(tuple(_key(a, b, m) for a, b, m, _, _ in keyed)).astype(idx)
    perm, tmp = np.arange(n, dtype=idx), np.empty(n, dtype=idx)
    for a, b, mode, lo, nb in keyed:             # one pass per key (a few), each a kernel over the rows
        _count_pass(a, b, mode, lo, nb, perm, tmp)
        perm, tmp = tmp, perm
    return perm


# ----------------------------------------------------------------------------------------------------
# Windows -> per (observer, source, day) sums
# ----------------------------------------------------------------------------------------------------
@njit(cache=True, nogil=True)
def _runs(order, a, b, c):
    """Starts of runs of equal (a, b, c) (each (n,)) along ``order``, plus the end: (groups + 1,) int64."""
    n = order.size
    starts = np.empty(n + 1, np.int64)
    g = 0
    for k in range(n):
        p = order[k]
        if k == 0:
            starts[g] = 0
            g += 1
        else:
            q = order[k - 1]
            if a[p] != a[q] or b[p] != b[q] or c[p] != c[q]:
                starts[g] = k
                g += 1
    starts[g] = n
    return starts[:g + 1].copy()


@njit(cache=True, nogil=True)
def _runs_order_kernel(obs, src, order):
    """Stable order by (obs, src) of rows already sorted by ``obs`` (n,) int64: each run of equal
    observers sorted by ``src`` (n,) int64 (insertion sort up to 32 rows, else numpy's stable
    mergesort), written to ``order`` (n,) int32/int64. Returns False, ``order`` unfinished, when ``obs``
    is not non-decreasing. The permutation is ``np.lexsort((src, obs))``'s."""
    n = obs.size
    lo = 0
    while lo < n:
        hi = lo + 1
        while hi < n and obs[hi] == obs[lo]:
            hi += 1
        if hi < n and obs[hi] < obs[lo]:
            return False
        if hi - lo <= 32:
            for k in range(lo, hi):
                v, q = src[k], k
                while q > lo and src[order[q - 1]] > v:
                    order[q] = order[q - 1]
                    q -= 1
                order[q] = k
        else:
            sub = np.argsort(src[lo:hi], kind="mergesort")
            for k in range(hi - lo):
                order[lo + k] = lo + sub[k]
        lo = hi
    return True


@njit(cache=True, inline="always")
def _wmean(x, w, order, lo, m, buf, buf2):
    """numpy's ``where(den > 0, num / den, nan)`` of x weighted by w over ``order[lo:lo + m]`` (values
    counted where x is finite and w > 0; sums as ``np.add.reduceat``)."""
    for k in range(m):
        q = order[lo + k]
        xv, wv = np.float64(x[q]), np.float64(w[q])
        ok = np.isfinite(xv) and wv > 0
        buf[k] = xv * wv if ok else 0.0
        buf2[k] = wv if ok else 0.0
    den = _reduceat_sum(buf2, m)
    return _reduceat_sum(buf, m) / den if den > 0 else np.nan


@njit(cache=True, nogil=True)
def _window_sums_kernel(order, starts, obs, src, day, t_start, t_end, n_scans, dur, rssi_mean, rssi_max,
                        att_typ, att_min, att_secs, o_obs, o_src, o_day, o_nw, o_tf, o_tl, o_ns, o_dur, o_secs,
                        o_rm, o_rx, o_am, o_an):
    """Per group ``order[starts[g]:starts[g + 1]]`` of windows (sorted by observer, source, day): the
    :data:`tracing.core.rules.DAILY_DTYPE` sums ``o_*`` (s, dB, dBm; see ``daily_sums``).

    Inputs (n,) per window: obs, src i8; day i8; t_start, t_end f8 (s); n_scans i4;
    dur f4 (s); rssi_mean, rssi_max f4 (dBm);
    att_typ, att_min f4 (dB); att_secs (n, B) f4 (s; B = 0: none, ``o_secs`` left as it is). Outputs
    (groups,) and (groups, B).
    """
    gmax = 1
    for g in range(starts.size - 1):
        gmax = max(gmax, starts[g + 1] - starts[g])
    buf, buf2 = np.empty(gmax), np.empty(gmax)
    scans = n_scans.astype(np.float64)
    for g in range(starts.size - 1):
        lo, m = starts[g], starts[g + 1] - starts[g]
        p = order[lo]
        o_obs[g], o_src[g], o_day[g], o_nw[g] = obs[p], src[p], day[p], m
        tf, tl, ns = t_start[p], t_end[p], 0
        rx, an = np.float64(rssi_max[p]), np.float64(att_min[p])
        for k in range(lo, lo + m):
            q = order[k]
            ns += n_scans[q]
            if k > lo:
                tf, tl = _np_min(tf, t_start[q]), _np_max(tl, t_end[q])
                rx, an = _np_fmax(rx, np.float64(rssi_max[q])), _np_fmin(an, np.float64(att_min[q]))
            buf[k - lo] = dur[q]
        o_tf[g], o_tl[g], o_ns[g], o_rx[g], o_an[g] = tf, tl, ns, rx, an
        o_dur[g] = _reduceat_sum(buf, m)
        for c in range(att_secs.shape[1]):
            if m == 1:                                     # most groups: one window
                o_secs[g, c] = att_secs[p, c]
                continue
            for k in range(m):
                buf[k] = att_secs[order[lo + k], c]
            o_secs[g, c] = _reduceat_sum(buf, m)
        o_rm[g] = _wmean(rssi_mean, scans, order, lo, m, buf, buf2)
        o_am[g] = _wmean(att_typ, dur, order, lo, m, buf, buf2)


#: window fields :func:`window_sums` reads, and their dtypes (those of ``ble.schema.WINDOW_DTYPE``);
#: ``att_secs`` may be left out (the sums' ``att_secs`` then stay 0)
WINDOW_FIELDS = {"observer": np.int64, "t_start": np.float64, "t_end": np.float64, "n_scans": np.int32,
                 "duration_s": np.float32, "rssi_mean": np.float32, "rssi_max": np.float32,
                 "att_typical": np.float32, "att_min": np.float32, "att_secs": np.float32}


def window_sums(cols: dict, source: np.ndarray, day: np.ndarray, out_dtype: np.dtype, out=None) -> np.ndarray:
    """Per-(observer, source, day) sums of matched windows, sorted by (observer, source, day).

    ``cols``: window columns by name (:data:`WINDOW_FIELDS`; ``att_secs`` (n, B) or absent: sums 0), or
    ``WINDOW_DTYPE`` records;
    ``source``: (n,) int
    advertiser per window (rows < 0 left out); ``day``: int day, or (n,) one per window; ``out_dtype``:
    :data:`tracing.core.rules.DAILY_DTYPE`; ``out``: optional array of it to fill (at least as many rows as
    groups; its first rows are returned: a buffer reused block after block, whose ``att_secs`` must be 0
    where ``cols`` has none). Checked and reduced as ``daily_sums`` documents.
    """
    n = len(source)
    have = cols.dtype.names if isinstance(cols, np.ndarray) else cols     # records, or columns by name
    c = {f: np.ascontiguousarray(cols[f], dtype=t) if f in have else np.zeros((n, 0), t)
         for f, t in WINDOW_FIELDS.items()}
    if any(len(v) != n for v in c.values()) or c["att_secs"].ndim != 2:
        raise ValueError(f"window_sums: every column needs {n} rows and att_secs two dimensions")
    day = _as_day(day, n)
    keep = np.flatnonzero(np.asarray(source) >= 0)
    if keep.size < n:
        c = {f: v[keep] for f, v in c.items()}
        source, day = np.asarray(source)[keep], (day[keep] if day.size > 1 else day)
    m = keep.size
    obs = c["observer"]
    src = np.ascontiguousarray(source, dtype=np.int64)
    order = None
    if day.size == 1 and m:              # one day, observers sorted (a windows file): sort each observer's rows
        order = np.empty(m, np.int32 if m < 2**31 else np.int64)
        order = order if _runs_order_kernel(obs, src, order) else None
    if order is None:
        order = stable_order(m, ([(day, None, 0)] if day.size > 1 else []) + [(src, None, 0), (obs, None, 0)])
    day = day if day.size == m else np.full(m, day[0], dtype=np.int64)   # one per row: no branch in the kernels
    starts = _runs(order, obs, src, day) if m else np.zeros(1, np.int64)
    g = starts.size - 1
    if out is not None and (out.dtype != out_dtype or len(out) < g):
        raise ValueError(f"window_sums: out must be a {out_dtype} array of at least {g} rows")
    if out is None or len(out) < 2:      # the kernel writes fields of >= 2 rows (one compiled layout)
        out = np.zeros(max(g, 2), dtype=out_dtype)
    if m:
        _window_sums_kernel(order, starts, obs, src, day, c["t_start"], c["t_end"], c["n_scans"],
                            c["duration_s"], c["rssi_mean"], c["rssi_max"], c["att_typical"], c["att_min"],
                            c["att_secs"], out["observer"], out["source"], out["day"], out["n_windows"],
                            out["t_first"], out["t_last"], out["n_scans"], out["duration_s"], out["att_secs"],
                            out["rssi_mean"], out["rssi_max"], out["att_mean"], out["att_min"])
    return out[:g]


@njit(cache=True, nogil=True)
def _keep_kernel(obs, src, tf, am, dur, k_obs, k_src, k_tf, k_am, k_dur, r):
    """Copy g = obs.size daily rows' fields (strided views of one record array: obs, src i8, tf f8 (s),
    am f4 (dB), dur f8 (s)) into columns ``k_*`` at rows ``r .. r + g``: one pass over the records."""
    for g in range(obs.size):
        k_obs[r + g], k_src[r + g], k_tf[r + g] = obs[g], src[g], tf[g]
        k_am[r + g], k_dur[r + g] = am[g], dur[g]


#: the daily-sum fields :func:`keep_columns` copies (those :func:`pair_table` reads besides the verdicts)
KEEP_FIELDS = ("observer", "source", "t_first", "att_mean", "duration_s")


def keep_columns(daily: np.ndarray, keep: dict, r: int) -> None:
    """Copy :data:`KEEP_FIELDS` of ``daily`` (``DAILY_DTYPE`` rows, g of them) into ``keep[f][r:r + g]``
    (columns of the fields' dtypes, at least ``r + g`` rows): one pass over the records, where a numpy
    copy per field reads every record once per field (2.5x the time for 160-byte records)."""
    g = len(daily)
    if any(keep[f].dtype != daily.dtype[f] or keep[f].ndim != 1 or len(keep[f]) < r + g for f in KEEP_FIELDS):
        raise ValueError(f"keep_columns: columns {KEEP_FIELDS} of the daily fields' dtypes and >= {r + g} rows")
    if g:
        _keep_kernel(*(daily[f] for f in KEEP_FIELDS), *(keep[f] for f in KEEP_FIELDS), int(r))


# ----------------------------------------------------------------------------------------------------
# Directed daily rows + ground truth -> the pair table
# ----------------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def _dir_group(k, k2, obs, j, notify, minutes, t_first, att, dur, buf, buf2):
    """Reduce directed rows ``k:k2`` of pair (i, j): (notify_j, notify_i, minutes max, t_first min,
    duration-weighted attenuation) as ``pairs_from_daily`` defines them."""
    nj, ni = False, False
    mn, tf = minutes[k], t_first[k]
    for q in range(k, k2):
        if notify[q]:
            if obs[q] == j:
                nj = True
            else:
                ni = True
        if q > k:
            mn, tf = _np_max(mn, minutes[q]), _np_min(tf, t_first[q])
        a = np.float64(att[q])
        fin = np.isfinite(a)
        wd = dur[q] if fin else 0.0
        buf[q - k] = (a if fin else 0.0) * wd
        buf2[q - k] = wd
    den = _reduceat_sum(buf2, k2 - k)
    return nj, ni, mn, tf, (_reduceat_sum(buf, k2 - k) / den if den > 0 else np.nan)


@njit(cache=True, inline="always")
def _dkey(obs, src, k):
    """(i, j) = (min, max) of observer and source of directed row k."""
    return (min(obs[k], src[k]), max(obs[k], src[k]))


@njit(cache=True, inline="always")
def _next_group(obs, src, gi, gj, k, l):
    """The next pair of the merge of the directed rows from ``k`` and the ground-truth rows from ``l``
    (both sorted by (i, j)): (from directed rows?, from ground truth?, (i, j), end k2, end l2)."""
    n, m = obs.size, gi.size
    dk = _dkey(obs, src, k) if k < n else (np.int64(0), np.int64(0))
    gk = (gi[l], gj[l]) if l < m else (np.int64(0), np.int64(0))
    take_d = k < n and (l >= m or dk <= gk)
    take_g = l < m and (k >= n or gk <= dk)
    key = dk if take_d else gk
    k2, l2 = k, l
    while take_d and k2 < n and _dkey(obs, src, k2) == key:
        k2 += 1
    while take_g and l2 < m and (gi[l2], gj[l2]) == key:
        l2 += 1
    return take_d, take_g, key, k2, l2


@njit(cache=True, nogil=True)
def _merge_count(obs, src, gi, gj):
    """Rows of the merge of one day's directed rows (sorted by min, max of observer/source) and its
    ground-truth rows (sorted by i, j): (rows, largest directed group, largest ground-truth group); rows
    is -1 where the directed rows are not sorted. All (n,)/(m,) int64."""
    n, m = obs.size, gi.size
    k, l, r, dmax, gmax = 0, 0, 0, 1, 1
    while k < n or l < m:
        take_d, take_g, key, k2, l2 = _next_group(obs, src, gi, gj, k, l)
        if take_d and k2 < n and _dkey(obs, src, k2) < key:
            return -1, 0, 0
        dmax, gmax = max(dmax, k2 - k), max(gmax, l2 - l)
        k, l, r = k2, l2, r + 1
    return r, dmax, gmax


@njit(cache=True, nogil=True)
def _merge_fill(obs, src, d, notify, minutes, t_first, att, dur, gi, gj, gmc, gt_t, dedupe, close_minutes,
                buf, buf2, r, o_i, o_j, o_day, o_tf, o_close, o_nj, o_ni, o_min, o_att):
    """Write the pair rows of day ``d`` of :func:`_merge_count`'s merge into ``o_*`` (the
    :data:`PAIR_DTYPE` fields) from row ``r`` on.

    Directed rows (n,): obs, src i8, notify, minutes f4 (min), t_first (s), att f4 (dB), dur (s). Ground
    truth (m,): gi, gj i8, gmc f4 minutes close (min), gt_t f8 (s, or empty): earliest time. ``dedupe``:
    ground-truth rows of one pair summed as ``np.add.reduceat`` and stored as float32 before the
    threshold, else summed from 0 as ``np.bincount``; ``buf``, ``buf2``: scratch, at least the largest group.
    """
    n, m = obs.size, gi.size
    k, l = 0, 0
    while k < n or l < m:
        take_d, take_g, key, k2, l2 = _next_group(obs, src, gi, gj, k, l)
        o_day[r], o_i[r], o_j[r] = d, key[0], key[1]
        nj, ni, mn, tf, at = False, False, 0.0, np.nan, np.nan
        if take_d:
            nj, ni, mn, tf, at = _dir_group(k, k2, obs, key[1], notify, minutes, t_first, att, dur, buf, buf2)
        close = 0.0
        if take_g and dedupe:
            for s in range(l, l2):
                buf[s - l] = gmc[s]
            close = np.float64(np.float32(_reduceat_sum(buf, l2 - l)))
        elif take_g:
            for s in range(l, l2):
                close += np.float64(gmc[s])
                if gt_t.size:
                    tf = _np_fmin(tf, gt_t[s])
        o_nj[r], o_ni[r], o_min[r], o_tf[r], o_att[r], o_close[r] = nj, ni, mn, tf, at, close >= close_minutes
        k, l, r = k2, l2, r + 1


def _as_day(day, n: int) -> np.ndarray:
    """(n,) int64 days, or (1,): one value for all rows (the kernels' convention; also when all are equal)."""
    d = np.asarray(day).reshape(-1)
    if d.size and d.dtype.kind not in "iu":
        raise ValueError(f"day must be integer, got {d.dtype}")
    if d.size == 0:
        return np.zeros(1, np.int64)
    if d.size == 1 or d.min() == d.max():
        return np.array([d[0]], dtype=np.int64)
    if d.shape != (n,):
        raise ValueError(f"day needs one value or one per row ({n}), got shape {np.shape(day)}")
    return np.ascontiguousarray(d, dtype=np.int64)


@njit(cache=True, nogil=True)
def _sorted_pairs(obs, src):
    """True when directed rows are strictly increasing in (obs, src) with obs != src (daily sums are)."""
    for k in range(obs.size):
        if obs[k] == src[k] or (k and (obs[k], src[k]) <= (obs[k - 1], src[k - 1])):
            return False
    return True


@njit(cache=True, nogil=True)
def _merge_halves(obs, src, rev, out):
    """Order by (min, max) of rows sorted by (obs, src): those with obs < src are in it already, ``rev``
    (the others, sorted by (src, obs)) are merged in; on equal keys the earlier row first (stable)."""
    n, m = obs.size, rev.size
    a, b, r = 0, 0, 0
    while a < n or b < m:
        while a < n and obs[a] > src[a]:
            a += 1
        if a >= n and b >= m:
            break
        if a < n and (b >= m or (obs[a], src[a]) <= (src[rev[b]], obs[rev[b]])):
            out[r] = a
            a += 1
        else:
            out[r] = rev[b]
            b += 1
        r += 1


def pair_order(obs, src, day) -> np.ndarray:
    """Stable order of directed daily rows by (day, min(obs, src), max(obs, src)): the order
    :func:`pair_table` reduces them in (``day``: one value or one per row). int32 (int64 from 2**31 rows).

    Rows of one day sorted by (obs, src), as daily sums are: the rows with obs < src are in order already;
    the others take one counting pass by source and a merge (half the work of two full passes)."""
    n = len(obs)
    obs = np.ascontiguousarray(obs, dtype=np.int64)
    src = np.ascontiguousarray(src, dtype=np.int64)
    if src.shape != (n,):
        raise ValueError(f"pair_order: obs and src need one entry per row ({n})")
    dday = _as_day(day, n)
    idx = np.int32 if n < 2**31 else np.int64
    if n and dday.size == 1 and _sorted_pairs(obs, src):
        rev = np.flatnonzero(obs > src).astype(idx)
        lo, nb = int(src.min()), int(src.max()) - int(src.min()) + 1
        if rev.size and nb <= max(_BUCKETS_PER_ROW * n, _MIN_BUCKETS):
            tmp = np.empty_like(rev)
            _count_pass(src, src, 0, lo, nb, rev, tmp)       # by source; already by observer within
            rev = tmp
        elif rev.size:
            rev = rev[np.argsort(src[rev], kind="stable")]
        out = np.empty(n, dtype=idx)
        _merge_halves(obs, src, rev, out)
        return out
    return stable_order(n, [(obs, src, 2), (obs, src, 1)] + ([(dday, None, 0)] if dday.size > 1 else []))


def _day_slices(day: np.ndarray, n: int) -> dict:
    """{day: slice} of rows sorted by day (``day``: (n,) or (1,) for all)."""
    if n == 0:
        return {}
    if day.size == 1:
        return {int(day[0]): slice(0, n)}
    cut = np.flatnonzero(day[1:] != day[:-1]) + 1
    lo, hi = np.r_[0, cut], np.r_[cut, n]
    return {int(day[a]): slice(int(a), int(b)) for a, b in zip(lo, hi)}


def pair_table(obs, src, day, notify, minutes, t_first, att, dur, ground_truth=None,
               close_minutes: float = 15.0, ordered: bool = False) -> np.ndarray:
    """The pair table (:data:`tracing.core.pairs.PAIR_DTYPE`, sorted by day, i, j) of directed daily rows.

    Parameters
    ----------
    obs, src : (n,) int
        Observer and source of each directed (observer, source, day) row (observer != source).
    day : int or (n,) int
        Day of each row (day index).
    notify : (n,) bool
        The rule's verdict per row.
    minutes, t_first, att, dur : (n,) float
        The rule's minutes (min; taken as float32: the float32 of a maximum is the maximum of the float32
        values, and the table stores float32), earliest window start (s), duration-weighted attenuation
        (dB, float32 values; NaN = unknown) and total duration (s) per row.
    ground_truth : structured array or None
        Rows with ``i < j``, ``day``, ``minutes_close`` (and optionally ``t_first``); exact
        ``ble.schema.GROUND_TRUTH_DTYPE`` rows of one pair are merged first (minutes summed).
    close_minutes : float
        Minutes within the close distance for ``true_close``.
    ordered : bool
        The rows are in :func:`pair_order` already (a caller that gathers its columns itself, freeing
        each unsorted one at once); checked (``ValueError``). Otherwise they are gathered into that
        order here (a copy of the columns), so that the merge reads them in sequence.

    See :func:`tracing.pipeline.pairs_from_daily` for the fields; callers check their arguments there.
    """
    n = len(obs)
    cols = [np.ascontiguousarray(x, dtype=t) for x, t in ((obs, np.int64), (src, np.int64), (notify, np.bool_),
                                                          (minutes, np.float32), (t_first, np.float64),
                                                          (att, np.float32), (dur, np.float64))]
    if any(x.shape != (n,) for x in cols):
        raise ValueError(f"pair_table: every directed column needs {n} rows")
    dday = _as_day(day, n)
    if not ordered:
        order = pair_order(cols[0], cols[1], dday)
        cols = [x[order] for x in cols]              # gathered once: the merge reads them in sequence
        dday = dday[order] if dday.size > 1 else dday
        del order
    gt = ground_truth if ground_truth is not None else np.zeros(0, GROUND_TRUTH_DTYPE)
    m = len(gt)
    dedupe = gt.dtype == GROUND_TRUTH_DTYPE
    g = {"i": (gt["i"], np.int64), "j": (gt["j"], np.int64), "minutes_close": (gt["minutes_close"], np.float32)}
    if not dedupe and "t_first" in gt.dtype.names:
        g["t_first"] = (gt["t_first"], np.float64)
    g = {f: np.ascontiguousarray(v, dtype=t) for f, (v, t) in g.items()}
    gday = _as_day(gt["day"], m)
    gorder = _gt_order(g["i"], g["j"], gday)
    if gorder is not None:
        g = {f: v[gorder] for f, v in g.items()}
        gday = gday[gorder] if gday.size > 1 else gday
    gt_t = g.get("t_first", np.zeros(0))
    dsl, gsl = _day_slices(dday, n), _day_slices(gday, m)
    plan, rows, big = [], 0, 1
    for d in sorted(set(dsl) | set(gsl)):           # loop over days (a few), each a kernel over its rows
        a, b = dsl.get(d, slice(0, 0)), gsl.get(d, slice(0, 0))
        r, dmax, gmax = _merge_count(cols[0][a], cols[1][a], g["i"][b], g["j"][b])
        if r < 0:
            raise ValueError("pair_table: ordered=True but the rows are not in pair_order")
        plan.append((d, a, b, rows, r))
        rows, big = rows + r, max(big, dmax, gmax)
    out = np.zeros(max(rows, 2), PAIR_DTYPE)     # fields of >= 2 rows: one compiled layout
    buf, buf2 = np.empty(big), np.empty(big)
    for d, a, b, lo, _ in plan:
        _merge_fill(cols[0][a], cols[1][a], d, *(x[a] for x in cols[2:]), g["i"][b], g["j"][b],
                    g["minutes_close"][b], gt_t[b] if gt_t.size else gt_t, dedupe, float(close_minutes),
                    buf, buf2, lo, *(out[f] for f in _OUT))
    return out[:rows]


def _gt_order(gi, gj, gday):
    """Stable order of ground-truth rows by (day, i, j); None when they are sorted already (a simulator's
    file is)."""
    m = gi.size
    gd = gday if gday.size > 1 else np.broadcast_to(gday, (m,))
    if m < 2 or bool(np.all((gd[1:] > gd[:-1]) | ((gd[1:] == gd[:-1]) & (
            (gi[1:] > gi[:-1]) | ((gi[1:] == gi[:-1]) & (gj[1:] >= gj[:-1])))))):
        return None
    return stable_order(m, [(gj, None, 0), (gi, None, 0)] + ([(gday, None, 0)] if gday.size > 1 else []))


_OUT = ("i", "j", "day", "t_first", "true_close", "notify_j", "notify_i", "minutes", "att")
