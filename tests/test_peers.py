"""Peer controllers follow their public descriptions."""

from controller_helpers import H100, ceiling, sample

from governor.lab.peers.geopm_activity import GeopmActivityController
from governor.lab.peers.ondemand import OndemandController
from governor.lab.peers.zeus_pl import ZeusPowerLimitController


def test_ondemand_jumps_above_threshold_and_is_proportional_below():
    c = OndemandController({}, H100)
    assert c.decide(sample(0, util=85)).is_default
    sp = c.decide(sample(0.2, util=50))
    assert ceiling(sp) == H100.snap_clock(345 + 0.5 * (1980 - 345))
    assert ceiling(c.decide(sample(0.4, util=0))) == 345


def test_geopm_activity_formula_and_phi():
    c = GeopmActivityController({"fe_mhz": 1200}, H100)
    sp = c.decide(sample(0, util=80, sm_act=40))  # ratio 0.5
    assert ceiling(sp) == H100.snap_clock(1200 + (1980 - 1200) * 0.5)
    assert ceiling(c.decide(sample(0, util=0, sm_act=0))) == 1200  # idle: f_e
    assert c.decide(sample(0, util=80, sm_act=None)).is_default  # no GPM: ratio 1, f_max
    energy = GeopmActivityController({"fe_mhz": 1200, "phi": 1.0}, H100)
    assert ceiling(energy.decide(sample(0, util=80, sm_act=80))) == 1200  # phi 1: f_max pulled to f_e
    perf = GeopmActivityController({"fe_mhz": 1200, "phi": 0.0}, H100)
    assert perf.decide(sample(0, util=80, sm_act=0)).is_default  # phi 0: f_e pushed to f_max


def test_zeus_profiles_limits_in_25w_steps_then_holds_the_cheapest():
    c = ZeusPowerLimitController({"warmup_s": 1.0, "profile_s": 2.0}, H100)
    assert c.candidates[:3] == [700, 675, 650] and c.candidates[-1] == 200
    t, energy_mj, work = 0.0, 0, 0.0
    seen = []
    while c.chosen is None and t < 1000:
        sp = c.decide(sample(t, energy=energy_mj))
        limit = sp.power_limit_w or 700.0
        seen.append(limit)
        # synthetic GPU: time per work grows below 450 W, power follows the limit
        rate = min(1.0, limit / 450.0)
        work += 0.2 * rate
        energy_mj += int(limit * 0.2 * 1000)
        c.observe_app({"work_done_s": work})
        t += 0.2
    assert sorted(set(seen), reverse=True)[:2] == [700, 675]
    # cost = 0.5 E + 0.5 * 700 * T per unit work: E/w = P/rate, T/w = 1/rate -> min at 450 W
    assert c.chosen == 450
    assert c.decide(sample(t, energy=energy_mj)).power_limit_w == 450
