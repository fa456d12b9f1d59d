"""Rolling identifiers: the Bluezone key chain, GAEN rolling proximity identifiers and the simulator's
fast keyed 64-bit IDs.

Which scheme is used where
==========================

==================  ==========================================  ============================================
scheme              functions                                   used by
==================  ==========================================  ============================================
Bluezone            :func:`bluezone_daily_keys`,                real Bluezone logs; tracing's F0 -> F1
(SHA-256 chain)     :func:`bluezone_subkeys`,                   regeneration of a published daily key,
                    :func:`bluezone_ids`,                       slot by slot (what every phone does)
                    :func:`bluezone_regenerate`
GAEN (HKDF + AES)   :func:`gaen_rpis`                           GAEN logs / exposure-window imports
simulator PRF       :func:`sim_keys`, :func:`sim_rids`,         the simulator and adoption sweeps: same
                    :func:`_prf64` (njit-callable)              interface (key, slot) -> ID, numba kernel
==================  ==========================================  ============================================

In record arrays every ID is a ``uint64`` (:func:`id_to_u64`: the first 8 bytes, big-endian, of a
12-byte Bluezone or 16-byte GAEN ID; :func:`hex_to_u64` for hex strings in exported logs).

Bluezone (facts from ``PROTOCOLS.md`` and the app's public source)
------------------------------------------------------------------
Public source: repository ``BluezoneGlobal/react-native-bluetooth-scan``, files
``lib/android/src/main/java/com/scan/bluezoneid/BluezoneIdGenerator.java`` (ID generation) and
``.../BluezoneIdTrace.java`` (``checkContactF``, the regeneration on the phone); the iOS Swift port
does the same.

* base key: 32 random bytes (``KeyGenerator.getInstance("HmacSHA256")``), stored with its creation day.
* daily key of day *n* after the base key's creation day = SHA-256 applied *n* times to the base key
  (``createBluezoneDailyKey``: "Default" is the base key itself, then ``times`` hashes). So **day 0's
  daily key is the base key itself**, not SHA-256(base key).
* first sub-key = SHA-256(daily key ‖ ASCII ``"bluzonesubkey"``) (sic: the salt is spelled without
  the "e"); every next sub-key = SHA-256(previous sub-key); ``MAX_NUMBER_SUB_KEY_PER_DAY = 24 * 4``
  = 96 sub-keys, one per 900 s slot counted from the start of the day.
* broadcast ID: 12 bytes of the 32-byte sub-key, ``convertBluezoneSubKeyToBluezoneId`` ("12 Byte:
  4 x 4 bytes + 2 x 8 bytes"): for i < 4 byte ``4*i``, for i >= 4 byte ``2*(i-4) + 16``, i.e. sub-key
  bytes **0, 4, 8, 12, 16, 18, 20, 22, 24, 26, 28, 30** (:data:`BLUEZONE_ID_BYTES`).
* regeneration (``checkContactF(dailyKey, timeDk, max, timeTe)``): starting at the published start
  time ``timeDk``, slot after slot of ``86400/max`` s, the phone derives the next sub-key and looks for
  its ID in its own log between the slot's start and end, until ``timeTe``; after ``max`` slots it
  hashes the daily key once more (next day) and restarts the sub-key chain. :func:`bluezone_regenerate`
  reproduces exactly this, including the day roll-over.

GAEN (Exposure Notification Cryptography Specification v1.2)
-----------------------------------------------------------
RPIK = HKDF-SHA256(TEK, salt=None, info="EN-RPIK", 16 bytes); RPI_j = AES-128-ECB(RPIK, "EN-RPI" ‖
0x00 * 6 ‖ ENIntervalNumber_j as uint32 little-endian); ENIntervalNumber = floor(unix time / 600 s);
144 RPIs per TEK. Verified against the published test vector (TEK 75c734c6…, interval 2642976).

Simulator PRF
-------------
``_prf64(key, slot)`` = splitmix64-finaliser(key XOR splitmix64-finaliser(slot·φ64 + c)). The finaliser
(Stafford's "mix13" variant used by splitmix64) is a bijection of 64-bit words with full avalanche, so
for one key the IDs of distinct slots never collide, and different keys give independent-looking
streams. It is a PRF-like hash for simulation only, **not** cryptographic (it is invertible given the
key). Counter-based: no state, so results do not depend on thread count or evaluation order.
"""
from __future__ import annotations

import hashlib

import numba
import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

BLUEZONE_SLOT_S = 900          #: s, lifetime of one Bluezone rolling ID
GAEN_SLOT_S = 600              #: s, lifetime of one GAEN RPI (one ENInterval)
BLUEZONE_IDS_PER_DAY = 96      #: Bluezone sub-keys per daily key (24 * 4)
GAEN_RPIS_PER_TEK = 144        #: TEKRollingPeriod
DAY_S = 86400                  #: s
BLUEZONE_SALT = b"bluzonesubkey"  #: sub-key salt exactly as in the Bluezone source (sic)
#: Sub-key byte positions that make up the 12-byte Bluezone ID (``convertBluezoneSubKeyToBluezoneId``).
BLUEZONE_ID_BYTES = np.array([0, 4, 8, 12, 16, 18, 20, 22, 24, 26, 28, 30], dtype=np.intp)

__all__ = [
    "BLUEZONE_SLOT_S", "GAEN_SLOT_S", "BLUEZONE_IDS_PER_DAY", "GAEN_RPIS_PER_TEK", "BLUEZONE_ID_BYTES",
    "bluezone_daily_keys", "bluezone_subkeys", "bluezone_ids", "bluezone_regenerate", "gaen_rpik",
    "gaen_rpis", "en_interval_number", "sim_keys", "sim_rids", "id_to_u64", "hex_to_u64", "slot_of", "mix64",
]


# ----------------------------------------------------------------------------------------------------
# Bluezone
# ----------------------------------------------------------------------------------------------------
def _check_key(key, name: str, length: int = 32) -> bytes:
    if isinstance(key, np.ndarray):
        key = key.astype(np.uint8).tobytes()
    if not isinstance(key, (bytes, bytearray, memoryview)):
        raise ValueError(f"{name} must be bytes, got {type(key).__name__}")
    key = bytes(key)
    if len(key) != length:
        raise ValueError(f"{name} must be {length} bytes, got {len(key)}")
    return key


def _sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def bluezone_daily_keys(base_key: bytes, n_days: int) -> list[bytes]:
    """Daily keys of days ``0..n_days-1`` counted from the base key's creation day.

    Day 0's key is the 32-byte base key itself and day n's key is SHA-256 of day n-1's key, as in the
    Bluezone source (``BluezoneIdGenerator.createBluezoneDailyKey``).
    """
    key = _check_key(base_key, "base_key")
    if int(n_days) != n_days or n_days < 0:
        raise ValueError(f"n_days must be a non-negative integer, got {n_days!r}")
    out = []
    for _ in range(int(n_days)):
        out.append(key)
        key = _sha256(key)
    return out


def bluezone_subkeys(daily_key: bytes, n: int = BLUEZONE_IDS_PER_DAY) -> list[bytes]:
    """The ``n`` 32-byte sub-keys of a daily key: SHA-256(daily ‖ "bluzonesubkey"), then chained."""
    daily_key = _check_key(daily_key, "daily_key")
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    sub = _sha256(daily_key + BLUEZONE_SALT)
    out = []
    for _ in range(int(n)):
        out.append(sub)
        sub = _sha256(sub)
    return out


def _subkeys_to_ids(subkeys: list[bytes]) -> np.ndarray:
    if not subkeys:
        return np.zeros((0, 12), dtype=np.uint8)
    raw = np.frombuffer(b"".join(subkeys), dtype=np.uint8).reshape(len(subkeys), 32)
    return np.ascontiguousarray(raw[:, BLUEZONE_ID_BYTES])


def bluezone_ids(daily_key: bytes) -> np.ndarray:
    """The 96 broadcast IDs of one day, shape (96, 12) uint8; row k is broadcast in slot k
    (``[day_start + 900 k, day_start + 900 (k+1))`` s)."""
    return _subkeys_to_ids(bluezone_subkeys(daily_key))


def bluezone_regenerate(daily_key: bytes, day_start_s: float, t_from: float, t_to: float
                        ) -> tuple[np.ndarray, np.ndarray]:
    """Regenerate a published daily key's IDs for the slots overlapping ``[t_from, t_to]``.

    ``daily_key`` is the key of the day that starts at ``day_start_s`` (s, UNIX epoch or simulator
    time). Slot k starts at ``day_start_s + 900 k``; slots past the end of the day continue with the
    next day's key (SHA-256 of ``daily_key``), exactly as ``checkContactF`` in the Bluezone source.
    Returns ``(slot_start_s, ids)``: float64 slot start times (s) and the (k, 12) uint8 IDs; a logged
    sighting of ``ids[m]`` at time t matches if ``slot_start_s[m] <= t < slot_start_s[m] + 900``.
    """
    daily_key = _check_key(daily_key, "daily_key")
    day_start_s, t_from, t_to = float(day_start_s), float(t_from), float(t_to)
    if not (np.isfinite(day_start_s) and np.isfinite(t_from) and np.isfinite(t_to)):
        raise ValueError("day_start_s, t_from and t_to must be finite (s)")
    if t_to < t_from:
        raise ValueError(f"t_to ({t_to}) is before t_from ({t_from})")
    if t_from < day_start_s:
        raise ValueError(f"t_from ({t_from}) is before the key's day start ({day_start_s}); the chain "
                         "cannot be run backwards")
    k0 = int((t_from - day_start_s) // BLUEZONE_SLOT_S)
    k1 = int((t_to - day_start_s) // BLUEZONE_SLOT_S)
    if k1 - k0 + 1 > 14 * BLUEZONE_IDS_PER_DAY * 10:
        raise ValueError("time range longer than 140 days; the Bluezone retention is 14 days")
    ids, starts = [], []
    key = daily_key
    for day in range(k1 // BLUEZONE_IDS_PER_DAY + 1):
        lo = max(k0 - day * BLUEZONE_IDS_PER_DAY, 0)
        hi = min(k1 - day * BLUEZONE_IDS_PER_DAY, BLUEZONE_IDS_PER_DAY - 1)
        if hi >= lo:
            ids.append(_subkeys_to_ids(bluezone_subkeys(key, hi + 1)[lo:]))
            starts.append(day_start_s + BLUEZONE_SLOT_S * (day * BLUEZONE_IDS_PER_DAY
                                                           + np.arange(lo, hi + 1, dtype=np.float64)))
        key = _sha256(key)
    return np.concatenate(starts), np.concatenate(ids)


# ----------------------------------------------------------------------------------------------------
# GAEN
# ----------------------------------------------------------------------------------------------------
def en_interval_number(t) -> np.ndarray:
    """ENIntervalNumber = floor(unix time / 600 s), int64."""
    return np.floor_divide(np.asarray(t, dtype=np.float64), GAEN_SLOT_S).astype(np.int64)


def gaen_rpik(tek: bytes) -> bytes:
    """Rolling Proximity Identifier Key = HKDF-SHA256(TEK, salt=None, info="EN-RPIK", L=16)."""
    tek = _check_key(tek, "tek", 16)
    return HKDF(algorithm=hashes.SHA256(), length=16, salt=None, info=b"EN-RPIK").derive(tek)


def gaen_rpis(tek: bytes, en_interval_start: int, n: int = GAEN_RPIS_PER_TEK) -> np.ndarray:
    """The 144 RPIs of a TEK, shape (144, 16) uint8; row j is broadcast in ENInterval
    ``en_interval_start + j`` (600 s each). All blocks are encrypted in one AES-ECB call."""
    if int(en_interval_start) != en_interval_start or en_interval_start < 0:
        raise ValueError(f"en_interval_start must be a non-negative integer, got {en_interval_start!r}")
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    start, n = int(en_interval_start), int(n)
    if start + n > 2**32:
        raise ValueError("ENIntervalNumber does not fit in uint32")
    rpik = gaen_rpik(tek)
    padded = np.zeros((n, 16), dtype=np.uint8)
    padded[:, :6] = np.frombuffer(b"EN-RPI", dtype=np.uint8)
    padded[:, 12:] = (start + np.arange(n, dtype=np.uint64)).astype("<u4").view(np.uint8).reshape(n, 4)
    enc = Cipher(algorithms.AES(rpik), modes.ECB()).encryptor()
    out = enc.update(padded.tobytes()) + enc.finalize()
    return np.frombuffer(out, dtype=np.uint8).reshape(n, 16).copy()


# ----------------------------------------------------------------------------------------------------
# Simulator PRF
# ----------------------------------------------------------------------------------------------------
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SLOT_C = np.uint64(0x632BE59BD9B4E019)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


@numba.njit(cache=True, inline="always")
def mix64(z):
    """splitmix64 finaliser: a bijection on uint64 with full avalanche (also the finaliser of every
    counter-based stream of the simulator, ``sim.rng``)."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@numba.njit(cache=True)
def _prf64(key, slot):
    """Keyed 64-bit ID of ``slot`` under ``key`` (both uint64). PRF-like, not cryptographic."""
    s = mix64(numba.uint64(slot) * _GOLDEN + _SLOT_C)
    return mix64(numba.uint64(key) ^ s)


@numba.njit(cache=True)
def _sim_rids_kernel(keys, slots, out):
    for i in range(keys.shape[0]):
        out[i] = _prf64(keys[i], slots[i])


def sim_keys(n: int, seed) -> np.ndarray:
    """``n`` random 64-bit device keys (uint64) from ``seed`` (int, SeedSequence or Generator)."""
    if int(n) != n or n < 0:
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    return rng.integers(0, np.iinfo(np.uint64).max, size=int(n), dtype=np.uint64, endpoint=True)


def sim_rids(keys, slots) -> np.ndarray:
    """Rolling IDs (uint64) of ``keys`` in ``slots`` (broadcast together; slot = :func:`slot_of`)."""
    keys = np.asarray(keys)
    slots = np.asarray(slots)
    if keys.dtype != np.uint64:
        if keys.dtype.kind not in "iu" and keys.size:
            raise ValueError(f"keys must be uint64, got {keys.dtype}")
        if keys.size and keys.dtype.kind == "i" and keys.min() < 0:
            raise ValueError("keys must be non-negative (uint64)")
        keys = keys.astype(np.uint64)
    if slots.dtype.kind not in "iu" and slots.size:
        raise ValueError(f"slots must be integers (use slot_of(t)), got {slots.dtype}")
    try:
        k, s = np.broadcast_arrays(keys, slots.astype(np.int64))
    except ValueError as e:
        raise ValueError(f"keys {keys.shape} and slots {slots.shape} do not broadcast") from e
    shape = k.shape
    kf = np.ascontiguousarray(k.reshape(-1))
    sf = np.ascontiguousarray(s.reshape(-1)).view(np.uint64)
    out = np.empty(kf.shape[0], dtype=np.uint64)
    _sim_rids_kernel(kf, sf, out)
    return out.reshape(shape)


# ----------------------------------------------------------------------------------------------------
# Conversions
# ----------------------------------------------------------------------------------------------------
def slot_of(t, period_s: float = BLUEZONE_SLOT_S) -> np.ndarray:
    """Slot index floor(t / period_s) (int64) of times ``t`` (s)."""
    if not period_s > 0:
        raise ValueError(f"period_s must be > 0, got {period_s!r}")
    t = np.asarray(t, dtype=np.float64)
    if not np.isfinite(t).all():
        raise ValueError("t must be finite (s)")
    return np.floor_divide(t, float(period_s)).astype(np.int64)


def id_to_u64(ids) -> np.ndarray:
    """First 8 bytes, big-endian, of each ID: (n, k) uint8 with k >= 8 -> (n,) uint64.

    A single ID (bytes or a (k,) array) gives a 0-d uint64 array.
    """
    if isinstance(ids, (bytes, bytearray, memoryview)):
        ids = np.frombuffer(bytes(ids), dtype=np.uint8)
    ids = np.asarray(ids)
    if ids.dtype != np.uint8:
        raise ValueError(f"ids must be uint8 bytes, got {ids.dtype}")
    if ids.ndim not in (1, 2) or ids.shape[-1] < 8:
        raise ValueError(f"ids must have shape (n, k>=8), got {ids.shape}")
    head = np.ascontiguousarray(ids[..., :8])
    return head.view(">u8")[..., 0].astype(np.uint64)


_HEX = np.full(256, 255, dtype=np.uint8)
for _c, _v in zip(b"0123456789abcdef", range(16)):
    _HEX[_c] = _v
for _c, _v in zip(b"ABCDEF", range(10, 16)):
    _HEX[_c] = _v


def hex_to_u64(strings) -> np.ndarray:
    """Hex ID strings (>= 16 hex digits, e.g. Bluezone's 24-digit IDs) -> uint64 of the first 8 bytes.

    Vectorised (no Python loop over rows); raises ValueError naming the first bad row.
    """
    a = np.asarray(strings)
    scalar = a.ndim == 0
    a = np.atleast_1d(a)
    if a.dtype.kind not in "US":
        raise ValueError(f"expected hex strings, got {a.dtype}")
    if a.dtype.kind == "U":
        try:
            a = np.char.encode(a, "ascii")
        except UnicodeEncodeError as e:
            raise ValueError(f"non-ASCII hex ID: {e}") from e
    a = np.char.strip(a)
    lens = np.char.str_len(a)
    if a.size and lens.min() < 16:
        r = int(np.flatnonzero(lens < 16)[0])
        raise ValueError(f"row {r}: hex ID {a[r]!r} shorter than 16 digits")
    n = a.size
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    raw = np.frombuffer(a.astype("S16").tobytes(), dtype=np.uint8).reshape(n, 16)
    vals = _HEX[raw]
    bad = (vals == 255).any(axis=1)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise ValueError(f"row {r}: {a[r]!r} is not a hex ID")
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    out = np.bitwise_or.reduce(vals.astype(np.uint64) << shifts, axis=1)
    return out[0] if scalar else out
