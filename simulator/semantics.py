"""Policy semantics for one pair of endpoints, straight from the Kubernetes API docs.

This is the readable, scalar statement of the rules: NetworkPolicy here, and the
ClusterNetworkPolicy tiers around it (Admin before, Baseline after; ``simulator.tiers``).
``simulator.engine`` computes the same thing vectorised over equivalence classes;
``simulator.explain`` uses these functions to attribute a verdict to policies and rules; the
tests check that both agree.

An endpoint is a :class:`kube.model.Pod` or an :class:`External` address (anything that is
not a pod: selectors never match it, only ipBlocks, peer-less rules and ClusterNetworkPolicy
``networks`` and ``nodes`` peers do).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from kube.model import (
    EGRESS,
    INGRESS,
    Cluster,
    CNPAction,
    CNPTier,
    Direction,
    NetworkPolicy,
    Peer,
    Pod,
    PolicyPort,
    PortSpec,
    Rule,
)
from simulator.tiers import CNPRuleRef, first_match


@dataclass(frozen=True)
class External:
    """An address outside the pod network (or a node address): matched by ipBlocks (and
    ClusterNetworkPolicy networks and nodes peers) only."""

    ip: str

    @property
    def key(self) -> str:
        return self.ip


Endpoint = Pod | External


@dataclass(frozen=True)
class RuleRef:
    """Which part of which policy allowed a connection.

    ``peer`` is None for a rule without peers (all sources/destinations) and ``port`` is
    None for a rule without ports (all ports); otherwise they index ``from``/``to`` and
    ``ports`` of rule ``rule`` in ``spec.ingress``/``spec.egress``.
    """

    policy: str
    direction: str  # "Ingress" or "Egress"
    rule: int
    peer: int | None
    port: int | None

    def describe(self) -> str:
        field = Direction(self.direction).word
        peers = Direction(self.direction).peer_field
        where = f"{self.policy} spec.{field}[{self.rule}]"
        peer = f"{peers}[{self.peer}]" if self.peer is not None else f"(no {peers}: any peer)"
        port = f"ports[{self.port}]" if self.port is not None else "(no ports: any port)"
        return f"{where} {peer} {port}"


def resolve(cluster: Cluster, ref: Pod | str) -> Endpoint:
    """Turn a Pod, an ``ns/name`` key or an IP address into an endpoint.

    An IP that is the address of a (non-hostNetwork) pod means that pod; any other valid IP
    is an external endpoint. Raises ``ValueError`` with a clear message otherwise.
    """
    if isinstance(ref, Pod):
        return ref
    if isinstance(ref, External):
        return ref
    text = ref.strip()
    if "/" in text and text in cluster.pod_by_key:
        return cluster.pod_by_key[text]
    try:
        ip = str(ipaddress.ip_address(text))
    except ValueError:
        if "/" in text:
            raise ValueError(f"no pod {text!r} in the cluster") from None
        raise ValueError(f"{text!r} is neither a pod (namespace/name) nor an IP address") from None
    for pod in cluster.pods:
        if pod.ip == ip and not pod.host_network:
            return pod
    return External(ip)


def endpoint_ip(ep: Endpoint) -> str:
    return ep.ip


def selectable(ep: Endpoint) -> bool:
    """Whether label selectors can match ``ep``: pods that are not hostNetwork."""
    return isinstance(ep, Pod) and not ep.host_network


def policy_selects(policy: NetworkPolicy, ep: Endpoint) -> bool:
    """Whether ``policy.spec.podSelector`` selects ``ep`` (own namespace, never hostNetwork)."""
    return (
        isinstance(ep, Pod)
        and not ep.host_network
        and ep.namespace == policy.namespace
        and policy.pod_selector.matches(ep.labels)
    )


def peer_matches(cluster: Cluster, policy: NetworkPolicy, peer: Peer, ep: Endpoint) -> bool:
    """Whether one ``from``/``to`` entry of ``policy`` matches ``ep``."""
    if peer.ip_block is not None:
        ip = endpoint_ip(ep)
        return bool(ip) and peer.ip_block.contains(ip)
    if not selectable(ep):
        return False  # selector peers only ever match (non-hostNetwork) pods
    assert isinstance(ep, Pod)
    if peer.namespace_selector is None:
        if ep.namespace != policy.namespace:
            return False
    elif not peer.namespace_selector.matches(cluster.namespace_labels(ep.namespace)):
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(ep.labels)


def port_matches(entry: PolicyPort, spec: PortSpec, dst: Endpoint) -> bool:
    """Whether one ``ports`` entry admits ``spec`` towards ``dst``.

    Named ports resolve on the destination pod (ingress and egress alike) with the entry's
    protocol; an external destination serves no names.
    """
    if entry.protocol != spec.protocol:
        return False
    if entry.port is None:
        return True
    if isinstance(entry.port, str):
        return isinstance(dst, Pod) and dst.named_port(entry.port, entry.protocol) == spec.port
    if entry.end_port is not None:
        return entry.port <= spec.port <= entry.end_port
    return entry.port == spec.port


def rule_match(
    cluster: Cluster, policy: NetworkPolicy, rule: Rule, peer_ep: Endpoint, dst: Endpoint, spec: PortSpec
) -> tuple[int | None, int | None] | None:
    """``(peer index, port index)`` of the first match of ``rule``, or None.

    ``peer_ep`` is the other side (source for ingress, destination for egress); ``dst`` is
    always the destination, where named ports resolve.
    """
    if rule.ports:
        port_idx = next((i for i, e in enumerate(rule.ports) if port_matches(e, spec, dst)), None)
        if port_idx is None:
            return None
    else:
        port_idx = None
    if not rule.peers:
        return (None, port_idx)
    for i, peer in enumerate(rule.peers):
        if peer_matches(cluster, policy, peer, peer_ep):
            return (i, port_idx)
    return None


@dataclass(frozen=True)
class DirectionVerdict:
    """The outcome of one direction (egress at the source or ingress at the destination).

    ``isolated`` and ``policies`` are about NetworkPolicies (whichever tier decided); ``rule``
    is the NetworkPolicy rule that allowed the connection when that tier decided it.
    ``admin`` is the Admin tier's first matching rule (deciding, or passing on), ``baseline``
    the Baseline tier's when that tier was consulted (Admin passed or matched nothing and no
    NetworkPolicy isolates the pod). :attr:`decided_by` says which tier decided.
    """

    direction: str
    isolated: bool
    policies: tuple[str, ...]  # policies that select the pod for this direction
    allowed: bool
    rule: RuleRef | None = None  # the first rule that allows it, when isolated and allowed
    admin: CNPRuleRef | None = None
    baseline: CNPRuleRef | None = None

    @property
    def decided_by(self) -> str:
        """``Admin``, ``NetworkPolicy``, ``Baseline`` or ``default`` (no tier decided: allowed)."""
        if self.admin is not None and self.admin.action != CNPAction.PASS:
            return "Admin"
        if self.isolated:
            return "NetworkPolicy"
        if self.baseline is not None and self.baseline.action != CNPAction.PASS:
            return "Baseline"
        return "default"

    @property
    def cnp_rule(self) -> CNPRuleRef | None:
        """The ClusterNetworkPolicy rule that decided (Accept or Deny), if one did."""
        tier = self.decided_by
        return self.admin if tier == "Admin" else self.baseline if tier == "Baseline" else None

    @property
    def passed(self) -> tuple[CNPRuleRef, ...]:
        """The Pass rules the connection went through, Admin's then Baseline's."""
        return tuple(r for r in (self.admin, self.baseline) if r is not None and r.action == CNPAction.PASS)


def selecting_policies(cluster: Cluster, ep: Endpoint, direction: str) -> Iterator[NetworkPolicy]:
    """Policies whose policyTypes include ``direction`` and that select ``ep``."""
    for policy in cluster.policies:
        if direction in policy.policy_types and policy_selects(policy, ep):
            yield policy


def evaluate_direction(
    cluster: Cluster, src: Endpoint, dst: Endpoint, spec: PortSpec, direction: str
) -> DirectionVerdict:
    """Whether ``direction`` (EGRESS at ``src`` or INGRESS at ``dst``) admits the connection:
    the Admin tier, then NetworkPolicy, then the Baseline tier, then allowed."""
    way = Direction(direction)
    subject, other = (src, dst) if way is EGRESS else (dst, src)
    policies = list(selecting_policies(cluster, subject, direction))
    keys = tuple(p.key for p in policies)
    admin = first_match(cluster, CNPTier.ADMIN, src, dst, spec, way) if cluster.cluster_policies else None
    if admin is not None and admin.action != CNPAction.PASS:
        return DirectionVerdict(direction, bool(policies), keys, admin.action == CNPAction.ACCEPT, None, admin)
    if policies:  # NetworkPolicy decides for the pods it selects: Baseline is not consulted
        for policy in policies:
            for ri, rule in enumerate(way.rules(policy)):
                hit = rule_match(cluster, policy, rule, other, dst, spec)
                if hit is not None:
                    ref = RuleRef(policy.key, direction, ri, hit[0], hit[1])
                    return DirectionVerdict(direction, True, keys, True, ref, admin)
        return DirectionVerdict(direction, True, keys, False, None, admin)
    baseline = first_match(cluster, CNPTier.BASELINE, src, dst, spec, way) if cluster.cluster_policies else None
    allowed = baseline is None or baseline.action != CNPAction.DENY
    return DirectionVerdict(direction, False, (), allowed, None, admin, baseline)


def always_allowed(cluster: Cluster, src: Endpoint, dst: Endpoint) -> str | None:
    """Why the pair bypasses policy, or None.

    A pod may always reach itself, and traffic between a pod and the node it runs on is
    always allowed in both directions (the Kubernetes documentation: "traffic to and from
    the node where a Pod is running is always allowed"); a hostNetwork pod is its node.
    """
    if isinstance(src, Pod) and isinstance(dst, Pod):
        if src.key == dst.key:
            return "a pod may always reach itself"
        if src.node and src.node == dst.node:
            if src.host_network:
                return f"traffic from the pod's own node ({dst.node}, hostNetwork source) is always allowed"
            if dst.host_network:
                return f"traffic to the pod's own node ({src.node}, hostNetwork destination) is always allowed"
        return None
    if isinstance(dst, Pod) and isinstance(src, External) and _node_ip(cluster, dst) == src.ip:
        return f"traffic from the pod's own node ({dst.node}) is always allowed"
    if isinstance(src, Pod) and isinstance(dst, External) and _node_ip(cluster, src) == dst.ip:
        return f"traffic to the pod's own node ({src.node}) is always allowed"
    return None


def _node_ip(cluster: Cluster, pod: Pod) -> str | None:
    node = cluster.node_by_name.get(pod.node) if pod.node else None
    return node.ip if node is not None and node.ip else None


def allowed(cluster: Cluster, src: Endpoint, dst: Endpoint, spec: PortSpec) -> bool:
    """The reference verdict for one connection (slow; the engine is the fast path)."""
    if always_allowed(cluster, src, dst):
        return True
    return (
        evaluate_direction(cluster, src, dst, spec, EGRESS).allowed
        and evaluate_direction(cluster, src, dst, spec, INGRESS).allowed
    )
