"""Random small clusters with ClusterNetworkPolicies of every kind, for cross-checking the
engine against the reference semantics: both tiers, equal priorities, Pass chains, every
peer kind (failing-closed ones too), every port kind, hostNetwork pods, labelled nodes,
NetworkPolicies beside them."""

from __future__ import annotations

import random
from typing import Any

from kube.manifests import cluster_network_policy, cluster_of, container_port, namespace, pod, policy
from kube.model import Cluster, PortSpec

KEYS = ("app", "tier", "team")
VALUES = ("a", "b", "c")
NODE_IPS = {"n1": "172.18.0.2", "n2": "172.18.0.3", "n3": "172.18.0.4"}
PORTS = [PortSpec(80), PortSpec(81), PortSpec(443), PortSpec(53, "UDP"), PortSpec(80, "SCTP"), PortSpec(8080)]
EXTERNAL = ["8.8.8.8", "10.244.0.1", "172.18.0.2", "172.18.0.4", "192.168.1.7", "172.18.9.9"]


def labelled_node(name: str, ip: str, labels: dict[str, str]) -> dict[str, Any]:
    """A raw Node with an InternalIP and labels."""
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}}


def selector(rng: random.Random, keys: tuple[str, ...] = KEYS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rng.random() < 0.5:
        out["matchLabels"] = {rng.choice(keys): rng.choice(VALUES)}
    if rng.random() < 0.4:
        op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
        expr: dict[str, Any] = {"key": rng.choice(keys), "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = rng.sample(VALUES, rng.randint(1, 2))
        out["matchExpressions"] = [expr]
    return out


def _np_peer(rng: random.Random, pod_ips: list[str]) -> dict[str, Any]:
    if rng.random() < 0.25:
        ip = rng.choice(pod_ips)
        return {"ipBlock": {"cidr": rng.choice([f"{ip}/32", "0.0.0.0/0", "10.244.0.0/16"])}}
    peer: dict[str, Any] = {"podSelector": selector(rng)}
    if rng.random() < 0.5:
        peer["namespaceSelector"] = selector(rng)
    return peer


def _network_policy(rng: random.Random, j: int, names: list[str], pod_ips: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": selector(rng)}
    types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"]])
    spec["policyTypes"] = types
    for direction, field in (("ingress", "from"), ("egress", "to")):
        if direction.capitalize() in types and rng.random() < 0.8:
            rules = []
            for _ in range(rng.randint(0, 2)):
                rule: dict[str, Any] = {}
                if rng.random() < 0.8:
                    rule[field] = [_np_peer(rng, pod_ips)]
                if rng.random() < 0.5:
                    rule["ports"] = [{"protocol": rng.choice(["TCP", "UDP"]), "port": rng.choice([80, 53, "http"])}]
                rules.append(rule)
            spec[direction] = rules
    return policy(rng.choice(names), f"np{j}", spec)


def _cnp_peer(rng: random.Random, egress: bool, pod_ips: list[str]) -> dict[str, Any]:
    kind = rng.random()
    if kind < 0.3:
        return {"namespaces": selector(rng)}
    if kind < 0.6 or (not egress and kind < 0.93):
        return {"pods": {"namespaceSelector": selector(rng), "podSelector": selector(rng)}}
    if not egress:
        return {"serviceAccounts": {"namespaceSelector": {}}}  # a field this version does not know
    if kind < 0.78:
        ip = rng.choice(pod_ips)
        choices = [f"{ip}/32", "10.244.0.0/16", "0.0.0.0/0", "8.0.0.0/8", "172.18.0.2/31", "172.18.0.0/16",
                   "192.168.0.0/16"]
        return {"networks": rng.sample(choices, rng.randint(1, 2))}
    if kind < 0.92:
        return {"nodes": selector(rng, ("zone", "role"))}
    return {"domainNames": ["example.com"]}


def _cnp_protocols(rng: random.Random, named_ok: bool) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        choice = rng.random()
        if choice < 0.25 and named_ok:
            out.append({"destinationNamedPort": rng.choice(["http", "dns", "metrics"])})
        elif choice < 0.5:
            proto = rng.choice(["tcp", "udp", "sctp"])
            out.append({proto: {"destinationPort": {"range": {"start": 53, "end": rng.choice([80, 443, 8080])}}}})
        else:
            proto = rng.choice(["tcp", "tcp", "udp", "sctp"])
            out.append({proto: {"destinationPort": {"number": rng.choice([80, 81, 53, 443, 8080])}}})
    return out


def _cnp(rng: random.Random, j: int, pod_ips: list[str]) -> dict[str, Any]:
    subject = ({"namespaces": selector(rng)} if rng.random() < 0.5
               else {"pods": {"namespaceSelector": selector(rng), "podSelector": selector(rng)}})
    rules: dict[str, list[dict[str, Any]]] = {}
    for direction, field in (("ingress", "from"), ("egress", "to")):
        out = []
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            peers = [_cnp_peer(rng, direction == "egress", pod_ips) for _ in range(rng.randint(1, 2))]
            addressed = any(k in p for p in peers for k in ("networks", "nodes", "domainNames"))
            rule: dict[str, Any] = {"action": rng.choice(["Accept", "Deny", "Pass"]), field: peers}
            if rng.random() < 0.3:
                rule["name"] = f"r{len(out)}"
            protocols = _cnp_protocols(rng, named_ok=not (direction == "egress" and addressed))
            if protocols:
                rule["protocols"] = protocols
            out.append(rule)
        rules[direction] = out
    return cluster_network_policy(f"cnp{j}", tier=rng.choice(["Admin", "Admin", "Baseline"]),
                                  priority=rng.choice([0, 1, 5, 5, 10]), subject=subject, **rules)


def random_cnp_cluster(seed: int) -> Cluster:
    """A cluster of 3 namespaces, 3 labelled nodes, 4 to 12 pods (some hostNetwork), up to 4
    NetworkPolicies and 1 to 5 ClusterNetworkPolicies."""
    rng = random.Random(seed)
    names = ["ns0", "ns1", "ns2"]
    objs: list[dict[str, Any]] = [namespace(n, {k: rng.choice(VALUES) for k in KEYS if rng.random() < 0.6})
                                  for n in names]
    objs += [labelled_node(n, ip, {k: rng.choice(VALUES) for k in ("zone", "role") if rng.random() < 0.7})
             for n, ip in NODE_IPS.items()]
    port_sets = [
        [container_port(80, name="http")],
        [container_port(8080, name="http"), container_port(53, "UDP", "dns")],
        [container_port(443, name="metrics"), container_port(53, "TCP", "dns")],
        [],
    ]
    for i in range(rng.randint(4, 12)):
        labels = {k: rng.choice(VALUES) for k in KEYS if rng.random() < 0.5}
        objs.append(pod(rng.choice(names), f"p{i}", labels, ports=rng.choice(port_sets),
                        node=rng.choice(list(NODE_IPS)), host_network=rng.random() < 0.15))
    pod_ips = [p.ip for p in cluster_of(objs).pods] or ["10.244.0.5"]
    objs += [_network_policy(rng, j, names, pod_ips) for j in range(rng.randint(0, 4))]
    objs += [_cnp(rng, j, pod_ips) for j in range(rng.randint(1, 5))]
    return cluster_of(objs)
