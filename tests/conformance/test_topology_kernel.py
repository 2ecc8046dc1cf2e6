"""The virtual cluster on the real kernel: pods that come and go never cut the others off,
a killed run's namespaces are removed by the next sweep, and the barrier makes probes right."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.backends.netns import NetnsBackend
from conformance.netns.topology import STATE_ROOT, Topology, ip
from conformance.runner import Runner, RunOptions
from conformance.scenario import load_scenarios
from kube.model import ContainerPort, PortSpec

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
HTTP = (ContainerPort(80, "TCP"),)
P80 = PortSpec(80, "TCP")


def test_pods_keep_their_gateway_when_the_pod_with_the_lowest_mac_leaves():
    # A bridge without an address of its own takes the lowest of its ports' addresses, and
    # changes it when that port goes: the other pods' ARP entries for the gateway go stale.
    with Topology() as topo:
        node = topo.add_node("n1")
        topo.add_pod("n1", "x/a", "10.244.9.1", HTTP)
        topo.add_pod("n1", "x/b", "10.244.9.2", HTTP)
        c = topo.add_pod("n1", "x/c", "10.244.9.3", HTTP)
        ip("-n", node.netns, "link", "set", c.veth, "address", "02:00:00:00:00:01")
        assert topo.probe("x/a", "10.244.9.2", P80) and topo.probe("x/b", "10.244.9.1", P80)
        topo.remove_pod("x/c")
        deadline = time.monotonic() + 10
        while ip("-n", node.netns, "link", "show", c.veth, check=False).returncode == 0:  # goes asynchronously
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert topo.probe("x/a", "10.244.9.2", P80, timeout=1.0)
        assert topo.probe("x/b", "10.244.9.1", P80, timeout=1.0)


def test_a_new_pod_on_a_removed_pods_address_is_reachable_at_once():
    # The node's neighbour entry still holds the removed pod's MAC address.
    with Topology() as topo:
        topo.add_node("n1")
        topo.add_pod("n1", "x/a", "10.244.9.1", HTTP)
        topo.add_pod("n1", "x/b", "10.244.9.2", HTTP)
        assert topo.probe("x/a", "10.244.9.2", P80)
        topo.remove_pod("x/b")
        topo.add_pod("n1", "x/b-again", "10.244.9.2", HTTP)
        assert topo.probe("x/a", "10.244.9.2", P80, timeout=1.0)
        assert topo.probe("x/b-again", "10.244.9.1", P80, timeout=1.0)


def test_probes_agree_at_the_first_attempt_once_the_barrier_passed():
    # No retry: every probe is made once, right after the barrier. Pods are recreated on the
    # addresses of earlier ones, labels change (ipset members a daemon adds after its rules).
    names = ("policy-updated-in-place", "pods-added-and-deleted", "label-changes")
    scenarios, errors = load_scenarios([str(ROOT / "scenarios" / "extra" / f"{n}.yaml") for n in names])
    assert not errors
    backend = NetnsBackend()
    try:
        results = Runner(backend, RunOptions(converge_timeout=0.001)).run(scenarios)
    finally:
        backend.close()
    wrong = [(sc.name, p.step, p.src, p.dst, str(p.port)) for sc in results for st in sc.steps for p in st.mismatches]
    assert not wrong
    assert sum(len(st.probes) for sc in results for st in sc.steps) > 500


def _namespaces(prefix: str) -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip() and line.startswith(prefix)}


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has stopped; only its parent may not have reaped it yet


def test_a_killed_run_leaves_namespaces_that_cleanup_removes():
    proc = subprocess.Popen(
        [sys.executable, "-m", "conformance.cli", "run", "-f", str(ROOT / "scenarios" / "upstream"), "--tag", "tcp"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prefix = f"npm{proc.pid % 0xFFFF:04x}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_namespaces(prefix)) < 6:  # fabric, nodes, some pods
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)  # no handler, no finally: everything stays
    proc.wait()
    left = _namespaces(prefix)
    pids = {int(p) for n in left for p in ip("netns", "pids", n, check=False).stdout.split()}
    assert left and pids, "the killed run left nothing to clean up"
    out = subprocess.run(
        [sys.executable, "-m", "conformance.cli", "cleanup"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert not _namespaces(prefix)
    assert not [p for p in pids if _running(p)], "daemons or agents of the killed run still run"
    assert not (STATE_ROOT.is_dir() and any(d.name.startswith(prefix) for d in STATE_ROOT.iterdir()))
