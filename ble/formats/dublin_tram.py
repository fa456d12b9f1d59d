"""Reader of the Dublin tram GAEN data set (format ``dublin-tram``): the data set's folder -> 72 exposure
windows (one per placement, from the attenuation-duration histograms) + true distances."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ble._util import quiet_divide
from ble.formats._common import FormatError, _check_nonempty, _Chunk, _truth
from ble.schema import ATT_EDGES, WINDOW_DTYPE

__all__ = ["TRAM_BINS", "TRAM_DAY_S", "read_dublin_tram", "tram_bucket_matrix"]

#: Attenuation bins (dB) of the Dublin tram histograms, column 1..19 (upstream comment).
TRAM_BINS = np.array([48, 50, 52, 54, 56, 58, 60, 62, 64, 66, 68, 70, 72, 74, 76, 78, 80, 85, 90, 100],
                     dtype=float)
TRAM_DAY_S = 1592438400.0  #: 2020-06-18 00:00 UTC, the day of the measurements (upstream description)


def tram_bucket_matrix(edges: np.ndarray = ATT_EDGES) -> np.ndarray:
    """(19, n_buckets) fraction of each tram bin falling in each attenuation bucket.

    Bins that straddle a bucket edge (50-52 over 51, 54-56 over 55, 62-64 over 63, 72-74 over 73) are
    split in proportion to the overlap, i.e. assuming attenuation uniform within a 2 dB bin.
    """
    lo, hi = TRAM_BINS[:-1], TRAM_BINS[1:]
    blo = np.concatenate([[-np.inf], edges])
    bhi = np.concatenate([edges, [np.inf]])
    ov = np.clip(np.minimum(hi[:, None], bhi[None, :]) - np.maximum(lo[:, None], blo[None, :]), 0, None)
    return ov / (hi - lo)[:, None]


def _loadtxt(path: Path, ncols: int) -> np.ndarray:
    _check_nonempty(path)
    try:
        a = np.loadtxt(path, comments="#", ndmin=2)
    except ValueError as e:
        raise FormatError(path, 0, f"not a numeric table: {e}") from None
    if a.shape[1] != ncols:
        raise FormatError(path, 0, f"expected {ncols} columns, got {a.shape[1]}")
    return a


def read_dublin_tram(paths, stats, meta, **_):
    """The Dublin tram folder -> 72 exposure windows (one per placement) + true distances.

    Window ``k`` (row ``k`` of the three files): ``observer`` = first handset index − 1 (0..6),
    ``rid`` = ``(second handset) << 32 | k`` so that every placement is its own contact,
    ``att_secs`` = minutes per histogram bin × 60 spread over the attenuation buckets
    (:func:`tram_bucket_matrix`), ``duration_s`` = total seconds, ``att_typical`` = duration-weighted mean
    of the bin centres, ``att_min`` = the lower edge of the lowest non-empty bin; ``n_scans`` is the
    number of ~5 min GAEN scan intervals the duration spans (estimated: ceil(duration / 300 s)).
    Times are 2020-06-18 12:00 UTC onward (the real time of each placement is not published).
    Placements with an all-zero histogram are kept as empty windows (the API saw nothing) so that
    evaluations count all 72.
    """
    for folder in paths:
        folder = Path(folder)
        if not folder.is_dir():
            raise FormatError(folder, 0, "dublin-tram expects the data set's folder")
        att = _loadtxt(folder / "dublintram_dataset_attenuations.txt", 19)
        dist = _loadtxt(folder / "dublintram_dataset_distances.txt", 1)[:, 0]
        pairs = _loadtxt(folder / "dublintram_dataset_pairs.txt", 2).astype(np.int64)
        n = len(att)
        if len(dist) != n or len(pairs) != n:
            raise FormatError(folder, 0, f"row counts differ: attenuations {n}, distances {len(dist)}, "
                                         f"pairs {len(pairs)}")
        stats["rows_read"] += n
        secs = att * 60.0
        rec = np.zeros(n, dtype=WINDOW_DTYPE)
        k = np.arange(n)
        rec["observer"] = pairs[:, 0] - 1
        rec["rid"] = (pairs[:, 1].astype(np.uint64) << np.uint64(32)) | k.astype(np.uint64)
        dur = secs.sum(axis=1)
        rec["t_start"] = TRAM_DAY_S + 43200.0
        rec["t_end"] = rec["t_start"] + dur
        rec["duration_s"] = dur
        rec["n_scans"] = np.ceil(dur / 300.0).astype(np.int32)
        centres = 0.5 * (TRAM_BINS[:-1] + TRAM_BINS[1:])
        rec["att_typical"] = quiet_divide(secs @ centres, dur)
        first = np.argmax(secs > 0, axis=1)
        rec["att_min"] = np.where(dur > 0, TRAM_BINS[first], np.nan)
        rec["rssi_mean"] = rec["rssi_max"] = rec["tx_power"] = np.nan
        rec["att_secs"] = secs @ tram_bucket_matrix()
        meta["placements"] = n
        meta["handset_pairs"] = pairs.tolist()
        meta.setdefault("sessions", []).extend(f"placement-{i}" for i in range(n))
        yield _Chunk(rec, _truth(n, dist, k, -1))
