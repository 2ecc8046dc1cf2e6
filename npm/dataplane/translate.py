"""Translate a Cluster into the dataplane-neutral desired state: ipsets and ACL chains.

Pure functions: no kernel, no subprocess. The shape follows the Go original's v2
dataplane, with the verdict made explicit:

* Sets (all cluster-wide, only those some policy references are materialised):
  ``ns:<name>`` pod IPs of a namespace; ``podlabel:<k>`` / ``podlabel:<k>=<v>`` pod IPs by
  label; ``podlabel:<k> in (a,b)`` a list of the ``k=v`` sets; ``nslabel:...`` lists of
  namespace sets; ``all-namespaces`` the list of every namespace set (= every pod);
  ``namedport:<name>/<PROTO>`` entries ``IP,proto:port``; ``cidr:...`` hash:net with
  ``nomatch`` entries for ``except``.
* Chains: ``FORWARD -> AZURE-NPM`` accepts ESTABLISHED/RELATED, clears our mark bits, then
  ``AZURE-NPM-INGRESS`` returns at once for a destination no policy isolates
  (``isolated:ingress``), otherwise goes to the chain of the destination's namespace, which
  jumps (by the pod selector's sets on ``dst``) to each of that namespace's policies' chains.
  Their rules jump to ``AZURE-NPM-INGRESS-ALLOW`` (sets the ingress mark). Back in the
  namespace chain a marked packet returns, an unmarked one is dropped.
  ``AZURE-NPM-EGRESS`` does the same on ``src`` with the egress mark. In ``AZURE-NPM`` a
  packet carrying either mark goes to ``AZURE-NPM-ACCEPT`` (clears the marks, ACCEPT); a
  packet no policy isolates returns to FORWARD untouched. See docs/dataplane.md.

Every selector match also requires membership in a namespace set (or ``all-namespaces``),
so selectors made only of negative requirements match pod IPs only, never off-cluster IPs.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from kube.model import (
    DIRECTIONS,
    EGRESS,
    INGRESS,
    Cluster,
    Direction,
    LabelSelector,
    NetworkPolicy,
    Peer,
    PolicyPort,
    Requirement,
)
from npm.dataplane import names
from npm.dataplane.index import ClusterIndex
from npm.dataplane.types import (
    ALL_NAMESPACES,
    FORWARD_COMMENT,
    HASH_IP,
    HASH_IP_PORT,
    HASH_NET,
    LIST_SET,
    ChainSpec,
    DesiredState,
    Marks,
    PolicyRendering,
    RuleSpec,
    SetRef,
    SetSpec,
    namespace_list_ref,
    namespace_ref,
    pod_label_ref,
    set_ref,
)

if TYPE_CHECKING:
    from npm.dataplane.translate_cnp import Tiers


# ---- what a policy allows, dataplane-neutral -------------------------------------------------
@dataclass(frozen=True)
class PeerAllows:
    """One peer of one rule of a policy direction, with the ports it is allowed on.

    ``peer`` None means any address; a port None means any port. Labels make rule comments:
    ``"<label> <port label>"``, e.g. ``ingress[0] from[1] ports[0]``.
    """

    where: str  # the peer's field path, e.g. "spec.ingress[0].from[1]" (for unenforceable reasons)
    label: str  # "ingress[0] from[1]" or "ingress[0] from[any]"
    peer: Peer | None
    ports: tuple[tuple[str, PolicyPort | None], ...]  # ("ports[0]", port) or ("ports[any]", None)


def policy_allows(policy: NetworkPolicy, direction: Direction) -> tuple[PeerAllows, ...]:
    """Every (rule, peer) of one direction of a policy, in order, with its ports (pure).

    Both dataplanes render their rules from this (iptables: ``_policy_chain``; nftables:
    ``npm.dataplane.nft_translate``), so the reading of a policy lives in one place.
    """
    out: list[PeerAllows] = []
    peer_word = direction.peer_field
    for i, rule in enumerate(direction.rules(policy)):
        peers: Sequence[Peer | None] = rule.peers or (None,)
        ports: tuple[tuple[str, PolicyPort | None], ...] = (
            tuple((f"ports[{k}]", port) for k, port in enumerate(rule.ports)) or (("ports[any]", None),)
        )
        for j, peer in enumerate(peers):
            where = f"spec.{direction.word}[{i}].{peer_word}[{j}]"
            label = f"{direction.word}[{i}] {peer_word}[{j if peer is not None else 'any'}]"
            out.append(PeerAllows(where, label, peer, ports))
    return tuple(out)


# ---- policy rendering (pure: the policy and the marks only) ---------------------------------
class SetRefs:
    """The sets a policy's rules use, and what it cannot enforce (shared by both dataplanes)."""

    def __init__(self) -> None:
        self.used: list[SetRef] = []
        self.unenforceable: list[tuple[str, str]] = []

    def use(self, ref: SetRef) -> str:
        self.used.append(ref)
        return ref.name

    def pod_requirements(self, sel: LabelSelector) -> list[tuple[bool, str]]:
        """(negated, set) matches whose AND is ``sel`` over pod labels (no scope)."""
        out: list[tuple[bool, str]] = []
        for r in sel.requirements:
            if r.operator in ("In", "NotIn") and len(set(r.values)) == 1:
                out.append((r.operator == "NotIn", self.use(pod_label_ref(r.key, r.values[0]))))
            elif r.operator in ("In", "NotIn"):
                # One hash set of the pods whose label has any of the values: one lookup per
                # packet and one set per requirement, however many values (a list of per-value
                # sets would need a set per value and a lookup per member).
                vals = sorted(set(r.values))
                meaning = f"podlabel:{r.key} in ({','.join(vals)})"
                out.append((r.operator == "NotIn", self.use(set_ref(meaning, HASH_IP, "podin", r.key, *vals))))
            else:
                key_set = self.use(set_ref(f"podlabel:{r.key}", HASH_IP, "podkey", r.key))
                out.append((r.operator == "DoesNotExist", key_set))
        return out

    def ns_requirements(self, sel: LabelSelector) -> list[tuple[bool, str]]:
        """(negated, set) matches for a namespaceSelector, always scoped to pod IPs."""
        out: list[tuple[bool, str]] = []
        for r in sel.requirements:
            if r.operator == "In" and len(r.values) == 1:
                ref = namespace_list_ref(f"nslabel:{r.key}={r.values[0]}", Requirement(r.key, "In", (r.values[0],)))
                out.append((False, self.use(ref)))
            elif r.operator == "In":
                vals = tuple(sorted(set(r.values)))
                ref = namespace_list_ref(f"nslabel:{r.key} in ({','.join(vals)})", Requirement(r.key, "In", vals))
                out.append((False, self.use(ref)))
            elif r.operator == "NotIn":  # not (in any of them): one negated list of namespace sets
                vals = tuple(sorted(set(r.values)))
                meaning = f"nslabel:{r.key}={vals[0]}" if len(vals) == 1 else f"nslabel:{r.key} in ({','.join(vals)})"
                out.append((True, self.use(namespace_list_ref(meaning, Requirement(r.key, "In", vals)))))
            else:
                ref = namespace_list_ref(f"nslabel:{r.key}", Requirement(r.key, "Exists"))
                out.append((r.operator == "DoesNotExist", self.use(ref)))
        if not any(not neg for neg, _ in out):
            # Only negative (or no) requirements: still only pods, never other addresses.
            out.insert(0, (False, self.use(ALL_NAMESPACES)))
        return out

    def peer(self, policy: NetworkPolicy, peer: Peer, where: str, side: str) -> list[str] | None:
        """Match tokens for one peer at ``side`` (src/dst), or None (recorded as unenforceable)."""
        if peer.ip_block is not None and not peer.ip_block.except_networks and peer.ip_block.network.version == 4:
            # A plain CIDR is a native match: no set to create, index and keep in sync.
            return ["-s" if side == "src" else "-d", str(peer.ip_block.network)]
        matches = self.peer_sets(policy, peer, where)
        return None if matches is None else set_match(matches, side)

    def v4_block(self, policy: NetworkPolicy, peer: Peer, where: str) -> ipaddress.IPv4Network | None:
        """The peer's ipBlock CIDR, or None (recorded as unenforceable) when it is IPv6."""
        assert peer.ip_block is not None
        net = peer.ip_block.network
        if not isinstance(net, ipaddress.IPv4Network):
            self.unenforceable.append(
                (policy.key, f"{where}.ipBlock.cidr {peer.ip_block.cidr}: IPv6 is not enforced by this IPv4 dataplane")
            )
            return None
        return net

    def peer_sets(self, policy: NetworkPolicy, peer: Peer, where: str) -> list[tuple[bool, str]] | None:
        """Set matches for one peer, or None (recorded as unenforceable) if it cannot be."""
        if peer.ip_block is not None:
            net = self.v4_block(policy, peer, where)
            if net is None:
                return None
            excepts = [e for e in peer.ip_block.except_networks if isinstance(e, ipaddress.IPv4Network)]
            return [(False, self.cidr(net, excepts))]
        return self.selector_sets(policy, peer)

    def selector_sets(self, policy: NetworkPolicy, peer: Peer) -> list[tuple[bool, str]]:
        """Set matches for a peer of namespace and pod selectors (no ipBlock)."""
        if peer.namespace_selector is None:
            matches = [(False, self.use(namespace_ref(policy.namespace)))]
        else:
            matches = self.ns_requirements(peer.namespace_selector)
        if peer.pod_selector is not None:
            matches += self.pod_requirements(peer.pod_selector)
        return matches

    def cidr(self, network: ipaddress.IPv4Network, excepts: Sequence[ipaddress.IPv4Network]) -> str:
        meaning = f"cidr:{network}" + (f" except {','.join(str(e) for e in excepts)}" if excepts else "")
        members = {_net_entry(n) for n in _split_zero(network)}
        members |= {f"{_net_entry(e)} nomatch" for e in excepts for e in _split_zero(e)}
        return self.use(set_ref(meaning, HASH_NET, "static", *sorted(members)))

    def named_port(self, port_name: str, protocol: str) -> str:
        return self.use(set_ref(f"namedport:{port_name}/{protocol}", HASH_IP_PORT, "named", port_name, protocol))


def _split_zero(net: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    """hash:net cannot hold a /0: split it into two /1 halves."""
    return list(net.subnets(new_prefix=1)) if net.prefixlen == 0 else [net]


def _net_entry(net: ipaddress.IPv4Network) -> str:
    """A hash:net member as ``ipset save`` prints it (a /32 without its prefix)."""
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def set_match(matches: Sequence[tuple[bool, str]], side: str) -> list[str]:
    """``-m set [!] --match-set NAME dir`` tokens for every match."""
    out: list[str] = []
    for negated, name in matches:
        out += ["-m", "set", *(["!"] if negated else []), "--match-set", name, side]
    return out


def port_match(refs: SetRefs, port: PolicyPort) -> list[str]:
    """Protocol and destination-port tokens; a named port matches a ``dst,dst`` ip,port set."""
    proto = port.protocol.lower()
    if port.port is None:
        return ["-p", proto]
    if isinstance(port.port, str):
        return ["-p", proto, "-m", "set", "--match-set", refs.named_port(port.port, port.protocol), "dst,dst"]
    dport = (
        f"{port.port}:{port.end_port}" if port.end_port is not None and port.end_port != port.port else str(port.port)
    )
    return ["-p", proto, "-m", proto, "--dport", dport]


def _policy_chain(refs: SetRefs, policy: NetworkPolicy, direction: Direction) -> ChainSpec | None:
    """The chain holding a policy's allow rules for one direction (None when it allows nothing)."""
    allow = direction.pick(names.CHAIN_INGRESS_ALLOW, names.CHAIN_EGRESS_ALLOW)
    body: list[tuple[tuple[str, ...], str]] = []
    for peer in policy_allows(policy, direction):
        if peer.peer is None:
            peer_tokens: list[str] = []
        else:
            found = refs.peer(policy, peer.peer, peer.where, direction.peer_side)
            if found is None:
                continue  # fail closed: this peer allows nothing
            peer_tokens = found
        for port_label, port in peer.ports:
            port_tokens = [] if port is None else port_match(refs, port)
            text = names.rule_comment(policy.key, f"{peer.label} {port_label}")
            body.append(((*peer_tokens, *port_tokens, "-j", allow), text))
    if not body:
        return None
    identity = "\n".join([policy.key, direction.word] + [" ".join(t) + " #" + c for t, c in body])
    name = names.policy_chain_name(direction, identity)
    return ChainSpec(name, tuple(RuleSpec(name, t, c, policy.key) for t, c in body), policy.key)


def render_policy(policy: NetworkPolicy, marks: Marks) -> PolicyRendering:
    """Render one policy into its chains and jumps (pure)."""
    refs = SetRefs()
    parts: list[tuple[Direction, ChainSpec | None, RuleSpec | None]] = []
    directions = [d for d in DIRECTIONS if d in policy.policy_types]
    for direction in directions:
        side = direction.subject_side
        mark = direction.pick(marks.ingress, marks.egress)
        chain = _policy_chain(refs, policy, direction)
        jump = None
        if chain is not None:
            # The namespace chain is only entered for pods of the policy's namespace, so the
            # jump needs the pod selector's sets only.
            target = set_match(refs.pod_requirements(policy.pod_selector), side)
            jump = RuleSpec(
                names.namespace_chain_name(direction, policy.namespace),
                ("-m", "mark", "!", "--mark", f"{mark:#x}/{mark:#x}", *target, "-j", chain.name),
                names.rule_comment(policy.key, f"{direction.word} rules"),
                policy.key,
            )
        parts.append((direction, chain, jump))
    words = ",".join(d.word for d in directions)
    marker = RuleSpec(names.CHAIN_POLICIES, ("-j", "RETURN"), names.comment(f"policy {policy.key} {words}"))
    return PolicyRendering(
        policy, marks, tuple(parts), marker, tuple(dict.fromkeys(refs.used)), tuple(refs.unenforceable)
    )


def _rendering(index: ClusterIndex, policy: NetworkPolicy, marks: Marks) -> PolicyRendering:
    """``render_policy(policy, marks)``, computed once per policy version."""
    found = index.renderings.get(policy.key)
    if found is None or (found.policy is not policy and found.policy != policy) or found.marks != marks:
        found = index.renderings[policy.key] = render_policy(policy, marks)
    return found



# ---- assembly ---------------------------------------------------------------------------------
def translate(cluster: Cluster, marks: Marks | None = None, index: ClusterIndex | None = None) -> DesiredState:
    """The desired ipsets and chains of a node (every node holds the same ones).

    Targets are matched against cluster-wide sets, so every node checks both directions
    of a flow it forwards: the verdict is the same on every node, and cross-node traffic
    is enforced at the source node (egress) and the destination node (ingress). ``index``
    (a cache, brought up to date with ``cluster`` here) makes a translation cost what
    changed since the last one. Raises :class:`npm.dataplane.names.NameCollision` if two meanings
    would share a kernel name.
    """
    marks = marks or Marks()
    if index is None:
        index = ClusterIndex(cluster)
    else:
        index.update(cluster)
    registry = names.NameRegistry()
    used: dict[str, SetRef] = {}

    def use(ref: SetRef) -> str:
        used[registry.claim(ref.name, ref.meaning)] = ref
        return ref.name

    policy_chains: dict[str, ChainSpec] = {}
    chains_of: dict[str, tuple[str, ...]] = {}
    sets_of: dict[str, frozenset[str]] = {}
    # direction -> namespace -> jump rules / pod selectors of the policies of that namespace
    ns_jumps: dict[Direction, dict[str, list[RuleSpec]]] = {d: defaultdict(list) for d in DIRECTIONS}
    targets: dict[Direction, dict[str, list[LabelSelector]]] = {d: defaultdict(list) for d in DIRECTIONS}
    markers: list[RuleSpec] = []
    unenforceable: list[tuple[str, str]] = []
    for policy in sorted(cluster.policies, key=lambda p: p.key):
        rendered = _rendering(index, policy, marks)
        key, namespace = policy.key, policy.namespace
        for ref in rendered.sets:
            use(ref)
        unenforceable += rendered.unenforceable
        mine: list[str] = []
        for (direction, chain, jump), meaning in zip(rendered.parts, rendered.chain_meanings, strict=True):
            targets[direction][namespace].append(policy.pod_selector)
            jumps = ns_jumps[direction][namespace]  # present even when the policy allows nothing
            if chain is None or jump is None:
                continue
            policy_chains[registry.claim(chain.name, meaning)] = chain
            mine.append(chain.name)
            jumps.append(jump)
        chains_of[key] = tuple(mine)
        sets_of[key] = rendered.set_names
        markers.append(rendered.marker)
    # ClusterNetworkPolicy: the Admin tier before the NetworkPolicy dispatch, the Baseline tier after it.
    from npm.dataplane.translate_cnp import cluster_policy_tiers  # (it builds on this module)

    tiers = cluster_policy_tiers(cluster, index, registry, use, marks)
    policy_chains.update(tiers.policy_chains)
    chains_of.update(tiers.chains_of)
    sets_of.update(tiers.sets_of)
    markers += tiers.markers
    unenforceable += tiers.unenforceable
    dispatch, isolated = _dispatch_chains(index, registry, use, marks, ns_jumps, targets, tiers)
    sets: dict[str, SetSpec] = {}
    todo = list(used.values())
    while todo:  # the referenced sets and the sets list sets hold
        ref = todo.pop()
        if ref.name in sets:
            continue
        sets[ref.name] = isolated.get(ref.name) or index.spec(ref)
        if ref.kind == LIST_SET:
            for child in index.children(ref):
                registry.claim(child.name, child.meaning)
                todo.append(child)
    sets = dict(sorted(sets.items()))
    base_chains = (*_base_chains(index, marks, dispatch, markers, sets), *tiers.chains)
    index.keep(chains_of, (c.name for c in base_chains))
    return DesiredState(
        sets=sets,
        base_chains=base_chains,
        policy_chains=policy_chains,
        chains_of_policy=chains_of,
        sets_of_policy=sets_of,
        forward_jump=FORWARD_JUMP,
        unenforceable=tuple(unenforceable),
        policies=len(cluster.policies),
        cluster_policy_tiers=tiers.tiers,
    )


FORWARD_JUMP = RuleSpec("FORWARD", ("-j", names.CHAIN_MAIN), FORWARD_COMMENT)


def _dispatch_chains(
    index: ClusterIndex,
    registry: names.NameRegistry,
    use: Callable[[SetRef], str],
    marks: Marks,
    ns_jumps: Mapping[Direction, Mapping[str, list[RuleSpec]]],
    targets: Mapping[Direction, Mapping[str, list[LabelSelector]]],
    tiers: Tiers | None = None,
) -> tuple[dict[Direction, list[ChainSpec]], dict[str, SetSpec]]:
    """Per direction: the base chain (skip non-isolated pods, go to the namespace's chain,
    drop the rest) followed by one chain per namespace holding its policies' jumps, then
    the verdict; and the ``isolated:<direction>`` sets.

    A policy selects pods of its own namespace only, so a packet for an isolated pod only
    walks the jumps of that namespace's policies; a pod no policy isolates costs one set
    lookup. The final DROP of the base chain is never reached in a converged state (every
    isolated pod is in the set of a namespace with policies); during a change it keeps a
    pod isolated whose namespace chain is not in the kernel yet (see npm/dataplane/enforcer.py).
    """
    out: dict[Direction, list[ChainSpec]] = {}
    isolated: dict[str, SetSpec] = {}
    for direction in DIRECTIONS:
        base = direction.pick(names.CHAIN_INGRESS, names.CHAIN_EGRESS)
        side = direction.subject_side
        mark = direction.pick(marks.ingress, marks.egress)
        word = direction.word
        chains: list[ChainSpec] = []
        # ClusterNetworkPolicy hooks (npm/dataplane/translate_cnp.py): the Admin tier first; pods
        # no NetworkPolicy isolates go to the Baseline tier instead of returning.
        base_rules: list[RuleSpec] = [*tiers.before(direction, base)] if tiers else []
        baseline = tiers.after(direction) if tiers else None
        not_isolated = ("-g", baseline) if baseline else ("-j", "RETURN")
        namespaces = sorted(ns_jumps[direction])
        if namespaces:
            ref = set_ref(f"isolated:{word}", HASH_IP, "isolated", word)
            parts = tuple(index.isolated(direction, ns, tuple(targets[direction][ns])) for ns in namespaces)
            isolated[use(ref)] = index.isolated_spec(ref, parts)
            base_rules.append(
                RuleSpec(
                    base,
                    ("-m", "set", "!", "--match-set", ref.name, side, *not_isolated),
                    f"azure-npm: not isolated for {word}",
                )
            )
        elif baseline:
            base_rules.append(RuleSpec(base, not_isolated, f"azure-npm: no NetworkPolicy for {word}"))
        for ns in namespaces:
            chain, meaning, ns_set, dispatch, closing = _namespace_rules(direction, ns, mark)
            registry.claim(chain, meaning)
            use(ns_set)
            base_rules.append(dispatch)
            chains.append(index.chain(chain, (*ns_jumps[direction][ns], *closing)))
        if namespaces:
            base_rules.append(
                RuleSpec(base, ("-j", "DROP"), f"azure-npm: isolated for {word}, namespace not dispatched")
            )
        out[direction] = [index.chain(base, tuple(base_rules)), *chains]
    return out, isolated


@lru_cache(maxsize=1 << 14)
def _namespace_rules(
    direction: Direction, ns: str, mark: int
) -> tuple[str, str, SetRef, RuleSpec, tuple[RuleSpec, RuleSpec]]:
    """A namespace's dispatch chain in ``direction``: its name and meaning, the namespace's
    set, the base chain's rule that goes to it, and its two closing rules (allowed: return;
    else drop). The same objects every translation, so comparing chains stays cheap."""
    word = direction.word
    base = direction.pick(names.CHAIN_INGRESS, names.CHAIN_EGRESS)
    chain = names.namespace_chain_name(direction, ns)
    ns_set = namespace_ref(ns)
    dispatch = RuleSpec(
        base,
        ("-m", "set", "--match-set", ns_set.name, direction.subject_side, "-g", chain),
        names.comment(f"namespace {ns}"),
    )
    closing = (
        RuleSpec(
            chain,
            ("-m", "mark", "--mark", f"{mark:#x}/{mark:#x}", "-j", "RETURN"),
            names.comment(f"namespace {ns}: allowed by an {word} rule"),
        ),
        RuleSpec(chain, ("-j", "DROP"), names.comment(f"namespace {ns}: isolated for {word}")),
    )
    return chain, f"{word} namespace {ns}", ns_set, dispatch, closing


def _base_chains(
    index: ClusterIndex,
    marks: Marks,
    dispatch: Mapping[Direction, list[ChainSpec]],
    markers: list[RuleSpec],
    sets: Mapping[str, SetSpec],
) -> tuple[ChainSpec, ...]:
    both = f"{marks.both:#x}"
    main = names.CHAIN_MAIN

    def r(chain: str, *args: str, text: str) -> RuleSpec:
        return RuleSpec(chain, tuple(args), text)

    main_rules = (
        r(main, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT", text="azure-npm: established"),
        r(main, "-j", "MARK", "--set-xmark", f"0x0/{both}", text="azure-npm: clear marks"),
        r(main, "-j", names.CHAIN_INGRESS, text="azure-npm: ingress policies"),
        r(main, "-j", names.CHAIN_EGRESS, text="azure-npm: egress policies"),
        r(
            main,
            "-m",
            "mark",
            "--mark",
            f"{marks.ingress:#x}/{marks.ingress:#x}",
            "-j",
            names.CHAIN_ACCEPT,
            text="azure-npm: allowed by ingress",
        ),
        r(
            main,
            "-m",
            "mark",
            "--mark",
            f"{marks.egress:#x}/{marks.egress:#x}",
            "-j",
            names.CHAIN_ACCEPT,
            text="azure-npm: allowed by egress",
        ),
    )
    chains = [index.chain(main, main_rules), *dispatch[INGRESS], *dispatch[EGRESS]]
    chains.append(
        index.chain(
            names.CHAIN_ACCEPT,
            (
                r(names.CHAIN_ACCEPT, "-j", "MARK", "--set-xmark", f"0x0/{both}", text="azure-npm: clear marks"),
                r(names.CHAIN_ACCEPT, "-j", "ACCEPT", text="azure-npm: allowed"),
            ),
        )
    )
    for chain, mark, what in (
        (names.CHAIN_INGRESS_ALLOW, marks.ingress, "ingress"),
        (names.CHAIN_EGRESS_ALLOW, marks.egress, "egress"),
    ):
        chains.append(
            index.chain(
                chain,
                (
                    r(
                        chain,
                        "-j",
                        "MARK",
                        "--set-xmark",
                        f"{mark:#x}/{mark:#x}",
                        text=f"azure-npm: mark {what} allowed",
                    ),
                    r(chain, "-j", "RETURN", text=f"azure-npm: {what} allowed"),
                ),
            )
        )
    chains.append(index.chain(names.CHAIN_POLICIES, tuple(markers)))
    chains.append(index.chain(names.CHAIN_SETS, tuple(index.index_rule(spec) for spec in sets.values())))
    return tuple(chains)
