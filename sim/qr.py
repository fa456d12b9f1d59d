"""QR venue check-in (the second notification channel): who would scan a venue code, and when.

Later versions of Bluezone (and the national health-declaration apps) asked visitors to scan a QR code
at the entrance of chosen venues. The simulator models it on its visits: an agent entering a place of
one of ``QRParams.place_types`` scans the venue's code with probability ``p_scan`` *if it runs the
app*. Adoption is decided later (by adoption rank, common random numbers), so a check-in row stores
``scan`` = "would scan, were the agent an app user" (a counter-based draw per agent, venue and entry
time); the tracing side keeps the rows with ``scan`` and an adopting agent.

A confirmed case's check-ins are published; everyone checked in at the same venue within
``overlap_min`` minutes of the case's check-in time (in either direction; QR check-in records no exit
time) is warned (:mod:`tracing.qr`).

Units: times in seconds (simulator time), ``overlap_min`` in minutes, ``lookback_days`` in days.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ble.schema import CHECKIN_DTYPE
from sim.places import PLACE_TYPES
from sim.rng import ST_QR_SCAN, uniforms
from sim.schedule import VISIT

__all__ = ["CHECKIN_DTYPE", "DEFAULT_QR_TYPES", "QRParams", "checkins_from_visits", "visits_from_schedule"]

#: Venue types with QR check-in in the 2021 campaign letters (markets, restaurants, hotels, hospitals,
#: bus stations, public offices: "restaurants/hotels/markets", "transport hubs", "public offices").
DEFAULT_QR_TYPES = ("market", "restaurant", "hotel", "hospital", "station", "office")


@dataclass(frozen=True)
class QRParams:
    """QR check-in parameters (a ``[qr]`` TOML table). ``p_scan``: probability that an app user scans
    at entry (assumed 0.5: scanning was requested, rarely enforced); ``overlap_min``: min, window
    around a case's check-in time in which other check-ins are warned (assumed 60); ``lookback_days``:
    d, published check-ins (14, as the app's retention); ``delay_d``: d from a case's confirmation to the
    warning (1)."""
    place_types: tuple = DEFAULT_QR_TYPES
    p_scan: float = 0.5
    overlap_min: float = 60.0
    lookback_days: int = 14
    delay_d: int = 1

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "<qr>") -> "QRParams":
        d = dict(d or {})
        known = set(asdict(cls()))
        for k in d:
            if k not in known:
                raise ValueError(f"{source}: qr.{k}: unknown key (known: {', '.join(sorted(known))})")
        if "place_types" in d:
            pt = d["place_types"]
            if not isinstance(pt, (list, tuple)) or not all(x in PLACE_TYPES for x in pt):
                raise ValueError(f"{source}: qr.place_types: must be a list of place types "
                                 f"({', '.join(PLACE_TYPES)}), got {pt!r}")
            d["place_types"] = tuple(pt)
        if "p_scan" in d and not (isinstance(d["p_scan"], (int, float)) and 0 <= d["p_scan"] <= 1):
            raise ValueError(f"{source}: qr.p_scan: must be a probability in [0, 1], got {d['p_scan']!r}")
        for k in ("overlap_min",):
            if k in d and not (isinstance(d[k], (int, float)) and d[k] >= 0):
                raise ValueError(f"{source}: qr.{k}: must be a number >= 0, got {d[k]!r}")
        for k in ("lookback_days", "delay_d"):
            if k in d and not (isinstance(d[k], int) and not isinstance(d[k], bool) and d[k] >= 0):
                raise ValueError(f"{source}: qr.{k}: must be an integer >= 0, got {d[k]!r}")
        return cls(**{**asdict(cls()), **d})

    def type_mask(self) -> np.ndarray:
        """bool per place type (``PLACE_TYPES`` order): venue has QR check-in."""
        return np.array([t in self.place_types for t in PLACE_TYPES])


def checkins_from_visits(agent, venue, t_in, place_type, params: QRParams, seed: int) -> np.ndarray:
    """Check-in rows (:data:`CHECKIN_DTYPE`) for visits (agent, venue instance, entry time s, place
    type index): visits of QR venue types only; ``scan`` drawn with ``p_scan`` from a counter-based
    uniform keyed by (seed, agent, venue, entry second), so it does not depend on adoption."""
    agent = np.asarray(agent, np.int64)
    venue = np.asarray(venue, np.int64)
    t_in = np.asarray(t_in, np.float64)
    place_type = np.asarray(place_type, np.int64)
    m = len(agent)
    if not all(len(x) == m for x in (venue, t_in, place_type)):
        raise ValueError("checkins_from_visits: agent, venue, t_in and place_type need the same length")
    if m and (agent.min() < 0 or venue.min() < 0 or not np.all(np.isfinite(t_in)) or t_in.min() < 0):
        raise ValueError("checkins_from_visits: agents and venues must be >= 0, times finite and >= 0")
    if m and (place_type.min() < 0 or place_type.max() >= len(PLACE_TYPES)):
        raise ValueError(f"checkins_from_visits: place types must lie in 0..{len(PLACE_TYPES) - 1}")
    sel = params.type_mask()[place_type] if m else np.zeros(0, bool)
    out = np.zeros(int(sel.sum()), CHECKIN_DTYPE)
    out["agent"], out["venue"], out["t"] = agent[sel], venue[sel], t_in[sel]
    out["place_type"] = place_type[sel]
    u = uniforms(seed, ST_QR_SCAN, agent[sel], venue[sel], np.floor(t_in[sel]).astype(np.int64))
    out["scan"] = u < params.p_scan
    return out


def visits_from_schedule(sched, inst_type, step_s: float, kinds=None):
    """Visits of one day from a :class:`sim.schedule.DaySchedule`: every used segment of kind VISIT
    (default) as (agent, venue instance, entry time s, place type index), vectorised over the
    (agents x segments) arrays."""
    kinds = (VISIT,) if kinds is None else tuple(kinds)
    inst = np.asarray(sched.seg_inst)
    used = (inst >= 0) & np.isin(np.asarray(sched.seg_kind), kinds) & (sched.seg_end > sched.seg_start)
    a, s = np.nonzero(used)
    venue = inst[a, s]
    t = (sched.day * 86400.0) + sched.seg_start[a, s].astype(np.float64) * float(step_s)
    return a.astype(np.int64), venue.astype(np.int64), t, np.asarray(inst_type)[venue].astype(np.int64)
