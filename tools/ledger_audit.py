#!/usr/bin/env python3
"""Audit the energy ledger phase by phase: where does its counterfactual differ from the default run?

Runs a trace twice on the virtual clock: under the firmware default (the truth the ledger estimates)
and under a policy (recording, at every tick, the ledger's running counterfactual and measured
energy). Both runs play the same phases in the same order, so energies are compared per phase
occurrence and summed per phase name. A debugging aid for the ledger; it reads the simulator's
ground truth, which govd itself never does.

    python tools/ledger_audit.py h100-sxm llm-serving balanced
    python tools/ledger_audit.py a100-sxm4 training balanced --variant 1   # bench_ledger --vary's seed 1 trace
                                                    # (there with other sensor noise: <0.1% of its estimate)
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.lab.simulate import DEFAULT_POLICY, run_trace  # noqa: E402
from governor.policy import load_policy  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import Trace, load_trace, variant_of  # noqa: E402


def run(gpu: str, trace: Trace, policy: str | None) -> dict:
    """Energy per phase occurrence: {(k, name): [true J, ledger counterfactual J, ledger measured J, s]}."""
    out: dict = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    seen = {"k": 0, "name": None, "prev": (0.0, 0.0, 0.0, 0.0)}

    def per_tick(worker, device) -> None:
        truth = device.gpu.truth()
        phase = truth["phase"] or "tail"
        if phase != seen["name"]:
            seen["k"], seen["name"] = seen["k"] + 1, phase
        led = worker.ledger.since_start if policy is not None else None
        now = (truth["energy_j"], led.counterfactual_j if led else 0.0, led.measured_j if led else 0.0,
               truth["time_s"])
        cell = out[(seen["k"], phase)]
        for i in range(4):
            cell[i] += now[i] - seen["prev"][i]
        seen["prev"] = now

    run_trace(load_spec(gpu), trace, load_policy(policy) if policy else DEFAULT_POLICY, on_tick=per_tick)
    return dict(out)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gpu")
    p.add_argument("trace")
    p.add_argument("policy")
    p.add_argument("--occurrences", action="store_true", help="print every phase occurrence, not only sums")
    p.add_argument("--variant", type=int, default=0, help="a variant of the trace (governor.sim.trace.variant_of)")
    args = p.parse_args()
    trace = load_trace(args.trace)
    if args.variant:
        trace = variant_of(trace, args.variant)
    ref = run(args.gpu, trace, None)
    pol = run(args.gpu, trace, args.policy)
    sums: dict = defaultdict(lambda: [0.0] * 5)
    print(f"{'occurrence':>24} {'default J':>10} {'ledger cf J':>11} {'cf error':>9} {'policy J':>9} {'saved J':>8}")
    for key in sorted(set(ref) | set(pol)):
        d = ref.get(key, [0.0] * 4)[0]
        true_p, cf, _meas, _s = pol.get(key, [0.0] * 4)
        s = sums[key[1]]
        s[0] += d
        s[1] += cf
        s[2] += true_p
        if args.occurrences:
            print(f"{key[0]:>5} {key[1]:>18} {d:10.0f} {cf:11.0f} {cf - d:+9.0f} {true_p:9.0f} {d - true_p:+8.0f}")
    print("per phase:")
    tot = [0.0] * 3
    for name, (d, cf, true_p, _, _) in sorted(sums.items()):
        tot = [tot[0] + d, tot[1] + cf, tot[2] + true_p]
        print(f"{name:>24} {d:10.0f} {cf:11.0f} {cf - d:+9.0f} {true_p:9.0f} {d - true_p:+8.0f}")
    print(f"{'total':>24} {tot[0]:10.0f} {tot[1]:11.0f} {tot[1] - tot[0]:+9.0f} {tot[2]:9.0f} {tot[0] - tot[2]:+8.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
