"""The epidemic: its parameters, the disease state of a population, and transmission from proximity.

This module holds the disease state and the transmission kernels; it does not know how contacts are produced.
It is driven by *contact records* -- flat arrays ``i, j, t, dist_m, dt_s, place`` (one row per pair and
simulator step, or one row per pair and day from a run's ground truth) -- by
:mod:`tracing.closedloop`, which adds the interventions (testing, isolation, app/manual/QR tracing).

Units: times in seconds (simulator time; day ``d`` is ``[86400 d, 86400 (d + 1))``), durations of the
course in days in the parameters (seconds in the arrays), distances in metres, exposure durations in
seconds (records) or minutes (dose). Rates ``kappa_*`` are expected secondary infections per day.

Disease course (SEIR with pre-symptomatic, symptomatic and asymptomatic phases)
-------------------------------------------------------------------------------
``S -> E -> P -> I -> R`` for symptomatic cases (probability ``p_symptomatic``) and ``S -> E -> A -> R``
for asymptomatic ones. Phase durations are Erlang (gamma with integer shape; each drawn from
counter-based uniforms keyed by (seed, agent, phase), so an agent's course is the same at every adoption
level: common random numbers). Defaults: latent ``E`` mean 3.0 d (shape 3), pre-symptomatic ``P`` mean
2.0 d (shape 2) -- incubation E + P = 5.0 d, close to the 5.1-5.5 d of Lauer et al. 2020 / Ferretti et
al. 2020 --, symptomatic infectious ``I`` mean 3.0 d (shape 2), asymptomatic infectious ``A`` mean
5.0 d (shape 2). 40 % of infections asymptomatic (Ferretti et al. 2020).

Infectiousness is constant inside a phase; its level is set so that the expected secondary infections
split as in Ferretti et al. 2020 (Science 368:eabb6936): R0 = 2.0 = 0.9 pre-symptomatic + 0.8
symptomatic + 0.1 asymptomatic + 0.2 environmental (45 % pre-symptomatic). With the mean durations above:
``kappa_pre = r_pre / (p_sym * E[P])``, ``kappa_sym = r_sym / (p_sym * E[I])``, ``kappa_asym =
r_asym / ((1 - p_sym) * E[A])`` secondary infections per day of the phase at the calibration contact rate.
The resulting mean generation interval is ``generation_interval_mean()`` = 5.9 d with the defaults
(Ferretti: Weibull, mean 5.0 d, sd 1.9 d).

Transmission (dose model)
-------------------------
Per contact record and direction (infectious ``a`` -> susceptible ``b``)::

    dose  = w(dist) * m(place) * dt_s / 60                        [dose units: minute at <= d0, indoors]
    w(d)  = min(1, (d0 / d) ** distance_exponent) for d <= max_distance_m, else 0
    P(infection) = 1 - exp(-kappa_phase(a, t) * dose / dose_norm)

``w`` is the inverse-square near-field decay with a cap at ``d0`` = 1 m used for the NHSX app's risk
score (Briers, Charalambides & Holmes 2020, "Risk scoring calculation for the current NHSx contact
tracing app", arXiv:2005.11057; relative risk falling ~2x per metre, Chu et al. 2020 Lancet). The place
modifier ``m = ((1 - s) + s * outdoor_factor) * ventilation[v]`` blends indoor and outdoor air by the
place's outdoor share ``s`` (outdoor transmission ~1/19 of indoor, Nishiura et al. 2020; default
``outdoor_factor`` 0.1) and scales by its ventilation class (poor 1.0 / normal 0.7 / good 0.5:
assumed). ``dose_norm`` is the mean dose an agent receives per day from the contact process the
epidemic runs on (``calibrate_dose_norm``), so that R0 is 2 under the mixing approximation on *that*
process; on a clustered network (households, fixed classes) the realised growth is slower, which
:mod:`tracing.closedloop` measures and reports.

The environmental share (Ferretti's 0.2: transmission without a recorded contact) is random mixing:
an infectious agent not in isolation infects ``Poisson(kappa_env * days)`` uniformly chosen agents per
day (``kappa_env = kappa_phase * r_env / r_contact``); no app or manual tracer can see it. A small
background (``import_per_day``, per susceptible and day) seeds infections from outside the population.

The course (durations, states, infectiousness in time) and the theory (:func:`growth_rate`, the
Euler-Lotka equation of this course, used by the tests as the known answer for the growth rate with the
app off) live in :mod:`sim.course`; a well-mixed synthetic contact process in :mod:`sim.mixing`; the
counter-based random streams in :mod:`sim.rng`. They are re-exported here.
"""
from __future__ import annotations

import math
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numba
import numpy as np

from sim.course import (DAY_S, STATES, A, Course, E, I, P, R, S, _infectious_day, _infectiousness,
                        advance_course, draw_course, generation_interval_mean, growth_rate, lotka_transform)
from sim.mixing import well_mixed_day
from sim.places import PLACE_TYPES
from sim.rng import (ST_COMPLY, ST_DROP, ST_ENV, ST_ENV_T, ST_IMPORT, ST_SEED, ST_TEST, ST_TX, stream_hash,
                     unif, uniforms)

__all__ = [
    "EpidemicParams", "load_epidemic", "VENTILATION", "PLACE_TYPES", "HOME",
    "Epidemic", "check_records", "record_doses", "calibrate_dose_norm", "auto_seeds",
    # re-exported from sim.course, sim.mixing and sim.rng (their home is there)
    "DAY_S", "S", "E", "P", "I", "A", "R", "STATES", "Course", "draw_course", "advance_course",
    "lotka_transform", "growth_rate", "generation_interval_mean", "well_mixed_day", "uniforms",
]

#: Place code of a contact record = index in ``sim.places.PLACE_TYPES``; code ``-1`` (unknown) gets the
#: modifier 1.
HOME = PLACE_TYPES.index("home")


VENTILATION = {"poor": 1.0, "normal": 0.7, "good": 0.5}  #: relative airborne dose (assumed)

#: Per place type: (outdoor share of the time spent there, ventilation class). Assumed values: markets
#: in Vietnam are largely open-air, stations half open; buses and homes poorly ventilated.
_PLACE_AIR = {
    "home": (0.1, "poor"), "school": (0.0, "normal"), "university": (0.0, "normal"),
    "office": (0.0, "normal"), "workplace": (0.1, "normal"), "factory": (0.0, "normal"),
    "hospital": (0.0, "good"), "market": (0.7, "normal"), "restaurant": (0.3, "normal"),
    "hotel": (0.1, "normal"), "station": (0.5, "normal"), "bus": (0.0, "poor"),
}



# ----------------------------------------------------------------------------------------------------
# parameters
# ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EpidemicParams:
    """Every parameter of the disease and of the transmission model (the ``[epidemic]`` TOML table).

    R split (expected secondary infections, Ferretti et al. 2020): ``r_pre`` 0.9, ``r_sym`` 0.8,
    ``r_asym`` 0.1, ``r_env`` 0.2 (R0 = 2.0). Durations in days (means of Erlang phases of integer
    ``*_shape``). Dose model: ``d0_m`` (m), ``distance_exponent``, ``max_distance_m`` (m),
    ``outdoor_factor``, ``places`` {type: {outdoor_share, ventilation}}. ``import_per_day``: background
    infection probability per susceptible and day. ``seeds``: initial infections (uniform agents,
    infected at random times of day 0); 0 (default) = :func:`auto_seeds` of the population: enough
    early cases for R_eff of generations 2-4 to rest on several hundred cases. ``dose_norm``: dose units per agent-day for R0 (0 = calibrate
    on the contact process). ``calibration``: ``"mixing"`` (``dose_norm`` = the mean daily dose: R0
    under the mixing approximation) or ``"network"`` (default; ``tracing.closedloop.calibrate_network``
    rescales it until the mean secondary infections of early generations without any intervention
    equal R0 on the actual contact process, households and repeated contacts included).
    """
    r_pre: float = 0.9
    r_sym: float = 0.8
    r_asym: float = 0.1
    r_env: float = 0.2
    p_symptomatic: float = 0.6
    latent_mean_d: float = 3.0
    latent_shape: int = 3
    presym_mean_d: float = 2.0
    presym_shape: int = 2
    sym_mean_d: float = 3.0
    sym_shape: int = 2
    asym_mean_d: float = 5.0
    asym_shape: int = 2
    d0_m: float = 1.0
    distance_exponent: float = 2.0
    max_distance_m: float = 4.0
    outdoor_factor: float = 0.1
    places: dict = field(default_factory=lambda: {k: {"outdoor_share": s, "ventilation": v}
                                                  for k, (s, v) in _PLACE_AIR.items()})
    import_per_day: float = 1e-6
    seeds: int = 0
    dose_norm: float = 0.0
    calibration: str = "network"

    # -- derived ----------------------------------------------------------------------------------
    @property
    def r0(self) -> float:
        return self.r_pre + self.r_sym + self.r_asym + self.r_env

    @property
    def r_contact(self) -> float:
        return self.r_pre + self.r_sym + self.r_asym

    def kappas(self) -> tuple[float, float, float]:
        """(kappa_pre, kappa_sym, kappa_asym): secondary infections per day of each phase through
        recorded contacts, at the calibration dose (see the module docstring)."""
        ps = self.p_symptomatic
        k_pre = self.r_pre / (ps * self.presym_mean_d) if ps > 0 else 0.0
        k_sym = self.r_sym / (ps * self.sym_mean_d) if ps > 0 else 0.0
        k_asym = self.r_asym / ((1 - ps) * self.asym_mean_d) if ps < 1 else 0.0
        return k_pre, k_sym, k_asym

    def env_factor(self) -> float:
        """kappa_env / kappa_phase = r_env / r_contact."""
        return self.r_env / self.r_contact if self.r_contact > 0 else 0.0

    def place_modifiers(self) -> np.ndarray:
        """f8 per place type (``PLACE_TYPES`` order): ``((1 - s) + s * outdoor_factor) * vent``."""
        out = np.ones(len(PLACE_TYPES))
        for k, name in enumerate(PLACE_TYPES):
            pl = self.places.get(name)
            if pl is None:
                continue
            s = pl["outdoor_share"]
            out[k] = ((1 - s) + s * self.outdoor_factor) * VENTILATION[pl["ventilation"]]
        return out

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict | None, source: str = "<epidemic>") -> "EpidemicParams":
        """Validated parameters from a (partial) ``[epidemic]`` table; errors name the key, e.g.
        ``scenario.toml: epidemic.p_symptomatic: must be a probability in [0, 1], got 1.5``."""
        d = dict(d or {})
        base = cls()
        kw = {}
        names = {f.name: f for f in fields(cls)}
        for k, v in d.items():
            key = f"{source}: epidemic.{k}"
            if k not in names:
                raise ValueError(f"{key}: unknown key (known: {', '.join(names)})")
            if k == "places":
                kw[k] = _check_places(v, base.places, source)
                continue
            if k == "calibration":
                if v not in ("mixing", "network"):
                    raise ValueError(f"{key}: must be \"mixing\" or \"network\", got {v!r}")
                kw[k] = v
                continue
            default = getattr(base, k)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{key}: must be a number, got {v!r}")
            if isinstance(default, int) and not isinstance(default, bool):
                if not isinstance(v, int) or v < (0 if k == "seeds" else 1):
                    raise ValueError(f"{key}: must be an integer >= {0 if k == 'seeds' else 1}, "
                                     f"got {v!r}")
            elif k in ("p_symptomatic", "outdoor_factor", "import_per_day"):
                if not 0 <= v <= 1:
                    raise ValueError(f"{key}: must be a probability in [0, 1], got {v!r}")
            elif k.endswith("_mean_d") or k in ("d0_m", "max_distance_m"):
                if not v > 0:
                    raise ValueError(f"{key}: must be a positive number, got {v!r}")
            elif v < 0:
                raise ValueError(f"{key}: must be a non-negative number, got {v!r}")
            kw[k] = v
        p = cls(**{**asdict(base), **kw})
        if p.r_contact <= 0:
            raise ValueError(f"{source}: epidemic.r_pre: r_pre + r_sym + r_asym must be positive")
        return p


def _check_places(v, default: dict, source: str) -> dict:
    if not isinstance(v, dict):
        raise ValueError(f"{source}: epidemic.places: must be a table, got {v!r}")
    out = {k: dict(x) for k, x in default.items()}
    for name, tbl in v.items():
        key = f"{source}: epidemic.places.{name}"
        if name not in PLACE_TYPES:
            raise ValueError(f"{key}: unknown place type (known: {', '.join(PLACE_TYPES)})")
        if not isinstance(tbl, dict):
            raise ValueError(f"{key}: must be a table, got {tbl!r}")
        for k, x in tbl.items():
            if k == "outdoor_share":
                if isinstance(x, bool) or not isinstance(x, (int, float)) or not 0 <= x <= 1:
                    raise ValueError(f"{key}.outdoor_share: must be a probability in [0, 1], got {x!r}")
                out[name][k] = float(x)
            elif k == "ventilation":
                if x not in VENTILATION:
                    raise ValueError(f"{key}.ventilation: must be one of {', '.join(VENTILATION)}, "
                                     f"got {x!r}")
                out[name][k] = x
            else:
                raise ValueError(f"{key}.{k}: unknown key (known: outdoor_share, ventilation)")
    return out


def auto_seeds(n: int) -> int:
    """Default number of initial infections for ``n`` agents: 0.5 % of the population, at least 10, at
    most 500 (with R ~ 1.5-2 per generation, generations 2-4 then hold ~10x the seeds while the
    infected share stays a few per cent: enough cases for R_eff, little depletion)."""
    return int(min(500, max(10, round(0.005 * int(n)))))


def load_epidemic(path_or_table=None, source: str | None = None) -> EpidemicParams:
    """Parameters from a scenario TOML file (its ``[epidemic]`` table, absent = defaults), a dict (the
    table itself), or ``None`` (defaults)."""
    if path_or_table is None:
        return EpidemicParams()
    if isinstance(path_or_table, dict):
        return EpidemicParams.from_dict(path_or_table, source or "<epidemic>")
    path = Path(path_or_table)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path.name}: not valid TOML: {e}") from e
    tbl = raw.get("epidemic", {})
    if not isinstance(tbl, dict):
        raise ValueError(f"{path.name}: epidemic: must be a table")
    tbl = {k: v for k, v in tbl.items() if k != "interventions"}
    return EpidemicParams.from_dict(tbl, source or path.name)


# ----------------------------------------------------------------------------------------------------
# transmission
# ----------------------------------------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def _dose(dist, dt_s, place, place_mod, d0, expo, dmax):
    if not (dist <= dmax) or dt_s <= 0:
        return 0.0
    w = 1.0 if dist <= d0 else (d0 / dist) ** expo
    m = place_mod[place] if place >= 0 else 1.0
    return w * m * dt_s / 60.0


@numba.njit(parallel=True, cache=True)
def _dose_kernel(dist, dt_s, place, place_mod, d0, expo, dmax, out):
    for k in numba.prange(dist.shape[0]):
        out[k] = _dose(dist[k], dt_s[k], place[k], place_mod, d0, expo, dmax)


@numba.njit(parallel=True, cache=True)
def _tx_fire_kernel(i, j, t, dose, keep, rec_id, day, seed, t_inf, dur_e, dur_p, dur_i,
                    dur_a, sym, k_pre, k_sym, k_asym, inv_norm, fire_t):
    """fire_t[k, 0]: time (s) at which record k infects j (from i), NaN if not; fire_t[k, 1]: i from j.
    ``dose``: per record (:func:`record_doses`)."""
    for k in numba.prange(i.shape[0]):
        fire_t[k, 0] = np.nan
        fire_t[k, 1] = np.nan
        if not keep[k] or dose[k] <= 0.0:
            continue
        tk = t[k]
        for d in range(2):
            src = i[k] if d == 0 else j[k]
            dst = j[k] if d == 0 else i[k]
            if t_inf[dst] <= tk:                  # already infected
                continue
            kap = _infectiousness(src, tk, t_inf, dur_e, dur_p, dur_i, dur_a, sym, k_pre, k_sym, k_asym)
            if kap <= 0.0:
                continue
            p = 1.0 - math.exp(-kap * dose[k] * inv_norm)
            if unif(seed, ST_TX, day, rec_id[k], d) < p:
                fire_t[k, d] = tk


@numba.njit(cache=True)
def _merge_kernel(src_arr, dst_arr, tt, new_t, new_src):
    """Earliest infection per target (serial, deterministic): new_t/new_src updated in place."""
    for k in range(tt.shape[0]):
        x = tt[k]
        if np.isnan(x):
            continue
        b = dst_arr[k]
        if x < new_t[b] or (x == new_t[b] and src_arr[k] < new_src[b]):
            new_t[b] = x
            new_src[b] = src_arr[k]


@numba.njit(cache=True)
def _env_kernel(cand, day, seed, n, t_inf, dur_e, dur_p, dur_i, dur_a, sym, k_pre, k_sym, k_asym,
                env_factor, kmax, out_dst, out_t):
    """Environmental infections of day ``day`` from each candidate source.

    Parameters
    ----------
    cand : int64 array, shape (m,)
        Candidate sources (infected before the end of the day).
    day, n, kmax : int
        Day, population size, most targets per source.
    seed : uint64
    t_inf, dur_e, dur_p, dur_i, dur_a, sym : arrays, shape (n,)
        Infection times and course (s; :class:`sim.course.Course`).
    k_pre, k_sym, k_asym, env_factor : float
        kappa per day of each phase; the environmental rate is ``env_factor * kappa``.

    Returns
    -------
    None; fills ``out_dst`` (int64, shape (m, kmax): targets, -1 = none) and ``out_t`` (float64, same
    shape: s, NaN = none), row per source.
    """
    t0 = day * 86400.0
    for r in range(cand.shape[0]):
        a = cand[r]
        for k in range(kmax):
            out_dst[r, k] = -1
            out_t[r, k] = np.nan
        if not (t_inf[a] < t0 + 86400.0):
            continue
        mu, tlo, thi = _infectious_day(a, t0, t_inf, dur_e, dur_p, dur_i, dur_a, sym, k_pre, k_sym, k_asym)
        mu *= env_factor
        if mu <= 0.0:
            continue
        # Poisson(mu) by inversion of one uniform
        u = unif(seed, ST_ENV, day, a, 0)
        pk = math.exp(-mu)
        cdf = pk
        kk = 0
        while u > cdf and kk < kmax:
            kk += 1
            pk *= mu / kk
            cdf += pk
        for k in range(kk):
            dst = np.int64(stream_hash(seed, ST_ENV_T, day, a, k + 1) % np.uint64(n))
            if dst == a:
                continue
            out_dst[r, k] = dst
            out_t[r, k] = tlo + (thi - tlo) * unif(seed, ST_ENV_T, day, a, k + 1000)


def check_records(i, j, t, dist, dt_s, place, n: int) -> tuple:
    """Validate contact-record arrays (same length; agents in 0..n-1, i != j; finite times; distances
    >= 0 (inf allowed = no dose); durations >= 0; place codes -1..len(PLACE_TYPES)-1)."""
    i = np.ascontiguousarray(i, dtype=np.int64)
    j = np.ascontiguousarray(j, dtype=np.int64)
    t = np.ascontiguousarray(t, dtype=np.float64)
    dist = np.ascontiguousarray(dist, dtype=np.float64)
    dt_s = np.ascontiguousarray(dt_s, dtype=np.float64)
    place = np.ascontiguousarray(place, dtype=np.int64)
    m = len(i)
    if not all(len(x) == m for x in (j, t, dist, dt_s, place)):
        raise ValueError("contact records: i, j, t, dist_m, dt_s and place need the same length")
    if m:
        if min(i.min(), j.min()) < 0 or max(i.max(), j.max()) >= n:
            raise ValueError(f"contact records: agents must lie in 0..{n - 1}")
        if np.any(i == j):
            raise ValueError("contact records: i == j (self-contact)")
        if not np.all(np.isfinite(t)):
            raise ValueError("contact records: t must be finite (s)")
        if np.any(np.isnan(dist)) or np.any(dist < 0):
            raise ValueError("contact records: dist_m must be >= 0 (m; inf = out of range)")
        if not np.all(np.isfinite(dt_s)) or np.any(dt_s < 0):
            raise ValueError("contact records: dt_s must be finite and >= 0 (s)")
        if place.min() < -1 or place.max() >= len(PLACE_TYPES):
            raise ValueError(f"contact records: place codes must lie in -1..{len(PLACE_TYPES) - 1}")
    return i, j, t, dist, dt_s, place


def record_doses(dist, dt_s, place, params: EpidemicParams) -> np.ndarray:
    """Dose (units: minutes at <= d0 indoors, see the module docstring) of each contact record."""
    dist = np.ascontiguousarray(dist, np.float64)
    dt_s = np.ascontiguousarray(dt_s, np.float64)
    place = np.ascontiguousarray(place, np.int64)
    out = np.empty(len(dist))
    _dose_kernel(dist, dt_s, place, params.place_modifiers(), params.d0_m, params.distance_exponent,
                 params.max_distance_m, out)
    return out


def calibrate_dose_norm(daily_doses: list, n: int) -> float:
    """Mean dose per agent and day (each record doses both ends) over a list of per-day dose arrays:
    the ``dose_norm`` that makes ``r_contact`` the expected secondary infections through contacts."""
    tot = float(sum(np.sum(d) for d in daily_doses))
    if not len(daily_doses) or tot <= 0:
        raise ValueError("calibrate_dose_norm: the contact process carries no dose")
    return 2.0 * tot / (n * len(daily_doses))


class Epidemic:
    """Disease state of a population and one day of transmission at a time.

    ``t_inf`` (s, NaN = never infected), ``infector`` (−1 never infected, −2 seed, −3 background
    import; contact and environmental infections keep their source agent), ``generation`` (0 for
    seeds and imports), ``route`` (0 contact, 1 environmental, 2 background, 3 seed). Each
    :meth:`transmit_day` evaluates every record against the state at the start of the day (an agent
    infected that day transmits from the next day on; the latent period makes this exact unless it is
    shorter than the rest of the day).
    """

    def __init__(self, n: int, params: EpidemicParams, seed: int, dose_norm: float | None = None):
        n = int(n)
        if n < 2:
            raise ValueError("Epidemic: need at least 2 agents")
        self.n, self.params, self.seed = n, params, int(seed) & 0xFFFFFFFFFFFFFFFF
        norm = dose_norm if dose_norm is not None else params.dose_norm
        if not norm or norm <= 0:
            raise ValueError("Epidemic: dose_norm must be > 0 (set epidemic.dose_norm or calibrate it "
                             "with calibrate_dose_norm on the contact process)")
        self.dose_norm = float(norm)
        self.course = draw_course(n, params, self.seed)
        self.t_inf = np.full(n, np.nan)
        self.infector = np.full(n, -1, np.int64)
        self.generation = np.full(n, -1, np.int32)
        self.route = np.full(n, -1, np.int8)
        self._kap = params.kappas()
        self._pmod = params.place_modifiers()

    # -- infections ----------------------------------------------------------------------------
    def seed_infections(self, k: int | None = None, day: int = 0, agents=None) -> np.ndarray:
        """Infect ``k`` agents (default ``params.seeds``; uniform without replacement by counter-based
        keys) or the given ``agents`` at random times of ``day``. Returns the agents."""
        if agents is None:
            k = (self.params.seeds or auto_seeds(self.n)) if k is None else int(k)
            if not 0 <= k <= self.n:
                raise ValueError(f"seed_infections: k must lie in 0..{self.n}")
            keys = uniforms(self.seed, ST_SEED, np.arange(self.n))
            agents = np.argsort(keys, kind="stable")[:k]
        agents = np.asarray(agents, np.int64)
        if agents.size and (agents.min() < 0 or agents.max() >= self.n):
            raise ValueError("seed_infections: agents out of range")
        tt = (day + uniforms(self.seed, ST_SEED, agents, 1)) * DAY_S
        new = np.isnan(self.t_inf[agents])
        a = agents[new]
        self.t_inf[a] = tt[new]
        self.infector[a] = -2
        self.generation[a] = 0
        self.route[a] = 3
        return a

    def transmit_day(self, day: int, i, j, t, dist, dt_s, place, keep=None, rec_id=None,
                     blocked=None, env: bool = True, background: bool = True, dose=None) -> np.ndarray:
        """One day of transmission (``dose``: optional precomputed :func:`record_doses`). Records
        (validated: :func:`check_records`) with ``keep`` False are skipped (e.g. an end is isolated away
        from home); ``rec_id`` keys the random draw of each
        record (default: its index; keep it stable across adoption levels for common random numbers).
        ``blocked``: bool per agent, agents out of the environmental mixing (isolated: they neither
        spread nor catch environmentally). Returns the newly infected agents."""
        n = self.n
        i, j, t, dist, dt_s, place = check_records(i, j, t, dist, dt_s, place, n)
        m = len(i)
        keep = np.ones(m, np.bool_) if keep is None else np.ascontiguousarray(keep, np.bool_)
        rec_id = np.arange(m, dtype=np.int64) if rec_id is None else np.ascontiguousarray(rec_id, np.int64)
        if keep.shape != (m,) or rec_id.shape != (m,):
            raise ValueError("transmit_day: keep and rec_id need one value per record")
        day = int(day)
        if m and (t.min() < day * DAY_S or t.max() >= (day + 1) * DAY_S):
            raise ValueError(f"transmit_day: record times must lie in day {day}")
        c = self.course
        k_pre, k_sym, k_asym = self._kap
        p = self.params
        if dose is None:
            dose = record_doses(dist, dt_s, place, p)
        dose = np.ascontiguousarray(dose, np.float64)
        if dose.shape != (m,):
            raise ValueError("transmit_day: dose needs one value per record")
        fire = np.empty((m, 2))
        _tx_fire_kernel(i, j, t, dose, keep, rec_id, day, np.uint64(self.seed), self.t_inf,
                        c.dur_e, c.dur_p, c.dur_i, c.dur_a, c.sym, k_pre, k_sym, k_asym,
                        1.0 / self.dose_norm, fire)
        new_t = np.full(n, np.inf)
        new_src = np.full(n, np.iinfo(np.int64).max, np.int64)
        _merge_kernel(i, j, np.ascontiguousarray(fire[:, 0]), new_t, new_src)
        _merge_kernel(j, i, np.ascontiguousarray(fire[:, 1]), new_t, new_src)
        env_t = np.full(n, np.inf)
        env_src = np.full(n, np.iinfo(np.int64).max, np.int64)
        if env and p.r_env > 0:
            t0, t1 = day * DAY_S, (day + 1) * DAY_S
            end = self.t_inf + c.end_offset()
            cand = np.flatnonzero((self.t_inf < t1) & (end > t0))
            if blocked is not None:
                blocked = np.asarray(blocked, bool)
                cand = cand[~blocked[cand]]
            kmax = 8
            od = np.empty((len(cand), kmax), np.int64)
            ot = np.empty((len(cand), kmax))
            _env_kernel(cand, day, np.uint64(self.seed), n, self.t_inf, c.dur_e, c.dur_p, c.dur_i, c.dur_a,
                        c.sym, k_pre, k_sym, k_asym, p.env_factor(), kmax, od, ot)
            ok = od.ravel() >= 0
            src = np.repeat(cand, kmax)[ok]
            dst = od.ravel()[ok]
            tt = ot.ravel()[ok]
            sus = ~(self.t_inf[dst] <= tt)
            if blocked is not None:
                sus &= ~blocked[dst]
            _merge_kernel(src[sus], dst[sus], tt[sus], env_t, env_src)
        bg = np.zeros(n, bool)
        bg_t = np.full(n, np.inf)
        if background and p.import_per_day > 0:
            u = uniforms(self.seed, ST_IMPORT, np.arange(n), day)
            bg = (u < p.import_per_day) & np.isnan(self.t_inf)
            if blocked is not None:
                bg &= ~blocked
            a = np.flatnonzero(bg)
            bg_t[a] = (day + uniforms(self.seed, ST_IMPORT, a, day, 1)) * DAY_S
        # combine: earliest route wins
        best = np.minimum(np.minimum(new_t, env_t), bg_t)
        newly = np.flatnonzero(np.isfinite(best) & ~(self.t_inf <= best))
        tb = best[newly]
        route = np.where(new_t[newly] == tb, 0, np.where(env_t[newly] == tb, 1, 2)).astype(np.int8)
        src = np.where(route == 0, new_src[newly], np.where(route == 1, env_src[newly], -3))
        self.t_inf[newly] = tb
        self.infector[newly] = src
        self.route[newly] = route
        self.generation[newly] = np.where(src >= 0, self.generation[np.maximum(src, 0)] + 1, 0)
        return newly

    # -- summaries ------------------------------------------------------------------------------
    def state(self, t: float) -> np.ndarray:
        return advance_course(t, self.t_inf, self.course)

    def offspring(self) -> np.ndarray:
        """Secondary infections caused by each agent so far (int64)."""
        src = self.infector[self.infector >= 0]
        return np.bincount(src, minlength=self.n)

