"""ClusterNetworkPolicy tiers for one connection: the scalar reference
(``policy.networking.k8s.io/v1alpha2``, see docs/cnp.md).

Per direction (egress at the source, ingress at the destination) the Admin tier is walked
first: its policies by priority (equal priorities by name), each policy's rules in written
order, and the first rule that matches decides. Accept and Deny are final for the direction;
Pass skips the rest of the tier. Then NetworkPolicy decides for a pod any NetworkPolicy
selects in that direction; the Baseline tier is walked the same way for the others; what no
tier decides is allowed. ``simulator.semantics.evaluate_direction`` puts the tiers together;
this module answers "which rule of a tier matches first". The engine computes the same over
classes (``simulator.tier_sets``).

Endpoints are those of ``simulator.semantics``: a Pod, or an external address (anything with
an ``ip``). Subjects are never hostNetwork pods nor addresses; ``namespaces`` and ``pods``
peers only match pods that are not hostNetwork; ``networks`` match any address (pods, nodes
and outside alike); ``nodes`` match a node's address and the hostNetwork pods on that node.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kube.model import (
    Cluster,
    ClusterNetworkPolicy,
    CNPAction,
    CNPNetworks,
    CNPNodes,
    CNPPeer,
    CNPPods,
    CNPPort,
    CNPRule,
    CNPTier,
    Direction,
    Pod,
    PortSpec,
)

if TYPE_CHECKING:
    from simulator.semantics import Endpoint

TIERS = (CNPTier.ADMIN, CNPTier.BASELINE)


@dataclass(frozen=True)
class CNPRuleRef:
    """A ClusterNetworkPolicy rule that matched a connection (and so decided it, or passed it on).

    ``peer`` and ``port`` index the rule's ``from``/``to`` and ``protocols`` (None: no
    protocols); both are None for a rule that fails closed: an unsupported peer makes a Deny
    or Pass rule a "Deny all" rule (``action`` is then "Deny", the action it takes).
    """

    policy: str  # the ClusterNetworkPolicy's name
    tier: str  # "Admin" or "Baseline"
    direction: str  # "Ingress" or "Egress"
    rule: int
    action: str  # "Accept", "Deny" or "Pass": the action taken
    name: str = ""  # the rule's name, if it has one
    peer: int | None = None
    port: int | None = None
    fail_closed: bool = False

    @property
    def key(self) -> str:
        """``cnp/NAME``: how a ClusterNetworkPolicy is named in attributions."""
        return cnp_key(self.policy)

    def where(self) -> str:
        """``cnp/NAME egress[0]``, with the rule's name in parentheses when it has one."""
        named = f" ({self.name})" if self.name else ""
        return f"{self.key} {Direction(self.direction).word}[{self.rule}]{named}"

    def describe(self) -> str:
        """``cnp/NAME egress[0] (rule-name) Deny``, with `` (fail closed)`` when it is."""
        return f"{self.where()} {self.action}" + (" (fail closed)" if self.fail_closed else "")


def cnp_key(name: str) -> str:
    """``cnp/NAME``: the prefix every attribution of a ClusterNetworkPolicy starts with."""
    return f"cnp/{name}"


def ordered(cluster: Cluster, tier: CNPTier) -> list[ClusterNetworkPolicy]:
    """The tier's policies in evaluation order: by priority, equal priorities by name (the API
    leaves their order undefined; ``npm-sim lint`` warns when it matters)."""
    return sorted((p for p in cluster.cluster_policies if p.tier is tier), key=lambda p: (p.priority, p.name))


def pods_match(cluster: Cluster, pods: CNPPods, ep: Endpoint) -> bool:
    """Whether a subject or a ``namespaces``/``pods`` peer chooses ``ep``: a pod that is not
    hostNetwork, in a namespace the namespace selector matches, with labels the pod selector matches."""
    return (
        isinstance(ep, Pod)
        and not ep.host_network
        and pods.namespace_selector.matches(cluster.namespace_labels(ep.namespace))
        and pods.pod_selector.matches(ep.labels)
    )


def peer_matches(cluster: Cluster, peer: CNPPeer, ep: Endpoint) -> bool:
    """Whether one ``from``/``to`` entry matches ``ep`` (an unsupported peer matches nothing
    by itself: its rule fails closed, see :func:`rule_match`)."""
    if isinstance(peer, CNPPods):
        return pods_match(cluster, peer, ep)
    if isinstance(peer, CNPNetworks):
        return bool(ep.ip) and _in_networks(ep.ip, peer)
    if isinstance(peer, CNPNodes):
        if isinstance(ep, Pod):  # a hostNetwork pod has its node's address
            node = cluster.node_by_name.get(ep.node) if ep.host_network and ep.node else None
            return node is not None and peer.node_selector.matches(node.labels)
        return any(n.ip == ep.ip and peer.node_selector.matches(n.labels) for n in cluster.nodes if n.ip)
    return False


def _in_networks(ip: str, peer: CNPNetworks) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr.version == net.version and addr in net for net in peer.networks)


def port_matches(entry: CNPPort, spec: PortSpec, dst: Endpoint) -> bool:
    """Whether one ``protocols`` entry admits ``spec`` towards ``dst``. A named port is the
    port (and protocol) the destination pod declares under that name; an address has none."""
    if entry.named_port is not None:
        return isinstance(dst, Pod) and any(
            p.name == entry.named_port and p.port == spec.port and p.protocol == spec.protocol for p in dst.ports
        )
    return numbered_port_matches(entry, spec)


def numbered_port_matches(entry: CNPPort, spec: PortSpec) -> bool:
    """Whether a protocol entry (not a named port) admits ``spec``: same protocol, and the port
    or inside the inclusive range."""
    if entry.named_port is not None or entry.protocol != spec.protocol:
        return False
    if entry.port is None:
        return True
    end = entry.end_port if entry.end_port is not None else entry.port
    return entry.port <= spec.port <= end


def rule_match(
    cluster: Cluster, rule: CNPRule, other: Endpoint, dst: Endpoint, spec: PortSpec
) -> tuple[int | None, int | None] | None:
    """``(peer index, port index)`` of the rule's first match, ``(None, None)`` for a Deny or
    Pass rule that fails closed (it matches everything, ports ignored), or None.

    ``other`` is the peer side (source for ingress, destination for egress); ``dst`` is the
    destination, where named ports resolve.
    """
    if rule.fails_closed:
        return None if rule.action is CNPAction.ACCEPT else (None, None)
    port = None
    if rule.ports:
        port = next((i for i, e in enumerate(rule.ports) if port_matches(e, spec, dst)), None)
        if port is None:
            return None
    for i, peer in enumerate(rule.peers):
        if peer_matches(cluster, peer, other):
            return (i, port)
    return None


def first_match(
    cluster: Cluster, tier: CNPTier, src: Endpoint, dst: Endpoint, spec: PortSpec, direction: Direction
) -> CNPRuleRef | None:
    """The first rule of ``tier`` that matches the connection in ``direction``, or None."""
    subject, other = (src, dst) if direction is Direction.EGRESS else (dst, src)
    if not isinstance(subject, Pod) or subject.host_network:
        return None
    for policy in ordered(cluster, tier):
        rules = direction.cnp_rules(policy)
        if not rules or not pods_match(cluster, policy.subject, subject):
            continue
        for index, rule in enumerate(rules):
            hit = rule_match(cluster, rule, other, dst, spec)
            if hit is not None:
                return CNPRuleRef(policy.name, tier.value, direction.value, index, effective_action(rule).value,
                                  rule.name, hit[0], hit[1], rule.fails_closed)
    return None


def effective_action(rule: CNPRule) -> CNPAction:
    """The rule's action, except that a Deny or Pass rule failing closed acts as "Deny all"
    (the API's words for it)."""
    return CNPAction.DENY if rule.fails_closed else rule.action


def fail_closed_effect(rule: CNPRule, direction: Direction) -> str:
    """What a rule with an unsupported peer does, in words."""
    if rule.action is CNPAction.ACCEPT:
        return "this Accept rule matches no traffic"
    what = "denies" if rule.action is CNPAction.DENY else "is treated as denying"
    return f"this {rule.action.value} rule {what} all {direction.word} traffic of the policy's subject, on every port"


__all__ = [
    "TIERS",
    "CNPRuleRef",
    "cnp_key",
    "effective_action",
    "fail_closed_effect",
    "first_match",
    "numbered_port_matches",
    "ordered",
    "peer_matches",
    "pods_match",
    "port_matches",
    "rule_match",
]
