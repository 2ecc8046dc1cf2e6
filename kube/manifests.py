"""Raw Kubernetes objects (dicts as the API server serves them), and clusters built from them.

The one place raw manifests are written in code: tests, examples, the benchmark generators
and the daemon tests' API server describe objects with these builders, then ``cluster_of``
runs them through ``kube.load`` exactly as files would be (validation, defaults), so nothing
bypasses the object model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kube.load import DEFAULT_POD_CIDR, ObjectSet, build_cluster
from kube.model import Cluster, Source

Raw = dict[str, Any]


def namespace(name: str, labels: Mapping[str, str] | None = None) -> Raw:
    """A raw Namespace."""
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels or {})}}


def container_port(port: int, protocol: str = "TCP", name: str | None = None) -> Raw:
    """One ``containerPort`` entry."""
    out: Raw = {"containerPort": port, "protocol": protocol}
    if name:
        out["name"] = name
    return out


def pod(
    ns: str,
    name: str,
    labels: Mapping[str, str] | None = None,
    *,
    ip: str | None = None,
    ports: Sequence[Raw] = (),
    node: str | None = None,
    host_network: bool = False,
    phase: str = "Running",
    host_ip: str | None = None,
) -> Raw:
    """A raw Pod with one container declaring ``ports`` (see ``container_port``); ``ip`` is
    written as ``status.podIP`` and ``status.podIPs``, as the API server does."""
    spec: Raw = {"containers": [{"name": "main", "image": "agnhost", "ports": list(ports)}]}
    if node:
        spec["nodeName"] = node
    if host_network:
        spec["hostNetwork"] = True
    status: Raw = {"phase": phase}
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    if host_ip:
        status["hostIP"] = host_ip
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"namespace": ns, "name": name, "labels": dict(labels or {})},
        "spec": spec,
        "status": status,
    }


def node(name: str, ip: str | None = None) -> Raw:
    """A raw Node with an InternalIP."""
    status: Raw = {"addresses": [{"type": "InternalIP", "address": ip}] if ip else []}
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "status": status}


def policy(ns: str, name: str, spec: Mapping[str, Any]) -> Raw:
    """A raw networking.k8s.io/v1 NetworkPolicy with ``spec`` as written in YAML."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"namespace": ns, "name": name},
        "spec": dict(spec),
    }


def cluster_network_policy(
    name: str,
    *,
    tier: str = "Admin",
    priority: int = 0,
    subject: Mapping[str, Any] | None = None,
    ingress: Sequence[Mapping[str, Any]] = (),
    egress: Sequence[Mapping[str, Any]] = (),
) -> Raw:
    """A raw policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy; ``subject`` (every pod of every
    namespace when None) and the rules as written in YAML. Empty rule lists are left out."""
    spec: Raw = {"tier": tier, "priority": priority, "subject": dict(subject or {"namespaces": {}})}
    if ingress:
        spec["ingress"] = [dict(r) for r in ingress]
    if egress:
        spec["egress"] = [dict(r) for r in egress]
    return {
        "apiVersion": "policy.networking.k8s.io/v1alpha2",
        "kind": "ClusterNetworkPolicy",
        "metadata": {"name": name},
        "spec": spec,
    }


class BuildError(ValueError):
    """Raised by ``cluster_of`` when an object does not validate."""


def cluster_of(objects: Iterable[Raw], *, pod_cidr: str = DEFAULT_POD_CIDR) -> Cluster:
    """Parse, validate and assemble raw objects into a Cluster; raise BuildError on any error."""
    collected = ObjectSet()
    for i, raw in enumerate(objects):
        collected.add_raw(Source("<built>", i), raw)
    if collected.errors:
        more = len(collected.errors) - 5
        raise BuildError("; ".join(str(e) for e in collected.errors[:5]) + (f"; and {more} more" if more > 0 else ""))
    cluster, _notes = build_cluster(collected, pod_cidr=pod_cidr)
    return cluster
