"""Builders for small clusters and a virtual node running the enforcer (kernel tests)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kube import manifests
from kube.model import (
    NAMESPACE_NAME_LABEL,
    Cluster,
    ClusterNetworkPolicy,
    ContainerPort,
    Labels,
    Namespace,
    NetworkPolicy,
    Node,
    Pod,
    PortSpec,
)
from kube.parse import parse_cluster_network_policy, parse_network_policy


def policy(ns: str, name: str, spec: Mapping[str, Any]) -> NetworkPolicy:
    """A validated NetworkPolicy from a spec dict (as in YAML)."""
    return parse_network_policy(manifests.policy(ns, name, spec))


def cnp(name: str, tier: str = "Admin", priority: int = 0, subject: Mapping[str, Any] | None = None,
        ingress: Sequence[Mapping[str, Any]] = (), egress: Sequence[Mapping[str, Any]] = ()) -> ClusterNetworkPolicy:
    """A validated ClusterNetworkPolicy (rules as in YAML; subject: every pod when None)."""
    return parse_cluster_network_policy(manifests.cluster_network_policy(
        name, tier=tier, priority=priority, subject=subject, ingress=ingress, egress=egress))


def ns_is(*names: str) -> dict[str, Any]:
    """A namespace selector picking namespaces by name."""
    return {"matchExpressions": [{"key": NAMESPACE_NAME_LABEL, "operator": "In", "values": list(names)}]}


def pod(
    key: str,
    ip: str,
    labels: Mapping[str, str] | None = None,
    *,
    node: str = "n1",
    ports: Sequence[ContainerPort] = (),
    host_network: bool = False,
) -> Pod:
    ns, name = key.split("/")
    return Pod(
        ns, name, Labels(labels or {}), ip=ip, ips=(ip,), node=node, ports=tuple(ports), host_network=host_network
    )


def cluster(
    pods: Sequence[Pod],
    policies: Sequence[NetworkPolicy] = (),
    ns_labels: Mapping[str, Mapping[str, str]] | None = None,
    nodes: Sequence[Node] = (),
    cluster_policies: Sequence[ClusterNetworkPolicy] = (),
) -> Cluster:
    """A Cluster whose namespaces are those named by pods/policies/ns_labels."""
    ns_labels = dict(ns_labels or {})
    names = sorted({p.namespace for p in pods} | {p.namespace for p in policies} | set(ns_labels))
    namespaces = tuple(Namespace(n, Labels({**ns_labels.get(n, {}), NAMESPACE_NAME_LABEL: n})) for n in names)
    return Cluster(namespaces=namespaces, pods=tuple(pods), policies=tuple(policies), nodes=tuple(nodes),
                   cluster_policies=tuple(sorted(cluster_policies, key=lambda p: p.name)))


TCP80 = PortSpec(80, "TCP")


@dataclass
class World:
    """A topology with pods mirroring a Cluster, an Enforcer per node, and probe helpers."""

    topo: Any
    pods: list[Pod]
    enforcers: dict[str, Any] = field(default_factory=dict)

    def ip(self, key: str) -> str:
        return next(p.ip for p in self.pods if p.key == key)

    def reach(self, src: str, dst: str, port: PortSpec = TCP80, timeout: float = 0.6) -> bool | None:
        return self.topo.probe(src, self.ip(dst) if "/" in dst else dst, port, timeout)

    def matrix(self, pairs: Sequence[tuple[str, str, PortSpec]], timeout: float = 0.6) -> list[bool | None]:
        reqs = [(s, self.ip(d) if "/" in d else d, p) for s, d, p in pairs]
        return self.topo.probe_many(reqs, timeout)

    def apply(self, c: Cluster) -> list[Any]:
        out = []
        for e in self.enforcers.values():
            res = e.apply(c)
            assert not res.failures, res.failures
            out.append(res)
        return out


@contextlib.contextmanager
def world(
    pods: Sequence[Pod], *, backend: str = "nft", nodes: Sequence[str] = ("n1",), dataplane: str = "iptables"
) -> Iterator[World]:
    """Build nodes and pods (agents serving their container ports) and an enforcer of
    ``dataplane`` (iptables or nftables) per node."""
    from conformance.netns.topology import Topology
    from npm.dataplane.dataplanes import make_enforcer
    from npm.dataplane.enforcer import DataplaneConfig
    from npm.dataplane.kernel import Runner

    with Topology() as topo:
        for n in nodes:
            topo.add_node(n)
        for p in pods:
            topo.add_pod(p.node, p.key, p.ip, p.ports, wait=False)
        topo.wait_ready([p.key for p in pods])
        w = World(topo, list(pods))
        for n in nodes:
            config = DataplaneConfig(kind=dataplane, backend=backend)
            w.enforcers[n] = make_enforcer(n, config, Runner(topo.node_runner(n)))
        yield w


def web_ports() -> tuple[ContainerPort, ...]:
    return (ContainerPort(80, "TCP", "http"), ContainerPort(8080, "TCP", "alt"), ContainerPort(53, "UDP", "dns"))


@contextlib.contextmanager
def never_reaches(w, src: str, dst: str) -> Iterator[list[float]]:
    """Probe src -> dst:80 continuously; fail if it ever connects."""
    leaks: list[float] = []
    stop = threading.Event()
    rounds = [0]

    def loop() -> None:
        while not stop.is_set():
            if w.reach(src, dst, timeout=0.25):
                leaks.append(time.monotonic())
            rounds[0] += 1

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield leaks
    finally:
        stop.set()
        t.join(timeout=5)
    assert rounds[0] > 0
    assert not leaks, f"{src} reached {dst} {len(leaks)} time(s) while it had to stay denied"
