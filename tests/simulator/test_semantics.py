"""One test per NetworkPolicy semantic point, against the engine and the reference alike."""

from __future__ import annotations

from typing import Any

import pytest

from kube.manifests import cluster_of, container_port, namespace, node, pod, policy
from kube.model import PortSpec
from simulator import semantics
from simulator.engine import Simulator

TCP80 = PortSpec(80)


def sim_of(*objs: dict[str, Any]) -> Simulator:
    return Simulator(cluster_of(objs))


def check(sim: Simulator, src: str, dst: str, port: PortSpec = TCP80) -> bool:
    """The engine's verdict, asserted equal to the scalar reference's."""
    got = sim.allowed(src, dst, port)
    ref = semantics.allowed(sim.cluster, sim.endpoint(src), sim.endpoint(dst), port)
    assert got == ref, f"engine {got} != reference {ref} for {src} -> {dst} {port}"
    return got


def base(*extra: dict[str, Any]) -> Simulator:
    """Namespaces x (team=a) and y (team=b), pods x/a x/b y/a y/b labelled pod=<name>."""
    objs = [namespace("x", {"team": "a"}), namespace("y", {"team": "b"})]
    for ns in "xy":
        for name in "ab":
            objs.append(pod(ns, name, {"pod": name}, ports=[container_port(80, name="http")]))
    return sim_of(*objs, *extra)


def ingress_policy(ns: str, target: dict, peers: list | None = None, ports: list | None = None, name: str = "p"):
    rule: dict[str, Any] = {}
    if peers is not None:
        rule["from"] = peers
    if ports is not None:
        rule["ports"] = ports
    return policy(ns, name, {"podSelector": target, "policyTypes": ["Ingress"], "ingress": [rule]})


def egress_policy(ns: str, target: dict, peers: list | None = None, ports: list | None = None, name: str = "e"):
    rule: dict[str, Any] = {}
    if peers is not None:
        rule["to"] = peers
    if ports is not None:
        rule["ports"] = ports
    return policy(ns, name, {"podSelector": target, "policyTypes": ["Egress"], "egress": [rule]})


# ----- selectors --------------------------------------------------------------------------


def test_no_policy_allows_everything() -> None:
    sim = base()
    assert all(check(sim, s, d) for s in ("x/a", "y/b") for d in ("x/b", "y/a"))


def test_empty_pod_selector_selects_every_pod_of_the_policy_namespace() -> None:
    sim = base(policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    assert not check(sim, "y/a", "x/a")
    assert not check(sim, "y/a", "x/b")
    assert check(sim, "x/a", "y/b")  # y is not selected


def test_policy_selects_pods_of_its_own_namespace_only() -> None:
    sim = base(policy("x", "deny", {"podSelector": {"matchLabels": {"pod": "a"}}, "policyTypes": ["Ingress"]}))
    assert not check(sim, "y/b", "x/a")
    assert check(sim, "x/b", "y/a")  # y/a has pod=a too, but lives in y


def test_peer_pod_selector_without_namespace_selector_means_policy_namespace() -> None:
    sim = base(ingress_policy("x", {}, [{"podSelector": {"matchLabels": {"pod": "b"}}}]))
    assert check(sim, "x/b", "x/a")
    assert not check(sim, "y/b", "x/a")


def test_peer_empty_namespace_selector_means_all_namespaces() -> None:
    sim = base(ingress_policy("x", {}, [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]))
    assert check(sim, "x/b", "x/a")
    assert check(sim, "y/b", "x/a")
    assert not check(sim, "y/a", "x/a")


def test_peer_with_only_namespace_selector_means_all_pods_of_those_namespaces() -> None:
    sim = base(ingress_policy("x", {}, [{"namespaceSelector": {"matchLabels": {"team": "b"}}}]))
    assert check(sim, "y/a", "x/a")
    assert check(sim, "y/b", "x/b")
    assert not check(sim, "x/b", "x/a")


def test_empty_pod_selector_peer_means_all_pods_of_policy_namespace() -> None:
    sim = base(ingress_policy("x", {}, [{"podSelector": {}}]))
    assert check(sim, "x/b", "x/a")
    assert not check(sim, "y/b", "x/a")


def test_namespace_and_pod_selector_in_one_peer_is_an_and() -> None:
    peer = {"namespaceSelector": {"matchLabels": {"team": "b"}}, "podSelector": {"matchLabels": {"pod": "a"}}}
    sim = base(ingress_policy("x", {}, [peer]))
    assert check(sim, "y/a", "x/b")
    assert not check(sim, "y/b", "x/b")  # namespace matches, pod does not
    assert not check(sim, "x/a", "x/b")  # pod matches, namespace does not


def test_two_peers_are_an_or() -> None:
    peers = [{"namespaceSelector": {"matchLabels": {"team": "b"}}}, {"podSelector": {"matchLabels": {"pod": "a"}}}]
    sim = base(ingress_policy("x", {"matchLabels": {"pod": "b"}}, peers))
    assert check(sim, "y/b", "x/b")  # first peer
    assert check(sim, "x/a", "x/b")  # second peer


def test_rule_without_peers_allows_all_sources_including_external_ips() -> None:
    sim = base(ingress_policy("x", {}, None, [{"port": 80}]))
    assert check(sim, "y/a", "x/a")
    assert check(sim, "8.8.8.8", "x/a")
    assert not check(sim, "8.8.8.8", "x/a", PortSpec(81))


def test_egress_rule_without_peers_allows_all_destinations_including_external_ips() -> None:
    sim = base(egress_policy("x", {}, None, [{"port": 80}]))
    assert check(sim, "x/a", "y/a")
    assert check(sim, "x/a", "1.2.3.4")
    assert not check(sim, "x/a", "1.2.3.4", PortSpec(443))


def test_rule_without_ports_allows_all_ports_and_protocols() -> None:
    sim = base(ingress_policy("x", {}, [{"namespaceSelector": {}}]))
    for spec in (PortSpec(80), PortSpec(65535), PortSpec(53, "UDP"), PortSpec(9, "SCTP")):
        assert check(sim, "y/a", "x/a", spec)


def test_empty_ingress_rule_allows_everything_to_selected_pods() -> None:
    sim = base(policy("x", "allow", {"podSelector": {}, "ingress": [{}]}))
    assert check(sim, "y/a", "x/a", PortSpec(1234, "UDP"))
    assert check(sim, "10.0.0.1", "x/a")


def test_match_labels_requires_every_label() -> None:
    objs = [
        namespace("x"),
        pod("x", "t", {"pod": "t"}),
        pod("x", "ab", {"a": "1", "b": "2"}),
        pod("x", "a", {"a": "1"}),
    ]
    sim = sim_of(
        *objs,
        ingress_policy("x", {"matchLabels": {"pod": "t"}}, [{"podSelector": {"matchLabels": {"a": "1", "b": "2"}}}]),
    )
    assert check(sim, "x/ab", "x/t")
    assert not check(sim, "x/a", "x/t")


@pytest.mark.parametrize(
    ("expr", "allowed_sources"),
    [
        ({"key": "env", "operator": "In", "values": ["prod", "dev"]}, {"x/prod", "x/dev"}),
        ({"key": "env", "operator": "NotIn", "values": ["prod", "dev"]}, {"x/test", "x/none"}),
        ({"key": "env", "operator": "Exists"}, {"x/prod", "x/dev", "x/test"}),
        ({"key": "env", "operator": "DoesNotExist"}, {"x/none"}),
    ],
    ids=["in", "notin-several-values-is-an-and", "exists", "does-not-exist"],
)
def test_match_expressions_operators(expr: dict, allowed_sources: set[str]) -> None:
    objs = [namespace("x"), pod("x", "target", {"role": "target"})]
    objs += [pod("x", v, {"env": v}) for v in ("prod", "dev", "test")] + [pod("x", "none", {})]
    sim = sim_of(
        *objs, ingress_policy("x", {"matchLabels": {"role": "target"}}, [{"podSelector": {"matchExpressions": [expr]}}])
    )
    got = {s for s in ("x/prod", "x/dev", "x/test", "x/none") if check(sim, s, "x/target")}
    assert got == allowed_sources


def test_negative_only_selector_matches_pods_but_never_external_ips() -> None:
    peer = {
        "namespaceSelector": {},
        "podSelector": {"matchExpressions": [{"key": "pod", "operator": "NotIn", "values": ["b"]}]},
    }
    sim = base(ingress_policy("x", {"matchLabels": {"pod": "b"}}, [peer]))
    assert check(sim, "y/a", "x/b")
    assert not check(sim, "y/b", "x/b")
    assert not check(sim, "8.8.8.8", "x/b")
    assert not check(sim, "10.244.200.200", "x/b")


def test_does_not_exist_namespace_selector_never_matches_external_ips() -> None:
    peer = {"namespaceSelector": {"matchExpressions": [{"key": "restricted", "operator": "DoesNotExist"}]}}
    sim = base(egress_policy("x", {}, [peer]))
    assert check(sim, "x/a", "y/a")
    assert not check(sim, "x/a", "8.8.8.8")


def test_namespace_selector_uses_the_automatic_name_label() -> None:
    peer = {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}
    sim = base(ingress_policy("x", {}, [peer]))
    assert check(sim, "y/a", "x/a")
    assert not check(sim, "x/b", "x/a")


# ----- ipBlock -----------------------------------------------------------------------------


def ip_cluster(*extra: dict[str, Any]) -> Simulator:
    return sim_of(
        namespace("x"),
        pod("x", "server", {"app": "server"}, ip="10.244.1.10"),
        pod("x", "client", {"app": "client"}, ip="10.244.1.20"),
        pod("x", "other", {"app": "other"}, ip="10.244.2.30"),
        *extra,
    )


def test_ip_block_matches_external_addresses() -> None:
    sim = ip_cluster(ingress_policy("x", {"matchLabels": {"app": "server"}}, [{"ipBlock": {"cidr": "192.168.0.0/16"}}]))
    assert check(sim, "192.168.3.4", "x/server")
    assert not check(sim, "172.16.0.1", "x/server")


def test_ip_block_matches_pod_ips_too() -> None:
    sim = ip_cluster(ingress_policy("x", {"matchLabels": {"app": "server"}}, [{"ipBlock": {"cidr": "10.244.1.0/24"}}]))
    assert check(sim, "x/client", "x/server")
    assert not check(sim, "x/other", "x/server")


def test_ip_block_except_excludes_addresses() -> None:
    block = {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.16/28"]}}
    sim = ip_cluster(ingress_policy("x", {"matchLabels": {"app": "server"}}, [block]))
    assert not check(sim, "x/client", "x/server")  # 10.244.1.20 is in the except range
    assert check(sim, "x/other", "x/server")
    assert not check(sim, "10.244.1.17", "x/server")
    assert check(sim, "10.244.9.9", "x/server")


def test_address_in_except_can_be_allowed_by_another_rule() -> None:
    spec = {
        "podSelector": {"matchLabels": {"app": "server"}},
        "ingress": [
            {"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.16/28"]}}]},
            {"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]},
        ],
    }
    sim = ip_cluster(policy("x", "p", spec))
    assert check(sim, "x/client", "x/server")
    assert not check(sim, "10.244.1.17", "x/server")


def test_address_in_except_can_be_allowed_by_another_policy() -> None:
    sim = ip_cluster(
        ingress_policy(
            "x",
            {"matchLabels": {"app": "server"}},
            [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.1.20/32"]}}],
            name="a",
        ),
        ingress_policy("x", {"matchLabels": {"app": "server"}}, [{"ipBlock": {"cidr": "10.244.1.20/32"}}], name="b"),
    )
    assert check(sim, "x/client", "x/server")
    assert check(sim, "10.244.1.20", "x/server")  # the address of x/client is x/client


def test_egress_ip_block_to_pod_and_external() -> None:
    sim = ip_cluster(egress_policy("x", {"matchLabels": {"app": "client"}}, [{"ipBlock": {"cidr": "10.244.1.10/32"}}]))
    assert check(sim, "x/client", "x/server")
    assert not check(sim, "x/client", "x/other")
    assert not check(sim, "x/client", "8.8.8.8")
    assert check(sim, "x/other", "8.8.8.8")  # not isolated for egress


# ----- ports -------------------------------------------------------------------------------


def port_cluster(*extra: dict[str, Any]) -> Simulator:
    return sim_of(
        namespace("x"),
        pod(
            "x",
            "web",
            {"app": "web"},
            ports=[container_port(8080, name="http"), container_port(9090, "UDP", "metrics")],
        ),
        pod("x", "alt", {"app": "web"}, ports=[container_port(80, name="http")]),
        pod("x", "none", {"app": "web"}),
        pod("x", "client", {"app": "client"}),
        *extra,
    )


def test_named_port_resolves_on_each_destination_pod_for_ingress() -> None:
    sim = port_cluster(ingress_policy("x", {"matchLabels": {"app": "web"}}, None, [{"port": "http"}]))
    assert check(sim, "x/client", "x/web", PortSpec(8080))
    assert not check(sim, "x/client", "x/web", PortSpec(80))
    assert check(sim, "x/client", "x/alt", PortSpec(80))
    assert not check(sim, "x/client", "x/alt", PortSpec(8080))


def test_named_port_resolves_on_the_destination_pod_for_egress() -> None:
    sim = port_cluster(egress_policy("x", {"matchLabels": {"app": "client"}}, None, [{"port": "http"}]))
    assert check(sim, "x/client", "x/web", PortSpec(8080))
    assert not check(sim, "x/client", "x/web", PortSpec(80))
    assert check(sim, "x/client", "x/alt", PortSpec(80))


def test_named_port_the_pod_does_not_serve_matches_nothing() -> None:
    sim = port_cluster(ingress_policy("x", {"matchLabels": {"app": "web"}}, None, [{"port": "http"}]))
    for number in (80, 8080, 9090):
        assert not check(sim, "x/client", "x/none", PortSpec(number))


def test_named_port_served_on_another_protocol_matches_nothing() -> None:
    sim = port_cluster(
        ingress_policy("x", {"matchLabels": {"app": "web"}}, None, [{"port": "metrics", "protocol": "TCP"}])
    )
    assert not check(sim, "x/client", "x/web", PortSpec(9090, "TCP"))
    assert not check(sim, "x/client", "x/web", PortSpec(9090, "UDP"))
    sim = port_cluster(
        ingress_policy("x", {"matchLabels": {"app": "web"}}, None, [{"port": "metrics", "protocol": "UDP"}])
    )
    assert check(sim, "x/client", "x/web", PortSpec(9090, "UDP"))


def test_egress_named_port_to_external_ip_matches_nothing() -> None:
    sim = port_cluster(egress_policy("x", {"matchLabels": {"app": "client"}}, None, [{"port": "http"}]))
    assert not check(sim, "x/client", "8.8.8.8", PortSpec(80))
    assert not check(sim, "x/client", "8.8.8.8", PortSpec(8080))


def test_end_port_range_is_inclusive() -> None:
    sim = port_cluster(ingress_policy("x", {"matchLabels": {"app": "web"}}, None, [{"port": 8000, "endPort": 8080}]))
    assert not check(sim, "x/client", "x/web", PortSpec(7999))
    assert check(sim, "x/client", "x/web", PortSpec(8000))
    assert check(sim, "x/client", "x/web", PortSpec(8042))
    assert check(sim, "x/client", "x/web", PortSpec(8080))
    assert not check(sim, "x/client", "x/web", PortSpec(8081))
    assert not check(sim, "x/client", "x/web", PortSpec(8042, "UDP"))


def test_port_entry_with_only_a_protocol_matches_all_ports_of_that_protocol() -> None:
    sim = port_cluster(ingress_policy("x", {"matchLabels": {"app": "web"}}, None, [{"protocol": "UDP"}]))
    assert check(sim, "x/client", "x/web", PortSpec(1, "UDP"))
    assert check(sim, "x/client", "x/web", PortSpec(65535, "UDP"))
    assert not check(sim, "x/client", "x/web", PortSpec(80, "TCP"))


def test_port_protocol_defaults_to_tcp() -> None:
    sim = port_cluster(ingress_policy("x", {"matchLabels": {"app": "web"}}, None, [{"port": 53}]))
    assert check(sim, "x/client", "x/web", PortSpec(53, "TCP"))
    assert not check(sim, "x/client", "x/web", PortSpec(53, "UDP"))


def test_sctp_is_distinct_from_tcp() -> None:
    sim = port_cluster(ingress_policy("x", {"matchLabels": {"app": "web"}}, None, [{"port": 80, "protocol": "SCTP"}]))
    assert check(sim, "x/client", "x/web", PortSpec(80, "SCTP"))
    assert not check(sim, "x/client", "x/web", PortSpec(80, "TCP"))


# ----- isolation and combination -------------------------------------------------------------


def test_multiple_policies_are_additive() -> None:
    sim = base(
        ingress_policy(
            "x", {"matchLabels": {"pod": "a"}}, [{"podSelector": {"matchLabels": {"pod": "b"}}}], name="one"
        ),
        ingress_policy(
            "x", {"matchLabels": {"pod": "a"}}, [{"namespaceSelector": {"matchLabels": {"team": "b"}}}], name="two"
        ),
    )
    assert check(sim, "x/b", "x/a")
    assert check(sim, "y/a", "x/a")


def test_pod_is_isolated_for_ingress_only_by_a_policy_with_ingress_type() -> None:
    sim = base(egress_policy("x", {"matchLabels": {"pod": "a"}}, [{"podSelector": {}}]))
    assert check(sim, "y/a", "x/a")  # ingress to x/a is not isolated
    assert not check(sim, "x/a", "y/a")  # egress from x/a is


def test_policy_types_default_to_ingress_plus_egress_when_egress_rules_exist() -> None:
    sim = base(
        policy("x", "p", {"podSelector": {"matchLabels": {"pod": "a"}}, "egress": [{"to": [{"podSelector": {}}]}]})
    )
    assert not check(sim, "y/a", "x/a")  # Ingress is implied and there are no ingress rules
    assert check(sim, "x/a", "x/b")
    assert not check(sim, "x/a", "y/b")


def test_connection_needs_egress_at_source_and_ingress_at_destination() -> None:
    sim = base(
        egress_policy(
            "x",
            {"matchLabels": {"pod": "a"}},
            [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "a"}}}],
        ),
        ingress_policy("y", {}, [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"pod": "b"}}}]),
    )
    assert not check(sim, "x/a", "y/a")  # egress allows, ingress does not
    assert not check(sim, "x/a", "y/b")  # ingress would allow x/b, egress of x/a does not
    assert check(sim, "x/b", "y/b")  # x/b is not isolated for egress, ingress allows pod=b


def test_non_isolated_direction_allows_everything() -> None:
    sim = base(ingress_policy("y", {}, [{"podSelector": {}}]))
    assert check(sim, "x/a", "8.8.8.8", PortSpec(1, "SCTP"))
    assert check(sim, "x/a", "x/b", PortSpec(12345, "UDP"))


# ----- per-pod exceptions ----------------------------------------------------------------------


def host_cluster(*extra: dict[str, Any]) -> Simulator:
    return sim_of(
        node("n1", "172.18.0.2"),
        node("n2", "172.18.0.3"),
        namespace("x"),
        pod("x", "a", {"pod": "a"}, node="n1"),
        pod("x", "b", {"pod": "b"}, node="n2"),
        pod("x", "agent", {"pod": "agent"}, node="n1", host_network=True),
        pod("x", "agent2", {"pod": "agent"}, node="n2", host_network=True),
        *extra,
    )


def test_pod_may_always_reach_itself() -> None:
    sim = base(policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))
    assert check(sim, "x/a", "x/a", PortSpec(80))
    assert check(sim, "x/a", "x/a", PortSpec(5, "UDP"))
    assert not check(sim, "x/a", "x/b")


def test_host_network_pod_takes_the_node_ip() -> None:
    sim = host_cluster()
    assert sim.cluster.pod_by_key["x/agent"].ip == "172.18.0.2"


def test_host_network_pods_are_never_selected_by_pod_selectors() -> None:
    sim = host_cluster(
        policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]}),
        ingress_policy(
            "x", {"matchLabels": {"pod": "b"}}, [{"podSelector": {"matchLabels": {"pod": "agent"}}}], name="allow"
        ),
    )
    assert check(sim, "x/a", "x/agent2")  # as a target: agent2 is not isolated
    assert not check(sim, "x/agent", "x/b")  # as a peer: pod=agent does not match it (b is on n2)
    assert not check(sim, "x/a", "x/b")


def test_host_network_pods_match_ip_blocks_by_node_ip() -> None:
    sim = host_cluster(ingress_policy("x", {"matchLabels": {"pod": "b"}}, [{"ipBlock": {"cidr": "172.18.0.2/32"}}]))
    assert check(sim, "x/agent", "x/b")
    assert check(sim, "172.18.0.2", "x/b")
    assert not check(sim, "x/a", "x/b")


def test_traffic_from_the_pods_own_node_is_always_allowed() -> None:
    sim = host_cluster(policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]}))
    assert check(sim, "x/agent", "x/a")  # hostNetwork pod on n1 -> pod on n1
    assert check(sim, "172.18.0.2", "x/a")  # the node address itself
    assert not check(sim, "x/agent", "x/b")  # b is on n2
    assert not check(sim, "172.18.0.2", "x/b")
    assert check(sim, "x/agent2", "x/b")


def test_traffic_to_the_pods_own_node_is_always_allowed_even_when_egress_is_isolated() -> None:
    sim = host_cluster(policy("x", "deny", {"podSelector": {}, "policyTypes": ["Egress"]}))
    assert check(sim, "x/a", "x/agent")  # pod on n1 -> hostNetwork pod on n1
    assert check(sim, "x/a", "172.18.0.2")  # the node address itself
    assert not check(sim, "x/a", "x/agent2")  # agent2 is n2's address
    assert not check(sim, "x/a", "172.18.0.3")
    matrix = sim.matrix([TCP80]).allowed[TCP80]
    index = {p.key: i for i, p in enumerate(sim.cluster.pods)}
    assert matrix[index["x/a"], index["x/agent"]]
    assert not matrix[index["x/a"], index["x/agent2"]]


def test_external_to_external_is_not_governed_by_policy() -> None:
    sim = base(policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))
    assert sim.allowed("1.1.1.1", "8.8.8.8", TCP80)


def test_unknown_pod_or_garbage_endpoint_is_a_clear_error() -> None:
    sim = base()
    with pytest.raises(ValueError, match="no pod 'x/zzz'"):
        sim.allowed("x/zzz", "x/a", TCP80)
    with pytest.raises(ValueError, match="neither a pod"):
        sim.allowed("zzz", "x/a", TCP80)


def test_declared_ports_lists_container_ports() -> None:
    sim = port_cluster()
    assert sim.declared_ports("x/web") == [PortSpec(8080, "TCP"), PortSpec(9090, "UDP")]
    assert sim.declared_ports("x/none") == []


def test_pods_with_same_labels_but_different_named_ports_are_different_classes() -> None:
    sim = port_cluster()
    cls = sim.classes.pod_class
    index = sim.classes.pod_index
    assert cls[index["x/web"]] != cls[index["x/alt"]]


def test_pods_with_same_labels_share_a_class_unless_an_ip_block_splits_them() -> None:
    objs = [
        namespace("x"),
        pod("x", "a1", {"app": "a"}, ip="10.244.1.1"),
        pod("x", "a2", {"app": "a"}, ip="10.244.2.1"),
    ]
    plain = sim_of(*objs)
    assert plain.classes.count == 1
    split = sim_of(*objs, ingress_policy("x", {}, [{"ipBlock": {"cidr": "10.244.1.0/24"}}]))
    assert split.classes.count == 2
    assert check(split, "x/a1", "x/a2")
    assert not check(split, "x/a2", "x/a1")


def test_matrix_and_summary_agree() -> None:
    sim = host_cluster(policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}))
    ports = [TCP80, PortSpec(53, "UDP")]
    matrix = sim.matrix(ports)
    summary = sim.summary(ports)
    for spec, row in zip(ports, summary.ports, strict=True):
        grid = matrix.allowed[spec]
        assert row.allowed == int(grid.sum())
        assert row.allowed + row.denied == grid.size
        for i, s in enumerate(matrix.pods):
            for j, d in enumerate(matrix.pods):
                assert grid[i, j] == check(sim, s.key, d.key, spec)
