"""Outside addresses as blocks of one verdict, cut at every ipBlock boundary."""

from __future__ import annotations

import ipaddress
import random

from kube import manifests as m
from kube.manifests import cluster_of
from kube.model import PortSpec
from simulator.engine import Simulator
from simulator.outside import outside_blocks


def cluster(*peers: dict, pods: int = 3):  # type: ignore[no-untyped-def]
    objs = [m.namespace("x")] + [m.pod("x", f"p{i}", {"app": f"a{i}"}, ip=f"10.244.0.{i + 5}") for i in range(pods)]
    objs.append(m.policy("x", "p", {"podSelector": {"matchLabels": {"app": "a0"}}, "egress": [{"to": list(peers)}],
                                    "ingress": [{"from": list(peers)}]}))
    return cluster_of(objs)


def test_blocks_split_at_every_cidr_and_except_and_the_rest_is_the_world() -> None:
    c = cluster(
        {"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.244.0.0/16"]}}, {"ipBlock": {"cidr": "203.0.113.0/24"}}
    )
    blocks = outside_blocks([c])
    assert [b.world for b in blocks] == [False, False, True]
    ten, doc, world = blocks
    assert "10.244.0.0/16" not in ten.cidrs and "10.0.0.0/9" in ten.cidrs
    assert doc.cidrs == ("203.0.113.0/24",)
    assert "10.244.0.0/16" in world.cidrs  # excepted: treated as the rest of the world
    covered = sum(ipaddress.ip_network(c).num_addresses for b in blocks for c in b.cidrs)
    assert covered == 1 << 32  # the blocks partition the address space


def test_a_block_never_uses_a_pod_or_node_address_as_its_representative() -> None:
    c = cluster({"ipBlock": {"cidr": "10.244.0.4/30"}}, pods=3)  # 10.244.0.4-7: three are pods
    (block, _world) = outside_blocks([c])
    assert block.representative == "10.244.0.4"


def test_every_address_of_a_block_gets_the_verdict_of_its_representative() -> None:
    rng = random.Random(7)
    c = cluster({"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.1.0.0/16", "10.2.3.0/24"]}},
                {"ipBlock": {"cidr": "10.1.2.0/24"}},
                {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.9.9/32"]}})
    sim = Simulator(c)
    spec = PortSpec(80, "TCP")
    a0 = c.pod_by_key["x/p0"]
    for block in outside_blocks([c]):
        want = (sim.allowed(a0, block.representative, spec), sim.allowed(block.representative, a0, spec))
        for cidr in block.cidrs:
            net = ipaddress.ip_network(cidr)
            for _ in range(3):
                ip = str(net.network_address + rng.randrange(net.num_addresses))
                if ip in {p.ip for p in c.pods}:
                    continue
                assert (sim.allowed(a0, ip, spec), sim.allowed(ip, a0, spec)) == want, (block.name, ip)


def test_explain_takes_a_cidr_or_a_node_as_either_end() -> None:
    from simulator.explain import explain

    objs = [m.namespace("x"), m.node("n1", "172.18.0.2"),
            m.pod("x", "web", {"app": "web"}, ip="10.244.0.5", node="n1"),
            m.policy("x", "p", {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}]})]
    c = cluster_of(objs)
    spec = PortSpec(443, "TCP")
    out = explain(c, "x/web", "203.0.113.0/25", spec)
    assert out.allowed and out.dst == "203.0.113.0/25" and out.dst_kind == "external"
    assert not explain(c, "x/web", "198.51.100.0/24", spec).allowed
    node = explain(c, "node/n1", "x/web", spec)
    assert node.src == "node/n1" and node.src_kind == "node" and node.allowed  # its own node
    import pytest

    with pytest.raises(ValueError, match="spans 2 blocks"):
        explain(c, "x/web", "203.0.112.0/23", spec)
