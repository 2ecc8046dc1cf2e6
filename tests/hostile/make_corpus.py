"""Write the hostile-input corpus: ``refuse/``, ``mixed/``, ``valid/`` and ``expect.yaml``.

Run ``python tests/hostile/make_corpus.py`` after changing a case; the generated files are
committed. Every file in ``refuse/`` holds something the Kubernetes API server (with strict
field validation, kubectl's default) refuses, and nothing else wrong where that can be
helped: most cases are one edit of a valid object from ``valid/``. Files in ``mixed/`` hold
good objects and one bad one. ``expect.yaml`` maps each file name to why it is there, its
category and, where the fault is one field, a substring the located error must contain.

Rules followed (kubernetes/kubernetes and apimachinery validation, sigs.k8s.io/yaml):
names are RFC 1123 subdomains (namespaces: labels, at most 63); label keys are qualified
names with an optional DNS-subdomain prefix; label values at most 63 characters; port
names IANA service names (at most 15, a letter, no ``--``); ports 1-65535; protocols
TCP, UDP, SCTP; ``endPort`` only with a numeric ``port`` and not below it; a peer needs a
selector or an ipBlock, never an ipBlock with another; ``except`` strictly inside ``cidr``;
at most two policyTypes, each Ingress or Egress; unknown and duplicate fields are refused;
YAML 1.1 booleans (``yes``, ``on``...) are booleans, not strings. Deliberately left out,
because the default API server accepts them: IPv4 with leading zeros and CIDRs with host
bits (only refused with the alpha StrictIPCIDRValidation gate), duplicate policyTypes,
``null`` label values, custom YAML tags on otherwise valid values, UTF-16 with a BOM
(kubectl decodes it), a missing ``metadata.namespace`` (kubectl fills it in).
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
FOLDERS = ("refuse", "mixed", "valid")


# --- a small emitter that can also write what PyYAML and json cannot: repeated keys ----------


class Pairs(list):  # type: ignore[type-arg]
    """A mapping written in order that may repeat a key: a list of ``(key, value)``."""


class Raw(str):
    """A YAML scalar (or JSON token) written exactly as given: ``yes``, ``.nan``, a tag."""

    __slots__ = ()


@dataclass(frozen=True)
class Block:
    """A YAML literal block scalar (``|``, keeping the final newline)."""

    text: str


_PLAIN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
_NUMBERISH = re.compile(r"^[-+]?[0-9._]+([eE][-+]?[0-9]+)?$")
_GO_YAML_BOOLS = {"y", "Y", "n", "N", "yes", "no", "on", "off", "true", "false"}


def _items(value: Any) -> list[tuple[Any, Any]]:
    return list(value) if isinstance(value, Pairs) else list(value.items())


def _is_map(value: Any) -> bool:
    return isinstance(value, (dict, Pairs))


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        plain = (
            _PLAIN.match(value)
            and value.lower() not in _GO_YAML_BOOLS
            and not _NUMBERISH.match(value)
            and yaml.safe_load(value) == value
        )
        return value if plain else json.dumps(value)
    raise TypeError(f"cannot write {value!r}")


def to_yaml(value: Any, indent: int = 0) -> str:
    """Block-style YAML for ``value`` (a mapping or a list), repeated keys kept."""
    pad = " " * indent
    out = []
    if _is_map(value):
        for key, item in _items(value):
            head = f"{pad}{_yaml_scalar(key)}:"
            if isinstance(item, Block):
                body = "".join(f"{pad}  {line}\n" for line in item.text.splitlines())
                out.append(f"{head} |\n{body}")
            elif (_is_map(item) or isinstance(item, list)) and len(item) > 0:
                out.append(f"{head}\n{to_yaml(item, indent + 2)}")
            else:
                out.append(f"{head} {_flow_empty(item)}\n")
        return "".join(out)
    for item in value:
        if (_is_map(item) or isinstance(item, list)) and len(item) > 0:
            body = to_yaml(item, indent + 2)
            out.append(f"{pad}- {body[indent + 2 :]}")
        else:
            out.append(f"{pad}- {_flow_empty(item)}\n")
    return "".join(out)


def _flow_empty(value: Any) -> str:
    if _is_map(value):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _yaml_scalar(value)


def to_json(value: Any, indent: int = 0) -> str:
    """Indented JSON for ``value``, repeated keys kept; Raw values written as they are."""
    pad = " " * indent
    inner = " " * (indent + 2)
    if isinstance(value, Raw):
        return str(value)
    if _is_map(value):
        if not len(value):
            return "{}"
        body = ",\n".join(f"{inner}{json.dumps(k)}: {to_json(v, indent + 2)}" for k, v in _items(value))
        return "{\n" + body + "\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[]"
        return "[\n" + ",\n".join(inner + to_json(v, indent + 2) for v in value) + "\n" + pad + "]"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return json.dumps(value)


# --- editing objects by field path -------------------------------------------------------------

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _tokens(path: str) -> list[str | int]:
    return [name if name else int(index) for name, index in _TOKEN.findall(path)]


def _walk(obj: Any, tokens: list[str | int]) -> Any:
    for tok in tokens:
        obj = dict(_items(obj))[tok] if isinstance(obj, Pairs) and isinstance(tok, str) else obj[tok]
    return obj


def _replace_map(parent: Any, tok: str | int, new: Pairs | dict[str, Any]) -> None:
    if isinstance(parent, Pairs):
        for i, (k, _v) in enumerate(parent):
            if k == tok:
                parent[i] = (k, new)
                return
        raise KeyError(tok)
    parent[tok] = new


def rename(obj: Any, path: str, new_key: str) -> Any:
    """Rename the last key of ``path`` in place, keeping its position."""
    toks = _tokens(path)
    parent = _walk(obj, toks[:-1])
    grand = _walk(obj, toks[:-2]) if len(toks) > 1 else None
    renamed: dict[str, Any] = {}
    for k, v in _items(parent):
        renamed[new_key if k == toks[-1] else k] = v
    if toks[-1] not in dict(_items(parent)):
        raise KeyError(path)
    if grand is None:
        parent.clear()
        parent.update(renamed)
    else:
        _replace_map(grand, toks[-2], renamed)
    return obj


def put(obj: Any, path: str, value: Any) -> Any:
    """Set ``path`` to ``value`` (a new key goes last)."""
    toks = _tokens(path)
    parent = _walk(obj, toks[:-1])
    parent[toks[-1]] = value
    return obj


def drop(obj: Any, path: str) -> Any:
    """Delete the key or list item at ``path``."""
    toks = _tokens(path)
    parent = _walk(obj, toks[:-1])
    del parent[toks[-1]]
    return obj


def dup(obj: Any, path: str, value: Any = ...) -> Any:
    """Repeat the key at ``path`` right after itself (with ``value``, default the same value)."""
    toks = _tokens(path)
    parent = _walk(obj, toks[:-1])
    pairs = Pairs()
    for k, v in _items(parent):
        pairs.append((k, v))
        if k == toks[-1]:
            pairs.append((k, copy.deepcopy(v) if value is ... else value))
    if len(toks) == 1:
        return pairs
    _replace_map(_walk(obj, toks[:-2]), toks[-2], pairs)
    return obj


# --- valid objects every case starts from ------------------------------------------------------


def network_policy() -> dict[str, Any]:
    """A valid NetworkPolicy using every field, so each level has something to break."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web-allow", "namespace": "prod", "labels": {"app": "web"}},
        "spec": {
            "podSelector": {
                "matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["frontend"]}],
            },
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {
                    "from": [
                        {
                            "podSelector": {"matchLabels": {"app": "client"}},
                            "namespaceSelector": {"matchLabels": {"team": "a"}},
                        },
                        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                    ],
                    "ports": [
                        {"protocol": "TCP", "port": 80},
                        {"protocol": "TCP", "port": 8000, "endPort": 8080},
                        {"protocol": "UDP", "port": "dns"},
                    ],
                }
            ],
            "egress": [
                {
                    "to": [
                        {"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "Exists"}]}},
                        {"ipBlock": {"cidr": "192.168.0.0/16"}},
                    ],
                    "ports": [{"protocol": "UDP", "port": 53}],
                }
            ],
        },
    }


def pod(name: str = "web-0", labels: dict[str, str] | None = None, ip: str = "10.244.1.5") -> dict[str, Any]:
    """A valid running Pod with a named container port and its IPs."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "prod", "labels": dict(labels or {"app": "web", "tier": "frontend"})},
        "spec": {
            "nodeName": "n1",
            "hostNetwork": False,
            "containers": [
                {
                    "name": "web",
                    "image": "nginx:1.27",
                    "ports": [{"name": "http", "containerPort": 80, "protocol": "TCP"}],
                }
            ],
        },
        "status": {"phase": "Running", "hostIP": "172.18.0.2", "podIP": ip, "podIPs": [{"ip": ip}]},
    }


def namespace(name: str = "prod") -> dict[str, Any]:
    """A valid Namespace with labels, a finalizer and a phase."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {"finalizers": ["kubernetes"]},
        "status": {"phase": "Active"},
    }


def node() -> dict[str, Any]:
    """A valid Node with a pod CIDR and two addresses."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
        "spec": {"podCIDR": "10.244.1.0/24"},
        "status": {
            "addresses": [{"type": "InternalIP", "address": "172.18.0.2"}, {"type": "Hostname", "address": "n1"}]
        },
    }


def kind_list(*items: Any, kind: str = "List", api: str = "v1") -> dict[str, Any]:
    """A ``kind: List`` (or typed list) as ``kubectl get -o yaml`` prints it."""
    return {"apiVersion": api, "kind": kind, "metadata": {"resourceVersion": ""}, "items": list(items)}


def good_objects() -> list[dict[str, Any]]:
    """The good part of every mixed file: client may reach web on 80/TCP, other may not."""
    allow = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "web-from-client", "namespace": "prod"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]}],
        },
    }
    return [
        namespace(),
        pod("web", {"app": "web"}, "10.244.1.10"),
        pod("client", {"app": "client"}, "10.244.1.11"),
        pod("other", {"app": "other"}, "10.244.1.12"),
        allow,
    ]


def bad_allow_policy() -> dict[str, Any]:
    """A policy that, if wrongly accepted, would let ``prod/other`` reach ``prod/web``."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "bad-allow-other", "namespace": "prod"},
        "spec": {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "other"}}}], "ports": [{"port": 80}]}],
        },
    }


# --- the corpus ---------------------------------------------------------------------------------


@dataclass
class Case:
    """One file of the corpus and what it is for."""

    folder: str
    name: str
    data: bytes
    category: str
    why: str
    field: str | None = None
    obj: str | None = None  # mixed: a substring naming the bad object


CASES: dict[str, Case] = {}


def add(
    name: str,
    content: str | bytes,
    category: str,
    why: str,
    field: str | None = None,
    *,
    folder: str = "refuse",
    obj: str | None = None,
) -> None:
    """Register one file; names are unique over every folder."""
    if name in CASES:
        raise ValueError(f"duplicate case name {name}")
    data = content.encode("utf-8") if isinstance(content, str) else content
    if len(data) > 24_000:
        raise ValueError(f"{name} is {len(data)} bytes: keep committed files small")
    CASES[name] = Case(folder, name, data, category, why, field, obj)


def swap(text: Any, old: Any, new: Any, count: int = -1) -> Any:
    """``text.replace(old, new, count)``, insisting that ``old`` is there (a case must differ)."""
    if old not in text:
        raise ValueError(f"{old!r} not found: the case would equal the valid file")
    return text.replace(old, new, count)


def docs(*objects: Any) -> str:
    """Multi-document YAML."""
    return "---\n".join(to_yaml(o) for o in objects)


def one(name: str, obj: Any, category: str, why: str, field: str | None = None) -> None:
    """A case holding one object, as YAML or (``.json`` names) JSON."""
    add(name, to_json(obj) + "\n" if name.endswith(".json") else to_yaml(obj), category, why, field)


def edited(make: Callable[[], Any], *edits: Callable[[Any], Any]) -> Any:
    """``make()`` with ``edits`` applied in order (each returns the object)."""
    obj = make()
    for edit in edits:
        obj = edit(obj)
    return obj


NP, POD, NS, NODE = network_policy, pod, namespace, node
ING = "spec.ingress[0]"
EGR = "spec.egress[0]"
PEER = f"{ING}.from[0]"
IPB = f"{ING}.from[1].ipBlock"
EIPB = f"{EGR}.to[1].ipBlock"
PSEL = "spec.podSelector"
EXPR = f"{PSEL}.matchExpressions[0]"
PORT0, PORT1, PORT2 = (f"{ING}.ports[{i}]" for i in range(3))


def unknown_fields() -> None:
    """Misspelled and made-up fields at every level (strict field validation: unknown field)."""
    c = "unknown-field"
    renames = [
        ("np-metadata-misspelled.yaml", NP, "metadata", "metdata"),
        ("np-spec-capitalized.yaml", NP, "spec", "Spec"),
        ("np-metadata-namespace-misspelled.yaml", NP, "metadata.namespace", "namspace"),
        ("np-metadata-labels-misspelled.yaml", NP, "metadata.labels", "lables"),
        ("np-metadata-name-capitalized.yaml", NP, "metadata.name", "Name"),
        ("np-spec-podselector-lowercase.yaml", NP, PSEL, "podselector"),
        ("np-spec-podselector-capitalized.json", NP, PSEL, "PodSelector"),
        ("np-spec-policytypes-lowercase.yaml", NP, "spec.policyTypes", "policytypes"),
        ("np-spec-ingress-misspelled.yaml", NP, "spec.ingress", "ingres"),
        ("np-spec-egress-misspelled.yaml", NP, "spec.egress", "egres"),
        ("np-podselector-matchlabels-lowercase.yaml", NP, f"{PSEL}.matchLabels", "matchlabels"),
        ("np-podselector-matchexpressions-singular.yaml", NP, f"{PSEL}.matchExpressions", "matchExpression"),
        ("np-matchexpression-key-capitalized.yaml", NP, f"{EXPR}.key", "Key"),
        ("np-matchexpression-operator-misspelled.yaml", NP, f"{EXPR}.operator", "operater"),
        ("np-matchexpression-values-singular.yaml", NP, f"{EXPR}.values", "value"),
        ("np-ingress-from-capitalized.yaml", NP, f"{ING}.from", "From"),
        ("np-ingress-from-misspelled.yaml", NP, f"{ING}.from", "form"),
        ("np-ingress-rule-uses-to.yaml", NP, f"{ING}.from", "to"),
        ("np-egress-rule-uses-from.yaml", NP, f"{EGR}.to", "from"),
        ("np-ingress-ports-singular.yaml", NP, f"{ING}.ports", "port"),
        ("np-egress-ports-misspelled.json", NP, f"{EGR}.ports", "prots"),
        ("np-peer-podselector-lowercase.yaml", NP, f"{PEER}.podSelector", "podselector"),
        ("np-peer-namespaceselector-plural.yaml", NP, f"{PEER}.namespaceSelector", "namespaceSelectors"),
        ("np-peer-ipblock-lowercase.yaml", NP, f"{ING}.from[1].ipBlock", "ipblock"),
        ("np-peer-ipblock-uppercase.json", NP, f"{ING}.from[1].ipBlock", "IPBlock"),
        ("np-egress-peer-ipblock-misspelled.yaml", NP, f"{EGR}.to[1].ipBlock", "ipBlok"),
        ("np-ipblock-except-misspelled.yaml", NP, f"{IPB}.except", "excpet"),
        ("np-ipblock-except-misspelled.json", NP, f"{IPB}.except", "excpet"),
        ("np-ipblock-except-capitalized.yaml", NP, f"{IPB}.except", "Except"),
        ("np-ipblock-cidr-uppercase.yaml", NP, f"{IPB}.cidr", "CIDR"),
        ("np-egress-ipblock-cidr-plural.yaml", NP, f"{EIPB}.cidr", "cidrs"),
        ("np-port-protocol-misspelled.yaml", NP, f"{PORT0}.protocol", "prot"),
        ("np-port-protocol-capitalized.yaml", NP, f"{PORT0}.protocol", "Protocol"),
        ("np-port-endport-lowercase.yaml", NP, f"{PORT1}.endPort", "endport"),
        ("np-port-port-renamed-portname.yaml", NP, f"{PORT2}.port", "portName"),
        ("np-egress-port-protocol-misspelled.yaml", NP, f"{EGR}.ports[0].protocol", "protocal"),
        (
            "np-egress-namespaceselector-matchexpressions-misspelled.yaml",
            NP,
            f"{EGR}.to[0].namespaceSelector.matchExpressions",
            "matchExpresions",
        ),
        (
            "np-peer-namespaceselector-matchlabels-lowercase.yaml",
            NP,
            f"{PEER}.namespaceSelector.matchLabels",
            "matchlabels",
        ),
        ("np-peer-podselector-matchlabels-singular.yaml", NP, f"{PEER}.podSelector.matchLabels", "matchLabel"),
        ("pod-metadata-namespace-misspelled.yaml", POD, "metadata.namespace", "namspace"),
        ("pod-metadata-labels-singular.yaml", POD, "metadata.labels", "label"),
        ("pod-spec-nodename-lowercase.yaml", POD, "spec.nodeName", "nodename"),
        ("pod-spec-hostnetwork-lowercase.yaml", POD, "spec.hostNetwork", "hostnetwork"),
        ("pod-spec-containers-singular.yaml", POD, "spec.containers", "container"),
        ("pod-container-ports-singular.yaml", POD, "spec.containers[0].ports", "port"),
        (
            "pod-container-port-containerport-lowercase.yaml",
            POD,
            "spec.containers[0].ports[0].containerPort",
            "containerport",
        ),
        ("pod-container-port-protocol-misspelled.json", POD, "spec.containers[0].ports[0].protocol", "protcol"),
        ("pod-container-port-name-capitalized.yaml", POD, "spec.containers[0].ports[0].name", "Name"),
        ("pod-status-podip-lowercase.yaml", POD, "status.podIP", "podip"),
        ("pod-status-podip-camelcase.yaml", POD, "status.podIP", "podIp"),
        ("pod-status-podip-capitalized.json", POD, "status.podIP", "PodIP"),
        ("pod-status-podips-camelcase.yaml", POD, "status.podIPs", "podIps"),
        ("pod-status-podips-ip-uppercase.yaml", POD, "status.podIPs[0].ip", "IP"),
        ("pod-status-podips-ip-renamed-address.yaml", POD, "status.podIPs[0].ip", "address"),
        ("pod-status-hostip-camelcase.yaml", POD, "status.hostIP", "hostIp"),
        ("pod-status-phase-capitalized.yaml", POD, "status.phase", "Phase"),
        ("pod-status-phase-misspelled.yaml", POD, "status.phase", "phse"),
        ("pod-spec-plural.yaml", POD, "spec", "specs"),
        ("ns-metadata-labels-misspelled.yaml", NS, "metadata.labels", "lables"),
        ("ns-metadata-name-misspelled.yaml", NS, "metadata.name", "nmae"),
        ("ns-spec-finalizers-singular.yaml", NS, "spec.finalizers", "finalizer"),
        ("ns-status-phase-misspelled.json", NS, "status.phase", "phse"),
        ("node-status-addresses-misspelled.yaml", NODE, "status.addresses", "adresses"),
        ("node-address-address-misspelled.yaml", NODE, "status.addresses[0].address", "adress"),
        ("node-address-type-capitalized.yaml", NODE, "status.addresses[0].type", "Type"),
        ("node-metadata-labels-singular.yaml", NODE, "metadata.labels", "label"),
        ("node-spec-podcidr-camelcase.json", NODE, "spec.podCIDR", "podCidr"),
    ]
    for name, make, path, new in renames:
        field = ".".join([*path.split(".")[:-1], new]) if "." in path else new
        last = path.rsplit(".", 1)[-1]
        one(name, edited(make, lambda o, p=path, n=new: rename(o, p, n)), c, f"`{last}` written as `{new}`", field)
    additions = [
        ("np-top-level-unknown-field.yaml", NP, "extra", True),
        ("np-top-level-status-typo.yaml", NP, "statsu", {}),
        ("np-metadata-unknown-field.yaml", NP, "metadata.owner", "team-a"),
        ("np-spec-unknown-field.yaml", NP, "spec.priority", 10),
        ("np-spec-from-at-spec-level.yaml", NP, "spec.from", [{"podSelector": {}}]),
        ("np-spec-ports-at-spec-level.json", NP, "spec.ports", [{"port": 80}]),
        ("np-ingress-rule-unknown-field.yaml", NP, f"{ING}.action", "Allow"),
        ("np-egress-rule-unknown-field.yaml", NP, f"{EGR}.action", "Deny"),
        ("np-peer-ports-inside-peer.yaml", NP, f"{PEER}.ports", [{"port": 80}]),
        ("np-egress-peer-cidr-without-ipblock.yaml", NP, f"{EGR}.to[1].cidr", "10.0.0.0/8"),
        ("np-ipblock-unknown-field.yaml", NP, f"{IPB}.exclude", ["10.2.0.0/16"]),
        ("np-port-name-field.yaml", NP, f"{PORT0}.name", "http"),
        ("np-selector-unknown-field.yaml", NP, f"{PSEL}.matchFields", [{"key": "a", "operator": "Exists"}]),
        ("np-matchexpression-unknown-field.yaml", NP, f"{EXPR}.description", "frontends only"),
        ("np-egress-ipblock-unknown-field.json", NP, f"{EIPB}.ports", [80]),
        ("pod-metadata-unknown-field.yaml", POD, "metadata.node", "n1"),
        ("pod-spec-unknown-field.yaml", POD, "spec.node", "n1"),
        ("pod-container-unknown-field.yaml", POD, "spec.containers[0].imagePullPolicyy", "Always"),
        ("pod-container-port-unknown-field.yaml", POD, "spec.containers[0].ports[0].port", 80),
        ("pod-status-unknown-field.yaml", POD, "status.ip", "10.244.1.5"),
        ("pod-status-podips-unknown-field.yaml", POD, "status.podIPs[0].family", "IPv4"),
        ("ns-top-level-labels.yaml", NS, "labels", {"team": "a"}),
        ("ns-metadata-unknown-field.yaml", NS, "metadata.team", "a"),
        ("node-top-level-addresses.yaml", NODE, "addresses", [{"type": "InternalIP", "address": "172.18.0.3"}]),
        ("node-status-unknown-field.yaml", NODE, "status.internalIP", "172.18.0.3"),
    ]
    for name, make, path, value in additions:
        one(name, edited(make, lambda o, p=path, v=value: put(o, p, v)), c, f"made-up field `{path}`", path)
    add(
        "list-item-np-unknown-field.yaml",
        to_yaml(kind_list(namespace(), edited(NP, lambda o: rename(o, PSEL, "podselector")))),
        c,
        "a List item has a misspelled field",
        "spec.podselector",
    )
    add(
        "list-item-pod-unknown-field.json",
        to_json(kind_list(edited(POD, lambda o: rename(o, "status.podIP", "podip")), namespace())) + "\n",
        c,
        "a List item has a misspelled field",
        "status.podip",
    )


def duplicates() -> None:
    """The same key twice in one mapping (strict field validation: duplicate field)."""
    c = "duplicate"
    np_cases = [
        ("np-dup-spec", "spec", {"podSelector": {}, "policyTypes": ["Ingress"]}),
        ("np-dup-metadata", "metadata", {"name": "other", "namespace": "prod"}),
        ("np-dup-kind", "kind", "Namespace"),
        ("np-dup-apiversion", "apiVersion", "v1"),
        ("np-dup-metadata-name", "metadata.name", "web-allow-2"),
        ("np-dup-metadata-namespace", "metadata.namespace", "kube-system"),
        ("np-dup-metadata-labels-key", "metadata.labels.app", "api"),
        ("np-dup-spec-podselector", PSEL, {}),
        ("np-dup-matchlabels", f"{PSEL}.matchLabels", {"app": "api"}),
        ("np-dup-matchlabels-key", f"{PSEL}.matchLabels.app", "api"),
        ("np-dup-matchexpression-operator", f"{EXPR}.operator", "NotIn"),
        ("np-dup-matchexpression-values", f"{EXPR}.values", ["backend"]),
        ("np-dup-policytypes", "spec.policyTypes", ["Ingress"]),
        ("np-dup-ingress", "spec.ingress", [{}]),
        ("np-dup-egress", "spec.egress", [{}]),
        ("np-dup-rule-from", f"{ING}.from", [{"podSelector": {}}]),
        ("np-dup-rule-ports", f"{ING}.ports", [{"port": 443}]),
        ("np-dup-peer-podselector", f"{PEER}.podSelector", {}),
        ("np-dup-peer-namespaceselector", f"{PEER}.namespaceSelector", {}),
        ("np-dup-peer-namespaceselector-matchlabels-key", f"{PEER}.namespaceSelector.matchLabels.team", "b"),
        ("np-dup-ipblock", f"{ING}.from[1].ipBlock", {"cidr": "0.0.0.0/0"}),
        ("np-dup-ipblock-cidr", f"{IPB}.cidr", "0.0.0.0/0"),
        ("np-dup-ipblock-except", f"{IPB}.except", []),
        ("np-dup-port-port", f"{PORT0}.port", 22),
        ("np-dup-port-protocol", f"{PORT0}.protocol", "UDP"),
        ("np-dup-port-endport", f"{PORT1}.endPort", 9000),
        ("np-dup-egress-ipblock-cidr", f"{EIPB}.cidr", "0.0.0.0/0"),
        ("np-dup-egress-port-port", f"{EGR}.ports[0].port", 5353),
    ]
    json_too = {"np-dup-spec", "np-dup-kind", "np-dup-metadata-name", "np-dup-matchlabels-key", "np-dup-ipblock-cidr"}
    json_too |= {"np-dup-port-port", "np-dup-egress-port-port"}
    for stem, path, value in np_cases:
        for ext in (".yaml", ".json") if stem in json_too else (".yaml",):
            one(stem + ext, edited(NP, lambda o, p=path, v=value: dup(o, p, v)), c, f"`{path}` given twice", path)
    other = [
        ("pod-dup-status-podip", POD, "status.podIP", "10.244.9.9", (".yaml", ".json")),
        ("pod-dup-status", POD, "status", {"phase": "Pending"}, (".yaml",)),
        ("pod-dup-status-phase", POD, "status.phase", "Failed", (".yaml",)),
        ("pod-dup-spec-nodename", POD, "spec.nodeName", "n2", (".yaml",)),
        ("pod-dup-labels-key", POD, "metadata.labels.app", "db", (".yaml", ".json")),
        ("pod-dup-podips-ip", POD, "status.podIPs[0].ip", "10.244.9.9", (".yaml",)),
        ("pod-dup-container-port-containerport", POD, "spec.containers[0].ports[0].containerPort", 8080, (".yaml",)),
        ("ns-dup-metadata-name", NS, "metadata.name", "dev", (".yaml",)),
        ("ns-dup-labels-key", NS, "metadata.labels.team", "b", (".yaml", ".json")),
        ("node-dup-address-address", NODE, "status.addresses[0].address", "172.18.0.9", (".yaml",)),
        ("node-dup-metadata-name", NODE, "metadata.name", "n2", (".json",)),
    ]
    for stem, make, path, value, exts in other:
        for ext in exts:
            one(stem + ext, edited(make, lambda o, p=path, v=value: dup(o, p, v)), c, f"`{path}` given twice", path)
    listing = kind_list(namespace(), pod())
    add("list-dup-items.yaml", to_yaml(dup(listing, "items", [])), c, "`items` given twice", "items")
    add(
        "list-item-dup-field.yaml",
        to_yaml(kind_list(edited(NP, lambda o: dup(o, f"{IPB}.cidr", "0.0.0.0/0")))),
        c,
        "a List item has a duplicate field",
        f"{IPB}.cidr",
    )


def selectors() -> None:
    """Broken label selector requirements (apimachinery ValidateLabelSelectorRequirement)."""
    c = "selector"
    places = {
        "": PSEL,
        "peer-": f"{PEER}.podSelector",
        "peer-ns-": f"{PEER}.namespaceSelector",
        "egress-ns-": f"{EGR}.to[0].namespaceSelector",
    }
    cases: list[tuple[str, str, Any, str]] = [
        ("", "matchexpressions-empty-entry", {}, "[0]"),
        ("peer-", "matchexpressions-empty-entry", {}, "[0]"),
        ("", "matchexpression-key-missing", {"operator": "Exists"}, "[0].key"),
        ("egress-ns-", "matchexpression-key-missing", {"operator": "DoesNotExist"}, "[0].key"),
        ("", "matchexpression-key-empty", {"key": "", "operator": "Exists"}, "[0].key"),
        ("", "matchexpression-key-invalid", {"key": "bad key", "operator": "Exists"}, "[0].key"),
        ("peer-", "matchexpression-key-number", {"key": 42, "operator": "Exists"}, "[0].key"),
        ("", "matchexpression-operator-missing", {"key": "tier", "values": ["a"]}, "[0].operator"),
        ("peer-ns-", "matchexpression-operator-missing", {"key": "team"}, "[0].operator"),
        (
            "",
            "matchexpression-operator-unknown",
            {"key": "tier", "operator": "Equals", "values": ["a"]},
            "[0].operator",
        ),
        ("", "matchexpression-operator-lowercase", {"key": "tier", "operator": "in", "values": ["a"]}, "[0].operator"),
        (
            "peer-",
            "matchexpression-operator-symbol",
            {"key": "tier", "operator": "!=", "values": ["a"]},
            "[0].operator",
        ),
        (
            "egress-ns-",
            "matchexpression-operator-gt",
            {"key": "tier", "operator": "Gt", "values": ["1"]},
            "[0].operator",
        ),
        ("peer-", "matchexpression-operator-number", {"key": "tier", "operator": 1}, "[0].operator"),
        ("", "matchexpression-in-values-empty", {"key": "tier", "operator": "In", "values": []}, "[0].values"),
        ("", "matchexpression-in-values-missing", {"key": "tier", "operator": "In"}, "[0].values"),
        (
            "peer-",
            "matchexpression-notin-values-empty",
            {"key": "tier", "operator": "NotIn", "values": []},
            "[0].values",
        ),
        ("egress-ns-", "matchexpression-notin-values-missing", {"key": "team", "operator": "NotIn"}, "[0].values"),
        (
            "",
            "matchexpression-exists-with-values",
            {"key": "tier", "operator": "Exists", "values": ["a"]},
            "[0].values",
        ),
        (
            "peer-ns-",
            "matchexpression-doesnotexist-with-values",
            {"key": "team", "operator": "DoesNotExist", "values": ["a"]},
            "[0].values",
        ),
        ("", "matchexpression-values-number", {"key": "tier", "operator": "In", "values": [1]}, "[0].values"),
        ("peer-", "matchexpression-values-bool", {"key": "tier", "operator": "In", "values": [True]}, "[0].values"),
        (
            "",
            "matchexpression-values-yes-unquoted",
            {"key": "tier", "operator": "In", "values": [Raw("yes")]},
            "[0].values",
        ),
        (
            "egress-ns-",
            "matchexpression-values-mapping",
            {"key": "t", "operator": "In", "values": [{"a": "b"}]},
            "[0].values",
        ),
        ("", "matchexpression-values-string", {"key": "tier", "operator": "In", "values": "frontend"}, "[0].values"),
        (
            "",
            "matchexpression-values-invalid-label-value",
            {"key": "tier", "operator": "In", "values": ["front end"]},
            "[0].values",
        ),
        (
            "peer-ns-",
            "matchexpression-values-64-chars",
            {"key": "t", "operator": "In", "values": ["v" * 64]},
            "[0].values",
        ),
    ]
    for prefix, what, expr, suffix in cases:
        place = places[prefix]
        name = f"np-{prefix}{what}.yaml"
        obj = edited(NP, lambda o, p=place, e=expr: put(o, f"{p}.matchExpressions", [e]))
        one(name, obj, c, f"{place}.matchExpressions: {what.replace('-', ' ')}", f"{place}.matchExpressions{suffix}")
    one(
        "np-matchexpressions-mapping.yaml",
        edited(NP, lambda o: put(o, f"{PSEL}.matchExpressions", {"key": "tier", "operator": "Exists"})),
        c,
        "matchExpressions is a mapping, not a list",
        f"{PSEL}.matchExpressions",
    )
    one(
        "np-matchexpressions-entry-string.yaml",
        edited(NP, lambda o: put(o, f"{PSEL}.matchExpressions", ["tier in (frontend)"])),
        c,
        "a matchExpressions entry is a string (set-based selector syntax), not an object",
        f"{PSEL}.matchExpressions[0]",
    )
    one(
        "np-matchlabels-list.yaml",
        edited(NP, lambda o: put(o, f"{PSEL}.matchLabels", ["app=web"])),
        c,
        "matchLabels is a list, not a mapping",
        f"{PSEL}.matchLabels",
    )


def names_and_labels() -> None:
    """Object names, label keys and values, and port names the API refuses."""
    c = "name-label"
    long_name = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62])  # 254 characters, every part valid
    assert len(long_name) == 254
    names = [
        ("np-name-trailing-newline-block-scalar.yaml", NP, "metadata.name", Block("web-allow\n")),
        ("np-name-trailing-newline.json", NP, "metadata.name", "web-allow\n"),
        ("np-name-leading-space.yaml", NP, "metadata.name", " web-allow"),
        ("np-name-trailing-space.json", NP, "metadata.name", "web-allow "),
        ("np-name-uppercase.yaml", NP, "metadata.name", "Web-Allow"),
        ("np-name-254-chars.yaml", NP, "metadata.name", long_name),
        ("np-name-underscore.yaml", NP, "metadata.name", "web_allow"),
        ("np-name-empty.yaml", NP, "metadata.name", ""),
        ("np-name-number.yaml", NP, "metadata.name", 42),
        ("np-name-leading-dash.yaml", NP, "metadata.name", "-web"),
        ("np-name-non-ascii.yaml", NP, "metadata.name", "w\u00e9b"),
        ("np-name-slash.yaml", NP, "metadata.name", "web/allow"),
        ("np-namespace-64-chars.yaml", NP, "metadata.namespace", "n" * 64),
        ("np-namespace-uppercase.yaml", NP, "metadata.namespace", "Prod"),
        ("np-namespace-trailing-newline-block-scalar.yaml", NP, "metadata.namespace", Block("prod\n")),
        ("np-namespace-with-dot.yaml", NP, "metadata.namespace", "prod.eu"),
        ("np-namespace-number.json", NP, "metadata.namespace", 7),
        ("pod-name-uppercase.yaml", POD, "metadata.name", "Web-0"),
        ("pod-name-254-chars.yaml", POD, "metadata.name", long_name),
        ("pod-name-trailing-newline.json", POD, "metadata.name", "web-0\n"),
        ("pod-namespace-64-chars.yaml", POD, "metadata.namespace", "p" * 64),
        ("pod-namespace-leading-space.yaml", POD, "metadata.namespace", " prod"),
        ("ns-name-64-chars.yaml", NS, "metadata.name", "n" * 64),
        ("ns-name-uppercase.yaml", NS, "metadata.name", "Prod"),
        ("ns-name-with-dot.yaml", NS, "metadata.name", "prod.eu"),
        ("ns-name-trailing-newline-block-scalar.yaml", NS, "metadata.name", Block("prod\n")),
        ("ns-name-trailing-space.json", NS, "metadata.name", "prod "),
        ("node-name-uppercase.yaml", NODE, "metadata.name", "Node-1"),
        ("node-name-254-chars.yaml", NODE, "metadata.name", long_name),
        ("node-name-trailing-newline.json", NODE, "metadata.name", "n1\n"),
    ]
    for name, make, path, value in names:
        one(name, edited(make, lambda o, p=path, v=value: put(o, p, v)), c, f"{path} is {value!r}", path)

    def set_labels(path: str, labels: Any) -> Callable[[Any], Any]:
        return lambda o: put(o, path, labels)

    prefix_254 = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 62]) + "/app"
    keys = [
        ("np-label-key-prefix-uppercase.yaml", NP, "metadata.labels", "Example.com/app"),
        ("np-label-key-prefix-empty.yaml", NP, "metadata.labels", "/app"),
        ("np-label-key-prefix-underscore.yaml", NP, "metadata.labels", "example_com/app"),
        ("np-label-key-prefix-254-chars.yaml", NP, "metadata.labels", prefix_254),
        ("np-label-key-two-slashes.yaml", NP, "metadata.labels", "example.com/a/b"),
        ("np-label-key-name-64-chars.yaml", NP, "metadata.labels", "k" * 64),
        ("np-label-key-empty.yaml", NP, "metadata.labels", ""),
        ("np-label-key-space.yaml", NP, "metadata.labels", "my app"),
        ("np-label-key-trailing-newline.json", NP, "metadata.labels", "app\n"),
        ("np-label-key-name-empty.yaml", NP, "metadata.labels", "example.com/"),
        ("pod-label-key-leading-dash.yaml", POD, "metadata.labels", "-app"),
        ("ns-label-key-prefix-trailing-dot.yaml", NS, "metadata.labels", "example.com./team"),
        ("node-label-key-name-64-chars.yaml", NODE, "metadata.labels", "x" * 64),
        ("np-matchlabels-key-prefix-uppercase.yaml", NP, f"{PSEL}.matchLabels", "Example.com/app"),
        ("np-peer-matchlabels-key-64-chars.yaml", NP, f"{PEER}.podSelector.matchLabels", "k" * 64),
        ("np-peer-ns-matchlabels-key-name-empty.yaml", NP, f"{PEER}.namespaceSelector.matchLabels", "example.com/"),
    ]
    for name, make, path, key in keys:
        one(name, edited(make, set_labels(path, {key: "x"})), c, f"label key {key!r} in {path}", path)
    values = [
        ("np-label-value-64-chars.yaml", NP, "metadata.labels", "v" * 64),
        ("pod-label-value-64-chars.yaml", POD, "metadata.labels", "v" * 64),
        ("np-label-value-trailing-dash.yaml", NP, "metadata.labels", "web-"),
        ("np-label-value-space.yaml", NP, "metadata.labels", "web app"),
        ("np-label-value-trailing-newline-block-scalar.yaml", NP, "metadata.labels", Block("web\n")),
        ("np-label-value-number.yaml", NP, "metadata.labels", 1),
        ("np-label-value-float.yaml", NP, "metadata.labels", 1.10),
        ("np-label-value-bool-true.yaml", NP, "metadata.labels", True),
        ("np-label-value-yes-unquoted.yaml", NP, "metadata.labels", Raw("yes")),
        ("np-label-value-on-unquoted.yaml", NP, "metadata.labels", Raw("on")),
        ("ns-label-value-off-unquoted.yaml", NS, "metadata.labels", Raw("off")),
        ("pod-label-value-no-unquoted.yaml", POD, "metadata.labels", Raw("no")),
        ("np-label-value-list.yaml", NP, "metadata.labels", ["web"]),
        ("np-label-value-mapping.yaml", NP, "metadata.labels", {"name": "web"}),
        ("node-label-value-slash.yaml", NODE, "metadata.labels", "a/b"),
        ("np-label-value-number.json", NP, "metadata.labels", 2),
        ("np-matchlabels-value-64-chars.yaml", NP, f"{PSEL}.matchLabels", "v" * 64),
        ("np-matchlabels-value-yes-unquoted.yaml", NP, f"{PSEL}.matchLabels", Raw("yes")),
        ("np-peer-matchlabels-value-number.yaml", NP, f"{PEER}.podSelector.matchLabels", 2),
        ("np-peer-ns-matchlabels-value-bool.json", NP, f"{PEER}.namespaceSelector.matchLabels", True),
        (
            "np-egress-ns-matchlabels-value-on-unquoted.yaml",
            NP,
            f"{EGR}.to[0].namespaceSelector.matchLabels",
            Raw("on"),
        ),
    ]
    for name, make, path, value in values:
        one(name, edited(make, set_labels(path, {"app": value})), c, f"label value {value!r} in {path}", path)
    port_names = [
        ("np-port-name-trailing-newline.json", "dns\n"),
        ("np-port-name-trailing-newline-block-scalar.yaml", Block("dns\n")),
        ("np-port-name-16-chars.yaml", "dns-over-udp-and"),
        ("np-port-name-uppercase.yaml", "DNS"),
        ("np-port-name-underscore.yaml", "dns_udp"),
        ("np-port-name-double-dash.yaml", "dns--udp"),
        ("np-port-name-leading-dash.yaml", "-dns"),
        ("np-port-name-space.yaml", "dns udp"),
    ]
    for name, value in port_names:
        one(name, edited(NP, lambda o, v=value: put(o, f"{PORT2}.port", v)), c, f"port name {value!r}", f"{PORT2}.port")
    cport = "spec.containers[0].ports[0].name"
    container_names = [
        ("pod-port-name-16-chars.yaml", "http-alternative"),
        ("pod-port-name-uppercase.yaml", "HTTP"),
        ("pod-port-name-all-digits.yaml", "8080"),
        ("pod-port-name-trailing-newline.json", "http\n"),
        ("pod-port-name-trailing-dash.yaml", "http-"),
    ]
    for name, value in container_names:
        one(name, edited(POD, lambda o, v=value: put(o, cport, v)), c, f"container port name {value!r}", cport)


def values() -> None:
    """Values of the wrong type or out of range."""
    c = "value"
    status = [
        ("pod-podip-number.yaml", "status.podIP", 167772161, "the pod IP is a number"),
        ("pod-podip-octet-256.yaml", "status.podIP", "10.244.1.256", "an octet above 255"),
        ("pod-podip-three-octets.yaml", "status.podIP", "10.244.1", "three octets"),
        ("pod-podip-with-prefix.yaml", "status.podIP", "10.244.1.5/24", "a CIDR, not an address"),
        ("pod-podip-hostname.yaml", "status.podIP", "web-0.prod", "a host name"),
        ("pod-podip-ipv6-zone.yaml", "status.podIP", "fe80::1%eth0", "an IPv6 address with a zone"),
        ("pod-podip-trailing-space.json", "status.podIP", "10.244.1.5 ", "a trailing space"),
        ("pod-podip-bool.yaml", "status.podIP", True, "a boolean"),
        ("pod-podip-nan.json", "status.podIP", math.nan, "JSON NaN"),
    ]
    for name, path, value, why in status:
        obj = edited(POD, lambda o, p=path, v=value: put(o, p, v), lambda o: drop(o, "status.podIPs"))
        one(name, obj, c, why, path)
    podips = [
        ("pod-podips-ip-invalid.yaml", [{"ip": "999.1.1.1"}], "status.podIPs[0].ip", "an invalid IP in podIPs"),
        ("pod-podips-string-items.yaml", ["10.244.1.5"], "status.podIPs[0]", "podIPs items are strings"),
        ("pod-podips-mapping.yaml", {"ip": "10.244.1.5"}, "status.podIPs", "podIPs is a mapping"),
        (
            "pod-podips-two-ipv4.yaml",
            [{"ip": "10.244.1.5"}, {"ip": "10.244.1.6"}],
            "status.podIPs",
            "two IPv4 addresses (at most one per family)",
        ),
        (
            "pod-podips-duplicate.yaml",
            [{"ip": "10.244.1.5"}, {"ip": "10.244.1.5"}],
            "status.podIPs",
            "the same address twice",
        ),
    ]
    for name, value, field, why in podips:
        one(
            name,
            edited(POD, lambda o, v=value: put(o, "status.podIPs", v), lambda o: drop(o, "status.podIP")),
            c,
            why,
            field,
        )
    cp = "spec.containers[0].ports[0]"
    pod_values = [
        ("pod-hostnetwork-string.yaml", "spec.hostNetwork", "true", 'hostNetwork is the string "true"'),
        ("pod-hostnetwork-number.json", "spec.hostNetwork", 1, "hostNetwork is a number"),
        ("pod-nodename-number.yaml", "spec.nodeName", 1, "nodeName is a number"),
        ("pod-phase-number.yaml", "status.phase", 1, "phase is a number"),
        ("pod-containerport-zero.yaml", f"{cp}.containerPort", 0, "containerPort 0"),
        ("pod-containerport-65536.yaml", f"{cp}.containerPort", 65536, "containerPort 65536"),
        ("pod-containerport-negative.yaml", f"{cp}.containerPort", -1, "containerPort -1"),
        ("pod-containerport-string.yaml", f"{cp}.containerPort", "80", "containerPort is a string"),
        ("pod-containerport-float.json", f"{cp}.containerPort", 80.5, "containerPort 80.5"),
        ("pod-containerport-infinity.json", f"{cp}.containerPort", math.inf, "containerPort is JSON Infinity"),
        ("pod-port-protocol-lowercase.yaml", f"{cp}.protocol", "tcp", "protocol tcp (lowercase)"),
        ("pod-port-protocol-icmp.yaml", f"{cp}.protocol", "ICMP", "protocol ICMP"),
    ]
    for name, path, value, why in pod_values:
        one(name, edited(POD, lambda o, p=path, v=value: put(o, p, v)), c, why, path)
    ports = [
        ("np-port-zero.yaml", PORT0, {"port": 0}, "port", "port 0"),
        ("np-port-65536.yaml", PORT0, {"port": 65536}, "port", "port 65536"),
        ("np-port-negative.yaml", PORT0, {"port": -1}, "port", "port -1"),
        ("np-port-float.yaml", PORT0, {"port": 80.5}, "port", "port 80.5"),
        ("np-port-float.json", PORT0, {"port": 80.5}, "port", "port 80.5"),
        ("np-port-quoted-number.yaml", PORT0, {"port": "80"}, "port", 'port "80": a name that is all digits'),
        ("np-port-quoted-number.json", PORT0, {"port": "443"}, "port", 'port "443": a name that is all digits'),
        ("np-port-bool.yaml", PORT0, {"port": True}, "port", "port true"),
        ("np-port-list.yaml", PORT0, {"port": [80]}, "port", "port is a list"),
        ("np-port-nan.yaml", PORT0, {"port": math.nan}, "port", "port .nan"),
        ("np-port-nan.json", PORT0, {"port": math.nan}, "port", "port NaN"),
        ("np-port-infinity.json", PORT0, {"port": math.inf}, "port", "port Infinity"),
        ("np-port-int32-overflow.yaml", PORT0, {"port": 4294967376}, "port", "port beyond int32"),
        ("np-endport-below-port.yaml", PORT1, {"endPort": 7999}, "endPort", "endPort below port"),
        ("np-endport-with-named-port.yaml", PORT2, {"endPort": 60}, "endPort", "endPort with a named port"),
        ("np-endport-without-port.yaml", PORT1, {"port": None}, "endPort", "endPort without port"),
        ("np-endport-65536.yaml", PORT1, {"endPort": 65536}, "endPort", "endPort 65536"),
        ("np-endport-zero.yaml", PORT1, {"endPort": 0}, "endPort", "endPort 0"),
        ("np-endport-string.yaml", PORT1, {"endPort": "8080"}, "endPort", "endPort is a string"),
        ("np-endport-float.json", PORT1, {"endPort": 8080.5}, "endPort", "endPort 8080.5"),
        ("np-egress-port-zero.yaml", f"{EGR}.ports[0]", {"port": 0}, "port", "egress port 0"),
        (
            "np-egress-endport-below-port.yaml",
            f"{EGR}.ports[0]",
            {"endPort": 52},
            "endPort",
            "egress endPort below port",
        ),
        ("np-protocol-lowercase.yaml", PORT0, {"protocol": "tcp"}, "protocol", "protocol tcp (lowercase)"),
        ("np-protocol-icmp.yaml", PORT0, {"protocol": "ICMP"}, "protocol", "protocol ICMP"),
        ("np-protocol-empty.yaml", PORT0, {"protocol": ""}, "protocol", 'protocol ""'),
        ("np-protocol-number.yaml", PORT0, {"protocol": 6}, "protocol", "protocol 6"),
        ("np-protocol-any.json", PORT0, {"protocol": "ANY"}, "protocol", "protocol ANY"),
        ("np-egress-protocol-lowercase.yaml", f"{EGR}.ports[0]", {"protocol": "udp"}, "protocol", "protocol udp"),
    ]
    for name, place, changes, leaf, why in ports:

        def edit(o: Any, p: str = place, ch: dict[str, Any] = changes) -> Any:
            for k, v in ch.items():
                if v is None:
                    drop(o, f"{p}.{k}")
                else:
                    put(o, f"{p}.{k}", v)
            return o

        one(name, edited(NP, edit), c, why, f"{place}.{leaf}")
    blocks = [
        ("np-ipblock-cidr-prefix-33.yaml", IPB, {"cidr": "10.0.0.0/33"}, "cidr", "prefix /33"),
        ("np-ipblock-ipv6-prefix-129.yaml", IPB, {"cidr": "fd00::/129", "except": None}, "cidr", "IPv6 prefix /129"),
        ("np-ipblock-cidr-missing.yaml", IPB, {"cidr": None}, "cidr", "ipBlock without cidr"),
        ("np-ipblock-cidr-empty.yaml", IPB, {"cidr": ""}, "cidr", 'cidr ""'),
        ("np-ipblock-cidr-without-prefix.yaml", IPB, {"cidr": "10.0.0.0"}, "cidr", "an address, not a CIDR"),
        (
            "np-ipblock-cidr-octet-256.yaml",
            IPB,
            {"cidr": "10.0.256.0/24", "except": None},
            "cidr",
            "an octet above 255",
        ),
        ("np-ipblock-cidr-number.yaml", IPB, {"cidr": 10, "except": None}, "cidr", "cidr is a number"),
        ("np-ipblock-cidr-hostname.yaml", IPB, {"cidr": "example.com/8", "except": None}, "cidr", "a host name"),
        ("np-ipblock-cidr-negative-prefix.yaml", IPB, {"cidr": "10.0.0.0/-1"}, "cidr", "prefix /-1"),
        ("np-ipblock-cidr-list.json", IPB, {"cidr": ["10.0.0.0/8"]}, "cidr", "cidr is a list"),
        (
            "np-ipblock-except-outside-cidr.yaml",
            IPB,
            {"except": ["192.168.0.0/24"]},
            "except[0]",
            "except outside cidr",
        ),
        ("np-ipblock-except-equals-cidr.yaml", IPB, {"except": ["10.0.0.0/8"]}, "except[0]", "except equal to cidr"),
        (
            "np-ipblock-except-wider-than-cidr.yaml",
            IPB,
            {"except": ["10.0.0.0/7"]},
            "except[0]",
            "except wider than cidr",
        ),
        (
            "np-ipblock-except-ipv6-in-ipv4.yaml",
            IPB,
            {"except": ["fd00::/64"]},
            "except[0]",
            "IPv6 except in an IPv4 cidr",
        ),
        ("np-ipblock-except-prefix-40.yaml", IPB, {"except": ["10.1.0.0/40"]}, "except[0]", "except prefix /40"),
        ("np-ipblock-except-string.yaml", IPB, {"except": "10.1.0.0/16"}, "except", "except is a string"),
        (
            "np-ipblock-except-second-outside.json",
            IPB,
            {"except": ["10.1.0.0/16", "11.0.0.0/16"]},
            "except[1]",
            "second except outside",
        ),
        (
            "np-egress-ipblock-except-outside-cidr.yaml",
            EIPB,
            {"except": ["10.0.0.0/16"]},
            "except[0]",
            "except outside cidr",
        ),
        ("np-egress-ipblock-cidr-prefix-33.yaml", EIPB, {"cidr": "192.168.0.0/33"}, "cidr", "prefix /33"),
    ]
    for name, place, changes, leaf, why in blocks:

        def edit_block(o: Any, p: str = place, ch: dict[str, Any] = changes) -> Any:
            for k, v in ch.items():
                if v is None:
                    drop(o, f"{p}.{k}")
                else:
                    put(o, f"{p}.{k}", v)
            return o

        one(name, edited(NP, edit_block), c, why, f"{place}.{leaf}")
    peers = [
        (
            "np-peer-ipblock-with-podselector.yaml",
            f"{ING}.from[1]",
            "podSelector",
            {},
            "ipBlock and podSelector in one peer",
        ),
        (
            "np-peer-ipblock-with-namespaceselector.yaml",
            f"{ING}.from[1]",
            "namespaceSelector",
            {},
            "ipBlock and namespaceSelector",
        ),
        (
            "np-egress-peer-ipblock-with-podselector.json",
            f"{EGR}.to[1]",
            "podSelector",
            {"matchLabels": {"a": "b"}},
            "ipBlock and podSelector",
        ),
    ]
    for name, place, key, value, why in peers:
        one(name, edited(NP, lambda o, p=place, k=key, v=value: put(o, f"{p}.{k}", v)), c, why, place)
    empties = [
        ("np-peer-empty.yaml", f"{ING}.from", [{}], f"{ING}.from[0]", "an empty peer {}"),
        ("np-egress-peer-empty.yaml", f"{EGR}.to", [{}], f"{EGR}.to[0]", "an empty peer {}"),
        ("np-peer-empty.json", f"{ING}.from", [{}], f"{ING}.from[0]", "an empty peer {}"),
        (
            "np-peer-podselector-null.yaml",
            f"{ING}.from",
            [{"podSelector": None}],
            f"{ING}.from[0]",
            "a peer whose only selector is null",
        ),
        ("np-peer-null.yaml", f"{ING}.from", [None], f"{ING}.from[0]", "a null peer"),
        ("np-peer-ipblock-null.yaml", f"{EGR}.to", [{"ipBlock": None}], f"{EGR}.to[0]", "a peer whose ipBlock is null"),
        ("np-peer-ipblock-empty.yaml", f"{ING}.from", [{"ipBlock": {}}], f"{ING}.from[0].ipBlock.cidr", "ipBlock {}"),
        ("np-peer-string.yaml", f"{ING}.from", ["app=client"], f"{ING}.from[0]", "a peer that is a string"),
    ]
    for name, path, value, field, why in empties:
        one(name, edited(NP, lambda o, p=path, v=value: put(o, p, v)), c, why, field)
    types = [
        ("np-policytypes-misspelled.yaml", ["Ingres"], "spec.policyTypes[0]", "policyTypes [Ingres]"),
        (
            "np-policytypes-lowercase.yaml",
            ["Ingress", "egress"],
            "spec.policyTypes[1]",
            "policyTypes egress (lowercase)",
        ),
        ("np-policytypes-three.yaml", ["Ingress", "Egress", "Ingress"], "spec.policyTypes", "three policyTypes"),
        ("np-policytypes-string.yaml", "Ingress", "spec.policyTypes", "policyTypes is a string"),
        ("np-policytypes-number.json", [1], "spec.policyTypes[0]", "policyTypes [1]"),
        (
            "np-policytypes-both-in-one.yaml",
            ["Ingress,Egress"],
            "spec.policyTypes[0]",
            'policyTypes ["Ingress,Egress"]',
        ),
    ]
    for name, value, field, why in types:
        one(name, edited(NP, lambda o, v=value: put(o, "spec.policyTypes", v)), c, why, field)
    shapes = [
        ("np-spec-ingress-mapping.yaml", "spec.ingress", {"from": [{"podSelector": {}}]}, "spec.ingress"),
        ("np-spec-egress-string.yaml", "spec.egress", "all", "spec.egress"),
        ("np-spec-podselector-list.yaml", PSEL, [], PSEL),
        ("np-spec-podselector-string.yaml", PSEL, "app=web", PSEL),
        ("np-spec-string.yaml", "spec", "deny-all", "spec"),
        ("np-metadata-list.yaml", "metadata", [{"name": "web-allow"}], "metadata"),
        ("np-metadata-labels-list.yaml", "metadata.labels", ["app=web"], "metadata.labels"),
        ("np-rule-from-mapping.yaml", f"{ING}.from", {"podSelector": {}}, f"{ING}.from"),
        ("np-rule-ports-mapping.json", f"{ING}.ports", {"port": 80}, f"{ING}.ports"),
        ("np-ingress-rule-string.yaml", "spec.ingress", ["allow-all"], "spec.ingress[0]"),
        ("np-ipblock-string.yaml", f"{ING}.from[1].ipBlock", "10.0.0.0/8", f"{ING}.from[1].ipBlock"),
        ("np-resourceversion-number.yaml", "metadata.resourceVersion", 5, "metadata.resourceVersion"),
        ("np-creationtimestamp-invalid.yaml", "metadata.creationTimestamp", "yesterday", "metadata.creationTimestamp"),
        ("np-generation-string.yaml", "metadata.generation", "one", "metadata.generation"),
        ("np-annotations-value-number.yaml", "metadata.annotations", {"owner": 1}, "metadata.annotations"),
        ("np-annotations-value-bool.yaml", "metadata.annotations", {"reviewed": Raw("yes")}, "metadata.annotations"),
        ("np-annotations-key-invalid.yaml", "metadata.annotations", {"bad key": "x"}, "metadata.annotations"),
        ("np-annotations-list.yaml", "metadata.annotations", ["owner=a"], "metadata.annotations"),
        ("ns-finalizers-string.yaml", "spec.finalizers", "kubernetes", "spec.finalizers"),
        ("node-addresses-mapping.yaml", "status.addresses", {"type": "InternalIP"}, "status.addresses"),
    ]
    makers: dict[str, Callable[[], Any]] = {"ns-": NS, "node-": NODE}
    for name, path, value, field in shapes:
        make = next((m for p, m in makers.items() if name.startswith(p)), NP)
        one(name, edited(make, lambda o, p=path, v=value: put(o, p, v)), c, f"{path} has the wrong type", field)
    special = [
        (
            "np-annotations-value-nan.json",
            "metadata.annotations",
            {"owner": math.nan},
            "JSON NaN as an annotation value",
        ),
        ("np-generation-infinity.json", "metadata.generation", math.inf, "JSON Infinity as metadata.generation"),
        ("np-generation-nan.yaml", "metadata.generation", math.nan, ".nan as metadata.generation"),
    ]
    for name, path, value, why in special:
        one(name, edited(NP, lambda o, p=path, v=value: put(o, p, v)), c, why, path)


def lists() -> None:
    """``kind: List`` and typed lists that are broken or hold broken items."""
    c = "list"
    base = kind_list(namespace(), network_policy())
    add(
        "list-items-mapping.yaml",
        to_yaml(put(copy.deepcopy(base), "items", {"np": network_policy()})),
        c,
        "items is a mapping",
        "items",
    )
    add(
        "list-items-mapping.json",
        to_json(put(copy.deepcopy(base), "items", {"np": network_policy()})) + "\n",
        c,
        "items is a mapping",
        "items",
    )
    add(
        "list-items-string.yaml",
        to_yaml(put(copy.deepcopy(base), "items", "web-allow")),
        c,
        "items is a string",
        "items",
    )
    add("list-items-number.yaml", to_yaml(put(copy.deepcopy(base), "items", 3)), c, "items is a number", "items")
    add(
        "list-item-scalar.yaml",
        to_yaml(put(copy.deepcopy(base), "items", ["just a string"])),
        c,
        "an item is a string",
        "items[0]",
    )
    add(
        "list-item-list.yaml",
        to_yaml(put(copy.deepcopy(base), "items", [[network_policy()]])),
        c,
        "an item is a list",
        "items[0]",
    )
    add(
        "list-item-missing-kind.yaml",
        to_yaml(kind_list(edited(NP, lambda o: drop(o, "kind")))),
        c,
        "an item has no kind",
        "kind",
    )
    typed = [
        (
            "networkpolicylist-item-port-zero.yaml",
            kind_list(
                edited(NP, lambda o: put(o, f"{PORT0}.port", 0)), kind="NetworkPolicyList", api="networking.k8s.io/v1"
            ),
            f"{PORT0}.port",
        ),
        (
            "networkpolicylist-item-unknown-field.json",
            kind_list(
                edited(NP, lambda o: rename(o, f"{IPB}.except", "excpet")),
                kind="NetworkPolicyList",
                api="networking.k8s.io/v1",
            ),
            f"{IPB}.excpet",
        ),
        (
            "podlist-item-invalid-ip.yaml",
            kind_list(
                pod("a", ip="10.244.1.20"),
                edited(POD, lambda o: put(o, "status.podIP", "10.244.1.300"), lambda o: drop(o, "status.podIPs")),
                kind="PodList",
            ),
            "status.podIP",
        ),
        (
            "namespacelist-item-uppercase-name.yaml",
            kind_list(namespace("Prod"), kind="NamespaceList"),
            "metadata.name",
        ),
        (
            "nodelist-item-unknown-field.yaml",
            kind_list(edited(NODE, lambda o: rename(o, "status.addresses", "adresses")), kind="NodeList"),
            "status.adresses",
        ),
    ]
    for name, obj, field in typed:
        add(
            name,
            to_json(obj) + "\n" if name.endswith(".json") else to_yaml(obj),
            c,
            "a typed list item is broken",
            field,
        )
    deep_bad = edited(NP, lambda o: rename(o, f"{IPB}.except", "excpet"))
    nested = kind_list(namespace(), kind_list(pod(), kind_list(kind_list(deep_bad))))
    add("list-nested-broken-item-deep.yaml", to_yaml(nested), c, "a broken item four lists deep", f"{IPB}.excpet")
    add(
        "list-nested-broken-item-deep.json", to_json(nested) + "\n", c, "a broken item four lists deep", f"{IPB}.excpet"
    )
    nested_map = kind_list(namespace(), kind_list(pod(), put(kind_list(), "items", {"a": network_policy()})))
    add("list-nested-items-mapping.yaml", to_yaml(nested_map), c, "a nested List whose items is a mapping", "items")
    nested_port = kind_list(kind_list(edited(NP, lambda o: put(o, f"{EGR}.ports[0].port", 70000))))
    add(
        "list-nested-item-port-70000.yaml",
        to_yaml(nested_port),
        c,
        "a nested item with port 70000",
        f"{EGR}.ports[0].port",
    )


def kinds() -> None:
    """Near-miss kinds and API versions that no API server serves."""
    c = "kind"
    for name, make, value in [
        ("np-kind-networkpolicy-lowercase-p.yaml", NP, "Networkpolicy"),
        ("np-kind-all-lowercase.yaml", NP, "networkpolicy"),
        ("np-kind-plural.yaml", NP, "NetworkPolicies"),
        ("np-kind-lower-camelcase.yaml", NP, "networkPolicy"),
        ("np-kind-uppercase.json", NP, "NETWORKPOLICY"),
        ("np-kind-trailing-space.yaml", NP, "NetworkPolicy "),
        ("np-kind-with-group.yaml", NP, "networking.k8s.io/NetworkPolicy"),
        ("np-kind-empty.yaml", NP, ""),
        ("np-kind-number.yaml", NP, 1),
        ("np-kind-list-value.yaml", NP, ["NetworkPolicy"]),
        ("np-kind-short-name.yaml", NP, "netpol"),
        ("pod-kind-plural.yaml", POD, "Pods"),
        ("pod-kind-lowercase.yaml", POD, "pod"),
        ("ns-kind-namespace-camelcase.yaml", NS, "NameSpace"),
        ("ns-kind-plural.yaml", NS, "Namespaces"),
        ("ns-kind-short-name.json", NS, "ns"),
        ("node-kind-lowercase.yaml", NODE, "node"),
        ("node-kind-plural.yaml", NODE, "Nodes"),
        ("list-kind-lowercase.yaml", lambda: kind_list(namespace()), "list"),
    ]:
        one(name, edited(make, lambda o, v=value: put(o, "kind", v)), c, f"kind {value!r}", "kind")
    one("np-kind-missing.yaml", edited(NP, lambda o: drop(o, "kind")), c, "no kind", "kind")
    for name, make, value in [
        ("np-apiversion-networking-v1beta1.yaml", NP, "networking.k8s.io/v1beta1"),
        ("np-apiversion-extensions-v1beta1.yaml", NP, "extensions/v1beta1"),
        ("np-apiversion-core-v1.yaml", NP, "v1"),
        ("np-apiversion-group-without-version.yaml", NP, "networking.k8s.io"),
        ("np-apiversion-group-uppercase.yaml", NP, "Networking.k8s.io/v1"),
        ("np-apiversion-v2.json", NP, "networking.k8s.io/v2"),
        ("np-apiversion-number.yaml", NP, 1),
        ("np-apiversion-trailing-space.yaml", NP, "networking.k8s.io/v1 "),
        ("pod-apiversion-apps-v1.yaml", POD, "apps/v1"),
        ("pod-apiversion-core-slash-v1.yaml", POD, "core/v1"),
        ("pod-apiversion-v2.yaml", POD, "v2"),
        ("ns-apiversion-networking-v1.yaml", NS, "networking.k8s.io/v1"),
        ("node-apiversion-v1beta1.yaml", NODE, "v1beta1"),
    ]:
        one(name, edited(make, lambda o, v=value: put(o, "apiVersion", v)), c, f"apiVersion {value!r}", "apiVersion")


def no_objects() -> None:
    """Files that hold no object at all (kubectl: no objects passed to apply)."""
    c = "empty"
    texts: list[tuple[str, str | bytes, str]] = [
        ("empty-file.yaml", b"", "an empty file"),
        ("empty-file.json", b"", "an empty JSON file"),
        ("whitespace-only.yaml", "  \n\t\n   \n", "only whitespace"),
        ("comments-only.yaml", "# a NetworkPolicy will go here\n# kind: NetworkPolicy\n", "only comments"),
        ("separators-only.yaml", "---\n---\n---\n", "only document separators"),
        (
            "separators-and-comments.yaml",
            "---\n# nothing\n---\n# still nothing\n...\n",
            "separators, comments, an end marker",
        ),
        ("document-end-only.yaml", "...\n", "only a document end marker"),
        ("null-document.yaml", "null\n", "a null document"),
        ("tilde-document.yaml", "~\n", "a ~ (null) document"),
        ("null-documents-many.yaml", "--- null\n--- ~\n---\n--- Null\n", "several null documents"),
        ("empty-sequence-document.yaml", "[]\n", "an empty sequence"),
        ("empty-array.json", "[]\n", "an empty JSON array"),
        ("empty-mapping-document.yaml", "{}\n", "an empty mapping"),
        ("empty-object.json", "{}\n", "an empty JSON object"),
        ("json-null.json", "null\n", "JSON null"),
        ("utf8-bom-only.yaml", b"\xef\xbb\xbf", "only a UTF-8 byte order mark"),
        ("empty-list-items.yaml", to_yaml(kind_list()), "a List with no items"),
        ("empty-list-items.json", to_json(kind_list()) + "\n", "a List with no items"),
        ("list-items-null.yaml", to_yaml(put(kind_list(), "items", None)), "a List whose items is null"),
        (
            "empty-typed-list.yaml",
            to_yaml(kind_list(kind="NetworkPolicyList", api="networking.k8s.io/v1")),
            "an empty NetworkPolicyList",
        ),
        ("list-of-empty-lists.yaml", to_yaml(kind_list(kind_list(), kind_list())), "a List of empty Lists"),
    ]
    for name, text, why in texts:
        add(name, text, c, why)


def encodings() -> None:
    """Bytes that are not UTF-8 YAML or JSON, broken syntax, tabs, tags."""
    c = "encoding"
    valid_yaml = to_yaml(network_policy())
    seed = 12345
    noise = bytearray()
    for _ in range(512):
        seed = (seed * 1103515245 + 12345) % 2**31
        noise.append(seed >> 16 & 0xFF)
    files: list[tuple[str, bytes, str, str | None]] = [
        ("binary-noise.yaml", bytes(noise), "pseudo-random bytes", None),
        ("binary-png-header.yaml", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(noise[:64]), "a PNG header", None),
        (
            "binary-gzip.json",
            b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03" + bytes(noise[:64]),
            "gzip bytes named .json",
            None,
        ),
        (
            "nul-byte-in-name.yaml",
            swap(valid_yaml, "name: web-allow", "name: web\x00allow").encode(),
            "a NUL byte",
            None,
        ),
        ("nul-byte-after-document.yaml", valid_yaml.encode() + b"\x00", "a NUL byte after the document", None),
        (
            "nul-escape-in-json-name.json",
            to_json(put(network_policy(), "metadata.name", "web\x00allow")).encode(),
            "an escaped NUL in the name",
            "metadata.name",
        ),
        (
            "control-character-raw.yaml",
            swap(valid_yaml, "app: web", "app: web\x1b[31m", 1).encode(),
            "a raw ESC byte",
            None,
        ),
        (
            "invalid-utf8-in-label-value.yaml",
            swap(valid_yaml, "app: web", "app: w\xffb", 1).encode("latin-1"),
            "invalid UTF-8 (0xff)",
            None,
        ),
        (
            "invalid-utf8-overlong.yaml",
            swap(valid_yaml.encode(), b"web-allow", b"web\xc0\xafallow"),
            "an overlong UTF-8 sequence",
            None,
        ),
        (
            "invalid-utf8-truncated.json",
            swap(to_json(network_policy()).encode(), b"web-allow", b"web-allow\xe2\x82"),
            "a truncated UTF-8 sequence",
            None,
        ),
        (
            "invalid-utf8-surrogate.yaml",
            swap(valid_yaml.encode(), b"web-allow", b"web\xed\xa0\x80allow"),
            "an encoded UTF-16 surrogate",
            None,
        ),
        (
            "latin1-encoded.yaml",
            swap(valid_yaml, "web-allow", "caf\xe9").encode("latin-1"),
            "Latin-1, not UTF-8",
            None,
        ),
        ("utf16-le-without-bom.yaml", valid_yaml.encode("utf-16-le"), "UTF-16 without a byte order mark", None),
        (
            "utf16-be-without-bom.json",
            to_json(network_policy()).encode("utf-16-be"),
            "UTF-16 JSON without a byte order mark",
            None,
        ),
        (
            "utf16-bom-unknown-field.yaml",
            b"\xff\xfe" + to_yaml(rename(network_policy(), PSEL, "podselector")).encode("utf-16-le"),
            "UTF-16 with a BOM (kubectl decodes it) holding an unknown field",
            None,
        ),
        (
            "utf16-bom-lone-surrogate.yaml",
            b"\xff\xfe" + swap(valid_yaml, "web-allow", "web-\ud800", 1).encode("utf-16-le", "surrogatepass"),
            "UTF-16 with a lone surrogate in the name",
            None,
        ),
        (
            "utf32-bom.yaml",
            b"\xff\xfe\x00\x00" + valid_yaml.encode("utf-32-le"),
            "UTF-32 (kubectl reads only UTF-8 and UTF-16)",
            None,
        ),
    ]
    for name, data, why, field in files:
        add(name, data, c, why, field)
    syntax = [
        (
            "unterminated-double-quote.yaml",
            swap(valid_yaml, "name: web-allow", 'name: "web-allow'),
            "an unterminated double quote",
        ),
        (
            "unterminated-single-quote.yaml",
            swap(valid_yaml, "cidr: 10.0.0.0/8", "cidr: '10.0.0.0/8"),
            "an unterminated single quote",
        ),
        (
            "unterminated-flow-mapping.yaml",
            swap(valid_yaml, "podSelector:\n", "podSelector: {matchLabels: {app: web}\n", 1),
            "an unterminated flow mapping",
        ),
        (
            "unterminated-flow-sequence.yaml",
            swap(valid_yaml, "policyTypes:\n", "policyTypes: [Ingress, Egress\n", 1),
            "an unterminated flow sequence",
        ),
        (
            "unterminated-json-string.json",
            swap(to_json(network_policy()), '"web-allow",', '"web-allow,'),
            "an unterminated JSON string",
        ),
        ("unterminated-json-object.json", to_json(network_policy())[:-2], "a JSON object cut short"),
        ("truncated-json.json", to_json(network_policy())[:300], "JSON truncated mid-way"),
        (
            "json-trailing-comma.json",
            swap(to_json(network_policy()), '"10.1.0.0/16"', '"10.1.0.0/16",', 1),
            "a trailing comma",
        ),
        ("json-comment.json", "// deny all\n" + to_json(network_policy()), "a // comment in JSON"),
        (
            "json-single-quotes.json",
            swap(to_json(network_policy()), '"web-allow"', "'web-allow'"),
            "single-quoted JSON string",
        ),
        (
            "tabs-indentation.yaml",
            swap(valid_yaml, "\n  name: web-allow", "\n\tname: web-allow"),
            "a tab used for indentation",
        ),
        ("tabs-indentation-list.yaml", swap(valid_yaml, "\n    - from:", "\n\t- from:"), "a tab before a list item"),
        (
            "bad-indentation.yaml",
            swap(valid_yaml, "\n  namespace: prod", "\n   namespace: prod"),
            "inconsistent indentation",
        ),
        (
            "mapping-in-scalar-line.yaml",
            swap(valid_yaml, "name: web-allow", "name: web-allow: again"),
            "a colon inside a plain scalar key",
        ),
        (
            "undefined-alias.yaml",
            swap(valid_yaml, "name: web-allow", "name: *nope"),
            "an alias to an undefined anchor",
        ),
        ("yaml-version-2.yaml", "%YAML 2.0\n---\n" + valid_yaml, "a %YAML 2.0 directive"),
    ]
    for name, text, why in syntax:
        add(name, text, c, why)
    tags = [
        (
            "yaml-tag-python-apply-document.yaml",
            '!!python/object/apply:os.system ["touch /tmp/azure-npm-hostile-pwned"]\n',
            "a python/object/apply tag as the document",
        ),
        (
            "yaml-tag-python-apply-in-spec.yaml",
            swap(
                valid_yaml,
                "spec:\n",
                'spec: !!python/object/apply:os.system ["touch /tmp/azure-npm-hostile-pwned"]\nignored:\n',
                1,
            ),
            "a python/object/apply tag as spec",
        ),
        (
            "yaml-tag-python-name-in-name.yaml",
            swap(valid_yaml, "name: web-allow", "name: !!python/name:os.system ''"),
            "a python/name tag as metadata.name",
        ),
        (
            "yaml-tag-python-object-new-label.yaml",
            swap(valid_yaml, "app: web", "app: !!python/object/new:os.system [id]", 1),
            "a python/object/new tag as a label value",
        ),
        (
            "yaml-tag-binary-label-value.yaml",
            swap(valid_yaml, "app: web", "app: !!binary d2ViIQ==", 1),
            "!!binary decoding to an invalid label value",
        ),
        (
            "yaml-tag-binary-name-invalid-utf8.yaml",
            swap(valid_yaml, "name: web-allow", "name: !!binary /w=="),
            "!!binary decoding to a non-UTF-8 name",
        ),
        ("yaml-tag-custom-scalar-document.yaml", "--- !foo bar\n", "a custom tag on a scalar document"),
        (
            "yaml-tag-custom-on-spec-sequence.yaml",
            swap(valid_yaml, "spec:\n", "spec: !foo [a, b]\nignored:\n", 1),
            "a custom tag on a sequence as spec",
        ),
        (
            "yaml-tag-str-on-port.yaml",
            swap(valid_yaml, "port: 80\n", "port: !!str 80\n", 1),
            "!!str 80: a port name that is all digits",
        ),
        (
            "yaml-tag-int-on-name.yaml",
            swap(valid_yaml, "name: web-allow", "name: !!int 42"),
            "!!int as metadata.name",
        ),
    ]
    fields = {"yaml-tag-str-on-port.yaml": f"{PORT0}.port"}
    for name, text, why in tags:
        add(name, text, c, why, fields.get(name))


def bombs() -> None:
    """Alias bombs, self-reference and deep nesting: refused without hanging or crashing."""
    c = "bomb"
    header = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: web-allow\n  namespace: prod\n"

    def laughs(levels: int, width: int, flow_seq: bool = True) -> str:
        lines = ['a0: &a0 "lol"']
        for i in range(1, levels + 1):
            refs = ", ".join([f"*a{i - 1}"] * width)
            lines.append(
                f"a{i}: &a{i} [{refs}]"
                if flow_seq
                else f"a{i}: &a{i} {{{', '.join(f'k{j}: *a{i - 1}' for j in range(width))}}}"
            )
        return "\n".join(lines) + "\n"

    add("bomb-billion-laughs-9x10.yaml", laughs(9, 10), c, "classic billion laughs: 10^9 strings from 9 nested aliases")
    add("bomb-laughs-20x2.yaml", laughs(20, 2), c, "2^20 expansion from a narrow chain")
    add("bomb-laughs-6x40.yaml", laughs(6, 40), c, "40^6 expansion from wide lists")
    add("bomb-laughs-mappings-9x10.yaml", laughs(9, 10, flow_seq=False), c, "billion laughs built from mappings")
    bomb = laughs(9, 10).replace("\n", "\n    ")
    add(
        "bomb-in-annotations.yaml",
        header
        + '  annotations:\n    note: &x ""\n    bomb:\n      '
        + laughs(9, 10).replace("\n", "\n      ").rstrip()
        + "\nspec:\n  podSelector: {}\n",
        c,
        "a billion laughs under metadata.annotations",
    )
    add(
        "bomb-in-unknown-field.yaml",
        header + "spec:\n  podSelector: {}\n  extra:\n    " + bomb.rstrip() + "\n",
        c,
        "a billion laughs under an unknown spec field",
    )
    add(
        "bomb-in-label-value.yaml",
        swap(header, "metadata:\n", "x:\n  " + laughs(9, 10).replace("\n", "\n  ").rstrip() + "\nmetadata:\n")
        + "  labels:\n    app: *a9\nspec:\n  podSelector: {}\n",
        c,
        "a billion laughs as a label value",
    )
    add(
        "bomb-list-items.yaml",
        "apiVersion: v1\nkind: List\nx:\n  " + laughs(8, 10).replace("\n", "\n  ").rstrip() + "\nitems: *a8\n",
        c,
        "a List whose items are 10^8 aliased strings",
    )
    # Type-correct fan-out: every level is a valid NetworkPolicy field, so a reader that expands
    # aliases has 300 x 300 x 300 x 300 label values to check.
    w = 300
    fan = (
        header
        + "x:\n"
        + "  v: &v ["
        + ", ".join(["a"] * w)
        + "]\n"
        + "  e: &e {key: tier, operator: In, values: *v}\n"
        + "  p: &p {podSelector: {matchExpressions: ["
        + ", ".join(["*e"] * w)
        + "]}}\n"
        + "  r: &r {from: ["
        + ", ".join(["*p"] * w)
        + "]}\n"
        + "spec:\n  podSelector: {}\n  ingress: ["
        + ", ".join(["*r"] * w)
        + "]\n"
    )
    add(
        "bomb-typed-fanout-ingress.yaml",
        fan,
        c,
        "300^4 valid-looking label values via aliases defined under an unknown field",
    )
    fan2 = (
        header
        + "spec:\n  podSelector: {}\n  ingress:\n"
        + "  - &r\n    from:\n    - &p\n      podSelector:\n        matchExpressions:\n"
        + "        - &e\n          key: tier\n"
        + "          operator: In\n          values: &v ["
        + ", ".join(["a"] * w)
        + "]\n"
        + "        - "
        + "\n        - ".join(["*e"] * (w - 1))
        + "\n"
        + "    - "
        + "\n    - ".join(["*p"] * (w - 1))
        + "\n"
        + "  - "
        + "\n  - ".join(["*r"] * (w - 1))
        + "\n"
    )
    add(
        "bomb-typed-fanout-in-place.yaml",
        fan2,
        c,
        "300^4 label values via aliases, every node where a NetworkPolicy has it",
    )
    add("bomb-self-sequence.yaml", "&a [*a]\n", c, "a sequence that contains itself")
    add("bomb-self-mapping.yaml", "&a {kind: NetworkPolicy, spec: *a}\n", c, "a mapping that contains itself")
    add(
        "bomb-self-reference-in-spec.yaml",
        header + "spec: &s\n  podSelector: {}\n  ingress:\n  - from:\n    - podSelector: *s\n",
        c,
        "spec refers to itself through a peer's podSelector",
    )
    add(
        "bomb-self-reference-in-annotations.yaml",
        header + "  annotations: &m\n    self: *m\nspec:\n  podSelector: {}\n",
        c,
        "annotations that contain themselves",
    )
    add(
        "bomb-list-contains-itself.yaml",
        "&l\napiVersion: v1\nkind: List\nitems:\n- *l\n",
        c,
        "a kind: List whose only item is itself",
    )
    add(
        "bomb-list-contains-itself-among-others.yaml",
        "&l\napiVersion: v1\nkind: List\nitems:\n"
        + "".join(f"- {json.dumps(namespace(f'ns{i}'))}\n" for i in range(3))
        + "- *l\n",
        c,
        "a kind: List that contains itself after good items",
    )
    add(
        "bomb-list-mutual-recursion.yaml",
        "a: &a {apiVersion: v1, kind: List, items: [&b {apiVersion: v1, kind: List, items: [*a]}]}\n"
        "kind: List\napiVersion: v1\nitems: [*a, *b]\n",
        c,
        "two Lists that contain each other",
    )

    def nest(depth: int, open_: str, close: str, leaf: str = "1") -> str:
        return open_ * depth + leaf + close * depth

    deep = [
        ("deep-json-array-1000.json", nest(1000, "[", "]")),
        ("deep-json-array-10000.json", nest(10000, "[", "]")),
        ("deep-json-object-1000.json", nest(1000, '{"a":', "}")),
        ("deep-yaml-flow-sequence-1000.yaml", nest(1000, "[", "]")),
        ("deep-yaml-flow-sequence-10000.yaml", nest(10000, "[", "]")),
        ("deep-yaml-flow-mapping-1000.yaml", nest(1000, "{a: ", "}")),
        ("deep-yaml-block-sequence-1000.yaml", "- " * 1000 + "x\n"),
        ("deep-yaml-block-sequence-10000.yaml", "- " * 10000 + "x\n"),
    ]
    for name, text in deep:
        add(
            name,
            text + ("\n" if not text.endswith("\n") else ""),
            c,
            f"{name.split('-')[-1].split('.')[0]}-deep nesting as the document",
        )
    np_json = to_json(network_policy())
    add(
        "deep-json-array-in-label-value.json",
        swap(np_json, '"app": "web"', '"app": ' + nest(1000, "[", "]", '"web"'), 1),
        c,
        "a 1000-deep array as a label value",
    )
    add(
        "deep-json-object-in-unknown-field.json",
        swap(np_json, '"spec": {', '"spec": {\n  "extra": ' + nest(10000, "[", "]") + ",", 1),
        c,
        "a 10000-deep array under an unknown field",
    )
    add(
        "deep-yaml-flow-in-annotation.yaml",
        swap(
            to_yaml(network_policy()),
            "metadata:\n",
            "metadata:\n  annotations:\n    note: " + nest(1000, "[", "]") + "\n",
            1,
        ),
        c,
        "a 1000-deep flow sequence as an annotation value",
    )
    add(
        "deep-yaml-block-in-matchlabels.yaml",
        swap(
            to_yaml(network_policy()),
            "    matchLabels:\n      app: web\n",
            "    matchLabels:\n      app: " + "- " * 1000 + "web\n",
            1,
        ),
        c,
        "a 1000-deep block sequence as a matchLabels value",
    )


def mixed() -> None:
    """One bad object among good ones: with --skip-invalid the good ones are still analysed."""
    c = "mixed"
    good = good_objects()
    bad_pod = edited(
        lambda: pod("bad-pod", {"app": "web"}, "10.244.1.13"),
        lambda o: put(o, "status.podIP", "10.244.1.999"),
        lambda o: drop(o, "status.podIPs"),
    )
    cases: list[tuple[str, str, str, str | None, str | None]] = [
        (
            "mixed-bad-policy-unknown-field.yaml",
            docs(*good[:4], edited(bad_allow_policy, lambda o: rename(o, "spec.ingress[0].from", "form")), good[4]),
            "a policy with a misspelled field",
            "spec.ingress[0].form",
            "bad-allow-other",
        ),
        (
            "mixed-bad-policy-port-zero.yaml",
            docs(*good, edited(bad_allow_policy, lambda o: put(o, "spec.ingress[0].ports[0].port", 0))),
            "a policy with port 0",
            "spec.ingress[0].ports[0].port",
            "bad-allow-other",
        ),
        (
            "mixed-bad-policy-duplicate-field.yaml",
            docs(*good, edited(bad_allow_policy, lambda o: dup(o, "spec.podSelector", {}))),
            "a policy with a duplicate field",
            "spec.podSelector",
            "bad-allow-other",
        ),
        (
            "mixed-bad-policy-empty-peer.yaml",
            docs(edited(bad_allow_policy, lambda o: put(o, "spec.ingress[0].from", [{}])), *good),
            "a policy with an empty peer first in the file",
            "spec.ingress[0].from[0]",
            "bad-allow-other",
        ),
        (
            "mixed-bad-policy-wrong-apiversion.yaml",
            docs(*good, edited(bad_allow_policy, lambda o: put(o, "apiVersion", "extensions/v1beta1"))),
            "a policy with a retired apiVersion",
            "apiVersion",
            "bad-allow-other",
        ),
        (
            "mixed-bad-policy-near-miss-kind.yaml",
            docs(*good, edited(bad_allow_policy, lambda o: put(o, "kind", "Networkpolicy"))),
            "a policy whose kind is misspelled",
            "kind",
            "bad-allow-other",
        ),
        (
            "mixed-bad-pod-invalid-ip.yaml",
            docs(*good, bad_pod),
            "a pod with an invalid IP",
            "status.podIP",
            "bad-pod",
        ),
        (
            "mixed-bad-pod-misspelled-field.yaml",
            docs(
                *good,
                edited(
                    lambda: pod("bad-pod", {"app": "web"}, "10.244.1.13"),
                    lambda o: rename(o, "metadata.labels", "lables"),
                ),
            ),
            "a pod with a misspelled field",
            "metadata.lables",
            "bad-pod",
        ),
        (
            "mixed-bad-namespace-uppercase.yaml",
            docs(namespace("Bad-NS"), *good),
            "a namespace with an uppercase name",
            "metadata.name",
            "Bad-NS",
        ),
        (
            "mixed-list-one-broken-item.yaml",
            to_yaml(
                kind_list(*good, edited(bad_allow_policy, lambda o: put(o, "spec.ingress[0].ports[0].protocol", "tcp")))
            ),
            "a List with one broken item",
            "spec.ingress[0].ports[0].protocol",
            "bad-allow-other",
        ),
        (
            "mixed-list-one-broken-item.json",
            to_json(kind_list(*good, edited(bad_allow_policy, lambda o: dup(o, "spec.ingress[0].ports[0].port", 81))))
            + "\n",
            "a JSON List with one item with a duplicate key",
            "spec.ingress[0].ports[0].port",
            "bad-allow-other",
        ),
        (
            "mixed-nested-list-broken-item-deep.yaml",
            to_yaml(
                kind_list(
                    good[0],
                    kind_list(
                        *good[1:4],
                        kind_list(
                            kind_list(edited(bad_allow_policy, lambda o: rename(o, "spec.podSelector", "podselector")))
                        ),
                        good[4],
                    ),
                )
            ),
            "nested Lists with a broken item three lists deep",
            "spec.podselector",
            "bad-allow-other",
        ),
        (
            "mixed-scalar-document.yaml",
            docs(*good[:3]) + "---\njust a string\n---\n" + docs(*good[3:]),
            "a document that is a plain string",
            None,
            None,
        ),
        (
            "mixed-syntax-error-in-middle-document.yaml",
            docs(*good[:3]) + "---\nkind: NetworkPolicy\nmetadata: {name: bad-allow-other\n---\n" + docs(*good[3:]),
            "a YAML syntax error in one document; the documents after it are still read (as kubectl does)",
            None,
            None,
        ),
        (
            "mixed-bad-node-address-field.yaml",
            docs(*good, edited(NODE, lambda o: rename(o, "status.addresses[0].address", "adress"))),
            "a node with a misspelled address field",
            "status.addresses[0].adress",
            "Node n1",
        ),
    ]
    for name, text, why, field, obj in cases:
        add(name, text, c, why, field, folder="mixed", obj=obj)


def valid_files() -> None:
    """The valid objects the cases are built from: every tool must accept them."""
    c = "valid"
    add("valid-networkpolicy.yaml", to_yaml(network_policy()), c, "the NetworkPolicy most cases edit", folder="valid")
    add("valid-networkpolicy.json", to_json(network_policy()) + "\n", c, "the same, as JSON", folder="valid")
    add("valid-pod.yaml", to_yaml(pod()), c, "the Pod the pod cases edit", folder="valid")
    add("valid-namespace.yaml", to_yaml(namespace()), c, "the Namespace the ns cases edit", folder="valid")
    add("valid-node.yaml", to_yaml(node()), c, "the Node the node cases edit", folder="valid")
    add(
        "valid-list.yaml",
        to_yaml(kind_list(namespace(), node(), pod(), network_policy())),
        c,
        "a List of all four",
        folder="valid",
    )
    add("valid-mixed-good-part.yaml", docs(*good_objects()), c, "the good part of every mixed file", folder="valid")
    add(
        "valid-baseline.yaml",
        docs(namespace(), node(), pod(), pod("client", {"app": "client"}, "10.244.1.6"), network_policy()),
        c,
        "what the kernel test applies before the hostile files",
        folder="valid",
    )


def build() -> dict[str, Case]:
    """Every case, generated afresh."""
    CASES.clear()
    for part in (
        unknown_fields,
        duplicates,
        selectors,
        names_and_labels,
        values,
        lists,
        kinds,
        no_objects,
        encodings,
        bombs,
        mixed,
        valid_files,
    ):
        part()
    return CASES


def write(root: Path = HERE) -> dict[str, Case]:
    """Rewrite the three folders and expect.yaml under ``root``."""
    cases = build()
    for folder in FOLDERS:
        shutil.rmtree(root / folder, ignore_errors=True)
        (root / folder).mkdir(parents=True)
    index: dict[str, dict[str, str]] = {}
    for case in sorted(cases.values(), key=lambda c: (c.folder, c.name)):
        (root / case.folder / case.name).write_bytes(case.data)
        entry = {"folder": case.folder, "category": case.category, "why": case.why}
        if case.field:
            entry["field"] = case.field
        if case.obj:
            entry["object"] = case.obj
        index[case.name] = entry
    header = (
        "# Generated by make_corpus.py: what each hostile file is for.\n"
        "# field: a substring the located error must contain (absent when only the file is at fault).\n"
        "# object (mixed/ only): a substring naming the bad object in its error.\n"
    )
    (root / "expect.yaml").write_text(header + yaml.safe_dump(index, sort_keys=True, width=200, allow_unicode=False))
    return cases


if __name__ == "__main__":
    written = write(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
    counts: dict[str, int] = {}
    for case in written.values():
        counts[f"{case.folder}/{case.category}"] = counts.get(f"{case.folder}/{case.category}", 0) + 1
    for key in sorted(counts):
        print(f"{counts[key]:5d}  {key}")
    print(f"{len(written):5d}  total")
