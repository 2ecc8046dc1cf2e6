"""The nftables view: signatures tell apart exactly what the table can, edges of every range,
and verdicts with their trace (no kernel: small listed tables); ``verify --dataplane
nftables`` refusing input it cannot read."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from npm.cli.commands import main
from npm.verify.nft_view import NftView
from tests.dataplane.nft_json import (
    ACCEPT,
    DROP,
    NAMED_PORT_KEY,
    chain,
    goto,
    ip,
    match,
    nft_map,
    nft_set,
    prefix,
    rule,
    table,
    vmap,
)
from tests.verify.test_verify_kernel import OBJECTS

VIEW = NftView(table(
    nft_set("ns-x", ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    nft_set("cidr", [prefix("192.0.2.0", 25), prefix("192.0.2.192", 26)], interval=True),
    nft_set("np", [{"concat": ["10.0.0.1", "tcp", 80]}, {"concat": ["10.0.0.2", "tcp", 80]},
                   {"concat": ["10.0.0.3", "udp", 53]}], key=["ipv4_addr", "inet_proto", "inet_service"]),
    nft_map("dispatch", [["10.0.0.1", goto("g")], ["10.0.0.2", goto("g")], ["10.0.0.3", DROP]]),
    chain("forward", hook="forward"), chain("g"),
    rule("forward", vmap("daddr", "dispatch")),
    rule("g", ip("saddr", "@cidr"), ACCEPT, comment="x/p ingress[0] from[0]"),
    rule("g", ip("saddr", prefix("198.51.100.0", 24)), match({"concat": NAMED_PORT_KEY}, "@np"), ACCEPT),
    rule("g", DROP, comment="isolated"),
))


def test_addresses_in_the_same_sets_map_entries_and_literals_share_a_signature() -> None:
    sig = VIEW.signature
    assert sig("10.0.0.1") == sig("10.0.0.2")  # same set, same map verdict, same (proto, port) pairs
    assert sig("192.0.2.0") == sig("192.0.2.255")  # two elements of one interval set: one membership
    assert sig("198.51.100.1") == sig("198.51.100.254") != sig("192.0.2.1")
    assert sig("203.0.113.1") == sig("10.0.0.4") == ()


def test_a_signature_holds_map_verdicts_and_the_port_paired_with_the_address() -> None:
    # 10.0.0.3 is in the same address set, but drops in the map and has udp/53, not tcp/80
    one, three = VIEW.signature("10.0.0.1"), VIEW.signature("10.0.0.3")
    assert one != three
    assert [p for p in one if p[:2] == ("set", "dispatch")] == [("set", "dispatch", 0, (), "goto g")]
    assert [p for p in three if p[:2] == ("set", "np")] == [("set", "np", 0, ((17, 17), (53, 53)), "")]
    assert ("set", "cidr", 0, (), "") in VIEW.signature("192.0.2.200")
    assert ("set", "cidr", 0, (), "") not in VIEW.signature("192.0.2.150")


def test_edges_are_the_ends_of_every_range_and_their_neighbours() -> None:
    assert VIEW.edge_addresses() == [
        "192.0.1.255", "192.0.2.0", "192.0.2.127", "192.0.2.128",
        "192.0.2.191", "192.0.2.192", "192.0.2.255", "192.0.3.0",
        "198.51.99.255", "198.51.100.0", "198.51.100.255", "198.51.101.0"]


def test_verdicts_follow_the_table_and_name_the_rules_hit() -> None:
    allowed = VIEW.verdict("192.0.2.5", "10.0.0.1", "TCP", 80)
    assert allowed.allowed is True
    assert [(h.chain, h.index, h.comment or h.target) for h in allowed.trace.hits] == [
        ("forward", 1, "vmap @dispatch: goto g"), ("g", 1, "x/p ingress[0] from[0]")]
    assert VIEW.verdict("198.51.100.7", "10.0.0.2", "TCP", 80).allowed is True
    assert VIEW.verdict("198.51.100.7", "10.0.0.2", "UDP", 80).allowed is False
    assert VIEW.verdict("192.0.2.150", "10.0.0.1", "TCP", 80).allowed is False
    assert VIEW.verdict("192.0.2.5", "10.0.0.3", "TCP", 80).allowed is False
    assert VIEW.verdict("10.0.0.1", "203.0.113.9", "TCP", 80).allowed is True  # not isolated
    undecided = NftView(table(chain("forward", hook="forward"), rule("forward", {"queue": {"num": 1}})))
    v = undecided.verdict("10.0.0.1", "10.0.0.2", "TCP", 80)
    assert v.allowed is None and "queue" in v.trace.undecided[0]


def test_verify_nftables_with_unreadable_or_mismatched_input_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(OBJECTS))
    garbage = tmp_path / "garbage.json"
    garbage.write_text('{"not": "nft"}')
    nft = ["--dataplane", "nftables"]
    for args, says in (([*nft, "--nft-file", str(garbage)], "not the output of `nft -j list table inet azure-npm`"),
                       (["--nft-file", str(garbage)], "--nft-file is read with --dataplane nftables"),
                       ([*nft, "-i", "/dev/null", "-c", "/dev/null"], "give --nft-file"),
                       ([*nft, "--nft-file", str(tmp_path / "missing")], "cannot read")):
        assert main(["verify", "-f", str(path), "--node-name", "n1", *args]) == 2, args
        assert says in capsys.readouterr().err
