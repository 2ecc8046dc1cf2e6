"""The Kubernetes object model shared by the enforcer, the simulator and the harness.

Everything here is immutable and already validated and defaulted the way the API server
does it (see ``kube.parse``), so consumers never re-check syntax or apply defaults.
Evaluation of policy semantics does not live here: the enforcer translates these objects
into ipsets and rules, the simulator evaluates them on its own.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from functools import cached_property
from typing import Any, TypeVar

_T = TypeVar("_T")

PROTOCOLS = ("TCP", "UDP", "SCTP")


class Direction(StrEnum):
    """Ingress or egress: the one spelling of a direction, and what follows from it.

    Its value is the API's spelling (``policyTypes``), so it compares equal to it.
    """

    INGRESS = "Ingress"
    EGRESS = "Egress"

    @property
    def word(self) -> str:
        """``ingress`` / ``egress``: the spec field holding the rules."""
        return self.value.lower()

    @property
    def peer_field(self) -> str:
        """``from`` / ``to``: the field of a rule holding its peers."""
        return "from" if self is Direction.INGRESS else "to"

    @property
    def peer_side(self) -> str:
        """Which end of a connection the peers are: ``src`` for ingress, ``dst`` for egress."""
        return "src" if self is Direction.INGRESS else "dst"

    @property
    def subject_side(self) -> str:
        """Which end of a connection the selected pods are: ``dst`` for ingress, ``src`` for egress."""
        return "dst" if self is Direction.INGRESS else "src"

    def pick(self, ingress: _T, egress: _T) -> _T:
        """``ingress`` or ``egress``, whichever belongs to this direction."""
        return ingress if self is Direction.INGRESS else egress

    def rules(self, policy: NetworkPolicy) -> tuple[Rule, ...]:
        """The policy's rules in this direction."""
        return policy.ingress if self is Direction.INGRESS else policy.egress

    def cnp_rules(self, policy: ClusterNetworkPolicy) -> tuple[CNPRule, ...]:
        """A ClusterNetworkPolicy's rules in this direction, in written (precedence) order."""
        return policy.ingress if self is Direction.INGRESS else policy.egress


INGRESS = Direction.INGRESS
EGRESS = Direction.EGRESS
DIRECTIONS = (INGRESS, EGRESS)
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
DEFAULT_NAMESPACE = "default"
CLUSTER_SCOPED_KINDS = frozenset({"Namespace", "Node", "ClusterNetworkPolicy"})


def object_key(kind: str, namespace: str | None, name: str) -> str:
    """An object's identity within its kind: ``name``, or ``namespace/name`` (``default``
    when a namespaced object names no namespace, as the API server does)."""
    return name if kind in CLUSTER_SCOPED_KINDS else f"{namespace or DEFAULT_NAMESPACE}/{name}"


def raw_key(kind: str, raw: Any) -> str:
    """:func:`object_key` of a raw object (a dict as read), tolerant of malformed metadata."""
    meta = raw.get("metadata") if isinstance(raw, Mapping) else None
    meta = meta if isinstance(meta, Mapping) else {}
    name = meta.get("name") if isinstance(meta.get("name"), str) else "<unnamed>"
    namespace = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
    return object_key(kind, namespace, name)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Labels(Mapping[str, str]):
    """An immutable, hashable label map."""

    __slots__ = ("_hash", "_items")

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, str] = dict(sorted((items or {}).items()))
        self._hash = hash(tuple(self._items.items()))

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Labels):
            return self._items == other._items
        if isinstance(other, Mapping):
            return self._items == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Labels({self._items!r})"

    def with_label(self, key: str, value: str) -> Labels:
        """A copy with ``key`` set to ``value``."""
        return Labels({**self._items, key: value})

    def without(self, key: str) -> Labels:
        """A copy without ``key``."""
        return Labels({k: v for k, v in self._items.items() if k != key})


@dataclass(frozen=True)
class Requirement:
    """One selector requirement. ``matchLabels`` entries become ``In`` with one value."""

    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this requirement (Kubernetes label selector rules)."""
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            # A missing key satisfies NotIn; several values are an AND of exclusions.
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        raise ValueError(f"unknown operator {self.operator!r}")

    @property
    def is_negative(self) -> bool:
        """True for requirements satisfied by objects that lack the key."""
        return self.operator in ("NotIn", "DoesNotExist")


@dataclass(frozen=True)
class LabelSelector:
    """A label selector. The empty selector (no requirements) matches everything."""

    match_labels: Labels = field(default_factory=Labels)
    match_expressions: tuple[Requirement, ...] = ()

    @cached_property
    def requirements(self) -> tuple[Requirement, ...]:
        """All requirements: matchLabels as single-value ``In``, then matchExpressions."""
        return tuple(Requirement(k, "In", (v,)) for k, v in self.match_labels.items()) + tuple(
            self.match_expressions
        )

    @property
    def is_empty(self) -> bool:
        """An empty selector selects every object in its scope."""
        return not self.match_labels and not self.match_expressions

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether an object with ``labels`` is selected (all requirements must hold)."""
        return all(r.matches(labels) for r in self.requirements)

    def describe(self) -> str:
        """A kubectl-like rendering, e.g. ``app=web,tier notin (a,b)``; ``{}`` when empty."""
        if self.is_empty:
            return "{}"
        parts = []
        for r in self.requirements:
            if r.operator == "In" and len(r.values) == 1:
                parts.append(f"{r.key}={r.values[0]}")
            elif r.operator in ("In", "NotIn"):
                parts.append(f"{r.key} {r.operator.lower()} ({','.join(r.values)})")
            elif r.operator == "Exists":
                parts.append(r.key)
            else:
                parts.append(f"!{r.key}")
        return ",".join(parts)


@dataclass(frozen=True)
class IPBlock:
    """An ipBlock peer: ``cidr`` minus every ``except`` range (each inside ``cidr``)."""

    cidr: str
    except_: tuple[str, ...] = ()

    @cached_property
    def network(self) -> IPNetwork:
        """The ``cidr`` as a network (host bits are masked, as the API server accepts them)."""
        return ipaddress.ip_network(self.cidr, strict=False)

    @cached_property
    def except_networks(self) -> tuple[IPNetwork, ...]:
        """The ``except`` ranges as networks."""
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.except_)

    def contains(self, ip: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether ``ip`` is in the cidr and in none of the except ranges."""
        addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
        if addr.version != self.network.version or addr not in self.network:
            return False
        return not any(addr in n for n in self.except_networks if n.version == addr.version)


@dataclass(frozen=True)
class Peer:
    """One entry of ``from``/``to``.

    Either ``ip_block`` is set, or at least one of the selectors is. A ``None`` selector
    means the field was missing: a missing namespaceSelector means the policy's own
    namespace, a missing podSelector (with a namespaceSelector) means all pods of the
    selected namespaces.
    """

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True)
class PolicyPort:
    """One entry of ``ports``: a protocol with a number, a range, a name, or no port (all)."""

    protocol: str = "TCP"
    port: int | str | None = None
    end_port: int | None = None

    @property
    def is_named(self) -> bool:
        return isinstance(self.port, str)

    def describe(self) -> str:
        """``80/TCP``, ``80-90/TCP``, ``http/TCP`` or ``*/UDP``."""
        if self.port is None:
            return f"*/{self.protocol}"
        if self.end_port is not None:
            return f"{self.port}-{self.end_port}/{self.protocol}"
        return f"{self.port}/{self.protocol}"


@dataclass(frozen=True)
class Rule:
    """One ingress or egress rule.

    Empty ``peers`` means the rule has no ``from``/``to`` (or an empty list): every
    source/destination. Empty ``ports`` means every port and protocol.
    """

    peers: tuple[Peer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True)
class Source:
    """Where an object came from, for error messages and attribution."""

    file: str = "<memory>"
    document: int | None = None
    line: int | None = None  # 1-based line where the object starts (YAML; JSON only for a whole-file object)

    def __str__(self) -> str:
        return self.file if self.document is None else f"{self.file}[{self.document}]"


NO_SOURCE = Source()


@dataclass(frozen=True)
class NetworkPolicy:
    """A validated, defaulted networking.k8s.io/v1 NetworkPolicy."""

    namespace: str
    name: str
    pod_selector: LabelSelector
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()
    policy_types: tuple[Direction, ...] = (INGRESS,)
    uid: str = ""
    resource_version: str = ""
    source: Source = field(default=NO_SOURCE, compare=False)
    # metadata.annotations, kept for tools that read their own (npm-sim.io/ignore); never policy
    annotations: Labels = field(default_factory=Labels, compare=False)

    @property
    def key(self) -> str:
        return object_key(type(self).__name__, self.namespace, self.name)

    @property
    def affects_ingress(self) -> bool:
        return INGRESS in self.policy_types

    @property
    def affects_egress(self) -> bool:
        return EGRESS in self.policy_types


@dataclass(frozen=True)
class ContainerPort:
    """A port a pod's container declares."""

    port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True)
class Pod:
    """A pod as policy sees it. ``ip`` is always set after loading (allocated if absent)."""

    namespace: str
    name: str
    labels: Labels = field(default_factory=Labels)
    ip: str = ""
    ips: tuple[str, ...] = ()
    node: str = ""
    host_network: bool = False
    phase: str = "Running"
    ports: tuple[ContainerPort, ...] = ()
    ip_allocated: bool = False
    uid: str = ""
    host_ip: str = ""  # status.hostIP: the address of the node it runs on, as the kubelet reports it
    owner: tuple[str, str] | None = None  # (kind, name) of its controller, e.g. ("ReplicaSet", "web-5d8f7")
    workload: str = ""  # the workload it belongs to (``ns/name[Kind]``), or stands for when it has no pods
    stand_in: bool = False  # not a running pod: a workload's pod template, for the simulator
    source: Source = field(default=NO_SOURCE, compare=False)

    @property
    def key(self) -> str:
        return object_key(type(self).__name__, self.namespace, self.name)

    def named_port(self, name: str, protocol: str) -> int | None:
        """The number this pod serves ``name`` on with ``protocol``, or None."""
        for p in self.ports:
            if p.name == name and p.protocol == protocol:
                return p.port
        return None


@dataclass(frozen=True)
class Namespace:
    """A namespace; ``labels`` include the API server's ``kubernetes.io/metadata.name``."""

    name: str
    labels: Labels = field(default_factory=Labels)
    implicit: bool = False  # created because a pod or policy named it, not loaded
    source: Source = field(default=NO_SOURCE, compare=False)
    annotations: Labels = field(default_factory=Labels, compare=False)  # see NetworkPolicy.annotations


@dataclass(frozen=True)
class Node:
    """A node: its name and the address hostNetwork pods and node traffic come from."""

    name: str
    ip: str = ""
    ip_allocated: bool = False  # made up by the simulator: no input said where the node is
    source: Source = field(default=NO_SOURCE, compare=False)
    ip_from: str = ""  # where the address came from: InternalIP, a pod's hostIP, a hostNetwork pod's podIP
    labels: Labels = field(default_factory=Labels)  # what a ClusterNetworkPolicy ``nodes`` peer selects on
    implicit: bool = field(default=False, compare=False)  # named by a pod's nodeName, not loaded


WORKLOAD_KINDS = ("Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicationController")


@dataclass(frozen=True)
class Workload:
    """A controller of pods, by its pod template: what its pods will look like to policy."""

    kind: str
    namespace: str
    name: str
    labels: Labels = field(default_factory=Labels)
    ports: tuple[ContainerPort, ...] = ()
    host_network: bool = False
    owner: tuple[str, str] | None = None  # its own controller (a ReplicaSet's Deployment, a Job's CronJob)
    node: str = ""  # a template pinned to a node (spec.nodeName), rarely
    source: Source = field(default=NO_SOURCE, compare=False)

    @property
    def key(self) -> str:
        """``ns/name[Kind]``: how a workload is named as an endpoint."""
        return f"{self.namespace}/{self.name}[{self.kind}]"


CNP_API_VERSION = "policy.networking.k8s.io/v1alpha2"


class CNPTier(StrEnum):
    """``spec.tier``: Admin is evaluated before NetworkPolicy, Baseline after it."""

    ADMIN = "Admin"
    BASELINE = "Baseline"


class CNPAction(StrEnum):
    """A ClusterNetworkPolicy rule's ``action``."""

    ACCEPT = "Accept"
    DENY = "Deny"
    PASS = "Pass"


@dataclass(frozen=True)
class CNPPods:
    """Pods chosen by their namespace's labels AND their own labels.

    The policy's subject and the ``namespaces`` and ``pods`` peers are all this: the
    ``namespaces`` form is ``pods`` with an empty ``pod_selector`` (every pod of the selected
    namespaces); ``written_as`` keeps which form the manifest used, for messages only.
    Host-network pods are never chosen (the API says so for subjects and for both peers).
    """

    namespace_selector: LabelSelector = field(default_factory=LabelSelector)
    pod_selector: LabelSelector = field(default_factory=LabelSelector)
    written_as: str = "pods"  # "namespaces" or "pods"

    def describe(self) -> str:
        """``namespaces {app=x}`` or ``pods {ns-sel} / {pod-sel}``."""
        if self.written_as == "namespaces":
            return f"namespaces {{{self.namespace_selector.describe()}}}"
        return f"pods {{{self.namespace_selector.describe()}}} / {{{self.pod_selector.describe()}}}"


@dataclass(frozen=True)
class CNPNetworks:
    """An egress ``networks`` peer: addresses in any of the CIDRs (pod addresses included)."""

    networks: tuple[IPNetwork, ...]  # host bits masked, in written order

    def describe(self) -> str:
        return "networks " + ",".join(str(n) for n in self.networks)


@dataclass(frozen=True)
class CNPNodes:
    """An egress ``nodes`` peer (experimental): the addresses of the nodes the selector picks."""

    node_selector: LabelSelector

    def describe(self) -> str:
        return f"nodes {{{self.node_selector.describe()}}}"


@dataclass(frozen=True)
class CNPUnsupportedPeer:
    """A peer this implementation does not understand: ``domainNames`` (it needs DNS
    interception), or a single field of a newer API version.

    Its rule must fail closed, as the API defines it for the whole rule: an Accept rule
    matches no traffic; a Deny or a Pass rule is treated as a "Deny all" rule (every
    connection of its direction to or from the subject is denied).
    """

    field: str  # the peer's field as written, e.g. "domainNames"
    reason: str  # why it is not understood, for messages

    def describe(self) -> str:
        return f"{self.field} (not supported: {self.reason})"


CNPPeer = CNPPods | CNPNetworks | CNPNodes | CNPUnsupportedPeer


@dataclass(frozen=True)
class CNPPort:
    """One entry of a rule's ``protocols``: a protocol with one port or an inclusive range (the
    CRD requires a ``destinationPort``); or a named port (``destinationNamedPort``), which has no
    protocol of its own: it is the port (and protocol) the destination pod declares by that name."""

    protocol: str | None = None  # TCP, UDP or SCTP; None exactly for a named port
    port: int | None = None  # set for a protocol entry; None exactly for a named port
    end_port: int | None = None  # the range's inclusive end, always > port
    named_port: str | None = None

    @property
    def is_named(self) -> bool:
        return self.named_port is not None

    def describe(self) -> str:
        """``80/TCP``, ``80-90/TCP``, ``*/UDP`` or ``named:http``."""
        if self.named_port is not None:
            return f"named:{self.named_port}"
        if self.port is None:
            return f"*/{self.protocol}"
        if self.end_port is not None:
            return f"{self.port}-{self.end_port}/{self.protocol}"
        return f"{self.port}/{self.protocol}"


@dataclass(frozen=True)
class CNPRule:
    """One ingress or egress rule of a ClusterNetworkPolicy.

    ``peers`` is never empty (the API requires one); the rule applies when any peer matches.
    Empty ``ports`` means every protocol and port.
    """

    action: CNPAction
    peers: tuple[CNPPeer, ...]
    ports: tuple[CNPPort, ...] = ()
    name: str = ""

    @property
    def fails_closed(self) -> bool:
        """Whether a peer is not understood, so the rule fails closed (see CNPUnsupportedPeer)."""
        return any(isinstance(p, CNPUnsupportedPeer) for p in self.peers)


@dataclass(frozen=True)
class ClusterNetworkPolicy:
    """A validated policy.networking.k8s.io/v1alpha2 ClusterNetworkPolicy (cluster-scoped).

    Rules are in written order, which is their precedence within the policy; across
    policies of a tier, lower ``priority`` goes first (equal priorities: the API leaves the
    order to the implementation). An empty ``ingress``/``egress`` leaves that direction alone.
    """

    name: str
    tier: CNPTier
    priority: int  # 0..1000
    subject: CNPPods
    ingress: tuple[CNPRule, ...] = ()
    egress: tuple[CNPRule, ...] = ()
    uid: str = ""
    resource_version: str = ""
    source: Source = field(default=NO_SOURCE, compare=False)

    @property
    def key(self) -> str:
        return object_key(type(self).__name__, None, self.name)

    def unsupported_peers(self) -> Iterator[tuple[Direction, str, CNPRule, CNPUnsupportedPeer]]:
        """``(direction, field path, rule, peer)`` of every peer not understood, e.g.
        ``(EGRESS, "spec.egress[0].to[1].domainNames", rule, peer)``."""
        for direction in DIRECTIONS:
            for i, rule in enumerate(direction.cnp_rules(self)):
                for j, peer in enumerate(rule.peers):
                    if isinstance(peer, CNPUnsupportedPeer):
                        path = f"spec.{direction.word}[{i}].{direction.peer_field}[{j}].{peer.field}"
                        yield direction, path, rule, peer


@dataclass(frozen=True)
class Cluster:
    """A snapshot of the objects policy depends on."""

    namespaces: tuple[Namespace, ...] = ()
    pods: tuple[Pod, ...] = ()
    policies: tuple[NetworkPolicy, ...] = ()
    nodes: tuple[Node, ...] = ()
    workloads: tuple[Workload, ...] = ()
    cluster_policies: tuple[ClusterNetworkPolicy, ...] = ()  # by name; tier and priority order is the reader's

    @cached_property
    def node_by_name(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    @cached_property
    def namespace_by_name(self) -> dict[str, Namespace]:
        return {n.name: n for n in self.namespaces}

    @cached_property
    def pod_by_key(self) -> dict[str, Pod]:
        return {p.key: p for p in self.pods}

    @cached_property
    def policy_by_key(self) -> dict[str, NetworkPolicy]:
        return {p.key: p for p in self.policies}

    @cached_property
    def cluster_policy_by_name(self) -> dict[str, ClusterNetworkPolicy]:
        return {p.name: p for p in self.cluster_policies}

    def namespace_labels(self, name: str) -> Labels:
        """Labels of namespace ``name``; an unknown namespace has only its name label."""
        ns = self.namespace_by_name.get(name)
        return ns.labels if ns else Labels({NAMESPACE_NAME_LABEL: name})


@dataclass(frozen=True)
class PortSpec:
    """A concrete port to probe or query, e.g. from ``--port 80/TCP``."""

    port: int
    protocol: str = "TCP"

    def __str__(self) -> str:
        return f"{self.port}/{self.protocol}"

    @classmethod
    def parse(cls, text: str) -> PortSpec:
        """Parse ``80``, ``80/TCP`` or ``53/udp``; raises ValueError with a clear message."""
        number, _, proto = text.strip().partition("/")
        proto = (proto or "TCP").upper()
        if proto not in PROTOCOLS:
            raise ValueError(f"{text!r}: protocol must be one of {', '.join(PROTOCOLS)}")
        if not number.isdigit() or not 1 <= int(number) <= 65535:
            raise ValueError(f"{text!r}: port must be a number from 1 to 65535")
        return cls(int(number), proto)
