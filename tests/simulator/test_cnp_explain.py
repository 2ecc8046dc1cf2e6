"""explain walks the tiers (text and JSON), check names ClusterNetworkPolicy rules, and every
command counts ClusterNetworkPolicies as evaluated."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kube.manifests import cluster_of, policy
from kube.model import PortSpec
from simulator import semantics
from simulator.explain import explain
from tests.sim_cli import run_npm_sim
from tests.simulator.test_cnp_semantics import ALL_NS, DENY_ALL_INGRESS, RED, admin, base, baseline, rule

METADATA = admin("deny-metadata", subject={"namespaces": {}},
                 egress=[rule("Deny", [{"networks": ["169.254.169.254/32"]}], "egress", name="metadata")])


def test_an_admin_decision_is_the_whole_story() -> None:
    why = explain(cluster_of(base(METADATA)), "a/client", "169.254.169.254", PortSpec(80))
    assert not why.allowed
    assert "egress from a/client: DENIED: Admin: cnp/deny-metadata egress[0] (metadata) Deny" in why.render()
    part = why.to_json()["egress"]
    assert part["decided_by"] == "Admin" and part["admin"]["policy"] == "deny-metadata"
    assert part["admin"]["action"] == "Deny" and part["admin"]["name"] == "metadata" and part["baseline"] is None
    assert part["path"] == ["Admin: cnp/deny-metadata egress[0] (metadata) Deny"]


def test_a_pass_leads_on_to_the_network_policy() -> None:
    c = cluster_of(base(DENY_ALL_INGRESS, admin("x", ingress=[rule("Accept", [{"namespaces": {"matchLabels": {
        "team": "none"}}}]), rule("Pass", [RED])])))
    why = explain(c, "a/client", "b/server", PortSpec(80))
    assert ("ingress to b/server: DENIED: Admin: Pass by cnp/x ingress[1] → NetworkPolicy: DENIED (isolated by "
            "b/deny-all; no rule of theirs matches)") in why.render()
    assert why.to_json()["ingress"]["decided_by"] == "NetworkPolicy"


def test_baseline_is_shown_after_network_policy_leaves_the_pod_alone() -> None:
    c = cluster_of(base(baseline("guard", ingress=[rule("Deny", ALL_NS)])))
    why = explain(c, "a/client", "b/server", PortSpec(80))
    assert ("ingress to b/server: DENIED: NetworkPolicy: not isolated: no policy with Ingress in policyTypes "
            "selects it → Baseline: cnp/guard ingress[0] Deny") in why.render()
    part = why.to_json()["ingress"]
    assert part["decided_by"] == "Baseline" and part["baseline"]["tier"] == "Baseline"


def test_nothing_deciding_ends_in_the_default_allow() -> None:
    c = cluster_of(base(admin("p", ingress=[rule("Pass", ALL_NS)])))
    why = explain(c, "a/client", "b/server", PortSpec(80))
    assert why.allowed and why.to_json()["ingress"]["path"][-1] == "default: allowed (no tier decided)"


def test_cli_explain_json_and_check_name_cluster_network_policy_rules(capsys, tmp_path: Path) -> None:
    manifests = tmp_path / "c.yaml"
    manifests.write_text(yaml.safe_dump_all(base(METADATA, policy("a", "p", {"podSelector": {}}))))
    code, out, err = run_npm_sim(capsys, "explain", "-f", str(manifests), "a/client", "169.254.169.254", "-o", "json")
    assert code == 1, err
    assert json.loads(out)["egress"]["admin"]["policy"] == "deny-metadata"
    assert "1 ClusterNetworkPolicy" in err and "not yet evaluated" not in err
    checks = tmp_path / "checks.yaml"
    checks.write_text(yaml.safe_dump({"assertions": [
        {"name": "metadata reachable", "from": "a/client", "to": "169.254.169.254/32", "port": "80",
         "expect": "allow"}]}))
    code, out, err = run_npm_sim(capsys, "check", "-f", str(manifests), "--assertions", str(checks))
    assert code == 1 and "cnp/deny-metadata egress[0] (metadata) Deny" in out, out + err


def test_summary_counts_cluster_network_policies_as_used(capsys, tmp_path: Path) -> None:
    objects = base(admin("deny-all", ingress=[rule("Deny", ALL_NS)]))
    manifests = tmp_path / "c.yaml"
    manifests.write_text(yaml.safe_dump_all(objects))
    code, out, err = run_npm_sim(capsys, "summary", "-f", str(manifests), "--port", "80", "-o", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["inputs"]["used"]["ClusterNetworkPolicy"] == 1 and not data["inputs"]["ignored"]
    cluster = cluster_of(objects)
    expected = sum(semantics.allowed(cluster, s, d, PortSpec(80)) for s in cluster.pods for d in cluster.pods)
    assert data["ports"][0]["allowed"] == expected < len(cluster.pods) ** 2
