"""End to end: ``azure-npm start`` in a virtual node enforces policies on real connections.

The daemon runs as a subprocess inside the node's network namespace with the real
Enforcer; objects come from a manifest directory or from the test API server (listening
inside the node namespace, reached through a kubeconfig). Its HTTP endpoints are scraped
from inside the node namespace.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube.model import ContainerPort, PortSpec
from tests.daemon import objects as o
from tests.daemon.apiserver import ApiServer

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
TCP80 = PortSpec(80, "TCP")
LISTEN = "127.0.0.1:10091"
PODS = [("x", "web", "10.1.0.2", {"app": "web"}), ("x", "client", "10.1.0.3", {"app": "client"}),
        ("y", "client", "10.1.0.4", {"app": "client"})]
ALLOW_CLIENTS_IN_X = o.policy("x", "allow-client", {
    "podSelector": {"matchLabels": {"app": "web"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]}],
})


def base_objects() -> list[dict[str, Any]]:
    objs = [o.namespace("x"), o.namespace("y")]
    objs += [o.pod(ns, name, ip, node="n1", **labels) for ns, name, ip, labels in PODS]
    return objs


@contextlib.contextmanager
def daemon_node() -> Iterator[Any]:
    """Node n1 with PODS, each serving TCP 80 (the daemon and image tests' virtual node)."""
    from conformance.netns.topology import Topology

    with Topology() as topo:
        topo.add_node("n1")
        for ns, name, ip, _labels in PODS:
            topo.add_pod("n1", f"{ns}/{name}", ip, (ContainerPort(80),), wait=False)
        topo.wait_ready([f"{ns}/{name}" for ns, name, _ip, _l in PODS])
        yield topo


@pytest.fixture
def node() -> Iterator[Any]:
    with daemon_node() as topo:
        yield topo


def start_daemon(topo: Any, *args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [
        sys.executable, "-m", "npm.cli", "start", "--node-name", "n1", "--listen", LISTEN,
        "--debug-listen", "127.0.0.1:10093", "--coalesce-window", "0.05", "--poll-interval", "0.1", *args]
    with open(log, "ab") as fh:
        return topo.node_popen("n1", argv, env=env, stdout=fh, stderr=subprocess.STDOUT)


def http_get(topo: Any, path: str, address: str = LISTEN) -> tuple[int, str]:
    """GET from inside the node namespace (where the daemon listens)."""
    code = (
        "import sys,urllib.request,urllib.error\n"
        f"try:\n r=urllib.request.urlopen('http://{address}{path}',timeout=3)\n"
        " print(r.status); print(r.read().decode())\n"
        "except urllib.error.HTTPError as e: print(e.code); print(e.read().decode())\n"
        "except OSError as e: print(0); print(e)\n"
    )
    proc = topo.node_run("n1", [sys.executable, "-c", code], timeout=30)
    status, _, body = proc.stdout.partition("\n")
    return int(status or 0), body


def wait_until(condition: Any, timeout: float, what: str, log: Path | None = None) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise AssertionError(f"{what} not within {timeout}s\n{tail}")
        time.sleep(0.05)
    return time.monotonic() - started


def reach(topo: Any, src: str, dst_ip: str) -> bool | None:
    return topo.probe(src, dst_ip, TCP80, 0.5)


def write(directory: Path, name: str, *docs: dict[str, Any]) -> None:
    tmp = directory / f".{name}.tmp"
    tmp.write_text(yaml.safe_dump_all(list(docs)))
    os.replace(tmp, directory / name)


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def metric(body: str, name: str) -> float:
    for line in body.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_manifest_daemon_enforces_follows_changes_and_survives_restarts(node, tmp_path):
    topo = node
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    log = tmp_path / "daemon.log"
    write(manifests, "base.yaml", *base_objects())
    web = "10.1.0.2"
    assert reach(topo, "y/client", web) is True  # nothing enforced yet

    daemon = start_daemon(topo, "--manifests", str(manifests), log=log)
    wait_until(lambda: http_get(topo, "/readyz")[0] == 200, 30, "ready", log)
    assert http_get(topo, "/healthz")[0] == 200
    assert reach(topo, "y/client", web) is True

    write(manifests, "policy.yaml", ALLOW_CLIENTS_IN_X)
    # Latency is a benchmark figure (benchmarks/daemon_bench.py); here only that it happens.
    wait_until(lambda: reach(topo, "y/client", web) is False, 10, "the policy enforced", log)
    assert reach(topo, "x/client", web) is True

    status, body = http_get(topo, "/metrics")
    assert status == 200
    assert metric(body, "npm_num_policies") == 1
    assert metric(body, "npm_num_iptables_rules") > 0 and metric(body, "npm_num_ipsets") > 0
    assert metric(body, "npm_pods_watched") == 3
    assert metric(body, "npm_policy_enforcement_latency_seconds_count") >= 1
    assert metric(body, "npm_linux_iptables_restore_latency_seconds_count") >= 1
    dump = json.loads(http_get(topo, "/npm/v1/debug/manager", "127.0.0.1:10093")[1])
    assert [p["name"] for p in dump["policies"]] == ["allow-client"]

    # Restart with continuous probing: the denied connection must never get through.
    admitted: list[float] = []
    probing = threading.Event()

    def probe_forever() -> None:
        while not probing.is_set():
            if reach(topo, "y/client", web):
                admitted.append(time.monotonic())

    prober = threading.Thread(target=probe_forever)
    prober.start()
    try:
        assert stop(daemon) == 0
        time.sleep(0.5)  # rules stay in place while no daemon runs
        daemon = start_daemon(topo, "--manifests", str(manifests), log=log)
        wait_until(lambda: http_get(topo, "/readyz")[0] == 200, 30, "ready after restart", log)
        time.sleep(0.5)
    finally:
        probing.set()
        prober.join()
    assert admitted == [], "a connection that must be denied was admitted during the restart"
    assert reach(topo, "x/client", web) is True

    # Deleting the file lifts the policy.
    os.unlink(manifests / "policy.yaml")
    wait_until(lambda: reach(topo, "y/client", web) is True, 5, "the policy removed", log)

    # --cleanup-on-exit removes everything; a plain stop leaves rules in place.
    write(manifests, "policy.yaml", ALLOW_CLIENTS_IN_X)
    wait_until(lambda: reach(topo, "y/client", web) is False, 5, "the policy enforced again", log)
    assert stop(daemon) == 0
    daemon = start_daemon(topo, "--manifests", str(manifests), "--cleanup-on-exit", log=log)
    wait_until(lambda: http_get(topo, "/readyz")[0] == 200, 30, "ready", log)
    assert reach(topo, "y/client", web) is False
    assert stop(daemon) == 0
    assert reach(topo, "y/client", web) is True
    from npm.dataplane.names import CHAIN_PREFIX, SET_PREFIX

    saved = topo.node_run("n1", ["iptables-save", "-t", "filter"]).stdout
    assert CHAIN_PREFIX not in saved
    assert SET_PREFIX not in topo.node_run("n1", ["ipset", "list", "-n"]).stdout


def test_api_server_daemon_enforces_and_drops_policies_deleted_while_it_was_down(node, tmp_path):
    topo = node
    log = tmp_path / "daemon.log"
    web = "10.1.0.2"
    server = ApiServer(bookmark_interval=0.5, netns=topo.nodes["n1"].netns).start()
    try:
        for obj in base_objects():
            server.put(obj)
        kubeconfig = server.kubeconfig(str(tmp_path / "kubeconfig"))
        daemon = start_daemon(topo, "--kubeconfig", kubeconfig, log=log)
        wait_until(lambda: http_get(topo, "/readyz")[0] == 200, 30, "ready", log)
        assert reach(topo, "y/client", web) is True

        server.put(ALLOW_CLIENTS_IN_X)
        wait_until(lambda: reach(topo, "y/client", web) is False, 5, "the policy enforced", log)
        assert reach(topo, "x/client", web) is True

        # A label change on the client moves it out of the allowed set.
        server.put(o.pod("x", "client", "10.1.0.3", node="n1", app="other"))
        wait_until(lambda: reach(topo, "x/client", web) is False, 5, "the pod update enforced", log)
        server.put(o.pod("x", "client", "10.1.0.3", node="n1", app="client"))
        wait_until(lambda: reach(topo, "x/client", web) is True, 5, "the pod update enforced", log)

        # A ClusterNetworkPolicy in the Admin tier overrides the NetworkPolicy; deleting it restores it.
        y_in = {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}
        server.put(o.cluster_network_policy("let-y-in", ingress=[{"action": "Accept", "from": [y_in]}]))
        wait_until(lambda: reach(topo, "y/client", web) is True, 5, "the Admin tier enforced", log)
        assert metric(http_get(topo, "/metrics")[1], 'npm_cluster_policies{tier="Admin"}') == 1
        server.delete("ClusterNetworkPolicy", "let-y-in")
        wait_until(lambda: reach(topo, "y/client", web) is False, 5, "the Admin tier lifted", log)

        # The API server restarts and loses its history while the policy is deleted:
        # the daemon gets 410 Gone, lists again and removes the rules of the vanished policy.
        server.stop()
        server.delete("NetworkPolicy", "allow-client", "x")
        server.compact()
        server.start()
        wait_until(lambda: reach(topo, "y/client", web) is True, 15, "the deleted policy removed", log)

        # The daemon is down while a policy is created and deleted again, and another added.
        assert stop(daemon) == 0
        server.put(o.deny_all("x", "short-lived"))
        server.delete("NetworkPolicy", "short-lived", "x")
        server.put(ALLOW_CLIENTS_IN_X)
        daemon = start_daemon(topo, "--kubeconfig", kubeconfig, log=log)
        wait_until(lambda: http_get(topo, "/readyz")[0] == 200, 30, "ready after restart", log)
        wait_until(lambda: reach(topo, "y/client", web) is False, 5, "the new policy enforced", log)
        assert reach(topo, "x/client", web) is True
        status, body = http_get(topo, "/metrics")
        assert status == 200 and metric(body, "npm_num_policies") == 1
        assert stop(daemon) == 0
    finally:
        server.stop()


def test_sighup_and_the_periodic_reconcile_repair_drift_in_the_kernel(node, tmp_path):
    topo = node
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    log = tmp_path / "daemon.log"
    write(manifests, "base.yaml", *base_objects(), ALLOW_CLIENTS_IN_X)
    web = "10.1.0.2"
    daemon = start_daemon(topo, "--manifests", str(manifests), log=log)
    try:
        wait_until(lambda: reach(topo, "y/client", web) is False, 30, "the policy enforced", log)
        # Someone flushes FORWARD (our jump goes with it): traffic is no longer filtered.
        assert topo.node_run("n1", ["iptables", "-F", "FORWARD"]).returncode == 0
        assert reach(topo, "y/client", web) is True
        daemon.send_signal(signal.SIGHUP)
        wait_until(lambda: reach(topo, "y/client", web) is False, 10, "SIGHUP reconcile", log)
        assert "repaired drift" in log.read_text()
    finally:
        assert stop(daemon) == 0
    daemon = start_daemon(topo, "--manifests", str(manifests), "--reconcile-interval", "0.5", log=log)
    try:
        wait_until(lambda: http_get(topo, "/readyz")[0] == 200, 30, "ready", log)
        assert topo.node_run("n1", ["iptables", "-F", "FORWARD"]).returncode == 0
        wait_until(lambda: reach(topo, "y/client", web) is False, 5, "periodic reconcile", log)
    finally:
        assert stop(daemon) == 0


def test_debug_verify_checks_the_kernel_reports_drift_and_the_reconcile_it_asks_for_repairs_it(node, tmp_path):
    topo = node
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    log = tmp_path / "daemon.log"
    write(manifests, "base.yaml", *base_objects(), ALLOW_CLIENTS_IN_X)
    web = "10.1.0.2"
    daemon = start_daemon(topo, "--manifests", str(manifests), log=log)
    debug = "127.0.0.1:10093"
    try:
        wait_until(lambda: reach(topo, "y/client", web) is False, 30, "the policy enforced", log)
        status, body = http_get(topo, "/npm/v1/debug/verify", debug)
        report = json.loads(body)
        assert status == 200 and report["agrees"] and report["connections"] > 0, body
        # Someone flushes FORWARD (our jump goes with it): the kernel no longer means the policies.
        assert topo.node_run("n1", ["iptables", "-F", "FORWARD"]).returncode == 0
        status, body = http_get(topo, "/npm/v1/debug/verify", debug)
        report = json.loads(body)
        assert status == 409 and not report["agrees"], body
        flows = {(m["src"], m["dst"], m["kernel"], m["policy"]) for m in report["mismatches"]}
        assert ("y/client", "x/web", "allowed", "denied") in flows
        assert metric(http_get(topo, "/metrics")[1], "npm_verify_mismatches") >= 1
        assert "VerifyMismatch" in log.read_text()
        # The check asked for a reconcile, which puts the rules back.
        wait_until(lambda: reach(topo, "y/client", web) is False, 10, "the reconcile verify asked for", log)
        status, body = http_get(topo, "/npm/v1/debug/verify", debug)
        assert status == 200 and json.loads(body)["agrees"], body
        assert metric(http_get(topo, "/metrics")[1], "npm_verify_mismatches") == 0
    finally:
        assert stop(daemon) == 0
