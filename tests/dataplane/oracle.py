"""A direct reading of NetworkPolicy semantics, used to check the translation's verdicts.

Independent of npm.translate: it walks the objects, not sets and rules.
"""

from __future__ import annotations

import ipaddress

from npm.model import Cluster, NetworkPolicy, Peer, Pod, PolicyPort


def pod_at(cluster: Cluster, ip: str) -> Pod | None:
    """The (non-hostNetwork) pod owning ``ip``."""
    for p in cluster.pods:
        if not p.host_network and ip in (p.ips or (p.ip,)):
            return p
    return None


def _selects(policy: NetworkPolicy, pod: Pod) -> bool:
    return not pod.host_network and pod.namespace == policy.namespace and policy.pod_selector.matches(pod.labels)


def _peer_matches(cluster: Cluster, policy: NetworkPolicy, peer: Peer, ip: str) -> bool:
    if peer.ip_block is not None:
        return peer.ip_block.network.version == 4 and peer.ip_block.contains(ip)
    other = pod_at(cluster, ip)
    if other is None:
        return False
    if peer.namespace_selector is None:
        if other.namespace != policy.namespace:
            return False
    elif not peer.namespace_selector.matches(cluster.namespace_labels(other.namespace)):
        return False
    return peer.pod_selector is None or peer.pod_selector.matches(other.labels)


def _port_matches(port: PolicyPort, dst: Pod | None, number: int, proto: str) -> bool:
    if port.protocol != proto:
        return False
    if port.port is None:
        return True
    if isinstance(port.port, str):
        return dst is not None and dst.named_port(port.port, proto) == number
    return port.port <= number <= (port.end_port or port.port)


def _allowed(
    cluster: Cluster, pod: Pod, direction: str, peer_ip: str, dst: Pod | None, number: int, proto: str
) -> bool:
    policies = [
        p
        for p in cluster.policies
        if _selects(p, pod) and (p.affects_ingress if direction == "ingress" else p.affects_egress)
    ]
    if not policies:
        return True
    for p in policies:
        for rule in p.ingress if direction == "ingress" else p.egress:
            if rule.ports and not any(_port_matches(pp, dst, number, proto) for pp in rule.ports):
                continue
            if not rule.peers or any(_peer_matches(cluster, p, peer, peer_ip) for peer in rule.peers):
                return True
    return False


def allowed(cluster: Cluster, src_ip: str, dst_ip: str, number: int, proto: str = "TCP") -> bool:
    """Whether a new connection src -> dst:number/proto is allowed by the cluster's policies."""
    ipaddress.ip_address(src_ip)
    src, dst = pod_at(cluster, src_ip), pod_at(cluster, dst_ip)
    if dst is not None and not _allowed(cluster, dst, "ingress", src_ip, dst, number, proto):
        return False
    return src is None or _allowed(cluster, src, "egress", dst_ip, dst, number, proto)
