"""The desired state of a scenario's cluster, and how each step's actions change it.

A :class:`State` holds nodes (their labels), namespaces (user labels), pods (model Pods, IP
possibly empty), NetworkPolicies and ClusterNetworkPolicies as raw manifests (what a
backend applies or writes). Policies of either kind may name pod
addresses through placeholders, so that the same scenario runs where IPs are assigned by
the cluster (kind): ``${ip x/b}`` is pod x/b's address and ``${net x/b 4}`` the /4 network
that contains it (upstream's ``makeLargeCIDRForIP``). :func:`render` fills them in with the
addresses a backend actually gave the pods.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from kube.load import CNP_KIND, ObjectSet, build_cluster
from kube.model import NAMESPACE_NAME_LABEL, Cluster, Labels, Namespace, Node, Pod, Source, raw_key
from kube.parse import ParseFailure, parse_cluster_network_policy, parse_network_policy

PLACEHOLDER = re.compile(r"\$\{\s*(ip|net)\s+([^\s/}]+/[^\s}]+?)(?:\s+(\d+))?\s*\}")
# What the kubelet labels every node with (a ClusterNetworkPolicy ``nodes`` peer selects on
# node labels; upstream's conformance tests select ``kubernetes.io/os: linux``).
HOSTNAME_LABEL = "kubernetes.io/hostname"
OS_LABEL = "kubernetes.io/os"


class StateError(ValueError):
    """An action that does not fit the state (unknown pod, duplicate pod, ...)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


@dataclass(frozen=True)
class Action:
    """One change to the cluster. ``kind`` is one of ACTION_KINDS; ``path`` locates it.

    ``policies`` of an ``apply`` are NetworkPolicy and ClusterNetworkPolicy manifests.
    """

    kind: str
    target: str = ""
    policies: tuple[Mapping[str, Any], ...] = ()
    pod: Pod | None = None
    labels: Labels = field(default_factory=Labels)
    remove: tuple[str, ...] = ()
    path: str = ""


ACTION_KINDS = (
    "apply",
    "delete-policy",
    "delete-cluster-policy",
    "delete-pod",
    "delete-namespace",
    "label-pod",
    "label-namespace",
    "add-pod",
    "add-namespace",
)


@dataclass
class State:
    """Namespaces, pods and policies the cluster should hold after the steps so far.

    ``policies`` are NetworkPolicies by ``namespace/name``, ``cluster_policies``
    ClusterNetworkPolicies by name; ``node_labels`` are a scenario's own node labels (the
    kubelet's are added by :meth:`workloads`).
    """

    nodes: tuple[str, ...]
    namespaces: dict[str, Labels] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    policies: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    cluster_policies: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    node_labels: dict[str, Labels] = field(default_factory=dict)

    def copy(self) -> State:
        return State(
            self.nodes,
            dict(self.namespaces),
            dict(self.pods),
            dict(self.policies),
            dict(self.cluster_policies),
            dict(self.node_labels),
        )

    # -- building ------------------------------------------------------------------
    def add_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        self.namespaces[name] = Labels(labels or {})

    def add_pod(self, pod: Pod, path: str = "") -> None:
        """Add a pod, placing it round-robin when it names no node; implicit namespace."""
        if pod.key in self.pods:
            raise StateError(path, f"pod {pod.key} already exists")
        if not pod.node:
            pod = replace(pod, node=self.nodes[len(self.pods) % len(self.nodes)])
        elif pod.node not in self.nodes:
            raise StateError(path, f"node {pod.node!r} is not one of this scenario's nodes ({', '.join(self.nodes)})")
        self.namespaces.setdefault(pod.namespace, Labels())
        self.pods[pod.key] = pod

    def set_policy(self, manifest: Mapping[str, Any]) -> None:
        """Create or replace a NetworkPolicy or a ClusterNetworkPolicy (by its ``kind``)."""
        if manifest.get("kind") == CNP_KIND:
            self.cluster_policies[raw_key(CNP_KIND, manifest)] = manifest
        else:
            self.policies[raw_key("NetworkPolicy", manifest)] = manifest

    def node_labels_of(self, name: str) -> Labels:
        """A node's labels: the kubelet's well-known ones, then the scenario's own."""
        return Labels({**kubelet_labels(name), **self.node_labels.get(name, Labels())})

    # -- actions -------------------------------------------------------------------
    def apply(self, action: Action) -> None:
        """Apply one action in place; raises StateError for unknown targets."""
        kind = action.kind
        if kind == "apply":
            for manifest in action.policies:
                self.set_policy(manifest)
        elif kind == "delete-policy":
            self._require(self.policies, action.target, "NetworkPolicy", action.path)
            del self.policies[action.target]
        elif kind == "delete-cluster-policy":
            self._require(self.cluster_policies, action.target, CNP_KIND, action.path)
            del self.cluster_policies[action.target]
        elif kind == "delete-pod":
            self._require(self.pods, action.target, "pod", action.path)
            del self.pods[action.target]
        elif kind == "delete-namespace":
            self._require(self.namespaces, action.target, "namespace", action.path)
            del self.namespaces[action.target]
            # As in Kubernetes, a namespace takes its pods and policies with it.
            prefix = action.target + "/"
            self.pods = {k: v for k, v in self.pods.items() if not k.startswith(prefix)}
            self.policies = {k: v for k, v in self.policies.items() if not k.startswith(prefix)}
        elif kind == "label-pod":
            self._require(self.pods, action.target, "pod", action.path)
            pod = self.pods[action.target]
            self.pods[action.target] = replace(pod, labels=_relabel(pod.labels, action))
        elif kind == "label-namespace":
            self._require(self.namespaces, action.target, "namespace", action.path)
            self.namespaces[action.target] = _relabel(self.namespaces[action.target], action)
        elif kind == "add-pod":
            assert action.pod is not None
            self.add_pod(action.pod, action.path)
        elif kind == "add-namespace":
            if action.target in self.namespaces:
                raise StateError(action.path, f"namespace {action.target} already exists")
            self.namespaces[action.target] = action.labels
        else:  # pragma: no cover - kinds come from the scenario parser
            raise StateError(action.path, f"unknown action {kind!r}")

    @staticmethod
    def _require(table: Mapping[str, Any], key: str, what: str, path: str) -> None:
        if key not in table:
            known = ", ".join(sorted(table)) or "none"
            raise StateError(path, f"no {what} {key!r} at this point (known: {known})")

    # -- output --------------------------------------------------------------------
    def workloads(self, node_ips: Mapping[str, str] | None = None) -> Cluster:
        """Namespaces, nodes and pods (IPs allocated deterministically), without policies."""
        objects = ObjectSet()
        for name in self.nodes:
            objects.add(Node(name, (node_ips or {}).get(name, ""), labels=self.node_labels_of(name)))
        for name, labels in self.namespaces.items():
            objects.add(Namespace(name, labels.with_label(NAMESPACE_NAME_LABEL, name)))
        for pod in self.pods.values():
            objects.add(pod)
        cluster, _notes = build_cluster(objects)
        return cluster


def kubelet_labels(node: str) -> Labels:
    """The labels the kubelet gives every (Linux) node."""
    return Labels({HOSTNAME_LABEL: node, OS_LABEL: "linux"})


def _relabel(labels: Labels, action: Action) -> Labels:
    out = dict(labels)
    out.update(action.labels)
    for key in action.remove:
        out.pop(key, None)
    return Labels(out)


def render(manifest: Mapping[str, Any], cluster: Cluster) -> dict[str, Any]:
    """A copy of ``manifest`` with ``${ip ns/pod}`` and ``${net ns/pod N}`` filled in."""

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return PLACEHOLDER.sub(lambda m: _placeholder(m, cluster), value)
        if isinstance(value, Mapping):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return fill(copy.deepcopy(dict(manifest)))


def _placeholder(match: re.Match[str], cluster: Cluster) -> str:
    what, key, bits = match.group(1), match.group(2), match.group(3)
    pod = cluster.pod_by_key.get(key)
    if pod is None or not pod.ip:
        raise StateError("", f"{match.group(0)}: no pod {key!r} with an address at this point")
    if what == "ip":
        return pod.ip
    prefix = int(bits) if bits else (32 if ":" not in pod.ip else 128)
    return str(ipaddress.ip_network(f"{pod.ip}/{prefix}", strict=False))


def placeholders(manifest: Mapping[str, Any]) -> list[str]:
    """Pod keys named by placeholders in ``manifest`` (for validation)."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.extend(m.group(2) for m in PLACEHOLDER.finditer(value))
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(manifest)
    return found


def materialize(state: State, workloads: Cluster, source: str = "<scenario>") -> tuple[Cluster, list[dict[str, Any]]]:
    """The full Cluster (workloads plus parsed policies of both kinds) and the rendered manifests
    (NetworkPolicies, then ClusterNetworkPolicies, each sorted by key).

    Raises StateError (placeholders) or ParseFailure-derived StateError (invalid policy).
    """
    manifests = []
    parsed: dict[str, list[Any]] = {"NetworkPolicy": [], CNP_KIND: []}
    tables = (
        ("NetworkPolicy", state.policies, parse_network_policy),
        (CNP_KIND, state.cluster_policies, parse_cluster_network_policy),
    )
    for kind, table, parse in tables:
        for key in sorted(table):
            rendered = render(table[key], workloads)
            try:
                parsed[kind].append(parse(rendered, Source(source)))
            except ParseFailure as failure:
                first = failure.errors[0]
                raise StateError(first.path, f"{kind} {key}: {first.message}") from None
            manifests.append(rendered)
    cluster = replace(workloads, policies=tuple(parsed["NetworkPolicy"]), cluster_policies=tuple(parsed[CNP_KIND]))
    return cluster, manifests


def sequence_keys(pods: Sequence[Pod]) -> list[str]:
    """Pod keys in namespace then name order (the order of truth tables and results)."""
    return sorted((p.key for p in pods), key=lambda k: tuple(k.split("/", 1)))
