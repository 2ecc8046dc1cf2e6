"""ClusterNetworkPolicy tiers over equivalence classes: the engine's side of ``simulator.tiers``.

For one port and direction every class gets a *signature*: the ClusterNetworkPolicy rules
that apply to it as a subject, in evaluation order (Admin policies by priority, then name,
each policy's rules as written; then Baseline's the same way). For ingress a rule applies
only where its ports match at the subject (the destination, where named ports resolve); for
egress its ports are matched at each destination class instead. Classes with one signature
share three sets of peer classes, computed by walking its rules with an "undecided" set
(a rule decides what it matches among the still undecided peers):

- ``accept``: the peers the Admin tier accepts;
- ``open``: the peers the Admin tier leaves to the next tiers (a Pass, or no rule matched);
- ``baseline``: the peers the Baseline tier does not deny (accepted, passed, or no rule).

A class's set is then ``accept | open & (its NetworkPolicy set if one isolates it, else
baseline)``: the engine's per-namespace evaluation calls :meth:`TierSets.fill` once it has
the NetworkPolicy sets. Addresses outside the pods get the same walk with one scalar per
rule (:meth:`TierSets.external`).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import numpy as np

from kube.model import (
    EGRESS,
    INGRESS,
    Cluster,
    CNPAction,
    CNPNetworks,
    CNPNodes,
    CNPPods,
    CNPRule,
    CNPTier,
    Direction,
    PortSpec,
)
from simulator.bitsets import ALL, NONE, SetTable
from simulator.classes import ClassTable
from simulator.tiers import TIERS, effective_action, numbered_port_matches, ordered

# A rule's port match: a constant, or bool [C] (named ports, resolved on each class).
PortMatch = bool | np.ndarray


@dataclass(frozen=True)
class TierRule:
    """One ClusterNetworkPolicy rule prepared over classes."""

    policy: str  # the policy's name
    tier: CNPTier
    priority: int
    direction: Direction
    index: int  # in the policy's rules of ``direction``
    rule: CNPRule
    action: CNPAction  # what it does when it matches (a Deny or Pass failing closed: Deny)
    subject: np.ndarray  # bool [C]: the classes the policy's subject selects (read only)
    peers: np.ndarray | None  # bool [C]: the classes its peers match; None: failing closed, everything

    @property
    def token(self) -> tuple[str, str, int]:
        """(policy, direction, index): the rule's name in set recipes."""
        return (self.policy, self.direction.word, self.index)


@dataclass(frozen=True)
class Signatures:
    """Which rules apply to each class, for one port and direction."""

    of_class: np.ndarray  # int32 [C]: each class's signature; 0 is "no rule applies"
    rules: list[tuple[int, ...]]  # per signature: indices into TierSets.rules[direction], in order


@dataclass(frozen=True)
class NamespaceSets:
    """A namespace's NetworkPolicy sets, as the engine computed them for one direction."""

    isolated: np.ndarray  # bool [k]: which of the namespace's classes a NetworkPolicy isolates
    vectors: dict[int, np.ndarray]  # set id -> bool [C], for the ids the namespace's classes use


class TierSets:
    """A cluster's ClusterNetworkPolicy rules over its classes (see the module docstring)."""

    def __init__(self, cluster: Cluster, classes: ClassTable) -> None:
        self.cluster, self.classes = cluster, classes
        t = classes
        self._hostnet = np.flatnonzero(~t.selectable)
        self._node_ips: dict[str, list[str]] = {}  # address -> nodes with it
        for node in cluster.nodes:
            if node.ip:
                self._node_ips.setdefault(node.ip, []).append(node.name)
        self.rules: dict[Direction, list[TierRule]] = {INGRESS: [], EGRESS: []}
        for tier in TIERS:
            for policy in ordered(cluster, tier):
                subject = self.pods_classes(policy.subject)
                subject.flags.writeable = False
                for direction in (INGRESS, EGRESS):
                    for index, rule in enumerate(direction.cnp_rules(policy)):
                        if rule.fails_closed and rule.action is CNPAction.ACCEPT:
                            continue  # fails closed: matches nothing
                        peers = None if rule.fails_closed else self._peers(rule)
                        self.rules[direction].append(TierRule(policy.name, tier, policy.priority, direction, index,
                                                              rule, effective_action(rule), subject, peers))
        self.active = bool(self.rules[INGRESS] or self.rules[EGRESS])
        self._signatures: dict[tuple[PortSpec, Direction], Signatures] = {}
        self._parts: dict[tuple[PortSpec, Direction, int], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._external: dict[tuple[str, PortSpec, Direction], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    # ----- matching ------------------------------------------------------------------------
    def pods_classes(self, pods: CNPPods) -> np.ndarray:
        """bool [C]: the classes a subject or a ``namespaces``/``pods`` peer chooses (never hostNetwork)."""
        t = self.classes
        return t.ns_labels.match(pods.namespace_selector)[t.ns_id] & t.selectable & t.labels.match(pods.pod_selector)

    def _peers(self, rule: CNPRule) -> np.ndarray:
        t = self.classes
        out = np.zeros(t.count, dtype=bool)
        for peer in rule.peers:
            if isinstance(peer, CNPPods):
                out |= self.pods_classes(peer)
            elif isinstance(peer, CNPNetworks):
                for net in peer.networks:
                    out |= t.range_members(net)
            elif isinstance(peer, CNPNodes):  # hostNetwork pods have their node's address
                nodes = {n.name for n in self.cluster.nodes if peer.node_selector.matches(n.labels)}
                out[self._hostnet] |= np.array([t.reps[c].node in nodes for c in self._hostnet], dtype=bool)
        out.flags.writeable = False
        return out

    def port_match(self, rule: TierRule, spec: PortSpec) -> PortMatch:
        """Whether the rule's ports admit ``spec``: a constant, or bool [C] at each destination
        class (named ports). A rule failing closed ignores its ports."""
        if rule.peers is None or not rule.rule.ports:
            return True
        out: PortMatch = False
        for entry in rule.rule.ports:
            if entry.named_port is not None:
                served = self.classes.named_port_numbers(entry.named_port, spec.protocol) == spec.port
                out = served if out is False else out | served
            elif numbered_port_matches(entry, spec):
                return True
        return out

    def match(self, rule: TierRule, spec: PortSpec) -> np.ndarray:
        """bool [C]: the peer classes the rule matches on ``spec`` at a subject it applies to
        (egress: serving the port too; ingress: the port is part of the signature)."""
        count = self.classes.count
        peers = np.ones(count, dtype=bool) if rule.peers is None else rule.peers
        if rule.direction is EGRESS:
            pm = self.port_match(rule, spec)
            if pm is False:
                return np.zeros(count, dtype=bool)
            if pm is not True:
                return peers & pm
        return peers

    def external_match(self, rule: TierRule, ip: str, spec: PortSpec) -> bool:
        """Whether the rule matches the outside address ``ip`` as its peer on ``spec``."""
        if rule.peers is None:
            return True
        ports = rule.rule.ports
        if rule.direction is EGRESS and ports and not any(numbered_port_matches(e, spec) for e in ports):
            return False  # an address serves no named port
        addr = ipaddress.ip_address(ip)
        for peer in rule.rule.peers:
            if isinstance(peer, CNPNetworks) and any(n.version == addr.version and addr in n for n in peer.networks):
                return True
            if isinstance(peer, CNPNodes):
                nodes = self.cluster.node_by_name
                if any(peer.node_selector.matches(nodes[n].labels) for n in self._node_ips.get(ip, ())):
                    return True
        return False

    # ----- signatures and sets ---------------------------------------------------------------
    def signatures(self, spec: PortSpec, direction: Direction) -> Signatures:
        """The classes' signatures on ``spec`` in ``direction`` (cached)."""
        key = (spec, direction)
        got = self._signatures.get(key)
        if got is None:
            got = self._signatures[key] = self._signatures_of(spec, direction)
        return got

    def _signatures_of(self, spec: PortSpec, direction: Direction) -> Signatures:
        count = self.classes.count
        rules = self.rules[direction]
        rows = np.zeros((len(rules), count), dtype=bool)
        for r, rule in enumerate(rules):
            if direction is INGRESS:  # the port at the subject
                pm = self.port_match(rule, spec)
                if pm is True:
                    rows[r] = rule.subject
                elif pm is not False:
                    rows[r] = rule.subject & pm
            else:
                rows[r] = rule.subject
        if not len(rules) or not rows.any():
            return Signatures(np.zeros(count, dtype=np.int32), [()])
        codes = np.ascontiguousarray(np.packbits(rows, axis=0).T)
        uniq, inverse = np.unique(codes.view(np.dtype((np.void, codes.shape[1]))).ravel(), return_inverse=True)
        sigs: list[tuple[int, ...]] = [()]
        ids = np.zeros(len(uniq), dtype=np.int32)
        for u, code in enumerate(uniq):
            which = tuple(np.flatnonzero(np.unpackbits(np.frombuffer(code.tobytes(), dtype=np.uint8),
                                                       count=len(rules))).tolist())
            if which:
                ids[u] = len(sigs)
                sigs.append(which)
        return Signatures(ids[inverse.reshape(-1)], sigs)

    def parts(self, spec: PortSpec, direction: Direction, sig: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(accept, open, baseline): bool [C] each, for signature ``sig`` (see the module docstring)."""
        key = (spec, direction, sig)
        got = self._parts.get(key)
        if got is None:
            count = self.classes.count
            rules = [self.rules[direction][r] for r in self.signatures(spec, direction).rules[sig]]
            walked = {}
            for tier in TIERS:
                undecided, accept, deny = np.ones(count, dtype=bool), np.zeros(count, dtype=bool), np.zeros(
                    count, dtype=bool)
                for rule in (r for r in rules if r.tier is tier):
                    hit = self.match(rule, spec) & undecided
                    undecided &= ~hit
                    if rule.action is CNPAction.ACCEPT:
                        accept |= hit
                    elif rule.action is CNPAction.DENY:
                        deny |= hit
                walked[tier] = (accept, deny)
            accept, deny = walked[CNPTier.ADMIN]
            got = self._parts[key] = (accept, ~(accept | deny), ~walked[CNPTier.BASELINE][1])
        return got

    def fill(self, spec: PortSpec, direction: Direction, cols: np.ndarray, namespace: str,
             np_sets: NamespaceSets | None, sig: np.ndarray, table: SetTable) -> None:
        """Put the tiers into ``sig`` (set ids of ``direction`` on ``spec``) for the classes
        ``cols`` of ``namespace``, whose NetworkPolicy sets (``np_sets``, None when no policy
        isolates any) are already there. Sets go into ``table`` with recipes that start with
        the namespace when they include its NetworkPolicy sets (so that a policy change
        forgets them), with "" otherwise."""
        sigs = self.signatures(spec, direction)
        on = np.flatnonzero(sigs.of_class[cols])
        if not len(on):
            return
        chosen = cols[on]
        isolated = np_sets.isolated[on] if np_sets is not None else np.zeros(len(on), dtype=bool)
        current = sig[chosen].astype(np.int64)
        own = sigs.of_class[chosen].astype(np.int64)
        combos, inverse = np.unique(np.stack([own, np.where(isolated, current, -1)]), axis=1, return_inverse=True)
        ids = np.empty(combos.shape[1], dtype=np.int32)
        for u in range(combos.shape[1]):
            s, np_id = int(combos[0, u]), int(combos[1, u])
            tokens = tuple(self.rules[direction][r].token for r in sigs.rules[s])
            if np_id < 0:
                recipe: tuple = (("", "tiers", tokens),)
            else:
                np_recipe = table.recipes[np_id] if np_id not in (ALL, NONE) else np_id
                recipe = ((namespace, "tiers", tokens, np_recipe),)
            found = table.find(recipe)
            if found is None:
                accept, open_, baseline = self.parts(spec, direction, s)
                rest = baseline if np_id < 0 else np_sets.vectors[np_id]  # type: ignore[union-attr]
                found = table.add(accept | (open_ & rest), recipe)
            ids[u] = found
        sig[chosen] = ids[inverse.reshape(-1)]

    def external(self, ip: str, spec: PortSpec, direction: Direction, cols: np.ndarray,
                 np_allowed: np.ndarray, np_isolated: np.ndarray) -> np.ndarray:
        """bool [len(cols)]: whether ``direction`` at the classes ``cols`` admits the outside
        address ``ip`` (its source for ingress, its destination for egress), given what their
        NetworkPolicies say (``np_allowed``, ``np_isolated``)."""
        key = (ip, spec, direction)
        got = self._external.get(key)
        sigs = self.signatures(spec, direction)
        if got is None:
            n = len(sigs.rules)
            accept, open_, baseline = np.zeros(n, dtype=bool), np.ones(n, dtype=bool), np.ones(n, dtype=bool)
            hits = [self.external_match(rule, ip, spec) for rule in self.rules[direction]]
            for s, which in enumerate(sigs.rules):
                decided = {tier: None for tier in TIERS}
                for r in which:
                    rule = self.rules[direction][r]
                    if hits[r] and decided[rule.tier] is None:
                        decided[rule.tier] = rule.action
                admin, base = decided[CNPTier.ADMIN], decided[CNPTier.BASELINE]
                accept[s] = admin is CNPAction.ACCEPT
                open_[s] = admin in (None, CNPAction.PASS)
                baseline[s] = base is not CNPAction.DENY
            got = self._external[key] = (accept, open_, baseline)
        accept, open_, baseline = got
        own = sigs.of_class[cols]
        return accept[own] | (open_[own] & np.where(np_isolated, np_allowed, baseline[own]))


__all__ = ["NamespaceSets", "Signatures", "TierRule", "TierSets"]
