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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from npm import names
from npm.model import Cluster, LabelSelector, NetworkPolicy, Peer, Pod, PolicyPort, Requirement

HASH_IP = "hash:ip"
HASH_NET = "hash:net"
HASH_IP_PORT = "hash:ip,port"
LIST_SET = "list:set"
DEFAULT_INGRESS_MARK = 0x2000
DEFAULT_EGRESS_MARK = 0x1000
FORWARD_COMMENT = "azure-npm: enforce network policies"


@dataclass(frozen=True)
class SetSpec:
    """One ipset: kernel name, type, what it means, and its members in ipset-save form."""

    name: str
    kind: str
    meaning: str
    members: frozenset[str]


@dataclass(frozen=True)
class RuleSpec:
    """One iptables rule of ``chain``: its tokens (after ``-A CHAIN``) and attribution."""

    chain: str
    args: tuple[str, ...]
    comment: str
    policy: str | None = None

    def tokens(self) -> tuple[str, ...]:
        """Arguments including the comment match, ready for rendering."""
        return (*self.args, "-m", "comment", "--comment", self.comment)


@dataclass(frozen=True)
class ChainSpec:
    """A chain and its rules in order; ``policy`` is set for per-policy chains."""

    name: str
    rules: tuple[RuleSpec, ...]
    policy: str | None = None


@dataclass(frozen=True)
class Marks:
    """The skb mark bits the verdict uses (each a single bit; they must differ)."""

    ingress: int = DEFAULT_INGRESS_MARK
    egress: int = DEFAULT_EGRESS_MARK

    def __post_init__(self) -> None:
        for bit in (self.ingress, self.egress):
            if bit <= 0 or bit & (bit - 1):
                raise ValueError(f"mark {bit:#x} must be a single bit")
        if self.ingress == self.egress:
            raise ValueError("ingress and egress marks must differ")

    @property
    def both(self) -> int:
        return self.ingress | self.egress


@dataclass(frozen=True)
class DesiredState:
    """Everything the kernel should hold for one node."""

    sets: Mapping[str, SetSpec]
    base_chains: tuple[ChainSpec, ...]
    policy_chains: Mapping[str, ChainSpec]
    chains_of_policy: Mapping[str, tuple[str, ...]]
    forward_jump: RuleSpec
    unenforceable: tuple[tuple[str, str], ...] = ()
    policies: int = 0
    set_meanings: Mapping[str, str] = field(default_factory=dict)

    @property
    def chains(self) -> dict[str, ChainSpec]:
        """Base and policy chains by name."""
        out = {c.name: c for c in self.base_chains}
        out.update(self.policy_chains)
        return out

    def rule_count(self) -> int:
        """Rules in all our chains plus the FORWARD jump."""
        return 1 + sum(len(c.rules) for c in self.base_chains) + sum(len(c.rules) for c in self.policy_chains.values())

    def entry_count(self) -> int:
        """Members over all sets."""
        return sum(len(s.members) for s in self.sets.values())


def _ipv4(ip: str) -> bool:
    # Addresses were validated by the loader: anything without a colon is IPv4.
    return bool(ip) and ":" not in ip


def _pod_ips(pod: Pod) -> list[str]:
    """IPv4 addresses of a pod that may be a set member (never hostNetwork pods)."""
    if pod.host_network:
        return []
    ips = pod.ips or ((pod.ip,) if pod.ip else ())
    return sorted({ip for ip in ips if _ipv4(ip)})


class ClusterIndex:
    """Lookups over a cluster's pods and namespaces (IPs by namespace, label, named port).

    Building it is the main cost of a translation, so a caller that applies many clusters
    with the same pods (policy changes) may pass the previous index back to ``translate``.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.pods = cluster.pods
        self.namespace_objects = cluster.namespaces
        self._selected: dict[tuple[str, LabelSelector], frozenset[str]] = {}
        self.rendered: dict[tuple[NetworkPolicy, Marks], _Rendered] = {}  # policy renderings for this index
        self.ns_ips: dict[str, set[str]] = defaultdict(set)
        self.label_kv: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.label_key: dict[str, set[str]] = defaultdict(set)
        self.named: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.pods_by_ns: dict[str, list[Pod]] = defaultdict(list)
        for pod in cluster.pods:
            self.pods_by_ns[pod.namespace].append(pod)
            ips = _pod_ips(pod)
            if not ips:
                continue
            self.ns_ips[pod.namespace].update(ips)
            for k, v in pod.labels.items():
                self.label_kv[(k, v)].update(ips)
                self.label_key[k].update(ips)
            for port in pod.ports:
                if port.name:
                    proto = port.protocol.lower()
                    self.named[(port.name, port.protocol)].update(f"{ip},{proto}:{port.port}" for ip in ips)
        self.namespaces = sorted({n.name for n in cluster.namespaces} | set(self.ns_ips))

    def ns_labels(self, name: str) -> Mapping[str, str]:
        return self.cluster.namespace_labels(name)

    def fits(self, cluster: Cluster) -> bool:
        """Whether this index describes ``cluster``'s pods and namespaces."""
        return self.pods == cluster.pods and self.namespace_objects == cluster.namespaces

    def selected(self, namespace: str, selector: LabelSelector) -> frozenset[str]:
        """IPs of the pods of ``namespace`` that ``selector`` selects, by set algebra."""
        key = (namespace, selector)
        found = self._selected.get(key)
        if found is not None:
            return found
        out = set(self.ns_ips.get(namespace, ()))
        for r in selector.requirements:
            if r.operator == "In":
                out &= set().union(*(self.label_kv.get((r.key, v), ()) for v in r.values))
            elif r.operator == "NotIn":
                for v in r.values:
                    out -= self.label_kv.get((r.key, v), set())
            elif r.operator == "Exists":
                out &= self.label_key.get(r.key, set())
            else:
                out -= self.label_key.get(r.key, set())
        self._selected[key] = frozenset(out)
        return self._selected[key]


class _Builder:
    """Materialises referenced sets and renders policies into chains."""

    def __init__(self, cluster: Cluster, marks: Marks, index: ClusterIndex | None = None) -> None:
        self.index = index if index is not None and index.fits(cluster) else ClusterIndex(cluster)
        self.marks = marks
        self.registry = names.NameRegistry()
        self.sets: dict[str, SetSpec] = {}
        self._by_meaning: dict[str, str] = {}
        self.unenforceable: list[tuple[str, str]] = []
        self.touched: set[str] | None = None

    # ---- sets -------------------------------------------------------------------------
    def _set(self, meaning: str, kind: str, members: Callable[[], Iterable[str]]) -> str:
        """The name of the set for ``meaning``, materialising it (members computed once)."""
        name = self._by_meaning.get(meaning)
        if name is None:
            name = self.registry.claim(names.set_name(meaning), meaning)
            self._by_meaning[meaning] = name
            self.sets[name] = SetSpec(name, kind, meaning, frozenset(members()))
        if self.touched is not None:
            self.touched.add(name)
        return name

    def closure(self, touched: Iterable[str]) -> dict[str, SetSpec]:
        """The sets in ``touched`` plus, for list sets, the sets they contain."""
        out: dict[str, SetSpec] = {}
        todo = list(touched)
        while todo:
            name = todo.pop()
            if name in out:
                continue
            spec = out[name] = self.sets[name]
            if spec.kind == LIST_SET:
                todo.extend(spec.members)
        return out

    def adopt(self, sets: Mapping[str, SetSpec]) -> None:
        """Materialise sets a cached policy rendering references."""
        for name, spec in sets.items():
            if name not in self.sets:
                self.registry.claim(name, spec.meaning)
                self._by_meaning[spec.meaning] = name
                self.sets[name] = spec

    def ns_set(self, ns: str) -> str:
        return self._set(f"ns:{ns}", HASH_IP, lambda: self.index.ns_ips.get(ns, ()))

    def all_namespaces(self) -> str:
        return self._set("all-namespaces", LIST_SET, lambda: [self.ns_set(n) for n in self.index.namespaces])

    def pod_kv(self, key: str, value: str) -> str:
        return self._set(f"podlabel:{key}={value}", HASH_IP, lambda: self.index.label_kv.get((key, value), ()))

    def pod_key(self, key: str) -> str:
        return self._set(f"podlabel:{key}", HASH_IP, lambda: self.index.label_key.get(key, ()))

    def pod_in(self, key: str, values: Sequence[str]) -> str:
        vals = sorted(set(values))
        return self._set(f"podlabel:{key} in ({','.join(vals)})", LIST_SET, lambda: [self.pod_kv(key, v) for v in vals])

    def _ns_list(self, meaning: str, predicate: Requirement) -> str:
        return self._set(
            meaning,
            LIST_SET,
            lambda: [self.ns_set(n) for n in self.index.namespaces if predicate.matches(self.index.ns_labels(n))],
        )

    def ns_kv(self, key: str, value: str) -> str:
        return self._ns_list(f"nslabel:{key}={value}", Requirement(key, "In", (value,)))

    def ns_key(self, key: str) -> str:
        return self._ns_list(f"nslabel:{key}", Requirement(key, "Exists"))

    def ns_in(self, key: str, values: Sequence[str]) -> str:
        vals = tuple(sorted(set(values)))
        return self._ns_list(f"nslabel:{key} in ({','.join(vals)})", Requirement(key, "In", vals))

    def named_port(self, port_name: str, protocol: str) -> str:
        return self._set(
            f"namedport:{port_name}/{protocol}", HASH_IP_PORT, lambda: self.index.named.get((port_name, protocol), ())
        )

    def cidr(self, network: ipaddress.IPv4Network, excepts: Sequence[ipaddress.IPv4Network]) -> str:
        meaning = f"cidr:{network}" + (f" except {','.join(str(e) for e in excepts)}" if excepts else "")

        def members() -> set[str]:
            out = {_net_entry(n) for n in _split_zero(network)}
            return out | {f"{_net_entry(e)} nomatch" for e in excepts for e in _split_zero(e)}

        return self._set(meaning, HASH_NET, members)

    # ---- selectors ----------------------------------------------------------------------
    def pod_requirements(self, sel: LabelSelector) -> list[tuple[bool, str]]:
        """(negated, set) matches whose AND is ``sel`` over pod labels (no scope)."""
        out: list[tuple[bool, str]] = []
        for r in sel.requirements:
            if r.operator == "In":
                out.append(
                    (False, self.pod_kv(r.key, r.values[0]) if len(r.values) == 1 else self.pod_in(r.key, r.values))
                )
            elif r.operator == "NotIn":
                out.extend((True, self.pod_kv(r.key, v)) for v in sorted(set(r.values)))
            elif r.operator == "Exists":
                out.append((False, self.pod_key(r.key)))
            else:
                out.append((True, self.pod_key(r.key)))
        return out

    def ns_requirements(self, sel: LabelSelector) -> list[tuple[bool, str]]:
        """(negated, set) matches for a namespaceSelector, always scoped to pod IPs."""
        out: list[tuple[bool, str]] = []
        for r in sel.requirements:
            if r.operator == "In":
                out.append(
                    (False, self.ns_kv(r.key, r.values[0]) if len(r.values) == 1 else self.ns_in(r.key, r.values))
                )
            elif r.operator == "NotIn":
                out.extend((True, self.ns_kv(r.key, v)) for v in sorted(set(r.values)))
            elif r.operator == "Exists":
                out.append((False, self.ns_key(r.key)))
            else:
                out.append((True, self.ns_key(r.key)))
        if not any(not neg for neg, _ in out):
            # Only negative (or no) requirements: still only pods, never other addresses.
            out.insert(0, (False, self.all_namespaces()))
        return out

    def peer(self, policy: NetworkPolicy, peer: Peer, where: str) -> list[tuple[bool, str]] | None:
        """Set matches for one peer, or None (recorded as unenforceable) if it cannot be."""
        if peer.ip_block is not None:
            net = peer.ip_block.network
            if net.version != 4:
                self.unenforceable.append(
                    (
                        policy.key,
                        f"{where}.ipBlock.cidr {peer.ip_block.cidr}: IPv6 is not enforced by this IPv4 dataplane",
                    )
                )
                return None
            excepts = [e for e in peer.ip_block.except_networks if isinstance(e, ipaddress.IPv4Network)]
            return [(False, self.cidr(net, excepts))]  # type: ignore[arg-type]
        if peer.namespace_selector is None:
            matches = [(False, self.ns_set(policy.namespace))]
        else:
            matches = self.ns_requirements(peer.namespace_selector)
        if peer.pod_selector is not None:
            matches += self.pod_requirements(peer.pod_selector)
        return matches


def _split_zero(net: ipaddress.IPv4Network) -> list[ipaddress.IPv4Network]:
    """hash:net cannot hold a /0: split it into two /1 halves."""
    return list(net.subnets(new_prefix=1)) if net.prefixlen == 0 else [net]


def _net_entry(net: ipaddress.IPv4Network) -> str:
    """A hash:net member as ``ipset save`` prints it (a /32 without its prefix)."""
    return str(net.network_address) if net.prefixlen == 32 else str(net)


def set_match(matches: Sequence[tuple[bool, str]], direction: str) -> list[str]:
    """``-m set [!] --match-set NAME dir`` tokens for every match."""
    out: list[str] = []
    for negated, name in matches:
        out += ["-m", "set", *(["!"] if negated else []), "--match-set", name, direction]
    return out


def port_match(builder: _Builder, port: PolicyPort) -> list[str]:
    """Protocol and destination-port tokens; a named port matches a ``dst,dst`` ip,port set."""
    proto = port.protocol.lower()
    if port.port is None:
        return ["-p", proto]
    if isinstance(port.port, str):
        return ["-p", proto, "-m", "set", "--match-set", builder.named_port(port.port, port.protocol), "dst,dst"]
    dport = (
        f"{port.port}:{port.end_port}" if port.end_port is not None and port.end_port != port.port else str(port.port)
    )
    return ["-p", proto, "-m", proto, "--dport", dport]


def _policy_chain(builder: _Builder, policy: NetworkPolicy, direction: str) -> ChainSpec | None:
    """The chain holding a policy's allow rules for one direction (None when it allows nothing)."""
    rules = policy.ingress if direction == "ingress" else policy.egress
    peer_dir, peer_word = ("src", "from") if direction == "ingress" else ("dst", "to")
    allow = names.CHAIN_INGRESS_ALLOW if direction == "ingress" else names.CHAIN_EGRESS_ALLOW
    body: list[tuple[tuple[str, ...], str]] = []
    for i, rule in enumerate(rules):
        peers: Sequence[Peer | None] = rule.peers or (None,)
        ports: Sequence[PolicyPort | None] = rule.ports or (None,)
        for j, peer in enumerate(peers):
            where = f"{direction}[{i}].{peer_word}[{j}]"
            if peer is None:
                peer_tokens: list[str] = []
            else:
                matches = builder.peer(policy, peer, f"spec.{where}")
                if matches is None:
                    continue  # fail closed: this peer allows nothing
                peer_tokens = set_match(matches, peer_dir)
            for k, port in enumerate(ports):
                port_tokens = [] if port is None else port_match(builder, port)
                peer_label = f"{peer_word}[{j}]" if peer is not None else f"{peer_word}[any]"
                port_label = f"ports[{k}]" if port is not None else "ports[any]"
                text = names.rule_comment(policy.key, f"{direction}[{i}] {peer_label} {port_label}")
                body.append(((*peer_tokens, *port_tokens, "-j", allow), text))
    if not body:
        return None
    identity = "\n".join([policy.key, direction] + [" ".join(t) + " #" + c for t, c in body])
    name = builder.registry.claim(names.policy_chain_name(direction, identity), f"{direction} chain of {policy.key}")
    return ChainSpec(name, tuple(RuleSpec(name, t, c, policy.key) for t, c in body), policy.key)


def translate(
    cluster: Cluster, node_name: str = "", marks: Marks | None = None, index: ClusterIndex | None = None
) -> DesiredState:
    """The desired ipsets and chains for ``node_name``.

    Targets are matched against cluster-wide sets, so every node checks both directions
    of a flow it forwards: the verdict is the same on every node, and cross-node traffic
    is enforced at the source node (egress) and the destination node (ingress). Raises
    :class:`npm.names.NameCollision` if two meanings would share a kernel name.
    """
    del node_name  # every node holds the same rules today; kept for per-node targeting
    marks = marks or Marks()
    b = _Builder(cluster, marks, index)
    policy_chains: dict[str, ChainSpec] = {}
    chains_of: dict[str, tuple[str, ...]] = {}
    # direction -> namespace -> jump rules of the policies of that namespace
    ns_jumps: dict[str, dict[str, list[RuleSpec]]] = {"ingress": defaultdict(list), "egress": defaultdict(list)}
    isolated: dict[str, set[str]] = {"ingress": set(), "egress": set()}
    markers: list[RuleSpec] = []
    for policy in sorted(cluster.policies, key=lambda p: p.key):
        rendered = _render_policy(b, policy, marks)
        mine: list[str] = []
        for direction, chain, jump in rendered.parts:
            isolated[direction].update(b.index.selected(policy.namespace, policy.pod_selector))
            jumps = ns_jumps[direction][policy.namespace]  # present even when the policy allows nothing
            if chain is None or jump is None:
                continue
            policy_chains[chain.name] = chain
            mine.append(chain.name)
            jumps.append(jump)
        chains_of[policy.key] = tuple(mine)
        markers.append(rendered.marker)
    dispatch = _dispatch_chains(b, marks, ns_jumps, isolated)
    base_chains = _base_chains(b, marks, dispatch, markers)
    forward = RuleSpec("FORWARD", ("-j", names.CHAIN_MAIN), FORWARD_COMMENT)
    return DesiredState(
        sets=dict(sorted(b.sets.items())),
        base_chains=base_chains,
        policy_chains=policy_chains,
        chains_of_policy=chains_of,
        forward_jump=forward,
        unenforceable=tuple(b.unenforceable),
        policies=len(cluster.policies),
        set_meanings={n: s.meaning for n, s in b.sets.items()},
    )


@dataclass(frozen=True)
class _Rendered:
    """A policy's chains and jumps, with the sets they use (cached per cluster index)."""

    parts: tuple[tuple[str, ChainSpec | None, RuleSpec | None], ...]
    marker: RuleSpec
    sets: Mapping[str, SetSpec]
    unenforceable: tuple[tuple[str, str], ...]


def _render_policy(b: _Builder, policy: NetworkPolicy, marks: Marks) -> _Rendered:
    """Render one policy; reuse the rendering while the pods and namespaces are unchanged."""
    key = (policy, marks)
    cached = b.index.rendered.get(key)
    if cached is not None:
        b.adopt(cached.sets)
        for direction, chain, _ in cached.parts:
            if chain is not None:
                b.registry.claim(chain.name, f"{direction} chain of {policy.key}")
        b.unenforceable.extend(cached.unenforceable)
        return cached
    b.touched = set()
    before = len(b.unenforceable)
    parts: list[tuple[str, ChainSpec | None, RuleSpec | None]] = []
    directions = [d for d, on in (("ingress", policy.affects_ingress), ("egress", policy.affects_egress)) if on]
    for direction in directions:
        side = "dst" if direction == "ingress" else "src"
        mark = marks.ingress if direction == "ingress" else marks.egress
        chain = _policy_chain(b, policy, direction)
        jump = None
        if chain is not None:
            # The namespace chain is only entered for pods of the policy's namespace, so the
            # jump needs the pod selector's sets only.
            target = set_match(b.pod_requirements(policy.pod_selector), side)
            jump = RuleSpec(
                _ns_chain(b, direction, policy.namespace),
                ("-m", "mark", "!", "--mark", f"{mark:#x}/{mark:#x}", *target, "-j", chain.name),
                names.rule_comment(policy.key, f"{direction} rules"),
                policy.key,
            )
        parts.append((direction, chain, jump))
    marker = RuleSpec(
        names.CHAIN_POLICIES, ("-j", "RETURN"), names.comment(f"policy {policy.key} {','.join(directions)}")
    )
    rendered = _Rendered(tuple(parts), marker, b.closure(b.touched), tuple(b.unenforceable[before:]))
    b.touched = None
    b.index.rendered[key] = rendered
    return rendered


def _ns_chain(b: _Builder, direction: str, namespace: str) -> str:
    return b.registry.claim(names.namespace_chain_name(direction, namespace), f"{direction} namespace {namespace}")


def _dispatch_chains(
    b: _Builder,
    marks: Marks,
    ns_jumps: Mapping[str, Mapping[str, list[RuleSpec]]],
    isolated: Mapping[str, set[str]],
) -> dict[str, list[ChainSpec]]:
    """Per direction: the base chain (skip non-isolated pods, go to the namespace's chain)
    followed by one chain per namespace holding its policies' jumps, then the verdict.

    A policy selects pods of its own namespace only, so a packet for an isolated pod only
    walks the jumps of that namespace's policies; a pod no policy isolates costs one set
    lookup.
    """
    out: dict[str, list[ChainSpec]] = {}
    for direction, base in (("ingress", names.CHAIN_INGRESS), ("egress", names.CHAIN_EGRESS)):
        side = "dst" if direction == "ingress" else "src"
        mark = marks.ingress if direction == "ingress" else marks.egress
        chains: list[ChainSpec] = []
        base_rules: list[RuleSpec] = []
        if ns_jumps[direction]:
            members = frozenset(isolated[direction])
            iso = b._set(f"isolated:{direction}", HASH_IP, lambda m=members: m)
            base_rules.append(
                RuleSpec(
                    base,
                    ("-m", "set", "!", "--match-set", iso, side, "-j", "RETURN"),
                    f"azure-npm: not isolated for {direction}",
                )
            )
        for ns in sorted(ns_jumps[direction]):
            chain = _ns_chain(b, direction, ns)
            base_rules.append(
                RuleSpec(
                    base,
                    ("-m", "set", "--match-set", b.ns_set(ns), side, "-g", chain),
                    names.comment(f"namespace {ns}"),
                )
            )
            rules = [*ns_jumps[direction][ns]]
            rules.append(
                RuleSpec(
                    chain,
                    ("-m", "mark", "--mark", f"{mark:#x}/{mark:#x}", "-j", "RETURN"),
                    names.comment(f"namespace {ns}: allowed by an {direction} rule"),
                )
            )
            rules.append(RuleSpec(chain, ("-j", "DROP"), names.comment(f"namespace {ns}: isolated for {direction}")))
            chains.append(ChainSpec(chain, tuple(rules)))
        out[direction] = [ChainSpec(base, tuple(base_rules)), *chains]
    return out


def _base_chains(
    b: _Builder, marks: Marks, dispatch: Mapping[str, list[ChainSpec]], markers: list[RuleSpec]
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
    chains = [ChainSpec(main, main_rules), *dispatch["ingress"], *dispatch["egress"]]
    chains.append(
        ChainSpec(
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
            ChainSpec(
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
    chains.append(ChainSpec(names.CHAIN_POLICIES, tuple(markers)))
    index = []
    for name, spec in sorted(b.sets.items()):
        direction = "src,src" if spec.kind == HASH_IP_PORT else "src"
        index.append(
            r(
                names.CHAIN_SETS,
                "-m",
                "set",
                "--match-set",
                name,
                direction,
                "-j",
                "RETURN",
                text=names.comment(f"set {spec.meaning}"),
            )
        )
    chains.append(ChainSpec(names.CHAIN_SETS, tuple(index)))
    return tuple(chains)
