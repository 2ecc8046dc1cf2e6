"""Realistic synthetic clusters: mostly open, diverse pod labels (deterministic by seed).

``generate(pods, policies, seed)`` returns a ``kube.model.Cluster``; ``generate_objects`` the
raw dicts; ``write_list(objs, out)`` writes them as one ``kind: List`` JSON document (what
``kubectl get -A -o json`` prints), the fastest input for ``npm-sim -f``.

Unlike ``cluster_gen`` (almost closed clusters that compress to few classes), these look like
the clusters the simulator meets in production:

- about 100 pods per namespace over 20 nodes; pod addresses counted up from 10.0.0.2, so the
  first 65,000 or so pods are in 10.0.0.0/16 ("the pod range" of the ipBlocks below);
- namespace labels ``team`` and ``env``; pod labels ``app`` (10 values), ``tier`` (3),
  ``version`` (2) on some pods, ``team`` on some pods, plus labels no policy looks at
  (``pod-template-hash`` per rollout, a per-pod ``statefulset.kubernetes.io/pod-name``), so
  that nearly every pod has a label set of its own;
- containers declare ports among 80, 443, 8080, 9090/TCP and 53, 8125/UDP, some named;
- about 80% of namespaces have a default deny (ingress, a third of them egress too) and a
  DNS allowance; the rest have no default deny, and a tenth have no policy at all;
- allow policies mix podSelector and namespaceSelector, ``matchExpressions`` with In, NotIn,
  Exists and DoesNotExist, named ports, ``endPort`` ranges, ipBlocks over the pod range
  (10.0.0.0/16 except a few /24s) and outside ranges.
"""

from __future__ import annotations

import json
import random
from typing import Any

from cluster_gen import generator_cli

from kube.manifests import Raw, cluster_of, container_port, namespace, node, pod, policy
from kube.model import Cluster

APPS = ["web", "api", "auth", "search", "billing", "gateway", "worker", "cache", "db", "metrics"]
TIERS = {"web": "frontend", "gateway": "frontend", "api": "backend", "auth": "backend", "search": "backend",
         "billing": "backend", "worker": "backend", "cache": "data", "db": "data", "metrics": "backend"}
PORTS = {
    "web": [container_port(80, name="http"), container_port(443, name="https")],
    "gateway": [container_port(443, name="https"), container_port(9090, name="metrics")],
    "api": [container_port(8080, name="http"), container_port(9090, name="metrics")],
    "auth": [container_port(8080, name="http")],
    "search": [container_port(8080, name="http"), container_port(9090, name="metrics")],
    "billing": [container_port(8080, name="http")],
    "worker": [container_port(9090, name="metrics")],
    "cache": [container_port(8080, name="http")],
    "db": [container_port(9090, name="metrics")],
    "metrics": [container_port(8125, "UDP", "statsd"), container_port(9090, name="metrics")],
}
TEAMS = ["payments", "search", "identity", "catalog", "checkout", "ads", "infra", "data"]
ENVS = ["prod", "prod", "staging", "dev"]
PODS_PER_NAMESPACE = 100
NODES = 20
POD_BASE = 0x0A000002  # 10.0.0.2
OUTSIDE = [
    {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]},
    {"cidr": "192.168.0.0/16"},
    {"cidr": "172.16.0.0/12", "except": ["172.18.0.0/16"]},
]
# Ports the benchmark evaluates (every one of them is used by some policy or pod).
BENCH_PORTS = ("80/TCP", "443/TCP", "8080/TCP", "9090/TCP", "53/UDP", "8125/UDP")


def _ip(value: int) -> str:
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


def generate_objects(pods: int, policies: int, seed: int = 0) -> list[Raw]:
    """Raw Namespaces, Nodes, Pods and NetworkPolicies (see the module docstring)."""
    rng = random.Random(seed)
    n_ns = max(2, pods // PODS_PER_NAMESPACE)
    node_names = [f"node-{i:02d}" for i in range(NODES)]
    objs: list[Raw] = [node(name, _ip(0xAC120002 + i)) for i, name in enumerate(node_names)]  # 172.18.0.2+
    ns_names = [f"ns-{i:04d}" for i in range(n_ns)]
    ns_team = {name: rng.choice(TEAMS) for name in ns_names}
    objs.append(namespace("kube-system", {"team": "infra", "env": "prod"}))
    objs += [namespace(name, {"team": ns_team[name], "env": rng.choice(ENVS)}) for name in ns_names]

    made = 0

    def add_pod(ns: str, name: str, labels: dict[str, str], ports: list[Raw], host: bool = False) -> None:
        nonlocal made
        ip = None if host else _ip(POD_BASE + made)
        objs.append(pod(ns, name, labels, ip=ip, ports=ports, node=node_names[made % NODES], host_network=host))
        made += 1

    dns_ports = [container_port(53, "UDP", "dns"), container_port(53, "TCP", "dns-tcp")]
    for i in range(2):
        add_pod("kube-system", f"coredns-{i}", {"k8s-app": "kube-dns"}, dns_ports)
    for i in range(4):
        add_pod("kube-system", f"node-exporter-{i}", {"app": "node-exporter"}, [container_port(9100)], True)

    apps_in: dict[str, list[str]] = {}
    remaining = pods - made
    per_ns = [remaining // n_ns + (1 if i < remaining % n_ns else 0) for i in range(n_ns)]
    for ns, count in zip(ns_names, per_ns, strict=True):
        apps = rng.sample(APPS, rng.randint(4, 8))
        apps_in[ns] = apps
        hashes = {app: [f"{rng.getrandbits(32):08x}" for _ in range(6)] for app in apps}  # rollouts
        for d in range(count):
            app = apps[d % len(apps)]
            labels = {"app": app, "tier": TIERS[app], "pod-template-hash": rng.choice(hashes[app])}
            if rng.random() < 0.4:
                labels["version"] = rng.choice(["v1", "v2"])
            if rng.random() < 0.5:
                labels["team"] = ns_team[ns]
            if app in ("db", "cache", "search", "metrics"):
                labels["statefulset.kubernetes.io/pod-name"] = f"{app}-{d}"
            add_pod(ns, f"{app}-{d}", labels, PORTS[app])

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
    # A tenth of the namespaces have no policy at all; a tenth more only allow policies.
    with_policies = [ns for i, ns in enumerate(ns_names) if i % 10 != 3]
    for i, ns in enumerate(with_policies):
        if i % 9 == 5:
            continue
        types = ["Ingress", "Egress"] if i % 3 == 0 else ["Ingress"]
        add_policy(ns, "default-deny", {"podSelector": {}, "policyTypes": types})
        if "Egress" in types:
            add_policy(ns, "allow-dns", {
                "podSelector": {}, "policyTypes": ["Egress"],
                "egress": [{"to": [dns_peer], "ports": [{"protocol": "UDP", "port": 53}, {"port": 53}]}],
            })
    k = 0
    while made_policies < policies:
        ns = with_policies[k % len(with_policies)]
        app = rng.choice(apps_in[ns])
        add_policy(ns, f"allow-{app}-{k}", _allow_spec(rng, app, apps_in[ns]))
        k += 1
    return objs


def _selector(rng: random.Random, app: str, apps: list[str]) -> dict[str, Any]:
    """A podSelector for one app's pods, in one of the shapes real policies use."""
    choice = rng.random()
    if choice < 0.6:
        return {"matchLabels": {"app": app}}
    if choice < 0.75:
        version = [{"key": "version", "operator": "In", "values": ["v2"]}]
        return {"matchLabels": {"app": app}, "matchExpressions": version}
    if choice < 0.9:
        return {"matchLabels": {"tier": TIERS[app]}, "matchExpressions": [{"key": "team", "operator": "Exists"}]}
    return {"matchExpressions": [{"key": "app", "operator": "In", "values": rng.sample(apps, min(2, len(apps)))}]}


def _pod_range_block(rng: random.Random) -> dict[str, Any]:
    excepts = sorted({f"10.0.{rng.randrange(256)}.0/24" for _ in range(rng.randint(1, 3))})
    return {"cidr": "10.0.0.0/16", "except": excepts}


def _allow_spec(rng: random.Random, app: str, apps: list[str]) -> dict[str, Any]:
    """An allow policy for one app, mixing the constructs real clusters use."""
    other = rng.choice(apps)
    peers: list[dict[str, Any]] = [
        {"podSelector": {"matchLabels": {"app": other}}},
        {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": [other, "gateway"]}]}},
        {"namespaceSelector": {"matchLabels": {"team": rng.choice(TEAMS)}},
         "podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["data"]}]}},
        {"namespaceSelector": {"matchExpressions": [{"key": "env", "operator": "NotIn", "values": ["dev"]}]}},
        {"namespaceSelector": {"matchLabels": {"env": rng.choice(["prod", "staging"])}},
         "podSelector": {"matchExpressions": [{"key": "version", "operator": "Exists"}]}},
        {"podSelector": {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}},
        {"ipBlock": _pod_range_block(rng)},
        {"ipBlock": rng.choice(OUTSIDE)},
    ]
    ports = [
        [{"port": "http"}], [{"port": "metrics"}], [{"port": 443}], [{"port": 80}, {"port": 443}],
        [{"port": 8000, "endPort": 8100}], [{"port": 9000, "endPort": 9100}],
        [{"protocol": "UDP", "port": 8125}], [{"port": "https"}, {"protocol": "UDP", "port": "statsd"}],
    ]
    rules = []
    for _ in range(rng.choice([1, 1, 2])):
        rule: dict[str, Any] = {"from": rng.sample(peers, rng.choice([1, 1, 2]))}
        if rng.random() < 0.85:
            rule["ports"] = rng.choice(ports)
        rules.append(rule)
    spec: dict[str, Any] = {"podSelector": _selector(rng, app, apps), "ingress": rules, "policyTypes": ["Ingress"]}
    if rng.random() < 0.25:
        egress_peers = [
            {"podSelector": {"matchLabels": {"app": other}}},
            {"namespaceSelector": {"matchLabels": {"team": rng.choice(TEAMS)}}},
            {"ipBlock": rng.choice(OUTSIDE)},
            {"ipBlock": _pod_range_block(rng)},
            {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "db"}}},
        ]
        spec["egress"] = [{"to": rng.sample(egress_peers, rng.choice([1, 2])), "ports": rng.choice(ports)}]
        spec["policyTypes"] = ["Ingress", "Egress"]
    return spec


def generate(pods: int, policies: int, seed: int = 0) -> Cluster:
    """A realistic synthetic Cluster with ``pods`` pods and ``policies`` policies (deterministic)."""
    return cluster_of(generate_objects(pods, policies, seed))


def write_list(objs: list[Raw], out: Any) -> None:
    """Write raw objects as one ``kind: List`` JSON document."""
    json.dump({"apiVersion": "v1", "kind": "List", "items": objs}, out, separators=(",", ":"))


def main(argv: list[str] | None = None) -> int:
    return generator_cli("Write a realistic synthetic cluster as a JSON List.", generate_objects, write_list, argv,
                         pods=5000, policies=1000)


if __name__ == "__main__":
    raise SystemExit(main())
