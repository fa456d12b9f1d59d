"""QR venue check-in (sim/qr.py, tracing/qr.py): exact warned sets on a hand-made venue log, the
channel's pair table, channel combination and the coverage metrics per channel."""
import numpy as np
import pytest

from sim.epidemic import PLACE_TYPES
from sim.qr import CHECKIN_DTYPE, QRParams, checkins_from_visits
from tracing.core.coverage import OnePass
from tracing.core.pairs import PAIR_DTYPE
from tracing.core.qr import combine_channels, qr_pairs, qr_warned, qr_warnings

H = 3600.0
MARKET = PLACE_TYPES.index("market")


def log(rows):
    """rows: (agent, venue, t_hours, scan)."""
    c = np.zeros(len(rows), CHECKIN_DTYPE)
    for k, (a, v, th, s) in enumerate(rows):
        c[k] = (a, v, th * H, MARKET, s)
    return c


# day 0: venue 1 at 09:00 (case 0), 09:30 (1), 09:59 (2), 10:01 (3: 61 min later), 08:10 (4: 50 min
# earlier), 08:00 (5: 60 min earlier = on the boundary); venue 2 at 09:00 (6: other venue);
# agent 7 at venue 1 09:15 did not scan; agent 8 at venue 1 on day 3 (72 h later);
# agent 0's second check-in: venue 2 on day 20 (after its confirmation: not published)
VENUE_LOG = log([(0, 1, 9.0, True), (1, 1, 9.5, True), (2, 1, 9.99, True), (3, 1, 10.0 + 1 / 60, True),
                 (4, 1, 9.0 - 50 / 60, True), (5, 1, 8.0, True), (6, 2, 9.0, True), (7, 1, 9.25, False),
                 (8, 1, 81.0, True), (0, 2, 20 * 24 + 9.0, True)])


def test_exact_warned_set_on_a_hand_made_venue_log():
    w = qr_warnings(VENUE_LOG, [0], 5 * 24 * H, overlap_s=H, lookback_s=14 * 24 * H)
    assert sorted(w["agent"].tolist()) == [1, 2, 4, 5]
    assert set(w["case"].tolist()) == {0} and set(w["venue"].tolist()) == {1}
    assert np.all(w["t_case"] == 9 * H)
    warned = qr_warned(VENUE_LOG, [0], 5 * 24 * H, 10, overlap_s=H)
    assert np.flatnonzero(warned).tolist() == [1, 2, 4, 5]


def test_app_users_only_lookback_and_overlap_window():
    app = np.ones(10, bool)
    app[2] = False                                  # 2 does not run the app
    w = qr_warnings(VENUE_LOG, [0], 5 * 24 * H, app=app, overlap_s=H)
    assert sorted(w["agent"].tolist()) == [1, 4, 5]
    app0 = app.copy()
    app0[0] = False                                 # a case without the app publishes nothing
    assert len(qr_warnings(VENUE_LOG, [0], 5 * 24 * H, app=app0)) == 0
    # confirmed before the visit, or the visit older than the look-back: nothing published
    assert len(qr_warnings(VENUE_LOG, [0], 8 * H)) == 0
    assert len(qr_warnings(VENUE_LOG, [0], 5 * 24 * H, lookback_s=2 * 24 * H)) == 0
    # wider window reaches 3; narrower loses 2 and 5
    assert sorted(qr_warnings(VENUE_LOG, [0], 5 * 24 * H, overlap_s=2 * H)["agent"].tolist()) == [1, 2, 3, 4, 5]
    assert sorted(qr_warnings(VENUE_LOG, [0], 5 * 24 * H, overlap_s=0.9 * H)["agent"].tolist()) == [1, 4]
    # two cases: 1 (09:30) warns 0 (30 min), 2 (29 min) and 3 (31 min), not 4 (80 min earlier)
    w = qr_warnings(VENUE_LOG, [0, 1], 5 * 24 * H, overlap_s=H)
    assert sorted(set(w["agent"][w["case"] == 1].tolist())) == [0, 2, 3]
    # a case confirmed later publishes its later check-in at venue 2 too
    w = qr_warnings(VENUE_LOG, [0], 21 * 24 * H, overlap_s=H, lookback_s=30 * 24 * H)
    assert sorted(w["agent"].tolist()) == [1, 2, 4, 5]           # 6 was at venue 2 on day 0, not day 20


def test_qr_pair_table_and_channel_combination():
    n = 10
    q = qr_pairs(VENUE_LOG, n, overlap_s=H)
    got = {(int(i), int(j)) for i, j in zip(q["i"], q["j"])}
    # venue 1 day 0 scans (agent, h): 5@8.0 4@8.17 0@9.0 1@9.5 2@9.99 3@10.02 -- pairs within 60 min
    expected = {(4, 5), (0, 5), (0, 4), (0, 1), (0, 2), (1, 2), (1, 3), (2, 3)}
    assert got == expected
    assert np.all(q["notify_i"] & q["notify_j"]) and not q["true_close"].any()
    ble = np.zeros(3, PAIR_DTYPE)
    ble[0] = (0, 1, 0, 9 * H, True, True, False, 20.0, 60.0)        # true, notified one way by BLE
    ble[1] = (0, 6, 0, 9 * H, True, False, False, 30.0, 55.0)       # true, BLE missed, QR missed
    ble[2] = (7, 8, 0, 9 * H, False, True, True, 5.0, 70.0)         # BLE false positive
    only_ble = combine_channels(ble, q, ["ble"])
    both = combine_channels(ble, q, ["ble", "qr"])
    only_qr = combine_channels(ble, q, ["qr"])
    assert len(only_ble) == 3 and len(both) == len(only_qr) == len(expected) + 2   # (0, 1) in both
    r01 = both[(both["i"] == 0) & (both["j"] == 1)][0]
    assert r01["true_close"] and r01["notify_i"] and r01["notify_j"] and r01["minutes"] == 20.0
    r78 = only_qr[(only_qr["i"] == 7) & (only_qr["j"] == 8)][0]
    assert not (r78["notify_i"] or r78["notify_j"])
    with pytest.raises(ValueError, match="channels"):
        combine_channels(ble, q, ["wifi"])
    # coverage per channel, everyone on the app, index case 0: true close contacts {1, 6}
    ranks = np.full(n, 0.5)
    cov = {name: OnePass(t, n, ranks, [0]).evaluate([1.0]) for name, t in
           (("ble", only_ble), ("qr", only_qr), ("both", both))}
    assert cov["ble"]["f1_coverage"][0] == pytest.approx(0.5)       # 1 (BLE: 0->1 notify_j)
    assert cov["qr"]["f1_coverage"][0] == pytest.approx(0.5)        # 1 (co-visit); 6 elsewhere
    assert cov["both"]["f1_coverage"][0] == pytest.approx(0.5)
    assert cov["ble"]["f1_precision"][0] == pytest.approx(1.0)
    assert cov["qr"]["f1_precision"][0] == pytest.approx(1 / 4)     # warns 1, 2, 4, 5; only 1 is close


def test_checkins_from_visits_types_and_scan_draws():
    p = QRParams(place_types=("market",), p_scan=0.5)
    home, market = PLACE_TYPES.index("home"), MARKET
    m = 20000
    agent = np.arange(m)
    c = checkins_from_visits(agent, np.full(m, 3), np.full(m, 9 * H), np.where(agent % 2, market, home),
                             p, seed=1)
    assert len(c) == m // 2 and np.all(c["place_type"] == market)
    assert c["scan"].mean() == pytest.approx(0.5, abs=0.02)
    c2 = checkins_from_visits(agent, np.full(m, 3), np.full(m, 9 * H), np.where(agent % 2, market, home),
                              p, seed=1)
    assert np.array_equal(c["scan"], c2["scan"])                     # counter-based
    with pytest.raises(ValueError, match="qr.p_scan"):
        QRParams.from_dict({"p_scan": 2})
    with pytest.raises(ValueError, match="qr.place_types"):
        QRParams.from_dict({"place_types": ["disco"]})


def test_qr_channel_in_the_closed_loop_warns_co_visitors():
    from sim.epidemic import EpidemicParams
    from tracing.closedloop.contacts import synthetic_contacts
    from tracing.closedloop.loop import run_closed_loop
    from tracing.closedloop.params import Interventions
    cd = synthetic_contacts(3000, seed=5, venues=30, visits_per_day=0.5)
    ranks = np.random.default_rng(1).permutation(cd.n) / cd.n + 1.0 / cd.n
    p = EpidemicParams(seeds=20, import_per_day=0.0, dose_norm=250.0)
    iv = Interventions(days=40)
    a = run_closed_loop(cd, p, iv, ranks=ranks, adoption=0.6, seed=2, channels=("ble",))["summary"]
    b = run_closed_loop(cd, p, iv, ranks=ranks, adoption=0.6, seed=2, channels=("ble", "qr"))["summary"]
    assert a["notified_qr"] == 0 and b["notified_qr"] > 0
    assert b["person_days_isolated"] >= a["person_days_isolated"]
    with pytest.raises(ValueError, match="QR check-ins"):
        run_closed_loop(synthetic_contacts(100, seed=1), p, iv, channels=("qr",))
