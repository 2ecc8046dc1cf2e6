"""Why a connection is allowed or denied: the policies and rules behind one verdict, tier by tier
(the Admin tier of ClusterNetworkPolicies, NetworkPolicy, the Baseline tier)."""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from typing import Any

from kube.model import EGRESS, INGRESS, Cluster, Pod, PortSpec
from simulator import semantics
from simulator.engine import Simulator
from simulator.outside import outside_blocks
from simulator.semantics import DirectionVerdict, Endpoint, External
from simulator.tiers import CNPRuleRef


@dataclass(frozen=True)
class Explanation:
    """The verdict for ``src -> dst`` on ``port`` with its egress and ingress parts.

    ``bypass`` is set when policy does not apply (a pod reaching itself, a node reaching its
    own pods); then both parts are still evaluated, for information.
    """

    src: str
    dst: str
    port: PortSpec
    allowed: bool
    egress: DirectionVerdict
    ingress: DirectionVerdict
    bypass: str | None = None
    src_kind: str = "pod"
    dst_kind: str = "pod"

    @property
    def verdict(self) -> str:
        return "allowed" if self.allowed else "denied"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (stable keys; see docs/simulator.md)."""
        return {
            "src": self.src,
            "dst": self.dst,
            "src_kind": self.src_kind,
            "dst_kind": self.dst_kind,
            "port": self.port.port,
            "protocol": self.port.protocol,
            "verdict": self.verdict,
            "allowed": self.allowed,
            "bypass": self.bypass,
            "egress": _part_json(self.egress, self.src_kind),
            "ingress": _part_json(self.ingress, self.dst_kind),
        }

    def render(self) -> str:
        """A human-readable account, one line per fact."""
        lines = [f"{self.src} -> {self.dst} {self.port}: {self.verdict.upper()}"]
        if self.bypass:
            lines.append(f"  {self.bypass}; policy does not apply")
        lines.append("  " + _part_text(self.egress, self.src, self.src_kind))
        lines.append("  " + _part_text(self.ingress, self.dst, self.dst_kind))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()


def _part_json(part: DirectionVerdict, kind: str) -> dict[str, Any]:
    rule = part.rule
    return {
        "direction": part.direction,
        "isolated": part.isolated,
        "allowed": part.allowed,
        "policies": list(part.policies),
        "rule": None if rule is None else asdict(rule),  # {policy, direction, rule, peer, port}
        "decided_by": part.decided_by,  # Admin, NetworkPolicy, Baseline or default
        # the Admin / Baseline rule that matched first: {policy, tier, direction, rule, action, name, peer,
        # port, fail_closed}; Baseline only when that tier was consulted
        "admin": None if part.admin is None else asdict(part.admin),
        "baseline": None if part.baseline is None else asdict(part.baseline),
        "path": tier_path(part, kind),  # the same steps as the text
    }


def _network_policy_text(part: DirectionVerdict, kind: str) -> str:
    """What the NetworkPolicy tier says: allowed by a rule, denied, or not isolated (and why)."""
    if not part.isolated:
        if kind in ("external", "node"):
            reason = f"{'a node' if kind == 'node' else 'an external address'} is never selected by a policy"
        elif kind == "hostNetwork pod":
            reason = "hostNetwork pods are never selected by a policy"
        else:
            reason = f"no policy with {part.direction} in policyTypes selects it"
        return f"not isolated: {reason}"
    pols = ", ".join(part.policies)
    if part.allowed and part.rule is not None:
        return f"allowed by {part.rule.describe()} (isolated by {pols})"
    return f"DENIED (isolated by {pols}; no rule of theirs matches)"


def tier_path(part: DirectionVerdict, kind: str) -> list[str]:
    """The tiers the direction went through, one step each, e.g. ``["Admin: Pass by cnp/x
    ingress[1]", "NetworkPolicy: allowed by ..."]``; the last step decided. ``kind`` is the
    subject's (pod, hostNetwork pod, external, node), for why no NetworkPolicy selects it."""
    steps = []
    if part.admin is not None:
        steps.append(f"Admin: {_step(part.admin)}")
    if part.decided_by == "Admin":
        return steps
    steps.append(f"NetworkPolicy: {_network_policy_text(part, kind)}")
    if part.isolated:
        return steps
    if part.baseline is not None:
        steps.append(f"Baseline: {_step(part.baseline)}")
    if part.decided_by == "default":
        steps.append("default: allowed (no tier decided)")
    return steps


def _step(ref: CNPRuleRef) -> str:
    return f"Pass by {ref.where()}" if ref.action == "Pass" else ref.describe()


def _part_text(part: DirectionVerdict, who: str, kind: str) -> str:
    side = "egress from" if part.direction == EGRESS else "ingress to"
    if part.admin is None and part.baseline is None:  # no ClusterNetworkPolicy rule involved
        text = _network_policy_text(part, kind)
        return f"{side} {who}: {'allowed (' + text + ')' if not part.isolated else text}"
    verdict = "allowed" if part.allowed else "DENIED"
    return f"{side} {who}: {verdict}: " + " → ".join(tier_path(part, kind))


def _kind(ep: Endpoint, name: str = "") -> str:
    if isinstance(ep, External):
        return "node" if name.startswith("node/") else "external"
    return "hostNetwork pod" if ep.host_network else "pod"


def resolve_endpoint(cluster: Cluster, ref: Pod | str) -> tuple[Endpoint, str]:
    """A pod, ``ns/name``, an IP, ``node/<name>`` or a CIDR as an endpoint, and its display name.

    A CIDR stands for the outside addresses in it; it must lie within one block of outside
    addresses (see ``simulator.outside``), else which of its addresses is meant matters and
    the error lists the blocks it spans.
    """
    if isinstance(ref, str) and ref.startswith("node/"):
        node = cluster.node_by_name.get(ref[5:])
        if node is None:
            known = ", ".join(sorted(cluster.node_by_name)) or "none"
            raise ValueError(f"no node {ref[5:]!r} in the cluster (nodes: {known})")
        if not node.ip:
            raise ValueError(f"node {node.name} has no known address")
        return External(node.ip), ref
    if isinstance(ref, str) and "/" in ref and ref not in cluster.pod_by_key:
        try:
            net = ipaddress.ip_network(ref.strip(), strict=False)
        except ValueError:
            net = None
        if net is not None and net.version == 4:
            return External(_representative(cluster, net)), str(net)
    ep = semantics.resolve(cluster, ref)
    return ep, ep.key


def _representative(cluster: Cluster, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    inside = [b for b in outside_blocks([cluster]) if any(ipaddress.ip_network(c).overlaps(net) for c in b.cidrs)]
    if len(inside) > 1:
        names = ", ".join(b.name for b in inside[:6])
        raise ValueError(f"{net} spans {len(inside)} blocks that policies treat differently ({names}); "
                         "explain an address or a CIDR within one of them")
    taken = {p.ip for p in cluster.pods} | {n.ip for n in cluster.nodes}
    for host in (net.network_address + i for i in range(min(net.num_addresses, 4096))):
        if str(host) not in taken:
            return str(host)
    raise ValueError(f"every address of {net} checked belongs to a pod or a node: name them instead")


def explain(cluster_or_sim: Cluster | Simulator, src: Pod | str, dst: Pod | str, port: PortSpec) -> Explanation:
    """Explain the verdict for ``src -> dst`` on ``port`` (pods, ``ns/name`` keys, IPs,
    ``node/<name>`` or CIDRs)."""
    cluster = cluster_or_sim.cluster if isinstance(cluster_or_sim, Simulator) else cluster_or_sim
    s, s_name = resolve_endpoint(cluster, src)
    d, d_name = resolve_endpoint(cluster, dst)
    egress = semantics.evaluate_direction(cluster, s, d, port, EGRESS)
    ingress = semantics.evaluate_direction(cluster, s, d, port, INGRESS)
    bypass = semantics.always_allowed(cluster, s, d)
    return Explanation(
        src=s_name,
        dst=d_name,
        port=port,
        allowed=bool(bypass) or (egress.allowed and ingress.allowed),
        egress=egress,
        ingress=ingress,
        bypass=bypass,
        src_kind=_kind(s, s_name),
        dst_kind=_kind(d, d_name),
    )
