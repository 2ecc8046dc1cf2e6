"""azure-npm verify on the real kernel: agreement after apply, and a rule deleted by hand caught."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kube import manifests as m
from tests.dataplane.helpers import pod, web_ports, world

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]

OBJECTS = [
    m.namespace("x"), m.namespace("y", {"team": "b"}),
    m.pod("x", "web", {"app": "web"}, ip="10.1.0.2", node="n1", ports=[m.container_port(80, name="http")]),
    m.pod("x", "db", {"app": "db"}, ip="10.1.0.3", node="n1", ports=[m.container_port(5432)]),
    m.pod("y", "client", {"app": "client"}, ip="10.1.0.4", node="n1", ports=[m.container_port(80)]),
    m.policy("x", "web-from-b", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}], "ports": [{"port": "http"}]}]}),
    m.policy("x", "db-from-web", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}},
                                                         {"ipBlock": {"cidr": "192.0.2.0/24",
                                                                      "except": ["192.0.2.128/25"]}}]}]}),
]


def _cli(w, *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    return subprocess.run([*w.topo.node_runner("n1"), sys.executable, "-m", "npm.cli", *args], capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)


def test_verify_agrees_after_apply_and_names_the_flows_a_deleted_rule_opens_or_closes(tmp_path: Path) -> None:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(OBJECTS))
    pods = [pod("x/web", "10.1.0.2", {"app": "web"}, ports=web_ports()),
            pod("x/db", "10.1.0.3", {"app": "db"}, ports=web_ports()),
            pod("y/client", "10.1.0.4", {"app": "client"}, ports=web_ports())]
    with world(pods) as w:
        applied = _cli(w, "apply", "-f", str(path), "--node-name", "n1")
        assert applied.returncode == 0, applied.stderr
        ok = _cli(w, "verify", "-f", str(path), "--node-name", "n1", "-o", "json")
        assert ok.returncode == 0, ok.stdout + ok.stderr
        report = json.loads(ok.stdout)
        assert report["agrees"] and report["connections"] > 20 and report["evaluations"] > 5
        # An operator deletes the rule that lets team b in, by hand.
        saved = w.topo.node_run("n1", ["iptables-nft-save", "-t", "filter"]).stdout
        (line,) = [x for x in saved.splitlines() if x.startswith("-A ") and "x/web-from-b ingress[0]" in x]
        deleted = w.topo.node_run("n1", ["sh", "-c", "iptables-nft -D " + line[3:]])
        assert deleted.returncode == 0, deleted.stderr
        caught = _cli(w, "verify", "-f", str(path), "--node-name", "n1", "-o", "json")
        assert caught.returncode == 1, caught.stdout + caught.stderr
        mismatches = json.loads(caught.stdout)["mismatches"]
        assert [(x["src"], x["dst"], x["port"], x["kernel"], x["policy"]) for x in mismatches] == [
            ("y/client", "x/web", 80, "denied", "allowed")]
        assert "x/web-from-b" in mismatches[0]["because"]
        text = _cli(w, "verify", "-f", str(path), "--node-name", "n1")
        assert text.returncode == 1
        assert "MISMATCH y/client -> x/web 80/TCP: kernel denied, policies allowed" in text.stdout
        # the reconcile repairs it, and verify agrees again
        assert _cli(w, "apply", "-f", str(path), "--node-name", "n1").returncode == 0
        assert _cli(w, "verify", "-f", str(path), "--node-name", "n1").returncode == 0


def test_verify_with_bad_input_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: {nodeName: 3}\n")
    proc = subprocess.run([sys.executable, "-m", "npm.cli", "verify", "-f", str(path), "--node-name", "n1",
                           "-i", "/dev/null", "-c", "/dev/null"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
    assert proc.returncode == 2 and "invalid object" in proc.stderr and "Traceback" not in proc.stderr
