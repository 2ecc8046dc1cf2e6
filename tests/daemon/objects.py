"""Raw objects for daemon tests, in the short forms these tests use (kube.manifests builds them)."""

from __future__ import annotations

from typing import Any

from kube import manifests
from kube.manifests import cluster_network_policy, node, policy

__all__ = ["allow_from", "cluster_network_policy", "deny_all", "namespace", "node", "pod", "policy"]


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return manifests.namespace(name, labels)


def pod(
    namespace: str, name: str, ip: str | None, node: str = "node-a", ports: tuple[int, ...] = (80,), **labels: str
) -> dict[str, Any]:
    return manifests.pod(namespace, name, labels, ip=ip, node=node, ports=[manifests.container_port(p) for p in ports])


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
