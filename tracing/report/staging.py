"""Outputs that replace the previous ones whole or not at all.

A command writes its result files into a staging folder ``OUT/.staging/`` and calls
:meth:`StagedOutputs.commit` at the very end, which

1. removes ``OUT/outputs.json`` (the manifest of the previous results: from here on the folder does not
   claim to be complete),
2. removes the files the previous manifest listed that this run does not produce (so no stale
   ``epidemic.csv`` is left beside new tables),
3. moves every staged file into place (``os.replace``, same file system) and
4. writes the new manifest last (atomically): relative path -> size and SHA-256 of every output.

A run that fails or is killed before ``commit`` leaves the previous results and their manifest as
they were (the staging folder is removed at the next start); a kill inside ``commit`` (a few renames)
leaves a folder without ``outputs.json``, i.e. one that says it is incomplete. The manifest holds no
time or path, so equal results give equal bytes.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from ble.schema import write_text_atomic

__all__ = ["MANIFEST", "STAGE", "StagedOutputs", "read_manifest"]

MANIFEST = "outputs.json"   #: the manifest of a folder's complete results
STAGE = ".staging"          #: the staging folder inside the output folder


def read_manifest(out) -> dict | None:
    """``{"files": {relative path: {"bytes", "sha256"}}}`` of ``out``, or None when it has none."""
    p = Path(out) / MANIFEST
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("files"), dict) else None


def _sha256(p: Path) -> str:
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class StagedOutputs:
    """The staging folder of the output folder ``out`` (created empty; a leftover of a killed run is
    removed). Write results under :attr:`dir`, then call :meth:`commit`."""

    def __init__(self, out):
        self.out = Path(out)
        self.dir = self.out / STAGE
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir(parents=True)

    def final(self, p) -> Path:
        """Where the staged path ``p`` (under :attr:`dir`) lands after :meth:`commit`."""
        return self.out / Path(p).relative_to(self.dir)

    def commit(self) -> dict:
        """Move the staged files into place and write the manifest last; return the manifest."""
        files = sorted(p for p in self.dir.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))
        rel = [p.relative_to(self.dir).as_posix() for p in files]
        doc = {"files": {r: {"bytes": p.stat().st_size, "sha256": _sha256(p)} for r, p in zip(rel, files)}}
        old = read_manifest(self.out)
        (self.out / MANIFEST).unlink(missing_ok=True)
        for r in sorted(set(old["files"]) - set(rel)) if old else ():
            q = self.out / r
            if self.out.resolve() in q.resolve().parents and q.is_file():    # never outside ``out``
                q.unlink()
        for r, p in zip(rel, files):
            dest = self.out / r
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(p, dest)
        write_text_atomic(self.out / MANIFEST, json.dumps(doc, indent=1, sort_keys=True) + "\n")
        shutil.rmtree(self.dir, ignore_errors=True)
        return doc
