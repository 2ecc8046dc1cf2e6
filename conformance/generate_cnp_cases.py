"""The ClusterNetworkPolicy cases of ``npm-conformance generate --cnp``, dimension by dimension.

Over the upstream model (namespaces x, y, z; pods a, b, c; ports 80 and 81 on TCP, UDP and
SCTP), like every generated case, with the nodes labelled ``zone=a`` (node-1) and ``zone=b``
(node-2) and, where a case needs a node's address to probe, the hostNetwork pod ``h/agent`` on
node-2. The dimensions: both tiers; Accept, Deny and Pass; priorities, equal ones included;
subjects by namespace and by pod; peers by namespace, by pod, by network and by node; ports by
number, by range and by name; peers that fail closed; and how the tiers stack with
NetworkPolicies, in both directions, across actions. No expectations: the simulator predicts.

Two cases have a peer field that v1alpha2 lacks (they are tagged ``pathological`` too): an API
server refuses them, so they run on the netns backend only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from conformance.fuzz_model import FUTURE_PEER, HOST_POD, NODE_LABELS
from conformance.generate import (
    Case,
    Policy,
    Rule,
    add_pod,
    apply,
    delete_cluster_policy,
    label_namespace,
    label_pod,
    labels_selector,
    peer,
    step,
    with_primaries,
)
from kube.manifests import cluster_network_policy

EVERY_NAMESPACE: dict[str, Any] = {"namespaces": {}}
HOST_NAMESPACE = {"h": {"ns": "h"}}


def namespaces(ns: str | None = None) -> dict[str, Any]:
    """A ``namespaces`` subject or peer: namespace ``ns`` (by its ``ns`` label), or every one."""
    return {"namespaces": labels_selector(ns=ns) if ns else {}}


def pods(ns: str | None, pod: str) -> dict[str, Any]:
    """A ``pods`` subject or peer: pods labelled ``pod`` in namespace ``ns`` (every one if None)."""
    namespace_selector = labels_selector(ns=ns) if ns else {}
    return {"pods": {"namespaceSelector": namespace_selector, "podSelector": labels_selector(pod=pod)}}


def rule(action: str, *peers: Mapping[str, Any], protocols: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """A rule; ``peers`` under ``from``/``to`` is filled in by :func:`ingress`/:func:`egress`."""
    out: dict[str, Any] = {"action": action, "peers": [dict(p) for p in peers]}
    if protocols:
        out["protocols"] = [dict(p) for p in protocols]
    return out


def _direction(peer_field: str, rules: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rules:
        body = {k: copy.deepcopy(v) for k, v in r.items() if k != "peers"}
        body[peer_field] = copy.deepcopy(r["peers"])
        out.append(body)
    return out


def cnp(
    name: str,
    subject: Mapping[str, Any],
    *,
    tier: str = "Admin",
    priority: int = 10,
    ingress: Sequence[Mapping[str, Any]] = (),
    egress: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """A ClusterNetworkPolicy manifest (``kube.manifests.cluster_network_policy``)."""
    return cluster_network_policy(
        name,
        tier=tier,
        priority=priority,
        subject=subject,
        ingress=_direction("from", ingress),
        egress=_direction("to", egress),
    )


def port(protocol: str, number: int, end: int | None = None) -> dict[str, Any]:
    """A protocol entry: ``number``, or the range ``number``-``end``."""
    destination = {"range": {"start": number, "end": end}} if end is not None else {"number": number}
    return {protocol.lower(): {"destinationPort": destination}}


def named(name: str) -> dict[str, Any]:
    return {"destinationNamedPort": name}


def cnp_tags(steps: Sequence[Mapping[str, Any]]) -> list[str]:
    """The ``cnp-*`` tags that the policies applied in ``steps`` carry: tiers, actions,
    priorities (distinct or equal within a tier), subjects, peers, ports, fail-closed peers,
    and NetworkPolicies beside them."""
    tags: set[str] = set()
    by_tier: dict[str, set[tuple[str, int]]] = {}
    for entry in steps:
        for action in entry.get("actions", ()):
            body = action.get("apply")
            for manifest in body if isinstance(body, list) else [body] if body else []:
                if manifest.get("kind") != "ClusterNetworkPolicy":
                    tags.add("cnp-with-network-policy")
                    continue
                spec = manifest["spec"]
                tags.add(f"cnp-{spec['tier'].lower()}")
                by_tier.setdefault(spec["tier"], set()).add((manifest["metadata"]["name"], spec["priority"]))
                tags.add(f"cnp-subject-{next(iter(spec['subject']))}")
                for r in [*spec.get("ingress", ()), *spec.get("egress", ())]:
                    tags.add(f"cnp-{r['action'].lower()}")
                    for p in r.get("from", r.get("to", ())):
                        kind = next(iter(p))
                        known = kind in ("namespaces", "pods", "networks", "nodes")
                        tags.add(f"cnp-peer-{kind}" if known else "cnp-fail-closed")
                    for proto in r.get("protocols", ()):
                        if "destinationNamedPort" in proto:
                            tags.add("cnp-named-port")
                        else:
                            destination = next(iter(proto.values()))["destinationPort"]
                            tags.add("cnp-port-range" if "range" in destination else "cnp-port-number")
    for policies in by_tier.values():
        names_by_priority: dict[int, set[str]] = {}
        for name, priority in policies:
            names_by_priority.setdefault(priority, set()).add(name)
        if len(names_by_priority) > 1:
            tags.add("cnp-priority")
        if any(len(names) > 1 for names in names_by_priority.values()):
            tags.add("cnp-equal-priority")
    return sorted(tags)


def cnp_case(
    title: str, tags: Sequence[str], *steps: Mapping[str, Any], description: str = "", host: bool = False
) -> Case:
    """A case over the upstream model with labelled nodes (and, with ``host``, ``h/agent``);
    ``tags`` gain the ``cnp-*`` tags of its policies (:func:`cnp_tags`)."""
    derived = [*cnp_tags(steps), *(["cnp-host-network"] if host else [])]
    return Case(
        title,
        with_primaries(["cnp", *tags, *derived]),
        tuple(steps),
        description,
        nodes=copy.deepcopy(NODE_LABELS),
        namespaces=HOST_NAMESPACE if host else {},
        pods=(copy.deepcopy(HOST_POD),) if host else (),
    )


def create(*manifests: Mapping[str, Any]) -> dict[str, Any]:
    """One step applying ``manifests`` (of either kind), probed on every declared port."""
    return step(*(apply(m) for m in manifests))


def deny_all_ingress(namespace: str) -> dict[str, Any]:
    return Policy("deny-all", namespace, {}, ingress=()).manifest()


# -- the dimensions -------------------------------------------------------------------------
def tier_and_action_cases() -> Iterator[Case]:
    yield cnp_case(
        "admin: deny ingress to x from y",
        ["cnp-admin", "cnp-deny", "cnp-subject-namespaces", "cnp-peer-namespaces", "ingress", "create-policy"],
        create(cnp("deny-y-to-x", namespaces("x"), ingress=[rule("Deny", namespaces("y"))])),
    )
    yield cnp_case(
        "admin: deny egress from x/a to the b pods of z",
        ["cnp-admin", "cnp-deny", "cnp-subject-pods", "cnp-peer-pods", "egress"],
        create(cnp("x-a-not-to-z-b", pods("x", "a"), egress=[rule("Deny", pods("z", "b"))])),
    )
    yield cnp_case(
        "admin: accept overrides a NetworkPolicy that denies all",
        ["cnp-admin", "cnp-accept", "cnp-with-network-policy", "deny-all", "conflict", "ingress", "multi-policy"],
        create(deny_all_ingress("x"), cnp("accept-y", namespaces("x"), ingress=[rule("Accept", namespaces("y"))])),
    )
    allow_pod_a = Policy("allow-pod-a", "x", {}, ingress=(Rule(peers=(peer(labels_selector(pod="a"), {}),)),))
    yield cnp_case(
        "admin: pass leaves y to the NetworkPolicy, the rest is denied",
        ["cnp-admin", "cnp-pass", "cnp-deny", "multi-rule", "cnp-with-network-policy", "ingress"],
        create(
            allow_pod_a.manifest(),
            cnp("pass-y", namespaces("x"), ingress=[rule("Pass", namespaces("y")), rule("Deny", EVERY_NAMESPACE)]),
        ),
    )
    yield cnp_case(
        "admin pass, then a baseline deny",
        ["cnp-admin", "cnp-baseline", "cnp-pass", "cnp-deny", "ingress", "multi-policy"],
        create(
            cnp("pass-y", namespaces("x"), ingress=[rule("Pass", namespaces("y"))]),
            cnp("deny-y", namespaces("x"), tier="Baseline", ingress=[rule("Deny", namespaces("y"))]),
        ),
    )
    from_z = Rule(peers=(peer(None, labels_selector(ns="z")),))
    allow_from_z = Policy("allow-z-to-a", "x", labels_selector(pod="a"), ingress=(from_z,))
    yield cnp_case(
        "baseline: deny all ingress, except to a pod a NetworkPolicy selects",
        ["cnp-baseline", "cnp-deny", "cnp-with-network-policy", "cnp-subject-namespaces", "ingress", "multi-policy"],
        create(
            allow_from_z.manifest(),
            cnp("deny-all", EVERY_NAMESPACE, tier="Baseline", ingress=[rule("Deny", EVERY_NAMESPACE)]),
        ),
        description="x/a is selected by a NetworkPolicy for ingress, so the Baseline tier is not consulted for it.",
    )
    yield cnp_case(
        "baseline: an egress accept still leaves the destination's ingress",
        ["cnp-baseline", "cnp-accept", "cnp-deny", "cnp-with-network-policy", "egress", "multi-rule", "multi-policy"],
        create(
            deny_all_ingress("y"),
            cnp(
                "x-egress",
                namespaces("x"),
                tier="Baseline",
                egress=[rule("Accept", namespaces("y")), rule("Deny", EVERY_NAMESPACE)],
            ),
        ),
    )
    to_y_a = Rule(peers=(peer(labels_selector(pod="a"), labels_selector(ns="y")),))
    allow_to_y_a = Policy("to-y-a", "x", {}, egress=(to_y_a,))
    yield cnp_case(
        "both tiers and a NetworkPolicy, egress at x and ingress at y",
        ["cnp-admin", "cnp-baseline", "cnp-pass", "cnp-deny", "cnp-with-network-policy", "ingress", "egress"],
        create(
            allow_to_y_a.manifest(),
            cnp("x-pass-to-y", namespaces("x"), egress=[rule("Pass", namespaces("y"))]),
            cnp("y-not-from-x", namespaces("y"), tier="Baseline", ingress=[rule("Deny", namespaces("x"))]),
        ),
    )


def priority_cases() -> Iterator[Case]:
    accept = cnp("accept-y", namespaces("x"), priority=10, ingress=[rule("Accept", namespaces("y"))])
    deny = cnp("deny-all", namespaces("x"), priority=20, ingress=[rule("Deny", EVERY_NAMESPACE)])
    yield cnp_case(
        "priority: the lower number first, then updated to come first",
        ["cnp-priority", "cnp-accept", "cnp-deny", "update-policy", "ingress", "multi-policy"],
        create(accept, deny),
        create({**deny, "spec": {**deny["spec"], "priority": 5}}),
    )
    yield cnp_case(
        "equal priority in one tier: ordered by name",
        ["cnp-equal-priority", "cnp-accept", "cnp-deny", "ingress", "multi-policy"],
        create(
            cnp("a-accept-y", namespaces("x"), priority=10, ingress=[rule("Accept", namespaces("y"))]),
            cnp("b-deny-all", namespaces("x"), priority=10, ingress=[rule("Deny", EVERY_NAMESPACE)]),
        ),
        description="The API leaves the order of overlapping policies of equal priority undefined; "
        "this implementation orders them by name, in the simulator and in the enforcer.",
    )
    yield cnp_case(
        "rule order: the first matching rule wins",
        ["cnp-admin", "cnp-deny", "cnp-accept", "multi-rule", "cnp-peer-pods", "cnp-peer-namespaces", "ingress"],
        create(
            cnp(
                "ordered",
                namespaces("x"),
                ingress=[rule("Deny", pods("y", "a")), rule("Accept", namespaces("y")), rule("Deny", EVERY_NAMESPACE)],
            )
        ),
    )


def peer_cases() -> Iterator[Case]:
    yield cnp_case(
        "networks: one pod's /32",
        ["cnp-peer-networks", "cnp-deny", "egress"],
        create(cnp("not-to-y-b", namespaces("x"), egress=[rule("Deny", {"networks": ["${net y/b 32}"]})])),
    )
    yield cnp_case(
        "networks: everything, after an accept of namespace y",
        ["cnp-peer-networks", "cnp-peer-namespaces", "cnp-accept", "cnp-deny", "multi-rule", "egress"],
        create(
            cnp(
                "only-y",
                namespaces("x"),
                egress=[rule("Accept", namespaces("y")), rule("Deny", {"networks": ["0.0.0.0/0", "::/0"]})],
            )
        ),
    )
    yield cnp_case(
        "nodes: deny egress to the nodes in zone b",
        ["cnp-peer-nodes", "cnp-deny", "cnp-host-network", "egress"],
        create(cnp("not-to-zone-b", EVERY_NAMESPACE, egress=[rule("Deny", {"nodes": labels_selector(zone="b")})])),
        host=True,
    )
    yield cnp_case(
        "nodes: accept a TCP range to every node, deny the rest",
        ["cnp-peer-nodes", "cnp-port-range", "cnp-accept", "cnp-deny", "cnp-host-network", "multi-rule", "egress"],
        create(
            cnp(
                "nodes-tcp-only",
                namespaces("x"),
                egress=[rule("Accept", {"nodes": {}}, protocols=[port("TCP", 80, 81)]), rule("Deny", {"nodes": {}})],
            )
        ),
        host=True,
    )
    yield cnp_case(
        "a hostNetwork pod is neither a subject nor a pods peer, but a networks peer matches it",
        ["cnp-host-network", "cnp-peer-namespaces", "cnp-peer-networks", "cnp-deny", "ingress", "egress"],
        create(
            cnp("deny-all-pods", EVERY_NAMESPACE, ingress=[rule("Deny", EVERY_NAMESPACE)]),
            cnp("not-to-agent", namespaces("y"), egress=[rule("Deny", {"networks": ["${net h/agent 32}"]})]),
        ),
        host=True,
    )


def port_cases() -> Iterator[Case]:
    for title, tags, protocols in (
        ("a TCP port number", ["cnp-port-number", "tcp"], [port("TCP", 80)]),
        ("a UDP port range", ["cnp-port-range", "udp"], [port("UDP", 80, 81)]),
        ("a named port", ["cnp-named-port", "udp"], [named("serve-81-udp")]),
        ("an SCTP port number", ["cnp-port-number", "sctp"], [port("SCTP", 80)]),
        ("a TCP number and a UDP range", ["cnp-port-number", "cnp-port-range", "multi-port/protocol"],
         [port("TCP", 81), port("UDP", 79, 80)]),
    ):
        yield cnp_case(
            f"ports: deny ingress to x from y on {title}",
            ["cnp-deny", "cnp-peer-namespaces", "ingress", *tags],
            create(cnp("ports", namespaces("x"), ingress=[rule("Deny", namespaces("y"), protocols=protocols)])),
        )


def fail_closed_cases() -> Iterator[Case]:
    yield cnp_case(
        "fail closed: domainNames make an Accept rule match nothing",
        ["cnp-fail-closed", "cnp-accept", "cnp-baseline", "cnp-deny", "egress", "multi-policy"],
        create(
            cnp("by-name", namespaces("x"), egress=[rule("Accept", {"domainNames": ["example.com"]})]),
            cnp("deny-rest", namespaces("x"), tier="Baseline", egress=[rule("Deny", EVERY_NAMESPACE)]),
        ),
        description="Domain names need DNS interception, which this implementation does not do.",
    )
    yield cnp_case(
        "fail closed: a peer v1alpha2 lacks makes a Deny rule deny everything, ports and all",
        ["cnp-fail-closed", "cnp-deny", "cnp-port-number", "ingress", "pathological"],
        create(cnp("future", namespaces("x"), ingress=[rule("Deny", FUTURE_PEER, protocols=[port("TCP", 80)])])),
        description="netns only: an API server refuses the unknown field.",
    )
    allow_all = Policy("allow-all", "x", {}, ingress=(Rule(),))
    yield cnp_case(
        "fail closed: a peer v1alpha2 lacks makes a Pass rule deny",
        ["cnp-fail-closed", "cnp-pass", "cnp-with-network-policy", "allow-all", "ingress", "pathological"],
        create(allow_all.manifest(), cnp("future", namespaces("x"), ingress=[rule("Pass", FUTURE_PEER)])),
        description="netns only: an API server refuses the unknown field.",
    )


def action_cases() -> Iterator[Case]:
    accept = cnp("x-in", namespaces("x"), ingress=[rule("Accept", namespaces("y"))])
    yield cnp_case(
        "actions: create, update to deny, delete",
        ["create-policy", "update-policy", "delete-policy", "cnp-accept", "cnp-deny", "ingress"],
        create(deny_all_ingress("x"), accept),
        create(cnp("x-in", namespaces("x"), ingress=[rule("Deny", namespaces("y"))])),
        step(delete_cluster_policy("x-in")),
    )
    yield cnp_case(
        "actions: a namespace labelled into the subject",
        ["set-namespace-labels", "cnp-subject-namespaces", "cnp-deny", "ingress"],
        create(
            cnp("prod-closed", {"namespaces": labels_selector(env="prod")}, ingress=[rule("Deny", EVERY_NAMESPACE)])
        ),
        step(label_namespace("x", {"env": "prod"})),
    )
    yield cnp_case(
        "actions: a pod relabelled out of a pods peer",
        ["set-pod-labels", "cnp-peer-pods", "cnp-deny", "ingress"],
        create(cnp("not-from-b", namespaces("x"), ingress=[rule("Deny", pods(None, "b"))])),
        step(label_pod("y/b", {"pod": "q"})),
    )
    yield cnp_case(
        "actions: a pod created into a subject",
        ["create-pod", "cnp-subject-pods", "cnp-deny", "egress"],
        create(cnp("d-closed", pods("x", "d"), egress=[rule("Deny", EVERY_NAMESPACE)])),
        step(add_pod("x", "d", {"pod": "d"})),
    )


def cnp_cases() -> list[Case]:
    """Every ClusterNetworkPolicy case (``generate --cnp``)."""
    families = (tier_and_action_cases, priority_cases, peer_cases, port_cases, fail_closed_cases, action_cases)
    return [c for family in families for c in family()]
