"""Synthetic population: ages, households, communes, smartphones, platforms, devices, carriage, roles.

Everything is vectorised numpy (no Python loop over agents). Units: ages in years; probabilities.

Model (defaults in :mod:`sim.scenario`, facts in ``FACTS.md``)
-------------------------------------------------------------
* **Households** (:func:`_households`): families of parents (matched by age gap), a spouse, their
  co-resident children and grandparents, couples, one-person households and relatives, calibrated to
  the census mean ``household_mean`` (3.5 nationally, 3.83 for Đắk Lắk); kinds in :data:`HH_KINDS`.
  Households are urban with probability ``urban_share``; urban households come first and are cut into
  communes of ``commune_size`` persons (wards), then rural ones; communes are grouped into districts of
  about ``district_size`` persons.
* **Ages.** All N ages are drawn from the age-band shares (uniform inside a band), so the population
  pyramid is exact in expectation; households only group them.
* **Smartphones.** Adults 18+: ownership ∝ weight of the age group (18–36, 37–59, 60+; the ratio
  of Pew 2017's 88 % vs 38 % for 18–36 vs 37+), urban residents' weight × ``urban_factor``, capped at
  0.98; a common factor is solved so that the adult share equals ``phones.adult_share`` (73.5 % in
  March 2022 by default). Children: fixed shares per age group (0–11, 12–14, 15–17). With
  ``phones.owner_share`` set (``--phone-owners``), the probabilities are rescaled so that the share of
  the WHOLE population is that value (:func:`owner_share_probability`, gradient kept). Platform iOS
  with probability ios/(ios+android) (36 : 63).
* **Devices.** ``device_model`` is a row of Google's calibration table drawn through
  ``ble.radio.device_offsets`` (TX/RX offsets in dB); carriage habit from ``phones.carriage_probs``
  over ``ble.radio.CARRIAGES``.
* **Roles** (:data:`ROLES`): children 3–17 attend school (net attendance by level), a share of the
  18–22 year-olds study at a university; of those 18–64 not studying, ``employment_rate`` work on average
  (by age: ``employment_by_age``, :func:`employment_probability`), split into agriculture (role
  ``other``, farm teams), civil servants, health workers, transport
  workers, factory workers, market vendors, restaurant/hotel staff and other services; teachers are drawn
  from the employed to staff the school classes; in-patients (``patients_per_1000``, more often old) are
  in hospital for the whole run.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


__all__ = ["ROLES", "R", "HH_KINDS", "employment_probability", "HH_SIZE_SHARE", "HH_SIZE_SOURCE", "WORK_NONE", "WORK_SERVICE", "WORK_RESTAURANT", "WORK_HOTEL", "WORK_AGRI", "Population",
           "make_population"]

ROLES = ("other", "civil_servant", "student", "teacher", "health_worker", "patient", "transport_worker",
         "factory_worker", "market_vendor")
R = {name: k for k, name in enumerate(ROLES)}

#: work-place type of employed "other" agents (index into sim.places.PLACE_TYPES is resolved there)
WORK_NONE, WORK_SERVICE, WORK_RESTAURANT, WORK_HOTEL, WORK_AGRI = 0, 1, 2, 3, 4

# net attendance rates 2020-21 (MICS6, FACTS.md): age 3-4 80.5 %, 5 97.6 %, primary (6-10) 98.2 %,
# lower secondary (11-14) 93.0 %, upper secondary (15-17) 78.1 %
_ATTEND_AGE = np.array([0, 0, 0, 0.805, 0.805, 0.976] + [0.982] * 5 + [0.93] * 4 + [0.781] * 3)


@dataclass
class Population:
    """Agents ``0..n-1`` (device index = agent index). Arrays of length ``n`` unless noted."""
    n: int
    age: np.ndarray            #: i2, years
    household: np.ndarray      #: i8, household index (households are numbered 0..n_households-1)
    hh_size: np.ndarray        #: i4, per household (length n_households)
    hh_start: np.ndarray       #: i8, first agent of each household (agents are contiguous per household)
    urban: np.ndarray          #: bool
    commune: np.ndarray        #: i4
    district: np.ndarray       #: i4
    has_phone: np.ndarray      #: bool
    platform: np.ndarray       #: i1, 0 Android, 1 iOS, -1 none
    device_model: np.ndarray   #: i4, row of the calibration table or -1
    tx_offset: np.ndarray      #: f4, dB, device TX offset (0 without phone)
    rx_offset: np.ndarray      #: f4, dB, device RX offset
    tx_power: np.ndarray       #: f4, dBm, advertised TX power (NaN without phone)
    carriage: np.ndarray       #: i1, index in ble.radio.CARRIAGES
    role: np.ndarray           #: i1, index in ROLES
    work_kind: np.ndarray      #: i1, WORK_* for employed agents of role "other"
    bus_user: np.ndarray       #: bool, commutes by bus on working/school days
    hh_kind: np.ndarray | None = None   #: i1 per household, index in HH_KINDS

    @property
    def n_households(self) -> int:
        return len(self.hh_size)


#: household kinds recorded per household (``Population.hh_kind``)
HH_KINDS = ("one_person", "couple", "nuclear", "single_parent", "three_generation", "extended")
#: household size distribution (share of households of 1, 2, 3, 4, 5, 6+ persons) that the defaults
#: reproduce, and where it comes from. The census's own table was not found (FACTS.md: "NOT FOUND");
#: the generator is calibrated to the census mean (3.5) and the GSO's description of it (one-person
#: households "a very low proportion", households of four or fewer "common"); the shares below are
#: what the default parameters produce (seed 0, 100,000 persons), stated here as the ESTIMATE they are.
HH_SIZE_SHARE = (0.10, 0.20, 0.22, 0.22, 0.16, 0.10)
HH_SIZE_SOURCE = ("ESTIMATE: census 2019 mean 3.5 (FACTS.md S3); size table not found; "
                  "shape after GSO 2019 census analysis (IHSN citation 23136)")


def _match(target: np.ndarray, pool_age: np.ndarray, rng: np.random.Generator, max_off: int = 20) -> np.ndarray:
    """Match each target age (years, float (m,)) to a distinct pool member of the nearest age.

    Offsets 0, +1, -1, +2, ... up to ``max_off`` years are tried in turn; within one age, targets and
    pool members are paired in random order. Returns the pool index per target (int64 (m,), -1 where
    none within ``max_off``). Vectorised per offset (no loop over agents).
    """
    t = np.round(np.asarray(target, np.float64)).astype(np.int64)
    pa = np.asarray(pool_age, np.int64)
    res = np.full(len(t), -1, np.int64)
    avail = np.ones(len(pa), bool)
    for d in [0] + [s * k for k in range(1, max_off + 1) for s in (1, -1)]:
        ut = np.flatnonzero(res < 0)
        ap = np.flatnonzero(avail)
        if len(ut) == 0 or len(ap) == 0:
            break
        ot = ut[np.lexsort((rng.random(len(ut)), t[ut] + d))]
        wv = t[ot] + d
        op = ap[np.lexsort((rng.random(len(ap)), pa[ap]))]
        pv = pa[op]
        rank = np.arange(len(ot)) - np.searchsorted(wv, wv, "left")
        start = np.searchsorted(pv, wv, "left")
        ok = rank < np.searchsorted(pv, wv, "right") - start
        got = op[start[ok] + rank[ok]]
        res[ot[ok]] = got
        avail[got] = False
    return res


def _households(age: np.ndarray, P: dict, rng: np.random.Generator):
    """Households with generations over persons of ages ``age`` (int (n,), any order).

    Steps (parameters ``population.*``, see :mod:`sim.scenario`): (1) children are persons under 18
    and a share ``young_adult_at_home`` of those 18-24; each wants a parent ``parent_gap_mean``
    ± ``parent_gap_sd`` (clipped to 18-45) years older; ordered by that wished age and cut into sibling
    groups of 1-4 (``siblings_share``); (2) a parent of the group's wished age is matched from the
    adults, and a spouse (age ± ``spouse_gap_sd``) unless the family is a single-parent one
    (``single_parent_share``); (3) a share ``elder_with_children`` of the remaining persons 60+ joins a
    family as grandparents (age ≈ parent + ``parent_gap_mean``, at most two per family); (4) the
    remaining adults live in couples of similar age or alone, as many couples as the census mean
    ``household_mean`` asks (surplus adults join families as other relatives).

    Returns (household id per person (int64 (n,)), kind per household (int8, :data:`HH_KINDS`),
    member order inside its household (int64 (n,): parents, spouse, elders, children)).
    """
    n = len(age)
    a = age.astype(np.int64)
    u = rng.random(n)
    child = (a < 18) | ((a <= 24) & (u < P["young_adult_at_home"]))
    kids = np.flatnonzero(child)
    gap = np.clip(rng.normal(P["parent_gap_mean"], P["parent_gap_sd"], len(kids)), 18.0, 45.0)
    want = a[kids] + gap
    o = np.argsort(want + rng.random(len(kids)) * 1e-3, kind="stable")
    kids, want = kids[o], want[o]
    sib = np.asarray(P["siblings_share"], np.float64)
    sizes = 1 + rng.choice(len(sib), size=max(len(kids), 1), p=sib / sib.sum())
    cs = np.cumsum(sizes)
    k = int(np.searchsorted(cs, len(kids)))
    sizes = sizes[:k + 1].copy()
    if len(kids):
        sizes[-1] -= cs[k] - len(kids)
    sizes = sizes[sizes > 0]
    F = len(sizes)
    fam_of_kid = np.repeat(np.arange(F), sizes)
    fam_age = np.bincount(fam_of_kid, weights=want, minlength=F) / np.maximum(sizes, 1)
    hh = np.full(n, -1, np.int64)
    order = np.zeros(n, np.int64)
    hh[kids] = fam_of_kid
    order[kids] = 3
    adults = np.flatnonzero(~child)
    free = np.ones(n, bool)
    free[kids] = False
    # parents
    par = _match(fam_age, a[adults], rng)
    miss = np.flatnonzero(par < 0)
    if len(miss):                                       # fallback: any free adult (no child alone)
        left = np.setdiff1d(np.arange(len(adults)), par[par >= 0])
        left = left[rng.permutation(len(left))][:len(miss)]
        par[miss[:len(left)]] = left
    has_par = par >= 0
    p1 = adults[par[has_par]]
    hh[p1], order[p1] = np.flatnonzero(has_par), 0
    free[p1] = False
    # spouses
    fams = np.flatnonzero(has_par & (rng.random(F) >= P["single_parent_share"]))
    pool = np.flatnonzero(free & (a >= 18))
    sp = _match(a[adults[par[fams]]] + rng.normal(0.0, P["spouse_gap_sd"], len(fams)), a[pool], rng, 10)
    ok = sp >= 0
    hh[pool[sp[ok]]], order[pool[sp[ok]]] = fams[ok], 1
    free[pool[sp[ok]]] = False
    spouse = np.zeros(F, bool)
    spouse[fams[ok]] = True
    # grandparents: two rounds (at most two per family)
    elders = np.flatnonzero(free & (a >= 60))
    elders = elders[rng.random(len(elders)) < P["elder_with_children"]]
    n_gp = np.zeros(F, np.int64)
    fam_ok = np.flatnonzero(has_par)
    gp_age = fam_age[fam_ok] + P["parent_gap_mean"] + rng.normal(0.0, 4.0, len(fam_ok))
    for _ in range(2):
        if len(elders) == 0 or len(fam_ok) == 0:
            break
        m = _match(a[elders], gp_age, rng, 12)
        got = m >= 0
        hh[elders[got]], order[elders[got]] = fam_ok[m[got]], 2
        free[elders[got]] = False
        n_gp[fam_ok[m[got]]] += 1
        elders = elders[~got]
    # the rest: one-person households (``one_person_share`` of all), couples of similar age, and the
    # surplus as adult children of older couples or relatives in families (age-matched)
    rest = np.flatnonzero(free)
    rest = rest[rng.permutation(len(rest))]
    H_target = max(int(round(n / float(P["household_mean"]))), 1)
    n_single = int(min(len(rest), round(P["one_person_share"] * H_target)))
    single, rest = rest[:n_single], rest[n_single:]
    couples = int(np.clip(H_target - F - n_single, 0, len(rest) // 2))
    cp, rel = rest[:2 * couples], rest[2 * couples:]
    cp = cp[np.argsort(a[cp] + rng.normal(0.0, 2.0, len(cp)), kind="stable")]
    hh[cp], order[cp] = F + np.arange(len(cp)) // 2, np.arange(len(cp)) % 2
    hh[single] = F + couples + np.arange(len(single))
    kind = np.empty(F + couples + len(single), np.int8)
    kind[:F] = np.where(n_gp > 0, 4, np.where(spouse, 2, 3))
    kind[F:F + couples] = 1
    kind[F + couples:] = 0
    if len(rel):
        c_age = (a[cp[0::2]] + a[cp[1::2]]) / 2.0 if couples else np.zeros(0)
        m = _match(a[rel] + P["parent_gap_mean"], c_age, rng, 8)       # adult children of a couple
        got = m >= 0
        hh[rel[got]], order[rel[got]] = F + m[got], 3
        kind[F + m[got]] = 2
        rel = rel[~got]
        fam_ok = np.flatnonzero(has_par)
        m = _match(a[rel], a[adults[par[fam_ok]]], rng, 10) if len(fam_ok) else np.full(len(rel), -1)
        got = m >= 0                                                     # parent's sibling or cousin
        hh[rel[got]], order[rel[got]] = fam_ok[m[got]], 2
        kind[fam_ok[m[got]]] = 5
        rel = rel[~got]
        hh[rel], order[rel] = rng.integers(0, len(kind), len(rel)), 2    # anyone left: any household
        kind[np.unique(hh[rel])] = 5
    # families whose parent could not be found hold children only: give them to an adult household
    orphan = np.flatnonzero(~has_par)
    if len(orphan) and F < len(kind):
        host = F + rng.integers(0, len(kind) - F, len(orphan))
        m = np.isin(hh, orphan) & child
        hh[m] = host[np.searchsorted(orphan, hh[m])]
        kind[host] = 5
    return hh, kind, order


def _ages(n: int, edges, share, rng) -> np.ndarray:
    edges = np.asarray(edges, dtype=np.float64)
    p = np.asarray(share, dtype=np.float64)
    p = p / p.sum()
    band = rng.choice(len(p), size=n, p=p)
    return np.floor(edges[band] + rng.random(n) * (edges[band + 1] - edges[band])).astype(np.int16)


def _solve_factor(w: np.ndarray, target: float, cap: float = 0.98) -> float:
    """c such that mean(min(cap, c * w)) = target (bisection; deterministic)."""
    if len(w) == 0 or target <= 0:
        return 0.0
    lo, hi = 0.0, 1.0
    while np.minimum(cap, hi * w).mean() < target and hi < 1e6:
        hi *= 2
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.minimum(cap, mid * w).mean() < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def owner_share_probability(p_phone: np.ndarray, owner_share: float, cap: float = 0.98) -> np.ndarray:
    """Phone probabilities rescaled so that their mean over the WHOLE population is ``owner_share``.

    ``p_phone``: float array (n,), the preset's probability per person (its age/urban gradient);
    returns ``min(cap, c * p_phone)`` with c found by bisection (:func:`_solve_factor`), so the
    gradient is kept (up to the cap) and the expected share of owners is ``owner_share`` (scenario
    key ``phones.owner_share``; ``proxitrace sweep --phone-owners``). Deterministic, draws nothing.
    """
    p = np.asarray(p_phone, dtype=np.float64)
    if not 0.0 < owner_share <= np.minimum(cap, p * 1e6).mean() + 1e-12:
        raise ValueError(f"phones.owner_share: must be in (0, {cap}] and reachable by the preset's "
                         f"gradient, got {owner_share!r}")
    return np.minimum(cap, _solve_factor(p, owner_share, cap) * p)


def employment_probability(age: np.ndarray, working_age: np.ndarray, ro: dict) -> np.ndarray:
    """Probability of being employed per person (float (n,)) for ages ``age`` (years, int (n,)).

    ``roles.employment_by_age`` gives relative factors for the age bands starting at
    ``roles.employment_age_edges`` (years; the last band ends at 64); they are scaled by one common
    factor so that the mean over ``working_age`` persons (bool (n,): 18-64 not at university) is
    ``roles.employment_rate``, capped at 0.98. Zero outside ``working_age``. Draws nothing.
    """
    edges = np.asarray(ro["employment_age_edges"], np.float64)
    f = np.asarray(ro["employment_by_age"], np.float64)
    band = np.clip(np.searchsorted(edges, age, side="right") - 1, 0, len(f) - 1)
    w = np.where(working_age, f[band], 0.0)
    c = _solve_factor(w[working_age], float(ro["employment_rate"]))
    return np.where(working_age, np.minimum(0.98, c * w), 0.0)


def _device_offsets(rng: np.random.Generator, n: int):
    """(model, tx_offset, rx_offset, tx_power) through ``ble.radio.device_offsets``; see sim.scanning."""
    # the radio (numba) loads when a population is drawn, so that `proxitrace --help` stays light
    from sim.scanning import device_table
    return device_table(rng, n)


def make_population(scn, rng: np.random.Generator) -> Population:
    """Draw the population of scenario ``scn`` (``scn.n_agents`` persons) with generator ``rng``."""
    n = scn.n_agents
    P, ph, ro = scn.population, scn.phones, scn.roles
    ages = _ages(n, P["age_band_edges"], P["age_band_share"], rng)
    hh_raw, kind_raw, rank = _households(ages, P, rng)
    used, hh_id = np.unique(hh_raw, return_inverse=True)     # drop emptied households
    hh_kind = kind_raw[used]
    H = len(used)
    hh_urban = rng.random(H) < P["urban_share"]
    # urban households first, then rural; agents contiguous per household (parents, spouse, elders,
    # children: rooms of room_size go to couples first)
    hh_new = np.empty(H, np.int64)
    ho = np.argsort(~hh_urban, kind="stable")
    hh_new[ho] = np.arange(H)
    hh_kind, hh_urban = hh_kind[ho], hh_urban[ho]
    hh_of = hh_new[hh_id]
    perm = np.lexsort((rank, hh_of))
    age = ages[perm].astype(np.int16)
    household = hh_of[perm]
    sizes = np.bincount(household, minlength=H)
    hh_start = np.zeros(H, np.int64)
    hh_start[1:] = np.cumsum(sizes)[:-1]
    urban = hh_urban[household]
    # communes: consecutive persons, urban and rural separately; districts: consecutive communes
    cs = int(P["commune_size"])
    n_urb = int(urban.sum())
    pos_in = np.where(urban, np.arange(n), np.arange(n) - n_urb)
    hh_first = hh_start[household]
    pos_hh = np.where(urban, hh_first, hh_first - n_urb)      # commune by household (not split)
    n_urb_comm = -(-n_urb // cs) if n_urb else 0
    commune = np.where(urban, pos_hh // cs, n_urb_comm + pos_hh // cs).astype(np.int32)
    del pos_in
    per_dist = max(1, int(round(P["district_size"] / cs)))
    district = (commune // per_dist).astype(np.int32)

    # smartphones
    a = age.astype(np.int64)
    adult = a >= 18
    w = np.where(a <= 36, ph["weight_18_36"], np.where(a <= 59, ph["weight_37_59"], ph["weight_60p"]))
    w = w * np.where(urban, ph["urban_factor"], 1.0)
    c = _solve_factor(w[adult], ph["adult_share"])
    p_phone = np.where(adult, np.minimum(0.98, c * w),
                       np.where(a <= 11, ph["child_share_0_11"],
                                np.where(a <= 14, ph["child_share_12_14"], ph["child_share_15_17"])))
    if ph.get("owner_share") is not None:
        p_phone = owner_share_probability(p_phone, float(ph["owner_share"]))
    has_phone = rng.random(n) < p_phone
    p_ios = ph["ios_share"] / (ph["ios_share"] + ph["android_share"])
    platform = np.where(has_phone, (rng.random(n) < p_ios).astype(np.int8), np.int8(-1)).astype(np.int8)
    model, txo, rxo, txp = _device_offsets(rng, n)
    device_model = np.where(has_phone, model, -1).astype(np.int32)
    tx_offset = np.where(has_phone, txo, 0.0).astype(np.float32)
    rx_offset = np.where(has_phone, rxo, 0.0).astype(np.float32)
    tx_power = np.where(has_phone, txp, np.nan).astype(np.float32)
    cp = np.asarray(ph["carriage_probs"], dtype=np.float64)
    carriage = rng.choice(len(cp), size=n, p=cp / cp.sum()).astype(np.int8)

    # roles
    role = np.zeros(n, np.int8)
    work_kind = np.zeros(n, np.int8)
    u = rng.random(n)
    att = np.where(a < len(_ATTEND_AGE), _ATTEND_AGE[np.minimum(a, len(_ATTEND_AGE) - 1)], 0.0)
    pupil = u < att
    uni = (a >= 18) & (a <= 22) & (u < ro["university_share"])
    role[pupil | uni] = R["student"]
    working_age = (a >= 18) & (a <= 64) & ~uni
    employed = working_age & (rng.random(n) < employment_probability(a, working_age, ro))
    shares = np.array([ro["agriculture_share"], ro["civil_servant_share"], ro["health_worker_share"],
                       ro["transport_worker_share"], ro["factory_share"], ro["market_vendor_share"],
                       ro["restaurant_staff_share"], ro["hotel_staff_share"]])
    if shares.sum() > 1.0:
        raise ValueError(f"{scn.source}: roles: sector shares sum to {shares.sum():.3f} > 1")
    sector = np.searchsorted(np.cumsum(shares), rng.random(n), side="right")  # 8 = other services
    emp = np.flatnonzero(employed)
    sec = sector[emp]
    role[emp[sec == 1]] = R["civil_servant"]
    role[emp[sec == 2]] = R["health_worker"]
    role[emp[sec == 3]] = R["transport_worker"]
    role[emp[sec == 4]] = R["factory_worker"]
    role[emp[sec == 5]] = R["market_vendor"]
    work_kind[emp[sec == 0]] = WORK_AGRI
    work_kind[emp[sec == 6]] = WORK_RESTAURANT
    work_kind[emp[sec == 7]] = WORK_HOTEL
    work_kind[emp[sec == 8]] = WORK_SERVICE
    # teachers: one per class, more per class for teacher_per_class > 1, from the "other services" pool
    n_pupils = int(pupil.sum())
    n_classes = -(-n_pupils // int(scn.places["school"]["class_size"]))
    n_teach = int(round(n_classes * ro["teacher_per_class"]))
    pool = emp[sec == 8]
    pool = pool[rng.permutation(len(pool))][:n_teach]
    role[pool] = R["teacher"]
    work_kind[pool] = WORK_NONE
    # in-patients: weighted to the old
    n_pat = int(round(n * scn.places["hospital"]["patients_per_1000"] / 1000.0))
    if n_pat:
        wp = np.where(a >= 60, 4.0, np.where(a < 5, 1.5, 1.0))
        wp = np.where(role == R["student"], wp * 0.5, wp)
        # Gumbel top-k: weighted sampling without replacement, vectorised
        keys = np.log(rng.random(n)) / wp
        pat = np.argsort(-keys, kind="stable")[:n_pat]
        role[pat] = R["patient"]
        work_kind[pat] = WORK_NONE
    # bus commuters among pupils/students and workers with a workplace
    commuter = np.isin(role, [R["student"], R["civil_servant"], R["teacher"], R["health_worker"],
                              R["factory_worker"]]) | ((role == R["other"]) & (work_kind == WORK_SERVICE))
    bus = scn.places["bus"]
    bus_user = commuter & (rng.random(n) < np.where(urban, bus["share_urban"], bus["share_rural"]))
    return Population(n=n, age=age, household=household, hh_size=sizes.astype(np.int32), hh_start=hh_start,
                      urban=urban, commune=commune, district=district, has_phone=has_phone,
                      platform=platform, device_model=device_model, tx_offset=tx_offset,
                      rx_offset=rx_offset, tx_power=tx_power, carriage=carriage, role=role,
                      work_kind=work_kind, bus_user=bus_user, hh_kind=hh_kind)
