"""The netns backend: a virtual cluster in network namespaces running the real enforcer.

Each node is a network namespace (``conformance.netns.topology``) running the real daemon,
``azure-npm start --manifests DIR --node-name NODE`` (as ``python -m npm.cli start``). The
harness enforces nothing: after each step it writes every Node (with its labels), Namespace,
Pod, NetworkPolicy and ClusterNetworkPolicy of the step to each node's DIR (one file, atomic
rename) and probes.

Knowing when the daemons have applied a write: a *barrier*. Namespace
``npm-conformance-barrier`` holds a target pod per node (serving TCP 7001, 7002 and 7003)
and a client pod; each write carries a barrier policy that opens only one of those ports,
in turn with the write's generation. Daemons only move forward, so once every node was seen
enforcing a write, the next writes open ports that the states in between keep closed: the
client reaching every target on a write's port proves every daemon enforces that write's
rules. (After a node starts, with no rules yet and so every port open, or after writes that
were never seen, the other ports must be seen closed too, which costs a probe timeout.)

Rules are not the whole of a write: a daemon applies one in up to three steps (ipset
changes that close, then the rules atomically, then ipset changes that open), and the
barrier's port opens at the second. So once a step's write is seen, a second write that
changes only the barrier follows; a daemon applies writes one after the other, so seeing
the second proves the first is in force entirely. Both are observed on the dataplane, like
everything else, and cost about two daemon reactions per step. The barrier's objects are
never in the simulated cluster: its pods live in their own namespace, and no scenario
probe involves them. A ClusterNetworkPolicy is cluster-wide, though, and one whose subject is
every namespace would decide the barrier's traffic too; so each write also carries an Admin
ClusterNetworkPolicy at priority 0 for the barrier namespace's traffic within itself: its
ingress is passed on to the NetworkPolicy tier, where the barrier policy decides it, and its
egress accepted (the client is selected by no NetworkPolicy, so a Pass would leave it to a
scenario's Baseline policies). A scenario's own ClusterNetworkPolicies at priority 0 come after
it as long as their names sort after ``0-npm-conformance-barrier``, the order our enforcer
gives equal priorities.

Pods are kept across scenarios when their shape (node, address, ports, hostNetwork) is
unchanged, so a suite of scenarios over one model creates its pods once.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from conformance.backends import BackendError, ProbeRequest
from conformance.manifests import namespace_manifest, node_manifest, pod_status_manifest
from conformance.netns.container import engine_env, run_prefix
from conformance.results import NodeVerify
from conformance.state import kubelet_labels
from kube.model import (
    CNP_API_VERSION,
    NAMESPACE_NAME_LABEL,
    Cluster,
    ContainerPort,
    Labels,
    Namespace,
    Node,
    Pod,
    PortSpec,
)

BARRIER_NAMESPACE = "npm-conformance-barrier"
BARRIER_CLUSTER_POLICY = "0-npm-conformance-barrier"  # sorts before the names scenarios use
BARRIER_PORTS = (7001, 7002, 7003)
# Probes of the open barrier port start short (a connection on this machine takes well under
# a millisecond) and grow on a loaded machine; a closed port costs its whole timeout.
BARRIER_OPEN_TIMEOUTS = (0.02, 0.25)
BARRIER_CLOSED_TIMEOUT = 0.25
BARRIER_NET = "10.255.255."  # reserved for barrier pods: scenario addresses must avoid it
DAEMON_ENV = "NPM_CONFORMANCE_DAEMON"
MANIFEST_FILE = "cluster.yaml"

# Scan the directory often: the harness waits on every write. Each write is one whole
# snapshot (one file, atomic rename), so there is no burst to coalesce: no window.
DAEMON_ARGS = ("start", "--poll-interval", "0.05", "--coalesce-window", "0", "--no-events")

# (node name, every object of the write) -> what that node's daemon gets. A test hook: it
# lets a test hand the enforcer a different state than the simulator sees (a "broken enforcer").
ManifestFilter = Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]]


def daemon_command() -> list[str]:
    """The enforcer's command line, without --manifests/--node-name; ``$NPM_CONFORMANCE_DAEMON`` overrides."""
    override = os.environ.get(DAEMON_ENV, "").strip()
    if override:
        return shlex.split(override)
    return [sys.executable, "-m", "npm.cli", *DAEMON_ARGS]


def served_ports(pod: Pod, serve: Sequence[PortSpec]) -> tuple[ContainerPort, ...]:
    """The pod's declared ports plus ``serve`` (what its agent listens on)."""
    declared = {(p.port, p.protocol) for p in pod.ports}
    extra = sorted({(s.port, s.protocol) for s in serve} - declared, key=lambda t: (t[1], t[0]))
    return pod.ports + tuple(ContainerPort(port, proto) for port, proto in extra)


def _barrier_cluster_policy() -> dict[str, Any]:
    """Barrier traffic (within its namespace) left to the barrier NetworkPolicy, whatever a
    scenario's ClusterNetworkPolicies select: ingress passed on to it, egress accepted (see
    the module docstring)."""
    barrier = {"namespaces": {"matchLabels": {NAMESPACE_NAME_LABEL: BARRIER_NAMESPACE}}}
    return {
        "apiVersion": CNP_API_VERSION,
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": BARRIER_CLUSTER_POLICY},
        "spec": {
            "tier": "Admin",
            "priority": 0,
            "subject": barrier,
            "ingress": [{"name": "barrier", "action": "Pass", "from": [barrier]}],
            "egress": [{"name": "barrier", "action": "Accept", "to": [barrier]}],
        },
    }


def _shape(pod: Pod, serve: Sequence[PortSpec]) -> tuple[object, ...]:
    return (pod.node, pod.ip, served_ports(pod, serve), pod.host_network)


class NetnsBackend:
    """Scenarios on network namespaces of this machine (root, or a user namespace).

    With ``node_image``, each node's daemon is that container image run as the DaemonSet
    runs it (``conformance.netns.container``; root and podman), instead of this checkout.
    ``dataplane`` (iptables or nftables) is passed to the daemons as ``--dataplane``.
    """

    name = "netns"
    default_probe_timeout = 0.5

    def __init__(
        self,
        *,
        daemon_argv: Sequence[str] | None = None,
        manifest_filter: ManifestFilter | None = None,
        barrier: bool = True,
        barrier_timeout: float = 8.0,
        log: Callable[[str], None] | None = None,
        node_image: str | None = None,
        dataplane: str = "iptables",
    ) -> None:
        self.node_image = node_image
        self.dataplane = dataplane
        self.daemon_argv = list(daemon_argv or (DAEMON_ARGS if node_image else daemon_command()))
        if dataplane != "iptables":  # azure-npm start --dataplane nftables
            self.daemon_argv += ["--dataplane", dataplane]
        self.manifest_filter = manifest_filter
        self.barrier = barrier
        self.barrier_timeout = barrier_timeout
        self.log = log or (lambda _msg: None)
        self.topology: Any = None
        self.work_dir: Path | None = None
        self._daemons: dict[str, subprocess.Popen[bytes]] = {}
        self._pods: dict[str, tuple[object, ...]] = {}
        self._generation = 0
        self._barrier_ok = 0
        self._barrier_failed = 0
        self._barrier_seen: int | None = None  # the last generation seen enforced on every node
        self._last: tuple[Cluster, list[dict[str, Any]]] = (Cluster(), [])
        self._verify_noted = False

    # -- lifecycle ---------------------------------------------------------------------
    def open(self, nodes: Sequence[str]) -> dict[str, str]:
        if self.topology is None:
            from conformance.netns.topology import Topology, cleanup_stale

            removed = cleanup_stale()
            if removed:
                self.log(f"removed leftovers of {len(removed)} killed run(s): {', '.join(removed)}")
            self.topology = Topology()
            self.work_dir = self.topology.scratch("work")
        try:
            for name in nodes:
                if name not in self.topology.nodes:
                    self._add_node(name)
        except Exception as exc:  # the kernel said no: a backend failure, not a mismatch
            raise BackendError(f"cannot create node: {exc}") from exc
        return {name: node.ip for name, node in self.topology.nodes.items()}

    def close(self) -> None:
        if self.topology is not None:
            self.topology.close()  # stops the daemons and agents, deletes every namespace and work_dir
            self.topology = None
        self.work_dir = None
        self._daemons.clear()
        self._pods.clear()

    def _add_node(self, name: str) -> None:
        assert self.work_dir is not None
        node = self.topology.add_node(name)
        self._barrier_seen = None  # a new daemon starts with no rules: every barrier port open
        directory = self.work_dir / "nodes" / name
        directory.mkdir(parents=True)
        if self.barrier:
            index = node.index
            ports = tuple(ContainerPort(p, "TCP") for p in BARRIER_PORTS)
            self.topology.add_pod(name, f"{BARRIER_NAMESPACE}/target-{name}", f"{BARRIER_NET}{10 + index}", ports)
            if index == 0:
                self.topology.add_pod(name, f"{BARRIER_NAMESPACE}/client", f"{BARRIER_NET}2", ())
        self._write(name, directory, self._documents(*self._last))
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH", "")]))
        argv = [*self.daemon_argv, "--manifests", str(directory), "--node-name", name]
        with open(self.work_dir / f"daemon-{name}.log", "wb") as log:  # the daemon keeps its own copy
            if self.node_image:
                self._daemons[name] = self.topology.host_popen(
                    [*self._image_prefix(name, directory), *argv],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=engine_env(env),
                )
                return
            self._daemons[name] = self.topology.node_popen(
                name, argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def _image_prefix(self, name: str, directory: Path) -> list[str]:
        """``podman run`` of the node image in node ``name``'s namespace; the manifest directory
        is mounted at the same path, so the daemon's arguments stay the same."""
        assert self.work_dir is not None and self.node_image is not None
        node = self.topology.nodes[name]
        return run_prefix(
            node.netns,
            node_name=name,
            scratch=self.work_dir / "container" / name,
            image=self.node_image,
            mounts=[(directory, str(directory))],
            name=f"{self.topology.prefix}-{name}",
        )

    def verify(self) -> list[NodeVerify]:
        """``azure-npm verify`` on every node: what its kernel holds against the objects its
        daemon was given (the manifest file it reads, barrier included)."""
        from kube.load import load_paths
        from npm.dataplane.kernel import Runner
        from npm.verify.check import verify_kernel
        from npm.verify.views import DATAPLANES, read_view

        assert self.work_dir is not None
        if self.dataplane not in DATAPLANES:
            if not self._verify_noted:
                self.log(f"azure-npm verify does not read the {self.dataplane} dataplane: not verified")
                self._verify_noted = True
            return []
        out = []
        for name in sorted(self.topology.nodes):
            manifest = self.work_dir / "nodes" / name / MANIFEST_FILE
            loaded = load_paths([str(manifest)], allocate_ips=False)
            try:
                view = read_view(self.dataplane, Runner(self.topology.node_runner(name)))
            except Exception as exc:  # an unreadable kernel is a failed check, said as such
                out.append(NodeVerify(name, False, 0, 0, f"cannot read the kernel: {exc}"))
                continue
            report = verify_kernel(view, loaded.cluster)
            out.append(NodeVerify(name, report.agrees, report.connections, report.mismatched_connections,
                                  "" if report.agrees else report.render()))
        return out

    # -- state -------------------------------------------------------------------------
    def sync_workloads(self, cluster: Cluster, serve: Sequence[PortSpec] = ()) -> Cluster:
        wanted = {p.key: p for p in cluster.pods}
        try:
            for key, shape in list(self._pods.items()):
                pod = wanted.get(key)
                if pod is None or _shape(pod, serve) != shape:
                    self.topology.remove_pod(key)
                    del self._pods[key]
            new = [p for p in wanted.values() if p.key not in self._pods]
            for pod in new:
                ports = served_ports(pod, serve)
                self.topology.add_pod(pod.node, pod.key, pod.ip, ports, host_network=pod.host_network, wait=False)
                self._pods[pod.key] = _shape(pod, serve)
            self.topology.wait_ready([p.key for p in new])
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"cannot create pods: {exc}") from exc
        return cluster

    def sync_policies(self, cluster: Cluster, manifests: Sequence[Mapping[str, Any]]) -> None:
        self._last = (cluster, [dict(m) for m in manifests])
        self._write_all()
        # The second write changes only the barrier: seeing it proves the first is applied
        # entirely, its last ipset changes included (see the module docstring).
        if self.barrier and self._wait_barrier():
            self._write_all()
            self._wait_barrier()

    def _write_all(self) -> None:
        """Write the last state, with the next generation's barrier, to every node."""
        assert self.work_dir is not None
        self._generation += 1
        for name in self.topology.nodes:
            self._write(name, self.work_dir / "nodes" / name, self._documents(*self._last))
        self._check_daemons()

    def _documents(self, cluster: Cluster, manifests: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Everything a daemon should see: nodes, namespaces, pods, policies (both kinds), the barrier.

        Nodes of the virtual cluster that this scenario does not name (left from an earlier
        one) carry the kubelet's labels only.
        """
        labels = {n.name: n.labels for n in cluster.nodes}
        nodes = [
            Node(n.name, n.ip, labels=labels.get(n.name, kubelet_labels(n.name))) for n in self.topology.nodes.values()
        ]
        docs: list[dict[str, Any]] = [node_manifest(n) for n in nodes]
        docs += [namespace_manifest(ns) for ns in cluster.namespaces]
        docs += [pod_status_manifest(p) for p in cluster.pods]
        docs += [dict(m) for m in manifests]
        if self.barrier:
            docs += self._barrier_documents()
        return docs

    def _write(self, node: str, directory: Path, docs: list[dict[str, Any]]) -> None:
        if self.manifest_filter is not None:
            docs = self.manifest_filter(node, docs)
        tmp = directory / f".{MANIFEST_FILE}.tmp"
        tmp.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        os.replace(tmp, directory / MANIFEST_FILE)  # the daemon never sees a half-written file

    def _check_daemons(self) -> None:
        for name, proc in self._daemons.items():
            code = proc.poll()
            if code is not None:
                raise BackendError(f"the enforcer on {name} exited with code {code}:\n{self._log_tail(name)}")

    def _log_tail(self, node: str, lines: int = 20) -> str:
        assert self.work_dir is not None
        try:
            text = (self.work_dir / f"daemon-{node}.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join("    " + line for line in text.splitlines()[-lines:]) or "    (empty log)"

    # -- barrier -----------------------------------------------------------------------
    def _barrier_port(self) -> int:
        """The barrier port this write opens."""
        return BARRIER_PORTS[self._generation % len(BARRIER_PORTS)]

    def _barrier_documents(self) -> list[dict[str, Any]]:
        open_port = self._barrier_port()
        docs: list[dict[str, Any]] = [namespace_manifest(Namespace(BARRIER_NAMESPACE))]
        for key, pod in self.topology.pods.items():
            if key.startswith(BARRIER_NAMESPACE + "/"):
                role = "client" if key.endswith("/client") else "target"
                ports = tuple(ContainerPort(p, "TCP") for p in BARRIER_PORTS) if role == "target" else ()
                model = Pod(
                    BARRIER_NAMESPACE,
                    key.split("/", 1)[1],
                    Labels({"role": role}),
                    pod.ip,
                    (pod.ip,),
                    pod.node,
                    ports=ports,
                )
                docs.append(pod_status_manifest(model))
        docs.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "barrier", "namespace": BARRIER_NAMESPACE},
                "spec": {
                    "podSelector": {"matchLabels": {"role": "target"}},
                    "policyTypes": ["Ingress"],
                    "ingress": [{"ports": [{"protocol": "TCP", "port": open_port}]}],
                },
            }
        )
        docs.append(_barrier_cluster_policy())
        return docs

    def _wait_barrier(self) -> bool:
        """Whether every daemon enforced this write's rules within ``barrier_timeout``."""
        client = f"{BARRIER_NAMESPACE}/client"
        targets = [p for k, p in self.topology.pods.items() if k.startswith(BARRIER_NAMESPACE + "/target-")]
        open_port = self._barrier_port()
        opened = [(client, t.ip, PortSpec(open_port)) for t in targets]
        # Every state since the last write seen everywhere opened another port, as long as
        # fewer writes than barrier ports passed; otherwise the other ports must be seen closed.
        seen = self._barrier_seen
        known = seen is not None and self._generation - seen < len(BARRIER_PORTS)
        others = [] if known else [p for p in BARRIER_PORTS if p != open_port]
        closed = [(client, t.ip, PortSpec(p)) for t in targets for p in others]
        # A dropped SYN is sent again only after a second: a new connection soon after the
        # rules change is quicker than a long wait, so probes are short, and grow when slow.
        timeout, longest = BARRIER_OPEN_TIMEOUTS
        deadline = time.monotonic() + self.barrier_timeout
        while (started := time.monotonic()) < deadline:
            if all(self.topology.probe_many(opened, timeout)) and not any(
                self.topology.probe_many(closed, BARRIER_CLOSED_TIMEOUT) if closed else ()
            ):
                self._barrier_ok += 1
                self._barrier_seen = self._generation
                return True
            self._check_daemons()
            time.sleep(max(0.0, timeout - (time.monotonic() - started)))  # a refusal comes back at once
            timeout = min(longest, timeout * 1.25)
        self._barrier_failed += 1
        if not self._barrier_ok and self._barrier_failed >= 3:
            logs = "\n".join(f"  {n}:\n{self._log_tail(n)}" for n in self._daemons)
            raise BackendError(
                f"the enforcer never applied a write (barrier policy not enforced after {self._barrier_failed} "
                f"writes of {self.barrier_timeout:.0f}s each); daemon logs:\n{logs}"
            )
        self.log(f"barrier: write {self._generation} not seen on the dataplane after {self.barrier_timeout:.0f}s")
        return False

    # -- probes ------------------------------------------------------------------------
    def probe(self, requests: Sequence[ProbeRequest], timeout: float) -> list[bool | None]:
        try:
            return self.topology.probe_many([(r.src, r.dst_ip, r.port) for r in requests], timeout)
        except Exception as exc:
            raise BackendError(f"probe failed: {exc}") from exc
