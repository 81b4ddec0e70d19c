"""govd-k8s: runs each Kubernetes pod that holds GPUs on this node as a govd job, with the policy its
`govd.io/policy` annotation names, while the pod lives.

Each round (every `interval_s`) it asks three sources and changes only what they agree on:
- the kubelet's PodResources API: which pod holds which GPU UUID (the device plugin's device ids);
- the API server: each such pod's uid and annotations (pods on this node, by field selector);
- govd's status: which GPU has which UUID and runs which job.
A pod that holds GPUs and has no job gets one (`job.start`); a job whose pod no longer holds its GPUs
is ended (`job.end`, its energy logged). A refused policy (not allowed in the pod's namespace by
/etc/govd/kubernetes.toml, or unknown to govd) runs the node's default and is reported as a Warning
Event on the pod, once. When a source cannot be asked, nothing is ended on its account: the kubelet
down means no change this round; the API server down means the last pod list is used and no pod it
does not know is started; govd down means the next round tries again.

Job ids are `pod-<uid>`; a job id is used once in govd's ledger, so when govd restarts under a running
pod (its job was closed at that restart) the pod continues as `pod-<uid>.2`, `.3`, ... The annotation
is read when the pod's job starts: a policy change on a running pod applies from the next pod, as a
Slurm job's option does. The agent holds no state that matters: after its own restart it finds its
jobs in govd's status.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..config_keys import Key
from ..control_client import CommandFailed, NotRunning, call
from ..errors import GovdError
from ..paths import SYSTEM_SOCKET
from ..site_rules import AllowedPolicies, load_site_file
from ..wakeup import Wakeup
from ..wire import ErrorCode
from .apiserver import ApiError, ApiServer, Pod
from .podresources import DEFAULT_SOCKET, ContainerDevices, KubeletError

log = logging.getLogger("govd.k8s")

SITE_FILE = Path("/etc/govd/kubernetes.toml")
JOB_PREFIX = "pod-"
JOB_ID = re.compile(r"pod-([0-9a-fA-F-]{1,40})(?:\.(\d+))?")
MAX_SEGMENTS = 100  # a pod's job restarted by as many govd restarts; then it is logged and left alone
EVENT_COMPONENT = "govd"

SITE_KEYS = {  # and `allowed`, `[namespace.NAME] allowed`, `resource_names`
    "annotation": Key(str, "govd.io/policy", doc="the pod annotation that names its policy"),
    "all_gpu_pods": Key(bool, True, doc="run every pod holding GPUs as a job (its energy line), annotated or not"),
    "events": Key(bool, True, doc="report a refused policy as a Warning Event on the pod (else only logged)"),
    "interval_s": Key(float, 10.0, lo=1.0, hi=600.0, doc="seconds between rounds"),
    "socket": Key(str, "", doc="govd's control socket (empty: /run/govd/govd.sock)"),
    "pod_resources_socket": Key(str, DEFAULT_SOCKET, doc="the kubelet's PodResources socket"),
    "api_server": Key(str, "", doc="the API server URL (empty: in-cluster, with the service account)"),
    "token_file": Key(str, "", doc="with api_server: a file holding the bearer token (empty: send none)"),
    "ca_file": Key(str, "", doc="with an https api_server: the CA bundle to check it with (empty: the system's)"),
    "node_name": Key(str, "", doc="this node's name in Kubernetes (empty: $NODE_NAME, from the downward API)"),
}
DEFAULT_RESOURCES = ("nvidia.com/gpu",)


@dataclass(frozen=True)
class AgentSettings:
    """/etc/govd/kubernetes.toml."""

    policies: AllowedPolicies = field(default_factory=AllowedPolicies)
    resource_names: tuple[str, ...] = DEFAULT_RESOURCES
    annotation: str = "govd.io/policy"
    all_gpu_pods: bool = True
    events: bool = True
    interval_s: float = 10.0
    socket: str = ""
    pod_resources_socket: str = DEFAULT_SOCKET
    api_server: str = ""
    token_file: str = ""
    ca_file: str = ""
    node_name: str = ""

    @classmethod
    def load(cls, path: Path) -> AgentSettings:
        values, policies = load_site_file(path, SITE_KEYS, "namespace", {"resource_names": DEFAULT_RESOURCES})
        return cls(policies=policies, **values)


class Kubelet(Protocol):
    def list(self) -> list[ContainerDevices]: ...


class PodSource(Protocol):
    def pods_on(self, node: str) -> list[Pod]: ...

    def warn(self, pod: Pod, reason: str, message: str, component: str, node: str) -> None: ...


def job_uid(job_id: str | None) -> str | None:
    """The pod uid in one of our job ids, None for anyone else's job."""
    m = JOB_ID.fullmatch(job_id or "")
    return m.group(1) if m else None


@dataclass
class RoundReport:
    """What one round did, for the log and for tests."""

    started: dict[str, list[int]] = field(default_factory=dict)  # job id -> GPU indexes
    ended: dict[str, dict] = field(default_factory=dict)  # job id -> govd's job report (or {})
    waiting: list[str] = field(default_factory=list)  # pods not started this round, with why
    skipped: str = ""  # why the round changed nothing (a source could not be asked)


class PodJobAgent:
    """The reconciler; one per node."""

    def __init__(self, settings: AgentSettings, kubelet: Kubelet, pods: PodSource,
                 govd: Callable[..., Any], node: str):
        self.settings = settings
        self.kubelet = kubelet
        self.pods = pods
        self.govd = govd  # govd(cmd, **args) -> the reply's result
        self.node = node
        self.known: dict[tuple[str, str], Pod] = {}  # the last pod list that came back
        self.api_ok = True
        self.said: set[tuple[str, str]] = set()  # (uid or device, what) already reported once
        self.segment: dict[str, int] = {}  # pod uid -> the segment its next job id uses

    def _once(self, key: str, what: str, level: int, msg: str) -> None:
        if (key, what) not in self.said:
            self.said.add((key, what))
            log.log(level, "%s", msg)

    def _warn_pod(self, pod: Pod, reason: str, message: str) -> None:
        if (pod.uid, reason) in self.said:
            return
        self.said.add((pod.uid, reason))
        log.warning("pod %s/%s: %s", pod.namespace, pod.name, message)
        if not self.settings.events:
            return
        try:
            self.pods.warn(pod, reason, message, EVENT_COMPONENT, self.node)
        except ApiError as exc:
            log.warning("pod %s/%s: cannot create the Event (%s); logged only", pod.namespace, pod.name, exc)

    def round(self) -> RoundReport:
        report = RoundReport()
        try:
            held = [c for c in self.kubelet.list() if c.resource_name in self.settings.resource_names]
        except KubeletError as exc:
            report.skipped = str(exc)
            log.warning("%s; no job is started or ended this round", exc)
            return report
        try:
            self.known = {(p.namespace, p.name): p for p in self.pods.pods_on(self.node)}
            if not self.api_ok:
                log.info("the API server answers again")
            self.api_ok = True
        except ApiError as exc:
            if self.api_ok:
                log.warning("%s; using the last pod list (%d pods) until it answers", exc, len(self.known))
            self.api_ok = False
        try:
            gpus = self.govd("status")["gpus"]
        except NotRunning:
            report.skipped = "govd is not running"
            self._once("govd", "down", logging.WARNING, "govd is not running; pods are matched when it is back")
            return report
        except GovdError as exc:
            report.skipped = f"govd status: {exc}"
            log.warning("govd status: %s", exc)
            return report
        self.said.discard(("govd", "down"))
        index_of = {g["uuid"]: g["index"] for g in gpus}
        job_on = {g["index"]: g.get("job") for g in gpus}

        wanted: dict[str, tuple[Pod, list[int]]] = {}  # pod uid -> (pod, GPU indexes)
        unresolved: set[int] = set()  # GPUs held by pods the API server has not described yet
        by_pod: dict[tuple[str, str], set[int]] = {}
        for c in held:
            for device in c.device_ids:
                if device in index_of:
                    by_pod.setdefault((c.namespace, c.pod), set()).add(index_of[device])
                else:
                    self._once(device, "unknown-device", logging.WARNING,
                               f"pod {c.namespace}/{c.pod} holds {c.resource_name} {device!r}, which is no GPU govd "
                               "steers here (a MIG device, or a GPU govd does not see); it is left alone")
        for key, indexes in by_pod.items():
            pod = self.known.get(key)
            if pod is None:
                unresolved |= indexes
                report.waiting.append(f"{key[0]}/{key[1]}: not in the API server's pod list yet")
                continue
            if pod.phase in ("Succeeded", "Failed"):
                continue
            wanted[pod.uid] = (pod, sorted(indexes))

        ours: dict[str, tuple[str, set[int]]] = {}  # pod uid -> (job id, GPUs)
        for index, job in job_on.items():
            uid = job_uid(job)
            if uid is not None:
                ours.setdefault(uid, (job, set()))[1].add(index)
        for uid, (job, indexes) in sorted(ours.items()):
            if uid in wanted or indexes & unresolved:
                continue  # alive, or maybe alive: a pod the API server has not described holds its GPU
            report.ended[job] = self._end(job)
        for uid, (pod, indexes) in sorted(wanted.items()):
            if uid in ours:
                continue
            busy = {i: job_on[i] for i in indexes if job_on.get(i) is not None}  # not this pod's: it has none
            if busy:
                held_by = ", ".join(f"{i} runs job {j}" for i, j in busy.items())
                self._once(uid, "busy", logging.WARNING,
                           f"pod {pod.namespace}/{pod.name}: GPU {held_by}; its job starts when they are free")
                report.waiting.append(f"{pod.namespace}/{pod.name}: GPUs busy")
                continue
            job = self._start(pod, indexes)
            if job is not None:
                report.started[job] = indexes
        return report

    def _policy_for(self, pod: Pod) -> tuple[str | None, bool]:
        """(the policy to ask for, None for the node's; whether to run the pod at all)."""
        requested = pod.annotations.get(self.settings.annotation)
        if requested is None:
            return None, self.settings.all_gpu_pods
        refusal = self.settings.policies.refusal(requested.strip(), pod.namespace, "in namespace")
        if refusal is not None:
            self._warn_pod(pod, "GovdPolicyRefused",
                           f"govd: {refusal} (annotation {self.settings.annotation}); the pod's GPUs run the "
                           "node's default policy")
            return None, True
        return requested.strip(), True

    def _start(self, pod: Pod, indexes: list[int]) -> str | None:
        policy, run = self._policy_for(pod)
        if not run:
            return None
        user = f"{pod.namespace}/{pod.name}"
        for _ in range(MAX_SEGMENTS):
            n = self.segment.get(pod.uid, 1)
            job = f"{JOB_PREFIX}{pod.uid}" if n == 1 else f"{JOB_PREFIX}{pod.uid}.{n}"
            args = {"id": job, "gpus": indexes, "user": user, **({"policy": policy} if policy else {})}
            try:
                reply = self.govd("job.start", **args)
            except CommandFailed as exc:
                if exc.code in (ErrorCode.BAD_POLICY, ErrorCode.BAD_ARGS) and policy is not None:
                    self._warn_pod(pod, "GovdUnknownPolicy",
                                   f"govd: policy {policy!r} (annotation {self.settings.annotation}) is unknown to "
                                   f"govd on node {self.node} ({exc}); the pod's GPUs run the node's default policy")
                    policy = None
                    continue
                if exc.code == ErrorCode.JOB_ID_USED:
                    self.segment[pod.uid] = n + 1  # govd restarted under the pod: its next segment
                    continue
                self._once(pod.uid, "start-failed", logging.WARNING,
                           f"pod {pod.namespace}/{pod.name}: job.start failed: {exc}")
                return None
            except GovdError as exc:
                log.warning("pod %s/%s: job.start: %s", pod.namespace, pod.name, exc)
                return None
            log.info("pod %s/%s runs as job %s on GPU %s with policy %s", pod.namespace, pod.name, job,
                     ", ".join(map(str, reply["gpus"])), reply.get("policy") or "the node default")
            return job
        self._once(pod.uid, "segments", logging.ERROR, f"pod {pod.namespace}/{pod.name}: {MAX_SEGMENTS} job ids "
                   "used already; it is not run as a job")
        return None

    def _end(self, job: str) -> dict:
        try:
            reply = self.govd("job.end", id=job)
        except GovdError as exc:
            log.warning("job %s: job.end: %s", job, exc)
            return {}
        for j in reply.get("jobs", []):
            log.info("job %s (%s) ended: used %.4f kWh, saved %.4f kWh [%.4f, %.4f] with policy %s", job, j["user"],
                     j["used_kwh"], j["kwh"], j["saved_lo_j"] / 3.6e6, j["saved_hi_j"] / 3.6e6,
                     j["policy"] or "the node default")
        return reply


def govd_caller(socket_path: Path, timeout_s: float = 5.0) -> Callable[..., Any]:
    return lambda cmd, **args: call(socket_path, cmd, timeout_s=timeout_s, **args)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="govd-k8s", description="run each GPU pod on this node as a govd job with "
                                "the policy of its govd.io/policy annotation (docs/deploy.md)")
    p.add_argument("--site", type=Path, default=Path(os.environ.get("GOVD_K8S_SITE", SITE_FILE)),
                   help=f"settings and allowed policies (default $GOVD_K8S_SITE, else {SITE_FILE})")
    p.add_argument("--once", action="store_true", help="one round, then exit (for a check by hand)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        settings = AgentSettings.load(args.site)
        node = settings.node_name or os.environ.get("NODE_NAME", "")
        if not node:
            raise GovdError("no node name: set NODE_NAME (the DaemonSet passes spec.nodeName) or node_name in "
                            f"{args.site}")
        api = ApiServer(settings.api_server, Path(settings.token_file) if settings.token_file else None,
                        Path(settings.ca_file) if settings.ca_file else None) if settings.api_server \
            else ApiServer.in_cluster()
        from .podresources import PodResourcesClient
        kubelet = PodResourcesClient(settings.pod_resources_socket)
    except GovdError as exc:
        print(f"govd-k8s: {exc}", file=sys.stderr)
        return 2
    agent = PodJobAgent(settings, kubelet, api, govd_caller(Path(settings.socket) if settings.socket
                                                             else SYSTEM_SOCKET), node)
    wake, stopped = Wakeup(), []

    def on_signal(*_) -> None:  # no lock in a handler (governor/wakeup.py)
        stopped.append(True)
        wake.poke()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    log.info("govd-k8s on node %s: pods holding %s run as govd jobs", node, ", ".join(settings.resource_names))
    try:
        while not stopped:
            agent.round()
            if args.once:
                break
            wake.wait(settings.interval_s)
    finally:
        kubelet.close()
        wake.close()
    return 0  # jobs stay: the pods still run, and the next agent finds them in govd's status


if __name__ == "__main__":
    sys.exit(main())
