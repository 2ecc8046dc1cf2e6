"""ClusterNetworkPolicy semantics, rule by rule of the API (issue #14), in the reference and the
engine alike: tier order, Pass, NetworkPolicy isolation hiding Baseline, priorities, peers,
ports, fail-closed rules, hostNetwork pods and the exceptions policy never overrides."""

from __future__ import annotations

from typing import Any

import pytest

from kube.manifests import cluster_network_policy, cluster_of, container_port, namespace, pod, policy
from kube.model import Cluster, PortSpec
from simulator import semantics
from simulator.engine import Simulator
from simulator.explain import explain
from tests.simulator.cnp_gen import labelled_node

WEB = PortSpec(80)


def base(*extra: dict[str, Any]) -> list[dict[str, Any]]:
    """Two namespaces (a: team=red, b: team=blue), two nodes, a client and a server in each."""
    return [
        namespace("a", {"team": "red"}),
        namespace("b", {"team": "blue"}),
        labelled_node("n1", "172.18.0.2", {"zone": "east"}),
        labelled_node("n2", "172.18.0.3", {"zone": "west"}),
        pod("a", "client", {"app": "client"}, ip="10.244.1.1", node="n1"),
        pod("a", "server", {"app": "server"}, ip="10.244.1.2", node="n1",
            ports=[container_port(80, name="http"), container_port(53, "UDP", "dns")]),
        pod("b", "client", {"app": "client"}, ip="10.244.2.1", node="n2"),
        pod("b", "server", {"app": "server"}, ip="10.244.2.2", node="n2", ports=[container_port(8080, name="http")]),
        pod("b", "agent", {"app": "agent"}, node="n2", host_network=True, ports=[container_port(9100, name="http")]),
        *extra,
    ]


def verdict(cluster: Cluster, src: str, dst: str, port: PortSpec = WEB) -> bool:
    """The reference verdict, checked against the engine and explain."""
    s, d = semantics.resolve(cluster, src), semantics.resolve(cluster, dst)
    expected = semantics.allowed(cluster, s, d, port)
    assert Simulator(cluster).allowed(src, dst, port) == expected, (src, dst, port)
    assert explain(cluster, src, dst, port).allowed == expected
    return expected


def admin(name: str, priority: int = 0, **spec: Any) -> dict[str, Any]:
    return cluster_network_policy(name, tier="Admin", priority=priority, **spec)


def baseline(name: str, priority: int = 0, **spec: Any) -> dict[str, Any]:
    return cluster_network_policy(name, tier="Baseline", priority=priority, **spec)


def rule(action: str, peers: list[dict[str, Any]], direction: str = "ingress", **more: Any) -> dict[str, Any]:
    return {"action": action, ("from" if direction == "ingress" else "to"): peers, **more}


ALL_NS = [{"namespaces": {}}]
RED = {"namespaces": {"matchLabels": {"team": "red"}}}
ALLOW_ALL_INGRESS = policy("b", "allow-all", {"podSelector": {}, "ingress": [{}]})
DENY_ALL_INGRESS = policy("b", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]})


def test_admin_deny_overrides_a_network_policy_that_allows() -> None:
    c = cluster_of(base(ALLOW_ALL_INGRESS,
                        admin("deny-red", subject={"namespaces": {}}, ingress=[rule("Deny", [RED])])))
    assert not verdict(c, "a/client", "b/server")
    assert verdict(c, "b/client", "b/server")


def test_admin_accept_overrides_network_policy_isolation() -> None:
    c = cluster_of(base(DENY_ALL_INGRESS, admin("let-red", ingress=[rule("Accept", [RED])])))
    assert verdict(c, "a/client", "b/server")
    assert not verdict(c, "b/client", "b/server")  # not matched by Admin: the NetworkPolicy decides


def test_admin_pass_hands_the_connection_to_network_policy() -> None:
    c = cluster_of(base(DENY_ALL_INGRESS,
                        admin("pass-red", 0, ingress=[rule("Pass", [RED])]),
                        admin("accept-all", 1, ingress=[rule("Accept", ALL_NS)])))
    assert not verdict(c, "a/client", "b/server")  # passed over accept-all; the NetworkPolicy denies
    assert verdict(c, "b/client", "b/server")  # accept-all


def test_admin_pass_reaches_baseline_when_no_network_policy_selects_the_pod() -> None:
    c = cluster_of(base(admin("pass-red", ingress=[rule("Pass", [RED])]),
                        admin("deny-all", 5, ingress=[rule("Deny", ALL_NS)]),
                        baseline("deny-red", ingress=[rule("Deny", [RED])])))
    assert not verdict(c, "a/client", "b/server")  # Baseline denies
    assert not verdict(c, "b/client", "b/server")  # Admin deny-all


def test_a_pod_selected_by_a_network_policy_skips_baseline_in_that_direction_only() -> None:
    selects_server = policy("b", "web", {"podSelector": {"matchLabels": {"app": "server"}},
                                         "ingress": [{"from": [{"namespaceSelector": {}}]}]})
    c = cluster_of(base(selects_server, baseline("deny-all", subject={"namespaces": {}},
                                                 ingress=[rule("Deny", ALL_NS)],
                                                 egress=[rule("Deny", ALL_NS, "egress")])))
    assert not verdict(c, "a/client", "b/client")  # egress at a/client: Baseline denies
    c2 = cluster_of(base(selects_server, baseline("deny-in", ingress=[rule("Deny", ALL_NS)])))
    assert verdict(c2, "a/client", "b/server")  # ingress: the NetworkPolicy allows, Baseline not consulted
    assert not verdict(c2, "a/client", "b/client")  # b/client is not selected: Baseline denies


def test_egress_accept_still_needs_ingress_at_the_destination() -> None:
    c = cluster_of(base(DENY_ALL_INGRESS, admin("out", subject={"namespaces": {"matchLabels": {"team": "red"}}},
                                                  egress=[rule("Accept", ALL_NS, "egress")])))
    assert not verdict(c, "a/client", "b/server")
    why = explain(c, "a/client", "b/server", WEB)
    assert why.egress.allowed and why.egress.decided_by == "Admin" and not why.ingress.allowed


def test_egress_deny_is_final_even_when_ingress_accepts() -> None:
    c = cluster_of(base(admin("no-out", egress=[rule("Deny", ALL_NS, "egress")]),
                        admin("in", ingress=[rule("Accept", ALL_NS)])))
    assert not verdict(c, "a/client", "b/server")


def test_lower_priority_goes_first_and_equal_priorities_go_by_name() -> None:
    deny, accept = [rule("Deny", [RED])], [rule("Accept", [RED])]
    assert verdict(cluster_of(base(admin("z-accept", 1, ingress=accept), admin("a-deny", 2, ingress=deny))),
                   "a/client", "b/server")
    assert not verdict(cluster_of(base(admin("z-accept", 1, ingress=accept), admin("a-deny", 1, ingress=deny))),
                       "a/client", "b/server")


def test_rules_of_a_policy_apply_in_written_order() -> None:
    first_accept = admin("x", ingress=[rule("Accept", [RED]), rule("Deny", ALL_NS)])
    c = cluster_of(base(first_accept))
    assert verdict(c, "a/client", "b/server")
    assert not verdict(c, "b/client", "b/server")


def test_pass_skips_the_rest_of_the_tier_including_later_policies() -> None:
    c = cluster_of(base(admin("p", 1, ingress=[rule("Pass", [RED])]), admin("d", 2, ingress=[rule("Deny", ALL_NS)])))
    assert verdict(c, "a/client", "b/server")  # passed, then nothing decides: allowed
    assert not verdict(c, "b/client", "b/server")


def test_networks_match_pod_addresses_node_addresses_and_outside() -> None:
    c = cluster_of(base(admin("no-pod-net", subject={"namespaces": {"matchLabels": {"team": "red"}}},
                              egress=[rule("Deny", [{"networks": ["10.244.2.0/24", "172.18.0.3/32", "8.8.8.0/24"]}],
                                           "egress")])))
    assert not verdict(c, "a/client", "b/server")  # a pod address
    assert not verdict(c, "a/client", "b/agent")  # a hostNetwork pod, at its node's address
    assert not verdict(c, "a/client", "172.18.0.3")  # the node itself
    assert not verdict(c, "a/client", "8.8.8.8")
    assert verdict(c, "a/client", "8.8.4.4")
    assert verdict(c, "a/client", "a/server")


def test_nodes_peers_match_node_addresses_and_host_network_pods_on_those_nodes() -> None:
    c = cluster_of(base(admin("no-west", egress=[rule("Deny", [{"nodes": {"matchLabels": {"zone": "west"}}}],
                                                      "egress")])))
    assert not verdict(c, "a/client", "172.18.0.3")  # node n2 (west)
    assert not verdict(c, "a/client", "b/agent")  # hostNetwork on n2
    assert verdict(c, "a/client", "b/server")  # a pod on n2 has its own address
    assert verdict(c, "a/client", "172.18.0.2")  # n1 is east


def test_host_network_pods_are_never_subjects_nor_pod_peers() -> None:
    c = cluster_of(base(admin("deny-pods", subject={"namespaces": {}}, ingress=[rule("Deny", ALL_NS)],
                              egress=[rule("Deny", ALL_NS, "egress")])))
    assert verdict(c, "b/agent", "a/client")  # a hostNetwork source is no subject of egress, no pods peer
    assert verdict(c, "a/client", "b/agent", PortSpec(9100))  # nor a pods peer of egress, nor a subject
    assert not verdict(c, "b/client", "a/client")


def test_accept_with_an_unsupported_peer_matches_nothing() -> None:
    c = cluster_of(base(DENY_ALL_INGRESS, admin("dns", egress=[rule("Accept", [{"domainNames": ["example.com"]}],
                                                                    "egress")]),
                        admin("let", 1, ingress=[rule("Accept", [{"serviceAccounts": {}}, RED])])))
    assert verdict(c, "a/client", "8.8.8.8")  # the Accept matched nothing: not isolated, allowed
    assert not verdict(c, "a/client", "b/server")  # the whole rule matches nothing, its pods peer too


@pytest.mark.parametrize("action", ["Deny", "Pass"])
def test_deny_or_pass_with_an_unsupported_peer_denies_everything_on_every_port(action: str) -> None:
    fail = rule(action, [{"domainNames": ["example.com"]}], "egress",
                protocols=[{"tcp": {"destinationPort": {"number": 443}}}])
    c = cluster_of(base(admin("closed", subject={"namespaces": {"matchLabels": {"team": "red"}}}, egress=[fail]),
                        baseline("open", egress=[rule("Accept", ALL_NS, "egress")])))
    assert not verdict(c, "a/client", "8.8.8.8", PortSpec(53, "UDP"))
    assert not verdict(c, "a/client", "b/server", WEB)
    assert verdict(c, "b/client", "a/server")
    why = explain(c, "a/client", "b/server", WEB)
    assert why.egress.admin is not None and why.egress.admin.fail_closed and why.egress.admin.action == "Deny"


def test_named_ports_resolve_on_the_destination_pod() -> None:
    named = [{"destinationNamedPort": "http"}]
    c = cluster_of(base(admin("web-only", subject={"namespaces": {}},
                              ingress=[rule("Accept", ALL_NS, protocols=named), rule("Deny", ALL_NS)])))
    assert verdict(c, "a/client", "a/server", PortSpec(80))
    assert verdict(c, "a/client", "b/server", PortSpec(8080))
    assert not verdict(c, "a/client", "b/server", PortSpec(80))
    c2 = cluster_of(base(admin("out", egress=[rule("Deny", ALL_NS, "egress", protocols=named)])))
    assert not verdict(c2, "a/client", "b/server", PortSpec(8080))
    assert verdict(c2, "a/client", "b/server", PortSpec(80))


def test_port_ranges_are_inclusive_and_protocols_distinct() -> None:
    span = [{"udp": {"destinationPort": {"range": {"start": 53, "end": 80}}}}]
    c = cluster_of(base(admin("udp", ingress=[rule("Deny", ALL_NS, protocols=span)])))
    assert not verdict(c, "a/client", "b/server", PortSpec(53, "UDP"))
    assert not verdict(c, "a/client", "b/server", PortSpec(80, "UDP"))
    assert verdict(c, "a/client", "b/server", PortSpec(81, "UDP"))
    assert verdict(c, "a/client", "b/server", PortSpec(80, "TCP"))


def test_a_pod_and_its_own_node_reach_each_other_whatever_admin_says() -> None:
    c = cluster_of(base(admin("deny-all", ingress=[rule("Deny", [{"unknownPeer": {}}])], egress=[
        rule("Deny", [{"networks": ["0.0.0.0/0"]}], "egress")])))
    assert verdict(c, "172.18.0.3", "b/server")  # n2 -> a pod on n2, though ingress fails closed
    assert verdict(c, "b/server", "172.18.0.3")
    assert verdict(c, "b/agent", "b/server")  # hostNetwork on the same node
    assert not verdict(c, "172.18.0.2", "b/server")  # another node: denied
    assert not verdict(c, "b/server", "172.18.0.2")
    assert verdict(c, "b/server", "b/server")


def test_outside_addresses_are_never_subjects_and_pod_peers_never_match_them() -> None:
    c = cluster_of(base(admin("deny-pods", ingress=[rule("Deny", ALL_NS)],
                              egress=[rule("Deny", ALL_NS, "egress")])))
    assert verdict(c, "8.8.8.8", "a/server")
    assert verdict(c, "a/server", "8.8.8.8")


def test_baseline_rules_apply_in_order_and_the_default_allows() -> None:
    c = cluster_of(base(baseline("b", ingress=[rule("Accept", [RED]), rule("Deny", ALL_NS)])))
    assert verdict(c, "a/client", "b/server")
    assert not verdict(c, "b/client", "b/server")
    assert verdict(c, "8.8.8.8", "b/server")  # no rule matches an address: the default allows
