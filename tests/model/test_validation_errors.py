"""Every validation rule of kube.parse reports file, document, object and field path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from kube.load import load_paths

VALID = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}


def netpol(spec: Any, name: str = "p", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": "x", **meta},
        "spec": spec,
    }


def ingress_peer(peer: Any) -> dict[str, Any]:
    return netpol({"podSelector": {}, "ingress": [{"from": [peer]}]})


def ingress_port(port: Any) -> dict[str, Any]:
    return netpol({"podSelector": {}, "ingress": [{"ports": [port]}]})


def selector(sel: Any) -> dict[str, Any]:
    return netpol({"podSelector": sel})


def a_pod(spec: Any = None, status: Any = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "x", **meta},
        "spec": spec if spec is not None else {"containers": []},
        "status": status if status is not None else {},
    }


NP = "NetworkPolicy x/p"
CASES: list[tuple[str, dict[str, Any], str, str, str]] = [
    # (id, object, expected object name, expected field path, message fragment)
    ("selector-not-object", selector("app=web"), NP, "spec.podSelector", "must be an object"),
    ("selector-unknown-field", selector({"matchLabel": {}}), NP, "spec.podSelector.matchLabel", "unknown field"),
    (
        "label-key-invalid",
        selector({"matchLabels": {"-bad": "x"}}),
        NP,
        "spec.podSelector.matchLabels",
        "not a valid label key",
    ),
    (
        "label-key-prefix-invalid",
        selector({"matchLabels": {"Bad_Prefix/app": "x"}}),
        NP,
        "spec.podSelector.matchLabels",
        "prefix",
    ),
    (
        "label-key-too-long",
        selector({"matchLabels": {"a" * 64: "x"}}),
        NP,
        "spec.podSelector.matchLabels",
        "not a valid label key",
    ),
    (
        "label-value-invalid",
        selector({"matchLabels": {"app": "web!"}}),
        NP,
        "spec.podSelector.matchLabels.app",
        "not a valid label value",
    ),
    (
        "label-value-not-string",
        selector({"matchLabels": {"app": 3}}),
        NP,
        "spec.podSelector.matchLabels.app",
        "must be a string",
    ),
    (
        "match-expressions-not-list",
        selector({"matchExpressions": {"key": "a"}}),
        NP,
        "spec.podSelector.matchExpressions",
        "must be a list",
    ),
    ("expression-null", selector({"matchExpressions": [None]}), NP, "spec.podSelector.matchExpressions[0]", "required"),
    (
        "expression-key-missing",
        selector({"matchExpressions": [{"operator": "Exists"}]}),
        NP,
        "spec.podSelector.matchExpressions[0].key",
        "required",
    ),
    (
        "expression-operator-missing",
        selector({"matchExpressions": [{"key": "a"}]}),
        NP,
        "spec.podSelector.matchExpressions[0].operator",
        "required",
    ),
    (
        "expression-operator-invalid",
        selector({"matchExpressions": [{"key": "a", "operator": "Equals"}]}),
        NP,
        "spec.podSelector.matchExpressions[0].operator",
        "not a valid operator",
    ),
    (
        "expression-key-invalid",
        selector({"matchExpressions": [{"key": "a b", "operator": "Exists"}]}),
        NP,
        "spec.podSelector.matchExpressions[0].key",
        "not a valid label key",
    ),
    (
        "in-without-values",
        selector({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}),
        NP,
        "spec.podSelector.matchExpressions[0].values",
        "must be specified",
    ),
    (
        "exists-with-values",
        selector({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["b"]}]}),
        NP,
        "spec.podSelector.matchExpressions[0].values",
        "may not be specified",
    ),
    (
        "expression-value-invalid",
        selector({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["ok", "not ok"]}]}),
        NP,
        "spec.podSelector.matchExpressions[0].values[1]",
        "not a valid label value",
    ),
    ("ipblock-cidr-missing", ingress_peer({"ipBlock": {}}), NP, "spec.ingress[0].from[0].ipBlock.cidr", "required"),
    (
        "ipblock-cidr-invalid",
        ingress_peer({"ipBlock": {"cidr": "10.0.0.0/33"}}),
        NP,
        "spec.ingress[0].from[0].ipBlock.cidr",
        "not a valid CIDR",
    ),
    (
        "ipblock-cidr-no-prefix",
        ingress_peer({"ipBlock": {"cidr": "10.0.0.1"}}),
        NP,
        "spec.ingress[0].from[0].ipBlock.cidr",
        "not a valid CIDR",
    ),
    (
        "ipblock-except-invalid",
        ingress_peer({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["nope"]}}),
        NP,
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "not a valid CIDR",
    ),
    (
        "ipblock-except-outside",
        ingress_peer({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}),
        NP,
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "strict subset",
    ),
    (
        "ipblock-except-equal",
        ingress_peer({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}),
        NP,
        "spec.ingress[0].from[0].ipBlock.except[0]",
        "strict subset",
    ),
    ("peer-empty", ingress_peer({}), NP, "spec.ingress[0].from[0]", "must specify a peer"),
    ("peer-null", ingress_peer(None), NP, "spec.ingress[0].from[0]", "required"),
    (
        "peer-unknown-field",
        ingress_peer({"podSelector": {}, "serviceAccount": "x"}),
        NP,
        "spec.ingress[0].from[0].serviceAccount",
        "unknown field",
    ),
    (
        "peer-ipblock-and-selector",
        ingress_peer({"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}),
        NP,
        "spec.ingress[0].from[0]",
        "both ipBlock",
    ),
    (
        "port-protocol-invalid",
        ingress_port({"protocol": "ICMP", "port": 80}),
        NP,
        "spec.ingress[0].ports[0].protocol",
        "not supported",
    ),
    ("port-out-of-range", ingress_port({"port": 0}), NP, "spec.ingress[0].ports[0].port", "between 1 and 65535"),
    ("port-boolean", ingress_port({"port": True}), NP, "spec.ingress[0].ports[0].port", "not a port number or name"),
    ("port-quoted-number", ingress_port({"port": "80"}), NP, "spec.ingress[0].ports[0].port", "quoted string"),
    (
        "port-name-invalid",
        ingress_port({"port": "http--alt"}),
        NP,
        "spec.ingress[0].ports[0].port",
        "not a valid port name",
    ),
    (
        "port-name-too-long",
        ingress_port({"port": "a-very-long-port-name"}),
        NP,
        "spec.ingress[0].ports[0].port",
        "not a valid port name",
    ),
    ("port-other-type", ingress_port({"port": [80]}), NP, "spec.ingress[0].ports[0].port", "not a port number or name"),
    (
        "end-port-not-number",
        ingress_port({"port": 80, "endPort": "90"}),
        NP,
        "spec.ingress[0].ports[0].endPort",
        "must be a number",
    ),
    (
        "end-port-without-port",
        ingress_port({"endPort": 90}),
        NP,
        "spec.ingress[0].ports[0].endPort",
        "port is not specified",
    ),
    (
        "end-port-with-named-port",
        ingress_port({"port": "http", "endPort": 90}),
        NP,
        "spec.ingress[0].ports[0].endPort",
        "non-numeric",
    ),
    (
        "end-port-out-of-range",
        ingress_port({"port": 80, "endPort": 70000}),
        NP,
        "spec.ingress[0].ports[0].endPort",
        "between 1 and 65535",
    ),
    (
        "end-port-below-port",
        ingress_port({"port": 80, "endPort": 79}),
        NP,
        "spec.ingress[0].ports[0].endPort",
        "greater than or equal",
    ),
    (
        "rule-unknown-field",
        netpol({"podSelector": {}, "egress": [{"from": []}]}),
        NP,
        "spec.egress[0].from",
        "unknown field",
    ),
    ("rules-not-list", netpol({"podSelector": {}, "ingress": {"from": []}}), NP, "spec.ingress", "must be a list"),
    ("spec-unknown-field", netpol({"podSelector": {}, "ingres": []}), NP, "spec.ingres", "unknown field"),
    (
        "policy-type-invalid",
        netpol({"podSelector": {}, "policyTypes": ["Inbound"]}),
        NP,
        "spec.policyTypes[0]",
        "not supported",
    ),
    (
        "policy-type-duplicate",
        netpol({"podSelector": {}, "policyTypes": ["Ingress", "Ingress"]}),
        NP,
        "spec.policyTypes[1]",
        "duplicate",
    ),
    (
        "metadata-missing",
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "spec": {}},
        "NetworkPolicy default/<unnamed>",
        "metadata",
        "required",
    ),
    (
        "name-missing",
        {"kind": "NetworkPolicy", "metadata": {"namespace": "x"}, "spec": {}},
        "NetworkPolicy x/<unnamed>",
        "metadata.name",
        "required",
    ),
    (
        "name-invalid",
        netpol({"podSelector": {}}, name="Bad_Name"),
        "NetworkPolicy x/Bad_Name",
        "metadata.name",
        "not a valid name",
    ),
    (
        "namespace-invalid",
        {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "X.y"}, "spec": {}},
        "NetworkPolicy X.y/p",
        "metadata.namespace",
        "not a valid namespace",
    ),
    (
        "api-version-unsupported",
        {**netpol({"podSelector": {}}), "apiVersion": "extensions/v1beta1"},
        NP,
        "apiVersion",
        "not supported",
    ),
    ("kind-missing", {"metadata": {"name": "p"}}, "object default/p", "kind", "required"),
    ("pod-ip-invalid", a_pod(status={"podIP": "10.0.0.300"}), "Pod x/p", "status.podIP", "not a valid IP"),
    ("pod-ips-invalid", a_pod(status={"podIPs": [{"ip": "zz"}]}), "Pod x/p", "status.podIPs[0].ip", "not a valid IP"),
    ("pod-node-name-not-string", a_pod(spec={"nodeName": 5}), "Pod x/p", "spec.nodeName", "must be a string"),
    ("pod-host-network-not-bool", a_pod(spec={"hostNetwork": "yes"}), "Pod x/p", "spec.hostNetwork", "true or false"),
    (
        "pod-container-port-invalid",
        a_pod(spec={"containers": [{"ports": [{"containerPort": 0}]}]}),
        "Pod x/p",
        "spec.containers[0].ports[0].containerPort",
        "from 1 to 65535",
    ),
    (
        "pod-container-protocol-invalid",
        a_pod(spec={"containers": [{"ports": [{"containerPort": 80, "protocol": "tcp"}]}]}),
        "Pod x/p",
        "spec.containers[0].ports[0].protocol",
        "not supported",
    ),
    (
        "pod-container-port-name-invalid",
        a_pod(spec={"containers": [{"ports": [{"containerPort": 80, "name": "HTTP"}]}]}),
        "Pod x/p",
        "spec.containers[0].ports[0].name",
        "not a valid port name",
    ),
    ("pod-labels-invalid", a_pod(labels={"app": "a b"}), "Pod x/p", "metadata.labels.app", "not a valid label value"),
    (
        "namespace-name-not-dns-label",
        {"kind": "Namespace", "metadata": {"name": "a.b"}},
        "Namespace a.b",
        "metadata.name",
        "DNS label",
    ),
    (
        "node-address-invalid",
        {"kind": "Node", "metadata": {"name": "n1"}, "status": {"addresses": [{"type": "InternalIP", "address": "x"}]}},
        "Node n1",
        "status.addresses[0].address",
        "not a valid IP",
    ),
]


@pytest.mark.parametrize(("raw", "obj", "path", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_error_names_file_document_object_and_field(
    tmp_path: Path, raw: dict[str, Any], obj: str, path: str, fragment: str
) -> None:
    file = tmp_path / "in.yaml"
    file.write_text(yaml.safe_dump_all([VALID, raw]))
    result = load_paths([str(file)])
    assert result.errors, "expected a validation error"
    matching = [e for e in result.errors if e.path == path]
    assert matching, f"no error at {path}: {[str(e) for e in result.errors]}"
    err = matching[0]
    assert err.source.file == str(file) and err.source.document == 1
    assert err.obj == obj
    assert fragment in err.message
    text = str(err)
    assert str(file) in text and "[1]" in text and obj in text and path in text
    assert err.to_json()["field"] == path
    # The valid namespace in the same file is still loaded.
    assert "x" in result.cluster.namespace_by_name


def test_all_problems_of_one_object_are_reported(tmp_path: Path) -> None:
    raw = netpol(
        {"podSelector": {"matchLabels": {"a": "b c"}}, "ingress": [{"ports": [{"port": 0}, {"protocol": "X"}]}]}
    )
    file = tmp_path / "in.yaml"
    file.write_text(yaml.safe_dump(raw))
    paths = {e.path for e in load_paths([str(file)]).errors}
    assert paths == {
        "spec.podSelector.matchLabels.a",
        "spec.ingress[0].ports[0].port",
        "spec.ingress[0].ports[1].protocol",
    }


def test_one_bad_object_does_not_stop_the_others(tmp_path: Path) -> None:
    good = netpol({"podSelector": {}}, name="good")
    bad = netpol({"podSelector": {}, "policyTypes": ["Nope"]}, name="bad")
    file = tmp_path / "in.yaml"
    file.write_text(yaml.safe_dump_all([bad, good]))
    result = load_paths([str(file)])
    assert [p.key for p in result.cluster.policies] == ["x/good"]
    assert len(result.errors) == 1 and result.errors[0].obj == "NetworkPolicy x/bad"
