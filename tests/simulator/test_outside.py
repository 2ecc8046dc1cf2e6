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
