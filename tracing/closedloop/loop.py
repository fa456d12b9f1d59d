"""The epidemic closed loop: transmission -> symptoms -> tests -> notifications -> isolation -> fewer
contacts -> less transmission, day by day on a contact process (:mod:`tracing.closedloop.contacts`).

Interventions (:class:`Interventions`, the ``[epidemic.interventions]`` TOML table)
----------------------------------------------------------------------------------
* Symptomatic cases get tested with probability ``p_test`` (OpenABM-Covid19's self-report fraction
  0.65, Hinch et al. 2020 model paper config); the result comes ``test_delay_d`` days after symptom
  onset (OpenABM: test order 1 d + result 1 d). A positive case isolates (``case_compliance``) for
  ``case_isolation_d`` days (OpenABM ``quarantine_length_positive`` 14).
* App tracing: a positive app user is an F0 and publishes its keys; every contact in the last
  ``lookback_days`` (Bluezone retention: 14) whose phone's log of the F0 passes the rule and who runs
  the app is an F1, warned ``app_delay_d`` days after the confirmation (publication 12 h + phone sync).
  With ``f2`` the F1's own log (contacts not earlier than its exposure day, both on the app) gives the
  F2s, ``f2_delay_d`` later (upload + health-service processing).
* QR (channel ``qr``): the F0's check-ins are published and co-visitors within the overlap window
  (app users who scanned) are warned ``QRParams.delay_d`` after the confirmation.
* Manual tracing baseline (``manual_household``): household members of every positive case, app or
  not, are told to isolate ``manual_delay_d`` days after the confirmation.
* A warned agent isolates with probability ``contact_compliance`` (assumed 0.8) for ``isolation_d``
  days (OpenABM ``quarantine_length_traced_*`` 14) and drops out with probability ``dropout_per_day``
  each day (OpenABM ``quarantine_dropout_traced_symptoms`` 0.04). With ``test_notified`` a warned
  agent is also tested ``test_delay_d`` later and, if infectious (P, I or A) by then, confirmed (and
  becomes an F0 in turn).
* ``oracle`` (a known-answer check, not a policy): every infection is confirmed on its day, and the
  case and *every* true close contact it had in the look-back (app or not) isolate from the next day
  with full compliance and no dropout.

Outputs per run (:func:`run_closed_loop`): daily incidence, prevalence, confirmed cases, isolated
(true positives = infected at the time, false positives = susceptible or recovered, ``uninfected`` =
not infected by the end of that day), cohort R (mean secondary infections of the agents infected that
day); and the summary ``attack_rate`` (ever infected / n), ``peak_prevalence`` (max fraction in
E/P/I/A), ``peak_day``, ``isolation_days`` (= ``person_days_isolated``: person-days in isolation,
cases and contacts), ``isolation_days_uninfected`` (of them, person-days of agents not yet infected:
the burden on bystanders), ``person_days_isolated_fp`` (not infectious at the time), ``r_eff`` (mean
secondary infections of generations ``r_generations[0]`` .. ``r_generations[1]``: early enough to be
free of depletion, late enough for tracing to act) with ``r_eff_cases``, its standard error
``r_eff_se`` (cases taken as independent) and a normal 95 % interval ``r_eff_lo``..``r_eff_hi``
(lower end clipped at 0), and
notification counts per channel.
"""
from __future__ import annotations

import numpy as np

from sim.epidemic import DAY_S, HOME, Epidemic, EpidemicParams
from sim.rng import ST_COMPLY, ST_DROP, ST_TEST, uniforms
from sim.qr import QRParams
from tracing.closedloop.channels import BluetoothApp, ManualHousehold, Oracle, QRCheckin
from tracing.closedloop.contacts import ContactDays
from tracing.closedloop.params import Interventions
from tracing.core.checks import quiet_nan

__all__ = ["run_closed_loop"]

DAILY_COUNTS = ("incidence", "prevalence", "confirmed", "isolated", "isolated_tp", "isolated_fp",
                "isolated_uninfected", "notified_app", "notified_f2", "notified_qr", "notified_manual")


class _Isolation:
    """Isolation windows per agent: isolated on day d iff ``start <= d < end``; kinds: 1 case, 2 contact."""

    def __init__(self, n: int, seed: int, iv: Interventions):
        self.start = np.full(n, np.iinfo(np.int64).max, np.int64)
        self.end = np.full(n, -1, np.int64)
        self.case = np.zeros(n, bool)
        self.seed, self.iv = seed, iv
        self.pending: dict[int, list] = {}
        self.today = -1

    def schedule(self, agents, day: int, kind: int):
        """Isolation of ``agents`` from ``day`` (at the earliest the day after today: today's contacts
        have happened)."""
        agents = np.asarray(agents, np.int64)
        if agents.size:
            self.pending.setdefault(max(int(day), self.today + 1), []).append((agents, kind))

    def apply(self, d: int):
        """Start the isolations scheduled for day d (compliance drawn per agent and start day)."""
        iv = self.iv
        self.today = d
        for agents, kind in self.pending.pop(d, []):
            if kind == 1:
                p, length = iv.case_compliance, iv.case_isolation_d
            else:
                p, length = iv.contact_compliance, iv.isolation_d
            if iv.oracle:
                p = 1.0
            ok = uniforms(self.seed, ST_COMPLY, agents, d, kind) < p
            a = agents[ok]
            active = (self.start[a] <= d) & (self.end[a] > d)
            self.start[a] = np.where(active, self.start[a], d)
            self.end[a] = np.maximum(np.where(active, self.end[a], d), d + length)
            if kind == 1:
                self.case[a] = True
        # daily dropout of contacts (not cases, not in oracle mode)
        if self.iv.dropout_per_day > 0 and not self.iv.oracle:
            iso = self.isolated(d) & ~self.case
            a = np.flatnonzero(iso & (self.start < d))
            drop = uniforms(self.seed, ST_DROP, a, d) < self.iv.dropout_per_day
            self.end[a[drop]] = d

    def isolated(self, d: int) -> np.ndarray:
        return (self.start <= d) & (self.end > d)


def run_closed_loop(contacts: ContactDays, params: EpidemicParams | None = None,
                    interventions: Interventions | None = None, *, ranks=None, adoption: float = 0.0,
                    channels=("ble",), qr: QRParams | None = None, seed: int = 0, days: int | None = None,
                    dose_norm: float | None = None, initial=None) -> dict:
    """One epidemic with interventions on ``contacts`` (module docstring).

    ``ranks``: adoption ranks (``tracing.strategies.priorities``; adopters are ``rank <= adoption``;
    default: nobody adopts); ``channels``: subset of ``("ble", "qr")``; ``seed``: epidemic seed (keep it
    fixed across adoption levels: common random numbers); ``dose_norm``: default calibrated on the
    contact cycle; ``initial``: agents infected on day 0 (default ``params.seeds`` uniform agents).
    Returns ``{"daily": {...arrays per day}, "summary": {...scalars}, "epidemic": Epidemic}``.
    """
    params = params or EpidemicParams()
    iv = interventions or Interventions()
    qr = qr or QRParams()
    n = contacts.n
    ch = tuple(channels)
    if any(c not in ("ble", "qr") for c in ch):
        raise ValueError(f"channels: choose from ble, qr (got {ch})")
    if "qr" in ch and contacts.checkins is None:
        raise ValueError("channel qr needs QR check-ins in the contact process (none recorded)")
    if not 0 <= adoption <= 1:
        raise ValueError("adoption must lie in [0, 1]")
    ranks = np.full(n, np.inf) if ranks is None else np.asarray(ranks, np.float64)
    if ranks.shape != (n,):
        raise ValueError(f"ranks: need one per agent ({n})")
    app = ranks <= adoption
    days = iv.days if days is None else int(days)
    norm = dose_norm if dose_norm is not None else (params.dose_norm or contacts.dose_norm(params))
    seed = int(seed) & 0xFFFFFFFF
    ep = Epidemic(n, params, seed, dose_norm=norm)
    ep.seed_infections(day=0, agents=initial)
    course = ep.course
    onset_off = course.onset_offset()
    end_off = course.end_offset()
    tested = uniforms(seed, ST_TEST, np.arange(n)) < iv.p_test
    conf_day = np.full(n, np.iinfo(np.int64).max, np.int64)
    iso = _Isolation(n, seed, iv)
    D = len(contacts.days)
    ring: list = []          # realised contacts of the last lookback days: (day, template, keep)
    qring: list = []         # check-ins of the QR look-back: (day, rows)
    out = {k: np.zeros(days, np.int64) for k in DAILY_COUNTS}
    tp_notified = 0
    n_notified = 0
    if iv.oracle:
        channel_objs = [Oracle(contacts, ring)]
    else:
        channel_objs = [ManualHousehold(contacts.household, iv.manual_delay_d)] if iv.manual_household else []
        if "ble" in ch:
            channel_objs.append(BluetoothApp(contacts, app, iv, ring))
        if "qr" in ch:
            channel_objs.append(QRCheckin(app, qr, qring))

    def set_conf(agents):
        agents = np.asarray(agents, np.int64)
        if iv.oracle:
            cd = np.floor(ep.t_inf[agents] / DAY_S).astype(np.int64)
        else:
            ok = tested[agents] & course.sym[agents]
            t = ep.t_inf[agents] + onset_off[agents] + iv.test_delay_d * DAY_S
            t = np.where(ok & np.isfinite(t), t, 0.0)
            cd = np.where(ok, np.floor(t / DAY_S).astype(np.int64), np.iinfo(np.int64).max)
        conf_day[agents] = np.minimum(conf_day[agents], cd)

    set_conf(np.flatnonzero(np.isfinite(ep.t_inf)))
    for d in range(days):                                   # loop over days (not agents)
        iso.apply(d)
        isolated = iso.isolated(d)
        k = d % D
        rec = contacts.days[k]
        keep = ~(isolated[rec["i"]] | isolated[rec["j"]]) | (rec["place"] == HOME)
        new = ep.transmit_day(d, rec["i"], rec["j"], rec["t"] + d * DAY_S, rec["dist"], rec["dt_s"],
                              rec["place"], keep=keep, rec_id=contacts.rec_ids(k), blocked=isolated,
                              dose=contacts.doses(k, params))
        set_conf(new)
        ring.append((d, k, keep))
        if contacts.checkins is not None:
            c = contacts.checkins[k]
            c = c[~isolated[c["agent"]]].copy()
            c["t"] += d * DAY_S
            qring.append((d, c))
        while ring and ring[0][0] <= d - iv.lookback_days:
            ring.pop(0)
        while qring and qring[0][0] <= d - max(iv.lookback_days, qr.lookback_days):
            qring.pop(0)
        # confirmations of today: isolate the cases, then every channel warns
        f0 = np.flatnonzero(conf_day == d)
        out["confirmed"][d] = len(f0)
        if len(f0):
            iso.schedule(f0, d + 1, 1)
            is_f0 = np.zeros(n, bool)
            is_f0[f0] = True
            notified = []
            for chan in channel_objs:                       # <= 3 channels
                for agents, start, counter in chan.notify(d, f0, is_f0):
                    iso.schedule(agents, start, 2)
                    if counter is not None:
                        out[counter][d] = len(agents)
                    notified.append(agents)
            if notified:
                alln = np.unique(np.concatenate(notified))
                n_notified += len(alln)
                tp_notified += int(np.count_nonzero(ep.t_inf[alln] <= (d + 1) * DAY_S))
                if iv.test_notified and len(alln):
                    t_test = (d + iv.app_delay_d + iv.test_delay_d) * DAY_S
                    st = ep.state(t_test)[alln]
                    pos = alln[(st == 2) | (st == 3) | (st == 4)]
                    conf_day[pos] = np.minimum(conf_day[pos], int(t_test // DAY_S))
        # daily statistics (state at the end of the day)
        te = (d + 1) * DAY_S - 1.0
        infected_now = (ep.t_inf <= te) & (te < ep.t_inf + end_off)
        out["incidence"][d] = len(new)
        out["prevalence"][d] = int(infected_now.sum())
        out["isolated"][d] = int(isolated.sum())
        out["isolated_tp"][d] = int((isolated & infected_now).sum())
        out["isolated_fp"][d] = int((isolated & ~infected_now).sum())
        out["isolated_uninfected"][d] = int((isolated & ~(ep.t_inf <= te)).sum())
    # cohort R by infection day and generation R
    inf_day = np.floor(ep.t_inf / DAY_S)
    ever = np.isfinite(ep.t_inf)
    off = ep.offspring()
    dd = inf_day[ever].astype(np.int64)
    cnt = np.bincount(dd, minlength=days)[:days]
    sm = np.bincount(dd, weights=off[ever], minlength=days)[:days]
    with quiet_nan():
        out["r_cohort"] = np.where(cnt > 0, sm / np.maximum(cnt, 1), np.nan)
    g0, g1 = iv.r_generations
    gsel = ever & (ep.generation >= g0) & (ep.generation <= g1)
    k_cases = int(gsel.sum())
    r_eff = float(off[gsel].mean()) if k_cases else float("nan")
    # standard error of the mean offspring (cases taken as independent: clusters make it a lower bound)
    r_se = float(off[gsel].std(ddof=1) / np.sqrt(k_cases)) if k_cases > 1 else float("nan")
    seeds_n = int((ep.route == 3).sum())
    summary = dict(
        adoption=float(adoption), n=n, seeds=seeds_n,
        attack_rate=float(ever.sum()) / n,
        peak_prevalence=float(out["prevalence"].max()) / n if days else 0.0,
        peak_day=int(np.argmax(out["prevalence"])) if days else 0,
        person_days_isolated=int(out["isolated"].sum()),
        person_days_isolated_fp=int(out["isolated_fp"].sum()),
        isolation_days=int(out["isolated"].sum()),
        isolation_days_uninfected=int(out["isolated_uninfected"].sum()),
        r_eff=r_eff, r_eff_cases=k_cases, r_eff_se=r_se,
        r_eff_lo=max(0.0, r_eff - 1.96 * r_se), r_eff_hi=r_eff + 1.96 * r_se,
        confirmed=int(out["confirmed"].sum()),
        notified=int(n_notified), notified_infected=int(tp_notified),
        notified_app=int(out["notified_app"].sum()), notified_f2=int(out["notified_f2"].sum()),
        notified_qr=int(out["notified_qr"].sum()), notified_manual=int(out["notified_manual"].sum()),
        extinct=bool(days and out["prevalence"][-1] == 0),
        dose_norm=float(norm),
    )
    return {"daily": out, "summary": summary, "epidemic": ep}


# ----------------------------------------------------------------------------------------------------
# sweep outputs: epidemic.csv, epidemic_daily.csv, epidemic.png, r_below_one in threshold.json
# ----------------------------------------------------------------------------------------------------


