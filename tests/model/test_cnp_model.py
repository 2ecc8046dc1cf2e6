"""ClusterNetworkPolicy (policy.networking.k8s.io/v1alpha2): parsing into the model, the CRD's
validation with located errors, fail-closed peers, and loading from every input shape."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from kube.load import load_live, load_paths
from kube.manifests import cluster_network_policy, cluster_of, namespace, node
from kube.model import (
    EGRESS,
    INGRESS,
    ClusterNetworkPolicy,
    CNPAction,
    CNPNetworks,
    CNPNodes,
    CNPPods,
    CNPPort,
    CNPRule,
    CNPTier,
    CNPUnsupportedPeer,
    Labels,
    LabelSelector,
    Requirement,
)
from kube.parse import ParseFailure, parse_cluster_network_policy
from tests.daemon.apiserver import ApiServer

SEL = {"matchLabels": {"team": "a"}}


def rule(action: str = "Accept", peers: list[Any] | None = None, direction: str = "egress", **more: Any) -> dict:
    return {"action": action, ("to" if direction == "egress" else "from"): peers or [{"namespaces": {}}], **more}


def parse(**kw: Any) -> ClusterNetworkPolicy:
    return parse_cluster_network_policy(cluster_network_policy("c", **kw))


def errors(raw: dict[str, Any]) -> dict[str, str]:
    """field path -> message of every error of ``raw``."""
    with pytest.raises(ParseFailure) as failure:
        parse_cluster_network_policy(raw)
    return {e.path: e.message for e in failure.value.errors}


def test_every_field_is_read_into_the_model() -> None:
    cnp = parse_cluster_network_policy(
        {
            "apiVersion": "policy.networking.k8s.io/v1alpha2",
            "kind": "ClusterNetworkPolicy",
            "metadata": {"name": "guard", "uid": "u-1", "resourceVersion": "7"},
            "spec": {
                "tier": "Baseline",
                "priority": 1000,
                "subject": {"pods": {"namespaceSelector": SEL, "podSelector": {"matchLabels": {"app": "db"}}}},
                "ingress": [
                    {"name": "from-web", "action": "Accept", "from": [
                        {"pods": {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In",
                                                                         "values": ["web"]}]}}},
                        {"namespaces": SEL},
                    ], "protocols": [{"tcp": {"destinationPort": {"number": 5432}}},
                                     {"destinationNamedPort": "metrics"}]},
                    {"action": "Pass", "from": [{"namespaces": {}}]},
                ],
                "egress": [
                    {"action": "Deny", "to": [
                        {"networks": ["10.0.0.1/8", "fd00::/8"]},
                        {"nodes": {"matchLabels": {"role": "infra"}}},
                    ], "protocols": [{"udp": {"destinationPort": {"range": {"start": 30000, "end": 32767}}}},
                                     {"sctp": {"destinationPort": {"number": 9}}}]},
                ],
            },
        }
    )
    team = LabelSelector(Labels({"team": "a"}))
    assert cnp.key == "guard" and (cnp.uid, cnp.resource_version) == ("u-1", "7")
    assert (cnp.tier, cnp.priority) == (CNPTier.BASELINE, 1000)
    assert cnp.subject == CNPPods(team, LabelSelector(Labels({"app": "db"})), "pods")
    assert INGRESS.cnp_rules(cnp) == (
        CNPRule(
            CNPAction.ACCEPT,
            (CNPPods(LabelSelector(), LabelSelector(match_expressions=(Requirement("app", "In", ("web",)),))),
             CNPPods(team, LabelSelector(), "namespaces")),
            (CNPPort("TCP", 5432), CNPPort(named_port="metrics")),
            "from-web",
        ),
        CNPRule(CNPAction.PASS, (CNPPods(LabelSelector(), LabelSelector(), "namespaces"),)),
    )
    assert EGRESS.cnp_rules(cnp) == (
        CNPRule(
            CNPAction.DENY,
            (CNPNetworks((ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("fd00::/8"))),
             CNPNodes(LabelSelector(Labels({"role": "infra"})))),
            (CNPPort("UDP", 30000, 32767), CNPPort("SCTP", 9)),
        ),
    )
    assert [p.describe() for p in cnp.ingress[0].ports + cnp.egress[0].ports] == [
        "5432/TCP", "named:metrics", "30000-32767/UDP", "9/SCTP"]
    assert not any(r.fails_closed for r in cnp.ingress + cnp.egress)


def test_namespaces_subject_is_every_pod_of_the_selected_namespaces() -> None:
    cnp = parse(subject={"namespaces": SEL})
    assert cnp.subject == CNPPods(LabelSelector(Labels({"team": "a"})), LabelSelector(), "namespaces")
    assert cnp.subject.describe() == "namespaces {team=a}"
    assert (cnp.ingress, cnp.egress) == ((), ())


def test_pods_without_namespace_selector_select_in_every_namespace() -> None:
    cnp = parse(subject={"pods": {"podSelector": {"matchLabels": {"app": "x"}}}})
    assert cnp.subject.namespace_selector.is_empty and cnp.subject.pod_selector.matches({"app": "x"})


def test_domain_names_are_an_unsupported_peer_that_fails_closed() -> None:
    cnp = parse(egress=[rule("Accept", [{"namespaces": {}}, {"domainNames": ["*.example.com", "example.org."]}])])
    (only,) = cnp.egress
    assert only.fails_closed
    assert only.peers[1] == CNPUnsupportedPeer("domainNames", only.peers[1].reason)
    assert "DNS" in only.peers[1].reason
    assert [(d, path) for d, path, _r, _p in cnp.unsupported_peers()] == [(EGRESS, "spec.egress[0].to[1].domainNames")]


def test_an_unknown_peer_field_fails_closed_with_a_suggestion_instead_of_an_error() -> None:
    # A newer CRD's peer (or a typo) must not make the whole policy vanish: its rule fails closed.
    cnp = parse(ingress=[rule("Deny", [{"namespace": {}}], "ingress")])
    (peer,) = cnp.ingress[0].peers
    assert isinstance(peer, CNPUnsupportedPeer) and peer.field == "namespace"
    assert 'did you mean "namespaces"' in peer.reason
    # An egress-only peer field on an ingress rule is not understood either.
    assert parse(ingress=[rule("Accept", [{"networks": ["10.0.0.0/8"]}], "ingress")]).ingress[0].fails_closed


def test_loader_says_where_each_peer_fails_closed_and_what_its_rule_does(tmp_path: Path) -> None:
    raw = cluster_network_policy("c", egress=[rule("Accept", [{"domainNames": ["a.example"]}]),
                                              rule("Pass", [{"domainNames": ["b.example"]}])],
                                 ingress=[rule("Deny", [{"serviceAccounts": {}}], "ingress")])
    file = tmp_path / "cnp.yaml"
    file.write_text(yaml.safe_dump(raw))
    result = load_paths([str(file)])
    assert not result.errors
    notes = [n for n in result.notes if "fail closed" in n]
    assert len(notes) == 3
    assert notes[0].startswith(f"{file}[0]: ClusterNetworkPolicy c: spec.ingress[0].from[0].serviceAccounts: ")
    assert "this Deny rule denies all ingress traffic" in notes[0]
    assert "spec.egress[0].to[0].domainNames" in notes[1] and "this Accept rule matches no traffic" in notes[1]
    assert "spec.egress[1].to[0].domainNames" in notes[2]
    assert "Pass rule is treated as denying all egress" in notes[2] and "only in Accept rules" in notes[2]


def peers(*items: Any) -> dict[str, Any]:
    return cluster_network_policy("c", egress=[rule("Accept", list(items))])


def protocols(*items: Any, peer: Any = None) -> dict[str, Any]:
    return cluster_network_policy("c", egress=[rule("Deny", [peer or {"pods": {"podSelector": {}}}],
                                                    protocols=list(items))])


def spec_with(**changes: Any) -> dict[str, Any]:
    raw = cluster_network_policy("c")
    raw["spec"].update(changes)
    return {**raw, "spec": {k: v for k, v in raw["spec"].items() if v is not None}}


TCP80 = {"tcp": {"destinationPort": {"number": 80}}}
CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, object, field path, message fragment)
    ("no-spec", {**cluster_network_policy("c"), "spec": None}, "spec", "required"),
    ("no-tier", spec_with(tier=None), "spec.tier", "required"),
    ("bad-tier", spec_with(tier="admin"), "spec.tier", "one of Admin, Baseline"),
    ("no-priority", spec_with(priority=None), "spec.priority", "required"),
    ("priority-over", spec_with(priority=1001), "spec.priority", "between 0 and 1000"),
    ("priority-negative", spec_with(priority=-1), "spec.priority", "between 0 and 1000"),
    ("priority-string", spec_with(priority="1"), "spec.priority", "must be an integer"),
    ("no-subject", spec_with(subject=None), "spec.subject", "required"),
    ("empty-subject", spec_with(subject={}), "spec.subject", "exactly one of namespaces, pods"),
    ("two-subjects", spec_with(subject={"namespaces": {}, "pods": {"podSelector": {}}}), "spec.subject",
     "exactly one"),
    ("subject-pods-no-podselector", spec_with(subject={"pods": {"namespaceSelector": {}}}),
     "spec.subject.pods.podSelector", "required"),
    ("subject-bad-selector", spec_with(subject={"namespaces": {"matchLabels": {"a": "b c"}}}),
     "spec.subject.namespaces.matchLabels.a", "not a valid label value"),
    ("subject-unknown", spec_with(subject={"namespaces": {}, "podz": {}}), "spec.subject.podz", "unknown field"),
    ("spec-unknown", spec_with(prioirty=3), "spec.prioirty", 'did you mean "priority"'),
    ("too-many-rules", cluster_network_policy("c", ingress=[rule(direction="ingress")] * 26), "spec.ingress",
     "at most 25"),
    ("no-action", cluster_network_policy("c", egress=[{"to": [{"namespaces": {}}]}]), "spec.egress[0].action",
     "required"),
    ("bad-action", cluster_network_policy("c", egress=[rule("Allow")]), "spec.egress[0].action",
     "one of Accept, Deny, Pass"),
    ("long-name", cluster_network_policy("c", egress=[rule(name="n" * 101)]), "spec.egress[0].name", "100"),
    ("no-peers", cluster_network_policy("c", egress=[{"action": "Deny"}]), "spec.egress[0].to", "required"),
    ("empty-peers", cluster_network_policy("c", ingress=[{"action": "Deny", "from": []}]), "spec.ingress[0].from",
     "at least 1"),
    ("too-many-peers", peers(*[{"namespaces": {}}] * 26), "spec.egress[0].to", "at most 25"),
    ("empty-peer", peers({}), "spec.egress[0].to[0]", "exactly one of namespaces, pods, networks"),
    ("two-peer-fields", peers({"namespaces": {}, "nodes": {}}), "spec.egress[0].to[0]", "(has namespaces, nodes)"),
    ("rule-unknown", cluster_network_policy("c", egress=[rule(port=[])]), "spec.egress[0].port", "unknown field"),
    ("bad-cidr", peers({"networks": ["10.0.0.0/33"]}), "spec.egress[0].to[0].networks[0]", "not a valid CIDR"),
    ("cidr-no-length", peers({"networks": ["10.0.0.1"]}), "spec.egress[0].to[0].networks[0]", "not a valid CIDR"),
    ("cidr-netmask", peers({"networks": ["10.0.0.0/255.0.0.0"]}), "spec.egress[0].to[0].networks[0]",
     "not a valid CIDR"),
    ("cidr-zone", peers({"networks": ["fe80::1%eth0/64"]}), "spec.egress[0].to[0].networks[0]", "not a valid CIDR"),
    ("cidr-leading-zero", peers({"networks": ["010.0.0.0/8"]}), "spec.egress[0].to[0].networks[0]",
     "not a valid CIDR"),
    ("cidr-v4-mapped", peers({"networks": ["::ffff:10.0.0.0/104"]}), "spec.egress[0].to[0].networks[0]",
     "IPv4-mapped"),
    ("cidr-not-string", peers({"networks": [10]}), "spec.egress[0].to[0].networks[0]", "must be a string"),
    ("cidr-duplicate", peers({"networks": ["10.0.0.0/8", "10.0.0.0/8"]}), "spec.egress[0].to[0].networks[1]",
     "duplicate"),
    ("networks-empty", peers({"networks": []}), "spec.egress[0].to[0].networks", "at least 1"),
    ("networks-too-many", peers({"networks": [f"10.0.{i}.0/24" for i in range(26)]}), "spec.egress[0].to[0].networks",
     "at most 25"),
    ("domain-invalid", peers({"domainNames": ["exa mple.com"]}), "spec.egress[0].to[0].domainNames[0]",
     "not a domain name"),
    ("domain-wildcard-inside", peers({"domainNames": ["a.*.example.com"]}), "spec.egress[0].to[0].domainNames[0]",
     "not a domain name"),
    ("peer-pods-no-podselector", peers({"pods": {"namespaceSelector": {}}}), "spec.egress[0].to[0].pods.podSelector",
     "required"),
    ("nodes-bad-selector", peers({"nodes": {"matchExpressions": [{"key": "a", "operator": "Is"}]}}),
     "spec.egress[0].to[0].nodes.matchExpressions[0].operator", "not a valid operator"),
    ("protocols-empty", protocols(), "spec.egress[0].protocols", "at least 1"),
    ("protocol-empty", protocols({}), "spec.egress[0].protocols[0]", "exactly one of tcp, udp, sctp"),
    ("protocol-two", protocols({**TCP80, "udp": {"destinationPort": {"number": 53}}}), "spec.egress[0].protocols[0]",
     "exactly one"),
    ("protocol-unknown", protocols({"tpc": {}}), "spec.egress[0].protocols[0].tpc", 'did you mean "tcp"'),
    ("protocol-no-port", protocols({"tcp": {}}), "spec.egress[0].protocols[0].tcp", "must set destinationPort"),
    ("port-both", protocols({"tcp": {"destinationPort": {"number": 1, "range": {"start": 1, "end": 2}}}}),
     "spec.egress[0].protocols[0].tcp.destinationPort", "exactly one of number, range"),
    ("port-none", protocols({"tcp": {"destinationPort": {}}}), "spec.egress[0].protocols[0].tcp.destinationPort",
     "exactly one of number, range"),
    ("port-zero", protocols({"udp": {"destinationPort": {"number": 0}}}),
     "spec.egress[0].protocols[0].udp.destinationPort.number", "between 1 and 65535"),
    ("port-string", protocols({"udp": {"destinationPort": {"number": "53"}}}),
     "spec.egress[0].protocols[0].udp.destinationPort.number", "must be an integer"),
    ("range-reversed", protocols({"sctp": {"destinationPort": {"range": {"start": 9, "end": 9}}}}),
     "spec.egress[0].protocols[0].sctp.destinationPort.range", "start (9) must be less than end (9)"),
    ("range-no-end", protocols({"tcp": {"destinationPort": {"range": {"start": 9}}}}),
     "spec.egress[0].protocols[0].tcp.destinationPort.range.end", "required"),
    ("range-over", protocols({"tcp": {"destinationPort": {"range": {"start": 9, "end": 70000}}}}),
     "spec.egress[0].protocols[0].tcp.destinationPort.range.end", "between 1 and 65535"),
    ("named-port-with-networks", protocols({"destinationNamedPort": "http"}, peer={"networks": ["10.0.0.0/8"]}),
     "spec.egress[0]", "destinationNamedPort"),
    ("named-port-with-nodes", protocols({"destinationNamedPort": "http"}, peer={"nodes": {}}),
     "spec.egress[0]", "destinationNamedPort"),
    ("named-port-with-domains", protocols({"destinationNamedPort": "http"}, peer={"domainNames": ["a.example"]}),
     "spec.egress[0]", "destinationNamedPort"),
    ("bad-name", {**cluster_network_policy("c"), "metadata": {"name": "Bad_Name"}}, "metadata.name",
     "not a valid name"),
]


@pytest.mark.parametrize(("raw", "path", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_validation_error_is_located(tmp_path: Path, raw: dict[str, Any], path: str, fragment: str) -> None:
    file = tmp_path / "in.yaml"
    file.write_text(yaml.safe_dump_all([namespace("x"), raw]))
    result = load_paths([str(file)])
    matching = [e for e in result.errors if e.path == path]
    assert matching, f"no error at {path}: {[str(e) for e in result.errors]}"
    err = matching[0]
    assert (err.source.file, err.source.document) == (str(file), 1)
    assert err.obj.startswith("ClusterNetworkPolicy ") and err.kind == "ClusterNetworkPolicy"
    assert fragment in err.message, err.message
    assert not result.cluster.cluster_policies and [n.name for n in result.cluster.namespaces] == ["x"]


def test_named_ports_are_allowed_with_pod_peers() -> None:
    cnp = parse_cluster_network_policy(protocols({"destinationNamedPort": "http"}))
    assert cnp.egress[0].ports == (CNPPort(named_port="http"),)


def test_all_problems_of_one_object_are_reported() -> None:
    raw = cluster_network_policy("c", tier="Middle", priority=2000, egress=[rule("Allow", [{}])])
    assert set(errors(raw)) == {"spec.tier", "spec.priority", "spec.egress[0].action", "spec.egress[0].to[0]"}


def test_near_miss_kind_and_wrong_api_version_are_refused(tmp_path: Path) -> None:
    good = cluster_network_policy("c")
    file = tmp_path / "in.yaml"
    file.write_text(yaml.safe_dump_all([{**good, "kind": "ClusterNetworkPolicies"}, {**good, "kind": "cnp"},
                                        {**good, "apiVersion": "policy.networking.k8s.io/v1alpha1"}]))
    result = load_paths([str(file)])
    assert [(e.path, e.kind) for e in result.errors] == [("kind", "ClusterNetworkPolicy")] * 2 + [
        ("apiVersion", "ClusterNetworkPolicy")]
    assert 'did you mean "ClusterNetworkPolicy"' in result.errors[1].message


def test_loads_from_a_list_and_a_multi_document_file_into_the_cluster(tmp_path: Path) -> None:
    a, b, c = (cluster_network_policy(n, priority=i) for i, n in enumerate("abc"))
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicyList", "items": [b, a]}]}))
    multi = tmp_path / "multi.yaml"
    multi.write_text(yaml.safe_dump_all([namespace("x"), c, {**a, "metadata": {"name": "a", "namespace": "x"}}]))
    result = load_paths([str(listed), str(multi)])
    assert not result.errors
    assert [p.name for p in result.cluster.cluster_policies] == ["a", "b", "c"]
    assert result.cluster.cluster_policy_by_name["c"].priority == 2
    assert any("ClusterNetworkPolicy a appears twice" in n for n in result.notes)


def test_tools_are_told_cluster_policies_are_read_but_not_evaluated(tmp_path: Path) -> None:
    file = tmp_path / "in.yaml"
    file.write_text(yaml.safe_dump_all([cluster_network_policy("a"), cluster_network_policy("b")]))
    result = load_paths([str(file)])
    assert "ClusterNetworkPolicy" not in result.inputs()["used"]
    assert result.inputs()["ignored"] == [
        {"kind": "ClusterNetworkPolicy", "count": 2, "reason": "read, but not yet evaluated by this tool"}]
    assert "ignored 2 ClusterNetworkPolicy (read, but not yet evaluated by this tool)" in result.summary()
    result.not_evaluated = ()  # what a tool that evaluates them sets
    assert result.inputs()["used"]["ClusterNetworkPolicy"] == 2 and not result.inputs()["ignored"]


def test_node_labels_are_kept_for_nodes_peers() -> None:
    raw = node("n1", "172.18.0.2")
    raw["metadata"]["labels"] = {"role": "infra"}
    cluster = cluster_of([raw, cluster_network_policy("c", egress=[rule("Deny", [{"nodes": SEL}])])])
    assert cluster.node_by_name["n1"].labels == {"role": "infra"}
    assert isinstance(cluster.cluster_policies[0].egress[0].peers[0], CNPNodes)


def test_live_loading_reads_cluster_policies_and_notes_a_missing_crd(tmp_path: Path) -> None:
    with ApiServer() as server:
        server.put(namespace("x"))
        server.put(cluster_network_policy("guard", tier="Baseline", priority=5))
        kubeconfig = server.kubeconfig(str(tmp_path / "kubeconfig"))
        result = load_live(kubeconfig)
        assert not result.errors
        assert [(p.name, p.tier, p.priority) for p in result.cluster.cluster_policies] == [
            ("guard", CNPTier.BASELINE, 5)]
        assert result.cluster.cluster_policies[0].source.file == "cluster:ClusterNetworkPolicy"
        server.absent.add("clusternetworkpolicies")
        result = load_live(kubeconfig)
        assert not result.errors and not result.cluster.cluster_policies
        assert [n for n in result.notes if "ClusterNetworkPolicy" in n] == [
            "no ClusterNetworkPolicy read: the cluster does not serve policy.networking.k8s.io/v1alpha2 "
            "(its CRD is not installed)"]
        server.absent.clear()
        server.forbidden.add("clusternetworkpolicies")
        assert any("forbidden" in n for n in load_live(kubeconfig).notes)
