"""Prometheus metrics: what govd does to each GPU and the energy it measured and saved, named and
labelled to sit beside dcgm-exporter's series (joined on `UUID`). docs/metrics.md lists them.

A scrape reads each GPU loop's latest state (immutable samples, plain numbers) without taking a
loop's lock, so a scrape never waits for a tick and a tick never waits for a scrape. The registry
belongs to the daemon (no process-global registry), served over HTTP (`metrics.listen`) and/or
written for node_exporter's textfile collector (`metrics.textfile`, atomically).
"""

from __future__ import annotations

import logging
import os
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, start_http_server, write_to_textfile
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from . import __version__
from .loop_stats import TICK_BUCKETS_S
from .pricing import Pricing

if TYPE_CHECKING:
    from .worker import GpuWorker

log = logging.getLogger("govd")

GPU_LABELS = ("gpu", "UUID", "modelName", "Hostname", "policy", "hpc_job")
STATES = ("managed", "dry-run", "watching", "paused", "backed-off", "degraded")
INTERVENTIONS = ("thermal", "rate", "readback", "other_writer")


def parse_listen(text: str) -> tuple[str, int] | None:
    """`host:port` (`[v6]:port` for IPv6) -> (host, port); "" -> None (no endpoint); port 0 picks a
    free port (tests). ValueError names what is wrong."""
    if not text:
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r} is not host:port (for example 127.0.0.1:9477 or [::1]:9477)")
    return host.strip("[]"), int(port)


class GovdCollector:
    """Builds every metric family at scrape time from the workers' current state."""

    def __init__(self, workers: Callable[[], Sequence[GpuWorker]], healthy: Callable[[], bool],
                 pricing: Callable[[], Pricing]):
        self.workers = workers
        self.healthy = healthy
        self.pricing = pricing
        self.hostname = socket.gethostname()

    def _labels(self, w: GpuWorker) -> list[str]:
        return [str(w.info.index), w.info.uuid, w.info.name, self.hostname, w.policy.name, w.job_id or ""]

    def collect(self) -> Iterable[Metric]:
        workers = list(self.workers())
        info = GaugeMetricFamily("govd_build_info", "govd's version and Python; always 1",
                                 labels=["version", "python"])
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info
        up = GaugeMetricFamily("govd_healthy", "1 while every GPU loop makes progress (the watchdog's view)")
        up.add_metric([], 1.0 if self.healthy() else 0.0)
        yield up
        pricing = self.pricing()
        price = GaugeMetricFamily("govd_price_per_kwh", "the electricity price the ledger uses (ledger.price_per_kwh)",
                                  labels=["Hostname", "currency"])
        price.add_metric([self.hostname, pricing.currency], pricing.price_per_kwh)
        yield price
        carbon = GaugeMetricFamily("govd_carbon_grams_per_kwh", "the grid carbon intensity the ledger uses now "
                                   "(ledger.carbon_g_per_kwh or this hour's ledger.carbon_hourly)", labels=["Hostname"])
        carbon.add_metric([self.hostname], pricing.intensity(time.time()))
        yield carbon

        energy = CounterMetricFamily("govd_energy_joules", "energy each GPU used since govd started, from NVML's "
                                     "energy counter", labels=GPU_LABELS)
        baseline = CounterMetricFamily("govd_baseline_energy_joules", "the ledger's counterfactual: what the same "
                                       "work would have used at default settings (saved = baseline - energy), "
                                       "point estimate and interval bounds", labels=[*GPU_LABELS, "estimate"])
        clock_target = GaugeMetricFamily("govd_sm_clock_target_mhz", "the SM clock ceiling govd holds (the "
                                         "highest clock when it holds none)", labels=GPU_LABELS)
        clock = GaugeMetricFamily("govd_sm_clock_mhz", "the SM clock the GPU runs at", labels=GPU_LABELS)
        limit = GaugeMetricFamily("govd_power_limit_watts", "the power limit the GPU enforces", labels=GPU_LABELS)
        power = GaugeMetricFamily("govd_power_watts", "the GPU's power draw", labels=GPU_LABELS)
        temp = GaugeMetricFamily("govd_temperature_celsius", "the GPU's temperature", labels=GPU_LABELS)
        state = GaugeMetricFamily("govd_gpu_state", "1 for the state the GPU's loop is in", labels=[*GPU_LABELS,
                                                                                                   "state"])
        budget = GaugeMetricFamily("govd_slowdown_budget_ratio", "the policy's slowdown budget (0.03: 3% slower)",
                                   labels=GPU_LABELS)
        spent = GaugeMetricFamily("govd_slowdown_budget_spent_ratio", "the controller's estimate of the slowdown "
                                  "spent so far, as a share of its budget", labels=GPU_LABELS)
        interventions = CounterMetricFamily("govd_envelope_interventions", "times the safety envelope or the "
                                            "loop stepped in, by kind", labels=[*GPU_LABELS, "kind"])
        errors = CounterMetricFamily("govd_errors", "GPU errors counted against the error budget", labels=GPU_LABELS)
        restore_failures = CounterMetricFamily("govd_restore_failures", "give-backs (pause, error budget, lost GPU) "
                                               "that left the GPU changed", labels=GPU_LABELS)
        ticks = HistogramMetricFamily("govd_tick_duration_seconds", "how long one control tick took",
                                      labels=GPU_LABELS)
        for w in workers:
            labels = self._labels(w)
            since = w.ledger.since_start
            lo, hi = since.bounds()
            energy.add_metric(labels, w.ledger.meter.joules)
            for estimate, value in (("point", since.counterfactual_j), ("lower", since.measured_j + lo),
                                    ("upper", since.measured_j + hi)):
                baseline.add_metric([*labels, estimate], max(0.0, value))
            target = w.target.sm_clock_max_mhz if w.target is not None else None
            clock_target.add_metric(labels, float(target or w.limits.sm_clock_max_mhz))
            s = w.last_sample
            if s is not None:
                clock.add_metric(labels, s.sm_clock_mhz)
                limit.add_metric(labels, s.power_limit_w)
                power.add_metric(labels, s.power_w)
                temp.add_metric(labels, s.temp_c)
            for name in STATES:
                state.add_metric([*labels, name], 1.0 if w.state == name else 0.0)
            b = w.controller.params.get("slowdown_budget")
            if b is not None:
                budget.add_metric(labels, float(b))
                used = w.controller.status().get("estimated_slowdown_spent")
                if used is not None and b > 0:
                    spent.add_metric(labels, float(used) / float(b))
            for kind in INTERVENTIONS:
                interventions.add_metric([*labels, kind], float(w.stats.interventions.get(kind, 0)))
            errors.add_metric(labels, float(w.stats.errors))
            restore_failures.add_metric(labels, float(w.stats.restore_failures))
            counts = w.stats.tick_bucket_counts
            buckets, total = [], 0
            for edge, n in zip((*TICK_BUCKETS_S, float("inf")), counts, strict=True):
                total += n
                buckets.append(("+Inf" if edge == float("inf") else repr(edge), total))
            ticks.add_metric(labels, buckets, w.stats.tick_sum_s)
        yield from (energy, baseline, clock_target, clock, limit, power, temp, state, budget, spent, interventions,
                    errors, restore_failures, ticks)


class MetricsExporter:
    """The daemon's registry, its HTTP endpoint and its textfile."""

    def __init__(self, workers: Callable[[], Sequence[GpuWorker]], healthy: Callable[[], bool],
                 pricing: Callable[[], Pricing]):
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GovdCollector(workers, healthy, pricing))
        self._server = None
        self._thread: threading.Thread | None = None
        self.address: tuple[str, int] | None = None
        self._next_textfile = 0.0

    def serve(self, listen: str) -> None:
        """Start the HTTP endpoint. An address that cannot be had is logged, and govd runs on
        without it: managing the GPUs matters more than being watched."""
        where = parse_listen(listen)
        if where is None:
            return
        try:
            self._server, self._thread = start_http_server(where[1], addr=where[0], registry=self.registry)
        except OSError as exc:
            log.warning("metrics: cannot listen on %s (%s); running without the endpoint (metrics.listen)", listen,
                        exc.strerror or exc)
            return
        self.address = self._server.server_address[:2]
        log.info("metrics on http://%s:%d/metrics", *self.address)

    def textfile_when_due(self, cfg, now: float) -> None:
        """Write the textfile (cfg: the [metrics] section) when `interval_s` has passed."""
        if not cfg.textfile or now < self._next_textfile:
            return
        self._next_textfile = now + cfg.interval_s
        try:
            self.write_textfile(cfg.textfile)
        except OSError as exc:
            log.warning("metrics: cannot write %s (%s)", cfg.textfile, exc.strerror or exc)

    def write_textfile(self, path: str) -> None:
        """Write every metric for node_exporter's textfile collector, atomically (temp file + rename)."""
        write_to_textfile(path, self.registry)
        os.chmod(path, 0o644)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
