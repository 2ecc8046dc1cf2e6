"""The nftables evaluator on small listed tables: sets, intervals, concatenations, verdict
maps, jump/goto/return, ct state, protocol dependencies, and what it refuses to guess."""

from __future__ import annotations

from pathlib import Path

import pytest

from npm.cli.commands import main
from npm.dataplane.debug import Packet
from npm.dataplane.nft_eval import evaluate, render_rule
from tests.dataplane.nft_json import (
    ACCEPT,
    DROP,
    NAMED_PORT_KEY,
    RETURN,
    chain,
    document,
    dport,
    goto,
    ip,
    jump,
    match,
    nft_map,
    nft_set,
    prefix,
    rule,
    table,
    vmap,
)

FORWARD_DROP = chain("forward", hook="forward", policy="drop")
FORWARD = chain("forward", hook="forward")


def verdict(t, src: str, dst: str = "10.9.0.1", proto: str = "tcp", port: int = 80) -> str:  # type: ignore[no-untyped-def]
    return evaluate(t, Packet(src, dst, proto, port)).verdict


def test_an_interval_set_holds_each_prefix_and_range_to_its_last_address_and_nothing_next_to_it() -> None:
    t = table(nft_set("s", [prefix("10.0.0.0", 25), {"range": ["10.0.1.5", "10.0.1.9"]}, "10.0.2.1"], interval=True),
              FORWARD_DROP, rule("forward", ip("saddr", "@s"), ACCEPT))
    inside = ["10.0.0.0", "10.0.0.127", "10.0.1.5", "10.0.1.9", "10.0.2.1"]
    outside = ["9.255.255.255", "10.0.0.128", "10.0.1.4", "10.0.1.10", "10.0.2.0", "10.0.2.2"]
    assert [verdict(t, a) for a in inside] == ["accept"] * len(inside)
    assert [verdict(t, a) for a in outside] == ["drop"] * len(outside)


def test_a_concatenated_set_matches_address_protocol_and_port_together() -> None:
    elements = [{"concat": ["10.9.0.1", "tcp", 80]}, {"concat": ["10.9.0.2", "udp", 53]}]
    t = table(nft_set("np", elements, key=["ipv4_addr", "inet_proto", "inet_service"]), FORWARD_DROP,
              rule("forward", match({"concat": NAMED_PORT_KEY}, "@np"), ACCEPT))
    cases = {("10.9.0.1", "tcp", 80): "accept", ("10.9.0.1", "tcp", 81): "drop", ("10.9.0.1", "udp", 80): "drop",
             ("10.9.0.2", "udp", 53): "accept", ("10.9.0.2", "tcp", 53): "drop", ("10.9.0.3", "tcp", 80): "drop"}
    assert {k: verdict(t, "10.0.0.1", *k) for k in cases} == cases


def test_a_verdict_map_dispatches_and_goto_jump_and_return_resume_where_nftables_does() -> None:
    t = table(
        nft_map("m", [["10.0.0.1", goto("g")], ["10.0.0.2", DROP], ["10.0.0.3", jump("j")],
                      [prefix("10.0.4.0", 24), goto("b")]]),
        FORWARD, chain("g"), chain("p"), chain("j"), chain("a"), chain("b"),
        rule("forward", match({"ct": {"key": "state"}}, ["established", "related"], "in"), ACCEPT),
        rule("forward", vmap("saddr", "m")),
        rule("forward", ip("saddr", "10.0.0.5"), jump("a")),
        rule("forward", ip("daddr", "10.9.9.9"), DROP, comment="to the sink"),
        rule("g", jump("p")), rule("g", DROP),
        rule("p", dport("tcp", 80), ACCEPT),
        rule("j", RETURN),
        rule("a", goto("b")),
    )
    ok = evaluate(t, Packet("10.0.0.1", "10.1.0.1", "tcp", 80))
    assert ok.verdict == "accept"
    assert [(h.chain, h.index, h.target) for h in ok.hits] == [
        ("forward", 2, "vmap @m: goto g"), ("g", 1, "jump p"), ("p", 1, "accept")]
    closed = evaluate(t, Packet("10.0.0.1", "10.1.0.1", "tcp", 81))  # p ends: back in g, which drops
    assert (closed.verdict, [(h.chain, h.index) for h in closed.hits]) == ("drop", [("forward", 2), ("g", 1), ("g", 2)])
    assert verdict(t, "10.0.0.2") == "drop"
    # a jump that returns resumes after the vmap rule: the sink rule still applies
    assert (verdict(t, "10.0.0.3", "10.1.0.1"), verdict(t, "10.0.0.3", "10.9.9.9")) == ("accept", "drop")
    # goto b from a: b's end returns to forward (the caller of the jump to a), not to a
    sink = evaluate(t, Packet("10.0.0.5", "10.9.9.9"))
    assert [(h.chain, h.comment or h.target) for h in sink.hits] == [
        ("forward", "jump a"), ("a", "goto b"), ("forward", "to the sink")]
    # goto from the base chain's map: b's end is the end of the base chain (its policy)
    assert (verdict(t, "10.0.4.7", "10.9.9.9"), verdict(t, "10.0.5.7", "10.9.9.9")) == ("accept", "drop")


def test_ct_state_established_or_related_never_matches_a_new_packet() -> None:
    ct = {"ct": {"key": "state"}}
    t = table(FORWARD, rule("forward", match(ct, ["established", "related"], "in"), DROP),
              rule("forward", match(ct, "established"), DROP), rule("forward", ip("saddr", "10.0.0.1"), jump("c")),
              chain("c"), rule("c", match(ct, "new"), DROP))
    assert (verdict(t, "10.0.0.2"), verdict(t, "10.0.0.1")) == ("accept", "drop")
    negated = table(FORWARD, rule("forward", match(ct, "established", "!="), DROP))
    assert verdict(negated, "10.0.0.2") == "drop"


def test_a_port_match_carries_its_protocol_whatever_the_operator() -> None:
    t = table(FORWARD, rule("forward", dport("tcp", 80, "!="), DROP),
              rule("forward", dport("udp", {"set": [53, {"range": [8000, 8080]}]}), DROP),
              rule("forward", dport("th", 9000), DROP))
    assert [verdict(t, "10.0.0.1", "10.9.0.1", p, n) for p, n in
            [("tcp", 80), ("tcp", 53), ("udp", 5353), ("udp", 53), ("udp", 8080), ("udp", 8081), ("sctp", 9000)]
            ] == ["accept", "drop", "accept", "drop", "drop", "accept", "drop"]
    l4 = table(FORWARD_DROP, rule("forward", match({"meta": {"key": "l4proto"}}, "sctp"), ACCEPT))
    assert (verdict(l4, "10.0.0.1", proto="sctp"), verdict(l4, "10.0.0.1", proto="tcp")) == ("accept", "drop")
    # an ip match never matches an IPv6 packet (nft's implicit nfproto dependency)
    v4 = table(FORWARD, rule("forward", ip("saddr", prefix("0.0.0.0", 0)), DROP))
    assert (verdict(v4, "10.0.0.1"), verdict(v4, "fd00::1", "fd00::2")) == ("drop", "accept")


def test_base_chains_run_by_priority_an_accept_goes_on_and_a_drop_is_final() -> None:
    t = table(chain("late", hook="forward", prio=10), chain("early", hook="forward", prio=-10),
              rule("early", ACCEPT), rule("late", ip("saddr", "10.0.0.1"), DROP))
    trace = evaluate(t, Packet("10.0.0.1", "10.9.0.1"))
    assert trace.verdict == "drop" and [h.chain for h in trace.hits] == ["early", "late"]
    assert verdict(t, "10.0.0.2") == "accept"
    assert verdict(table(), "10.0.0.1") == "accept"  # no table of ours: nothing of ours stops it


@pytest.mark.parametrize("expr, named", [
    (match({"meta": {"key": "iifname"}}, "eth0"), "iifname"),
    (dport("tcp", "http"), "'http'"),
    (ip("saddr", "@missing"), "@missing"),
    ({"limit": {"rate": 10, "per": "second"}}, "limit"),
])
def test_an_expression_it_cannot_decide_makes_the_verdict_undecided_and_is_named(expr, named) -> None:  # type: ignore[no-untyped-def]
    t = table(FORWARD, rule("forward", ip("saddr", "10.0.0.7"), DROP), rule("forward", expr, DROP))
    trace = evaluate(t, Packet("10.0.0.1", "10.9.0.1"))
    assert trace.verdict == "" and len(trace.undecided) == 1
    assert trace.undecided[0].startswith("forward#2 (handle 4): cannot decide") and named in trace.undecided[0]
    assert verdict(t, "10.0.0.7") == "drop"  # decided before the walk reaches it


def test_an_undecided_match_is_no_obstacle_when_another_match_of_the_rule_fails() -> None:
    iif = match({"meta": {"key": "iifname"}}, "eth0")
    t = table(FORWARD, rule("forward", iif, ip("saddr", "10.0.0.7"), {"counter": {"packets": 0, "bytes": 0}}, DROP))
    assert verdict(t, "10.0.0.1") == "accept"
    assert evaluate(t, Packet("10.0.0.7", "10.9.0.1")).verdict == ""


def test_a_base_chain_on_another_hook_forwarded_packets_cross_is_not_guessed_at() -> None:
    t = table(FORWARD, chain("pre", hook="prerouting"), rule("pre", ip("saddr", "10.0.0.1"), DROP))
    trace = evaluate(t, Packet("10.0.0.2", "10.9.0.1"))
    assert trace.verdict == "" and "base chain pre on hook prerouting" in trace.undecided[0]
    assert verdict(table(FORWARD, chain("in", hook="input"), rule("in", DROP)), "10.0.0.2") == "accept"


def test_rules_render_close_to_nft_list() -> None:
    t = table(nft_set("np", [], key=["ipv4_addr", "inet_proto", "inet_service"]), FORWARD,
              rule("forward", ip("saddr", "@s", "!="), match({"concat": NAMED_PORT_KEY}, "@np"), goto("ingress")),
              rule("forward", ip("daddr", prefix("10.0.0.0", 8)), dport("tcp", {"range": [80, 90]}), ACCEPT))
    assert [render_rule(r) for r in t.chains["forward"].rules] == [
        "ip saddr != @s ip daddr . meta l4proto . th dport @np goto ingress",
        "ip daddr 10.0.0.0/8 tcp dport 80-90 accept"]


def test_gettuples_walks_a_saved_nftables_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    saved = tmp_path / "table.json"
    saved.write_text(document(
        nft_map("m", [["10.0.0.2", goto("g")]]), FORWARD, chain("g"),
        rule("forward", vmap("daddr", "m"), comment="ingress dispatch"),
        rule("g", ip("saddr", "10.0.0.1"), dport("tcp", 80), ACCEPT, comment="x/p ingress[0]"),
        rule("g", DROP, comment="isolated")))
    base = ["debug", "gettuples", "--dataplane", "nftables", "-i", str(saved), "-d", "10.0.0.2", "-o", "text"]
    assert main([*base, "-s", "10.0.0.1"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "10.0.0.1 -> 10.0.0.2 80/TCP (assumed: no --port given): accept",
        "  forward#1 -> vmap @m: goto g  ingress dispatch",
        "  g#1 -> accept  x/p ingress[0]"]
    assert main([*base, "-s", "10.0.0.3", "--port", "80/UDP"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "10.0.0.3 -> 10.0.0.2 80/UDP: drop"
    saved.write_text("[]")
    assert main([*base, "-s", "10.0.0.1"]) == 2
    assert "not the output of `nft -j list table inet azure-npm`" in capsys.readouterr().err
