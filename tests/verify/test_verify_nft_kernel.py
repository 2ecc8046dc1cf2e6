"""azure-npm verify on the nftables dataplane, on the real kernel: random clusters applied and
read back agree; a rule or a set element deleted by hand is caught as exactly its flows."""

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

from npm.dataplane import nft
from npm.dataplane.nft_enforcer import NftEnforcer
from npm.verify.check import verify
from npm.verify.nft_view import NftView
from npm.verify.oracle import Oracle
from tests.dataplane.helpers import World, world
from tests.simulator.test_engine_matches_reference import random_cluster
from tests.verify.test_verify_kernel import OBJECTS

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
NFT = ["--dataplane", "nftables"]


@pytest.fixture(scope="module")
def node() -> Iterator[World]:
    """One node (a network namespace) shared by the tests: each applies what it needs."""
    with world([], dataplane="nftables") as w:
        yield w


def _cli(w: World | None, *args: str) -> subprocess.CompletedProcess[str]:
    prefix = w.topo.node_runner("n1") if w is not None else []
    return subprocess.run([*prefix, sys.executable, "-m", "npm.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT, timeout=120)


def _listed(w: World) -> dict[str, Any]:
    res = w.topo.node_run("n1", ["nft", "-j", "list", "table", "inet", "azure-npm"])
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def _nft(w: World, *args: str) -> None:
    res = w.topo.node_run("n1", ["nft", *args])
    assert res.returncode == 0, res.stderr


def _mismatches(proc: subprocess.CompletedProcess[str]) -> list[tuple[Any, ...]]:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return [(x["src"], x["dst"], x["port"], x["kernel"], x["policy"]) for x in json.loads(proc.stdout)["mismatches"]]


def test_random_clusters_applied_and_read_back_from_the_kernel_agree_with_the_simulator(node: World) -> None:
    enforcer: NftEnforcer = node.enforcers["n1"]
    checked = 0
    for seed in range(10):
        cluster = random_cluster(seed)
        # the generator leaves addresses to the loader; here they are the pods' real ones
        cluster = replace(cluster, pods=tuple(replace(p, ip_allocated=False) for p in cluster.pods))
        result = enforcer.apply(cluster)
        assert not result.failures, (seed, result.failures)
        listed = nft.list_table(enforcer.runner)
        assert listed.ok, listed.stderr
        view = NftView.from_json(listed.stdout)
        report = verify(view, Oracle(cluster), view.edge_addresses())
        assert report.agrees, (seed, report.render())
        checked += report.connections
    assert checked > 1000


def test_a_rule_or_a_set_element_deleted_by_hand_is_caught_as_exactly_its_flows(node: World, tmp_path: Path) -> None:
    path = tmp_path / "objects.yaml"
    path.write_text(yaml.safe_dump_all(OBJECTS))
    objects = ["-f", str(path), "--node-name", "n1"]
    applied = _cli(node, "apply", *objects, *NFT)
    assert applied.returncode == 0, applied.stderr
    ok = _cli(node, "verify", *objects, *NFT, "-o", "json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = json.loads(ok.stdout)
    assert report["agrees"] and report["dataplane"] == "nftables" and report["connections"] > 20
    # the same table saved and read from a file (no kernel needed)
    saved = tmp_path / "table.json"
    saved.write_text(json.dumps(_listed(node)))
    assert _cli(None, "verify", *objects, *NFT, "--nft-file", str(saved)).returncode == 0

    # An operator deletes the rule that lets team b in, by hand.
    (rule,) = [x["rule"] for x in _listed(node)["nftables"]
               if "rule" in x and x["rule"].get("comment", "").startswith("x/web-from-b ingress[0]")]
    _nft(node, "delete", "rule", "inet", "azure-npm", rule["chain"], "handle", str(rule["handle"]))
    caught = _cli(node, "verify", *objects, *NFT, "-o", "json")
    assert _mismatches(caught) == [("y/client", "x/web", 80, "denied", "allowed")]
    assert "x/web-from-b" in json.loads(caught.stdout)["mismatches"][0]["because"]
    text = _cli(node, "verify", *objects, *NFT)
    assert text.returncode == 1
    assert "MISMATCH y/client -> x/web 80/TCP: kernel denied, policies allowed" in text.stdout
    assert _cli(node, "apply", *objects, *NFT).returncode == 0  # the reconcile repairs it

    # ...and the allowed part of an ipBlock with an except, from its interval set.
    (cidr,) = [x["set"]["name"] for x in _listed(node)["nftables"]
               if "set" in x and x["set"].get("comment", "").startswith("cidr:192.0.2.0/24 except")]
    _nft(node, "delete", "element", "inet", "azure-npm", cidr, "{ 192.0.2.0/25 }")
    caught = _cli(node, "verify", *objects, *NFT, "-o", "json")
    assert _mismatches(caught) == [("192.0.2.0/25", "x/db", 5432, "denied", "allowed")]
    assert "x/db-from-web" in json.loads(caught.stdout)["mismatches"][0]["because"]
    assert _cli(node, "apply", *objects, *NFT).returncode == 0
    assert _cli(node, "verify", *objects, *NFT).returncode == 0
