"""Counter-based random streams: the one home of the simulator's hashing and of its named stream salts.

Every random number of the simulator and of the closed loop that has to be the same at any thread
count, in any evaluation order and at every adoption level (common random numbers) is a pure function
of a key: the splitmix64 finaliser (:func:`ble.ids.mix64`, a bijection on uint64, shared with the rolling IDs) applied to a combination of
the run seed and integer counters. Two key layouts are in use; both are kept bit for bit:

* :func:`stream_hash` ``(seed, stream, a, b, c)`` -- the epidemic, QR check-ins and the closed loop
  (``stream`` one of the ``ST_*`` salts below); :func:`unif` and the vectorised :func:`uniforms`
  turn it into uniforms in (0, 1).
* :func:`hash4` ``(seed, a, b, c)`` -- positions and scanning (``c`` or ``b`` one of the ``SALT_*``
  salts below); :func:`u01` (uniform in [0, 1)) and :func:`normal2` (two standard normals) read it.
  Per scan step and pair of phones: :func:`step_seed` and :func:`pair_hash`.

Stages and salts of the *numpy* generators (``np.random.default_rng`` / ``SeedSequence``) used for
draws that need no counter (population, places, device keys, schedules, adoption ranks) are listed in
the same table (``STAGE_*``, ``SALT_*``), so that no two consumers share a stream by accident.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from ble.ids import mix64

__all__ = [
    # constants and hashing
    "GOLDEN", "M1", "M2", "K2", "K3", "K4", "STEP_STRIDE",
    "mix64", "hash4", "stream_hash", "step_seed", "pair_hash",
    # uniforms and normals
    "u01", "u01_open", "u32_pair", "normal2", "pair_normals", "unif", "uniform_kernel", "uniforms",
    # counter streams (stream_hash / uniforms)
    "ST_COURSE", "ST_SYM", "ST_TX", "ST_ENV", "ST_ENV_T", "ST_IMPORT", "ST_TEST", "ST_COMPLY", "ST_DROP",
    "ST_SEED", "ST_MIX_PARTNER", "ST_MIX_TIME", "ST_MIX_DIST", "ST_QR_SCAN",
    # hash4 salts
    "SALT_JITTER", "SALT_MOVE", "SALT_TABLE_SEAT", "SALT_BUS_SEAT", "SALT_WAYPOINT_PHASE", "SALT_SCAN_PHASE",
    "SALT_SCAN_STEP",
    # numpy generators
    "STAGE_POPULATION", "STAGE_PLACES", "STAGE_DEVICE_KEYS", "STAGE_HASH_SEED", "STAGE_SCHEDULE",
    "SALT_ADOPTION", "SALT_EPIDEMIC_SEED", "SALT_QR",
]

# ----------------------------------------------------------------------------------------------------
# the table of named streams and salts (values are part of every output: never change one)
# ----------------------------------------------------------------------------------------------------
# counter streams: the ``stream`` argument of stream_hash / unif / uniforms
ST_COURSE = 1          # sim.course: Erlang phase durations, key (agent, phase, k)
ST_SYM = 2             # sim.course: symptomatic or not, key (agent)
ST_TX = 3              # sim.epidemic: infection by one contact record, key (day, record id, direction)
ST_ENV = 4             # sim.epidemic: number of environmental infections, key (day, source)
ST_ENV_T = 5           # sim.epidemic: environmental target (k + 1) and time (k + 1000), key (day, source, k)
ST_IMPORT = 6          # sim.epidemic: background import and its time of day, key (agent, day[, 1])
ST_TEST = 7            # tracing.closedloop: agent would get tested when symptomatic, key (agent)
ST_COMPLY = 8          # tracing.closedloop: complies with a notification, key (agent, day, kind)
ST_DROP = 9            # tracing.closedloop: drops out of isolation, key (agent, day)
ST_SEED = 10           # sim.epidemic: choice of the seed infections and their times, key (agent[, 1])
ST_MIX_PARTNER = 20    # sim.mixing: well-mixed synthetic day, partner, key (day, agent, k)
ST_MIX_TIME = 21       # sim.mixing: well-mixed synthetic day, contact time, key (day, agent, k)
ST_MIX_DIST = 22       # sim.mixing: well-mixed synthetic day, distance, key (day, agent, k)
ST_QR_SCAN = 31        # sim.qr: would scan the venue code, key (agent, venue, entry second)

# hash4 salts: the last (or, for per-visit seats, the last) counter of hash4(seed, a, b, salt)
SALT_JITTER = 0x11           # sim.positions: Gaussian fidgeting per step, key (day*STEP_STRIDE + step, agent)
SALT_MOVE = 0x22             # sim.positions: own-spot worker elsewhere in the room, same key
SALT_TABLE_SEAT = 0x300      # sim.positions: + segment slot; seat at a table per visit, key (day, agent)
SALT_BUS_SEAT = 0x400        # sim.positions: + segment slot; bus seat per ride, key (day, agent)
SALT_WAYPOINT_PHASE = 0x5A5A  # sim.positions: phase of a random-waypoint walk, key (agent, instance)
SALT_SCAN_PHASE = 0xF00      # sim.scanning: each phone's scan phase in the step, hash4(seed, agent, s, s)
SALT_SCAN_STEP = 0x5CA       # sim.scanning: per-step stream seed, hash4(seed, day*STEP_STRIDE + step, s, s)

# numpy generators (np.random.default_rng / SeedSequence)
STAGE_POPULATION = 1         # sim.run._rng(seed, stage): make_population
STAGE_PLACES = 2             # sim.run._rng: build_places
STAGE_DEVICE_KEYS = 3        # sim.run._rng: ble.ids.sim_keys of the phones
STAGE_HASH_SEED = 4          # sim.run: SeedSequence(seed, spawn_key=(4,)) -> the counter streams' seed
STAGE_SCHEDULE = 5           # sim.run._rng(seed, 5, day): the day's schedule
SALT_ADOPTION = 0xE91D       # tracing.closedloop: default_rng([seed, r, salt]), adoption priorities
SALT_EPIDEMIC_SEED = 0xE9    # tracing.closedloop: SeedSequence([seed, r, salt]) -> the epidemic's seed
SALT_QR = 0xC4               # tracing.qr: default_rng([seed, replicate, salt]), QR check-ins

# ----------------------------------------------------------------------------------------------------
# hashing (splitmix64 finaliser; no state, thread-count independent)
# ----------------------------------------------------------------------------------------------------
GOLDEN = np.uint64(0x9E3779B97F4A7C15)     #: 2**64 / golden ratio
M1 = np.uint64(0xBF58476D1CE4E5B9)         #: splitmix64 multipliers
M2 = np.uint64(0x94D049BB133111EB)
K2 = np.uint64(0xC2B2AE3D27D4EB4F)         #: further odd multipliers (pair and cell keys)
K3 = np.uint64(0x165667B19E3779F9)
K4 = np.uint64(0x7F4A7C159E3779B9)
STEP_STRIDE = 100000                       #: key of a scan step: day * STEP_STRIDE + step


@njit(cache=True, inline="always")
def hash4(seed, a, b, c):
    """64-bit hash of four integers (the positions' and scanning's key layout)."""
    h = mix64(np.uint64(seed) + GOLDEN)
    h = mix64(h ^ (np.uint64(a) * GOLDEN + np.uint64(0x632BE59BD9B4E019)))
    h = mix64(h ^ (np.uint64(b) * GOLDEN + np.uint64(0x8CB92BA72F3D8DD7)))
    return mix64(h ^ (np.uint64(c) * GOLDEN + np.uint64(0xD1B54A32D192ED03)))


@njit(cache=True, inline="always")
def stream_hash(seed, stream, a, b, c):
    """64-bit hash of (seed, stream, a, b, c) (the epidemic's key layout; ``stream`` an ``ST_*``)."""
    h = mix64(np.uint64(seed) + GOLDEN)
    h = mix64(h ^ (np.uint64(stream) * GOLDEN))
    h = mix64(h ^ (np.uint64(a) + GOLDEN))
    h = mix64(h ^ (np.uint64(b) * M1 + GOLDEN))
    h = mix64(h ^ (np.uint64(c) * M2 + GOLDEN))
    return h


@njit(cache=True, inline="always")
def step_seed(seed, day, step):
    """Stream seed of one scan step (uint64): every draw of the step's pairs derives from it."""
    return hash4(seed, day * STEP_STRIDE + step, SALT_SCAN_STEP, SALT_SCAN_STEP)


@njit(cache=True, inline="always")
def pair_hash(sseed, i, j):
    """64-bit hash of the unordered phone pair (i < j) in the scan step of stream seed ``sseed``."""
    return mix64(mix64(sseed ^ (np.uint64(i) * GOLDEN)) ^ (np.uint64(j) * K2))


# ----------------------------------------------------------------------------------------------------
# uniforms and normals from a hash
# ----------------------------------------------------------------------------------------------------
@njit(cache=True, inline="always")
def u01(h):
    """Uniform in [0, 1) from the top 53 bits of a hash."""
    return np.float64(h >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@njit(cache=True, inline="always")
def u01_open(h):
    """Uniform in (0, 1) from the top 53 bits of a hash (mid-point of the 2**-53 cell)."""
    return (np.float64(h >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(cache=True, inline="always")
def u32_pair(h):
    """Two uniforms in (0, 1) from the high and the low 32 bits of a hash."""
    return ((np.float64(h >> np.uint64(32)) + 0.5) * (1.0 / 4294967296.0),
            (np.float64(h & np.uint64(0xFFFFFFFF)) + 0.5) * (1.0 / 4294967296.0))


@njit(cache=True, inline="always")
def normal2(h):
    """Two independent standard normals (Box–Muller) from one 64-bit hash (2 × 32 bits)."""
    u1, u2 = u32_pair(h)
    r = math.sqrt(-2.0 * math.log(u1))
    return r * math.cos(2.0 * math.pi * u2), r * math.sin(2.0 * math.pi * u2)


@njit(cache=True, inline="always")
def pair_normals(h):
    """The two normal draws (one per direction) of a :func:`pair_hash`."""
    return normal2(mix64(h ^ K4))


@njit(cache=True, inline="always")
def unif(seed, stream, a, b, c):
    """Uniform in (0, 1) from the hash of (seed, stream, a, b, c)."""
    return u01_open(stream_hash(seed, stream, a, b, c))


@njit(cache=True)
def uniform_kernel(seed, stream, a, b, c):
    """Counter-based uniforms of many keys.

    Parameters
    ----------
    seed, stream : uint64
    a, b, c : int64 arrays, shape (m,)
        Non-negative counters.

    Returns
    -------
    float64 array, shape (m,)
        ``unif(seed, stream, a[k], b[k], c[k])``, in (0, 1).
    """
    out = np.empty(a.shape[0])
    for k in range(a.shape[0]):
        out[k] = unif(seed, stream, a[k], b[k], c[k])
    return out


def uniforms(seed: int, stream: int, a, b=0, c=0) -> np.ndarray:
    """Counter-based uniforms in (0, 1) keyed by (seed, stream, a, b, c); ``a``, ``b``, ``c`` are
    broadcast non-negative integers. The same key always gives the same number."""
    a, b, c = np.broadcast_arrays(np.asarray(a, np.int64), np.asarray(b, np.int64), np.asarray(c, np.int64))
    if a.size and min(a.min(), b.min(), c.min()) < 0:
        raise ValueError("uniforms: keys must be non-negative integers")
    return uniform_kernel(np.uint64(seed), np.uint64(stream), a.ravel().copy(), b.ravel().copy(),
                          c.ravel().copy()).reshape(a.shape)
