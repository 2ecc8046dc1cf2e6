"""Translation: Cluster -> sets and chains, checked by structure and by verdicts.

Verdicts come from running the translated rules through the debug evaluator
(npm.dataplane.debug.evaluate) over the rendered iptables-save / ipset save text, and are compared
with the project's oracle, the reachability simulator (simulator/, which never shares the
translation's code).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from kube.model import EGRESS, INGRESS, ContainerPort, PortSpec
from npm.dataplane import names
from npm.dataplane.debug import Packet, desired_as_saved, evaluate
from npm.dataplane.ipset import parse_save as parse_ipsets
from npm.dataplane.iptables import parse_save
from npm.dataplane.translate import translate
from npm.dataplane.types import HASH_IP_PORT, HASH_NET, LIST_SET, Marks
from simulator import semantics
from simulator.engine import Simulator
from tests.dataplane.helpers import cluster, pod, policy

WEB = pod("x/web", "10.1.0.2", {"app": "web"}, ports=(ContainerPort(80, "TCP", "http"),))
CLIENT = pod("x/client", "10.1.0.3", {"app": "client"})
OTHER_NS_CLIENT = pod("y/client", "10.1.0.4", {"app": "client"})
PODS = [WEB, CLIENT, OTHER_NS_CLIENT]
OUTSIDE = "192.0.2.9"


def kernel_view(c):
    """The translated state as parsed iptables-save / ipset save content."""
    ipt, ips = desired_as_saved(translate(c))
    return parse_save(ipt)["filter"], parse_ipsets(ips)


def verdict(c, src: str, dst: str, port: int = 80, proto: str = "tcp", view=None) -> bool:
    """Whether the translated rules accept a NEW src -> dst:port packet."""
    table, sets = view or kernel_view(c)
    trace = evaluate(table, sets, Packet(src, dst, proto, port))
    assert not trace.undecided, trace.undecided
    return trace.verdict == "ACCEPT"


def expected(sim: Simulator, src: str, dst: str, spec: PortSpec) -> bool:
    """The simulator's verdict on what the translated policy rules decide.

    The simulator always allows a pod to reach itself, and a pod and its own node to reach
    each other (Kubernetes semantics: policy never applies there). The translated policy
    chains that the iptables evaluator runs carry no such exception: a packet from a pod to
    its own address is judged by the policies like any other. So for those pairs the
    expected verdict is the policies' own, egress at the source and ingress at the
    destination, which the simulator's scalar reference gives without the exception.
    """
    s, d = sim.endpoint(src), sim.endpoint(dst)
    if semantics.always_allowed(sim.cluster, s, d):
        return all(semantics.evaluate_direction(sim.cluster, s, d, spec, way).allowed for way in (EGRESS, INGRESS))
    return sim.allowed(s, d, spec)


def check_against_oracle(c, pairs, ports=((80, "TCP"),)) -> tuple[int, int]:
    view = kernel_view(c)
    sim = Simulator(c)
    outcomes = [0, 0]
    for src, dst in pairs:
        for number, proto in ports:
            want = expected(sim, src, dst, PortSpec(number, proto))
            got = verdict(c, src, dst, number, proto.lower(), view)
            assert got == want, f"{src} -> {dst}:{number}/{proto}: rules say {got}, semantics say {want}"
            outcomes[want] += 1
    return outcomes[0], outcomes[1]


def ip(p) -> str:
    return p.ip


# ---- names ------------------------------------------------------------------------------
def test_set_and_chain_names_fit_kernel_limits_and_are_prefixed() -> None:
    c = cluster(PODS, [policy("x", "p" * 200, {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]})])
    d = translate(c)
    for name in d.sets:
        assert name.startswith("azure-npm-") and len(name) <= names.MAX_SET_NAME
    for name in d.chains:
        assert name.startswith("AZURE-NPM") and len(name) <= names.MAX_CHAIN_NAME


def test_name_registry_refuses_two_meanings_for_one_name() -> None:
    reg = names.NameRegistry()
    reg.claim("azure-npm-aaaa", "ns:x")
    reg.claim("azure-npm-aaaa", "ns:x")  # same meaning: fine
    with pytest.raises(names.NameCollision):
        reg.claim("azure-npm-aaaa", "ns:y")


def test_changed_policy_gets_a_new_chain_and_unchanged_keeps_it() -> None:
    a = policy("x", "p", {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]})
    b = policy("x", "p", {"podSelector": {}, "ingress": [{"ports": [{"port": 81}]}]})
    first = translate(cluster(PODS, [a])).chains_of_policy["x/p"]
    assert translate(cluster(PODS, [a])).chains_of_policy["x/p"] == first
    assert translate(cluster(PODS, [b])).chains_of_policy["x/p"] != first


def test_every_rule_has_a_readable_comment_within_the_kernel_limit() -> None:
    long_name = "a" * 250
    p = policy(
        "x",
        long_name,
        {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}, {"ipBlock": {"cidr": "10.0.0.0/8"}}]}]},
    )
    d = translate(cluster(PODS, [p]))
    rules = [r for c in d.policy_chains.values() for r in c.rules]
    assert [r.comment[-len("ingress[0] from[1] ports[any]") :] for r in rules if "from[1]" in r.comment]
    for c in d.chains.values():
        for r in c.rules:
            assert r.comment and len(r.comment) <= 255
    short = translate(
        cluster(
            PODS,
            [
                policy(
                    "x",
                    "allow-web",
                    {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": 80}]}]},
                )
            ],
        )
    )
    comments = {r.comment for c in short.policy_chains.values() for r in c.rules}
    assert comments == {"x/allow-web ingress[0] from[0] ports[0]"}


# ---- sets -------------------------------------------------------------------------------
def test_no_policy_materialises_no_sets_and_no_policy_chains() -> None:
    d = translate(cluster(PODS))
    assert not d.sets and not d.policy_chains


def test_only_referenced_sets_exist_and_hold_cluster_wide_members() -> None:
    remote = pod("x/remote", "10.2.0.9", {"app": "web"}, node="n2")
    deny = translate(cluster([*PODS, remote], [policy("x", "p", {"podSelector": {"matchLabels": {"app": "web"}}})]))
    assert {s.meaning for s in deny.sets.values()} == {"ns:x", "isolated:ingress"}  # a deny-all needs no label set
    c = cluster([*PODS, remote], [policy("x", "p", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]})])
    d = translate(c)
    meanings = {s.meaning: s for s in d.sets.values()}
    assert set(meanings) == {"ns:x", "podlabel:app=web", "isolated:ingress"}
    assert meanings["podlabel:app=web"].members == {"10.1.0.2", "10.2.0.9"}
    assert meanings["isolated:ingress"].members == {"10.1.0.2", "10.2.0.9"}
    assert meanings["ns:x"].members == {"10.1.0.2", "10.1.0.3", "10.2.0.9"}


def test_host_network_pods_and_ipv6_addresses_are_never_set_members() -> None:
    host = pod("x/host", "172.18.0.10", {"app": "web"}, host_network=True)
    v6 = pod("x/v6", "fd00::5", {"app": "web"})
    d = translate(cluster([*PODS, host, v6], [policy("x", "p", {"podSelector": {"matchLabels": {"app": "web"}}})]))
    members = set().union(*(s.members for s in d.sets.values()))
    assert "172.18.0.10" not in members and "fd00::5" not in members


def test_named_port_set_holds_ip_proto_port_of_each_serving_pod() -> None:
    web2 = pod("x/web2", "10.1.0.7", {"app": "web"}, ports=(ContainerPort(8080, "TCP", "http"),))
    udp = pod("x/dns", "10.1.0.8", ports=(ContainerPort(53, "UDP", "http"),))
    p = policy("x", "p", {"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]})
    d = translate(cluster([*PODS, web2, udp], [p]))
    (named,) = [s for s in d.sets.values() if s.kind == HASH_IP_PORT]
    assert named.meaning == "namedport:http/TCP"
    assert named.members == {"10.1.0.2,tcp:80", "10.1.0.7,tcp:8080"}


def test_cidr_sets_use_nomatch_for_except_and_split_slash_zero() -> None:
    p = policy(
        "x",
        "p",
        {
            "podSelector": {},
            "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.1.0.0/16", "10.9.9.9/32"]}}]}],
        },
    )
    (net,) = [s for s in translate(cluster(PODS, [p])).sets.values() if s.kind == HASH_NET]
    assert net.members == {"0.0.0.0/1", "128.0.0.0/1", "10.1.0.0/16 nomatch", "10.9.9.9 nomatch"}


def test_namespace_label_sets_are_lists_of_namespace_sets() -> None:
    p = policy(
        "x", "p", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}]}
    )
    d = translate(cluster(PODS, [p], ns_labels={"y": {"team": "a"}}))
    (lst,) = [s for s in d.sets.values() if s.meaning == "nslabel:team=a"]
    assert lst.kind == LIST_SET
    assert {d.sets[m].meaning for m in lst.members} == {"ns:y"}


# ---- verdicts ---------------------------------------------------------------------------
def test_unselected_pods_are_not_isolated() -> None:
    c = cluster(PODS, [policy("x", "deny-web", {"podSelector": {"matchLabels": {"app": "web"}}})])
    assert not verdict(c, ip(CLIENT), ip(WEB))
    assert verdict(c, ip(WEB), ip(CLIENT))
    assert verdict(c, OUTSIDE, ip(OTHER_NS_CLIENT))


def test_ingress_pod_selector_peer_is_the_policy_namespace_only() -> None:
    p = policy(
        "x",
        "p",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
        },
    )
    c = cluster(PODS, [p])
    assert verdict(c, ip(CLIENT), ip(WEB))
    assert not verdict(c, ip(OTHER_NS_CLIENT), ip(WEB))
    assert not verdict(c, OUTSIDE, ip(WEB))


def test_empty_namespace_selector_means_all_namespaces_but_only_pods() -> None:
    p = policy("x", "p", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})
    c = cluster(PODS, [p])
    assert verdict(c, ip(OTHER_NS_CLIENT), ip(WEB))
    assert not verdict(c, OUTSIDE, ip(WEB))


def test_and_within_a_peer_or_across_peers() -> None:
    and_peer = {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {"matchLabels": {"app": "client"}}}
    web_peer = {"podSelector": {"matchLabels": {"app": "web"}}}
    y_other = pod("y/other", "10.1.0.5", {"app": "other"})
    z_client = pod("z/client", "10.1.0.6", {"app": "client"})
    c = cluster(
        [*PODS, y_other, z_client],
        [policy("x", "p", {"podSelector": {}, "ingress": [{"from": [and_peer, web_peer]}]})],
        ns_labels={"y": {"team": "a"}},
    )
    assert verdict(c, ip(OTHER_NS_CLIENT), ip(CLIENT))  # team=a AND app=client
    assert not verdict(c, ip(y_other), ip(CLIENT))  # team=a but not client
    assert not verdict(c, ip(z_client), ip(CLIENT))  # client but not team=a
    assert verdict(c, ip(WEB), ip(CLIENT))  # the other peer


def test_match_expressions_and_negative_selectors_exclude_off_cluster_addresses() -> None:
    labelled = [
        pod("x/a", "10.1.1.1", {"tier": "a"}),
        pod("x/b", "10.1.1.2", {"tier": "b"}),
        pod("x/c", "10.1.1.3", {"tier": "c"}),
        pod("x/none", "10.1.1.4"),
    ]
    target = pod("x/t", "10.1.1.9", {"role": "target"})
    for expr, ok in (
        ({"key": "tier", "operator": "In", "values": ["a", "b"]}, {"x/a", "x/b"}),
        ({"key": "tier", "operator": "NotIn", "values": ["a", "b"]}, {"x/c", "x/none", "x/t"}),
        ({"key": "tier", "operator": "Exists"}, {"x/a", "x/b", "x/c"}),
        ({"key": "tier", "operator": "DoesNotExist"}, {"x/none", "x/t"}),
    ):
        p = policy(
            "x",
            "p",
            {
                "podSelector": {"matchLabels": {"role": "target"}},
                "ingress": [{"from": [{"podSelector": {"matchExpressions": [expr]}}]}],
            },
        )
        c = cluster([*labelled, target], [p])
        got = {q.key for q in labelled if verdict(c, q.ip, target.ip)}
        assert got == ok - {"x/t"}, expr
        assert not verdict(c, OUTSIDE, target.ip), f"{expr} admitted an off-cluster address"


def test_negative_namespace_selector_excludes_off_cluster_addresses() -> None:
    p = policy(
        "x",
        "p",
        {
            "podSelector": {},
            "ingress": [
                {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}}]}
            ],
        },
    )
    c = cluster(PODS, [p], ns_labels={"y": {"team": "a"}})
    assert verdict(c, ip(CLIENT), ip(WEB))
    assert not verdict(c, ip(OTHER_NS_CLIENT), ip(WEB))
    assert not verdict(c, OUTSIDE, ip(WEB))


def test_named_ports_resolve_per_destination_pod() -> None:
    web2 = pod("x/web2", "10.1.0.7", {"app": "web"}, ports=(ContainerPort(8080, "TCP", "http"),))
    p = policy("x", "p", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": "http"}]}]})
    c = cluster([*PODS, web2], [p])
    assert verdict(c, ip(CLIENT), ip(WEB), 80) and not verdict(c, ip(CLIENT), ip(WEB), 8080)
    assert verdict(c, ip(CLIENT), web2.ip, 8080) and not verdict(c, ip(CLIENT), web2.ip, 80)
    assert not verdict(c, ip(CLIENT), ip(WEB), 80, "udp")


def test_end_port_protocol_only_and_sctp() -> None:
    p = policy(
        "x",
        "p",
        {
            "podSelector": {},
            "ingress": [
                {"ports": [{"port": 8000, "endPort": 8010}, {"protocol": "UDP"}, {"protocol": "SCTP", "port": 9000}]}
            ],
        },
    )
    c = cluster(PODS, [p])
    assert verdict(c, ip(CLIENT), ip(WEB), 8000) and verdict(c, ip(CLIENT), ip(WEB), 8010)
    assert not verdict(c, ip(CLIENT), ip(WEB), 8011) and not verdict(c, ip(CLIENT), ip(WEB), 80)
    assert verdict(c, ip(CLIENT), ip(WEB), 12345, "udp")
    assert verdict(c, ip(CLIENT), ip(WEB), 9000, "sctp") and not verdict(c, ip(CLIENT), ip(WEB), 9001, "sctp")
    rules = [" ".join(r.args) for ch in translate(c).policy_chains.values() for r in ch.rules]
    assert any("--dport 8000:8010" in r for r in rules) and any("-p sctp" in r for r in rules)


def test_ip_block_matches_pod_ips_and_except_carves_out() -> None:
    p = policy(
        "x",
        "p",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "10.1.0.0/24", "except": ["10.1.0.4/32"]}}]}],
        },
    )
    c = cluster(PODS, [p])
    assert verdict(c, ip(CLIENT), ip(WEB))  # a pod IP inside the block
    assert not verdict(c, ip(OTHER_NS_CLIENT), ip(WEB))  # excepted
    assert not verdict(c, OUTSIDE, ip(WEB))


def test_no_peers_means_any_address_no_ports_means_any_port() -> None:
    c = cluster(PODS, [policy("x", "p", {"podSelector": {}, "ingress": [{}]})])
    for src in (ip(CLIENT), ip(OTHER_NS_CLIENT), OUTSIDE):
        assert verdict(c, src, ip(WEB), 1234) and verdict(c, src, ip(WEB), 53, "udp")


def test_empty_ingress_list_denies_everything_to_selected_pods() -> None:
    c = cluster(PODS, [policy("x", "p", {"podSelector": {}, "policyTypes": ["Ingress"]})])
    assert not verdict(c, ip(OTHER_NS_CLIENT), ip(WEB)) and not verdict(c, ip(CLIENT), ip(WEB))
    assert verdict(c, ip(WEB), ip(OTHER_NS_CLIENT))


def test_policies_are_additive() -> None:
    a = policy(
        "x",
        "a",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
        },
    )
    b = policy(
        "x",
        "b",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "y"}}}]}],
        },
    )
    c = cluster(PODS, [a, b])
    assert verdict(c, ip(CLIENT), ip(WEB)) and verdict(c, ip(OTHER_NS_CLIENT), ip(WEB))
    assert not verdict(c, OUTSIDE, ip(WEB))


def test_egress_is_checked_at_the_source() -> None:
    p = policy(
        "x",
        "p",
        {
            "podSelector": {"matchLabels": {"app": "client"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": "http"}]}],
        },
    )
    c = cluster(PODS, [p])
    assert verdict(c, ip(CLIENT), ip(WEB), 80)
    assert not verdict(c, ip(CLIENT), ip(WEB), 81)
    assert not verdict(c, ip(CLIENT), ip(OTHER_NS_CLIENT), 80)
    assert not verdict(c, ip(CLIENT), OUTSIDE, 80)
    assert verdict(c, ip(OTHER_NS_CLIENT), OUTSIDE, 80)


def test_ingress_and_egress_both_apply() -> None:
    deny_in = policy("y", "in", {"podSelector": {}, "policyTypes": ["Ingress"]})
    eg = policy(
        "x", "eg", {"podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"], "egress": [{}]}
    )
    c = cluster(PODS, [deny_in, eg])
    assert not verdict(c, ip(CLIENT), ip(OTHER_NS_CLIENT))  # egress allows, ingress denies
    assert verdict(c, ip(CLIENT), ip(WEB))


def test_a_policy_selects_pods_of_its_own_namespace_only() -> None:
    c = cluster(PODS, [policy("y", "deny", {"podSelector": {"matchLabels": {"app": "client"}}})])
    assert verdict(c, ip(WEB), ip(CLIENT))
    assert not verdict(c, ip(WEB), ip(OTHER_NS_CLIENT))


def test_host_network_pods_are_never_selected_and_match_only_ip_blocks() -> None:
    host = pod("x/host", "172.18.0.10", {"app": "client"}, host_network=True)
    sel = policy(
        "x",
        "sel",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
        },
    )
    c = cluster([*PODS, host], [sel, policy("x", "all", {"podSelector": {"matchLabels": {"app": "client"}}})])
    assert not verdict(c, host.ip, ip(WEB))  # its labels do not make it a peer
    blk = policy(
        "x",
        "sel",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"ipBlock": {"cidr": "172.18.0.0/16"}}]}],
        },
    )
    assert verdict(cluster([*PODS, host], [blk]), host.ip, ip(WEB))


def test_ipv6_block_fails_closed_and_is_reported() -> None:
    p = policy(
        "x",
        "v6",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [
                {"from": [{"ipBlock": {"cidr": "fd00::/8"}}, {"podSelector": {"matchLabels": {"app": "client"}}}]}
            ],
        },
    )
    c = cluster(PODS, [p])
    d = translate(c)
    assert [k for k, _ in d.unenforceable] == ["x/v6"]
    assert "IPv6" in d.unenforceable[0][1] and "from[0]" in d.unenforceable[0][1]
    assert verdict(c, ip(CLIENT), ip(WEB))  # the enforceable peer still allows
    only_v6 = policy(
        "x",
        "v6",
        {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"from": [{"ipBlock": {"cidr": "fd00::/8"}}]}]},
    )
    assert not verdict(cluster(PODS, [only_v6]), ip(CLIENT), ip(WEB))  # isolated, nothing allowed


def test_marks_default_clear_of_kube_proxy_bits_and_are_configurable() -> None:
    m = Marks()
    assert m.both & 0xC000 == 0
    d = translate(cluster(PODS, [policy("x", "p", {"podSelector": {}})]), marks=Marks(0x100, 0x200))
    text = " ".join(" ".join(r.args) for c in d.base_chains for r in c.rules)
    assert "0x100/0x100" in text and "0x2000" not in text
    with pytest.raises(ValueError):
        Marks(0x3000, 0x1)
    with pytest.raises(ValueError):
        Marks(0x1000, 0x1000)


@pytest.mark.parametrize("seed", range(40))
def test_random_clusters_agree_with_the_semantics(seed: int) -> None:
    from tests.dataplane.randomized import random_cluster

    c, probes = random_cluster(seed)
    pairs = [(s, d) for s in probes for d in probes]  # self pairs too: see expected()
    denied, allowed_ = check_against_oracle(c, pairs, ports=((80, "TCP"), (81, "TCP"), (53, "UDP"), (8080, "TCP")))
    assert denied + allowed_ == len(pairs) * 4


def test_random_clusters_exercise_both_verdicts() -> None:
    """Guard against a generator that only makes trivial clusters."""
    from tests.dataplane.randomized import random_cluster

    totals = [0, 0]
    for seed in range(40):
        c, probes = random_cluster(seed)
        d, a = check_against_oracle(c, [(s, t) for s in probes[:4] for t in probes if s != t])
        totals[0] += d
        totals[1] += a
    assert totals[0] > 100 and totals[1] > 100, totals


@pytest.mark.parametrize("seed", range(15))
def test_translation_with_a_reused_index_equals_a_fresh_one(seed: int) -> None:
    """Policy renderings are cached per cluster index; dropping and re-adding policies
    must give exactly what a fresh translation gives (sets shared through list sets too)."""
    import random

    from npm.dataplane.index import ClusterIndex
    from tests.dataplane.randomized import random_cluster

    c, _ = random_cluster(seed)
    extra = policy("a", "all-ns", {"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})
    full = replace(c, policies=(*c.policies, extra))
    index = ClusterIndex(full)
    translate(full, index=index)
    rng = random.Random(seed)
    for _ in range(4):
        subset = tuple(p for p in full.policies if rng.random() < 0.5)
        variant = replace(full, policies=subset)
        assert translate(variant, index=index) == translate(variant)
