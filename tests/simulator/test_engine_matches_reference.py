"""The vectorised engine agrees with the scalar reference semantics on random clusters."""

from __future__ import annotations

import random

import numpy as np
import pytest

from kube.manifests import cluster_of, container_port, namespace, node, pod, policy
from kube.model import PortSpec
from simulator import semantics
from simulator.engine import Simulator
from simulator.explain import explain

KEYS = ("app", "tier", "team")
VALUES = ("a", "b", "c")
PORTS = [PortSpec(80), PortSpec(81), PortSpec(443), PortSpec(53, "UDP"), PortSpec(80, "SCTP"), PortSpec(8080)]
EXTERNAL = ["8.8.8.8", "10.244.0.1", "172.18.0.2", "192.168.1.7"]


def _selector(rng: random.Random) -> dict:
    out: dict = {}
    if rng.random() < 0.5:
        out["matchLabels"] = {rng.choice(KEYS): rng.choice(VALUES)}
    if rng.random() < 0.5:
        op = rng.choice(["In", "NotIn", "Exists", "DoesNotExist"])
        expr = {"key": rng.choice(KEYS), "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = rng.sample(VALUES, rng.randint(1, 2))
        out["matchExpressions"] = [expr]
    return out


def _peer(rng: random.Random, pod_ips: list[str]) -> dict:
    kind = rng.random()
    if kind < 0.25:
        ip = rng.choice(pod_ips)
        base = ".".join(ip.split(".")[:2]) + ".0.0/16"
        if rng.random() < 0.5:
            return {"ipBlock": {"cidr": base, "except": [f"{ip}/32"]}}
        return {"ipBlock": {"cidr": rng.choice([f"{ip}/32", "0.0.0.0/0", "8.0.0.0/8", base])}}
    peer: dict = {}
    if kind < 0.6:
        peer["podSelector"] = _selector(rng)
    if kind > 0.45:
        peer["namespaceSelector"] = _selector(rng) if rng.random() < 0.7 else {}
    return peer


def _ports(rng: random.Random) -> list[dict]:
    out = []
    for _ in range(rng.randint(0, 2)):
        choice = rng.random()
        proto = rng.choice(["TCP", "TCP", "UDP", "SCTP"])
        if choice < 0.3:
            out.append({"protocol": proto, "port": rng.choice(["http", "dns", "metrics"])})
        elif choice < 0.5:
            out.append({"protocol": proto, "port": 80, "endPort": rng.choice([81, 443, 8080])})
        elif choice < 0.6:
            out.append({"protocol": proto})
        else:
            out.append({"protocol": proto, "port": rng.choice([80, 81, 53, 443])})
    return out


def random_cluster(seed: int):
    rng = random.Random(seed)
    objs = []
    names = ["ns0", "ns1", "ns2"]
    for name in names:
        objs.append(namespace(name, {k: rng.choice(VALUES) for k in KEYS if rng.random() < 0.6}))
    objs += [node("n1", "172.18.0.2"), node("n2", "172.18.0.3")]
    port_sets = [
        [container_port(80, name="http")],
        [container_port(8080, name="http"), container_port(53, "UDP", "dns")],
        [container_port(443, name="metrics"), container_port(53, "TCP", "dns")],
        [],
    ]
    for i in range(rng.randint(4, 12)):
        ns = rng.choice(names)
        labels = {k: rng.choice(VALUES) for k in KEYS if rng.random() < 0.5}
        objs.append(
            pod(
                ns,
                f"p{i}",
                labels,
                ports=rng.choice(port_sets),
                node=rng.choice(["n1", "n2"]),
                host_network=rng.random() < 0.12,
            )
        )
    cluster0 = cluster_of(objs)
    pod_ips = [p.ip for p in cluster0.pods] or ["10.244.0.5"]
    for j in range(rng.randint(0, 6)):
        spec: dict = {"podSelector": _selector(rng)}
        types = rng.choice([["Ingress"], ["Egress"], ["Ingress", "Egress"], None])
        if types:
            spec["policyTypes"] = types
        for direction, peer_field in (("ingress", "from"), ("egress", "to")):
            if rng.random() < 0.7:
                rules = []
                for _ in range(rng.randint(0, 2)):
                    rule: dict = {}
                    if rng.random() < 0.75:
                        rule[peer_field] = [_peer(rng, pod_ips) for _ in range(rng.randint(1, 2))]
                    ports = _ports(rng)
                    if ports:
                        rule["ports"] = ports
                    rules.append(rule)
                spec[direction] = rules
        objs.append(policy(rng.choice(names), f"pol{j}", spec))
    return cluster_of(objs)


@pytest.mark.parametrize("seed", range(60))
def test_engine_matrix_equals_reference_semantics(seed: int) -> None:
    cluster = random_cluster(seed)
    sim = Simulator(cluster)
    matrix = sim.matrix(PORTS)
    for spec in PORTS:
        grid = matrix.allowed[spec]
        for i, src in enumerate(cluster.pods):
            for j, dst in enumerate(cluster.pods):
                expected = semantics.allowed(cluster, src, dst, spec)
                assert grid[i, j] == expected, (seed, src.key, dst.key, str(spec))
                assert sim.allowed(src, dst, spec) == expected
                assert explain(sim, src, dst, spec).allowed == expected
        summary = sim.summary([spec]).ports[0]
        assert summary.allowed == int(np.count_nonzero(grid))
        assert summary.denied == grid.size - summary.allowed


@pytest.mark.parametrize("seed", range(30))
def test_engine_external_endpoints_equal_reference_semantics(seed: int) -> None:
    cluster = random_cluster(seed)
    sim = Simulator(cluster)
    for spec in PORTS:
        for ip in EXTERNAL:
            ext = semantics.resolve(cluster, ip)
            for p in cluster.pods:
                assert sim.allowed(p, ip, spec) == semantics.allowed(cluster, p, ext, spec), (seed, p.key, ip)
                assert sim.allowed(ip, p, spec) == semantics.allowed(cluster, ext, p, spec), (seed, ip, p.key)
