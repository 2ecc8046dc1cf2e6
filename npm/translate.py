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
from dataclasses import dataclass
from typing import Any

from npm import names
from npm.model import Cluster, LabelSelector, Namespace, NetworkPolicy, Peer, Pod, PolicyPort, Requirement

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


# ---- set references -------------------------------------------------------------------------
@dataclass(frozen=True)
class SetRef:
    """A set rules refer to: kernel name, meaning, type, and where its members come from.

    ``recipe`` is one of ``("ns", ns)``, ``("podlabel", k, v)``, ``("podkey", k)``,
    ``("named", name, PROTO)`` (tables of the cluster index), ``("podlist", k, v, ...)``,
    ``("nslist", requirement)``, ``("all",)`` (list sets), ``("static", member, ...)`` or
    ``("isolated", direction)``. Policy renderings hold references only, so they do not
    depend on pods or namespaces.
    """

    name: str
    meaning: str
    kind: str
    recipe: tuple[Any, ...]


def _ref(meaning: str, kind: str, *recipe: Any) -> SetRef:
    return SetRef(names.set_name(meaning), meaning, kind, recipe)


def _ns_ref(ns: str) -> SetRef:
    return _ref(f"ns:{ns}", HASH_IP, "ns", ns)


def _pod_kv_ref(key: str, value: str) -> SetRef:
    return _ref(f"podlabel:{key}={value}", HASH_IP, "podlabel", key, value)


def _ns_list_ref(meaning: str, requirement: Requirement) -> SetRef:
    return _ref(meaning, LIST_SET, "nslist", requirement)


ALL_NAMESPACES = _ref("all-namespaces", LIST_SET, "all")
_LIST_RECIPES_OF_NAMESPACES = ("nslist", "all")


class ClusterIndex:
    """Pods and namespaces as member tables, and caches of what translation derives from them.

    ``translate`` brings the index up to date with its cluster by applying the differences
    (members are reference-counted, so a pod event touches only the tables of that pod) and
    forgets only the derived values those tables fed: set members, isolated pods of a
    namespace. Policy renderings do not depend on pods and are kept while the policy is
    unchanged. The result of ``translate`` never depends on what the index held before.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.pods: tuple[Pod, ...] = ()
        self.namespace_objects: tuple[Namespace, ...] = ()
        self.namespaces: list[str] = []
        # recipe -> member -> how many pods contribute it (two pods may share an address)
        self.tables: dict[tuple[Any, ...], dict[str, int]] = {}
        self._pod_namespaces: set[str] = set()
        self._specs: dict[SetRef, SetSpec] = {}
        self._previous: dict[SetRef, SetSpec] = {}
        self._children: dict[SetRef, tuple[SetRef, ...]] = {}
        self._isolated: dict[tuple[str, str], tuple[tuple[LabelSelector, ...], frozenset[str]]] = {}
        self._isolated_specs: dict[str, tuple[tuple[frozenset[str], ...], SetSpec]] = {}
        self._renderings: dict[str, PolicyRendering] = {}
        self._chains: dict[str, ChainSpec] = {}
        self._index_rules: dict[str, RuleSpec] = {}
        self.update(cluster)

    # ---- bringing it up to date ---------------------------------------------------------
    def update(self, cluster: Cluster) -> None:
        """Describe ``cluster``'s pods and namespaces, changing only what differs."""
        dirty: set[tuple[Any, ...]] = set()
        dirty_ns: set[str] = set()
        if cluster.pods is not self.pods:
            # By identity first (the daemon's snapshots reuse unchanged pod objects), then
            # equal pods that are new objects are paired by key and left alone.
            before, after = {id(p) for p in self.pods}, {id(p) for p in cluster.pods}
            added = [p for p in cluster.pods if id(p) not in before]
            gone: dict[str, list[Pod]] = defaultdict(list)
            for p in self.pods:
                if id(p) not in after:
                    gone[p.key].append(p)
            for pod in added:
                twins = gone.get(pod.key)
                if twins and pod in twins:
                    twins.remove(pod)
                else:
                    self._count(pod, 1, dirty, dirty_ns)
            for pods in gone.values():
                for pod in pods:
                    self._count(pod, -1, dirty, dirty_ns)
            self.pods = cluster.pods
        namespaces = sorted({n.name for n in cluster.namespaces} | self._pod_namespaces)
        if cluster.namespaces != self.namespace_objects or namespaces != self.namespaces:
            self.namespace_objects = cluster.namespaces
            self.namespaces = namespaces
            self.cluster = cluster  # for namespace labels
            self._specs = {r: s for r, s in self._specs.items() if r.recipe[0] not in _LIST_RECIPES_OF_NAMESPACES}
            self._children = {r: c for r, c in self._children.items() if r.recipe[0] == "podlist"}
        if dirty:
            # Kept aside: a set whose pods changed but whose members did not stays the same object.
            self._previous = {r: s for r, s in self._specs.items() if r.recipe in dirty}
            self._specs = {r: s for r, s in self._specs.items() if r.recipe not in dirty}
        if dirty_ns:
            self._isolated = {k: v for k, v in self._isolated.items() if k[1] not in dirty_ns}

    def _count(self, pod: Pod, sign: int, dirty: set[tuple[Any, ...]], dirty_ns: set[str]) -> None:
        """Add (``sign`` 1) or remove (-1) a pod's contributions to the member tables."""
        ips = _pod_ips(pod)
        if not ips:
            return
        entries: list[tuple[tuple[Any, ...], Sequence[str]]] = [(("ns", pod.namespace), ips)]
        for k, v in pod.labels.items():
            entries += [(("podlabel", k, v), ips), (("podkey", k), ips)]
        for port in pod.ports:
            if port.name:
                proto = port.protocol.lower()
                entries.append((("named", port.name, port.protocol), [f"{ip},{proto}:{port.port}" for ip in ips]))
        # Which namespaces hold an address: a shared address makes their selections depend on each other.
        entries += [(("ipns", ip), (pod.namespace,)) for ip in ips]
        for recipe, members in entries:
            table = self.tables.setdefault(recipe, {})
            for m in members:
                n = table.get(m, 0) + sign
                if n:
                    table[m] = n
                else:
                    del table[m]
            if not table:
                del self.tables[recipe]
            dirty.add(recipe)
        if ("ns", pod.namespace) in self.tables:
            self._pod_namespaces.add(pod.namespace)
        else:
            self._pod_namespaces.discard(pod.namespace)
        dirty_ns.add(pod.namespace)
        for ip in ips:
            dirty_ns.update(self.tables.get(("ipns", ip), ()))

    def keep(self, policies: Iterable[str], chains: Iterable[str]) -> None:
        """Forget renderings and chains of policies and namespaces no longer present."""
        wanted, names_ = set(policies), set(chains)
        self._renderings = {k: r for k, r in self._renderings.items() if k in wanted}
        self._chains = {n: c for n, c in self._chains.items() if n in names_}

    # ---- derived values -------------------------------------------------------------------
    def selected(self, namespace: str, selector: LabelSelector) -> set[str]:
        """IPs of the pods of ``namespace`` that ``selector`` selects, by set algebra."""
        out = set(self.tables.get(("ns", namespace), ()))
        for r in selector.requirements:
            if r.operator in ("In", "NotIn"):
                tables = [self.tables.get(("podlabel", r.key, v), {}) for v in r.values]
            else:
                tables = [self.tables.get(("podkey", r.key), {})]
            # Filter the (small) selection by the (possibly huge) tables, never the reverse.
            if r.operator in ("In", "Exists"):
                out = {ip for ip in out if any(ip in t for t in tables)}
            else:
                out = {ip for ip in out if not any(ip in t for t in tables)}
        return out

    def isolated(self, direction: str, namespace: str, selectors: tuple[LabelSelector, ...]) -> frozenset[str]:
        """IPs of the pods of ``namespace`` that any of ``selectors`` selects."""
        found = self._isolated.get((direction, namespace))
        if found is not None and found[0] == selectors:
            return found[1]
        members = frozenset().union(*(self.selected(namespace, s) for s in selectors))
        self._isolated[(direction, namespace)] = (selectors, members)
        return members

    def isolated_spec(self, ref: SetRef, parts: tuple[frozenset[str], ...]) -> SetSpec:
        """The ``isolated:<direction>`` set: the union of ``parts`` (same object while unchanged)."""
        found = self._isolated_specs.get(ref.name)
        if found is None or found[0] != parts:
            found = (parts, SetSpec(ref.name, ref.kind, ref.meaning, frozenset().union(*parts)))
            self._isolated_specs[ref.name] = found
        return found[1]

    def spec(self, ref: SetRef) -> SetSpec:
        """The set ``ref`` stands for, with its members (same object while they are unchanged)."""
        found = self._specs.get(ref)
        if found is None:
            source = ref.recipe[0]
            if source == "static":
                members = frozenset(ref.recipe[1:])
            elif ref.kind == LIST_SET:
                members = frozenset(child.name for child in self.children(ref))
            else:
                members = frozenset(self.tables.get(ref.recipe, ()))
            found = self._previous.pop(ref, None)
            if found is None or found.members != members:
                found = SetSpec(ref.name, ref.kind, ref.meaning, members)
            self._specs[ref] = found
        return found

    def children(self, ref: SetRef) -> tuple[SetRef, ...]:
        """The sets a list set holds."""
        found = self._children.get(ref)
        if found is None:
            source = ref.recipe[0]
            if source == "podlist":
                found = tuple(_pod_kv_ref(ref.recipe[1], v) for v in ref.recipe[2:])
            elif source == "all":
                found = tuple(_ns_ref(n) for n in self.namespaces)
            else:
                requirement: Requirement = ref.recipe[1]
                labels = self.cluster.namespace_labels
                found = tuple(_ns_ref(n) for n in self.namespaces if requirement.matches(labels(n)))
            self._children[ref] = found
        return found

    def rendering(self, policy: NetworkPolicy, marks: Marks) -> PolicyRendering:
        """``render_policy(policy, marks)``, computed once per policy version."""
        found = self._renderings.get(policy.key)
        if found is None or (found.policy is not policy and found.policy != policy) or found.marks != marks:
            found = self._renderings[policy.key] = render_policy(policy, marks)
        return found

    def chain(self, name: str, rules: tuple[RuleSpec, ...]) -> ChainSpec:
        """A base chain; the same object as last time when its rules are unchanged."""
        found = self._chains.get(name)
        if found is None or found.rules != rules:
            found = self._chains[name] = ChainSpec(name, rules)
        return found

    def index_rule(self, spec: SetSpec) -> RuleSpec:
        """The ``AZURE-NPM-SETS`` rule recording what a set means."""
        found = self._index_rules.get(spec.name)
        if found is None:
            direction = "src,src" if spec.kind == HASH_IP_PORT else "src"
            found = RuleSpec(
                names.CHAIN_SETS,
                ("-m", "set", "--match-set", spec.name, direction, "-j", "RETURN"),
                names.comment(f"set {spec.meaning}"),
            )
            self._index_rules[spec.name] = found
        return found


# ---- policy rendering (pure: the policy and the marks only) ---------------------------------
class _Refs:
    """The sets a policy's rules use, and what it cannot enforce."""

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
            if r.operator == "In" and len(r.values) == 1:
                out.append((False, self.use(_pod_kv_ref(r.key, r.values[0]))))
            elif r.operator == "In":
                vals = sorted(set(r.values))
                meaning = f"podlabel:{r.key} in ({','.join(vals)})"
                out.append((False, self.use(_ref(meaning, LIST_SET, "podlist", r.key, *vals))))
            elif r.operator == "NotIn":
                out.extend((True, self.use(_pod_kv_ref(r.key, v))) for v in sorted(set(r.values)))
            else:
                key_set = self.use(_ref(f"podlabel:{r.key}", HASH_IP, "podkey", r.key))
                out.append((r.operator == "DoesNotExist", key_set))
        return out

    def ns_requirements(self, sel: LabelSelector) -> list[tuple[bool, str]]:
        """(negated, set) matches for a namespaceSelector, always scoped to pod IPs."""
        out: list[tuple[bool, str]] = []
        for r in sel.requirements:
            if r.operator == "In" and len(r.values) == 1:
                ref = _ns_list_ref(f"nslabel:{r.key}={r.values[0]}", Requirement(r.key, "In", (r.values[0],)))
                out.append((False, self.use(ref)))
            elif r.operator == "In":
                vals = tuple(sorted(set(r.values)))
                ref = _ns_list_ref(f"nslabel:{r.key} in ({','.join(vals)})", Requirement(r.key, "In", vals))
                out.append((False, self.use(ref)))
            elif r.operator == "NotIn":
                for v in sorted(set(r.values)):
                    ref = _ns_list_ref(f"nslabel:{r.key}={v}", Requirement(r.key, "In", (v,)))
                    out.append((True, self.use(ref)))
            else:
                ref = _ns_list_ref(f"nslabel:{r.key}", Requirement(r.key, "Exists"))
                out.append((r.operator == "DoesNotExist", self.use(ref)))
        if not any(not neg for neg, _ in out):
            # Only negative (or no) requirements: still only pods, never other addresses.
            out.insert(0, (False, self.use(ALL_NAMESPACES)))
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
            matches = [(False, self.use(_ns_ref(policy.namespace)))]
        else:
            matches = self.ns_requirements(peer.namespace_selector)
        if peer.pod_selector is not None:
            matches += self.pod_requirements(peer.pod_selector)
        return matches

    def cidr(self, network: ipaddress.IPv4Network, excepts: Sequence[ipaddress.IPv4Network]) -> str:
        meaning = f"cidr:{network}" + (f" except {','.join(str(e) for e in excepts)}" if excepts else "")
        members = {_net_entry(n) for n in _split_zero(network)}
        members |= {f"{_net_entry(e)} nomatch" for e in excepts for e in _split_zero(e)}
        return self.use(_ref(meaning, HASH_NET, "static", *sorted(members)))

    def named_port(self, port_name: str, protocol: str) -> str:
        return self.use(_ref(f"namedport:{port_name}/{protocol}", HASH_IP_PORT, "named", port_name, protocol))


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


def port_match(refs: _Refs, port: PolicyPort) -> list[str]:
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


def _policy_chain(refs: _Refs, policy: NetworkPolicy, direction: str) -> ChainSpec | None:
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
                matches = refs.peer(policy, peer, f"spec.{where}")
                if matches is None:
                    continue  # fail closed: this peer allows nothing
                peer_tokens = set_match(matches, peer_dir)
            for k, port in enumerate(ports):
                port_tokens = [] if port is None else port_match(refs, port)
                peer_label = f"{peer_word}[{j}]" if peer is not None else f"{peer_word}[any]"
                port_label = f"ports[{k}]" if port is not None else "ports[any]"
                text = names.rule_comment(policy.key, f"{direction}[{i}] {peer_label} {port_label}")
                body.append(((*peer_tokens, *port_tokens, "-j", allow), text))
    if not body:
        return None
    identity = "\n".join([policy.key, direction] + [" ".join(t) + " #" + c for t, c in body])
    name = names.policy_chain_name(direction, identity)
    return ChainSpec(name, tuple(RuleSpec(name, t, c, policy.key) for t, c in body), policy.key)


@dataclass(frozen=True, eq=False)
class PolicyRendering:
    """A policy's chains and namespace-chain jumps per direction, its index marker, and the
    sets its rules use. Depends on the policy and the marks only."""

    policy: NetworkPolicy
    marks: Marks
    parts: tuple[tuple[str, ChainSpec | None, RuleSpec | None], ...]
    marker: RuleSpec
    sets: tuple[SetRef, ...]
    unenforceable: tuple[tuple[str, str], ...]


def render_policy(policy: NetworkPolicy, marks: Marks) -> PolicyRendering:
    """Render one policy into its chains and jumps (pure)."""
    refs = _Refs()
    parts: list[tuple[str, ChainSpec | None, RuleSpec | None]] = []
    directions = [d for d, on in (("ingress", policy.affects_ingress), ("egress", policy.affects_egress)) if on]
    for direction in directions:
        side = "dst" if direction == "ingress" else "src"
        mark = marks.ingress if direction == "ingress" else marks.egress
        chain = _policy_chain(refs, policy, direction)
        jump = None
        if chain is not None:
            # The namespace chain is only entered for pods of the policy's namespace, so the
            # jump needs the pod selector's sets only.
            target = set_match(refs.pod_requirements(policy.pod_selector), side)
            jump = RuleSpec(
                names.namespace_chain_name(direction, policy.namespace),
                ("-m", "mark", "!", "--mark", f"{mark:#x}/{mark:#x}", *target, "-j", chain.name),
                names.rule_comment(policy.key, f"{direction} rules"),
                policy.key,
            )
        parts.append((direction, chain, jump))
    marker = RuleSpec(
        names.CHAIN_POLICIES, ("-j", "RETURN"), names.comment(f"policy {policy.key} {','.join(directions)}")
    )
    return PolicyRendering(
        policy, marks, tuple(parts), marker, tuple(dict.fromkeys(refs.used)), tuple(refs.unenforceable)
    )


# ---- assembly ---------------------------------------------------------------------------------
def translate(
    cluster: Cluster, node_name: str = "", marks: Marks | None = None, index: ClusterIndex | None = None
) -> DesiredState:
    """The desired ipsets and chains for ``node_name``.

    Targets are matched against cluster-wide sets, so every node checks both directions
    of a flow it forwards: the verdict is the same on every node, and cross-node traffic
    is enforced at the source node (egress) and the destination node (ingress). ``index``
    (a cache, brought up to date with ``cluster`` here) makes a translation cost what
    changed since the last one. Raises :class:`npm.names.NameCollision` if two meanings
    would share a kernel name.
    """
    del node_name  # every node holds the same rules today; kept for per-node targeting
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
    # direction -> namespace -> jump rules / pod selectors of the policies of that namespace
    ns_jumps: dict[str, dict[str, list[RuleSpec]]] = {"ingress": defaultdict(list), "egress": defaultdict(list)}
    targets: dict[str, dict[str, list[LabelSelector]]] = {"ingress": defaultdict(list), "egress": defaultdict(list)}
    markers: list[RuleSpec] = []
    unenforceable: list[tuple[str, str]] = []
    for policy in sorted(cluster.policies, key=lambda p: p.key):
        rendered = index.rendering(policy, marks)
        for ref in rendered.sets:
            use(ref)
        unenforceable += rendered.unenforceable
        mine: list[str] = []
        for direction, chain, jump in rendered.parts:
            targets[direction][policy.namespace].append(policy.pod_selector)
            jumps = ns_jumps[direction][policy.namespace]  # present even when the policy allows nothing
            if chain is None or jump is None:
                continue
            policy_chains[registry.claim(chain.name, f"{direction} chain of {policy.key}")] = chain
            mine.append(chain.name)
            jumps.append(jump)
        chains_of[policy.key] = tuple(mine)
        markers.append(rendered.marker)
    dispatch, isolated = _dispatch_chains(index, registry, use, marks, ns_jumps, targets)
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
    base_chains = _base_chains(index, marks, dispatch, markers, sets)
    index.keep(chains_of, (c.name for c in base_chains))
    return DesiredState(
        sets=sets,
        base_chains=base_chains,
        policy_chains=policy_chains,
        chains_of_policy=chains_of,
        forward_jump=FORWARD_JUMP,
        unenforceable=tuple(unenforceable),
        policies=len(cluster.policies),
    )


FORWARD_JUMP = RuleSpec("FORWARD", ("-j", names.CHAIN_MAIN), FORWARD_COMMENT)


def _dispatch_chains(
    index: ClusterIndex,
    registry: names.NameRegistry,
    use: Callable[[SetRef], str],
    marks: Marks,
    ns_jumps: Mapping[str, Mapping[str, list[RuleSpec]]],
    targets: Mapping[str, Mapping[str, list[LabelSelector]]],
) -> tuple[dict[str, list[ChainSpec]], dict[str, SetSpec]]:
    """Per direction: the base chain (skip non-isolated pods, go to the namespace's chain,
    drop the rest) followed by one chain per namespace holding its policies' jumps, then
    the verdict; and the ``isolated:<direction>`` sets.

    A policy selects pods of its own namespace only, so a packet for an isolated pod only
    walks the jumps of that namespace's policies; a pod no policy isolates costs one set
    lookup. The final DROP of the base chain is never reached in a converged state (every
    isolated pod is in the set of a namespace with policies); during a change it keeps a
    pod isolated whose namespace chain is not in the kernel yet (see npm/enforcer.py).
    """
    out: dict[str, list[ChainSpec]] = {}
    isolated: dict[str, SetSpec] = {}
    for direction, base in (("ingress", names.CHAIN_INGRESS), ("egress", names.CHAIN_EGRESS)):
        side = "dst" if direction == "ingress" else "src"
        mark = marks.ingress if direction == "ingress" else marks.egress
        chains: list[ChainSpec] = []
        base_rules: list[RuleSpec] = []
        namespaces = sorted(ns_jumps[direction])
        if namespaces:
            ref = _ref(f"isolated:{direction}", HASH_IP, "isolated", direction)
            parts = tuple(index.isolated(direction, ns, tuple(targets[direction][ns])) for ns in namespaces)
            isolated[use(ref)] = index.isolated_spec(ref, parts)
            base_rules.append(
                RuleSpec(
                    base,
                    ("-m", "set", "!", "--match-set", ref.name, side, "-j", "RETURN"),
                    f"azure-npm: not isolated for {direction}",
                )
            )
        for ns in namespaces:
            chain = registry.claim(names.namespace_chain_name(direction, ns), f"{direction} namespace {ns}")
            base_rules.append(
                RuleSpec(
                    base,
                    ("-m", "set", "--match-set", use(_ns_ref(ns)), side, "-g", chain),
                    names.comment(f"namespace {ns}"),
                )
            )
            rules = (
                *ns_jumps[direction][ns],
                RuleSpec(
                    chain,
                    ("-m", "mark", "--mark", f"{mark:#x}/{mark:#x}", "-j", "RETURN"),
                    names.comment(f"namespace {ns}: allowed by an {direction} rule"),
                ),
                RuleSpec(chain, ("-j", "DROP"), names.comment(f"namespace {ns}: isolated for {direction}")),
            )
            chains.append(index.chain(chain, rules))
        if namespaces:
            base_rules.append(
                RuleSpec(base, ("-j", "DROP"), f"azure-npm: isolated for {direction}, namespace not dispatched")
            )
        out[direction] = [index.chain(base, tuple(base_rules)), *chains]
    return out, isolated


def _base_chains(
    index: ClusterIndex,
    marks: Marks,
    dispatch: Mapping[str, list[ChainSpec]],
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
    chains = [index.chain(main, main_rules), *dispatch["ingress"], *dispatch["egress"]]
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
