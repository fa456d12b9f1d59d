"""``proxitrace simulate``: run the agent simulation and write a run folder (see ``sim.run``)."""
from __future__ import annotations

import argparse
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "simulate", help="simulate a province or scenario and write BLE windows + ground truth",
        description="Simulate a synthetic population (province preset or TOML scenario) and write "
                    "population.parquet, keys.parquet, windows/day-NNN.parquet, ground_truth.parquet and "
                    "run.json into --out.")
    p.add_argument("--preset", default=None,
                   help="province preset: lang-son, nam-dinh, dak-lak, khanh-hoa (default lang-son unless "
                        "--scenario is given)")
    p.add_argument("--scenario", default=None, help="TOML scenario file (may name a preset itself)")
    p.add_argument("--scale", type=float, default=None, help="fraction of the province's population "
                                                             "(e.g. 0.01)")
    p.add_argument("--days", type=int, default=1, help="days to simulate (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--debug", action="store_true", help="tracebacks instead of one-line errors")
    p.set_defaults(func=_run)
    register_validate(subparsers)


def _run(args: argparse.Namespace) -> int:
    from ble.schema import check_out_path
    from sim.run import simulate
    if args.scale is not None and not args.scale > 0:
        raise ValueError(f"--scale must be > 0, got {args.scale}")
    if args.days < 1:
        raise ValueError(f"--days must be >= 1, got {args.days}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    check_out_path("--out", args.out, "folder")
    scn = _scenario(args)
    if args.scale is None and not args.scenario:
        print(f"proxitrace simulate: warning: no --scale: the whole province, {scn.n_agents:,} agents "
              f"x {args.days} day(s) (e.g. --scale 0.01 for 1%)", file=sys.stderr, flush=True)
    out = simulate(scn, args.out, seed=args.seed, days=args.days, progress=not args.no_progress)
    print(out)
    return 0


def register_validate(subparsers) -> None:
    """``proxitrace validate``: simulated contacts by age and setting against Prem 2021 (``sim.validate``)."""
    p = subparsers.add_parser(
        "validate", help="compare the simulated contact structure with Prem 2021 and census households",
        description="Simulate a weekday, a Saturday and a Sunday of a preset or scenario and write "
                    "contacts_by_age.csv (mean partners per person-day within 2 m, any duration and >= 15 min, "
                    "per setting and age group, with Prem et al. 2021's reference), matrices.csv, "
                    "households.csv, validation.json and validation.png into --out.")
    p.add_argument("--preset", default=None, help="province preset (default lang-son unless --scenario)")
    p.add_argument("--scenario", default=None, help="TOML scenario file (may name a preset itself)")
    p.add_argument("--scale", type=float, default=None, help="fraction of the population (default 0.01)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--prem-dir", default=None,
                   help="folder with Prem 2021 CSVs all/home/school/work/community.csv (default: the optional "
                        "package starsim-data, for the scenario's meta.country, default Vietnam)")
    p.add_argument("--out", required=True, help="folder to write")
    p.add_argument("--debug", action="store_true", help="tracebacks instead of one-line errors")
    p.set_defaults(func=_run_validate)


def _scenario(args):
    from sim.scenario import load_scenario, preset
    if args.scale is not None and not args.scale > 0:
        raise ValueError(f"--scale must be > 0, got {args.scale}")
    if args.scenario:
        over = {}
        if args.preset:
            over["preset"] = args.preset
        if args.scale is not None:
            over["scale"] = args.scale
        return load_scenario(args.scenario, overrides=over or None)
    return preset(args.preset or "lang-son", args.scale if args.scale is not None else 1.0)


def _run_validate(args: argparse.Namespace) -> int:
    from sim.validate_report import validate
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.scale is None and not args.scenario:
        args.scale = 0.01
    scn = _scenario(args)
    s = validate(scn, args.out, seed=args.seed, prem_dir=args.prem_dir)
    c = s["checks"]
    print(f"{scn.name} x{scn.scale:g} ({s['n_agents']} agents): close contacts (>= 15 min within 2 m) per "
          f"person-day {c['all_ages']['simulated']:.2f} vs Prem {c['all_ages']['prem']:.2f} "
          f"({c['all_ages']['rel_diff']:+.0%}); households ok: {c['households']['ok']}")
    print(args.out)
    return 0
