"""The PID controller, driven with synthetic sample sequences."""

import random

from controller_helpers import H100, ceiling, sample

from governor.controllers.pid import PidController
from governor.settings import Setpoint


def pid(**params):
    return PidController({**params}, H100)


def test_bumpless_start_from_the_current_clock():
    c = pid()
    c.start(sample(0, util=90, clock=1500), Setpoint(sm_clock_max_mhz=1500))
    assert ceiling(c.decide(sample(0.2, util=90, clock=1500))) == 1500
    far = pid(down_mhz_per_s=150)
    far.start(sample(0, util=20, clock=1500), Setpoint(sm_clock_max_mhz=1500))
    assert ceiling(far.decide(sample(0.2, util=20, clock=1500))) >= 1500 - 30  # a big error moves it gently


def test_lowers_the_clock_slowly_when_the_gpu_is_underused():
    c = pid(down_mhz_per_s=150)
    c.start(sample(0, util=40, clock=1980), Setpoint())
    outs = [ceiling(c.decide(sample(0.2 * i, util=40, clock=1980))) for i in range(1, 26)]
    assert outs == sorted(outs, reverse=True)  # only down
    assert 1980 - 5 * 150 - 15 <= outs[-1] <= 1980 - 5 * 150 + 15  # at most 150 MHz/s over 5 s


def test_jumps_to_max_at_once_when_saturated():
    c = pid()
    c.start(sample(0, util=40, clock=900), Setpoint(sm_clock_max_mhz=900))
    c.decide(sample(0.2, util=40, clock=900))
    sp = c.decide(sample(0.4, util=100, clock=900))
    assert sp.is_default  # the max clock: unlocked


def test_ramps_up_faster_than_down():
    up = pid(kp=50, ki=0)
    up.start(sample(0, util=95, clock=1000), Setpoint(sm_clock_max_mhz=1000))
    rise = ceiling(up.decide(sample(0.2, util=97, clock=1000))) - 1000
    down = pid(kp=50, ki=0)
    down.start(sample(0, util=85, clock=1500), Setpoint(sm_clock_max_mhz=1500))
    fall = 1500 - ceiling(down.decide(sample(0.2, util=50, clock=1500)))
    assert rise > 2 * fall and fall <= 30


def test_deadband_holds_the_output():
    c = pid(deadband=3.0)
    c.start(sample(0, util=90, clock=1500), Setpoint(sm_clock_max_mhz=1500))
    outs = {ceiling(c.decide(sample(0.2 * i, util=90 + (2 if i % 2 else -2), clock=1500))) for i in range(1, 30)}
    assert outs == {1500}


def test_anti_windup_after_long_saturation_at_the_floor():
    c = pid(kp=5, ki=20, down_mhz_per_s=100000, up_mhz_per_s=100000, integral_band=100)
    c.start(sample(0, util=10, clock=1980), Setpoint())
    for i in range(1, 300):  # a minute of idle: the output sits at the floor
        c.decide(sample(0.2 * i, util=10, clock=345))
    assert c.output == 345
    integral_at_floor = c.integral
    # the integral must not have run far below the floor (conditional integration)
    assert integral_at_floor > 345 - 5 * 100
    # load returns just above target: the clock rises within a few ticks, not after unwinding a minute
    for i in range(300, 310):
        sp = c.decide(sample(0.2 * i, util=95, clock=345))
    assert ceiling(sp) > 345 + 300


def test_derivative_is_filtered_and_on_the_measurement():
    rng = random.Random(1)
    noisy = pid(kp=0.0, ki=0.0, kd=5.0, d_filter_s=2.0, deadband=0)
    raw = pid(kp=0.0, ki=0.0, kd=5.0, d_filter_s=0.0, deadband=0)
    for c in (noisy, raw):
        c.start(sample(0, util=80, clock=1500), Setpoint(sm_clock_max_mhz=1500))
    ds_f, ds_r = [], []
    for i in range(1, 100):
        u = 80 + rng.gauss(0, 5)
        noisy.decide(sample(0.2 * i, util=u, clock=1500))
        raw.decide(sample(0.2 * i, util=u, clock=1500))
        ds_f.append(noisy.d_filtered)
        ds_r.append(raw.d_filtered)
    assert max(map(abs, ds_f)) < 0.3 * max(map(abs, ds_r))
    # a target change alone does not kick a derivative on the measurement
    c = pid(kp=0.0, ki=0.0, kd=5.0, deadband=0)
    c.start(sample(0, util=80, clock=1500), Setpoint(sm_clock_max_mhz=1500))
    c.params["target"] = 50.0
    c.decide(sample(0.2, util=80, clock=1500))
    assert c.d_filtered == 0.0


def test_temperature_mode_lowers_the_clock_when_hot_and_output_is_clamped():
    c = pid(mode="temp", target=75.0, kp=20, ki=5, down_mhz_per_s=100000)
    c.start(sample(0, temp=85, clock=1980), Setpoint())
    sp = None
    for i in range(1, 200):
        sp = c.decide(sample(0.2 * i, temp=85, clock=1980))
    assert ceiling(sp) == H100.sm_clock_min_mhz  # clamped at the floor, never below


def test_power_mode_uses_instant_power_when_there():
    c = pid(mode="power", target=300.0)
    s = sample(0, power=500, clock=1980)
    assert c._measure(s) == 500
    from dataclasses import replace

    assert c._measure(replace(s, power_instant_w=250.0)) == 250.0
