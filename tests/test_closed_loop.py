"""`balanced` and `batch` on the public trace suite, closed loop on the simulator.

Bounds stated here: end-time slowdown <= budget + 0.5 points; never more energy than the firmware
default; at least 1% saved on every trace but hot-room (compute-bound training held at the thermal
limit, where default's own throttling leaves little room); at most 6 setpoint reversals per minute.

Known misses are kept visible as strict xfails (they fail the run once fixed, so the mark goes).
`fast-phases`, where `balanced` ran 3.7-4.0% slow on the 0.3 s compute/memory alternation, was one
until docs/decisions/025.
"""

import pytest

from governor.lab.oracle_search import OracleSearch
from governor.lab.simulate import DEFAULT_POLICY, run_trace
from governor.policy import load_policy
from governor.sim.spec import load_spec
from governor.sim.trace import load_trace, suite_traces

SUITE = suite_traces()
MAX_REVERSALS_PER_MIN = 6.0
GPUS = ("h100-sxm", "a100-sxm4", "h200", "v100-sxm2")  # the two, and the simulator's other two


@pytest.fixture(scope="module")
def results():
    out = {}
    policy = load_policy("balanced")
    for gpu in GPUS:
        spec = load_spec(gpu)
        for name in SUITE:
            trace = load_trace(name)
            out[gpu, name] = (run_trace(spec, trace, DEFAULT_POLICY), run_trace(spec, trace, policy))
    return out


@pytest.mark.parametrize(("gpu", "name"), [(g, t) for t in SUITE for g in GPUS])
def test_balanced_keeps_its_end_time_promise_on_every_trace(results, gpu, name):
    budget = load_policy("balanced").params["slowdown_budget"]
    ref, run = results[gpu, name]
    slowdown = run.slowdown(ref)
    saved = 1 - run.energy_j / ref.energy_j
    assert slowdown <= budget + 0.005, (gpu, name, slowdown)
    assert run.energy_j <= ref.energy_j, (gpu, name, saved)
    if name != "hot-room":
        assert saved >= 0.01, (gpu, name, saved)
    assert run.reversals / (run.seconds / 60.0) <= MAX_REVERSALS_PER_MIN, (gpu, name, run.reversals)


def test_balanced_bounds_request_latency_on_arriving_work(results):
    budget = load_policy("balanced").params["slowdown_budget"]
    misses = {}
    for (gpu, name), (ref, run) in results.items():
        lat = run.latency_slowdowns(ref)
        if lat is not None and lat[0] > budget + 0.005:
            misses[gpu, name] = round(lat[0], 3)
    assert not misses, misses


BURST_MISS = pytest.mark.xfail(strict=True, reason="batch keeps up phase by phase; the best fixed clock lets quiet "
                                                  "phases absorb a burst's backlog (docs/benchmarks.md)")


@pytest.mark.parametrize("name", ["decode", "idle", "pipeline-bubbles",
                                  pytest.param("bursty-inference", marks=BURST_MISS)])
def test_batch_captures_most_of_the_best_fixed_clock_on_memory_bound_and_idle_work(name):
    """Large savings on memory-bound and idle work come from stretching what end time does not see;
    `batch` (bound = "time") promises only end time, so they are within its promise. It must keep
    at least 60% of what the best fixed clock or power limit saves within the same bound."""
    spec = load_spec("h100-sxm")
    trace = load_trace(name)
    ref, run = run_trace(spec, trace, DEFAULT_POLICY), run_trace(spec, trace, load_policy("batch"))
    best = OracleSearch(spec, trace, 0.03, "time").static()
    assert run.keeps(ref, 0.03 + 0.005, "time"), name
    assert 1 - run.energy_j / ref.energy_j >= 0.6 * (1 - best.energy_j / ref.energy_j), name


@pytest.mark.parametrize("gpu", ["h100-sxm", "h200"])
def test_batch_finds_the_knee_of_memory_bound_work(gpu):
    """A saturated copy with a roofline knee, as a real H200 ran it (docs/hardware.md: as fast at 1440
    MHz as at 1980, 19% less energy). Two fixed probes on its flat part fit a phase the clock does not
    touch; the refining probe had gone to 405 MHz, spent the budget there, and `batch` saved 4.6% of
    the best fixed clock's 25.6% on h200 (1.6% of 18.9% on the real GPU). It must keep 85%."""
    spec, trace = load_spec(gpu), load_trace("memory-copy")
    ref, run = run_trace(spec, trace, DEFAULT_POLICY), run_trace(spec, trace, load_policy("batch"))
    best = OracleSearch(spec, trace, 0.03, "time").static()
    assert run.keeps(ref, 0.03 + 0.005, "time"), gpu
    assert 1 - run.energy_j / ref.energy_j >= 0.85 * (1 - best.energy_j / ref.energy_j), gpu


@pytest.mark.parametrize(("policy", "trace"), [("balanced", "gen:training:602046"), ("batch", "gen:training:602046"),
                                               ("balanced", "gen:training:229377"), ("batch", "gen:training:229377")])
def test_both_policies_keep_end_time_on_generated_training(policy, trace):
    """Held-out training jobs (input stalls, checkpoints): end time within 3% + 0.5 point. Seed
    602046 ran 10% long under `batch` while windows' clocks were weighted by utilization for every
    bound (it is now only under a latency bound); 229377 15%, its reference window caught a checkpoint
    (docs/decisions/019)."""
    spec, t = load_spec("h100-sxm"), load_trace(trace)
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy(policy))
    assert run.slowdown(ref) <= 0.035, (trace, policy, run.slowdown(ref))


@pytest.mark.parametrize("policy", ["balanced", "batch"])
def test_a_mix_whose_probing_waited_for_budget_is_probed_once_the_budget_is_back(policy):
    """`training-stalls` is one busy mix whose first window waits: its single phases' probes at the
    start read as end time spent. Held at default for good once it had waited, it saved 0.7% under
    `batch` (4.4% probed later) and, once mixes waited under both bounds, 0.7% under `balanced`
    (2.9%): the mix is probed when it is measured again and the budget is back (docs/decisions/024)."""
    spec, t = load_spec("h100-sxm"), load_trace("training-stalls")
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy(policy))
    assert run.slowdown(ref) <= 0.035, run.slowdown(ref)
    assert run.energy_j < 0.98 * ref.energy_j, 1 - run.energy_j / ref.energy_j


def test_balanced_takes_a_mix_s_further_window_no_deeper_than_the_budget_left_pays_for():
    """A mix's second fixed window lasts 20-30 s at 0.82 of its clock: on a 133 s job with 1.1% of
    end time's budget left it ran to the job's end, 4.36% long (a held-out seed of issue 19's ninth
    part, docs/decisions/025)."""
    spec, t = load_spec("h100-sxm"), load_trace("gen:mixed:910188")
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy("balanced"))
    assert run.keeps(ref, 0.03 + 0.005, "both"), (run.slowdown(ref), run.latency_slowdowns(ref))
    assert run.energy_j < 0.98 * ref.energy_j


@pytest.mark.parametrize("trace", ["gen:pipeline:988819", "gen:training:902087"])
def test_balanced_plans_a_mix_by_what_its_busy_readings_show_its_kernels_do(trace):
    """A window's mean mixes in its quiet readings, which move kernel time per unit of work more than
    the clock does: a pipeline's forward passes and a training mix's steps were read as barely
    slowed at 0.9 of their clocks, and `balanced` ran the pipeline's requests 7.2% late and the
    training job 3.6% long (held-out seeds of issue 19's thirteenth part, docs/decisions/032)."""
    spec, t = load_spec("h100-sxm"), load_trace(trace)
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy("balanced"))
    assert run.keeps(ref, 0.03 + 0.005, "both"), (run.slowdown(ref), run.latency_slowdowns(ref))
    assert run.energy_j < 0.97 * ref.energy_j, 1 - run.energy_j / ref.energy_j


def test_max_savings_does_not_plan_a_mix_on_windows_that_caught_other_work():
    """A busy mix's windows below its reference read less kernel time per unit of work than it (the
    job's load rose under them): planned on them, `max-savings` held the mix at 0.83 of its clock,
    and the serving segment that followed ran its requests 135% late against a 10% budget (a100
    gen:mixed:988819, found by the policy-order check of issue 19's thirteenth part)."""
    spec, t = load_spec("a100-sxm4"), load_trace("gen:mixed:988819")
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy("max-savings"))
    assert run.keeps(ref, 0.10 + 0.005, "both"), (run.slowdown(ref), run.latency_slowdowns(ref))
    assert run.energy_j < 0.97 * ref.energy_j, 1 - run.energy_j / ref.energy_j


def test_balanced_keeps_end_time_on_a_busy_training_mix_met_anew_after_a_checkpoint():
    """Both bounds bound end time too: a busy training mix met anew after a checkpoint was probed
    for 30 s at 0.91 of its clock with end time's budget spent by the first mix's windows, and
    `balanced` ran a100 gen:training:44595 3.63% long; such a mix's windows now wait for end time's
    budget as under `batch` (docs/decisions/024)."""
    spec, t = load_spec("a100-sxm4"), load_trace("gen:training:44595")
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy("balanced"))
    assert run.slowdown(ref) <= 0.035, run.slowdown(ref)
    assert run.energy_j < 0.98 * ref.energy_j


@pytest.mark.parametrize(("gpu", "trace"), [("h100-sxm", "gen:training:44595"), ("h100-sxm", "gen:training:991031"),
                                            ("h100-sxm", "gen:training:186672"), ("h100-sxm", "training-stalls"),
                                            ("a100-sxm4", "gen:training:261972"), ("a100-sxm4", "gen:training:643497"),
                                            ("a100-sxm4", "gen:mixed:346751"), ("h100-sxm", "gen:mixed:371076")])
def test_batch_keeps_end_time_on_busy_mixes_whose_windows_are_noisy(gpu, trace):
    """Training mixes whose 20-30 s windows catch a checkpoint or not: `batch` ran these 5-13% long,
    probing on with its budget spent, reading arriving work from windows whose load moved, and
    reading a rebased mix's old probe against a new reference (docs/decisions/019), or against one
    whose load had risen (gen:mixed:371076, 4% long: decision 020). It must keep end time and still save."""
    spec, t = load_spec(gpu), load_trace(trace)
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy("batch"))
    assert run.slowdown(ref) <= 0.035, (gpu, trace, run.slowdown(ref))
    assert run.energy_j < 0.99 * ref.energy_j, (gpu, trace)


def test_batch_takes_no_deep_mix_window_with_end_time_s_budget_spent():
    """A quiet mix's refining window went one step down, to 375 MHz, with end time's budget read as
    spent, and met a training job's steps there: 16 s at a quarter of their clock before the window
    ended, and `batch` ran h100 gen:mixed:480411 4.03% long (a held-out seed of issue 19's ninth
    part; docs/decisions/026). Such a mix is held no deeper than it was measured."""
    spec, t = load_spec("h100-sxm"), load_trace("gen:mixed:480411")
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy("batch"))
    assert run.slowdown(ref) <= 0.035, run.slowdown(ref)
    assert run.energy_j < 0.95 * ref.energy_j, 1 - run.energy_j / ref.energy_j


@pytest.mark.parametrize("gpu", ["a100-sxm4", "v100-sxm2"])
def test_batch_moves_a_held_serving_mix_up_once_its_requests_queue(gpu):
    """A serving mix 44% busy at default, read as arriving work down to 525 MHz, was held at 255,
    where its requests queued behind a saturated GPU until the hold's refresh two minutes later:
    `batch` ran gen:serving:496270 14.05% long on a100 and 13.53% on v100 (a held-out seed of issue
    19's eleventh part; docs/decisions/029). A held window saturated short of its arrival rate is
    now read as the mix's own. (Since decision 031 its windows, which do not reject the serial
    reading beyond their noise, keep it from being walked that deep: 6.4% saved on both, not 13.7%
    and 17.2%.)"""
    spec, t = load_spec(gpu), load_trace("gen:serving:496270")
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy("batch"))
    assert run.slowdown(ref) <= 0.035, run.slowdown(ref)
    assert run.energy_j < 0.95 * ref.energy_j, 1 - run.energy_j / ref.energy_j


@pytest.mark.parametrize(("gpu", "trace"), [("h100-sxm", "gen:mixed:964017"), ("a100-sxm4", "gen:mixed:834281"),
                                            ("a100-sxm4", "gen:training:595284")])
def test_batch_keeps_end_time_where_a_mix_s_windows_cannot_tell_arriving_work_from_serial(gpu, trace):
    """A training mix's windows hold a few steps and stalls, and its load moves between them: one
    window at 0.82 of the clock read 4% more progress than its reference (h100 gen:mixed:964017),
    three in a row kept it (a100 gen:mixed:834281), one read 78% more (a100 gen:training:595284),
    each was read as arriving work and walked down, and `batch` ran them 8.9%, 9.1% and 7.5% long
    (held-out seeds of issue 19's eleventh part; docs/decisions/031). Now read as arriving work
    only where the windows reject the serial reading beyond their noise."""
    spec, t = load_spec(gpu), load_trace(trace)
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy("batch"))
    assert run.slowdown(ref) <= 0.035, run.slowdown(ref)
    assert run.energy_j < 0.97 * ref.energy_j, 1 - run.energy_j / ref.energy_j


def test_batch_tells_a_pipeline_from_serial_work_with_a_deeper_window():
    """A pipeline's first window at 0.82 of its clock kept its progress within 2%, short of what
    tells it from serial work; held by the cautious reading, `batch` saved 5.4% on h100
    gen:pipeline:844616. A deeper window, once the budget pays for it, tells (docs/decisions/031)."""
    spec, t = load_spec("h100-sxm"), load_trace("gen:pipeline:844616")
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy("batch"))
    assert run.slowdown(ref) <= 0.035, run.slowdown(ref)
    assert run.energy_j < 0.8 * ref.energy_j, 1 - run.energy_j / ref.energy_j


@pytest.mark.parametrize("trace", ["gen:mixed:44595", "gen:mixed:253428", "gen:training:261972"])
def test_batch_keeps_end_time_on_generated_mixes(trace):
    """A mix measured while its job was quiet, then read three times busier at its first probe: kept,
    the two windows fitted arriving work and the mix was held saturated at 570 MHz (the mixed seeds
    ran 16.8% and 18.1% long under `batch`); such a window is now other work. A training mix read as
    arriving work from two windows went halfway down for its next one (10.6% long); it now goes one
    fixed step (docs/decisions/018)."""
    spec, t = load_spec("h100-sxm"), load_trace(trace)
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy("batch"))
    assert run.slowdown(ref) <= 0.035, (trace, run.slowdown(ref))
    assert run.energy_j < ref.energy_j


@pytest.mark.parametrize("trace", ["gen:bursty:802941", "gen:mixed:736319", "gen:mixed:824996",
                                   "gen:bursty:932836"])
def test_balanced_keeps_request_latency_on_generated_bursts(trace):
    """Bursts and quiet stretches held as one mix: a burst that saturates the GPU under the mix's
    clock runs at default (the burst guard), and a probe that a burst saturates ends at once. These
    seeds ran requests 22%, 164%, 145% and 32% late before (docs/decisions/015); the last two open
    with bursts at 98-99% busy, which are now held at default unprobed, and a quiet phase is probed
    below its requests' boost clock, not its idle mean clock."""
    spec, t = load_spec("h100-sxm"), load_trace(trace)
    ref, run = run_trace(spec, t, DEFAULT_POLICY), run_trace(spec, t, load_policy("balanced"))
    assert run.keeps(ref, 0.03 + 0.005, "both"), (trace, run.slowdown(ref), run.latency_slowdowns(ref))
    assert run.energy_j < ref.energy_j
