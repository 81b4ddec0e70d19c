#!/usr/bin/env python3
"""Where a model-controller run spends its time: the share of the run in each controller state
(measuring default settings, probing, holding; one phase or a mix), the mean clock there, and the
budget the controller reads as spent when the run ends.

A debugging aid for the savings gap to the best fixed clock (docs/benchmarks.md, issue 19's ninth
part): a reference window runs default settings and saves nothing, a probe spends budget, and a hold
at default settings after the budget is read as spent saves nothing either. It reads the simulator's
clock and energy (ground truth), which govd itself never does.

    python tools/state_shares.py h100-sxm batch gen:training:36866,gen:training:643497
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.lab.simulate import run_trace  # noqa: E402
from governor.policy import load_policy  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import load_trace  # noqa: E402


@dataclass
class Shares:
    """Seconds, joules and clock-seconds per state label, from ticks in time order."""

    seconds: dict = field(default_factory=lambda: defaultdict(float))
    joules: dict = field(default_factory=lambda: defaultdict(float))
    clock_s: dict = field(default_factory=lambda: defaultdict(float))
    _last: tuple[float, float] | None = None

    def add(self, label: str, time_s: float, energy_j: float, clock_mhz: float) -> None:
        """One tick: the interval since the previous tick is counted to this tick's state."""
        if self._last is not None:
            dt, de = time_s - self._last[0], energy_j - self._last[1]
            self.seconds[label] += dt
            self.joules[label] += de
            self.clock_s[label] += clock_mhz * dt
        self._last = (time_s, energy_j)

    def rows(self) -> list[tuple[str, float, float, float]]:
        """(state, share of time, share of energy, mean clock MHz), by state name."""
        total_s = sum(self.seconds.values()) or 1.0
        total_j = sum(self.joules.values()) or 1.0
        return [(k, self.seconds[k] / total_s, self.joules[k] / total_j,
                 self.clock_s[k] / self.seconds[k] if self.seconds[k] > 0 else 0.0) for k in sorted(self.seconds)]


def state_label(worker) -> str:
    """The controller's state, `/mix` while it holds the work as one mix, and for a hold whether
    its settings are default's."""
    c = worker.controller
    label = str(getattr(c, "state", "other"))
    if getattr(c, "composite", False):
        label += "/mix"
    if label.startswith("hold"):
        at_default = worker.applied is None or worker.applied == worker.envelope.baseline
        label += " at default" if at_default else " below default"
    return label


def measure(gpu: str, trace: str, policy: str) -> tuple[Shares, float, float]:
    """The shares of one run, and the end-time share of budget the controller reads as spent at its
    end (and its budget), both as fractions."""
    shares = Shares()
    spent = {"value": 0.0}

    def on_tick(worker, device) -> None:
        shares.add(state_label(worker), device.gpu.t, device.gpu.truth()["energy_j"], device.gpu.clock)
        c = worker.controller
        if getattr(c, "elapsed", 0.0) > 0:
            spent["value"] = c._end_time_spent()

    pol = load_policy(policy)
    run_trace(load_spec(gpu), load_trace(trace), pol, on_tick=on_tick)
    return shares, spent["value"], float(pol.params.get("slowdown_budget", 0.0))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gpu")
    p.add_argument("policy")
    p.add_argument("traces", help="comma-separated")
    args = p.parse_args()
    for trace in args.traces.split(","):
        shares, spent, budget = measure(args.gpu, trace, args.policy)
        print(f"{args.gpu} {trace} {args.policy}: end-time spent as read {100 * spent:.2f}% "
              f"(budget {100 * budget:.0f}%)")
        for state, time_share, energy_share, clock in shares.rows():
            print(f"  {state:<24} {100 * time_share:5.1f}% of time  {100 * energy_share:5.1f}% of energy  "
                  f"{clock:6.0f} MHz")
    return 0


if __name__ == "__main__":
    sys.exit(main())
