"""The realistic benchmark generator: deterministic, mostly open, diverse labels that policies
ignore, and its clusters evaluate like the reference (tiled paths included)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np

from kube.model import PortSpec
from simulator import semantics, verdicts
from simulator.classes import build_classes
from simulator.engine import Simulator

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from realistic_gen import BENCH_PORTS, generate, generate_objects, write_list


def test_realistic_generator_is_deterministic_by_seed() -> None:
    assert generate_objects(400, 80, seed=2) == generate_objects(400, 80, seed=2)
    assert generate_objects(400, 80, seed=2) != generate_objects(400, 80, seed=3)
    cluster = generate(400, 80, seed=2)
    assert len(cluster.pods) == 400 and len(cluster.policies) == 80


def test_realistic_clusters_are_mostly_open_and_compress_on_the_labels_policies_use() -> None:
    cluster = generate(2000, 300, seed=0)
    with_policy = {p.namespace for p in cluster.policies}
    pod_namespaces = {p.namespace for p in cluster.pods}
    assert pod_namespaces - with_policy  # some namespaces have no policy at all
    every_label = build_classes(cluster, label_keys=None).count
    assert every_label > 0.8 * len(cluster.pods)  # nearly every pod has its own label set
    assert Simulator(cluster).classes.count < every_label / 2


def test_realistic_cluster_matches_reference_semantics_in_tiny_tiles(monkeypatch) -> None:
    monkeypatch.setattr(verdicts, "TILE_BYTES", 64)
    cluster = generate(120, 40, seed=5)
    sim = Simulator(cluster)
    pods = cluster.pods
    for spec in (PortSpec.parse(p) for p in BENCH_PORTS):
        expected = np.array([[semantics.allowed(cluster, s, d, spec) for d in pods] for s in pods])
        assert (sim.matrix([spec]).allowed[spec] == expected).all(), str(spec)
        assert sim.summary([spec]).ports[0].allowed == int(expected.sum())


def test_written_list_loads_back_as_json() -> None:
    buf = io.StringIO()
    write_list(generate_objects(50, 10, seed=1), buf)
    doc = json.loads(buf.getvalue())
    assert doc["kind"] == "List" and len(doc["items"]) >= 60
