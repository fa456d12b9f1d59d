"""Notification channels of the closed loop, each one object with one method:
``notify(day, f0, is_f0) -> [(agents, start_day, counter), ...]`` -- whom the channel warns about the
index cases ``f0`` confirmed on ``day``, from which day they should isolate, and the daily counter
(``notified_*``) they count in. The loop schedules the isolations and keeps the counts.

* :class:`ManualHousehold` -- the health service tells the household members of every positive case,
  app or not (``manual_delay_d`` later).
* :class:`BluetoothApp` -- the app: F1 (a contact's log of an app-using F0 passes the rule) and, with
  ``f2``, F2 through the F1's uploaded log, by :func:`tracing.core.propagation.propagate` over the
  look-back ring of realised contacts.
* :class:`QRCheckin` -- co-visitors of the F0's published venue check-ins (:func:`tracing.core.qr.qr_warnings`).
* :class:`Oracle` -- a known-answer check, not a policy: every true close contact in the look-back, app
  or not, isolates the next day.
"""
from __future__ import annotations

import numpy as np

from sim.epidemic import DAY_S
from sim.qr import QRParams
from tracing.closedloop.contacts import ContactDays, ranges
from tracing.closedloop.params import Interventions
from tracing.core.graph import ContactGraph
from tracing.core.propagation import propagate
from tracing.core.qr import qr_warnings

__all__ = ["ManualHousehold", "BluetoothApp", "QRCheckin", "Oracle"]


class ManualHousehold:
    """Household members of every F0 (``household`` -1 = unknown: nobody)."""

    def __init__(self, household: np.ndarray, delay_d: int):
        self.hh = household
        self.order = np.argsort(household, kind="stable")
        self.sorted = household[self.order]
        self.delay_d = int(delay_d)

    def notify(self, day: int, f0: np.ndarray, is_f0: np.ndarray) -> list:
        h = np.unique(self.hh[f0])
        h = h[h >= 0]
        lo = np.searchsorted(self.sorted, h, "left")
        hi = np.searchsorted(self.sorted, h, "right")
        mem = self.order[ranges(lo, hi)]
        mem = mem[~is_f0[mem]]
        return [(mem, day + self.delay_d, "notified_manual")]


class BluetoothApp:
    """F1 (and F2 with ``iv.f2``) of the F0s who run the app, over the ring of realised contacts of the
    last ``lookback_days`` (``ring``: list of ``(day, template k, keep mask)``, shared with the loop)."""

    def __init__(self, contacts: ContactDays, app: np.ndarray, iv: Interventions, ring: list):
        self.contacts, self.app, self.iv, self.ring = contacts, app, iv, ring

    def _edges(self, agents, is_f0, logs: str):
        """Edges self -> other of ``agents``' ring records where ``logs`` passes, other on the app and
        not an index case; contact time = the record's day (s)."""
        C = self.contacts.records_of(self.ring, agents)
        ok = C[logs] & self.app[C["other"]] & ~is_f0[C["other"]]
        return C["self"][ok], C["other"][ok], C["day"][ok] * DAY_S

    def notify(self, day: int, f0: np.ndarray, is_f0: np.ndarray) -> list:
        f0_app = f0[self.app[f0]]
        if not len(f0_app):
            return []
        n, iv = self.contacts.n, self.iv
        # hop 1: the contact's own log of the F0 ("other_logs"); the ring holds just the look-back
        s1, d1, t1 = self._edges(f0_app, is_f0, "other_logs")
        hop = propagate(ContactGraph.from_edges(s1, d1, n, t_first=t1), f0_app, day * DAY_S,
                        window_s=np.inf, hops=1).hop
        f1 = np.flatnonzero(hop == 1)
        out = [(f1, day + iv.app_delay_d, "notified_app")]
        if iv.f2 and len(f1):
            # hop 2: the F1's uploaded log of its contacts ("self_logs"), not before its exposure
            s2, d2, t2 = self._edges(f1, is_f0, "self_logs")
            g = ContactGraph.from_edges(np.concatenate([s1, s2]), np.concatenate([d1, d2]), n,
                                        t_first=np.concatenate([t1, t2]))
            f2 = np.flatnonzero(propagate(g, f0_app, day * DAY_S, window_s=np.inf, hops=2).hop == 2)
            out.append((f2, day + iv.app_delay_d + iv.f2_delay_d, "notified_f2"))
        return out


class QRCheckin:
    """App users who checked in within ``qr.overlap_min`` of an app-using F0 at the same venue, over
    the ring of check-ins (``qring``: list of ``(day, check-in rows)``, shared with the loop)."""

    def __init__(self, app: np.ndarray, qr: QRParams, qring: list):
        self.app, self.qr, self.qring = app, qr, qring

    def notify(self, day: int, f0: np.ndarray, is_f0: np.ndarray) -> list:
        f0_app = f0[self.app[f0]]
        if not len(f0_app) or not self.qring:
            return []
        cks = np.concatenate([c for _, c in self.qring])
        w = qr_warnings(cks, f0_app, (day + 1) * DAY_S, app=self.app, overlap_s=self.qr.overlap_min * 60.0,
                        lookback_s=self.qr.lookback_days * DAY_S)
        wq = np.unique(w["agent"])
        return [(wq[~is_f0[wq]], day + self.qr.delay_d, "notified_qr")]


class Oracle:
    """Every true close contact of the F0s in the ring, app or not, from the next day."""

    def __init__(self, contacts: ContactDays, ring: list):
        self.contacts, self.ring = contacts, ring

    def notify(self, day: int, f0: np.ndarray, is_f0: np.ndarray) -> list:
        C = self.contacts.records_of(self.ring, f0)
        a = np.unique(C["other"][C["close"]])
        return [(a[~is_f0[a]], day + 1, None)]
