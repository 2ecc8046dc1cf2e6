"""Endpoints named as people name them, and a workload's pods folded where policy treats them alike."""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import yaml
from whatif_helpers import run

from kube import manifests as m
from kube.model import PortSpec
from simulator import semantics
from simulator.endpoint_names import UnknownName, fold_by_workload, one_endpoint, pods_named
from simulator.engine import Simulator
from simulator.reach_stream import plan_for
from tests.model.test_workloads import workload
from tests.simulator.test_engine_matches_reference import random_cluster


def _owned(pod: dict, kind: str, name: str) -> dict:
    pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u",
                                           "controller": True}]
    return pod


def canary_cluster() -> list[dict]:
    """A Deployment of three pods, one relabelled by hand and isolated by a policy."""
    rs = workload("ReplicaSet", "shop", "web-5d8f7", {"app": "web"}, ports=(80,))
    rs["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d",
                                          "controller": True}]
    pods = [_owned(m.pod("shop", f"web-5d8f7-p{i}", {"app": "web", **({"canary": "1"} if i == 3 else {})},
                         ports=[m.container_port(80)], ip=f"10.244.0.{i}"), "ReplicaSet", "web-5d8f7")
            for i in (1, 2, 3)]
    return [m.namespace("shop"), workload("Deployment", "shop", "web", {"app": "web"}, ports=(80,)), rs, *pods,
            workload("StatefulSet", "shop", "db", {"app": "db"}, ports=(5432,)),
            m.policy("shop", "no-canary", {"podSelector": {"matchLabels": {"canary": "1"}}, "ingress": []})]


def test_reach_by_workload_folds_alike_pods_and_keeps_the_canary_apart(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump_all(canary_cluster()))
    code, out, err = run(capsys, "reach", "-f", str(path), "--by", "workload", "-o", "json", "--port", "80/TCP")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["endpoints"] == {"shop/web[Deployment]": ["shop/web-5d8f7-p1", "shop/web-5d8f7-p2"],
                                "shop/web-5d8f7-p3": ["shop/web-5d8f7-p3"],
                                "shop/db[StatefulSet]": ["shop/db[StatefulSet]"]}
    cells = {(c["src"], c["dst"]): c["allowed"] for c in doc["connections"]}
    assert cells[("shop/web[Deployment]", "shop/web-5d8f7-p3")] is False
    assert cells[("shop/web[Deployment]", "shop/web[Deployment]")] is True
    assert "shop/web[Deployment]: 1 of its 3 pods is treated differently" in err and "canary=1" in err
    for output in ("table", "csv", "html", "dot"):
        code, out, _err = run(capsys, "reach", "-f", str(path), "--by", "workload", "-o", output)
        assert code == 0 and "shop/web[Deployment]" in out and "shop/web-5d8f7-p1" not in out


def test_a_folded_endpoints_own_cell_is_the_verdict_between_two_of_its_pods(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    objs = [*canary_cluster(), m.policy("shop", "web-isolated", {"podSelector": {"matchLabels": {"app": "web"}},
                                                                "ingress": []})]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump_all(objs))
    _code, out, _err = run(capsys, "reach", "-f", str(path), "--by", "workload", "-o", "json", "--port", "80/TCP")
    cells = {(c["src"], c["dst"]): c["allowed"] for c in json.loads(out)["connections"]}
    assert cells[("shop/web[Deployment]", "shop/web[Deployment]")] is False  # p1 cannot reach p2
    assert cells[("shop/db[StatefulSet]", "shop/db[StatefulSet]")] is True  # one endpoint: itself


@pytest.mark.parametrize("seed", range(40))
def test_every_folded_cell_is_the_verdict_of_every_pair_of_members(seed: int) -> None:
    cluster = random_cluster(seed)
    rng = random.Random(seed)
    pods = tuple(replace(p, workload=f"{p.namespace}/w{rng.randint(0, 2)}[Deployment]") if rng.random() < 0.8 else p
                 for p in cluster.pods)
    cluster = replace(cluster, pods=pods)
    sim = Simulator(cluster)
    folds, _notes = fold_by_workload(sim)
    assert sorted(i for f in folds for i in f.members) == list(range(len(pods)))
    for spec in (PortSpec(80), PortSpec(53, "UDP")):
        plan = plan_for(sim, [], [spec], False, folds=folds)
        grid = np.concatenate(list(plan.tiles(spec))) if folds else np.zeros((0, 0), dtype=bool)
        for a, fa in enumerate(folds):
            for b, fb in enumerate(folds):
                pairs = [(i, j) for i in fa.members for j in fb.members if i != j] or [(fa.members[0], fb.members[0])]
                for i, j in pairs:
                    expected = semantics.allowed(cluster, pods[i], pods[j], spec)
                    assert grid[a, b] == expected, (fa.name, fb.name, pods[i].key, pods[j].key, spec)


def test_names_resolve_pods_workloads_namespaces_and_globs_and_suggest_on_a_typo() -> None:
    cluster = m.cluster_of(canary_cluster())
    assert [p.key for p in pods_named(cluster, "shop/web[Deployment]")] == [
        "shop/web-5d8f7-p1", "shop/web-5d8f7-p2", "shop/web-5d8f7-p3"]
    assert len(pods_named(cluster, "shop/*")) == 4
    assert [p.key for p in pods_named(cluster, "shop/web-*-p2")] == ["shop/web-5d8f7-p2"]
    assert [p.key for p in pods_named(cluster, "shop/db[StatefulSet]")] == ["shop/db[StatefulSet]"]
    with pytest.raises(UnknownName, match=r"did you mean shop/db\[StatefulSet\]"):
        pods_named(cluster, "shop/db[Statefulset]")
    sim = Simulator(cluster)
    assert one_endpoint(sim, "shop/db[StatefulSet]")[1] == "shop/db[StatefulSet]"
    with pytest.raises(ValueError, match="treats differently"):
        one_endpoint(sim, "shop/web[Deployment]")


def test_explain_exposure_and_focus_take_workload_names(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    objs = [o for o in canary_cluster() if o["metadata"]["name"] != "no-canary"]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump_all(objs))
    code, out, err = run(capsys, "explain", "-f", str(path), "shop/web[Deployment]", "shop/db[StatefulSet]",
                         "--port", "5432/TCP", "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["src"], doc["dst"], doc["allowed"]) == ("shop/web[Deployment]", "shop/db[StatefulSet]", True)
    code, out, err = run(capsys, "exposure", "-f", str(path), "--from", "shop/web[Deployment]", "-o", "json")
    assert code == 0, err
    code, _out, err = run(capsys, "exposure", "-f", str(path), "--from", "shop/wbe[Deployment]")
    assert code == 2 and "did you mean shop/web[Deployment]" in err
    code, out, err = run(capsys, "reach", "-f", str(path), "--focus", "shop/db[StatefulSet]", "-o", "json")
    assert code == 0, err
    assert {c["src"] for c in json.loads(out)["connections"]} == {"shop/db[StatefulSet]"}
    code, _out, err = run(capsys, "explain", "-f", str(path), "shop/nope", "shop/db[StatefulSet]")
    assert code == 2 and "names no pod, workload or namespace" in err
