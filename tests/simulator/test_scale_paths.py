"""The paths that keep the simulator flat at scale agree with the whole-matrix ones and with
the reference semantics: factored verdicts read in tiny tiles, pair counts without a class
matrix, streamed reach output, label-key class compression and the memory check."""

from __future__ import annotations

import io

import numpy as np
import pytest

from kube.manifests import cluster_of, namespace, pod, policy
from kube.model import PortSpec
from simulator import reach_stream, render, semantics, verdicts
from simulator.engine import NeedsRebuild, Simulator
from simulator.memory import TooLarge
from tests.sim_cli import run_npm_sim
from tests.simulator.test_engine_matches_reference import EXTERNAL, PORTS, random_cluster


@pytest.fixture
def tiny_tiles(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiles of a row or two, so that small clusters go through every tiling loop."""
    monkeypatch.setattr(verdicts, "TILE_BYTES", 16)
    monkeypatch.setattr(reach_stream, "TILE_BYTES", 3)


@pytest.mark.parametrize("seed", range(40))
def test_tiled_counts_and_pod_rows_equal_reference_semantics(seed: int, tiny_tiles: None) -> None:
    cluster = random_cluster(seed)
    sim = Simulator(cluster)
    n = len(cluster.pods)
    for spec in PORTS:
        expected = np.array(
            [[semantics.allowed(cluster, s, d, spec) for d in cluster.pods] for s in cluster.pods], dtype=bool
        ).reshape(n, n)
        rows = np.concatenate([sim.pod_rows(spec, slice(lo, lo + 2)) for lo in range(0, n, 2)]).reshape(n, n)
        assert np.array_equal(rows, expected), (seed, str(spec))
        summary = sim.summary([spec]).ports[0]
        assert summary.allowed == int(expected.sum()), (seed, str(spec))


@pytest.mark.parametrize("seed", range(20))
def test_factored_blocks_equal_the_class_matrix(seed: int, tiny_tiles: None) -> None:
    sim = Simulator(random_cluster(seed))
    rng = np.random.default_rng(seed)
    count = sim.classes.count
    for spec in PORTS:
        full = sim.class_matrix(spec)
        rows, cols = rng.integers(0, count, 5), rng.integers(0, count, 7)
        assert np.array_equal(sim.block(spec, rows, cols), full[np.ix_(rows, cols)])
        assert np.array_equal(sim.verdicts(spec).pairs(rows[:5], cols[:5]), full[rows[:5], cols[:5]])
        weights = rng.integers(1, 9, count)
        assert sim.verdicts(spec).allowed_pairs(weights) == int(weights @ full.astype(np.int64) @ weights)


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("output", ["json", "csv", "table"])
def test_streamed_reach_is_byte_for_byte_the_whole_render(seed: int, output: str, tiny_tiles: None) -> None:
    cluster = random_cluster(seed)
    sim = Simulator(cluster)
    externals = EXTERNAL[: seed % 3]
    for ports, declared_only in ((PORTS[:3], False), (PORTS, True)):
        plan = reach_stream.plan_for(sim, externals, ports, declared_only)
        size = len(plan.names)
        allowed = {s: np.concatenate(list(plan.tiles(s))).reshape(size, size) for s in ports}
        checked = {s: np.broadcast_to(plan.checked(s), (size, size)) for s in ports}
        whole = render.Reach(tuple(plan.names), tuple(ports), allowed, checked)
        expected = {"json": render.render_json, "csv": render.to_csv, "table": render.table}[output](whole)
        if output == "table" and not plan.names:
            expected = "no pods\n"
        buf = io.StringIO()
        reach_stream.stream(plan, output, buf)
        assert buf.getvalue() == expected, (seed, declared_only)
        # and the whole render agrees with the reference semantics
        for i, src in enumerate(cluster.pods):
            for j, dst in enumerate(cluster.pods):
                assert allowed[ports[0]][i, j] == semantics.allowed(cluster, src, dst, ports[0])


def _hash_cluster(extra_policy: dict | None = None):
    objs = [namespace("x")]
    objs += [pod("x", f"web-{i}", {"app": "web", "pod-template-hash": f"h{i}"}) for i in range(4)]
    objs.append(policy("x", "web", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{}]}))
    if extra_policy:
        objs.append(policy("x", "by-hash", extra_policy))
    return cluster_of(objs)


def test_labels_no_policy_looks_at_do_not_split_classes() -> None:
    assert Simulator(_hash_cluster()).classes.count == 1


def test_a_label_a_policy_looks_at_splits_classes() -> None:
    spec = {"podSelector": {"matchLabels": {"pod-template-hash": "h1"}}, "policyTypes": ["Ingress"]}
    sim = Simulator(_hash_cluster(spec))
    assert sim.classes.count == 4
    pods = sim.cluster.pods
    for src in pods:
        for dst in pods:
            assert sim.allowed(src, dst, PortSpec(80)) == semantics.allowed(sim.cluster, src, dst, PortSpec(80))


def test_a_new_policy_on_an_unseen_label_key_needs_a_rebuild() -> None:
    sim = Simulator(_hash_cluster())
    other = Simulator(_hash_cluster({"podSelector": {"matchLabels": {"pod-template-hash": "h1"}}}))
    new = other.cluster.policy_by_key["x/by-hash"]
    with pytest.raises(NeedsRebuild, match="pod-template-hash"):
        sim.with_policies({new.key: new})


def test_a_class_matrix_too_large_for_memory_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = Simulator(random_cluster(3))
    monkeypatch.setenv("NPM_SIM_MEMORY_LIMIT", "10")
    with pytest.raises(TooLarge, match=r"needs about .* only 10 bytes is available"):
        sim.class_matrix(PORTS[0])
    assert sim.summary([PORTS[0]]).ports[0].total == len(sim.cluster.pods) ** 2  # counting needs no matrix


def test_too_large_is_a_clear_error_without_traceback(tmp_path, capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: {containers: [{name: c, image: i}]}\n"
    )
    monkeypatch.setenv("NPM_SIM_MEMORY_LIMIT", "0")
    code, out, err = run_npm_sim(capsys, "reach", "-f", str(path), "-o", "dot")
    assert code == 2 and out == ""
    assert "npm-sim: error: the 1 x 1 pod matrix" in err and "is available; use `-o json`" in err
    assert "Traceback" not in err


def test_an_unforeseen_memory_error_is_a_message_not_a_traceback(tmp_path, capsys, monkeypatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: {containers: [{name: c, image: i}]}\n"
    )

    def exhausted(self, ports):
        raise MemoryError

    monkeypatch.setattr(Simulator, "summary", exhausted)
    code, _, err = run_npm_sim(capsys, "summary", "-f", str(path))
    assert code == 2 and "npm-sim: error: out of memory (" in err and "Traceback" not in err
