"""Build the before and after states of a what-if: a snapshot plus applied and deleted objects.

``overlay(paths, apply=..., delete=...)`` loads the snapshot once into an
:class:`kube.load.ObjectSet`, then derives the second state from it in memory: applied
objects replace objects with the same identity (as ``kubectl apply`` would), and
``KIND/NAMESPACE/NAME`` (or ``KIND/NAME`` for cluster-scoped kinds, such as
``clusternetworkpolicy/NAME``) deletes one object. Deleting a Namespace deletes its Pods and
NetworkPolicies too, as the API server does. Both states count ClusterNetworkPolicies as
evaluated (the simulator evaluates them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kube.documents import read_documents
from kube.errors import ObjectError
from kube.load import LoadResult, ObjectSet, add_documents, finish
from kube.model import Cluster, Source

KIND_ALIASES = {
    "networkpolicy": "NetworkPolicy",
    "networkpolicies": "NetworkPolicy",
    "netpol": "NetworkPolicy",
    "np": "NetworkPolicy",
    "pod": "Pod",
    "pods": "Pod",
    "po": "Pod",
    "namespace": "Namespace",
    "namespaces": "Namespace",
    "ns": "Namespace",
    "node": "Node",
    "nodes": "Node",
    "no": "Node",
    "clusternetworkpolicy": "ClusterNetworkPolicy",
    "clusternetworkpolicies": "ClusterNetworkPolicy",
    "cnp": "ClusterNetworkPolicy",
}
NAMESPACED = {"NetworkPolicy", "Pod"}


@dataclass(frozen=True)
class Deletion:
    """One ``--delete`` target."""

    kind: str
    key: str  # ns/name for namespaced kinds, name otherwise

    @classmethod
    def parse(cls, text: str) -> Deletion:
        """Parse ``NetworkPolicy/ns/name``, ``pod/ns/name``, ``ns/name`` (Namespace), ``node/name`` or
        ``clusternetworkpolicy/name``."""
        kind_text, _, rest = text.strip().partition("/")
        kind = KIND_ALIASES.get(kind_text.lower())
        if kind is None:
            raise ValueError(f"{text!r}: unknown kind {kind_text!r} (NetworkPolicy, Pod, Namespace, Node or "
                             "ClusterNetworkPolicy)")
        parts = rest.split("/") if rest else []
        want = 2 if kind in NAMESPACED else 1
        if len(parts) != want or not all(parts):
            shape = "KIND/NAMESPACE/NAME" if kind in NAMESPACED else "KIND/NAME"
            raise ValueError(f"{text!r}: a {kind} is named as {shape}")
        return cls(kind, "/".join(parts))


def _load_objects(paths: Sequence[str]) -> ObjectSet:
    objects = ObjectSet()
    for path in paths:
        add_documents(objects, read_documents(path))
    return objects


def delete(objects: ObjectSet, target: Deletion) -> None:
    """Remove ``target`` from ``objects``; a missing object is a located error."""
    table = objects.table(target.kind)
    implicit_ns = target.kind == "Namespace" and (
        any(p.namespace == target.key for p in objects.pods.values())
        or any(p.namespace == target.key for p in objects.policies.values())
    )
    if target.key not in table and not implicit_ns:
        objects.errors.append(
            ObjectError(Source("--delete"), f"{target.kind} {target.key}", "", "no such object in the snapshot")
        )
        return
    table.pop(target.key, None)
    if target.kind == "Namespace":
        for key in [k for k, p in objects.pods.items() if p.namespace == target.key]:
            del objects.pods[key]
        for key in [k for k, p in objects.policies.items() if p.namespace == target.key]:
            del objects.policies[key]


def load_state(paths: Sequence[str]) -> LoadResult:
    """Load one state from files, directories or ``-``."""
    return evaluated(finish(_load_objects(paths)))


def evaluated(result: LoadResult) -> LoadResult:
    """``result``, saying that the simulator evaluates every kind it loaded (ClusterNetworkPolicies too)."""
    result.not_evaluated = ()
    return result


def overlay(
    paths: Sequence[str], *, apply: Sequence[str] = (), deletions: Sequence[Deletion] = (), **options: Any
) -> tuple[LoadResult, LoadResult]:
    """The snapshot under ``paths`` and the same snapshot with ``apply`` and ``deletions``."""
    base = evaluated(finish(_load_objects(paths), **options))
    return base, overlay_cluster(base.cluster, apply=apply, deletions=deletions, **options)


def overlay_cluster(
    cluster: Cluster, *, apply: Sequence[str] = (), deletions: Sequence[Deletion] = (), **options: Any
) -> LoadResult:
    """``cluster`` with the objects under ``apply`` applied and ``deletions`` deleted.

    Pods and nodes keep the addresses they have in ``cluster`` (allocated ones included), so
    only what the overlay changes differs; errors name the applied file and object.
    """
    objects = ObjectSet()
    for ns in cluster.namespaces:
        if not ns.implicit:
            objects.namespaces[ns.name] = ns
    objects.pods = {p.key: p for p in cluster.pods}
    objects.policies = {p.key: p for p in cluster.policies}
    objects.nodes = {n.name: n for n in cluster.nodes}
    objects.cluster_policies = {p.name: p for p in cluster.cluster_policies}
    for path in apply:
        add_documents(objects, read_documents(path))
    for target in deletions:
        delete(objects, target)
    return evaluated(finish(objects, **options))


__all__ = ["Deletion", "delete", "evaluated", "load_state", "overlay", "overlay_cluster"]
