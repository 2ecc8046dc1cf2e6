"""Synthetic clusters that look like real ones, for benchmarks (deterministic by seed).

``generate(pods, policies, seed)`` returns an ``kube.model.Cluster`` built through the real
parser and loader; ``generate_objects`` returns the raw Kubernetes dicts and ``write_yaml``
writes them as one multi-document file (``python benchmarks/cluster_gen.py --help``).

Shape: about 100 pods per namespace; namespaces labelled with team and env; deployments
with app/tier/team (and sometimes version/canary) labels and tier-specific named ports; a
kube-system namespace with DNS pods; one hostNetwork node-exporter per 8 nodes. Policies:
a default deny (ingress, and egress in half the namespaces) and a DNS egress allowance per namespace, then allow
policies mixing pod and namespace selectors, matchExpressions (In, NotIn, Exists,
DoesNotExist), named ports, port ranges and ipBlocks with except, so that equivalence
classes are many and rules are varied.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from collections.abc import Callable
from typing import Any

import yaml

from kube.manifests import Raw, cluster_of, container_port, namespace, node, pod, policy
from kube.model import Cluster

TIERS = {
    "frontend": [container_port(80, name="http"), container_port(443, name="https")],
    "api": [container_port(8080, name="http"), container_port(9090, name="metrics")],
    "backend": [container_port(8080, name="http"), container_port(8443, name="grpc")],
    "db": [container_port(5432, name="postgres")],
    "cache": [container_port(6379, name="redis")],
    "worker": [container_port(9090, name="metrics")],
    "batch": [],
}
TEAMS = ["payments", "search", "identity", "catalog", "checkout", "ads", "infra", "data"]
ENVS = ["prod", "prod", "staging", "dev"]
PODS_PER_NAMESPACE = 100
PODS_PER_NODE = 30


def _ip(base: int, index: int) -> str:
    value = base + index
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def generate_objects(pods: int, policies: int, seed: int = 0) -> list[Raw]:
    """Raw Namespaces, Nodes, Pods and NetworkPolicies (see the module docstring)."""
    rng = random.Random(seed)
    n_ns = max(2, pods // PODS_PER_NAMESPACE)
    n_nodes = max(1, pods // PODS_PER_NODE)
    objs: list[Raw] = []
    node_names = [f"node-{i:04d}" for i in range(n_nodes)]
    objs += [node(name, _ip(0xAC120000 + 2, i)) for i, name in enumerate(node_names)]  # 172.18.0.2+
    ns_names = [f"ns-{i:03d}" for i in range(n_ns)]
    ns_team = {name: TEAMS[i % len(TEAMS)] for i, name in enumerate(ns_names)}
    objs.append(namespace("kube-system", {"team": "infra", "env": "prod"}))
    for name in ns_names:
        labels = {"team": ns_team[name], "env": rng.choice(ENVS)}
        if rng.random() < 0.3:
            labels["pci"] = "true"
        objs.append(namespace(name, labels))

    pod_base = 0x0AF40000 + 2  # 10.244.0.2
    made = 0
    dns_pods = 2

    def add_pod(ns: str, name: str, labels: dict[str, str], ports: list[Raw], host: bool = False) -> None:
        nonlocal made
        objs.append(
            pod(
                ns,
                name,
                labels,
                ip=None if host else _ip(pod_base, made),
                ports=ports,
                node=node_names[made % n_nodes],
                host_network=host,
            )
        )
        made += 1

    for i in range(dns_pods):
        dns_ports = [container_port(53, "UDP", "dns"), container_port(53, "TCP", "dns-tcp")]
        add_pod("kube-system", f"coredns-{i}", {"k8s-app": "kube-dns"}, dns_ports)
    for i in range(max(1, n_nodes // 8)):
        add_pod(
            "kube-system", f"node-exporter-{i}", {"app": "node-exporter"}, [container_port(9100, name="metrics")], True
        )

    apps: dict[str, list[tuple[str, str]]] = {name: [] for name in ns_names}  # ns -> (app, tier)
    remaining = pods - made
    per_ns = [remaining // n_ns + (1 if i < remaining % n_ns else 0) for i in range(n_ns)]
    for ns, count in zip(ns_names, per_ns, strict=True):
        d = 0
        while count > 0:
            tier = rng.choice(list(TIERS))
            app = f"{tier}-{d}"
            replicas = min(count, rng.choice([1, 2, 3, 3, 5, 8]))
            labels = {"app": app, "tier": tier, "team": ns_team[ns]}
            if rng.random() < 0.3:
                labels["version"] = rng.choice(["v1", "v2"])
            apps[ns].append((app, tier))
            for r in range(replicas):
                pod_labels = dict(labels)
                if r == 0 and rng.random() < 0.1:
                    pod_labels["canary"] = "true"
                add_pod(ns, f"{app}-{r}", pod_labels, TIERS[tier])
            count -= replicas
            d += 1

    made_policies = 0

    def add_policy(ns: str, name: str, spec: dict[str, Any]) -> None:
        nonlocal made_policies
        if made_policies < policies:
            objs.append(policy(ns, name, spec))
            made_policies += 1

    dns_peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
        "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
    }
    for i, ns in enumerate(ns_names):
        # Half the namespaces also deny egress by default; the others only ingress.
        types = ["Ingress", "Egress"] if i % 2 == 0 else ["Ingress"]
        add_policy(ns, "default-deny", {"podSelector": {}, "policyTypes": types})
        add_policy(
            ns,
            "allow-dns",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {"to": [dns_peer], "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
                ],
            },
        )
    k = 0
    while made_policies < policies:
        ns = ns_names[k % n_ns]
        if not apps[ns]:
            k += 1
            continue
        app, tier = rng.choice(apps[ns])
        add_policy(ns, f"allow-{app}-{k}", _allow_spec(rng, app, tier, ns_team[ns], apps[ns]))
        k += 1
    return objs


def _allow_spec(rng: random.Random, app: str, tier: str, team: str, apps: list[tuple[str, str]]) -> dict[str, Any]:
    """An allow policy for one app, mixing the constructs real clusters use."""
    target: dict[str, Any] = {"matchLabels": {"app": app}}
    if rng.random() < 0.2:
        target = {"matchLabels": {"tier": tier}, "matchExpressions": [{"key": "canary", "operator": "DoesNotExist"}]}
    other_app, other_tier = rng.choice(apps)
    subnet = rng.randrange(0, 64)
    ingress_peers: list[dict[str, Any]] = [
        {"podSelector": {"matchLabels": {"app": other_app}}},
        {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": [other_tier, "api"]}]}},
        {
            "namespaceSelector": {"matchLabels": {"team": rng.choice(TEAMS)}},
            "podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["batch", "db"]}]},
        },
        {
            "namespaceSelector": {
                "matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev", "staging"]}]
            }
        },
        {"podSelector": {"matchExpressions": [{"key": "version", "operator": "Exists"}]}},
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12"]}},
        {"ipBlock": {"cidr": f"10.244.{subnet}.0/24", "except": [f"10.244.{subnet}.128/25"]}},
    ]
    ports_by_tier = {
        "frontend": [{"port": "http"}, {"port": "https"}],
        "api": [{"port": "http"}, {"protocol": "TCP", "port": 9000, "endPort": 9100}],
        "backend": [{"port": 8080}, {"port": "grpc"}],
        "db": [{"port": 5432}],
        "cache": [{"port": "redis"}],
        "worker": [{"port": "metrics"}],
        "batch": [],
    }
    rules = []
    for _ in range(rng.choice([1, 1, 2])):
        rule: dict[str, Any] = {"from": rng.sample(ingress_peers, rng.choice([1, 1, 2]))}
        ports = ports_by_tier[tier]
        if ports:
            rule["ports"] = rng.sample(ports, rng.randint(1, len(ports)))
        rules.append(rule)
    spec: dict[str, Any] = {"podSelector": target, "ingress": rules, "policyTypes": ["Ingress"]}
    if rng.random() < 0.15:
        egress_peers = [
            {"podSelector": {"matchLabels": {"app": other_app}}},
            {"namespaceSelector": {"matchLabels": {"team": team}}},
            {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}},
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "db"}}},
        ]
        spec["egress"] = [
            {
                "to": rng.sample(egress_peers, rng.choice([1, 2])),
                "ports": rng.choice(
                    [[{"port": 443}], [{"port": "http"}], [{"port": 8000, "endPort": 8999}], [{"protocol": "TCP"}]]
                ),
            }
        ]
        spec["policyTypes"] = ["Ingress", "Egress"]
    return spec


def generate(pods: int, policies: int, seed: int = 0) -> Cluster:
    """A synthetic Cluster with ``pods`` pods and ``policies`` policies (deterministic)."""
    return cluster_of(generate_objects(pods, policies, seed))


def write_yaml(objs: list[Raw], out: Any) -> None:
    """Write raw objects as one multi-document YAML stream."""
    yaml.safe_dump_all(objs, out, sort_keys=False)


def generator_cli(
    description: str,
    make: Callable[[int, int, int], list[Raw]],
    write: Callable[[list[Raw], Any], None],
    argv: list[str] | None,
    *,
    pods: int,
    policies: int,
) -> int:
    """The command line of a cluster generator: --pods, --policies, --seed, -o FILE (or stdout)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--pods", type=int, default=pods)
    parser.add_argument("--policies", type=int, default=policies)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-o", "--output", default="-", help="file to write (default: stdout)")
    args = parser.parse_args(argv)
    objs = make(args.pods, args.policies, args.seed)
    if args.output == "-":
        try:
            write(objs, sys.stdout)
        except BrokenPipeError:  # `... | head`: stop quietly, as a filter does
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    else:
        with open(args.output, "w") as fh:
            write(objs, fh)
    return 0


def main(argv: list[str] | None = None) -> int:
    return generator_cli("Write a synthetic cluster as multi-document YAML.", generate_objects, write_yaml, argv,
                         pods=500, policies=100)


if __name__ == "__main__":
    raise SystemExit(main())
