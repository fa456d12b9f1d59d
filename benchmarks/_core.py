"""The benchmark harness: cases, timing, agreement checks, memory, table, JSON and plot."""
from __future__ import annotations

import gc
import importlib
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ble.schema import write_text_atomic


@dataclass
class Baseline:
    name: str
    fn: Callable[[Any], Any]
    max_size: int | None = None        # skipped above this size
    note: str = ""                     # why it is skipped / what it computes


@dataclass
class Case:
    name: str
    variant: str
    size: int
    items: int
    unit: str
    setup: Callable[[], Any]
    ours: Callable[[Any], Any]
    baselines: list[Baseline]
    agree: Callable[[Any, str, Any], None]
    repeat: int | None = None          # default: the harness's --repeat
    params: dict = field(default_factory=dict)
    details: Callable[[Any], dict] | None = None   # extra facts from ours' output -> row["details"]
    size_unit: str = ""                # what ``size`` counts, where it is not ``unit`` (the plot's x axis)


# ---------------------------------------------------------------------------------------------
# memory
# ---------------------------------------------------------------------------------------------
def _read_status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


MEMORY_METHOD = ("peak RSS during the call minus RSS before it: /proc/self/status VmHWM after "
                 "resetting it with /proc/self/clear_refs=5 (Linux)")
_HAVE_HWM = _reset_hwm() and _read_status("VmHWM") is not None
if not _HAVE_HWM:
    MEMORY_METHOD = ("resource.getrusage(RUSAGE_SELF).ru_maxrss growth during the call (process-wide "
                     "peak, only grows: a lower bound)")


def measure_peak(fn: Callable[[], Any]) -> tuple[Any, float, int]:
    """Run fn once; (result, seconds, peak extra bytes)."""
    gc.collect()
    if _HAVE_HWM:
        _reset_hwm()
        before = _read_status("VmRSS") or 0
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        peak = (_read_status("VmHWM") or 0) - before
    else:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return out, dt, max(int(peak), 0)


# ---------------------------------------------------------------------------------------------
# environment
# ---------------------------------------------------------------------------------------------
def environment() -> dict:
    import numba
    import scipy

    versions = {"python": platform.python_version(), "numpy": np.__version__,
                "numba": numba.__version__, "scipy": scipy.__version__}
    try:
        import pandas
        versions["pandas"] = pandas.__version__
    except ImportError:
        versions["pandas"] = None
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        pass
    try:
        layer = numba.threading_layer()
    except ValueError:               # no parallel kernel has run yet
        layer = None
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "threads": numba.get_num_threads(),
        "threading_layer": layer,
        "versions": versions,
        "machine": {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
                    "memory_bytes": mem, "loadavg_at_end": load},
        "memory_method": MEMORY_METHOD,
        "timer": "time.perf_counter wall clock; reps of ours and baselines interleaved",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def _stats(ts: list[float]) -> dict:
    return {"median": float(np.median(ts)), "min": float(np.min(ts)), "max": float(np.max(ts)),
            "reps": len(ts)}


def run_case(case: Case, repeat: int, log=print) -> list[dict]:
    """Time ours and the baselines on the same inputs; return one row per baseline (or one row with
    baseline None where no baseline runs at this size)."""
    load_before = _load1()
    inputs = case.setup()
    active = [b for b in case.baselines if b.max_size is None or case.size <= b.max_size]
    skipped = [b for b in case.baselines if b not in active]
    reps = case.repeat or repeat
    times = {"ours": []}
    mem = {}
    # first repetition: also the agreement check and the memory measurement
    out, dt, mem["ours"] = measure_peak(lambda: case.ours(inputs))
    times["ours"].append(dt)
    details = case.details(out) if case.details is not None else {}
    for b in active:
        bout, dt, mem[b.name] = measure_peak(lambda: b.fn(inputs))
        times[b.name] = [dt]
        case.agree(out, b.name, bout)         # raises AssertionError on disagreement
        del bout
    del out
    gc.collect()
    # slow baselines (> 20 s a call) get 3 repetitions at most
    for r in range(1, reps):
        t = time.perf_counter()
        res = case.ours(inputs)
        times["ours"].append(time.perf_counter() - t)
        del res
        for b in active:
            if r >= 3 and times[b.name][0] > 20:
                continue
            t = time.perf_counter()
            res = b.fn(inputs)
            times[b.name].append(time.perf_counter() - t)
            del res
        gc.collect()
    del inputs
    gc.collect()
    ours = _stats(times["ours"])
    load = [load_before, _load1()]
    rows = []
    base_list = active or [None]
    for b in base_list:
        row = {
            "name": case.name, "variant": case.variant, "size": case.size, "unit": case.unit, "size_unit": case.size_unit or case.unit,
            "items": case.items, "params": case.params,
            "ours_s": ours["median"], "ours_min_s": ours["min"], "ours_max_s": ours["max"],
            "ours_reps": ours["reps"],
            "throughput": case.items / ours["median"],
            "peak_mem_ours_bytes": mem["ours"],
            "baseline": None if b is None else b.name,
            "baseline_note": "" if b is None else b.note,
            "agree": True,
            "details": details,
            "loadavg_1min": load,
        }
        if b is not None:
            st = _stats(times[b.name])
            row.update({
                "baseline_s": st["median"], "baseline_min_s": st["min"], "baseline_max_s": st["max"],
                "baseline_reps": st["reps"], "ratio": st["median"] / ours["median"],
                "baseline_throughput": case.items / st["median"],
                "peak_mem_baseline_bytes": mem[b.name],
            })
        else:
            row.update({"baseline_s": None, "baseline_min_s": None, "baseline_max_s": None,
                        "baseline_reps": 0, "ratio": None, "baseline_throughput": None,
                        "peak_mem_baseline_bytes": None})
        row["skipped_baselines"] = [f"{s.name} (size > {s.max_size}{': ' + s.note if s.note else ''})"
                                    for s in skipped]
        rows.append(row)
    for row in rows:
        log(format_row(row))
    if details:
        log("    " + json.dumps(details, sort_keys=True))
    return rows


def _load1() -> float | None:
    """1-minute load average (``os.getloadavg``), None where unavailable."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _fmt_s(x) -> str:
    if x is None:
        return "-"
    return f"{x * 1e3:.2f}ms" if x < 1 else f"{x:.2f}s"


def _fmt_mb(x) -> str:
    return "-" if x is None else f"{x / 2**20:.0f}MB"


HEADER = (f"{'benchmark':<22}{'size':>11}  {'ours med/min/max':<28}{'baseline':<14}"
          f"{'base med/min/max':<28}{'ratio':>7}  {'throughput':>14}  {'mem ours/base':>14}  load")


def format_row(r: dict) -> str:
    ours = f"{_fmt_s(r['ours_s'])}/{_fmt_s(r['ours_min_s'])}/{_fmt_s(r['ours_max_s'])}"
    base = (f"{_fmt_s(r['baseline_s'])}/{_fmt_s(r['baseline_min_s'])}/{_fmt_s(r['baseline_max_s'])}"
            if r["baseline"] else "-")
    ratio = f"{r['ratio']:.1f}x" if r["ratio"] else "-"
    return (f"{r['name'] + ':' + r['variant']:<22}{r['size']:>11}  {ours:<28}{(r['baseline'] or '-'):<14}"
            f"{base:<28}{ratio:>7}  {r['throughput']:>10.3g} {r['unit'][:3]}/s"
            f"  {_fmt_mb(r['peak_mem_ours_bytes'])}/{_fmt_mb(r['peak_mem_baseline_bytes'])}"
            f"  {_fmt_load(r.get('loadavg_1min'))}")


def _fmt_load(load) -> str:
    """``2.1-2.4``: the 1-minute load average before and after the case (cores busy on the machine)."""
    if not load or None in load:
        return "-"
    return f"{load[0]:.1f}-{load[1]:.1f}"


def run(names, quick: bool, repeat: int, log=print, max_size: int | None = None,
        variant: str | None = None) -> list[dict]:
    from benchmarks import BENCHMARKS

    names = list(names) or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; available: {', '.join(BENCHMARKS)}")
    rows = []
    log(HEADER)
    for name in names:
        mod = importlib.import_module(f"benchmarks.{name}")
        mod.warmup()
        for case in mod.cases(quick):
            if variant is not None and variant not in case.variant:
                continue
            if max_size is not None and case.size > max_size:
                log(f"{case.name + ':' + case.variant:<22}{case.size:>11}  skipped (--max-size {max_size})")
                continue
            rows.extend(run_case(case, repeat, log=log))
    return rows


def write_json(path, rows: list[dict], quick: bool) -> None:
    meta = environment()
    meta["quick"] = quick
    out = {"meta": meta, "results": [dict(r, threads=meta["threads"]) for r in rows]}
    write_text_atomic(path, json.dumps(out, indent=1))


def plot(path, rows: list[dict]) -> None:
    """Log-log time vs size: one panel per (benchmark, variant), ours and every baseline."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = sorted({(r["name"], r["variant"]) for r in rows})
    if not panels:
        return
    ncol = min(3, len(panels))
    nrow = (len(panels) + ncol - 1) // ncol
    fig, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 4.2 * nrow), squeeze=False)
    for ax, (name, variant) in zip(axes.flat, panels):
        rs = sorted((r for r in rows if r["name"] == name and r["variant"] == variant),
                    key=lambda r: r["size"])
        ours = {}
        for r in rs:
            ours[r["size"]] = (r["ours_s"], r["ours_min_s"], r["ours_max_s"])
        sz = sorted(ours)
        med = np.array([ours[s][0] for s in sz])
        ax.errorbar(sz, med, yerr=[med - [ours[s][1] for s in sz], [ours[s][2] for s in sz] - med],
                    marker="o", lw=2, label="ours", capsize=3)
        for b in sorted({r["baseline"] for r in rs if r["baseline"]}):
            br = [r for r in rs if r["baseline"] == b]
            s = [r["size"] for r in br]
            m = np.array([r["baseline_s"] for r in br])
            ax.errorbar(s, m, yerr=[m - [r["baseline_min_s"] for r in br],
                                    [r["baseline_max_s"] for r in br] - m],
                        marker="s", ls="--", label=b, capsize=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"size ({rs[0].get('size_unit') or rs[0]['unit']})")
        ax.set_ylabel("time per call (s)")
        ax.set_title(f"{name}: {variant}")
        ax.grid(True, which="both", alpha=0.3)
        n_series = len(ax.get_legend_handles_labels()[0])
        if n_series > 4:        # many baselines: room above the data for a 3-column legend
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi * (hi / lo) ** (0.2 * ((n_series + 2) // 3)))
            ax.legend(fontsize=7, ncol=3, loc="upper left")
        else:
            ax.legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    try:
        import numba
        thr = numba.get_num_threads()
    except Exception:  # pragma: no cover
        thr = "?"
    fig.suptitle(f"proxitrace benchmarks (median, min-max bars; {thr} numba threads)")
    fig.tight_layout()
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
