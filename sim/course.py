"""The disease course: phase durations per agent, infectiousness in time, and its branching-process theory.

``S -> E -> P -> I -> R`` for symptomatic cases (probability ``p_symptomatic``) and ``S -> E -> A -> R``
for asymptomatic ones; phase durations are Erlang (integer shape), drawn from counter-based uniforms
keyed by (seed, agent, phase) so an agent's course is the same at every adoption level (common random
numbers). Infectiousness is constant inside a phase (``kappa_pre``, ``kappa_sym``, ``kappa_asym``:
secondary infections per day). See :mod:`sim.epidemic` for the parameter values and their sources.

``params`` arguments are :class:`sim.epidemic.EpidemicParams` (this module reads only their course
fields and ``kappas()`` / ``env_factor()``, so it does not import :mod:`sim.epidemic`).

Theory: :func:`growth_rate` solves the Euler-Lotka equation ``1 = int beta(tau) exp(-r tau) dtau`` with
the mean infectiousness profile ``beta(tau)`` of this course (closed form through the Laplace transform
of Erlang phases).

Units: times in seconds in the arrays, durations in days in the parameters, rates per day.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from sim.rng import ST_COURSE, ST_SYM, unif

__all__ = ["DAY_S", "S", "E", "P", "I", "A", "R", "STATES", "Course", "draw_course", "advance_course",
           "lotka_transform", "growth_rate", "generation_interval_mean", "mean_infectiousness",
           "renewal_incidence"]

DAY_S = 86400.0  #: s

#: Disease states (int8 codes).
S, E, P, I, A, R = 0, 1, 2, 3, 4, 5
STATES = ("S", "E", "P", "I", "A", "R")


# ----------------------------------------------------------------------------------------------------
# drawing the course
# ----------------------------------------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def _erlang(seed, a, phase, mean_s, shape):
    s = 0.0
    for k in range(shape):
        s -= math.log(unif(seed, ST_COURSE, a, phase, k))
    return s * mean_s / shape


@numba.njit(parallel=True, cache=True)
def _course_kernel(seed, n, mE, kE, mP, kP, mI, kI, mA, kA, p_sym, dur_e, dur_p, dur_i, dur_a, sym):
    """Phase durations of agents ``0..n-1``.

    Parameters
    ----------
    seed : uint64
    n : int
    mE, mP, mI, mA : float
        Mean durations (s) of the latent, pre-symptomatic, symptomatic and asymptomatic phases.
    kE, kP, kI, kA : int
        Their Erlang shapes.
    p_sym : float
        Probability of a symptomatic course.

    Returns
    -------
    None; fills ``dur_e``, ``dur_p``, ``dur_i``, ``dur_a`` (float64, shape (n,), s) and ``sym`` (bool,
    shape (n,)).
    """
    for a in numba.prange(n):
        dur_e[a] = _erlang(seed, a, 0, mE, kE)
        dur_p[a] = _erlang(seed, a, 1, mP, kP)
        dur_i[a] = _erlang(seed, a, 2, mI, kI)
        dur_a[a] = _erlang(seed, a, 3, mA, kA)
        sym[a] = unif(seed, ST_SYM, a, 0, 0) < p_sym


@dataclass
class Course:
    """Per-agent phase durations (s) drawn once per (seed, agent), and the symptomatic flag. Only the
    phases of the agent's branch are used (E, P, I if ``sym`` else E, A)."""
    dur_e: np.ndarray
    dur_p: np.ndarray
    dur_i: np.ndarray
    dur_a: np.ndarray
    sym: np.ndarray

    @property
    def n(self) -> int:
        return len(self.sym)

    def onset_offset(self) -> np.ndarray:
        """s from infection to symptom onset (inf for asymptomatic agents)."""
        return np.where(self.sym, self.dur_e + self.dur_p, np.inf)

    def end_offset(self) -> np.ndarray:
        """s from infection to the end of infectiousness (recovery)."""
        return np.where(self.sym, self.dur_e + self.dur_p + self.dur_i, self.dur_e + self.dur_a)


def draw_course(n: int, params, seed: int) -> Course:
    """Phase durations of every agent (counter-based: agent a's course depends on (seed, a) only)."""
    n = int(n)
    if n < 0:
        raise ValueError("draw_course: n must be >= 0")
    p = params
    c = Course(np.empty(n), np.empty(n), np.empty(n), np.empty(n), np.empty(n, np.bool_))
    _course_kernel(np.uint64(seed), n, p.latent_mean_d * DAY_S, p.latent_shape, p.presym_mean_d * DAY_S,
                   p.presym_shape, p.sym_mean_d * DAY_S, p.sym_shape, p.asym_mean_d * DAY_S, p.asym_shape,
                   p.p_symptomatic, c.dur_e, c.dur_p, c.dur_i, c.dur_a, c.sym)
    return c


# ----------------------------------------------------------------------------------------------------
# infectiousness and state in time
# ----------------------------------------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def _infectiousness(a, t, t_inf, dur_e, dur_p, dur_i, dur_a, sym, k_pre, k_sym, k_asym):
    """kappa (per day) of agent a at time t (s); 0 if not infectious."""
    ti = t_inf[a]
    if not (ti <= t):           # NaN (never infected) or infected later
        return 0.0
    tau = t - ti - dur_e[a]
    if tau < 0:
        return 0.0
    if sym[a]:
        if tau < dur_p[a]:
            return k_pre
        if tau < dur_p[a] + dur_i[a]:
            return k_sym
        return 0.0
    if tau < dur_a[a]:
        return k_asym
    return 0.0


@numba.njit(cache=True, inline="always")
def _infectious_day(a, t0, t_inf, dur_e, dur_p, dur_i, dur_a, sym, k_pre, k_sym, k_asym):
    """Infectiousness of agent ``a`` integrated over the day starting at ``t0`` (s).

    Returns
    -------
    mu : float
        ``int kappa(t) dt`` over ``[t0, t0 + 1 d)`` (expected secondary infections, kappa per day).
    tlo, thi : float
        s, the infectious part of the day: ``[max(onset of infectiousness, t0), min(recovery, t0 + 1 d))``.
    """
    ti = t_inf[a]
    s0 = ti + dur_e[a]
    if sym[a]:
        b1 = s0 + dur_p[a]
        b2 = b1 + dur_i[a]
        kap1 = k_pre
        kap2 = k_sym
    else:
        b1 = s0 + dur_a[a]
        b2 = b1
        kap1 = k_asym
        kap2 = 0.0
    lo = max(s0, t0)
    hi = min(b1, t0 + 86400.0)
    mu = 0.0
    if hi > lo:
        mu += kap1 * (hi - lo) / 86400.0
    lo2 = max(b1, t0)
    hi2 = min(b2, t0 + 86400.0)
    if hi2 > lo2:
        mu += kap2 * (hi2 - lo2) / 86400.0
    return mu, max(s0, t0), min(b2, t0 + 86400.0)


@numba.njit(cache=True)
def _state_kernel(t, t_inf, dur_e, dur_p, dur_i, dur_a, sym, out):
    for a in range(t_inf.shape[0]):
        ti = t_inf[a]
        if not (ti <= t):
            out[a] = 0
            continue
        tau = t - ti
        if tau < dur_e[a]:
            out[a] = 1
        elif sym[a]:
            if tau < dur_e[a] + dur_p[a]:
                out[a] = 2
            elif tau < dur_e[a] + dur_p[a] + dur_i[a]:
                out[a] = 3
            else:
                out[a] = 5
        elif tau < dur_e[a] + dur_a[a]:
            out[a] = 4
        else:
            out[a] = 5


def advance_course(t: float, t_inf: np.ndarray, course: Course) -> np.ndarray:
    """Disease state (int8 codes :data:`S` .. :data:`R`) of every agent at time ``t`` (s), from the
    infection times (NaN = never infected) and the course durations."""
    t_inf = np.ascontiguousarray(t_inf, dtype=np.float64)
    if t_inf.shape != (course.n,):
        raise ValueError(f"advance_course: t_inf needs one value per agent ({course.n})")
    out = np.empty(course.n, np.int8)
    _state_kernel(float(t), t_inf, course.dur_e, course.dur_p, course.dur_i, course.dur_a, course.sym, out)
    return out


# ----------------------------------------------------------------------------------------------------
# theory: Euler-Lotka
# ----------------------------------------------------------------------------------------------------
def _erlang_laplace(r: float, mean: float, shape: int) -> float:
    return (1.0 + r * mean / shape) ** (-shape)


def _one_minus_over_r(r: float, mean: float, shape: int) -> float:
    """(1 - L(r)) / r for an Erlang phase: the Laplace transform of its survival function."""
    if abs(r) < 1e-12:
        return mean
    return (1.0 - _erlang_laplace(r, mean, shape)) / r


def lotka_transform(r: float, p) -> float:
    """``int beta(tau) exp(-r tau) dtau`` (r per day) for the mean infectiousness profile, counting the
    environmental share (``= R0`` at r = 0)."""
    k_pre, k_sym, k_asym = p.kappas()
    ps = p.p_symptomatic
    le = _erlang_laplace(r, p.latent_mean_d, p.latent_shape)
    lp = _erlang_laplace(r, p.presym_mean_d, p.presym_shape)
    f = ps * le * (k_pre * _one_minus_over_r(r, p.presym_mean_d, p.presym_shape)
                   + k_sym * lp * _one_minus_over_r(r, p.sym_mean_d, p.sym_shape))
    f += (1 - ps) * le * k_asym * _one_minus_over_r(r, p.asym_mean_d, p.asym_shape)
    return f * (1.0 + p.env_factor())


def growth_rate(p, r0_scale: float = 1.0) -> float:
    """Exponential growth rate r (per day) from the Euler-Lotka equation ``r0_scale * L(r) = 1``
    (``r0_scale`` rescales R0, e.g. to the R measured on a network)."""
    from scipy.optimize import brentq  # heavy optional import: only the theory needs scipy

    def g(r):
        return r0_scale * lotka_transform(r, p) - 1.0
    if abs(g(0.0)) < 1e-15:
        return 0.0
    lo = -0.9 * min(p.latent_shape / p.latent_mean_d, 5.0)
    return float(brentq(g, lo, 5.0, xtol=1e-12))


def generation_interval_mean(p) -> float:
    """Mean generation interval (days): ``-L'(0) / L(0)`` of :func:`lotka_transform`."""
    h = 1e-6
    return float(-(lotka_transform(h, p) - lotka_transform(-h, p)) / (2 * h) / lotka_transform(0.0, p))


# ----------------------------------------------------------------------------------------------------
# theory: the renewal equation (finite population, the actual seeding)
# ----------------------------------------------------------------------------------------------------
def mean_infectiousness(params, tau_d: np.ndarray, scale=(1.0, 1.0, 1.0), n: int = 400_000,
                        seed: int = 12345) -> np.ndarray:
    """Mean infectiousness ``beta(tau)`` (expected secondary infections per day) at infection ages
    ``tau_d`` (d, shape (m,)), over the course's phases, environmental share included.

    ``scale``: factors on the pre-symptomatic, symptomatic and asymptomatic contact rates (e.g. the
    per-contact saturation of each phase; the environmental share is not saturated). Computed from the
    empirical distribution functions of ``n`` drawn courses (relative error ~``1/sqrt(n)``): e.g.
    ``P(E <= tau < E + P)`` is the pre-symptomatic share at age tau. ``int beta = R`` by construction.
    """
    tau = np.asarray(tau_d, np.float64) * DAY_S
    c = draw_course(n, params, seed)
    k_pre, k_sym, k_asym = params.kappas()
    env = params.env_factor()

    def cdf(x):
        x = np.sort(x)
        return np.searchsorted(x, tau, side="right") / max(len(x), 1)
    sym, asym = c.sym, ~c.sym
    e_s, p_s, i_s = c.dur_e[sym], c.dur_p[sym], c.dur_i[sym]
    e_a, a_a = c.dur_e[asym], c.dur_a[asym]
    ps = sym.mean()
    pre = ps * (cdf(e_s) - cdf(e_s + p_s))
    sy = ps * (cdf(e_s + p_s) - cdf(e_s + p_s + i_s))
    asy = (1 - ps) * (cdf(e_a) - cdf(e_a + a_a))
    contact = scale[0] * k_pre * pre + scale[1] * k_sym * sy + scale[2] * k_asym * asy
    return contact + env * (k_pre * pre + k_sym * sy + k_asym * asy)


def renewal_incidence(params, n: int, seeds: int, days: int, scale=(1.0, 1.0, 1.0), h_d: float = 0.05,
                      ) -> np.ndarray:
    """Expected daily incidence (float64, shape (days,)) of the renewal equation with depletion,
    ``i(t) = S(t)/n * int beta(tau) i(t - tau) dtau``, seeded with ``seeds`` infections at uniform
    times of day 0 and evaluated on a grid of ``h_d`` days: the known answer, transients and the
    depletion of susceptibles included, for the growth of an uncontrolled epidemic on a well-mixed
    contact process. Seeds are not counted in the incidence."""
    steps = int(round(days / h_d))
    per_day = int(round(1.0 / h_d))
    tau = (np.arange(1, steps + 1) - 0.5) * h_d
    beta = mean_infectiousness(params, tau, scale)
    inc = np.zeros(steps)                      # infections per step
    seed_inc = np.zeros(steps)
    seed_inc[:per_day] = seeds / per_day
    sus = float(n - seeds)
    for k in range(steps):                     # loop over time steps of the deterministic equation
        src = inc[:k] + seed_inc[:k]
        force = float(np.dot(src[::-1], beta[:k])) * h_d if k else 0.0
        new = min(sus, sus / n * force)
        inc[k] = new
        sus -= new
    return inc.reshape(days, per_day).sum(axis=1)
