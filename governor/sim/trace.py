"""Workload traces, format version 1 (../shared/trace-format.md), parsed and validated.

A trace is ground truth about a workload: it is given to the simulated GPU and the evaluation
harness, never to a controller.
"""

from __future__ import annotations

import difflib
import random
import tomllib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from ..errors import TraceError
from ..tomlfile import TomlFileError, read_toml

_TOP_KEYS = {"format", "name", "description", "ambient_c", "seed", "repeat", "phase"}
_PHASE_KEYS = {"name", "seconds", "busy", "clock_bound", "intensity", "dram", "slack", "request_s", "knee_mhz"}
DEFAULT_REQUEST_S = 0.1  # kernel time of one request at default settings (trace-format.md)


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    busy: float
    clock_bound: float
    intensity: float
    dram: float
    slack: str  # "serial" or "arrival"
    request_s: float = DEFAULT_REQUEST_S  # arrival phases: kernel time of one request at default settings
    knee_mhz: float | None = None  # optional, beyond trace-format.md: the roofline's knee (kernel_stretch)

    def kernel_stretch(self, f: float, f_def: float) -> float:
        """Kernel time of a unit of work at SM clock f over its time at the default clock f_def.

        trace-format.md: clock_bound * f_def/f + 1 - clock_bound, a straight line in 1/f. A phase with
        a knee is a roofline as well: its kernels also take at least knee/f of their time at a clock
        that no longer feeds the memory (a copy on a real H200 ran as fast at 1440 MHz as at 1980,
        then 36% slower at 1155: docs/hardware.md); normalised so that the stretch at f_def is 1."""
        line = self.clock_bound * f_def / f + 1.0 - self.clock_bound
        if self.knee_mhz is None:
            return line
        return max(line, self.knee_mhz / f) / max(1.0, self.knee_mhz / f_def)


@dataclass(frozen=True)
class Trace:
    name: str
    description: str
    ambient_c: float
    seed: int
    repeat: int
    phases: tuple[Phase, ...]
    source: str

    def played(self) -> list[Phase]:
        """The phase list as played: phases repeated `repeat` times."""
        return list(self.phases) * self.repeat

    @property
    def default_seconds(self) -> float:
        """Nominal length under default settings (before backlog effects)."""
        return sum(p.seconds for p in self.phases) * self.repeat


def _unknown(key: str, allowed: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(allowed), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key{hint}; allowed: {', '.join(sorted(allowed))}"


def _number(src: str, where: str, value, lo: float, hi: float, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TraceError(f"{src}: {where} must be a number, got {value!r}")
    v = float(value)
    ok_lo = v > lo if lo_open else v >= lo
    if not ok_lo or v > hi:
        bound = f"{'(' if lo_open else '['}{lo}, {hi}]"
        raise TraceError(f"{src}: {where} = {value} is out of range; allowed {bound}")
    return v


def trace_from_dict(data: dict, source: str) -> Trace:
    for key in data:
        if key not in _TOP_KEYS:
            raise TraceError(f"{source}: {key}: {_unknown(key, _TOP_KEYS)}")
    if data.get("format") != 1:
        raise TraceError(f"{source}: format must be 1 (trace-format version 1), got {data.get('format')!r}")
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise TraceError(f"{source}: name is missing or not a string")
    ambient = _number(source, "ambient_c", data.get("ambient_c", 30.0), -10.0, 60.0)
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TraceError(f"{source}: seed must be an integer, got {seed!r}")
    repeat = data.get("repeat", 1)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or not 1 <= repeat <= 1_000_000:
        raise TraceError(f"{source}: repeat must be an integer in [1, 1000000], got {repeat!r}")
    raw_phases = data.get("phase")
    if not isinstance(raw_phases, list) or not raw_phases:
        raise TraceError(f"{source}: needs at least one [[phase]] table")
    phases = []
    for i, ph in enumerate(raw_phases):
        where = f"phase[{i}]"
        if not isinstance(ph, dict):
            raise TraceError(f"{source}: {where} must be a table")
        for key in ph:
            if key not in _PHASE_KEYS:
                raise TraceError(f"{source}: {where}.{key}: {_unknown(key, _PHASE_KEYS)}")
        for key in ("seconds", "busy", "clock_bound", "intensity", "dram"):
            if key not in ph:
                raise TraceError(f"{source}: {where}.{key} is missing (required: seconds, busy, "
                                 "clock_bound, intensity, dram)")
        slack = ph.get("slack", "serial")
        if slack not in ("serial", "arrival"):
            raise TraceError(f"{source}: {where}.slack = {slack!r}; allowed: \"serial\", \"arrival\"")
        if "request_s" in ph and slack != "arrival":
            raise TraceError(f"{source}: {where}.request_s: only arrival phases have requests (slack = \"arrival\")")
        phases.append(Phase(
            name=str(ph.get("name", f"phase{i}")),
            seconds=_number(source, f"{where}.seconds", ph["seconds"], 0.0, 1e7, lo_open=True),
            busy=_number(source, f"{where}.busy", ph["busy"], 0.0, 1.0, lo_open=True),
            clock_bound=_number(source, f"{where}.clock_bound", ph["clock_bound"], 0.0, 1.0),
            intensity=_number(source, f"{where}.intensity", ph["intensity"], 0.0, 1.5),
            dram=_number(source, f"{where}.dram", ph["dram"], 0.0, 1.0),
            slack=slack,
            request_s=_number(source, f"{where}.request_s", ph.get("request_s", DEFAULT_REQUEST_S), 0.0, 3600.0,
                              lo_open=True),
            knee_mhz=_number(source, f"{where}.knee_mhz", ph["knee_mhz"], 0.0, 10000.0, lo_open=True)
            if "knee_mhz" in ph else None,
        ))
    return Trace(name=name, description=str(data.get("description", "")), ambient_c=ambient, seed=seed,
                 repeat=repeat, phases=tuple(phases), source=source)


def variant_of(trace: Trace, seed: int) -> Trace:
    """A variant of a trace (seed 0: the trace itself): the same kinds of phases with other lengths
    (x0.8..1.25), busy share, DRAM traffic, switching intensity and clock-boundness (x0.9..1.1) and
    room temperature (-5..+5 C), for benchmarks that should not be tuned to the published suite."""
    if seed == 0:
        return trace
    rng = random.Random(f"{trace.name}/{seed}")

    def scale(x: float) -> float:
        return min(1.0, max(0.01, x * rng.uniform(0.9, 1.1)))

    phases = tuple(replace(p, seconds=p.seconds * rng.uniform(0.8, 1.25), busy=scale(p.busy), dram=scale(p.dram),
                           intensity=scale(p.intensity), clock_bound=scale(p.clock_bound))
                   for p in trace.phases)
    ambient = trace.ambient_c + rng.uniform(-5.0, 5.0)
    return replace(trace, name=f"{trace.name}~{seed}", phases=phases, ambient_c=ambient)


# built-in traces that are not part of the benchmark suite: the README's demo, and single phases kept
# to check the simulator's calibration against published or measured figures (calibration.md,
# docs/hardware.md), on which `balanced` by design changes nothing (saturated work)
NOT_SUITE = ("demo", "gemm", "attention", "memory-copy")


def builtin_traces() -> list[str]:
    folder = resources.files("governor.sim").joinpath("traces")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def suite_traces() -> list[str]:
    """The benchmark suite: the built-in traces but NOT_SUITE."""
    return [t for t in builtin_traces() if t not in NOT_SUITE]


def load_trace(name_or_path: str) -> Trace:
    """A trace by file path, by the name of one in the built-in suite, or generated: gen:FAMILY:SEED."""
    from .generate import generate, parse_gen  # noqa: PLC0415 - generate imports this module

    gen = parse_gen(name_or_path)
    if gen is not None:
        return generate(*gen)
    path = Path(name_or_path)
    if path.exists():
        try:
            data = read_toml(path)
        except TomlFileError as exc:
            raise TraceError(f"{path}: {exc}") from None
        return trace_from_dict(data, str(path))
    names = builtin_traces()
    if name_or_path in names:
        res = resources.files("governor.sim").joinpath("traces", f"{name_or_path}.toml")
        with res.open("rb") as fh:
            return trace_from_dict(tomllib.load(fh), f"builtin:{name_or_path}")
    raise TraceError(f"{name_or_path}: no such trace file, and not a built-in trace "
                     f"(built-in: {', '.join(names)}; or generated: gen:FAMILY:SEED)")
