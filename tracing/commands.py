"""The tracing commands of ``proxitrace``: ``coverage`` and ``sweep`` (coverage-vs-adoption analyses,
:mod:`tracing.sweep.adoption`) and ``replay`` (real logs, :mod:`tracing.replay`)."""
from __future__ import annotations

import argparse

from ble.formats import FORMATS
from sim.strategies import STRATEGIES

__all__ = ["register", "format_summary", "check_args"]


def _common(p: argparse.ArgumentParser, replicates: int, multi: bool = False) -> None:
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--adoption", default="0:1:0.05",
                   help="adoption levels (fraction of the population): START:STOP:STEP or a comma "
                        "list (default 0:1:0.05)")
    p.add_argument("--replicates", type=int, default=replicates, help=f"replicates (default "
                   f"{replicates})")
    p.add_argument("--seed", type=int, default=0, help="master seed (default 0)")
    if multi:
        p.add_argument("--strategy", default="uniform",
                       help=f"adoption strategy, or several as a comma list ({', '.join(STRATEGIES)}; "
                            "default uniform)")
    else:
        p.add_argument("--strategy", default="uniform", choices=STRATEGIES,
                       help="adoption strategy (default uniform)")
    p.add_argument("--index-cases", type=int, default=None,
                   help="index cases per replicate, over the whole population, app or not (default: "
                        "10%% of the population, at most 200)")
    p.add_argument("--index-cases-from", default="uniform", choices=("uniform", "contacts"),
                   help="how index cases are drawn: uniform (default) or in proportion to their number "
                        "of true close contacts (a proxy for who gets infected)")
    p.add_argument("--target", type=float, default=0.5,
                   help="F1 coverage target for the coverage_target threshold (default 0.5)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show tracebacks")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "coverage", help="coverage vs adoption on an external contact list",
        description="F1/F2 notification coverage, precision, percolation and thresholds vs adoption "
                    "for a contact list (CSV i,j[,t,duration_s,detected] or SocioPatterns t i j).")
    p.add_argument("--contacts", required=True, help="contact list file (may be .gz)")
    p.add_argument("--format", default="csv", choices=("csv", "sociopatterns"),
                   help="csv: columns i,j[,t,duration_s,detected] with a header; sociopatterns: the "
                        "'t i j' lines of SocioPatterns contact files (20 s each) (default csv)")
    p.add_argument("--close-minutes", type=float, default=15.0,
                   help="cumulative minutes per day for a true close contact (default 15)")
    p.add_argument("--notify-minutes", type=float, default=0.0,
                   help="detected minutes per day for the app to notify a contact (default 0: any "
                        "detected contact notifies, as Bluezone; e.g. 15 for a duration-filtering app)")
    _common(p, replicates=20)
    p.set_defaults(func=_run_coverage)

    s = subparsers.add_parser(
        "sweep", help="adoption sweep over simulated provinces",
        description="Simulate a province per replicate (resumable), trace with a rule, and compute "
                    "coverage vs adoption, thresholds, plots and a report.")
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", help="province preset (lang-son, nam-dinh, dak-lak, khanh-hoa), several "
                                    "as a comma list, or 'all'")
    g.add_argument("--scenario", help="scenario TOML file (several: a comma list)")
    s.add_argument("--scale", type=float, default=None,
                   help="population scale (default 0.01 for presets; a scenario file's own scale)")
    s.add_argument("--days", type=int, default=3, help="simulated days (default 3)")
    s.add_argument("--rule", default="bluezone", help="close-contact rule (default bluezone; 'ideal' "
                                                      "warns exactly the true close contacts)")
    s.add_argument("--phone-owners", default=None, metavar="FRACTION[,FRACTION...]",
                   help="share of the WHOLE population owning a smartphone (scenario key "
                        "phones.owner_share; the preset's age gradient kept), e.g. 0.775 for Lạng Sơn's "
                        "letter (605,768 smartphone users of 781,655 people); several as a comma list, "
                        "'preset' for the scenario's own (default: the scenario's own)")
    s.add_argument("--allow-phoneless", action="store_true",
                   help="let agents without a smartphone be drawn as adopters (by default only "
                        "owners can run the app, whatever the strategy)")
    s.add_argument("--resume", action="store_true",
                   help="reuse every finished work unit in --out whose parameters' hash matches "
                        "(simulated runs are always reused); e.g. after a crash or a kill")
    s.add_argument("--dask", metavar="ADDRESS", default=None,
                   help="run the work units on a Dask scheduler (tcp://host:8786), or 'local' for a "
                        "LocalCluster of --workers processes; default: in this process. The output "
                        "folder must be shared with the workers")
    s.add_argument("--workers", type=int, default=2,
                   help="worker processes of --dask local (one thread each; default 2)")
    s.add_argument("--epidemic", action="store_true",
                   help="also run the epidemic closed loop on every replicate: a fresh epidemic per "
                        "adoption level (common random numbers) on a replayed contact cycle of >= 14 "
                        "distinct simulated days (a separate 14-day run per replicate when --days < 14), "
                        "the rule beside the ideal rule: epidemic.csv (attack rate, R_eff with interval, "
                        "isolation-days), epidemic_daily.csv, epidemic.png, r_below_one in threshold.json; "
                        "parameters from the scenario's [epidemic] table")
    s.add_argument("--channels", default="ble",
                   help="notification channels: ble, qr or ble,qr (QR venue check-in; with qr also "
                        "channels.csv/.png per channel; default ble)")
    _common(s, replicates=4, multi=True)
    s.set_defaults(func=_run_sweep)
    _register_replay(subparsers)


def _finish(res: dict, out: str) -> int:
    print(res["answer"])
    combos = res.get("combinations") or {}
    if len(combos) > 1:
        print(f"outputs: {out}/ (thresholds.csv, comparison.csv, comparison.png) and one folder per "
              f"scenario/strategy: " + ", ".join(f"{a}/{b}/" for a, b in combos))
    else:
        print(f"outputs: {out}/ (coverage.csv, summary.csv, threshold.json, coverage.png, "
              f"percolation.png, report.md)")
    return 0


def check_args(args) -> None:
    """Every argument of ``coverage``, ``sweep`` and ``replay`` checked before any work is planned: a
    ``ValueError`` of one line naming the argument (options absent from ``args`` are skipped)."""
    from pathlib import Path

    from tracing.core.checks import check_fraction, check_int, check_out_path, check_positive, check_seed
    from tracing.sweep.plan import parse_adoption  # the sweep stack: loaded when a command runs
    a = vars(args)
    check_out_path("--out", args.out, "folder")
    if "adoption" in a:
        parse_adoption(args.adoption)
    if "replicates" in a:
        check_int("--replicates", args.replicates, minimum=1)
    if "seed" in a:
        check_seed("--seed", args.seed)
    if a.get("index_cases") is not None:
        check_int("--index-cases", args.index_cases, minimum=1)
    if "target" in a:
        check_fraction("--target", args.target, open_low=True)
    if a.get("scale") is not None:
        check_positive("--scale", args.scale)
    if "days" in a:
        check_int("--days", args.days, minimum=1)
    if "workers" in a:
        check_int("--workers", args.workers, minimum=1)
    if "close_minutes" in a:
        check_positive("--close-minutes", args.close_minutes)
    if "notify_minutes" in a:
        check_positive("--notify-minutes", args.notify_minutes, allow_zero=True)
    if "close_m" in a:
        check_positive("--close-m", args.close_m)
    for opt in ("contacts", "radio", "bluezone_keys"):
        if a.get(opt) is not None and not Path(a[opt]).is_file():
            raise ValueError(f"--{opt.replace('_', '-')} {a[opt]}: no such file")


def _run_coverage(args) -> int:
    check_args(args)
    # the analysis stack (scipy.stats, matplotlib) loads when a command runs, not for `proxitrace --help`
    from tracing.sweep.adoption import coverage_from_contacts
    res = coverage_from_contacts(args.contacts, args.out, format=args.format, adoption=args.adoption,
                                 replicates=args.replicates, seed=args.seed, strategy=args.strategy,
                                 index_cases=args.index_cases, target=args.target,
                                 close_minutes=args.close_minutes, progress=not args.no_progress,
                                 notify_minutes=args.notify_minutes, index_from=args.index_cases_from)
    return _finish(res, args.out)


def _run_sweep(args) -> int:
    check_args(args)
    from tracing.sweep.adoption import sweep  # heavy: see _run_coverage
    res = sweep(args.out, preset=args.preset, scenario=args.scenario, scale=args.scale,
                days=args.days, rule=args.rule, strategy=args.strategy, replicates=args.replicates,
                seed=args.seed, adoption=args.adoption, index_cases=args.index_cases,
                target=args.target, phones_only=not args.allow_phoneless,
                progress=not args.no_progress, resume=args.resume, dask=args.dask,
                workers=args.workers, epidemic=args.epidemic, channels=args.channels,
                phone_owners=args.phone_owners, index_from=args.index_cases_from)
    return _finish(res, args.out)


def _run_replay(args) -> int:
    check_args(args)
    from tracing.replay import replay  # heavy: see _run_coverage
    report = replay(args.format, args.files, args.rule, args.out, radio_path=args.radio,
                    close_m=args.close_m, sort=args.sort, bluezone_keys=args.bluezone_keys,
                    cadence=args.cadence)
    print(format_summary(report))
    return 0


def format_summary(report: dict) -> str:
    """A few lines for the terminal: units, and per rule notified (+ confusion where known)."""
    lines = [f"replayed {report['records']} {report['kind']} -> {report['windows']} windows, "
             f"{report['units']} (observer, source, day) units"]
    if report["truth"]:
        t = report["truth"]
        lines.append(f"truth: {t['positives']} within {t['close_m']} m, {t['negatives']} farther")
    for name, r in report["rules"].items():
        s = f"  {name:<14} notified {r['notified']:>6}"
        if "tp" in r:
            s += (f"  tp {r['tp']} fp {r['fp']} fn {r['fn']} tn {r['tn']}  precision {r['precision']}"
                  f"  recall {r['recall']}")
        lines.append(s)
    if "tram" in report:
        tr = report["tram"]
        for name, row in tr["rules"].items():
            if "authors" in row:
                lines.append(f"  tram {name}: notified {row['notified']} of {tr['placements']} placements "
                             f"(TPR {row['tpr']}, FPR {row['fpr']}); authors: {row['authors']['statement']}")
    return "\n".join(lines)


def _register_replay(subparsers) -> None:
    """Add ``replay`` to the ``proxitrace`` sub-command parser."""
    p = subparsers.add_parser(
        "replay", help="run the tracing core on real BLE logs",
        description="Import real logs, aggregate them into exposure windows, sum them per (observer, "
                    "source, day) and apply close-contact rules; writes DIR/contacts.csv and "
                    "DIR/report.json (with confusion counts against 'within 2 m' where the data has "
                    "true distances; on the Dublin tram data, the authors' reported numbers beside).")
    p.add_argument("--format", required=True, choices=sorted(FORMATS),
                   help="input format: " + "; ".join(f"{f.name}: {f.doc}" for f in FORMATS.values()))
    p.add_argument("files", nargs="+", metavar="FILE", help="log files of that format (or the data set's folder)")
    p.add_argument("--rule", required=True, metavar="NAME[,NAME...]",
                   help="rule names (bluezone, gaen-de, gaen-ch, gaen-it, distance, 'name:option') or TOML paths")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: contacts.csv, pairs.csv, report.json (replaced together at the end)")
    p.add_argument("--radio", default=None, metavar="PARAMS.toml",
                   help="radio parameters (from 'proxitrace calibrate'): TX for attenuation, distance rules")
    p.add_argument("--close-m", type=float, default=2.0, help="true-contact distance, m (default 2)")
    p.add_argument("--sort", action="store_true", help="sort out-of-order logs instead of rejecting them")
    p.add_argument("--cadence", default=None, choices=("periodic-300", "opentrace", "continuous"),
                   help="how the scanner logged (ble.windows.CADENCES): each sighting is credited the time "
                        "since the previous one up to the cadence's cap; default: the format's own")
    p.add_argument("--bluezone-keys", default=None, metavar="CSV",
                   help="published Bluezone daily keys (source,day_start_s,daily_key hex): their IDs are "
                        "matched slot by slot and attributed to the source device")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.set_defaults(func=_run_replay)
