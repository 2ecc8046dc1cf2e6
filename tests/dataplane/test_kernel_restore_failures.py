"""A kernel tool that stops reading half-way is a failed change, never a dead enforcer or leaked sets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
PODS = 3000  # enough set members that the ipset payload is far larger than a pipe's buffer


def manifests(path: Path) -> Path:
    docs: list[dict[str, Any]] = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}]
    for i in range(PODS):
        docs.append({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"p{i}", "namespace": "x", "labels": {"app": f"a{i % 50}", "tier": f"t{i % 7}"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "podIP": f"10.2.{i // 250}.{i % 250 + 1}"},
        })
    docs.append({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": "a1"}},
                 "ingress": [{"from": [{"podSelector": {"matchExpressions": [
                     {"key": "tier", "operator": "In", "values": ["t1", "t2", "t3"]}]}}]}]},
    })
    path.write_text(yaml.safe_dump_all(docs))
    return path


@pytest.fixture
def node() -> Iterator[Any]:
    from conformance.netns.topology import Topology

    with Topology() as topo:
        topo.add_node("n1")
        yield topo


def azure_npm(topo: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return topo.node_run("n1", [sys.executable, "-m", "npm.cli", *args], env=env, timeout=120)


def our_sets(topo: Any) -> dict[str, str]:
    """Set name -> type, for the sets azure-npm made (or that squat on its names)."""
    out = topo.node_run("n1", ["ipset", "save"]).stdout
    return {p[1]: p[2] for p in (line.split() for line in out.splitlines()) if p[:1] == ["create"]
            and p[1].startswith("azure-npm-")}


def squat(topo: Any, names: dict[str, str]) -> None:
    """Create each name with a type other than ours, so that creating ours fails."""
    for name, kind in names.items():
        other = "hash:ip" if kind == "list:set" else "list:set"
        topo.node_run("n1", ["ipset", "create", name, other], check=True)


def test_ipset_restore_stopping_at_the_first_line_fails_the_apply_without_killing_it(node, tmp_path):
    topo = node
    cluster = manifests(tmp_path / "cluster.yaml")
    first = azure_npm(topo, "apply", "-f", str(cluster), "--node-name", "n1")
    assert first.returncode == 0, first.stderr
    names = our_sets(topo)
    assert azure_npm(topo, "cleanup").returncode == 0
    squat(topo, names)  # every set we create now collides: ipset stops at line 1 and exits

    res = azure_npm(topo, "apply", "-f", str(cluster), "--node-name", "n1", "-o", "json")
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])  # not -13 (SIGPIPE)
    out = json.loads(res.stdout)
    assert any("ipset" in f and "line 1" in f for f in out["failures"]), out["failures"]
    assert our_sets(topo) == {n: ("hash:ip" if k == "list:set" else "list:set") for n, k in names.items()}
    rules = topo.node_run("n1", ["iptables-save"]).stdout
    assert "AZURE-NPM" not in rules  # nothing half-applied


def test_a_change_that_fails_half_way_leaves_no_new_sets_behind(node, tmp_path):
    topo = node
    # Ten namespaces, each with a pod and a deny-all: ten namespace sets no single policy owns.
    docs: list[dict[str, Any]] = []
    for i in range(10):
        docs += [
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": f"n{i}"}},
            {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": f"n{i}"},
             "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "i"}]},
             "status": {"phase": "Running", "podIP": f"10.3.0.{i + 1}"}},
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "deny", "namespace": f"n{i}"}, "spec": {"podSelector": {}}},
        ]
    cluster = tmp_path / "namespaces.yaml"
    cluster.write_text(yaml.safe_dump_all(docs))
    assert azure_npm(topo, "apply", "-f", str(cluster), "--node-name", "n1").returncode == 0
    names = our_sets(topo)
    assert azure_npm(topo, "cleanup").returncode == 0
    # The last shared set in creation order (hash sets by name, lists after) collides, so the
    # whole change fails after the sets before it were created.
    owned = set().union(*translate_file(cluster).sets_of_policy.values())
    order = sorted(names, key=lambda n: (names[n] == "list:set", n))
    last = [n for n in order if n not in owned][-1]
    assert order.index(last) > 0
    squat(topo, {last: names[last]})
    squatters = our_sets(topo)

    res = azure_npm(topo, "apply", "-f", str(cluster), "--node-name", "n1")
    assert res.returncode == 1
    assert our_sets(topo) == squatters  # the sets created before the failure are gone again


def test_cleanup_names_the_foreign_rule_that_holds_one_of_our_sets_and_removes_the_rest(node, tmp_path):
    topo = node
    cluster = manifests(tmp_path / "cluster.yaml")
    assert azure_npm(topo, "apply", "-f", str(cluster), "--node-name", "n1").returncode == 0
    names = our_sets(topo)
    held = next(n for n, kind in names.items() if kind == "hash:ip")
    rule = ["-A", "INPUT", "-m", "set", "--match-set", held, "src", "-j", "ACCEPT"]
    assert topo.node_run("n1", ["iptables-nft", *rule]).returncode == 0  # someone else's rule

    res = azure_npm(topo, "cleanup")
    assert res.returncode == 1
    assert held in res.stderr and "INPUT" in res.stderr and "does not exist" not in res.stderr
    assert set(our_sets(topo)) == {held}  # everything else is gone
    assert "AZURE-NPM" not in topo.node_run("n1", ["iptables-save"]).stdout

    assert topo.node_run("n1", ["iptables-nft", "-D", *rule[1:]]).returncode == 0
    assert azure_npm(topo, "cleanup").returncode == 0
    assert our_sets(topo) == {}


def test_a_set_the_kernel_refuses_fails_closed_the_policies_using_it_and_the_others_apply(node, tmp_path):
    topo = node
    cluster = manifests(tmp_path / "cluster.yaml")
    other = yaml.safe_dump({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "other", "namespace": "x"},
        "spec": {"podSelector": {"matchLabels": {"app": "a2"}},
                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "a3"}}}]}]},
    })
    both = tmp_path / "both.yaml"
    both.write_text(cluster.read_text() + "---\n" + other)
    assert azure_npm(topo, "apply", "-f", str(both), "--node-name", "n1").returncode == 0
    sets = our_sets(topo)
    assert azure_npm(topo, "cleanup").returncode == 0
    # A set only policy x/p uses (pods with tier in (t1,t2,t3)); someone holds its name.
    (name,) = [n for n, spec in translated(both).items() if spec.meaning.startswith("podlabel:tier in")]
    assert name not in names_used_by(topo, both, exclude="x/p")
    squat(topo, {name: sets[name]})

    res = azure_npm(topo, "apply", "-f", str(both), "--node-name", "n1", "-o", "json")
    assert res.returncode == 1
    details = json.loads(res.stdout)["failure_details"]
    assert [d["failed_closed"] for d in details] == ["x/p"] and details[0]["line_text"].startswith("create " + name)
    rules = topo.node_run("n1", ["iptables-save"]).stdout
    assert "x/other ingress[0]" in rules  # the other policy is enforced
    assert "x/p ingress rules" not in rules and "policy x/p ingress" in rules  # x/p isolates, allows nothing
    assert set(our_sets(topo)) >= set(names_used_by(topo, both, exclude="x/p"))


def translated(path: Path, exclude: str = "") -> dict[str, Any]:
    """The sets (name -> spec) a translation of ``path`` needs, without policy ``exclude``."""
    from kube.load import load_paths
    from npm.dataplane.translate import translate

    cluster = load_paths([str(path)], allocate_ips=False).cluster
    kept = tuple(p for p in cluster.policies if p.key != exclude)
    return dict(translate(replace(cluster, policies=kept)).sets)


def translate_file(path: Path) -> Any:
    from kube.load import load_paths
    from npm.dataplane.translate import translate

    return translate(load_paths([str(path)], allocate_ips=False).cluster)


def names_used_by(topo: Any, path: Path, exclude: str) -> list[str]:
    return list(translated(path, exclude))
