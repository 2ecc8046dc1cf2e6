"""Equivalence classes of pods and vectorised label/IP matching over them.

Two pods are equivalent for policy evaluation when they have the same namespace, the same
values for every label key some policy's pod selector looks at (other labels, such as
``pod-template-hash``, cannot change a verdict), the same declared container ports and the
same membership in every ipBlock/except range of every policy and every ``networks`` CIDR of
every ClusterNetworkPolicy; hostNetwork pods (never selected by label selectors) are grouped
by node (what a ``nodes`` peer selects on), ports and ranges instead. Every policy is
evaluated once per class, never once per pod.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from kube.model import (
    Cluster,
    ClusterNetworkPolicy,
    CNPNetworks,
    CNPPods,
    ContainerPort,
    IPBlock,
    LabelSelector,
    NetworkPolicy,
    Pod,
    PortSpec,
)

IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


class LabelIndex:
    """Label maps of N items as per-key integer codes, so a selector matches all N at once."""

    def __init__(self, items: Sequence[Mapping[str, str]]) -> None:
        self.size = len(items)
        self._codes: dict[str, np.ndarray] = {}
        self._vocab: dict[str, dict[str, int]] = {}
        for i, labels in enumerate(items):
            for key, value in labels.items():
                codes = self._codes.get(key)
                if codes is None:
                    codes = self._codes[key] = np.full(self.size, -1, dtype=np.int32)
                    self._vocab[key] = {}
                vocab = self._vocab[key]
                codes[i] = vocab.setdefault(value, len(vocab))
        self._cache: dict[LabelSelector, np.ndarray] = {}

    def _requirement(self, key: str, operator: str, values: Iterable[str]) -> np.ndarray:
        codes = self._codes.get(key)
        if codes is None:  # no item has the key
            return np.full(self.size, operator in ("NotIn", "DoesNotExist"))
        if operator == "Exists":
            return codes >= 0
        if operator == "DoesNotExist":
            return codes < 0
        vocab = self._vocab[key]
        wanted = [vocab[v] for v in values if v in vocab]
        hit = np.isin(codes, wanted) if wanted else np.zeros(self.size, dtype=bool)
        # NotIn: a missing key satisfies it; several values are an AND of exclusions.
        return hit if operator == "In" else ~hit

    def match(self, selector: LabelSelector) -> np.ndarray:
        """Bool array: which items ``selector`` selects (cached; do not modify the result)."""
        out = self._cache.get(selector)
        if out is None:
            out = np.ones(self.size, dtype=bool)
            for req in selector.requirements:
                out &= self._requirement(req.key, req.operator, req.values)
            out.flags.writeable = False
            self._cache[selector] = out
        return out


def _ipv4_int(ip: str) -> int:
    try:
        return int.from_bytes(socket.inet_aton(ip), "big") if ip.count(".") == 3 else int(ipaddress.IPv4Address(ip))
    except OSError:
        return int(ipaddress.IPv4Address(ip))


def pod_label_keys(policies: Iterable[NetworkPolicy]) -> set[str]:
    """Every pod label key that a podSelector of ``policies`` (target or peer) looks at."""
    keys: set[str] = set()
    for policy in policies:
        keys.update(r.key for r in policy.pod_selector.requirements)
        for rule in (*policy.ingress, *policy.egress):
            for peer in rule.peers:
                if peer.pod_selector is not None:
                    keys.update(r.key for r in peer.pod_selector.requirements)
    return keys


def cnp_label_keys(policies: Iterable[ClusterNetworkPolicy]) -> set[str]:
    """Every pod label key that a ClusterNetworkPolicy's subject or ``pods`` peer looks at."""
    keys: set[str] = set()
    for policy in policies:
        keys.update(r.key for r in policy.subject.pod_selector.requirements)
        for rule in (*policy.ingress, *policy.egress):
            for peer in rule.peers:
                if isinstance(peer, CNPPods):
                    keys.update(r.key for r in peer.pod_selector.requirements)
    return keys


def cnp_networks(cluster: Cluster) -> list[IPNet]:
    """Every distinct ``networks`` CIDR of every ClusterNetworkPolicy, in policy order."""
    seen: dict[IPNet, None] = {}
    for policy in cluster.cluster_policies:
        for rule in (*policy.ingress, *policy.egress):
            for peer in rule.peers:
                if isinstance(peer, CNPNetworks):
                    seen.update(dict.fromkeys(peer.networks))
    return list(seen)


def ip_ranges(cluster: Cluster) -> list[IPNet]:
    """Every distinct cidr and except range of any policy's ipBlocks, then every
    ClusterNetworkPolicy ``networks`` CIDR, in a stable order."""
    seen: dict[IPNet, None] = {}
    for block in ip_blocks(cluster):
        seen.setdefault(block.network, None)
        for net in block.except_networks:
            seen.setdefault(net, None)
    seen.update(dict.fromkeys(cnp_networks(cluster)))
    return list(seen)


def ip_blocks(cluster: Cluster) -> list[IPBlock]:
    """Every distinct ipBlock of every policy, in policy order."""
    seen: dict[IPBlock, None] = {}
    for policy in cluster.policies:
        seen.update(dict.fromkeys(policy_ip_blocks(policy)))
    return list(seen)


def policy_ip_blocks(policy: NetworkPolicy) -> list[IPBlock]:
    """The ipBlocks of one policy's peers, ingress then egress, in rule order (repeats kept)."""
    return [peer.ip_block for rule in (*policy.ingress, *policy.egress) for peer in rule.peers
            if peer.ip_block is not None]


def range_membership(ips: Sequence[str], ranges: Sequence[IPNet]) -> np.ndarray:
    """Bool matrix [len(ips), len(ranges)]: whether each address is inside each range.

    IPv4 is vectorised on integers; IPv6 (rare) falls back to ``ipaddress``.
    """
    out = np.zeros((len(ips), len(ranges)), dtype=bool)
    if not ips or not ranges:
        return out
    v4 = np.array([("." in ip and ":" not in ip) for ip in ips], dtype=bool)
    v4_idx = np.flatnonzero(v4)
    if len(v4_idx):
        ints = np.fromiter((_ipv4_int(ips[i]) for i in v4_idx), dtype=np.uint32, count=len(v4_idx))
        for j, net in enumerate(ranges):
            if net.version != 4:
                continue
            mask = np.uint32(int(net.netmask))
            out[v4_idx, j] = (ints & mask) == np.uint32(int(net.network_address))
    for i in np.flatnonzero(~v4):
        if not ips[i]:
            continue  # a pod without an address matches no range
        addr = ipaddress.ip_address(ips[i])
        for j, net in enumerate(ranges):
            out[i, j] = net.version == addr.version and addr in net
    return out


@dataclass
class ClassTable:
    """Pods grouped into equivalence classes, with what evaluation needs per class."""

    pods: tuple[Pod, ...]
    pod_class: np.ndarray  # int32 [n_pods]: the class of each pod
    sizes: np.ndarray  # int64 [C]
    reps: list[Pod]  # one representative pod per class
    namespaces: list[str]  # namespace names, index = namespace id
    ns_id: np.ndarray  # int32 [C]: namespace id; len(namespaces) for hostNetwork classes
    selectable: np.ndarray  # bool [C]: not hostNetwork
    labels: LabelIndex  # over classes (hostNetwork classes have none)
    ns_labels: LabelIndex  # over namespaces, with one extra never-matching slot at the end
    ranges: list[IPNet]
    in_range: np.ndarray  # bool [C, R]
    ports: list[tuple[ContainerPort, ...]]
    ns_cols: dict[int, np.ndarray] = field(default_factory=dict)  # namespace id -> class ids
    nodes: list[str] = field(default_factory=list)
    pod_node: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int32))  # -1: none
    pod_hostnet: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    ns_index: dict[str, int] = field(default_factory=dict)
    label_keys: frozenset[str] | None = None  # the pod label keys classes keep (None: all)
    class_keys: list[tuple] = field(default_factory=list)  # what makes each class (see build_classes)
    pod_index: dict[str, int] = field(default_factory=dict)  # pod key -> position in pods
    _named: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)
    _range_index: dict[IPNet, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.reps)

    def named_port_numbers(self, name: str, protocol: str) -> np.ndarray:
        """int32 [C]: the number each class serves ``name``/``protocol`` on, 0 if none."""
        key = (name, protocol)
        out = self._named.get(key)
        if out is None:
            out = np.zeros(self.count, dtype=np.int32)
            for c, ports in enumerate(self.ports):
                for p in ports:
                    if p.name == name and p.protocol == protocol:
                        out[c] = p.port
                        break
            self._named[key] = out
        return out

    def block_members(self, block: IPBlock) -> np.ndarray:
        """bool [C]: classes whose address is in ``block`` (cidr minus its excepts)."""
        out = self.range_members(block.network)
        for net in block.except_networks:
            out &= ~self.range_members(net)
        return out

    def range_members(self, net: IPNet) -> np.ndarray:
        """bool [C]: classes whose address is in ``net`` (one of ``ranges``), a new array."""
        idx = self._range_index
        if len(idx) != len(self.ranges):
            idx.update((n, j) for j, n in enumerate(self.ranges))
        return self.in_range[:, idx[net]].copy()


class CannotAlign(ValueError):
    """The new cluster's policies look at a label key or an address range the old classes
    ignore, so the old classes could be too coarse for it (reason in the message)."""



def declaring(t: ClassTable, spec: PortSpec) -> np.ndarray:
    """bool [C]: the classes whose pods declare ``spec`` (declared ports are part of the class key)."""
    return np.array(
        [any(p.port == spec.port and p.protocol == spec.protocol for p in ports) for ports in t.ports], dtype=bool
    ).reshape(t.count)

def build_classes(
    cluster: Cluster, label_keys: Iterable[str] | None = (), *, like: ClassTable | None = None
) -> ClassTable:
    """Group ``cluster.pods`` into equivalence classes (see the module docstring).

    Classes keep the pod label keys of ``label_keys`` plus those the cluster's policies look
    at (``label_keys=None``: every key, one class per distinct label set).

    With ``like`` (the classes of an earlier state of the cluster) the table is *aligned*
    with it: every class of ``like`` keeps its id, representative, label keys and ranges
    (it may now have no pods), namespaces keep their ids, and new classes and namespaces
    come after. Raises :class:`CannotAlign` when this cluster's policies look at a label key
    or range ``like`` does not separate.
    """
    pods = cluster.pods
    if like is None:
        looked_at = pod_label_keys(cluster.policies) | cnp_label_keys(cluster.cluster_policies)
        kept = None if label_keys is None else frozenset(looked_at | set(label_keys))
        ranges = ip_ranges(cluster)
        namespaces = sorted({n.name for n in cluster.namespaces} | {p.namespace for p in pods})
        nodes = sorted({p.node for p in pods if p.node} | {n.name for n in cluster.nodes})
    else:
        kept = like.label_keys
        looked_at = pod_label_keys(cluster.policies) | cnp_label_keys(cluster.cluster_policies)
        missing = set() if kept is None else looked_at - kept
        if missing:
            raise CannotAlign(f"policies now select on label {sorted(missing)[0]!r}")
        new_ranges = [r for r in ip_ranges(cluster) if r not in set(like.ranges)]
        if new_ranges:
            raise CannotAlign(f"policies now use the range {new_ranges[0]}")
        ranges = like.ranges
        seen = set(like.namespaces)
        namespaces = like.namespaces + sorted(
            ({n.name for n in cluster.namespaces} | {p.namespace for p in pods}) - seen
        )
        nodes = like.nodes + sorted(({p.node for p in pods if p.node} | {n.name for n in cluster.nodes})
                                    - set(like.nodes))
    membership = range_membership([p.ip for p in pods], ranges)
    packed = np.packbits(membership, axis=1) if ranges else np.zeros((len(pods), 0), dtype=np.uint8)
    ns_index = {n: i for i, n in enumerate(namespaces)}
    node_index = {n: i for i, n in enumerate(nodes)}

    keys: dict[tuple, int] = {} if like is None else {k: c for c, k in enumerate(like.class_keys)}
    class_keys: list[tuple] = [] if like is None else list(like.class_keys)
    reps: list[Pod] = [] if like is None else list(like.reps)
    new_range_rows: list[np.ndarray] = []
    pod_class = np.empty(len(pods), dtype=np.int32)
    sorted_ports: dict[tuple, tuple] = {}  # pods of one workload declare equal port lists
    kept_order = sorted(kept) if kept is not None else []
    # With ``like``, a pod unchanged since then is in the class it was in (same labels, ports
    # and address, and ``like``'s ranges): only changed and new pods are keyed again.
    old_index, old_pods = (like.pod_index, like.pods) if like is not None else ({}, ())
    for i, pod in enumerate(pods):
        j = old_index.get(pod.key)
        if j is not None and old_pods[j] == pod:
            pod_class[i] = like.pod_class[j]  # type: ignore[union-attr]
            continue
        ports = sorted_ports.get(pod.ports)
        if ports is None:
            ports = sorted_ports[pod.ports] = tuple(
                sorted(set(pod.ports), key=lambda p: (p.protocol, p.port, p.name or ""))
            )
        sig = packed[i].tobytes()
        if pod.host_network:
            key: tuple = ("hostNetwork", pod.node, ports, sig)
        else:
            if kept is None:
                labels = pod.labels
            else:
                have = pod.labels
                labels = tuple((k, have[k]) for k in kept_order if k in have)
            key = (pod.namespace, labels, ports, sig)
        c = keys.get(key)
        if c is None:
            c = keys[key] = len(reps)
            class_keys.append(key)
            reps.append(pod)
            new_range_rows.append(membership[i])
        pod_class[i] = c
    count = len(reps)
    sizes = np.bincount(pod_class, minlength=count).astype(np.int64)
    selectable = np.array([not p.host_network for p in reps], dtype=bool)
    hostnet_ns = len(namespaces)
    ns_id = np.array(
        [ns_index[p.namespace] if not p.host_network else hostnet_ns for p in reps], dtype=np.int32
    ).reshape(count)
    class_labels = [_project(p.labels, kept) if not p.host_network else {} for p in reps]
    ns_label_maps: list[Mapping[str, str]] = [cluster.namespace_labels(n) for n in namespaces]
    old_rows = like.in_range if like is not None else np.zeros((0, len(ranges)), dtype=bool)
    new_rows = np.array(new_range_rows, dtype=bool).reshape(len(new_range_rows), len(ranges))
    in_range = np.concatenate([old_rows, new_rows])
    table = ClassTable(
        pods=pods,
        pod_class=pod_class,
        sizes=sizes,
        reps=reps,
        namespaces=namespaces,
        ns_id=ns_id,
        selectable=selectable,
        labels=LabelIndex(class_labels),
        ns_labels=LabelIndex([*ns_label_maps, {}]),
        ranges=ranges,
        in_range=in_range,
        ports=[tuple(p.ports) for p in reps],
        nodes=nodes,
        pod_node=np.array([node_index.get(p.node, -1) for p in pods], dtype=np.int32).reshape(len(pods)),
        pod_hostnet=np.array([p.host_network for p in pods], dtype=bool).reshape(len(pods)),
    )
    table.ns_index = ns_index
    table.label_keys = kept
    table.class_keys = class_keys
    table.pod_index = {p.key: i for i, p in enumerate(pods)}
    order = np.argsort(ns_id, kind="stable")
    bounds = np.searchsorted(ns_id[order], np.arange(len(namespaces) + 2))
    for n in range(len(namespaces)):
        cols = order[bounds[n] : bounds[n + 1]]
        if len(cols):
            table.ns_cols[n] = cols
    return table


def _project(labels: Mapping[str, str], keys: frozenset[str] | None) -> Mapping[str, str]:
    return labels if keys is None else {k: v for k, v in labels.items() if k in keys}
