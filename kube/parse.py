"""Turn raw Kubernetes objects (dicts) into validated, defaulted model objects.

Validation follows the API server's rules for networking.k8s.io/v1 NetworkPolicy
(label selector syntax, CIDRs, ports, endPort, protocols, peers) and applies its
defaults (protocol TCP; policyTypes from the rules present); ClusterNetworkPolicy
(policy.networking.k8s.io/v1alpha2) is checked as its CRD's schema and CEL rules check it. Every problem is reported
with its field path; an object with any problem is rejected as a whole.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kube.errors import FieldError
from kube.fields import unknown_field, unknown_fields
from kube.model import (
    DEFAULT_NAMESPACE,
    EGRESS,
    INGRESS,
    NAMESPACE_NAME_LABEL,
    NO_SOURCE,
    PROTOCOLS,
    ClusterNetworkPolicy,
    CNPAction,
    CNPNetworks,
    CNPNodes,
    CNPPeer,
    CNPPods,
    CNPPort,
    CNPRule,
    CNPTier,
    CNPUnsupportedPeer,
    ContainerPort,
    Direction,
    IPBlock,
    IPNetwork,
    Labels,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Node,
    Peer,
    Pod,
    PolicyPort,
    Requirement,
    Rule,
    Source,
    Workload,
    raw_key,
)

# Anchored with \Z, not $: "$" also matches before a trailing newline ("web\n").
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]\Z")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?\Z")
_IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")
OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class Problems:
    """Collects field errors for one object so all of them are reported at once."""

    def __init__(self) -> None:
        self.errors: list[FieldError] = []

    def add(self, path: str, message: str) -> None:
        self.errors.append(FieldError(path, message))


def check_fields(raw: Mapping[str, Any], kind: str, problems: Problems, *, skip: Iterable[str] = ()) -> None:
    """Report every field of ``raw`` that the API's ``kind`` does not have, and every value of
    the wrong type, where the parser has not said something about that field already (nor
    taken it on purpose: the paths in ``skip``)."""
    said = {e.path for e in problems.errors} | set(skip)
    for path, message in unknown_fields(raw, kind):
        if path not in said:
            problems.add(path, message)


def _quote(value: Any, limit: int = 100) -> str:
    """A value for a message, clipped: a 50 MB label value must not become a 50 MB error."""
    text = json.dumps(value, default=str) if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _mapping(value: Any, path: str, problems: Problems, *, required: bool = False) -> Mapping[str, Any]:
    if value is None:
        if required:
            problems.add(path, "required field is missing")
        return {}
    if not isinstance(value, Mapping):
        problems.add(path, f"must be an object, not {type(value).__name__} {_quote(value)}")
        return {}
    return value


def _list(value: Any, path: str, problems: Problems) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        problems.add(path, f"must be a list, not {type(value).__name__} {_quote(value)}")
        return []
    return value


def _string(value: Any, path: str, problems: Problems) -> str | None:
    if not isinstance(value, str):
        problems.add(path, f"must be a string, not {type(value).__name__} {_quote(value)}")
        return None
    return value


def check_label_key(key: Any, path: str, problems: Problems) -> bool:
    """A label key: optional DNS-subdomain prefix (<=253) and ``/``, then a name (<=63)."""
    if not isinstance(key, str):
        problems.add(path, f"label key must be a string, not {_quote(key)}")
        return False
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        problems.add(path, f"{_quote(key)}: prefix must be a lowercase DNS subdomain")
        return False
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        problems.add(
            path,
            f"{_quote(key)} is not a valid label key (at most 63 characters: alphanumerics, "
            "'-', '_' or '.', starting and ending with an alphanumeric)",
        )
        return False
    return True


def check_label_value(value: Any, path: str, problems: Problems) -> bool:
    """A label value: empty, or at most 63 characters of the label alphabet."""
    if not isinstance(value, str):
        problems.add(path, f"label value must be a string, not {type(value).__name__} {_quote(value)}")
        return False
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        problems.add(
            path,
            f"{_quote(value)} is not a valid label value (at most 63 characters: alphanumerics, "
            "'-', '_' or '.', starting and ending with an alphanumeric)",
        )
        return False
    return True


def parse_labels(raw: Any, path: str, problems: Problems) -> Labels:
    """Validate a ``labels``/``matchLabels`` map."""
    out: dict[str, str] = {}
    for key, value in _mapping(raw, path, problems).items():
        key_ok = check_label_key(key, path, problems)
        if key_ok and check_label_value(value, f"{path}.{key}", problems):
            # Interned: the same few keys and values recur on thousands of objects.
            out[sys.intern(key)] = sys.intern(value)
    return Labels(out)


def parse_selector(raw: Any, path: str, problems: Problems) -> LabelSelector:
    """Validate a LabelSelector; ``{}`` and ``None`` both give the empty selector."""
    data = _mapping(raw, path, problems)
    labels = parse_labels(data.get("matchLabels"), f"{path}.matchLabels", problems)
    exprs: list[Requirement] = []
    for i, item in enumerate(_list(data.get("matchExpressions"), f"{path}.matchExpressions", problems)):
        ipath = f"{path}.matchExpressions[{i}]"
        if not isinstance(item, Mapping):
            _mapping(item, ipath, problems, required=True)
            continue
        expr = item  # {} is no requirement the API accepts: it lacks key and operator
        key = expr.get("key")
        if key is None:
            problems.add(f"{ipath}.key", "required field is missing")
            continue
        op = expr.get("operator")
        if op not in OPERATORS:
            if op is None:
                problems.add(f"{ipath}.operator", "required field is missing")
            else:
                problems.add(
                    f"{ipath}.operator",
                    f"{_quote(op)} is not a valid operator (one of {', '.join(OPERATORS)})",
                )
            continue
        if not check_label_key(key, f"{ipath}.key", problems):
            continue
        values = _list(expr.get("values"), f"{ipath}.values", problems)
        if op in ("In", "NotIn") and not values:
            problems.add(f"{ipath}.values", f"must be specified when operator is {op}")
            continue
        if op in ("Exists", "DoesNotExist") and values:
            problems.add(f"{ipath}.values", f"may not be specified when operator is {op}")
            continue
        if all(check_label_value(v, f"{ipath}.values[{j}]", problems) for j, v in enumerate(values)):
            exprs.append(Requirement(key, op, tuple(sorted(set(values)))))
    return LabelSelector(labels, tuple(exprs))


def _check_cidr(raw: Any, path: str, problems: Problems) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if not isinstance(raw, str) or "/" not in raw:
        problems.add(path, f"{_quote(raw)} is not a valid CIDR")
        return None
    try:
        return ipaddress.ip_network(raw, strict=False)
    except ValueError:
        problems.add(path, f"{_quote(raw)} is not a valid CIDR")
        return None


def parse_ip_block(raw: Any, path: str, problems: Problems) -> IPBlock | None:
    """Validate an ipBlock: a CIDR, and ``except`` ranges strictly inside it."""
    data = _mapping(raw, path, problems)
    if "cidr" not in data:
        problems.add(f"{path}.cidr", "required field is missing")
        return None
    before = len(problems.errors)
    net = _check_cidr(data["cidr"], f"{path}.cidr", problems)
    excepts = _list(data.get("except"), f"{path}.except", problems)
    for i, item in enumerate(excepts):
        epath = f"{path}.except[{i}]"
        sub = _check_cidr(item, epath, problems)
        if sub is None or net is None:
            continue
        if sub.version != net.version or not sub.subnet_of(net) or sub == net:  # type: ignore[arg-type]
            problems.add(epath, f"{_quote(item)} must be a strict subset of cidr {_quote(data['cidr'])}")
    if len(problems.errors) != before:
        return None
    return IPBlock(str(data["cidr"]), tuple(str(e) for e in excepts))


def parse_peer(raw: Any, path: str, problems: Problems) -> Peer | None:
    """Validate one ``from``/``to`` entry."""
    data = _mapping(raw, path, problems, required=True)
    present = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if data.get(k) is not None]
    if not present:
        problems.add(path, "must specify a peer (podSelector, namespaceSelector or ipBlock)")
        return None
    if "ipBlock" in present and len(present) > 1:
        problems.add(path, "may not specify both ipBlock and another peer")
        return None
    if "ipBlock" in present:
        block = parse_ip_block(data["ipBlock"], f"{path}.ipBlock", problems)
        return Peer(ip_block=block) if block else None
    pods = parse_selector(data["podSelector"], f"{path}.podSelector", problems) if "podSelector" in present else None
    nss = (
        parse_selector(data["namespaceSelector"], f"{path}.namespaceSelector", problems)
        if "namespaceSelector" in present
        else None
    )
    return Peer(pod_selector=pods, namespace_selector=nss)


def _valid_port_name(name: str) -> bool:
    return (
        len(name) <= 15
        and bool(_IANA_SVC_NAME.match(name))
        and "--" not in name
        and any(c.isalpha() for c in name)
    )


def parse_policy_port(raw: Any, path: str, problems: Problems) -> PolicyPort | None:
    """Validate one ``ports`` entry and default its protocol to TCP."""
    data = _mapping(raw, path, problems, required=True)
    before = len(problems.errors)
    protocol = data.get("protocol", "TCP")
    if protocol is None:
        protocol = "TCP"
    if protocol not in PROTOCOLS:
        problems.add(f"{path}.protocol", f"{_quote(protocol)} is not supported (one of TCP, UDP, SCTP)")
    port = data.get("port")
    end_port = data.get("endPort")
    if isinstance(port, bool):
        problems.add(f"{path}.port", f"{_quote(port)} is not a port number or name")
    elif isinstance(port, int):
        if not 1 <= port <= 65535:
            problems.add(f"{path}.port", f"{port} must be between 1 and 65535, inclusive")
    elif isinstance(port, str):
        if port.isdigit():
            # A quoted number is an IntOrString string, which must be a valid name: it is not.
            problems.add(f"{path}.port", f"{_quote(port)} must be a number, not a quoted string")
        elif not _valid_port_name(port):
            problems.add(
                f"{path}.port",
                f"{_quote(port)} is not a valid port name (at most 15 lowercase alphanumerics or '-', "
                "with at least one letter, no '--', not starting or ending with '-')",
            )
    elif port is not None:
        problems.add(f"{path}.port", f"{_quote(port)} is not a port number or name")
    if end_port is not None:
        if isinstance(end_port, bool) or not isinstance(end_port, int):
            problems.add(f"{path}.endPort", f"{_quote(end_port)} must be a number")
        elif port is None:
            problems.add(f"{path}.endPort", "may not be specified when port is not specified")
        elif isinstance(port, str):
            problems.add(f"{path}.endPort", "may not be specified when port is non-numeric")
        elif not 1 <= end_port <= 65535:
            problems.add(f"{path}.endPort", f"{end_port} must be between 1 and 65535, inclusive")
        elif isinstance(port, int) and end_port < port:
            problems.add(f"{path}.endPort", f"{end_port} must be greater than or equal to port {port}")
    if len(problems.errors) != before:
        return None
    if end_port == port:
        end_port = None  # a one-port range is that port
    return PolicyPort(str(protocol), port, end_port)


def _parse_rules(raw: Any, path: str, peer_field: str, problems: Problems) -> tuple[Rule, ...]:
    rules = []
    for i, item in enumerate(_list(raw, path, problems)):
        rpath = f"{path}[{i}]"
        data = _mapping(item, rpath, problems)
        peers = [
            parse_peer(p, f"{rpath}.{peer_field}[{j}]", problems)
            for j, p in enumerate(_list(data.get(peer_field), f"{rpath}.{peer_field}", problems))
        ]
        ports = [
            parse_policy_port(p, f"{rpath}.ports[{j}]", problems)
            for j, p in enumerate(_list(data.get("ports"), f"{rpath}.ports", problems))
        ]
        rules.append(
            Rule(tuple(p for p in peers if p is not None), tuple(p for p in ports if p is not None))
        )
    return tuple(rules)


def _metadata(raw: Mapping[str, Any], problems: Problems, *, namespaced: bool) -> tuple[str, str, Labels, str, str]:
    meta = _mapping(raw.get("metadata"), "metadata", problems, required=True)
    name = meta.get("name")
    if name is None:
        problems.add("metadata.name", "required field is missing")
        name = ""
    elif not isinstance(name, str) or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        problems.add("metadata.name", f"{_quote(name)} is not a valid name (a lowercase RFC 1123 subdomain)")
        name = str(name)
    namespace = ""
    if namespaced:
        namespace = meta.get("namespace") or DEFAULT_NAMESPACE
        if not isinstance(namespace, str) or len(namespace) > 63 or not _DNS1123_LABEL.match(namespace):
            problems.add("metadata.namespace", f"{_quote(namespace)} is not a valid namespace name")
            namespace = str(namespace)
        namespace = sys.intern(namespace)
    labels = parse_labels(meta.get("labels"), "metadata.labels", problems)
    _check_annotations(meta.get("annotations"), problems)
    return name, namespace, labels, str(meta.get("uid") or ""), str(meta.get("resourceVersion") or "")


MAX_ANNOTATIONS_BYTES = 256 * 1024  # the API server's limit on all annotations of an object


def _check_annotations(raw: Any, problems: Problems) -> None:
    """Annotation keys are label-like keys; all of them together at most 256 KiB."""
    if not isinstance(raw, Mapping):
        return  # null or absent; a wrong type is reported by the field check
    total = 0
    for key, value in raw.items():
        check_label_key(key, "metadata.annotations", problems)
        total += len(str(key)) + (len(value) if isinstance(value, str) else 0)
    if total > MAX_ANNOTATIONS_BYTES:
        problems.add("metadata.annotations", f"total size {total:,} bytes is over the {MAX_ANNOTATIONS_BYTES:,} limit")


def object_name(raw: Any) -> str:
    """``Kind ns/name`` (or ``Kind name``) for messages, tolerant of malformed input."""
    if not isinstance(raw, Mapping):
        return "object"
    kind = raw.get("kind") if isinstance(raw.get("kind"), str) else "object"
    name = f"{kind} {raw_key(kind, raw)}"
    # A name with a newline or a control character must not break the message it is in.
    return name if name.isprintable() else json.dumps(name)[1:-1]


def parse_network_policy(raw: Mapping[str, Any], source: Source = NO_SOURCE) -> NetworkPolicy:
    """Validate and default a NetworkPolicy; raises ``ParseFailure`` listing every problem."""
    problems = Problems()
    name, namespace, _labels, uid, rv = _metadata(raw, problems, namespaced=True)
    spec = _mapping(raw.get("spec"), "spec", problems)
    selector = parse_selector(spec.get("podSelector"), "spec.podSelector", problems)
    ingress = _parse_rules(spec.get("ingress"), "spec.ingress", "from", problems)
    egress = _parse_rules(spec.get("egress"), "spec.egress", "to", problems)
    raw_types = spec.get("policyTypes")
    if raw_types is None or raw_types == []:
        types: tuple[str, ...] = (INGRESS, EGRESS) if egress else (INGRESS,)
    else:
        seen: list[str] = []
        for i, t in enumerate(_list(raw_types, "spec.policyTypes", problems)):
            if t not in (INGRESS, EGRESS):
                problems.add(f"spec.policyTypes[{i}]", f"{_quote(t)} is not supported (Ingress or Egress)")
            elif t in seen:
                problems.add(f"spec.policyTypes[{i}]", f"duplicate value {_quote(t)}")
            else:
                seen.append(t)
        types = tuple(t for t in (INGRESS, EGRESS) if t in seen)
    check_fields(raw, "NetworkPolicy", problems)
    if problems.errors:
        raise ParseFailure(problems.errors)
    return NetworkPolicy(namespace, name, selector, ingress, egress, types, uid, rv, source, _annotations(raw))


def _annotations(raw: Mapping[str, Any]) -> Labels:
    """``metadata.annotations`` (already checked by ``_metadata``), or none."""
    found = (raw.get("metadata") or {}).get("annotations")
    if not isinstance(found, Mapping) or not found:
        return Labels()
    return Labels({k: v for k, v in found.items() if isinstance(v, str)})


def _ip(raw: Any, path: str, problems: Problems) -> str | None:
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):  # ip_address() would take 167772161 for 10.0.0.1
        problems.add(path, f"must be a string, not {type(raw).__name__} {_quote(raw)}")
        return None
    if "%" in raw:  # ip_address() takes a zone (fe80::1%eth0); a pod address has none
        problems.add(path, f"{_quote(raw)} is not a valid IP address (no zone allowed)")
        return None
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        problems.add(path, f"{_quote(raw)} is not a valid IP address")
        return None


def parse_pod(raw: Mapping[str, Any], source: Source = NO_SOURCE) -> Pod:
    """Read the parts of a Pod that policy depends on. The IP may be empty (allocated later)."""
    problems = Problems()
    name, namespace, labels, uid, _rv = _metadata(raw, problems, namespaced=True)
    spec = _mapping(raw.get("spec"), "spec", problems)
    status = _mapping(raw.get("status"), "status", problems)
    ip = _ip(status.get("podIP"), "status.podIP", problems)
    host_ip = sys.intern(_ip(status.get("hostIP"), "status.hostIP", problems) or "")  # shared by a node's pods
    ips: list[str] = []
    for i, entry in enumerate(_list(status.get("podIPs"), "status.podIPs", problems)):
        value = _ip(_mapping(entry, f"status.podIPs[{i}]", problems).get("ip"), f"status.podIPs[{i}].ip", problems)
        if value:
            ips.append(value)
    if len(set(ips)) != len(ips):
        problems.add("status.podIPs", "holds the same address twice")
    if len({ipaddress.ip_address(a).version for a in ips}) != len(ips):
        problems.add("status.podIPs", "may hold at most one address of each family (IPv4, IPv6)")
    if ip is not None and ips and ips[0] != ip:
        problems.add("status.podIPs[0].ip", f"must equal status.podIP {_quote(ip)}")
    if ip is None and ips:
        ip = ips[0]
    if ip and ip not in ips:
        ips.insert(0, ip)
    elif ip and ips[0] == ip:
        ips[0] = ip  # one string for both fields
    node, host_network, ports = _pod_spec(spec, "spec", problems)
    phase = status.get("phase") or "Running"
    check_fields(raw, "Pod", problems)
    if problems.errors:
        raise ParseFailure(problems.errors)
    return Pod(
        namespace=namespace,
        name=name,
        labels=labels,
        ip=ip or "",
        ips=tuple(ips),
        node=node,
        host_network=host_network,
        phase=sys.intern(str(phase)),
        ports=ports,
        uid=uid,
        source=source,
        host_ip=host_ip,
        owner=_controller(raw),
    )


def _pod_spec(spec: Mapping[str, Any], path: str, problems: Problems) -> tuple[str, bool, tuple[ContainerPort, ...]]:
    """(node name, hostNetwork, declared ports) of a pod spec at ``path`` (a pod's or a template's)."""
    node = spec.get("nodeName") or ""
    if not isinstance(node, str):
        problems.add(f"{path}.nodeName", f"must be a string, not {_quote(node)}")
        node = ""
    node = sys.intern(node)
    host_network = spec.get("hostNetwork", False)
    if not isinstance(host_network, bool):
        problems.add(f"{path}.hostNetwork", f"must be true or false, not {_quote(host_network)}")
        host_network = False
    ports: list[ContainerPort] = []
    for ci, container in enumerate(_list(spec.get("containers"), f"{path}.containers", problems)):
        cpath = f"{path}.containers[{ci}]"
        cdata = _mapping(container, cpath, problems)
        for pi, entry in enumerate(_list(cdata.get("ports"), f"{cpath}.ports", problems)):
            ppath = f"{cpath}.ports[{pi}]"
            pdata = _mapping(entry, ppath, problems)
            number = pdata.get("containerPort")
            if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 65535:
                problems.add(f"{ppath}.containerPort", f"{_quote(number)} must be a number from 1 to 65535")
                continue
            protocol = pdata.get("protocol") or "TCP"
            if protocol not in PROTOCOLS:
                problems.add(f"{ppath}.protocol", f"{_quote(protocol)} is not supported (one of TCP, UDP, SCTP)")
                continue
            pname = pdata.get("name")
            if pname is not None and (not isinstance(pname, str) or not _valid_port_name(pname)):
                problems.add(f"{ppath}.name", f"{_quote(pname)} is not a valid port name")
                continue
            ports.append(ContainerPort(number, sys.intern(protocol), sys.intern(pname) if pname else pname))
    return node, host_network, tuple(ports)


def _controller(raw: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, name) of the object's controller (the ownerReference with ``controller: true``)."""
    meta = raw.get("metadata")
    refs = meta.get("ownerReferences") if isinstance(meta, Mapping) else None
    for ref in refs if isinstance(refs, list) else ():
        if isinstance(ref, Mapping) and ref.get("controller") is True:
            kind, name = ref.get("kind"), ref.get("name")
            if isinstance(kind, str) and isinstance(name, str):
                return kind, name
    return None


# Where each workload kind keeps its pod template.
TEMPLATE_PATHS = {
    "Deployment": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def parse_workload(raw: Mapping[str, Any], source: Source = NO_SOURCE) -> Workload:
    """Read a workload's pod template: the labels, ports and hostNetwork its pods will have."""
    problems = Problems()
    kind = str(raw.get("kind"))
    name, namespace, _labels, _uid, _rv = _metadata(raw, problems, namespaced=True)
    template: Any = raw
    path = ""
    for step in TEMPLATE_PATHS[kind]:
        path = f"{path}.{step}" if path else step
        template = _mapping(template.get(step) if isinstance(template, Mapping) else None, path, problems,
                            required=True)
    meta = _mapping(template.get("metadata"), f"{path}.metadata", problems)
    labels = parse_labels(meta.get("labels"), f"{path}.metadata.labels", problems)
    spec = _mapping(template.get("spec"), f"{path}.spec", problems)
    node, host_network, ports = _pod_spec(spec, f"{path}.spec", problems)
    check_fields(raw, kind, problems)
    if problems.errors:
        raise ParseFailure(problems.errors)
    return Workload(kind, namespace, name, labels, ports, host_network, _controller(raw), node, source)


def parse_namespace(raw: Mapping[str, Any], source: Source = NO_SOURCE) -> Namespace:
    """Read a Namespace and add the API server's ``kubernetes.io/metadata.name`` label."""
    problems = Problems()
    name, _ns, labels, _uid, _rv = _metadata(raw, problems, namespaced=False)
    if name and (len(name) > 63 or not _DNS1123_LABEL.match(name)):
        problems.add("metadata.name", f"{_quote(name)} is not a valid namespace name (a DNS label, at most 63)")
    check_fields(raw, "Namespace", problems)
    if problems.errors:
        raise ParseFailure(problems.errors)
    return Namespace(name, labels.with_label(NAMESPACE_NAME_LABEL, name), source=source, annotations=_annotations(raw))


def parse_node(raw: Mapping[str, Any], source: Source = NO_SOURCE) -> Node:
    """Read a Node's name and InternalIP."""
    problems = Problems()
    name, _ns, labels, _uid, _rv = _metadata(raw, problems, namespaced=False)
    status = _mapping(raw.get("status"), "status", problems)
    ip = ""
    for i, addr in enumerate(_list(status.get("addresses"), "status.addresses", problems)):
        data = _mapping(addr, f"status.addresses[{i}]", problems)
        if data.get("type") == "InternalIP" and not ip:
            ip = _ip(data.get("address"), f"status.addresses[{i}].address", problems) or ""
    check_fields(raw, "Node", problems)
    if problems.errors:
        raise ParseFailure(problems.errors)
    return Node(name, ip, source=source, ip_from="InternalIP" if ip else "", labels=labels)


# -- ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) ------------------------------
# The CRD's validation (experimental channel, v0.2.0): kubebuilder markers and CEL rules.
CNP_MAX_RULES = 25  # ingress, egress; and peers, protocols, networks, domainNames per rule/peer
CNP_MAX_RULE_NAME = 100
CNP_MAX_PRIORITY = 1000
CNP_MAX_CIDR_LENGTH = 43
# The CRD's pattern as the API server applies it, its "A-z" (which also admits [\]^_`) included.
_CNP_LABEL = r"[a-zA-z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?"
_CNP_DOMAIN = re.compile(rf"^(\*\.)?({_CNP_LABEL}\.)+{_CNP_LABEL}\.?\Z")
_CIDR_PREFIX = re.compile(r"(0|[1-9][0-9]{0,2})\Z")
_CNP_PEERS = {INGRESS: ("namespaces", "pods"), EGRESS: ("namespaces", "pods", "networks", "nodes", "domainNames")}
_CNP_PROTOCOLS = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}
NO_DNS = "domain names need DNS interception, which this implementation does not do"


def _one_of(data: Mapping[str, Any], path: str, names: Sequence[str], problems: Problems) -> str | None:
    """The one field of ``data`` that is set (the CRD's minProperties/maxProperties 1), or None."""
    present = [k for k, v in data.items() if v is not None]
    if len(present) == 1:
        return str(present[0])
    what = "none" if not present else ", ".join(str(k) for k in present)
    problems.add(path, f"must set exactly one of {', '.join(names)} (has {what})")
    return None


def _items(raw: Any, path: str, problems: Problems, *, least: int = 0, most: int = CNP_MAX_RULES) -> list[Any]:
    """A list of at least ``least`` and at most ``most`` items (the CRD's minItems/maxItems)."""
    items = _list(raw, path, problems)
    if raw is not None and isinstance(raw, list) and not least <= len(items) <= most:
        bound = f"at least {least}" if len(items) < least else f"at most {most}"
        problems.add(path, f"must have {bound} item(s), has {len(items)}")
    return items


def _unique_strings(raw: Any, path: str, problems: Problems) -> list[str]:
    """A ``listType=set`` list of strings: 1 to 25 items, no duplicates."""
    out: list[str] = []
    for i, item in enumerate(_items(raw, path, problems, least=1)):
        value = _string(item, f"{path}[{i}]", problems)
        if value is not None and value in out:
            problems.add(f"{path}[{i}]", f"duplicate value {_quote(value)}")
        elif value is not None:
            out.append(value)
    return out


def _cel_cidr(raw: str, path: str, problems: Problems) -> IPNetwork | None:
    """A CIDR as the API server's CEL ``isCIDR`` takes it: ``address/length`` (host bits
    allowed), no leading zeros, no zone, no IPv4-mapped IPv6 address; at most 43 characters."""
    address, slash, length = raw.partition("/")
    if len(raw) > CNP_MAX_CIDR_LENGTH:
        problems.add(path, f"{_quote(raw)} is longer than {CNP_MAX_CIDR_LENGTH} characters")
        return None
    try:
        if not slash or "%" in address or not _CIDR_PREFIX.match(length):
            raise ValueError
        network = ipaddress.ip_network(raw, strict=False)
        mapped = isinstance(network, ipaddress.IPv6Network) and ipaddress.IPv6Address(address).ipv4_mapped
    except ValueError:
        problems.add(path, f"{_quote(raw)} is not a valid CIDR (such as 10.0.0.0/8 or fd00::/8)")
        return None
    if mapped:
        problems.add(path, f"{_quote(raw)}: an IPv4-mapped IPv6 address is not allowed (write the IPv4 CIDR)")
        return None
    return network


def _namespaced_pods(raw: Any, path: str, problems: Problems) -> CNPPods:
    data = _mapping(raw, path, problems, required=True)
    if isinstance(raw, Mapping) and data.get("podSelector") is None:
        problems.add(f"{path}.podSelector", "required field is missing")
    return CNPPods(
        parse_selector(data.get("namespaceSelector"), f"{path}.namespaceSelector", problems),
        parse_selector(data.get("podSelector"), f"{path}.podSelector", problems),
        "pods",
    )


def _cnp_peer(raw: Any, path: str, direction: Direction, problems: Problems,
              understood: list[str]) -> CNPPeer | None:
    """One ``from``/``to`` entry. A single field this implementation does not know makes an
    unsupported peer (fail closed), not an error: the API server of a newer CRD version
    accepts it; ``understood`` gets its path so the unknown-field check leaves it alone."""
    known = _CNP_PEERS[direction]
    data = _mapping(raw, path, problems, required=True)
    if not isinstance(raw, Mapping):
        return None
    name = _one_of(data, path, known, problems)
    if name is None:
        return None
    value, where = data[name], f"{path}.{name}"
    if name not in known:
        understood.append(where)
        return CNPUnsupportedPeer(name, f"{unknown_field(name, dict.fromkeys(known))} of a v1alpha2 "
                                        f"{direction.word} peer")
    if name == "namespaces":
        return CNPPods(parse_selector(value, where, problems), LabelSelector(), "namespaces")
    if name == "pods":
        return _namespaced_pods(value, where, problems)
    if name == "networks":
        strings = _unique_strings(value, where, problems)
        nets = [_cel_cidr(s, f"{where}[{i}]", problems) for i, s in enumerate(strings)]
        return CNPNetworks(tuple(n for n in nets if n is not None))
    if name == "nodes":
        return CNPNodes(parse_selector(value, where, problems))
    # domainNames: checked as the CRD checks it, then kept as a peer this implementation cannot match.
    for i, domain in enumerate(_unique_strings(value, where, problems)):
        if not _CNP_DOMAIN.match(domain):
            problems.add(f"{where}[{i}]", f"{_quote(domain)} is not a domain name (such as example.com or "
                                          "*.example.com)")
    return CNPUnsupportedPeer("domainNames", NO_DNS)


def _cnp_port(raw: Any, path: str, problems: Problems) -> CNPPort | None:
    data = _mapping(raw, path, problems, required=True)
    given = isinstance(raw, Mapping)
    name = _one_of(data, path, ("tcp", "udp", "sctp", "destinationNamedPort"), problems) if given else None
    if name == "destinationNamedPort":
        named = _string(data[name], f"{path}.{name}", problems)
        return CNPPort(named_port=named) if named is not None else None
    if name not in _CNP_PROTOCOLS:
        return None  # nothing set (said above), or an unknown field (said by the field check)
    where = f"{path}.{name}"
    destination = _mapping(data[name], where, problems).get("destinationPort")
    if destination is None:
        if isinstance(data[name], Mapping):
            problems.add(where, "must set destinationPort")  # the CRD's minProperties: 1
        return None
    where += ".destinationPort"
    port = _mapping(destination, where, problems)
    kind = _one_of(port, where, ("number", "range"), problems) if isinstance(destination, Mapping) else None
    if kind == "number":
        number = _port_number(port["number"], f"{where}.number", problems)
        return CNPPort(_CNP_PROTOCOLS[name], number) if number is not None else None
    if kind != "range":
        return None
    span = _mapping(port["range"], f"{where}.range", problems)
    if not isinstance(port["range"], Mapping):
        return None
    for bound in ("start", "end"):
        if span.get(bound) is None:
            problems.add(f"{where}.range.{bound}", "required field is missing")
    start = _port_number(span.get("start"), f"{where}.range.start", problems)
    end = _port_number(span.get("end"), f"{where}.range.end", problems)
    if start is None or end is None:
        return None
    if start >= end:
        problems.add(f"{where}.range", f"start ({start}) must be less than end ({end})")
        return None
    return CNPPort(_CNP_PROTOCOLS[name], start, end)


def _port_number(raw: Any, path: str, problems: Problems) -> int | None:
    if raw is None:
        return None  # missing: said by the caller
    if isinstance(raw, bool) or not isinstance(raw, int):
        problems.add(path, f"must be an integer, not {type(raw).__name__} {_quote(raw)}")
        return None
    if not 1 <= raw <= 65535:
        problems.add(path, f"{raw} must be between 1 and 65535, inclusive")
        return None
    return raw


def _cnp_rules(raw: Any, direction: Direction, problems: Problems, understood: list[str]) -> tuple[CNPRule, ...]:
    path = f"spec.{direction.word}"
    rules = []
    for i, item in enumerate(_items(raw, path, problems)):
        rpath = f"{path}[{i}]"
        data = _mapping(item, rpath, problems, required=True)
        if not isinstance(item, Mapping):
            continue
        action = data.get("action")
        if action is None:
            problems.add(f"{rpath}.action", "required field is missing")
        elif action not in tuple(CNPAction):
            problems.add(f"{rpath}.action", f"{_quote(action)} is not supported (one of {', '.join(CNPAction)})")
        name = data.get("name") or ""
        if isinstance(name, str) and len(name) > CNP_MAX_RULE_NAME:
            problems.add(f"{rpath}.name", f"is {len(name)} characters long, over the limit of {CNP_MAX_RULE_NAME}")
        field_ = direction.peer_field
        if data.get(field_) is None:
            problems.add(f"{rpath}.{field_}", "required field is missing (at least one peer)")
        peers = [
            _cnp_peer(p, f"{rpath}.{field_}[{j}]", direction, problems, understood)
            for j, p in enumerate(_items(data.get(field_), f"{rpath}.{field_}", problems, least=1))
        ]
        ports = [
            _cnp_port(p, f"{rpath}.protocols[{j}]", problems)
            for j, p in enumerate(_items(data.get("protocols"), f"{rpath}.protocols", problems, least=1))
        ]
        # The CRD's CEL rule on egress rules: only pods have named ports.
        addressed = [p for p in peers if isinstance(p, CNPNetworks | CNPNodes)
                     or (isinstance(p, CNPUnsupportedPeer) and p.field == "domainNames")]
        if direction is EGRESS and addressed and any(p is not None and p.is_named for p in ports):
            problems.add(rpath, "a networks, nodes or domainNames peer cannot be used with destinationNamedPort "
                                "(only pods have named ports)")
        if action in tuple(CNPAction) and isinstance(name, str):
            rules.append(CNPRule(CNPAction(action), tuple(p for p in peers if p is not None),
                                 tuple(p for p in ports if p is not None), name))
    return tuple(rules)


def parse_cluster_network_policy(raw: Mapping[str, Any], source: Source = NO_SOURCE) -> ClusterNetworkPolicy:
    """Validate a ClusterNetworkPolicy as its CRD does; raises ``ParseFailure`` listing every problem.

    A peer this implementation does not understand (``domainNames``, or a single unknown
    field) is kept as a :class:`CNPUnsupportedPeer` rather than refused, so that its rule
    fails closed; the loader says so for each one.
    """
    problems = Problems()
    name, _ns, _labels, uid, rv = _metadata(raw, problems, namespaced=False)
    spec = _mapping(raw.get("spec"), "spec", problems, required=True)
    has_spec = isinstance(raw.get("spec"), Mapping)  # else only "spec" is said to be wrong
    tier = spec.get("tier")
    if has_spec and tier is None:
        problems.add("spec.tier", "required field is missing")
    elif tier is not None and tier not in tuple(CNPTier):
        problems.add("spec.tier", f"{_quote(tier)} is not supported (one of {', '.join(CNPTier)})")
    priority = spec.get("priority")
    if has_spec and priority is None:
        problems.add("spec.priority", "required field is missing")
    elif priority is not None and (isinstance(priority, bool) or not isinstance(priority, int)):
        problems.add("spec.priority", f"must be an integer, not {type(priority).__name__} {_quote(priority)}")
    elif priority is not None and not 0 <= priority <= CNP_MAX_PRIORITY:
        problems.add("spec.priority", f"{priority} must be between 0 and {CNP_MAX_PRIORITY}, inclusive")
    subject = CNPPods()
    if has_spec:
        data = _mapping(spec.get("subject"), "spec.subject", problems, required=True)
        given = isinstance(spec.get("subject"), Mapping)
        chosen = _one_of(data, "spec.subject", ("namespaces", "pods"), problems) if given else None
        if chosen == "namespaces":
            subject = CNPPods(parse_selector(data[chosen], "spec.subject.namespaces", problems),
                              LabelSelector(), "namespaces")
        elif chosen == "pods":
            subject = _namespaced_pods(data[chosen], "spec.subject.pods", problems)
    understood: list[str] = []
    ingress = _cnp_rules(spec.get("ingress"), INGRESS, problems, understood)
    egress = _cnp_rules(spec.get("egress"), EGRESS, problems, understood)
    check_fields(raw, "ClusterNetworkPolicy", problems, skip=understood)
    if problems.errors:
        raise ParseFailure(problems.errors)
    return ClusterNetworkPolicy(name, CNPTier(tier), int(priority), subject, ingress, egress, uid, rv, source)


class ParseFailure(Exception):
    """All the field errors of one rejected object."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


PARSERS = {
    "NetworkPolicy": parse_network_policy,
    "Pod": parse_pod,
    "Namespace": parse_namespace,
    "Node": parse_node,
    "ClusterNetworkPolicy": parse_cluster_network_policy,
    **{kind: parse_workload for kind in TEMPLATE_PATHS},
}
