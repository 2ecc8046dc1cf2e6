"""Translate a Cluster into the nftables dataplane's desired table (pure: no kernel).

One table of ours, ``inet azure-npm``; nothing else in the ruleset is touched. Its shape:

* ``forward`` (hook forward, priority filter, policy accept): ``ct state established,related
  accept``; ``ip saddr vmap @egress-dispatch``; ``ip daddr vmap @ingress-dispatch``. The
  verdict maps are keyed by the address of every pod some policy isolates in that direction,
  and send it to the chain of its *policy group* (the policies that select it), or straight
  to ``drop`` when none of them allows anything. A packet costs one map lookup per direction
  whatever the number of namespaces and policies, then the policies of its own pod only.
* a group chain (``in-grp-…``/``eg-grp-…``) jumps to each of its policies' chains, then drops.
* a policy chain (``in-…``/``eg-…``, named after its content, so a changed policy is a new
  chain) holds one rule per rule x peer x port. An ingress rule that matches ``accept``s: the
  ingress check is the last. An egress rule that matches ``goto ingress``: the ``ingress``
  chain checks the destination (the same map lookup) and otherwise accepts. Every path ends
  in accept or drop, so no mark bits are needed.
* named sets: the selector sets of ``translate.SetRefs`` (namespaces, pod labels, namespace
  label lists flattened into address sets, ``ipv4_addr . inet_proto . inet_service`` named
  ports); an ipBlock with ``except`` is an interval set holding the CIDR minus its excepts
  (``cidr_difference``), so nothing is ever opened to be closed again; a plain CIDR is
  matched inline.
* ``policies``: never jumped to; one ``return`` per policy whose comment names it.

Pods no policy isolates are in no map: their packets cost two failed lookups.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from kube.model import DIRECTIONS, EGRESS, INGRESS, Cluster, Direction, NetworkPolicy, PolicyPort
from npm.dataplane import names
from npm.dataplane.index import ClusterIndex
from npm.dataplane.translate import SetRefs, policy_allows
from npm.dataplane.types import HASH_IP_PORT, LIST_SET, SetRef

FAMILY = "inet"
TABLE = "azure-npm"
CHAIN_FORWARD = "forward"
CHAIN_INGRESS = "ingress"  # the ingress check, where an egress allow continues
CHAIN_POLICIES = "policies"
MAP_INGRESS = "ingress-dispatch"
MAP_EGRESS = "egress-dispatch"
FORWARD_HOOK = "type filter hook forward priority filter; policy accept;"
MAX_COMMENT = 128  # nft refuses longer comments
ADDR = "ipv4_addr"
NAMED_PORT = "ipv4_addr . inet_proto . inet_service"
VERDICT_MAP = "ipv4_addr : verdict"


@dataclass(frozen=True)
class NftSet:
    """A named set (or verdict map) of our table, with its elements as ``nft -j`` reads back."""

    name: str
    type: str  # ADDR, NAMED_PORT or VERDICT_MAP
    meaning: str
    elements: frozenset[str]
    interval: bool = False

    @property
    def is_map(self) -> bool:
        return self.type == VERDICT_MAP


@dataclass(frozen=True)
class NftRule:
    """One rule: its expression (without the comment), and what identifies it when read back."""

    expr: str
    comment: str
    verdict: str  # "accept", "drop", "return", "jump CHAIN", "goto CHAIN", "vmap MAP"
    sets: tuple[tuple[bool, str], ...] = ()  # (negated, set) matched, sorted
    policy: str | None = None

    def fingerprint(self) -> tuple[str, str, tuple[tuple[bool, str], ...]]:
        return (self.comment, self.verdict, self.sets)


@dataclass(frozen=True)
class NftChain:
    """A chain and its rules; ``hook`` for the base chain, ``policy`` for a policy's chain."""

    name: str
    rules: tuple[NftRule, ...]
    hook: str = ""
    policy: str | None = None


@dataclass(frozen=True)
class NftState:
    """Everything our table should hold."""

    sets: Mapping[str, NftSet]  # sets and maps by name
    chains: Mapping[str, NftChain]
    chains_of_policy: Mapping[str, tuple[str, ...]]
    sets_of_policy: Mapping[str, frozenset[str]] = field(default_factory=dict)
    unenforceable: tuple[tuple[str, str], ...] = ()
    policies: int = 0

    def rule_count(self) -> int:
        return sum(len(c.rules) for c in self.chains.values())

    def element_count(self) -> int:
        return sum(len(s.elements) for s in self.sets.values())


@dataclass(frozen=True, eq=False)
class NftPolicy:
    """A policy's chains per direction (None: it allows nothing that way), the sets its rules
    use (selector refs and its own CIDR sets) and what it cannot enforce. Depends on the policy only."""

    policy: NetworkPolicy
    chains: tuple[tuple[Direction, NftChain | None], ...]
    refs: tuple[SetRef, ...]
    cidr_sets: tuple[NftSet, ...]
    unenforceable: tuple[tuple[str, str], ...]


# ---- pure helpers ---------------------------------------------------------------------------
def cidr_difference(
    network: ipaddress.IPv4Network, excepts: Iterable[ipaddress.IPv4Network]
) -> list[ipaddress.IPv4Network]:
    """``network`` minus every except, as sorted, disjoint prefixes (an interval set's elements)."""
    pieces = [network]
    for ex in excepts:
        out: list[ipaddress.IPv4Network] = []
        for piece in pieces:
            if ex.supernet_of(piece):
                continue  # wholly excepted
            if piece.supernet_of(ex):
                out += piece.address_exclude(ex)
            else:
                out.append(piece)  # disjoint
        pieces = out
    return sorted(pieces)


def prefix_element(net: ipaddress.IPv4Network) -> str:
    """An interval set element as ``nft -j`` prints it (a /32 as the bare address)."""
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def named_port_element(member: str) -> str:
    """``IP,proto:port`` (the index's member form) as ``IP . proto . port``."""
    ip, _, rest = member.partition(",")
    proto, _, port = rest.partition(":")
    return f"{ip} . {proto} . {port}"


def port_expr(refs: SetRefs, port: PolicyPort) -> tuple[str, tuple[tuple[bool, str], ...]]:
    """The protocol/port expression of one policy port, and the set it matches (named ports)."""
    proto = port.protocol.lower()
    if port.port is None:
        return f"meta l4proto {proto}", ()
    if isinstance(port.port, str):
        # Resolved on the destination pod, as the iptables dataplane does (dst,dst).
        name = refs.named_port(port.port, port.protocol)
        return f"ip daddr . meta l4proto . th dport @{name}", ((False, name),)
    if port.end_port is not None and port.end_port != port.port:
        return f"{proto} dport {port.port}-{port.end_port}", ()
    return f"{proto} dport {port.port}", ()


def _comment(key: str, what: str) -> str:
    return names.rule_comment(key, what, MAX_COMMENT)


def render_policy(policy: NetworkPolicy) -> NftPolicy:
    """A policy's chains and the sets they use (pure)."""
    refs = SetRefs()
    cidr_sets: dict[str, NftSet] = {}
    chains: list[tuple[Direction, NftChain | None]] = []
    for direction in (d for d in DIRECTIONS if d in policy.policy_types):
        side = "saddr" if direction.peer_side == "src" else "daddr"
        verdict = direction.pick("accept", f"goto {CHAIN_INGRESS}")
        body: list[tuple[str, str, tuple[tuple[bool, str], ...]]] = []
        for allow in policy_allows(policy, direction):
            peer = allow.peer
            peer_sets: tuple[tuple[bool, str], ...] = ()
            if peer is None:
                peer_expr = ""
            elif peer.ip_block is not None:
                net = refs.v4_block(policy, peer, allow.where)
                if net is None:
                    continue  # fail closed: this peer allows nothing
                excepts = [e for e in peer.ip_block.except_networks if isinstance(e, ipaddress.IPv4Network)]
                if not excepts:
                    peer_expr = f"ip {side} {net}"
                else:
                    meaning = f"cidr:{net} except {','.join(str(e) for e in excepts)}"
                    name = names.set_name(meaning)
                    elements = frozenset(prefix_element(p) for p in cidr_difference(net, excepts))
                    cidr_sets[name] = NftSet(name, ADDR, meaning, elements, interval=True)
                    peer_expr, peer_sets = f"ip {side} @{name}", ((False, name),)
            else:
                matches = refs.selector_sets(policy, peer)
                peer_expr = " ".join(f"ip {side} {'!= ' if neg else ''}@{name}" for neg, name in matches)
                peer_sets = tuple(matches)
            for port_label, port in allow.ports:
                p_expr, p_sets = ("", ()) if port is None else port_expr(refs, port)
                expr = " ".join(x for x in (peer_expr, p_expr, verdict) if x)
                body.append((expr, _comment(policy.key, f"{allow.label} {port_label}"), peer_sets + p_sets))
        if not body:
            chains.append((direction, None))
            continue
        identity = "\n".join([policy.key, direction.word] + [f"{e} #{c}" for e, c, _ in body])
        name = names.nft_name(direction.pick("in-", "eg-"), identity)
        rules = tuple(NftRule(e, c, verdict, tuple(sorted(set(s))), policy.key) for e, c, s in body)
        chains.append((direction, NftChain(name, rules, policy=policy.key)))
    return NftPolicy(
        policy, tuple(chains), tuple(dict.fromkeys(refs.used)), tuple(cidr_sets.values()), tuple(refs.unenforceable)
    )


# ---- assembly -------------------------------------------------------------------------------
class NftTranslator:
    """Cluster -> :class:`NftState`, incrementally: the :class:`ClusterIndex` and the renderings,
    sets and group chains of the previous translation are reused while unchanged."""

    def __init__(self) -> None:
        self.index: ClusterIndex | None = None
        self._policies: dict[str, NftPolicy] = {}
        self._sets: dict[SetRef, tuple[tuple[object, ...], NftSet]] = {}
        self._sets_generation = -1  # the index generation the cached sets were checked at
        self._groups: dict[str, NftChain] = {}
        # (direction, namespace) -> (what it was computed from, map elements, group chains,
        # addresses other namespaces' pods also have -> their chains)
        self._parts: dict[tuple[Direction, str], tuple[object, frozenset[str], dict[str, NftChain],
                                                       dict[str, set[str]]]] = {}

    def translate(self, cluster: Cluster) -> NftState:
        """The desired table of a node (every node holds the same one). Raises
        :class:`npm.dataplane.names.NameCollision` if two meanings would share a name."""
        if self.index is None:
            self.index = ClusterIndex(cluster)
        else:
            self.index.update(cluster)
        index = self.index
        registry = names.NameRegistry()
        sets: dict[str, NftSet] = {}
        chains: dict[str, NftChain] = {}
        chains_of: dict[str, tuple[str, ...]] = {}
        sets_of: dict[str, frozenset[str]] = {}
        unenforceable: list[tuple[str, str]] = []
        # direction -> namespace -> (policy, its chain or None), in policy order
        by_ns: dict[Direction, dict[str, list[tuple[NetworkPolicy, NftChain | None]]]] = {
            d: defaultdict(list) for d in DIRECTIONS
        }
        markers: list[NftRule] = []
        rendered_now: dict[str, NftPolicy] = {}
        for policy in sorted(cluster.policies, key=lambda p: p.key):
            rendered = self._policies.get(policy.key)
            if rendered is None or (rendered.policy is not policy and rendered.policy != policy):
                rendered = render_policy(policy)
            rendered_now[policy.key] = rendered
            unenforceable += rendered.unenforceable
            mine: list[str] = []
            for direction, chain in rendered.chains:
                by_ns[direction][policy.namespace].append((policy, chain))
                if chain is not None:
                    chains[registry.claim(chain.name, f"{direction.word} chain of {policy.key}")] = chain
                    mine.append(chain.name)
            own = set()
            for ref in rendered.refs:
                sets[registry.claim(ref.name, ref.meaning)] = self._set(index, ref)
                own.add(ref.name)
            for cset in rendered.cidr_sets:
                sets[registry.claim(cset.name, cset.meaning)] = cset
                own.add(cset.name)
            chains_of[policy.key] = tuple(mine)
            sets_of[policy.key] = frozenset(own)
            words = ",".join(d.word for d, _ in rendered.chains)
            markers.append(NftRule("return", _comment("policy", f"{policy.key} {words}"), "return"))
        self._policies = rendered_now
        used = {ref for rendered in rendered_now.values() for ref in rendered.refs}
        self._sets = {ref: v for ref, v in self._sets.items() if ref in used}  # kept ones are checked now
        self._sets_generation = index.generation
        groups: dict[str, NftChain] = {}
        for direction, map_name in ((INGRESS, MAP_INGRESS), (EGRESS, MAP_EGRESS)):
            elements = self._dispatch(index, direction, by_ns[direction], groups)
            sets[map_name] = NftSet(map_name, VERDICT_MAP, f"{direction.word} dispatch", elements)
        self._groups = groups
        for group in groups.values():
            chains[registry.claim(group.name, f"group {group.name}")] = group
        for chain in _base_chains(markers):
            chains[chain.name] = chain
        return NftState(
            sets=dict(sorted(sets.items())),
            chains=chains,
            chains_of_policy=chains_of,
            sets_of_policy=sets_of,
            unenforceable=tuple(unenforceable),
            policies=len(cluster.policies),
        )

    def _set(self, index: ClusterIndex, ref: SetRef) -> NftSet:
        """The nft set for a selector ref: the index's members, list sets flattened into addresses."""
        found = self._sets.get(ref)
        if found is not None and self._sets_generation == index.generation:
            return found[1]  # no pod or namespace changed since it was made
        if ref.kind == LIST_SET:
            sources: tuple[object, ...] = tuple(index.spec(child) for child in index.children(ref))
        else:
            sources = (index.spec(ref),)
        same = found is not None and len(found[0]) == len(sources)
        if found is not None and same and all(a is b for a, b in zip(found[0], sources, strict=True)):
            return found[1]
        if ref.kind == HASH_IP_PORT:
            nft_set = NftSet(ref.name, NAMED_PORT, ref.meaning, frozenset(map(named_port_element, sources[0].members)))  # type: ignore[attr-defined]
        else:
            members: frozenset[str] = frozenset().union(*(s.members for s in sources))  # type: ignore[attr-defined]
            nft_set = NftSet(ref.name, ADDR, ref.meaning, members)
        self._sets[ref] = (sources, nft_set)
        return nft_set

    def _dispatch(
        self,
        index: ClusterIndex,
        direction: Direction,
        namespaces: Mapping[str, Sequence[tuple[NetworkPolicy, NftChain | None]]],
        groups: dict[str, NftChain],
    ) -> frozenset[str]:
        """The dispatch map's elements: each isolated pod address -> its group chain (or drop).

        Computed per namespace and kept while the namespace's selections and policy chains are
        the same objects; an address pods of several namespaces share gets the union of their
        policies.
        """
        parts: dict[tuple[Direction, str], tuple[object, frozenset[str], dict[str, NftChain],
                                                 dict[str, set[str]]]] = {}
        shared: dict[str, set[str]] = {}
        by_name: dict[str, NftChain] = {}
        elements: list[frozenset[str]] = []
        for ns in sorted(namespaces):
            entries = namespaces[ns]
            selections = index.selections(direction, ns, tuple(p.pod_selector for p, _ in entries))
            source = (selections, tuple(chain for _, chain in entries))
            part = self._parts.get((direction, ns))
            # Selections are recomputed (a new object) whenever the namespace's pods, or the
            # pods sharing their addresses, change: compare by identity.
            if part is None or part[0][0] is not selections or part[0][1] != source[1]:  # type: ignore[index]
                part = self._part(index, direction, entries, selections, source, groups)
            parts[(direction, ns)] = part
            elements.append(part[1])
            groups.update(part[2])
            for ip, chains in part[3].items():
                shared.setdefault(ip, set()).update(chains)
            for _, chain in entries:
                if chain is not None:
                    by_name[chain.name] = chain
        self._parts.update(parts)
        for key in [k for k in self._parts if k[0] == direction and k not in parts]:
            del self._parts[key]
        extra = []
        for ip, chains in shared.items():
            if not chains:
                extra.append(f"{ip} : drop")
            else:
                extra.append(f"{ip} : goto {self._group(direction, [by_name[n] for n in chains], groups)}")
        return frozenset().union(*elements, extra)

    def _part(
        self,
        index: ClusterIndex,
        direction: Direction,
        entries: Sequence[tuple[NetworkPolicy, NftChain | None]],
        selections: tuple[frozenset[str], ...],
        source: object,
        groups: dict[str, NftChain],
    ) -> tuple[object, frozenset[str], dict[str, NftChain], dict[str, set[str]]]:
        """One namespace's share of a dispatch map (see ``_dispatch``)."""
        chains_of_ip: dict[str, set[str]] = {}
        by_name: dict[str, NftChain] = {}
        for (_, chain), ips in zip(entries, selections, strict=True):
            for ip in ips:
                mine = chains_of_ip.setdefault(ip, set())
                if chain is not None:
                    by_name[chain.name] = chain
                    mine.add(chain.name)
        shared = {ip: c for ip, c in chains_of_ip.items() if len(index.tables.get(("ipns", ip), ())) > 1}
        mine_groups: dict[str, NftChain] = {}
        by_group: dict[frozenset[str], str] = {}
        out: list[str] = []
        for ip, names_ in chains_of_ip.items():
            if ip in shared:
                continue
            if not names_:
                out.append(f"{ip} : drop")
                continue
            key = frozenset(names_)
            name = by_group.get(key)
            if name is None:
                name = by_group[key] = self._group(direction, [by_name[n] for n in key], mine_groups)
            out.append(f"{ip} : goto {name}")
        groups.update(mine_groups)
        return source, frozenset(out), mine_groups, shared

    def _group(self, direction: Direction, members: Sequence[NftChain], groups: dict[str, NftChain]) -> str:
        ordered = sorted(members, key=lambda c: (c.policy or "", c.name))
        name = names.nft_name(direction.pick("in-grp-", "eg-grp-"), " ".join(c.name for c in ordered))
        found = self._groups.get(name) or groups.get(name)
        if found is None:
            rules = tuple(
                NftRule(f"jump {c.name}", _comment(c.policy or "", f"{direction.word} rules"), f"jump {c.name}",
                        policy=c.policy)
                for c in ordered
            )
            word = direction.word
            rules += (NftRule("drop", f"azure-npm: isolated for {word}, no policy allows it", "drop"),)
            found = NftChain(name, rules)
        groups[name] = found
        return name


def _base_chains(markers: Sequence[NftRule]) -> tuple[NftChain, ...]:
    forward = NftChain(
        CHAIN_FORWARD,
        (
            NftRule("ct state established,related accept", "azure-npm: established", "accept"),
            NftRule(f"ip saddr vmap @{MAP_EGRESS}", "azure-npm: egress policies of isolated sources",
                    f"vmap {MAP_EGRESS}"),
            NftRule(f"ip daddr vmap @{MAP_INGRESS}", "azure-npm: ingress policies of isolated destinations",
                    f"vmap {MAP_INGRESS}"),
        ),
        hook=FORWARD_HOOK,
    )
    ingress = NftChain(
        CHAIN_INGRESS,
        (
            NftRule(f"ip daddr vmap @{MAP_INGRESS}", "azure-npm: allowed by egress, ingress policies",
                    f"vmap {MAP_INGRESS}"),
            NftRule("accept", "azure-npm: allowed by egress, destination not isolated", "accept"),
        ),
    )
    return forward, ingress, NftChain(CHAIN_POLICIES, tuple(markers))
