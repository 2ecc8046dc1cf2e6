"""Small random clusters (pods, namespaces, policies) for semantic cross-checks."""

from __future__ import annotations

import random
from typing import Any

from kube.model import Cluster, ContainerPort
from tests.dataplane.helpers import cluster, pod, policy

NAMESPACES = ("a", "b", "c")
LABELS = ("app", "tier")
VALUES = ("x", "y", "z")


def random_selector(rng: random.Random, expressions: float = 0.5) -> dict[str, Any]:
    """A random label selector over LABELS and VALUES (matchExpressions with that probability)."""
    sel: dict[str, Any] = {}
    if rng.random() < 0.5:
        sel["matchLabels"] = {rng.choice(LABELS): rng.choice(VALUES)}
    if rng.random() < expressions:
        op = rng.choice(("In", "NotIn", "Exists", "DoesNotExist"))
        expr: dict[str, Any] = {"key": rng.choice(LABELS), "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = rng.sample(VALUES, rng.randint(1, 2))
        sel["matchExpressions"] = [expr]
    return sel


def _peer(rng: random.Random) -> dict[str, Any]:
    kind = rng.random()
    if kind < 0.2:
        block: dict[str, Any] = {"cidr": rng.choice(["10.0.0.0/16", "10.0.1.0/24", "0.0.0.0/0", "192.0.2.0/24"])}
        if block["cidr"] in ("10.0.0.0/16", "0.0.0.0/0") and rng.random() < 0.5:
            block["except"] = ["10.0.1.0/28"]
        return {"ipBlock": block}
    peer: dict[str, Any] = {}
    if kind < 0.6:
        peer["podSelector"] = random_selector(rng)
    if kind > 0.4:
        peer["namespaceSelector"] = random_selector(rng) if rng.random() < 0.7 else {}
    return peer or {"podSelector": {}}


def _port(rng: random.Random) -> dict[str, Any]:
    choice = rng.random()
    if choice < 0.3:
        return {"port": 80}
    if choice < 0.45:
        return {"port": 80, "endPort": 81}
    if choice < 0.65:
        return {"port": rng.choice(["http", "dns"]), "protocol": "UDP" if rng.random() < 0.3 else "TCP"}
    if choice < 0.8:
        return {"protocol": "UDP"}
    return {"port": 8080}


def _rules(rng: random.Random, peer_key: str) -> list[dict[str, Any]]:
    rules = []
    for _ in range(rng.randint(0, 2)):
        rule: dict[str, Any] = {}
        if rng.random() < 0.8:
            rule[peer_key] = [_peer(rng) for _ in range(rng.randint(1, 2))]
        if rng.random() < 0.6:
            rule["ports"] = [_port(rng) for _ in range(rng.randint(1, 2))]
        rules.append(rule)
    return rules


def random_cluster(seed: int) -> tuple[Cluster, list[str]]:
    """A cluster and the IPs worth probing (pods, a hostNetwork node IP, off-cluster)."""
    rng = random.Random(seed)
    pods = []
    for i in range(8):
        labels = {k: rng.choice(VALUES) for k in LABELS if rng.random() < 0.6}
        ports = (ContainerPort(rng.choice([80, 8080]), "TCP", "http"), ContainerPort(53, "UDP", "dns"))
        pods.append(
            pod(
                f"{rng.choice(NAMESPACES)}/p{i}", f"10.0.1.{i + 2}" if i % 2 else f"10.0.2.{i + 2}", labels, ports=ports
            )
        )
    host = pod("a/host", "10.0.1.100", {"app": "x"}, host_network=True)
    pods.append(host)
    policies = []
    for j in range(rng.randint(1, 3)):
        types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]])
        spec: dict[str, Any] = {"podSelector": random_selector(rng), "policyTypes": types}
        if "Ingress" in types:
            spec["ingress"] = _rules(rng, "from")
        if "Egress" in types:
            spec["egress"] = _rules(rng, "to")
        policies.append(policy(rng.choice(NAMESPACES), f"pol{j}", spec))
    ns_labels = {n: {k: rng.choice(VALUES) for k in LABELS if rng.random() < 0.5} for n in NAMESPACES}
    probes = [p.ip for p in pods] + ["192.0.2.7", "10.0.1.5"]
    return cluster(pods, policies, ns_labels=ns_labels), probes
