"""npm-sim lint on ClusterNetworkPolicies: fail-closed rules, shadowed rules (exact: removing one
changes no verdict), equal priorities that overlap, and the NetworkPolicy checks beside them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from kube.manifests import cluster_network_policy, cluster_of, container_port, pod, policy
from kube.model import Cluster
from simulator.engine import Simulator
from simulator.lint import lint
from simulator.lint_tiers import critical_ports
from simulator.outside import outside_endpoints
from tests.simulator.cnp_gen import random_cnp_cluster
from tests.simulator.test_cnp_semantics import ALL_NS, RED, base, rule

BLUE = {"namespaces": {"matchLabels": {"team": "blue"}}}


def cnp(name: str, priority: int = 0, tier: str = "Admin", **spec: Any) -> dict[str, Any]:
    return cluster_network_policy(name, tier=tier, priority=priority, **spec)


def found(objects: list[dict[str, Any]], kind: str) -> list[tuple[str, str | None, str, str]]:
    return [(f.policy, f.rule, f.severity, f.reason) for f in lint(cluster_of(base(*objects))) if f.kind == kind]


def test_fail_closed_rules_say_what_they_do() -> None:
    got = found([cnp("dns", egress=[rule("Accept", [RED, {"domainNames": ["example.com"]}], "egress")]),
                 cnp("sa", ingress=[rule("Pass", [{"serviceAccounts": {}}])])], "cnp-fail-closed")
    assert [(p, r, s) for p, r, s, _ in got] == [("cnp/dns", "egress[0].to[1]", "warning"),
                                                 ("cnp/sa", "ingress[0].from[0]", "warning")]
    assert "matches no traffic" in got[0][3] and "domainNames" in got[0][3]
    assert "treated as denying all ingress traffic" in got[1][3]


def test_a_rule_after_a_broader_one_of_its_policy_is_shadowed() -> None:
    got = found([cnp("x", ingress=[rule("Deny", ALL_NS), rule("Accept", [RED])])], "cnp-rule-shadowed")
    assert [(p, r) for p, r, _, _ in got] == [("cnp/x", "ingress[1]")]
    assert "decided first by cnp/x ingress[0]" in got[0][3]


def test_a_rule_behind_an_earlier_policy_or_a_pass_is_shadowed() -> None:
    got = found([cnp("first", 0, ingress=[rule("Pass", [RED]), rule("Deny", [BLUE])]),
                 cnp("second", 1, ingress=[rule("Accept", ALL_NS)])], "cnp-rule-shadowed")
    assert [(p, r) for p, r, _, _ in got] == [("cnp/second", "ingress[0]")]
    assert "cnp/first ingress[0]" in got[0][3] and "cnp/first ingress[1]" in got[0][3]


def test_a_baseline_rule_behind_the_admin_tier_or_network_policies_is_shadowed() -> None:
    got = found([cnp("open", ingress=[rule("Accept", [RED])]),
                 cnp("guard", tier="Baseline", ingress=[rule("Deny", [RED]), rule("Deny", [BLUE])])],
                "cnp-rule-shadowed")
    assert [(p, r) for p, r, _, _ in got] == [("cnp/guard", "ingress[0]")]
    assert "the Admin tier (cnp/open ingress[0])" in got[0][3]
    isolated = policy("b", "all", {"podSelector": {}, "ingress": [{}]})
    subject_b = {"namespaces": {"matchLabels": {"team": "blue"}}}
    got = found([isolated, cnp("guard", tier="Baseline", subject=subject_b, ingress=[rule("Deny", [RED])])],
                "cnp-rule-shadowed")
    assert [(p, r) for p, r, _, _ in got] == [("cnp/guard", "ingress[0]")]
    assert "NetworkPolicies that select all its subjects for ingress" in got[0][3]


def test_partial_cover_by_ports_or_addresses_is_no_shadow() -> None:
    tcp = lambda start, end: [{"tcp": {"destinationPort": {"range": {"start": start, "end": end}}}}]  # noqa: E731
    got = found([cnp("p", ingress=[rule("Deny", ALL_NS, protocols=tcp(80, 90)),
                                   rule("Accept", ALL_NS, protocols=[{"tcp": {"destinationPort": {"number": 85}}}]),
                                   rule("Accept", ALL_NS, protocols=tcp(85, 95))])], "cnp-rule-shadowed")
    assert [(p, r) for p, r, _, _ in got] == [("cnp/p", "ingress[1]")]
    got = found([cnp("n", egress=[rule("Deny", [{"networks": ["10.244.0.0/16"]}], "egress"),
                                  rule("Accept", [{"networks": ["10.0.0.0/8"]}], "egress"),
                                  rule("Accept", ALL_NS, "egress")])], "cnp-rule-shadowed")
    assert [(p, r) for p, r, _, _ in got] == [("cnp/n", "egress[2]")]  # every pod is in 10.244.0.0/16


def test_equal_priorities_that_overlap_are_reported_on_the_later_by_name() -> None:
    got = found([cnp("b-allow", 3, ingress=[rule("Accept", [RED])]),
                 cnp("a-deny", 3, ingress=[rule("Deny", ALL_NS)]),
                 cnp("c-same", 3, ingress=[rule("Deny", [RED])]),
                 cnp("d-other", 4, ingress=[rule("Accept", ALL_NS)])], "cnp-priority-overlap")
    assert [(p, r, s) for p, r, s, _ in got] == [("cnp/b-allow", "ingress[0]", "warning"),
                                                 ("cnp/c-same", "ingress[0]", "info"),
                                                 ("cnp/c-same", "ingress[0]", "warning")]
    assert "as cnp/a-deny" in got[0][3] and "a/" in got[0][3] and "(ingress)" in got[0][3]
    assert "as cnp/a-deny" in got[1][3] and "same action" in got[1][3]
    assert "as cnp/b-allow" in got[2][3]


def test_equal_priorities_with_disjoint_subjects_or_peers_do_not_overlap() -> None:
    assert not found([cnp("x", 3, subject={"namespaces": {"matchLabels": {"team": "red"}}},
                          ingress=[rule("Deny", ALL_NS)]),
                      cnp("y", 3, subject={"namespaces": {"matchLabels": {"team": "blue"}}},
                          ingress=[rule("Accept", ALL_NS)]),
                      cnp("z", 3, ingress=[rule("Accept", [{"namespaces": {"matchLabels": {"team": "none"}}}])])],
                     "cnp-priority-overlap")


def test_cluster_network_policies_protect_a_namespace_and_can_block_dns() -> None:
    dns = pod("kube-system", "coredns", {"k8s-app": "kube-dns"}, node="n1",
              ports=[container_port(53, "UDP", "dns"), container_port(53, "TCP", "dns-tcp")])
    deny = cnp("no-kube-system", subject={"namespaces": {"matchLabels": {"team": "red"}}}, egress=[
        rule("Deny", [{"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}], "egress")])
    findings = lint(cluster_of(base(dns, deny)))
    assert {f.namespace for f in findings if f.kind == "unprotected-namespace"} == {"b", "kube-system"}
    blocked = [f for f in findings if f.kind == "dns-blocked"]
    assert [f.policy for f in blocked] == ["cnp/no-kube-system"] and "a/client" in blocked[0].reason


def _without_rule(cluster: Cluster, name: str, where: str) -> Cluster:
    word, index = where.split("[")
    i = int(index.rstrip("]"))
    old = cluster.cluster_policy_by_name[name]
    rules = tuple(r for k, r in enumerate(getattr(old, word)) if k != i)
    new = replace(old, **{word: rules})
    return replace(cluster, cluster_policies=tuple(new if p.name == name else p for p in cluster.cluster_policies))


def _verdicts(cluster: Cluster, ports, addresses) -> list[np.ndarray]:
    sim = Simulator(cluster)
    out = []
    for spec in ports:
        out.append(sim.matrix([spec]).allowed[spec])
        for ip in addresses:
            out += [v[sim.classes.pod_class] for v in sim.external(ip, spec)]
    return out


@pytest.mark.parametrize("seed", range(0, 120, 8))
def test_removing_a_shadowed_rule_changes_no_verdict(seed: int) -> None:
    cluster = random_cnp_cluster(seed)
    shadowed = [f for f in lint(cluster) if f.kind == "cnp-rule-shadowed"]
    sim = Simulator(cluster)
    ports = critical_ports(sim)
    addresses = [e.address for e in outside_endpoints([cluster])]
    before = _verdicts(cluster, ports, addresses)
    for f in shadowed:
        after = _verdicts(_without_rule(cluster, f.policy.removeprefix("cnp/"), f.rule or ""), ports, addresses)
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True)), (seed, f.render())


def test_lint_sarif_with_cluster_network_policy_findings_validates(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import yaml
    from test_ci_output import valid_sarif
    from whatif_helpers import run

    path = tmp_path / "c.yaml"
    dns = rule("Accept", [{"domainNames": ["example.com"]}], "egress")
    guarded = cnp("x", ingress=[rule("Deny", ALL_NS), rule("Accept", [RED])], egress=[dns])
    path.write_text(yaml.safe_dump_all(base(guarded)))
    code, out, err = run(capsys, "lint", "-f", str(path), "-o", "sarif")
    assert code == 0, err
    ids = {r["ruleId"] for r in valid_sarif(out)["runs"][0]["results"]}
    assert {"cnp-rule-shadowed", "cnp-fail-closed"} <= ids
