"""Importers: real BLE log files -> proxitrace records (sightings or exposure windows) + ground truth.

Every reader turns one or more files into the common record arrays of :mod:`ble.schema`
(``SIGHTING_DTYPE`` or ``WINDOW_DTYPE``) and, where the data carries it, a **truth** array aligned row
by row with the records (:data:`TRUTH_DTYPE`: the true distance in metres, a session index and the
carriage state). Units follow ``docs/internals.md``: times in seconds (float64, UNIX epoch where the
file has wall-clock times), RSSI and TX power in dBm, attenuation in dB, distances in metres.

Formats (:data:`FORMATS`, ``proxitrace import --format NAME``)
=============================================================
==============  ========  =====================================================================
name            kind      input
==============  ========  =====================================================================
``bluezone``    sightings Bluezone trace export: tab-separated ``own ID (hex) <TAB> contact ID
                          (hex) <TAB> RSSI (dBm) <TAB> timestamp (ms)``; optional header line
``opentrace``   sightings OpenTrace/BlueTrace encounter records, CSV with a header or JSON (a list,
                          ``{"records": [...]}``, or one object per line) with the fields ``id, v,
                          msg, org, modelP, modelC, rssi, txPower, timestamp`` (ms, or s when
                          below 1e11)
``gaen``        windows   GAEN v2 exposure windows as JSON: a list or ``{"exposureWindows": [...]}``
                          of ``{dateMillisSinceEpoch, scanInstances: [{typicalAttenuationDb,
                          minAttenuationDb, secondsSinceLastScan}]}``; an optional per-window
                          ``distance_m`` is taken as ground truth; also CWA's naming (``ageInDays``,
                          ``typicalAttenuation``, ``minAttenuation``) and its ``testCases`` file;
                          a negative ``secondsSinceLastScan`` is skipped (see :mod:`.gaen`)
``dublin-tram`` windows   the Dublin tram GAEN data set, given its folder (72 placements:
                          attenuation-duration histograms, distances, handset pairs)
``mit``         sightings MIT BluetoothProximity iPhone logs: the ``BlueProxTx`` beacon of the Matrix
                          study, or every advertiser (by the log's own IDs) in a log without it;
                          header records optional
``herald``      sightings Herald "Edison" RSSI files (``time,rssi,distance``)
``pcng``        sightings pcng body-position files (``RSS_humanXX.csv``)
``capture``     sightings ``proxitrace capture`` output (Parquet) or its CSV journal
``csv``         sightings documented plain CSV, header ``t,observer,rid,rssi,tx_power[,distance_m]``
                          (see :mod:`ble.formats.plain_csv`)
==============  ========  =====================================================================

Cadence
-------
Each format names the scanner cadence of its logs (:attr:`Format.cadence`, one of
:data:`ble.windows.CADENCES`), which ``replay`` uses to turn sightings into window seconds: ``continuous``
for mit/herald/pcng/capture (every advertisement logged: a sighting credits the time since the previous
one, up to 60 s), ``opentrace`` (8-s scans every 36-43 s), ``periodic-300`` for bluezone and csv (a scan
every 5 minutes credits 300 s; ``replay --cadence`` overrides it).

Missing values and sentinels
----------------------------
RSSI 127 (iOS "not available"), 999 (CovidSafe dummy) and -127 are sentinels: they are set to NaN and
the row is **dropped** (a sighting without a signal strength carries no proximity information), and
the count is reported in the stats (``rssi_sentinel``). A TX power of -999 (MIT's "none") becomes NaN
and the row is kept (``tx_sentinel``; ``tx_unknown`` counts kept rows without TX power, whatever the
reason -- the MIT loader of :mod:`ble.datasets` maps -999 to NaN itself). Every reader fills
:attr:`Imported.stats` with ``rows_read``, ``rows_kept`` and these counts, which ``proxitrace import``
prints and stores.

Errors
------
Malformed input raises :class:`FormatError` (a ``ValueError``) whose message starts with
``FILE:LINE:`` — an empty file, a truncated line or a wrong number of columns, a non-numeric RSSI or
time, timestamps going backwards in a format where order matters (``bluezone``, ``csv``,
``capture``; pass ``sort=True`` to sort such files instead). Parsing is vectorised (``pyarrow.csv``,
numpy); only after a parse failure is the file scanned line by line to name the offending line.

Layout
------
This package holds the registry (:data:`FORMATS`) and the entry points (:func:`read_full`,
:func:`import_files`, ...); one module per format holds its reader (``bluezone``, ``opentrace``,
``gaen``, ``dublin_tram``, ``labelled`` for mit/herald/pcng, ``plain_csv``, ``capture_file``), and
``_common`` / ``_json`` the shared parsing helpers.
"""
from __future__ import annotations

import contextlib

import dataclasses
import json
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ble import schema
from ble.formats._common import (CHUNK_ROWS, RSSI_SENTINELS, TRUTH_DTYPE, TX_SENTINELS, FormatError,
                                 Imported, _new_stats, _truth, u64_of_strings)
from ble.formats.bluezone import read_bluezone
from ble.formats.capture_file import JOURNAL_COLUMNS, read_capture
from ble.formats.dublin_tram import TRAM_BINS, TRAM_DAY_S, read_dublin_tram, tram_bucket_matrix
from ble.formats.gaen import read_gaen
from ble.formats.labelled import read_herald, read_mit, read_pcng
from ble.formats.opentrace import _OT_FIELDS, read_opentrace  # noqa: F401  (_OT_FIELDS: used by tests)
from ble.formats.plain_csv import PLAIN_CSV_COLUMNS, read_csv

__all__ = ["CHUNK_ROWS", "FORMATS", "JOURNAL_COLUMNS", "PLAIN_CSV_COLUMNS", "RSSI_SENTINELS", "TRAM_BINS",
           "TRAM_DAY_S", "TRUTH_DTYPE", "TX_SENTINELS", "Format", "FormatError", "Imported", "import_files",
           "iter_chunks", "read", "read_full", "read_truth", "tram_bucket_matrix", "truth_table",
           "u64_of_strings"]


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    kind: str
    reader: Callable
    doc: str
    has_truth: bool
    sortable: bool = False   # order matters and ``sort=True`` may fix it
    #: scanner cadence of the log (``ble.windows.CADENCES``): how sightings become window seconds
    cadence: str = "periodic-300"


FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("bluezone", "sightings", read_bluezone, "Bluezone trace export (TSV: own ID, contact ID, "
           "RSSI, timestamp ms)", False, True),
    Format("opentrace", "sightings", read_opentrace, "OpenTrace/BlueTrace encounter records (CSV/JSON)",
           False, cadence="opentrace"),
    Format("gaen", "windows", read_gaen, "GAEN v2 exposure windows (JSON with scanInstances)", True),
    Format("dublin-tram", "windows", read_dublin_tram, "Dublin tram GAEN histograms (the data set's "
           "folder; 72 placements with true distances)", True),
    Format("mit", "sightings", read_mit, "MIT BluetoothProximity iPhone BLE logs (Matrix or other beacons)",
           True, cadence="continuous"),
    Format("herald", "sightings", read_herald, "Herald Edison RSSI files (time,rssi,distance)", True,
           cadence="continuous"),
    Format("pcng", "sightings", read_pcng, "pcng RSS_humanXX.csv body-position files", True,
           cadence="continuous"),
    Format("capture", "sightings", read_capture, "proxitrace capture output (Parquet or CSV journal)",
           False, True, cadence="continuous"),
    Format("csv", "sightings", read_csv, "plain CSV t,observer,rid,rssi,tx_power[,distance_m]", True,
           True),
]}


def _expand(format: str, paths) -> list[Path]:
    """Paths as given; for the real data-set formats a folder expands to its data files (sorted)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and format not in ("dublin-tram", "mit", "herald", "pcng"):
            raise FormatError(p, 0, f"format {format!r} expects files, not a folder")
        else:
            out.append(p)
    if not out:
        raise ValueError("no input files")
    return out


def iter_chunks(format: str, paths, *, sort: bool = False, **opts):
    """(Format, stats, meta, generator of chunks) -- the streaming form of :func:`read_full`."""
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    fmt = FORMATS[format]
    files = _expand(format, paths)
    stats, meta = _new_stats(), {"format": format, "files": [str(p) for p in files]}
    stats["files"] = len(files)

    def gen():
        for ch in fmt.reader(files, stats, meta, sort=sort, **opts):
            stats["rows_kept"] += len(ch.records)
            yield ch
    return fmt, stats, meta, gen()


def read_full(format: str, paths, *, sort: bool = False, **opts) -> Imported:
    """Read ``paths`` in ``format`` completely; see :data:`FORMATS`. ``sort=True`` sorts sightings by
    time instead of rejecting files whose timestamps go backwards."""
    fmt, stats, meta, chunks = iter_chunks(format, paths, sort=sort, **opts)
    recs, truths = [], []
    for ch in chunks:
        recs.append(ch.records)
        truths.append(ch.truth)
    records = np.concatenate(recs) if recs else schema.empty(fmt.kind)
    truth = None
    if any(t is not None for t in truths):
        truth = np.concatenate([t if t is not None else _truth(len(r)) for r, t in zip(recs, truths)])
    if sort and fmt.kind == "sightings" and len(records):
        order = np.lexsort((records["observer"], records["t"]))
        if np.any(np.diff(order) < 0):
            stats["sorted"] = True
        records = records[order]
        truth = truth[order] if truth is not None else None
    schema.validate(records, fmt.kind, f"{format}:{','.join(meta['files'])[:200]}")
    return Imported(records, fmt.kind, truth, stats, meta)


def read(format: str, paths, **opts) -> tuple[np.ndarray, str, np.ndarray | None]:
    """``(records, kind, truth)`` of ``paths`` in ``format`` (truth aligned with records, or None)."""
    imp = read_full(format, paths, **opts)
    return imp.records, imp.kind, imp.truth


def truth_table(truth: np.ndarray, meta: dict) -> pa.Table:
    """Truth array -> pyarrow Table (with session and carriage names in the metadata)."""
    tab = pa.table({n: truth[n] for n in TRUTH_DTYPE.names})
    md = {"proxitrace.kind": "truth", "proxitrace.sessions": json.dumps(meta.get("sessions", []))}
    return tab.replace_schema_metadata(md)


def read_truth(path) -> tuple[np.ndarray, dict]:
    """Read a ``truth.parquet`` written by :func:`import_files` -> (TRUTH_DTYPE array, meta)."""
    tab = pq.read_table(path)
    out = np.empty(tab.num_rows, dtype=TRUTH_DTYPE)
    for n in TRUTH_DTYPE.names:
        out[n] = tab.column(n).to_numpy(zero_copy_only=False)
    md = tab.schema.metadata or {}
    return out, {"sessions": json.loads(md.get(b"proxitrace.sessions", b"[]"))}


def import_files(format: str, paths, out_dir, *, sort: bool = False) -> dict:
    """Convert ``paths`` to ``out_dir/{sightings|windows}.parquet`` (+ ``truth.parquet`` where the data
    has truth, + ``import.json`` with the stats). Streams chunk by chunk (bounded memory) unless
    ``sort`` is set; every file is written atomically (temporary file, then rename), and nothing is
    left behind when reading fails half-way. Returns the summary dict written to ``import.json``.
    """
    out_dir = Path(out_dir)
    fmt = FORMATS.get(format)
    if fmt is None:
        raise ValueError(f"unknown format {format!r}; known: {', '.join(FORMATS)}")
    rec_path = out_dir / f"{fmt.kind}.parquet"
    truth_path = out_dir / "truth.parquet"
    if sort:
        imp = read_full(format, paths, sort=True)
        stats, meta = imp.stats, imp.meta
        schema.write_parquet(rec_path, imp.records, fmt.kind, meta={"format": format})
        has_truth = imp.truth is not None
        if has_truth:
            with schema.atomic_path(truth_path) as tmp:
                pq.write_table(truth_table(imp.truth, meta), tmp, compression="zstd")
        rows = len(imp.records)
    else:
        fmt, stats, meta, chunks = iter_chunks(format, paths)
        truth_rows, tw, ttmp = 0, None, None
        has_truth = False
        # both files are renamed into place only if everything succeeded (atomic_path, ParquetAppender)
        with contextlib.ExitStack() as stack:
            app = stack.enter_context(schema.ParquetAppender(rec_path, fmt.kind, meta={"format": format}))
            for ch in chunks:
                app.write(ch.records)
                if ch.truth is not None or tw is not None:
                    if tw is None:
                        ttmp = stack.enter_context(schema.atomic_path(truth_path))
                        tw = stack.enter_context(pq.ParquetWriter(ttmp, truth_table(_truth(0), {}).schema,
                                                                  compression="zstd"))
                        if truth_rows < app.rows - len(ch.records):
                            tw.write_table(truth_table(_truth(app.rows - len(ch.records)), {}))
                    tr = ch.truth if ch.truth is not None else _truth(len(ch.records))
                    tw.write_table(truth_table(tr, {}))
                truth_rows = app.rows
            rows = app.rows
            if tw is not None:
                tw.close()
                # rewrite the metadata (session names are only complete now): small table
                tab = pq.read_table(ttmp)
                pq.write_table(tab.replace_schema_metadata(truth_table(_truth(0), meta).schema.metadata),
                               ttmp, compression="zstd")
                has_truth = True
    summary = {"format": format, "kind": fmt.kind, "records": int(rows),
               "records_file": rec_path.name, "truth_file": truth_path.name if has_truth else None,
               "stats": stats, "files": meta.get("files", [])}
    extra = {k: v for k, v in meta.items() if k not in ("files", "handset_pairs")}
    summary["meta"] = extra
    schema.write_text_atomic(out_dir / "import.json", json.dumps(summary, indent=2, default=str) + "\n")
    if not has_truth and truth_path.exists():
        truth_path.unlink()
    return summary
