"""A results store that loses nothing: content-addressed work units of a sweep.

Every work unit of :mod:`tracing.sweep.tasks` (simulate one replicate of a scenario; one day of its
pair table under a rule; the curves of one replicate under one adoption strategy) is identified by the
hash of a **canonical JSON** of everything its result depends on (:func:`unit_hash`): the scenario's
parameters, the number of days, the rule's kind and parameters, the strategy, the replicate's seed
material (master seed and spawn key), the adoption grid, the package version and a digest of the
installed code and packaged data (:func:`sim.run.code_digest`: an edited module or a refitted
``ble/radio_default.toml`` makes every unit new), ... Its result is written
**atomically** (temporary file in the same folder, then ``os.replace`` -- :func:`ble.schema.atomic_path`)
under a name that contains that hash, with the hash and the parameters inside the file:

* ``units/sim-<label>-r<rep>-<hash>.json`` -- the completion record of a simulated replicate, written
  after its run folder (``runs/...``) is complete; the run folder carries the same hash in
  ``unit.json``, so a folder overwritten by a run of other parameters is never taken for this one;
* ``units/pairs-<label>-r<rep>-<rule>-d<day>-<hash>.parquet`` -- one day of the pair table
  (:data:`tracing.pairs.PAIR_DTYPE`), hash and parameters in the Parquet metadata; read whole by
  :meth:`Store.read_pairs`, or some of its columns by :func:`read_pair_columns`;
* ``units/curves-<label>-r<rep>-<rule>-<strategy>-<hash>.npz`` -- the replicate's curves on the sweep's
  grid and on the fine grid and its exact percolation threshold (``numpy.savez``, read back with
  ``allow_pickle=False``; hash and parameters in a JSON string member).

A file is either absent or complete (a killed process leaves at most a ``.*.tmp`` file, which is
ignored and cleaned up). :meth:`Store.done` accepts a unit only if its file exists, reads, and holds
the expected hash *and* the same canonical parameters: a unit file from different parameters (another
scale, seed, rule, version) is never reused. Nothing is ever loaded with pickle.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ble.schema import atomic_path, write_text_atomic
from sim.run import code_digest
from tracing.version import __version__

__all__ = ["HASH_CHARS", "canonical_json", "unit_params", "unit_hash", "safe_label", "Unit", "Store",
           "read_pair_columns"]

HASH_CHARS = 16          #: hex digits of the SHA-256 kept in names (64 bits)
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_REP = re.compile(r"(epidemic-)?rep-\d{3,}")   #: a replicate's run folder (tracing.sweep.plan)


def _plain(obj):
    """JSON-able plain Python of ``obj`` (mappings, sequences, numpy scalars/arrays, floats)."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_plain(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return float(repr(obj)) if obj != 0 else 0.0       # -0.0 and 0.0 hash alike
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"unit parameters must be plain data, got {type(obj).__name__}")


def canonical_json(params: Mapping) -> str:
    """Canonical JSON text of ``params``: sorted keys, no spaces, ASCII, floats by ``repr`` (exact),
    NaN/inf as strings, numpy values as Python values."""
    return json.dumps(_plain(params), sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False)


def unit_params(params: Mapping) -> dict:
    """``params`` with the package version and :func:`sim.run.code_digest` added (every unit depends on
    the code and the packaged data that made it)."""
    out = dict(_plain(params))
    out.setdefault("version", __version__)
    out.setdefault("code", code_digest())
    return out


def unit_hash(params: Mapping) -> str:
    """First :data:`HASH_CHARS` hex digits of the SHA-256 of :func:`canonical_json` of
    :func:`unit_params` of ``params``."""
    return hashlib.sha256(canonical_json(unit_params(params)).encode("ascii")).hexdigest()[:HASH_CHARS]


def safe_label(text: str) -> str:
    """A file-name component from user-provided text (preset, scenario file, rule, strategy): only
    ``[A-Za-z0-9._-]``, no leading dot, never empty, never ``..`` -- so store paths cannot leave the
    output folder whatever the user typed."""
    s = _SAFE.sub("_", str(text)).strip("._") or "x"
    return s[:64]


class Unit:
    """One work unit: ``kind`` (sim, pairs, curves), a readable ``label`` and its parameters."""

    __slots__ = ("kind", "label", "params", "hash")

    def __init__(self, kind: str, label: str, params: Mapping):
        self.kind = kind
        self.label = label
        self.params = unit_params(params)
        self.hash = unit_hash(self.params)

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.label}-{self.hash}"

    def __repr__(self):
        return f"Unit({self.name})"


_EXT = {"sim": ".json", "pairs": ".parquet", "curves": ".npz", "epidemic": ".npz"}


class Store:
    """The unit files of one sweep output folder (``root/units/``)."""

    def __init__(self, root):
        self.root = Path(root)
        self.units = self.root / "units"

    def path(self, unit: Unit) -> Path:
        p = self.units / (unit.name + _EXT[unit.kind])
        # belt and braces: labels are sanitised, but never write outside the store
        if self.units.resolve() not in p.resolve().parents:
            raise ValueError(f"unit path {p} is outside {self.units}")
        return p

    # ---- reading ------------------------------------------------------------------------------
    def read_record(self, unit: Unit) -> dict | None:
        """The stored ``{"hash", "params", ...}`` of ``unit`` if its file exists and reads; else None."""
        p = self.path(unit)
        if not p.is_file():
            return None
        try:
            if unit.kind == "sim":
                return json.loads(p.read_text(encoding="utf-8"))
            if unit.kind == "pairs":
                import pyarrow.parquet as pq
                md = pq.read_schema(p).metadata or {}
                raw = md.get(b"proxitrace.unit")
                return None if raw is None else json.loads(raw.decode("utf-8"))
            with np.load(p, allow_pickle=False) as z:
                return json.loads(str(z["unit"]))
        except Exception:  # unreadable or foreign file: not a finished unit
            return None

    def done(self, unit: Unit, run_rel: str | None = None) -> bool:
        """True if ``unit``'s file is complete and was made from exactly these parameters (for a sim
        unit also: its run folder is ``run_rel`` when given, holds ``run.json`` and carries the
        unit's hash)."""
        rec = self.read_record(unit)
        if not rec or rec.get("hash") != unit.hash:
            return False
        if canonical_json(rec.get("params", {})) != canonical_json(unit.params):
            return False
        if unit.kind == "sim":
            if run_rel is not None and rec.get("run_dir") != Path(run_rel).as_posix():
                return False
            run = self.root / rec.get("run_dir", "")
            try:
                marker = json.loads((run / "unit.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return False
            return marker.get("hash") == unit.hash and (run / "run.json").is_file()
        return True

    def record(self, unit: Unit, **extra) -> dict:
        return {"hash": unit.hash, "kind": unit.kind, "label": unit.label, "params": unit.params,
                **extra}

    # ---- writing (atomic) ---------------------------------------------------------------------
    def write_sim(self, unit: Unit, run_dir: Path, **extra) -> Path:
        """Mark a simulated run folder finished: ``run_dir/unit.json`` then the store record."""
        rel = Path(run_dir).resolve().relative_to(self.root.resolve())
        rec = self.record(unit, run_dir=rel.as_posix(), **extra)
        write_text_atomic(Path(run_dir) / "unit.json", json.dumps(rec, indent=1) + "\n")
        p = self.path(unit)
        write_text_atomic(p, json.dumps(rec, indent=1) + "\n")
        return p

    def write_pairs(self, unit: Unit, pairs: np.ndarray) -> Path:
        import pyarrow as pa
        import pyarrow.parquet as pq
        t = pa.table({name: pa.array(np.ascontiguousarray(pairs[name])) for name in pairs.dtype.names})
        t = t.replace_schema_metadata({"proxitrace.unit": json.dumps(self.record(unit))})
        p = self.path(unit)
        with atomic_path(p) as tmp:
            pq.write_table(t, tmp, compression="zstd")
        return p

    def read_pairs(self, unit: Unit) -> np.ndarray:
        import pyarrow.parquet as pq
        from tracing.core.pairs import PAIR_DTYPE
        p = self.path(unit)
        t = pq.read_table(p)
        out = np.zeros(t.num_rows, dtype=PAIR_DTYPE)
        for name in PAIR_DTYPE.names:
            out[name] = t.column(name).to_numpy(zero_copy_only=False)
        return out

    def write_curves(self, unit: Unit, curves: dict, fine: dict, perc: float, **extra) -> Path:
        arrays = {f"grid__{k}": np.asarray(v, dtype=np.float64) for k, v in curves.items()}
        arrays.update({f"fine__{k}": np.asarray(v, dtype=np.float64) for k, v in fine.items()})
        arrays["perc"] = np.float64(perc)
        arrays["unit"] = np.array(json.dumps(self.record(unit, **extra)))
        p = self.path(unit)
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        return p

    def read_curves(self, unit: Unit) -> tuple[dict, dict, float, dict]:
        """``(curves, fine, perc, record)`` of a finished curves unit."""
        with np.load(self.path(unit), allow_pickle=False) as z:
            curves = {k[6:]: z[k] for k in z.files if k.startswith("grid__")}
            fine = {k[6:]: z[k] for k in z.files if k.startswith("fine__")}
            return curves, fine, float(z["perc"]), json.loads(str(z["unit"]))

    def write_arrays(self, unit: Unit, arrays: dict, **extra) -> Path:
        """A unit of named arrays (numeric or text, no objects) -> ``.npz`` with its record (the
        epidemic units of :mod:`tracing.sweep.tasks`)."""
        arrays = {f"a__{k}": np.asarray(v) for k, v in arrays.items()}
        arrays["unit"] = np.array(json.dumps(self.record(unit, **extra), default=float))
        p = self.path(unit)
        with atomic_path(p) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
        return p

    def read_arrays(self, unit: Unit) -> tuple[dict, dict]:
        """``(arrays, record)`` of a finished :meth:`write_arrays` unit."""
        with np.load(self.path(unit), allow_pickle=False) as z:
            return ({k[3:]: z[k] for k in z.files if k.startswith("a__")}, json.loads(str(z["unit"])))

    def clean_temp(self) -> int:
        """Remove what a killed run left (before a sweep plans its units, e.g. on ``--resume``):
        temporary files (``.NAME.*.tmp``) in the output folder, in ``units/`` and anywhere under
        ``runs/``, and every partial run folder (``runs/[<label>/][epidemic-]rep-NNN`` without the ``unit.json``
        that :meth:`write_sim` writes last: its Parquet files are incomplete). Return how many
        files and folders were removed."""
        k = 0
        runs = self.root / "runs"
        for d in (self.root, self.units):
            if d.is_dir():
                for p in d.glob(".*.tmp"):
                    p.unlink(missing_ok=True)
                    k += 1
        if runs.is_dir():
            for d in sorted(runs.rglob("*rep-*"), reverse=True):
                if d.is_dir() and _REP.fullmatch(d.name) and not (d / "unit.json").is_file():
                    shutil.rmtree(d, ignore_errors=True)
                    k += 1
            for p in runs.rglob(".*.tmp"):
                p.unlink(missing_ok=True)
                k += 1
        return k


def read_pair_columns(path, dtypes: Mapping) -> dict:
    """The columns ``{name: dtype}`` of a stored pair table (a pairs unit's Parquet file) as contiguous
    arrays, filled one row group at a time: beside them only one row group's Arrow buffers, and no other
    column decoded.  Agent columns ``i`` / ``j`` must fit ``0..`` their integer dtype's maximum
    (``ValueError`` naming the file otherwise)."""
    import pyarrow as pa                   # heavy: imported where tables are read
    import pyarrow.parquet as pq
    f = pq.ParquetFile(path)
    out = {k: np.empty(f.metadata.num_rows, dt) for k, dt in dtypes.items()}
    q, t = 0, None
    for g in range(f.num_row_groups):
        t = f.read_row_group(g, columns=list(out))
        for k, x in out.items():
            v = t.column(k).to_numpy()
            if k in ("i", "j") and len(v) and not 0 <= v.min() <= v.max() <= np.iinfo(x.dtype).max:
                raise ValueError(f"{path}: agent ids outside 0..{np.iinfo(x.dtype).max} in column {k}")
            x[q:q + len(v)] = v
        q += t.num_rows
    del t
    pa.default_memory_pool().release_unused()          # else Arrow's allocator keeps the freed buffers
    return out
