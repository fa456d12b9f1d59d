"""QR venue check-in as a notification channel: warnings from published check-ins, and the channel's
pair table for the coverage metrics.

* :func:`qr_warnings` -- a confirmed case's check-ins (``scan`` rows of app users, within the look-back
  before its confirmation) are published; every *other* app user with a ``scan`` check-in at the same
  venue whose check-in time lies within ``overlap_s`` of the case's (either side) is warned. Numba
  kernel over check-ins sorted by (venue, time), binary search per published check-in.
* :func:`qr_pairs` -- every pair of agents whose ``scan`` check-ins at one venue lie within
  ``overlap_s`` on the same day, as :data:`tracing.pairs.PAIR_DTYPE` rows warned both ways (QR warns
  symmetrically: either could be the case). Adoption enters later through the ranks (both must run
  the app), exactly as for Bluetooth.
* :func:`combine_channels` -- the pair table of ``ble``, ``qr`` or both (``notify`` = OR over the
  chosen channels; ``true_close`` from the ground truth of the Bluetooth table), so that the coverage /
  precision metrics of :mod:`tracing.core.coverage` are computed per channel.

Units: times in seconds; ``overlap_s`` and ``lookback_s`` in seconds.
"""
from __future__ import annotations

import numba
import numpy as np

from ble.schema import CHECKIN_DTYPE
from tracing.core.pairs import PAIR_DTYPE

__all__ = ["CHANNELS", "qr_warnings", "qr_warned", "qr_pairs", "combine_channels"]

CHANNELS = ("ble", "qr")


def _check_checkins(checkins) -> np.ndarray:
    c = np.asarray(checkins)
    if c.dtype != CHECKIN_DTYPE:
        raise ValueError(f"expected a CHECKIN_DTYPE array (ble.schema), got {c.dtype}")
    if len(c) and (c["agent"].min() < 0 or c["venue"].min() < 0 or not np.all(np.isfinite(c["t"]))):
        raise ValueError("check-ins: agents and venues must be >= 0 and times finite")
    return c


@numba.njit(cache=True)
def _warn_kernel(venue, t, agent, ok, case_rows, t_conf, overlap_s, lookback_s, count_only,
                 out_case, out_agent, out_venue, out_tc, out_tw):
    """For each published row r (index into the sorted arrays) with conf time t_conf[k]: rows q of the
    same venue with |t[q] - t[r]| <= overlap, ok[q], agent[q] != agent[r]. Returns the count."""
    m = 0
    nrow = venue.shape[0]
    for k in range(case_rows.shape[0]):
        r = case_rows[k]
        tr = t[r]
        if tr > t_conf[k] or tr < t_conf[k] - lookback_s:
            continue
        v = venue[r]
        # binary search: first row with (venue, t) >= (v, tr - overlap)
        lo, hi = 0, nrow
        tlo = tr - overlap_s
        while lo < hi:
            mid = (lo + hi) // 2
            if venue[mid] < v or (venue[mid] == v and t[mid] < tlo):
                lo = mid + 1
            else:
                hi = mid
        q = lo
        while q < nrow and venue[q] == v and t[q] <= tr + overlap_s:
            if ok[q] and agent[q] != agent[r]:
                if not count_only:
                    out_case[m] = agent[r]
                    out_agent[m] = agent[q]
                    out_venue[m] = v
                    out_tc[m] = tr
                    out_tw[m] = t[q]
                m += 1
            q += 1
    return m


def qr_warnings(checkins, cases, t_confirm, *, app=None, overlap_s: float = 3600.0,
                lookback_s: float = 14 * 86400.0) -> np.ndarray:
    """Warnings of the QR channel (one row per (case check-in, warned check-in)): structured array
    with ``case``, ``agent`` (warned), ``venue``, ``t_case``, ``t_warned`` (s).

    ``cases``: agents confirmed at ``t_confirm`` (s, scalar or one per case); ``app``: bool per agent
    (who runs the app; default everyone with a check-in row). A case's check-ins count if ``scan``,
    the case runs the app and ``t_confirm - lookback_s <= t <= t_confirm``; a warned row needs
    ``scan`` and an app user. A case is never warned by its own check-ins; another case may be."""
    c = _check_checkins(checkins)
    cases = np.asarray(cases, np.int64).reshape(-1)
    t_conf = np.broadcast_to(np.asarray(t_confirm, np.float64), cases.shape).copy()
    if overlap_s < 0 or lookback_s < 0:
        raise ValueError("qr_warnings: overlap_s and lookback_s must be >= 0 (s)")
    ok = c["scan"].copy()
    if app is not None:
        app = np.asarray(app, bool)
        if len(c) and c["agent"].max() >= len(app):
            raise ValueError("qr_warnings: app mask shorter than the largest agent index")
        ok &= app[c["agent"]]
    o = np.lexsort((c["t"], c["venue"]))
    venue, t, agent, ok = c["venue"][o], c["t"][o], c["agent"][o], ok[o]
    # published rows: ok rows of case agents, with that case's (earliest) confirmation time
    uc, inv = np.unique(cases, return_inverse=True)
    tmin = np.full(len(uc), np.inf)
    np.minimum.at(tmin, inv, t_conf)
    pos = np.searchsorted(uc, agent)
    hit = ok & (pos < len(uc))
    hit[hit] &= uc[pos[hit]] == agent[hit]
    rows = np.flatnonzero(hit)
    tc_rows = tmin[pos[rows]]
    args = (venue, t, agent, ok, rows.astype(np.int64), tc_rows.astype(np.float64), float(overlap_s),
            float(lookback_s))
    e_i, e_f = np.zeros(0, np.int64), np.zeros(0)
    m = _warn_kernel(*args, True, e_i, e_i, e_i, e_f, e_f)
    out = np.zeros(m, dtype=[("case", "i8"), ("agent", "i8"), ("venue", "i8"), ("t_case", "f8"),
                             ("t_warned", "f8")])
    oc, oa, ov = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64)
    otc, otw = np.empty(m), np.empty(m)
    _warn_kernel(*args, False, oc, oa, ov, otc, otw)
    out["case"], out["agent"], out["venue"], out["t_case"], out["t_warned"] = oc, oa, ov, otc, otw
    return out


def qr_warned(checkins, cases, t_confirm, n: int, **kw) -> np.ndarray:
    """bool per agent: warned by the QR channel (see :func:`qr_warnings`)."""
    w = qr_warnings(checkins, cases, t_confirm, **kw)
    out = np.zeros(int(n), bool)
    out[w["agent"]] = True
    return out


@numba.njit(cache=True)
def _pairs_kernel(venue, day, t, agent, overlap_s, count_only, oi, oj, od, ot):
    m = 0
    nrow = venue.shape[0]
    for r in range(nrow):
        q = r + 1
        while q < nrow and venue[q] == venue[r] and day[q] == day[r] and t[q] - t[r] <= overlap_s:
            a, b = agent[r], agent[q]
            if a != b:
                if not count_only:
                    oi[m] = min(a, b)
                    oj[m] = max(a, b)
                    od[m] = day[r]
                    ot[m] = t[r]
                m += 1
            q += 1
    return m


def qr_pairs(checkins, n: int, overlap_s: float = 3600.0, day_s: float = 86400.0) -> np.ndarray:
    """Pair table (:data:`tracing.pairs.PAIR_DTYPE`) of the QR channel: one row per unordered pair and
    day with ``scan`` check-ins at the same venue within ``overlap_s``; ``notify_i = notify_j =
    True``, ``true_close`` False (the ground truth comes from the Bluetooth table in
    :func:`combine_channels`), ``t_first`` = the earlier check-in time, ``minutes``/``att`` NaN."""
    c = _check_checkins(checkins)
    if len(c) and c["agent"].max() >= n:
        raise ValueError(f"qr_pairs: agents must lie in 0..{n - 1}")
    c = c[c["scan"]]
    day = np.floor(c["t"] / day_s).astype(np.int64)
    o = np.lexsort((c["t"], day, c["venue"]))
    v, d, t, a = c["venue"][o], day[o], c["t"][o], c["agent"][o]
    e_i, e_f = np.zeros(0, np.int64), np.zeros(0)
    m = _pairs_kernel(v, d, t, a, float(overlap_s), True, e_i, e_i, e_i, e_f)
    oi, oj, od, ot = np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m, np.int64), np.empty(m)
    _pairs_kernel(v, d, t, a, float(overlap_s), False, oi, oj, od, ot)
    # one row per (i, j, day): earliest time
    key = np.lexsort((ot, oi * n + oj, od))
    oi, oj, od, ot = oi[key], oj[key], od[key], ot[key]
    new = np.ones(m, bool)
    new[1:] = (oi[1:] != oi[:-1]) | (oj[1:] != oj[:-1]) | (od[1:] != od[:-1])
    out = np.zeros(int(new.sum()), PAIR_DTYPE)
    out["i"], out["j"], out["day"], out["t_first"] = oi[new], oj[new], od[new], ot[new]
    out["notify_i"] = out["notify_j"] = True
    out["minutes"] = out["att"] = np.nan
    return out


def combine_channels(ble_pairs, qr_pair_table, channels) -> np.ndarray:
    """Pair table for the chosen ``channels`` (subset of ``("ble", "qr")``): the union of the rows
    (key i, j, day); ``true_close``, ``minutes``, ``att`` from the Bluetooth table (its ground-truth
    join; a QR-only row is not a true close contact); ``notify_*`` = OR of the chosen channels;
    ``t_first`` the earliest known. Sorted by (day, i, j)."""
    ch = tuple(channels)
    bad = [c for c in ch if c not in CHANNELS]
    if not ch or bad:
        raise ValueError(f"--channels: choose from {', '.join(CHANNELS)} (got {','.join(ch) or 'none'})")
    b = np.asarray(ble_pairs)
    q = np.asarray(qr_pair_table) if qr_pair_table is not None else np.zeros(0, PAIR_DTYPE)
    if b.dtype != PAIR_DTYPE or q.dtype != PAIR_DTYPE:
        raise ValueError("combine_channels: expected PAIR_DTYPE tables")
    b = b.copy()
    q = q.copy()
    if "ble" not in ch:
        b["notify_i"] = b["notify_j"] = False
    if "qr" not in ch:
        q = q[:0]
    q["true_close"] = False
    allp = np.concatenate([b, q])
    if not len(allp):
        return allp
    o = np.lexsort((allp["j"], allp["i"], allp["day"]))
    allp = allp[o]
    new = np.ones(len(allp), bool)
    new[1:] = (allp["i"][1:] != allp["i"][:-1]) | (allp["j"][1:] != allp["j"][:-1]) | \
        (allp["day"][1:] != allp["day"][:-1])
    s = np.flatnonzero(new)
    out = allp[s].copy()
    out["true_close"] = np.logical_or.reduceat(allp["true_close"], s)
    out["notify_i"] = np.logical_or.reduceat(allp["notify_i"], s)
    out["notify_j"] = np.logical_or.reduceat(allp["notify_j"], s)
    out["t_first"] = np.fmin.reduceat(allp["t_first"], s)
    # minutes / att: QR rows carry NaN, so these are the Bluetooth row's values where there is one
    out["minutes"] = np.fmax.reduceat(allp["minutes"].astype(np.float64), s)
    out["att"] = np.fmin.reduceat(allp["att"].astype(np.float64), s)
    return out


# ----------------------------------------------------------------------------------------------------
# sweep helpers: --channels
# ----------------------------------------------------------------------------------------------------


