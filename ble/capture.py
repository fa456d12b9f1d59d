"""Real BLE capture through ``bleak`` (``proxitrace capture``).

Every advertisement the scanner reports is recorded as a sighting (``ble.schema.SIGHTING_DTYPE``):

- ``t``: reception time, UNIX epoch seconds (``time.time()`` in the detection callback);
- ``observer``: ``--observer`` (default 0; this machine);
- ``rid``: the advertised rolling ID where one is present -- Bluezone: the 12-byte ID carried in
  manufacturer data of company 8885 (or service data of UUID 0x4E56); GAEN: the 16-byte Rolling
  Proximity Identifier at the start of the 0xFD6F service data -- turned into ``uint64`` by
  :func:`ble.ids.id_to_u64`; otherwise the first 8 bytes of the salted address hash (below);
- ``rssi`` (dBm) and ``tx_power`` (dBm, NaN when not advertised).

Privacy: the Bluetooth address is **never stored**. It is hashed with SHA-256 together with a random
32-byte salt drawn for this capture only; the salt lives in memory and is discarded at the end, so
the hashes link sightings within one capture but cannot be reversed by hashing candidate addresses.
Local names are not stored either.

Files: ``--out FILE`` (Parquet sightings) and ``FILE`` with suffix ``.raw.parquet`` (side table: ``t``,
``rid``, ``addr_hash``, ``service`` -- "bluezone", "gaen" or "" --, ``payload``: service UUIDs,
service data and manufacturer data as text ``uuids=…;sd:<uuid>=<hex>;md:<company>=<hex>``). By
default the payload is kept only for Bluezone and GAEN advertisements (what tracing reads); other
devices' payloads (fitness bands, headphones, beacons...) are left empty unless ``--keep-payloads``
(``keep_payloads=True``) asks for every device's raw payload.
While scanning, rows go to an append-only CSV journal ``FILE.journal.csv`` (columns
:data:`ble.formats.JOURNAL_COLUMNS`), flushed and fsync'ed about once a second; at the end -- also
after Ctrl-C -- the journal is converted to the two Parquet files (atomically) and removed. If the
process is killed before that, ``proxitrace import --format capture FILE.journal.csv`` reads it.
SIGTERM (``kill``, a service manager stopping the capture) is handled like Ctrl-C: the scan stops and
everything received is saved (through the event loop's signal handler, which sets an event, not an
exception raised inside whichever task is running).

Scanning mode: passive (no scan requests) unless ``--active``. BlueZ only scans passively with
advertisement-monitor patterns, which this module builds for ``--service bluezone`` / ``gaen``; for
``--service any`` (and on macOS, which has no passive mode) it scans actively and says so.

No adapter / no D-Bus: bleak raises ``FileNotFoundError`` (no system bus socket), ``BleakDBusError``,
``BleakError`` or ``OSError``; the command then exits with status 2 and one line of explanation.
"""
from __future__ import annotations

import asyncio
import csv
import hashlib
import os
import secrets
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from ble import schema
from ble.formats import JOURNAL_COLUMNS
from ble.ids import id_to_u64

__all__ = ["BLUEZONE_UUID16", "BLUEZONE_COMPANY", "BLUEZONE_ID_LEN", "GAEN_UUID16", "GAEN_RPI_LEN",
           "START_TIMEOUT_S", "FLUSH_INTERVAL_S", "uuid16", "BLUEZONE_UUID", "GAEN_UUID", "CaptureError",
           "classify_advertisement", "CaptureWriter", "convert_journal", "scanning_plan",
           "bleak_scanner_factory", "capture", "main"]

BLUEZONE_UUID16 = 0x4E56      #: Bluezone's 16-bit service UUID ("VN"), PROTOCOLS.md
BLUEZONE_COMPANY = 8885       #: manufacturer-data company ID carrying Bluezone's 12-byte ID
BLUEZONE_ID_LEN = 12          #: bytes
GAEN_UUID16 = 0xFD6F          #: Exposure Notification service UUID
GAEN_RPI_LEN = 16             #: bytes of the RPI at the start of the 0xFD6F service data
START_TIMEOUT_S = 15.0        #: s to wait for the adapter to start scanning
FLUSH_INTERVAL_S = 1.0        #: s between journal flushes


def uuid16(u: int) -> str:
    """Full 128-bit Bluetooth base UUID string of a 16-bit UUID (lower case, as bleak reports it)."""
    return f"0000{u:04x}-0000-1000-8000-00805f9b34fb"


BLUEZONE_UUID = uuid16(BLUEZONE_UUID16)
GAEN_UUID = uuid16(GAEN_UUID16)


class CaptureError(RuntimeError):
    """Capture impossible on this machine (no adapter, no D-Bus, ...); the message is one line."""


def classify_advertisement(service_uuids, service_data: dict, manufacturer_data: dict):
    """``(service, id_bytes)``: "bluezone" / "gaen" / "" and the advertised rolling ID (or None)."""
    uuids = {str(u).lower() for u in (service_uuids or ())}
    sd = {str(k).lower(): bytes(v) for k, v in (service_data or {}).items()}
    md = {int(k): bytes(v) for k, v in (manufacturer_data or {}).items()}
    if GAEN_UUID in sd and len(sd[GAEN_UUID]) >= GAEN_RPI_LEN:
        return "gaen", sd[GAEN_UUID][:GAEN_RPI_LEN]
    if BLUEZONE_COMPANY in md and len(md[BLUEZONE_COMPANY]) >= BLUEZONE_ID_LEN:
        return "bluezone", md[BLUEZONE_COMPANY][:BLUEZONE_ID_LEN]
    if BLUEZONE_UUID in sd and len(sd[BLUEZONE_UUID]) >= BLUEZONE_ID_LEN:
        return "bluezone", sd[BLUEZONE_UUID][:BLUEZONE_ID_LEN]
    if GAEN_UUID in uuids or GAEN_UUID in sd:
        return "gaen", None
    if BLUEZONE_UUID in uuids or BLUEZONE_COMPANY in md or BLUEZONE_UUID in sd:
        return "bluezone", None
    return "", None


def _payload_text(service_uuids, service_data, manufacturer_data) -> str:
    parts = []
    if service_uuids:
        parts.append("uuids=" + " ".join(sorted(str(u).lower() for u in service_uuids)))
    for k, v in sorted((service_data or {}).items()):
        parts.append(f"sd:{str(k).lower()}={bytes(v).hex()}")
    for k, v in sorted((manufacturer_data or {}).items()):
        parts.append(f"md:{int(k)}={bytes(v).hex()}")
    return ";".join(parts)


class CaptureWriter:
    """Append-only journal of advertisements, converted to Parquet by :meth:`close`.

    ``add`` is called from the detection callback (one row per advertisement); rows are buffered and
    written to the journal every ``flush_interval_s`` (and on ``close``), with ``fsync``.
    """

    def __init__(self, out, *, observer: int = 0, service: str = "any", salt: bytes | None = None,
                 flush_interval_s: float = FLUSH_INTERVAL_S, clock: Callable[[], float] = time.time,
                 meta: dict | None = None, keep_payloads: bool = False):
        if service not in ("bluezone", "gaen", "any"):
            raise ValueError(f"service must be bluezone, gaen or any, got {service!r}")
        self.out = Path(out)
        self.raw_out = self.out.with_suffix(".raw.parquet")
        self.journal = self.out.with_name(self.out.name + ".journal.csv")
        self.observer, self.service = int(observer), service
        self.keep_payloads = bool(keep_payloads)   # other devices' raw payloads too (not needed by tracing)
        self._salt = salt if salt is not None else secrets.token_bytes(32)
        self.flush_interval_s, self.clock = float(flush_interval_s), clock
        self.meta = dict(meta or {})
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.journal, "w", newline="", encoding="utf-8")
        self._csv = csv.writer(self._fh, lineterminator="\n")
        self._csv.writerow(JOURNAL_COLUMNS)
        self._buf: list = []
        self._last_flush = self.clock()
        self.seen = 0        # advertisements received
        self.kept = 0        # advertisements recorded (service filter)
        self.by_service = {"bluezone": 0, "gaen": 0, "": 0}
        self.t_first = self.t_last = None

    def address_hash(self, address: str) -> bytes:
        """SHA-256(salt ‖ upper-case address), 32 bytes."""
        return hashlib.sha256(self._salt + str(address).upper().encode()).digest()

    def add(self, address, rssi, tx_power=None, service_uuids=(), service_data=None,
            manufacturer_data=None, t: float | None = None) -> bool:
        """Record one advertisement (RSSI, TX in dBm; ``t`` in s, default now). Returns whether kept."""
        self.seen += 1
        svc, idb = classify_advertisement(service_uuids, service_data, manufacturer_data)
        if self.service != "any" and svc != self.service:
            return False
        t = self.clock() if t is None else float(t)
        h = self.address_hash(address)
        rid = int(id_to_u64(idb)) if idb is not None else int.from_bytes(h[:8], "big")
        tx = "" if tx_power is None else f"{float(tx_power):g}"
        payload = _payload_text(service_uuids, service_data, manufacturer_data) if svc or self.keep_payloads else ""
        self._buf.append([f"{t:.6f}", self.observer, rid, f"{float(rssi):g}", tx, h[:16].hex(), svc, payload])
        self.kept += 1
        self.by_service[svc] += 1
        self.t_first = t if self.t_first is None else self.t_first
        self.t_last = t
        if self.clock() - self._last_flush >= self.flush_interval_s:
            self.flush()
        return True

    def flush(self) -> None:
        """Write buffered rows to the journal and fsync it."""
        if self._buf:
            self._csv.writerows(self._buf)
            self._buf.clear()
        self._fh.flush()
        try:
            os.fsync(self._fh.fileno())
        except OSError:
            pass
        self._last_flush = self.clock()

    def discard(self) -> None:
        """Close and delete the journal (capture never started)."""
        if not self._fh.closed:
            self._fh.close()
        self.journal.unlink(missing_ok=True)

    def close(self) -> dict:
        """Flush, convert the journal to ``out`` + ``.raw.parquet`` (atomically), remove the journal."""
        self.flush()
        self._fh.close()
        self._salt = b""            # forget the salt
        summary = convert_journal(self.journal, self.out, meta={**self.meta, "service": self.service,
                                                                "observer": self.observer})
        self.journal.unlink(missing_ok=True)
        summary.update(seen=self.seen, kept=self.kept, by_service=dict(self.by_service))
        return summary


def convert_journal(journal, out, meta: dict | None = None) -> dict:
    """Journal CSV -> sightings Parquet ``out`` + raw side table ``out.raw.parquet`` (both atomic).

    Vectorised (``pyarrow.csv``). A torn last line (process killed mid-write) is dropped and counted.
    """
    journal, out = Path(journal), Path(out)
    types = {c: pa.string() for c in JOURNAL_COLUMNS}
    types.update(t=pa.float64(), observer=pa.int64(), rid=pa.uint64(), rssi=pa.float64(),
                 tx_power=pa.float64())
    torn = 0

    def invalid_row(row):
        nonlocal torn
        torn += 1
        return "skip"
    tab = pacsv.read_csv(journal, read_options=pacsv.ReadOptions(column_names=JOURNAL_COLUMNS, skip_rows=1),
                         parse_options=pacsv.ParseOptions(invalid_row_handler=invalid_row),
                         convert_options=pacsv.ConvertOptions(column_types=types, strings_can_be_null=False,
                                                              null_values=[""]))
    n = tab.num_rows
    rec = np.empty(n, dtype=schema.SIGHTING_DTYPE)
    rec["t"] = tab.column("t").to_numpy()
    rec["observer"] = tab.column("observer").to_numpy()
    rec["rid"] = tab.column("rid").to_numpy()
    rec["rssi"] = tab.column("rssi").fill_null(np.nan).to_numpy()
    rec["tx_power"] = tab.column("tx_power").fill_null(np.nan).to_numpy()
    order = np.argsort(rec["t"], kind="stable")
    rec = rec[order]
    meta = {**(meta or {}), "rows": int(n), "torn_lines": torn}
    schema.write_parquet(out, rec, "sightings", meta={"capture": meta})
    raw = tab.select(["t", "rid", "addr_hash", "service", "payload"]).take(pa.array(order))
    raw_out = out.with_suffix(".raw.parquet")
    with schema.atomic_path(raw_out) as tmp:
        pq.write_table(raw.replace_schema_metadata({"proxitrace.kind": "capture_raw"}), tmp,
                       compression="zstd")
    return {"sightings": int(n), "out": str(out), "raw": str(raw_out), "torn_lines": torn}


# ----------------------------------------------------------------------------- scanning
def _or_patterns(service: str):
    # bleak is imported lazily (here and below): only a real scan needs it, and it loads D-Bus backends
    from bleak.args.bluez import OrPattern
    from bleak.assigned_numbers import AdvertisementDataType as T
    if service == "bluezone":
        le = BLUEZONE_UUID16.to_bytes(2, "little")
        return [OrPattern(0, T.COMPLETE_LIST_SERVICE_UUID16, le),
                OrPattern(0, T.INCOMPLETE_LIST_SERVICE_UUID16, le),
                OrPattern(0, T.SERVICE_DATA_UUID16, le),
                OrPattern(0, T.MANUFACTURER_SPECIFIC_DATA, BLUEZONE_COMPANY.to_bytes(2, "little"))]
    if service == "gaen":
        le = GAEN_UUID16.to_bytes(2, "little")
        return [OrPattern(0, T.COMPLETE_LIST_SERVICE_UUID16, le), OrPattern(0, T.SERVICE_DATA_UUID16, le)]
    return None


def scanning_plan(service: str, active: bool, platform: str = sys.platform) -> tuple[str, dict, str]:
    """``(scanning_mode, bluez_args, note)`` for bleak on this platform (see the module docstring)."""
    if active:
        return "active", {}, ""
    if platform == "darwin":
        return "active", {}, "macOS has no passive scanning: scanning actively"
    if platform.startswith("linux"):
        pats = _or_patterns(service)
        if pats is None:
            return "active", {}, ("passive scanning on BlueZ needs a service pattern (--service bluezone|gaen): "
                                  "scanning actively")
        return "passive", {"or_patterns": pats}, ""
    return "passive", {}, ""


def bleak_scanner_factory(callback, scanning_mode: str, bluez: dict):
    """A real ``bleak.BleakScanner`` (bleak >= 1: ``detection_callback``, ``scanning_mode``, ``bluez``
    with ``adapter`` / ``or_patterns``)."""
    from bleak import BleakScanner
    return BleakScanner(detection_callback=callback, scanning_mode=scanning_mode, bluez=dict(bluez))


def _bluetooth_errors() -> tuple:
    errs = [FileNotFoundError, OSError, asyncio.TimeoutError, TimeoutError]
    try:
        from bleak.exc import BleakDBusError, BleakError
        errs = [BleakError, BleakDBusError] + errs
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


def _explain(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):
        return ("no Bluetooth available: cannot reach the D-Bus system bus / BlueZ "
                f"({e.strerror or e}); is there an adapter and is bluetoothd running?")
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)):
        return f"no Bluetooth available: the adapter did not start scanning within {START_TIMEOUT_S:g} s"
    name = type(e).__name__
    msg = " ".join(str(e).split()) or name
    return f"no Bluetooth available: {name}: {msg}"


async def _scan(writer: CaptureWriter, duration_s: float, factory, scanning_mode, bluez, adapter,
                on_started=None) -> bool:
    """Scan until ``duration_s`` has passed or SIGTERM arrives; returns whether SIGTERM stopped it."""
    def on_adv(device, adv):
        writer.add(device.address, adv.rssi, adv.tx_power, adv.service_uuids, adv.service_data,
                   adv.manufacturer_data)

    # SIGTERM through the event loop: its handler only sets an event, so no exception is raised inside
    # whichever task (bleak's, a callback's) happens to run when the signal lands
    term = asyncio.Event()
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, term.set)
        watching = True
    except (NotImplementedError, RuntimeError, ValueError):     # Windows; not the main thread
        watching = False
    if adapter:
        bluez = {**bluez, "adapter": adapter}
    scanner = factory(on_adv, scanning_mode, bluez)
    try:
        try:
            await asyncio.wait_for(scanner.start(), timeout=START_TIMEOUT_S)
        except _bluetooth_errors() as e:
            raise CaptureError(_explain(e)) from e
        if on_started:
            on_started()
        try:
            end = time.monotonic() + duration_s
            while not term.is_set():
                left = end - time.monotonic()
                if left <= 0:
                    break
                try:
                    await asyncio.wait_for(term.wait(), timeout=min(left, writer.flush_interval_s))
                except asyncio.TimeoutError:
                    pass
                writer.flush()
        finally:
            try:
                await asyncio.wait_for(scanner.stop(), timeout=5.0)
            except Exception:
                pass
    finally:
        if watching:
            loop.remove_signal_handler(signal.SIGTERM)
    return term.is_set()


def capture(out, duration_s: float, *, service: str = "any", active: bool = False, observer: int = 0,
            adapter: str | None = None, scanner_factory=None, platform: str = sys.platform,
            stderr=None, keep_payloads: bool = False) -> dict:
    """Scan for ``duration_s`` seconds and write the capture files (module docstring).

    ``scanner_factory(callback, scanning_mode, bluez_args)`` builds the scanner (default: bleak);
    tests pass a fake. Raises :class:`CaptureError` (one-line message) where Bluetooth is unavailable
    -- nothing is written then. ``KeyboardInterrupt`` -- and SIGTERM, handled as one while scanning
    (main thread only) -- stops the scan; everything received is saved and the summary's
    ``interrupted`` is True. ``keep_payloads``: keep the raw payload of every device, not only of
    Bluezone/GAEN advertisements.
    """
    if not duration_s > 0:
        raise ValueError(f"--duration must be > 0 s, got {duration_s}")
    stderr = stderr if stderr is not None else sys.stderr
    mode, bluez, note = scanning_plan(service, active, platform)
    factory = scanner_factory or bleak_scanner_factory
    writer = CaptureWriter(out, observer=observer, service=service, keep_payloads=keep_payloads,
                           meta={"scanning_mode": mode, "requested_duration_s": duration_s,
                                 "started_unix_s": time.time(), "address": "sha256(per-capture salt)"})
    interrupted = False
    # removing the loop's SIGTERM handler (_scan) resets SIGTERM to SIG_DFL: put back what was there
    old_term = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        interrupted = asyncio.run(_scan(writer, duration_s, factory, mode, bluez, adapter,
                                        on_started=lambda: note and print(f"proxitrace capture: note: {note}",
                                                                          file=stderr)))
    except CaptureError:
        writer.discard()             # never started: leave nothing behind
        raise
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        writer.close()               # save what arrived, then report the failure
        raise
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    summary = writer.close()
    summary.update(interrupted=interrupted, scanning_mode=mode)
    return summary


def main(args) -> int:
    """``proxitrace capture`` entry point: returns 0, 2 (no Bluetooth) or 130 (Ctrl-C, data saved)."""
    try:
        summary = capture(args.out, args.duration, service=args.service, active=args.active,
                          observer=args.observer, adapter=args.adapter,
                          keep_payloads=getattr(args, "keep_payloads", False))
    except CaptureError as e:
        print(f"proxitrace capture: {e}", file=sys.stderr)
        return 2
    bs = summary["by_service"]
    print(f"{'interrupted: ' if summary['interrupted'] else ''}recorded {summary['sightings']} "
          f"advertisements ({bs['bluezone']} Bluezone, {bs['gaen']} GAEN, {bs['']} other; "
          f"{summary['seen']} received) -> {summary['out']} + {Path(summary['raw']).name}")
    return 130 if summary["interrupted"] else 0
