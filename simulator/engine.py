"""The reachability oracle: which (source, destination, port) connections policy allows.

Evaluation is vectorised over equivalence classes of pods (``simulator.classes``). For each
queried port the engine gives every class an egress set (the destination classes it may
reach) and an ingress set (the source classes it admits), each the union of the peers of
the NetworkPolicy rules that apply to it, put together with the ClusterNetworkPolicy tiers
(``simulator.tier_sets``) where their rules apply, stored once per distinct set as packed bits
(``simulator.verdicts.PortVerdicts``, cached per port): ``allowed[i, j]`` is ``j in
egress(i) and i in ingress(j)``. Nothing is O(classes²) unless asked for: pair counts come
from the sets directly, blocks and pod rows are read in tiles, and the dense class matrix
(``class_matrix``, for callers that want one) is refused with ``memory.TooLarge`` when it
would not fit. The per-pod exceptions (a pod reaches itself; a node reaches its own pods,
hostNetwork pods included) are applied on top. ``with_policies`` and ``with_cluster`` derive
the engine of a changed cluster, re-evaluating only the classes the change touches.

Semantics are those of ``simulator.semantics`` (the scalar reference); the tests check that
both agree on random clusters.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from kube.model import EGRESS, INGRESS, Cluster, NetworkPolicy, Peer, Pod, PolicyPort, PortSpec, Rule
from simulator import memory, semantics
from simulator.bitsets import ALL, NONE, SetTable, pack, set_columns, widen
from simulator.classes import ClassTable, build_classes, pod_label_keys, policy_ip_blocks
from simulator.memory import TooLarge
from simulator.semantics import Endpoint, External
from simulator.tier_sets import NamespaceSets, TierSets
from simulator.verdicts import PortVerdicts

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


class NeedsRebuild(Exception):
    """A policy change that could split equivalence classes (reason in the message).

    Raised by :meth:`Simulator.with_policies`; build a fresh ``Simulator`` instead.
    """


@dataclass
class _PolicyRules:
    """One policy's rules, prepared for vector evaluation."""

    policy: NetworkPolicy
    ns: int  # namespace id
    cols: np.ndarray  # class ids of the policy's namespace
    target: np.ndarray  # bool [len(cols)]: which of those classes the podSelector selects
    # per rule: packed bits over classes of what its peers match; None: no peers (all)
    ingress_peers: list[np.ndarray | None] = field(default_factory=list)
    egress_peers: list[np.ndarray | None] = field(default_factory=list)

    @property
    def selects(self) -> bool:
        """Whether the podSelector selects any class."""
        return bool(self.target.any())

    def rules(self, direction: str) -> Iterator[tuple[Rule, np.ndarray | None]]:
        """(rule, packed classes its peers match) for the policy's ingress or egress rules."""
        if direction == INGRESS:
            return zip(self.policy.ingress, self.ingress_peers, strict=True)
        return zip(self.policy.egress, self.egress_peers, strict=True)


_NO_CLASSES = np.zeros(0, dtype=np.int64)
_NO_CLASSES.flags.writeable = False


class Simulator:
    """Predicts from policies alone whether a connection is allowed (see the module docstring).

    ``classes`` (default: ``build_classes(cluster)``) may be any valid class table of the
    cluster, e.g. one aligned with an earlier state's (``build_classes(..., like=...)``).
    """

    def __init__(self, cluster: Cluster, *, classes: ClassTable | None = None) -> None:
        started = time.perf_counter()
        self.cluster = cluster
        self.classes: ClassTable = classes if classes is not None else build_classes(cluster)
        self._peer_cache: dict[object, np.ndarray] = {}
        self._block_cache: dict[object, np.ndarray] = {}
        # (id(rule), spec) -> (rule, match): hashing a Rule hashes all its peers, so rules are
        # looked up by identity (the rule is kept so that its id cannot be reused)
        self._port_cache: dict[tuple[int, PortSpec], tuple[Rule, PortMatch]] = {}
        self._by_ns: dict[int, list[_PolicyRules]] = {}
        for policy in cluster.policies:
            pr = self._prepare(policy)
            self._by_ns.setdefault(pr.ns, []).append(pr)
        self.tiers = TierSets(cluster, self.classes)  # ClusterNetworkPolicies; often none
        self._verdicts: dict[PortSpec, tuple[PortVerdicts, SetTable, SetTable]] = {}
        self._class_cache: dict[PortSpec, np.ndarray] = {}
        self._external_cache: dict[tuple[str, PortSpec], tuple[np.ndarray, np.ndarray]] = {}
        self._stale_peers = False
        self._rule_bits_cache: dict[tuple, np.ndarray] = {}  # with_cluster: bits of the touched classes
        self.touched_classes: np.ndarray | None = None  # set by with_cluster
        self.setup_seconds = time.perf_counter() - started

    def with_policies(self, changes: Mapping[str, NetworkPolicy | None]) -> Simulator:
        """A new Simulator for this cluster with policies set (``key -> policy``) or deleted
        (``key -> None``); the new cluster's policies are sorted by key.

        The result shares this one's class table and selector caches and re-prepares only
        the policies of the namespaces named in ``changes``; the verdicts of ports already
        evaluated here are carried over and re-evaluated for those namespaces only, so it
        costs milliseconds. Its verdicts are those of ``Simulator(new cluster)``. Raises
        :class:`NeedsRebuild` when a policy uses an ipBlock range or a pod label key no
        policy of this cluster uses (it could split classes).
        """
        known = set(self.classes.ranges)
        keys = self.classes.label_keys
        for policy in changes.values():
            for block in policy_ip_blocks(policy) if policy is not None else ():
                if block.network not in known or not set(block.except_networks) <= known:
                    raise NeedsRebuild(f"{policy.key} adds ipBlock {block.cidr}, which could split pod classes")
            missing = pod_label_keys([policy]) - keys if policy is not None and keys is not None else set()
            if missing:
                label = sorted(missing)[0]
                raise NeedsRebuild(f"{policy.key} selects on label {label!r}, which could split pod classes")
        policies = dict(self.cluster.policy_by_key)
        for key, policy in changes.items():
            if policy is None:
                policies.pop(key, None)
            else:
                policies[key] = policy
        derived = copy.copy(self)  # shares the class table and the selector caches (keyed by value)
        derived.cluster = replace(self.cluster, policies=tuple(policies[k] for k in sorted(policies)))
        derived._by_ns = dict(self._by_ns)
        derived._class_cache, derived._external_cache = {}, {}
        derived.touched_classes = None
        touched: list[int] = []
        for name in sorted({key.split("/", 1)[0] for key in changes}):
            ns = self.classes.ns_index.get(name, -1)
            touched.append(ns)
            kept = {pr.policy.key: pr for pr in self._by_ns.get(ns, []) if pr.policy.namespace == name}
            keys_ = sorted(k for k in {*kept, *changes} if k in policies and k.split("/", 1)[0] == name)
            # the same list Simulator(new cluster) prepares; unchanged policies are reused
            prepared = [kept[k] if k in kept and k not in changes else self._prepare(policies[k]) for k in keys_]
            if prepared:
                derived._by_ns[ns] = prepared
            else:
                derived._by_ns.pop(ns, None)
        derived._verdicts = {spec: derived._rederive(spec, entry, touched) for spec, entry in self._verdicts.items()}
        return derived

    def _rederive(
        self, spec: PortSpec, entry: tuple[PortVerdicts, SetTable, SetTable], namespaces: Sequence[int]
    ) -> tuple[PortVerdicts, SetTable, SetTable]:
        """``entry`` (this port's verdicts before a change) with ``namespaces`` re-evaluated."""
        old, out_t, in_t = entry
        names = {self.classes.namespaces[ns] for ns in namespaces if 0 <= ns < len(self.classes.namespaces)}

        def forget(recipe: tuple) -> bool:  # sets made of the changed namespaces' (old) rules
            return recipe[0][0] in names

        out_t, in_t = out_t.derive(forget=forget), in_t.derive(forget=forget)
        out_sig, in_sig = old.out_sig.copy(), old.in_sig.copy()
        for ns in namespaces:
            cols = self.classes.ns_cols.get(ns, _NO_CLASSES)
            if not len(cols):
                continue
            out_sig[cols] = in_sig[cols] = ALL
            self._fill(spec, ns, cols, out_sig, in_sig, out_t, in_t)
        return PortVerdicts(out_sig, out_t.rows(), in_sig, in_t.rows()), out_t, in_t

    def with_cluster(self, cluster: Cluster, classes: ClassTable, namespaces: Iterable[str]) -> Simulator:
        """A Simulator for ``cluster``, a changed state of this one's cluster, whose
        ``classes`` are aligned with this one's (``build_classes(cluster, like=self.classes)``).

        ``namespaces`` are those whose labels or policies changed. Only the *touched*
        classes are re-evaluated: those of these namespaces, of namespaces that gained a
        class, and the new classes (``touched_classes``); every other class keeps its
        rules, and only the touched classes' bits of its sets are recomputed, from the
        sets' recipes. Verdicts of ports evaluated here are carried over that way; other
        ports are evaluated in full on demand. Its verdicts are those of
        ``Simulator(cluster, classes=classes)``. Raises :class:`NeedsRebuild` when either
        cluster has ClusterNetworkPolicies (their subjects and peers span namespaces).
        """
        if self.cluster.cluster_policies or cluster.cluster_policies:
            raise NeedsRebuild("ClusterNetworkPolicies select across namespaces: evaluate the new cluster in full")
        t, old = classes, self.classes
        new_classes = np.arange(old.count, t.count)
        touched_ns = {t.ns_index[n] for n in namespaces if n in t.ns_index}
        touched_ns |= {int(n) for n in t.ns_id[new_classes] if n < len(t.namespaces)}
        names = {t.namespaces[n] for n in touched_ns}
        cols = [t.ns_cols.get(n, _NO_CLASSES) for n in sorted(touched_ns)]
        touched = np.union1d(new_classes, np.concatenate([*cols, _NO_CLASSES])).astype(np.int64)
        derived = copy.copy(self)
        derived.cluster, derived.classes = cluster, t
        derived.tiers = TierSets(cluster, t)
        derived._peer_cache, derived._block_cache, derived._port_cache = {}, {}, {}
        derived._class_cache, derived._external_cache = {}, {}
        derived.touched_classes = touched
        derived._by_ns = {}
        for policy in cluster.policies:  # the same lists Simulator(cluster) prepares
            ns = t.ns_index.get(policy.namespace, -1)
            if ns not in touched_ns:
                continue
            derived._by_ns.setdefault(ns, []).append(derived._prepare(policy))
        # Untouched namespaces keep their prepared rules (same classes, same targets); their
        # packed peers cover the old classes only, so a port not evaluated yet is evaluated
        # after preparing everything again (see verdicts).
        for ns, pols in self._by_ns.items():
            if ns not in touched_ns:
                derived._by_ns[ns] = pols
        derived._stale_peers = self._stale_peers or bool(len(touched))
        derived._rule_bits_cache = {}
        order = sorted(touched_ns)
        derived._verdicts = {
            spec: derived._widen(spec, entry, order, names, touched) for spec, entry in self._verdicts.items()
        }
        return derived

    def _widen(
        self,
        spec: PortSpec,
        entry: tuple[PortVerdicts, SetTable, SetTable],
        namespaces: Sequence[int],
        names: set[str],
        touched: np.ndarray,
    ) -> tuple[PortVerdicts, SetTable, SetTable]:
        """``entry`` (verdicts over the old classes) over the new classes: every set's bits
        for the ``touched`` classes recomputed from its recipe, then ``namespaces`` filled."""
        count = self.classes.count
        old, out_t, in_t = entry

        def forget(recipe: tuple) -> bool:  # sets made of the touched namespaces' rules
            return recipe[0][0] in names

        tables = []
        for table, direction in ((out_t, EGRESS), (in_t, INGRESS)):
            rows = widen(table.rows(), count)
            which = [sid for sid, recipe in enumerate(table.recipes) if recipe and not forget(recipe)]
            values = np.zeros((len(which), len(touched)), dtype=bool)
            for m, sid in enumerate(which):
                values[m] = self._recipe_bits(table.recipes[sid], direction, spec, touched)
            set_columns(rows, np.array([ALL, *which], dtype=np.int64), touched,
                        np.concatenate([np.ones((1, len(touched)), dtype=bool), values]))
            tables.append(table.derive(rows, count, forget))
        out_t, in_t = tables
        grow = count - old.count
        out_sig = np.concatenate([old.out_sig, np.full(grow, ALL, dtype=np.int32)])
        in_sig = np.concatenate([old.in_sig, np.full(grow, ALL, dtype=np.int32)])
        for ns in namespaces:
            cols = self.classes.ns_cols.get(ns, _NO_CLASSES)
            out_sig[cols] = in_sig[cols] = ALL
            if len(cols):
                self._fill(spec, ns, cols, out_sig, in_sig, out_t, in_t)
        return PortVerdicts(out_sig, out_t.rows(), in_sig, in_t.rows()), out_t, in_t

    def _recipe_bits(self, recipe: tuple, direction: str, spec: PortSpec, cols: np.ndarray) -> np.ndarray:
        """bool [len(cols)]: the classes ``cols`` in the set made by ``recipe`` on ``spec``."""
        # Ingress sets do not depend on the port (it selects targets, not peers).
        cache_key = (recipe, direction, spec if direction == EGRESS else None)
        got = self._rule_bits_cache.get(cache_key)
        if got is None:
            got = np.zeros(len(cols), dtype=bool)
            for _ns, key, _direction, index in recipe:
                got |= self._rule_bits(key, direction, index, spec, cols)
            self._rule_bits_cache[cache_key] = got
        return got

    def _rule_bits(self, key: str, direction: str, index: int, spec: PortSpec, cols: np.ndarray) -> np.ndarray:
        """bool [len(cols)]: which of the classes ``cols`` the ``index``-th ``direction`` rule
        of policy ``key`` allows on ``spec`` (peers; for egress, serving the port too)."""
        policy = self.cluster.policy_by_key[key]
        rule = (policy.ingress if direction == INGRESS else policy.egress)[index]
        cache_key = (key, direction, index)
        got = self._rule_bits_cache.get(cache_key)
        if got is None:
            if not rule.peers:
                got = np.ones(len(cols), dtype=bool)
            else:
                got = np.zeros(len(cols), dtype=bool)
                for peer in rule.peers:
                    got |= self._peer_bits(policy, peer, cols)
            self._rule_bits_cache[cache_key] = got
        if direction == EGRESS:
            pm = self._port_match(rule, spec)
            if pm is not True and pm is not False:
                return got & pm[cols]
        return got

    def _peer_bits(self, policy: NetworkPolicy, peer: Peer, cols: np.ndarray) -> np.ndarray:
        """``peer_classes(policy, peer)[cols]``, computed for ``cols`` only."""
        t = self.classes
        if peer.ip_block is not None:  # cached by value: equal blocks of other policies are parsed once
            return self.peer_classes(policy, peer)[cols]
        if peer.namespace_selector is None:
            got = t.ns_id[cols] == t.ns_index.get(policy.namespace, -1)
        else:
            got = t.ns_labels.match(peer.namespace_selector)[t.ns_id[cols]]
        got &= t.selectable[cols]
        if peer.pod_selector is not None:
            got &= t.labels.match(peer.pod_selector)[cols]
        return got

    # ----- preparation -------------------------------------------------------------------
    def _prepare(self, policy: NetworkPolicy) -> _PolicyRules:
        t = self.classes
        ns = t.ns_index.get(policy.namespace, -1)
        cols = t.ns_cols.get(ns, _NO_CLASSES)
        target = t.labels.match(policy.pod_selector)[cols] if len(cols) else np.zeros(0, dtype=bool)
        pr = _PolicyRules(policy, ns, cols, target)
        if target.any():  # peers matter only for a policy that selects something
            pr.ingress_peers = [_packed(self.rule_peer_classes(policy, r)) for r in policy.ingress]
            pr.egress_peers = [_packed(self.rule_peer_classes(policy, r)) for r in policy.egress]
        else:
            pr.ingress_peers = [None] * len(policy.ingress)
            pr.egress_peers = [None] * len(policy.egress)
        return pr

    def rule_peer_classes(self, policy: NetworkPolicy, rule: Rule) -> np.ndarray | None:
        """bool [C]: classes any peer of ``rule`` (of ``policy``) matches; None for a rule
        without peers (it matches everything, addresses outside the cluster included)."""
        if not rule.peers:
            return None
        out = np.zeros(self.classes.count, dtype=bool)
        for peer in rule.peers:
            out |= self.peer_classes(policy, peer)
        return out

    def peer_classes(self, policy: NetworkPolicy, peer: Peer) -> np.ndarray:
        """bool [C]: classes one ``from``/``to`` entry of ``policy`` matches (do not modify)."""
        t = self.classes
        if peer.ip_block is not None:
            got = self._block_cache.get(peer.ip_block)
            if got is None:
                got = self._block_cache[peer.ip_block] = t.block_members(peer.ip_block)
            return got
        if peer.namespace_selector is None:
            # The policy's own namespace: built from its classes only, and not cached (one
            # such array per namespace and selector would not fit at 100,000s of pods).
            cols = t.ns_cols.get(t.ns_index.get(policy.namespace, -1), _NO_CLASSES)
            got = np.zeros(t.count, dtype=bool)
            got[cols] = t.selectable[cols]
            if peer.pod_selector is not None:
                got[cols] &= t.labels.match(peer.pod_selector)[cols]
            return got
        got = self._peer_cache.get(peer)
        if got is None:
            got = t.ns_labels.match(peer.namespace_selector)[t.ns_id] & t.selectable
            if peer.pod_selector is not None:
                got &= t.labels.match(peer.pod_selector)
            self._peer_cache[peer] = got
        return got

    def selected_classes(self, policy: NetworkPolicy) -> np.ndarray:
        """int64 class ids that ``policy``'s podSelector selects (its namespace only)."""
        pr = next((p for p in self._namespace_rules(policy.namespace) if p.policy == policy), None)
        if pr is None:  # a policy this cluster does not have
            pr = self._prepare(policy)
        return pr.cols[pr.target].astype(np.int64) if len(pr.cols) else _NO_CLASSES

    def isolated_classes(self, direction: str) -> np.ndarray:
        """bool [C]: the classes some NetworkPolicy with ``direction`` in its policyTypes selects
        (the NetworkPolicy tier decides for them, and the Baseline tier is not consulted)."""
        out = np.zeros(self.classes.count, dtype=bool)
        for pols in self._by_ns.values():
            for pr in pols:
                if direction in pr.policy.policy_types and len(pr.cols):
                    out[pr.cols[pr.target]] = True
        return out

    def _namespace_rules(self, namespace: str) -> list[_PolicyRules]:
        return self._by_ns.get(self.classes.ns_index.get(namespace, -1), [])

    def _port_match(self, rule: Rule, spec: PortSpec) -> PortMatch:
        """Whether ``rule.ports`` admits ``spec``: a constant, or bool [C] for named ports."""
        if not rule.ports:
            return True
        key = (id(rule), spec)
        hit = self._port_cache.get(key)
        if hit is not None and hit[0] is rule:
            return hit[1]
        out: PortMatch = False
        for entry in rule.ports:
            m = self._entry_match(entry, spec)
            if m is True:
                out = True
                break
            if m is not False:
                out = m if out is False else (out | m)
        self._port_cache[key] = (rule, out)
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
    def verdicts(self, spec: PortSpec) -> PortVerdicts:
        """The class x class verdicts of ``spec`` in factored form (cached; see
        ``simulator.verdicts``): O(sets x classes) bits, never a C x C matrix."""
        got = self._verdicts.get(spec)
        if got is None:
            if self._stale_peers:  # derived by with_cluster: some prepared peers are out of date
                self._by_ns = {}
                for policy in self.cluster.policies:
                    pr = self._prepare(policy)
                    self._by_ns.setdefault(pr.ns, []).append(pr)
                self._stale_peers = False
            count = self.classes.count
            out_t, in_t = SetTable(count), SetTable(count)
            out_sig = np.full(count, ALL, dtype=np.int32)
            in_sig = np.full(count, ALL, dtype=np.int32)
            # Every namespace with classes when ClusterNetworkPolicies may apply; else those with policies.
            namespaces = self.classes.ns_cols if self.tiers.active else self._by_ns
            for ns in namespaces:
                cols = self.classes.ns_cols.get(ns, _NO_CLASSES)
                if len(cols):
                    self._fill(spec, ns, cols, out_sig, in_sig, out_t, in_t)
            got = self._verdicts[spec] = (PortVerdicts(out_sig, out_t.rows(), in_sig, in_t.rows()), out_t, in_t)
        return got[0]

    def _fill(
        self,
        spec: PortSpec,
        ns: int,
        cols: np.ndarray,
        out_sig: np.ndarray,
        in_sig: np.ndarray,
        out_t: SetTable,
        in_t: SetTable,
    ) -> None:
        """Set the egress and ingress sets of one namespace's classes ``cols`` (not empty)
        from its policies, then from the ClusterNetworkPolicy tiers where they apply."""
        pols = self._by_ns.get(ns)
        tiers = self.tiers.active
        for direction, sig, table in ((EGRESS, out_sig, out_t), (INGRESS, in_sig, in_t)):
            got = self._namespace_sets(spec, direction, pols, table, keep=tiers) if pols else None
            if got is not None:
                sig[cols] = got[0]
            if tiers:
                self.tiers.fill(spec, direction, cols, self.classes.namespaces[ns], got and got[1], sig, table)

    def _namespace_sets(
        self, spec: PortSpec, direction: str, pols: list[_PolicyRules], table: SetTable, *, keep: bool = False
    ) -> tuple[np.ndarray, NamespaceSets | None] | None:
        """int32 [k]: set ids (in ``table``) for the k classes of one namespace in
        ``direction``, from the namespace's policies ``pols``; None if none isolates a class.
        With ``keep``, also which classes are isolated and the sets themselves (for the tiers).

        Egress: the destinations the class may reach; ingress: the sources it admits. A class
        gets the union of the peers of the rules that apply to it on ``spec``.
        """
        count = self.classes.count
        cols = pols[0].cols
        isolated = np.zeros(len(cols), dtype=bool)
        keys: list[np.ndarray] = []  # per rule: the namespace's classes it applies to
        others: list[np.ndarray | None] = []  # per rule: the classes it allows (None: all)
        tokens: list[tuple] = []  # per rule: (namespace, policy key, direction, index)
        for pr in pols:
            if direction not in pr.policy.policy_types or not pr.selects:
                continue
            isolated |= pr.target
            for index, (rule, peers) in enumerate(pr.rules(direction)):
                pm = self._port_match(rule, spec)
                if pm is False:
                    continue
                other = None if peers is None else _unpacked(peers, count)
                if direction == EGRESS:  # the targets reach the peers that serve the port
                    key = pr.target
                    if pm is not True:
                        other = pm.copy() if other is None else other & pm
                else:
                    key = pr.target if pm is True else pr.target & pm[cols]  # named ports resolve here
                    if not key.any():
                        continue
                keys.append(key)
                others.append(other)
                tokens.append((pr.policy.namespace, pr.policy.key, direction, index))
        if not isolated.any():
            return None
        sig = np.full(len(cols), ALL, dtype=np.int32)
        kept = NamespaceSets(isolated, {ALL: np.ones(count, dtype=bool), NONE: np.zeros(count, dtype=bool)}) \
            if keep else None
        if not keys:
            sig[isolated] = NONE
            return sig, kept
        # Classes to which the same rules apply share a set: one union per distinct column.
        codes = np.ascontiguousarray(np.packbits(np.array(keys), axis=0).T)
        # one opaque value per class (its row of codes), so that unique works on a 1-d array
        uniq, inverse = np.unique(codes.view(np.dtype((np.void, codes.shape[1]))).ravel(), return_inverse=True)
        ids = np.empty(len(uniq), dtype=np.int32)
        for u, code in enumerate(uniq):
            rules = np.flatnonzero(np.unpackbits(np.frombuffer(code.tobytes(), dtype=np.uint8), count=len(keys)))
            if not len(rules):
                ids[u] = NONE
            elif any(others[r] is None for r in rules):
                ids[u] = ALL
            else:
                recipe = tuple(tokens[r] for r in rules)
                union = np.logical_or.reduce([others[r] for r in rules])
                ids[u] = table.add(union, recipe)
                if kept is not None:
                    kept.vectors[int(ids[u])] = union
        sig[isolated] = ids[inverse.reshape(-1)][isolated]
        return sig, kept

    def block(self, spec: PortSpec, rows: np.ndarray | slice, cols: np.ndarray | slice) -> np.ndarray:
        """bool [len(rows), len(cols)]: egress_ok & ingress_ok from source classes ``rows``
        to destination classes ``cols`` (int arrays or slices); per-pod exceptions excluded."""
        _ensure(len(_ids(rows, self.classes.count)) * len(_ids(cols, self.classes.count)), "a block of class verdicts")
        return self.verdicts(spec).block(rows, cols)

    def class_matrix(self, spec: PortSpec) -> np.ndarray:
        """bool [C, C]: egress_ok & ingress_ok between classes for ``spec`` (cached; read only).

        Per-pod exceptions (self, own node) are not included; see ``allowed``/``matrix``.
        C² bytes: raises ``simulator.memory.TooLarge`` when that does not fit in memory.
        """
        got = self._class_cache.get(spec)
        if got is None:
            count = self.classes.count
            _ensure(count * count, f"the {count:,} x {count:,} class matrix of {spec}")
            got = self.verdicts(spec).block(slice(0, count), slice(0, count))
            got.flags.writeable = False
            self._class_cache[spec] = got
        return got

    def namespace_classes(self, namespaces: Iterable[str]) -> np.ndarray:
        """int64 class ids of the pods of ``namespaces``, namespace by namespace in the order
        given: the columns of ``ingress(spec, namespaces)`` and rows of ``egress(...)``."""
        t = self.classes
        parts = [t.ns_cols.get(t.ns_index.get(name, -1), _NO_CLASSES) for name in namespaces]
        return np.concatenate(parts).astype(np.int64) if parts else _NO_CLASSES

    def ingress(self, spec: PortSpec, namespaces: Iterable[str] | None = None) -> np.ndarray:
        """bool [C, C]: whether ingress at the destination class (column) admits the source
        class (row) on ``spec``; a new, writable array.

        With ``namespaces``, only the destination classes of those namespaces are evaluated:
        bool [C, k], columns in ``namespace_classes(namespaces)`` order. Ingress into a class
        depends only on the policies of its namespace, so this is the contribution of those
        policies.
        """
        count = self.classes.count
        cols = slice(0, count) if namespaces is None else self.namespace_classes(namespaces)
        _ensure(count * len(_ids(cols, count)), "an ingress matrix")
        return self.verdicts(spec).ingress_block(slice(0, count), cols)

    def egress(self, spec: PortSpec, namespaces: Iterable[str] | None = None) -> np.ndarray:
        """bool [C, C]: whether egress at the source class (row) admits the destination class
        (column) on ``spec``; with ``namespaces`` bool [k, C], rows in
        ``namespace_classes(namespaces)`` order (the contribution of those namespaces' policies)."""
        count = self.classes.count
        rows = slice(0, count) if namespaces is None else self.namespace_classes(namespaces)
        _ensure(count * len(_ids(rows, count)), "an egress matrix")
        return self.verdicts(spec).egress_block(rows, slice(0, count))

    # ----- external endpoints --------------------------------------------------------------
    def external(
        self, ip: str, spec: PortSpec, namespaces: Iterable[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(ingress from ``ip`` into each class, egress from each class to ``ip``) on ``spec``:
        bool [C] each, cached and read only. ``ip`` is taken as an external address (only
        ipBlocks, peer-less rules, and ClusterNetworkPolicy networks and nodes peers match it);
        the per-pod exceptions are not applied.

        With ``namespaces``: bool [k] each for ``namespace_classes(namespaces)``, not cached.
        """
        ext = External(ip)
        if namespaces is not None:
            parts = [self._external_namespace(ext, spec, self.classes.ns_index.get(name, -1)) for name in namespaces]
            if not parts:
                return np.ones(0, dtype=bool), np.ones(0, dtype=bool)
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        key = (ip, spec)
        cached = self._external_cache.get(key)
        if cached is not None:
            return cached
        count = self.classes.count
        ing = np.ones(count, dtype=bool)
        eg = np.ones(count, dtype=bool)
        for ns in self.classes.ns_cols if self.tiers.active else self._by_ns:
            cols = self.classes.ns_cols.get(ns, _NO_CLASSES)
            if len(cols):
                ing[cols], eg[cols] = self._external_namespace(ext, spec, ns)
        ing.flags.writeable = eg.flags.writeable = False
        self._external_cache[key] = (ing, eg)
        return ing, eg

    def _external_namespace(self, ext: External, spec: PortSpec, ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(ingress from, egress to) ``ext`` for the classes of namespace ``ns``."""
        cols = self.classes.ns_cols.get(ns, _NO_CLASSES)
        k = len(cols)
        pols = self._by_ns.get(ns)
        got = self._external_block(ext, spec, pols) if pols and k else None
        if got is None:  # no policy isolates a class of the namespace
            ok = iso = np.zeros(k, dtype=bool)
            got = (ok, iso, ok, iso)
        ok_in, iso_in, ok_eg, iso_eg = got
        if not self.tiers.active or not k:
            return ok_in | ~iso_in, ok_eg | ~iso_eg
        return (self.tiers.external(ext.ip, spec, INGRESS, cols, ok_in, iso_in),
                self.tiers.external(ext.ip, spec, EGRESS, cols, ok_eg, iso_eg))

    def _external_block(
        self, ext: External, spec: PortSpec, pols: list[_PolicyRules]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """(ingress allowed, isolated for ingress, egress allowed, isolated for egress) from and
        to ``ext`` by the NetworkPolicies of one namespace's classes; None if there are none."""
        cols = pols[0].cols
        if not len(cols):
            return None
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
                    if not _peers_match_external(rule, ext):
                        continue
                    pm = self._port_match(rule, spec)
                    if pm is True:
                        ok_in |= pr.target
                    elif pm is not False:
                        ok_in |= pr.target & pm[cols]
            if EGRESS in policy.policy_types:
                iso_eg |= pr.target
                for rule in policy.egress:
                    if not _peers_match_external(rule, ext):
                        continue
                    # Named ports resolve on the destination, and an address serves none.
                    if not rule.ports or any(semantics.port_matches(e, spec, ext) for e in rule.ports):
                        ok_eg |= pr.target
        return ok_in, iso_in, ok_eg, iso_eg

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
            return bool(self.verdicts(port).pairs(np.array([cs]), np.array([cd]))[0])
        if isinstance(s, Pod):  # pod -> external: only the source's egress applies
            return bool(self.external(d.ip, port)[1][self._class_of(s)])
        if isinstance(d, Pod):  # external -> pod: only the destination's ingress applies
            return bool(self.external(s.ip, port)[0][self._class_of(d)])
        return True  # between two external addresses no NetworkPolicy applies

    def _class_of(self, pod: Pod) -> int:
        index = self.classes.pod_index.get(pod.key)
        if index is None:
            raise ValueError(f"pod {pod.key} is not in the simulated cluster")
        return int(self.classes.pod_class[index])

    def matrix(self, ports: Sequence[PortSpec]) -> Matrix:
        """Pod x pod verdicts for each port (pods in ``cluster.pods`` order). O(pods^2) memory:
        raises ``simulator.memory.TooLarge`` when that does not fit."""
        t = self.classes
        n = len(t.pods)
        _ensure(n * n * max(1, len(ports)), f"the {n:,} x {n:,} pod matrix on {len(ports)} port(s)",
                "use `npm-sim summary`, or `reach -o json|csv|table`, which stream")
        out = {spec: self.pod_rows(spec, slice(0, n)) for spec in ports}
        return Matrix(tuple(self.cluster.pods), tuple(ports), out)

    def pod_rows(self, spec: PortSpec, rows: slice) -> np.ndarray:
        """bool [len(rows), pods]: verdicts from the pods ``rows`` (a slice of
        ``cluster.pods``) to every pod, per-pod exceptions applied; memory rows x pods."""
        t = self.classes
        pc = t.pod_class
        start, stop, _ = rows.indices(len(pc))
        out = self.verdicts(spec).block(pc[start:stop], pc)
        idx = np.arange(start, stop)
        out[idx - start, idx] = True  # a pod reaches itself
        # A node and its pods (its hostNetwork pods included) always reach each other.
        for h in np.flatnonzero(t.pod_hostnet & (t.pod_node >= 0)):
            same_node = t.pod_node == t.pod_node[h]
            if start <= h < stop:
                out[h - start, same_node] = True
            local = same_node[start:stop]
            out[local, h] = True
        return out

    def pod_block(self, spec: PortSpec, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """bool [len(rows), len(cols)]: verdicts from the pods at positions ``rows`` of
        ``cluster.pods`` to those at ``cols``, the per-pod exceptions of ``pod_rows`` applied."""
        t = self.classes
        out = self.verdicts(spec).block(t.pod_class[rows], t.pod_class[cols])
        out |= rows[:, None] == cols[None, :]  # a pod reaches itself
        # A node and its pods (its hostNetwork pods included) always reach each other.
        host = t.pod_hostnet & (t.pod_node >= 0)
        rn, cn = t.pod_node[rows], t.pod_node[cols]
        out |= (rn[:, None] == cn[None, :]) & (rn[:, None] >= 0) & (host[rows][:, None] | host[cols][None, :])
        return out

    def summary(self, ports: Sequence[PortSpec]) -> Summary:
        """Allowed/denied pod pair counts per port, from class sizes and the factored
        verdicts (no class x class or pod x pod matrix; see ``PortVerdicts.allowed_pairs``)."""
        t = self.classes
        n = len(t.pods)
        results = []
        # A hostNetwork pod is its node: it and the pods on its node always reach each other.
        node_pairs = []
        for h in np.flatnonzero(t.pod_hostnet & (t.pod_node >= 0)):
            same_node = t.pod_node == t.pod_node[h]
            others = same_node & ~t.pod_hostnet  # hostNetwork pairs are counted in rows only
            node_pairs.append((int(t.pod_class[h]), t.pod_class[same_node], t.pod_class[others]))
        every = np.arange(t.count)
        for spec in ports:
            started = time.perf_counter()
            v = self.verdicts(spec)
            total = v.allowed_pairs(t.sizes)
            # Per-pod exceptions the class verdicts do not have: self pairs and node traffic.
            diag = v.pairs(every, every)
            total += int(t.sizes[~diag].sum())
            for c, row, column in node_pairs:
                total += int((~v.pairs(np.full(len(row), c), row)).sum()) - int(not diag[c])  # self: above
                total += int((~v.pairs(column, np.full(len(column), c))).sum())
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


def _peers_match_external(rule: Rule, ext: External) -> bool:
    if not rule.peers:
        return True
    return any(p.ip_block is not None and p.ip_block.contains(ext.ip) for p in rule.peers)


def _packed(vec: np.ndarray | None) -> np.ndarray | None:
    return None if vec is None else pack(vec)


def _unpacked(packed: np.ndarray, count: int) -> np.ndarray:
    return np.unpackbits(packed, count=count, bitorder="little").view(bool)


def _ids(sel: np.ndarray | slice, count: int) -> np.ndarray:
    return np.arange(*sel.indices(count)) if isinstance(sel, slice) else np.asarray(sel)


def _ensure(cells: int, what: str, hint: str | None = None) -> None:
    memory.ensure(what, cells, hint or "use `npm-sim summary` (it needs no such matrix) or analyse fewer pods, "
                  "e.g. one namespace's manifests")


__all__ = [
    "Matrix",
    "NeedsRebuild",
    "PortSummary",
    "Simulator",
    "Summary",
    "TooLarge",
    "all_declared_ports",
    "declared_ports",
]
