"""A simulator run folder, read in one place.

``sim.run.simulate`` writes a run folder::

    run.json                  scenario, seed, days, counts, timings
    population.parquet        one row per agent (household, age, role, has_phone, place_types, ...)
    keys.parquet              agent, key: the 64-bit device key of every phone owner
    windows/day-NNN.parquet   exposure windows of day NNN (``ble.schema.WINDOW_DTYPE``)
    ground_truth.parquet      pairs within the close distance per day (``ble.schema.GROUND_TRUTH_DTYPE``)

:class:`RunFolder` is the one reader every consumer uses (the tracing pipeline, the sweep's work units,
the epidemic closed loop, the QR channel): the files above, and the simulated world rebuilt exactly as
``simulate`` built it (population, places, the schedule of a day, QR check-ins), which the run folder
does not store.
"""
from __future__ import annotations

import json
import re
from functools import cached_property
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ble.schema import WINDOW_DTYPE, RecordError, from_table, iter_parquet, read_parquet
from sim.qr import CHECKIN_DTYPE, QRParams, checkins_from_visits, visits_from_schedule
from sim.run import build_world, day_schedule
from sim.scenario import Scenario

#: windows per block of :meth:`RunFolder.window_blocks` and :meth:`RunFolder.window_columns` (~100 bytes each as
#: columns with their Arrow batch; 2**19 keeps a block a constant ~0.1-0.3 GB whatever the population)
WINDOW_BLOCK_ROWS = 1 << 19

__all__ = ["RunFolder"]

_DAY_FILE = re.compile(r"^day-(\d+)\.parquet$")


class RunFolder:
    """The run folder at ``path`` (see the module docstring). Cheap to create; files are read on use.

    Every reader raises ``ValueError`` naming the file when it is missing or unreadable.
    """

    def __init__(self, path):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    def _need(self, name: str) -> Path:
        p = self.path / name
        if not p.is_file():
            raise ValueError(f"{p}: missing; not a simulator run folder?")
        return p

    def exists(self) -> bool:
        return self.path.is_dir()

    # -- metadata --------------------------------------------------------------------------------
    @cached_property
    def meta(self) -> dict:
        """``run.json`` as a dict (``{}`` when the folder has none, as for hand-made test folders)."""
        p = self.path / "run.json"
        if not p.is_file():
            return {}
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not valid JSON: {e}") from e

    @property
    def n_days(self) -> int:
        """Simulated days (``run.json``)."""
        return int(self.meta["days"])

    # -- tables ----------------------------------------------------------------------------------
    def population(self, columns=None) -> dict:
        """Columns of ``population.parquet`` as numpy arrays, ``{name: array}``."""
        t = pq.read_table(self._need("population.parquet"), columns=columns)
        return {name: t.column(name).to_numpy(zero_copy_only=False) for name in t.column_names}

    def keys(self) -> tuple[np.ndarray, np.ndarray]:
        """``(agent, key)`` of ``keys.parquet``: int64 agent indices and uint64 device keys."""
        path = self.path / "keys.parquet"
        if not path.is_file():
            raise ValueError(f"{path}: missing; a run folder needs keys.parquet (agent, key)")
        try:
            t = pq.read_table(path, columns=["agent", "key"])
        except (OSError, pa.ArrowInvalid, KeyError) as e:
            raise ValueError(f"{path}: cannot read columns agent, key: {e}") from e
        agent = t.column("agent").to_numpy(zero_copy_only=False)
        key = t.column("key").to_numpy(zero_copy_only=False)
        if agent.dtype.kind not in "iu" or key.dtype.kind not in "iu":
            raise ValueError(f"{path}: agent and key must be integers, got {agent.dtype}, {key.dtype}")
        if key.dtype != np.uint64:
            key = key.astype(np.int64).view(np.uint64)
        agent = agent.astype(np.int64)
        if agent.size and agent.min() < 0:
            raise ValueError(f"{path}: negative agent index")
        if np.unique(agent).size != agent.size:
            raise ValueError(f"{path}: an agent has more than one key")
        return agent, key

    def window_files(self) -> dict[int, Path]:
        """Day index -> ``windows/day-NNN.parquet``, sorted by day."""
        wdir = self.path / "windows"
        out = {}
        if wdir.is_dir():
            for p in wdir.iterdir():
                m = _DAY_FILE.match(p.name)
                if m:
                    out[int(m.group(1))] = p
        return dict(sorted(out.items()))

    def windows(self, day: int) -> np.ndarray:
        """Exposure windows of ``day`` (``WINDOW_DTYPE``; empty when the day has no window file)."""
        f = self.window_files().get(int(day))
        return read_parquet(f, "windows") if f is not None else np.zeros(0, dtype=WINDOW_DTYPE)

    def window_rids(self, day: int) -> np.ndarray:
        """The rolling IDs (``uint64``) of ``day``'s windows in file order (8 bytes a window)."""
        f = self.window_files().get(int(day))
        if f is None:
            return np.zeros(0, np.uint64)
        try:
            return pq.read_table(f, columns=["rid"]).column("rid").to_numpy().astype(np.uint64, copy=False)
        except (OSError, pa.ArrowInvalid, KeyError) as e:
            raise RecordError(f"{f}: cannot read column 'rid': {e}") from e

    def window_blocks(self, day: int, rows: int | None = None):
        """:meth:`windows` of ``day`` in blocks of about ``rows`` rows, none splitting an observer's
        windows (``ble.schema.iter_parquet``): per-observer reductions of the blocks, concatenated,
        equal those of the whole day, with one block in memory."""
        f = self.window_files().get(int(day))
        if f is None:
            return
        yield from iter_parquet(f, "windows", WINDOW_BLOCK_ROWS if rows is None else int(rows), "observer")

    def window_columns(self, day: int, rows: int | None = None, columns=None):
        """:meth:`window_blocks` as dicts of contiguous columns, ``{field: array}`` (``WINDOW_DTYPE``'s
        fields and dtypes, ``att_secs`` (n, N_ATT_BUCKETS)), validated as :meth:`windows` is, without
        building records (``ble.schema.iter_parquet``'s columns mode): about 100 bytes a window where
        records and their Arrow batch take 250.

        ``columns``: the fields to read (default all; ``observer``, ``t_start`` and ``t_end`` always):
        the others are neither decoded nor checked (``att_secs``, a list column, is half the decoding)."""
        f = self.window_files().get(int(day))
        if f is None:
            return
        names = [n for n in WINDOW_DTYPE.names if columns is None or n in columns or n in _ALWAYS]
        yield from iter_parquet(f, "windows", WINDOW_BLOCK_ROWS if rows is None else int(rows), "observer",
                                columns=names)

    @property
    def ground_truth_path(self) -> Path:
        return self.path / "ground_truth.parquet"

    def has_ground_truth(self) -> bool:
        return self.ground_truth_path.is_file()

    def ground_truth_days(self) -> np.ndarray:
        """Sorted day indices with ground-truth rows (int64)."""
        t = pq.read_table(self.ground_truth_path, columns=["day"])
        return np.unique(t.column("day").to_numpy(zero_copy_only=False)).astype(np.int64)

    def ground_truth(self, day: int | None = None) -> np.ndarray:
        """Ground-truth rows (``GROUND_TRUTH_DTYPE``) of ``day``, or of every day (``None``)."""
        path = self.ground_truth_path
        try:
            if day is None:
                t = pq.read_table(path)
            else:
                t = pq.read_table(path, filters=[("day", "=", int(day))])
        except (OSError, pa.ArrowInvalid) as e:
            raise RecordError(f"{path}: not a readable Parquet file: {e}") from e
        return from_table(t, "ground_truth", str(path) if day is None else f"{path} (day {day})")

    def days(self) -> list[int]:
        """Every day with a window file or ground-truth rows."""
        d = set(self.window_files())
        if self.has_ground_truth():
            d |= set(self.ground_truth_days().tolist())
        return sorted(d)

    # -- the simulated world, rebuilt ------------------------------------------------------------
    @cached_property
    def world(self):
        """``(scenario, population, places)`` rebuilt exactly as ``sim.run.simulate`` built them (its
        scenario and seed from ``run.json``), checked against ``population.parquet`` (households)."""
        scn = Scenario(**dict(self.meta["scenario"]))
        pop, places, _, _, _ = build_world(scn, int(self.meta["seed"]))
        hh = pq.read_table(self._need("population.parquet"), columns=["household"]).column("household")
        if len(hh) != pop.n or not np.array_equal(hh.to_numpy(), pop.household):
            raise ValueError(f"{self.path}: the rebuilt population does not match population.parquet "
                             "(different simulator version?)")
        return scn, pop, places

    def schedule(self, day: int):
        """The schedule (``sim.schedule.DaySchedule``) of ``day``, exactly as the run drew it."""
        scn, pop, places = self.world
        return day_schedule(scn, pop, places, int(self.meta["seed"]), int(day))

    def checkins(self, qr: QRParams | None = None, seed: int = 0, day: int | None = None) -> np.ndarray:
        """QR check-in rows (``sim.qr.CHECKIN_DTYPE``, simulator time) of ``day`` or of every day,
        from the rebuilt schedules; ``qr``: scan behaviour (default ``QRParams()``), ``seed``: its draws."""
        scn, pop, places = self.world
        qr = qr or QRParams()
        days = range(self.n_days) if day is None else [int(day)]
        parts = []
        for d in days:                                  # loop over simulated days
            a, v, t, pt = visits_from_schedule(self.schedule(d), places.inst_type, int(scn.sim["step_s"]))
            parts.append(checkins_from_visits(a, v, t, pt, qr, seed))
        return np.concatenate(parts) if parts else np.zeros(0, CHECKIN_DTYPE)



#: window fields every block of :meth:`RunFolder.window_columns` holds (blocks are cut by observer; the
#: validation compares t_end with t_start)
_ALWAYS = ("observer", "t_start", "t_end")
