"""Loaders for the labelled RSSI-vs-distance measurement sets in ``../shared/data`` (see its README).

Every loader returns an :class:`RssiData`: flat, equally long numpy arrays, one row per received
advertisement, plus label tuples that the integer code arrays index into. Units: RSSI and TX power in
dBm, distance in metres, times in seconds. Parsing is vectorised (pyarrow compute / numpy); the only
Python loops run over files or over distinct label values, never over records.

Sentinel RSSI values (127 = iOS "not available", 999 = CovidSafe dummy, -127) are dropped and counted in
``RssiData.dropped``; a TX power of -999 ("not advertised" in the MIT logs) becomes NaN. Malformed rows
raise :class:`DatasetError` naming the file and its 1-based line number.

Conventions shared by the loaders
---------------------------------
- ``carriage_tx`` / ``carriage_rx``: index into :data:`ble.radio.CARRIAGES` of where the transmitting /
  receiving phone was carried; -1 = not carried by a person (Herald's test rig) or unknown.
- ``platform_tx`` / ``platform_rx``: 0 = Android, 1 = iOS, -1 = unknown (:data:`PLATFORMS`).
- ``device_tx`` / ``device_rx``: index into ``devices`` (phone names/models), -1 = unknown.
- ``session``: recording run (used for held-out splits: the MIT ``session_id``, the Herald test
  ``YYYYMMDD-HHMM`` whose A and B files are the two directions of one run, the pcng folder);
  ``file``: the source file (index into ``files``, paths relative to the loader's directory).
- ``dataset``: index into ``datasets`` (``"mit"``, ``"herald"``, ``"pcng"``).
- ``split``: upstream train/test split where one exists (pcng: 1 = train, 0 = test), else -1.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ble._util import first_non_utf8, is_utf8

__all__ = ["PLATFORMS", "RSSI_SENTINELS", "FEET_M", "DatasetError", "RssiData", "MIT_CARRIAGE", "load_mit",
           "load_herald", "PCNG_CARRIAGE", "load_pcng", "load_all", "CalibrationTable",
           "load_calibration_table", "TRAM_ATT_EDGES", "TramData", "load_dublintram"]

#: Platform names indexed by the ``platform_*`` codes.
PLATFORMS = ("android", "ios")

#: RSSI values that mean "no measurement" (iOS 127, CovidSafe 999, -127); dropped by every loader.
RSSI_SENTINELS = (127.0, 999.0, -127.0)

FEET_M = 0.3048
#: The MIT logs' clock is US Eastern daylight time (UTC-4) in both timestamp forms (see the README).
_MIT_UTC_OFFSET_S = 4 * 3600.0

# CARRIAGES is defined in ble.radio; repeated here (checked in ble.radio) to keep this module importable
# on its own.
_CARRIAGES = ("hand", "trouser_pocket", "shirt_pocket", "bag", "backpack")


class DatasetError(ValueError):
    """A data file that cannot be read as its format; the message names the file and line."""


@dataclass(frozen=True)
class RssiData:
    """Labelled RSSI measurements as flat arrays (one row per received advertisement).

    Arrays: ``rssi`` (float64, dBm), ``distance_m`` (float64, m, true distance), ``t_s`` (float64, s:
    UNIX epoch for MIT and Herald, the logging device's own clock for pcng), ``tx_power`` (float32,
    dBm, advertised TX power, NaN = not advertised), ``carriage_tx``/``carriage_rx``/``platform_tx``/
    ``platform_rx``/``split`` (int8), ``device_tx``/``device_rx``/``session``/``file`` (int32 codes),
    ``dataset`` (int8 code). Label tuples: ``devices``, ``sessions``, ``files``, ``datasets``.
    ``dropped`` counts rows removed while loading, by reason.
    """

    rssi: np.ndarray
    distance_m: np.ndarray
    t_s: np.ndarray
    tx_power: np.ndarray
    carriage_tx: np.ndarray
    carriage_rx: np.ndarray
    platform_tx: np.ndarray
    platform_rx: np.ndarray
    device_tx: np.ndarray
    device_rx: np.ndarray
    session: np.ndarray
    file: np.ndarray
    dataset: np.ndarray
    split: np.ndarray
    devices: tuple = ()
    sessions: tuple = ()
    files: tuple = ()
    datasets: tuple = ()
    dropped: dict = field(default_factory=dict)

    _ARRAYS = ("rssi", "distance_m", "t_s", "tx_power", "carriage_tx", "carriage_rx", "platform_tx",
               "platform_rx", "device_tx", "device_rx", "session", "file", "dataset", "split")
    _DTYPES = ("f8", "f8", "f8", "f4", "i1", "i1", "i1", "i1", "i4", "i4", "i4", "i4", "i1", "i1")

    def __post_init__(self):
        n = len(self.rssi)
        for name, dt in zip(self._ARRAYS, self._DTYPES):
            a = np.ascontiguousarray(getattr(self, name), dtype=dt)
            if a.ndim != 1 or len(a) != n:
                raise ValueError(f"RssiData.{name}: expected a 1-D array of length {n}, got shape {a.shape}")
            object.__setattr__(self, name, a)
        for name, labels in (("device_tx", self.devices), ("device_rx", self.devices),
                             ("session", self.sessions), ("file", self.files), ("dataset", self.datasets)):
            a = getattr(self, name)
            if n and (a.min() < -1 or a.max() >= len(labels)):
                raise ValueError(f"RssiData.{name}: code outside the {len(labels)} labels")
        for name in ("carriage_tx", "carriage_rx"):
            a = getattr(self, name)
            if n and (a.min() < -1 or a.max() >= len(_CARRIAGES)):
                raise ValueError(f"RssiData.{name}: carriage code outside -1..{len(_CARRIAGES) - 1}")

    def __len__(self) -> int:
        return len(self.rssi)

    def subset(self, mask) -> "RssiData":
        """Rows selected by a boolean mask or an index array (labels and ``dropped`` kept)."""
        kw = {name: getattr(self, name)[mask] for name in self._ARRAYS}
        return RssiData(**kw, devices=self.devices, sessions=self.sessions, files=self.files,
                        datasets=self.datasets, dropped=dict(self.dropped))

    def labels(self, name: str) -> np.ndarray:
        """Object array of string labels for a code column (``device_tx``, ``session``, ...); '' = -1."""
        table = {"device_tx": self.devices, "device_rx": self.devices, "session": self.sessions,
                 "file": self.files, "dataset": self.datasets,
                 "carriage_tx": _CARRIAGES, "carriage_rx": _CARRIAGES,
                 "platform_tx": PLATFORMS, "platform_rx": PLATFORMS}[name]
        lab = np.array(list(table) + [""], dtype=object)
        return lab[getattr(self, name)]       # code -1 picks the trailing ''

    @staticmethod
    def concat(*parts: "RssiData") -> "RssiData":
        """Concatenate data sets, merging the label tuples and re-coding the code columns."""
        if not parts:
            raise ValueError("RssiData.concat: nothing to concatenate")
        merged = {}
        for lab in ("devices", "sessions", "files", "datasets"):
            seen: dict = {}
            for p in parts:
                for s in getattr(p, lab):
                    seen.setdefault(s, len(seen))
            merged[lab] = seen
        kw = {}
        codecol = {"device_tx": "devices", "device_rx": "devices", "session": "sessions", "file": "files",
                   "dataset": "datasets"}
        for name in RssiData._ARRAYS:
            cols = []
            for p in parts:
                a = getattr(p, name)
                if name in codecol:
                    lab = codecol[name]
                    remap = np.array([merged[lab][s] for s in getattr(p, lab)] + [-1], dtype=np.int64)
                    a = remap[a]
                cols.append(a)
            kw[name] = np.concatenate(cols)
        dropped: dict = {}
        for p in parts:
            for k, v in p.dropped.items():
                dropped[k] = dropped.get(k, 0) + v
        return RssiData(**kw, **{lab: tuple(merged[lab]) for lab in merged}, dropped=dropped)


# ---------------------------------------------------------------------------------------------------
# helpers

def _codes(values: np.ndarray, labels: list) -> np.ndarray:
    """Codes of ``values`` in ``labels`` (appending new labels); loop over distinct values only."""
    uniq, inv = np.unique(np.asarray(values, dtype=object).astype(str), return_inverse=True)
    idx = np.empty(len(uniq), dtype=np.int32)
    for k, u in enumerate(uniq):
        u = str(u)
        if u not in labels:
            labels.append(u)
        idx[k] = labels.index(u)
    return idx[inv]


_NUM_RE = r"^\s*[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?\s*$"


def _to_float(col: pa.Array, path: Path, line_of: np.ndarray, what: str) -> np.ndarray:
    """Validated string -> float64 conversion; error names file, line and value."""
    col = col.cast(pa.string()).fill_null("")          # an empty field is "not a number", not null
    ok = pc.match_substring_regex(col, _NUM_RE).to_numpy(zero_copy_only=False).astype(bool)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise DatasetError(f"{path}: line {int(line_of[i])}: {what} {ascii(col[i].as_py())} is not a number")
    return pc.cast(pc.utf8_trim_whitespace(col), pa.float64()).to_numpy(zero_copy_only=False)


def _read_csv_strings(path: Path) -> pa.Table:
    """A header + rows CSV as a table of strings; a row with the wrong column count raises naming its line."""
    if not is_utf8(path):       # first: pyarrow cannot hand a non-UTF-8 bad row to the handler below
        _raise_if_not_utf8(path)
    bad = []

    def bad_row(row):            # pyarrow's row.number is the 1-based physical line (header = line 1)
        bad.append(row)
        return "error"

    try:
        tbl = pacsv.read_csv(path, read_options=pacsv.ReadOptions(use_threads=False),
                             parse_options=pacsv.ParseOptions(invalid_row_handler=bad_row),
                             convert_options=pacsv.ConvertOptions(strings_can_be_null=False,
                                                                  auto_dict_encode=False))
    except (pa.ArrowInvalid, OSError) as e:
        if "Empty CSV" in str(e):
            raise DatasetError(f"{path}: line 1: empty file (no header)") from None
        if bad:
            row = bad[0]
            line = row.number if row.number is not None else "?"
            raise DatasetError(f"{path}: line {line}: expected {row.expected_columns} columns, got "
                               f"{row.actual_columns}: {ascii(row.text)}") from e
        _raise_if_not_utf8(path)
        raise DatasetError(f"{path}: cannot be read as CSV: {e}") from e
    try:
        return tbl.cast(pa.schema([(n, pa.string()) for n in tbl.column_names]))
    except pa.ArrowInvalid as e:
        _raise_if_not_utf8(path)
        raise DatasetError(f"{path}: cannot be read as CSV: {e}") from e


def _raise_if_not_utf8(path: Path) -> None:
    """Name the first line that is not UTF-8 text (bytes escaped); error path only."""
    bad = first_non_utf8(path)
    if bad is not None:
        no, pos, text, _ = bad
        raise DatasetError(f"{path}: line {no}: not UTF-8 text (byte {pos} of the line): "
                           f"{text}; re-save the file as UTF-8")


def _col(tbl: pa.Table, name: str, path: Path) -> pa.Array:
    if name not in tbl.column_names:
        raise DatasetError(f"{path}: line 1: missing column {ascii(name)} (header: {ascii(tbl.column_names)})")
    return tbl.column(name).combine_chunks()


def _drop_sentinels(rssi: np.ndarray) -> np.ndarray:
    """Boolean mask of valid RSSI (finite, not a sentinel)."""
    return np.isfinite(rssi) & ~np.isin(rssi, RSSI_SENTINELS)


# ---------------------------------------------------------------------------------------------------
# MIT Matrix

#: MIT on-body location -> CARRIAGES name. Front and rear trouser pockets both map to trouser_pocket,
#: the purse to bag.
MIT_CARRIAGE = {"in hand": "hand", "front pants pocket": "trouser_pocket",
                "rear pants pocket": "trouser_pocket", "shirt pocket": "shirt_pocket", "in purse": "bag",
                "backpack": "backpack", "in backpack": "backpack"}

_TS_RE = r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(\.\d+)?Z?$"


def _mit_file(path: Path):
    """Parse one MIT log: BlueProxTx records with their forward-filled header values."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{path}: cannot be read as UTF-8 text: {e}") from e
    lines = pc.utf8_rtrim(pa.array(text.split("\n")), characters="\r")
    parts = pc.split_pattern(lines, ",", max_splits=2)
    nparts = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
    empty = pc.equal(pc.utf8_length(lines), 0).to_numpy(zero_copy_only=False)
    bad = (nparts < 3) & ~empty
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{path}: line {i + 1}: expected 'timestamp,record_type,fields', got "
                           f"{ascii(lines[i].as_py())}")
    keep = np.flatnonzero(~empty)
    parts = parts.take(pa.array(keep))
    line_no = keep + 1
    rtype = pc.list_element(parts, 1).to_numpy(zero_copy_only=False).astype(str)
    rest = pc.list_element(parts, 2)
    ts = pc.list_element(parts, 0)

    def header(names, pick, what):
        """(line index array, value array) of header records of type in ``names``; ``pick`` = field #.
        A log without any such record (not a Matrix-study log) gets ``None``: the value is unknown."""
        sel = np.flatnonzero(np.isin(rtype, names))
        if sel.size == 0:
            return None
        vals = pc.split_pattern(rest.take(pa.array(sel)), ",")
        nv = pc.list_value_length(vals).to_numpy(zero_copy_only=False)
        if (nv <= pick).any():
            i = sel[np.flatnonzero(nv <= pick)[0]]
            raise DatasetError(f"{path}: line {line_no[i]}: {rtype[i]} record lacks field {pick + 1}")
        v = pc.utf8_trim_whitespace(pc.list_element(vals, pick)).to_numpy(zero_copy_only=False)
        return sel, np.asarray(v, dtype=object)

    def ffill(hdr, rows, what, unknown=""):
        if hdr is None:
            return np.full(len(rows), unknown, dtype=object)
        hidx, hval = hdr
        k = np.searchsorted(hidx, rows, side="right") - 1
        if (k < 0).any():
            i = rows[np.flatnonzero(k < 0)[0]]
            raise DatasetError(f"{path}: line {line_no[i]}: data record before any {what} header")
        return hval[k]

    matrix = bool(pc.any(pc.match_substring(rest, ",BlueProxTx,")).as_py() or False)
    if matrix:          # a Matrix-study log: the test beacon's advertisements only
        bt = np.flatnonzero((rtype == "Bluetooth")
                            & pc.match_substring(rest, ",BlueProxTx,").to_numpy(zero_copy_only=False))
    else:               # any other beacon: every advertisement, keyed by the log's own identifiers
        bt = np.flatnonzero(rtype == "Bluetooth")
        if bt.size == 0:
            raise DatasetError(f"{path}: no Bluetooth records (not an MIT BluetoothProximity log)")
    f = pc.split_pattern(rest.take(pa.array(bt)), ",")
    nf = pc.list_value_length(f).to_numpy(zero_copy_only=False)
    if (nf != 5).any():
        i = bt[np.flatnonzero(nf != 5)[0]]
        raise DatasetError(f"{path}: line {line_no[i]}: Bluetooth record should have 5 fields after the "
                           f"type (id, rssi, name, tx_power, t_cf), got {int(nf[nf != 5][0])}")
    name = pc.list_element(f, 2).to_numpy(zero_copy_only=False).astype(str)
    m = name == "BlueProxTx" if matrix else np.ones(len(name), dtype=bool)
    bt, f = bt[m], f.filter(pa.array(m))
    ids = np.asarray(pc.utf8_trim_whitespace(pc.list_element(f, 0)).to_numpy(zero_copy_only=False), dtype=object)
    ln = line_no[bt]
    rssi = _to_float(pc.list_element(f, 1), path, ln, "RSSI")
    tx = _to_float(pc.list_element(f, 3), path, ln, "TX power")
    with np.errstate(invalid="ignore"):    # -999 is the log's "unknown"; others must be a radio's dBm
        bad_tx = (tx != -999.0) & ~((tx >= -100.0) & (tx <= 40.0))
    if bad_tx.any():
        i = int(np.flatnonzero(bad_tx)[0])
        raise DatasetError(f"{path}: line {ln[i]}: TX power {tx[i]:g} dBm is outside [-100, 40] dBm")
    tss = ts.take(pa.array(bt))
    okts = pc.match_substring_regex(tss, _TS_RE).to_numpy(zero_copy_only=False)
    if not okts.all():
        i = int(np.flatnonzero(~okts)[0])
        raise DatasetError(f"{path}: line {ln[i]}: bad timestamp {ascii(tss[i].as_py())}")
    tstr = pc.replace_substring(pc.replace_substring(tss, "Z", ""), "T", " ").to_numpy(zero_copy_only=False)
    t = (np.asarray(tstr.astype(str), dtype="datetime64[ms]").astype(np.int64) / 1000.0) + _MIT_UTC_OFFSET_S

    rng_ft = ffill(header(["Range"], 0, "range"), bt, "Range", unknown="nan")
    try:
        rng_ft = rng_ft.astype(float)
    except ValueError as e:
        raise DatasetError(f"{path}: a Range header is not a number: {e}") from e
    car_rx = ffill(header(["subject", "self_on_body_location"], 0, "receiver carriage"), bt, "subject")
    car_tx = ffill(header(["beacon_subject", "partner_on_body_location"], 0, "beacon carriage"), bt,
                   "beacon_subject")
    mod_rx = ffill(header(["receiver", "self_tester"], 0, "receiver model"), bt, "receiver")
    mod_tx = ffill(header(["beacon", "partner_tester"], 1, "beacon model"), bt, "beacon")
    sess = ffill(header(["session_id"], 0, "session"), bt, "session_id", unknown=path.name)
    if not matrix:      # the advertiser is the log's own identifier of each beacon
        mod_tx = np.array(["id:" + str(i) for i in ids], dtype=object)
    mod_rx = np.where(mod_rx == "", "receiver:" + path.name, mod_rx)
    return dict(rssi=rssi, tx=tx, t=t, dist=rng_ft * FEET_M, car_rx=car_rx, car_tx=car_tx,
                mod_rx=mod_rx, mod_tx=mod_tx, sess=sess, matrix=matrix)


def _carriage_codes(names: np.ndarray, table: dict, path) -> np.ndarray:
    uniq, inv = np.unique(names.astype(str), return_inverse=True)
    out = np.empty(len(uniq), dtype=np.int8)
    for k, u in enumerate(uniq):
        key = u.strip().lower()
        if key == "":           # no carriage header in the log: unknown
            out[k] = -1
            continue
        if key not in table:
            raise DatasetError(f"{path}: unknown on-body location {ascii(str(u))} (known: {sorted(table)})")
        out[k] = _CARRIAGES.index(table[key])
    return out[inv]


def load_mit(directory) -> RssiData:
    """MIT Lincoln Lab "Matrix" iPhone logs (``mit-matrix-data``): every ``*.txt`` log below ``directory``.

    Only the test beacon's advertisements (local name ``BlueProxTx``) are kept; a log without any
    ``BlueProxTx`` record (another beacon name, e.g. MIT's "BLE-RSSI-Various-Static-Configurations")
    keeps every ``Bluetooth`` record, its transmitting device being the log's own identifier of the
    advertiser (``id:<UUID>``). Header records are optional: without ``Range`` the distance is NaN
    (unknown), without carriage headers the carriage is -1, without ``session_id`` the session is the
    file name, without ``receiver`` the receiving device is ``receiver:<file name>``. Distance: the file's
    ``Range`` header (feet) times 0.3048 m. Carriage from the ``subject``/``beacon_subject`` headers
    (newer format: ``self_on_body_location``/``partner_on_body_location``) through :data:`MIT_CARRIAGE`;
    devices are the iPhone models of the ``receiver``/``beacon`` headers; all phones are iOS. Time: the
    log's local timestamp (US Eastern daylight time) converted to UNIX seconds. Each advertisement is
    logged twice upstream; both copies are kept (they are real log rows).
    """
    d = Path(directory)
    files = sorted(p for p in d.rglob("*.txt") if p.is_file())
    if not files:
        raise DatasetError(f"{d}: no MIT log files (*.txt) found")
    devices: list = []
    sessions: list = []
    cols = {k: [] for k in ("rssi", "tx", "t", "dist", "ctx", "crx", "dtx", "drx", "sess", "file")}
    dropped = 0
    for fi, p in enumerate(files):
        r = _mit_file(p)
        ok = _drop_sentinels(r["rssi"])
        dropped += int((~ok).sum())
        cols["rssi"].append(r["rssi"][ok])
        tx = r["tx"][ok]
        cols["tx"].append(np.where(tx == -999.0, np.nan, tx))
        cols["t"].append(r["t"][ok])
        cols["dist"].append(r["dist"][ok])
        cols["crx"].append(_carriage_codes(r["car_rx"][ok], MIT_CARRIAGE, p))
        cols["ctx"].append(_carriage_codes(r["car_tx"][ok], MIT_CARRIAGE, p))
        cols["drx"].append(_codes(r["mod_rx"][ok], devices))
        cols["dtx"].append(_codes(r["mod_tx"][ok], devices))
        cols["sess"].append(_codes(r["sess"][ok], sessions))
        cols["file"].append(np.full(int(ok.sum()), fi, dtype=np.int32))
    c = {k: np.concatenate(v) for k, v in cols.items()}
    n = len(c["rssi"])
    return RssiData(rssi=c["rssi"], distance_m=c["dist"], t_s=c["t"], tx_power=c["tx"],
                    carriage_tx=c["ctx"], carriage_rx=c["crx"], platform_tx=np.ones(n), platform_rx=np.ones(n),
                    device_tx=c["dtx"], device_rx=c["drx"], session=c["sess"], file=c["file"],
                    dataset=np.zeros(n), split=np.full(n, -1), devices=tuple(devices),
                    sessions=tuple(sessions), files=tuple(str(p.relative_to(d)) for p in files),
                    datasets=("mit",), dropped={"mit_rssi_sentinel": dropped})


# ---------------------------------------------------------------------------------------------------
# Herald "Edison" rig

_HERALD_RE = re.compile(r"^(\d{8}-\d{4})-([AB])\.csv$")


def load_herald(directory) -> RssiData:
    """Herald project phone-to-phone RSSI on the Edison cable-car rig (``herald-edison-rssi``).

    Every ``YYYYMMDD-HHMM-X.csv`` in ``directory``; ``X`` is the phone that logged (the receiver). Phone
    names come from ``metadata.csv`` (``phoneaname``/``phonebname`` of the row whose
    ``filenamephonea``/``filenamephoneb`` is the file), models and OS from ``phones.csv``; ``devices`` are
    the short names (``Netherlands``, ``P2``, ...). Distance: column ``distance`` in cm / 100 (0 cm rows
    are phones touching, kept). Carriage -1 (phones stand on a rig, not carried). Time: the 1-s local
    timestamp read as UTC (UK winter time, upstream does not say). ``session`` is the test
    ``YYYYMMDD-HHMM`` (both directions of one run).
    """
    d = Path(directory)
    meta_p, phones_p = d / "metadata.csv", d / "phones.csv"
    for p in (meta_p, phones_p):
        if not p.is_file():
            raise DatasetError(f"{p}: missing (needed to name the phones of each file)")
    meta = _read_csv_strings(meta_p)
    phones = _read_csv_strings(phones_p)
    ph_os = dict(zip(_col(phones, "name", phones_p).to_pylist(), _col(phones, "os", phones_p).to_pylist()))
    file_phones = {}
    for side, other in (("a", "b"), ("b", "a")):
        for fn, rx, tx in zip(_col(meta, f"filenamephone{side}", meta_p).to_pylist(),
                              _col(meta, f"phone{side}name", meta_p).to_pylist(),
                              _col(meta, f"phone{other}name", meta_p).to_pylist()):
            if fn:
                file_phones[fn.strip()] = (rx.strip(), tx.strip())
    files = sorted(p for p in d.iterdir() if _HERALD_RE.match(p.name))
    if not files:
        raise DatasetError(f"{d}: no Herald RSSI files (YYYYMMDD-HHMM-X.csv) found")
    devices: list = []
    sessions: list = []
    out = {k: [] for k in ("rssi", "dist", "t", "drx", "dtx", "prx", "ptx", "sess", "file")}
    dropped = 0
    for fi, p in enumerate(files):
        if p.name not in file_phones:
            raise DatasetError(f"{p}: not listed in {meta_p}")
        rx, tx = file_phones[p.name]
        for ph in (rx, tx):
            if ph not in ph_os:
                raise DatasetError(f"{phones_p}: phone {ph!r} (named in {meta_p} for {p.name}) is not listed")
        tbl = _read_csv_strings(p)
        line = np.arange(tbl.num_rows) + 2
        rssi = _to_float(_col(tbl, "rssi", p), p, line, "rssi")
        dist = _to_float(_col(tbl, "distance", p), p, line, "distance") / 100.0
        if (dist < 0).any():
            i = int(np.flatnonzero(dist < 0)[0])
            raise DatasetError(f"{p}: line {line[i]}: negative distance")
        tcol = _col(tbl, "time", p)
        okt = pc.match_substring_regex(tcol, _TS_RE).to_numpy(zero_copy_only=False)
        if not okt.all():
            i = int(np.flatnonzero(~okt)[0])
            raise DatasetError(f"{p}: line {line[i]}: bad time {ascii(tcol[i].as_py())}")
        t = np.asarray(tcol.to_numpy(zero_copy_only=False).astype(str),
                       dtype="datetime64[s]").astype(np.int64).astype(np.float64)
        ok = _drop_sentinels(rssi)
        dropped += int((~ok).sum())
        k = int(ok.sum())
        out["rssi"].append(rssi[ok])
        out["dist"].append(dist[ok])
        out["t"].append(t[ok])
        out["drx"].append(np.full(k, _codes(np.array([rx]), devices)[0], dtype=np.int32))
        out["dtx"].append(np.full(k, _codes(np.array([tx]), devices)[0], dtype=np.int32))
        out["prx"].append(np.full(k, PLATFORMS.index(ph_os[rx].strip().lower()), dtype=np.int8))
        out["ptx"].append(np.full(k, PLATFORMS.index(ph_os[tx].strip().lower()), dtype=np.int8))
        out["sess"].append(np.full(k, _codes(np.array([_HERALD_RE.match(p.name).group(1)]), sessions)[0],
                                   dtype=np.int32))
        out["file"].append(np.full(k, fi, dtype=np.int32))
    c = {k: np.concatenate(v) for k, v in out.items()}
    n = len(c["rssi"])
    return RssiData(rssi=c["rssi"], distance_m=c["dist"], t_s=c["t"], tx_power=np.full(n, np.nan),
                    carriage_tx=np.full(n, -1), carriage_rx=np.full(n, -1), platform_tx=c["ptx"],
                    platform_rx=c["prx"], device_tx=c["dtx"], device_rx=c["drx"], session=c["sess"],
                    file=c["file"], dataset=np.zeros(n), split=np.full(n, -1), devices=tuple(devices),
                    sessions=tuple(sessions), files=tuple(p.name for p in files), datasets=("herald",),
                    dropped={"herald_rssi_sentinel": dropped})


# ---------------------------------------------------------------------------------------------------
# pcng (Ng, Spachos, Plataniotis 2021)

#: Letter of the ``RSS_humanXY.csv`` file name -> CARRIAGES name (P = trouser pocket).
PCNG_CARRIAGE = {"H": "hand", "P": "trouser_pocket", "B": "backpack"}
_PCNG_RE = re.compile(r"^RSS_human([HPB])([HPB])\.csv$")


def load_pcng(directory) -> RssiData:
    """Phone-to-phone RSS carried by two people (``pcng-rss-smartphone``), 0.2-5 m.

    Every ``*/RSS_humanXY.csv`` below ``directory``; ``X``/``Y`` give the two body positions
    (:data:`PCNG_CARRIAGE`). ``device_tx`` is the ``device`` column (upstream filtered packets by this
    name, so it names the advertiser), ``device_rx`` the other phone of the file. Upstream does not record
    which phone was at which position in the mixed folders (HP, HB, PB); the loader assigns the first
    letter to the transmitter and the second to the receiver for every row. The radio model's carriage
    terms are additive and symmetric, so this does not affect the fit. Distance: ``dist`` in cm / 100.
    All four phones are Android (the app logged MAC addresses, which iOS does not expose). ``t_s`` is the
    device-relative ``elapsed`` column. ``split`` is upstream's row-level train/test split from
    ``RSS_humanXY_split.csv`` (1 train, 0 test) where present.
    """
    d = Path(directory)
    files = sorted(p for p in d.rglob("RSS_human*.csv") if _PCNG_RE.match(p.name))
    if not files:
        raise DatasetError(f"{d}: no pcng files (*/RSS_humanXY.csv) found")
    devices: list = []
    sessions: list = []
    out = {k: [] for k in ("rssi", "dist", "t", "drx", "dtx", "ctx", "crx", "sess", "file", "split")}
    dropped = 0
    for fi, p in enumerate(files):
        m = _PCNG_RE.match(p.name)
        tbl = _read_csv_strings(p)
        line = np.arange(tbl.num_rows) + 2
        rssi = _to_float(_col(tbl, "rss", p), p, line, "rss")
        dist = _to_float(_col(tbl, "dist", p), p, line, "dist") / 100.0
        t = _to_float(_col(tbl, "elapsed", p), p, line, "elapsed")
        dev = _col(tbl, "device", p).to_numpy(zero_copy_only=False).astype(str)
        names = np.unique(dev)
        if len(names) != 2:
            raise DatasetError(f"{p}: expected the packets of two phones, found device names {list(names)}")
        split = np.full(tbl.num_rows, -1, dtype=np.int8)
        sp = p.with_name(p.stem + "_split.csv")
        if sp.is_file():
            stbl = _read_csv_strings(sp)
            s = _col(stbl, "split", sp).to_numpy(zero_copy_only=False).astype(str)
            if len(s) != tbl.num_rows:
                raise DatasetError(f"{sp}: {len(s)} rows, but {p.name} has {tbl.num_rows}")
            badv = ~np.isin(s, ["train", "test"])
            if badv.any():
                i = int(np.flatnonzero(badv)[0])
                raise DatasetError(f"{sp}: line {i + 2}: split {ascii(str(s[i]))} is neither 'train' nor 'test'")
            split = (s == "train").astype(np.int8)
        ok = _drop_sentinels(rssi)
        dropped += int((~ok).sum())
        k = int(ok.sum())
        code = _codes(names, devices)
        is1 = dev[ok] == names[1]
        out["dtx"].append(np.where(is1, code[1], code[0]).astype(np.int32))
        out["drx"].append(np.where(is1, code[0], code[1]).astype(np.int32))
        out["rssi"].append(rssi[ok])
        out["dist"].append(dist[ok])
        out["t"].append(t[ok])
        out["ctx"].append(np.full(k, _CARRIAGES.index(PCNG_CARRIAGE[m.group(1)]), dtype=np.int8))
        out["crx"].append(np.full(k, _CARRIAGES.index(PCNG_CARRIAGE[m.group(2)]), dtype=np.int8))
        out["sess"].append(np.full(k, _codes(np.array([p.parent.name]), sessions)[0], dtype=np.int32))
        out["file"].append(np.full(k, fi, dtype=np.int32))
        out["split"].append(split[ok])
    c = {k: np.concatenate(v) for k, v in out.items()}
    n = len(c["rssi"])
    return RssiData(rssi=c["rssi"], distance_m=c["dist"], t_s=c["t"], tx_power=np.full(n, np.nan),
                    carriage_tx=c["ctx"], carriage_rx=c["crx"], platform_tx=np.zeros(n),
                    platform_rx=np.zeros(n), device_tx=c["dtx"], device_rx=c["drx"], session=c["sess"],
                    file=c["file"], dataset=np.zeros(n), split=c["split"], devices=tuple(devices),
                    sessions=tuple(sessions), files=tuple(str(p.relative_to(d)) for p in files),
                    datasets=("pcng",), dropped={"pcng_rssi_sentinel": dropped})


def load_all(data_dir) -> RssiData:
    """MIT, Herald and pcng pooled (``data_dir`` = the shared data folder holding the three folders)."""
    d = Path(data_dir)
    return RssiData.concat(load_mit(d / "mit-matrix-data"), load_herald(d / "herald-edison-rssi"),
                           load_pcng(d / "pcng-rss-smartphone"))


# ---------------------------------------------------------------------------------------------------
# Google's GAEN calibration table

@dataclass(frozen=True)
class CalibrationTable:
    """Google's per-model GAEN BLE calibration (June 2020), one row per Android model.

    ``rssi_correction`` (dB): added to the model's raw RSSI to put it on the iPhone scale (so the model
    reads ``-rssi_correction`` dB relative to an iPhone). ``tx`` (dBm): the model's advertised TX power on
    the iPhone scale. ``measured``: Google measured the model (else an OEM default/extrapolation).
    """

    oem: np.ndarray
    model: np.ndarray
    rssi_correction: np.ndarray
    tx: np.ndarray
    measured: np.ndarray

    def __len__(self) -> int:
        return len(self.model)

    def lookup(self, model: str) -> int:
        """Row of a model name (exact match), -1 if absent."""
        hit = np.flatnonzero(self.model == model)
        return int(hit[0]) if hit.size else -1


_CAL_COLS = ("oem", "model", "rssi correction", "tx", "has direct measurement")


def load_calibration_table(path) -> CalibrationTable:
    """Read ``EN Calibration June 13th.csv`` (columns matched by their leading words, see the README)."""
    p = Path(path)
    tbl = _read_csv_strings(p)
    names = {}
    for want in _CAL_COLS:
        hit = [c for c in tbl.column_names if c.strip().lower().startswith(want)]
        if len(hit) != 1:
            raise DatasetError(f"{p}: line 1: expected one column starting with {ascii(want)}, header is "
                               f"{ascii(tbl.column_names)}")
        names[want] = hit[0]
    line = np.arange(tbl.num_rows) + 2
    corr = _to_float(tbl.column(names["rssi correction"]).combine_chunks(), p, line, "rssi correction")
    tx = _to_float(tbl.column(names["tx"]).combine_chunks(), p, line, "tx")
    meas = tbl.column(names["has direct measurement"]).combine_chunks().to_numpy(zero_copy_only=False)
    meas = np.char.lower(np.char.strip(meas.astype(str)))
    badm = ~np.isin(meas, ["yes", "no"])
    if badm.any():
        i = int(np.flatnonzero(badm)[0])
        raise DatasetError(f"{p}: line {line[i]}: 'has direct measurement' is {ascii(str(meas[i]))}, not yes/no")
    return CalibrationTable(
        oem=tbl.column(names["oem"]).to_numpy(zero_copy_only=False).astype(object),
        model=tbl.column(names["model"]).to_numpy(zero_copy_only=False).astype(object),
        rssi_correction=corr.astype(np.int16), tx=tx.astype(np.int16), measured=meas == "yes")


# ---------------------------------------------------------------------------------------------------
# Dublin tram GAEN attenuation durations (Leith & Farrell 2020)

#: Attenuation bins (dB) of the tram data's 19 columns (the README's list).
TRAM_ATT_EDGES = np.array([48, 50, 52, 54, 56, 58, 60, 62, 64, 66, 68, 70, 72, 74, 76, 78, 80, 85, 90, 100],
                          dtype=np.float64)


@dataclass(frozen=True)
class TramData:
    """GAEN attenuation histograms on a Dublin tram: ``minutes`` (72 x 19, min per attenuation bin of
    :data:`TRAM_ATT_EDGES`, dB), ``distance_m`` (72, m), ``pair`` (72 x 2, handset indices 1-7)."""

    minutes: np.ndarray
    distance_m: np.ndarray
    pair: np.ndarray
    att_edges: np.ndarray


def _read_matrix(path: Path, ncol: int) -> np.ndarray:
    """Whitespace-separated numbers with ``#`` comments (Octave ASCII) as a (rows, ncol) float64 array."""
    try:
        a = np.loadtxt(path, comments="#", ndmin=2, dtype=np.float64)
    except OSError as e:
        raise DatasetError(f"{path}: cannot be read: {e}") from e
    except ValueError as e:       # numpy names the offending row (counting data rows) and column
        raise DatasetError(f"{path}: {e}") from e
    if a.shape[1] != ncol:
        raise DatasetError(f"{path}: expected {ncol} numbers per row, got {a.shape[1]}")
    return a


def load_dublintram(directory) -> TramData:
    """The three numeric files of ``dublintram-gaen`` (whitespace-separated, ``#`` comments)."""
    d = Path(directory)
    att = _read_matrix(d / "dublintram_dataset_attenuations.txt", len(TRAM_ATT_EDGES) - 1)
    dist = _read_matrix(d / "dublintram_dataset_distances.txt", 1)[:, 0]
    pair = _read_matrix(d / "dublintram_dataset_pairs.txt", 2).astype(np.int64)
    if not (len(att) == len(dist) == len(pair)):
        raise DatasetError(f"{d}: row counts differ: attenuations {len(att)}, distances {len(dist)}, "
                           f"pairs {len(pair)}")
    return TramData(minutes=att, distance_m=dist, pair=pair, att_edges=TRAM_ATT_EDGES.copy())
