"""Load Namespaces, Pods, Nodes, NetworkPolicies, workloads and ClusterNetworkPolicies from
files, stdin or a live cluster.

Accepts YAML (multi-document), JSON, ``kind: List`` (what ``kubectl get -A -o yaml``
prints) and directories (recursively). Other kinds are skipped and counted. One bad
object never hides the others: each gets a located error and the rest are loaded.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from kube.documents import flatten, read_documents
from kube.errors import ObjectError
from kube.model import (
    CNP_API_VERSION,
    NAMESPACE_NAME_LABEL,
    WORKLOAD_KINDS,
    Cluster,
    ClusterNetworkPolicy,
    CNPAction,
    Labels,
    Namespace,
    NetworkPolicy,
    Node,
    Pod,
    Source,
    Workload,
    raw_key,
)
from kube.parse import PARSERS, ParseFailure, object_name

DEFAULT_POD_CIDR = "10.244.0.0/16"  # kind's default pod subnet
DEFAULT_NODE_CIDR = "172.18.0.0/16"  # kind's default node network
TERMINATED_PHASES = ("Succeeded", "Failed")
# The kinds the enforcer's daemon keeps (KINDS), and the ObjectSet table of every kind read.
CNP_KIND = "ClusterNetworkPolicy"
KINDS = ("Namespace", "Pod", "NetworkPolicy", "Node", CNP_KIND)
_TABLES = {
    "Namespace": "namespaces", "Pod": "pods", "NetworkPolicy": "policies", "Node": "nodes",
    CNP_KIND: "cluster_policies", **{kind: "workloads" for kind in WORKLOAD_KINDS},
}
API_VERSIONS = {
    "Namespace": "v1", "Pod": "v1", "NetworkPolicy": "networking.k8s.io/v1", "Node": "v1",
    CNP_KIND: CNP_API_VERSION,
    "Deployment": "apps/v1", "ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1",
    "Job": "batch/v1", "CronJob": "batch/v1", "ReplicationController": "v1",
}


# kubectl's short names and resource names: never a kind, but clearly meant as one.
_SHORT_NAMES = {"ns": "Namespace", "po": "Pod", "no": "Node", "netpol": "NetworkPolicy", "cnp": CNP_KIND}


def near_miss(kind: str) -> str | None:
    """The kind the tools read (or ``List``) that ``kind`` is probably a misspelling of: case,
    plural, a typo, a short name, a group written into the kind."""
    low = kind.rpartition("/")[2].lower() if "/" in kind else kind.lower()
    if low in _SHORT_NAMES:
        return _SHORT_NAMES[low]
    if low == "list" and kind != "List":
        return "List"
    for known in (*KINDS, *WORKLOAD_KINDS, CNP_KIND):
        k = known.lower()
        plurals = {k + "s", k + "es", k[:-1] + "ies"}
        if low == k or low in plurals or _edits(low, k) <= (2 if len(k) >= 8 else 1):
            return known
    return None


def _edits(a: str, b: str) -> int:
    """Levenshtein distance (short strings only)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


@dataclass
class LoadResult:
    """What loading produced: the cluster, every error, skipped kinds and notes."""

    cluster: Cluster
    errors: list[ObjectError] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)  # kinds the tools do not read
    notes: list[str] = field(default_factory=list)
    left_out: Counter[tuple[str, str]] = field(default_factory=Counter)  # (kind, reason) of objects read, not used
    # Kinds loaded into the cluster that the tool reading it does not evaluate yet: counted as
    # ignored, not used. A tool that evaluates ClusterNetworkPolicies sets this to ().
    not_evaluated: tuple[str, ...] = (CNP_KIND,)

    def inputs(self) -> dict[str, Any]:
        """What was used and what was not, and why: the ``inputs`` object of every tool's JSON."""
        c = self.cluster
        used = {
            "Namespace": sum(1 for n in c.namespaces if not n.implicit),
            "Pod": sum(1 for p in c.pods if not p.stand_in),
            "NetworkPolicy": len(c.policies),
            "Node": sum(1 for n in c.nodes if not n.implicit),
        }
        used.update(sorted(Counter(w.kind for w in c.workloads).items()))
        if c.cluster_policies:
            used[CNP_KIND] = len(c.cluster_policies)
        other = "not a kind these tools read"
        ignored = [{"kind": k, "count": n, "reason": other} for k, n in sorted(self.skipped.items())]
        ignored += [{"kind": k, "count": used.pop(k), "reason": "read, but not yet evaluated by this tool"}
                    for k in self.not_evaluated if k in used]
        ignored += [{"kind": k, "count": n, "reason": why} for (k, why), n in sorted(self.left_out.items())]
        invalid = Counter(e.kind or "unreadable document" for e in self.errors)
        return {
            "used": used,
            "implied": {"Namespace": sum(1 for n in c.namespaces if n.implicit),
                        "Node": sum(1 for n in c.nodes if n.implicit)},
            "ignored": ignored,
            "invalid": dict(sorted(invalid.items())),
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        """One line for stderr: counts used per kind, then what was ignored and why."""
        info = self.inputs()
        used = ", ".join(f"{n} {kind}" for kind, n in info["used"].items())
        parts = [f"inputs: used {used}"]
        implied = ", ".join(f"{n} {kind}" for kind, n in info["implied"].items() if n)
        if implied:
            parts.append(f"implied {implied} (named by pods or policies, not in the input)")
        if info["ignored"]:
            parts.append("ignored " + ", ".join(f"{i['count']} {i['kind']} ({i['reason']})" for i in info["ignored"]))
        if info["invalid"]:
            parts.append("invalid " + ", ".join(f"{n} {k}" for k, n in info["invalid"].items()))
        return "; ".join(parts)


@dataclass
class ObjectSet:
    """Objects gathered so far, keyed so that a later copy replaces an earlier one."""

    namespaces: dict[str, Namespace] = field(default_factory=dict)
    pods: dict[str, Pod] = field(default_factory=dict)
    policies: dict[str, NetworkPolicy] = field(default_factory=dict)
    nodes: dict[str, Node] = field(default_factory=dict)
    workloads: dict[str, Workload] = field(default_factory=dict)  # by ns/name[Kind]
    cluster_policies: dict[str, ClusterNetworkPolicy] = field(default_factory=dict)
    errors: list[ObjectError] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    # With ``keep_raw``, the raw document of each kept object, by (kind, key): for tools that
    # pass manifests on (the harness writes them to the nodes) rather than only read them.
    keep_raw: bool = False
    raw: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)

    def add_raw(self, source: Source, raw: Any) -> None:
        """Parse one raw object and keep it, or record its error or its skipped kind."""
        if not isinstance(raw, Mapping):
            self.errors.append(ObjectError(source, "", "", f"expected a Kubernetes object, got {type(raw).__name__}"))
            return
        kind = raw.get("kind")
        if not isinstance(kind, str) or not kind:
            self.errors.append(ObjectError(source, object_name(raw), "kind", "required field is missing"))
            return
        parser = PARSERS.get(kind)
        if parser is None:
            meant = near_miss(kind)
            if meant is not None:  # a typo must not make a policy vanish without a word
                # Attributed to the kind it was meant as, so a source keeps that object's last good version.
                self.errors.append(ObjectError(
                    source, object_name(raw), "kind", f'"{kind}" is not a kind (did you mean "{meant}"?)',
                    meant, raw_key(meant, raw)))
            else:
                self.skipped[kind] += 1
            return
        api = raw.get("apiVersion")
        if api is not None and api != API_VERSIONS[kind]:
            self.errors.append(
                ObjectError(
                    source, object_name(raw), "apiVersion",
                    f"{json.dumps(api, default=str)} is not supported for {kind} ({API_VERSIONS[kind]})",
                    kind, raw_key(kind, raw),
                )
            )
            return
        try:
            obj = parser(raw, source)
        except ParseFailure as failure:
            name, key = object_name(raw), raw_key(kind, raw)
            for err in failure.errors:
                self.errors.append(ObjectError(source, name, err.path, err.message, kind, key))
            return
        self.add(obj)
        if isinstance(obj, ClusterNetworkPolicy):
            self.notes.extend(fail_closed_notes(obj))
        if self.keep_raw:
            self.raw[(kind, raw_key(kind, raw))] = raw

    def table(self, kind: str) -> dict[str, Any]:
        """The objects of ``kind`` (one of :data:`KINDS`), by key."""
        return getattr(self, _TABLES[kind])  # type: ignore[no-any-return]

    @classmethod
    def of(cls, tables: Mapping[str, Mapping[str, Any]]) -> ObjectSet:
        """An ObjectSet holding copies of ``tables`` (kind -> key -> object)."""
        objects = cls()
        for kind, table in tables.items():
            objects.table(kind).update(table)
        return objects

    def add(self, obj: Namespace | Pod | NetworkPolicy | Node | Workload | ClusterNetworkPolicy) -> None:
        """Keep a parsed object; a second object with the same identity replaces the first."""
        table = self.table(obj.kind if isinstance(obj, Workload) else type(obj).__name__)
        key = obj.name if isinstance(obj, Namespace | Node) else obj.key
        if key in table:
            self.notes.append(f"{type(obj).__name__} {key} appears twice; {obj.source} replaces {table[key].source}")
        table[key] = obj


def fail_closed_notes(policy: ClusterNetworkPolicy) -> list[str]:
    """One located note per peer of ``policy`` that is not understood, saying what its rule does."""
    notes = []
    for direction, path, rule, peer in policy.unsupported_peers():
        traffic = f"all {direction.word} traffic of the policy's subject"
        if rule.action is CNPAction.ACCEPT:
            effect = "this Accept rule matches no traffic"
        elif rule.action is CNPAction.DENY:
            effect = f"this Deny rule denies {traffic}"
        else:
            effect = f"this Pass rule is treated as denying {traffic}"
        if peer.field == "domainNames" and rule.action is not CNPAction.ACCEPT:
            effect += " (the API allows domainNames only in Accept rules)"
        notes.append(f"{policy.source}: {CNP_KIND} {policy.name}: {path}: not supported: {peer.reason}; "
                     f"fail closed: {effect}")
    return notes


def build_cluster(
    objects: ObjectSet,
    *,
    pod_cidr: str = DEFAULT_POD_CIDR,
    node_cidr: str = DEFAULT_NODE_CIDR,
    allocate_ips: bool = True,
    left_out: Counter[tuple[str, str]] | None = None,
) -> tuple[Cluster, list[str]]:
    """Assemble a Cluster: drop finished pods, add implicit namespaces and nodes, give IPs.

    A node's address is its InternalIP, else the ``hostIP`` its pods report, else the
    ``podIP`` of its hostNetwork pods; hostNetwork pods take their node's address. With
    ``allocate_ips`` (the simulator) a pod without an IP gets a deterministic one from
    ``pod_cidr`` (stable under adding or removing other pods) and a node with no known address
    one from ``node_cidr``, each said in a note. Without it (the enforcer, which never puts an
    address into the kernel that its input did not give), such pods are left out and counted.
    """
    notes: list[str] = []
    pods = [p for p in objects.pods.values() if p.phase not in TERMINATED_PHASES]
    finished = len(objects.pods) - len(pods)
    if finished:
        notes.append(f"ignored {finished} pod(s) in phase Succeeded or Failed")
        if left_out is not None:
            left_out[("Pod", "phase Succeeded or Failed")] += finished

    if objects.workloads:
        pods = _link_workloads(objects.workloads, pods)
        if allocate_ips:  # the enforcer never enforces for pods that do not exist
            nodes_known = sorted(objects.nodes) or sorted({p.node for p in pods if p.node})
            stand_ins = _workload_endpoints(objects.workloads, pods, nodes_known)
            if stand_ins:
                notes.append(f"{len(stand_ins)} workload endpoint(s) without running pods, evaluated through their "
                             "pod templates at made-up addresses (named namespace/name[Kind])")
            pods += stand_ins
    namespaces = dict(objects.namespaces)
    for name in sorted({p.namespace for p in pods} | {p.namespace for p in objects.policies.values()}):
        if name not in namespaces:
            namespaces[name] = Namespace(name, Labels({NAMESPACE_NAME_LABEL: name}), implicit=True)

    nodes = dict(objects.nodes)
    for name in sorted({p.node for p in pods if p.node}):
        nodes.setdefault(name, Node(name, implicit=True))
    nodes.update(_addresses_from_pods(nodes, pods, notes))
    used = {ip for p in pods for ip in p.ips} | {n.ip for n in nodes.values() if n.ip}
    unknown = sorted(n for n in nodes if not nodes[n].ip)
    if allocate_ips:
        for name in unknown:
            ip = allocate_ip(node_cidr, f"node/{name}", used)
            nodes[name] = replace(nodes[name], ip=ip, ip_allocated=True, ip_from="made up")
            notes.append(f"node {name}: no InternalIP, no pod reports its hostIP: made up {ip} from {node_cidr} "
                         "(verdicts for traffic from this node are a guess)")
    elif unknown:
        notes.append(f"{len(unknown)} node(s) with no known address ({', '.join(unknown[:5])}"
                     f"{', ...' if len(unknown) > 5 else ''}): traffic from them is matched by no rule")

    placed: list[Pod] = []
    allocated = 0
    no_ip: list[str] = []
    for pod in sorted(pods, key=lambda p: p.key):
        if pod.host_network and pod.node in nodes and nodes[pod.node].ip:
            node_ip = nodes[pod.node].ip
            if pod.ip != node_ip:
                pod = replace(pod, ip=node_ip, ips=(node_ip,), ip_allocated=nodes[pod.node].ip_allocated)
        elif not pod.ip:
            if not allocate_ips:
                no_ip.append(pod.key)
                continue
            ip = allocate_ip(pod_cidr, pod.key, used)
            pod = replace(pod, ip=ip, ips=(ip,), ip_allocated=True)
            allocated += 1
        placed.append(pod)
    if allocated:
        notes.append(f"{allocated} pod(s) had no IP; made up deterministic addresses from {pod_cidr} "
                     "(verdicts for them hold for whatever address they get)")
    if no_ip:
        if left_out is not None:
            left_out[("Pod", "no IP yet")] += len(no_ip)
        notes.append(f"left out {len(no_ip)} pod(s) without an IP ({', '.join(no_ip[:5])}"
                     f"{', ...' if len(no_ip) > 5 else ''}): no address of theirs is known to match")
    cluster = Cluster(
        namespaces=tuple(namespaces[n] for n in sorted(namespaces)),
        pods=tuple(placed),
        policies=tuple(objects.policies[k] for k in sorted(objects.policies)),
        nodes=tuple(nodes[n] for n in sorted(nodes)),
        workloads=tuple(objects.workloads[k] for k in sorted(objects.workloads)),
        cluster_policies=tuple(objects.cluster_policies[k] for k in sorted(objects.cluster_policies)),
    )
    return cluster, notes


def _link_workloads(workloads: Mapping[str, Workload], pods: list[Pod]) -> list[Pod]:
    """``pods`` with ``workload`` set to the top workload their controllers lead to (a Pod's
    ReplicaSet's Deployment, a Job's CronJob). Where the middle object is not in the input,
    the pod-template-hash naming (``<deployment>-<hash>``, ``<cronjob>-<time>``) leads on."""
    by_id = {(w.kind, w.namespace, w.name): w for w in workloads.values()}
    parent_kind = {"ReplicaSet": "Deployment", "Job": "CronJob"}

    def find(kind: str, namespace: str, name: str) -> Workload | None:
        found = by_id.get((kind, namespace, name))
        if found is None and kind in parent_kind and "-" in name:
            found = by_id.get((parent_kind[kind], namespace, name.rsplit("-", 1)[0]))
        return found

    def top(kind: str, namespace: str, name: str) -> Workload | None:
        found = find(kind, namespace, name)
        for _ in range(4):  # controllers nest at most Pod -> ReplicaSet -> Deployment, Pod -> Job -> CronJob
            above = find(found.owner[0], namespace, found.owner[1]) if found and found.owner else None
            if above is None:
                break
            found = above
        return found

    out = []
    for pod in pods:
        owner = top(pod.owner[0], pod.namespace, pod.owner[1]) if pod.owner else None
        out.append(replace(pod, workload=owner.key) if owner is not None else pod)
    return out


def _workload_endpoints(workloads: Mapping[str, Workload], pods: list[Pod], nodes: list[str]) -> list[Pod]:
    """One stand-in pod per top-level workload that has no running pod (one per known node for a
    DaemonSet), with its pod template's labels, ports and hostNetwork, named ``ns/name[Kind]``."""
    running = {p.workload for p in pods if p.workload}
    ids = {(w.kind, w.namespace, w.name) for w in workloads.values()}
    out: list[Pod] = []
    for key in sorted(workloads):
        w = workloads[key]
        if key in running or (w.owner is not None and (w.owner[0], w.namespace, w.owner[1]) in ids):
            continue  # it has pods, or its controller (loaded too) is the endpoint
        targets = [f"@{n}" for n in nodes] if w.kind == "DaemonSet" and nodes and not w.node else [""]
        for target in targets:
            out.append(Pod(
                namespace=w.namespace,
                name=f"{w.name}[{w.kind}{target}]",
                labels=w.labels,
                node=target[1:] or w.node,
                host_network=w.host_network,
                ports=w.ports,
                workload=w.key,
                source=w.source,
                stand_in=True,
            ))
    return out


def _addresses_from_pods(nodes: Mapping[str, Node], pods: Sequence[Pod], notes: list[str]) -> dict[str, Node]:
    """Nodes without an InternalIP, given the address their pods report: ``status.hostIP``,
    else the ``status.podIP`` of a hostNetwork pod (which is the node's address)."""
    out: dict[str, Node] = {}
    for name, node in sorted(nodes.items()):
        if node.ip:
            continue
        found, how = sorted({p.host_ip for p in pods if p.node == name and p.host_ip}), "a pod's hostIP"
        if not found:
            found = sorted({p.ip for p in pods if p.node == name and p.host_network and p.ip})
            how = "a hostNetwork pod's podIP"
        if not found:
            continue
        if len(found) > 1:
            shown = ", ".join(found[:3])
            notes.append(f"node {name}: its pods report {len(found)} addresses ({shown}); using {found[0]}")
        out[name] = replace(node, ip=found[0], ip_from=how)
    return out


def allocate_ip(cidr: str, key: str, used: set[str]) -> str:
    """A deterministic free host address in ``cidr`` for ``key`` (hashed, then probed)."""
    net = ipaddress.ip_network(cidr, strict=False)
    hosts = net.num_addresses - 2 if net.num_addresses > 2 else net.num_addresses
    start = int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % hosts
    for step in range(hosts):
        candidate = str(net.network_address + 1 + (start + step) % hosts)
        if candidate not in used:
            used.add(candidate)
            return candidate
    raise ValueError(f"no free address left in {cidr}")


def load_paths(
    paths: Sequence[str],
    *,
    pod_cidr: str = DEFAULT_POD_CIDR,
    node_cidr: str = DEFAULT_NODE_CIDR,
    allocate_ips: bool = True,
    stdin: TextIO | None = None,
) -> LoadResult:
    """Load every object under ``paths`` (files, directories, ``-``) into one Cluster."""
    objects = ObjectSet()
    for path in paths:
        add_documents(objects, read_documents(path, stdin))
    return finish(objects, pod_cidr=pod_cidr, node_cidr=node_cidr, allocate_ips=allocate_ips)


def add_documents(objects: ObjectSet, documents: Iterable[tuple[Source, Any] | ObjectError]) -> None:
    """Add read documents (expanding lists) to ``objects``, keeping read errors."""
    for entry in documents:
        if isinstance(entry, ObjectError):
            objects.errors.append(entry)
            continue
        for item in flatten(*entry):
            if isinstance(item, ObjectError):
                objects.errors.append(item)
            else:
                objects.add_raw(*item)


def finish(objects: ObjectSet, **options: Any) -> LoadResult:
    """Build the cluster and gather errors, skipped kinds and notes into a LoadResult."""
    left_out: Counter[tuple[str, str]] = Counter()
    try:
        cluster, notes = build_cluster(objects, left_out=left_out, **options)
    except ValueError as exc:
        objects.errors.append(ObjectError(Source("<options>"), "", "", str(exc)))
        cluster, notes = Cluster(), []
    return LoadResult(cluster, objects.errors, objects.skipped, objects.notes + notes, left_out)


def load_live(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    pod_cidr: str = DEFAULT_POD_CIDR,
    node_cidr: str = DEFAULT_NODE_CIDR,
) -> LoadResult:
    """Load Namespaces, Nodes, Pods, NetworkPolicies and ClusterNetworkPolicies from a live cluster
    (a cluster without the ClusterNetworkPolicy CRD, or not letting us list them, gives a note)."""
    from kubernetes import client, config  # imported here: only live loading needs it

    if kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ:
        config.load_incluster_config()
    else:
        config.load_kube_config(config_file=kubeconfig, context=context)
    api = client.ApiClient()
    core = client.CoreV1Api(api)
    net = client.NetworkingV1Api(api)
    objects = ObjectSet()
    listings = [
        ("Namespace", core.list_namespace),
        ("Node", core.list_node),
        ("Pod", core.list_pod_for_all_namespaces),
        ("NetworkPolicy", net.list_network_policy_for_all_namespaces),
    ]
    for kind, lister in listings:
        _add_listed(objects, kind, lister)
    group, _, version = CNP_API_VERSION.partition("/")
    custom = client.CustomObjectsApi(api)
    try:
        _add_listed(objects, CNP_KIND, lambda **kw: custom.list_cluster_custom_object(
            group, version, "clusternetworkpolicies", **kw))
    except client.ApiException as exc:
        # An optional CRD: a cluster without it (or a reader not allowed it) has no such policies to read.
        if exc.status == 404:
            objects.notes.append(f"no {CNP_KIND} read: the cluster does not serve {CNP_API_VERSION} "
                                 "(its CRD is not installed)")
        elif exc.status == 403:
            objects.notes.append(f"no {CNP_KIND} read: listing clusternetworkpolicies.{group} is forbidden "
                                 "(RBAC); any that exist are not taken into account")
        else:
            raise
    return finish(objects, pod_cidr=pod_cidr, node_cidr=node_cidr)


def _add_listed(objects: ObjectSet, kind: str, lister: Any) -> None:
    """List every object of ``kind`` with ``lister`` (a kubernetes client list call) into ``objects``."""
    # Raw JSON, as npm.daemon.sources.watch reads it: the client's model classes would reject a whole list
    # for one object that lacks a field they require, instead of one located error.
    response = lister(_preload_content=False, _request_timeout=(10, 120))  # never hang
    try:
        items = json.loads(response.data).get("items") or []
    finally:
        response.release_conn()
    for index, raw in enumerate(items):
        if isinstance(raw, dict):
            raw.setdefault("kind", kind)  # list items carry no kind
        objects.add_raw(Source(f"cluster:{kind}", index), raw)
