"""Radio-model calibration with held-out evaluation (``proxitrace calibrate``).

Protocol
--------
Data: the labelled RSSI-vs-distance sets loaded through :mod:`ble.datasets` (MIT Matrix, Herald,
pcng), pooled. Evaluation is **leave-one-session-out**: for every recording session ``s`` (MIT
``session_id``, Herald test run = its A and B files, pcng body-position folder) the radio model is
fitted with :func:`ble.radio.fit_radio` on every other session of every data set and evaluated on
``s`` alone; the held-out predictions of all folds are pooled per data set. Rows are never split at
random: neighbouring advertisements are strongly autocorrelated, so a random row split (like pcng's
upstream 80/20 split) measures memorisation, not generalisation.

Metrics per data set (rows with true distance >= ``min_distance_m``, 0.2 m, as in the fit):

- ``rmse_db``: root mean square of RSSI − predicted mean RSSI (dB). The prediction is the
  population model the simulator uses: ``ble.radio.mean_rssi(d, params, carriage_tx, carriage_rx,
  platform_tx, platform_rx)`` -- no per-device or per-data-set offsets, which a new phone would not
  have. ``bias_db`` is the mean residual (dB).
- the **2 m classifier**: a reading is classified "within 2 m" when the maximum-likelihood distance
  of :func:`ble.distance.estimate_distance` (with the pair's known carriage/platform offset) is
  <= 2 m; ``sensitivity`` = P(classified within | truly <= 2 m), ``specificity`` = P(classified
  beyond | truly > 2 m), ``auc`` = area under the ROC curve of the score −d_ml (Mann–Whitney,
  ties counted half).

``heldout_device_offsets`` adds what the training folds know about the pair: the fitted per-device
TX/RX offsets (phones seen in other sessions) and the per-data-set offset.

``per_dataset`` repeats fit and evaluation within each data set alone (folds train only on the
other sessions of the same data set), with the parameters fitted on that data set.

Beside it the same metrics for the packaged defaults (:func:`ble.radio.default_params`). Those were
fitted on the staged MIT, Herald and pcng data (``ble/radio_default.toml``), so on exactly those data
their numbers are **in-sample** (``default_in_sample``: the data set's name and its number of rows at
d >= 0.2 m are those of the default fit, :data:`DEFAULT_FIT_ROWS`); on any other data (another Herald
file, a labelled CSV) they are out-of-sample. The held-out columns are the honest ones.

Data: folders of the three staged sets (or a folder holding them), and labelled plain CSV files
(``--data FILE.csv``: columns ``rssi, distance_m`` and optional carriage/platform/device/session
columns, :func:`ble.formats.labelled_csv.load_labelled_csv`).

The parameters written to ``--out`` are fitted on all the data given (plus ``tx_dbm`` from the Dublin
tram attenuations where that folder is among ``--data`` or beside the others), so ``simulate`` and
``replay`` can read them with ``--radio``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

from ble import datasets as ds
from ble.distance import estimate_distance
from ble.formats.labelled_csv import load_labelled_csv
from ble.radio import default_params, fit_radio, mean_rssi
from ble.schema import write_text_atomic

__all__ = ["CLOSE_M", "MIN_DISTANCE_M", "load", "known_offsets", "predict_rssi", "estimated_distance", "auc",
           "metrics", "holdout", "calibrate", "format_report"]

CLOSE_M = 2.0           #: m, the classifier's threshold distance
MIN_DISTANCE_M = 0.2    #: m, rows closer than this are left out of fit and evaluation (near field)

#: Rows (d >= 0.2 m) per data set of the packaged default fit (``ble/radio_default.toml`` header).
DEFAULT_FIT_ROWS = {"mit": 62252, "herald": 288091, "pcng": 123718}

_FOLDERS = {"mit": "mit-matrix-data", "herald": "herald-edison-rssi", "pcng": "pcng-rss-smartphone"}
_TRAM = "dublintram-gaen"


def _resolve(data_dirs) -> tuple[list[tuple[str, Path]], Path | None]:
    """Map the given folders to (data set name, folder) pairs; a parent folder expands to its sets."""
    found, tram = [], None
    for d in map(Path, data_dirs):
        if d.is_file() and d.suffix.lower() == ".csv":
            found.append(("csv", d))          # a labelled plain CSV (ble.formats.labelled_csv)
            continue
        if d.is_file() and d.suffix.lower() == ".zip":
            raise ValueError(f"{d}: a .zip archive; unpack it and give the folder or the CSV files")
        if not d.is_dir():
            raise ValueError(f"{d}: not a folder or a labelled .csv file")
        hit = [name for name, folder in _FOLDERS.items() if d.name == folder]
        if hit:
            found.append((hit[0], d))
            if (d.parent / _TRAM).is_dir() and tram is None:
                tram = d.parent / _TRAM
            continue
        if d.name == _TRAM:
            tram = d
            continue
        sub = [(name, d / folder) for name, folder in _FOLDERS.items() if (d / folder).is_dir()]
        if not sub:
            # unknown folder name: try each loader
            sub = [(name, d) for name in _FOLDERS if _looks_like(name, d)]
        if not sub:
            raise ValueError(f"{d}: no MIT, Herald or pcng data found (expected one of "
                             f"{', '.join(_FOLDERS.values())} or a folder holding them)")
        found.extend(sub)
        if (d / _TRAM).is_dir() and tram is None:
            tram = d / _TRAM
    if not found:
        raise ValueError("no labelled RSSI data given (--data)")
    return found, tram


def _looks_like(name: str, d: Path) -> bool:
    if name == "mit":
        return any(d.rglob("*log_*.txt"))
    if name == "herald":
        return any(d.glob("2*-*-?.csv"))
    return any(d.rglob("RSS_human*.csv"))


def load(data_dirs):
    """Pooled :class:`ble.datasets.RssiData` of the folders, and the tram folder (or None)."""
    loaders = {"mit": ds.load_mit, "herald": ds.load_herald, "pcng": ds.load_pcng, "csv": load_labelled_csv}
    found, tram = _resolve(data_dirs)
    parts = []
    seen = set()
    for name, folder in found:
        if (name, folder.resolve()) in seen:
            continue
        seen.add((name, folder.resolve()))
        parts.append(loaders[name](folder))
    data = parts[0] if len(parts) == 1 else ds.RssiData.concat(*parts)
    return data, tram


def known_offsets(fit, data) -> np.ndarray:
    """Per-row offset (dB) from a :class:`ble.radio.FitResult`'s per-device TX/RX offsets (devices seen
    in training; 0 for new ones) and per-data-set offset (0 if the data set was not in training)."""
    dev = fit.device_offset_db
    tx = np.array([dev.get(d, {}).get("tx", 0.0) for d in data.devices] + [0.0])
    rx = np.array([dev.get(d, {}).get("rx", 0.0) for d in data.devices] + [0.0])
    dso = np.array([fit.dataset_offset_db.get(n, 0.0) for n in data.datasets] + [0.0])
    return tx[data.device_tx] + rx[data.device_rx] + dso[data.dataset]


def predict_rssi(params, data, extra_db=0.0) -> np.ndarray:
    """Mean RSSI (dBm) of every row from distance, carriage and platform (+ ``extra_db``, dB)."""
    return mean_rssi(data.distance_m, params, carriage_tx=data.carriage_tx, carriage_rx=data.carriage_rx,
                     platform_tx=np.where(data.platform_tx < 0, 0, data.platform_tx),
                     platform_rx=np.where(data.platform_rx < 0, 0, data.platform_rx)) + extra_db


def estimated_distance(params, data, extra_db=0.0) -> np.ndarray:
    """ML distance (m) of every row given the pair's known carriage/platform offset (+ ``extra_db``)."""
    off = params.offset_db(data.carriage_tx, data.carriage_rx,
                           np.where(data.platform_tx < 0, 0, data.platform_tx),
                           np.where(data.platform_rx < 0, 0, data.platform_rx)) + extra_db
    return estimate_distance(rssi=data.rssi, params=params, offset_db=off)[0]


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """ROC AUC of ``score`` for boolean ``label`` (Mann–Whitney U with mid-ranks; NaN if one class)."""
    label = np.asarray(label, dtype=bool)
    n1, n0 = int(label.sum()), int((~label).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(score)
    return float((r[label].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def metrics(rssi, pred, d_true, d_est, close_m: float = CLOSE_M) -> dict:
    """RMSE/bias of RSSI (dB) and the ``close_m`` classifier's sensitivity, specificity and AUC."""
    res = np.asarray(rssi, float) - np.asarray(pred, float)
    truth = np.asarray(d_true) <= close_m
    called = np.asarray(d_est) <= close_m
    tp, fn = int((called & truth).sum()), int((~called & truth).sum())
    tn, fp = int((~called & ~truth).sum()), int((called & ~truth).sum())
    return {"n": int(len(res)), "rmse_db": round(float(np.sqrt(np.mean(res ** 2))), 3) if len(res) else None,
            "bias_db": round(float(np.mean(res)), 3) if len(res) else None,
            "sensitivity": round(tp / (tp + fn), 4) if tp + fn else None,
            "specificity": round(tn / (tn + fp), 4) if tn + fp else None,
            "auc": None if not (tp + fn and tn + fp) else round(auc(-np.asarray(d_est), truth), 4),
            "within_2m": tp + fn, "beyond_2m": tn + fp}


def holdout(data, *, min_distance_m: float = MIN_DISTANCE_M, close_m: float = CLOSE_M,
            fit_kwargs: dict | None = None, progress=None, scope: str = "pooled") -> dict:
    """Leave-one-session-out evaluation (module docstring). Returns per data set
    ``{"heldout": metrics, "heldout_device_offsets": metrics, "default": metrics, "folds": [...]}``.

    ``scope="pooled"``: each fold trains on every other session of every data set; ``"dataset"``: only
    on the other sessions of the held-out session's own data set. A fold whose training data cannot
    identify the model (``fit_radio`` raises ``ValueError``) is recorded with its error and its rows
    are left out of the metrics (``n`` says how many rows were scored).
    """
    if scope not in ("pooled", "dataset"):
        raise ValueError(f"scope must be 'pooled' or 'dataset', got {scope!r}")
    fit_kwargs = dict(fit_kwargs or {})
    fit_kwargs.setdefault("fit_min_distance_m", min_distance_m)
    use = data.distance_m >= min_distance_m
    data = data.subset(use)
    sessions = np.unique(data.session)
    pred = np.full(len(data), np.nan)
    dest = np.full(len(data), np.nan)
    pred_o = np.full(len(data), np.nan)
    dest_o = np.full(len(data), np.nan)
    folds = []
    for s in sessions:
        test = data.session == s
        ds_k = int(data.dataset[np.flatnonzero(test)[0]])
        train_mask = ~test if scope == "pooled" else (~test & (data.dataset == ds_k))
        tst = data.subset(test)
        ds_name = data.datasets[ds_k]
        t0 = time.perf_counter()
        try:
            if not train_mask.any():
                raise ValueError("no other session to train on")
            fit = fit_radio(data=data.subset(train_mask), **fit_kwargs)
        except ValueError as e:
            folds.append({"session": data.sessions[s], "dataset": ds_name, "n_test": int(test.sum()),
                          "error": str(e)})
            if progress:
                progress(folds[-1])
            continue
        pred[test] = predict_rssi(fit.params, tst)
        dest[test] = estimated_distance(fit.params, tst)
        extra = known_offsets(fit, tst)
        pred_o[test] = predict_rssi(fit.params, tst, extra)
        dest_o[test] = estimated_distance(fit.params, tst, extra)
        folds.append({"session": data.sessions[s], "dataset": ds_name, "n_test": int(test.sum()),
                      "ref_rssi_1m": round(fit.params.ref_rssi_1m, 3),
                      "exponent": round(fit.params.exponent, 4),
                      "carriage_db": {k: round(v, 2) for k, v in fit.params.carriage_db.items()},
                      "rmse_db": round(float(np.sqrt(np.mean((tst.rssi - pred[test]) ** 2))), 3),
                      "seconds": round(time.perf_counter() - t0, 2)})
        if progress:
            progress(folds[-1])
    dflt = default_params()
    pred0 = predict_rssi(dflt, data)
    dest0 = estimated_distance(dflt, data)
    out = {}
    for k, name in enumerate(data.datasets):
        m = data.dataset == k
        if not m.any():
            continue
        scored = m & np.isfinite(pred)
        out[name] = {
            "scope": scope,
            "heldout": metrics(data.rssi[scored], pred[scored], data.distance_m[scored], dest[scored], close_m),
            "heldout_device_offsets": metrics(data.rssi[scored], pred_o[scored], data.distance_m[scored],
                                              dest_o[scored], close_m),
            "sessions": int(np.unique(data.session[m]).size),
            "default": metrics(data.rssi[m], pred0[m], data.distance_m[m], dest0[m], close_m),
            "default_in_sample": DEFAULT_FIT_ROWS.get(name) == int(m.sum()),
            "folds": [f for f in folds if f["dataset"] == name],
        }
    return out


def calibrate(data_dirs, out_path, *, report_path=None, seed: int = 0, holdout_eval: bool = True,
              progress=None) -> dict:
    """Fit on all data, write ``out_path`` (TOML: a ``[radio]`` table, the held-out summary as ``#``
    comments) and a JSON report (``report_path``, default ``out_path`` with suffix ``.json``); return
    the report."""
    del seed   # the protocol is deterministic (folds = sessions in order); kept for the CLI's sake
    data, tram = load(data_dirs)
    fit = fit_radio(data=data, fit_min_distance_m=MIN_DISTANCE_M, tram_dir=tram)
    p = fit.params
    report = {
        "data": [str(d) for d in data_dirs], "datasets": list(data.datasets), "rows": int(len(data)),
        "tram_dir": str(tram) if tram else None,
        "protocol": "leave-one-session-out; population model (distance, carriage, platform); "
                    f"rows with d >= {MIN_DISTANCE_M} m; 2 m classifier via ble.distance.estimate_distance",
        "params": p.to_dict(),
        "fit_residuals": fit.residuals,
        "dataset_offset_db": fit.dataset_offset_db,
        "evaluation": holdout(data, progress=progress) if holdout_eval else None,
        "per_dataset": {},
    }
    for k, name in enumerate(data.datasets):
        sub = data.subset(data.dataset == k)
        if not len(sub):
            continue
        entry = {}
        try:
            fk = fit_radio(data=sub, fit_min_distance_m=MIN_DISTANCE_M)
            entry["params"] = {key: round(v, 4) if isinstance(v, float) else
                               {c: round(x, 3) for c, x in v.items()} for key, v in fk.params.to_dict().items()}
            entry["fit_rmse_db"] = round(fk.residuals[name]["rmse_db"], 3)
        except ValueError as e:
            entry["error"] = str(e)
        if holdout_eval:
            ev = holdout(sub, scope="dataset", progress=progress)[name]
            entry["heldout"] = ev["heldout"]
            entry["heldout_device_offsets"] = ev["heldout_device_offsets"]
            entry["failed_folds"] = [f for f in ev["folds"] if "error" in f]
        report["per_dataset"][name] = entry
    header_lines = [f"Radio parameters fitted by 'proxitrace calibrate' on {', '.join(data.datasets)} "
                    f"({fit.n_used} rows with d >= {MIN_DISTANCE_M} m of {len(data)})" + (f"; tx_dbm from {tram.name}" if tram else "")]
    if report["evaluation"]:
        for name, ev in report["evaluation"].items():
            h = ev["heldout"]
            header_lines.append(f"held out by session, {name}: RMSE {h['rmse_db']} dB, 2 m classifier "
                                f"sensitivity {h['sensitivity']}, specificity {h['specificity']}, AUC {h['auc']}")
    # only [radio]: the file is also a valid scenario overlay (sim.scenario rejects unknown tables)
    p.to_toml(out_path, header="\n".join(header_lines))
    report_path = Path(report_path) if report_path else Path(out_path).with_suffix(".json")
    write_text_atomic(report_path, json.dumps(report, indent=2, default=float) + "\n")
    report["report_path"] = str(report_path)
    report["params_path"] = str(out_path)
    return report


def format_report(report: dict) -> str:
    """Text table: fitted parameters, then per data set held-out vs default metrics."""
    p = report["params"]
    lines = [f"fitted: ref_rssi_1m {p['ref_rssi_1m']:.2f} dBm, exponent {p['exponent']:.3f}, "
             f"sigma {p['sigma_db']:.2f} dB, tx_dbm {p['tx_dbm']:.2f} dBm; carriage dB: "
             + ", ".join(f"{k} {v:+.1f}" for k, v in p["carriage_db"].items())]
    ev = report.get("evaluation")
    if ev:
        lines.append(f"{'data set':<8} {'model':<8} {'n':>7} {'RMSE dB':>8} {'bias':>6} {'sens':>6} "
                     f"{'spec':>6} {'AUC':>6}")
        for name, e in ev.items():
            for label, key in (("held-out", "heldout"), ("+devices", "heldout_device_offsets"),
                               ("default*" if e.get("default_in_sample") else "default", "default")):
                m = e[key]
                lines.append(f"{name:<8} {label:<8} {m['n']:>7} {m['rmse_db']:>8} {m['bias_db']:>6} "
                             f"{m['sensitivity']!s:>6} {m['specificity']!s:>6} {m['auc']!s:>6}")
        if any(e.get("default_in_sample") for e in ev.values()):
            lines.append("* default parameters were fitted on these data (in-sample)")
    for name, e in (report.get("per_dataset") or {}).items():
        if "params" in e:
            q = e["params"]
            car = ", ".join(f"{c} {v:+.1f}" for c, v in q["carriage_db"].items() if v)
            lines.append(f"{name} alone: ref_rssi_1m {q['ref_rssi_1m']:.2f} dBm, exponent {q['exponent']:.3f}, "
                         f"sigma {q['sigma_db']:.2f} dB" + (f", carriage dB: {car}" if car else ""))
        else:
            lines.append(f"{name} alone: cannot be fitted ({e.get('error')})")
        if e.get("heldout"):
            h = e["heldout"]
            lines.append(f"  held out within {name} ({h['n']} rows scored, {len(e['failed_folds'])} folds "
                         f"unfittable): RMSE {h['rmse_db']} dB, sens {h['sensitivity']}, spec "
                         f"{h['specificity']}, AUC {h['auc']}")
    if "params_path" in report:
        lines.append(f"wrote {report['params_path']} and {report['report_path']}")
    return "\n".join(lines)
