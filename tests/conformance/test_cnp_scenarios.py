"""The upstream ClusterNetworkPolicy conformance tests, transcribed in scenarios/cnp/: every one
of them, from upstream's own manifests, with every upstream assertion as an expectation.

The list below is upstream's, read from kubernetes-sigs/network-policy-api
``conformance/tests/*.go`` at commit 0eec1b0e5fa92715b4c0f4c48d3c8d2913ed2159 (main, after
v0.2.0): each test's ShortName, file, manifests, the objects those create, its number of
subtests (``t.Run``) and of ``PokeServer`` assertions.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pytest

from conformance.runner import check_expectations
from conformance.scenario import Scenario, load_scenarios
from tests.conformance.cnp_evaluation import simulator_evaluates_cluster_network_policies

ROOT = Path(__file__).resolve().parents[2]
CNP_SCENARIOS = ROOT / "scenarios" / "cnp"
UPSTREAM_COMMIT = "0eec1b0e5fa92715b4c0f4c48d3c8d2913ed2159"
THEN = " (then: "  # a subtest that changes the cluster between probes is split into steps there


class Upstream(NamedTuple):
    file: str
    manifest: str
    cluster_policies: tuple[str, ...]
    policies: tuple[str, ...]
    subtests: int
    assertions: int


UPSTREAM = {
    "CNPAdminTierEgressInlineCIDRPeers": Upstream(
        "admin-network-policy-standard-egress-inline-cidr-rules.go",
        "base/admin_tier/standard-egress-inline-cidr-rules.yaml",
        ("inline-cidr-as-peers-example",), (), subtests=2, assertions=27,
    ),
    "CNPAdminTierEgressNamedPort": Upstream(
        "admin-network-policy-experimental-egress-rules.go",
        "base/admin_tier/standard-egress-tcp-rules.yaml",
        ("egress-tcp",), (), subtests=1, assertions=2,
    ),
    "CNPAdminTierEgressNodePeers": Upstream(
        "admin-network-policy-experimental-egress-rules.go",
        "base/admin_tier/experimental-egress-selector-rules.yaml",
        ("node-and-cidr-as-peers-example",), (), subtests=3, assertions=5,
    ),
    "CNPAdminTierEgressSCTP": Upstream(
        "admin-network-policy-standard-egress-sctp-rules.go",
        "base/admin_tier/standard-egress-sctp-rules.yaml",
        ("egress-sctp",), (), subtests=6, assertions=12,
    ),
    "CNPAdminTierEgressTCP": Upstream(
        "admin-network-policy-standard-egress-tcp-rules.go",
        "base/admin_tier/standard-egress-tcp-rules.yaml",
        ("egress-tcp",), (), subtests=6, assertions=12,
    ),
    "CNPAdminTierEgressUDP": Upstream(
        "admin-network-policy-standard-egress-udp-rules.go",
        "base/admin_tier/standard-egress-udp-rules.yaml",
        ("egress-udp",), (), subtests=6, assertions=12,
    ),
    "CNPAdminTierGress": Upstream(
        "admin-network-policy-standard-gress-rules.go",
        "base/admin_tier/standard-gress-rules-combined.yaml",
        ("gress-rules",), (), subtests=6, assertions=54,
    ),
    "CNPAdminTierIngressNamedPort": Upstream(
        "admin-network-policy-experimental-ingress-rules.go",
        "base/admin_tier/standard-ingress-udp-rules.yaml",
        ("ingress-udp",), (), subtests=1, assertions=2,
    ),
    "CNPAdminTierIngressSCTP": Upstream(
        "admin-network-policy-standard-ingress-sctp-rules.go",
        "base/admin_tier/standard-ingress-sctp-rules.yaml",
        ("ingress-sctp",), (), subtests=6, assertions=12,
    ),
    "CNPAdminTierIngressTCP": Upstream(
        "admin-network-policy-standard-ingress-tcp-rules.go",
        "base/admin_tier/standard-ingress-tcp-rules.yaml",
        ("ingress-tcp",), (), subtests=6, assertions=12,
    ),
    "CNPAdminTierIngressUDP": Upstream(
        "admin-network-policy-standard-ingress-udp-rules.go",
        "base/admin_tier/standard-ingress-udp-rules.yaml",
        ("ingress-udp",), (), subtests=6, assertions=12,
    ),
    "CNPAdminTierIntegration": Upstream(
        "admin-network-policy-standard-integration.go",
        "base/api_integration/standard-anp-np-banp.yaml",
        ("default", "pass-example"),
        ("network-policy-conformance-gryffindor/allow-gress-from-to-slytherin-to-gryffindor",),
        subtests=6, assertions=12,
    ),
    "CNPAdminTierPriorityField": Upstream(
        "admin-network-policy-standard-priority.go",
        "base/admin_tier/standard-priority-field.yaml",
        ("default", "old-priority-60-new-priority-40-example", "priority-50-example"), (), subtests=3, assertions=8,
    ),
    "CNPBaselineTierEgressInlineCIDRPeers": Upstream(
        "baseline-admin-network-policy-standard-egress-inline-cidr-rules.go",
        "base/baseline_tier/standard-egress-inline-cidr-rules.yaml",
        ("default",), (), subtests=2, assertions=27,
    ),
    "CNPBaselineTierEgressNamedPort": Upstream(
        "baseline-admin-network-policy-experimental-egress-rules.go",
        "base/baseline_tier/standard-egress-udp-rules.yaml",
        ("default",), (), subtests=1, assertions=2,
    ),
    "CNPBaselineTierEgressNodePeers": Upstream(
        "baseline-admin-network-policy-experimental-egress-rules.go",
        "base/baseline_tier/experimental-egress-selector-rules.yaml",
        ("default",), (), subtests=2, assertions=4,
    ),
    "CNPBaselineTierEgressSCTP": Upstream(
        "baseline-admin-network-policy-standard-egress-sctp-rules.go",
        "base/baseline_tier/standard-egress-sctp-rules.yaml",
        ("default",), (), subtests=4, assertions=8,
    ),
    "CNPBaselineTierEgressTCP": Upstream(
        "baseline-admin-network-policy-standard-egress-tcp-rules.go",
        "base/baseline_tier/standard-egress-tcp-rules.yaml",
        ("default",), (), subtests=4, assertions=8,
    ),
    "CNPBaselineTierEgressUDP": Upstream(
        "baseline-admin-network-policy-standard-egress-udp-rules.go",
        "base/baseline_tier/standard-egress-udp-rules.yaml",
        ("default",), (), subtests=4, assertions=8,
    ),
    "CNPBaselineTierGress": Upstream(
        "baseline-admin-network-policy-standard-gress-rules.go",
        "base/baseline_tier/standard-gress-rules-combined.yaml",
        ("default",), (), subtests=4, assertions=36,
    ),
    "CNPBaselineTierIngressNamedPort": Upstream(
        "baseline-admin-network-policy-experimental-ingress-rules.go",
        "base/baseline_tier/standard-ingress-tcp-rules.yaml",
        ("default",), (), subtests=1, assertions=2,
    ),
    "CNPBaselineTierIngressSCTP": Upstream(
        "baseline-admin-network-policy-standard-ingress-sctp-rules.go",
        "base/baseline_tier/standard-ingress-sctp-rules.yaml",
        ("default",), (), subtests=4, assertions=8,
    ),
    "CNPBaselineTierIngressTCP": Upstream(
        "baseline-admin-network-policy-standard-ingress-tcp-rules.go",
        "base/baseline_tier/standard-ingress-tcp-rules.yaml",
        ("default",), (), subtests=4, assertions=8,
    ),
    "CNPBaselineTierIngressUDP": Upstream(
        "baseline-admin-network-policy-standard-ingress-udp-rules.go",
        "base/baseline_tier/standard-ingress-udp-rules.yaml",
        ("default",), (), subtests=4, assertions=8,
    ),
}


@pytest.fixture(scope="module")
def transcribed() -> dict[str, Scenario]:
    scenarios, errors = load_scenarios([str(CNP_SCENARIOS)])
    assert errors == []
    return {s.name: s for s in scenarios}


def test_every_upstream_test_is_transcribed_once_under_its_own_name(transcribed):
    assert sorted(transcribed) == sorted(UPSTREAM)
    assert len(UPSTREAM) == 24 and sum(u.assertions for u in UPSTREAM.values()) == 301


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_scenario_starts_from_upstreams_manifests_and_says_where_they_come_from(transcribed, name):
    up, sc = UPSTREAM[name], transcribed[name]
    assert tuple(sorted(sc.initial.cluster_policies)) == up.cluster_policies
    assert tuple(sorted(sc.initial.policies)) == up.policies
    assert up.file in sc.reference and "cnp" in sc.tags
    header = Path(sc.source).read_text()
    assert f"conformance/tests/{up.file}" in header and f"conformance/{up.manifest}" in header
    assert UPSTREAM_COMMIT in header
    # The base cluster is upstream's (model: network-policy-api): 4 houses of 2 pods, 2 centaurs.
    assert len(sc.initial.pods) == 10 and sum(p.host_network for p in sc.initial.pods.values()) == 2


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_steps_are_upstreams_subtests_in_order_each_with_expectations(transcribed, name):
    sc = transcribed[name]
    subtests: list[str] = []
    for step in sc.steps:
        base = step.name.split(THEN)[0]
        if not subtests or subtests[-1] != base:
            subtests.append(base)
        assert step.expect is not None and step.ports, step.name
    assert len(subtests) == UPSTREAM[name].subtests
    assert all(s.startswith("Should") for s in subtests)


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_every_upstream_assertion_is_an_expectation_and_nothing_more(transcribed, name):
    stated = 0
    for step in transcribed[name].steps:
        for port, expectation in step.expect.by_port:
            assert port in step.ports and expectation.table is not None  # pairs upstream does not probe: unstated
            stated += len(expectation.table)
    assert stated == UPSTREAM[name].assertions


def test_upstream_sctp_assertions_are_kept_for_kernels_that_have_sctp(transcribed):
    sctp = [n for n, sc in transcribed.items() if any(p.protocol == "SCTP" for s in sc.steps for p in s.ports)]
    assert len(sctp) == 10 and all("sctp" in transcribed[n].tags for n in sctp)


def test_upstream_expectations_agree_with_the_simulator(transcribed):
    if not simulator_evaluates_cluster_network_policies():
        pytest.skip("the simulator does not evaluate ClusterNetworkPolicy yet: every upstream Deny would disagree")
    for sc in transcribed.values():
        assert check_expectations(sc) == [], sc.name
