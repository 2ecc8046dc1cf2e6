"""End to end on the real kernel: network namespaces, the real daemon, real connections."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.backends.netns import NetnsBackend
from conformance.report import table_report
from conformance.runner import Runner, RunOptions
from conformance.scenario import load_scenarios

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
UPSTREAM = ROOT / "scenarios" / "upstream"
WITHIN_NS = UPSTREAM / "should-enforce-policy-to-allow-traffic-from-pods-within-server-namespace-based-on-podselec.yaml"
UPDATED = UPSTREAM / "should-enforce-updated-policy.yaml"


def _cli(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[arg-type]
    )


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_two_scenarios_pass_end_to_end_with_json_report(tmp_path):
    proc = _cli("run", "-f", str(WITHIN_NS), "-f", str(UPDATED), "-o", "json", "-q", "--out", str(tmp_path))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    doc = json.loads(out)
    assert [s["name"] for s in doc["scenarios"]] == [
        "should enforce policy to allow traffic from pods within server namespace based on PodSelector",
        "should enforce updated policy",
    ]
    within, updated = doc["scenarios"]
    assert len(within["results"]) == 81 and len(updated["results"]) == 162  # 9 x 9 per step, self included
    for sc in doc["scenarios"]:
        for r in sc["results"]:
            assert r["observed"] == r["predicted"] or r["src"] == r["dst"], r
    denied = {(r["src"], r["dst"]) for r in within["results"] if not r["observed"]}
    assert ("x/b", "x/a") not in denied and ("x/c", "x/a") in denied and ("y/a", "x/a") in denied
    step1 = [r for r in updated["results"] if r["step"] == 1 and r["dst"].startswith("x/") and r["src"] != r["dst"]]
    assert step1 and not any(r["observed"] for r in step1)  # the update to deny-all took effect
    assert (tmp_path / "report.json").exists() and (tmp_path / "junit.xml").exists()
    assert "2 scenarios (2 passed, 0 failed)" in err


def _tamper(node: str, docs: list[dict]) -> list[dict]:
    """The daemons get x-a-allows-x-b allowing pod=c instead of pod=b; the simulator does not."""
    out = []
    for doc in docs:
        if doc.get("kind") == "NetworkPolicy" and doc["metadata"]["name"] == "x-a-allows-x-b":
            doc = json.loads(json.dumps(doc))
            doc["spec"]["ingress"][0]["from"][0]["podSelector"] = {"matchLabels": {"pod": "c"}}
        out.append(doc)
    return out


def test_broken_enforcer_fails_the_scenario_with_a_readable_truth_table():
    scenarios, errors = load_scenarios([str(WITHIN_NS)])
    assert not errors
    backend = NetnsBackend(manifest_filter=_tamper)
    try:
        results = Runner(backend, RunOptions(converge_timeout=2.0, retry_interval=0.5)).run(scenarios)
    finally:
        backend.close()
    (sc,) = results
    assert not sc.passed
    wrong = {(p.src, p.dst, p.predicted, p.observed) for p in sc.steps[0].mismatches}
    assert wrong == {("x/b", "x/a", True, False), ("x/c", "x/a", False, True)}
    text = table_report(results)
    assert "FAIL should enforce policy to allow traffic from pods within server namespace" in text
    assert "correct 79, incorrect 2" in text
    lines = text.splitlines()
    comparison = lines[lines.index("  comparison ('.' agrees, 'X' differs):") + 1 :][:10]
    assert comparison[0].split("\t") == ["    -", "x/a", "x/b", "x/c", "y/a", "y/b", "y/c", "z/a", "z/b", "z/c"]
    assert comparison[2].split("\t")[:2] == ["    x/b", "X"] and comparison[3].split("\t")[:2] == ["    x/c", "X"]
    assert comparison[1].split("\t")[1:] == ["."] * 9
    # The daemons enforce exactly what they were given: the kernel agrees with that input.
    assert sc.steps[0].verify and all(v.agrees for v in sc.steps[0].verify)


def test_a_rule_deleted_on_a_node_fails_the_step_through_verify():
    scenarios, errors = load_scenarios([str(WITHIN_NS)])
    assert not errors
    backend = NetnsBackend()

    class DeleteAfterSync:
        """The backend, with an allow rule deleted on node-1 once the policies are in."""

        name, default_probe_timeout = backend.name, backend.default_probe_timeout

        def __getattr__(self, attr: str):  # type: ignore[no-untyped-def]
            return getattr(backend, attr)

        def sync_policies(self, cluster, manifests) -> None:  # type: ignore[no-untyped-def]
            backend.sync_policies(cluster, manifests)
            saved = backend.topology.node_run("node-1", ["iptables-nft-save", "-t", "filter"]).stdout
            rule = next(x for x in saved.splitlines() if x.startswith("-A ") and "x-a-allows-x-b ingress[0]" in x)
            assert backend.topology.node_run("node-1", ["sh", "-c", "iptables-nft -D " + rule[3:]]).returncode == 0

    try:
        (sc,) = Runner(DeleteAfterSync(), RunOptions(converge_timeout=1.0, retry_interval=0.5)).run(scenarios)
    finally:
        backend.close()
    assert not sc.passed
    failing = sc.steps[0].verify_failures
    assert [v.node for v in failing] == ["node-1"] and failing[0].mismatched >= 1
    assert "MISMATCH x/b -> x/a" in failing[0].detail and "kernel denied, policies allowed" in failing[0].detail
    assert "verify node-1: the kernel DISAGREES" in table_report([sc])


def test_interrupt_removes_everything_it_created():
    before = _namespaces()
    proc = _cli("run", "-f", str(UPSTREAM), "--tag", "tcp")
    prefix = f"npm{proc.pid % 0xFFFF:04x}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(n.startswith(prefix) for n in _namespaces()):
        time.sleep(0.2)
    time.sleep(2)  # in the middle of creating pods or probing
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; cleaning up" in err
    assert not {n for n in _namespaces() - before if n.startswith(prefix)}
    state = Path("/run/npm-netns")
    assert not (state.is_dir() and any(p.name.startswith(prefix) for p in state.iterdir()))


CNP_HANDED_OVER = """\
name: cnp handed over
nodes: {node-1: {zone: a}, node-2: {}}
namespaces: {x: {}, y: {}}
pods:
  - {namespace: x, name: a, node: node-1, ports: [80/TCP]}
  - {namespace: y, name: b, node: node-2, ports: [80/TCP]}
policies:
  - kind: ClusterNetworkPolicy
    metadata: {name: every-namespace}
    spec:
      tier: Admin
      priority: 5
      subject: {namespaces: {}}
      ingress: [{action: Deny, from: [{namespaces: {}}]}]
      egress: [{action: Deny, to: [{networks: ["${net y/b 32}"]}]}]
  - kind: ClusterNetworkPolicy
    metadata: {name: baseline-every-namespace}
    spec:
      tier: Baseline
      priority: 5
      subject: {namespaces: {}}
      egress: [{action: Deny, to: [{networks: ["0.0.0.0/0"]}]}]
"""


def test_daemons_are_handed_cluster_network_policies_node_labels_and_a_barrier_they_cannot_close(tmp_path):
    # A ClusterNetworkPolicy whose subject is every namespace covers the barrier's namespace
    # too: the barrier's own Admin policy leaves its traffic to the barrier NetworkPolicy, and
    # the barrier is seen enforced on every write.
    path = tmp_path / "cnp.yaml"
    path.write_text(CNP_HANDED_OVER)
    scenarios, errors = load_scenarios([str(path)])
    assert not errors
    handed: dict[str, list[dict]] = {}

    def capture(node: str, docs: list[dict]) -> list[dict]:
        handed[node] = docs
        return docs

    backend = NetnsBackend(manifest_filter=capture)
    try:
        Runner(backend, RunOptions(converge_timeout=1.0, retry_interval=0.5)).run(scenarios)
        ips = {key: pod.ip for key, pod in backend.topology.pods.items()}
        assert backend._barrier_ok >= 2 and backend._barrier_failed == 0
    finally:
        backend.close()
    assert sorted(handed) == ["node-1", "node-2"]
    docs = handed["node-1"]
    cnps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterNetworkPolicy"}
    assert sorted(cnps) == ["0-npm-conformance-barrier", "baseline-every-namespace", "every-namespace"]
    assert cnps["every-namespace"]["spec"]["egress"][0]["to"][0]["networks"] == [f"{ips['y/b']}/32"]
    barrier = cnps["0-npm-conformance-barrier"]["spec"]
    assert barrier["tier"] == "Admin" and barrier["priority"] == 0
    assert [r["action"] for r in barrier["ingress"]] == ["Pass"]  # on to the barrier NetworkPolicy
    assert [r["action"] for r in barrier["egress"]] == ["Accept"]  # never left to a Baseline policy
    nodes = {d["metadata"]["name"]: d["metadata"]["labels"] for d in docs if d["kind"] == "Node"}
    assert nodes == {
        "node-1": {"kubernetes.io/hostname": "node-1", "kubernetes.io/os": "linux", "zone": "a"},
        "node-2": {"kubernetes.io/hostname": "node-2", "kubernetes.io/os": "linux"},
    }
