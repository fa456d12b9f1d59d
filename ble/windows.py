"""Aggregation of sightings (``SIGHTING_DTYPE``) into exposure windows (``WINDOW_DTYPE``).

Semantics (all times in s, RSSI/TX in dBm, attenuation in dB)
-------------------------------------------------------------
Sightings are grouped by (observer, rid) and taken in time order.

1. **Dropped rows.** Sightings with NaN RSSI carry no signal and are dropped before anything else; the
   count is exposed (``WindowAggregator.n_dropped``, ``aggregate(..., stats=d)`` sets
   ``d["n_dropped_nan_rssi"]``). Their times still count as "time has passed" for streaming.
2. **Scans.** A sighting less than ``scan_merge_s`` after the previous sighting of the same
   (observer, rid) belongs to the same scan (chained). The scan's time is the time of its first
   sighting; its RSSI is the arithmetic mean (dBm) of its packets.
3. **Windows.** A scan whose time is less than ``max_gap_s`` after the previous scan's time belongs to
   the same window; otherwise the window is closed and a new one starts.
4. **Seconds.** Each scan contributes ``dt`` seconds: the first scan of a window ``first_scan_s``, every
   later one ``min(time since the previous scan of the window, cap_s)`` (GAEN v2's
   ``secondsSinceLastScan``, capped at 300 s). ``duration_s`` is the sum, and equals ``att_secs.sum()``.
5. **Attenuation.** Per packet: ``tx − rssi`` where ``tx`` is the packet's advertised TX power, or
   ``default_tx_dbm`` if the packet has none. Per scan: the mean over its packets with a finite
   attenuation (GAEN's ``typicalAttenuationDb``). The scan's seconds go into the bucket of ``edges`` that
   holds its attenuation (bucket k: ``edges[k-1] < a <= edges[k]``, as ``ble.schema.ATT_EDGES``).
   **Unknown TX:** with the default ``default_tx_dbm = NaN`` a scan without any TX has NaN attenuation;
   its seconds still count in ``duration_s`` but go into the **last bucket** (``> edges[-1]``, i.e.
   "far"), which every attenuation-weighted rule (GAEN v1/v2, the German, Swiss and Italian configs)
   weights 0. So an attenuation rule never counts a contact whose attenuation it cannot know, while
   rules on duration, scan counts or RSSI (Bluezone) see it in full. Pass ``default_tx_dbm`` (e.g. the
   scheme's nominal TX power) to bucket such scans by ``default_tx_dbm − rssi`` instead.
6. **Window fields.** ``t_start``/``t_end``: times of the first/last scan; ``n_scans``; ``rssi_mean``:
   mean of the per-scan RSSI; ``rssi_max``: strongest packet; ``tx_power``: mean of the advertised
   (non-NaN) packet TX powers, NaN if none was advertised; ``att_typical``: mean of the finite per-scan
   attenuations (NaN if none); ``att_min``: smallest finite packet attenuation (NaN if none);
   ``att_secs``: seconds per attenuation bucket.

Output windows are sorted by (observer, rid, t_start).

Streaming
---------
:class:`WindowAggregator` takes chunks in time order (each chunk's earliest time must not be before
the previous chunk's latest time; inside a chunk any order). After a chunk whose latest time is
``T``, a window is closed and returned as soon as no later sighting can join it, i.e. when
``T − last sighting >= scan_merge_s`` and ``T − last scan >= max_gap_s``. Its state is O(1) per open
(observer, rid) window, so memory is bounded by the number of open windows, not by the log length.
Streaming gives bit-identical windows to :func:`aggregate` on the concatenated log.

The core is one numba kernel (``_windows_kernel``) over flat arrays sorted with ``np.lexsort`` by
(observer, rid, t); it merge-joins the open-window state with the new chunk.

Cadences: durations from the log itself
---------------------------------------
The seconds credited depend on how the log was recorded, so the four parameters come as named
presets (:data:`CADENCES`, ``cadence=`` of :func:`aggregate` / :class:`WindowAggregator`; an
explicitly given parameter overrides the preset's value). Every preset obeys one rule: **each scan
is credited the time since the previous scan of the same ID, up to ``cap_s``** (equivalently, every
sighting credits the time to the next one, up to the maximum gap), and the window's first scan is
credited ``first_scan_s``.

``periodic-300`` (the default; Bluezone scans 40 s every 300 s, GAEN ~4 s every ~300 s)
    ``scan_merge_s = 60`` (packets of one 40-s scan form one scan), ``cap_s = 300`` (GAEN's
    ``secondsSinceLastScan`` cap), ``first_scan_s = 300`` (a scan stands for its 5-minute cycle),
    ``max_gap_s = 600``. A 5-minute-scan log is credited 300 s per scan (the historical behaviour).
``opentrace`` (OpenTrace Android: 8-s scans every 36–43 s, ``PROTOCOLS.md``)
    ``scan_merge_s = 10``, ``cap_s = 60``, ``first_scan_s = 40``, ``max_gap_s = 600``.
``continuous`` (a scanner that logs every advertisement: Herald, pcng, MIT, ``bleak`` capture)
    ``scan_merge_s = 0.001`` (only packets logged at the same instant form one scan; a larger value
    would chain a continuous log into one endless scan), ``cap_s = 60`` (a gap longer than a minute
    is credited one minute), ``first_scan_s = 0``, ``max_gap_s = 600``. A log that sees an ID every
    few seconds for 18 minutes is an 18-minute window (``t_end − t_start``).

The simulator writes its windows itself (``sim.scanning``), so none of this changes simulator output.
"""
from __future__ import annotations

import numba
import numpy as np

from ble._util import quiet_divide
from ble.schema import ATT_EDGES, N_ATT_BUCKETS, SIGHTING_DTYPE, WINDOW_DTYPE, validate

__all__ = ["aggregate", "WindowAggregator", "CADENCES", "cadence_params"]

#: Named window-building parameters (s) per scanner cadence (module docstring, "Cadences").
CADENCES: dict[str, dict[str, float]] = {
    "periodic-300": {"scan_merge_s": 60.0, "max_gap_s": 600.0, "first_scan_s": 300.0, "cap_s": 300.0},
    "opentrace": {"scan_merge_s": 10.0, "max_gap_s": 600.0, "first_scan_s": 40.0, "cap_s": 60.0},
    "continuous": {"scan_merge_s": 0.001, "max_gap_s": 600.0, "first_scan_s": 0.0, "cap_s": 60.0},
}


def cadence_params(cadence: str = "periodic-300", **overrides) -> dict[str, float]:
    """The four window parameters (s) of a :data:`CADENCES` preset, with ``overrides`` that are not
    None replacing its values. Raises ``ValueError`` naming an unknown cadence or parameter."""
    if cadence not in CADENCES:
        raise ValueError(f"cadence must be one of {sorted(CADENCES)}, got {cadence!r}")
    out = dict(CADENCES[cadence])
    for k, v in overrides.items():
        if k not in out:
            raise ValueError(f"unknown window parameter {k!r}; expected some of {sorted(out)}")
        if v is not None:
            out[k] = float(v)
    return out

# Column layout of the float64 per-window state (one row per open window).
_TSTART, _TEND, _NSCANS, _DUR, _RSSI_SUM, _RSSI_MAX, _TX_SUM, _TX_N = 0, 1, 2, 3, 4, 5, 6, 7
_ATT_SUM, _ATT_N, _ATT_MIN, _SCAN_DT, _SCAN_LAST, _SCAN_RSSI_SUM, _SCAN_N = 8, 9, 10, 11, 12, 13, 14
_SCAN_ATT_SUM, _SCAN_ATT_N, _SECS0 = 15, 16, 17
_NF = _SECS0 + N_ATT_BUCKETS


@numba.njit(cache=True)
def _bucket(a, edges):
    """Index k with edges[k-1] < a <= edges[k]; len(edges) if a > edges[-1] or a is NaN."""
    if a != a:
        return edges.shape[0]
    k = 0
    while k < edges.shape[0] and a > edges[k]:
        k += 1
    return k


@numba.njit(cache=True)
def _close_scan(w, edges):
    """Fold the open scan of window row ``w`` into the window sums."""
    w[_NSCANS] += 1.0
    w[_RSSI_SUM] += w[_SCAN_RSSI_SUM] / w[_SCAN_N]
    dt = w[_SCAN_DT]
    w[_DUR] += dt
    if w[_SCAN_ATT_N] > 0:
        a = w[_SCAN_ATT_SUM] / w[_SCAN_ATT_N]
        w[_ATT_SUM] += a
        w[_ATT_N] += 1.0
    else:
        a = np.nan
    w[_SECS0 + _bucket(a, edges)] += dt


@numba.njit(cache=True)
def _start_window(w, t, first_scan_s):
    w[:] = 0.0
    w[_TSTART] = t
    w[_TEND] = t
    w[_RSSI_MAX] = -np.inf
    w[_ATT_MIN] = np.inf
    w[_SCAN_DT] = first_scan_s
    w[_SCAN_LAST] = t


@numba.njit(cache=True)
def _windows_kernel(s_obs, s_rid, s_f, c_obs, c_rid, c_t, c_rssi, c_txe, c_txr, edges,
                    scan_merge_s, max_gap_s, first_scan_s, cap_s, t_now, final,
                    o_obs, o_rid, o_f, n_obs, n_rid, n_f):
    """Merge-join open-window state (sorted by obs, rid) with a chunk (sorted by obs, rid, t).

    Closed windows (with their open scan folded in) go to ``o_*``; still-open windows to ``n_*``.
    Returns (number closed, number still open).
    """
    ns = s_obs.shape[0]
    nc = c_obs.shape[0]
    w = np.empty(s_f.shape[1], dtype=np.float64)
    i = 0
    j = 0
    n_out = 0
    n_new = 0
    while i < ns or j < nc:
        # which group comes next in (obs, rid) order
        if i < ns and j < nc:
            if s_obs[i] < c_obs[j] or (s_obs[i] == c_obs[j] and s_rid[i] < c_rid[j]):
                take_s, take_c = True, False
            elif s_obs[i] == c_obs[j] and s_rid[i] == c_rid[j]:
                take_s, take_c = True, True
            else:
                take_s, take_c = False, True
        elif i < ns:
            take_s, take_c = True, False
        else:
            take_s, take_c = False, True
        if take_s:
            obs = s_obs[i]
            rid = s_rid[i]
            w[:] = s_f[i]
            has = True
            i += 1
        else:
            obs = c_obs[j]
            rid = c_rid[j]
            has = False
        if take_c:
            while j < nc and c_obs[j] == obs and c_rid[j] == rid:
                t = c_t[j]
                r = c_rssi[j]
                if not has:
                    _start_window(w, t, first_scan_s)
                    has = True
                elif t - w[_SCAN_LAST] >= scan_merge_s:      # a new scan
                    _close_scan(w, edges)
                    gap = t - w[_TEND]
                    if gap < max_gap_s:
                        w[_TEND] = t
                        w[_SCAN_DT] = min(gap, cap_s)
                        w[_SCAN_LAST] = t
                        w[_SCAN_RSSI_SUM] = 0.0
                        w[_SCAN_N] = 0.0
                        w[_SCAN_ATT_SUM] = 0.0
                        w[_SCAN_ATT_N] = 0.0
                    else:                                      # the window ends
                        o_obs[n_out] = obs
                        o_rid[n_out] = rid
                        o_f[n_out] = w
                        n_out += 1
                        _start_window(w, t, first_scan_s)
                # add the packet to the open scan
                w[_SCAN_LAST] = t
                w[_SCAN_RSSI_SUM] += r
                w[_SCAN_N] += 1.0
                if r > w[_RSSI_MAX]:
                    w[_RSSI_MAX] = r
                txr = c_txr[j]
                if txr == txr:
                    w[_TX_SUM] += txr
                    w[_TX_N] += 1.0
                a = c_txe[j] - r
                if a == a:
                    w[_SCAN_ATT_SUM] += a
                    w[_SCAN_ATT_N] += 1.0
                    if a < w[_ATT_MIN]:
                        w[_ATT_MIN] = a
                j += 1
        if final or (t_now - w[_SCAN_LAST] >= scan_merge_s and t_now - w[_TEND] >= max_gap_s):
            _close_scan(w, edges)
            o_obs[n_out] = obs
            o_rid[n_out] = rid
            o_f[n_out] = w
            n_out += 1
        else:
            n_obs[n_new] = obs
            n_rid[n_new] = rid
            n_f[n_new] = w
            n_new += 1
    return n_out, n_new


def _to_windows(obs, rid, f) -> np.ndarray:
    """Kernel output rows -> WINDOW_DTYPE (vectorised)."""
    out = np.zeros(len(obs), dtype=WINDOW_DTYPE)
    out["observer"] = obs
    out["rid"] = rid
    out["t_start"] = f[:, _TSTART]
    out["t_end"] = f[:, _TEND]
    out["n_scans"] = f[:, _NSCANS].astype(np.int32)
    out["duration_s"] = f[:, _DUR]
    n = f[:, _NSCANS]
    out["rssi_mean"] = f[:, _RSSI_SUM] / n
    out["rssi_max"] = f[:, _RSSI_MAX]
    out["tx_power"] = np.where(f[:, _TX_N] > 0, quiet_divide(f[:, _TX_SUM], f[:, _TX_N]), np.nan)
    out["att_typical"] = np.where(f[:, _ATT_N] > 0, quiet_divide(f[:, _ATT_SUM], f[:, _ATT_N]), np.nan)
    out["att_min"] = np.where(np.isfinite(f[:, _ATT_MIN]), f[:, _ATT_MIN], np.nan)
    out["att_secs"] = f[:, _SECS0:_SECS0 + N_ATT_BUCKETS]
    return out


def _check_params(scan_merge_s, max_gap_s, first_scan_s, cap_s, edges, default_tx_dbm):
    for name, v in (("scan_merge_s", scan_merge_s), ("max_gap_s", max_gap_s), ("cap_s", cap_s)):
        if not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a finite number of seconds > 0, got {v!r}")
    if not (np.isfinite(first_scan_s) and first_scan_s >= 0):
        raise ValueError(f"first_scan_s must be finite and >= 0 s, got {first_scan_s!r}")
    if scan_merge_s > max_gap_s:
        raise ValueError(f"scan_merge_s ({scan_merge_s} s) must not exceed max_gap_s ({max_gap_s} s)")
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) != N_ATT_BUCKETS - 1:
        raise ValueError(f"edges must be {N_ATT_BUCKETS - 1} attenuation edges (dB) to fill the "
                         f"{N_ATT_BUCKETS} att_secs buckets of WINDOW_DTYPE, got shape {edges.shape}")
    if not (np.isfinite(edges).all() and np.all(np.diff(edges) > 0)):
        raise ValueError("edges must be finite and strictly increasing (dB)")
    if not (np.isnan(default_tx_dbm) or -100.0 <= default_tx_dbm <= 40.0):
        raise ValueError(f"default_tx_dbm must be NaN or in [-100, 40] dBm, got {default_tx_dbm!r}")
    return np.ascontiguousarray(edges)


def _prepare(chunk, default_tx_dbm):
    """Validate, drop NaN-RSSI rows, sort by (observer, rid, t); returns flat arrays and counts."""
    if not isinstance(chunk, np.ndarray) or chunk.dtype != SIGHTING_DTYPE:
        raise ValueError("sightings must be a numpy structured array of ble.schema.SIGHTING_DTYPE, "
                         f"got {getattr(chunk, 'dtype', type(chunk).__name__)}")
    if chunk.ndim != 1:
        raise ValueError(f"sightings must be 1-D, got shape {chunk.shape}")
    validate(chunk, "sightings", "sightings")
    t_all = chunk["t"]
    if len(chunk) and not np.isfinite(t_all).all():
        r = int(np.flatnonzero(~np.isfinite(t_all))[0])
        raise ValueError(f"sightings row {r}: time t is not finite")
    keep = ~np.isnan(chunk["rssi"])
    n_dropped = int(len(chunk) - keep.sum())
    c = chunk[keep] if n_dropped else chunk
    order = np.lexsort((c["t"], c["rid"], c["observer"]))
    c = c[order]
    rssi = c["rssi"].astype(np.float64)
    txr = c["tx_power"].astype(np.float64)
    txe = np.where(np.isnan(txr), float(default_tx_dbm), txr)
    return (np.ascontiguousarray(c["observer"]), np.ascontiguousarray(c["rid"]),
            np.ascontiguousarray(c["t"]), rssi, txe, txr, n_dropped)


class WindowAggregator:
    """Streaming aggregation: ``.add(chunk)`` returns the windows closed by that chunk, ``.flush()``
    the rest. Parameters and semantics as :func:`aggregate` (module docstring).

    Attributes: ``n_dropped`` (sightings dropped for NaN RSSI), ``n_sightings`` (rows received),
    ``n_open`` (open windows held), ``t_max`` (latest time seen, s).
    """

    def __init__(self, *, cadence: str = "periodic-300", scan_merge_s: float | None = None,
                 max_gap_s: float | None = None, first_scan_s: float | None = None,
                 cap_s: float | None = None, edges=ATT_EDGES, default_tx_dbm: float = np.nan):
        c = cadence_params(cadence, scan_merge_s=scan_merge_s, max_gap_s=max_gap_s,
                           first_scan_s=first_scan_s, cap_s=cap_s)
        scan_merge_s, max_gap_s, first_scan_s, cap_s = (c["scan_merge_s"], c["max_gap_s"],
                                                        c["first_scan_s"], c["cap_s"])
        self.cadence = cadence
        self.edges = _check_params(scan_merge_s, max_gap_s, first_scan_s, cap_s, edges, default_tx_dbm)
        self.scan_merge_s, self.max_gap_s = float(scan_merge_s), float(max_gap_s)
        self.first_scan_s, self.cap_s = float(first_scan_s), float(cap_s)
        self.default_tx_dbm = float(default_tx_dbm)
        self._obs = np.zeros(0, dtype=np.int64)
        self._rid = np.zeros(0, dtype=np.uint64)
        self._f = np.zeros((0, _NF), dtype=np.float64)
        self.t_max = -np.inf
        self.n_dropped = 0
        self.n_sightings = 0
        self._flushed = False

    @property
    def n_open(self) -> int:
        return len(self._obs)

    def _run(self, prepared, t_now: float, final: bool) -> np.ndarray:
        c_obs, c_rid, c_t, c_rssi, c_txe, c_txr = prepared
        # tight output sizes: at most one closed window per open window or per new scan, and at
        # most one open window per open window or per (observer, rid) group of the chunk
        new_group = np.ones(len(c_obs), dtype=bool)
        new_group[1:] = (c_obs[1:] != c_obs[:-1]) | (c_rid[1:] != c_rid[:-1])
        new_scan = new_group.copy()
        new_scan[1:] |= np.diff(c_t) >= self.scan_merge_s
        cap_out = len(self._obs) + int(new_scan.sum())
        cap_new = len(self._obs) + int(new_group.sum())
        o_obs = np.empty(cap_out, np.int64)
        o_rid = np.empty(cap_out, np.uint64)
        o_f = np.empty((cap_out, _NF), np.float64)
        n_obs = np.empty(cap_new, np.int64)
        n_rid = np.empty(cap_new, np.uint64)
        n_f = np.empty((cap_new, _NF), np.float64)
        n_out, n_new = _windows_kernel(self._obs, self._rid, self._f, c_obs, c_rid, c_t, c_rssi, c_txe,
                                       c_txr, self.edges, self.scan_merge_s, self.max_gap_s,
                                       self.first_scan_s, self.cap_s, float(t_now), bool(final),
                                       o_obs, o_rid, o_f, n_obs, n_rid, n_f)
        self._obs = n_obs[:n_new].copy()
        self._rid = n_rid[:n_new].copy()
        self._f = n_f[:n_new].copy()
        return _to_windows(o_obs[:n_out], o_rid[:n_out], o_f[:n_out])

    def add(self, chunk: np.ndarray) -> np.ndarray:
        """Add a chunk of sightings (any order inside; not earlier than the previous chunk's latest
        time); return the windows that can no longer grow, sorted by (observer, rid, t_start)."""
        if self._flushed:
            raise ValueError("WindowAggregator already flushed; create a new one")
        *prepared, n_dropped = _prepare(chunk, self.default_tx_dbm)
        if len(chunk):
            t_min, t_hi = float(chunk["t"].min()), float(chunk["t"].max())
            if t_min < self.t_max:
                raise ValueError(f"chunk goes back in time: its earliest sighting (t = {t_min} s) is "
                                 f"before the previous chunk's latest (t = {self.t_max} s); "
                                 "chunks must be in time order")
            self.t_max = t_hi
        self.n_dropped += n_dropped
        self.n_sightings += len(chunk)
        return self._run(prepared, self.t_max, False)

    def flush(self) -> np.ndarray:
        """Close and return every open window (sorted by observer, rid, t_start)."""
        empty = (np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0), np.zeros(0), np.zeros(0),
                 np.zeros(0))
        out = self._run(empty, self.t_max, True)
        self._flushed = True
        return out


def aggregate(sightings: np.ndarray, *, cadence: str = "periodic-300", scan_merge_s: float | None = None,
              max_gap_s: float | None = None, first_scan_s: float | None = None,
              cap_s: float | None = None, edges=ATT_EDGES, default_tx_dbm: float = np.nan,
              stats: dict | None = None) -> np.ndarray:
    """Aggregate sightings (``SIGHTING_DTYPE``, any order) into exposure windows (``WINDOW_DTYPE``,
    sorted by observer, rid, t_start). Semantics in the module docstring; times in s, TX in dBm.
    ``cadence``: a :data:`CADENCES` preset; the four parameters (s), where given, override it.

    ``stats``, if a dict, receives ``n_sightings`` and ``n_dropped_nan_rssi``.
    """
    agg = WindowAggregator(cadence=cadence, scan_merge_s=scan_merge_s, max_gap_s=max_gap_s,
                           first_scan_s=first_scan_s, cap_s=cap_s, edges=edges, default_tx_dbm=default_tx_dbm)
    *prepared, n_dropped = _prepare(sightings, agg.default_tx_dbm)
    out = agg._run(prepared, np.inf, True)
    if stats is not None:
        stats["n_sightings"] = len(sightings)
        stats["n_dropped_nan_rssi"] = n_dropped
    return out
