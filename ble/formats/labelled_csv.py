"""A labelled RSSI-vs-distance CSV from any source, for ``proxitrace calibrate --data FILE.csv``
(:func:`load_labelled_csv` -> :class:`ble.datasets.RssiData`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ble.datasets import (_CARRIAGES, PLATFORMS, RSSI_SENTINELS, DatasetError, RssiData, _codes, _col,
                          _drop_sentinels, _read_csv_strings, _to_float)

__all__ = ["LABELLED_CSV_OPTIONAL", "load_labelled_csv"]


LABELLED_CSV_OPTIONAL = ("t", "tx_power", "carriage_tx", "carriage_rx", "platform_tx", "platform_rx",
                         "device_tx", "device_rx", "session")


def load_labelled_csv(path) -> RssiData:
    """A labelled RSSI-vs-distance CSV from any source (``proxitrace calibrate --data FILE.csv``).

    Header names the columns (any order): required ``rssi`` (dBm) and ``distance_m`` (m, >= 0);
    optional ``t`` (s), ``tx_power`` (dBm), ``carriage_tx``/``carriage_rx`` (one of
    ``hand, trouser_pocket, shirt_pocket, bag, backpack``; empty = unknown), ``platform_tx``/
    ``platform_rx`` (``android``/``ios``; default android), ``device_tx``/``device_rx`` (names),
    ``session`` (recording run; default: the file is one session). RSSI sentinels (127, 999, -127) are
    dropped and counted. Every bad value names the file and line. The data set is named
    ``csv:<file stem>``.
    """
    p = Path(path)
    if not p.is_file():
        raise DatasetError(f"{p}: no such file")
    tbl = _read_csv_strings(p)
    if tbl.num_rows == 0:
        raise DatasetError(f"{p}: line 1: no data rows (header only)")
    line = np.arange(tbl.num_rows) + 2
    rssi = _to_float(_col(tbl, "rssi", p), p, line, "rssi")
    dist = _to_float(_col(tbl, "distance_m", p), p, line, "distance_m")
    bad = ~np.isfinite(dist) | (dist < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{p}: line {line[i]}: distance_m must be a finite number >= 0 (m)")
    bad = ~np.isin(rssi, RSSI_SENTINELS) & ~((rssi >= -140.0) & (rssi <= 30.0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{p}: line {line[i]}: rssi {rssi[i]:g} dBm outside [-140, 30] (columns swapped?)")
    names = set(tbl.column_names)
    n = tbl.num_rows

    def opt_str(name, default):
        if name not in names:
            return np.full(n, default, dtype=object)
        col = tbl.column(name).cast(pa.string()).fill_null("")
        return np.asarray(pc.utf8_trim_whitespace(col).to_numpy(zero_copy_only=False), dtype=object)

    def opt_float(name):
        if name not in names:
            return np.full(n, np.nan)
        col = tbl.column(name).cast(pa.string()).fill_null("")
        empty = pc.equal(pc.utf8_trim_whitespace(col), "").to_numpy(zero_copy_only=False)
        out = np.full(n, np.nan)
        if (~empty).any():
            out[~empty] = _to_float(col.filter(pa.array(~empty)), p, line[~empty], name)
        return out

    t = opt_float("t")
    t = np.where(np.isfinite(t), t, np.arange(n, dtype=np.float64))
    tx = opt_float("tx_power")
    car = {}
    for side in ("tx", "rx"):
        v = opt_str(f"carriage_{side}", "")
        lab = np.array([str(x).lower() for x in v], dtype=object)
        codes = np.full(n, -1, dtype=np.int8)
        for k, c in enumerate(_CARRIAGES):
            codes[lab == c] = k
        bad = (codes < 0) & (lab != "")
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"{p}: line {line[i]}: carriage_{side} {ascii(str(v[i]))} is not one of "
                               f"{', '.join(_CARRIAGES)}")
        car[side] = codes
    plat = {}
    for side in ("tx", "rx"):
        v = np.array([str(x).lower() for x in opt_str(f"platform_{side}", "android")], dtype=object)
        bad = ~np.isin(v, list(PLATFORMS))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise DatasetError(f"{p}: line {line[i]}: platform_{side} {ascii(str(v[i]))} is not android or ios")
        plat[side] = (v == "ios").astype(np.int8)
    devices: list = []
    sessions: list = []
    drx = _codes(opt_str("device_rx", f"{p.stem}:rx"), devices)
    dtx = _codes(opt_str("device_tx", f"{p.stem}:tx"), devices)
    sess = _codes(np.array([f"{p.stem}:{x}" for x in opt_str("session", "all")], dtype=object), sessions)
    ok = _drop_sentinels(rssi)
    data = RssiData(rssi=rssi, distance_m=dist, t_s=t, tx_power=tx, carriage_tx=car["tx"],
                    carriage_rx=car["rx"], platform_tx=plat["tx"], platform_rx=plat["rx"], device_tx=dtx,
                    device_rx=drx, session=sess, file=np.zeros(n), dataset=np.zeros(n), split=np.full(n, -1),
                    devices=tuple(devices), sessions=tuple(sessions), files=(p.name,),
                    datasets=(f"csv:{p.stem}",), dropped={"csv_rssi_sentinel": int((~ok).sum())})
    return data.subset(ok)
