"""The benchmark generator is deterministic and its clusters evaluate like the reference."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from kube.model import PortSpec
from simulator import semantics
from simulator.engine import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from cluster_gen import generate, generate_objects


def test_generator_is_deterministic_by_seed() -> None:
    assert generate_objects(300, 60, seed=3) == generate_objects(300, 60, seed=3)
    assert generate_objects(300, 60, seed=3) != generate_objects(300, 60, seed=4)
    cluster = generate(300, 60, seed=3)
    assert len(cluster.pods) == 300 and len(cluster.policies) == 60


def test_generated_cluster_matches_reference_semantics() -> None:
    cluster = generate(150, 40, seed=1)
    sim = Simulator(cluster)
    assert sim.classes.count > 20  # label diversity gives non-trivial classes
    ports = [PortSpec(80), PortSpec(8080), PortSpec(53, "UDP"), PortSpec(9050)]
    matrix = sim.matrix(ports)
    pods = cluster.pods
    for spec in ports:
        grid = matrix.allowed[spec]
        expected = np.array([[semantics.allowed(cluster, s, d, spec) for d in pods] for s in pods])
        assert (grid == expected).all(), str(spec)
        assert sim.summary([spec]).ports[0].allowed == int(expected.sum())
