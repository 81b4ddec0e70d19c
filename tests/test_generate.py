"""Generated workloads: gen:FAMILY:SEED, deterministic per seed, within the calibrated ranges,
accepted wherever a trace name is, and saved as a trace file that loads back the same."""

import subprocess
import sys
import tomllib

import pytest

from governor.errors import TraceError
from governor.sim.generate import FAMILIES, FAMILY_RANGES, MAX_TRACE_S, MIN_TRACE_S, generate, to_toml
from governor.sim.trace import load_trace, trace_from_dict


@pytest.mark.parametrize("family", FAMILIES)
def test_a_family_is_deterministic_per_seed_and_within_its_ranges(family):
    a, b, other = generate(family, 11), load_trace(f"gen:{family}:11"), generate(family, 12)
    assert a == b and a.phases != other.phases
    for seed in range(1, 9):
        t = generate(family, seed)
        assert MIN_TRACE_S - 1 <= t.default_seconds <= MAX_TRACE_S + 1
        assert all(p.seconds >= 0.2 for p in t.phases)
        kinds = {k.name: k for ranges in FAMILY_RANGES.values() for k in ranges}
        for p in t.phases:
            k = kinds[p.name]
            assert p.slack == k.slack
            for field in ("clock_bound", "intensity", "dram"):
                lo, hi = getattr(k, field)
                assert lo - 1e-3 <= getattr(p, field) <= hi + 1e-3, (p, field)


def test_a_generated_trace_saves_and_loads_back_the_same(tmp_path):
    t = generate("mixed", 5)
    again = trace_from_dict(tomllib.loads(to_toml(t)), "saved")
    assert again.phases == t.phases and again.ambient_c == t.ambient_c


def test_bad_generated_names_are_clear_errors():
    for bad, match in (("gen:serving", "gen:FAMILY:SEED"), ("gen:serving:x", "gen:FAMILY:SEED"),
                       ("gen:opera:3", "unknown family 'opera'")):
        with pytest.raises(TraceError, match=match):
            load_trace(bad)


def test_gen_traces_run_in_govd_and_save_from_govctl(tmp_path):
    r = subprocess.run([sys.executable, "-m", "governor.cli.govd", "--root", str(tmp_path), "--sim", "h100-sxm",
                        "--trace", "gen:training:4", "--policy", "performance", "--duration", "2", "--speed", "5"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "t.toml"
    r = subprocess.run([sys.executable, "-m", "governor.cli.govctl", "simulate", "--gpu", "h100-sxm", "--trace",
                        "gen:pipeline:17", "--policy", "performance", "--save", str(out), "--json"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert trace_from_dict(tomllib.loads(out.read_text()), "t").phases == generate("pipeline", 17).phases


def test_a_mixed_trace_s_segments_start_where_one_family_s_work_gives_way_to_another():
    from governor.sim.generate import mixed_segment_starts

    starts = mixed_segment_starts(480411)
    phases = generate("mixed", 480411).phases
    assert starts[0] == 0 and starts == sorted(set(starts)) and starts[-1] < len(phases)
    # training, serving, training, bursty, bursty, training (the generator is deterministic)
    assert [phases[i].name for i in starts] == ["step", "prefill", "step", "burst", "burst", "step"]
    assert phases[starts[1] - 1].name == "input-stall"  # the first training segment's last phase
