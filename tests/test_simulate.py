import json
import os
import signal
import subprocess
import sys
import time

import pytest

from governor.lab.simulate import DEFAULT_POLICY, run_trace, simulate
from governor.sim.spec import load_spec


def test_json_contract_and_default_reference():
    out = simulate("h100-sxm", "decode", ["performance", "static-example"])
    assert {"gpu", "trace", "budget", "runs"} <= set(out)
    assert out["gpu"] == "h100-sxm" and out["trace"] == "decode"
    for run in out["runs"]:
        assert {"policy", "energy_j", "seconds", "saved", "slowdown", "max_temp_c"} <= set(run)
    ref, perf, static = out["runs"]
    assert ref["policy"] == "default" and ref["saved"] == 0 and ref["slowdown"] == 0
    assert perf["energy_j"] == ref["energy_j"]  # performance is the firmware default
    assert static["saved"] > 0.1  # decode is memory-bound: a lower clock saves energy
    assert static["slowdown"] < 0.10


def test_runs_are_deterministic(make_trace):
    spec = load_spec("a100-sxm4")
    trace = make_trace({"seconds": 20.0, "busy": 0.8, "clock_bound": 0.7, "intensity": 0.7, "dram": 0.4})
    assert run_trace(spec, trace, DEFAULT_POLICY) == run_trace(spec, trace, DEFAULT_POLICY)


def test_slower_clock_on_compute_bound_work_costs_time_as_the_trace_says(make_trace, static_policy):
    spec = load_spec("h100-sxm")
    trace = make_trace({"seconds": 30.0, "busy": 1.0, "clock_bound": 1.0, "intensity": 0.3, "dram": 0.1})
    ref = run_trace(spec, trace, DEFAULT_POLICY)  # light kernels: not power-capped, runs at 1980
    half = run_trace(spec, trace, static_policy(sm_clock_max_mhz=990))
    assert half.seconds / ref.seconds == pytest.approx(2.0, rel=0.02)


def test_govctl_simulate_cli_json(tmp_path):
    r = subprocess.run([sys.executable, "-m", "governor.cli.govctl", "--root", str(tmp_path), "simulate", "--gpu",
                        "a100-sxm4", "--trace", "attention", "--policy", "static-example", "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert [x["policy"] for x in data["runs"]] == ["default", "static-example"]


def test_govctl_simulate_human_output_and_errors(tmp_path):
    r = subprocess.run([sys.executable, "-m", "governor.cli.govctl", "--root", str(tmp_path), "simulate", "--gpu",
                        "h100-sxm", "--trace", "idle"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "saved" in r.stdout and "balanced" in r.stdout
    r = subprocess.run([sys.executable, "-m", "governor.cli.govctl", "simulate", "--gpu", "x100", "--trace", "idle"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "unknown simulated GPU" in r.stderr and "Traceback" not in r.stderr


def test_govctl_simulate_stopped_by_sigterm_leaves_no_scratch_directory(tmp_path):
    """A simulation keeps its scratch state in a temporary directory; a SIGTERM (a scheduler's or an
    operator's kill) left it behind in /tmp. The child is this test's own, stopped by its pid."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch)}
    child = subprocess.Popen([sys.executable, "-m", "governor.cli.govctl", "--root", str(tmp_path / "root"),
                              "simulate", "--gpu", "h100-sxm", "--trace", "gen:training:11", "--json"],
                             env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60.0
        while not list(scratch.glob("govd-sim-*")) and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.poll() is None and list(scratch.glob("govd-sim-*")), "no simulation under way to stop"
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=30) == 128 + signal.SIGTERM
        assert not list(scratch.iterdir())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
        if child.stderr:
            child.stderr.close()


def test_plot_draws_a_png(tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is the optional extra govd[plot]")
    out = tmp_path / "run.png"
    simulate("a100-sxm4", "attention", ["balanced"], oracles=False, plot=out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_simulate_says_what_it_runs_as_it_starts_each_run(tmp_path):
    """A newcomer's first `govctl simulate` had sat silent for about 28 s; on a terminal each run is named."""
    import os
    import pty
    import subprocess
    import sys

    from governor.lab.simulate import simulate

    trace = tmp_path / "short.toml"
    trace.write_text('format = 1\nname = "short"\n[[phase]]\nseconds = 5.0\nbusy = 1.0\nclock_bound = 1.0\n'
                     'intensity = 1.0\ndram = 0.3\n')
    said = []
    simulate("h100-sxm", str(trace), ["performance"], progress=said.append)
    assert said[0].startswith("default (5 simulated s)") and said[1] == "performance"
    assert said[2].startswith("oracle_static")
    assert any(s.startswith("oracle: ") for s in said)
    # through a terminal (a pty), govctl prints them on stderr; in a pipe it stays quiet
    main, sub = pty.openpty()
    r = subprocess.run([sys.executable, "-m", "governor.cli.govctl", "simulate", "--gpu", "h100-sxm", "--trace",
                        str(trace), "--policy", "performance"], stdout=subprocess.PIPE, stderr=sub, timeout=120)
    os.close(sub)
    text = b""
    try:
        while True:
            chunk = os.read(main, 4096)
            if not chunk:
                break
            text += chunk
    except OSError:  # the pty reports EIO once the child's side is closed and drained
        pass
    finally:
        os.close(main)
    assert r.returncode == 0 and b"govctl simulate: running default" in text
    quiet = subprocess.run([sys.executable, "-m", "governor.cli.govctl", "simulate", "--gpu", "h100-sxm", "--trace",
                            str(trace), "--policy", "performance", "--json"], capture_output=True, text=True,
                           timeout=120)
    assert quiet.returncode == 0 and "running" not in quiet.stderr
