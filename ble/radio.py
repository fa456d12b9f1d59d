"""Radio model: received signal strength (RSSI, dBm) from true distance (m), and its fit to real data.

Model (log-distance path loss with log-normal shadowing)::

    rssi = ref_rssi_1m - 10 * exponent * log10(max(d, min_distance_m) / 1 m)
           + carriage_db[carriage_tx] + carriage_db[carriage_rx]
           + platform_db["<rx platform><-<tx platform>"]
           + tx_offset + rx_offset
           + sigma_db * z,            z ~ N(0, 1)

and an advertisement is received only if ``rssi >= floor_dbm`` (receiver sensitivity). A received RSSI
is capped at ``max_rssi_dbm`` (receiver saturation: the front end clips, so a phone never reports more;
the Bluetooth Core specification asks LE receivers to work up to -10 dBm of input). All offsets are
in dB. References (offset 0): ``hand`` for carriage (both phones in hand is the least obstructed body
position), ``android<-android`` for the platform pair, and the mean device of Google's calibration table
for device offsets. ``ref_rssi_1m`` is therefore the mean RSSI (dBm) at 1 m between two hand-held Android
phones of average calibration. Carriage terms are additive per phone (symmetric in tx/rx).

Platform offsets are not fitted (the real data have no Android<-iOS pair): they are the Bluezone
client's live-screen RSSI thresholds per receiver<-sender pair (PROTOCOLS.md: Android<-Android -86,
Android<-iOS -69, iOS<-Android -88, iOS<-iOS -74 dBm) taken relative to Android<-Android, i.e. the app
treats an iPhone sender as 17 dB louder at the same distance. The Herald data agree in sign (iOS<-iOS
pairs read ~20 dB above Android<-Android pairs, iOS<-Android about the same).

Range of validity: the fit uses true distances 0.2-5 m (MIT 0.9-4.6 m, Herald 0.2-3.4 m, pcng 0.2-5 m)
and gives an exponent near 1 (indoor, body-shadowed; PROTOCOLS.md reports 0.8-1.6). Beyond ~5 m the
model extrapolates that shallow slope, so callers should bound the range by their neighbour-search
radius rather than rely on ``floor_dbm`` alone (with the defaults the mean RSSI stays above the floor to
a few hundred metres).

``default_params()`` reads ``radio_default.toml`` beside this module, written by ``python -m ble.radio
--fit`` (see :func:`fit_radio` and the comment block of that file for the data and residuals). The TOML
also holds a compact summary of Google's per-model GAEN calibration table (the 313 directly measured
models as distinct (rssi correction, tx) pairs with counts), used by :func:`device_offsets` so that the
package works without ``../shared/data``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import sys
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path

import numba
import numpy as np
import tomli_w
from scipy.special import ndtr

from ble import datasets as ds
from ble.datasets import load_calibration_table, load_dublintram
from ble.schema import _RANGES, write_text_atomic

__all__ = ["CARRIAGES", "PLATFORMS", "PLATFORM_KEYS", "BLUEZONE_LIVE_THRESHOLDS_DBM", "BLUEZONE_PLATFORM_DB",
           "DEFAULT_TOML", "RadioParams", "default_params", "mean_rssi", "sample_rssi", "p_received",
           "device_offsets", "calibration_summary", "FitResult", "fit_radio", "fit_tx_dbm",
           "write_default_toml", "main"]

#: Where a phone is carried; ``carriage_*`` codes index this tuple (-1 = not carried / unknown: 0 dB).
CARRIAGES = ("hand", "trouser_pocket", "shirt_pocket", "bag", "backpack")
#: Platform codes: 0 Android, 1 iOS (-1 unknown: treated as Android).
PLATFORMS = ("android", "ios")
#: Keys of ``platform_db``: receiver<-sender.
PLATFORM_KEYS = ("android<-android", "android<-ios", "ios<-android", "ios<-ios")

#: Bluezone live-screen thresholds (dBm) per receiver<-sender pair (PROTOCOLS.md).
BLUEZONE_LIVE_THRESHOLDS_DBM = {"android<-android": -86.0, "android<-ios": -69.0,
                                "ios<-android": -88.0, "ios<-ios": -74.0}
#: Platform offsets (dB) relative to Android<-Android, from those thresholds.
BLUEZONE_PLATFORM_DB = {k: v - BLUEZONE_LIVE_THRESHOLDS_DBM["android<-android"]
                        for k, v in BLUEZONE_LIVE_THRESHOLDS_DBM.items()}

DEFAULT_TOML = Path(__file__).with_name("radio_default.toml")

_FLOAT_KEYS = ("ref_rssi_1m", "exponent", "sigma_db", "floor_dbm", "min_distance_m", "tx_dbm", "max_rssi_dbm")
#: keys a ``[radio]`` table may leave out (the dataclass default applies)
_OPTIONAL_KEYS = ("max_rssi_dbm",)
#: receiver saturation (dBm) may lie in this range; the upper end is the record schema's RSSI limit
MAX_RSSI_RANGE_DBM = (-30.0, _RANGES["rssi"][1])


@dataclass
class RadioParams:
    """Parameters of the radio model (see the module docstring for the formula).

    ref_rssi_1m: mean RSSI (dBm) at 1 m, both phones in hand, Android<-Android, average devices.
    exponent: path-loss exponent n (RSSI falls 10 n dB per decade of distance).
    sigma_db: standard deviation (dB) of the per-advertisement log-normal shadowing.
    carriage_db: carriage name (in :data:`CARRIAGES`) -> dB added per phone carried that way.
    platform_db: "rx<-tx" (in :data:`PLATFORM_KEYS`) -> dB.
    floor_dbm: receiver sensitivity (dBm); an advertisement with RSSI below it is not received.
    min_distance_m: distances below it (m) are treated as it (avoids log10(0); near-field).
    tx_dbm: reference advertised TX power (dBm) for attenuation = tx_dbm - rssi (GAEN attenuation, dB).
    max_rssi_dbm: receiver saturation (dBm): a received RSSI above it is reported as it; must lie in
        :data:`MAX_RSSI_RANGE_DBM` and above ``floor_dbm``.
    """

    ref_rssi_1m: float = -73.0
    exponent: float = 1.0
    sigma_db: float = 6.0
    carriage_db: dict = field(default_factory=lambda: {c: 0.0 for c in CARRIAGES})
    platform_db: dict = field(default_factory=lambda: dict(BLUEZONE_PLATFORM_DB))
    floor_dbm: float = -105.0
    min_distance_m: float = 0.1
    tx_dbm: float = -20.0
    max_rssi_dbm: float = -10.0

    def __post_init__(self):
        for k in _FLOAT_KEYS:
            v = getattr(self, k)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(float(v)):
                raise ValueError(f"RadioParams.{k}: expected a finite number, got {v!r}")
            setattr(self, k, float(v))
        if self.exponent <= 0:
            raise ValueError(f"RadioParams.exponent: must be > 0, got {self.exponent}")
        if self.sigma_db < 0:
            raise ValueError(f"RadioParams.sigma_db: must be >= 0, got {self.sigma_db}")
        if self.min_distance_m <= 0:
            raise ValueError(f"RadioParams.min_distance_m: must be > 0, got {self.min_distance_m}")
        lo, hi = MAX_RSSI_RANGE_DBM
        if not (lo <= self.max_rssi_dbm <= hi and self.max_rssi_dbm > self.floor_dbm):
            raise ValueError(f"RadioParams.max_rssi_dbm: must lie in [{lo:g}, {hi:g}] dBm and above "
                             f"floor_dbm ({self.floor_dbm:g}), got {self.max_rssi_dbm:g}")
        cd = {c: 0.0 for c in CARRIAGES}
        for k, v in dict(self.carriage_db).items():
            if k not in CARRIAGES:
                raise ValueError(f"RadioParams.carriage_db: unknown carriage {k!r} (known: {CARRIAGES})")
            cd[k] = float(v)
        self.carriage_db = cd
        pd = {k: 0.0 for k in PLATFORM_KEYS}
        for k, v in dict(self.platform_db).items():
            if k not in PLATFORM_KEYS:
                raise ValueError(f"RadioParams.platform_db: unknown pair {k!r} (known: {PLATFORM_KEYS})")
            pd[k] = float(v)
        self.platform_db = pd

    # -- arrays for numba code ------------------------------------------------------------------
    def carriage_vector(self) -> np.ndarray:
        """carriage_db as float64 array in :data:`CARRIAGES` order (dB)."""
        return np.array([self.carriage_db[c] for c in CARRIAGES], dtype=np.float64)

    def platform_matrix(self) -> np.ndarray:
        """platform_db as a (2, 2) float64 array indexed [rx platform, tx platform] (dB)."""
        m = np.zeros((2, 2))
        for i, rx in enumerate(PLATFORMS):
            for j, tx in enumerate(PLATFORMS):
                m[i, j] = self.platform_db[f"{rx}<-{tx}"]
        return m

    def offset_db(self, carriage_tx=None, carriage_rx=None, platform_tx=None, platform_rx=None):
        """Carriage + platform offset (dB), vectorised; codes or names; None / -1 = reference (0 dB)."""
        cv = np.append(self.carriage_vector(), 0.0)          # index -1 -> 0 dB
        out = np.asarray(0.0)
        if carriage_tx is not None:
            out = out + cv[_carriage_codes(carriage_tx)]
        if carriage_rx is not None:
            out = out + cv[_carriage_codes(carriage_rx)]
        if platform_tx is not None or platform_rx is not None:
            ptx = _platform_codes(0 if platform_tx is None else platform_tx)
            prx = _platform_codes(0 if platform_rx is None else platform_rx)
            out = out + self.platform_matrix()[np.maximum(prx, 0), np.maximum(ptx, 0)]
        return out

    # -- TOML -----------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in _FLOAT_KEYS}
        d["carriage_db"] = dict(self.carriage_db)
        d["platform_db"] = dict(self.platform_db)
        return d

    @classmethod
    def from_dict(cls, d: dict, source: str = "<dict>") -> "RadioParams":
        known = set(_FLOAT_KEYS) | {"carriage_db", "platform_db"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"{source}: unknown key(s) in [radio]: {unknown} (known: {sorted(known)})")
        missing = sorted(set(_FLOAT_KEYS) - set(_OPTIONAL_KEYS) - set(d))
        if missing:
            raise ValueError(f"{source}: missing key(s) in [radio]: {missing}")
        try:
            return cls(**{k: d[k] for k in d})
        except (ValueError, TypeError) as e:
            raise ValueError(f"{source}: {e}") from e

    @classmethod
    def from_toml(cls, path) -> "RadioParams":
        """Read the ``[radio]`` table of a TOML file (other tables are ignored)."""
        p = Path(path)
        try:
            with open(p, "rb") as f:
                doc = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ValueError(f"{p}: cannot read TOML: {e}") from e
        if "radio" not in doc:
            raise ValueError(f"{p}: no [radio] table")
        return cls.from_dict(doc["radio"], str(p))

    def to_toml(self, path, header: str = "", extra: dict | None = None) -> None:
        """Write ``[radio]`` (and ``extra`` tables) to ``path`` atomically; ``header`` becomes # comments."""
        d = self.to_dict()
        for k in _FLOAT_KEYS:
            d[k] = round(d[k], 4)
        d["carriage_db"] = {k: round(v, 4) for k, v in d["carriage_db"].items()}
        d["platform_db"] = {k: round(v, 4) for k, v in d["platform_db"].items()}
        text = tomli_w.dumps({"radio": d})
        for name, table in (extra or {}).items():
            text += f"\n[{name}]\n"
            for k, v in table.items():
                if isinstance(v, (list, tuple)):     # compact arrays, wrapped at ~100 columns
                    items = [tomli_w.dumps({"x": x})[4:].strip() for x in v]
                    rows, cur = [], ""
                    for it in items:
                        if len(cur) + len(it) > 92:
                            rows.append(cur)
                            cur = ""
                        cur += it + ", "
                    rows.append(cur)
                    text += f"{k} = [\n" + "".join(f"    {r.rstrip()}\n" for r in rows if r) + "]\n"
                else:
                    text += tomli_w.dumps({k: v})
        tomllib.loads(text)                          # refuse to write what cannot be read back
        head = "".join(f"# {ln}".rstrip() + "\n" for ln in header.splitlines()) if header else ""
        write_text_atomic(path, head + ("\n" if head else "") + text)


def _carriage_codes(c) -> np.ndarray:
    a = np.asarray(c)
    if a.dtype.kind in "USO":
        names = np.append(np.array(CARRIAGES, dtype=object), "")
        flat = a.astype(object).ravel()
        bad = ~np.isin(flat, names)
        if bad.any():
            raise ValueError(f"unknown carriage {flat[bad][0]!r} (known: {CARRIAGES})")
        lut = {n: i for i, n in enumerate(CARRIAGES)}
        lut[""] = -1
        uniq, inv = np.unique(flat.astype(str), return_inverse=True)
        return np.array([lut[u] for u in uniq], dtype=np.int64)[inv].reshape(a.shape)
    a = a.astype(np.int64)
    if a.size and (a.min() < -1 or a.max() >= len(CARRIAGES)):
        raise ValueError(f"carriage code outside -1..{len(CARRIAGES) - 1}")
    return a


def _platform_codes(p) -> np.ndarray:
    a = np.asarray(p)
    if a.dtype.kind in "USO":
        flat = a.astype(str).ravel()
        out = np.full(flat.shape, -2, dtype=np.int64)
        out[flat == "android"] = 0
        out[flat == "ios"] = 1
        out[flat == ""] = -1
        if (out == -2).any():
            raise ValueError(f"unknown platform {flat[out == -2][0]!r} (known: {PLATFORMS})")
        return out.reshape(a.shape)
    a = a.astype(np.int64)
    if a.size and (a.min() < -1 or a.max() > 1):
        raise ValueError("platform code outside -1..1 (0 Android, 1 iOS)")
    return a


# ---------------------------------------------------------------------------------------------------
# defaults

_DEFAULT_CACHE: dict = {}


def _default_doc() -> dict:
    if "doc" not in _DEFAULT_CACHE:
        with open(DEFAULT_TOML, "rb") as f:
            _DEFAULT_CACHE["doc"] = tomllib.load(f)
    return _DEFAULT_CACHE["doc"]


def default_params() -> RadioParams:
    """The fitted parameters packaged in ``ble/radio_default.toml`` (a fresh copy each call)."""
    return RadioParams.from_dict(_default_doc()["radio"], str(DEFAULT_TOML))


# ---------------------------------------------------------------------------------------------------
# the model

@numba.njit(cache=True)
def _rssi_kernel(d, offset_db, z, ref, exponent, sigma, dmin):
    """RSSI (dBm) at distance ``d`` (m) with total offset ``offset_db`` (dB) and standard-normal draw
    ``z``; callable from other numba code. No sensitivity floor here: compare with ``floor_dbm``."""
    dd = d if d > dmin else dmin
    return ref + offset_db - 10.0 * exponent * math.log10(dd) + sigma * z


@numba.njit(cache=True)
def _rssi_array_kernel(d, offset_db, z, ref, exponent, sigma, dmin, floor, ceil, out):
    for i in range(d.shape[0]):
        r = _rssi_kernel(d[i], offset_db[i], z[i], ref, exponent, sigma, dmin)
        out[i] = (r if r <= ceil else ceil) if r >= floor else np.nan


def _distance_array(d) -> np.ndarray:
    a = np.asarray(d, dtype=np.float64)
    if not np.all(np.isfinite(a)) or (a.size and a.min() < 0):
        raise ValueError("distance (m) must be finite and >= 0")
    return a


def mean_rssi(d, params: RadioParams | None = None, carriage_tx=None, carriage_rx=None, tx_offset=0.0,
              rx_offset=0.0, platform_tx=None, platform_rx=None) -> np.ndarray:
    """Mean RSSI (dBm) at true distance ``d`` (m), vectorised over all broadcastable arguments.

    ``carriage_*``: codes into :data:`CARRIAGES` or names (None / -1: 0 dB); ``platform_*``: 0/1 or
    'android'/'ios' (None: Android); ``tx_offset``/``rx_offset``: per-device offsets (dB, see
    :func:`device_offsets`). No floor is applied.
    """
    p = params if params is not None else default_params()
    dd = np.maximum(_distance_array(d), p.min_distance_m)
    off = p.offset_db(carriage_tx, carriage_rx, platform_tx, platform_rx)
    return p.ref_rssi_1m - 10.0 * p.exponent * np.log10(dd) + off + np.asarray(tx_offset, float) \
        + np.asarray(rx_offset, float)


def sample_rssi(rng: np.random.Generator, d, params: RadioParams | None = None, carriage_tx=None,
                carriage_rx=None, tx_offset=0.0, rx_offset=0.0, platform_tx=None, platform_rx=None,
                floor: bool = True) -> np.ndarray:
    """One RSSI draw (dBm) per element of ``d`` (m); NaN where below ``floor_dbm`` (not received) when
    ``floor`` is true; capped at ``max_rssi_dbm`` (receiver saturation) always. Uses
    ``rng.standard_normal`` once per element, in order."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError("sample_rssi: rng must be a numpy.random.Generator")
    p = params if params is not None else default_params()
    dist = _distance_array(d)
    off = p.offset_db(carriage_tx, carriage_rx, platform_tx, platform_rx) + np.asarray(tx_offset, float) \
        + np.asarray(rx_offset, float)
    dist, off = np.broadcast_arrays(dist, off)
    shape = dist.shape
    dflat = np.ascontiguousarray(dist, dtype=np.float64).ravel()
    oflat = np.ascontiguousarray(off, dtype=np.float64).ravel()
    z = rng.standard_normal(dflat.size)
    out = np.empty(dflat.size)
    _rssi_array_kernel(dflat, oflat, z, p.ref_rssi_1m, p.exponent, p.sigma_db, p.min_distance_m,
                       p.floor_dbm if floor else -np.inf, p.max_rssi_dbm, out)
    return out.reshape(shape)


def p_received(d, params: RadioParams | None = None, offset_db=0.0) -> np.ndarray:
    """Probability that one advertisement at distance ``d`` (m) is received: P(rssi >= floor_dbm)."""
    p = params if params is not None else default_params()
    m = mean_rssi(d, p) + np.asarray(offset_db, float)
    if p.sigma_db == 0:
        return (m >= p.floor_dbm).astype(float)
    return ndtr((m - p.floor_dbm) / p.sigma_db)


# ---------------------------------------------------------------------------------------------------
# per-device offsets from Google's calibration table

def _table_arrays(table=None, measured_only: bool = True):
    """(rssi_correction, tx, weight, row) arrays: from a CalibrationTable or the packaged summary."""
    if table is None:
        s = _default_doc().get("device_offsets")
        if s is None:
            raise ValueError(f"{DEFAULT_TOML}: no [device_offsets] table")
        corr = np.asarray(s["rssi_correction"], float)
        tx = np.asarray(s["tx"], float)
        w = np.asarray(s["count"], float)
        if not (len(corr) == len(tx) == len(w)) or len(w) == 0:
            raise ValueError(f"{DEFAULT_TOML}: [device_offsets] arrays differ in length or are empty")
        return corr, tx, w, np.arange(len(w))
    sel = np.flatnonzero(table.measured) if measured_only else np.arange(len(table))
    if sel.size == 0:
        raise ValueError("device_offsets: the calibration table has no usable rows")
    return (table.rssi_correction[sel].astype(float), table.tx[sel].astype(float), np.ones(sel.size), sel)


def device_offsets(rng: np.random.Generator, n: int, table=None, measured_only: bool = True,
                   return_rows: bool = False):
    """Draw per-device (tx_offset, rx_offset) in dB for ``n`` devices from Google's calibration table.

    A device draws one model (row) of the table: with ``table=None`` from the packaged summary of the
    313 directly measured models in ``radio_default.toml`` (``[device_offsets]``), else from a
    :class:`ble.datasets.CalibrationTable` (measured rows only unless ``measured_only=False``), each model
    equally likely. ``tx_offset = tx - mean(tx)`` (the model's TX power on the iPhone scale) and
    ``rx_offset = -(rssi_correction - mean(rssi_correction))`` (a model whose RSSI must be corrected by
    +c dB reads c dB low); both are centred so the mean offset is 0 and ``ref_rssi_1m`` stays the mean.
    The table covers Android models; systematic iOS/Android differences are in ``platform_db``.
    With ``return_rows`` also returns the drawn row indices (into the summary or the table).
    """
    if not isinstance(rng, np.random.Generator):
        raise ValueError("device_offsets: rng must be a numpy.random.Generator")
    n = int(n)
    if n < 0:
        raise ValueError("device_offsets: n must be >= 0")
    corr, tx, w, rows = _table_arrays(table, measured_only)
    pw = w / w.sum()
    k = rng.choice(len(w), size=n, p=pw)
    tx_off = tx[k] - np.dot(pw, tx)
    rx_off = -(corr[k] - np.dot(pw, corr))
    if return_rows:
        return tx_off, rx_off, rows[k]
    return tx_off, rx_off


def calibration_summary(table) -> dict:
    """Compact summary of a CalibrationTable's measured rows: distinct (rssi_correction, tx) with counts."""
    sel = np.flatnonzero(table.measured)
    pairs = np.stack([table.rssi_correction[sel], table.tx[sel]], axis=1).astype(np.int64)
    uniq, cnt = np.unique(pairs, axis=0, return_counts=True)
    return {"rssi_correction": uniq[:, 0].tolist(), "tx": uniq[:, 1].tolist(), "count": cnt.tolist()}


# ---------------------------------------------------------------------------------------------------
# the fit

@dataclass
class FitResult:
    """Outcome of :func:`fit_radio`.

    params: fitted :class:`RadioParams`. residuals: data set -> {"rmse_db", "bias_db", "n", "sd_db"} of
    per-advertisement residuals (dB; bias = mean residual, ~0 by construction with per-data-set offsets).
    dataset_offset_db: data set -> fitted offset (dB; sum-to-zero over data sets). device_offset_db:
    device label -> {"tx": dB, "rx": dB} (ridge-shrunk towards 0). se: standard errors (dB, or unitless
    for the exponent) of the fixed effects assuming independent residuals (advertisements are
    autocorrelated, so these are optimistic for real data). settings: the fit's options. n_used / n_excluded:
    rows used and rows left out (below ``fit_min_distance_m``).
    """

    params: RadioParams
    residuals: dict
    dataset_offset_db: dict
    device_offset_db: dict
    se: dict
    settings: dict
    n_used: int
    n_excluded: int

    def table(self) -> str:
        """Human-readable summary (parameters and residuals per data set)."""
        p = self.params
        lines = [f"ref_rssi_1m  = {p.ref_rssi_1m:8.2f} dBm  (se {self.se.get('ref_rssi_1m', float('nan')):.2f})",
                 f"exponent     = {p.exponent:8.3f}      (se {self.se.get('exponent', float('nan')):.3f})",
                 f"sigma_db     = {p.sigma_db:8.2f} dB",
                 f"floor_dbm    = {p.floor_dbm:8.1f} dBm",
                 f"tx_dbm       = {p.tx_dbm:8.2f} dBm",
                 "carriage_db  : " + ", ".join(f"{k} {v:+.2f}" for k, v in p.carriage_db.items()),
                 "platform_db  : " + ", ".join(f"{k} {v:+.1f}" for k, v in p.platform_db.items())
                 + " (fixed, Bluezone thresholds)",
                 "dataset offset (dB): " + ", ".join(f"{k} {v:+.2f}" for k, v in self.dataset_offset_db.items()),
                 "device offsets (dB, tx/rx): " + ", ".join(
                     f"{k} {v['tx']:+.1f}/{v['rx']:+.1f}" for k, v in self.device_offset_db.items()),
                 f"{'data set':10s} {'n':>8s} {'rmse dB':>8s} {'bias dB':>8s} {'sd dB':>7s}"]
        for k, r in self.residuals.items():
            lines.append(f"{k:10s} {r['n']:8d} {r['rmse_db']:8.2f} {r['bias_db']:+8.2f} {r['sd_db']:7.2f}")
        lines.append(f"rows used {self.n_used}, excluded {self.n_excluded} "
                     f"(distance < {self.settings['fit_min_distance_m']} m)")
        return "\n".join(lines)


def fit_radio(data_dir=None, *, data=None, fit_min_distance_m: float = 0.2, device_prior_sd_db: float = 5.0,
              dataset_offsets: bool = True, device_datasets=("mit", "herald", "pcng"),
              platform_db: dict | None = None, min_distance_m: float = 0.1,
              floor_quantile: float = 0.001, tram_dir=None, base: RadioParams | None = None) -> FitResult:
    """Weighted least-squares fit of the radio model to labelled RSSI-vs-distance data.

    Data: ``data`` (a :class:`ble.datasets.RssiData`) or ``data_dir`` (the shared data folder: MIT,
    Herald and pcng pooled through :func:`ble.datasets.load_all`; distances converted from ft / cm to m
    by the loaders). Rows closer than ``fit_min_distance_m`` (m; Herald's near field, phones touching)
    are left out.

    Fitted jointly, by linear least squares on ``rssi - platform offset`` (platform offsets fixed, see
    the module docstring):

    - ``ref_rssi_1m`` and ``exponent`` (regressor ``-10 log10(d / 1 m)``);
    - a carriage offset per phone for every carriage except ``hand`` (reference 0 dB) that occurs;
      carriage -1 (not carried) counts as 0 dB;
    - one offset per data set (``dataset_offsets``), constrained to sum to zero, because the data sets
      use different phones, TX powers and rooms; ``ref_rssi_1m`` is then the average over data sets;
    - per-device TX and RX offsets for the devices of ``device_datasets`` (Herald's and pcng's phone
      pairs, MIT's iPhone models), with a Gaussian prior of sd ``device_prior_sd_db`` (ridge with the
      residual sd taken as 6 dB): the data identify only some combinations (pair sums; MIT's models are
      partly confounded with its carriage pairings and rooms), and the prior settles the rest towards 0.

    Each data set gets the same total weight (weights 1 / n per data set), so Herald's 300k rows do not
    swamp MIT's. ``sigma_db`` is the weighted residual RMS; ``floor_dbm`` the ``floor_quantile`` of all
    RSSI rounded down to 1 dB (no data set shows readings below a phone's sensitivity, so this is a lower
    bound of what phones report). ``tx_dbm`` (reference TX for attenuation) is fitted to the Dublin
    tram GAEN attenuations when ``tram_dir`` is given (see :func:`fit_tx_dbm`), else kept from ``base``.
    The computation is deterministic (sufficient statistics per covariate group, then a dense solve).
    """
    if data is None:
        if data_dir is None:
            raise ValueError("fit_radio: pass data_dir (the shared data folder) or data=")
        data = ds.load_all(data_dir)
    if len(data) == 0:
        raise ValueError("fit_radio: no data")
    base = base if base is not None else RadioParams()
    pdb = dict(BLUEZONE_PLATFORM_DB if platform_db is None else platform_db)
    pparams = RadioParams(platform_db=pdb)

    use = data.distance_m >= fit_min_distance_m
    n_excl = int((~use).sum())
    dat = data.subset(use)
    if len(dat) == 0:
        raise ValueError(f"fit_radio: no rows at distance >= {fit_min_distance_m} m")

    # group rows by covariate pattern -> sufficient statistics
    dkey = np.round(dat.distance_m * 1e4).astype(np.int64)
    cols = np.stack([dat.dataset.astype(np.int64), dat.file.astype(np.int64), dat.device_tx.astype(np.int64),
                     dat.device_rx.astype(np.int64), dat.carriage_tx.astype(np.int64),
                     dat.carriage_rx.astype(np.int64), dat.platform_tx.astype(np.int64),
                     dat.platform_rx.astype(np.int64), dkey], axis=1)
    order = np.lexsort(cols.T[::-1])
    cs = cols[order]
    start = np.flatnonzero(np.r_[True, (cs[1:] != cs[:-1]).any(axis=1)])
    grp = np.empty(len(dat), dtype=np.int64)
    grp[order] = np.cumsum(np.r_[True, (cs[1:] != cs[:-1]).any(axis=1)]) - 1
    g = cs[start]                                             # one row per group
    ng = len(g)
    ppl = pparams.platform_matrix()[np.maximum(dat.platform_rx, 0), np.maximum(dat.platform_tx, 0)]
    y = dat.rssi - ppl
    n_g = np.bincount(grp, minlength=ng).astype(float)
    sy_g = np.bincount(grp, weights=y, minlength=ng)
    syy_g = np.bincount(grp, weights=y * y, minlength=ng)
    dist_g = g[:, 8] / 1e4
    ds_g = g[:, 0]

    K = len(data.datasets)
    n_k = np.bincount(dat.dataset, minlength=K).astype(float)
    present = np.flatnonzero(n_k > 0)
    w_row = np.zeros(K)
    w_row[present] = len(dat) / (len(present) * n_k[present])  # equal total weight per data set
    w_g = w_row[ds_g]

    # design
    names, X = ["ref_rssi_1m", "exponent"], [np.ones(ng), -10.0 * np.log10(np.maximum(dist_g, min_distance_m))]
    car_fit = [c for c in range(1, len(CARRIAGES)) if ((g[:, 4] == c) | (g[:, 5] == c)).any()]
    for c in car_fit:
        names.append(f"carriage:{CARRIAGES[c]}")
        X.append((g[:, 4] == c).astype(float) + (g[:, 5] == c).astype(float))
    if dataset_offsets and len(present) > 1:
        last = present[-1]
        for k in present[:-1]:
            names.append(f"dataset:{data.datasets[k]}")
            X.append((ds_g == k).astype(float) - (ds_g == last).astype(float))
    n_fixed = len(names)
    dev_ds = [k for k, nm in enumerate(data.datasets) if nm in set(device_datasets)]
    dev_rows = np.isin(ds_g, dev_ds)
    dev_ids = np.unique(np.r_[g[dev_rows, 2], g[dev_rows, 3]])
    dev_ids = dev_ids[dev_ids >= 0]
    for dv in dev_ids:
        for side, col in (("tx", 2), ("rx", 3)):
            names.append(f"device_{side}:{data.devices[dv]}")
            X.append(((g[:, col] == dv) & dev_rows).astype(float))
    X = np.stack(X, axis=1)
    nw = n_g * w_g
    A = X.T @ (X * nw[:, None])
    b = X.T @ (w_g * sy_g)
    # ridge on device offsets: prior sd tau -> penalty (sum of weights per unit variance) sigma^2/tau^2;
    # sigma from a first unpenalised-ish pass is not needed: use 6 dB (typical) -- the penalty is tiny
    # against thousands of rows and only fixes the directions the data leave free.
    pen = np.zeros(len(names))
    pen[n_fixed:] = (6.0 / device_prior_sd_db) ** 2
    M = A + np.diag(pen)
    dg = np.sqrt(np.maximum(np.diag(M), 1e-300))
    ev, evec = np.linalg.eigh(M / dg[:, None] / dg[None, :])
    if ev[0] < 1e-10 * ev[-1]:
        v = evec[:, 0]
        involved = [names[i] for i in np.flatnonzero(np.abs(v) > 0.1)]
        raise ValueError(f"fit_radio: parameters not identifiable from these data (they move together): "
                         f"{involved}; add data (more distances, carriages or data sets) or drop offsets")
    beta = np.linalg.solve(M, b)
    mu_g = X @ beta
    sse_g = syy_g - 2 * mu_g * sy_g + n_g * mu_g ** 2
    sr_g = sy_g - n_g * mu_g
    sigma = float(np.sqrt(np.sum(w_g * sse_g) / np.sum(nw)))
    # sandwich standard errors assuming iid residuals with variance sigma^2
    Ainv = np.linalg.inv(M)
    meat = X.T @ (X * (n_g * w_g ** 2 * sigma ** 2)[:, None])
    cov = Ainv @ meat @ Ainv
    se_all = np.sqrt(np.diag(cov))
    coef = dict(zip(names, beta))
    se = {nm: float(s) for nm, s in zip(names, se_all) if not nm.startswith("device_")}

    residuals = {}
    for k in present:
        m = ds_g == k
        nn = int(n_g[m].sum())
        bias = float(sr_g[m].sum() / nn)
        rmse = float(np.sqrt(max(sse_g[m].sum(), 0.0) / nn))
        residuals[data.datasets[k]] = {"n": nn, "rmse_db": rmse, "bias_db": bias,
                                       "sd_db": float(np.sqrt(max(rmse ** 2 - bias ** 2, 0.0)))}
    dso = {}
    if dataset_offsets and len(present) > 1:
        for k in present[:-1]:
            dso[data.datasets[k]] = float(coef[f"dataset:{data.datasets[k]}"])
        dso[data.datasets[present[-1]]] = -float(sum(dso.values()))
    dev = {data.devices[dv]: {"tx": float(coef[f"device_tx:{data.devices[dv]}"]),
                              "rx": float(coef[f"device_rx:{data.devices[dv]}"])} for dv in dev_ids}
    carriage = {c: 0.0 for c in CARRIAGES}
    for c in car_fit:
        carriage[CARRIAGES[c]] = float(coef[f"carriage:{CARRIAGES[c]}"])
    floor = float(np.floor(np.quantile(dat.rssi, floor_quantile)))
    params = RadioParams(ref_rssi_1m=float(coef["ref_rssi_1m"]), exponent=float(coef["exponent"]),
                         sigma_db=sigma, carriage_db=carriage, platform_db=pdb, floor_dbm=floor,
                         min_distance_m=min_distance_m, tx_dbm=base.tx_dbm)
    if tram_dir is not None:
        params = replace(params, tx_dbm=fit_tx_dbm(tram_dir, params))
    settings = {"fit_min_distance_m": fit_min_distance_m, "device_prior_sd_db": device_prior_sd_db,
                "dataset_offsets": dataset_offsets, "device_datasets": list(device_datasets),
                "weights": "equal total weight per data set", "floor_quantile": floor_quantile,
                "platform_db": ("fixed (Bluezone live thresholds relative to android<-android)"
                                if platform_db is None else "fixed (given)"),
                "datasets": [data.datasets[k] for k in present]}
    return FitResult(params=params, residuals=residuals, dataset_offset_db=dso, device_offset_db=dev, se=se,
                     settings=settings, n_used=len(dat), n_excluded=n_excl)


def fit_tx_dbm(tram_dir, params: RadioParams) -> float:
    """Reference TX power (dBm) making GAEN attenuation (= tx - rssi) consistent with the model.

    From the Dublin tram data (``dublintram-gaen``): every minute spent in an attenuation bin (bin centre
    a, dB) at true distance d (m) gives one estimate ``a + mean_rssi(d)``; the result is their
    minute-weighted mean. The tram handsets' carriage is not recorded; each phone is assumed to carry
    the mean of ``carriage_db`` over :data:`CARRIAGES`, and the platform pair Android<-Android.
    """
    t = load_dublintram(tram_dir)
    centre = 0.5 * (t.att_edges[:-1] + t.att_edges[1:])
    mean_car = float(np.mean(params.carriage_vector()))
    m = mean_rssi(t.distance_m, params) + 2.0 * mean_car        # (72,)
    w = t.minutes
    if w.sum() <= 0:
        raise ValueError(f"{tram_dir}: no attenuation minutes")
    return float(np.sum(w * (centre[None, :] + m[:, None])) / w.sum())


# ---------------------------------------------------------------------------------------------------
# command line: python -m ble.radio --fit

def _default_data_dir() -> Path | None:
    root = Path(__file__).resolve().parents[1]
    for c in (os.environ.get("PROXITRACE_DATA"), root.parent / "shared" / "data", root / "shared" / "data"):
        if c and Path(c).is_dir():
            return Path(c)
    return None


def write_default_toml(result: FitResult, calib_table, path=DEFAULT_TOML) -> None:
    """Write ``radio_default.toml``: fitted ``[radio]``, the calibration summary, a comment block."""
    s = result.settings
    hdr = [f"Radio model defaults, fitted by `python -m ble.radio --fit` on {_dt.date.today().isoformat()}.",
           "Data: MIT Matrix iPhone logs (mit-matrix-data, 20 files, ft -> m), Herald Edison rig",
           "(herald-edison-rssi, 10 files, cm -> m), pcng body positions (pcng-rss-smartphone, 6 files);",
           "tx_dbm from the Dublin tram GAEN attenuations; [device_offsets] summarises Google's",
           "'EN Calibration June 13th.csv' (directly measured models only).",
           f"Fit: weighted least squares, equal total weight per data set, rows with d >= "
           f"{s['fit_min_distance_m']} m;",
           "per-data-set offsets (sum to zero; dB): " + ", ".join(
               f"{k} {v:+.2f}" for k, v in result.dataset_offset_db.items()) + ";",
           f"per-device TX/RX offsets for the MIT, Herald and pcng phones (ridge, prior sd {s['device_prior_sd_db']} dB);",
           "platform_db fixed from Bluezone's live thresholds (relative to android<-android).",
           f"Standard errors (iid, optimistic): ref_rssi_1m {result.se['ref_rssi_1m']:.2f} dB, "
           f"exponent {result.se['exponent']:.3f}.",
           "Residuals per data set (dB): " + "; ".join(
               f"{k}: n={r['n']}, rmse={r['rmse_db']:.2f}, bias={r['bias_db']:+.2f}"
               for k, r in result.residuals.items()) + ".",
           f"Rows used {result.n_used}, excluded {result.n_excluded} (closer than "
           f"{s['fit_min_distance_m']} m)."]
    summ = calibration_summary(calib_table)
    extra = {"device_offsets": {"source": "EN Calibration June 13th.csv (dublintram-gaen), rows with "
                                          "'has direct measurement' = yes",
                                "n_models": int(sum(summ["count"])), **summ}}
    result.params.to_toml(path, header="\n".join(hdr), extra=extra)
    _DEFAULT_CACHE.clear()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ble.radio", description=__doc__.splitlines()[0])
    ap.add_argument("--fit", action="store_true", help="fit the radio model to the shared data sets")
    ap.add_argument("--data", type=Path, default=None, help="shared data folder (default ../shared/data)")
    ap.add_argument("--out", type=Path, default=DEFAULT_TOML, help="TOML to write (default: packaged)")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    a = ap.parse_args(argv)
    if not a.fit:
        ap.print_help()
        return 2
    data_dir = a.data or _default_data_dir()
    if data_dir is None:
        print("error: shared data folder not found (pass --data or set PROXITRACE_DATA)", file=sys.stderr)
        return 2
    res = fit_radio(data_dir, tram_dir=data_dir / "dublintram-gaen")
    print(res.table())
    if not a.no_write:
        cal = load_calibration_table(data_dir / "dublintram-gaen" / "EN Calibration June 13th.csv")
        write_default_toml(res, cal, a.out)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
