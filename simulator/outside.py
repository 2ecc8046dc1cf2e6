"""Addresses outside the cluster as endpoints: the IPv4 space cut into blocks of one verdict.

Policies only tell outside addresses apart by ``ipBlock`` CIDRs and their ``except``s, and by
ClusterNetworkPolicy ``networks`` CIDRs, so every address between two consecutive CIDR
boundaries (of all policies considered, before and after a change alike) gets the same verdict
from every rule. Intervals that lie in exactly the same ipBlocks and networks are one block;
the block in none at all is "the rest of the world". A
block is written as the CIDRs that cover it, and evaluated at one representative address in
it that no pod and no node holds (pods and nodes are endpoints of their own).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

import numpy as np

from kube.model import Cluster, IPBlock, PortSpec
from simulator.classes import cnp_networks, ip_blocks

SPACE = 1 << 32
_REPRESENTATIVE_TRIES = 64  # addresses tried per interval before looking at the next one


@dataclass(frozen=True)
class Block:
    """Outside addresses that every policy treats alike."""

    cidrs: tuple[str, ...]  # the block as CIDRs, in address order
    representative: str  # an address of the block that no pod or node holds
    world: bool = False  # the rest of the world: in no ipBlock of any policy

    @property
    def name(self) -> str:
        """The block's name in tables: its CIDR, or its first CIDR and how many more."""
        more = len(self.cidrs) - 1
        return self.cidrs[0] + (f" (+{more} more)" if more else "")


def _edges(clusters: Iterable[Cluster]) -> list[tuple[int, int, int]]:
    """(start, end, id) of every IPv4 range an ipBlock or a ``networks`` CIDR adds (+) or an
    except takes away (-)."""
    clusters = list(clusters)
    found = [b for cluster in clusters for b in ip_blocks(cluster)]
    found += [IPBlock(str(net)) for cluster in clusters for net in cnp_networks(cluster)]
    blocks = dict.fromkeys(b for b in found if b.network.version == 4)
    out: list[tuple[int, int, int]] = []
    for ident, block in enumerate(blocks):
        net = block.network
        out.append((int(net.network_address), int(net.broadcast_address) + 1, ident))
        for exc in block.except_networks:
            out.append((int(exc.network_address), int(exc.broadcast_address) + 1, ~ident))
    return out


def _intervals(edges: Sequence[tuple[int, int, int]]) -> dict[frozenset[int], list[tuple[int, int]]]:
    """Intervals of the address space grouped by the ipBlocks (ids) that contain them."""
    points = sorted({0, SPACE} | {e[0] for e in edges} | {e[1] for e in edges})
    starts: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for start, end, ident in edges:
        starts[start].append((end, ident))
    active: dict[int, int] = {}  # ident (or ~ident for an except) -> end
    groups: dict[frozenset[int], list[tuple[int, int]]] = defaultdict(list)
    for lo, hi in pairwise(points):
        for end, ident in starts.get(lo, ()):
            active[ident] = max(end, active.get(ident, 0))
        for ident in [i for i, end in active.items() if end <= lo]:
            del active[ident]
        inside = frozenset(i for i in active if i >= 0 and ~i not in active)
        groups[inside].append((lo, hi))
    return groups


def outside_blocks(clusters: Sequence[Cluster]) -> list[Block]:
    """The blocks of outside addresses for ``clusters`` (e.g. a before and an after state).

    The rest of the world comes last; blocks with no address left once pods and nodes are
    taken out are dropped (those addresses are endpoints already).
    """
    taken = {int(ipaddress.ip_address(ip)) for c in clusters for p in c.pods for ip in (p.ips or (p.ip,)) if ip
             and ":" not in ip}
    taken |= {int(ipaddress.ip_address(n.ip)) for c in clusters for n in c.nodes if n.ip and ":" not in n.ip}
    blocks: list[Block] = []
    for inside, intervals in _intervals(_edges(clusters)).items():
        rep = _representative(intervals, taken)
        if rep is None:
            continue
        cidrs = tuple(
            str(net)
            for lo, hi in _merged(intervals)
            for net in ipaddress.summarize_address_range(ipaddress.IPv4Address(lo), ipaddress.IPv4Address(hi - 1))
        )
        blocks.append(Block(cidrs, str(ipaddress.IPv4Address(rep)), world=not inside))
    blocks.sort(key=lambda b: (b.world, int(ipaddress.ip_network(b.cidrs[0]).network_address)))
    return blocks


def _merged(intervals: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(intervals):
        if out and out[-1][1] == lo:
            out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def _representative(intervals: Sequence[tuple[int, int]], taken: set[int]) -> int | None:
    """An address of the intervals no pod or node holds; the network and broadcast addresses of
    a wider range are avoided where another will do (they are not hosts)."""
    for lo, hi in intervals:
        first = lo + 1 if hi - lo > 2 else lo
        for candidate in [*range(first, min(hi, first + _REPRESENTATIVE_TRIES)), lo]:
            if candidate not in taken:
                return candidate
        if hi - lo > _REPRESENTATIVE_TRIES:  # a wide interval full of pods at its start: look further
            step = max(1, (hi - lo) // _REPRESENTATIVE_TRIES)
            for candidate in range(lo, hi, step):
                if candidate not in taken:
                    return candidate
    return None


@dataclass(frozen=True)
class OutsideEndpoint:
    """An endpoint outside the pods: a block of addresses (written as its CIDRs) or a node
    (written ``node/<name>``), evaluated at ``address``."""

    names: tuple[str, ...]
    address: str
    node: str = ""  # the node's name, for a node


def outside_endpoints(clusters: Sequence[Cluster]) -> list[OutsideEndpoint]:
    """The nodes with a known address, then the blocks of outside addresses, for ``clusters``."""
    nodes: dict[str, str] = {}
    for cluster in clusters:
        for node in cluster.nodes:
            if node.ip and ":" not in node.ip:
                nodes[node.name] = node.ip  # the last state's address where they differ
    out = [OutsideEndpoint((f"node/{name}",), ip, name) for name, ip in sorted(nodes.items())]
    out += [OutsideEndpoint(b.cidrs, b.representative) for b in outside_blocks(clusters)]
    return out


def outside_verdicts(sim: Any, endpoint: OutsideEndpoint, spec: PortSpec) -> tuple[np.ndarray, np.ndarray]:
    """(from the endpoint into each pod, from each pod to the endpoint) on ``spec``: bool per
    pod of ``sim``, the pod-and-its-own-node exception applied for a node endpoint."""
    t = sim.classes
    ing, eg = sim.external(endpoint.address, spec)
    into, out = ing[t.pod_class], eg[t.pod_class]
    if endpoint.node:
        own = np.array([p.node == endpoint.node for p in t.pods], dtype=bool)
        into, out = into | own, out | own
    return into, out


def outside_counts(sim: Any, endpoints: Sequence[OutsideEndpoint], spec: PortSpec) -> dict[str, int]:
    """Allowed and denied (pod, outside endpoint) pairs on ``spec``, both directions, each block
    counted once however many CIDRs it is written as."""
    allowed = total = 0
    for endpoint in endpoints:
        into, out = outside_verdicts(sim, endpoint, spec)
        allowed += int(into.sum()) + int(out.sum())
        total += 2 * len(into)
    return {"allowed": allowed, "denied": total - allowed, "endpoints": len(endpoints)}
