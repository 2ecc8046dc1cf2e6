"""Translation validation without a kernel: the rules the enforcer would install, read back as
the kernel prints them and walked packet by packet, against the simulator's verdicts."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kube import manifests as m
from npm.dataplane.debug import desired_as_saved
from npm.dataplane.ipset import parse_save as parse_ipsets
from npm.dataplane.iptables import SavedRule, parse_save
from npm.dataplane.translate import translate
from npm.verify.check import verify
from npm.verify.kernel import IptablesView
from npm.verify.oracle import Oracle
from tests.simulator.test_engine_matches_reference import random_cluster


def view_of(cluster) -> IptablesView:  # type: ignore[no-untyped-def]
    ipt, ips = desired_as_saved(translate(cluster))
    return IptablesView(parse_save(ipt)["filter"], parse_ipsets(ips))


@pytest.mark.parametrize("seed", range(60))
def test_the_translation_agrees_with_the_simulator_on_random_clusters(seed: int) -> None:
    cluster = random_cluster(seed)
    # the generator leaves addresses to the loader; here they are the pods' real ones
    cluster = replace(cluster, pods=tuple(replace(p, ip_allocated=False) for p in cluster.pods))
    view = view_of(cluster)
    report = verify(view, Oracle(cluster), view.edge_addresses())
    assert report.agrees, report.render()
    assert report.connections > 0


def test_a_rule_removed_from_the_saved_rules_is_a_mismatch_naming_the_connections() -> None:
    cluster = m.cluster_of([
        m.namespace("x"), m.namespace("y"),
        m.pod("x", "web", {"app": "web"}, ip="10.244.0.10", ports=[m.container_port(80)]),
        m.pod("y", "client", {"app": "client"}, ip="10.244.1.10", ports=[m.container_port(80)]),
        m.policy("x", "web-from-y", {"podSelector": {"matchLabels": {"app": "web"}},
                                     "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 80}]}]}),
    ])
    view = view_of(cluster)
    assert verify(view, Oracle(cluster)).agrees
    # the allow rule of the policy's ingress chain, gone (as `iptables -D` by hand would do)
    chain = next(name for name, rules in view.table.chains.items()
                 if any(r.comment.startswith("x/web-from-y ingress[0]") for r in rules))
    view.table.chains[chain] = [r for r in view.table.chains[chain] if not _allows(r)]
    report = verify(IptablesView(view.table, view.sets), Oracle(cluster))
    assert not report.agrees
    (mismatch,) = [x for x in report.mismatches if (x.src, x.dst) == ("y/client", "x/web")]
    assert (mismatch.kernel, mismatch.policy, mismatch.port.port) == (False, True, 80)
    assert "x/web-from-y" in mismatch.because
    assert "MISMATCH y/client -> x/web 80/TCP: kernel denied, policies allowed" in report.render()


def _allows(rule: SavedRule) -> bool:
    return rule.target.endswith("-ALLOW")


def test_hostnetwork_pods_and_nodes_bypass_policy_with_their_own_pods_only() -> None:
    cluster = m.cluster_of([
        m.namespace("x"), m.node("n1", "172.18.0.2"), m.node("n2", "172.18.0.3"),
        m.pod("x", "a", {"app": "a"}, ip="10.244.0.10", node="n1"),
        m.pod("x", "b", {"app": "a"}, ip="10.244.1.10", node="n2"),
        m.pod("x", "agent", {"app": "agent"}, ip="172.18.0.2", node="n1", host_network=True),
        m.policy("x", "deny", {"podSelector": {}}),
    ])
    oracle = Oracle(cluster)
    report = verify(view_of(cluster), oracle)
    assert report.agrees, report.render()
    # a and agent share node n1, as do node/n1 and a (both ways): 4 pairs; node/n2 and b: 2
    assert report.bypassed >= 6


def test_pods_without_an_address_and_workload_stand_ins_are_not_endpoints() -> None:
    from tests.model.test_workloads import workload

    cluster = m.cluster_of([m.namespace("x"), workload("Deployment", "x", "web", {"app": "web"}, ports=(80,)),
                            m.pod("x", "a", {"app": "a"}, ip="10.244.0.10")])
    names = [e.name for e in Oracle(cluster).endpoints()]
    assert "x/a" in names and not [n for n in names if "[Deployment]" in n]
    unaddressed = replace(cluster, pods=tuple(replace(p, ip_allocated=True) for p in cluster.pods))
    assert not [e for e in Oracle(unaddressed).endpoints() if e.pod is not None]
