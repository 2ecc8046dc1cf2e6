"""ClusterNetworkPolicy translation: the Admin and Baseline tiers around the NetworkPolicy
dispatch, checked by structure and by verdicts of the debug evaluator over the rendered rules.

Random clusters are compared with tests/dataplane/cnp_oracle.py, a direct reading of the API's
semantics (with the simulator's NetworkPolicy reference for the middle tier).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from kube.model import ContainerPort, Labels, Node, PortSpec
from npm.dataplane import names
from npm.dataplane.enforcer import DataplaneConfig, _Kernel, _opening_verbs
from npm.dataplane.iptables import spec_fingerprint
from npm.dataplane.translate import translate
from npm.dataplane.translate_cnp import CLOSING, PASSING, closed_form, cnp_key, counts
from npm.dataplane.types import HASH_NET, Marks
from tests.dataplane.helpers import cluster, cnp, ns_is, pod, policy
from tests.dataplane.test_translate import kernel_view, verdict

WEB = pod(
    "x/web", "10.1.0.2", {"app": "web"}, ports=(ContainerPort(80, "TCP", "http"), ContainerPort(53, "UDP", "dns"))
)
CLIENT = pod("x/client", "10.1.0.3", {"app": "client"})
Y_CLIENT = pod("y/client", "10.1.0.4", {"app": "client"})
HOST = pod("y/host", "172.18.0.10", {"app": "client"}, host_network=True)
PODS = [WEB, CLIENT, Y_CLIENT]
OUTSIDE = "192.0.2.9"
WEB_ONLY = {"pods": {"namespaceSelector": ns_is("x"), "podSelector": {"matchLabels": {"app": "web"}}}}
ALL_PODS = {"namespaces": {}}
FROM_ALL = [{"namespaces": {}}]
PROBE_PORTS = ((80, "TCP"), (81, "TCP"), (53, "UDP"), (8080, "TCP"), (80, "SCTP"))  # of the random cross-checks


def allow_web_from(app: str):
    return policy(
        "x",
        "web",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": app}}}]}],
        },
    )


def ok(c, src, dst, port: int = 80, proto: str = "tcp") -> bool:
    return verdict(c, getattr(src, "ip", src), getattr(dst, "ip", dst), port, proto)


def rules_of(desired, chain: str) -> list[tuple[str, ...]]:
    return [r.args for r in desired.chains[chain].rules]


# ---- layout -----------------------------------------------------------------------------------
def test_without_cluster_policies_the_chains_are_those_of_networkpolicy_alone() -> None:
    d = translate(cluster(PODS, [allow_web_from("client")]))
    assert not [n for n in d.chains if names.tier_of_chain(n) in ("Admin", "Baseline")]
    assert names.CHAIN_CNP_PASS not in d.chains and not d.cluster_policy_tiers
    first = rules_of(d, names.CHAIN_INGRESS)[0]
    assert first[-2:] == ("-j", "RETURN") and "!" in first  # not isolated: back to FORWARD


def test_admin_tier_comes_before_the_networkpolicy_dispatch_and_baseline_after_it() -> None:
    admin = cnp("a", subject=WEB_ONLY, ingress=[{"action": "Deny", "from": FROM_ALL}])
    base = cnp("b", "Baseline", subject=WEB_ONLY, ingress=[{"action": "Deny", "from": FROM_ALL}])
    d = translate(cluster(PODS, [allow_web_from("client")], cluster_policies=[admin, base]))
    ingress = rules_of(d, names.CHAIN_INGRESS)
    assert ingress[0] == ("-j", names.CHAIN_ADMIN_INGRESS)
    assert ingress[1] == ("-m", "mark", "--mark", "0x2000/0x2000", "-j", "RETURN")  # accepted by Admin
    assert ingress[2][-2:] == ("-g", names.CHAIN_BASELINE_INGRESS) and "!" in ingress[2]  # not isolated
    assert names.CHAIN_ADMIN_EGRESS not in d.chains  # no egress rules: egress is left alone
    assert rules_of(d, names.CHAIN_EGRESS) == []
    # Without any NetworkPolicy, every pod goes to the Baseline tier.
    d = translate(cluster(PODS, cluster_policies=[base]))
    assert rules_of(d, names.CHAIN_INGRESS) == [("-g", names.CHAIN_BASELINE_INGRESS)]


def test_a_tier_chain_jumps_to_its_policies_by_priority_then_name() -> None:
    deny = [{"action": "Deny", "from": FROM_ALL}]
    policies = [
        cnp("zeta", priority=1, ingress=deny),
        cnp("beta", priority=2, ingress=deny),
        cnp("alpha", priority=1, ingress=deny),
    ]
    d = translate(cluster(PODS, cluster_policies=policies))
    comments = [r.comment for r in d.chains[names.CHAIN_ADMIN_INGRESS].rules]
    assert comments[1:-1] == ["cnp:alpha ingress rules", "cnp:zeta ingress rules", "cnp:beta ingress rules"]
    first, last = d.chains[names.CHAIN_ADMIN_INGRESS].rules[0], d.chains[names.CHAIN_ADMIN_INGRESS].rules[-1]
    assert first.args == last.args == ("-j", "MARK", "--set-xmark", "0x0/0x800")  # the Pass mark never leaks
    assert d.chains_of_policy["cnp:alpha"][0].startswith(names.ADMIN_INGRESS_PREFIX)
    assert d.cluster_policy_tiers == {"cnp:alpha": "Admin", "cnp:beta": "Admin", "cnp:zeta": "Admin"}


def test_rule_comments_name_policy_tier_rule_peer_protocol_and_action() -> None:
    p = cnp(
        "named-rules",
        subject=WEB_ONLY,
        ingress=[
            {
                "name": "no-y",
                "action": "Deny",
                "from": [{"namespaces": ns_is("y")}],
                "protocols": [{"tcp": {"destinationPort": {"number": 80}}}],
            }
        ],
    )
    d = translate(cluster(PODS, cluster_policies=[p]))
    (chain,) = d.chains_of_policy["cnp:named-rules"]
    (rule,) = d.chains[chain].rules
    assert rule.comment == "cnp:named-rules Admin ingress[0] 'no-y' from[0] protocols[0] Deny"
    assert rule.policy == "cnp:named-rules"
    marker = [r.comment for r in d.chains[names.CHAIN_POLICIES].rules]
    assert marker == ["policy cnp:named-rules ingress (Admin tier, priority 0)"]
    long = cnp("n" * 253, subject=WEB_ONLY, ingress=[{"name": "r" * 100, "action": "Deny", "from": FROM_ALL}])
    d = translate(cluster(PODS, cluster_policies=[long]))
    assert all(len(r.comment) <= names.MAX_COMMENT for c in d.chains.values() for r in c.rules)
    assert all(len(n) <= names.MAX_CHAIN_NAME for n in d.chains)


# ---- the tiers' semantics ---------------------------------------------------------------------
def test_admin_deny_overrides_a_networkpolicy_allow() -> None:
    deny_y = cnp("deny-y", subject=WEB_ONLY, ingress=[{"action": "Deny", "from": [{"namespaces": ns_is("y")}]}])
    c = cluster(PODS, [allow_web_from("client")], cluster_policies=[deny_y])
    assert ok(c, CLIENT, WEB) and not ok(c, Y_CLIENT, WEB)


def test_admin_accept_overrides_a_networkpolicy_deny_for_its_direction_only() -> None:
    accept_y = cnp("accept-y", subject=WEB_ONLY, ingress=[{"action": "Accept", "from": [{"namespaces": ns_is("y")}]}])
    deny_web = policy("x", "deny", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]})
    c = cluster(PODS, [deny_web], cluster_policies=[accept_y])
    assert ok(c, Y_CLIENT, WEB) and not ok(c, CLIENT, WEB)
    # Egress of the source is still NetworkPolicy's to decide.
    no_egress = policy("y", "no-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    c = cluster(PODS, [deny_web, no_egress], cluster_policies=[accept_y])
    assert not ok(c, Y_CLIENT, WEB)


def test_an_egress_accept_leaves_the_destination_ingress_to_be_evaluated() -> None:
    out = cnp("out", subject={"namespaces": ns_is("y")}, egress=[{"action": "Accept", "to": FROM_ALL}])
    deny_web = policy("x", "deny", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]})
    no_egress = policy("y", "no-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    c = cluster(PODS, [no_egress], cluster_policies=[out])
    assert ok(c, Y_CLIENT, WEB)  # NetworkPolicy egress skipped
    c = cluster(PODS, [no_egress, deny_web], cluster_policies=[out])
    assert not ok(c, Y_CLIENT, WEB) and ok(c, Y_CLIENT, CLIENT)  # ingress at web still denies
    admin_in = cnp("in", subject=WEB_ONLY, ingress=[{"action": "Deny", "from": FROM_ALL}])
    assert not ok(cluster(PODS, cluster_policies=[out, admin_in]), Y_CLIENT, WEB)


def test_pass_skips_the_rest_of_the_tier_and_networkpolicy_decides() -> None:
    pass_x = cnp(
        "1-pass", priority=1, subject=WEB_ONLY, ingress=[{"action": "Pass", "from": [{"namespaces": ns_is("x")}]}]
    )
    deny_all = cnp("2-deny", priority=2, subject=WEB_ONLY, ingress=[{"action": "Deny", "from": FROM_ALL}])
    c = cluster(PODS, cluster_policies=[pass_x, deny_all])
    assert ok(c, CLIENT, WEB) and not ok(c, Y_CLIENT, WEB)
    c = cluster(PODS, [allow_web_from("other")], cluster_policies=[pass_x, deny_all])
    assert not ok(c, CLIENT, WEB)  # passed to NetworkPolicy, which denies it
    # A Pass also skips the later Admin Accepts; its own later rules do not apply either.
    both = cnp(
        "1-pass",
        priority=1,
        subject=WEB_ONLY,
        ingress=[{"action": "Pass", "from": [{"namespaces": ns_is("x")}]}, {"action": "Accept", "from": FROM_ALL}],
    )
    c = cluster(PODS, [allow_web_from("other")], cluster_policies=[both])
    assert not ok(c, CLIENT, WEB) and ok(c, Y_CLIENT, WEB)


def test_rules_apply_in_written_order_within_a_policy_and_priority_across_policies() -> None:
    accept_then_deny = cnp(
        "p",
        subject=WEB_ONLY,
        ingress=[
            {
                "action": "Accept",
                "from": [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}}],
            },
            {"action": "Deny", "from": FROM_ALL},
        ],
    )
    c = cluster(PODS, cluster_policies=[accept_then_deny])
    assert ok(c, CLIENT, WEB) and ok(c, Y_CLIENT, WEB) and not ok(c, WEB, WEB)
    deny_first = cnp(
        "a-deny", priority=0, subject=WEB_ONLY, ingress=[{"action": "Deny", "from": [{"namespaces": ns_is("y")}]}]
    )
    c = cluster(PODS, cluster_policies=[accept_then_deny, deny_first])
    assert not ok(c, Y_CLIENT, WEB) and ok(c, CLIENT, WEB)
    c = cluster(PODS, cluster_policies=[accept_then_deny, replace(deny_first, priority=5)])
    assert ok(c, Y_CLIENT, WEB)


def test_baseline_applies_only_to_pods_networkpolicy_does_not_select_in_that_direction() -> None:
    baseline = cnp(
        "base",
        "Baseline",
        subject=ALL_PODS,
        ingress=[{"action": "Deny", "from": [{"namespaces": ns_is("y")}]}],
        egress=[{"action": "Deny", "to": [{"networks": ["192.0.2.0/24"]}]}],
    )
    c = cluster(PODS, cluster_policies=[baseline])
    assert not ok(c, Y_CLIENT, WEB) and not ok(c, Y_CLIENT, CLIENT) and ok(c, CLIENT, WEB)
    assert not ok(c, CLIENT, OUTSIDE)
    # web is selected for ingress by a NetworkPolicy that admits clients: Baseline is not consulted for it.
    c = cluster(PODS, [allow_web_from("client")], cluster_policies=[baseline])
    assert ok(c, Y_CLIENT, WEB) and not ok(c, Y_CLIENT, CLIENT)
    # An ingress-only NetworkPolicy leaves the pod's egress to the Baseline tier.
    assert not ok(c, WEB, OUTSIDE)
    egress_np = policy(
        "x", "out", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"], "egress": [{}]}
    )
    c = cluster(PODS, [allow_web_from("client"), egress_np], cluster_policies=[baseline])
    assert ok(c, WEB, OUTSIDE) and not ok(c, CLIENT, OUTSIDE)


def test_baseline_accept_pass_and_no_match() -> None:
    rules = [
        {"action": "Pass", "from": [{"namespaces": ns_is("y")}]},
        {"action": "Accept", "from": [{"namespaces": ns_is("x")}]},
        {"action": "Deny", "from": FROM_ALL},
    ]
    z = pod("z/other", "10.1.0.9")
    c = cluster([*PODS, z], cluster_policies=[cnp("base", "Baseline", subject=WEB_ONLY, ingress=rules)])
    assert ok(c, Y_CLIENT, WEB)  # Pass: on to the default (allow)
    assert ok(c, CLIENT, WEB) and not ok(c, z, WEB) and ok(c, OUTSIDE, WEB)  # Deny covers pods only


def test_networks_match_pods_nodes_and_outside_addresses_and_zero_is_split() -> None:
    deny = cnp(
        "deny-nets",
        subject={"namespaces": ns_is("x")},
        egress=[{"action": "Deny", "to": [{"networks": ["10.1.0.4/32", "192.0.2.0/24", "fd00::/8"]}]}],
    )
    c = cluster([*PODS, HOST], cluster_policies=[deny])
    assert not ok(c, CLIENT, Y_CLIENT) and not ok(c, CLIENT, OUTSIDE) and ok(c, CLIENT, WEB) and ok(c, CLIENT, HOST)
    d = translate(c)
    (spec,) = [s for s in d.sets.values() if s.kind == HASH_NET]
    assert spec.members == {"10.1.0.4", "192.0.2.0/24"} and spec.meaning == "networks:10.1.0.4/32,192.0.2.0/24"
    assert d.unenforceable == (
        (
            "cnp:deny-nets",
            "spec.egress[0].to[0].networks[2] fd00::/8: IPv6 is not enforced "
            "by this IPv4 dataplane (IPv4 traffic is decided as written)",
        ),
    )
    everything = cnp(
        "all", subject={"namespaces": ns_is("x")}, egress=[{"action": "Deny", "to": [{"networks": ["0.0.0.0/0"]}]}]
    )
    c = cluster([*PODS, HOST], cluster_policies=[everything])
    assert not ok(c, CLIENT, HOST) and not ok(c, WEB, OUTSIDE) and ok(c, Y_CLIENT, OUTSIDE)
    (spec,) = [s for s in translate(c).sets.values() if s.kind == HASH_NET]
    assert spec.members == {"0.0.0.0/1", "128.0.0.0/1"}
    only_v6 = cnp(
        "v6", subject={"namespaces": ns_is("x")}, egress=[{"action": "Deny", "to": [{"networks": ["fd00::/8"]}]}]
    )
    assert ok(cluster(PODS, cluster_policies=[only_v6]), CLIENT, OUTSIDE)  # matches no IPv4 address


def test_nodes_peer_holds_the_addresses_node_objects_give_and_nothing_made_up() -> None:
    nodes = [
        Node("n1", ip="172.18.0.10", labels=Labels({"role": "worker"})),
        Node("n2", ip="172.18.0.11", labels=Labels({"role": "infra"})),
        Node("n3", ip="172.18.0.12", ip_allocated=True, labels=Labels({"role": "worker"})),
        Node("n4", labels=Labels({"role": "worker"})),
    ]
    deny = cnp(
        "no-workers",
        subject=ALL_PODS,
        egress=[{"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "worker"}}}]}],
    )
    c = cluster([*PODS, HOST], nodes=nodes, cluster_policies=[deny])
    (spec,) = [s for s in translate(c).sets.values() if s.meaning.startswith("nodes:")]
    assert spec.members == {"172.18.0.10"}
    assert not ok(c, CLIENT, "172.18.0.10") and not ok(c, CLIENT, HOST)  # the hostNetwork pod has the node's address
    assert ok(c, CLIENT, "172.18.0.11") and ok(c, CLIENT, "172.18.0.12") and ok(c, CLIENT, WEB)
    relabelled = replace(c, nodes=(replace(nodes[0], labels=Labels({"role": "infra"})), *nodes[1:]))
    assert ok(relabelled, CLIENT, "172.18.0.10")


def test_host_network_pods_are_never_subjects_or_pod_peers() -> None:
    deny_all = cnp(
        "deny",
        subject=ALL_PODS,
        ingress=[{"action": "Deny", "from": FROM_ALL}],
        egress=[{"action": "Deny", "to": FROM_ALL}],
    )
    c = cluster([*PODS, HOST], cluster_policies=[deny_all])
    assert ok(c, HOST, OUTSIDE) and ok(c, OUTSIDE, HOST)  # not a subject
    assert not ok(c, CLIENT, WEB) and ok(c, HOST, WEB) and ok(c, OUTSIDE, WEB)  # pods peers: pods only


def test_protocols_ranges_sctp_and_named_ports_resolved_on_the_destination() -> None:
    web2 = pod("x/web2", "10.1.0.5", {"app": "web"}, ports=(ContainerPort(8080, "TCP", "http"),))
    deny = cnp(
        "ports",
        subject={"namespaces": ns_is("x")},
        ingress=[
            {
                "action": "Deny",
                "from": FROM_ALL,
                "protocols": [
                    {"destinationNamedPort": "http"},
                    {"udp": {"destinationPort": {"range": {"start": 50, "end": 60}}}},
                    {"sctp": {"destinationPort": {"number": 9}}},
                ],
            }
        ],
    )
    c = cluster([*PODS, web2], cluster_policies=[deny])
    assert not ok(c, Y_CLIENT, WEB, 80) and ok(c, Y_CLIENT, WEB, 8080)
    assert not ok(c, Y_CLIENT, web2, 8080) and ok(c, Y_CLIENT, web2, 80)
    assert not ok(c, Y_CLIENT, WEB, 53, "udp") and ok(c, Y_CLIENT, WEB, 61, "udp") and ok(c, Y_CLIENT, WEB, 9, "tcp")
    assert not ok(c, Y_CLIENT, WEB, 9, "sctp")
    d = translate(c)
    named = sorted(s.meaning for s in d.sets.values() if "namedport" in s.meaning)
    assert named == [f"namedport:http/{p} (closing copy)" for p in ("SCTP", "TCP", "UDP")]


def test_unsupported_peers_fail_closed_and_are_reported() -> None:
    accept = cnp(
        "accept-dns",
        priority=1,
        subject={"namespaces": ns_is("x")},
        egress=[{"action": "Accept", "to": [{"domainNames": ["example.com"]}, {"networks": ["192.0.2.0/24"]}]}],
    )
    deny = cnp(
        "deny-dns",
        priority=2,
        subject={"namespaces": ns_is("x")},
        egress=[
            {
                "action": "Deny",
                "to": [{"domainNames": ["example.com"]}],
                "protocols": [{"tcp": {"destinationPort": {"number": 443}}}],
            }
        ],
    )
    np_deny = policy("x", "no-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    c = cluster(PODS, [np_deny], cluster_policies=[accept])
    assert not ok(c, CLIENT, OUTSIDE)  # the Accept rule matches nothing, not even its networks peer
    c = cluster(PODS, cluster_policies=[accept, deny])
    assert not ok(c, CLIENT, OUTSIDE) and not ok(c, CLIENT, Y_CLIENT, 53, "udp") and ok(c, Y_CLIENT, CLIENT)
    reasons = dict(translate(c).unenforceable)
    assert (
        reasons["cnp:accept-dns"] == "spec.egress[0]: domainNames is not supported: this Accept rule matches no traffic"
    )
    assert "denies all egress traffic of the subject (ports ignored)" in reasons["cnp:deny-dns"]
    passing = cnp(
        "pass-unknown", subject=WEB_ONLY, ingress=[{"action": "Pass", "from": [{"serviceAccounts": {"name": "a"}}]}]
    )
    # A Pass rule that fails closed is a "Deny all" rule (the API's words), never a Pass of everything:
    # the NetworkPolicy that admits clients is never reached.
    c = cluster(PODS, [allow_web_from("client")], cluster_policies=[passing])
    assert not ok(c, Y_CLIENT, WEB) and not ok(c, CLIENT, WEB) and ok(c, WEB, Y_CLIENT)
    assert ok(cluster(PODS, cluster_policies=[passing]), Y_CLIENT, CLIENT)  # not its subject
    assert dict(translate(c).unenforceable)["cnp:pass-unknown"].endswith("denies all ingress traffic of the subject "
                                                                          "(ports ignored)")


# ---- what the enforcer relies on -------------------------------------------------------------------
def test_each_set_a_cluster_policy_uses_has_one_direction_of_effect() -> None:
    """Deny peers and the subject gate use closing copies, Pass rules pass copies, so the
    enforcer can order member changes: a set never both opens on add and on delete unless it
    is a Pass copy."""
    policies = [
        cnp(
            "a",
            subject=WEB_ONLY,
            ingress=[
                {
                    "action": "Accept",
                    "from": [
                        {
                            "pods": {
                                "namespaceSelector": {},
                                "podSelector": {
                                    "matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]
                                },
                            }
                        }
                    ],
                },
                {
                    "action": "Deny",
                    "from": [{"namespaces": ns_is("y")}],
                    "protocols": [{"destinationNamedPort": "http"}],
                },
                {"action": "Pass", "from": [{"namespaces": ns_is("x")}]},
            ],
        ),
        cnp(
            "b",
            "Baseline",
            subject={"namespaces": ns_is("x", "y")},
            egress=[
                {"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "w"}}}]},
                {"action": "Accept", "to": [{"pods": {"namespaceSelector": ns_is("y"), "podSelector": {}}}]},
            ],
        ),
    ]
    d = translate(cluster(PODS, [allow_web_from("client")], cluster_policies=policies))
    kernel = _Kernel(
        sets={n: (s.kind, s.members) for n, s in d.sets.items()},
        chains={c.name: tuple(spec_fingerprint(r) for r in c.rules) for c in d.chains.values()},
    )
    verbs = _opening_verbs(kernel)
    meaning = {n: s.meaning for n, s in d.sets.items()}
    tags = {
        n: (
            "pass"
            if meaning[n].endswith(f"({PASSING} copy)")
            else "closing"
            if meaning[n].endswith(f"({CLOSING} copy)")
            else ""
        )
        for n in verbs
    }
    assert {n for n, v in verbs.items() if len(v) == 2} == {n for n, t in tags.items() if t == "pass"} != set()
    assert all(verbs[n] == {"del"} for n, t in tags.items() if t == "closing")
    # Plain sets open on add (shared with NetworkPolicy's allow rules), but for isolated:<direction>.
    assert all(verbs[n] == {"add"} for n, t in tags.items() if t == "" and not meaning[n].startswith("isolated:"))
    assert {t for t in tags.values()} == {"", "closing", "pass"}


def test_closed_form_keeps_only_the_first_deny_or_pass_as_a_deny_of_everything() -> None:
    p = cnp(
        "p",
        subject=WEB_ONLY,
        ingress=[
            {"action": "Accept", "from": [{"namespaces": ns_is("y")}]},
            {"action": "Pass", "from": [{"namespaces": ns_is("x")}]},
            {"action": "Deny", "from": FROM_ALL},
        ],
        egress=[{"action": "Accept", "to": FROM_ALL}],
    )
    c = cluster(PODS, cluster_policies=[p])
    d = translate(c)
    closed = closed_form(d, "cnp:p")
    ingress, egress = (closed.policy_chains[n] for n in d.chains_of_policy["cnp:p"])
    assert [r.args for r in ingress.rules] == [("-j", "DROP")] and egress.rules == ()
    assert "fails closed (Deny all)" in ingress.rules[0].comment


def test_counts_per_tier_and_configurable_pass_mark() -> None:
    d = translate(
        cluster(
            PODS,
            cluster_policies=[
                cnp("a", ingress=[{"action": "Deny", "from": FROM_ALL}]),
                cnp("b", "Baseline", egress=[{"action": "Deny", "to": FROM_ALL}]),
                cnp("c", "Baseline"),
            ],
        )
    )
    got = counts(d)
    assert got["cluster_policies_admin"] == 1 and got["cluster_policies_baseline"] == 2
    assert got["cluster_policy_rules_admin"] == 4 and got["cluster_policy_rules_baseline"] == 4  # tier chain 3 + 1 rule
    d = translate(
        cluster(PODS, cluster_policies=[cnp("a", ingress=[{"action": "Pass", "from": FROM_ALL}])]),
        marks=Marks(cnp_pass=0x400),
    )
    text = " ".join(" ".join(r.args) for c in d.chains.values() for r in c.rules)
    assert "0x0/0x2400" in text and "0x400/0x400" in text and "0x800" not in text
    assert DataplaneConfig(pass_mark=0x400).marks.cnp_pass == 0x400
    for bad in (0x2000, 0x300):
        with pytest.raises(ValueError):
            DataplaneConfig(pass_mark=bad)


# ---- cross-checks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(30))
def test_random_clusters_agree_with_a_direct_reading_of_the_semantics(seed: int) -> None:
    """The iptables translation through the debug evaluator (the nftables one is checked the
    same way on the table the kernel lists: test_kernel_cnp.py)."""
    from tests.dataplane.cnp_oracle import allowed, random_cluster

    c, probes = random_cluster(seed)
    view = kernel_view(c)
    for src in probes:
        for dst in probes:
            for port, proto in PROBE_PORTS:
                want = allowed(c, src, dst, PortSpec(port, proto))
                got = verdict(c, src, dst, port, proto.lower(), view)
                assert got == want, f"{src} -> {dst}:{port}/{proto}: rules say {got}, semantics say {want}"


@pytest.mark.parametrize("seed", range(10))
def test_translation_with_a_reused_index_equals_a_fresh_one(seed: int) -> None:
    """CNP renderings and node sets are cached in the index: dropping and re-adding policies,
    relabelling nodes and changing pods must give exactly what a fresh translation gives."""
    import random

    from npm.dataplane.index import ClusterIndex
    from tests.dataplane.cnp_oracle import random_cluster

    c, _ = random_cluster(seed)
    index = ClusterIndex(c)
    translate(c, index=index)
    rng = random.Random(seed)
    for _ in range(4):
        variant = replace(
            c,
            cluster_policies=tuple(p for p in c.cluster_policies if rng.random() < 0.6),
            nodes=tuple(replace(n, labels=Labels({"app": rng.choice("xyz")})) for n in c.nodes),
            pods=tuple(p for p in c.pods if rng.random() < 0.8),
        )
        assert translate(variant, index=index) == translate(variant)
    assert cnp_key("x") == "cnp:x"


# ---- the command line ------------------------------------------------------------------------------
MANIFESTS = """
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: x, labels: {app: web}}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.1.0.2}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: y}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.1.0.4}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: deny-y}
spec:
  tier: Admin
  priority: 3
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: x}}}
  ingress: [{name: no-y, action: Deny, from: [{namespaces: {matchLabels: {kubernetes.io/metadata.name: y}}}]}]
"""


def test_gettuples_says_which_tier_and_rule_decided(tmp_path, capsys) -> None:
    import json

    from kube.load import load_paths
    from npm.cli.commands import main
    from npm.dataplane.debug import desired_as_saved

    (tmp_path / "m.yaml").write_text(MANIFESTS)
    ipt, ips = desired_as_saved(translate(load_paths([str(tmp_path / "m.yaml")], allocate_ips=False).cluster))
    (tmp_path / "ipt").write_text(ipt)
    (tmp_path / "sets").write_text(ips)
    args = ["debug", "gettuples", "-i", str(tmp_path / "ipt"), "-c", str(tmp_path / "sets"), "-f", str(tmp_path)]
    assert main([*args, "-s", "y/client", "-d", "x/web", "-o", "text"]) == 0
    out = capsys.readouterr().out
    assert "10.1.0.4 -> 10.1.0.2 80/TCP (assumed: no --port given): DROP" in out
    assert "decided by: Admin: cnp:deny-y Admin ingress[0] 'no-y' from[0] protocols[any] Deny (DROP)" in out
    assert f"{names.CHAIN_ADMIN_INGRESS}#2 -> " in out and "[Admin] cnp:deny-y ingress rules" in out
    assert main([*args, "-s", "x/web", "-d", "y/client"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "ACCEPT" and doc["decided_by"] == []  # no tier decided: allowed by default


def test_apply_counts_cluster_policies_as_used_input(tmp_path) -> None:
    import subprocess
    import sys
    from pathlib import Path

    bad_np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\nspec: 3\n"
    (tmp_path / "m.yaml").write_text(MANIFESTS + "---\n" + bad_np)
    root = Path(__file__).resolve().parents[2]
    res = subprocess.run(
        [sys.executable, "-m", "npm.cli", "apply", "-f", str(tmp_path), "--node-name", "n1"],
        capture_output=True,
        text=True,
        cwd=root,
    )
    assert res.returncode == 2  # the invalid policy: refused before any kernel work
    assert "1 ClusterNetworkPolicy" in res.stderr and "not yet evaluated" not in res.stderr


def test_cluster_policies_are_read_back_from_a_saved_table_as_translated() -> None:
    """A restarting enforcer finds each CNP and its chains in the kernel (markers and gates)."""
    from npm.dataplane.debug import desired_as_saved
    from npm.dataplane.enforcer import _policies_in
    from npm.dataplane.iptables import parse_save

    both = cnp("both", ingress=[{"action": "Deny", "from": FROM_ALL}], egress=[{"action": "Deny", "to": FROM_ALL}])
    d = translate(cluster(PODS, [allow_web_from("client")], cluster_policies=[both, cnp("empty", "Baseline")]))
    table = parse_save(desired_as_saved(d)[0])["filter"]
    found = _policies_in(table)
    assert {k: set(v) for k, v in found.items()} == {k: set(v) for k, v in d.chains_of_policy.items()}
    assert found["cnp:empty"] == () and len(found["cnp:both"]) == 2
