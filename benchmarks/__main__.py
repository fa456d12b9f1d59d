"""``python -m benchmarks [NAMES...] [--quick] [--json FILE] [--plot FILE] [--repeat N] [--max-size N] [--variant TEXT]``."""
from __future__ import annotations

import argparse
import sys

from benchmarks import BENCHMARKS
from benchmarks._core import plot, run, write_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    ap.add_argument("names", nargs="*", metavar="NAME", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default all)")
    ap.add_argument("--quick", action="store_true", help="small sizes only (well under a minute)")
    ap.add_argument("--json", metavar="FILE", help="write results and environment as JSON")
    ap.add_argument("--plot", metavar="FILE", help="write the log-log scaling plot (PNG)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="timed repetitions per implementation (default 5, --quick 3)")
    ap.add_argument("--max-size", type=int, default=None, metavar="N",
                    help="skip cases whose size exceeds N (e.g. the 10^6-agent simulation day)")
    ap.add_argument("--variant", default=None, metavar="TEXT",
                    help="run only the cases whose variant contains TEXT (e.g. synthetic, analysis-memory)")
    args = ap.parse_args(argv)
    repeat = args.repeat or (3 if args.quick else 5)
    if repeat < 1:
        ap.error("--repeat must be >= 1")
    rows = run(args.names, args.quick, repeat, log=lambda s: print(s, flush=True), max_size=args.max_size,
               variant=args.variant)
    if args.json:
        write_json(args.json, rows, args.quick)
        print(f"wrote {args.json}")
    if args.plot:
        plot(args.plot, rows)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
