"""Scenarios: load, validate (JSON schema, then the object model's own rules) and replay.

A scenario file is YAML or JSON (format: docs/scenarios.md, schema:
``conformance/schema/scenario.schema.json``). Its policies are NetworkPolicies and
ClusterNetworkPolicies (``policy.networking.k8s.io/v1alpha2``). A plain manifest file of
Namespaces, Nodes, Pods, NetworkPolicies and ClusterNetworkPolicies (no scenario keys) is a
one-step scenario named after the file; pods' ``status.podIP`` and ``spec.nodeName`` and
nodes' labels are honoured.

Every problem is an :class:`kube.errors.ObjectError` naming the file, the scenario and the
field path (``steps[1].actions[0].apply.spec.podSelector``); one bad scenario never stops
the others from loading.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from conformance.expect import Expect, ExpectError, parse_expect, peer_matches
from conformance.models import NETWORK_POLICY_API, UPSTREAM, network_policy_api_model, upstream_model
from conformance.state import Action, State, StateError, materialize, placeholders
from kube.documents import MANIFEST_SUFFIXES, read_documents
from kube.errors import ObjectError
from kube.load import CNP_KIND, ObjectSet, add_documents, fail_closed_notes, finish
from kube.model import CNP_API_VERSION, Cluster, Labels, Pod, PortSpec, Source
from kube.parse import ParseFailure, parse_cluster_network_policy, parse_network_policy, parse_pod

SCHEMA_PATH = Path(__file__).with_name("schema") / "scenario.schema.json"
DEFAULT_NODES = 2
MODELS = {UPSTREAM: upstream_model, NETWORK_POLICY_API: network_policy_api_model}
# What a scenario's policies may be: kind -> the apiVersion it must have (the default if left out).
POLICY_KINDS = {"NetworkPolicy": "networking.k8s.io/v1", CNP_KIND: CNP_API_VERSION}


@dataclass(frozen=True)
class Step:
    """Actions, then probes on ``ports`` (empty: each destination's declared ports)."""

    index: int
    name: str = ""
    actions: tuple[Action, ...] = ()
    ports: tuple[PortSpec, ...] = ()
    expect: Expect | None = None


@dataclass(frozen=True)
class Scenario:
    """A validated scenario: the starting state and its steps."""

    name: str
    source: str
    nodes: tuple[str, ...]
    initial: State = field(compare=False)
    steps: tuple[Step, ...]
    description: str = ""
    tags: tuple[str, ...] = ()
    reference: str = ""
    inputs: str = ""  # for a manifest file: what was used and ignored (``LoadResult.summary``)
    # Located notes that are not errors: a ClusterNetworkPolicy peer this implementation does
    # not understand, and what its rule does instead (it fails closed).
    notes: tuple[str, ...] = ()

    def states(self) -> list[State]:
        """The state after each step's actions (validated at load time, so never raises)."""
        out = []
        state = self.initial.copy()
        for step in self.steps:
            for action in step.actions:
                state.apply(action)
            out.append(state.copy())
        return out


@cache
def schema() -> dict[str, Any]:
    """The scenario JSON schema."""
    return json.loads(SCHEMA_PATH.read_text())


def _path(parts: Sequence[Any]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(base: str, more: str) -> str:
    if not more:
        return base
    if not base:
        return more
    return f"{base}{more}" if more.startswith("[") else f"{base}.{more}"


class _Errors:
    """Collects ObjectErrors (and notes, which are not errors) for one scenario document."""

    def __init__(self, source: Source, obj: str) -> None:
        self.source = source
        self.obj = obj
        self.items: list[ObjectError] = []
        self.notes: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(ObjectError(self.source, self.obj, path, message))

    def note(self, message: str) -> None:
        if message not in self.notes:  # a policy applied in several steps is said once
            self.notes.append(message)


def load_scenarios(
    paths: Sequence[str], *, default_nodes: int = DEFAULT_NODES
) -> tuple[list[Scenario], list[ObjectError]]:
    """Load every scenario under ``paths`` (files or directories, recursively, sorted)."""
    scenarios: list[Scenario] = []
    errors: list[ObjectError] = []
    for path in paths:
        for file in _files(path):
            found, errs = load_file(file, default_nodes=default_nodes)
            scenarios.extend(found)
            errors.extend(errs)
    if not scenarios and not errors:
        errors.append(ObjectError(Source(", ".join(paths)), "", "", "no scenario files found (.yaml, .yml, .json)"))
    seen: dict[str, str] = {}
    for sc in scenarios:
        if sc.name in seen:
            errors.append(
                ObjectError(Source(sc.source), f"scenario {sc.name}", "name", f"also used by {seen[sc.name]}")
            )
        seen.setdefault(sc.name, sc.source)
    return scenarios, errors


def _files(path: str) -> list[str]:
    if os.path.isdir(path):
        found = []
        for root, dirs, files in os.walk(path):
            dirs.sort()
            found.extend(os.path.join(root, f) for f in sorted(files) if f.endswith(MANIFEST_SUFFIXES))
        return found
    return [path]


def load_file(path: str, *, default_nodes: int = DEFAULT_NODES) -> tuple[list[Scenario], list[ObjectError]]:
    """Load one file: a scenario document, or a manifest file (a one-step scenario)."""
    documents = list(read_documents(path))
    errors = [d for d in documents if isinstance(d, ObjectError)]
    docs = [d for d in documents if not isinstance(d, ObjectError)]
    if errors:
        return [], errors
    if any(isinstance(raw, Mapping) and "kind" in raw for _src, raw in docs):
        return _manifest_scenario(path, docs, default_nodes)
    if len(docs) != 1:
        return [], [ObjectError(Source(path), "", "", f"holds {len(docs)} documents: one scenario per file")]
    _source, raw = docs[0]
    scenario, errs = parse_scenario(raw, Source(path), default_nodes=default_nodes)
    return ([scenario] if scenario else []), errs


def parse_scenario(
    raw: Any, source: Source, *, default_nodes: int = DEFAULT_NODES
) -> tuple[Scenario | None, list[ObjectError]]:
    """Validate one scenario document; returns the scenario or the errors (never both)."""
    name = raw.get("name") if isinstance(raw, Mapping) and isinstance(raw.get("name"), str) else ""
    errs = _Errors(source, f"scenario {name}" if name else "scenario")
    validator = jsonschema.Draft202012Validator(schema())
    schema_errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.absolute_path))
    for err in schema_errors:
        errs.add(_path(list(err.absolute_path)), _schema_message(err))
    if errs.items:
        return None, errs.items

    nodes = _nodes(raw.get("nodes"), default_nodes)
    state = State(nodes)
    if isinstance(raw.get("nodes"), Mapping):
        state.node_labels = {
            name: _labels(labels or {}, f"nodes.{name}", errs) for name, labels in raw["nodes"].items()
        }
    if raw.get("model"):
        try:
            MODELS[raw["model"]](state)
        except StateError as exc:
            errs.add("model", f"{raw['model']}: {exc.message}")
    for ns, labels in (raw.get("namespaces") or {}).items():
        state.add_namespace(ns, labels)
    for i, entry in enumerate(raw.get("pods") or []):
        pod = _pod(entry, f"pods[{i}]", errs)
        if pod is not None:
            try:
                state.add_pod(pod, f"pods[{i}]")
            except StateError as exc:
                errs.add(exc.path, exc.message)
    for i, manifest in enumerate(raw.get("policies") or []):
        policy = _policy(manifest, f"policies[{i}]", errs)
        if policy is not None:
            state.set_policy(policy)
    if errs.items:
        return None, errs.items

    raw_steps = raw.get("steps") or [{}]
    steps = [_step(i, step, errs) for i, step in enumerate(raw_steps)]
    if errs.items:
        return None, errs.items
    _replay(state, steps, source, errs)  # references and policies are checked against each step's state
    if errs.items:
        return None, errs.items
    scenario = Scenario(
        name=name,
        source=source.file,
        nodes=nodes,
        initial=state,
        steps=tuple(s for s in steps if s is not None),
        description=raw.get("description", ""),
        tags=tuple(raw.get("tags") or ()),
        reference=raw.get("reference", ""),
        notes=tuple(errs.notes),
    )
    return scenario, []


def _schema_message(err: jsonschema.ValidationError) -> str:
    if err.validator == "additionalProperties":
        return f"unknown field ({err.message.split('(')[-1].rstrip(')')})"
    if err.validator == "oneOf" and err.context:
        best = min(err.context, key=lambda e: len(list(e.absolute_path)))
        return best.message
    return err.message


def _nodes(raw: Any, default: int) -> tuple[str, ...]:
    """Node names from a count, a list of names, or a mapping of name to labels."""
    if isinstance(raw, list | Mapping):
        return tuple(raw)
    count = raw if isinstance(raw, int) else default
    return tuple(f"node-{i + 1}" for i in range(count))


_POD_FIELD_MAP = (
    ("metadata.labels", "labels"),
    ("metadata.name", "name"),
    ("metadata.namespace", "namespace"),
    ("status.podIP", "ip"),
    ("spec.hostNetwork", "hostNetwork"),
    ("spec.nodeName", "node"),
    ("spec.containers[0].ports", "ports"),
)


def _pod(entry: Mapping[str, Any], path: str, errs: _Errors) -> Pod | None:
    """A scenario pod entry, validated by the object model's Pod parser."""
    ports = []
    for p in entry.get("ports") or []:
        if isinstance(p, Mapping):
            ports.append(
                {
                    "containerPort": p["port"],
                    "protocol": p.get("protocol", "TCP"),
                    **({"name": p["name"]} if "name" in p else {}),
                }
            )
        else:
            spec = PortSpec.parse(str(p))
            ports.append({"containerPort": spec.port, "protocol": spec.protocol})
    manifest = {
        "kind": "Pod",
        "metadata": {"name": entry["name"], "namespace": entry["namespace"], "labels": entry.get("labels") or {}},
        "spec": {
            "nodeName": entry.get("node", ""),
            "hostNetwork": entry.get("hostNetwork", False),
            "containers": [{"name": "c", "ports": ports}],
        },
        "status": {"podIP": entry.get("ip", "")},
    }
    try:
        return parse_pod(manifest, Source(errs.source.file))
    except ParseFailure as failure:
        for err in failure.errors:
            sub = err.path
            for theirs, ours in _POD_FIELD_MAP:
                if sub.startswith(theirs):
                    sub = ours + sub[len(theirs) :]
                    break
            errs.add(_join(path, sub), err.message)
        return None


def _policy(manifest: Mapping[str, Any], path: str, errs: _Errors) -> dict[str, Any] | None:
    """Default kind/apiVersion and check the manifest with the object model (placeholders aside).

    A NetworkPolicy may leave out ``kind`` and ``apiVersion`` and its namespace (``default``);
    a ClusterNetworkPolicy says ``kind: ClusterNetworkPolicy`` and may leave out ``apiVersion``.
    """
    out = dict(manifest)
    kind = out.setdefault("kind", "NetworkPolicy")
    if kind not in POLICY_KINDS:
        errs.add(_join(path, "kind"), f'"{kind}" is not supported here: only {" and ".join(POLICY_KINDS)} manifests')
        return None
    out.setdefault("apiVersion", POLICY_KINDS[kind])
    if out["apiVersion"] != POLICY_KINDS[kind]:
        errs.add(_join(path, "apiVersion"), f'"{out["apiVersion"]}" is not supported ({POLICY_KINDS[kind]})')
        return None
    meta = out.get("metadata")
    if kind == "NetworkPolicy" and isinstance(meta, Mapping) and not meta.get("namespace"):
        out["metadata"] = {**meta, "namespace": "default"}
    # Placeholders are checked when the step is replayed; here they stand in as a valid address.
    probe = _fill_dummy(out)
    try:
        if kind == CNP_KIND:
            for note in fail_closed_notes(parse_cluster_network_policy(probe, errs.source)):
                where = f"{errs.source}: {errs.obj}: " + (f"{path}: " if path else "")
                errs.note(where + note.removeprefix(f"{errs.source}: "))
        else:
            parse_network_policy(probe, errs.source)
    except ParseFailure as failure:
        for err in failure.errors:
            errs.add(_join(path, err.path), err.message)
        return None
    return out


def _fill_dummy(manifest: Mapping[str, Any]) -> Any:
    """``manifest`` with each placeholder replaced by a stand-in of the right shape: one address
    per pod named, all in 10.0.0.0/24 (so that two pods' /32s stay distinct, as lists of
    networks must be, while wider networks of different pods are one, as pods of a node are),
    and its network of the placeholder's prefix (so except-in-cidr checks hold)."""
    from conformance.state import PLACEHOLDER

    stand_ins: dict[str, str] = {}

    def stand_in(match: re.Match[str]) -> str:
        address = stand_ins.setdefault(match.group(2), f"10.0.0.{len(stand_ins) % 254 + 1}")
        if match.group(1) == "ip":
            return address
        return str(ipaddress.ip_network(f"{address}/{match.group(3) or 32}", strict=False))

    def fill(value: Any) -> Any:
        if isinstance(value, str):
            return PLACEHOLDER.sub(stand_in, value)
        if isinstance(value, Mapping):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    return fill(manifest)


def _step(index: int, raw: Mapping[str, Any], errs: _Errors) -> Step:
    path = f"steps[{index}]"
    actions: list[Action] = []
    for i, entry in enumerate(raw.get("actions") or []):
        apath = f"{path}.actions[{i}]"
        action = _action(entry, apath, errs)
        if action is not None:
            actions.append(action)
    probe = raw.get("probe") or {}
    ports = tuple(PortSpec.parse(p) for p in probe.get("ports") or ())
    expect = None
    if "expect" in probe:
        try:
            expect = parse_expect(probe["expect"])
        except ExpectError as exc:
            errs.add(_join(f"{path}.probe.expect", exc.path), exc.message)
    return Step(index, raw.get("name", ""), tuple(actions), ports, expect)


def _action(entry: Mapping[str, Any], path: str, errs: _Errors) -> Action | None:
    verb, body = next(iter(entry.items()))
    bpath = f"{path}.{verb}"
    if verb == "apply":
        items = body if isinstance(body, list) else [body]
        policies = []
        for i, manifest in enumerate(items):
            policy = _policy(manifest, f"{bpath}[{i}]" if isinstance(body, list) else bpath, errs)
            if policy is not None:
                policies.append(policy)
        return Action("apply", policies=tuple(policies), path=bpath)
    if verb == "delete":
        what, target = next(iter(body.items()))
        kind = "cluster-policy" if what == "clusterNetworkPolicy" else what
        return Action(f"delete-{kind}", target, path=f"{bpath}.{what}")
    if verb == "label":
        what = "pod" if "pod" in body else "namespace"
        labels = body.get("set") or {}
        checked = _labels(labels, f"{bpath}.set", errs)
        return Action(f"label-{what}", body[what], labels=checked, remove=tuple(body.get("remove") or ()), path=bpath)
    if verb == "add":
        if "pod" in body:
            pod = _pod(body["pod"], f"{bpath}.pod", errs)
            return Action("add-pod", pod.key, pod=pod, path=f"{bpath}.pod") if pod else None
        ns = body["namespace"]
        return Action(
            "add-namespace",
            ns["name"],
            labels=_labels(ns.get("labels") or {}, f"{bpath}.namespace.labels", errs),
            path=bpath,
        )
    return None  # pragma: no cover - the schema admits no other verb


def _labels(raw: Mapping[str, str], path: str, errs: _Errors) -> Labels:
    from kube.parse import Problems, parse_labels

    problems = Problems()
    labels = parse_labels(raw, path, problems)
    for err in problems.errors:
        errs.add(err.path, err.message)
    return labels


def _replay(state: State, steps: Sequence[Step], source: Source, errs: _Errors) -> None:
    """Apply every step to a copy of the state, checking references and rendered policies."""
    current = state.copy()
    for step in steps:
        for action in step.actions:
            try:
                current.apply(action)
            except StateError as exc:
                errs.add(exc.path or action.path, exc.message)
                return
        workloads = current.workloads()
        named = [("NetworkPolicy", current.policies), (CNP_KIND, current.cluster_policies)]
        for kind, key, manifest in ((kind, k, m) for kind, table in named for k, m in table.items()):
            missing = [k for k in placeholders(manifest) if k not in workloads.pod_by_key]
            if missing:
                errs.add(f"steps[{step.index}]", f"{kind} {key} names pod {missing[0]!r}, which does not exist here")
                return
        try:
            cluster, _manifests = materialize(current, workloads, source.file)
        except StateError as exc:
            errs.add(f"steps[{step.index}]", str(exc))
            return
        problem = _dangling_expectation(step, [p.key for p in cluster.pods]) or _shared_address(cluster)
        if problem:
            errs.add(f"steps[{step.index}]", problem)
            return


def _dangling_expectation(step: Step, pods: Sequence[str]) -> str:
    """An expectation naming pods that do not exist at this step checks nothing: say which."""
    if step.expect is None:
        return ""
    for port, expectation in step.expect.by_port:
        where = f"expect{f' {port}' if port else ''}"
        patterns = [p for r in expectation.rules for p in (r.src, r.dst)]
        patterns += [p for (src, dst), _allowed in (expectation.table or ()) for p in (src, dst)]
        for pattern in patterns:
            if not any(peer_matches(pattern, key) for key in pods):
                return f"{where}: {pattern!r} names no pod that exists at this step"
    return ""


def _shared_address(cluster: Cluster) -> str:
    """Two pods with one address cannot both be probed: refuse before the dataplane is blamed."""
    owner: dict[str, str] = {}
    for pod in cluster.pods:
        if pod.host_network or not pod.ip:
            continue
        if pod.ip in owner:
            return f"pods {owner[pod.ip]} and {pod.key} both have address {pod.ip}"
        owner[pod.ip] = pod.key
    return ""


def _manifest_scenario(
    path: str, docs: list[tuple[Source, Any]], default_nodes: int
) -> tuple[list[Scenario], list[ObjectError]]:
    """A file of Namespaces, Nodes, Pods, NetworkPolicies and ClusterNetworkPolicies (lists too)
    as a one-step scenario."""
    objects = ObjectSet(keep_raw=True)
    add_documents(objects, docs)
    if objects.errors:
        return [], objects.errors
    named_nodes = sorted({p.node for p in objects.pods.values() if p.node})
    nodes = tuple(named_nodes) if named_nodes else _nodes(None, default_nodes)
    if named_nodes and len(named_nodes) < default_nodes:
        nodes = (
            tuple(named_nodes)
            + tuple(n for n in _nodes(None, default_nodes) if n not in named_nodes)[: default_nodes - len(named_nodes)]
        )
    state = State(nodes)
    state.node_labels = {n: objects.nodes[n].labels for n in nodes if n in objects.nodes}
    for ns in objects.namespaces.values():
        state.add_namespace(ns.name, {k: v for k, v in ns.labels.items() if k != "kubernetes.io/metadata.name"})
    for pod in sorted(objects.pods.values(), key=lambda p: p.key):
        if pod.phase in ("Succeeded", "Failed"):
            continue
        state.add_pod(pod)
    name = os.path.splitext(os.path.basename(path))[0]
    errs = _Errors(Source(path), f"scenario {name}")
    kept = [("NetworkPolicy", objects.policies), (CNP_KIND, objects.cluster_policies)]
    for kind, table in kept:
        for key, policy in sorted(table.items()):
            located = _Errors(policy.source, errs.obj)
            manifest = _policy(objects.raw[(kind, key)], "", located)
            errs.notes.extend(located.notes)
            if manifest is not None:
                state.set_policy(manifest)
    step = Step(0)
    _replay(state, [step], Source(path), errs)
    if errs.items:
        return [], errs.items
    skipped = ", ".join(f"{k} x{n}" for k, n in sorted(objects.skipped.items()))
    description = f"manifest file ({skipped} ignored)" if skipped else "manifest file"
    loaded = finish(objects)
    loaded.not_evaluated = ()  # the harness passes ClusterNetworkPolicies on to the simulator and the enforcer
    scenario = Scenario(
        name, path, nodes, state, (step,), description=description, inputs=loaded.summary(), notes=tuple(errs.notes)
    )
    return [scenario], []
