"""Why a connection is allowed or denied: the policies and rules behind one verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from kube.model import EGRESS, INGRESS, Cluster, Pod, PortSpec
from simulator import semantics
from simulator.engine import Simulator
from simulator.semantics import DirectionVerdict, Endpoint, External


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
            "egress": _part_json(self.egress),
            "ingress": _part_json(self.ingress),
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


def _part_json(part: DirectionVerdict) -> dict[str, Any]:
    rule = part.rule
    return {
        "direction": part.direction,
        "isolated": part.isolated,
        "allowed": part.allowed,
        "policies": list(part.policies),
        "rule": None if rule is None else asdict(rule),  # {policy, direction, rule, peer, port}
    }


def _part_text(part: DirectionVerdict, who: str, kind: str) -> str:
    side = "egress from" if part.direction == EGRESS else "ingress to"
    if not part.isolated:
        if kind == "external":
            reason = "an external address is never selected by a policy"
        elif kind == "hostNetwork pod":
            reason = "hostNetwork pods are never selected by a policy"
        else:
            reason = f"no policy with {part.direction} in policyTypes selects it"
        return f"{side} {who}: allowed (not isolated: {reason})"
    pols = ", ".join(part.policies)
    if part.allowed and part.rule is not None:
        return f"{side} {who}: allowed by {part.rule.describe()} (isolated by {pols})"
    return f"{side} {who}: DENIED (isolated by {pols}; no rule of theirs matches)"


def _kind(ep: Endpoint) -> str:
    if isinstance(ep, External):
        return "external"
    return "hostNetwork pod" if ep.host_network else "pod"


def explain(cluster_or_sim: Cluster | Simulator, src: Pod | str, dst: Pod | str, port: PortSpec) -> Explanation:
    """Explain the verdict for ``src -> dst`` on ``port`` (pods, ``ns/name`` keys or IPs)."""
    cluster = cluster_or_sim.cluster if isinstance(cluster_or_sim, Simulator) else cluster_or_sim
    s = semantics.resolve(cluster, src)
    d = semantics.resolve(cluster, dst)
    egress = semantics.evaluate_direction(cluster, s, d, port, EGRESS)
    ingress = semantics.evaluate_direction(cluster, s, d, port, INGRESS)
    bypass = semantics.always_allowed(cluster, s, d)
    return Explanation(
        src=s.key,
        dst=d.key,
        port=port,
        allowed=bool(bypass) or (egress.allowed and ingress.allowed),
        egress=egress,
        ingress=ingress,
        bypass=bypass,
        src_kind=_kind(s),
        dst_kind=_kind(d),
    )
