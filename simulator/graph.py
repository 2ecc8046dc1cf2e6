"""The reachability model as a networkx DiGraph, built from the engine on request."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import networkx as nx
import numpy as np

from kube.model import IPBlock, PortSpec
from simulator.classes import ip_blocks
from simulator.engine import Simulator


def block_name(block: IPBlock) -> str:
    """``10.0.0.0/8`` or ``0.0.0.0/0 except 10.0.0.0/8,192.168.0.0/16``."""
    return block.cidr + (f" except {','.join(block.except_)}" if block.except_ else "")


def representative_ip(block: IPBlock) -> str | None:
    """An address inside ``block`` and outside its excepts (the first usable one), or None."""
    net = block.network
    candidate = net.network_address + (1 if net.num_addresses > 2 else 0)
    while candidate in net:
        inside = [e for e in block.except_networks if e.version == net.version and candidate in e]
        if not inside:
            return str(candidate)
        end = max(e.broadcast_address for e in inside)
        if end == net.broadcast_address:
            return None
        candidate = ipaddress.ip_address(int(end) + 1) if net.version == 4 else ipaddress.IPv6Address(int(end) + 1)
    return None


def to_graph(
    sim: Simulator,
    ports: Sequence[PortSpec],
    *,
    external_ips: Sequence[str] = (),
    include_ip_blocks: bool = False,
) -> nx.DiGraph:
    """A DiGraph of who may reach whom on ``ports``.

    Nodes are pod keys (attributes ``kind="pod"``, ``namespace``, ``labels`` (dict), ``ip``,
    ``node``, ``host_network``) and, when asked, external endpoints: each address of
    ``external_ips`` (node key = the address) and, with ``include_ip_blocks``, one node per
    distinct ipBlock of any policy, keyed by ``block_name`` and evaluated at
    ``representative_ip`` (attributes ``kind="external"``, ``ip``, and ``block``).
    An edge exists when at least one port is allowed; its ``ports`` attribute lists them as
    ``"80/TCP"`` strings in the order of ``ports``. Self loops are included (a pod always
    reaches itself). Builds the pod x pod matrix: meant for small and medium clusters.
    """
    graph = nx.DiGraph()
    pods = sim.cluster.pods
    for p in pods:
        graph.add_node(
            p.key,
            kind="pod",
            namespace=p.namespace,
            labels=dict(p.labels),
            ip=p.ip,
            node=p.node,
            host_network=p.host_network,
        )
    externals: list[tuple[str, str]] = []  # (node key, address)
    for ip in external_ips:
        ep = sim.endpoint(ip)
        key = ep.key
        if key in graph:
            continue  # the address of a pod is that pod
        graph.add_node(key, kind="external", ip=ep.ip, block=None)
        externals.append((key, ep.ip))
    if include_ip_blocks:
        for block in ip_blocks(sim.cluster):
            rep = representative_ip(block)
            name = block_name(block)
            if rep is None or name in graph:
                continue
            graph.add_node(name, kind="external", ip=rep, block=name)
            externals.append((name, rep))

    labels: dict[tuple[str, str], list[str]] = {}
    matrix = sim.matrix(ports)
    for spec in ports:
        src_idx, dst_idx = np.nonzero(matrix.allowed[spec])
        text = str(spec)
        for i, j in zip(src_idx.tolist(), dst_idx.tolist(), strict=True):
            labels.setdefault((pods[i].key, pods[j].key), []).append(text)
        for key, ip in externals:
            for p in pods:
                if sim.allowed(p, ip, spec):
                    labels.setdefault((p.key, key), []).append(text)
                if sim.allowed(ip, p, spec):
                    labels.setdefault((key, p.key), []).append(text)
    for (src, dst), allowed in labels.items():
        graph.add_edge(src, dst, ports=allowed)
    return graph
