"""The engine's ClusterNetworkPolicy tiers agree with the scalar reference on random clusters."""

from __future__ import annotations

import numpy as np
import pytest

from simulator import semantics
from simulator.engine import Simulator
from simulator.explain import explain
from tests.simulator.cnp_gen import EXTERNAL, PORTS, random_cnp_cluster

SEEDS = 300


@pytest.mark.parametrize("block", range(10))
def test_engine_with_cluster_network_policies_equals_reference(block: int) -> None:
    for seed in range(block, SEEDS, 10):
        cluster = random_cnp_cluster(seed)
        assert cluster.cluster_policies
        sim = Simulator(cluster)
        matrix = sim.matrix(PORTS)
        pods = cluster.pods
        for spec in PORTS:
            grid = matrix.allowed[spec]
            expected = np.array([[semantics.allowed(cluster, s, d, spec) for d in pods] for s in pods], dtype=bool)
            bad = np.argwhere(grid != expected.reshape(grid.shape))
            assert not len(bad), (seed, str(spec), [(pods[i].key, pods[j].key) for i, j in bad[:3]])
            assert sim.summary([spec]).ports[0].allowed == int(np.count_nonzero(grid))
            for ip in EXTERNAL:
                ext = semantics.resolve(cluster, ip)
                into, out = sim.external(ip, spec)
                for p in pods:
                    c = int(sim.classes.pod_class[sim.classes.pod_index[p.key]])
                    assert out[c] == semantics.allowed(cluster, p, ext, spec) or bool(
                        semantics.always_allowed(cluster, p, ext)), (seed, p.key, ip, str(spec))
                    assert into[c] == semantics.allowed(cluster, ext, p, spec) or bool(
                        semantics.always_allowed(cluster, ext, p)), (seed, ip, p.key, str(spec))
                    assert sim.allowed(p, ip, spec) == semantics.allowed(cluster, p, ext, spec)


@pytest.mark.parametrize("seed", range(0, SEEDS, 30))
def test_explain_agrees_with_the_engine_with_cluster_network_policies(seed: int) -> None:
    cluster = random_cnp_cluster(seed)
    sim = Simulator(cluster)
    for spec in PORTS[:3]:
        for s in cluster.pods:
            for d in cluster.pods:
                assert explain(sim, s, d, spec).allowed == sim.allowed(s, d, spec), (seed, s.key, d.key)


@pytest.mark.parametrize("seed", range(0, SEEDS, 15))
def test_namespace_scoped_external_verdicts_equal_the_full_ones(seed: int) -> None:
    cluster = random_cnp_cluster(seed)
    sim = Simulator(cluster)
    names = ["ns2", "ns0"]
    cols = sim.namespace_classes(names)
    for spec in PORTS[:2]:
        for ip in EXTERNAL:
            full_in, full_out = sim.external(ip, spec)
            part_in, part_out = sim.external(ip, spec, names)
            assert np.array_equal(full_in[cols], part_in) and np.array_equal(full_out[cols], part_out)
