"""diff / what-if with ClusterNetworkPolicies: changes attributed to their rules, policy change
lists, full evaluation when one changes (said so), incremental NetworkPolicy changes beside them,
deleting one with --delete, and the inputs line counting them as evaluated."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from whatif_helpers import BASE, run, write

from kube.manifests import cluster_network_policy, cluster_of
from kube.model import PortSpec
from kube.parse import parse_cluster_network_policy
from simulator.engine import Simulator
from simulator.incremental import evaluate_change
from simulator.whatif import diff_states, policy_changes
from tests.simulator.cnp_gen import PORTS, random_cnp_cluster

WEB = PortSpec(80)
FROM_B = [{"namespaces": {"matchLabels": {"team": "b"}}}]


def cnp(name: str, tier: str = "Admin", priority: int = 0, **rules: list) -> dict:
    return cluster_network_policy(name, tier=tier, priority=priority,
                                  subject={"namespaces": {"matchLabels": {"team": "a"}}}, **rules)


def diff_of(before: list, after: list, ports: list[PortSpec] | None = None):
    b, a = cluster_of(before), cluster_of(after)
    ports = ports or [WEB]
    state_b, state_a, update = evaluate_change(b, a, ports)
    return diff_states(state_b, state_a, ports), update


def because(changes) -> set[tuple[str, str, tuple[str, ...]]]:
    return {(c.src, c.dst, c.because) for c in changes}


def test_an_admin_deny_added_loses_connections_because_of_it() -> None:
    deny = cnp("block-b", ingress=[{"name": "no-b", "action": "Deny", "from": FROM_B}])
    diff, update = diff_of(BASE, [*BASE, deny])
    assert update.mode == "full" and "ClusterNetworkPolicy changed" in update.describe()
    why = ("x/allow-web ingress[0]", "cnp/block-b ingress[0] (no-b) Deny")
    assert because(diff.lost) == {("y/client-1", f"x/web-{i}", why) for i in (1, 2)}
    assert not diff.gained
    assert diff.policies.added == ("cnp/block-b",)


def test_a_pass_put_in_front_of_a_deny_gains_because_of_both() -> None:
    deny = cnp("z-deny", priority=5, ingress=[{"action": "Deny", "from": FROM_B}])
    passed = cnp("a-pass", priority=5, ingress=[{"action": "Pass", "from": FROM_B}])
    diff, _ = diff_of([*BASE, deny], [*BASE, deny, passed])
    why = ("cnp/a-pass ingress[0] Pass", "x/allow-web ingress[0]", "cnp/z-deny ingress[0] Deny")
    assert because(diff.gained) == {("y/client-1", f"x/web-{i}", why) for i in (1, 2)}


def test_an_admin_accept_overriding_isolation_is_named_and_edits_are_listed() -> None:
    accept = cnp("let-b", ingress=[{"action": "Accept", "from": FROM_B}])
    narrowed = cnp("let-b", ingress=[{"action": "Accept", "from": FROM_B,
                                      "protocols": [{"tcp": {"destinationPort": {"number": 5432}}}]}])
    diff, _ = diff_of(BASE, [*BASE, accept], [PortSpec(5432)])
    assert because(diff.gained) == {("y/client-1", f"x/{p}", ("cnp/let-b ingress[0] Accept",))
                                    for p in ("db-1", "web-1", "web-2")}
    edited, _ = diff_of([*BASE, accept], [*BASE, narrowed], [WEB, PortSpec(5432)])
    assert edited.policies.edited == ("cnp/let-b",)
    # port 80 to the web pods is still allowed by x/allow-web; to the database, x/deny-all isolates it again
    assert {(c.dst, c.port, c.because) for c in edited.lost} == {("x/db-1", 80, ("cnp/let-b ingress[0] Accept",))}
    assert not edited.gained


def test_a_deleted_baseline_rule_is_named_on_the_denied_side() -> None:
    deny = cnp("default-deny", tier="Baseline", egress=[{"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}])
    diff, _ = diff_of([*BASE, deny], BASE)
    assert diff.policies.deleted == ("cnp/default-deny",)
    assert ("x/web-1", "y/client-1", ("cnp/default-deny egress[0] Deny",)) in because(diff.gained)


def test_policy_changes_list_network_policies_then_cluster_network_policies() -> None:
    one = parse_cluster_network_policy(cnp("one", ingress=[{"action": "Deny", "from": FROM_B}]))
    before = cluster_of(BASE)
    after = replace(before, policies=before.policies[:1], cluster_policies=(one,))
    assert policy_changes(before, after).deleted == ("x/deny-all",)
    assert policy_changes(before, after).added == ("cnp/one",)
    renamed = replace(after, cluster_policies=(replace(one, uid="other", resource_version="9"),))
    assert policy_changes(after, renamed).edited == ()  # metadata only


@pytest.mark.parametrize("seed", [s for s in range(0, 100, 5) if random_cnp_cluster(s).policies][:10])
def test_network_policy_changes_beside_cluster_network_policies_stay_incremental_and_exact(seed: int) -> None:
    cluster = random_cnp_cluster(seed)
    after = replace(cluster, policies=cluster.policies[1:])
    state_b, state_a, update = evaluate_change(cluster, after, PORTS)
    assert update.mode == "incremental"
    fresh = Simulator(after)
    derived = state_a.sim  # its classes are the before state's: compare pod by pod
    got, want = derived.matrix(PORTS), fresh.matrix(PORTS)
    for spec in PORTS:
        assert np.array_equal(got.allowed[spec], want.allowed[spec]), (seed, spec)
        for ip in ("8.8.8.8", "172.18.0.2"):
            mine = derived.external(ip, spec)
            theirs = fresh.external(ip, spec)
            for m, t in zip(mine, theirs, strict=True):
                assert np.array_equal(m[derived.classes.pod_class], t[fresh.classes.pod_class]), (seed, spec, ip)
    full = diff_states(Simulator(cluster), fresh, PORTS).to_json()
    assert diff_states(state_b, state_a, PORTS).to_json() == full


@pytest.mark.parametrize("seed", range(1, 60, 6))
def test_a_changed_cluster_network_policy_is_evaluated_in_full(seed: int) -> None:
    cluster = random_cnp_cluster(seed)
    after = replace(cluster, cluster_policies=cluster.cluster_policies[1:])
    _, state_a, update = evaluate_change(cluster, after, PORTS)
    assert update.mode == "full" and update.reason
    got, want = state_a.sim.matrix(PORTS), Simulator(after).matrix(PORTS)
    for spec in PORTS:
        assert np.array_equal(got.allowed[spec], want.allowed[spec])


def test_pod_changes_beside_cluster_network_policies_are_evaluated_in_full() -> None:
    cluster = random_cnp_cluster(3)
    after = replace(cluster, pods=cluster.pods[1:])
    _, _, update = evaluate_change(cluster, after, PORTS[:1])
    assert update.mode == "full" and "beside ClusterNetworkPolicies" in update.reason


def test_whatif_deletes_a_cluster_network_policy_and_counts_it_as_evaluated(capsys, tmp_path: Path) -> None:
    deny = cnp("block-b", ingress=[{"action": "Deny", "from": FROM_B}])
    snapshot = write(tmp_path / "snap.yaml", [*BASE, deny])
    code, out, err = run(capsys, "what-if", "-f", snapshot, "--delete", "clusternetworkpolicy/block-b", "-o", "json")
    assert code == 0, err
    data = json.loads(out)
    assert {(c["src"], c["dst"]) for c in data["gained"]} == {("y/client-1", "x/web-1"), ("y/client-1", "x/web-2")}
    assert data["inputs"]["before"]["used"]["ClusterNetworkPolicy"] == 1
    assert not data["inputs"]["before"]["ignored"] and not data["inputs"]["after"]["ignored"]
    assert "not yet evaluated" not in err and "full (a ClusterNetworkPolicy changed" in err
    code, out, err = run(capsys, "what-if", "-f", snapshot, "--delete", "cnp/nope")
    assert code == 2 and "ClusterNetworkPolicy nope" in err and "no such object" in err


def test_diff_text_lists_cluster_network_policy_changes(capsys, tmp_path: Path) -> None:
    deny = cnp("block-b", ingress=[{"action": "Deny", "from": FROM_B}])
    before, after = write(tmp_path / "b.yaml", BASE), write(tmp_path / "a.yaml", [*BASE, deny])
    code, out, err = run(capsys, "diff", "--before", before, "--after", after, "--port", "80")
    assert code == 0, err
    assert "policies: + cnp/block-b" in out and "cnp/block-b ingress[0] Deny" in out
