"""Write kube/fields.json: every field of the objects the tools read, from the kubernetes client.

The strict reader (kube.parse) refuses unknown fields as the API server's strict field
validation does. It needs the API's field names, which the official client's models carry
(``attribute_map``, ``openapi_types``); importing the client costs about a second, so the
table is derived once, here, and committed. Run after upgrading the client:

    python scripts/gen_kube_fields.py

ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2) is a CRD, not in the client: its
fields are written out below (``CRD_TYPES``, named after the Go types of
kubernetes-sigs/network-policy-api ``apis/v1alpha2/clusternetworkpolicy_types.go``) and
checked against the CRD's own schema, the experimental channel's
``config/crd/experimental/policy.networking.k8s.io_clusternetworkpolicies.yaml`` (a superset
of the standard channel's), with:

    python scripts/gen_kube_fields.py --check-crd PATH/TO/THAT.yaml
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import models

ROOTS = (
    "V1NetworkPolicy", "V1Pod", "V1Namespace", "V1Node",
    "V1Deployment", "V1ReplicaSet", "V1StatefulSet", "V1DaemonSet", "V1Job", "V1CronJob", "V1ReplicationController",
)
SCALARS = {"str": "str", "int": "int", "bool": "bool", "float": "number", "datetime": "datetime"}
# Quantities ("1", 1, "500m") are strings in the client's models but numbers are accepted too.
QUANTITIES = {"sizeLimit", "divisor"}
CNP = "V1alpha2ClusterNetworkPolicy"
_PROTOCOL = {"destinationPort": "V1alpha2Port"}
# The CRD's types; V1ObjectMeta and V1LabelSelector are the client's (the CRD embeds metav1's).
CRD_TYPES: dict[str, dict[str, str]] = {
    CNP: {"apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta",
          "spec": "V1alpha2ClusterNetworkPolicySpec", "status": "any"},  # status: written by implementations
    "V1alpha2ClusterNetworkPolicySpec": {
        "tier": "str", "priority": "int", "subject": "V1alpha2ClusterNetworkPolicySubject",
        "ingress": "list:V1alpha2ClusterNetworkPolicyIngressRule",
        "egress": "list:V1alpha2ClusterNetworkPolicyEgressRule",
    },
    "V1alpha2ClusterNetworkPolicySubject": {"namespaces": "V1LabelSelector", "pods": "V1alpha2NamespacedPod"},
    "V1alpha2NamespacedPod": {"namespaceSelector": "V1LabelSelector", "podSelector": "V1LabelSelector"},
    "V1alpha2ClusterNetworkPolicyIngressRule": {
        "name": "str", "action": "str", "from": "list:V1alpha2ClusterNetworkPolicyIngressPeer",
        "protocols": "list:V1alpha2ClusterNetworkPolicyProtocol",
    },
    "V1alpha2ClusterNetworkPolicyEgressRule": {
        "name": "str", "action": "str", "to": "list:V1alpha2ClusterNetworkPolicyEgressPeer",
        "protocols": "list:V1alpha2ClusterNetworkPolicyProtocol",
    },
    "V1alpha2ClusterNetworkPolicyIngressPeer": {"namespaces": "V1LabelSelector", "pods": "V1alpha2NamespacedPod"},
    "V1alpha2ClusterNetworkPolicyEgressPeer": {
        "namespaces": "V1LabelSelector", "pods": "V1alpha2NamespacedPod", "networks": "list:str",
        "nodes": "V1LabelSelector", "domainNames": "list:str",
    },
    "V1alpha2ClusterNetworkPolicyProtocol": {
        "tcp": "V1alpha2ClusterNetworkPolicyProtocolTCP", "udp": "V1alpha2ClusterNetworkPolicyProtocolUDP",
        "sctp": "V1alpha2ClusterNetworkPolicyProtocolSCTP", "destinationNamedPort": "str",
    },
    "V1alpha2ClusterNetworkPolicyProtocolTCP": _PROTOCOL,
    "V1alpha2ClusterNetworkPolicyProtocolUDP": _PROTOCOL,
    "V1alpha2ClusterNetworkPolicyProtocolSCTP": _PROTOCOL,
    "V1alpha2Port": {"number": "int", "range": "V1alpha2PortRange"},
    "V1alpha2PortRange": {"start": "int", "end": "int"},
}
OUT = Path(__file__).resolve().parents[1] / "kube" / "fields.json"
_LIST = re.compile(r"^(?:list|List)\[(.+)\]$")
_MAP = re.compile(r"^(?:dict\(str, (.+)\)|Dict\[str, (.+)\])$")


def normalise(type_name: str) -> str:
    """``V1Foo`` | ``list:<type>`` | ``map:<type>`` | a scalar: ``str``, ``int``, ``bool``,
    ``number``, ``datetime``, or ``any`` (int-or-string, free-form objects, quantities)."""
    if m := _LIST.match(type_name):
        return "list:" + normalise(m.group(1))
    if m := _MAP.match(type_name):
        return "map:" + normalise(m.group(1) or m.group(2))
    if hasattr(models, type_name):
        return type_name
    return SCALARS.get(type_name, "any")


def check_crd(path: str) -> list[str]:
    """Where ``CRD_TYPES`` and the CRD's openAPIV3Schema disagree on a field or its JSON type."""
    import yaml

    with open(path) as fh:
        crd = yaml.safe_load(fh)
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha2"]
    problems: list[str] = []
    scalar = {"str": "string", "int": "integer", "bool": "boolean"}

    def walk(schema: dict[str, Any], type_name: str, where: str) -> None:
        if type_name == "any":
            return
        if type_name.startswith("list:"):
            if schema.get("type") != "array":
                problems.append(f"{where}: the CRD has {schema.get('type')}, not a list")
            else:
                walk(schema["items"], type_name[5:], f"{where}[]")
            return
        if type_name in scalar:
            if schema.get("type") != scalar[type_name]:
                problems.append(f"{where}: the CRD has {schema.get('type')}, not {scalar[type_name]}")
            return
        if type_name in ("V1ObjectMeta",):
            return  # metav1's, from the client; the CRD leaves it open
        # metav1.LabelSelector: only its two field names are compared (the client has its types).
        selector = {"matchExpressions": "any", "matchLabels": "any"}
        fields = selector if type_name == "V1LabelSelector" else CRD_TYPES[type_name]
        theirs = set(schema.get("properties", {}))
        for name in sorted(theirs ^ set(fields)):
            problems.append(f"{where}.{name}: {'missing here' if name in theirs else 'not in the CRD'}")
        for name in sorted(theirs & set(fields)):
            walk(schema["properties"][name], fields[name], f"{where}.{name}")

    walk(version["schema"]["openAPIV3Schema"], CNP, "ClusterNetworkPolicy")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check-crd", metavar="YAML", help="compare CRD_TYPES with this CRD file and exit")
    args = parser.parse_args()
    if args.check_crd:
        problems = check_crd(args.check_crd)
        print("\n".join(problems) or f"CRD_TYPES agrees with {args.check_crd}")
        sys.exit(1 if problems else 0)
    table: dict[str, dict[str, str]] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in table:
            continue
        cls = getattr(models, name)
        fields = {cls.attribute_map[attr]: normalise(kind) for attr, kind in cls.openapi_types.items()}
        fields.update({f: "any" for f in QUANTITIES & set(fields)})
        table[name] = dict(sorted(fields.items()))
        for kind in fields.values():
            inner = kind.split(":")[-1]
            if hasattr(models, inner):
                todo.append(inner)
    table.update(CRD_TYPES)
    doc = {"client": kubernetes.__version__, "roots": [*ROOTS, CNP], "types": dict(sorted(table.items()))}
    OUT.write_text(json.dumps(doc, indent=0, sort_keys=False) + "\n")
    print(f"wrote {OUT}: {len(table)} types from kubernetes {kubernetes.__version__} and {len(CRD_TYPES)} of the CRD")


if __name__ == "__main__":
    main()
