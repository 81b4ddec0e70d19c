"""One GPU's control loop: sample -> decide -> envelope -> apply -> read back, once per period.

Each GPU has its own loop (a thread in the daemon), so a slow or failing GPU never stalls the
others. The loop owns the GPU's state machine:
  managed     govd writes setpoints
  dry-run     govd decides and logs, never writes
  watching    configured with manage = false: samples only
  paused      handed back to its originals by `govctl pause`
  backed-off  another program changed the GPU; govd leaves it alone for external_backoff_s
  degraded    error budget spent or GPU lost; handed back to its originals, no more writes
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from .actuation import GiveBack, describe_settings
from .actuator import GpuActuator, SaveFailed
from .clock import Clock
from .config import Config
from .controllers import Controller, controller_class
from .controllers.base import TickContext
from .device import UNKNOWN_LOCK, Device
from .envelope import Ceiling, Envelope
from .errors import ConfigError, DeviceError, GpuLostError
from .ledger import CounterPower, GpuLedger, ThermalLimit, Totals
from .loop_stats import LoopStats
from .model_store import ModelStore
from .originals import OriginalsFile
from .policy import Policy
from .settings import Limits, Setpoint
from .telemetry import THERMAL_REASONS, Sample
from .worker_status import gpu_status

log = logging.getLogger("govd")


MEMORY_EXCHANGE_S = 10.0  # how often a GPU loop trades learned models with the node's store

def _no_ratio(sample: Sample, power_w: float) -> None:
    """A controller without a counterfactual cannot say what default would do at the thermal limit."""
    return None


def make_controller(policy: Policy, limits: Limits) -> Controller:
    try:
        return controller_class(policy.controller, policy.source)({**policy.params, **policy.expert}, limits)
    except (ValueError, TypeError) as exc:
        raise ConfigError(policy.source, "params", str(exc)) from None


class GpuWorker:
    def __init__(self, device: Device, policy: Policy, config: Config, originals: OriginalsFile, clock: Clock,
                 dry_run: bool = False, controller: Controller | None = None):
        self.device = device
        self.info = device.info
        self.clock = clock
        self.originals = originals
        self.limits = device.limits()
        self.config = config
        self.dry_run = dry_run
        self.manage = bool(config.gpu_value(self.info.index, self.info.uuid, "manage", True))
        self.period_s = config.get("daemon", "period_ms") / 1000.0
        self.policy = policy
        self.controller = controller if controller is not None else self._make_controller(policy)
        self.envelope = Envelope(self.limits, config.section("envelope"), dict(policy.bounds))
        self.state = "dry-run" if dry_run else ("managed" if self.manage else "watching")
        self.reason: str | None = None
        self.actuator = GpuActuator(device, self.limits, originals)
        self.job_id: str | None = None  # the scheduler's job running on this GPU (jobs.py)
        self.target: Setpoint | None = None  # the envelope's latest decision
        self.last_sample: Sample | None = None
        self.started = False
        self.backoff_until: float | None = None
        self.stats = LoopStats()
        # journald gets GOVD_GPU and GOVD_POLICY with every line this GPU's loop logs
        self.log = logging.LoggerAdapter(log, {"GOVD_GPU": self.info.index, "GOVD_POLICY": policy.name})
        self.ledger = GpuLedger(config.section("ledger"), seed=self.info.index)
        self.counter_power = CounterPower()
        self.last_write_t = float("-inf")
        # readings settle after a write: the clock in ~25 ms, utilization in 1/6 s, a 1 s power average in 1 s
        self.settle_s = 0.5 if self.limits.capabilities.has_instant_power else 1.2
        self.decisions: deque = deque(maxlen=200)
        self._lock = threading.RLock()
        self.memory: ModelStore | None = None  # the node's model store (set by the daemon; None: none)
        self._next_exchange = 0.0  # when this loop next trades learned models with the store

    @property
    def applied(self) -> Setpoint | None:
        """What govd last wrote and read back (None: nothing yet, or unknown after a failed write)."""
        return self.actuator.applied

    @property
    def wrote(self) -> bool:
        """govd has written to this GPU since its originals were saved."""
        return self.actuator.wrote

    def _make_controller(self, policy: Policy) -> Controller:
        controller = make_controller(policy, self.limits)
        if controller.evaluation_only:
            raise ConfigError(policy.source, "controller",
                              f"{policy.controller} needs what only the application knows (as Zeus reads progress "
                              "from the training loop); it runs only in `govctl simulate`")
        return controller

    # ----- one tick ----------------------------------------------------------------------------
    def tick(self) -> None:
        started = time.perf_counter()
        self.stats.tick_started_wall = time.monotonic()
        try:
            with self._lock:
                self._tick()
        finally:
            self.stats.record_tick(time.perf_counter() - started)
            self.stats.tick_started_wall = None
            self.stats.last_tick_end_wall = time.monotonic()

    def _tick(self) -> None:
        now = self.clock.now()
        try:
            sample = self.device.sample()
        except GpuLostError as exc:
            self._degrade(str(exc), restore=True)
            return
        except DeviceError as exc:
            self._error(now, f"sample failed: {exc}")
            return
        sample = self.counter_power.annotate(sample)
        self.last_sample = sample
        at_default = self.dry_run or self.applied is None or self.applied == self.envelope.baseline
        at_limit = self.envelope.guard_engaged or bool(sample.clock_event_reasons & THERMAL_REASONS)
        counterfactual = self.controller.counterfactual
        thermal = ThermalLimit(default_temp_c=self.throttled_default_c(), at_limit=at_limit,
                               work_ratio=counterfactual.throttled_work_ratio if counterfactual else _no_ratio)
        reference = None if at_default or counterfactual is None else counterfactual.reference(sample)
        counter_reset = self.ledger.observe(sample, at_default, settled=now - self.last_write_t >= self.settle_s,
                                            reference=reference, thermal=thermal)
        if self.state in ("degraded", "paused", "watching"):
            return
        if self.state == "backed-off":
            if self.backoff_until is not None and now < self.backoff_until:
                return
            self.log.info("GPU %d: back-off over; taking the GPU again from its current settings", self.info.index)
            self.state, self.reason, self.actuator.applied, self.started = "managed", None, None, False
        if not self.started:
            self._take_ceiling()
            self.controller.start(sample, self._current_setpoint())
            self.started = True
            self._recall()
        elif now >= self._next_exchange:
            self._exchange_models(now)
        if not self.dry_run and self._changed_behind_our_back(sample, counter_reset):
            return
        if self.state == "managed" and counterfactual is None and self.ledger.wants_default(now):
            proposal = Setpoint()  # a control window for the ledger: the controller is not consulted
        else:
            # the thermal default only when the GPU itself is at the limit: that default would be
            # throttled while govd keeps it cooler rests on the cooling extrapolated to temperatures
            # not seen, which may say "throttled" of a default that is not (the budget overspent)
            context = TickContext(thermal_default_power_w=self._thermal_default_power_w() if at_limit else None)
            proposal = self.controller.decide(sample, context)
        decision = self.envelope.check(sample, proposal, self.applied if not self.dry_run else self.target, now)
        self.target = decision.setpoint
        if decision.notes and decision.safety:
            self.log.debug("GPU %d: %s", self.info.index, "; ".join(decision.notes))
        if "rate limited" in decision.notes:
            self.stats.interventions["rate"] += 1
        if not decision.write:
            return
        if decision.safety:
            self.stats.interventions["thermal"] += 1
        self.decisions.append({"t": round(now, 3), "setpoint": decision.setpoint.to_dict(),
                               "notes": list(decision.notes), "dry_run": self.dry_run})
        if self.dry_run:
            self.log.info("GPU %d: dry run, would apply %s", self.info.index, decision.setpoint.to_dict())
            self.envelope.record_write(now)
            return
        self._write(decision.setpoint, now)

    def _take_ceiling(self) -> None:
        """The operator's limits as govd takes the GPU (at start, after a pause or a back-off) are
        ceilings it keeps: the originals saved at start-up, else what the GPU holds now."""
        found = self.originals.saved(self.info.uuid)
        if found is None:
            try:
                found = self.device.read_settings()
            except DeviceError as exc:
                self.log.warning("GPU %d: cannot read its settings to keep the operator's limits (%s); keeping "
                                 "the ceiling it had", self.info.index, exc)
                return
        ceiling = Ceiling.of(found, self.limits)
        if ceiling != self.envelope.ceiling and ceiling is not None:
            kept = self.config.get("envelope", "respect_existing_limits")
            self.log.info("GPU %d: found %s set before govd; %s", self.info.index, ceiling.describe(),
                          "kept as a ceiling" if kept else
                          "not kept (envelope.respect_existing_limits = false)")
        self.envelope.ceiling = ceiling

    def _current_setpoint(self) -> Setpoint:
        """What the GPU holds now, as a setpoint (for a bumpless start)."""
        try:
            lock = self.device.get_locked_clocks()
            watts = self.device.get_power_limit_w()
        except DeviceError:
            return Setpoint()
        lock = None if lock == UNKNOWN_LOCK else lock
        return Setpoint(sm_clock_min_mhz=lock[0] if lock else None, sm_clock_max_mhz=lock[1] if lock else None,
                        power_limit_w=None if abs(watts - self.limits.power_limit_default_w) < 0.5 else watts)

    def _write(self, setpoint: Setpoint, now: float) -> None:
        try:
            problem = self.actuator.write(setpoint, readback=self.config.get("envelope", "readback"))
        except SaveFailed as exc:  # never write to a GPU whose originals could not be saved
            self._error(now, f"cannot save originals, not writing: {exc}")
            return
        self.envelope.record_write(now)
        self.last_write_t = now
        self.stats.writes += 1
        if problem is not None:
            if problem.startswith("read-back"):
                self.stats.interventions["readback"] += 1
            self._error(now, problem)
            return
        self.stats.count_direction(self._level(setpoint))

    def _level(self, sp: Setpoint) -> float:
        """One number for how much performance a setpoint allows (for the flapping count)."""
        clock = sp.sm_clock_max_mhz if sp.sm_clock_max_mhz is not None else self.limits.sm_clock_max_mhz
        watts = sp.power_limit_w if sp.power_limit_w is not None else self.limits.power_limit_default_w
        return clock / self.limits.sm_clock_max_mhz + watts / self.limits.power_limit_max_w

    def _changed_behind_our_back(self, sample: Sample, counter_reset: bool) -> bool:
        """Detect another writer (nvidia-smi, another daemon) or a driver reload.

        A driver reload resets the energy counter and puts the defaults back: govd re-applies its
        setpoint. Anything else that differs from what govd wrote (or, before govd's first write,
        from the originals it saved) is another program: govd backs off rather than fight it, gives
        back what it set that the other program left, and leaves that program's settings in place."""
        other = self.actuator.other_write(sample)
        if other is None:
            return False
        if counter_reset:
            if not self.actuator.wrote:
                self.log.warning("GPU %d: driver reload detected (energy counter reset, settings at defaults) "
                                 "before govd wrote to it; its originals are saved again at the first write",
                                 self.info.index)
                self.actuator.forget_unwritten()
                return False
            self.log.warning("GPU %d: driver reload detected (energy counter reset, settings at defaults); "
                             "re-applying", self.info.index)
            self.actuator.applied = None
            return False
        what = other.describe()
        backoff = self.config.get("envelope", "external_backoff_s")
        self.log.warning("GPU %d: another program changed it (%s); backing off for %.0f s and leaving its settings",
                         self.info.index, what, backoff)
        self.state, self.reason = "backed-off", f"changed by another program: {what}"
        self.stats.interventions["other_writer"] += 1
        self.backoff_until = self.clock.now() + backoff
        report = self.actuator.give_back_unchanged(other)
        if report is not None and report.ok:
            self.log.info("GPU %d: gave back govd's %s (%s), left the other program's settings", self.info.index,
                          " and ".join(k.knob for k in report.knobs),
                          describe_settings(report.now) if report.now is not None else "unreadable")
        elif report is not None:
            self.log.error("GPU %d: could not give back govd's settings after another program wrote to it: %s; "
                           "originals.json keeps them for `govd --restore`", self.info.index, report.problem())
        return True

    def _error(self, now: float, message: str) -> None:
        self.stats.errors += 1
        self.log.warning("GPU %d: %s", self.info.index, message)
        if self.envelope.record_error(now, message):
            self._degrade(f"error budget spent ({self.config.get('envelope', 'error_budget')} errors within "
                          f"{self.config.get('envelope', 'error_window_s'):g} s); last: {message}", restore=True)

    def _degrade(self, reason: str, restore: bool) -> None:
        if self.state == "degraded":
            return
        self.log.error("GPU %d: degraded: %s", self.info.index, reason)
        if restore:
            self.hand_back()
        self.state, self.reason = "degraded", reason

    # ----- hand back, pause, policy ------------------------------------------------------------
    def hand_back(self) -> GiveBack | None:
        """Restore this GPU's originals (if govd ever wrote to it) and forget them once restored.

        None when there was nothing to put back; otherwise what the restore did. A GPU that could
        not be put back stays in originals.json for `govd --restore`, and its report says what it
        holds now."""
        with self._lock:
            self.started = False
            report = self.actuator.hand_back()
            if report is None:
                return None
            if report.ok:
                self.log.info("GPU %d: restored to its original settings", self.info.index)
            else:
                self.stats.restore_failures += 1
                self.log.error("GPU %d (%s): restore incomplete: %s; originals.json keeps it for `govd --restore`",
                               self.info.index, self.info.uuid, report.problem())
            return report

    def pause(self) -> GiveBack | None:
        with self._lock:
            report = self.hand_back()
            self.target = None
            if self.state not in ("degraded",):
                self.state, self.reason = "paused", "paused by operator"
            return report

    def resume(self) -> None:
        with self._lock:
            if self.state == "paused":
                self.state = "dry-run" if self.dry_run else ("managed" if self.manage else "watching")
                self.reason = None

    def _recall(self) -> None:
        """Give the controller what the node's store remembers for this GPU model (a new controller,
        or at an exchange what the node's other GPUs learned since)."""
        if self.memory is None:
            return
        taken = self.controller.import_models(self.memory.recall(self.info.name, self.controller.name))
        if taken:
            self.log.info("GPU %d: %d phase models recalled from the model store (each checked before it is "
                          "trusted)", self.info.index, taken)

    def _exchange_models(self, now: float) -> None:
        """Every MEMORY_EXCHANGE_S: what this loop's controller learned goes to the store, and what other
        GPUs of this model learned since comes back (the same work on another GPU need not be learned
        again)."""
        self._next_exchange = now + MEMORY_EXCHANGE_S
        self.remember_models()
        self._recall()

    def remember_models(self) -> None:
        """What this loop's controller has learned, into the node's store (none: nothing to do)."""
        if self.memory is not None:
            self.memory.remember(self.info.name, self.controller.name, self.controller.export_models())

    def set_policy(self, policy: Policy) -> None:
        """Switch policy without a bump: the new controller starts from the GPU's current state."""
        with self._lock:
            controller = self._make_controller(policy)
            if self.last_sample is not None:
                controller.start(self.last_sample, self.applied or self._current_setpoint())
                self.started = True
            else:
                self.started = False
            self.remember_models()  # what the old controller learned is not lost with it
            self.policy, self.controller = policy, controller
            if self.started:
                self._recall()
            self.log.extra["GOVD_POLICY"] = policy.name
            self.envelope.bounds = dict(policy.bounds)

    def start_job(self, job_id: str, policy: Policy | None) -> None:
        """A job takes this GPU: its totals start from zero, and it runs the job's policy if it has one."""
        with self._lock:
            self.job_id = job_id
            self.ledger.job = Totals()
            if policy is not None:
                self.set_policy(policy)
            else:
                self._work_changed()

    def end_job(self, node_policy: Policy) -> Totals | None:
        """The job's end: back to the node's policy; returns the job's totals on this GPU."""
        with self._lock:
            totals, self.ledger.job, self.job_id = self.ledger.job, None, None
            if node_policy != self.policy:
                self.set_policy(node_policy)
            else:
                self._work_changed()
            return totals

    def _work_changed(self) -> None:
        """Tell the controller the work changed (a job's start or end), at the last sample's time."""
        if self.started and self.last_sample is not None:
            self.controller.work_changed(self.last_sample.time_s)

    def set_config(self, config: Config) -> None:
        with self._lock:
            self.config = config
            self.envelope.cfg = config.section("envelope")
            self.ledger.cfg = config.section("ledger")
            self.period_s = config.get("daemon", "period_ms") / 1000.0

    # ----- the loop ----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        next_t = self.clock.now()
        while not stop.is_set():
            try:
                self.tick()
            except Exception:  # a bug in one tick must not kill the loop; count it against the budget
                self.log.exception("GPU %d: unexpected error in control loop", self.info.index)
                with self._lock:
                    self._error(self.clock.now(), "unexpected error in control loop (see log)")
            next_t += self.period_s
            now = self.clock.now()
            if now > next_t:
                self.stats.overruns += 1
                next_t = now
            if not self.clock.sleep_until(next_t, stop):
                break

    def _thermal_default_power_w(self) -> float | None:
        """At the thermal limit, what default settings would dissipate: the cooling the ledger
        learned, at the hot side of the firmware's band (`ledger.thermal_budget_below_c`, so the
        budget's slowdown errs high as the ledger's saving errs low); None until it trusts a fit."""
        temp = self.limits.temp_slowdown_c - self.config.get("ledger", "thermal_budget_below_c")
        return self.ledger.cooling.steady_power_w(temp)

    def throttled_default_c(self) -> float:
        """Where default settings would hold this GPU at its thermal limit: just under the slowdown
        temperature, throttled by the firmware (`ledger.thermal_default_below_c`)."""
        return self.limits.temp_slowdown_c - self.config.get("ledger", "thermal_default_below_c")

    def status(self) -> dict[str, Any]:
        """What `govctl status` shows of this GPU (worker_status.py)."""
        return gpu_status(self)
