"""deploy/kubernetes: every manifest validates strictly against two Kubernetes versions, the ConfigMap
holds a config and policy govd accepts, and the DaemonSet asks for what the issue lists. No cluster
runs here (docs/deploy.md says what was and was not tested)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from governor.config import load_config
from governor.policy import policy_from_dict
from governor.tomlfile import read_toml

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
CORE = ["namespace.yaml", "rbac.yaml", "configmap.yaml", "daemonset.yaml", "service.yaml"]
VERSIONS = ["1.29.0", "1.33.0"]
need_validator = pytest.mark.skipif(shutil.which("kubernetes-validate") is None
                                    and not os.environ.get("GOVD_TESTS_REQUIRE_REAL"),
                                    reason="kubernetes-validate is not installed (pip install '.[test]')")


def load(name):
    return yaml.safe_load((DEPLOY / name).read_text())


@need_validator
@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_validate_strictly(version):
    r = subprocess.run(["kubernetes-validate", "--strict", "-k", version, *CORE], cwd=DEPLOY,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    documents = sum(len([d for d in yaml.safe_load_all((DEPLOY / f).read_text()) if d]) for f in CORE)
    assert r.stdout.count("passed") == documents, r.stdout


def test_the_configmap_holds_a_config_and_a_policy_govd_accepts(tmp_path):
    data = load("configmap.yaml")["data"]
    (tmp_path / "govd.toml").write_text(data["govd.toml"])
    config = load_config(tmp_path / "govd.toml")
    assert config.values["metrics"]["listen"] == "0.0.0.0:9477"
    (tmp_path / "batch-capped.toml").write_text(data["batch-capped.toml"])
    policy = policy_from_dict(read_toml(tmp_path / "batch-capped.toml"), "configmap:batch-capped.toml")
    assert policy.params["bound"] == "time" and policy.bounds["power_limit_max_w"] == 600.0


def test_the_daemonset_runs_where_gpus_are_with_what_it_needs():
    ds = load("daemonset.yaml")
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["priorityClassName"] == "system-node-critical"
    c, agent = pod["containers"]
    assert c["securityContext"]["privileged"] is True
    assert c["lifecycle"]["preStop"]["exec"]["command"] == ["govctl", "pause"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for path in ("/run/govd", "/var/lib/govd"):
        assert volumes[mounts[path]["name"]]["hostPath"]["path"] == path
    config_items = {i["path"] for i in volumes["config"]["configMap"]["items"]}
    assert config_items == {"govd.toml", "policies/batch-capped.toml", "kubernetes.toml"}
    # the per-pod agent: the kubelet's socket read-only, govd's socket, its node's name
    assert agent["command"] == ["govd-k8s"] and "privileged" not in agent.get("securityContext", {})
    agent_mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
    kubelet = agent_mounts["/var/lib/kubelet/pod-resources"]
    assert kubelet["readOnly"] is True
    assert volumes[kubelet["name"]]["hostPath"]["path"] == "/var/lib/kubelet/pod-resources"
    assert agent_mounts["/run/govd"]["name"] == mounts["/run/govd"]["name"]
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert env["GOVD_K8S_SITE"]["value"] == "/etc/govd/kubernetes.toml"
    assert pod["serviceAccountName"] == "govd"


def test_rbac_reads_pods_and_creates_events_and_nothing_more():
    account, role, binding = yaml.safe_load_all((DEPLOY / "rbac.yaml").read_text())
    assert [(r["resources"], sorted(r["verbs"])) for r in role["rules"]] == [
        (["pods"], ["get", "list", "watch"]), (["events"], ["create"])]
    assert all(r["apiGroups"] == [""] for r in role["rules"])
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"],
                                    "namespace": account["metadata"]["namespace"]}]
    assert load("daemonset.yaml")["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_the_configmaps_agent_settings_load(tmp_path):
    from governor.k8s.agent import AgentSettings

    (tmp_path / "kubernetes.toml").write_text(load("configmap.yaml")["data"]["kubernetes.toml"])
    s = AgentSettings.load(tmp_path / "kubernetes.toml")
    assert s.policies.allows("batch", "research") and not s.policies.allows("batch", "serving")


def test_the_service_monitor_scrapes_the_services_port():
    svc, sm = load("service.yaml"), load("servicemonitor.yaml")
    assert sm["kind"] == "ServiceMonitor" and sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["endpoints"][0]["port"] in {p["name"] for p in svc["spec"]["ports"]}
    ds = load("daemonset.yaml")
    assert svc["spec"]["selector"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
