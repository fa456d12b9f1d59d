"""``proxitrace sweep ... --channels ble,qr``: coverage per notification channel (Bluetooth, QR
check-in, both) on the sweep's simulated runs, with common random numbers across channels."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from sim.qr import QRParams
from sim.rng import SALT_QR
from sim.runfolder import RunFolder
from tracing.closedloop.params import load_closed_loop_params
from tracing.core.coverage import DelayModel
from tracing.core.qr import combine_channels, qr_pairs
from tracing.pipeline import pairs_from_run
from tracing.report.plots import plot_channels
from tracing.report.tables import write_channels_csv
from tracing.sweep.replicate import default_index_cases, one_replicate

__all__ = ["run_qr_pairs", "channel_rows", "channel_sweep"]


def run_qr_pairs(run_dir, qr=None, seed: int = 0) -> np.ndarray:
    """The QR channel's pair table of a simulator run (check-ins rebuilt from the run's schedules by
    :meth:`sim.runfolder.RunFolder.checkins`; ``qr``: :class:`sim.qr.QRParams`)."""
    qr = qr or QRParams()
    run = RunFolder(run_dir)
    n = int(run.meta["n_agents"])
    return qr_pairs(run.checkins(qr, seed), n, overlap_s=qr.overlap_min * 60.0)


def channel_rows(replicate: int, ble_pairs, q_pairs, n, population, strategy, seed, index_cases, grid,
                 delay, phones_only: bool = True) -> dict:
    """Coverage metrics of one replicate for each channel (``ble``, ``qr``, ``ble+qr``) with the same
    adoption ranks, index cases and phone sync phases (one generator per channel from the same seed:
    common random numbers), via :func:`tracing.sweep.replicate.one_replicate`. Rows for ``channels.csv``."""
    g = np.asarray(grid, float)
    rows = {k: [] for k in ("adoption", "replicate", "channel", "f1_coverage", "f1_precision", "f2_coverage")}
    for name, ch in (("ble", ("ble",)), ("qr", ("qr",)), ("ble+qr", ("ble", "qr"))):   # 3 channels
        pairs = combine_channels(ble_pairs, q_pairs, ch)
        rng = np.random.default_rng([int(seed), int(replicate), SALT_QR])
        c, _, _ = one_replicate(pairs, n, population, strategy, rng, index_cases, g, delay, phones_only)
        rows["adoption"].append(g)
        rows["replicate"].append(np.full(len(g), replicate))
        rows["channel"].append(np.full(len(g), name))
        for m in ("f1_coverage", "f1_precision", "f2_coverage"):
            rows[m].append(c[m])
    return {k: np.concatenate(v) for k, v in rows.items()}


def channel_sweep(out_dir, run_dirs, grid, *, strategy: str = "uniform", seed: int = 0, rule="bluezone",
                  phones_only: bool = True, index_cases: int | None = None, delay=None, qr=None,
                  scenario=None) -> dict:
    """``proxitrace sweep ... --channels ble,qr``: per replicate run folder, the Bluetooth pair table
    under ``rule`` and the QR pair table (check-ins rebuilt from the run's schedules; ``[qr]`` table of
    ``scenario`` or defaults), then the coverage metrics of ``ble``, ``qr`` and ``ble+qr`` with common
    random numbers (:func:`channel_rows`). Writes ``channels.csv`` and ``channels.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    qr = qr or load_closed_loop_params(scenario)[2]
    delay = delay or DelayModel()
    rows = []
    for r, run_dir in enumerate(run_dirs):              # loop over replicates
        ble = pairs_from_run(run_dir, rule)
        q = run_qr_pairs(run_dir, qr, seed + r)
        pop = RunFolder(run_dir).population()
        n = len(pop["agent"])
        k = index_cases if index_cases is not None else default_index_cases(n)
        rows.append(channel_rows(r, ble, q, n, pop, strategy, seed, k, grid, delay, phones_only))
    write_channels_csv(out / "channels.csv", rows)
    allrows = {key: np.concatenate([x[key] for x in rows]) for key in rows[0]}
    plot_channels(out / "channels.png", grid, allrows,
                  title=f"notification channels: Bluetooth vs QR check-in ({strategy}, {len(rows)} reps)")
    return allrows
