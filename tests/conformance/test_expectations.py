"""Written expectations: rules in order, truth tables, per-port maps, globs."""

from __future__ import annotations

import pytest

from conformance.expect import ExpectError, parse_expect, parse_table, peer_matches
from kube.model import PortSpec

TCP80, TCP81 = PortSpec(80), PortSpec(81)


@pytest.mark.parametrize(
    ("pattern", "key", "hit"),
    [
        ("*", "x/a", True),
        ("x/*", "x/a", True),
        ("x", "x/a", True),
        ("y/*", "x/a", False),
        ("*/a", "y/a", True),
        ("*/a", "y/b", False),
        ("x/web*", "x/web80", True),
        ("x/web*", "x/db", False),
    ],
)
def test_peer_patterns(pattern, key, hit):
    assert peer_matches(pattern, key) is hit


def test_rules_apply_in_order_over_default_true():
    exp = parse_expect([{"from": "*", "to": "x/a", "allowed": False}, {"from": "x/b", "to": "x/a", "allowed": True}])
    e = exp.for_port(TCP80, [TCP80])
    assert e.verdict("y/c", "x/a") is False
    assert e.verdict("x/b", "x/a") is True
    assert e.verdict("y/c", "y/a") is True


def test_default_false():
    e = parse_expect({"default": False, "rules": [{"from": "x/*", "to": "*", "allowed": True}]}).for_port(TCP80, ())
    assert e.verdict("x/a", "y/b") is True and e.verdict("y/a", "x/b") is False


def test_per_port_map_and_portless_scope():
    exp = parse_expect({"80/TCP": [], "81/tcp": [{"from": "*", "to": "*", "allowed": False}]})
    assert exp.for_port(TCP80, [TCP80, TCP81]).verdict("x/a", "x/b") is True
    assert exp.for_port(TCP81, [TCP80, TCP81]).verdict("x/a", "x/b") is False
    assert exp.for_port(PortSpec(82), [TCP80]) is None
    portless = parse_expect([])
    assert portless.for_port(TCP81, [TCP80]) is None  # written for the step's own ports only
    assert portless.for_port(TCP80, [TCP80]) is not None


def test_truth_table_in_upstream_format():
    e = parse_table("-\tx/a\tx/b\nx/a\t.\tX\nx/b\t?\t.\n")
    assert e.verdict("x/a", "x/b") is False
    assert e.verdict("x/b", "x/a") is None  # '?' states nothing
    assert e.verdict("x/b", "x/b") is True


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("x/a x/b\n", "header line"),
        ("- x/a\nx/a Y\n", "is not '.', 'X' or '?'"),
        ([{"from": "x/a", "to": "bad pattern", "allowed": True}], "is not a peer"),
        ([{"from": "x/a", "allowed": True, "via": 1}], "unknown key"),
        ({"80/XYZ": []}, "not a port"),
        (5, "must be a truth table"),
    ],
)
def test_malformed_expectations(raw, message):
    with pytest.raises(ExpectError, match=message):
        parse_expect(raw)
