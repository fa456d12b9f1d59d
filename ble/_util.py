"""Small helpers shared inside :mod:`ble`: quiet division, a UTF-8 check of a file and locating its first non-UTF-8 line."""
from __future__ import annotations

import codecs

import numpy as np

__all__ = ["quiet_divide", "is_utf8", "first_non_utf8"]


def quiet_divide(num, den):
    """``num / den`` without numpy's divide-by-zero / invalid warnings: the inf or NaN of x/0 and 0/0 is
    the intended result (callers mask or keep it)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / den


def is_utf8(path, chunk_bytes: int = 1 << 20) -> bool:
    """Whether the whole file ``path`` decodes as UTF-8 (read in chunks of ``chunk_bytes``; ~1 GB/s)."""
    dec = codecs.getincrementaldecoder("utf-8")()
    with open(path, "rb") as f:
        try:
            while block := f.read(chunk_bytes):
                dec.decode(block)
            dec.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def first_non_utf8(path) -> tuple[int, int, str, str] | None:
    """The first line of ``path`` that is not UTF-8 text, as ``(line number, byte position in the line
    (1-based), the line escaped with ascii() (at most 60 bytes), the bad bytes escaped)``, or None.
    The error path of the readers: reads the file once, line by line."""
    with open(path, "rb") as f:
        for no, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return no, e.start + 1, ascii(raw.rstrip(b"\r\n")[:60]), ascii(raw[e.start:e.start + 4])
    return None
