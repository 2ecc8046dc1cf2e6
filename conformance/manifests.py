"""Kubernetes manifests of model objects, as an API server would list them.

Used to hand the enforcer (netns: files it watches; kind/cluster: objects to create) the
exact state the simulator evaluates.
"""

from __future__ import annotations

from typing import Any

from kube.model import NAMESPACE_NAME_LABEL, Namespace, Node, Pod


def namespace_manifest(ns: Namespace) -> dict[str, Any]:
    """A Namespace; the name label is left to the API server (and to kube.parse)."""
    labels = {k: v for k, v in ns.labels.items() if k != NAMESPACE_NAME_LABEL}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns.name, "labels": labels}}


def node_manifest(node: Node) -> dict[str, Any]:
    """A Node with its labels and InternalIP."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": node.name, "labels": dict(node.labels)},
        "status": {"addresses": [{"type": "InternalIP", "address": node.ip}]},
    }


def pod_status_manifest(pod: Pod) -> dict[str, Any]:
    """A running Pod with its node, address and declared ports (one container)."""
    ports = [
        {"containerPort": p.port, "protocol": p.protocol, **({"name": p.name} if p.name else {})} for p in pod.ports
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": pod.name, "namespace": pod.namespace, "labels": dict(pod.labels)},
        "spec": {
            "nodeName": pod.node,
            "hostNetwork": pod.host_network,
            "containers": [{"name": "agent", "ports": ports}],
        },
        "status": {"phase": "Running", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}]},
    }
