"""The daemon: one control loop per GPU, a supervisor, signals, reload, and restore on every exit.

Exit paths and what happens to the GPUs:
- SIGTERM, SIGINT, --duration over: loops stop, every GPU is restored, originals.json removed;
- an unhandled error in the supervisor: the same, in a finally block;
- SIGKILL or a hang: originals.json stays; systemd's ExecStopPost runs `govd --restore`, and the
  next govd start restores before it does anything else.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from .clock import Clock
from .config import Config, host_problems, load_config, restart_only_changes, unknown_gpus
from .control_api import ControlApi, resolve_policy
from .control_server import ControlServer
from .device import Device
from .errors import ConfigError, GovdError
from .jobs import JobBook
from .ledger_keeper import LedgerKeeper, log_savings
from .ledger_store import LedgerStore
from .logsetup import LogTail
from .metrics import MetricsExporter
from .model_store import ModelStore
from .originals import OriginalsFile
from .paths import Paths
from .policy import Policy, load_policy
from .pricing import Pricing
from .protocol import ProtocolError
from .restore import recover_leftovers
from .status_lines import log_status, one_line_status
from .systemd_integration import Notifier
from .wakeup import Wakeup
from .worker import GpuWorker

log = logging.getLogger("govd")

# How often the supervisor looks at the loops when nothing wakes it. Signals, `govctl` and stop wake
# it at once; what is left (hang detection, trial ends, ledger writes, the watchdog at half its
# 30 s) needs no finer grain, and each wake-up costs ~0.1 ms of CPU on a busy host.
SUPERVISE_S = 1.0
MODELS_SAVE_S = 60.0  # the model store is written at most this often (and at stop)


@dataclass
class DaemonOptions:
    config_file: Path | None = None  # --config (must exist if given)
    policy: str | None = None  # --policy: overrides [daemon].policy
    dry_run: bool = False
    duration_s: float | None = None  # stop after this much clock time
    join_timeout_s: float = 5.0
    notifier: Notifier | None = None  # systemd's notify protocol; None: from the environment
    driver_version: str | None = None  # NVML's, for snapshots
    log_level: str | None = None  # --log-level: wins over daemon.log_level, at start and on reload
    status_log_s: float | None = None  # --status-every: wins over daemon.status_log_s
    extra: dict = field(default_factory=dict)


class Daemon:
    def __init__(self, paths: Paths, options: DaemonOptions, devices: list[Device], clock: Clock):
        self.paths = paths
        self.options = options
        self.devices = devices
        self.clock = clock
        self.stop_event = threading.Event()
        self.reload_requested = threading.Event()
        self._wake = Wakeup()  # the supervisor's: poked with stop_event and by signals
        self._stop_signalled = False
        self._reload_signalled = False
        self.workers: list[GpuWorker] = []
        self.threads: list[threading.Thread] = []
        self.originals = OriginalsFile(paths.originals)
        self.config = self._load_config()
        self.started_wall = time.time()
        self.server: ControlServer | None = None
        self.trials: dict[int, tuple[float, Policy]] = {}  # GPU index -> (end time, policy to return to)
        # GPU index -> how `policy.set` chose its policy ({"request": name or table, "uid": who}); kept
        # across reloads, shown as source "runtime", dropped by `policy.reset`
        self.runtime_policies: dict[int, dict] = {}
        self.config_warnings: list[str] = []
        self.last_reload_error: str | None = None
        self.last_reload_result: dict = {}
        self.store: LedgerStore | None = None
        self.keeper: LedgerKeeper | None = None  # writes and logs the ledger (None: ledger off)
        self.metrics: MetricsExporter | None = None
        self.jobs = JobBook(None)  # the scheduler's jobs on this node (opened on the store at setup)
        self.models: ModelStore | None = None  # what controllers learned, kept across restarts (setup)
        self._next_models_save = 0.0
        self._next_ledger_log = 0.0
        self.notifier = options.notifier or Notifier()
        self.log_tail = LogTail()
        log.addHandler(self.log_tail)

    # ----- config and policies -----------------------------------------------------------------
    def _load_config(self) -> Config:
        main = self.options.config_file or self.paths.config_file
        config = load_config(main, self.paths.conf_d, required=self.options.config_file is not None)
        host_problems(config)
        if self.options.status_log_s is not None:
            config.values["daemon"]["status_log_s"] = self.options.status_log_s
        return config

    def _note_config_warnings(self, config: Config) -> None:
        self.config_warnings = unknown_gpus(config, [(d.info.index, d.info.uuid) for d in self.devices])
        for warning in self.config_warnings:
            log.warning("config: %s", warning)

    def policy_for(self, config: Config, device: Device, cache: dict[str, Policy]) -> Policy:
        """The policy a GPU runs by the command line and the config, blamed on where its name is."""
        name, origin = config.policy_name(device.info.index, device.info.uuid, self.options.policy)
        if name not in cache:
            cache[name] = load_policy(name, self.paths.config_dir, origin)
        return cache[name]

    # ----- start -------------------------------------------------------------------------------
    def setup(self) -> None:
        self.paths.ensure()
        recover_leftovers(self.paths.originals, self.paths.runtime_dir)
        ledger = self.config.values["ledger"]
        if ledger["enabled"]:
            self.store = LedgerStore(self.paths.state_dir / "ledger.db", ledger["retention_days"])
            self.keeper = LedgerKeeper(self.store)
        self.jobs = JobBook(self.store)
        self.jobs.close_leftovers()
        self._next_ledger_log = self.clock.now() + ledger["log_every_s"]
        self._note_config_warnings(self.config)
        cache: dict[str, Policy] = {}
        dry_run = self.options.dry_run or bool(self.config.get("daemon", "dry_run"))
        for device in self.devices:
            policy = self.policy_for(self.config, device, cache)
            self.workers.append(GpuWorker(device, policy, self.config, self.originals, self.clock, dry_run=dry_run))
        # every managed GPU's originals on disk in one write before any loop runs, so that no loop
        # waits for the disk at its first write (they would all wait in the same tick)
        try:
            unread = self.originals.save_all([w.device for w in self.workers if w.state == "managed"])
        except OSError as exc:  # each GPU's first write tries again, and does not write if it fails too
            log.error("cannot write %s (%s); no GPU is written until its originals are saved", self.paths.originals,
                      exc)
            unread = {}
        if self.config.get("daemon", "remember_models"):
            self.models = ModelStore.open(self.paths.state_dir / "models.json",
                                          self.options.driver_version or "unknown", {w.info.name for w in self.workers})
            self.config_warnings.extend(self.models.warnings)
            for w in self.workers:
                w.memory = self.models
        for w in self.workers:
            fields = {"GOVD_GPU": w.info.index, "GOVD_POLICY": w.policy.name}
            log.info("GPU %d %s (%s): policy %s, %s", w.info.index, w.info.name, w.info.uuid, w.policy.name, w.state,
                     extra=fields)
            if w.info.uuid in unread:
                log.warning("GPU %d: could not read its settings at start-up (%s); they are saved at its first "
                            "write, which waits for that", w.info.index, unread[w.info.uuid], extra=fields)

    # ----- run ---------------------------------------------------------------------------------
    def _signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        signal.signal(signal.SIGHUP, self._on_signal)

    def _on_signal(self, signum: int, _frame) -> None:
        """Note a signal for the supervisor and wake it, taking no lock (governor/wakeup.py says
        why); the supervisor acts on the note (_take_signals)."""
        if signum == signal.SIGHUP:
            self._reload_signalled = True
        else:
            self._stop_signalled = True
        self._wake.poke()

    def _take_signals(self) -> None:
        """Act, outside any handler, on the signals noted since last time."""
        if self._stop_signalled:
            self._stop_signalled = False
            self.stop()
        if self._reload_signalled:
            self._reload_signalled = False
            self.reload_requested.set()

    def stop(self) -> None:
        """Ask every loop and the supervisor to stop; the supervisor then restores every GPU."""
        self.stop_event.set()
        self._wake.poke()

    def _supervise_wait(self) -> None:
        wait = SUPERVISE_S
        if self.notifier.watchdog_s is not None:
            wait = min(wait, self.notifier.watchdog_s / 4)
        self._wake.wait(wait)
        self._take_signals()

    def start_loops(self) -> None:
        for w in self.workers:
            t = threading.Thread(target=w.run, args=(self.stop_event,), name=f"gpu{w.info.index}", daemon=True)
            t.start()
            self.threads.append(t)

    def run(self) -> int:
        """Set up, run until stopped, restore. Returns the process exit code."""
        self._signals()
        try:
            self.setup()
            self.start_loops()
            self.start_server()
            self.start_metrics()
            self.wait_first_ticks()
            self.notifier.ready(self.one_line_status())
            deadline = None if self.options.duration_s is None else self.clock.now() + self.options.duration_s
            log.info("govd running: %d GPU(s)", len(self.workers))
            next_status = self.clock.now() + self.config.get("daemon", "status_log_s")
            while not self.stop_event.is_set():
                self._supervise_wait()
                if self.stop_event.is_set():
                    break
                if self.reload_requested.is_set():
                    self.reload_requested.clear()
                    self.reload()
                self.notifier.watchdog(self.check_health())
                self.end_trials()
                if self.keeper is not None and self.keeper.due():
                    self.flush_ledger()
                if self.models is not None and self.clock.now() >= self._next_models_save:
                    self._next_models_save = self.clock.now() + MODELS_SAVE_S
                    self.save_models()
                self._log_ledger()
                if self.metrics is not None:
                    self.metrics.textfile_when_due(self.config.section("metrics"), self.clock.now())
                every = self.config.get("daemon", "status_log_s")
                if every > 0 and self.clock.now() >= next_status:
                    next_status = self.clock.now() + every
                    self.log_status()
                    self.notifier.status(self.one_line_status())
                if deadline is not None and self.clock.now() >= deadline:
                    log.info("duration reached; stopping")
                    break
        finally:
            left = self.shutdown()
        if left:
            log.error("govd stopped with %d GPU(s) not back to their original settings: %s; run `govd --restore` "
                      "once the cause is fixed", len(left), "; ".join(left))
            return 1
        return 0

    def wait_first_ticks(self, timeout_s: float = 30.0) -> None:
        """READY=1 only once every GPU is set up: each loop has read its GPU at least once."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not self.stop_event.is_set() and not self._stop_signalled:
            if all(w.stats.ticks > 0 or w.state == "degraded" for w in self.workers):
                return
            time.sleep(0.01)

    def one_line_status(self) -> str:
        return one_line_status(self.workers)

    def log_status(self) -> None:
        log_status(self.workers)

    def check_health(self) -> bool:
        """True when every loop is making progress; a loop stuck in a call is reported once."""
        healthy = True
        limit = self.config.get("daemon", "call_timeout_s")
        now = time.monotonic()
        for w in self.workers:
            started = w.stats.tick_started_wall
            if started is not None and now - started > limit:
                healthy = False
                if w.state != "degraded":
                    w.state, w.reason = "degraded", f"control loop stuck in a GPU call for over {limit:g} s"
                    log.error("GPU %d: %s", w.info.index, w.reason)
        return healthy

    def reload(self) -> bool:
        """SIGHUP: load config and policies anew; a bad one is refused and the old one keeps running."""
        self.notifier.reloading()
        try:
            return self._reload()
        finally:
            self.notifier.ready(self.one_line_status())

    def _reload(self) -> bool:
        self.last_reload_result = {}
        try:
            config = self._load_config()
            restart = restart_only_changes(self.config, config)
            if restart:
                raise GovdError(f"{', '.join(restart)}: a reload cannot apply "
                                f"{'this' if len(restart) == 1 else 'these'}; restart govd (`systemctl restart "
                                "govd`) to change it, or put the running value back")
            cache: dict[str, Policy] = {}
            policies = [self.policy_for(config, w.device, cache) for w in self.workers]
        except (ConfigError, GovdError) as exc:
            log.error("reload refused, keeping the running config: %s", exc)
            self.last_reload_error = str(exc)
            return False
        self.last_reload_error = None
        self.config = config
        self._note_config_warnings(config)
        if self.server is not None:
            sock = config.values["socket"]
            self.server.reconfigure(int(sock["mode"], 8), sock["group"], sock["admin_group"])
        if self.store is not None:
            self.store.retention_days = config.get("ledger", "retention_days")
        if self.options.log_level is None:
            logging.getLogger("govd").setLevel(config.get("daemon", "log_level").upper())
        kept, reverted = {}, {}
        for w, policy in zip(self.workers, policies, strict=True):
            w.set_config(config)
            runtime, why_not = self._runtime_policy(w)
            if runtime is not None:
                policy = kept[w.info.index] = runtime
            elif why_not is not None:
                reverted[w.info.index] = f"{policy.name} (its runtime policy no longer loads: {why_not})"
            if w.info.index in self.trials:  # a trial runs on; it returns to the reloaded policy
                self.trials[w.info.index] = (self.trials[w.info.index][0], policy)
            elif policy != w.policy:
                w.set_policy(policy)
                log.info("GPU %d: policy now %s", w.info.index, policy.name)
        self.last_reload_result = {"kept_runtime": {i: p.name for i, p in kept.items()}, "reverted": reverted}
        log.info("config reloaded from %s", ", ".join(config.files) or "defaults")
        return True

    def shutdown(self) -> list[str]:
        """Stop every loop, then restore every GPU govd changed, last-changed GPU first; returns one
        line per GPU that is not back to its original settings (empty when all are)."""
        self.notifier.stopping()
        self.stop_event.set()
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.stop()
        if self.metrics is not None:
            with contextlib.suppress(Exception):
                self.metrics.stop()
        for t in self.threads:
            t.join(timeout=self.options.join_timeout_s)
        left = self._hand_back_all()
        for d in self.devices:
            with contextlib.suppress(Exception):  # closing: nothing useful to do with an error
                d.close()
        if self.models is not None:
            for w in self.workers:  # what each loop learned since its last exchange
                with contextlib.suppress(Exception):
                    w.remember_models()
            self.save_models()
        if self.store is not None:
            try:
                self.flush_ledger()
            except Exception:  # noqa: BLE001 - the GPUs are restored; a ledger failure is only logged
                log.exception("ledger: final flush failed")
            self.store.close()
        log.info("govd stopped")
        log.removeHandler(self.log_tail)
        self._wake.close()
        return left

    def _hand_back_all(self) -> list[str]:
        """Restore every GPU, last-changed first; originals.json loses them in one write at the end.
        Returns one line per GPU left changed: what went wrong and what it holds now."""
        left = []
        try:
            with self.originals.forgetting_together():
                for w, t in reversed(list(zip(self.workers, self.threads or [None] * len(self.workers),
                                              strict=False))):
                    if t is not None and t.is_alive():
                        log.error("GPU %d: control loop did not stop (hung in a GPU call); leaving it in "
                                  "originals.json for `govd --restore`", w.info.index)
                        if self.originals.saved(w.info.uuid) is not None and w.wrote:
                            left.append(f"GPU {w.info.index} ({w.info.uuid}): its loop is hung in a GPU call")
                        continue
                    try:
                        report = w.hand_back()
                    except Exception as exc:  # keep going: every other GPU must still be restored
                        log.exception("GPU %d: restore failed", w.info.index)
                        left.append(f"GPU {w.info.index} ({w.info.uuid}): restore failed: {exc}")
                        continue
                    if report is not None and not report.ok:
                        left.append(f"GPU {w.info.index} ({w.info.uuid}): {report.problem()}")
        except OSError as exc:  # the GPUs are restored; the file lists some still, for `govd --restore`
            log.error("cannot rewrite %s after restoring the GPUs (%s)", self.paths.originals, exc)
        return left

    # ----- ledger ------------------------------------------------------------------------------
    def save_models(self) -> None:
        """Write the model store if it changed; a failure is logged (the models are a saving, not a duty)."""
        try:
            self.models.save()
        except OSError as exc:
            log.warning("model store: cannot write %s (%s); learned models are kept in memory and tried again",
                        self.models.path, exc.strerror or exc)

    def flush_ledger(self) -> None:
        """Write each GPU's totals since the last write (LedgerKeeper.flush), and running jobs'."""
        if self.keeper is not None:
            self.keeper.flush(self.workers, self.config.get("ledger", "flush_s"))
            self.jobs.write(self.workers)

    def _runtime_policy(self, w: GpuWorker) -> tuple[Policy | None, str | None]:
        """The policy `govctl policy set` gave this GPU, read again (an edit of its file applies), or
        None; one that no longer loads is dropped (the config's applies again) and why is returned."""
        runtime = self.runtime_policies.get(w.info.index)
        if runtime is None:
            return None, None
        try:
            return resolve_policy(runtime["request"], self.paths.config_dir), None
        except ProtocolError as exc:
            del self.runtime_policies[w.info.index]
            log.warning("GPU %d: the policy set at runtime no longer loads (%s); back to the config's", w.info.index,
                        exc)
            return None, str(exc)

    def node_policy(self, w: GpuWorker) -> Policy:
        """What a GPU runs outside a job: a policy set at runtime, else the config's."""
        return self._runtime_policy(w)[0] or self.policy_for(self.config, w.device, {})

    def _log_ledger(self) -> None:
        every = self.config.get("ledger", "log_every_s")
        if every <= 0 or self.clock.now() < self._next_ledger_log:
            return
        self._next_ledger_log = self.clock.now() + every
        log_savings(self.workers, self.store, Pricing.from_config(self.config.values["ledger"]))

    # ----- metrics -----------------------------------------------------------------------------
    def start_metrics(self) -> None:
        self.metrics = MetricsExporter(lambda: self.workers, lambda: all(w.state != "degraded" for w in self.workers),
                                       lambda: Pricing.from_config(self.config.values["ledger"]))
        self.metrics.serve(self.config.get("metrics", "listen"))

    # ----- control socket ----------------------------------------------------------------------
    def start_server(self) -> None:
        sock = self.config.values["socket"]
        if not sock["enabled"]:
            return
        self.server = ControlServer(self.paths.socket, ControlApi(self).handle, mode=int(sock["mode"], 8),
                                    group=sock["group"], admin_group=sock["admin_group"])
        self.server.start()
        log.info("control socket %s", self.paths.socket)

    def end_trials(self) -> None:
        """`govctl try`: return each GPU to its previous policy when its trial is over."""
        now = self.clock.now()
        for index, (end, previous) in list(self.trials.items()):
            if now >= end:
                del self.trials[index]
                for w in self.workers:
                    if w.info.index == index:
                        w.set_policy(previous)
                        log.info("GPU %d: trial over, back to policy %s", index, previous.name)
