"""ClusterNetworkPolicy in the nftables translation, pure: the tier maps around the
NetworkPolicy dispatch, group chains in priority order, rule verdicts, sets, the fail-closed
forms, counts, read-back and incremental translation. Verdicts are checked on the kernel
(test_kernel_cnp.py: probes, and random clusters through the table the kernel lists)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from kube.model import Labels, Node
from npm.dataplane.enforcer import ApplyResult
from npm.dataplane.nft_cnp import counts
from npm.dataplane.nft_enforcer import NftEnforcer, _fail_closed, _policies_in
from npm.dataplane.nft_translate import CHAIN_FORWARD, CHAIN_INGRESS, NftTranslator
from tests.dataplane.helpers import cluster, cnp, ns_is, pod
from tests.dataplane.test_translate_cnp import FROM_ALL, PODS, WEB_ONLY, allow_web_from

HOST = pod("y/host", "172.18.0.10", {"app": "client"}, host_network=True)


def verdicts(state, chain: str) -> list[str]:
    return [r.verdict for r in state.chains[chain].rules]


def elements(state, name: str) -> dict[str, str]:
    return dict(e.split(" : ") for e in state.sets[name].elements)


def test_without_cluster_policies_the_table_is_that_of_networkpolicy_alone() -> None:
    plain = NftTranslator().translate(cluster(PODS, [allow_web_from("client")]))
    accept_nothing = cnp("a", egress=[{"action": "Accept", "to": [{"domainNames": ["example.com"]}]}])
    with_cnp = NftTranslator().translate(cluster(PODS, [allow_web_from("client")], cluster_policies=[accept_nothing]))
    assert verdicts(plain, CHAIN_FORWARD) == ["accept", "vmap egress-dispatch", "vmap ingress-dispatch"]
    assert verdicts(plain, CHAIN_INGRESS) == ["vmap ingress-dispatch", "accept"]
    # A CNP whose only rule matches nothing adds its marker, and nothing a packet meets.
    assert with_cnp.sets == plain.sets
    assert {n: c for n, c in with_cnp.chains.items() if n != "policies"} == {
        n: c for n, c in plain.chains.items() if n != "policies"
    }


def test_admin_maps_come_before_the_networkpolicy_maps_and_baseline_maps_after_them() -> None:
    admin = cnp("a", ingress=[{"action": "Deny", "from": FROM_ALL}], egress=[{"action": "Pass", "to": FROM_ALL}])
    deny_in, deny_out = [{"action": "Deny", "from": FROM_ALL}], [{"action": "Deny", "to": FROM_ALL}]
    base = cnp("b", "Baseline", ingress=deny_in, egress=deny_out)
    state = NftTranslator().translate(cluster(PODS, cluster_policies=[admin, base]))
    assert verdicts(state, CHAIN_FORWARD) == [
        "accept",
        "vmap admin-egress-dispatch", "vmap egress-dispatch", "vmap baseline-egress-dispatch",
        "vmap admin-ingress-dispatch", "vmap ingress-dispatch", "vmap baseline-ingress-dispatch",
    ]
    assert verdicts(state, CHAIN_INGRESS) == [
        "vmap admin-ingress-dispatch", "vmap ingress-dispatch", "vmap baseline-ingress-dispatch", "accept"]
    # Where an Admin Pass (or an Admin tier that decided nothing) continues.
    assert verdicts(state, "egress-networkpolicy") == [
        "vmap egress-dispatch", "vmap baseline-egress-dispatch", "goto ingress"]
    assert verdicts(state, "ingress-networkpolicy") == [
        "vmap ingress-dispatch", "vmap baseline-ingress-dispatch", "accept"]
    only_baseline = NftTranslator().translate(cluster(PODS, cluster_policies=[base]))
    assert "egress-networkpolicy" not in only_baseline.chains and "admin-egress-dispatch" not in only_baseline.sets


def test_each_subject_pod_goes_to_the_group_of_its_policies_by_priority_then_name() -> None:
    deny = [{"action": "Deny", "from": FROM_ALL}]
    policies = [
        cnp("zeta", priority=1, subject={"namespaces": {}}, ingress=deny),
        cnp("beta", priority=2, subject=WEB_ONLY, ingress=deny),
        cnp("alpha", priority=1, subject={"namespaces": ns_is("y")}, ingress=deny),
    ]
    state = NftTranslator().translate(cluster([*PODS, HOST], cluster_policies=policies))
    groups = elements(state, "admin-ingress-dispatch")
    assert set(groups) == {"10.1.0.2", "10.1.0.3", "10.1.0.4"}  # pods only: never the hostNetwork pod
    chain = {k: state.chains_of_policy[f"cnp:{k}"][0] for k in ("alpha", "beta", "zeta")}
    web, y_client = (state.chains[groups[ip].removeprefix("goto ")] for ip in ("10.1.0.2", "10.1.0.4"))
    assert [r.verdict for r in web.rules] == [f"jump {chain['zeta']}", f"jump {chain['beta']}",
                                              "goto ingress-networkpolicy"]
    assert [r.verdict for r in y_client.rules] == [f"jump {chain['alpha']}", f"jump {chain['zeta']}",
                                                   "goto ingress-networkpolicy"]
    assert groups["10.1.0.3"] != groups["10.1.0.2"]  # x/client is no subject of beta
    assert web.rules[0].comment == "cnp:zeta ingress rules" and web.rules[0].policy == "cnp:zeta"


def test_rule_verdicts_by_action_tier_and_direction() -> None:
    rules = [{"action": a, "from": [{"namespaces": ns_is("y")}]} for a in ("Accept", "Deny", "Pass")]
    out = [{"action": a, "to": [{"namespaces": ns_is("y")}]} for a in ("Accept", "Deny", "Pass")]
    state = NftTranslator().translate(cluster(PODS, cluster_policies=[
        cnp("a", ingress=rules, egress=out), cnp("b", "Baseline", ingress=rules, egress=out)]))
    admin_in, admin_out = state.chains_of_policy["cnp:a"]
    base_in, base_out = state.chains_of_policy["cnp:b"]
    assert admin_in.startswith("ai-") and admin_out.startswith("ae-") and base_in.startswith("bi-")
    assert verdicts(state, admin_in) == ["accept", "drop", "goto ingress-networkpolicy"]
    assert verdicts(state, admin_out) == ["goto ingress", "drop", "goto egress-networkpolicy"]
    # After the Baseline tier comes the default (allow): a Pass is an Accept there.
    assert verdicts(state, base_in) == ["accept", "drop", "accept"]
    assert verdicts(state, base_out) == ["goto ingress", "drop", "goto ingress"]
    assert state.chains[admin_in].rules[2].comment == "cnp:a Admin ingress[2] from[0] protocols[any] Pass"


def test_peers_and_ports_as_set_matches_and_native_matches() -> None:
    nodes = (Node("n1", ip="172.18.0.10", labels=Labels({"role": "w"})), Node("n2", ip="172.18.0.11"))
    p = cnp("p", egress=[
        {"action": "Deny", "to": [{"networks": ["10.1.0.0/25", "10.1.0.128/25", "192.0.2.0/24", "fd00::/8"]}],
         "protocols": [{"tcp": {"destinationPort": {"range": {"start": 79, "end": 81}}}}]},
        {"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}, {"nodes": {"matchLabels": {"role": "w"}}}],
         "protocols": [{"sctp": {"destinationPort": {"number": 9}}}]},
        {"action": "Accept", "to": FROM_ALL, "protocols": [{"destinationNamedPort": "http"}]},
    ])
    state = NftTranslator().translate(cluster([*PODS, HOST], nodes=nodes, cluster_policies=[p]))
    chain = state.chains[state.chains_of_policy["cnp:p"][0]]
    by_meaning = {s.meaning: s for s in state.sets.values()}
    nets = by_meaning["networks:10.1.0.0/25,10.1.0.128/25,192.0.2.0/24"]
    assert nets.interval and nets.elements == {"10.1.0.0/24", "192.0.2.0/24"}  # merged: never overlapping
    assert by_meaning["nodes:role=w"].elements == {"172.18.0.10"}
    exprs = [r.expr for r in chain.rules]
    assert exprs[:3] == [
        f"ip daddr @{nets.name} tcp dport 79-81 drop",
        "ip daddr 0.0.0.0/0 sctp dport 9 drop",
        f"ip daddr @{by_meaning['nodes:role=w'].name} sctp dport 9 drop",
    ]
    named = [r for r in chain.rules if "named" in r.comment or "/TCP" in r.comment]
    assert [r.comment.rsplit(" ", 2)[-2] for r in chain.rules[3:]] == [
        "protocols[0]/TCP", "protocols[0]/UDP", "protocols[0]/SCTP"]
    assert named and "ip daddr . meta l4proto . th dport @" in chain.rules[3].expr
    assert [k for k, _ in state.unenforceable] == ["cnp:p"]  # the IPv6 network


def test_unsupported_peers_and_refused_rules_fail_closed_as_deny_all() -> None:
    p = cnp("p", subject=WEB_ONLY, ingress=[
        {"action": "Accept", "from": [{"namespaces": ns_is("y")}]},
        {"action": "Pass", "from": [{"serviceAccounts": {"name": "a"}}],
         "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]},
    ], egress=[{"action": "Accept", "to": FROM_ALL}])
    other = cnp("other", "Baseline", ingress=[{"action": "Deny", "from": [{"namespaces": ns_is("y")}]}])
    c = cluster(PODS, [allow_web_from("client")], cluster_policies=[p, other])
    state = NftTranslator().translate(c)
    ingress, egress = state.chains_of_policy["cnp:p"]
    assert verdicts(state, ingress) == ["accept", "drop"]  # the Pass that fails closed denies all
    assert state.chains[ingress].rules[1].expr == "drop"  # every packet, its protocols ignored
    # Refused by the kernel: Accept rules match nothing, the first Deny or Pass denies all;
    # the group jumps stay, the other policies are untouched.
    closed = _fail_closed(state, "cnp:p")
    assert verdicts(closed, ingress) == ["drop"] and verdicts(closed, egress) == []
    assert closed.chains_of_policy["cnp:p"] == (ingress, egress)
    assert {n for n, ch in closed.chains.items() if ch != state.chains[n]} == {ingress, egress}
    assert closed.sets == state.sets  # its rules' sets are the other policies' too


def test_counts_per_tier_and_the_apply_report() -> None:
    state = NftTranslator().translate(cluster(PODS, cluster_policies=[
        cnp("a", ingress=[{"action": "Deny", "from": FROM_ALL}]),
        cnp("b", "Baseline", egress=[{"action": "Deny", "to": FROM_ALL}]),
        cnp("c", "Baseline"),
    ]))
    got = counts(state.cluster_policy_tiers, state.chains)
    # Admin: its rule and one group chain (jump, then on); Baseline the same.
    assert got == {"cluster_policies_admin": 1, "cluster_policies_baseline": 2,
                   "cluster_policy_nft_rules_admin": 3, "cluster_policy_nft_rules_baseline": 3}
    text = ApplyResult(counts={"nft_rules": state.rule_count(), **got}).text()
    assert "cluster network policies: 1 Admin (3 nft rules), 2 Baseline (3 nft rules)" in text


def test_cluster_policies_are_read_back_from_the_table_as_translated() -> None:
    both = cnp("both", ingress=[{"action": "Deny", "from": FROM_ALL}], egress=[{"action": "Deny", "to": FROM_ALL}])
    state = NftTranslator().translate(
        cluster(PODS, [allow_web_from("client")], cluster_policies=[both, cnp("empty", "Baseline")]))
    found = _policies_in(NftEnforcer("n1")._as_table(state))
    assert {k: set(v) for k, v in found.items()} == {k: set(v) for k, v in state.chains_of_policy.items()}
    assert found["cnp:empty"] == () and len(found["cnp:both"]) == 2


@pytest.mark.parametrize("seed", range(10))
def test_incremental_translation_with_cluster_policies_equals_a_fresh_one(seed: int) -> None:
    """Renderings, subjects, maps and groups are kept between translations: dropping and
    re-adding policies, relabelling nodes and removing pods gives what a fresh one gives."""
    from tests.dataplane.cnp_oracle import random_cluster

    c, _ = random_cluster(seed)
    carried = NftTranslator()
    assert carried.translate(c) == NftTranslator().translate(c)
    rng = random.Random(seed)
    for step in range(4):
        variant = replace(
            c,
            cluster_policies=tuple(p for p in c.cluster_policies if rng.random() < 0.6),
            nodes=tuple(replace(n, labels=Labels({"app": rng.choice("xyz")})) for n in c.nodes),
            pods=tuple(p for p in c.pods if rng.random() < 0.8),
        )
        assert carried.translate(variant) == NftTranslator().translate(variant), f"step {step}"
