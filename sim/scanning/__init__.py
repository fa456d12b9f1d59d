"""BLE scanning and the day's accumulators: pairs in range -> per-direction sightings -> exposure windows,
and close pairs -> ground truth.

Every phone scans once per step of ``step_s`` seconds; each ordered pair (observer, advertiser) of
phone owners in the same place instance within ``radio_range_m`` is seen with probability ``p_seen``
and logged if its RSSI clears the floor (:mod:`sim.scanning.step` gives the radio model and its
counter-based draws, identical at any thread count and for static episodes evaluated at once).

**Radio cut-off.** Pairs are formed only inside one place instance (walls and separate buildings are
taken as opaque) and within ``radio_range_m`` (12 m default). With the fitted model (path-loss exponent
≈ 1, σ 6.5 dB, floor −108 dBm) the mean RSSI of a median pair (both phones with the median carriage
loss, Android<-Android) at 12 m is −95 dBm: a scan there is still above the floor with probability
0.97 (above Bluezone's −88 dBm history threshold: 0.13), and the loudest configuration (both in hand,
Android<-iOS) is above the floor at any distance inside a building. So the cut-off is **not** "RSSI
below the floor with negligible probability" — the fitted exponent makes that distance hundreds of
metres — but a modelling choice standing in for body, crowd and wall attenuation in large rooms;
``run.json["radio_cutoff"]`` records these probabilities for the run's parameters so the effect can be
judged, and ``sim.radio_range_m`` can be raised (cost grows with the square of the range).

Run-length accumulation (:class:`PairRuns`): pairs are produced per step in two streams sorted by
(i, j) (household members at home; everyone else from the neighbour search); while a pair stays in its
stream its scans are summed in place by a sequential merge-join, and only when it leaves (or at the end
of the day) is its run merged into the hash map — one insert per run instead of one per scan.

Accumulators (numba, hash maps sharded by key into 64 regions so that each thread owns whole regions
— deterministic at any thread count): windows keyed by (observer, advertiser) holding number of scans,
RSSI sum and max, first and last scan time and scans per attenuation bucket (``ble.schema.ATT_EDGES``,
attenuation = advertiser's TX power − RSSI); ground truth keyed by (i, j), i < j, holding the number of
close (sub)steps and the minimum distance.

Modules: :mod:`sim.scanning.step` (radio per scan, :class:`Radio`, the scenario's radio parameters),
:mod:`sim.scanning.accumulate` (the sharded hash maps, :class:`DayAccumulator`; its window extraction's
kernels in :mod:`sim.scanning.extract`),
:mod:`sim.scanning.runs` (run-length merge, :class:`PairRuns`, :class:`CloseRuns`),
:mod:`sim.scanning.stays` (pairs of agents seated in one instance, evaluated once per stay overlap with the
same draws: :func:`seated_stays`, :func:`eval_stays`).
"""
from __future__ import annotations

from sim.scanning.accumulate import DayAccumulator
from sim.scanning.runs import CloseRuns, PairRuns
from sim.scanning.stays import Stays, eval_stays, seated_stays
from sim.scanning.step import (Radio, cutoff_report, device_table, eval_close, eval_scan_rssi, eval_scan_step,
                               eval_static, radio_params, scan_p_seen)

__all__ = ["CloseRuns", "DayAccumulator", "PairRuns", "Radio", "cutoff_report", "device_table", "eval_close",
           "eval_scan_rssi", "eval_scan_step", "eval_static", "eval_stays", "radio_params", "scan_p_seen",
           "seated_stays", "Stays"]
