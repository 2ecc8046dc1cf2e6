"""The cluster as member tables for translation, and the caches of what is derived from them."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from kube.model import Cluster, Direction, LabelSelector, Namespace, Node, Pod, Requirement
from npm.dataplane import names
from npm.dataplane.types import (
    HASH_IP_PORT,
    LIST_RECIPES_OF_NAMESPACES,
    LIST_SET,
    ChainSpec,
    PolicyRendering,
    RuleSpec,
    SetRef,
    SetSpec,
    namespace_ref,
    tagged,
)


def _ipv4(ip: str) -> bool:
    # Addresses were validated by the loader: anything without a colon is IPv4.
    return bool(ip) and ":" not in ip


def pod_ips(pod: Pod) -> list[str]:
    """IPv4 addresses of a pod that may be a set member (never hostNetwork pods)."""
    if pod.host_network:
        return []
    ips = pod.ips or ((pod.ip,) if pod.ip else ())
    return sorted({ip for ip in ips if _ipv4(ip)})



def node_ips(nodes: Sequence[Node], selector: LabelSelector) -> frozenset[str]:
    """IPv4 addresses of the nodes ``selector`` picks by their labels (a ClusterNetworkPolicy
    ``nodes`` peer). Only addresses the input gave: a made-up one is never a member."""
    return frozenset(n.ip for n in nodes if _ipv4(n.ip) and not n.ip_allocated and selector.matches(n.labels))


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
        self._selections: dict[tuple[str, str], tuple[tuple[LabelSelector, ...], tuple[frozenset[str], ...]]] = {}
        self.renderings: dict[str, PolicyRendering] = {}  # by policy key; filled by translate
        self.generation = 0  # bumped whenever pods or namespaces change what a set may hold
        self.nodes: tuple[Node, ...] = ()  # for ClusterNetworkPolicy ``nodes`` peers
        self.cnp_renderings: dict[str, Any] = {}  # by CNP key; filled by npm.dataplane.translate_cnp
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
            self.generation += 1
            self.namespaces = namespaces
            self.cluster = cluster  # for namespace labels
            self._specs = {r: s for r, s in self._specs.items() if r.recipe[0] not in LIST_RECIPES_OF_NAMESPACES}
            self._children = {}  # every list left is a list of namespace sets
        if dirty:
            self.generation += 1
            # A "podin" set draws on the "podlabel" tables of its key.
            keys = {r[1] for r in dirty if r[0] == "podlabel"}

            def stale(ref: SetRef) -> bool:
                return ref.recipe in dirty or (ref.recipe[0] == "podin" and ref.recipe[1] in keys)

            # Kept aside: a set whose pods changed but whose members did not stays the same object.
            self._previous = {r: s for r, s in self._specs.items() if stale(r)}
            self._specs = {r: s for r, s in self._specs.items() if not stale(r)}
        if dirty_ns:
            self._isolated = {k: v for k, v in self._isolated.items() if k[1] not in dirty_ns}
            self._selections = {k: v for k, v in self._selections.items() if k[1] not in dirty_ns}
        if cluster.nodes != self.nodes:  # ClusterNetworkPolicy ``nodes`` sets
            self.nodes = cluster.nodes
            self.generation += 1
            self._specs = {r: s for r, s in self._specs.items() if r.recipe[0] != "nodes"}

    def _count(self, pod: Pod, sign: int, dirty: set[tuple[Any, ...]], dirty_ns: set[str]) -> None:
        """Add (``sign`` 1) or remove (-1) a pod's contributions to the member tables."""
        ips = pod_ips(pod)
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
        self.renderings = {k: r for k, r in self.renderings.items() if k in wanted}
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

    def isolated(self, direction: Direction, namespace: str, selectors: tuple[LabelSelector, ...]) -> frozenset[str]:
        """IPs of the pods of ``namespace`` that any of ``selectors`` selects."""
        found = self._isolated.get((direction, namespace))
        if found is not None and found[0] == selectors:
            return found[1]
        members = frozenset().union(*(self.selected(namespace, s) for s in selectors))
        self._isolated[(direction, namespace)] = (selectors, members)
        return members

    def selections(
        self, direction: Direction, namespace: str, selectors: tuple[LabelSelector, ...]
    ) -> tuple[frozenset[str], ...]:
        """Per selector, the IPs of the pods of ``namespace`` it selects (kept while they do not change)."""
        found = self._selections.get((direction, namespace))
        if found is not None and found[0] == selectors:
            return found[1]
        members = tuple(frozenset(self.selected(namespace, s)) for s in selectors)
        self._selections[(direction, namespace)] = (selectors, members)
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
            elif source == "podin":
                key = ref.recipe[1]
                members = frozenset().union(*(self.tables.get(("podlabel", key, v), ()) for v in ref.recipe[2:]))
            elif source == "nodes":
                members = node_ips(self.nodes, ref.recipe[1])
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
            if source == "all":
                found = tuple(tagged(namespace_ref(n), ref.tag) for n in self.namespaces)
            else:
                requirement: Requirement = ref.recipe[1]
                labels = self.cluster.namespace_labels
                found = tuple(
                    tagged(namespace_ref(n), ref.tag) for n in self.namespaces if requirement.matches(labels(n))
                )
            self._children[ref] = found
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
