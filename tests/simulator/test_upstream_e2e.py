"""The upstream Kubernetes e2e NetworkPolicy connectivity cases, as simulator tests.

Restated from test/e2e/network/netpol/network_policy.go (kubernetes/kubernetes): three
namespaces x, y, z (labelled ns=<name> plus the automatic kubernetes.io/metadata.name),
pods a, b, c in each (labelled pod=<name>) serving 80 and 81 on TCP, UDP and SCTP under
the names serve-<port>-<proto>. Each case creates policies (in one or more steps) and
states the expected truth table as changes to "everything allowed". Upstream ignores
loopback; the simulator documents that a pod always reaches itself, and checks that too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from kube.model import Cluster, PortSpec
from simulator.build import cluster_of, container_port, namespace, pod, policy
from simulator.engine import Simulator

NS = ("x", "y", "z")
NAMES = ("a", "b", "c")
PODS = tuple(f"{n}/{p}" for n in NS for p in NAMES)
NAME_LABEL = "kubernetes.io/metadata.name"

Spec = dict[str, Any] | Callable[[dict[str, str]], dict[str, Any]]
Change = tuple[str, str, bool]  # (source pattern, destination pattern, allowed)


@dataclass
class Step:
    """Policies in force (ns, name, spec), label updates, and expectations per port."""

    policies: list[tuple[str, str, Spec]]
    expect: dict[str, list[Change]]  # "80/TCP" -> changes to all-allowed
    ns_labels: dict[str, dict[str, str]] = field(default_factory=dict)
    pod_labels: dict[str, dict[str, str]] = field(default_factory=dict)


def ml(**labels: str) -> dict[str, Any]:
    return {"matchLabels": dict(labels)}


def expr(key: str, op: str, *values: str) -> dict[str, Any]:
    item: dict[str, Any] = {"key": key, "operator": op}
    if values:
        item["values"] = list(values)
    return {"matchExpressions": [item]}


def ns_is(name: str) -> dict[str, Any]:
    return {"matchLabels": {NAME_LABEL: name}}


def ingress(target: dict, *rules: dict, types: list[str] | None = None) -> dict[str, Any]:
    return {"podSelector": target, "policyTypes": types or ["Ingress"], "ingress": list(rules)}


def egress(target: dict, *rules: dict) -> dict[str, Any]:
    return {"podSelector": target, "policyTypes": ["Egress"], "egress": list(rules)}


def one(ns: str, name: str, spec: Spec, expect: dict[str, list[Change]]) -> list[Step]:
    """A case of one step with one policy."""
    return [Step([(ns, name, spec)], expect)]


def pod_in(ns: str, pod_name: str) -> dict[str, Any]:
    """A peer: pod ``pod=<pod_name>`` of namespace ``ns``."""
    return {"namespaceSelector": ns_is(ns), "podSelector": ml(pod=pod_name)}


DENY_INGRESS = {"podSelector": {}, "policyTypes": ["Ingress"]}
DENY_EGRESS = {"podSelector": {}, "policyTypes": ["Egress"]}
DENY_ALL = {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
POD_A = ml(pod="a")


def e2e_objects(ns_labels: dict[str, dict[str, str]], pod_labels: dict[str, dict[str, str]]) -> list[dict[str, Any]]:
    ports = [
        container_port(number, proto, f"serve-{number}-{proto.lower()}")
        for number in (80, 81)
        for proto in ("TCP", "UDP", "SCTP")
    ]
    objs = [namespace(n, {"ns": n, **ns_labels.get(n, {})}) for n in NS]
    for key in PODS:
        n, p = key.split("/")
        objs.append(pod(n, p, {"pod": p, **pod_labels.get(key, {})}, ports=ports))
    return objs


def pod_ips() -> dict[str, str]:
    cluster = cluster_of(e2e_objects({}, {}))
    return {p.key: p.ip for p in cluster.pods}


def _matches(pattern: str, key: str) -> bool:
    return pattern == "*" or pattern == key or pattern == key.split("/")[0]


def expected_table(changes: list[Change]) -> dict[tuple[str, str], bool]:
    table = {(s, d): True for s in PODS for d in PODS}
    for src_pat, dst_pat, value in changes:
        for s, d in table:
            if _matches(src_pat, s) and _matches(dst_pat, d):
                table[(s, d)] = value
    for key in PODS:
        table[(key, key)] = True  # a pod always reaches itself
    return table


def build(step: Step) -> Cluster:
    ips = pod_ips()
    objs = e2e_objects(step.ns_labels, step.pod_labels)
    for ns, name, spec in step.policies:
        objs.append(policy(ns, name, spec(ips) if callable(spec) else spec))
    return cluster_of(objs)


def large_cidr(ip: str) -> str:
    """The /4 containing ``ip`` (what upstream uses around a pod address)."""
    first = int(ip.split(".")[0]) & 0xF0
    return f"{first}.0.0.0/4"


CASES: dict[str, list[Step]] = {
    "default-deny-ingress": one("x", "deny-ingress", DENY_INGRESS, {"80/TCP": [("*", "x", False)]}),
    "default-deny-all": one("x", "deny-all", DENY_ALL, {"80/TCP": [("*", "x", False), ("x", "*", False)]}),
    "allow-from-pods-in-server-namespace-by-pod-selector": one(
        "x",
        "x-a-allows-x-b",
        ingress(POD_A, {"from": [{"podSelector": ml(pod="b")}]}),
        {"80/TCP": [("*", "x/a", False), ("x/b", "x/a", True)]},
    ),
    "allow-ingress-for-a-target": [
        Step(
            [
                ("x", "deny-all", DENY_INGRESS),
                ("x", "allow-all-to-a", ingress(POD_A, {"from": [{"podSelector": {}, "namespaceSelector": {}}]})),
            ],
            {"80/TCP": [("*", "x/b", False), ("*", "x/c", False)]},
        )
    ],
    "allow-ingress-from-all-namespaces": one(
        "x", "allow-from-another-ns", ingress(POD_A, {"from": [{"namespaceSelector": {}}]}), {"80/TCP": []}
    ),
    "allow-only-from-other-namespace-by-namespace-selector": one(
        "x",
        "allow-client-a-via-ns-selector",
        ingress(POD_A, {"from": [{"namespaceSelector": ns_is("y")}]}),
        {"80/TCP": [("x", "x/a", False), ("z", "x/a", False)]},
    ),
    "pod-selector-with-match-expressions": one(
        "x",
        "x-a-allows-x-b",
        ingress(POD_A, {"from": [{"podSelector": expr("pod", "In", "b")}]}),
        {"80/TCP": [("*", "x/a", False), ("x/b", "x/a", True)]},
    ),
    "namespace-selector-with-match-expressions": one(
        "x",
        "allow-ns-y",
        ingress(POD_A, {"from": [{"namespaceSelector": expr("ns", "In", "y")}]}),
        {"80/TCP": [("x", "x/a", False), ("z", "x/a", False)]},
    ),
    "pod-selector-or-namespace-selector": one(
        "x",
        "allow-ns-not-x-or-pod-b",
        ingress(POD_A, {"from": [{"namespaceSelector": expr("ns", "NotIn", "x")}, {"podSelector": ml(pod="b")}]}),
        {"80/TCP": [("x/c", "x/a", False)]},
    ),
    "pod-selector-and-namespace-selector": one(
        "x",
        "allow-ns-not-x-and-pod-b",
        ingress(POD_A, {"from": [{"namespaceSelector": expr("ns", "NotIn", "x"), "podSelector": ml(pod="b")}]}),
        {"80/TCP": [("*", "x/a", False), ("y/b", "x/a", True), ("z/b", "x/a", True)]},
    ),
    "multiple-pod-selectors-and-namespace-selectors": one(
        "x",
        "allow-ns-y-z-pod-b-c",
        ingress(
            POD_A,
            {
                "from": [
                    {
                        "namespaceSelector": expr("ns", "NotIn", "x"),
                        "podSelector": expr("pod", "In", "b", "c"),
                    }
                ]
            },
        ),
        {"80/TCP": [("x", "x/a", False), ("y/a", "x/a", False), ("z/a", "x/a", False)]},
    ),
    "any-pod-selectors": one(
        "x",
        "allow-x-b-c",
        ingress(POD_A, {"from": [{"podSelector": ml(pod="b")}, {"podSelector": ml(pod="c")}]}),
        {"80/TCP": [("*", "x/a", False), ("x/b", "x/a", True), ("x/c", "x/a", True)]},
    ),
    "only-from-a-pod-in-another-namespace": one(
        "x",
        "allow-y-a",
        ingress(POD_A, {"from": [pod_in("y", "a")]}),
        {"80/TCP": [("*", "x/a", False), ("y/a", "x/a", True)]},
    ),
    "ports": one(
        "x",
        "allow-81",
        ingress(POD_A, {"from": [{"namespaceSelector": ns_is("y")}], "ports": [{"port": 81}]}),
        {
            "81/TCP": [("x", "x/a", False), ("y", "x/a", True), ("z", "x/a", False)],
            "80/TCP": [("*", "x/a", False)],
        },
    ),
    "stacked-policies-with-overlapping-pod-selectors": [
        Step(
            [("x", "allow-81", ingress(POD_A, {"from": [{"namespaceSelector": ns_is("y")}], "ports": [{"port": 81}]}))],
            {"81/TCP": [("x", "x/a", False), ("z", "x/a", False)], "80/TCP": [("*", "x/a", False)]},
        ),
        Step(
            [
                (
                    "x",
                    "allow-81",
                    ingress(POD_A, {"from": [{"namespaceSelector": ns_is("y")}], "ports": [{"port": 81}]}),
                ),
                (
                    "x",
                    "allow-80",
                    ingress(POD_A, {"from": [{"namespaceSelector": ns_is("y")}], "ports": [{"port": 80}]}),
                ),
            ],
            {
                "81/TCP": [("x", "x/a", False), ("z", "x/a", False)],
                "80/TCP": [("x", "x/a", False), ("z", "x/a", False)],
            },
        ),
    ],
    "allow-all": one("x", "allow-all", ingress({}, {}), {"80/TCP": [], "81/TCP": []}),
    "ingress-on-one-named-port": one(
        "x",
        "allow-81-by-name",
        ingress({}, {"ports": [{"port": "serve-81-tcp"}]}),
        {"81/TCP": [], "80/TCP": [("*", "x", False)]},
    ),
    "ingress-from-namespace-on-one-named-port": one(
        "x",
        "allow-y-on-80-by-name",
        ingress(
            POD_A,
            {
                "from": [{"namespaceSelector": ns_is("y")}],
                "ports": [{"port": "serve-80-tcp", "protocol": "TCP"}],
            },
        ),
        {"80/TCP": [("x", "x/a", False), ("z", "x/a", False)], "81/TCP": [("*", "x/a", False)]},
    ),
    "egress-on-one-named-port": one(
        "x",
        "allow-egress-80-by-name",
        egress({}, {"ports": [{"port": "serve-80-tcp"}]}),
        {"80/TCP": [], "81/TCP": [("x", "*", False)]},
    ),
    "updated-policy": [
        Step([("x", "mutate", ingress({}, {}))], {"81/TCP": []}),
        Step([("x", "mutate", ingress({}))], {"81/TCP": [("*", "x", False)]}),
    ],
    "ingress-from-updated-namespace": [
        Step(
            [("x", "allow-ns2", ingress(POD_A, {"from": [{"namespaceSelector": ml(ns2="updated")}]}))],
            {"80/TCP": [("*", "x/a", False)]},
        ),
        Step(
            [("x", "allow-ns2", ingress(POD_A, {"from": [{"namespaceSelector": ml(ns2="updated")}]}))],
            {"80/TCP": [("*", "x/a", False), ("y", "x/a", True)]},
            ns_labels={"y": {"ns2": "updated"}},
        ),
    ],
    "ingress-from-updated-pod": [
        Step(
            [("x", "allow-pod2", ingress(POD_A, {"from": [{"podSelector": ml(pod="b", pod2="updated")}]}))],
            {"80/TCP": [("*", "x/a", False)]},
        ),
        Step(
            [("x", "allow-pod2", ingress(POD_A, {"from": [{"podSelector": ml(pod="b", pod2="updated")}]}))],
            {"80/TCP": [("*", "x/a", False), ("x/b", "x/a", True)]},
            pod_labels={"x/b": {"pod2": "updated"}},
        ),
    ],
    "deny-ingress-from-pods-in-other-namespaces": one(
        "x",
        "deny-empty-policy",
        ingress({}, {"from": [{"podSelector": {}}]}),
        {"80/TCP": [("y", "x", False), ("z", "x", False)]},
    ),
    "deny-ingress-to-updated-pod": [
        Step(
            [("x", "deny-isolated", {"podSelector": ml(target="isolated"), "policyTypes": ["Ingress"]})], {"80/TCP": []}
        ),
        Step(
            [("x", "deny-isolated", {"podSelector": ml(target="isolated"), "policyTypes": ["Ingress"]})],
            {"80/TCP": [("*", "x/a", False)]},
            pod_labels={"x/a": {"target": "isolated"}},
        ),
    ],
    "deny-egress-by-pod-selector": one("x", "deny-egress-pod-a", egress(POD_A), {"80/TCP": [("x/a", "*", False)]}),
    "deny-egress-from-all-pods-in-namespace": one(
        "x", "deny-egress-ns-x", DENY_EGRESS, {"80/TCP": [("x", "*", False)]}
    ),
    "ingress-and-egress-together": one(
        "x",
        "a-from-b-and-out-on-80",
        {
            "podSelector": POD_A,
            "policyTypes": ["Egress", "Ingress"],
            "ingress": [{"from": [{"podSelector": ml(pod="b")}]}],
            "egress": [{"ports": [{"port": 80}]}],
        },
        {
            "80/TCP": [("*", "x/a", False), ("x/b", "x/a", True)],
            "81/TCP": [("*", "x/a", False), ("x/a", "*", False), ("x/b", "x/a", True)],
        },
    ),
    "egress-denied-on-client-even-if-server-allows": [
        Step(
            [
                (
                    "x",
                    "allow-to-y-a",
                    egress(POD_A, {"to": [pod_in("y", "a")]}),
                ),
                (
                    "y",
                    "allow-from-x-a-on-a",
                    ingress(POD_A, {"from": [pod_in("x", "a")]}),
                ),
                (
                    "y",
                    "allow-from-x-a-on-b",
                    ingress(ml(pod="b"), {"from": [pod_in("x", "a")]}),
                ),
            ],
            {
                "80/TCP": [
                    ("x/a", "*", False),
                    ("*", "y/a", False),
                    ("x/a", "y/a", True),
                    ("*", "y/b", False),
                ]
            },
        )
    ],
    "egress-to-server-in-other-namespace-by-pod-and-namespace-selector": one(
        "x",
        "allow-to-y-a",
        egress(POD_A, {"to": [pod_in("y", "a")]}),
        {"80/TCP": [("x/a", "*", False), ("x/a", "y/a", True)]},
    ),
    "ingress-any-port-on-a-specific-protocol": one(
        "x",
        "allow-tcp",
        ingress(POD_A, {"ports": [{"protocol": "TCP"}]}),
        {"80/TCP": [], "80/UDP": [("*", "x/a", False)]},
    ),
    "multiple-ingress-policies-allow-all-takes-precedence": [
        Step([("x", "allow-80", ingress({}, {"ports": [{"port": 80}]}))], {"81/TCP": [("*", "x", False)]}),
        Step(
            [("x", "allow-80", ingress({}, {"ports": [{"port": 80}]})), ("x", "allow-all", ingress({}, {}))],
            {"81/TCP": []},
        ),
    ],
    "multiple-egress-policies-allow-all-takes-precedence": [
        Step([("x", "allow-80", egress({}, {"ports": [{"port": 80}]}))], {"81/TCP": [("x", "*", False)]}),
        Step(
            [("x", "allow-80", egress({}, {"ports": [{"port": 80}]})), ("x", "allow-all", egress({}, {}))],
            {"81/TCP": []},
        ),
    ],
    "stop-enforcing-after-delete": [
        Step([("x", "deny-all", DENY_ALL)], {"80/TCP": [("x", "*", False), ("*", "x", False)]}),
        Step([], {"80/TCP": []}),
    ],
    "egress-to-server-in-cidr-block": one(
        "x",
        "allow-to-y-b-ip",
        lambda ips: egress(POD_A, {"to": [{"ipBlock": {"cidr": ips["y/b"] + "/32"}}]}),
        {"80/TCP": [("x/a", "*", False), ("x/a", "y/b", True)]},
    ),
    "except-clause-in-egress-cidr-block": one(
        "x",
        "allow-around-x-b",
        lambda ips: egress(
            POD_A, {"to": [{"ipBlock": {"cidr": large_cidr(ips["x/b"]), "except": [ips["x/b"] + "/32"]}}]}
        ),
        {"80/TCP": [("x/a", "x/b", False)]},
    ),
    "ip-in-both-cidr-and-except-is-allowed-by-another-block": [
        Step(
            [
                (
                    "x",
                    "allow-cidr",
                    lambda ips: egress(
                        POD_A, {"to": [{"ipBlock": {"cidr": large_cidr(ips["x/b"]), "except": [ips["x/b"] + "/32"]}}]}
                    ),
                )
            ],
            {"80/TCP": [("x/a", "x/b", False)]},
        ),
        Step(
            [("x", "allow-cidr", lambda ips: egress(POD_A, {"to": [{"ipBlock": {"cidr": ips["x/b"] + "/32"}}]}))],
            {"80/TCP": [("x/a", "*", False), ("x/a", "x/b", True)]},
        ),
    ],
    "ingress-and-egress-controlled-independently": [
        Step([("x", "allow-egress-a", egress(POD_A, {}))], {"80/TCP": []}),
        Step(
            [("x", "allow-egress-a", egress(POD_A, {})), ("x", "deny-ingress-a", ingress(POD_A))],
            {"80/TCP": [("*", "x/a", False)]},
        ),
    ],
    "sctp-is-not-tcp": [
        Step(
            [
                ("x", "deny-ingress", DENY_INGRESS),
                ("x", "allow-sctp-81", ingress(POD_A, {"ports": [{"port": 81, "protocol": "SCTP"}]})),
            ],
            {"81/TCP": [("*", "x", False)], "81/SCTP": [("*", "x/b", False), ("*", "x/c", False)]},
        )
    ],
    "sctp-allow-still-isolates-for-tcp": one(
        "x",
        "allow-sctp-80",
        ingress(POD_A, {"ports": [{"port": 80, "protocol": "SCTP"}]}),
        {"81/TCP": [("*", "x/a", False)], "80/SCTP": []},
    ),
    "udp-only-policy-denies-tcp": one(
        "x",
        "allow-udp-81",
        ingress(POD_A, {"ports": [{"port": 81, "protocol": "UDP"}]}),
        {"81/TCP": [("*", "x/a", False)], "81/UDP": []},
    ),
    "namespace-match-labels-with-default-name-label": one(
        "x",
        "allow-y-by-name-label",
        ingress(POD_A, {"from": [{"namespaceSelector": ns_is("y")}]}),
        {"80/TCP": [("x", "x/a", False), ("z", "x/a", False)]},
    ),
    "namespace-match-expressions-with-default-name-label": one(
        "x",
        "egress-not-y",
        egress(POD_A, {"to": [{"namespaceSelector": expr(NAME_LABEL, "NotIn", "y")}]}),
        {"80/TCP": [("x/a", "y", False)]},
    ),
    "udp-default-deny-ingress": one("x", "deny-all", DENY_INGRESS, {"80/UDP": [("*", "x", False)]}),
    "udp-ports": one(
        "x",
        "allow-81-udp",
        ingress(POD_A, {"from": [{"namespaceSelector": ns_is("y")}], "ports": [{"port": 81, "protocol": "UDP"}]}),
        {"81/UDP": [("x", "x/a", False), ("z", "x/a", False)], "81/TCP": [("*", "x/a", False)]},
    ),
    "udp-pod-in-another-namespace": one(
        "x",
        "allow-y-a",
        ingress(POD_A, {"from": [pod_in("y", "a")]}),
        {"80/UDP": [("*", "x/a", False), ("y/a", "x/a", True)]},
    ),
    "sctp-default-deny-ingress": one("x", "deny-all", DENY_INGRESS, {"80/SCTP": [("*", "x", False)]}),
    "sctp-ports": one(
        "x",
        "allow-81-sctp",
        ingress(
            POD_A,
            {"from": [{"namespaceSelector": ns_is("y")}], "ports": [{"port": 81, "protocol": "SCTP"}]},
        ),
        {"81/SCTP": [("x", "x/a", False), ("z", "x/a", False)]},
    ),
    "sctp-pod-in-another-namespace": one(
        "x",
        "allow-y-a",
        ingress(POD_A, {"from": [pod_in("y", "a")]}),
        {"80/SCTP": [("*", "x/a", False), ("y/a", "x/a", True)]},
    ),
    "port-range-with-end-port": one(
        "x",
        "allow-80-81-from-y",
        ingress(POD_A, {"from": [{"namespaceSelector": ns_is("y")}], "ports": [{"port": 80, "endPort": 81}]}),
        {
            "80/TCP": [("x", "x/a", False), ("z", "x/a", False)],
            "81/TCP": [("x", "x/a", False), ("z", "x/a", False)],
        },
    ),
    "port-range-not-covering-the-port": one(
        "x",
        "allow-81-82",
        ingress(POD_A, {"ports": [{"port": 81, "endPort": 82}]}),
        {"80/TCP": [("*", "x/a", False)], "81/TCP": []},
    ),
    "egress-port-range-and-named-port-mixed": one(
        "x",
        "egress-mixed",
        egress(POD_A, {"ports": [{"port": 70, "endPort": 80}, {"port": "serve-81-udp", "protocol": "UDP"}]}),
        {"80/TCP": [], "81/TCP": [("x/a", "*", False)], "81/UDP": [], "80/UDP": [("x/a", "*", False)]},
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_upstream_e2e_case(name: str) -> None:
    for number, step in enumerate(CASES[name]):
        sim = Simulator(build(step))
        for port_text, changes in step.expect.items():
            spec = PortSpec.parse(port_text)
            want = expected_table(changes)
            matrix = sim.matrix([spec])
            grid = matrix.allowed[spec]
            wrong = [
                f"{s}->{d} expected {'allowed' if want[(s, d)] else 'denied'}"
                for i, s in enumerate(p.key for p in matrix.pods)
                for j, d in enumerate(p.key for p in matrix.pods)
                if bool(grid[i, j]) != want[(s, d)]
            ]
            assert not wrong, f"{name} step {number} {port_text}: " + "; ".join(wrong)
            summary = sim.summary([spec]).ports[0]
            assert summary.allowed == sum(want.values())


def test_upstream_case_count() -> None:
    assert len(CASES) >= 45
