"""npm-sim lint: one test per finding kind, and the safe-set rule for redundant rules."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from whatif_helpers import BASE, WEB

from kube.manifests import cluster_of, container_port, namespace, pod, policy
from kube.model import PortSpec
from simulator.engine import Simulator
from simulator.lint import Linter, _without, failed, lint


def kinds(findings, kind):
    return [f for f in findings if f.kind == kind]


def test_policy_selecting_no_pod() -> None:
    found = kinds(lint(cluster_of([*BASE, policy("x", "ghost", {"podSelector": {"matchLabels": {"app": "nope"}}})])),
                  "selects-no-pod")
    assert [(f.policy, f.severity) for f in found] == [("x/ghost", "warning")]
    assert "app=nope" in found[0].reason


def test_peers_that_match_nothing() -> None:
    pol = policy("x", "odd", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [
        {"podSelector": {"matchLabels": {"app": "missing"}}},
        {"ipBlock": {"cidr": "192.168.0.0/24", "except": ["192.168.0.0/25", "192.168.0.128/25"]}},
        {"podSelector": {"matchLabels": {"app": "db"}}},
    ]}]})
    found = kinds(lint(cluster_of([*BASE, pol])), "peer-matches-nothing")
    assert [(f.policy, f.rule) for f in found] == [("x/odd", "ingress[0].from[0]"), ("x/odd", "ingress[0].from[1]")]


def test_named_ports_unserved_or_on_another_protocol() -> None:
    pol = policy("x", "names", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [
        {"port": "http"}, {"port": "nothere"}, {"port": "http", "protocol": "UDP"}]}]})
    found = kinds(lint(cluster_of([*BASE, pol])), "named-port-unserved")
    assert [f.rule for f in found] == ["ingress[0].ports[1]", "ingress[0].ports[2]"]
    assert "served on TCP only" in found[1].reason


def test_redundant_rules_form_a_safe_set() -> None:
    # Two identical allow rules in two policies cover each other: only one may be listed.
    twin = {"podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}], "ports": [{"port": 80}]}]}
    # A narrower rule (port 80 from y/client) covered by the broader twins.
    narrow = {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}},
                   "podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 80}]},
        {"from": [{"podSelector": {"matchLabels": {"app": "db"}}}], "ports": [{"port": 80}]},  # unique: kept
    ]}
    objs = [o for o in BASE if o["metadata"]["name"] != "allow-web"]
    objs += [policy("x", "twin-a", twin), policy("x", "twin-b", twin), policy("x", "narrow", narrow)]
    cluster = cluster_of(objs)
    found = kinds(lint(cluster), "redundant-rule")
    listed = {(f.policy, f.rule) for f in found}
    assert ("x/narrow", "ingress[1]") not in listed
    assert ("x/narrow", "ingress[0]") in listed
    assert len(listed & {("x/twin-a", "ingress[0]"), ("x/twin-b", "ingress[0]")}) == 1
    # Removing the whole set together leaves every verdict unchanged (checked independently here).
    removed: dict[str, set] = {}
    for f in found:
        removed.setdefault(f.policy, set()).add(("Ingress", int(f.rule[len("ingress["):-1])))
    pruned = replace(cluster, policies=tuple(_without(p, removed.get(p.key, ())) for p in cluster.policies))
    a, b = Simulator(cluster), Simulator(pruned)
    for spec in (PortSpec(80), PortSpec(81), PortSpec(5432), PortSpec(53, "UDP")):
        assert np.array_equal(a.matrix([spec]).allowed[spec], b.matrix([spec]).allowed[spec])


def test_ipblock_rule_is_not_redundant_when_it_admits_external_addresses() -> None:
    pol = policy("x", "ext", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
        {"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 80}]}]})
    found = kinds(lint(cluster_of([*BASE, pol])), "redundant-rule")
    assert ("x/ext", "ingress[0]") not in {(f.policy, f.rule) for f in found}


def test_unprotected_namespace_and_allow_all_only() -> None:
    objs = [*BASE, namespace("z"), pod("z", "lonely", {"app": "l"}),
            namespace("w"), pod("w", "open", {"app": "o"}),
            policy("w", "allow-all", {"podSelector": {}, "ingress": [{}]})]
    findings = lint(cluster_of(objs))
    assert [(f.namespace, f.severity) for f in kinds(findings, "unprotected-namespace")] == [
        ("y", "warning"), ("z", "warning")]
    allow_all = kinds(findings, "allow-all-only")
    assert [(f.policy, f.severity) for f in allow_all] == [("w/allow-all", "info")]
    assert "w/open" in allow_all[0].reason


def test_egress_isolation_that_blocks_dns() -> None:
    dns_pod = pod("kube-system", "coredns", {"k8s-app": "kube-dns"},
                  ports=[container_port(53, "UDP", "dns"), container_port(53, "TCP", "dns-tcp")])
    deny = policy("y", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    found = kinds(lint(cluster_of([*BASE, dns_pod, deny])), "dns-blocked")
    assert [(f.policy, f.severity) for f in found] == [("y/deny-egress", "error")]
    assert "TCP/UDP 53" in found[0].reason and "y/client-1" in found[0].reason
    allow_udp = policy("y", "dns", {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
        "ports": [{"port": 53, "protocol": "UDP"}]}]})
    found = kinds(lint(cluster_of([*BASE, dns_pod, deny, allow_udp])), "dns-blocked")
    assert len(found) == 1 and "(TCP 53" in found[0].reason
    allow_tcp = replace_ports(allow_udp)
    assert not kinds(lint(cluster_of([*BASE, dns_pod, deny, allow_udp, allow_tcp])), "dns-blocked")
    # Without DNS pods in the snapshot an assumed kube-dns pod is checked.
    found = kinds(lint(cluster_of([*BASE, deny])), "dns-blocked")
    assert found and "assumed" in found[0].reason


def replace_ports(raw: dict) -> dict:
    out = policy("y", "dns-tcp", raw["spec"])
    out["spec"] = {**raw["spec"], "egress": [{**raw["spec"]["egress"][0], "ports": [{"port": 53}]}]}
    return out


def test_ipblock_covering_pod_addresses() -> None:
    objs = [*BASE, pod("y", "fixed", {"app": "f"}, ip="10.9.0.5", ports=WEB),
            policy("x", "cidr", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [
                {"from": [{"ipBlock": {"cidr": "10.9.0.0/16"}}, {"ipBlock": {"cidr": "8.8.8.0/24"}}]}]})]
    found = kinds(lint(cluster_of(objs)), "ipblock-covers-pods")
    assert [(f.policy, f.rule) for f in found] == [("x/cidr", "ingress[0].from[0]")]
    assert "covers 1 pod address" in found[0].reason


def test_fail_on_thresholds() -> None:
    findings = Linter(cluster_of(BASE)).run()
    assert {f.severity for f in findings} == {"warning"}
    assert failed(findings, "warning") and not failed(findings, "error") and not failed(findings, None)


def test_a_redundant_rule_alone_in_looking_at_a_label_is_verified_on_the_same_classes() -> None:
    # Without it no policy looks at "app", so a fresh evaluation would have fewer classes.
    objs = [namespace("x"), pod("x", "a", {"app": "web"}), pod("x", "b", {"app": "db"}),
            policy("x", "p", {"podSelector": {}, "ingress": [
                {"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}, {"from": [{"podSelector": {}}]}]})]
    found = kinds(lint(cluster_of(objs)), "redundant-rule")
    assert [(f.policy, f.rule) for f in found] == [("x/p", "ingress[0]")]
