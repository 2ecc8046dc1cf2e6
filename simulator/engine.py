"""The reachability oracle: which (source, destination, port) connections policy allows.

Evaluation is vectorised over equivalence classes of pods (``simulator.classes``): for each
queried port the engine builds a boolean class x class matrix ``egress_ok & ingress_ok``
with one small matrix product per namespace, then applies the per-pod exceptions (a pod
reaches itself; a node reaches its own pods, hostNetwork pods included). Class matrices
are cached per port, so repeated ``allowed`` calls are cheap.

Semantics are those of ``simulator.semantics`` (the scalar reference); the tests check that
both agree on random clusters.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from npm.model import EGRESS, INGRESS, Cluster, NetworkPolicy, Peer, Pod, PolicyPort, PortSpec, Rule
from simulator import semantics
from simulator.classes import ClassTable, build_classes
from simulator.semantics import Endpoint, External

# A rule's port match: a constant (True: all ports, False: none) or a per-class vector
# (named ports, which resolve on each destination class).
PortMatch = bool | np.ndarray


@dataclass(frozen=True)
class Matrix:
    """Pod x pod verdicts: ``allowed[port][i, j]`` is whether ``pods[i]`` reaches ``pods[j]``."""

    pods: tuple[Pod, ...]
    ports: tuple[PortSpec, ...]
    allowed: dict[PortSpec, np.ndarray]

    def index(self, key: str) -> int:
        """Position of the pod ``ns/name`` in ``pods``."""
        for i, p in enumerate(self.pods):
            if p.key == key:
                return i
        raise KeyError(key)


@dataclass(frozen=True)
class PortSummary:
    """Allowed and denied (source, destination) pod pairs for one port, self pairs included."""

    port: PortSpec
    allowed: int
    denied: int
    seconds: float

    @property
    def total(self) -> int:
        return self.allowed + self.denied


@dataclass(frozen=True)
class Summary:
    pods: int
    classes: int
    policies: int
    ports: tuple[PortSummary, ...]
    setup_seconds: float = 0.0


@dataclass
class _PolicyRules:
    """One policy's rules, prepared for vector evaluation."""

    policy: NetworkPolicy
    ns: int  # namespace id
    cols: np.ndarray  # class ids of the policy's namespace
    target: np.ndarray  # bool [len(cols)]: which of those classes the podSelector selects
    ingress_peers: list[np.ndarray | None] = field(default_factory=list)  # None: no peers (all)
    egress_peers: list[np.ndarray | None] = field(default_factory=list)


class Simulator:
    """Predicts from policies alone whether a connection is allowed (see the module docstring)."""

    def __init__(self, cluster: Cluster) -> None:
        started = time.perf_counter()
        self.cluster = cluster
        self.classes: ClassTable = build_classes(cluster)
        self._peer_cache: dict[tuple[object, int], np.ndarray] = {}
        self._block_cache: dict[object, np.ndarray] = {}
        self._policies = [self._prepare(p) for p in cluster.policies]
        self._by_ns: dict[int, list[_PolicyRules]] = {}
        for pr in self._policies:
            self._by_ns.setdefault(pr.ns, []).append(pr)
        self._class_cache: dict[PortSpec, np.ndarray] = {}
        self._external_cache: dict[tuple[str, PortSpec], tuple[np.ndarray, np.ndarray]] = {}
        self.setup_seconds = time.perf_counter() - started

    # ----- preparation -------------------------------------------------------------------
    def _prepare(self, policy: NetworkPolicy) -> _PolicyRules:
        t = self.classes
        ns = t.ns_index.get(policy.namespace, -1)
        cols = t.ns_cols.get(ns, np.zeros(0, dtype=np.int64))
        target = t.labels.match(policy.pod_selector)[cols] if len(cols) else np.zeros(0, dtype=bool)
        pr = _PolicyRules(policy, ns, cols, target)
        pr.ingress_peers = [self._rule_peers(policy, r) for r in policy.ingress]
        pr.egress_peers = [self._rule_peers(policy, r) for r in policy.egress]
        return pr

    def _rule_peers(self, policy: NetworkPolicy, rule: Rule) -> np.ndarray | None:
        """bool [C]: classes any peer of ``rule`` matches; None for a rule without peers."""
        if not rule.peers:
            return None
        out = np.zeros(self.classes.count, dtype=bool)
        for peer in rule.peers:
            out |= self._peer(policy, peer)
        return out

    def _peer(self, policy: NetworkPolicy, peer: Peer) -> np.ndarray:
        t = self.classes
        if peer.ip_block is not None:
            got = self._block_cache.get(peer.ip_block)
            if got is None:
                got = self._block_cache[peer.ip_block] = t.block_members(peer.ip_block)
            return got
        ns = t.ns_index.get(policy.namespace, -1)
        # A missing namespaceSelector means the policy's namespace: the result depends on it.
        key = (peer, ns if peer.namespace_selector is None else -2)
        got = self._peer_cache.get(key)
        if got is None:
            if peer.namespace_selector is None:
                ns_ok = t.ns_id == ns
            else:
                ns_ok = t.ns_labels.match(peer.namespace_selector)[t.ns_id]
            got = ns_ok & t.selectable
            if peer.pod_selector is not None:
                got &= t.labels.match(peer.pod_selector)
            self._peer_cache[key] = got
        return got

    def _port_match(self, rule: Rule, spec: PortSpec) -> PortMatch:
        """Whether ``rule.ports`` admits ``spec``: a constant, or bool [C] for named ports."""
        if not rule.ports:
            return True
        out: PortMatch = False
        for entry in rule.ports:
            m = self._entry_match(entry, spec)
            if m is True:
                return True
            if m is not False:
                out = m if out is False else (out | m)
        return out

    def _entry_match(self, entry: PolicyPort, spec: PortSpec) -> PortMatch:
        if entry.protocol != spec.protocol:
            return False
        if entry.port is None:
            return True
        if isinstance(entry.port, str):
            numbers = self.classes.named_port_numbers(entry.port, entry.protocol)
            return numbers == spec.port
        if entry.end_port is not None:
            return entry.port <= spec.port <= entry.end_port
        return entry.port == spec.port

    # ----- class evaluation --------------------------------------------------------------
    def class_matrix(self, spec: PortSpec) -> np.ndarray:
        """bool [C, C]: egress_ok & ingress_ok between classes for ``spec`` (cached).

        Per-pod exceptions (self, own node) are not included; see ``allowed``/``matrix``.
        """
        got = self._class_cache.get(spec)
        if got is None:
            got = self._ingress(spec)
            got &= self._egress(spec)
            got.flags.writeable = False
            self._class_cache[spec] = got
        return got

    def _ingress(self, spec: PortSpec) -> np.ndarray:
        count = self.classes.count
        out = np.ones((count, count), dtype=bool)
        for pols in self._by_ns.values():
            cols = pols[0].cols
            if not len(cols):
                continue
            isolated = np.zeros(len(cols), dtype=bool)
            everyone = np.zeros(len(cols), dtype=bool)  # destinations a peer-less rule opens
            grouped: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
            for pr in pols:
                if INGRESS not in pr.policy.policy_types or not pr.target.any():
                    continue
                isolated |= pr.target
                for rule, peers in zip(pr.policy.ingress, pr.ingress_peers, strict=True):
                    pm = self._port_match(rule, spec)
                    if pm is False:
                        continue
                    dst = pr.target if pm is True else pr.target & pm[cols]
                    if not dst.any():
                        continue
                    if peers is None:
                        everyone |= dst
                        continue
                    _group(grouped, dst, peers)
            if not isolated.any():
                continue
            block = _bool_product(grouped, transpose=True, rows=count, cols=len(cols))
            block |= everyone
            block |= ~isolated
            out[:, cols] = block
        return out

    def _egress(self, spec: PortSpec) -> np.ndarray:
        count = self.classes.count
        out = np.ones((count, count), dtype=bool)
        for pols in self._by_ns.values():
            cols = pols[0].cols
            if not len(cols):
                continue
            isolated = np.zeros(len(cols), dtype=bool)
            grouped: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
            for pr in pols:
                if EGRESS not in pr.policy.policy_types or not pr.target.any():
                    continue
                isolated |= pr.target
                for rule, peers in zip(pr.policy.egress, pr.egress_peers, strict=True):
                    pm = self._port_match(rule, spec)
                    if pm is False:
                        continue
                    if peers is None:
                        dst = np.ones(count, dtype=bool) if pm is True else pm
                    else:
                        dst = peers if pm is True else peers & pm
                    _group(grouped, pr.target, dst)
            if not isolated.any():
                continue
            block = _bool_product(grouped, transpose=False, rows=len(cols), cols=count)
            block |= ~isolated[:, None]
            out[cols, :] = block
        return out

    # ----- external endpoints --------------------------------------------------------------
    def _external(self, ip: str, spec: PortSpec) -> tuple[np.ndarray, np.ndarray]:
        """(ingress from ``ip`` into each class, egress from each class to ``ip``) for ``spec``."""
        key = (ip, spec)
        got = self._external_cache.get(key)
        if got is not None:
            return got
        count = self.classes.count
        ing = np.ones(count, dtype=bool)
        eg = np.ones(count, dtype=bool)
        ext = External(ip)
        for pols in self._by_ns.values():
            cols = pols[0].cols
            if not len(cols):
                continue
            iso_in = np.zeros(len(cols), dtype=bool)
            ok_in = np.zeros(len(cols), dtype=bool)
            iso_eg = np.zeros(len(cols), dtype=bool)
            ok_eg = np.zeros(len(cols), dtype=bool)
            for pr in pols:
                if not pr.target.any():
                    continue
                policy = pr.policy
                if INGRESS in policy.policy_types:
                    iso_in |= pr.target
                    for rule in policy.ingress:
                        if not _peers_match_external(policy, rule, ext):
                            continue
                        pm = self._port_match(rule, spec)
                        if pm is True:
                            ok_in |= pr.target
                        elif pm is not False:
                            ok_in |= pr.target & pm[cols]
                if EGRESS in policy.policy_types:
                    iso_eg |= pr.target
                    for rule in policy.egress:
                        if not _peers_match_external(policy, rule, ext):
                            continue
                        # Named ports resolve on the destination, and an address serves none.
                        if not rule.ports or any(semantics.port_matches(e, spec, ext) for e in rule.ports):
                            ok_eg |= pr.target
            ing[cols] = ok_in | ~iso_in
            eg[cols] = ok_eg | ~iso_eg
        got = (ing, eg)
        self._external_cache[key] = got
        return got

    # ----- public API ----------------------------------------------------------------------
    def endpoint(self, ref: Pod | str) -> Endpoint:
        """Resolve a Pod, ``ns/name`` or IP address (ValueError if it is neither)."""
        return semantics.resolve(self.cluster, ref)

    def allowed(self, src: Pod | str, dst: Pod | str, port: PortSpec) -> bool:
        """Whether policy allows ``src`` to open ``port`` on ``dst``.

        ``src``/``dst`` are Pods, ``ns/name`` keys or IP addresses (an address that is no
        pod's is an external endpoint, matched only by ipBlocks and peer-less rules).
        """
        s, d = self.endpoint(src), self.endpoint(dst)
        if semantics.always_allowed(self.cluster, s, d):
            return True
        if isinstance(s, Pod) and isinstance(d, Pod):
            cs, cd = self._class_of(s), self._class_of(d)
            return bool(self.class_matrix(port)[cs, cd])
        if isinstance(s, Pod):  # pod -> external: only the source's egress applies
            return bool(self._external(d.ip, port)[1][self._class_of(s)])
        if isinstance(d, Pod):  # external -> pod: only the destination's ingress applies
            return bool(self._external(s.ip, port)[0][self._class_of(d)])
        return True  # between two external addresses no NetworkPolicy applies

    def _class_of(self, pod: Pod) -> int:
        index = self.classes.pod_index.get(pod.key)
        if index is None:
            raise ValueError(f"pod {pod.key} is not in the simulated cluster")
        return int(self.classes.pod_class[index])

    def matrix(self, ports: Sequence[PortSpec]) -> Matrix:
        """Pod x pod verdicts for each port (pods in ``cluster.pods`` order). O(pods^2) memory."""
        t = self.classes
        pc = t.pod_class
        out: dict[PortSpec, np.ndarray] = {}
        hostnet = np.flatnonzero(t.pod_hostnet & (t.pod_node >= 0))
        for spec in ports:
            full = self.class_matrix(spec)[np.ix_(pc, pc)]
            np.fill_diagonal(full, True)
            for i in hostnet:  # a node and its pods always reach each other
                same_node = t.pod_node == t.pod_node[i]
                full[i, same_node] = True
                full[same_node, i] = True
            out[spec] = full
        return Matrix(tuple(self.cluster.pods), tuple(ports), out)

    def summary(self, ports: Sequence[PortSpec]) -> Summary:
        """Allowed/denied pod pair counts per port, from class sizes (no pod x pod matrix)."""
        t = self.classes
        sizes = t.sizes.astype(np.float64)
        n = len(t.pods)
        results = []
        # A hostNetwork pod is its node: it and the pods on its node always reach each other.
        node_pairs = []
        for h in np.flatnonzero(t.pod_hostnet & (t.pod_node >= 0)):
            same_node = t.pod_node == t.pod_node[h]
            others = same_node & ~t.pod_hostnet  # hostNetwork pairs are counted in rows only
            node_pairs.append((int(t.pod_class[h]), t.pod_class[same_node], t.pod_class[others]))
        for spec in ports:
            started = time.perf_counter()
            cm = self.class_matrix(spec)
            total = 0
            step = max(1, (1 << 22) // max(1, t.count))
            for lo in range(0, t.count, step):
                total += round(float(sizes[lo : lo + step] @ (cm[lo : lo + step] @ sizes)))
            # Per-pod exceptions the class matrix does not have: self pairs and node traffic.
            diag = np.diagonal(cm)
            total += int(t.sizes[~diag].sum())
            for c, row, column in node_pairs:
                total += int((~cm[c, row]).sum()) - int(not diag[c])  # its self pair is counted above
                total += int((~cm[column, c]).sum())
            results.append(PortSummary(spec, total, n * n - total, time.perf_counter() - started))
        return Summary(n, t.count, len(self.cluster.policies), tuple(results), self.setup_seconds)

    def declared_ports(self, pod: Pod | str) -> list[PortSpec]:
        """The ports ``pod`` declares in its containers, as PortSpecs (sorted, no duplicates)."""
        ep = self.endpoint(pod)
        if not isinstance(ep, Pod):
            return []
        return declared_ports(ep)


def declared_ports(pod: Pod) -> list[PortSpec]:
    """PortSpecs for the container ports a pod declares (sorted by protocol then number)."""
    specs = {PortSpec(p.port, p.protocol) for p in pod.ports}
    return sorted(specs, key=lambda s: (s.protocol, s.port))


def all_declared_ports(cluster: Cluster) -> list[PortSpec]:
    """Every port any pod declares, sorted by protocol then number."""
    specs = {PortSpec(p.port, p.protocol) for pod in cluster.pods for p in pod.ports}
    return sorted(specs, key=lambda s: (s.protocol, s.port))


def _peers_match_external(policy: NetworkPolicy, rule: Rule, ext: External) -> bool:
    if not rule.peers:
        return True
    return any(p.ip_block is not None and p.ip_block.contains(ext.ip) for p in rule.peers)


def _group(grouped: dict[bytes, tuple[np.ndarray, np.ndarray]], key_vec: np.ndarray, other: np.ndarray) -> None:
    """OR ``other`` into the row kept for ``key_vec``: rules sharing targets share a row."""
    k = np.packbits(key_vec).tobytes() + key_vec.shape[0].to_bytes(4, "little")
    hit = grouped.get(k)
    if hit is None:
        grouped[k] = (key_vec, other.copy())
    else:
        hit[1][...] |= other


def _bool_product(
    grouped: dict[bytes, tuple[np.ndarray, np.ndarray]], *, transpose: bool, rows: int, cols: int
) -> np.ndarray:
    """OR over groups of outer products, as one float matrix product.

    Egress (``transpose=False``): out[src, dst] = OR_g key_g[src] & other_g[dst].
    Ingress (``transpose=True``): out[src, dst] = OR_g other_g[src] & key_g[dst].
    """
    if not grouped:
        return np.zeros((rows, cols), dtype=bool)
    keys = np.array([g[0] for g in grouped.values()], dtype=np.float32)
    others = np.array([g[1] for g in grouped.values()], dtype=np.float32)
    if transpose:
        return (others.T @ keys) > 0
    return (keys.T @ others) > 0


__all__ = [
    "Matrix",
    "PortSummary",
    "Simulator",
    "Summary",
    "all_declared_ports",
    "declared_ports",
]
