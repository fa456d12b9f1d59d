"""The ``proxitrace`` command line.

The commands live in the package that owns them (``sim.cli``: simulate; ``ble.cli``: import, capture,
calibrate; ``tracing.commands``: coverage, sweep, replay); each such module exposes
``register(subparsers)`` (adds its parsers and sets ``func`` to a callable ``args -> int``).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from tracing.version import __version__

__all__ = ["COMMANDS", "build_parser", "main"]

# command name -> module that defines register(subparsers)
COMMANDS = {
    "simulate": "sim.cli",
    "validate": "sim.cli",
    "coverage": "tracing.commands",
    "sweep": "tracing.commands",
    "import": "ble.cli",
    "capture": "ble.cli",
    "calibrate": "ble.cli",
    "replay": "tracing.commands",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="proxitrace",
        description="Bluetooth-proximity contact-tracing simulator and analytics engine.")
    parser.add_argument("--version", action="version", version=f"proxitrace {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    seen = set()
    for name, modname in COMMANDS.items():
        if modname in seen:
            continue
        importlib.import_module(modname).register(sub)
        seen.add(modname)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):      # no command: usage and status 2 (argparse's convention)
        parser.print_usage(sys.stderr)
        print("proxitrace: error: a COMMAND is required (proxitrace --help lists them)", file=sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:
        # user-facing errors (bad input, missing files) get one line, not a traceback
        if getattr(args, "debug", False):
            raise
        print(f"proxitrace {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
