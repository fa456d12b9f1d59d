"""Reader of GAEN v2 exposure windows as JSON (format ``gaen``), with optional per-window ``distance_m``."""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from ble._util import quiet_divide
from ble.formats._common import FormatError, _Chunk, _truth, u64_of_strings
from ble.formats._json import _json_record_line, _load_json_records, _num_field
from ble.schema import ATT_EDGES, N_ATT_BUCKETS, WINDOW_DTYPE

__all__ = ["read_gaen"]


def _buckets_of(att: np.ndarray) -> np.ndarray:
    return np.searchsorted(ATT_EDGES, att, side="left")


def read_gaen(paths, stats, meta, **_):
    """GAEN v2 exposure windows (JSON). One window per record; ``rid`` a hash of (file, window index).

    ``t_start`` = ``dateMillisSinceEpoch`` / 1000 (s; the API gives only the day), ``t_end`` =
    ``t_start`` + Σ ``secondsSinceLastScan``. ``att_typical`` is the mean of ``typicalAttenuationDb``
    over the scans, ``att_min`` the minimum ``minAttenuationDb``, ``att_secs`` the scan seconds per
    attenuation bucket (by typical attenuation, as GAEN weights them). RSSI and TX are NaN (the API
    only reports attenuation).
    """
    for fi, path in enumerate(paths):
        arr, text = _load_json_records(path, ("exposureWindows", "windows"))
        names = [arr.type.field(i).name for i in range(arr.type.num_fields)]
        if "scanInstances" not in names:
            raise FormatError(path, 1, "windows lack 'scanInstances'")
        n = len(arr)
        stats["rows_read"] += n
        day_ms = _num_field(arr, "dateMillisSinceEpoch", path, text, required=False)
        day_ms = np.where(np.isnan(day_ms), 0.0, day_ms)
        si = arr.field("scanInstances")
        if not pa.types.is_list(si.type):
            raise FormatError(path, _json_record_line(text, 0), "scanInstances is not a list")
        if si.null_count:
            k = int(np.flatnonzero(si.is_null().to_numpy(zero_copy_only=False))[0])
            raise FormatError(path, _json_record_line(text, k), f"window {k}: scanInstances missing")
        offsets = si.offsets.to_numpy()
        flat = si.flatten()
        counts = np.diff(offsets)
        owner = np.repeat(np.arange(n), counts)
        if len(flat):
            typ = _num_field(flat, "typicalAttenuationDb", path, text)
            mn = _num_field(flat, "minAttenuationDb", path, text, required=False)
            secs = _num_field(flat, "secondsSinceLastScan", path, text)
            bad = np.flatnonzero(np.isnan(typ) | np.isnan(secs) | (secs < 0))
            if bad.size:
                k = int(owner[bad[0]])
                raise FormatError(path, _json_record_line(text, k),
                                  f"window {k}: scan instance with missing/negative values")
            mn = np.where(np.isnan(mn), typ, mn)
        else:
            typ = mn = secs = np.zeros(0)
        rec = np.zeros(n, dtype=WINDOW_DTYPE)
        rec["observer"] = fi
        rec["rid"] = u64_of_strings([f"{path.name}#{k}" for k in range(n)])
        rec["t_start"] = day_ms / 1000.0
        dur = np.bincount(owner, weights=secs, minlength=n)
        rec["t_end"] = rec["t_start"] + dur
        rec["n_scans"] = counts
        rec["duration_s"] = dur
        rec["att_typical"] = quiet_divide(np.bincount(owner, weights=typ, minlength=n), counts)
        att_min = np.full(n, np.inf)
        np.minimum.at(att_min, owner, mn)
        rec["att_min"] = np.where(np.isfinite(att_min), att_min, np.nan)
        rec["rssi_mean"] = rec["rssi_max"] = rec["tx_power"] = np.nan
        att_secs = np.zeros((n, N_ATT_BUCKETS))
        np.add.at(att_secs, (owner, _buckets_of(typ)), secs)
        rec["att_secs"] = att_secs
        dist = _num_field(arr, "distance_m", path, text, required=False)
        truth = None
        if np.isfinite(dist).any():
            truth = _truth(n, dist, -1, -1)
        yield _Chunk(rec, truth)
