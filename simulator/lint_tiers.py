"""Lint for ClusterNetworkPolicies: rules that fail closed, rules that can never decide anything,
and policies of one tier and priority whose order is undefined but matters.

Shadowing and overlap are computed exactly over what policies can tell apart: the classes of
pods (as subjects and peers), the outside endpoints (nodes, and the blocks of outside addresses
that ipBlocks and networks split the address space into, each at one address), and the
*critical* ports (where some rule's ports start or stop matching, and the numbers the classes
serve the named ports on): between two critical ports every rule matches the same.

Findings are ``(kind, severity, policy, rule, reason)`` tuples; ``simulator.lint`` makes them
findings. ClusterNetworkPolicies are named ``cnp/NAME``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from kube.model import DIRECTIONS, PROTOCOLS, CNPAction, CNPTier, CNPUnsupportedPeer, Direction, PortSpec
from simulator.engine import Simulator
from simulator.outside import outside_endpoints
from simulator.tiers import cnp_key, fail_closed_effect

Raw = tuple[str, str, str, str | None, str]  # kind, severity, policy, rule, reason


def fail_closed(sim: Simulator) -> list[Raw]:
    """``cnp-fail-closed``: one finding per peer this implementation does not understand."""
    out = []
    for policy in sim.cluster.cluster_policies:
        for direction in DIRECTIONS:
            for i, rule in enumerate(direction.cnp_rules(policy)):
                for j, peer in enumerate(rule.peers):
                    if isinstance(peer, CNPUnsupportedPeer):
                        out.append(("cnp-fail-closed", "warning", cnp_key(policy.name),
                                    f"{direction.word}[{i}].{direction.peer_field}[{j}]",
                                    f"{peer.describe()}: the rule fails closed: {fail_closed_effect(rule, direction)}"))
    return out


def critical_ports(sim: Simulator) -> list[PortSpec]:
    """Per protocol, the ports where some ClusterNetworkPolicy rule's ports can start or stop matching."""
    t = sim.classes
    points: dict[str, set[int]] = {proto: {1} for proto in PROTOCOLS}
    for policy in sim.cluster.cluster_policies:
        for rule in (*policy.ingress, *policy.egress):
            for e in rule.ports:
                if e.named_port is not None:
                    for proto in PROTOCOLS:
                        for n in np.unique(t.named_port_numbers(e.named_port, proto)).tolist():
                            points[proto].update((n, n + 1) if n else ())
                elif e.protocol is not None and e.port is not None:
                    points[e.protocol].update((e.port, (e.end_port or e.port) + 1))
    return [PortSpec(n, proto) for proto, pts in points.items() for n in sorted(pts) if 1 <= n <= 65535]


@dataclass
class _Usage:
    """What one rule does over every port, direction and subject."""

    matches: bool = False  # it matches some connection of an existing subject
    decides: bool = False  # it is the first to match some connection
    before: set[str] = field(default_factory=set)  # what decides the connections it matches first


class TierLinter:
    """Shadowed rules and undefined orders of one cluster's ClusterNetworkPolicies."""

    def __init__(self, sim: Simulator) -> None:
        self.sim, self.tiers, self.t = sim, sim.tiers, sim.classes
        self.outside = outside_endpoints([sim.cluster])
        self.ports = critical_ports(sim)
        self._isolated = {d: sim.isolated_classes(d) for d in DIRECTIONS}
        self._cache: dict[tuple[PortSpec, Direction, int], np.ndarray] = {}

    def _matches(self, spec: PortSpec, direction: Direction, r: int) -> np.ndarray:
        """bool [C + E]: the classes, then the outside endpoints, rule ``r`` matches as peers on ``spec``."""
        key = (spec, direction, r)
        got = self._cache.get(key)
        if got is None:
            rule = self.tiers.rules[direction][r]
            ext = [self.tiers.external_match(rule, e.address, spec) for e in self.outside]
            got = self._cache[key] = np.concatenate([self.tiers.match(rule, spec), np.array(ext, dtype=bool)])
        return got

    def _walks(self) -> Iterator[tuple[PortSpec, Direction, list[int], np.ndarray, dict[int, np.ndarray]]]:
        """(port, direction, the rules of a signature, its subject classes, each rule's matches)."""
        for spec in self.ports:
            for direction in DIRECTIONS:
                sigs = self.tiers.signatures(spec, direction)
                for s in np.unique(sigs.of_class).tolist():
                    if not s:
                        continue
                    rules = list(sigs.rules[s])
                    matches = {r: self._matches(spec, direction, r) for r in rules}
                    yield spec, direction, rules, np.flatnonzero(sigs.of_class == s), matches

    def shadowed(self) -> list[Raw]:
        """``cnp-rule-shadowed``: rules that match connections, all of them decided before them."""
        usage: dict[tuple[Direction, int], _Usage] = {}
        for _spec, direction, rules, subjects, matches in self._walks():
            size = self.t.count + len(self.outside)
            open_subjects = bool((~self._isolated[direction][subjects]).any())
            who = np.full(size, -1, dtype=np.int64)  # the Admin rule that decided each peer
            decided = np.zeros(size, dtype=bool)  # by Admin: Accept or Deny
            passed = np.zeros(size, dtype=bool)
            base_taken = np.zeros(size, dtype=bool)
            base_who = np.full(size, -1, dtype=np.int64)
            for r in rules:
                rule = self.tiers.rules[direction][r]
                use = usage.setdefault((direction, r), _Usage())
                m = matches[r]
                if not m.any():
                    continue
                use.matches = True
                if rule.tier is CNPTier.ADMIN:
                    taken = decided | passed
                    fresh = m & ~taken
                    use.before.update(self._name(direction, int(q)) for q in np.unique(who[m & taken]))
                    who[fresh] = r
                    if rule.action is CNPAction.PASS:
                        passed |= fresh
                    else:
                        decided |= fresh
                else:
                    if not open_subjects:
                        use.before.add(f"NetworkPolicies that select all its subjects for {direction.word}")
                        continue
                    by_admin = m & decided
                    if by_admin.any():
                        use.before.add("the Admin tier (" + ", ".join(
                            self._name(direction, int(q)) for q in np.unique(who[by_admin])) + ")")
                    fresh = m & ~decided & ~base_taken
                    use.before.update(self._name(direction, int(q)) for q in np.unique(base_who[m & base_taken]))
                    base_who[fresh] = r
                    base_taken |= fresh
                if fresh.any():
                    use.decides = True
        out = []
        for (direction, r), use in sorted(usage.items(), key=lambda kv: (kv[0][0] != Direction.INGRESS, kv[0][1])):
            if use.matches and not use.decides:
                rule = self.tiers.rules[direction][r]
                out.append(("cnp-rule-shadowed", "warning", cnp_key(rule.policy), f"{direction.word}[{rule.index}]",
                            "never decides anything: every connection it matches is decided first by "
                            + "; ".join(sorted(use.before))))
        return out

    def _name(self, direction: Direction, r: int) -> str:
        rule = self.tiers.rules[direction][r]
        return f"{cnp_key(rule.policy)} {direction.word}[{rule.index}]"

    def overlaps(self) -> list[Raw]:
        """``cnp-priority-overlap``: policies of one tier and priority matching a same connection."""
        found: dict[tuple[str, str], tuple[bool, str, str]] = {}  # (first, second) -> (actions differ, where, text)
        for spec, direction, rules, subjects, matches in self._walks():
            by_policy: dict[str, list[int]] = {}
            for r in rules:
                by_policy.setdefault(self.tiers.rules[direction][r].policy, []).append(r)
            names = list(by_policy)
            for a_i, a in enumerate(names):
                for b in names[a_i + 1:]:
                    ra, rb = self.tiers.rules[direction][by_policy[a][0]], self.tiers.rules[direction][by_policy[b][0]]
                    if (ra.tier, ra.priority) != (rb.tier, rb.priority):
                        continue
                    first, second = sorted((a, b))
                    if found.get((first, second), (False,))[0]:
                        continue  # already have an example where the order changes the verdict
                    for x in by_policy[first]:
                        for y in by_policy[second]:
                            both = matches[x] & matches[y]
                            if not both.any():
                                continue
                            rx, ry = self.tiers.rules[direction][x], self.tiers.rules[direction][y]
                            differ = rx.action is not ry.action
                            if (first, second) in found and not differ:
                                continue
                            peer = self._peer_name(int(np.flatnonzero(both)[0]))
                            subject = self.t.reps[int(subjects[0])].key
                            src, dst = (subject, peer) if direction is Direction.EGRESS else (peer, subject)
                            text = (f"same tier ({rx.tier.value}) and priority ({rx.priority}) as {cnp_key(first)}, "
                                    f"and both match {src} -> {dst} {spec} ({direction.word}): "
                                    f"{cnp_key(first)} {direction.word}[{rx.index}] {rx.action.value} and "
                                    f"{direction.word}[{ry.index}] {ry.action.value} here; the API leaves their order "
                                    f"undefined (this tool evaluates {cnp_key(first)} first, by name)")
                            found[(first, second)] = (differ, f"{direction.word}[{ry.index}]", text)
                            break
                        if found.get((first, second), (False,))[0]:
                            break
        out = []
        for (_first, second), (differ, where, text) in sorted(found.items()):
            if not differ:
                text += "; both rules take the same action, so only which one is reported can differ"
            out.append(("cnp-priority-overlap", "warning" if differ else "info", cnp_key(second), where, text))
        return out

    def _peer_name(self, index: int) -> str:
        count = self.t.count
        return self.t.reps[index].key if index < count else self.outside[index - count].names[0]


def tier_findings(sim: Simulator) -> list[Raw]:
    """Every ClusterNetworkPolicy finding of ``sim``'s cluster (none without ClusterNetworkPolicies)."""
    if not sim.cluster.cluster_policies:
        return []
    out = fail_closed(sim)
    if sim.tiers.active:
        linter = TierLinter(sim)
        out += linter.shadowed() + linter.overlaps()
    return out


__all__ = ["TierLinter", "critical_ports", "fail_closed", "tier_findings"]
