"""A pull request that adds, relabels or deletes a workload (no pod running anywhere) shows up in
diff under the workload's name, with outside endpoints, and assertions catch it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from whatif_helpers import run

from kube import manifests as m
from tests.model.test_workloads import workload

KINDS = ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicationController"]
# The database admits app=api only; nothing isolates egress, so a new workload reaches the world.
BASE = [m.namespace("shop"), workload("StatefulSet", "shop", "db", {"app": "db"}, ports=(5432,)),
        m.policy("shop", "db-from-api", {"podSelector": {"matchLabels": {"app": "db"}},
                                         "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}]}]})]


def _diff(tmp_path: Path, capsys, before: list, after: list, *extra: str) -> tuple[int, dict]:  # type: ignore[no-untyped-def]
    (tmp_path / "before.yaml").write_text(yaml.safe_dump_all(before))
    (tmp_path / "after.yaml").write_text(yaml.safe_dump_all(after))
    code, out, err = run(capsys, "diff", "--before", str(tmp_path / "before.yaml"), "--after",
                         str(tmp_path / "after.yaml"), "--port", "5432/TCP", "-o", "json", *extra)
    assert code in (0, 1), err
    return code, json.loads(out)


@pytest.mark.parametrize("kind", KINDS)
def test_adding_a_workload_of_any_kind_gains_its_connections_under_its_name(tmp_path, capsys, kind) -> None:  # type: ignore[no-untyped-def]
    _code, doc = _diff(tmp_path, capsys, BASE, [*BASE, workload(kind, "shop", "api", {"app": "api"})])
    gained = {(c["src"], c["dst"]) for c in doc["gained"]}
    name = f"shop/api[{kind}]"
    assert (name, "shop/db[StatefulSet]") in gained
    assert (name, "0.0.0.0/0") in gained  # an outside endpoint: the rest of the world


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
def test_relabelling_a_workload_loses_what_its_old_labels_were_allowed(tmp_path, capsys, kind) -> None:  # type: ignore[no-untyped-def]
    before = [*BASE, workload(kind, "shop", "api", {"app": "api"})]
    after = [*BASE, workload(kind, "shop", "api", {"app": "api-v2"})]
    code, doc = _diff(tmp_path, capsys, before, after, "--fail-on", "lost")
    assert code == 1
    assert {(c["src"], c["dst"]) for c in doc["lost"]} == {(f"shop/api[{kind}]", "shop/db[StatefulSet]")}


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet"])
def test_deleting_a_workload_loses_its_connections_and_breaks_an_allow_assertion(tmp_path, capsys, kind) -> None:  # type: ignore[no-untyped-def]
    before = [*BASE, workload(kind, "shop", "api", {"app": "api"})]
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"assertions": [
        {"name": "the world never reaches the db", "from": "0.0.0.0/0", "to": "shop/db[StatefulSet]",
         "port": 5432, "expect": "deny"}]}))
    code, doc = _diff(tmp_path, capsys, before, BASE, "--assertions", str(tmp_path / "a.yaml"))
    lost = {(c["src"], c["dst"]) for c in doc["lost"]}
    assert (f"shop/api[{kind}]", "shop/db[StatefulSet]") in lost and (f"shop/api[{kind}]", "0.0.0.0/0") in lost
    assert code == 0 and doc["assertions"][0]["holds"] and not doc["assertions"][0]["broken"]


def test_a_daemonset_on_known_nodes_is_one_endpoint_per_node(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    nodes = [m.node("n1", "172.18.0.2"), m.node("n2", "172.18.0.3")]
    _code, doc = _diff(tmp_path, capsys, [*BASE, *nodes],
                       [*BASE, *nodes, workload("DaemonSet", "shop", "agent", {"app": "api"})])
    sources = {c["src"] for c in doc["gained"] if c["dst"] == "shop/db[StatefulSet]"}
    assert sources == {"shop/agent[DaemonSet@n1]", "shop/agent[DaemonSet@n2]"}
