"""Explanations attribute verdicts to policies and rules; the graph mirrors the engine."""

from __future__ import annotations

import json

from kube.manifests import cluster_of, container_port, namespace, node, pod, policy
from kube.model import IPBlock, PortSpec
from simulator.engine import Simulator
from simulator.explain import explain
from simulator.graph import block_name, representative_ip, to_graph

HTTP = PortSpec(80)


def cluster():
    return cluster_of(
        [
            node("n1", "172.18.0.2"),
            namespace("x"),
            pod("x", "web", {"app": "web"}, ports=[container_port(80, name="http")], node="n1"),
            pod("x", "client", {"app": "client"}, node="n1"),
            pod("x", "other", {"app": "other"}, node="n1"),
            policy("x", "deny", {"podSelector": {}, "policyTypes": ["Ingress"]}),
            policy(
                "x",
                "web-from-client",
                {
                    "podSelector": {"matchLabels": {"app": "web"}},
                    "ingress": [
                        {"from": [{"ipBlock": {"cidr": "192.168.0.0/16"}}], "ports": [{"port": 443}]},
                        {
                            "from": [
                                {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.128.0.0/9"]}},
                                {"podSelector": {"matchLabels": {"app": "client"}}},
                            ],
                            "ports": [{"port": 22}, {"port": "http"}],
                        },
                    ],
                },
            ),
            policy(
                "x",
                "egress-limit",
                {
                    "podSelector": {"matchLabels": {"app": "other"}},
                    "egress": [{"ports": [{"port": 53, "protocol": "UDP"}]}],
                    "policyTypes": ["Egress"],
                },
            ),
        ]
    )


def test_explain_names_the_allowing_rule_peer_and_port() -> None:
    why = explain(cluster(), "x/client", "x/web", HTTP)
    assert why.allowed
    rule = why.ingress.rule
    assert rule is not None
    assert (rule.policy, rule.direction, rule.rule, rule.peer, rule.port) == ("x/web-from-client", "Ingress", 1, 1, 1)
    assert set(why.ingress.policies) == {"x/deny", "x/web-from-client"}
    assert not why.egress.isolated and why.egress.allowed


def test_explain_denied_lists_isolating_policies() -> None:
    why = explain(cluster(), "x/other", "x/web", HTTP)
    assert not why.allowed
    assert not why.egress.allowed and why.egress.policies == ("x/egress-limit",)
    text = why.render()
    assert "DENIED" in text and "x/egress-limit" in text
    data = why.to_json()
    assert data["verdict"] == "denied" and data["egress"]["isolated"] is True
    json.dumps(data)


def test_explain_rule_without_ports_or_peers_has_no_indexes() -> None:
    why = explain(cluster(), "x/other", "8.8.8.8", PortSpec(53, "UDP"))
    assert why.allowed and why.dst_kind == "external"
    assert why.egress.rule is not None and why.egress.rule.peer is None and why.egress.rule.port == 0


def test_explain_reports_bypass_for_self_and_node() -> None:
    c = cluster()
    assert explain(c, "x/web", "x/web", PortSpec(9)).bypass == "a pod may always reach itself"
    why = explain(c, "172.18.0.2", "x/other", HTTP)
    assert why.allowed and "own node" in (why.bypass or "")


def test_explain_agrees_with_simulator() -> None:
    c = cluster()
    sim = Simulator(c)
    for src in [p.key for p in c.pods] + ["10.200.0.1", "10.1.0.1", "192.168.1.1"]:
        for dst in [p.key for p in c.pods]:
            for spec in (HTTP, PortSpec(22), PortSpec(443), PortSpec(53, "UDP")):
                assert explain(sim, src, dst, spec).allowed == sim.allowed(src, dst, spec)


def test_graph_nodes_and_edges_follow_the_matrix() -> None:
    sim = Simulator(cluster())
    g = to_graph(sim, [HTTP, PortSpec(22)], external_ips=["10.200.0.1", "10.1.0.1"], include_ip_blocks=True)
    assert g.nodes["x/web"]["labels"] == {"app": "web"} and g.nodes["x/web"]["namespace"] == "x"
    assert g.edges["x/client", "x/web"]["ports"] == ["80/TCP", "22/TCP"]
    assert not g.has_edge("x/other", "x/web")
    assert g.has_edge("x/web", "x/web")
    assert g.edges["10.1.0.1", "x/web"]["ports"] == ["80/TCP", "22/TCP"]
    assert not g.has_edge("10.200.0.1", "x/web")  # inside the except range
    assert "192.168.0.0/16" in g and g.nodes["192.168.0.0/16"]["kind"] == "external"
    assert not g.has_edge("192.168.0.0/16", "x/web")  # only 443 is open to it


def test_representative_ip_skips_except_ranges() -> None:
    block = IPBlock("10.0.0.0/8", ("10.0.0.0/9",))
    assert representative_ip(block) == "10.128.0.0"
    assert block_name(block) == "10.0.0.0/8 except 10.0.0.0/9"
    assert representative_ip(IPBlock("10.0.0.0/30")) == "10.0.0.1"
