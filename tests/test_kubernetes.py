"""Per-pod policies on Kubernetes: the PodResources client against a fake kubelet on a Unix socket,
the pod reader against a fake API server on 127.0.0.1, and govd-k8s's rounds against a running govd
(in-process, simulated GPUs). No real cluster runs here (docs/deploy.md says what was not tested)."""

import shutil
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("grpc", reason="the kubernetes extra (grpcio, protobuf) is not installed")

from k8s_fakes import FakeApiServer, FakeKubelet, FakePod, Holding  # noqa: E402

from governor.control_client import call  # noqa: E402
from governor.errors import ConfigError  # noqa: E402
from governor.k8s.agent import AgentSettings, PodJobAgent, govd_caller, job_uid, main  # noqa: E402
from governor.k8s.apiserver import ApiError, ApiServer, Pod  # noqa: E402
from governor.k8s.podresources import KubeletError, PodResourcesClient  # noqa: E402
from governor.paths import resolve_paths  # noqa: E402
from governor.sim.device import sim_uuid  # noqa: E402
from governor.site_rules import AllowedPolicies  # noqa: E402

UID_A = "0b7c2c0e-1111-4a0e-9c33-aaaaaaaaaaaa"
UID_B = "0b7c2c0e-2222-4a0e-9c33-bbbbbbbbbbbb"
UID_C = "0b7c2c0e-3333-4a0e-9c33-cccccccccccc"
GPU0, GPU1 = sim_uuid("h100-sxm", 0), sim_uuid("a100-sxm4", 1)


@pytest.fixture
def root():
    r = Path(tempfile.mkdtemp(prefix="govd-k8s-"))
    (r / "etc").mkdir()
    (r / "etc" / "govd.toml").write_text('[daemon]\npolicy = "performance"\n')
    (r / "token").write_text("s3cret\n")
    yield r
    shutil.rmtree(r, ignore_errors=True)


@pytest.fixture
def kubelet(root):
    k = FakeKubelet(str(root / "kubelet.sock"))
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture
def api():
    a = FakeApiServer("s3cret")
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def daemon(training_daemon_on_root):
    return training_daemon_on_root


def agent_for(root, kubelet, api, **settings) -> PodJobAgent:
    s = AgentSettings(**settings)
    return PodJobAgent(s, PodResourcesClient(kubelet.path, timeout_s=5), ApiServer(api.url, root / "token"),
                       govd_caller(resolve_paths(root).socket), "node-a")


def holds(kubelet, *pods):
    kubelet.holdings = [Holding(ns, name, "main", "nvidia.com/gpu", list(ids)) for ns, name, ids in pods]


def jobs_on(d) -> list:
    return [w.job_id for w in d.workers]


# ----- the PodResources client -------------------------------------------------------------------
def test_the_client_reads_which_container_holds_which_device(kubelet):
    kubelet.holdings = [Holding("serving", "llm-0", "server", "nvidia.com/gpu", ["GPU-a", "GPU-b"]),
                        Holding("serving", "llm-0", "sidecar", "example.com/nic", ["nic0"]),
                        Holding("train", "job-1", "worker", "nvidia.com/gpu", ["GPU-c"])]
    client = PodResourcesClient(kubelet.path, timeout_s=5)
    try:
        got = client.list()
    finally:
        client.close()
    assert [(c.namespace, c.pod, c.container, c.resource_name, c.device_ids) for c in got] == [
        ("serving", "llm-0", "server", "nvidia.com/gpu", ("GPU-a", "GPU-b")),
        ("serving", "llm-0", "sidecar", "example.com/nic", ("nic0",)),
        ("train", "job-1", "worker", "nvidia.com/gpu", ("GPU-c",))]


def test_a_kubelet_that_fails_or_is_absent_is_a_clear_error(kubelet, root):
    import grpc

    kubelet.fail = grpc.StatusCode.UNAVAILABLE
    client = PodResourcesClient(kubelet.path, timeout_s=5)
    with pytest.raises(KubeletError, match="PodResources List on .*kubelet.sock failed: UNAVAILABLE"):
        client.list()
    client.close()
    absent = PodResourcesClient(str(root / "no-kubelet.sock"), timeout_s=0.5)
    with pytest.raises(KubeletError, match="no-kubelet.sock failed"):
        absent.list()
    absent.close()


# ----- the API server reader ---------------------------------------------------------------------
def test_the_reader_lists_only_this_nodes_pods_with_their_annotations(api, root):
    api.pods = [FakePod("serving", "llm-0", UID_A, "node-a", {"govd.io/policy": "batch", "x": "y"}),
                FakePod("serving", "llm-1", UID_B, "node-b")]
    pods = ApiServer(api.url, root / "token").pods_on("node-a")
    assert pods == [Pod("serving", "llm-0", UID_A, "Running", {"govd.io/policy": "batch", "x": "y"})]
    assert api.requests == ["GET /api/v1/pods?fieldSelector=spec.nodeName%3Dnode-a"]


def test_the_reader_reports_what_went_wrong(api, root):
    (root / "wrong").write_text("nope")
    with pytest.raises(ApiError, match="HTTP 401: Unauthorized"):
        ApiServer(api.url, root / "wrong").pods_on("node-a")
    with pytest.raises(ApiError, match="cannot read the service account token"):
        ApiServer(api.url, root / "absent").pods_on("node-a")
    api.garbage = True
    with pytest.raises(ApiError, match="not JSON"):
        ApiServer(api.url, root / "token").pods_on("node-a")
    api.garbage, api.status = False, 503
    with pytest.raises(ApiError, match="HTTP 503"):
        ApiServer(api.url, root / "token").pods_on("node-a")
    with pytest.raises(ApiError, match="KUBERNETES_SERVICE_HOST"):
        import os
        saved = os.environ.pop("KUBERNETES_SERVICE_HOST", None)
        try:
            ApiServer.in_cluster()
        finally:
            if saved is not None:
                os.environ["KUBERNETES_SERVICE_HOST"] = saved


def test_an_event_lands_on_the_pod_in_its_namespace(api, root):
    pod = Pod("serving", "llm-0", UID_A, "Running")
    ApiServer(api.url, root / "token").warn(pod, "GovdPolicyRefused", "no", "govd", "node-a")
    (event,) = api.events
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "serving", "name": "llm-0",
                                       "uid": UID_A}
    assert event["type"] == "Warning" and event["reason"] == "GovdPolicyRefused"
    assert event["source"] == {"component": "govd", "host": "node-a"}


# ----- govd-k8s against a running govd ------------------------------------------------------------
def test_each_gpu_pod_runs_as_a_job_with_its_annotated_policy_until_it_is_gone(root, daemon, kubelet, api):
    api.pods = [FakePod("serving", "llm-0", UID_A, "node-a", {"govd.io/policy": "batch"}),
                FakePod("train", "bert", UID_B, "node-a")]
    holds(kubelet, ("serving", "llm-0", [GPU0]), ("train", "bert", [GPU1]))
    agent = agent_for(root, kubelet, api)
    report = agent.round()
    assert report.started == {f"pod-{UID_A}": [0], f"pod-{UID_B}": [1]}, report
    assert jobs_on(daemon) == [f"pod-{UID_A}", f"pod-{UID_B}"]
    assert [w.policy.name for w in daemon.workers] == ["batch", "performance"]
    status = call(resolve_paths(root).socket, "status")
    assert [(g["job"], g["policy"]) for g in status["gpus"]] == [(f"pod-{UID_A}", "batch"),
                                                                  (f"pod-{UID_B}", "performance")]
    assert agent.round().started == {}  # nothing new: a second round changes nothing
    time.sleep(0.5)
    api.pods = api.pods[1:]
    holds(kubelet, ("train", "bert", [GPU1]))
    report = agent.round()
    assert list(report.ended) == [f"pod-{UID_A}"]
    (job,) = report.ended[f"pod-{UID_A}"]["jobs"]
    assert job["user"] == "serving/llm-0" and job["policy"] == "batch" and job["measured_j"] > 0
    assert jobs_on(daemon) == [None, f"pod-{UID_B}"] and daemon.workers[0].policy.name == "performance"
    listed = call(resolve_paths(root).socket, "ledger", job=f"pod-{UID_A}")["jobs"]
    assert listed[0]["end_reason"] == "ended"


def test_a_refused_or_unknown_policy_runs_the_default_and_tells_the_pod_once(root, daemon, kubelet, api):
    api.pods = [FakePod("capped", "a", UID_A, "node-a", {"govd.io/policy": "max-savings"}),
                FakePod("open", "b", UID_B, "node-a", {"govd.io/policy": "turbo"})]
    holds(kubelet, ("capped", "a", [GPU0]), ("open", "b", [GPU1]))
    agent = agent_for(root, kubelet, api, policies=AllowedPolicies(None, {"capped": ("batch",)}))
    agent.round()
    agent.round()
    assert jobs_on(daemon) == [f"pod-{UID_A}", f"pod-{UID_B}"]
    assert [w.policy.name for w in daemon.workers] == ["performance", "performance"]
    reasons = sorted((e["involvedObject"]["name"], e["reason"]) for e in api.events)
    assert reasons == [("a", "GovdPolicyRefused"), ("b", "GovdUnknownPolicy")]  # once each, over two rounds
    refused = next(e for e in api.events if e["reason"] == "GovdPolicyRefused")["message"]
    assert "'max-savings' is not allowed in namespace capped; allowed: batch" in refused
    unknown = next(e for e in api.events if e["reason"] == "GovdUnknownPolicy")["message"]
    assert "'turbo'" in unknown and "unknown to govd on node node-a" in unknown


def test_nothing_ends_on_the_word_of_a_source_that_cannot_be_asked(root, daemon, kubelet, api):
    import grpc

    api.pods = [FakePod("serving", "llm-0", UID_A, "node-a")]
    holds(kubelet, ("serving", "llm-0", [GPU0]))
    agent = agent_for(root, kubelet, api)
    agent.round()
    assert jobs_on(daemon) == [f"pod-{UID_A}", None]
    api.status = 503  # the API server is down: the last pod list stands, a pod it never listed waits
    holds(kubelet, ("serving", "llm-0", [GPU0]), ("serving", "new", [GPU1]))
    report = agent.round()
    assert report.ended == {} and report.started == {} and "serving/new" in report.waiting[0]
    assert jobs_on(daemon) == [f"pod-{UID_A}", None]
    api.status = 200
    api.pods = []  # the pod is gone from the API, but the kubelet cannot be asked: no change
    kubelet.fail = grpc.StatusCode.UNAVAILABLE
    report = agent.round()
    assert "UNAVAILABLE" in report.skipped and jobs_on(daemon) == [f"pod-{UID_A}", None]
    kubelet.fail = None
    holds(kubelet, ("serving", "llm-1", [GPU0]))  # a pod the API server has not described holds GPU 0
    assert agent.round().ended == {} and jobs_on(daemon) == [f"pod-{UID_A}", None]
    holds(kubelet)
    assert list(agent.round().ended) == [f"pod-{UID_A}"]


def test_a_gpu_held_by_another_schedulers_job_is_left_to_it(root, daemon, kubelet, api):
    call(resolve_paths(root).socket, "job.start", id="manual-1", gpus=[0])
    api.pods = [FakePod("serving", "llm-0", UID_A, "node-a")]
    holds(kubelet, ("serving", "llm-0", [GPU0, "MIG-0f00"]))
    agent = agent_for(root, kubelet, api)
    report = agent.round()
    assert report.started == {} and "GPUs busy" in report.waiting[0]
    assert jobs_on(daemon) == ["manual-1", None]
    call(resolve_paths(root).socket, "job.end", id="manual-1")
    assert agent.round().started == {f"pod-{UID_A}": [0]}


def test_a_pod_outlives_a_govd_restart_as_its_jobs_next_segment(root, kubelet, api, in_process_daemon):
    api.pods = [FakePod("serving", "llm-0", UID_A, "node-a", {"govd.io/policy": "batch"})]
    holds(kubelet, ("serving", "llm-0", [GPU0]))
    agent = agent_for(root, kubelet, api)
    for expected in (f"pod-{UID_A}", f"pod-{UID_A}.2"):
        run = in_process_daemon(root, trace="training")
        d = run.start(lambda d: d.paths.socket.exists())
        try:
            agent.round()
            assert jobs_on(d) == [expected, None] and d.workers[0].policy.name == "batch"
        finally:
            run.stop()
    assert agent.round().skipped == "govd is not running"
    assert job_uid(f"pod-{UID_A}.2") == UID_A and job_uid("4711") is None


def test_unannotated_pods_can_be_left_out(root, daemon, kubelet, api):
    api.pods = [FakePod("serving", "llm-0", UID_A, "node-a"),
                FakePod("serving", "llm-1", UID_C, "node-a", {"govd.io/policy": "batch"})]
    holds(kubelet, ("serving", "llm-0", [GPU0]), ("serving", "llm-1", [GPU1]))
    agent_for(root, kubelet, api, all_gpu_pods=False).round()
    assert jobs_on(daemon) == [None, f"pod-{UID_C}"]


# ----- settings and the command --------------------------------------------------------------------
def test_settings_errors_name_the_key_and_what_is_allowed(root):
    site = root / "kubernetes.toml"
    for text, match in (('resource_names = "nvidia.com/gpu"\n', "resource_names: must be a non-empty list of strings"),
                        ("interval_s = 0\n", "interval_s"),
                        ('[namespace.capped]\nallowed = "batch"\n', "namespace.capped.allowed"),
                        ('annotaton = "x"\n', "annotation")):  # a typo: the nearest key is named
        site.write_text(text)
        with pytest.raises(ConfigError, match=match):
            AgentSettings.load(site)
    site.write_text('resource_names = ["nvidia.com/gpu", "nvidia.com/mig-1g.10gb"]\nallowed = ["batch"]\n'
                    '[namespace.research]\nallowed = ["batch", "max-savings"]\n')
    s = AgentSettings.load(site)
    assert s.resource_names == ("nvidia.com/gpu", "nvidia.com/mig-1g.10gb")
    assert s.policies.allows("max-savings", "research") and not s.policies.allows("max-savings", "serving")
    assert AgentSettings.load(root / "absent.toml") == AgentSettings()


def test_the_command_runs_a_round_from_its_site_file(root, daemon, kubelet, api, capsys):
    api.pods = [FakePod("serving", "llm-0", UID_A, "node-a", {"govd.io/policy": "batch"})]
    holds(kubelet, ("serving", "llm-0", [GPU0]))
    site = root / "kubernetes.toml"
    site.write_text("\n".join(f'{k} = "{v}"' for k, v in {
        "socket": resolve_paths(root).socket, "pod_resources_socket": kubelet.path, "api_server": api.url,
        "token_file": root / "token", "node_name": "node-a"}.items()) + "\n")
    assert main(["--site", str(site), "--once"]) == 0
    assert jobs_on(daemon) == [f"pod-{UID_A}", None]
    site.write_text('node_name = ""\n')
    assert main(["--site", str(site), "--once"]) == 2
    assert "no node name" in capsys.readouterr().err
