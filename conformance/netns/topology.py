"""Build a virtual cluster out of network namespaces.

Layout (all names carry a per-run prefix so runs never collide and leftovers can be found):

- a fabric namespace with a bridge joining every node's ``eth0`` (the node network);
- per node, a namespace with ``eth0`` on the fabric (the node IP) and a bridge ``npmbr0``
  for its pods, with bridge netfilter on; pods use ``169.254.1.1`` (the bridge's address)
  as their gateway, so every pod-to-pod packet is routed by the node and crosses its
  FORWARD chain, where the enforcer's rules live; ICMP redirects are off so pods never
  learn to bypass the node. The bridge has a fixed MAC address: a bridge without one takes
  the lowest MAC of its ports, so adding or removing a pod could change it under the other
  pods' ARP entries for the gateway, cutting them off until those entries expire;
- per pod, a namespace with ``eth0`` (a /32 address) on its node's bridge, running the
  agent (``conformance.netns.agent``) that serves the pod's ports and makes probes;
  hostNetwork pods run their agent in the node namespace instead. The node forgets the
  MAC address a former pod had for the new pod's address (see ``add_pod``).

Nodes route other nodes' pod addresses (/32 routes) over the fabric. The harness talks to
agents over unix sockets, never over the network, so policy cannot affect the control path.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from kube.model import ContainerPort, PortSpec

STATE_ROOT = Path(os.environ.get("NPM_NETNS_STATE", "/run/npm-netns"))
GATEWAY = "169.254.1.1"
BRIDGE = "npmbr0"
FABRIC_BRIDGE = "fab0"
_counter = itertools.count()


class TopologyError(RuntimeError):
    """A namespace, link or process of the virtual cluster could not be set up."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip`` with ``args``; raise TopologyError with its stderr on failure."""
    proc = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise TopologyError(f"ip {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def ip_batch(netns: str, commands: Sequence[Sequence[str]]) -> None:
    """Run several ``ip`` commands in ``netns`` with one process; TopologyError on the first failure."""
    script = "".join(" ".join(command) + "\n" for command in commands)
    proc = subprocess.run(["ip", "-n", netns, "-batch", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TopologyError(f"ip -n {netns}: {proc.stderr.strip()} (in: {script.strip()})")


def netns_exec(netns: str) -> list[str]:
    """The command prefix that runs a program inside ``netns``."""
    return ["ip", "netns", "exec", netns]


def _sysctl(netns: str, settings: dict[str, str]) -> None:
    # Written through /proc/sys inside the namespace: one process for all settings.
    script = "".join(f"echo {v} > /proc/sys/{k.replace('.', '/')}\n" for k, v in settings.items())
    proc = subprocess.run([*netns_exec(netns), "sh", "-ec", script], capture_output=True, text=True)
    if proc.returncode != 0:
        raise TopologyError(f"sysctl in {netns}: {proc.stderr.strip()}")


@dataclass
class NodeHandle:
    """A virtual node: its namespace, node IP and pods."""

    name: str
    netns: str
    ip: str
    index: int
    pods: list[str] = field(default_factory=list)

    @property
    def runner_prefix(self) -> list[str]:
        return netns_exec(self.netns)


@dataclass
class PodHandle:
    """A virtual pod: its namespace (the node's for hostNetwork), IP, agent and socket."""

    key: str
    node: str
    netns: str
    ip: str
    host_network: bool
    ports: tuple[ContainerPort, ...]
    socket_path: str
    agent: subprocess.Popen[bytes] | None = None
    veth: str = ""


class Topology:
    """A set of virtual nodes and pods; a context manager that removes all it made."""

    def __init__(self, run_id: str | None = None, *, fabric_cidr: str = "172.18.0.0/16") -> None:
        self.run_id = run_id or f"{os.getpid() % 0xFFFF:04x}{next(_counter):02x}"
        self.prefix = f"npm{self.run_id}"
        self.state_dir = STATE_ROOT / self.prefix
        self.fabric_netns = f"{self.prefix}-fab"
        self._fabric_net = fabric_cidr
        self.nodes: dict[str, NodeHandle] = {}
        self.pods: dict[str, PodHandle] = {}
        self._processes: list[subprocess.Popen[bytes]] = []
        self._made_fabric = False
        self._pod_index = itertools.count()

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Topology:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _claim(self) -> None:
        """Create our state directory with our pid, so sweeps know it is alive."""
        owner = self.state_dir / "owner"
        if owner.exists():
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        owner.with_suffix(".tmp").write_text(str(os.getpid()))
        owner.with_suffix(".tmp").rename(owner)

    def scratch(self, name: str) -> Path:
        """A directory of this run's state (manifests, logs): removed by close(), or with the
        namespaces by the next run's sweep if this one is killed."""
        self._claim()
        path = self.state_dir / name
        path.mkdir(exist_ok=True)
        return path

    def _ensure_fabric(self) -> None:
        if self._made_fabric:
            return
        # Claim our state directory before sweeping, so a parallel sweep never takes it for stale.
        self._claim()
        cleanup_stale()
        ip("netns", "add", self.fabric_netns)
        ip("-n", self.fabric_netns, "link", "add", FABRIC_BRIDGE, "type", "bridge")
        ip("-n", self.fabric_netns, "link", "set", FABRIC_BRIDGE, "up")
        ip("-n", self.fabric_netns, "link", "set", "lo", "up")
        self._made_fabric = True

    def close(self) -> None:
        """Stop every process and delete every namespace this topology created."""
        for proc in self._processes:
            if proc.poll() is None:
                proc.terminate()
        for proc in self._processes:
            try:
                proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                proc.kill()
        self._processes.clear()
        remove_namespaces(self.prefix)
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self.nodes.clear()
        self.pods.clear()

    # -- nodes -----------------------------------------------------------------------
    def add_node(self, name: str, node_ip: str | None = None) -> NodeHandle:
        """Create a node namespace on the fabric with a pod bridge and forwarding on."""
        self._ensure_fabric()
        index = len(self.nodes)
        netns = f"{self.prefix}-n{index}"
        node_ip = node_ip or _nth_host(self._fabric_net, 10 + index)
        prefix_len = self._fabric_net.split("/")[1]
        ip("netns", "add", netns)
        uplink = f"n{index}"
        ip("-n", self.fabric_netns, "link", "add", uplink, "type", "veth", "peer", "name", "eth0", "netns", netns)
        ip("-n", self.fabric_netns, "link", "set", uplink, "master", FABRIC_BRIDGE, "up")
        ip_batch(
            netns,
            [
                ("link", "set", "lo", "up"),
                ("link", "set", "eth0", "up"),
                ("addr", "add", f"{node_ip}/{prefix_len}", "dev", "eth0"),
                # A fixed address (locally administered): see the module docstring.
                ("link", "add", BRIDGE, "address", bridge_mac(index), "type", "bridge"),
                ("addr", "add", f"{GATEWAY}/32", "dev", BRIDGE),
                ("link", "set", BRIDGE, "up"),
            ],
        )
        _sysctl(
            netns,
            {
                "net.ipv4.ip_forward": "1",
                "net.ipv4.conf.all.send_redirects": "0",
                "net.ipv4.conf.default.send_redirects": "0",
                f"net.ipv4.conf.{BRIDGE}.send_redirects": "0",
                "net.ipv4.conf.all.rp_filter": "0",
                f"net.ipv4.conf.{BRIDGE}.rp_filter": "0",
                "net.bridge.bridge-nf-call-iptables": "1",
            },
        )
        node = NodeHandle(name, netns, node_ip, index)
        self.nodes[name] = node
        # Routes to pods already placed on other nodes.
        for pod in self.pods.values():
            if not pod.host_network:
                ip("-n", netns, "route", "replace", f"{pod.ip}/32", "via", self.nodes[pod.node].ip)
        return node

    def node_runner(self, node: str) -> list[str]:
        """Command prefix that runs a program in ``node``'s namespace."""
        return self.nodes[node].runner_prefix

    def node_popen(self, node: str, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a long-running process in ``node``'s namespace; stopped by close()."""
        proc = subprocess.Popen([*self.node_runner(node), *argv], **kwargs)  # type: ignore[call-overload]
        self._processes.append(proc)
        return proc

    def host_popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a long-running process from the host's namespaces, stopped by close(): for a
        program that enters a node's namespace itself (a container engine given its path)."""
        proc = subprocess.Popen(list(argv), **kwargs)  # type: ignore[call-overload]
        self._processes.append(proc)
        return proc

    def node_run(self, node: str, argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run a command in ``node``'s namespace and wait for it."""
        return subprocess.run([*self.node_runner(node), *argv], capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]

    # -- pods ------------------------------------------------------------------------
    def add_pod(
        self,
        node: str,
        key: str,
        pod_ip: str,
        ports: Sequence[ContainerPort] = (),
        *,
        host_network: bool = False,
        wait: bool = True,
    ) -> PodHandle:
        """Create a pod on ``node`` with ``pod_ip`` and start its agent serving ``ports``."""
        handle = self.nodes[node]
        index = next(self._pod_index)
        sock = str(self.state_dir / f"p{index}.sock")
        if host_network:
            pod = PodHandle(key, node, handle.netns, handle.ip, True, tuple(ports), sock)
        else:
            netns = f"{self.prefix}-p{index}"
            veth = f"{self.prefix[-6:]}p{index}"[-15:]
            ip("netns", "add", netns)
            ip_batch(
                handle.netns,
                [
                    ("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns),
                    ("link", "set", veth, "master", BRIDGE, "up"),
                    ("route", "replace", f"{pod_ip}/32", "dev", BRIDGE, "scope", "link"),
                    # A pod that had this address before left its MAC in the node's neighbour
                    # table, in use for up to a minute: traffic to the new pod would be lost.
                    ("neigh", "flush", "to", pod_ip, "dev", BRIDGE),
                ],
            )
            ip_batch(
                netns,
                [
                    ("link", "set", "lo", "up"),
                    ("link", "set", "eth0", "up"),
                    ("addr", "add", f"{pod_ip}/32", "dev", "eth0"),
                    ("route", "add", GATEWAY, "dev", "eth0", "scope", "link"),
                    ("route", "add", "default", "via", GATEWAY, "dev", "eth0"),
                ],
            )
            _sysctl(netns, {"net.ipv4.conf.all.accept_redirects": "0", "net.ipv4.conf.eth0.accept_redirects": "0"})
            for other in self.nodes.values():
                if other.name != node:
                    ip("-n", other.netns, "route", "replace", f"{pod_ip}/32", "via", handle.ip)
            pod = PodHandle(key, node, netns, pod_ip, False, tuple(ports), sock, veth=veth)
        handle.pods.append(key)
        self.pods[key] = pod
        self._start_agent(pod)
        if wait:
            self.wait_ready([key])
        return pod

    def _start_agent(self, pod: PodHandle) -> None:
        by_proto: dict[str, list[str]] = {"TCP": [], "UDP": [], "SCTP": []}
        for p in pod.ports:
            if str(p.port) not in by_proto[p.protocol]:
                by_proto[p.protocol].append(str(p.port))
        argv = [
            *netns_exec(pod.netns),
            sys.executable,
            "-m",
            "conformance.netns.agent",
            "--socket",
            pod.socket_path,
            "--tcp",
            ",".join(by_proto["TCP"]),
            "--udp",
            ",".join(by_proto["UDP"]),
            "--sctp",
            ",".join(by_proto["SCTP"]),
        ]
        if pod.host_network:
            argv += ["--bind", pod.ip]
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_project_root(), env.get("PYTHONPATH", "")]))
        pod.agent = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL)
        self._processes.append(pod.agent)

    def wait_ready(self, keys: Sequence[str], timeout: float = 20.0) -> None:
        """Wait until the agents of ``keys`` serve their ports."""
        deadline = time.monotonic() + timeout
        for key in keys:
            pod = self.pods[key]
            while not os.path.exists(pod.socket_path):
                if pod.agent is not None and pod.agent.poll() is not None:
                    raise TopologyError(f"agent of pod {key} exited with code {pod.agent.returncode}")
                if time.monotonic() > deadline:
                    raise TopologyError(f"agent of pod {key} not ready after {timeout:.0f}s")
                time.sleep(0.02)

    def remove_pod(self, key: str) -> None:
        """Stop a pod's agent and delete its namespace and routes."""
        pod = self.pods.pop(key)
        if pod.agent is not None and pod.agent.poll() is None:
            pod.agent.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                pod.agent.wait(timeout=3)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pod.socket_path)
        self.nodes[pod.node].pods.remove(key)
        if pod.host_network:
            return
        ip("netns", "del", pod.netns, check=False)
        for node in self.nodes.values():
            ip("-n", node.netns, "route", "del", f"{pod.ip}/32", check=False)

    # -- probes ----------------------------------------------------------------------
    def probe(self, src: str, dst_ip: str, port: PortSpec, timeout: float = 1.0) -> bool | None:
        """One real connection from pod ``src`` to ``dst_ip:port``; None if not probeable."""
        return self.probe_many([(src, dst_ip, port)], timeout)[0]

    def probe_many(
        self, requests: Sequence[tuple[str, str, PortSpec]], timeout: float = 1.0
    ) -> list[bool | None]:
        """Run many probes at once: grouped per source pod, all sources in parallel."""
        by_src: dict[str, list[int]] = {}
        for i, (src, _ip, _port) in enumerate(requests):
            by_src.setdefault(src, []).append(i)
        results: list[bool | None] = [None] * len(requests)

        def ask(src: str) -> None:
            idx = by_src[src]
            payload = {
                "probes": [
                    {"ip": requests[i][1], "port": requests[i][2].port, "protocol": requests[i][2].protocol}
                    for i in idx
                ],
                "timeout": timeout,
            }
            answer = _request(self.pods[src].socket_path, payload, timeout + 10)
            for i, value in zip(idx, answer["results"], strict=True):
                results[i] = value

        if by_src:
            with ThreadPoolExecutor(max_workers=min(32, len(by_src))) as pool:
                list(pool.map(ask, by_src))
        return results


def _request(path: str, payload: dict, timeout: float) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(path)
        conn.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(65536)
            if not chunk:
                raise TopologyError(f"agent at {path} closed the connection")
            data += chunk
    return json.loads(data)


def bridge_mac(index: int) -> str:
    """The fixed, locally administered MAC address of node ``index``'s pod bridge."""
    return f"02:6e:70:6d:{index >> 8 & 0xFF:02x}:{index & 0xFF:02x}"


def _nth_host(cidr: str, n: int) -> str:
    import ipaddress

    return str(ipaddress.ip_network(cidr, strict=False).network_address + n)


def _project_root() -> str:
    return str(Path(__file__).resolve().parents[2])


def remove_namespaces(prefix: str) -> None:
    """Kill every process in, then delete, each namespace whose name starts with ``prefix-``."""
    listing = ip("netns", "list", check=False).stdout.split("\n")
    names = [line.split()[0] for line in listing if line.strip() and line.split()[0].startswith(prefix + "-")]
    for name in names:
        pids = ip("netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    for name in names:
        ip("netns", "del", name, check=False)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def cleanup_stale() -> list[str]:
    """Remove namespaces and state left by runs whose owning process is gone."""
    removed = []
    if not STATE_ROOT.is_dir():
        return removed
    for run_dir in STATE_ROOT.iterdir():
        owner = run_dir / "owner"
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            pid = 0
        if pid and _alive(pid):
            continue
        if not pid and _age(run_dir) < 60:
            continue  # being created right now by another run
        remove_namespaces(run_dir.name)
        shutil.rmtree(run_dir, ignore_errors=True)
        removed.append(run_dir.name)
    return removed
