"""Readers of the labelled RSSI data sets through :mod:`ble.datasets`: formats ``mit`` (MIT Matrix iPhone
logs), ``herald`` (Herald Edison RSSI files) and ``pcng`` (pcng body-position files)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ble import datasets
from ble.formats._common import (FormatError, _check_nonempty, _Chunk, _clean_signal, _sightings, _truth,
                                 u64_of_strings)

__all__ = ["read_herald", "read_mit", "read_pcng"]


def _dataset_reader(loader_name: str, dataset: str):
    """Reader for a labelled RSSI data set through :mod:`ble.datasets` (``load_mit`` etc.).

    A folder is loaded whole; a single file is loaded through its folder and then restricted to the
    rows of that file. Sightings: ``t`` = the loader's ``t_s`` (s), ``observer`` = the receiving
    device's code, ``rid`` = hash of (transmitting device, file, true distance in cm) so that every
    dwell at one distance is its own contact (a Herald or pcng file sweeps many distances), TX NaN
    where not advertised. Truth: ``distance_m`` (m), ``session`` (recording run),
    ``carriage_tx``/``carriage_rx`` (index into :data:`ble.radio.CARRIAGES`, -1 = not carried).
    A requested file without data rows (header only) is an error naming it, line 1; so is a folder
    without any.
    """
    def reader(paths, stats, meta, **_):
        load = getattr(datasets, loader_name)
        sessions = meta.setdefault("sessions", [])
        devices = meta.setdefault("devices", [])
        groups: dict = {}     # folder -> None (whole folder) or the file names wanted in it
        for path in paths:
            _check_nonempty(path)
            if path.is_dir():
                groups[path] = None
            elif groups.get(path.parent, ()) is not None:
                groups.setdefault(path.parent, []).append(path.name)
        for folder, wanted in groups.items():
            path = folder
            try:
                data = load(folder)
            except datasets.DatasetError as e:
                m = re.match(r"^(.+?): line (\d+): (.*)$", str(e), re.S)   # name the input file and line
                raise (FormatError(m.group(1), int(m.group(2)), m.group(3)) if m
                       else FormatError(folder, 0, str(e))) from None
            if wanted is not None:
                names = np.array([str(Path(f).name) for f in data.files])
                missing = sorted(set(wanted) - set(names.tolist()))
                if missing:
                    raise FormatError(folder / missing[0], 0,
                                      f"not a {dataset} data file (ble.datasets.{loader_name} skips it)")
                data = data.subset(np.isin(data.file, np.flatnonzero(np.isin(names, wanted))))
                per_file = np.bincount(data.file, minlength=len(names))
                empty = [w for w in wanted if per_file[int(np.flatnonzero(names == w)[0])] == 0]
                if empty:
                    raise FormatError(folder / empty[0], 1, f"no {dataset} data rows (header only, or "
                                                            "every RSSI a sentinel)")
            elif len(data) == 0:
                raise FormatError(folder, 0, f"no {dataset} data rows in any file")
            n = len(data)
            stats["rows_read"] += n + int(sum(data.dropped.values()))
            stats["rssi_sentinel"] += int(sum(v for k, v in data.dropped.items() if "sentinel" in k))
            dev_map = np.array([devices.index(d) if d in devices else (devices.append(d) or len(devices) - 1)
                                for d in data.devices] + [-1], dtype=np.int64)
            sess_map = np.array([len(sessions) + i for i in range(len(data.sessions))] + [-1], dtype=np.int64)
            sessions.extend(f"{dataset}:{s}" for s in data.sessions)
            obs = dev_map[data.device_rx]
            obs = np.where(obs < 0, len(devices) + 1000, obs)
            key = np.empty(n, dtype=[("tx", "i8"), ("file", "i8"), ("cm", "i8")])
            key["tx"], key["file"] = data.device_tx, data.file
            dcm = np.round(data.distance_m * 100.0)
            key["cm"] = np.where(np.isfinite(dcm), dcm, -1).astype(np.int64)     # -1: distance unknown
            uk, inv = np.unique(key, return_inverse=True)
            dev_lab = list(data.devices) + ["?"]
            labels = [f"{dataset}|{dev_lab[k['tx']]}|{data.files[k['file']]}|{k['cm']}cm" for k in uk]
            rid = u64_of_strings(labels)[inv.ravel()]
            rssi = data.rssi.astype(np.float64).copy()
            tx = data.tx_power.astype(np.float64).copy()
            keep = _clean_signal(rssi, tx, stats)
            rec = _sightings(data.t_s, obs, rid, rssi, tx)
            truth = _truth(n, data.distance_m, sess_map[data.session], -1)
            truth["carriage_tx"], truth["carriage_rx"] = data.carriage_tx, data.carriage_rx
            yield _Chunk(rec[keep], truth[keep])
    reader.__doc__ = f"{dataset} data set via ble.datasets.{loader_name}. " + (reader.__doc__ or "")
    return reader


read_mit = _dataset_reader("load_mit", "mit")
read_herald = _dataset_reader("load_herald", "herald")
read_pcng = _dataset_reader("load_pcng", "pcng")
