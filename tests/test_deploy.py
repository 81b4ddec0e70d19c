"""The shipped Prometheus rules and Grafana dashboard: checked and unit-tested by promtool, and
referring only to metrics govd serves or rules it ships."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
DOCS = Path(__file__).resolve().parent.parent / "docs"
need_promtool = pytest.mark.skipif(shutil.which("promtool") is None and not os.environ.get("GOVD_TESTS_REQUIRE_REAL"),
                                   reason="promtool is not installed (Debian package prometheus)")


@need_promtool
def test_promtool_checks_the_rules():
    r = subprocess.run(["promtool", "check", "rules", "govd-rules.yml"], cwd=DEPLOY / "prometheus",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


@need_promtool
def test_promtool_unit_tests_of_the_rules_pass():
    r = subprocess.run(["promtool", "test", "rules", "govd-rules.test.yml"], cwd=DEPLOY / "prometheus",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def known_names() -> set[str]:
    table = (DOCS / "metrics.md").read_text().split("<!-- begin: metrics -->", 1)[1].split("<!-- end: metrics", 1)[0]
    metrics = set(re.findall(r"^\| `(govd_\w+)`", table, re.M))
    metrics |= {m + suffix for m in metrics if m.endswith("_seconds") for suffix in ("_bucket", "_sum", "_count")}
    rules = set(re.findall(r"record: (\S+)", (DEPLOY / "prometheus" / "govd-rules.yml").read_text()))
    return metrics | rules


def test_the_dashboard_uses_only_served_metrics_and_shipped_rules():
    dash = json.loads((DEPLOY / "grafana" / "govd-dashboard.json").read_text())
    names = known_names()
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs
    for expr in exprs:
        used = set(re.findall(r"\b((?:govd|gpu:govd|node:govd|job:govd)[\w:]*)", expr))
        assert used and used <= names, (expr, used - names)
    rules_text = (DEPLOY / "prometheus" / "govd-rules.yml").read_text()
    for used in set(re.findall(r"(?<![\w:])(govd_\w+)", rules_text)):
        assert used in names, used
