"""Generated conformance cases: the data model, tags, selection and scenario files.

A :class:`Case` is one scenario over the upstream model (namespaces x, y, z labelled
``ns=...``; pods a, b, c labelled ``pod=...``; ports 80 and 81 on TCP, UDP and SCTP, named
``serve-80-tcp`` and so on), written without expectations: the simulator predicts every
probe. The catalogue itself lives in :mod:`conformance.generate_cases`; this module holds
what every case shares: the tag taxonomy (cyclonus's, plus a few of our own), the policy
builders, tag selection and the writer. The ClusterNetworkPolicy cases (``--cnp``) are in
:mod:`conformance.generate_cnp_cases`.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conformance.models import UPSTREAM_PORTS
from kube.model import PROTOCOLS

# Primary tag -> its subordinate tags. A case carrying a subordinate tag also carries its
# primary, as in cyclonus (pkg/generator/tags.go), so `--include peer-ipblock` selects every
# ipBlock case. Tags after the cyclonus ones in each list are ours.
TAG_GROUPS: dict[str, tuple[str, ...]] = {
    "action": (
        "create-policy",
        "delete-policy",
        "update-policy",
        "create-pod",
        "delete-pod",
        "set-pod-labels",
        "create-namespace",
        "delete-namespace",
        "set-namespace-labels",
        "remove-pod-labels",
        "remove-namespace-labels",
    ),
    "target": ("target-namespace", "target-pod-selector", "target-match-expressions"),
    "direction": ("ingress", "egress"),
    "policy-stack": ("multi-policy",),
    "policy-types": ("implicit-policy-types", "ignored-rules", "empty-rule-list"),
    "rule": (
        "deny-all",
        "allow-all",
        "any-peer",
        "any-port-protocol",
        "multi-peer",
        "multi-port/protocol",
        "multi-rule",
    ),
    "peer-pods": (
        "all-pods",
        "pods-by-label",
        "all-namespaces",
        "namespaces-by-label",
        "policy-namespace",
        "namespaces-by-default-label",
        "pods-by-expression",
        "namespaces-by-expression",
    ),
    "peer-ipblock": ("ip-block-no-except", "ip-block-with-except"),
    "port": ("any-port", "numbered-port", "named-port", "end-port"),
    "protocol": ("tcp", "udp", "sctp"),
    "miscellaneous": ("pathological", "conflict", "example", "upstream-e2e"),
    # Where a case comes from: cyclonus's generator, our additions, or random (by seed).
    "origin": ("cyclonus", "extra", "random"),
    # ClusterNetworkPolicy cases (generate --cnp): tiers, actions, priorities, subjects, peers, ports.
    "cnp": (
        "cnp-admin",
        "cnp-baseline",
        "cnp-accept",
        "cnp-deny",
        "cnp-pass",
        "cnp-priority",
        "cnp-equal-priority",
        "cnp-subject-namespaces",
        "cnp-subject-pods",
        "cnp-peer-namespaces",
        "cnp-peer-pods",
        "cnp-peer-networks",
        "cnp-peer-nodes",
        "cnp-port-number",
        "cnp-port-range",
        "cnp-named-port",
        "cnp-fail-closed",
        "cnp-with-network-policy",
        "cnp-host-network",
    ),
}
CNP_TAGS = frozenset(("cnp", *TAG_GROUPS["cnp"]))
PRIMARY_OF = {sub: primary for primary, subs in TAG_GROUPS.items() for sub in subs}
ALL_TAGS = frozenset(TAG_GROUPS) | frozenset(PRIMARY_OF)
FILE_PATTERN = re.compile(r"^g\d{4}-[a-z0-9-]*\.yaml$")

# The upstream model's container ports, as pods created by actions declare them too.
MODEL_PORTS = tuple(
    {"port": port, "protocol": proto, "name": f"serve-{port}-{proto.lower()}"}
    for port in UPSTREAM_PORTS
    for proto in PROTOCOLS
)


def with_primaries(tags: Iterable[str]) -> tuple[str, ...]:
    """``tags`` plus the primary tag of each, sorted; unknown tags raise ValueError."""
    out: set[str] = set()
    for tag in tags:
        if tag not in ALL_TAGS:
            raise ValueError(f"unknown tag {tag!r}")
        out.add(tag)
        if tag in PRIMARY_OF:
            out.add(PRIMARY_OF[tag])
    return tuple(sorted(out))


@dataclass(frozen=True)
class Case:
    """One generated scenario: steps of actions over the upstream model, probed on declared ports.

    ``steps`` are scenario steps as written in a file (``actions`` and optionally ``probe``
    ports, never ``expect``).
    """

    title: str
    tags: tuple[str, ...]
    steps: tuple[Mapping[str, Any], ...]
    description: str = ""
    nodes: int | Mapping[str, Mapping[str, str]] | None = None  # a count, or node name -> labels
    namespaces: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    pods: tuple[Mapping[str, Any], ...] = ()
    model: bool = True

    def scenario(self, number: int) -> dict[str, Any]:
        """The scenario document, named ``generated NNNN: title`` (names are unique per run)."""
        doc: dict[str, Any] = {"name": f"generated {number:04d}: {self.title}"}
        if self.description:
            doc["description"] = self.description
        doc["tags"] = ["generated", *self.tags]
        if self.model:
            doc["model"] = "upstream"
        if self.nodes is not None:
            doc["nodes"] = self.nodes if isinstance(self.nodes, int) else {k: dict(v) for k, v in self.nodes.items()}
        if self.namespaces:
            doc["namespaces"] = {k: dict(v) for k, v in self.namespaces.items()}
        if self.pods:
            doc["pods"] = [dict(p) for p in self.pods]
        doc["steps"] = [copy.deepcopy(dict(s)) for s in self.steps]
        return doc


def case(title: str, tags: Iterable[str], *steps: Mapping[str, Any], description: str = "") -> Case:
    """A case over the upstream model; ``tags`` gain their primaries."""
    return Case(title, with_primaries(tags), tuple(steps), description)


def step(*actions: Mapping[str, Any], ports: Sequence[str] = (), name: str = "") -> dict[str, Any]:
    """A scenario step: actions, then probes on ``ports`` (default: each pod's declared ports)."""
    out: dict[str, Any] = {}
    if name:
        out["name"] = name
    if actions:
        out["actions"] = [dict(a) for a in actions]
    if ports:
        out["probe"] = {"ports": list(ports)}
    return out


# -- actions ---------------------------------------------------------------------------
def apply(*manifests: Mapping[str, Any]) -> dict[str, Any]:
    """Create or update policies (the harness applies both the same way)."""
    return {
        "apply": copy.deepcopy(dict(manifests[0]))
        if len(manifests) == 1
        else [copy.deepcopy(dict(m)) for m in manifests]
    }


def delete_policy(namespace: str, name: str) -> dict[str, Any]:
    return {"delete": {"policy": f"{namespace}/{name}"}}


def delete_cluster_policy(name: str) -> dict[str, Any]:
    return {"delete": {"clusterNetworkPolicy": name}}


def add_namespace(name: str, labels: Mapping[str, str]) -> dict[str, Any]:
    return {"add": {"namespace": {"name": name, "labels": dict(labels)}}}


def delete_namespace(name: str) -> dict[str, Any]:
    return {"delete": {"namespace": name}}


def add_pod(
    namespace: str, name: str, labels: Mapping[str, str], ports: Sequence[Mapping[str, Any]] = MODEL_PORTS
) -> dict[str, Any]:
    """A new pod serving the model's ports (as cyclonus's CreatePod does) unless told otherwise."""
    return {
        "add": {
            "pod": {"namespace": namespace, "name": name, "labels": dict(labels), "ports": [dict(p) for p in ports]}
        }
    }


def delete_pod(namespace: str, name: str) -> dict[str, Any]:
    return {"delete": {"pod": f"{namespace}/{name}"}}


def label_pod(key: str, set_: Mapping[str, str] | None = None, remove: Sequence[str] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"pod": key}
    if set_:
        body["set"] = dict(set_)
    if remove:
        body["remove"] = list(remove)
    return {"label": body}


def label_namespace(name: str, set_: Mapping[str, str] | None = None, remove: Sequence[str] = ()) -> dict[str, Any]:
    body: dict[str, Any] = {"namespace": name}
    if set_:
        body["set"] = dict(set_)
    if remove:
        body["remove"] = list(remove)
    return {"label": body}


# -- policy pieces ---------------------------------------------------------------------
def labels_selector(**labels: str) -> dict[str, Any]:
    return {"matchLabels": dict(labels)}


def expr_selector(key: str, operator: str, *values: str) -> dict[str, Any]:
    req: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        req["values"] = list(values)
    return {"matchExpressions": [req]}


def port(number: int | str | None = None, protocol: str | None = None, end_port: int | None = None) -> dict[str, Any]:
    """A NetworkPolicyPort; None fields are left out (protocol then defaults to TCP)."""
    out: dict[str, Any] = {}
    if protocol is not None:
        out["protocol"] = protocol
    if number is not None:
        out["port"] = number
    if end_port is not None:
        out["endPort"] = end_port
    return out


def peer(pods: Mapping[str, Any] | None = None, namespaces: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A selector peer; ``None`` leaves the selector out (its meaning differs from ``{}``)."""
    out: dict[str, Any] = {}
    if pods is not None:
        out["podSelector"] = dict(pods)
    if namespaces is not None:
        out["namespaceSelector"] = dict(namespaces)
    return out


def ip_block(cidr: str, *excepts: str) -> dict[str, Any]:
    block: dict[str, Any] = {"cidr": cidr}
    if excepts:
        block["except"] = list(excepts)
    return {"ipBlock": block}


@dataclass(frozen=True)
class Rule:
    """A rule: ``None`` leaves the field out, ``()`` writes an empty list."""

    ports: tuple[Mapping[str, Any], ...] | None = None
    peers: tuple[Mapping[str, Any], ...] | None = None

    def manifest(self, peer_field: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.ports is not None:
            out["ports"] = [dict(p) for p in self.ports]
        if self.peers is not None:
            out[peer_field] = [dict(p) for p in self.peers]
        return out


@dataclass(frozen=True)
class Policy:
    """A policy split into target and rules (cyclonus's ``Netpol``).

    ``ingress``/``egress`` None: that direction is absent (not in policyTypes); a tuple,
    even empty, puts it in policyTypes. ``types`` overrides the derived policyTypes;
    ``types=()`` leaves the field out for the API server's defaults.
    """

    name: str
    namespace: str
    target: Mapping[str, Any]
    ingress: tuple[Rule, ...] | None = None
    egress: tuple[Rule, ...] | None = None
    types: tuple[str, ...] | None = None

    def manifest(self) -> dict[str, Any]:
        spec: dict[str, Any] = {"podSelector": copy.deepcopy(dict(self.target))}
        types = self.types
        if types is None:
            types = tuple(t for t, rules in (("Ingress", self.ingress), ("Egress", self.egress)) if rules is not None)
        if types:
            spec["policyTypes"] = list(types)
        if self.ingress is not None:
            spec["ingress"] = [r.manifest("from") for r in self.ingress]
        if self.egress is not None:
            spec["egress"] = [r.manifest("to") for r in self.egress]
        return {"metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}


# -- selection and output --------------------------------------------------------------
def select(cases: Sequence[Case], include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[Case]:
    """Cases with any of ``include`` (all when empty) and none of ``exclude``.

    Unknown tags raise ValueError naming them and listing the known ones.
    """
    unknown = sorted({t for t in (*include, *exclude) if t not in ALL_TAGS})
    if unknown:
        raise ValueError(f"unknown tag(s): {', '.join(unknown)} (known: {', '.join(sorted(ALL_TAGS))})")
    inc, exc = set(include), set(exclude)
    return [c for c in cases if (not inc or inc & set(c.tags)) and not exc & set(c.tags)]


def covering(cases: Sequence[Case]) -> list[Case]:
    """A small subset (greedy set cover, in catalogue order) carrying every tag ``cases`` carry.

    For quick runs: every dimension stays exercised at least once.
    """
    wanted = {t for c in cases for t in c.tags}
    chosen: list[Case] = []
    while wanted:
        best = max(cases, key=lambda c: len(wanted & set(c.tags)))
        chosen.append(best)
        wanted -= set(best.tags)
    order = {id(c): i for i, c in enumerate(cases)}
    return sorted(chosen, key=lambda c: order[id(c)])


def slug(text: str, limit: int = 60) -> str:
    """A file-name-safe rendering of ``text``."""
    out = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return out[:limit].rstrip("-") or "case"


def file_name(number: int, title: str) -> str:
    return f"g{number:04d}-{slug(title)}.yaml"


def write_cases(cases: Sequence[Case], out: str | os.PathLike[str], command: str = "") -> list[Path]:
    """Write one scenario file per case into ``out``; earlier generated files there are removed.

    Only files named like ours (``gNNNN-*.yaml``) are removed, so a directory shared with
    hand-written scenarios keeps them.
    """
    directory = Path(out)
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        if FILE_PATTERN.match(old.name):
            old.unlink()
    written = []
    for number, c in enumerate(cases, start=1):
        path = directory / file_name(number, c.title)
        header = f"# Generated by {command or 'npm-conformance generate'}; do not edit (regenerate instead).\n"
        header += f"# Tags: {', '.join(c.tags)}\n"
        path.write_text(header + yaml.safe_dump(c.scenario(number), sort_keys=False, width=120))
        written.append(path)
    return written


def tag_counts(cases: Iterable[Case], *, cnp: bool = True) -> dict[str, int]:
    """How many cases carry each known tag (zero included; the ClusterNetworkPolicy tags only with ``cnp``)."""
    counts = dict.fromkeys(sorted(ALL_TAGS if cnp else ALL_TAGS - CNP_TAGS), 0)
    for c in cases:
        for t in c.tags:
            counts[t] = counts.get(t, 0) + 1
    return counts
