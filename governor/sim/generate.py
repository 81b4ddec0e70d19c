"""Generated workloads: `gen:FAMILY:SEED` is a trace drawn at random, deterministically per seed,
from a family of workloads, so that evaluation is never confined to the nine published traces and
nothing can be tuned to fixed ones.

Each family draws its phases' parameters from the ranges ../shared/calibration.md supports (see
FAMILY_RANGES below and docs/simulator.md): compute-bound prefill and training steps
(clock_bound 0.8-0.95), memory-bound decode (clock_bound 0.05-0.25, DRAM 0.5-0.9), attention-like
work in between (0.6-0.7), GEMM switching intensity up to 1.2, idle gaps and stalls with a few
percent of kernels. Phases last 0.2 s to minutes and a trace 2 to 10 minutes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..errors import TraceError
from .trace import Phase, Trace

FAMILIES = ("serving", "bursty", "training", "pipeline", "mixed")
MIN_TRACE_S, MAX_TRACE_S = 120.0, 600.0


@dataclass(frozen=True)
class Kind:
    """One kind of phase and the ranges its parameters are drawn from."""

    name: str
    slack: str
    seconds: tuple[float, float]
    busy: tuple[float, float]
    clock_bound: tuple[float, float]
    intensity: tuple[float, float]
    dram: tuple[float, float]
    request_s: tuple[float, float] | None = None  # arrival kinds

    def draw(self, rng: random.Random, seconds: float | None = None, busy: float | None = None) -> Phase:
        u = rng.uniform
        return Phase(name=self.name, slack=self.slack,
                     seconds=round(seconds if seconds is not None else u(*self.seconds), 3),
                     busy=round(min(1.0, max(0.01, busy if busy is not None else u(*self.busy))), 3),
                     clock_bound=round(u(*self.clock_bound), 3), intensity=round(u(*self.intensity), 3),
                     dram=round(u(*self.dram), 3),
                     request_s=round(u(*self.request_s), 4) if self.request_s else 0.1)


PREFILL = Kind("prefill", "arrival", (0.2, 2.0), (0.6, 1.0), (0.8, 0.95), (0.7, 1.0), (0.2, 0.4), (0.05, 0.3))
DECODE = Kind("decode", "arrival", (1.0, 8.0), (0.3, 0.95), (0.05, 0.25), (0.03, 0.15), (0.5, 0.9), (0.01, 0.05))
BURST = Kind("burst", "arrival", (1.0, 10.0), (0.6, 1.0), (0.4, 0.7), (0.4, 0.8), (0.3, 0.6), (0.02, 0.2))
QUIET = Kind("quiet", "arrival", (2.0, 30.0), (0.01, 0.2), (0.4, 0.6), (0.2, 0.5), (0.1, 0.3), (0.02, 0.2))
STEP = Kind("step", "serial", (1.0, 6.0), (0.9, 1.0), (0.8, 0.95), (0.8, 1.2), (0.2, 0.4))
STALL = Kind("input-stall", "serial", (0.3, 5.0), (0.02, 0.3), (0.3, 0.6), (0.2, 0.4), (0.05, 0.25))
CHECKPOINT = Kind("checkpoint", "serial", (5.0, 20.0), (0.02, 0.1), (0.3, 0.6), (0.1, 0.3), (0.05, 0.2))
FORWARD = Kind("forward", "arrival", (0.5, 3.0), (0.6, 0.95), (0.75, 0.9), (0.7, 1.0), (0.25, 0.45), (0.05, 0.3))
BUBBLE = Kind("bubble", "arrival", (0.2, 1.0), (0.02, 0.15), (0.4, 0.6), (0.2, 0.4), (0.05, 0.15), (0.05, 0.3))
FAMILY_RANGES = {"serving": (PREFILL, DECODE), "bursty": (BURST, QUIET), "training": (STEP, STALL, CHECKPOINT),
                 "pipeline": (FORWARD, BUBBLE)}


def _serving(rng: random.Random, length_s: float) -> list[Phase]:
    """Prefills and decodes arriving; the load changes every 30-120 s (a busier or quieter hour)."""
    phases: list[Phase] = []
    t = 0.0
    while t < length_s:
        load_end = t + rng.uniform(30.0, 120.0)
        load = rng.uniform(0.3, 0.95)
        if rng.random() < 0.2:  # now and then a steady stretch: one long decode (a minute or two)
            phases.append(DECODE.draw(rng, seconds=rng.uniform(60.0, 150.0), busy=load))
            t += phases[-1].seconds
        while t < min(load_end, length_s):
            pre = PREFILL.draw(rng)
            dec = DECODE.draw(rng, busy=load * rng.uniform(0.85, 1.05))
            phases += [pre, dec]
            t += pre.seconds + dec.seconds
    return phases


def _bursty(rng: random.Random, length_s: float) -> list[Phase]:
    phases: list[Phase] = []
    t = 0.0
    while t < length_s:
        phases += [BURST.draw(rng), QUIET.draw(rng)]
        t += phases[-2].seconds + phases[-1].seconds
    return phases


def _training(rng: random.Random, length_s: float) -> list[Phase]:
    """Steps with input stalls now and then, and a checkpoint every 60-180 s."""
    phases: list[Phase] = []
    t, next_checkpoint = 0.0, rng.uniform(60.0, 180.0)
    stall_share = rng.uniform(0.0, 0.6)  # how often a step waits for its data
    step = STEP.draw(rng)
    stall = STALL.draw(rng)
    while t < length_s:
        phases.append(Phase(**{**step.__dict__, "seconds": round(step.seconds * rng.uniform(0.9, 1.1), 3)}))
        t += phases[-1].seconds
        if rng.random() < stall_share:
            phases.append(stall)
            t += stall.seconds
        if t >= next_checkpoint:
            phases.append(CHECKPOINT.draw(rng))
            t += phases[-1].seconds
            next_checkpoint = t + rng.uniform(60.0, 180.0)
    return phases


def _pipeline(rng: random.Random, length_s: float) -> list[Phase]:
    forward, bubble = FORWARD.draw(rng), BUBBLE.draw(rng)
    phases = [forward, bubble] * max(1, int(length_s / (forward.seconds + bubble.seconds)) + 1)
    return phases


def _mixed_segments(rng: random.Random, length_s: float) -> list[list[Phase]]:
    """Segments of the other families one after another (a node that runs several kinds of work)."""
    segments: list[list[Phase]] = []
    t = 0.0
    while t < length_s:
        family = rng.choice(("serving", "bursty", "training", "pipeline"))
        segments.append(BUILDERS[family](rng, min(length_s - t, rng.uniform(40.0, 150.0))))
        t += sum(p.seconds for p in segments[-1])
    return segments


def _mixed(rng: random.Random, length_s: float) -> list[Phase]:
    return [p for segment in _mixed_segments(rng, length_s) for p in segment]


BUILDERS = {"serving": _serving, "bursty": _bursty, "training": _training, "pipeline": _pipeline, "mixed": _mixed}


def mixed_segment_starts(seed: int) -> list[int]:
    """The indices of the phases of gen:mixed:SEED where a segment (one family's work) starts, the
    first included: where a scheduler would have started a new job (tools/bench_job_events.py). The
    generator's draws replayed; phases past the trace's drawn length are cut there as generate() does."""
    rng, length_s = _draw_length("mixed", seed)
    starts, n = [], 0
    for segment in _mixed_segments(rng, length_s):
        starts.append(n)
        n += len(segment)
    kept = len(generate("mixed", seed).phases)
    return [i for i in starts if i < kept]


def _draw_length(family: str, seed: int) -> tuple[random.Random, float]:
    """The trace's random stream and its drawn length, its first draw."""
    rng = random.Random(f"govd-gen/{family}/{seed}")
    return rng, rng.uniform(MIN_TRACE_S, MAX_TRACE_S)


def generate(family: str, seed: int) -> Trace:
    """The trace `gen:FAMILY:SEED`: the same family and seed always give the same trace."""
    if family not in BUILDERS:
        raise TraceError(f"gen:{family}:{seed}: unknown family {family!r}; families: {', '.join(FAMILIES)}")
    rng, length_s = _draw_length(family, seed)
    phases = BUILDERS[family](rng, length_s)
    # cut to the drawn length: the last phase ends the trace (at least 0.2 s of it)
    kept, t = [], 0.0
    for p in phases:
        if t >= length_s:
            break
        seconds = max(0.2, min(p.seconds, length_s - t)) if t + p.seconds > length_s else p.seconds
        kept.append(Phase(**{**p.__dict__, "seconds": round(seconds, 3)}))
        t += seconds
    return Trace(name=f"gen:{family}:{seed}", description=f"generated {family} workload, seed {seed} "
                 "(governor/sim/generate.py)", ambient_c=round(rng.uniform(22.0, 35.0), 1), seed=seed, repeat=1,
                 phases=tuple(kept), source=f"gen:{family}:{seed}")


def fresh_seeds(n: int) -> list[int]:
    """n distinct seeds drawn from the system's entropy: the benchmarks draw them on every run, so
    that nothing is tuned to fixed generated traces."""
    return random.SystemRandom().sample(range(1, 1_000_000), n)


def parse_gen(name: str) -> tuple[str, int] | None:
    """("serving", 17) for "gen:serving:17"; None for a name that is not a generated trace."""
    if not name.startswith("gen:"):
        return None
    parts = name.split(":")
    if len(parts) != 3 or not parts[2].isdigit():
        raise TraceError(f"{name}: a generated trace is gen:FAMILY:SEED, e.g. gen:serving:17 (families: "
                         f"{', '.join(FAMILIES)}; SEED a whole number)")
    return parts[1], int(parts[2])


def to_toml(trace: Trace) -> str:
    """A trace as a trace-format.md file (what `govctl simulate --save` writes)."""
    lines = ["format = 1", f'name = "{trace.name}"', f'description = "{trace.description}"',
             f"ambient_c = {trace.ambient_c}", f"seed = {trace.seed}", f"repeat = {trace.repeat}"]
    for p in trace.phases:
        lines += ["", "[[phase]]", f'name = "{p.name}"', f"seconds = {p.seconds}", f"busy = {p.busy}",
                  f"clock_bound = {p.clock_bound}", f"intensity = {p.intensity}", f"dram = {p.dram}",
                  f'slack = "{p.slack}"']
        if p.slack == "arrival":
            lines.append(f"request_s = {p.request_s}")
        if p.knee_mhz is not None:
            lines.append(f"knee_mhz = {p.knee_mhz}")
    return "\n".join(lines) + "\n"
