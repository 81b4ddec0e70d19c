"""Offline evaluation: run a trace to its end on the virtual clock, under default settings and under a
policy, through the same control loop, envelope and actuation code as the daemon.

This is the only place that reads the simulator's ground truth (true energy, end time), and only
after the run: the controller in the loop sees samples, exactly as on a real GPU.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..clock import VirtualClock
from ..config import Config, default_config
from ..controllers.base import NO_CONTEXT, Controller, TickContext
from ..controllers.model_params import BOUNDS
from ..errors import GovdError
from ..model_store import ModelStore
from ..originals import OriginalsFile
from ..policy import Policy, load_policy
from ..settings import Setpoint
from ..sim.device import SimDevice
from ..sim.spec import GpuSpec, load_spec
from ..sim.trace import Trace, load_trace
from ..worker import GpuWorker, make_controller
from .latency import RequestLatencies, latency_slowdowns, within_budget
from .oracle_model import phase_curves, solve
from .oracle_search import OracleSearch, phase_names


class AppInformed(Controller):
    """Evaluation only: hands a controller what only the application knows (Zeus's progress, an
    oracle's phase: the simulator's truth) before each decision. The daemon's loop never does."""

    def __init__(self, inner: Controller, app_info: Callable[[], dict]):
        super().__init__({}, inner.limits)
        self.inner, self.app_info = inner, app_info
        self.counterfactual = inner.counterfactual

    def start(self, sample, current) -> None:
        self.inner.start(sample, current)

    def decide(self, sample, context: TickContext = NO_CONTEXT):
        self.inner.observe_app(self.app_info())
        return self.inner.decide(sample, context)

    def status(self) -> dict:
        return self.inner.status()


DEFAULT_POLICY = Policy(name="default", controller="default", description="firmware default", source="builtin")


@dataclass(frozen=True)
class RunResult:
    policy: str
    energy_j: float
    seconds: float
    max_temp_c: float
    writes: int
    ticks: int
    reversals: int = 0
    ledger_saved_j: float = 0.0  # the ledger's own estimate of the saving, and its interval
    ledger_saved_lo_j: float = 0.0
    ledger_saved_hi_j: float = 0.0
    timeline: tuple = ()  # (t, SM clock MHz, power W, temperature C, true energy J) per tick, if asked for
    latencies: RequestLatencies | None = None  # None: the trace has no arriving work

    def slowdown(self, reference: RunResult) -> float:
        return self.seconds / reference.seconds - 1.0

    def latency_slowdowns(self, reference: RunResult) -> tuple[float, float] | None:
        """(mean, p99) request latency slowdown against the reference; None without arriving work."""
        return latency_slowdowns(self.latencies, reference.latencies)

    def keeps(self, reference: RunResult, budget: float, bound: str = "both") -> bool:
        """Whether this run is within the budget on what the policy bounds: end time, and unless
        bound is "time", the mean request latency as well."""
        return within_budget(self.slowdown(reference), self.latency_slowdowns(reference), budget, bound)

    def to_dict(self, reference: RunResult | None = None) -> dict:
        d = {"policy": self.policy, "energy_j": round(self.energy_j, 3), "seconds": round(self.seconds, 4),
             "max_temp_c": round(self.max_temp_c, 2), "writes": self.writes, "reversals": self.reversals}
        if reference is not None:
            d["saved"] = round(1.0 - self.energy_j / reference.energy_j, 6)
            d["slowdown"] = round(self.slowdown(reference), 6)
            lat = self.latency_slowdowns(reference)
            d["latency_slowdown"] = round(lat[0], 6) if lat else None
            d["latency_p99_slowdown"] = round(lat[1], 6) if lat else None
            d["true_saved_j"] = round(reference.energy_j - self.energy_j, 3)
        d["ledger_saved_j"] = round(self.ledger_saved_j, 3)
        d["ledger_saved_lo_j"] = round(self.ledger_saved_lo_j, 3)
        d["ledger_saved_hi_j"] = round(self.ledger_saved_hi_j, 3)
        return d


def run_trace(spec: GpuSpec, trace: Trace, policy: Policy, config: Config | None = None,
              max_factor: float = 20.0, controller_factory=None, timeline: bool = False,
              on_tick: Callable[[GpuWorker, SimDevice], None] | None = None,
              memory: ModelStore | None = None) -> RunResult:
    """Run one trace to its end under one policy on the virtual clock. on_tick(worker, device) is
    called after every tick, for tools that look inside a run (tools/ledger_audit.py). With a model
    store the run starts from what it remembers and leaves what it learned there, as govd does
    across restarts."""
    config = config or default_config()
    clock = VirtualClock()
    with tempfile.TemporaryDirectory(prefix="govd-sim-") as tmp:
        device = SimDevice(spec, 0, clock, Path(tmp), trace=trace)
        inner = controller_factory(device.limits()) if controller_factory else make_controller(policy, device.limits())
        controller = AppInformed(inner, device.gpu.truth) if hasattr(inner, "observe_app") else inner
        worker = GpuWorker(device, policy, config, OriginalsFile(Path(tmp) / "originals.json"), clock,
                           controller=controller)
        worker.memory = memory
        period = worker.period_s
        limit = trace.default_seconds * max_factor + 600.0
        t = 0.0
        points = []
        firmware_only = policy is DEFAULT_POLICY  # the reference: the GPU as it runs without govd at all
        while not device.gpu.truth()["done"]:
            if firmware_only:
                device.sample()  # only reads: no controller, no envelope, no writes
            else:
                worker.tick()
            if timeline:
                g = device.gpu
                points.append((g.t, g.clock, g.power, g.temp_c, g.energy_true_j))
            if on_tick is not None:
                on_tick(worker, device)
            t += period
            if t > limit:
                raise GovdError(f"{trace.name} under {policy.name} did not finish within {limit:.0f} simulated s")
            clock.sleep_until(t)
        truth = device.gpu.truth()
        worker.remember_models()
        ledger = worker.ledger.since_start
        lo, hi = ledger.bounds()
        worker.hand_back()
    return RunResult(policy=policy.name, energy_j=truth["end_energy_j"], seconds=truth["end_time_s"],
                     max_temp_c=truth["max_temp_c"], writes=worker.stats.writes, ticks=worker.stats.ticks,
                     reversals=worker.stats.reversals, ledger_saved_j=ledger.saved_j, ledger_saved_lo_j=lo,
                     ledger_saved_hi_j=hi, timeline=tuple(points),
                     latencies=RequestLatencies.of(device.gpu.workload.requests))


_FE_CACHE: dict[str, int] = {}


def efficient_clock(spec: GpuSpec) -> int:
    """GEOPM's f_e for a simulated GPU, found as GEOPM's docs say: an offline sweep of fixed clocks
    over a compute-heavy benchmark (here the built-in training step), keeping the clock with the
    least energy for the same work."""
    if spec.key not in _FE_CACHE:
        bench = load_trace("training")
        bench = Trace(name=bench.name, description=bench.description, ambient_c=bench.ambient_c, seed=bench.seed,
                      repeat=10, phases=bench.phases, source=bench.source)
        best = None
        for f in spec.sm_clocks_mhz[::4]:
            policy = Policy(name="sweep", controller="static", params={"sm_clock_max_mhz": f}, source="sweep")
            energy = run_trace(spec, bench, policy).energy_j
            if best is None or energy < best[1]:
                best = (f, energy)
        _FE_CACHE[spec.key] = best[0]
    return _FE_CACHE[spec.key]


def peer_policies(spec: GpuSpec) -> list[Policy]:
    """The peers govd is compared with (docstrings of each controller cite their sources)."""
    return [
        Policy(name="ondemand", controller="ondemand", source="peer"),
        Policy(name="zeus-pl", controller="zeus-pl", source="peer"),
        Policy(name="geopm-activity", controller="geopm-activity", params={"fe_mhz": efficient_clock(spec)},
               source="peer"),
    ]


ORACLES = ("oracle", "oracle_static", "oracle_power")


MODEL_PLAN_MAX_PHASES = 12  # the exact Pareto merge grows with the product of phases' options


def model_clock_plan(spec: GpuSpec, trace: Trace, budget: float) -> tuple[Setpoint, ...] | None:
    """The steady-state model's clock per phase name (oracle_model.solve), a starting point for the
    search; None for a trace of more distinct phases than the exact solver handles in memory (a
    generated trace has dozens: its front reached gigabytes). Where phases of one name differ, the
    name gets the highest of their clocks."""

    if len(set(trace.phases)) > MODEL_PLAN_MAX_PHASES:
        return None
    curves = phase_curves(spec, trace)
    chosen: dict[str, int | None] = {}
    for c, i in zip(curves, solve(curves, budget), strict=True):
        clock = None if i == len(c.clocks) - 1 else int(c.settings[i])
        prev = chosen.get(c.phase.name, 0)
        chosen[c.phase.name] = None if clock is None or prev is None else max(prev, clock)
    return tuple(Setpoint() if chosen[n] is None else Setpoint(sm_clock_min_mhz=spec.f_min,
                                                                 sm_clock_max_mhz=chosen[n])
                 for n in phase_names(trace))


def find_oracles(search: OracleSearch) -> dict:
    """The search's oracles, started from the steady-state model's plan where there is one."""
    plan = model_clock_plan(search.spec, search.trace, search.budget)
    return search.oracles(model_plans=[plan] if plan is not None else [])


def oracle_runs(spec: GpuSpec, trace: Trace, reference: RunResult, budget: float, bound: str = "both",
                progress: Callable[[str], None] | None = None) -> dict[str, RunResult]:
    """The oracles, found by search on the simulator (lab/oracle_search.py), as runs."""

    found = find_oracles(OracleSearch(spec, trace, budget, bound, progress=progress))
    return {kind: RunResult(policy=kind, energy_j=r.energy_j, seconds=r.seconds, max_temp_c=r.max_temp_c,
                            writes=0, ticks=0, latencies=r.latencies)
            for kind, r in found.items()}


def plot_runs(path: Path, title: str, runs: list[RunResult]) -> None:
    """SM clock, power, temperature and cumulative energy over time, one line per run (matplotlib,
    the optional extra govd[plot])."""
    try:
        import matplotlib  # noqa: PLC0415

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        raise GovdError("--plot needs matplotlib: pip install 'govd[plot]'") from None
    fig, axes = plt.subplots(4, 1, figsize=(10, 9), sharex=True)
    labels = ("SM clock (MHz)", "power (W)", "temperature (C)", "energy (kJ)")
    for run in runs:
        if not run.timeline:
            continue
        t, clock, power, temp, energy = zip(*run.timeline, strict=True)
        for ax, series in zip(axes, (clock, power, temp, [e / 1000 for e in energy]), strict=True):
            ax.plot(t, series, label=run.policy, linewidth=1.0)
    for ax, label in zip(axes, labels, strict=True):
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right")
    axes[0].set_title(title)
    axes[-1].set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def policy_bound(policy: Policy) -> str:
    """What a policy's budget bounds: "both" (end time and request latency) unless it says "time"."""
    return policy.params.get("bound", "both")


def simulate(gpu: str, trace_name: str, policy_names: list[str], budget: float | None = None,
             config_dir: Path | None = None, peers: bool = False, oracles: bool = True,
             plot: Path | None = None, progress: Callable[[str], None] | None = None,
             bound: str | None = None) -> dict:
    """`govctl simulate`: the default run, then one run per policy, with savings against default.
    The oracles use the budget and bound given, else those of the first policy with a budget.
    progress(what) is called as each run starts (govctl prints it on a terminal)."""
    say = progress or (lambda what: None)
    if bound is not None and bound not in BOUNDS:
        raise GovdError(f"bound {bound!r}: allowed {', '.join(BOUNDS)}")
    spec = load_spec(gpu)
    trace = load_trace(trace_name)
    policies = [load_policy(p, config_dir) for p in policy_names]
    if peers:
        policies += peer_policies(spec)
    say(f"default ({trace.default_seconds:.0f} simulated s)")
    reference = run_trace(spec, trace, DEFAULT_POLICY, timeline=plot is not None)
    runs = [reference.to_dict(reference)]
    results = [reference]
    for policy in policies:
        say(policy.name)
        results.append(run_trace(spec, trace, policy, timeline=plot is not None))
        runs.append(results[-1].to_dict(reference))
        own = policy.params.get("slowdown_budget")
        if own is not None:
            runs[-1]["budget"] = own
            runs[-1]["bound"] = policy_bound(policy)
            runs[-1]["within_budget"] = results[-1].keeps(reference, own, policy_bound(policy))
    if plot is not None:
        plot_runs(plot, f"{trace.name} on {spec.key}", results[:2])
    budgeted = [p for p in policies if p.params.get("slowdown_budget") is not None]
    if budget is None and budgeted:
        budget = budgeted[0].params["slowdown_budget"]
    if bound is None:
        bound = policy_bound(budgeted[0]) if budgeted else "both"
    out = {"gpu": spec.key, "trace": trace.name, "trace_source": trace.source, "budget": budget, "bound": bound,
           "runs": runs}
    if oracles:
        for kind, result in oracle_runs(spec, trace, reference, budget or 0.0, bound, progress=say).items():
            r = result.to_dict(reference)
            out[kind] = {k: r[k] for k in ("energy_j", "seconds", "saved", "slowdown", "latency_slowdown",
                                           "latency_p99_slowdown")}
        best = out["oracle"]["saved"]
        for run in runs:
            run["capture"] = round(run["saved"] / best, 4) if best > 1e-9 else None
    return out
