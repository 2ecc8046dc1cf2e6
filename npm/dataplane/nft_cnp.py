"""ClusterNetworkPolicy in the nftables dataplane: the Admin tier before the NetworkPolicy
dispatch, the Baseline tier after it, as verdict maps and chains (pure).

Per tier and direction that has rules, a verdict map keyed by the address of every subject
pod (``admin-ingress-dispatch``, ``admin-egress-dispatch``, ``baseline-...``), looked up
around the NetworkPolicy dispatch map, in ``forward`` and in ``ingress``::

    ip saddr vmap @admin-egress-dispatch       -> goto ae-grp-<hash>
    ip saddr vmap @egress-dispatch             (NetworkPolicy: isolated pods end there)
    ip saddr vmap @baseline-egress-dispatch    -> goto be-grp-<hash>   (pods NetworkPolicy does not isolate)
    ip daddr vmap @admin-ingress-dispatch ...  (the same on daddr for ingress)

A group chain (``ai-grp-``, ``ae-grp-``, ``bi-grp-``, ``be-grp-``) jumps to the chains of the
CNPs whose subject holds the pod, by priority then name, then goes to the next stage: after
the Admin tier ``ingress-networkpolicy`` / ``egress-networkpolicy`` (the NetworkPolicy map,
the Baseline map, then the next direction); after the Baseline tier the next direction
(egress: ``goto ingress``; ingress: ``accept``). A CNP chain (``ai-``, ``ae-``, ``bi-``,
``be-`` plus a hash of its content) holds one rule per peer x protocol entry, in written order:

* Accept: ``accept`` (ingress) or ``goto ingress`` (egress: the destination's ingress decides next);
* Deny: ``drop``;
* Pass: ``goto`` the next stage, the same target as the end of the group chain.

Every path ends in accept, drop or a goto to a chain that does, so a goto out of a chain
that was jumped to never returns into it: a Pass leaves the rest of the tier behind without
any mark, and a CNP chain that matches nothing falls back into its group chain, which goes
on with the next CNP. Pods that are no subject cost one failed map lookup per tier and
direction; without CNPs the table is exactly that of NetworkPolicy alone.

Subjects are computed in Python from the selector sets (pod addresses only, never
hostNetwork pods), like the NetworkPolicy dispatch; the kernel never evaluates them.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from kube.model import (
    DIRECTIONS,
    EGRESS,
    INGRESS,
    Cluster,
    ClusterNetworkPolicy,
    CNPAction,
    CNPNodes,
    CNPPods,
    CNPTier,
    Direction,
)
from npm.dataplane import names
from npm.dataplane.nft_translate import (
    ADDR,
    CHAIN_INGRESS,
    MAX_COMMENT,
    VERDICT_MAP,
    NftChain,
    NftRule,
    NftSet,
    prefix_element,
)
from npm.dataplane.translate import SetRefs
from npm.dataplane.translate_cnp import CNPLine, cnp_key, precedence, rule_lines
from npm.dataplane.types import HASH_IP, SetRef, set_ref

# Where the NetworkPolicy stage of a direction starts (an Admin Pass, or no Admin rule matched).
CHAIN_AFTER_ADMIN = {INGRESS: "ingress-networkpolicy", EGRESS: "egress-networkpolicy"}
TIERS = (CNPTier.ADMIN, CNPTier.BASELINE)


def tier_map(tier: CNPTier, direction: Direction) -> str:
    """The dispatch map of a tier and direction (``admin-ingress-dispatch`` ...)."""
    return f"{str(tier).lower()}-{direction.word}-dispatch"


def chain_prefix(tier: CNPTier, direction: Direction) -> str:
    """The prefix of a CNP chain: ``ai-``/``ae-`` (Admin), ``bi-``/``be-`` (Baseline)."""
    return f"{str(tier)[0].lower()}{direction.word[0]}-"


def group_prefix(tier: CNPTier, direction: Direction) -> str:
    """The prefix of a tier's group chain (``ai-grp-`` ...)."""
    return chain_prefix(tier, direction) + "grp-"


GROUP_PREFIXES = tuple(group_prefix(t, d) for t in TIERS for d in DIRECTIONS)


def tier_of_chain(name: str) -> str:
    """``Admin`` or ``Baseline`` for a CNP or group chain of ours, else ``""``."""
    for tier in TIERS:
        if any(name.startswith(chain_prefix(tier, d)) for d in DIRECTIONS):
            return str(tier)
    return ""


def next_stage(tier: CNPTier, direction: Direction) -> str:
    """Where a Pass (or a tier that matched nothing) goes: NetworkPolicy after the Admin tier,
    the default (allow: on to the ingress check, or accept) after the Baseline tier."""
    if tier is CNPTier.ADMIN:
        return f"goto {CHAIN_AFTER_ADMIN[direction]}"
    return _accepted(direction)


def _accepted(direction: Direction) -> str:
    # Ingress is checked last: accept. An egress Accept still leaves the destination's ingress.
    return direction.pick("accept", f"goto {CHAIN_INGRESS}")


def action_verdict(action: CNPAction, tier: CNPTier, direction: Direction) -> str:
    """The verdict of a CNP rule that matches."""
    if action is CNPAction.ACCEPT:
        return _accepted(direction)
    if action is CNPAction.DENY:
        return "drop"
    return next_stage(tier, direction)


def _comment(key: str, what: str) -> str:
    return names.rule_comment(key, what, MAX_COMMENT)


# ---- one policy (pure: the policy only) ---------------------------------------------------------
@dataclass(frozen=True, eq=False)
class NftClusterPolicy:
    """A CNP's chain per direction it has rules in, with its fail-closed form (same name), the
    selector matches of its subject, the sets its rules use, its marker and what it cannot enforce."""

    policy: ClusterNetworkPolicy
    chains: tuple[tuple[Direction, NftChain, NftChain], ...]
    subject: tuple[tuple[bool, SetRef], ...]
    refs: tuple[SetRef, ...]
    net_sets: tuple[NftSet, ...]
    marker: NftRule
    unenforceable: tuple[tuple[str, str], ...]


class _Peers:
    """Peer and port expressions of CNP lines, and the sets they use."""

    def __init__(self) -> None:
        self.refs = SetRefs()  # the NetworkPolicy translation's selector and named-port sets
        self.net_sets: dict[str, NftSet] = {}

    def peer(self, line: CNPLine, side: str) -> tuple[str, tuple[tuple[bool, str], ...]]:
        peer = line.peer
        if peer is None:
            return "", ()  # every address (a rule failing closed)
        if isinstance(peer, CNPPods):
            matches = self.refs.ns_requirements(peer.namespace_selector) + self.refs.pod_requirements(
                peer.pod_selector
            )
        elif isinstance(peer, CNPNodes):
            ref = set_ref(f"nodes:{peer.node_selector.describe()}", HASH_IP, "nodes", peer.node_selector)
            matches = [(False, self.refs.use(ref))]
        else:
            merged = list(ipaddress.collapse_addresses(peer))
            if len(merged) == 1:
                return f"ip {side} {merged[0]}", ()  # a native match: no set
            meaning = "networks:" + ",".join(str(n) for n in peer)
            name = names.set_name(meaning)
            elements = frozenset(prefix_element(n) for n in merged)  # disjoint: an interval set refuses overlaps
            self.net_sets[name] = NftSet(name, ADDR, meaning, elements, interval=True)
            matches = [(False, name)]
        return " ".join(f"ip {side} {'!= ' if neg else ''}@{name}" for neg, name in matches), tuple(matches)

    def port(self, line: CNPLine) -> tuple[str, tuple[tuple[bool, str], ...]]:
        port = line.port
        if port is None:
            return "", ()
        if port.named_port is not None:
            # Resolved on the destination pod, as for NetworkPolicy.
            name = self.refs.named_port(port.named_port, line.protocol)
            return f"ip daddr . meta l4proto . th dport @{name}", ((False, name),)
        proto = line.protocol.lower()
        if port.end_port is not None:
            return f"{proto} dport {port.port}-{port.end_port}", ()
        return f"{proto} dport {port.port}", ()


def render_cluster_policy(cnp: ClusterNetworkPolicy) -> NftClusterPolicy:
    """One ClusterNetworkPolicy's chains and the sets they use (pure)."""
    key = cnp_key(cnp.name)
    notes: list[tuple[str, str]] = []
    peers = _Peers()
    chains: list[tuple[Direction, NftChain, NftChain]] = []
    for direction in DIRECTIONS:
        side = "saddr" if direction.peer_side == "src" else "daddr"
        body: list[tuple[NftRule, CNPAction]] = []
        for i, rule in enumerate(direction.cnp_rules(cnp)):
            for line in rule_lines(cnp, direction, i, rule, notes):
                peer_expr, peer_sets = peers.peer(line, side)
                port_expr, port_sets = peers.port(line)
                verdict = action_verdict(line.action, cnp.tier, direction)
                expr = " ".join(x for x in (peer_expr, port_expr, verdict) if x)
                sets = tuple(sorted(set(peer_sets + port_sets)))
                body.append((NftRule(expr, _comment(key, line.what), verdict, sets, key), line.action))
        if not body:
            continue  # no rules (or only Accept rules that match nothing): the direction is left alone
        identity = "\n".join([key, str(cnp.tier), direction.word] + [f"{r.expr} #{r.comment}" for r, _ in body])
        name = names.nft_name(chain_prefix(cnp.tier, direction), identity)
        chain = NftChain(name, tuple(r for r, _ in body), policy=key)
        chains.append((direction, chain, _closed_form(chain, body, key)))
    subject = SetRefs()
    matches = subject.ns_requirements(cnp.subject.namespace_selector) + subject.pod_requirements(
        cnp.subject.pod_selector
    )
    by_name = {ref.name: ref for ref in subject.used}
    words = ",".join(d.word for d, _, _ in chains) or "none"
    what = f"{key} {words} ({cnp.tier} tier, priority {cnp.priority})"
    marker = NftRule("return", _comment("policy", what), "return")
    return NftClusterPolicy(
        cnp,
        tuple(chains),
        tuple((neg, by_name[name]) for neg, name in matches),
        tuple(dict.fromkeys(peers.refs.used)),
        tuple(peers.net_sets.values()),
        marker,
        tuple(dict.fromkeys(notes)),
    )


def _closed_form(chain: NftChain, body: Sequence[tuple[NftRule, CNPAction]], key: str) -> NftChain:
    """The chain as applied when the kernel refuses the CNP's rules or sets: Accept rules match
    nothing, its first Deny or Pass rule is a "Deny all" rule (as for an unsupported peer)."""
    if all(action is CNPAction.ACCEPT for _, action in body):
        return NftChain(chain.name, (), policy=key)
    text = _comment(key, "fails closed (Deny all): the kernel refused its rules")
    return NftChain(chain.name, (NftRule("drop", text, "drop", (), key),), policy=key)


# ---- the tiers ------------------------------------------------------------------------------
@dataclass
class NftTiers:
    """What the ClusterNetworkPolicies add to the table."""

    maps: dict[tuple[CNPTier, Direction], NftSet] = field(default_factory=dict)  # tier maps (with rules only)
    sets: dict[str, NftSet] = field(default_factory=dict)  # the sets the CNP rules use
    chains: list[NftChain] = field(default_factory=list)  # CNP chains and group chains
    chains_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sets_of: dict[str, frozenset[str]] = field(default_factory=dict)
    closed: dict[str, NftChain] = field(default_factory=dict)  # CNP chain -> its fail-closed form
    markers: list[NftRule] = field(default_factory=list)
    unenforceable: list[tuple[str, str]] = field(default_factory=list)
    tiers: dict[str, str] = field(default_factory=dict)  # CNP key -> tier
    refs: set[SetRef] = field(default_factory=set)  # every selector set looked at (rules and subjects)

    def stage(self, direction: Direction, tier: CNPTier) -> list[NftRule]:
        """The lookup of a tier's map in a direction's stage (nothing when the tier has no rules there)."""
        found = self.maps.get((tier, direction))
        if found is None:
            return []
        side = direction.pick("daddr", "saddr")
        what = f"azure-npm: {tier} tier, {direction.word} (its subjects)"
        return [NftRule(f"ip {side} vmap @{found.name}", what, f"vmap {found.name}")]


class NftTierTranslator:
    """Cluster -> :class:`NftTiers`, keeping renderings, subjects, maps and group chains while unchanged."""

    def __init__(self) -> None:
        self._rendered: dict[str, NftClusterPolicy] = {}
        # key -> (rendering, its subject's sets, the subject's addresses)
        self._subjects: dict[str, tuple[NftClusterPolicy, tuple[NftSet, ...], frozenset[str]]] = {}
        self._maps: dict[tuple[CNPTier, Direction], tuple[tuple[object, ...], NftSet, tuple[NftChain, ...]]] = {}
        self._groups: dict[str, NftChain] = {}

    def translate(
        self, cluster: Cluster, registry: names.NameRegistry, set_of: Callable[[SetRef], NftSet]
    ) -> NftTiers:
        """The tiers of ``cluster``; ``set_of`` gives the nft set of a selector ref (its members now)."""
        out = NftTiers()
        rendered_now: dict[str, NftClusterPolicy] = {}
        # (tier, direction) -> (chain, subject addresses) in precedence order
        entries: dict[tuple[CNPTier, Direction], list[tuple[NftChain, frozenset[str]]]] = defaultdict(list)
        for cnp in precedence(cluster.cluster_policies):
            key = cnp_key(cnp.name)
            rendered = self._rendered.get(key)
            if rendered is None or (rendered.policy is not cnp and rendered.policy != cnp):
                rendered = render_cluster_policy(cnp)
            rendered_now[key] = rendered
            for ref in rendered.refs:
                out.sets[registry.claim(ref.name, ref.meaning)] = set_of(ref)
                out.refs.add(ref)
            for net in rendered.net_sets:
                out.sets[registry.claim(net.name, net.meaning)] = net
            addresses = self._subject(key, rendered, set_of) if rendered.chains else frozenset()
            out.refs.update(ref for _, ref in rendered.subject)
            for direction, chain, closed in rendered.chains:
                out.chains.append(chain)
                registry.claim(chain.name, f"{direction.word} chain of {key}")
                out.closed[chain.name] = closed
                entries[(cnp.tier, direction)].append((chain, addresses))
            out.chains_of[key] = tuple(chain.name for _, chain, _ in rendered.chains)
            out.sets_of[key] = frozenset(ref.name for ref in rendered.refs) | {s.name for s in rendered.net_sets}
            out.markers.append(rendered.marker)
            out.unenforceable += rendered.unenforceable
            out.tiers[key] = str(cnp.tier)
        self._rendered = rendered_now
        self._subjects = {k: v for k, v in self._subjects.items() if k in rendered_now}
        groups: dict[str, NftChain] = {}
        maps: dict[tuple[CNPTier, Direction], tuple[tuple[object, ...], NftSet, tuple[NftChain, ...]]] = {}
        for (tier, direction), members in entries.items():
            maps[(tier, direction)] = self._map(tier, direction, members)
            out.maps[(tier, direction)] = maps[(tier, direction)][1]
            for group in maps[(tier, direction)][2]:
                groups[registry.claim(group.name, f"{tier} {direction.word} group {group.name}")] = group
        self._maps, self._groups = maps, groups
        out.chains += groups.values()
        return out

    def _subject(self, key: str, rendered: NftClusterPolicy, set_of: Callable[[SetRef], NftSet]) -> frozenset[str]:
        """The addresses of the CNP's subject pods: its positive selector sets, less its negated ones."""
        sets = tuple(set_of(ref) for _, ref in rendered.subject)
        found = self._subjects.get(key)
        if found is not None and found[0] is rendered and all(a is b for a, b in zip(found[1], sets, strict=True)):
            return found[2]
        positive = sorted((s.elements for (neg, _), s in zip(rendered.subject, sets, strict=True) if not neg), key=len)
        negative = [s.elements for (neg, _), s in zip(rendered.subject, sets, strict=True) if neg]
        # Filter the smallest positive set by the others, never the reverse.
        addresses = frozenset(
            ip for ip in positive[0] if all(ip in p for p in positive[1:]) and not any(ip in n for n in negative)
        )
        self._subjects[key] = (rendered, sets, addresses)
        return addresses

    def _map(
        self, tier: CNPTier, direction: Direction, members: Sequence[tuple[NftChain, frozenset[str]]]
    ) -> tuple[tuple[object, ...], NftSet, tuple[NftChain, ...]]:
        """A tier's dispatch map: each subject address -> the group chain of its CNPs, in order."""
        source = tuple(x for chain, addresses in members for x in (chain, addresses))
        found = self._maps.get((tier, direction))
        if found is not None and len(found[0]) == len(source) and all(
            a is b for a, b in zip(found[0], source, strict=True)
        ):
            return found
        chains_of_ip: dict[str, list[NftChain]] = defaultdict(list)
        for chain, addresses in members:
            for ip in addresses:
                chains_of_ip[ip].append(chain)
        group_of: dict[tuple[str, ...], str] = {}
        groups: dict[str, NftChain] = {}
        elements: list[str] = []
        for ip, chains in chains_of_ip.items():
            names_ = tuple(c.name for c in chains)
            group = group_of.get(names_)
            if group is None:
                group = group_of[names_] = self._group(tier, direction, chains, groups)
            elements.append(f"{ip} : goto {group}")
        name = tier_map(tier, direction)
        nft_map = NftSet(name, VERDICT_MAP, f"{tier} tier {direction.word} dispatch", frozenset(elements))
        return source, nft_map, tuple(groups.values())

    def _group(self, tier: CNPTier, direction: Direction, chains: Sequence[NftChain], out: dict[str, NftChain]) -> str:
        name = names.nft_name(group_prefix(tier, direction), " ".join(c.name for c in chains))
        found = self._groups.get(name)
        if found is None:
            tail = next_stage(tier, direction)
            rules = tuple(
                NftRule(f"jump {c.name}", _comment(c.policy or "", f"{direction.word} rules"), f"jump {c.name}",
                        policy=c.policy)
                for c in chains
            )
            rules += (NftRule(tail, f"azure-npm: {tier} tier {direction.word}: no rule decided", tail),)
            found = NftChain(name, rules)
        out[name] = found
        return name


def counts(tiers: Mapping[str, str], chains: Mapping[str, NftChain]) -> dict[str, int]:
    """CNPs and the rules of their chains and group chains per tier, for ApplyResult.counts."""
    out = {f"cluster_policies_{str(t).lower()}": 0 for t in TIERS} | {
        f"cluster_policy_nft_rules_{str(t).lower()}": 0 for t in TIERS
    }
    for tier in tiers.values():
        out[f"cluster_policies_{tier.lower()}"] += 1
    for name, chain in chains.items():
        tier = tier_of_chain(name)
        if tier:
            out[f"cluster_policy_nft_rules_{tier.lower()}"] += len(chain.rules)
    return out
