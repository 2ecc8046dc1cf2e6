"""The nftables translation, pure: interval arithmetic for ipBlock except, the dispatch maps
and their policy groups, set contents and types, the read-back fingerprints."""

from __future__ import annotations

import ipaddress
import itertools
import random

import pytest

from npm.dataplane.nft import NftPayload, parse_table, rule_fingerprint
from npm.dataplane.nft_enforcer import _without_allows
from npm.dataplane.nft_translate import (
    ADDR,
    MAP_EGRESS,
    MAP_INGRESS,
    NAMED_PORT,
    NftTranslator,
    cidr_difference,
)
from npm.dataplane.types import Failure
from tests.dataplane.helpers import cluster, pod, policy, web_ports
from tests.dataplane.randomized import random_cluster
from tests.dataplane.test_translate_incremental import _mutate

N = ipaddress.IPv4Network


def test_cidr_difference_holds_exactly_the_addresses_outside_every_except() -> None:
    net = N("10.0.0.0/8")
    excepts = [N("10.1.0.0/16"), N("10.1.2.0/24"), N("10.200.3.4/32"), N("11.0.0.0/8"), N("10.128.0.0/9")]
    pieces = cidr_difference(net, excepts)
    assert pieces == sorted(pieces)
    assert all(not a.overlaps(b) for a, b in itertools.pairwise(pieces))  # an interval set refuses overlaps
    rng = random.Random(7)
    samples = [ipaddress.IPv4Address(rng.randrange(0x0A000000, 0x0C000000)) for _ in range(3000)]
    samples += [e.network_address for e in excepts] + [e.broadcast_address for e in excepts]
    for addr in samples:
        expected = addr in net and not any(addr in e for e in excepts)
        assert any(addr in p for p in pieces) == expected, addr


def test_cidr_difference_of_everything_and_of_nothing_left() -> None:
    assert cidr_difference(N("10.0.0.0/24"), [N("10.0.0.0/16")]) == []
    assert cidr_difference(N("0.0.0.0/0"), []) == [N("0.0.0.0/0")]
    whole = cidr_difference(N("0.0.0.0/0"), [N("10.0.0.0/8")])
    assert sum(p.num_addresses for p in whole) == 2**32 - 2**24


def _pods():
    return [
        pod("x/web", "10.1.0.2", {"app": "web"}, ports=web_ports()),
        pod("x/web2", "10.1.0.5", {"app": "web"}, ports=web_ports()),
        pod("x/db", "10.1.0.6", {"app": "db"}),
        pod("x/client", "10.1.0.3", {"app": "client"}),
        pod("y/client", "10.1.0.4", {"app": "client"}),
    ]


def test_dispatch_map_sends_each_isolated_pod_to_its_policy_group_or_to_drop() -> None:
    allow_web = policy("x", "allow-web", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]}],
    })
    deny_all = policy("x", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]})
    state = NftTranslator().translate(cluster(_pods(), [allow_web, deny_all]))
    ingress = dict(e.split(" : ") for e in state.sets[MAP_INGRESS].elements)
    assert not state.sets[MAP_EGRESS].elements  # nobody is isolated for egress
    assert set(ingress) == {"10.1.0.2", "10.1.0.5", "10.1.0.6", "10.1.0.3"}  # namespace x only
    assert ingress["10.1.0.6"] == ingress["10.1.0.3"] == "drop"  # only deny-all selects them
    assert ingress["10.1.0.2"] == ingress["10.1.0.5"] != "drop"  # one group for the same policies
    group = state.chains[ingress["10.1.0.2"].removeprefix("goto ")]
    (web_chain,) = state.chains_of_policy["x/allow-web"]
    assert [r.verdict for r in group.rules] == [f"jump {web_chain}", "drop"]
    assert state.chains_of_policy["x/deny-all"] == ()


def test_sets_hold_addresses_and_named_ports_as_concatenations() -> None:
    p = policy("x", "p", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}], "ports": [{"port": "http"}]}],
    })
    c = cluster(_pods(), [p], ns_labels={"y": {"team": "a"}, "x": {"team": "b"}})
    state = NftTranslator().translate(c)
    by_meaning = {s.meaning: s for s in state.sets.values()}
    named = by_meaning["namedport:http/TCP"]
    assert named.type == NAMED_PORT and named.elements == {"10.1.0.2 . tcp . 80", "10.1.0.5 . tcp . 80"}
    team = by_meaning["nslabel:team=a"]  # a list of namespace sets, flattened into addresses
    assert team.type == ADDR and team.elements == {"10.1.0.4"}
    (chain,) = (state.chains[n] for n in state.chains_of_policy["x/p"])
    assert chain.rules[0].expr == (
        f"ip saddr @{team.name} ip daddr . meta l4proto . th dport @{named.name} accept"
    )


def test_ip_block_except_is_an_interval_set_and_ipv6_fails_closed() -> None:
    p = policy("x", "p", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16"]}},
                           {"ipBlock": {"cidr": "172.16.0.0/12"}},
                           {"ipBlock": {"cidr": "fd00::/64"}}]}],
    })
    state = NftTranslator().translate(cluster(_pods(), [p]))
    (chain,) = (state.chains[n] for n in state.chains_of_policy["x/p"])
    cidr = next(s for s in state.sets.values() if s.interval)
    assert cidr.elements == {str(n) for n in cidr_difference(N("10.0.0.0/8"), [N("10.1.0.0/16")])}
    assert [r.expr for r in chain.rules] == [
        f"ip daddr @{cidr.name} goto ingress",
        "ip daddr 172.16.0.0/12 goto ingress",
    ]  # the IPv6 peer allows nothing
    assert [k for k, _ in state.unenforceable] == ["x/p"]


def test_a_changed_policy_is_a_new_chain_and_its_pods_move_to_a_new_group() -> None:
    v1 = policy("x", "p", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 80}]}]})
    v2 = policy("x", "p", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 81}]}]})
    t = NftTranslator()
    a, b = t.translate(cluster(_pods(), [v1])), t.translate(cluster(_pods(), [v2]))
    assert a.chains_of_policy["x/p"] != b.chains_of_policy["x/p"]
    assert a.sets[MAP_INGRESS].elements != b.sets[MAP_INGRESS].elements


def test_failure_on_a_policy_rule_maps_to_the_policy_and_drops_only_its_allows() -> None:
    allow_web = policy("x", "allow-web", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
    })
    allow_db = policy("x", "allow-db", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{}]})
    state = NftTranslator().translate(cluster(_pods(), [allow_web, allow_db]))
    payload = NftPayload()
    for chain in state.chains.values():
        for rule in chain.rules:
            payload.rule(chain.name, rule)
    line = next(i for i, text in enumerate(payload.lines, 1) if "allow-web ingress[0]" in text)
    msg = f"/dev/stdin:{line}:1-20: Error: Could not process rule: No such file or directory"
    failure = payload.locate(Failure("nft", msg, 1))
    assert failure.policy == "x/allow-web" and failure.line == line
    closed = _without_allows(state, "x/allow-web")
    assert not set(state.chains_of_policy["x/allow-web"]) & set(closed.chains)
    assert set(state.chains_of_policy["x/allow-db"]) <= set(closed.chains)
    assert closed.sets[MAP_INGRESS] == state.sets[MAP_INGRESS]  # its pods stay isolated (their group drops)
    web_group = next(e for e in closed.sets[MAP_INGRESS].elements if e.startswith("10.1.0.2 "))
    assert [r.verdict for r in closed.chains[web_group.split("goto ")[1]].rules] == ["drop"]


def test_read_back_rules_have_the_fingerprint_of_the_rules_we_wrote() -> None:
    doc = {"nftables": [
        {"table": {"family": "inet", "name": "azure-npm"}},
        {"set": {"name": "s", "type": ["ipv4_addr", "inet_proto", "inet_service"], "comment": "namedport:http/TCP",
                 "elem": [{"concat": ["10.0.0.1", "tcp", 80]}]}},
        {"set": {"name": "c", "type": "ipv4_addr", "flags": ["interval"],
                 "elem": [{"prefix": {"addr": "10.0.0.0", "len": 9}}, "10.200.0.1"]}},
        {"map": {"name": "m", "type": "ipv4_addr", "map": "verdict",
                 "elem": [["10.0.0.1", {"goto": {"target": "g"}}], ["10.0.0.2", {"drop": None}]]}},
        {"chain": {"name": "forward", "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}},
        {"rule": {"chain": "forward", "comment": "x/p ingress[0] from[0] ports[0]", "expr": [
            {"match": {"op": "!=", "left": {"payload": {"field": "saddr"}}, "right": "@c"}},
            {"match": {"op": "==", "left": {"concat": []}, "right": "@s"}},
            {"goto": {"target": "ingress"}}]}},
    ]}
    import json

    table = parse_table(json.dumps(doc))
    assert table.sets["s"] == (NAMED_PORT, frozenset({"10.0.0.1 . tcp . 80"}))
    assert table.sets["c"] == ("ipv4_addr interval", frozenset({"10.0.0.0/9", "10.200.0.1"}))
    assert table.sets["m"][1] == {"10.0.0.1 : goto g", "10.0.0.2 : drop"}
    assert table.chains["forward"][0] == "filter forward 0 accept"
    rule = doc["nftables"][-1]["rule"]
    assert rule_fingerprint(rule) == ("x/p ingress[0] from[0] ports[0]", "goto ingress", ((False, "s"), (True, "c")))


@pytest.mark.parametrize("seed", range(10))
def test_incremental_nft_translation_equals_a_fresh_one(seed: int) -> None:
    # Pods added, removed, relabelled, readdressed (shared addresses too), namespaces
    # relabelled, policies changed: the carried caches never change the result.
    rng = random.Random(seed)
    current, _ = random_cluster(seed)
    carried = NftTranslator()
    assert carried.translate(current) == NftTranslator().translate(current)
    for step in range(6):
        donor, _ = random_cluster(1000 + seed * 10 + step)
        current = _mutate(current, donor, rng)
        assert carried.translate(current) == NftTranslator().translate(current), f"step {step}"
