"""Calibration of the closed loop's transmission to the contact network (R0 through recorded contacts)
and diagnostics of realised transmission (generation interval, household share and attack rate)."""
from __future__ import annotations

import math

import numpy as np

from sim.epidemic import DAY_S, Epidemic, EpidemicParams
from tracing.closedloop.contacts import ContactDays
from tracing.closedloop.loop import run_closed_loop
from tracing.closedloop.params import Interventions

__all__ = ["transmission_diagnostics", "calibrate_network"]


def transmission_diagnostics(ep: Epidemic, household: np.ndarray, max_generation: int = 1) -> dict:
    """Realised transmission of an epidemic, from the infections caused by cases of generations <=
    ``max_generation`` (early: their infectious periods are complete, depletion is small): mean
    generation interval (d, infector -> infectee), share of infections inside households, household secondary attack rate of the cases of
    generations <= ``max_generation`` (infected household members / other household members; literature
    pooled estimate 16.6 %, Madewell et al. 2020) and the environmental share."""
    ch = np.flatnonzero(ep.infector >= 0)
    ch = ch[ep.generation[ep.infector[ch]] <= max_generation]      # complete infectious periods
    if not len(ch):
        return {"generation_interval_d": float("nan"), "household_share": float("nan"),
                "household_sar": float("nan"), "environmental_share": float("nan")}
    src = ep.infector[ch]
    same = (household[ch] == household[src]) & (household[ch] >= 0)
    cases = np.flatnonzero(np.isfinite(ep.t_inf) & (ep.generation >= 0) & (ep.generation <= max_generation))
    sizes = np.bincount(household[household >= 0], minlength=int(household.max()) + 1)
    kids = np.bincount(src[same], minlength=len(household))
    others = (sizes[household[cases]] - 1).sum()
    return {"generation_interval_d": float(np.mean(ep.t_inf[ch] - ep.t_inf[src]) / DAY_S),
            "household_share": float(same.mean()),
            "household_sar": float(kids[cases].sum() / others) if others else float("nan"),
            "environmental_share": float((ep.route[ch] == 1).mean())}


def calibrate_network(contacts: ContactDays, params: EpidemicParams | None = None, *, seed: int = 0,
                      generations=(1, 1), iters: int = 5, runs: int = 6, days: int = 25) -> dict:
    """``dose_norm`` such that, with no intervention at all, the mean number of secondary infections
    *through contacts* of generations ``generations`` equals ``r_pre + r_sym + r_asym`` on this contact
    process (the environmental share adds ``r_env`` by construction): R0 on the network rather than
    under the mixing approximation.

    Starts from the mixing value; each iteration runs ``runs`` uncontrolled epidemics (seeded with
    n/400 cases, at least 10, so that depletion stays small: the seeds' own offspring, random agents
    rather than typical infected ones, are not counted) and measures R; the next ``dose_norm`` solves a least-squares fit of
    log R against log dose_norm over all iterations so far (one point: R proportional to 1/norm),
    each step limited to a factor 2. The returned value is the fit's solution after the last
    iteration. Where the network cannot carry the target (R stops growing as transmission per contact
    rises: households and fixed groups saturate), the least infectious setting within 3 % of the
    highest R measured is returned and ``reachable`` is False.
    Returns ``{"dose_norm", "r_contact_target", "reachable", "history": [(norm, R measured)], ...}``."""
    params = params or EpidemicParams()
    target = params.r_contact
    norm0 = contacts.dose_norm(params)
    norm = norm0
    seeds = max(10, contacts.n // 400)
    p = EpidemicParams(**{**params.to_dict(), "seeds": seeds, "import_per_day": 0.0})
    off = Interventions(p_test=0.0, manual_household=False, days=days)
    hist, diags = [], []
    g0, g1 = generations

    def solve():
        x = np.log([h[0] for h in hist])
        y = np.log([h[1] for h in hist])
        if len(hist) >= 2 and np.ptp(x) > 1e-9:
            slope, icpt = np.polyfit(x, y, 1)
            slope = min(slope, -0.2)
            icpt = float(np.mean(y - slope * x))
        else:
            slope, icpt = -1.0, float(y[-1] + x[-1])
        return float(np.exp((math.log(target) - icpt) / slope))

    for it in range(int(iters)):                           # a few calibration steps
        num = den = 0
        diag = []
        for r in range(int(runs)):
            ep = run_closed_loop(contacts, p, off, seed=seed + 7919 * r + 104729 * it,
                                 dose_norm=norm)["epidemic"]
            diag.append(transmission_diagnostics(ep, contacts.household))
            sel = np.isfinite(ep.t_inf) & (ep.generation >= g0) & (ep.generation <= g1)
            child = (ep.route == 0) & (ep.infector >= 0)
            kids = np.bincount(ep.infector[child], minlength=contacts.n)
            num += int(kids[sel].sum())
            den += int(sel.sum())
        if den == 0 or num == 0:
            norm *= 0.5                                    # no spread at all: more infectious
            continue
        hist.append((norm, num / den))
        diags.append({k: float(np.nanmean([d[k] for d in diag])) for k in diag[0]})
        norm = float(np.clip(solve(), norm / 2, norm * 2))
    reachable = True
    diag_final = diags[-1] if diags else {}
    if hist:
        rs = np.array([h[1] for h in hist])
        ns = np.array([h[0] for h in hist])
        if rs.max() < 0.97 * target:
            # plateau: R does not reach the target whatever the per-contact transmission
            ok = rs >= 0.97 * rs.max()
            norm = float(ns[ok].max())
            reachable = False
            diag_final = diags[int(np.flatnonzero(ns == norm)[0])]
    return {"dose_norm": float(norm), "r_contact_target": target, "reachable": reachable,
            "history": hist, "mixing_dose_norm": float(norm0), "seeds": seeds,
            "runs_per_iteration": int(runs), "generations": list(generations),
            "diagnostics": diag_final, "diagnostics_history": diags}
