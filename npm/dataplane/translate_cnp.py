"""ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) in the iptables dataplane: the
Admin tier before the NetworkPolicy dispatch, the Baseline tier after it (pure).

Per direction (ingress at the destination, egress at the source, as for NetworkPolicy)::

    AZURE-NPM-INGRESS
      -j AZURE-NPM-ADMIN-INGRESS                    (only when an Admin CNP has ingress rules)
      mark ingress -> RETURN                        (accepted by the Admin tier: NetworkPolicy skipped)
      ! dst in isolated:ingress -g AZURE-NPM-BASELINE-INGRESS   (RETURN without Baseline CNPs)
      dst in ns:<ns> -g AZURE-NPM-NSI-<ns> ...      (the NetworkPolicy dispatch, unchanged)
    AZURE-NPM-ADMIN-INGRESS / AZURE-NPM-BASELINE-INGRESS     (one per tier and direction)
      MARK clear pass
      mark 0/(ingress|pass), dst in <subject> -j AZURE-NPM-AI-<hash>   (one per CNP: priority, then name)
      ...
      MARK clear pass
    AZURE-NPM-AI-<hash> (AE/BI/BE for the other tiers and directions; rules in written order)
      Accept: <peer> <ports> <subject>      -g AZURE-NPM-INGRESS-ALLOW   (sets the ingress mark)
      Deny:   <peer> <ports>                -j DROP
      Pass:   <peer> <ports> <subject>      -g AZURE-NPM-CNP-PASS         (sets the pass mark)
    AZURE-NPM-CNP-PASS: MARK set pass, RETURN

The egress tiers are the same on ``src`` with the egress mark. Accept and Pass leave the
CNP chain by goto, so its later rules are not evaluated; the mark makes the tier chain skip
the CNPs after it. An Admin Accept returns from the direction's base chain at once; a Pass
clears its mark and goes on to the NetworkPolicy dispatch. Pods no NetworkPolicy isolates
go to the Baseline tier instead of returning; a pod NetworkPolicy isolates never reaches
it. An egress Accept only ends the egress evaluation: ``AZURE-NPM`` evaluates ingress at the
destination in its own chain, which an egress verdict never skips.

Sets are those of the NetworkPolicy translation (pod IPs, never hostNetwork pods), plus
``networks:`` hash:net sets and ``nodes:`` sets (the addresses of Node objects). Each rule
uses each set in one direction of effect, so the enforcer's ordering (closing member changes
before the new rules, opening ones after, see npm/dataplane/enforcer.py) stays valid: where
adding a member would close traffic (a Deny rule's peer, the subject gate, a negated
requirement of an Accept rule) the rule uses the set's ``closing`` copy, and a Pass rule (whose
effect depends on the rules after it) uses ``pass`` copies; the copies hold the same members
under their own names. The gate uses the closing copy of the subject and Accept and Pass
rules check their own copy again, so a member added early reaches Deny rules only.

Fail closed: a rule with a peer this implementation does not understand (``domainNames``,
an unknown field) matches nothing when it is an Accept rule and everything of its direction
(ports ignored) when it is a Deny or Pass rule, as the API says; an IPv6 network matches no
IPv4 packet. Both are reported as unenforceable. A CNP whose rules the kernel refuses is
applied in the same fail-closed form (``closed_form``).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from kube.model import (
    DIRECTIONS,
    Cluster,
    ClusterNetworkPolicy,
    CNPAction,
    CNPNetworks,
    CNPNodes,
    CNPPods,
    CNPPort,
    CNPRule,
    CNPTier,
    CNPUnsupportedPeer,
    Direction,
)
from npm.dataplane import names
from npm.dataplane.index import ClusterIndex
from npm.dataplane.translate import SetRefs, _net_entry, _split_zero, set_match
from npm.dataplane.types import HASH_IP, HASH_NET, ChainSpec, DesiredState, Marks, RuleSpec, SetRef, set_ref, tagged

CLOSING = "closing"  # copy of a set where adding a member closes traffic
PASSING = "pass"  # copy of a set a Pass rule uses (adding may open or close)
_ACCEPT, _DENY, _PASS = "accept", "deny", "pass"  # what matching a rule does
_PROTOCOLS = ("TCP", "UDP", "SCTP")


def cnp_key(name: str) -> str:
    """The dataplane key of a ClusterNetworkPolicy (``cnp:<name>``)."""
    return names.CNP_KEY_PREFIX + name


def is_cnp_key(key: str) -> bool:
    """Whether a policy key of the dataplane is a ClusterNetworkPolicy's."""
    return key.startswith(names.CNP_KEY_PREFIX)


def tier_chain(tier: CNPTier, direction: Direction) -> str:
    """The tier chain of ``tier`` and ``direction`` (e.g. ``AZURE-NPM-ADMIN-INGRESS``)."""
    if tier is CNPTier.ADMIN:
        return direction.pick(names.CHAIN_ADMIN_INGRESS, names.CHAIN_ADMIN_EGRESS)
    return direction.pick(names.CHAIN_BASELINE_INGRESS, names.CHAIN_BASELINE_EGRESS)


def precedence(policies: Sequence[ClusterNetworkPolicy]) -> list[ClusterNetworkPolicy]:
    """Evaluation order within a tier: priority, then name (the API leaves equal priorities open)."""
    return sorted(policies, key=lambda p: (p.priority, p.name))


# ---- one policy (pure: the policy and the marks only) ----------------------------------------
@dataclass(frozen=True, eq=False)
class CNPRendering:
    """A CNP's chain and tier-chain jump (gate) per direction it has rules in, its index
    marker, the sets its rules and gates use, and what it cannot enforce."""

    policy: ClusterNetworkPolicy
    marks: Marks
    parts: tuple[tuple[Direction, ChainSpec, RuleSpec], ...]
    marker: RuleSpec
    rule_sets: tuple[SetRef, ...]  # used by its own chains (a refused one fails the policy closed)
    gate_sets: tuple[SetRef, ...]  # used by its gates
    unenforceable: tuple[tuple[str, str], ...]


class _Sets:
    """The sets a CNP uses, each in the copy the effect of its use needs."""

    def __init__(self) -> None:
        self.used: list[SetRef] = []

    def use(self, ref: SetRef, effect: str, negated: bool = False) -> str:
        # Pass: either way. Otherwise closing where matching closes (a Deny) or where a negated
        # match of an Accept stops matching.
        tag = PASSING if effect == _PASS else CLOSING if (effect == _DENY) != negated else ""
        ref = tagged(ref, tag)
        self.used.append(ref)
        return ref.name

    def pods(self, pods: CNPPods, effect: str) -> list[tuple[bool, str]]:
        """(negated, set) matches of namespace selector AND pod selector (pod IPs only)."""
        reader = SetRefs()  # the NetworkPolicy translation's reading of selectors into sets
        matches = reader.ns_requirements(pods.namespace_selector) + reader.pod_requirements(pods.pod_selector)
        refs = {r.name: r for r in reader.used}
        return [(negated, self.use(refs[name], effect, negated)) for negated, name in matches]

    def networks(self, networks: Sequence[ipaddress.IPv4Network]) -> str:
        # Static: the meaning holds the members, so a set never changes under a rule.
        members = {_net_entry(half) for net in networks for half in _split_zero(net)}
        meaning = "networks:" + ",".join(str(n) for n in networks)
        return self.use(set_ref(meaning, HASH_NET, "static", *sorted(members)), _ACCEPT)

    def nodes(self, peer: CNPNodes, effect: str) -> str:
        ref = set_ref(f"nodes:{peer.node_selector.describe()}", HASH_IP, "nodes", peer.node_selector)
        return self.use(ref, effect)

    def named_port(self, port: str, protocol: str, effect: str) -> str:
        reader = SetRefs()  # the NetworkPolicy translation's named-port sets (resolved on the destination pod)
        reader.named_port(port, protocol)
        return self.use(reader.used[-1], effect)


def _effect(action: CNPAction) -> str:
    return {CNPAction.ACCEPT: _ACCEPT, CNPAction.DENY: _DENY, CNPAction.PASS: _PASS}[action]


def _target(action: CNPAction, direction: Direction) -> tuple[str, ...]:
    if action is CNPAction.ACCEPT:
        return ("-g", direction.pick(names.CHAIN_INGRESS_ALLOW, names.CHAIN_EGRESS_ALLOW))
    if action is CNPAction.DENY:
        return ("-j", "DROP")
    return ("-g", names.CHAIN_CNP_PASS)


def _port_matches(sets: _Sets, port: CNPPort, effect: str) -> list[tuple[str, list[str]]]:
    """(label suffix, tokens) per protocol the entry stands for (a named port: every protocol)."""
    if port.named_port is not None:
        return [
            (
                f"/{proto}",
                [
                    "-p",
                    proto.lower(),
                    "-m",
                    "set",
                    "--match-set",
                    sets.named_port(port.named_port, proto, effect),
                    "dst,dst",
                ],
            )
            for proto in _PROTOCOLS
        ]
    assert port.protocol is not None and port.port is not None
    proto = port.protocol.lower()
    dport = f"{port.port}:{port.end_port}" if port.end_port is not None else str(port.port)
    return [("", ["-p", proto, "-m", proto, "--dport", dport])]


def _peer_matches(
    sets: _Sets,
    cnp: ClusterNetworkPolicy,
    peer: object,
    where: str,
    effect: str,
    side: str,
    notes: list[tuple[str, str]],
) -> list[str] | None:
    """Match tokens for one peer at ``side``, or None when it matches no IPv4 address."""
    if isinstance(peer, CNPPods):
        return set_match(sets.pods(peer, effect), side)
    if isinstance(peer, CNPNodes):
        return set_match([(False, sets.nodes(peer, effect))], side)
    assert isinstance(peer, CNPNetworks)
    v4 = [n for n in peer.networks if isinstance(n, ipaddress.IPv4Network)]
    for k, net in enumerate(peer.networks):
        if not isinstance(net, ipaddress.IPv4Network):
            notes.append(
                (
                    cnp_key(cnp.name),
                    f"{where}.networks[{k}] {net}: IPv6 is not enforced by this IPv4 "
                    "dataplane (IPv4 traffic is decided as written)",
                )
            )
    if not v4:
        return None
    return set_match([(False, sets.networks(v4))], side)


def _rule_lines(
    sets: _Sets,
    cnp: ClusterNetworkPolicy,
    direction: Direction,
    i: int,
    rule: CNPRule,
    notes: list[tuple[str, str]],
) -> list[tuple[tuple[str, ...], str]]:
    """The chain lines of rule ``i``: (tokens, comment) per peer x protocol entry."""
    key, word, peer_word = cnp_key(cnp.name), direction.word, direction.peer_field
    effect = _effect(rule.action)
    target = _target(rule.action, direction)
    named = f" '{rule.name}'" if rule.name else ""
    head = f"{cnp.tier} {word}[{i}]{named}"
    if rule.fails_closed:
        field_ = next(p.field for p in rule.peers if isinstance(p, CNPUnsupportedPeer))
        notes.append(
            (
                key,
                f"spec.{word}[{i}]: {field_} is not supported: "
                + (
                    "this Accept rule matches no traffic"
                    if effect == _ACCEPT
                    else f"this {rule.action} rule matches all {word} traffic of the subject (ports ignored)"
                ),
            )
        )
        if effect == _ACCEPT:
            return []
    # Accept and Pass check the subject again in their own copy of its sets (see the module docstring).
    recheck = [] if effect == _DENY else set_match(sets.pods(cnp.subject, effect), direction.subject_side)
    if rule.fails_closed:
        text = names.rule_comment(key, f"{head} fails closed ({field_} not supported): {rule.action} all")
        return [((*recheck, *target), text)]
    out: list[tuple[tuple[str, ...], str]] = []
    for j, peer in enumerate(rule.peers):
        where = f"spec.{word}[{i}].{peer_word}[{j}]"
        peer_tokens = _peer_matches(sets, cnp, peer, where, effect, direction.peer_side, notes)
        if peer_tokens is None:
            continue  # matches no IPv4 address
        ports: list[tuple[str, list[str]]] = [("protocols[any]", [])]
        if rule.ports:
            ports = [
                (f"protocols[{k}]{suffix}", tokens)
                for k, port in enumerate(rule.ports)
                for suffix, tokens in _port_matches(sets, port, effect)
            ]
        for label, port_tokens in ports:
            text = names.rule_comment(key, f"{head} {peer_word}[{j}] {label} {rule.action}")
            out.append(((*peer_tokens, *port_tokens, *recheck, *target), text))
    return out


def render_cluster_policy(cnp: ClusterNetworkPolicy, marks: Marks) -> CNPRendering:
    """Render one ClusterNetworkPolicy into its chains and gates (pure)."""
    key = cnp_key(cnp.name)
    admin = cnp.tier is CNPTier.ADMIN
    notes: list[tuple[str, str]] = []
    rule_sets, gate_sets = _Sets(), _Sets()
    parts: list[tuple[Direction, ChainSpec, RuleSpec]] = []
    for direction in DIRECTIONS:
        body: list[tuple[tuple[str, ...], str]] = []
        for i, rule in enumerate(direction.cnp_rules(cnp)):
            body += _rule_lines(rule_sets, cnp, direction, i, rule, notes)
        if not body:
            continue  # no rules (or only Accept rules that match nothing): the direction is left alone
        identity = "\n".join([key, str(cnp.tier), direction.word] + [" ".join(t) + " #" + c for t, c in body])
        name = names.cluster_policy_chain_name(admin, direction, identity)
        chain = ChainSpec(name, tuple(RuleSpec(name, t, c, key) for t, c in body), key)
        mark = direction.pick(marks.ingress, marks.egress)
        subject = set_match(gate_sets.pods(cnp.subject, _DENY), direction.subject_side)
        gate = RuleSpec(
            tier_chain(cnp.tier, direction),
            ("-m", "mark", "--mark", f"0x0/{mark | marks.cnp_pass:#x}", *subject, "-j", name),
            names.rule_comment(key, f"{direction.word} rules"),
            key,
        )
        parts.append((direction, chain, gate))
    words = ",".join(d.word for d, _, _ in parts) or "none"
    marker = RuleSpec(
        names.CHAIN_POLICIES,
        ("-j", "RETURN"),
        names.comment(f"policy {key} {words} ({cnp.tier} tier, priority {cnp.priority})"),
    )
    return CNPRendering(
        cnp,
        marks,
        tuple(parts),
        marker,
        tuple(dict.fromkeys(rule_sets.used)),
        tuple(dict.fromkeys(gate_sets.used)),
        tuple(dict.fromkeys(notes)),
    )


def _rendering(index: ClusterIndex, cnp: ClusterNetworkPolicy, marks: Marks) -> CNPRendering:
    """``render_cluster_policy(cnp, marks)``, computed once per policy version."""
    key = cnp_key(cnp.name)
    found = index.cnp_renderings.get(key)
    if found is None or (found.policy is not cnp and found.policy != cnp) or found.marks != marks:
        found = index.cnp_renderings[key] = render_cluster_policy(cnp, marks)
    return found  # type: ignore[no-any-return]


# ---- the tiers ----------------------------------------------------------------------------
@dataclass
class Tiers:
    """What the ClusterNetworkPolicies add to a node's desired state."""

    marks: Marks
    admin: dict[Direction, str] = field(default_factory=dict)  # directions with an Admin tier chain
    baseline: dict[Direction, str] = field(default_factory=dict)  # directions with a Baseline tier chain
    chains: list[ChainSpec] = field(default_factory=list)  # tier chains and the Pass chain
    policy_chains: dict[str, ChainSpec] = field(default_factory=dict)
    chains_of: dict[str, tuple[str, ...]] = field(default_factory=dict)
    sets_of: dict[str, frozenset[str]] = field(default_factory=dict)
    markers: list[RuleSpec] = field(default_factory=list)
    unenforceable: list[tuple[str, str]] = field(default_factory=list)
    tiers: dict[str, str] = field(default_factory=dict)  # key -> tier

    def before(self, direction: Direction, base: str) -> tuple[RuleSpec, ...]:
        """The first rules of a direction's base chain: the Admin tier, and the return of what it accepted."""
        chain = self.admin.get(direction)
        if chain is None:
            return ()
        mark = direction.pick(self.marks.ingress, self.marks.egress)
        return (
            RuleSpec(base, ("-j", chain), f"azure-npm: Admin tier ({direction.word})"),
            RuleSpec(
                base,
                ("-m", "mark", "--mark", f"{mark:#x}/{mark:#x}", "-j", "RETURN"),
                f"azure-npm: accepted by the Admin tier ({direction.word})",
            ),
        )

    def after(self, direction: Direction) -> str | None:
        """Where a pod no NetworkPolicy isolates goes: the Baseline tier chain, or None (RETURN)."""
        return self.baseline.get(direction)


def cluster_policy_tiers(
    cluster: Cluster, index: ClusterIndex, registry: names.NameRegistry, use: Callable[[SetRef], str], marks: Marks
) -> Tiers:
    """The Admin and Baseline tiers of ``cluster``: chains, gates and the sets they use (``use``
    registers each set with the translation)."""
    out = Tiers(marks)
    gates: dict[tuple[CNPTier, Direction], list[RuleSpec]] = defaultdict(list)
    for cnp in precedence(cluster.cluster_policies):
        key = cnp_key(cnp.name)
        rendered = _rendering(index, cnp, marks)
        for ref in (*rendered.rule_sets, *rendered.gate_sets):
            use(ref)
        for direction, chain, gate in rendered.parts:
            out.policy_chains[registry.claim(chain.name, f"{direction.word} chain of {key}")] = chain
            gates[(cnp.tier, direction)].append(gate)
        out.chains_of[key] = tuple(chain.name for _, chain, _ in rendered.parts)
        out.sets_of[key] = frozenset(ref.name for ref in rendered.rule_sets)
        out.markers.append(rendered.marker)
        out.unenforceable += rendered.unenforceable
        out.tiers[key] = str(cnp.tier)
    index.cnp_renderings = {k: r for k, r in index.cnp_renderings.items() if k in out.tiers}
    clear = ("-j", "MARK", "--set-xmark", f"0x0/{marks.cnp_pass:#x}")
    for tier in (CNPTier.ADMIN, CNPTier.BASELINE):
        for direction in DIRECTIONS:
            jumps = gates.get((tier, direction))
            if not jumps:
                continue
            name = tier_chain(tier, direction)
            rules = (
                RuleSpec(name, clear, f"azure-npm: {tier} tier {direction.word}: no Pass yet"),
                *jumps,
                RuleSpec(name, clear, f"azure-npm: {tier} tier {direction.word}: done"),
            )
            out.chains.append(index.chain(name, rules))
            (out.admin if tier is CNPTier.ADMIN else out.baseline)[direction] = name
    if out.chains:
        p = names.CHAIN_CNP_PASS
        bit = f"{marks.cnp_pass:#x}"
        mark_pass = RuleSpec(p, ("-j", "MARK", "--set-xmark", f"{bit}/{bit}"), "azure-npm: Pass: rest of tier skipped")
        out.chains.append(index.chain(p, (mark_pass, RuleSpec(p, ("-j", "RETURN"), "azure-npm: Pass"))))
    return out


# ---- the enforcer's view ------------------------------------------------------------------
def closed_form(desired: DesiredState, key: str) -> DesiredState:
    """``desired`` with CNP ``key`` in its fail-closed form: in each of its chains, Accept rules
    match nothing and its first Deny or Pass rule matches every packet its gate lets in."""
    chains = dict(desired.policy_chains)
    for name in desired.chains_of_policy.get(key, ()):
        chain = chains.get(name)
        if chain is None:
            continue
        first = next((r for r in chain.rules if _jump(r) in ("DROP", names.CHAIN_CNP_PASS)), None)
        rules: tuple[RuleSpec, ...] = ()
        if first is not None:
            target = ("-j", "DROP") if _jump(first) == "DROP" else ("-g", names.CHAIN_CNP_PASS)
            action = "Deny" if target[1] == "DROP" else "Pass"
            text = names.rule_comment(key, f"fails closed ({action} all): the kernel refused its rules")
            rules = (RuleSpec(name, target, text, key),)
        chains[name] = replace(chain, rules=rules)
    return replace(desired, policy_chains=chains)


def _jump(rule: RuleSpec) -> str:
    args = rule.args
    for flag in ("-j", "-g"):
        if flag in args:
            return args[args.index(flag) + 1]
    return ""


def opening_verbs(target: str, negated: bool) -> tuple[str, ...]:
    """The member changes (``add``, ``del``) of a set matched by a rule jumping to ``target``
    that can open traffic. Matching leads towards an allow, except for a DROP and a CNP gate
    (whose set is the superset of its rules' copies: adding to it can only close), and a Pass
    rule, which can do either."""
    if target == names.CHAIN_CNP_PASS:
        return ("add", "del")
    closes = target == "DROP" or target.startswith(names.CNP_CHAIN_PREFIXES)
    return ("del",) if closes != negated else ("add",)


def counts(desired: DesiredState) -> dict[str, int]:
    """CNPs and their iptables rules (tier chains and CNP chains) per tier, for ApplyResult.counts."""
    out = {f"cluster_policies_{t.lower()}": 0 for t in CNPTier} | {
        f"cluster_policy_rules_{t.lower()}": 0 for t in CNPTier
    }
    for tier in desired.cluster_policy_tiers.values():
        out[f"cluster_policies_{tier.lower()}"] += 1
    for name, chain in desired.chains.items():
        tier = names.tier_of_chain(name)
        if tier in ("Admin", "Baseline"):
            out[f"cluster_policy_rules_{tier.lower()}"] += len(chain.rules)
    return out
