"""A direct reading of the ClusterNetworkPolicy semantics, for checking the translation.

Written from the API's documentation (apis/v1alpha2/clusternetworkpolicy_types.go in
kubernetes-sigs/network-policy-api), sharing nothing with npm/dataplane: per direction, the
Admin tier (priority, then name; rules in written order; Accept and Deny are final, Pass
ends the tier), then NetworkPolicy (the simulator's reference semantics: a pod some
NetworkPolicy selects in the direction is decided there; the simulator's reading of the
NetworkPolicies alone, without its own reading of the tiers), then the Baseline tier for the
other pods, then allow. Fail closed: a rule with a peer not understood matches nothing if
it accepts, and is a "Deny all" rule if it denies or passes (types.go's words).
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import replace
from typing import Any

from kube.model import (
    DIRECTIONS,
    EGRESS,
    Cluster,
    ClusterNetworkPolicy,
    CNPAction,
    CNPNetworks,
    CNPNodes,
    CNPPods,
    CNPPort,
    CNPRule,
    CNPTier,
    Direction,
    Labels,
    Node,
    Pod,
    PortSpec,
)
from simulator import semantics
from tests.dataplane.helpers import cnp
from tests.dataplane.randomized import VALUES, random_selector

Endpoint = Pod | semantics.External


def _pods_match(cluster: Cluster, pods: CNPPods, ep: Endpoint) -> bool:
    if not isinstance(ep, Pod) or ep.host_network:
        return False
    return pods.namespace_selector.matches(cluster.namespace_labels(ep.namespace)) and pods.pod_selector.matches(
        ep.labels
    )


def _peer_matches(cluster: Cluster, peer: object, ep: Endpoint) -> bool:
    if isinstance(peer, CNPPods):
        return _pods_match(cluster, peer, ep)
    addr = ipaddress.ip_address(ep.ip)
    if isinstance(peer, CNPNetworks):
        return any(addr.version == n.version and addr in n for n in peer.networks)
    assert isinstance(peer, CNPNodes)
    return any(n.ip == ep.ip for n in cluster.nodes if peer.node_selector.matches(n.labels))


def _port_matches(port: CNPPort, spec: PortSpec, dst: Endpoint) -> bool:
    if port.named_port is not None:
        return isinstance(dst, Pod) and dst.named_port(port.named_port, spec.protocol) == spec.port
    assert port.port is not None
    return port.protocol == spec.protocol and port.port <= spec.port <= (port.end_port or port.port)


def _rule_matches(cluster: Cluster, rule: CNPRule, other: Endpoint, dst: Endpoint, spec: PortSpec) -> bool:
    if rule.fails_closed:
        return rule.action is not CNPAction.ACCEPT
    if rule.ports and not any(_port_matches(p, spec, dst) for p in rule.ports):
        return False
    return any(_peer_matches(cluster, p, other) for p in rule.peers)


def tier_action(
    cluster: Cluster, tier: CNPTier, direction: Direction, src: Endpoint, dst: Endpoint, spec: PortSpec
) -> CNPAction | None:
    """The action the tier takes on the connection in ``direction``, or None (no rule matched)."""
    subject, other = (src, dst) if direction is EGRESS else (dst, src)
    policies = sorted((p for p in cluster.cluster_policies if p.tier is tier), key=lambda p: (p.priority, p.name))
    for policy in policies:
        if not _pods_match(cluster, policy.subject, subject):
            continue
        for rule in direction.cnp_rules(policy):
            if _rule_matches(cluster, rule, other, dst, spec):
                # a Deny or Pass rule that fails closed is a "Deny all" rule (types.go, the peers)
                return CNPAction.DENY if rule.fails_closed else rule.action
    return None


def direction_allowed(cluster: Cluster, src: Endpoint, dst: Endpoint, spec: PortSpec, direction: Direction) -> bool:
    admin = tier_action(cluster, CNPTier.ADMIN, direction, src, dst, spec)
    if admin is not None and admin is not CNPAction.PASS:
        return admin is CNPAction.ACCEPT
    np = semantics.evaluate_direction(replace(cluster, cluster_policies=()), src, dst, spec, direction)
    if np.isolated:
        return np.allowed
    return tier_action(cluster, CNPTier.BASELINE, direction, src, dst, spec) is not CNPAction.DENY


def allowed(cluster: Cluster, src: str, dst: str, spec: PortSpec) -> bool:
    """Egress at the source and ingress at the destination (no node or self exception: the
    rules in FORWARD have none either)."""
    s, d = semantics.resolve(cluster, src), semantics.resolve(cluster, dst)
    return all(direction_allowed(cluster, s, d, spec, way) for way in DIRECTIONS)


# ---- random ClusterNetworkPolicies over a random cluster -------------------------------------------
def _selector(rng: random.Random) -> dict[str, Any]:
    return random_selector(rng, expressions=0.3)


def _pods(rng: random.Random) -> dict[str, Any]:
    if rng.random() < 0.4:
        return {"namespaces": _selector(rng)}
    return {"pods": {"namespaceSelector": _selector(rng), "podSelector": _selector(rng)}}


def _peer(rng: random.Random, egress: bool) -> dict[str, Any]:
    choice = rng.random()
    if egress and choice < 0.2:
        return {
            "networks": rng.sample(
                ["10.0.1.0/24", "0.0.0.0/0", "192.0.2.0/24", "10.0.2.4/32", "fd00::/8"], rng.randint(1, 2)
            )
        }
    if egress and choice < 0.3:
        return {"nodes": _selector(rng)}
    if choice > 0.96:
        return {"domainNames": ["example.com"]} if egress else {"serviceAccounts": {"name": "x"}}
    return _pods(rng)


def _protocol(rng: random.Random, named_ok: bool) -> dict[str, Any]:
    choice = rng.random()
    if choice < 0.35:
        return {"tcp": {"destinationPort": {"number": rng.choice([80, 8080])}}}
    if choice < 0.5:
        return {"tcp": {"destinationPort": {"range": {"start": 79, "end": 81}}}}
    if choice < 0.65:
        return {"udp": {"destinationPort": {"number": 53}}}
    if named_ok and choice < 0.85:
        return {"destinationNamedPort": rng.choice(["http", "dns"])}
    return {"sctp": {"destinationPort": {"number": 80}}}


def _rules(rng: random.Random, egress: bool) -> list[dict[str, Any]]:
    out = []
    for _ in range(rng.randint(0, 3)):
        action = rng.choice(["Accept", "Deny", "Pass"])
        peers = [_peer(rng, egress) for _ in range(rng.randint(1, 2))]
        rule: dict[str, Any] = {"action": action, ("to" if egress else "from"): peers}
        if rng.random() < 0.5:
            named_ok = not any(k in p for p in peers for k in ("networks", "nodes", "domainNames"))
            rule["protocols"] = [_protocol(rng, named_ok) for _ in range(rng.randint(1, 2))]
        out.append(rule)
    return out


def random_cluster_policies(rng: random.Random, count: int) -> list[ClusterNetworkPolicy]:
    policies = []
    for i in range(count):
        tier = rng.choice(["Admin", "Baseline"])
        policies.append(
            cnp(
                f"cnp{i}",
                tier,
                rng.choice([0, 1, 1, 2]),
                _pods(rng),
                ingress=_rules(rng, False),
                egress=_rules(rng, True),
            )
        )
    return policies


def random_cluster(seed: int) -> tuple[Cluster, list[str]]:
    """tests.dataplane.randomized's cluster with nodes (labelled, one with the hostNetwork pod's
    address) and 1-4 random ClusterNetworkPolicies; the probes include the other node."""
    from tests.dataplane.randomized import random_cluster as base_cluster

    c, probes = base_cluster(seed)
    rng = random.Random(10_000 + seed)
    nodes = (
        Node("n1", ip="10.0.1.100", labels=Labels({"app": rng.choice(VALUES)})),
        Node("n2", ip="10.0.3.1", labels=Labels({"app": rng.choice(VALUES), "tier": rng.choice(VALUES)})),
    )
    policies = random_cluster_policies(rng, rng.randint(1, 4))
    return replace(c, nodes=nodes, cluster_policies=tuple(sorted(policies, key=lambda p: p.name))), [
        *probes,
        "10.0.3.1",
    ]
