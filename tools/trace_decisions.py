#!/usr/bin/env python3
"""Replay a trace on a simulated GPU and print each change of the controller's state: a debugging aid
for controllers (what it decided, when, and why), with the true phase from the simulator beside it.

    python tools/trace_decisions.py h100-sxm llm-serving balanced --until 60
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from governor.clock import VirtualClock  # noqa: E402
from governor.config import default_config  # noqa: E402
from governor.originals import OriginalsFile  # noqa: E402
from governor.policy import load_policy  # noqa: E402
from governor.sim.device import SimDevice  # noqa: E402
from governor.sim.spec import load_spec  # noqa: E402
from governor.sim.trace import load_trace  # noqa: E402
from governor.worker import GpuWorker  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("gpu")
    p.add_argument("trace")
    p.add_argument("policy")
    p.add_argument("--until", type=float, default=60.0, help="simulated seconds to replay")
    args = p.parse_args()
    clock = VirtualClock()
    with tempfile.TemporaryDirectory(prefix="govd-trace-") as folder:  # the simulated driver's files, removed after
        replay(args, clock, Path(folder))
    return 0


def replay(args, clock: VirtualClock, tmp: Path) -> None:
    dev = SimDevice(load_spec(args.gpu), 0, clock, tmp, trace=load_trace(args.trace))
    w = GpuWorker(dev, load_policy(args.policy), default_config(), OriginalsFile(tmp / "originals.json"), clock)
    t, last = 0.0, None
    while t < args.until and not dev.gpu.truth()["done"]:
        w.tick()
        st = w.controller.status()
        key = (st.get("state"), st.get("held_clock_mhz"), st.get("last_change"), w.target)
        if key != last:
            s = w.last_sample
            ceiling = w.target.sm_clock_max_mhz if w.target else None
            print(f"{t:7.2f}s true={dev.gpu.truth()['phase']!s:>12} state={st.get('state')!s:>9} "
                  f"ceiling={ceiling} why={st.get('last_change')} | f={s.sm_clock_mhz:.0f} util={s.gpu_util_pct:.0f}% "
                  f"mem={s.mem_util_pct:.0f}% P={s.power_w:.0f}W composite={st.get('composite')} "
                  f"spent={st.get('estimated_slowdown_spent')}")
            last = key
        t += w.period_s
        clock.sleep_until(t)
    w.hand_back()


if __name__ == "__main__":
    sys.exit(main())
