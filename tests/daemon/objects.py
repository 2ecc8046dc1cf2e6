"""Raw Kubernetes objects (as the API server serves them) for daemon tests."""

from __future__ import annotations

from typing import Any


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}}


def pod(
    namespace: str, name: str, ip: str | None, node: str = "node-a", ports: tuple[int, ...] = (80,), **labels: str
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": "Running"}
    if ip:
        status["podIP"] = ip
        status["podIPs"] = [{"ip": ip}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "nodeName": node,
            "containers": [{"name": "c", "image": "x", "ports": [{"containerPort": p} for p in ports]}],
        },
        "status": status,
    }


def node(name: str, ip: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {"addresses": [{"type": "InternalIP", "address": ip}]},
    }


def policy(namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def deny_all(namespace: str, name: str = "deny-all") -> dict[str, Any]:
    return policy(namespace, name, {"podSelector": {}, "policyTypes": ["Ingress"]})


def allow_from(
    namespace: str, name: str, target: dict[str, str], source: dict[str, str], port: int = 80
) -> dict[str, Any]:
    return policy(
        namespace,
        name,
        {
            "podSelector": {"matchLabels": target},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": source}}], "ports": [{"port": port}]}],
        },
    )
