"""The catalogue of generated cases, dimension by dimension.

The ``cyclonus`` families follow mattfenwick/cyclonus ``pkg/generator`` (targets, rules,
peers, ports and protocols, example, actions, conflicts, namespaces, upstream e2e): the same
policies over the same model, with the same tags, 230 cases. The ``extra`` families add what
cyclonus leaves out: selectors with expressions, ipBlocks that hit pods exactly, policyTypes
defaulting and ignored rules, explicit empty lists, endPort edges, named ports that resolve
to different numbers on different pods, and more actions and conflicting stacks.

Addresses are placeholders (``${ip z/c}``, ``${net z/c 24}``) so the cases run wherever pods
get their addresses; cyclonus builds its ipBlocks around pod z/c the same way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from itertools import combinations
from typing import Any

from conformance.generate import (
    Case,
    Policy,
    Rule,
    add_namespace,
    add_pod,
    apply,
    case,
    delete_namespace,
    delete_pod,
    delete_policy,
    expr_selector,
    ip_block,
    label_namespace,
    label_pod,
    labels_selector,
    peer,
    port,
    step,
)

NAME_LABEL = "kubernetes.io/metadata.name"
EMPTY: dict[str, Any] = {}
POD_A = labels_selector(pod="a")
POD_B = labels_selector(pod="b")
POD_C = labels_selector(pod="c")
POD_AB = expr_selector("pod", "In", "a", "b")
POD_BC = expr_selector("pod", "In", "b", "c")
NS_X = labels_selector(ns="x")
NS_Y = labels_selector(ns="y")
NS_XY = expr_selector("ns", "In", "x", "y")
NS_YZ = expr_selector("ns", "In", "y", "z")

TCP_80 = port(80, "TCP")
ALLOW_DNS = Rule(ports=(port(53, "UDP"), port(53, "TCP")))

# cyclonus's baseTestPolicy: x/a; ingress 80/TCP from pods b,c of namespaces x,y; egress
# 80/TCP to pods a,b of namespaces y,z, plus DNS.
BASE = Policy(
    "base",
    "x",
    POD_A,
    ingress=(Rule(ports=(TCP_80,), peers=(peer(POD_BC, NS_XY),)),),
    egress=(Rule(ports=(TCP_80,), peers=(peer(POD_AB, NS_YZ),)), ALLOW_DNS),
)

# cyclonus's ipBlocks: the /24 around pod z/c, with and without its /28.
CIDR_24 = "${net z/c 24}"
CIDR_28 = "${ip z/c}/28"  # host bits are allowed (and masked), as by the API server
POD_NET = "${net z/c 8}"  # every pod of a cluster with one pod network


def direction(ingress: bool) -> str:
    return "ingress" if ingress else "egress"


def set_rules(policy: Policy, ingress: bool, rules: Sequence[Rule]) -> Policy:
    return replace(policy, ingress=tuple(rules)) if ingress else replace(policy, egress=tuple(rules))


def _first_rule(policy: Policy, ingress: bool, **changes: Any) -> Policy:
    rules = list(policy.ingress if ingress else policy.egress or ())
    rules[0] = replace(rules[0], **changes)
    return set_rules(policy, ingress, rules)


def set_ports(policy: Policy, ingress: bool, ports: Sequence[Mapping[str, Any]]) -> Policy:
    """The first rule of that direction gets ``ports`` (cyclonus's SetPorts)."""
    return _first_rule(policy, ingress, ports=tuple(ports))


def set_peers(policy: Policy, ingress: bool, peers: Sequence[Mapping[str, Any]]) -> Policy:
    """The first rule of that direction gets ``peers`` (cyclonus's SetPeers)."""
    return _first_rule(policy, ingress, peers=tuple(peers))


def create(*policies: Policy, ports: Sequence[str] = ()) -> dict[str, Any]:
    """One step creating ``policies``, probed on every declared port (or ``ports``)."""
    return step(*(apply(p.manifest()) for p in policies), ports=ports)


def single(title: str, tags: Sequence[str], *policies: Policy) -> Case:
    return case(title, tags, create(*policies))


# -- descriptions as tags ----------------------------------------------------------------
def peer_tags(p: Mapping[str, Any]) -> list[str]:
    if "ipBlock" in p:
        return ["ip-block-with-except" if p["ipBlock"].get("except") else "ip-block-no-except"]
    ns = p.get("namespaceSelector")
    pods = p.get("podSelector")
    out = ["policy-namespace" if ns is None else "all-namespaces" if not ns else "namespaces-by-label"]
    out.append("all-pods" if not pods else "pods-by-label")
    for sel, tag in ((ns, "namespaces-by-expression"), (pods, "pods-by-expression")):
        if sel and sel.get("matchExpressions"):
            out.append(tag)
    if ns and NAME_LABEL in (ns.get("matchLabels") or {}):
        out.append("namespaces-by-default-label")
    return out


def port_tags(p: Mapping[str, Any]) -> list[str]:
    number = p.get("port")
    out = ["any-port" if number is None else "named-port" if isinstance(number, str) else "numbered-port"]
    if "protocol" in p:
        out.append(p["protocol"].lower())
    if "endPort" in p:
        out.append("end-port")
    return out


def describe_port(p: Mapping[str, Any]) -> str:
    """``80/UDP``, ``53-80/TCP``, ``serve-80-tcp (no protocol)``, ``{}`` for an empty entry."""
    if not p:
        return "{}"
    number = str(p.get("port", "*"))
    if "endPort" in p:
        number = f"{number}-{p['endPort']}"
    return f"{number}/{p['protocol']}" if "protocol" in p else f"{number} (no protocol)"


# -- cyclonus families -------------------------------------------------------------------
def target_cases() -> Iterator[Case]:
    for ns in ("x", "y", "z"):
        yield single(f"set namespace to {ns}", ["target-namespace", "cyclonus"], replace(BASE, namespace=ns))
    for name, sel in (("{}", EMPTY), ("pod=a", POD_A), ("pod in (a,b)", POD_AB)):
        yield single(f"set pod selector to {name}", ["target-pod-selector", "cyclonus"], replace(BASE, target=sel))


def rule_cases() -> Iterator[Case]:
    for ingress in (False, True):
        d = direction(ingress)
        yield single(f"{d}: deny all", [d, "deny-all", "cyclonus"], set_rules(BASE, ingress, ()))
        yield single(f"{d}: allow all", [d, "allow-all", "cyclonus"], set_rules(BASE, ingress, (Rule(),)))


def cyclonus_peers() -> list[tuple[str, dict[str, Any]]]:
    """cyclonus's peers: every pod/namespace selector combination, then two ipBlocks."""
    return [
        ("empty pods + nil ns", peer(EMPTY, None)),
        ("pods by label + nil ns", peer(POD_C, None)),
        ("nil pods + empty ns", peer(None, EMPTY)),
        ("empty pods + empty ns", peer(EMPTY, EMPTY)),
        ("pods by label + empty ns", peer(POD_C, EMPTY)),
        ("nil pods + ns by label", peer(None, NS_X)),
        ("empty pods + ns by label", peer(EMPTY, NS_X)),
        ("pods by label + ns by label", peer(POD_C, NS_X)),
        ("simple ipblock", ip_block(CIDR_24)),
        ("ipblock with except", ip_block(CIDR_24, CIDR_28)),
    ]


def peer_cases() -> Iterator[Case]:
    peers = cyclonus_peers()
    for ingress in (True, False):
        d = direction(ingress)
        yield single(f"{d}: empty peers", [d, "any-peer", "cyclonus"], set_peers(BASE, ingress, ()))
    for ingress in (True, False):
        d = direction(ingress)
        for title, p in peers:
            yield single(f"{d}: {title}", [d, *peer_tags(p), "cyclonus"], set_peers(BASE, ingress, [p]))
    for ingress in (True, False):
        d = direction(ingress)
        for (t1, p1), (t2, p2) in combinations(peers, 2):
            tags = [d, "multi-peer", *peer_tags(p1), *peer_tags(p2), "cyclonus"]
            yield single(f"{d}, 2-peer: {t1}, {t2}", tags, set_peers(BASE, ingress, [p1, p2]))


def cyclonus_ports() -> list[dict[str, Any]]:
    """Every protocol (or none) with no port, 80 or 81; named ports; endPort ranges from 53."""
    out = [port(number, proto) for proto in (None, "TCP", "UDP", "SCTP") for number in (None, 80, 81)]
    out += [port(f"serve-{n}-{proto.lower()}", proto) for proto in ("TCP", "UDP", "SCTP") for n in (80, 81)]
    out += [port(53, proto, end) for proto in ("TCP", "UDP", "SCTP") for end in (80, 84)]
    return out


def port_cases() -> Iterator[Case]:
    for ingress in (False, True):
        d = direction(ingress)
        yield single(f"{d}: empty port/protocol", [d, "any-port-protocol", "cyclonus"], set_ports(BASE, ingress, ()))
    for ingress in (False, True):
        d = direction(ingress)
        for p in cyclonus_ports():
            yield single(f"{d}: port {describe_port(p)}", [d, *port_tags(p), "cyclonus"], set_ports(BASE, ingress, [p]))
        pathological = [
            ("open a named port that doesn't match its protocol", port("serve-81-udp", "TCP")),
            ("open a named port that isn't served", port("serve-7981-udp", "TCP")),
            ("open a numbered port that isn't served", port(7981, "TCP")),
        ]
        for title, p in pathological:
            yield single(f"{d}: {title}", [d, "pathological", *port_tags(p), "cyclonus"], set_ports(BASE, ingress, [p]))
    pairs = [
        (port(), port(80)),
        (port(), port("serve-80-tcp")),
        (port(), port(None, "UDP")),
        (port(80), port(81)),
        (port(80), port("serve-81-tcp")),
        (port(80), port("serve-81-udp", "UDP")),
        (port(80, "UDP"), port("serve-81-udp", "UDP")),
    ]
    for ingress in (False, True):
        d = direction(ingress)
        for pair in pairs:
            tags = [d, "multi-port/protocol", *port_tags(pair[0]), *port_tags(pair[1]), "cyclonus"]
            title = f"{d}: ports {describe_port(pair[0])} and {describe_port(pair[1])}"
            yield single(title, tags, set_ports(BASE, ingress, pair))


def example_cases() -> Iterator[Case]:
    allow_81 = Policy("allow-all", "x", EMPTY, ingress=(Rule(ports=(port("serve-81-tcp"),)),))
    yield case(
        "example: should allow ingress access on one named port",
        ["example", "cyclonus"],
        create(allow_81),
        step(add_namespace("w", {"ns": "w"}), add_pod("w", "a", {"pod": "a"})),
        step(delete_pod("w", "a")),
        step(delete_namespace("w")),
        step(),
        step(ports=["81/TCP"]),
        step(ports=["81/TCP"], name="probe serve-81-tcp (resolves to 81/TCP on every pod)"),
    )


def action_cases() -> Iterator[Case]:
    yield case(
        "create/delete policy",
        ["create-policy", "delete-policy", "cyclonus"],
        create(BASE),
        step(delete_policy("x", "base")),
    )
    yield case(
        "create/update policy",
        ["create-policy", "update-policy", "cyclonus"],
        create(BASE),
        create(set_ports(BASE, True, [port("serve-81-udp", "UDP")])),
    )
    yield case(
        "create/delete namespace",
        ["create-namespace", "delete-namespace", "cyclonus"],
        create(BASE),
        step(add_namespace("y-2", {"ns": "y"}), add_pod("y-2", "a", {"pod": "a"}), add_pod("y-2", "b", {"pod": "b"})),
        step(delete_namespace("y-2")),
    )
    yield case(
        "update namespace so that policy applies, then again so it no longer applies",
        ["set-namespace-labels", "cyclonus"],
        create(set_peers(BASE, True, [peer(None, labels_selector(**{"new-ns": "qrs"}))])),
        step(label_namespace("y", {"ns": "y", "new-ns": "qrs"})),
        step(label_namespace("y", {"ns": "y"}, remove=["new-ns"])),
    )
    yield case(
        "create/delete pod",
        ["create-pod", "delete-pod", "cyclonus"],
        create(BASE),
        step(add_pod("x", "d", {"pod": "d"})),
        step(delete_pod("x", "d")),
    )
    yield case(
        "update pod so that policy applies, then again so it no longer applies",
        ["set-pod-labels", "cyclonus"],
        create(set_peers(BASE, True, [peer(labels_selector(**{"new-label": "abc"}), NS_YZ)])),
        step(label_pod("y/b", {"pod": "b", "new-label": "abc"})),
        step(label_pod("y/b", {"pod": "b"}, remove=["new-label"])),
    )


# Conflicting stacks (cyclonus conflictcases.go).
ALLOW_ALL = (Rule(),)
DENY_ALL: tuple[Rule, ...] = ()
ALLOW_ALL_BY_POD = (Rule(peers=(peer(None, EMPTY),)),)
ALLOW_ALL_BY_IP = (Rule(peers=(ip_block("0.0.0.0/0"),)),)
DENY_ALL_BY_IP = (Rule(peers=(ip_block("0.0.0.0/31"),)),)
DENY_ALL_BY_POD = (Rule(peers=(peer(None, labels_selector(**{"this-will-never-happen": "qrs123"})),)),)


def conflict_cases() -> Iterator[Case]:
    src = ("x", POD_B)
    dst = ("y", POD_C)

    def egress(name: str, where: tuple[str, dict[str, Any]], rules: tuple[Rule, ...]) -> Policy:
        return Policy(name, where[0], where[1], egress=rules)

    def ingress(name: str, where: tuple[str, dict[str, Any]], rules: tuple[Rule, ...]) -> Policy:
        return Policy(name, where[0], where[1], ingress=rules)

    stacks: list[tuple[str, list[str], list[Policy]]] = [
        (
            "deny all from source, allow all to dest",
            ["deny-all", "allow-all", "ingress", "egress"],
            [egress("deny-all-egress", src, DENY_ALL), ingress("allow-all-ingress", dst, ALLOW_ALL)],
        ),
        (
            "allow all from source, deny all to dest",
            ["deny-all", "allow-all", "ingress", "egress"],
            [egress("allow-all-egress", src, ALLOW_ALL), ingress("deny-all-ingress", dst, DENY_ALL)],
        ),
        (
            "deny all + allow all from same source",
            ["deny-all", "allow-all", "egress"],
            [egress("deny-all-egress", src, DENY_ALL), egress("allow-all-egress", src, ALLOW_ALL)],
        ),
        (
            "deny all + allow all to same dest",
            ["deny-all", "allow-all", "ingress"],
            [ingress("deny-all-ingress", dst, DENY_ALL), ingress("allow-all-ingress", dst, ALLOW_ALL)],
        ),
        (
            "deny all + allow all by pod from same source",
            ["deny-all", "all-pods", "all-namespaces", "egress"],
            [egress("deny-all-egress", src, DENY_ALL), egress("allow-all-egress-by-pod", src, ALLOW_ALL_BY_POD)],
        ),
        (
            "deny all + allow all by IP from same source",
            ["deny-all", "egress"],
            [egress("deny-all-egress", src, DENY_ALL), egress("allow-all-egress-by-ip", src, ALLOW_ALL_BY_IP)],
        ),
        (
            "deny all by IP + allow all by pod from same source",
            ["all-pods", "all-namespaces", "egress"],
            [
                egress("deny-all-egress-by-ip", src, DENY_ALL_BY_IP),
                egress("allow-all-egress-by-pod", src, ALLOW_ALL_BY_POD),
            ],
        ),
        (
            "deny all by pod + allow all by IP from same source",
            ["egress"],
            [
                egress("deny-all-egress-by-pod", src, DENY_ALL_BY_POD),
                egress("allow-all-egress-by-ip", src, ALLOW_ALL_BY_IP),
            ],
        ),
        # cyclonus targets the source (x/b) with these ingress stacks too, despite the names.
        (
            "deny all + allow all by pod to same target",
            ["deny-all", "ingress", "all-pods", "all-namespaces"],
            [ingress("deny-all-ingress", src, DENY_ALL), ingress("allow-all-ingress-by-pod", src, ALLOW_ALL_BY_POD)],
        ),
        (
            "deny all + allow all by IP to same target",
            ["deny-all", "ingress"],
            [ingress("deny-all-ingress", src, DENY_ALL), ingress("allow-all-ingress-by-ip", src, ALLOW_ALL_BY_IP)],
        ),
        (
            "deny all by IP + allow all by pod to same target",
            ["ingress", "all-pods", "all-namespaces"],
            [
                ingress("deny-all-ingress-by-ip", src, DENY_ALL_BY_IP),
                ingress("allow-all-ingress-by-pod", src, ALLOW_ALL_BY_POD),
            ],
        ),
        (
            "deny all by pod + allow all by IP to same target",
            ["ingress"],
            [
                ingress("deny-all-ingress-by-pod", src, DENY_ALL_BY_POD),
                ingress("allow-all-ingress-by-ip", src, ALLOW_ALL_BY_IP),
            ],
        ),
        ("egress: deny all by IP", ["egress"], [egress("deny-all-egress-by-ip", src, DENY_ALL_BY_IP)]),
        ("egress: deny all by pod", ["egress"], [egress("deny-all-egress-by-ip", src, DENY_ALL_BY_POD)]),
        ("ingress: deny all by IP", ["ingress"], [ingress("deny-all-ingress-by-ip", src, DENY_ALL_BY_IP)]),
        ("ingress: deny all by pod", ["ingress"], [ingress("deny-all-ingress-by-ip", src, DENY_ALL_BY_POD)]),
    ]
    for title, tags, policies in stacks:
        # cyclonus leaves the ipBlock tags off these; ours describe every peer a case uses.
        blocks = {
            t
            for p in policies
            for r in (*(p.ingress or ()), *(p.egress or ()))
            for x in r.peers or ()
            for t in peer_tags(x)
            if "ipBlock" in x
        }
        yield single(title, [*tags, *sorted(blocks), "conflict", "cyclonus"], *policies)


def namespace_cases() -> Iterator[Case]:
    by_default_label = peer(None, labels_selector(**{NAME_LABEL: "z"}))
    for ingress in (True, False):
        d = direction(ingress)
        yield single(
            f"{d}: select namespace by default label",
            ["namespaces-by-default-label", d, "cyclonus"],
            set_peers(BASE, ingress, [by_default_label]),
        )


def upstream_cases() -> Iterator[Case]:
    tags = ["upstream-e2e", "cyclonus"]
    dns_egress = Rule(ports=(port(53, "UDP"), port(53, "TCP")))
    yield single(
        "should support a 'default-deny-ingress' policy",
        [*tags, "ingress", "deny-all"],
        Policy("deny-ingress", "x", EMPTY, ingress=()),
    )
    yield single(
        "should support a 'default-deny-all' policy",
        [*tags, "deny-all"],
        Policy("deny-all-allow-dns", "x", EMPTY, ingress=(), egress=(dns_egress,), types=("Egress", "Ingress")),
    )
    yield single(
        "should enforce policy based on Multiple PodSelectors and NamespaceSelectors",
        tags,
        Policy(
            "allow-ns-y-z-pod-b-c",
            "x",
            POD_A,
            ingress=(Rule(peers=(peer(POD_BC, expr_selector("ns", "NotIn", "x")),)),),
        ),
    )

    def via_ns_y(number: int) -> Policy:
        return Policy(
            f"allow-client-a-via-ns-selector-{number}",
            "x",
            POD_A,
            ingress=(Rule(ports=(port(number, "TCP"),), peers=(peer(None, NS_Y),)),),
        )

    yield case(
        "should enforce multiple, stacked policies with overlapping podSelectors",
        tags,
        create(via_ns_y(81)),
        step(),
        create(via_ns_y(80)),
    )
    allow_all = Policy("allow-all", "x", EMPTY, ingress=(Rule(),))
    yield case("should support allow-all policy", [*tags, "allow-all"], create(allow_all), step())
    named = Policy("allow-all", "x", EMPTY, ingress=(Rule(ports=(port("serve-81-tcp"),)),))
    yield case(
        "should allow ingress access on one named port",
        [*tags, "ingress", "named-port"],
        create(named, ports=["81/TCP"]),
        step(),
    )
    mutate = Policy("allow-all-mutate-to-deny-all", "x", EMPTY, ingress=(Rule(),))
    yield case("should enforce updated policy", tags, create(mutate), create(replace(mutate, ingress=())))
    yield case(
        "should allow ingress access from updated namespace",
        tags,
        create(
            Policy(
                "allow-client-a-via-ns-selector",
                "x",
                POD_A,
                ingress=(Rule(peers=(peer(None, labels_selector(ns2="updated")),)),),
            )
        ),
        step(label_namespace("y", {"ns": "y", "ns2": "updated"})),
    )
    yield case(
        "should allow ingress access from updated pod",
        tags,
        create(
            Policy(
                "allow-client-a-via-pod-selector",
                "x",
                POD_A,
                ingress=(Rule(peers=(peer(labels_selector(pod="b", pod2="updated"), None),)),),
            )
        ),
        step(label_pod("x/b", {"pod": "b", "pod2": "updated"})),
    )
    yield case(
        "should deny ingress access to updated pod",
        tags,
        create(Policy("deny-ingress-via-label-selector", "x", labels_selector(target="isolated"), ingress=())),
        # cyclonus replaces the labels: pod=a goes, target=isolated comes.
        step(label_pod("x/a", {"target": "isolated"}, remove=["pod"])),
    )
    yield case(
        "should work with Ingress, Egress specified together",
        tags,
        create(
            Policy(
                "allow-client-a-via-pod-selector",
                "x",
                POD_A,
                ingress=(Rule(peers=(peer(POD_B, None),)),),
                egress=(Rule(ports=(port(80), port(53, "UDP"))),),
            )
        ),
        step(),
    )
    x_a = peer(POD_A, NS_X)
    yield single(
        "should support denying of egress traffic on the client side "
        "(even if the server explicitly allows this traffic)",
        [*tags, "conflict"],
        Policy(
            "allow-to-ns-y-pod-a",
            "x",
            POD_A,
            egress=(Rule(peers=(peer(POD_A, NS_Y),)), Rule(ports=(port(53, "UDP"),))),
        ),
        Policy("allow-from-xa-on-ya-match-selector", "y", POD_A, ingress=(Rule(peers=(x_a,)),)),
        Policy("allow-from-xa-on-yb-match-selector", "y", POD_B, ingress=(Rule(peers=(x_a,)),)),
    )
    deny_all = Policy("deny-all", "x", EMPTY, ingress=(), egress=())
    yield case(
        "should stop enforcing policies after they are deleted",
        [*tags, "deny-all", "delete-policy"],
        create(deny_all),
        step(delete_policy("x", "deny-all")),
    )


def cyclonus_cases() -> list[Case]:
    """The 230 cases of cyclonus's generator, in its order."""
    families = (
        target_cases,
        rule_cases,
        peer_cases,
        port_cases,
        example_cases,
        action_cases,
        conflict_cases,
        namespace_cases,
        upstream_cases,
    )
    return [c for family in families for c in family()]


# -- our additions -----------------------------------------------------------------------
def extra_target_cases() -> Iterator[Case]:
    targets = [
        ("pod notin (a)", expr_selector("pod", "NotIn", "a")),
        ("pod exists", expr_selector("pod", "Exists")),
        ("pod doesnotexist (selects nothing)", expr_selector("pod", "DoesNotExist")),
        (
            "pod=b and pod notin (b) (selects nothing)",
            {"matchLabels": {"pod": "b"}, "matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["b"]}]},
        ),
        (
            "pod=a and pod in (a,b)",
            {"matchLabels": {"pod": "a"}, "matchExpressions": [{"key": "pod", "operator": "In", "values": ["a", "b"]}]},
        ),
    ]
    for title, sel in targets:
        yield single(
            f"set pod selector to {title}",
            ["target-pod-selector", "target-match-expressions", "extra"],
            replace(BASE, target=sel),
        )


def extra_peers() -> list[tuple[str, dict[str, Any]]]:
    return [
        ("pods notin (a) + nil ns", peer(expr_selector("pod", "NotIn", "a"), None)),
        ("pods with key pod + empty ns", peer(expr_selector("pod", "Exists"), EMPTY)),
        ("pods without key pod + empty ns (matches nothing)", peer(expr_selector("pod", "DoesNotExist"), EMPTY)),
        ("nil pods + ns notin (x)", peer(None, expr_selector("ns", "NotIn", "x"))),
        ("pods by label + ns in (y,z)", peer(POD_C, NS_YZ)),
        ("nil pods + namespaces with key ns", peer(None, expr_selector("ns", "Exists"))),
        ("pods by label + ns by default label", peer(POD_A, labels_selector(**{NAME_LABEL: "y"}))),
        ("nil pods + default label notin (x,y)", peer(None, expr_selector(NAME_LABEL, "NotIn", "x", "y"))),
        ("ipblock of exactly one pod", ip_block("${ip x/b}/32")),
        ("pod network except one pod", ip_block(POD_NET, "${ip x/b}/32")),
        ("everything except the pod network", ip_block("0.0.0.0/0", POD_NET)),
        ("everything except two pods", ip_block("0.0.0.0/0", "${ip x/b}/32", "${ip y/c}/32")),
        ("ipblock /28 around a pod except its /30", ip_block("${net y/a 28}", "${ip y/a}/30")),
    ]


def extra_peer_cases() -> Iterator[Case]:
    for ingress in (True, False):
        d = direction(ingress)
        for title, p in extra_peers():
            yield single(f"{d}: {title}", [d, *peer_tags(p), "extra"], set_peers(BASE, ingress, [p]))
        # An except removes an address from its own block only: a selector peer still allows it.
        pair = [ip_block(POD_NET, "${ip x/b}/32"), peer(POD_B, NS_X)]
        yield single(
            f"{d}, 2-peer: pod network except x/b, and x/b by selectors",
            [d, "multi-peer", "conflict", *peer_tags(pair[0]), *peer_tags(pair[1]), "extra"],
            set_peers(BASE, ingress, pair),
        )
        # Rules are ORed; within a rule peers and ports are ANDed.
        rules = (
            Rule(ports=(TCP_80,), peers=(peer(POD_B, None),)),
            Rule(ports=(port(81, "UDP"),), peers=(peer(None, NS_Y),)),
        )
        yield single(
            f"{d}: two rules with different peers and ports",
            [
                d,
                "multi-rule",
                "pods-by-label",
                "policy-namespace",
                "namespaces-by-label",
                "all-pods",
                "tcp",
                "udp",
                "numbered-port",
                "extra",
            ],
            set_rules(BASE, ingress, rules),
        )
        yield single(
            f"{d}: rule without ports or peers fields (all)",
            [d, "any-peer", "any-port-protocol", "allow-all", "extra"],
            set_rules(BASE, ingress, (Rule(ports=None, peers=None),)),
        )
        yield single(
            f"{d}: rule with explicit empty ports and peers lists (all)",
            [d, "any-peer", "any-port-protocol", "empty-rule-list", "allow-all", "extra"],
            set_rules(BASE, ingress, (Rule(ports=(), peers=()),)),
        )


def extra_port_cases() -> Iterator[Case]:
    ports = [
        ("range 80-81/TCP", port(80, "TCP", 81)),
        ("range 81-81/UDP", port(81, "UDP", 81)),
        ("range 79-80 without protocol", port(79, None, 80)),
        ("range 7000-7010/TCP (nothing served)", port(7000, "TCP", 7010), "pathological"),
        ("named port serve-80-tcp on UDP", port("serve-80-tcp", "UDP"), "pathological"),
        ("named port serve-80-tcp on SCTP", port("serve-80-tcp", "SCTP"), "pathological"),
        ("named port serve-80-udp without protocol (TCP)", port("serve-80-udp"), "pathological"),
        ("protocol SCTP only (all SCTP ports)", port(None, "SCTP")),
    ]
    for ingress in (True, False):
        d = direction(ingress)
        for title, p, *more in ports:
            yield single(f"{d}: port {title}", [d, *port_tags(p), *more, "extra"], set_ports(BASE, ingress, [p]))
        mixed = [TCP_80, port(81, "UDP"), port("serve-80-sctp", "SCTP")]
        tags = [d, "multi-port/protocol", *(t for p in mixed for t in port_tags(p)), "extra"]
        yield single(f"{d}: ports 80/TCP, 81/UDP and serve-80-sctp", tags, set_ports(BASE, ingress, mixed))
    # A named port resolves on each destination: a new pod serving serve-80-tcp on 81.
    swapped = [
        {"port": 81, "protocol": "TCP", "name": "serve-80-tcp"},
        {"port": 80, "protocol": "TCP", "name": "serve-81-tcp"},
    ]
    to_named = Policy("allow-serve-80-tcp", "x", EMPTY, ingress=(Rule(ports=(port("serve-80-tcp", "TCP"),)),))
    yield case(
        "named port resolves per pod: a pod serving serve-80-tcp on 81",
        ["ingress", "named-port", "tcp", "create-pod", "extra"],
        create(to_named),
        step(add_pod("x", "d", {"pod": "d"}, swapped)),
    )
    from_a = Policy("egress-to-serve-80-tcp", "y", POD_A, egress=(Rule(ports=(port("serve-80-tcp", "TCP"),)),))
    yield case(
        "named egress port resolves on the destination pod",
        ["egress", "named-port", "tcp", "create-pod", "extra"],
        create(from_a),
        step(add_pod("x", "d", {"pod": "d"}, swapped)),
    )


def extra_policy_type_cases() -> Iterator[Case]:
    yield single(
        "policyTypes [Ingress] with egress rules: the egress rules are ignored",
        ["ingress", "ignored-rules", "deny-all", "extra"],
        replace(BASE, ingress=(), types=("Ingress",)),
    )
    yield single(
        "policyTypes [Egress] with ingress rules: the ingress rules are ignored",
        ["egress", "ignored-rules", "deny-all", "extra"],
        replace(BASE, egress=(), types=("Egress",)),
    )
    yield single(
        "policyTypes left out, egress rules present: Ingress and Egress",
        ["ingress", "egress", "implicit-policy-types", "extra"],
        replace(BASE, types=()),
    )
    yield single(
        "policyTypes left out, no egress: Ingress only",
        ["ingress", "implicit-policy-types", "deny-all", "extra"],
        replace(BASE, ingress=(), egress=None, types=()),
    )
    yield single(
        "policyTypes left out, egress: [] (empty list): Ingress only",
        ["ingress", "implicit-policy-types", "empty-rule-list", "pathological", "extra"],
        replace(BASE, egress=(), types=()),
    )
    yield single(
        "policyTypes [Ingress, Egress] and no rules at all: deny both ways",
        ["ingress", "egress", "deny-all", "empty-rule-list", "extra"],
        Policy("deny-both", "x", POD_A, types=("Ingress", "Egress")),
    )


def extra_action_cases() -> Iterator[Case]:
    deny_a = Policy("deny-a", "x", POD_A, ingress=())
    yield case(
        "remove the label a policy selects its target by, then set it again",
        ["remove-pod-labels", "set-pod-labels", "deny-all", "ingress", "extra"],
        create(deny_a),
        step(label_pod("x/a", remove=["pod"])),
        step(label_pod("x/a", {"pod": "a"})),
    )
    from_ns_x = Policy("from-ns-x", "y", EMPTY, ingress=(Rule(peers=(peer(None, NS_X),)),))
    yield case(
        "remove the namespace label a peer selects by, then set it again",
        ["remove-namespace-labels", "set-namespace-labels", "namespaces-by-label", "ingress", "extra"],
        create(from_ns_x),
        step(label_namespace("x", remove=["ns"])),
        step(label_namespace("x", {"ns": "x"})),
    )
    yield case(
        "create/update policy (egress)",
        ["create-policy", "update-policy", "egress", "extra"],
        create(BASE),
        create(set_ports(BASE, False, [port("serve-81-udp", "UDP")])),
    )
    yield case(
        "update a policy's target",
        ["create-policy", "update-policy", "target-pod-selector", "extra"],
        create(deny_a),
        create(replace(deny_a, target=POD_B)),
    )
    isolate_w = Policy("deny-all", "w", EMPTY, ingress=(), egress=())
    yield case(
        "delete a namespace together with its pods and policy",
        ["create-namespace", "delete-namespace", "create-pod", "deny-all", "extra"],
        step(add_namespace("w", {"ns": "w"}), add_pod("w", "a", {"pod": "a"}), apply(isolate_w.manifest())),
        step(delete_namespace("w")),
    )
    deny_x = Policy("deny-ingress", "x", EMPTY, ingress=())
    yield case(
        "a pod created in an isolated namespace is isolated",
        ["create-pod", "deny-all", "ingress", "extra"],
        create(deny_x),
        step(add_pod("x", "d", {"pod": "d"})),
    )
    from_b = Policy("from-b", "x", POD_A, ingress=(Rule(peers=(peer(POD_B, None),)),))
    yield case(
        "a peer pod deleted and recreated with other labels",
        ["delete-pod", "create-pod", "pods-by-label", "ingress", "extra"],
        create(from_b),
        step(delete_pod("x", "b")),
        step(add_pod("x", "b", {"pod": "c"})),
    )
    yield case(
        "delete a policy and create it again",
        ["create-policy", "delete-policy", "extra"],
        create(BASE),
        step(delete_policy("x", "base")),
        create(BASE),
    )
    from_new_ns = Policy(
        "from-team-blue", "x", EMPTY, ingress=(Rule(peers=(peer(POD_A, labels_selector(team="blue")),)),)
    )
    yield case(
        "a namespace created with labels a peer selects",
        ["create-namespace", "create-pod", "namespaces-by-label", "pods-by-label", "ingress", "extra"],
        create(from_new_ns),
        step(add_namespace("v", {"ns": "v", "team": "blue"}), add_pod("v", "a", {"pod": "a"})),
        step(label_namespace("v", remove=["team"])),
    )


def extra_conflict_cases() -> Iterator[Case]:
    deny_egress_b = Policy("deny-egress", "x", POD_B, egress=())
    allow_from_b = Policy("allow-from-x-b", "y", POD_C, ingress=(Rule(peers=(peer(POD_B, NS_X),)),))
    yield single(
        "egress deny at the source versus ingress allow at the destination",
        ["conflict", "deny-all", "egress", "ingress", "multi-policy", "extra"],
        deny_egress_b,
        allow_from_b,
    )
    allow_ip = Policy("allow-from-x-b-by-ip", "y", POD_C, ingress=(Rule(peers=(ip_block("${ip x/b}/32"),)),))
    egress_81 = Policy("egress-81-only", "x", POD_B, egress=(Rule(ports=(port(81, "TCP"),)),))
    yield single(
        "ingress allow by IP versus egress allowed on another port",
        ["conflict", "ingress", "egress", "ip-block-no-except", "numbered-port", "tcp", "multi-policy", "extra"],
        allow_ip,
        egress_81,
    )
    by_pod = Policy("allow-80-from-b", "x", POD_A, ingress=(Rule(ports=(TCP_80,), peers=(peer(POD_B, None),)),))
    by_ns = Policy("allow-81-from-y", "x", POD_A, ingress=(Rule(ports=(port(81, "TCP"),), peers=(peer(None, NS_Y),)),))
    yield single(
        "two policies on one target with different peers and ports: the union",
        ["conflict", "ingress", "multi-policy", "pods-by-label", "namespaces-by-label", "numbered-port", "extra"],
        by_pod,
        by_ns,
    )
    yield single(
        "deny all in the namespace plus allow all to one pod",
        ["conflict", "deny-all", "allow-all", "ingress", "multi-policy", "extra"],
        Policy("deny-all", "x", EMPTY, ingress=()),
        Policy("allow-all-to-a", "x", POD_A, ingress=ALLOW_ALL),
    )
    yield single(
        "an except in one policy versus an allow by pod in another",
        ["conflict", "ingress", "ip-block-with-except", "pods-by-label", "multi-policy", "extra"],
        Policy("pod-net-except-b", "x", POD_A, ingress=(Rule(peers=(ip_block(POD_NET, "${ip x/b}/32"),)),)),
        Policy("allow-b", "x", POD_A, ingress=(Rule(peers=(peer(POD_B, None),)),)),
    )
    yield single(
        "allow by pod versus allow by IP for different ports",
        ["conflict", "egress", "multi-policy", "ip-block-no-except", "all-pods", "all-namespaces", "extra"],
        Policy("egress-80-by-pod", "x", POD_A, egress=(Rule(ports=(TCP_80,), peers=(peer(None, EMPTY),)),)),
        Policy("egress-81-by-ip", "x", POD_A, egress=(Rule(ports=(port(81, "UDP"),), peers=(ip_block(POD_NET),)),)),
    )


def extra_cases() -> list[Case]:
    """Our additions beyond cyclonus."""
    families = (
        extra_target_cases,
        extra_peer_cases,
        extra_port_cases,
        extra_policy_type_cases,
        extra_action_cases,
        extra_conflict_cases,
    )
    return [c for family in families for c in family()]


def all_cases() -> list[Case]:
    """Every fixed case: cyclonus's, then ours."""
    return cyclonus_cases() + extra_cases()
