"""Close-contact rules over exposure windows: data (TOML in ``tracing/rules/``), not code branches.

A rule is a named configuration of one of four generic evaluators (``kind``):

``any_match``
    Bluezone's client: any matched rolling ID of the index case in one's log is a contact; no RSSI or
    duration filter (``PROTOCOLS.md``, Bluezone "matching"). Options: ``min_rssi_dbm`` (keep a
    (observer, source, day) only if its strongest RSSI reaches it, e.g. the client's −88 dBm history
    threshold), ``min_scans``, ``min_minutes``.
``weighted_attenuation``
    GAEN attenuation-bucket weighting (SwissCovid): minutes per attenuation class (classes split at
    ``thresholds_db``; class 0 is attenuation <= the first threshold) times ``weights``, optionally each
    class capped at ``bucket_cap_minutes``; contact if the weighted minutes of one day reach
    ``min_weighted_minutes``.
``v1_risk_score``
    The GAEN v1 risk score (Apple/Google ExposureConfiguration, 2020): attenuation score × days score ×
    duration score × transmission score, each looked up in an 8-entry bucket table; exposures scoring
    below ``minimum_risk_score`` are dropped. Without an ``[params.attenuation_duration]`` table the
    score itself is compared with ``notify_min_score`` (Immuni). With it, the Corona-Warn-App formula
    applies: ``round((risk / normalization_divisor) × (Σ weight_c × min(minutes_c, cap) + offset), 2)``
    compared with ``notify_min_score``. Inputs per (observer, source, day), i.e. as if that one key-day
    were the whole exposure summary: the attenuation looked up is the duration-weighted mean typical
    attenuation of the day (``att_mean``; GAEN v1 reports a time-weighted attenuation, NaN scores 0),
    the duration D is the day's total minutes (not rounded to GAEN's 5-minute steps); days since
    exposure and the index case's transmission risk level are rule parameters.
``distance_duration``
    Estimated distance <= ``max_distance_m`` for >= ``min_minutes`` in one day, with distance
    estimated by :func:`ble.distance.estimate_distance` (maximum-likelihood estimate) from attenuation.
``gaen_v2``
    GAEN v2 as the Corona-Warn-App runs it (per-window transmission risk, weighted minutes by min or
    typical attenuation, per-day sums mapped to risk levels): :mod:`tracing.core.gaen_v2`; rule ``cwa-v2``.

Rules are evaluated by :func:`classify` / :func:`evaluate`, vectorised over per-(observer, source, day)
sums of exposure windows (:func:`daily_sums`, :data:`DAILY_DTYPE`): seconds per attenuation bucket
(``att_secs`` over :data:`ble.schema.ATT_EDGES`), total seconds, number of scans, RSSI mean/max,
attenuation mean/min. Every attenuation threshold of a rule must be one of ``ATT_EDGES`` so that the
weighted durations are exact (checked when a rule is loaded).

Bucket convention: bucket k of ``att_secs`` holds attenuations a with ``ATT_EDGES[k-1] < a <=
ATT_EDGES[k]``; "below threshold T" therefore means a <= T (GAEN documents "<" for the lower
attenuation class; the two agree except at exactly T dB, which has probability zero for the
simulator's continuous attenuations).

Units: times and durations in seconds unless a name says minutes; attenuation in dB; RSSI in dBm;
distance in metres.
"""
from __future__ import annotations

import copy
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

import numpy as np

from ble.distance import estimate_distance
from ble.schema import ATT_EDGES, N_ATT_BUCKETS, WINDOW_DTYPE
from tracing.core import gaen_v2
from tracing.core.checks import quiet_nan
from tracing.core.pairjoin import WINDOW_FIELDS, window_sums

__all__ = ["Rule", "RuleResult", "RULES", "KINDS", "DAILY_DTYPE", "GAEN_V1_ATT_EDGES",
           "GAEN_V1_DURATION_EDGES_MIN", "load_rule", "classify", "evaluate", "daily_sums",
           "attenuation_class_minutes"]

DAY_S = 86400.0  #: s

#: Per (observer, source, day) sums of matched exposure windows (the input of every rule).
DAILY_DTYPE = np.dtype([
    ("observer", "i8"),       # device that logged the IDs (the one who would be warned)
    ("source", "i8"),         # device whose rolling IDs were logged (the index case candidate)
    ("day", "i4"),            # day index floor(t / 86400)
    ("t_first", "f8"),        # s, earliest window start
    ("t_last", "f8"),         # s, latest window end
    ("n_windows", "i4"),      # windows summed
    ("n_scans", "i8"),        # scans in which a source ID was seen
    ("duration_s", "f8"),     # s, sum of window durations (= att_secs.sum())
    ("att_secs", "f8", (N_ATT_BUCKETS,)),  # s per attenuation bucket (ble.schema.ATT_EDGES)
    ("rssi_mean", "f4"),      # dBm, scan-weighted mean of window RSSI means (NaN if none known)
    ("rssi_max", "f4"),       # dBm, strongest RSSI (NaN if none known)
    ("att_mean", "f4"),       # dB, duration-weighted mean of window typical attenuation (NaN if unknown)
    ("att_min", "f4"),        # dB, smallest attenuation (NaN if unknown)
])

#: GAEN v1 attenuation bucket edges (dB). GAEN's score table index 0 is attenuation > 73 dB, index 7
#: is <= 10 dB (``PROTOCOLS.md``: buckets >73, 73–63, 63–51, 51–33, 33–27, 27–15, 15–10, <=10).
GAEN_V1_ATT_EDGES = np.array([10.0, 15.0, 27.0, 33.0, 51.0, 63.0, 73.0])
#: GAEN v1 duration bucket edges (min): index 0 is D = 0, 1 is 0 < D <= 5, ..., 7 is D > 30.
GAEN_V1_DURATION_EDGES_MIN = np.array([0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0])

KINDS = ("any_match", "weighted_attenuation", "v1_risk_score", "distance_duration", "ideal", "gaen_v2")

_RULES_DIR = "rules"


def _rules_root():
    return resources.files("tracing").joinpath(_RULES_DIR)


def _rule_names() -> tuple[str, ...]:
    root = _rules_root()
    return tuple(sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml")))


#: Names of the packaged rules (``tracing/rules/<name>.toml``): bluezone, distance, gaen-ch, gaen-de,
#: gaen-it. A name may carry an option, ``"bluezone:rssi-88"``; see :func:`load_rule`.
RULES: tuple[str, ...] = _rule_names()


# ----------------------------------------------------------------------------------------------------
# Rule objects and loading
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rule:
    """A close-contact rule: a generic evaluator (``kind``) and its parameters.

    ``params`` is read-only; ``source`` records where the numbers come from (config file, values);
    ``options`` are the named variants the TOML offers (``load_rule("name:option")``).
    """
    name: str
    kind: str
    params: Mapping[str, Any]
    description: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    path: str | None = None

    def with_params(self, **overrides) -> "Rule":
        """A copy with some parameters replaced (validated again)."""
        params = {k: (dict(v) if isinstance(v, Mapping) else copy.deepcopy(v))
                  for k, v in self.params.items()}
        params.update(overrides)
        return _make_rule(self.name, self.kind, params, self.description, self.source, self.options,
                          self.path)

    def __repr__(self) -> str:
        return f"Rule({self.name!r}, kind={self.kind!r}, params={dict(self.params)!r})"


class RuleResult(tuple):
    """``(notify, minutes, score)``: bool array, the (weighted) exposure minutes the rule computed
    (float64, min), and the quantity compared with the rule's threshold (float64; minutes or score)."""
    __slots__ = ()

    def __new__(cls, notify, minutes, score):
        return super().__new__(cls, (notify, minutes, score))

    notify = property(lambda self: self[0])
    minutes = property(lambda self: self[1])
    score = property(lambda self: self[2])


_SPEC = {
    # kind: {param: (type, required, default)}
    "any_match": {
        "min_rssi_dbm": ((int, float, type(None)), False, None),
        "min_scans": (int, False, 1),
        "min_minutes": ((int, float), False, 0.0),
    },
    "weighted_attenuation": {
        "thresholds_db": (list, True, None),
        "weights": (list, True, None),
        "min_weighted_minutes": ((int, float), True, None),
        "bucket_cap_minutes": ((int, float, type(None)), False, None),
    },
    "v1_risk_score": {
        "attenuation_scores": (list, True, None),
        "duration_scores": (list, True, None),
        "days_scores": (list, True, None),
        "transmission_scores": (list, True, None),
        "transmission_level": (int, True, None),
        "days_since_exposure": (int, False, 0),
        "minimum_risk_score": ((int, float), False, 0),
        "notify_min_score": ((int, float), True, None),
        "attenuation_duration": ((dict, type(None)), False, None),
    },
    "distance_duration": {
        "max_distance_m": ((int, float), True, None),
        "min_minutes": ((int, float), True, None),
    },
    "ideal": {},   # the reference: notifies the true close contacts (pipelines, after the ground truth)
}
_SPEC["gaen_v2"] = gaen_v2.SPEC   # GAEN v2 as the Corona-Warn-App runs it (tracing.core.gaen_v2)
_AD_SPEC = {
    "thresholds_db": (list, True, None),
    "weights": (list, True, None),
    "normalization_divisor": ((int, float), True, None),
    "default_bucket_offset": ((int, float), False, 0.0),
    "bucket_cap_minutes": ((int, float, type(None)), False, None),
}


def _check_params(spec: dict, params: dict, where: str) -> dict:
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise ValueError(f"{where}: unknown parameter(s) {unknown}; expected some of {sorted(spec)}")
    out = {}
    for key, (typ, required, default) in spec.items():
        if key not in params:
            if required:
                raise ValueError(f"{where}: missing parameter {key!r}")
            out[key] = default
            continue
        val = params[key]
        if isinstance(val, bool) or not isinstance(val, typ):
            raise ValueError(f"{where}: parameter {key!r} has type {type(val).__name__}, expected "
                             f"{typ if isinstance(typ, type) else tuple(t.__name__ for t in typ)}")
        out[key] = val
    return out


def _check_edges(thresholds, where: str, key: str) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"{where}: {key} must be a non-empty list of dB values")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"{where}: {key} must be strictly increasing, got {t.tolist()}")
    off = [float(x) for x in t if not np.any(np.isclose(ATT_EDGES, x, rtol=0, atol=1e-9))]
    if off:
        raise ValueError(f"{where}: {key} {off} are not attenuation bucket edges of the exposure windows "
                         f"(ble.schema.ATT_EDGES = {ATT_EDGES.tolist()}); the weighted durations would "
                         "not be exact")
    return t


def _check_weights(weights, n: int, where: str, key: str = "weights") -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"{where}: {key} needs {n} values (one per attenuation class), got {len(weights)}")
    if not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"{where}: {key} must be finite and >= 0, got {w.tolist()}")
    return w


def _check_scores(scores, where: str, key: str) -> None:
    s = np.asarray(scores, dtype=np.float64)
    if s.shape != (8,) or np.any(s < 0) or np.any(s > 8) or np.any(s != np.round(s)):
        raise ValueError(f"{where}: {key} must be 8 integers in 0..8 (GAEN v1 bucket scores), got {scores}")


def _make_rule(name, kind, params, description="", source=None, options=(), path=None) -> Rule:
    where = f"rule {name!r}" + (f" ({path})" if path else "")
    if kind not in _SPEC:
        raise ValueError(f"{where}: unknown kind {kind!r}; expected one of {list(KINDS)}")
    p = _check_params(_SPEC[kind], dict(params), where)
    if kind == "any_match":
        if p["min_scans"] < 1:
            raise ValueError(f"{where}: min_scans must be >= 1")
        if p["min_minutes"] < 0:
            raise ValueError(f"{where}: min_minutes must be >= 0 (min)")
    elif kind == "weighted_attenuation":
        t = _check_edges(p["thresholds_db"], where, "thresholds_db")
        _check_weights(p["weights"], t.size + 1, where)
        if p["min_weighted_minutes"] < 0:
            raise ValueError(f"{where}: min_weighted_minutes must be >= 0 (min)")
        if p["bucket_cap_minutes"] is not None and p["bucket_cap_minutes"] <= 0:
            raise ValueError(f"{where}: bucket_cap_minutes must be > 0 (min)")
    elif kind == "v1_risk_score":
        for key in ("attenuation_scores", "duration_scores", "days_scores", "transmission_scores"):
            _check_scores(p[key], where, key)
        if not 1 <= p["transmission_level"] <= 8:
            raise ValueError(f"{where}: transmission_level must be in 1..8, got {p['transmission_level']}")
        if p["days_since_exposure"] < 0:
            raise ValueError(f"{where}: days_since_exposure must be >= 0 (days)")
        ad = p["attenuation_duration"]
        if ad is not None:
            ad = _check_params(_AD_SPEC, dict(ad), where + " [params.attenuation_duration]")
            t = _check_edges(ad["thresholds_db"], where, "attenuation_duration.thresholds_db")
            _check_weights(ad["weights"], t.size + 1, where, "attenuation_duration.weights")
            if not ad["normalization_divisor"] > 0:
                raise ValueError(f"{where}: attenuation_duration.normalization_divisor must be > 0")
            if ad["bucket_cap_minutes"] is not None and ad["bucket_cap_minutes"] <= 0:
                raise ValueError(f"{where}: attenuation_duration.bucket_cap_minutes must be > 0 (min)")
            p["attenuation_duration"] = MappingProxyType(ad)
    elif kind == "gaen_v2":
        p = gaen_v2.check_params(p, where)
    elif kind == "distance_duration":
        if not p["max_distance_m"] > 0:
            raise ValueError(f"{where}: max_distance_m must be > 0 (m)")
        if p["min_minutes"] < 0:
            raise ValueError(f"{where}: min_minutes must be >= 0 (min)")
    return Rule(name=name, kind=kind, params=MappingProxyType(p), description=description,
                source=MappingProxyType(dict(source or {})), options=tuple(options), path=path)


def _read_toml(name_or_path) -> tuple[dict, str, str]:
    s = str(name_or_path)
    p = Path(s)
    if s.endswith(".toml") or p.is_file():
        if not p.is_file():
            raise ValueError(f"rule file {s} does not exist")
        text, path, default_name = p.read_text(encoding="utf-8"), str(p), p.stem
    else:
        res = _rules_root().joinpath(s + ".toml")
        if not res.is_file():
            raise ValueError(f"unknown rule {s!r}; packaged rules are {list(RULES)} (or give a .toml path)")
        text, path, default_name = res.read_text(encoding="utf-8"), str(res), s
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"rule file {path}: not valid TOML: {e}") from e
    return data, path, default_name


def load_rule(name_or_path, **overrides) -> Rule:
    """Load a rule by packaged name (:data:`RULES`), ``"name:option"``, or a path to a TOML file.

    The TOML has ``name``, ``kind`` (one of :data:`KINDS`), ``description``, a ``[params]`` table, an
    optional ``[source]`` table (provenance of the numbers, kept on the rule) and optional
    ``[options.<option>]`` tables whose keys (``kind`` and parameters) replace the base ones when the
    option is selected. ``overrides`` replace parameters last. Raises ``ValueError`` naming the file
    and key on any problem.
    """
    s = str(name_or_path)
    option = None
    if ":" in s and not Path(s).exists() and not s.endswith(".toml"):
        s, option = s.split(":", 1)
    data, path, default_name = _read_toml(s)
    known = {"name", "kind", "description", "params", "source", "options"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"rule file {path}: unknown top-level key(s) {unknown}; expected {sorted(known)}")
    if "kind" not in data:
        raise ValueError(f"rule file {path}: missing key 'kind' (one of {list(KINDS)})")
    name = str(data.get("name", default_name))
    kind = data["kind"]
    params = dict(data.get("params", {}))
    options = data.get("options", {})
    if not isinstance(options, dict):
        raise ValueError(f"rule file {path}: 'options' must be a table of tables")
    if option is not None:
        if option not in options:
            raise ValueError(f"rule {name!r} has no option {option!r}; options: {sorted(options)}")
        opt = dict(options[option])
        kind = opt.pop("kind", kind)
        opt_params = dict(opt.pop("params", {}))
        opt_desc = opt.pop("description", None)
        if kind != data["kind"]:
            params = {}          # a different evaluator: only the option's own parameters apply
        params.update(opt)
        params.update(opt_params)
        name = f"{name}:{option}"
        description = (opt_desc or data.get("description", "")).strip()
    else:
        description = str(data.get("description", "")).strip()
    params.update(overrides)
    return _make_rule(name, kind, params, description, data.get("source", {}), tuple(sorted(options)),
                      path)


def _as_rule(rule) -> Rule:
    return rule if isinstance(rule, Rule) else load_rule(rule)


# ----------------------------------------------------------------------------------------------------
# Daily sums
# ----------------------------------------------------------------------------------------------------
def daily_sums(windows, source, day=None) -> np.ndarray:
    """Aggregate matched exposure windows per (observer, source, day) (counting sorts and one numba
    kernel: :func:`tracing.core.pairjoin.window_sums`).

    ``windows``: ``WINDOW_DTYPE`` array, or a dict of its columns by name (at least
    :data:`tracing.core.pairjoin.WINDOW_FIELDS`, e.g. ``RunFolder.window_columns``; no record copy;
    without ``att_secs`` the per-bucket seconds stay 0, for rules that do not read them).
    ``source``: int array (one per window) of the device whose rolling ID the window holds (−1 =
    unmatched; such windows are left out). ``day``: int array or scalar day index; default
    ``floor(t_start / 86400)``. Returns a :data:`DAILY_DTYPE` array sorted by (observer, source, day).
    Sums: seconds (total and per attenuation bucket), scans, windows; RSSI mean weighted by scans,
    attenuation mean weighted by duration (both NaN-aware), maxima/minima ignoring NaN; the arithmetic
    is numpy's (``np.add.reduceat`` etc.), so the values are those of a lexsort + reduceat.
    """
    if isinstance(windows, dict):
        missing = [f for f in WINDOW_FIELDS if f not in windows and f != "att_secs"]
        if missing:
            raise ValueError(f"windows lacks columns {missing}")
        n = len(windows["observer"])
    elif not isinstance(windows, np.ndarray) or windows.dtype != WINDOW_DTYPE:
        raise ValueError(f"windows must have ble.schema.WINDOW_DTYPE, got {getattr(windows, 'dtype', windows)}")
    else:
        n = len(windows)
    source = np.asarray(source)
    if source.shape != (n,) or (n and source.dtype.kind not in "iu"):
        raise ValueError(f"source must be an integer array with one entry per window ({n}), got "
                         f"{source.dtype} {source.shape}")
    if day is None:
        day = np.floor(windows["t_start"] / DAY_S).astype(np.int64)
    else:
        day = np.asarray(day)
        if (day.ndim and day.shape != (n,)) or (day.size and day.dtype.kind not in "iu"):
            raise ValueError(f"day must be an integer scalar or one entry per window ({n})")
    return window_sums(windows, source, day, DAILY_DTYPE)


# ----------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------
def attenuation_class_minutes(att_secs: np.ndarray, thresholds_db, cap_minutes=None) -> np.ndarray:
    """Minutes per attenuation class from per-bucket seconds: (n, N_ATT_BUCKETS) s -> (n, k+1) min.

    Class 0 holds attenuation <= thresholds_db[0], class c holds thresholds_db[c-1] < a <=
    thresholds_db[c], the last class a > thresholds_db[-1]. Thresholds must be ``ATT_EDGES`` values.
    ``cap_minutes`` caps each class (GAEN/CWA cap attenuation durations at 30 min).
    """
    t = _check_edges(thresholds_db, "attenuation_class_minutes", "thresholds_db")
    upper = np.append(ATT_EDGES, np.inf)          # upper edge of each bucket
    cls = np.searchsorted(t, upper - 1e-9, side="left")   # thresholds strictly below the upper edge
    onehot = np.zeros((N_ATT_BUCKETS, t.size + 1))
    onehot[np.arange(N_ATT_BUCKETS), cls] = 1.0
    mins = np.asarray(att_secs, dtype=np.float64).reshape(-1, N_ATT_BUCKETS) @ onehot / 60.0
    if cap_minutes is not None:
        mins = np.minimum(mins, float(cap_minutes))
    return mins


def _check_daily(daily) -> np.ndarray:
    if not isinstance(daily, np.ndarray) or daily.dtype.names is None:
        raise ValueError("daily must be a DAILY_DTYPE structured array (see tracing.rules.daily_sums)")
    missing = [f for f in ("att_secs", "duration_s", "n_scans", "rssi_max", "rssi_mean", "att_mean")
               if f not in daily.dtype.names]
    if missing:
        raise ValueError(f"daily lacks fields {missing}; build it with tracing.rules.daily_sums")
    if daily["att_secs"].shape[1:] != (N_ATT_BUCKETS,):
        raise ValueError(f"daily att_secs must have {N_ATT_BUCKETS} buckets (ble.schema.ATT_EDGES)")
    return daily


def evaluate(daily: np.ndarray, rule, radio=None) -> RuleResult:
    """Apply ``rule`` to per-(observer, source, day) sums; returns ``(notify, minutes, score)``.

    ``notify``: bool, the observer would be warned were the source an index case. ``minutes``: the
    (weighted) exposure minutes the rule computed (min; total minutes for ``any_match``, weighted
    minutes for ``weighted_attenuation`` and CWA-style ``v1_risk_score``, exposure minutes for a plain
    v1 score, minutes within the distance for ``distance_duration``). ``score``: what is compared
    with the threshold (minutes, or the risk score). ``radio``: optional :class:`ble.radio.RadioParams`
    for the distance estimate of ``distance_duration`` rules (default: ``ble.radio.default_params()``).
    """
    rule = _as_rule(rule)
    daily = _check_daily(daily)
    p = rule.params
    total_min = daily["duration_s"].astype(np.float64) / 60.0
    if rule.kind == "any_match":
        ok = (daily["n_scans"] >= p["min_scans"]) & (total_min >= p["min_minutes"])
        if p["min_rssi_dbm"] is not None:
            with np.errstate(invalid="ignore"):
                ok &= daily["rssi_max"].astype(np.float64) >= float(p["min_rssi_dbm"])
        return RuleResult(ok, total_min, total_min.copy())
    if rule.kind == "weighted_attenuation":
        mins = attenuation_class_minutes(daily["att_secs"], p["thresholds_db"], p["bucket_cap_minutes"])
        weighted = mins @ np.asarray(p["weights"], dtype=np.float64)
        return RuleResult(weighted >= float(p["min_weighted_minutes"]), weighted, weighted.copy())
    if rule.kind == "v1_risk_score":
        return _eval_v1(daily, p, total_min)
    if rule.kind == "distance_duration":
        within = _minutes_within(daily, float(p["max_distance_m"]), radio)
        return RuleResult(within >= float(p["min_minutes"]), within, within.copy())
    if rule.kind == "ideal":     # radio data alone notifies nobody; the pipelines set true_close
        return RuleResult(np.zeros(len(daily), dtype=bool), total_min, total_min.copy())
    if rule.kind == "gaen_v2":      # normalized time per day; score = the day's risk level
        notify, norm, level = gaen_v2.evaluate_daily(daily["att_secs"], p)
        return RuleResult(notify, norm, level.astype(np.float64))
    raise ValueError(f"rule {rule.name!r}: unknown kind {rule.kind!r}")  # pragma: no cover


def classify(daily: np.ndarray, rule, radio=None) -> np.ndarray:
    """Bool array: for each (observer, source, day) row of ``daily``, would the observer be warned
    were the source an index case, under ``rule`` (a :class:`Rule` or a name for :func:`load_rule`).
    ``radio``: optional radio parameters for distance rules (see :func:`evaluate`)."""
    return evaluate(daily, rule, radio).notify


def v1_bucket_scores(att_db, minutes, scores_att, scores_dur) -> tuple[np.ndarray, np.ndarray]:
    """GAEN v1 attenuation and duration scores of attenuations (dB) and durations (min).

    Attenuation: table index 0 for a > 73 dB ... 7 for a <= 10 dB; NaN attenuation scores 0 (unknown,
    as for an attenuation above every bucket). Duration: index 0 for D = 0, 1 for 0 < D <= 5 min, ...,
    7 for D > 30 min.
    """
    att = np.asarray(att_db, dtype=np.float64)
    k = np.searchsorted(GAEN_V1_ATT_EDGES, att, side="left")        # 0: <=10 ... 7: >73
    a_idx = 7 - k
    a_score = np.asarray(scores_att, dtype=np.float64)[a_idx]
    a_score = np.where(np.isnan(att), 0.0, a_score)
    d_idx = np.searchsorted(GAEN_V1_DURATION_EDGES_MIN, np.asarray(minutes, dtype=np.float64), side="left")
    d_score = np.asarray(scores_dur, dtype=np.float64)[d_idx]
    return a_score, d_score


def _days_index(days_since: int) -> int:
    """GAEN v1 days-since-last-exposure bucket: index 0 is >= 14 days, ..., 7 is 0–1 days."""
    return 7 - min(int(days_since) // 2, 7)


def _eval_v1(daily, p, total_min) -> RuleResult:
    a_score, d_score = v1_bucket_scores(daily["att_mean"], total_min, p["attenuation_scores"],
                                        p["duration_scores"])
    days_score = float(p["days_scores"][_days_index(p["days_since_exposure"])])
    tr_score = float(p["transmission_scores"][p["transmission_level"] - 1])
    risk = a_score * d_score * days_score * tr_score
    risk = np.where(risk >= float(p["minimum_risk_score"]), risk, 0.0)  # GAEN drops such exposures
    ad = p["attenuation_duration"]
    if ad is None:
        return RuleResult((risk >= float(p["notify_min_score"])) & (risk > 0), total_min, risk)
    mins = attenuation_class_minutes(daily["att_secs"], ad["thresholds_db"], ad["bucket_cap_minutes"])
    weighted = mins @ np.asarray(ad["weights"], dtype=np.float64) + float(ad["default_bucket_offset"])
    weighted = np.where(risk > 0, weighted, 0.0)   # a dropped exposure contributes no durations
    score = np.round(risk / float(ad["normalization_divisor"]) * weighted * 100.0) / 100.0
    return RuleResult((score >= float(p["notify_min_score"])) & (risk > 0), weighted, score)


# ----------------------------------------------------------------------------------------------------
# Distance from attenuation
# ----------------------------------------------------------------------------------------------------
_ATT_GRID = np.arange(-40.0, 160.0, 0.01)


def _distance_fn(radio=None):
    """``ble.distance.estimate_distance`` -> callable(attenuation=..., rssi=...) returning d_ml (m)."""

    def d_ml(**kw):
        if radio is not None:
            kw["params"] = radio
        res = estimate_distance(**kw)
        return np.asarray(res[0] if isinstance(res, tuple) else res, dtype=np.float64)
    return d_ml


def attenuation_at_distance(d_m: float, radio=None) -> float:
    """Attenuation (dB) at which :func:`ble.distance.estimate_distance` gives distance ``d_m`` (m)
    (``radio``: optional :class:`ble.radio.RadioParams`, default the package's fitted parameters).

    The ML distance estimate grows with attenuation; this inverts it on a 0.01 dB grid (linear
    interpolation), so "estimated distance <= d" is "attenuation <= attenuation_at_distance(d)".
    """
    d_ml = _distance_fn(radio)
    d = d_ml(attenuation=_ATT_GRID)
    ok = np.isfinite(d)
    g, d = _ATT_GRID[ok], d[ok]
    if g.size < 2 or np.any(np.diff(d) < 0):
        raise ValueError("ble.distance.estimate_distance is not monotone in attenuation; the distance "
                         "rule cannot be evaluated on attenuation buckets")
    if d_m <= d[0]:
        return float(g[0])
    if d_m >= d[-1]:
        return float(g[-1])
    return float(np.interp(d_m, d, g))


def rssi_at_distance(d_m: float, radio=None) -> float:
    """RSSI (dBm) at which the ML distance estimate is ``d_m`` (m) (for windows without TX power)."""
    d_ml = _distance_fn(radio)
    rssi = np.arange(-140.0, 30.0, 0.01)                  # dBm, ascending
    d = d_ml(rssi=rssi)
    ok = np.isfinite(d)
    r, d = rssi[ok], d[ok]
    # distance decreases with RSSI: flip to increasing distance
    r, d = r[::-1], d[::-1]
    if r.size < 2 or np.any(np.diff(d) < 0):
        raise ValueError("ble.distance.estimate_distance is not monotone in RSSI")
    return float(np.interp(d_m, d, r))


_CACHE: dict = {}


def _minutes_within(daily, d_m: float, radio=None) -> np.ndarray:
    """Minutes per row with ML-estimated distance <= ``d_m`` (m).

    From attenuation buckets: buckets entirely at or below a* = attenuation_at_distance(d) count in
    full, the bucket straddling a* counts by the linear fraction (a* − lo)/(hi − lo) of its width
    (the open end buckets count in full or not at all). Rows without attenuation (att_mean NaN: TX
    power unknown) fall back to the
    scan-weighted mean RSSI: all of their minutes count if its ML distance is <= d.
    """
    rkey_ = repr(radio)
    key = ("att", d_m, rkey_)
    if key not in _CACHE:
        _CACHE[key] = attenuation_at_distance(d_m, radio)
    a_star = _CACHE[key]
    lo = np.append(-np.inf, ATT_EDGES)
    hi = np.append(ATT_EDGES, np.inf)
    with quiet_nan():
        frac = np.where(hi <= a_star, 1.0,
                        np.where(lo >= a_star, 0.0,
                                 np.where(np.isfinite(lo) & np.isfinite(hi), (a_star - lo) / (hi - lo),
                                          np.where(np.isinf(hi), 0.0, 1.0))))
    secs = np.asarray(daily["att_secs"], dtype=np.float64) @ frac
    no_att = np.isnan(daily["att_mean"].astype(np.float64))
    if no_att.any():
        rkey = ("rssi", d_m, rkey_)
        if rkey not in _CACHE:
            _CACHE[rkey] = rssi_at_distance(d_m, radio)
        r_star = _CACHE[rkey]
        with np.errstate(invalid="ignore"):
            near = daily["rssi_mean"].astype(np.float64) >= r_star
        secs = np.where(no_att, np.where(near, daily["duration_s"].astype(np.float64), 0.0), secs)
    return secs / 60.0


def describe(rule) -> str:
    """One paragraph naming the rule, its evaluator, parameters and source."""
    rule = _as_rule(rule)
    src = dict(rule.source)
    cite = src.get("config") or src.get("reference") or ""
    params = ", ".join(f"{k}={v!r}" for k, v in rule.params.items() if v is not None)
    return f"{rule.name} [{rule.kind}] {params}" + (f" (source: {cite})" if cite else "")

