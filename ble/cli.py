"""``proxitrace import``, ``proxitrace capture`` and ``proxitrace calibrate``.

Registered through ``tracing.cli.COMMANDS``; the heavy modules are imported only when a command runs.
"""
from __future__ import annotations

from ble.formats import FORMATS, import_files   # light (numpy + pyarrow): loaded at every start
from ble.schema import check_out_path

__all__ = ["register"]


def _import(args) -> int:
    check_out_path("--out", args.out, "folder")
    summary = import_files(args.format, args.files, args.out, sort=args.sort)
    st = summary["stats"]
    print(f"imported {summary['records']} {summary['kind']} from {st['files']} file(s) "
          f"({st['rows_read']} rows read; dropped {st['rssi_sentinel']} sentinel RSSI "
          f"(127/999/-127) and {st['rssi_missing']} missing RSSI; TX -999 -> NaN in {st['tx_sentinel']} rows, "
          f"TX unknown in {st['tx_unknown']} kept rows)"
          f" -> {args.out}/{summary['records_file']}"
          + (f" + {summary['truth_file']}" if summary["truth_file"] else ""))
    return 0


def _capture(args) -> int:
    from ble import capture   # lazy: loads numba (ble.ids); only this command needs it
    return capture.main(args)


def _calibrate(args) -> int:
    check_out_path("--out", args.out, "file")          # before the fit, not after it
    if args.report is not None:
        check_out_path("--report", args.report, "file")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    from ble import calibration   # lazy: loads scipy and numba; only this command needs it
    report = calibration.calibrate(args.data, args.out, report_path=args.report, seed=args.seed)
    print(calibration.format_report(report))
    return 0


def register(subparsers) -> None:
    """Add ``import``, ``capture`` and ``calibrate`` to the ``proxitrace`` sub-command parser."""
    p = subparsers.add_parser(
        "import", help="convert real BLE logs to proxitrace Parquet records",
        description="Read real BLE log files and write DIR/sightings.parquet or DIR/windows.parquet, "
                    "DIR/truth.parquet where the data has true distances, and DIR/import.json "
                    "(row counts, sentinel values dropped). Formats: "
                    + "; ".join(f"{f.name}: {f.doc}" for f in FORMATS.values()))
    p.add_argument("--format", required=True, choices=sorted(FORMATS), help="input format")
    p.add_argument("files", nargs="+", metavar="FILE", help="input files (or the data set's folder)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--sort", action="store_true",
                   help="sort sightings by time instead of rejecting files whose timestamps go backwards")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_import)

    c = subparsers.add_parser(
        "capture", help="record BLE advertisements with bleak",
        description="Scan for BLE advertisements through bleak and record every one (time, salted "
                    "SHA-256 of the address, RSSI, TX power, service UUIDs and data) as sightings, "
                    "flushing to an append-only journal as it goes so that Ctrl-C or SIGTERM loses "
                    "nothing. "
                    "Exit status 2 with a one-line explanation where there is no adapter or no D-Bus.")
    c.add_argument("--duration", type=float, required=True, metavar="S", help="seconds to scan")
    c.add_argument("--out", required=True, metavar="FILE",
                   help="sightings Parquet file (raw payloads go to FILE with suffix .raw.parquet)")
    c.add_argument("--service", choices=("bluezone", "gaen", "any"), default="any",
                   help="advertisements to keep: Bluezone (0x4E56 / company 8885), GAEN (0xFD6F) or any")
    c.add_argument("--keep-payloads", action="store_true",
                   help="also keep the raw payload (service UUIDs, service and manufacturer data) of every "
                        "other nearby device in FILE.raw.parquet; by default only Bluezone/GAEN payloads, "
                        "what tracing needs, are kept")
    c.add_argument("--active", action="store_true",
                   help="active scanning (sends scan requests); default passive where the OS allows")
    c.add_argument("--observer", type=int, default=0, help="device index written as observer (default 0)")
    c.add_argument("--adapter", default=None, help="BlueZ adapter, e.g. hci0")
    c.add_argument("--debug", action="store_true", help="show tracebacks")
    c.set_defaults(func=_capture)

    k = subparsers.add_parser(
        "calibrate", help="fit the radio model on labelled RSSI data, evaluate on held-out files",
        description="Fit the radio model (ble.radio.fit_radio) on labelled RSSI-vs-distance data and "
                    "evaluate it on held-out recording sessions (never random rows): RMSE of RSSI (dB) "
                    "and the 2 m classifier's sensitivity, specificity and AUC, per data set, beside "
                    "the default parameters. Writes the parameters fitted on all data as a TOML "
                    "[radio] table, read by 'replay --radio' and usable as a 'simulate --scenario' "
                    "overlay; the full report goes to a JSON file beside it.")
    k.add_argument("--data", nargs="+", required=True, metavar="DIR|FILE.csv",
                   help="data folders (mit-matrix-data, herald-edison-rssi, pcng-rss-smartphone, or "
                        "the shared data folder holding them) and/or labelled CSV files (columns rssi, "
                        "distance_m; optional t, tx_power, carriage_tx/rx, platform_tx/rx, device_tx/rx, "
                        "session)")
    k.add_argument("--out", required=True, metavar="PARAMS.toml", help="fitted parameters (TOML)")
    k.add_argument("--report", default=None, metavar="JSON",
                   help="held-out evaluation report (default: beside --out, .json)")
    k.add_argument("--seed", type=int, default=0, help="seed (fold order only)")
    k.add_argument("--debug", action="store_true", help="show tracebacks")
    k.set_defaults(func=_calibrate)

