"""One way in: the same objects in every shape users write give every tool the same input.

Shapes: multi-document YAML, a JSON array-free ``kind: List``, a YAML ``kind: List``, lists
nested in lists, typed lists (``PodList`` ...), a directory of one object per file, and
standard input. Tools: the simulator (``npm-sim``), the enforcer's one-shot path and its
manifest-directory source, and the harness (``npm-conformance``).
"""

from __future__ import annotations

import io
import ipaddress
import json
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.scenario import load_file
from kube import manifests
from kube.load import load_paths
from npm.daemon.sources.manifests import read_file
from tests.sim_cli import run_npm_sim

ROOT = Path(__file__).resolve().parents[2]

OBJECTS: list[dict[str, Any]] = [
    manifests.namespace("shop", {"team": "a"}),
    manifests.namespace("ops"),
    manifests.pod("shop", "web", {"app": "web"}, ip="10.244.1.5", node="n1", host_ip="172.18.0.2",
                  ports=[manifests.container_port(80, name="http")]),
    manifests.pod("shop", "db", {"app": "db"}, ip="10.244.1.6", node="n1", host_ip="172.18.0.2",
                  ports=[manifests.container_port(5432)]),
    manifests.pod("ops", "probe", {"app": "probe"}, ip="10.244.2.7", node="n2", host_ip="172.18.0.3"),
    manifests.pod("ops", "pending", {"app": "probe"}, node="n2"),  # no IP yet
    manifests.policy("shop", "db-from-web", {
        "podSelector": {"matchLabels": {"app": "db"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}],
    }),
    manifests.policy("shop", "web-from-outside", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "203.0.113.0/24", "except": ["203.0.113.128/25"]}},
                              {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ops"}}}]}],
    }),
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "shop"}, "data": {}},
]


def as_list(items: list[dict[str, Any]], kind: str = "List") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "items": items}


def _typed(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        by_kind.setdefault(item["kind"], []).append(item)
    return [as_list(group, f"{kind}List") for kind, group in by_kind.items()]


def write_shape(shape: str, where: Path) -> str:
    """Write OBJECTS in ``shape`` under ``where``; the path (or ``-``) to give the tools."""
    if shape == "multi-document-yaml":
        (where / "c.yaml").write_text(yaml.safe_dump_all(OBJECTS))
        return str(where / "c.yaml")
    if shape == "json-list":
        (where / "c.json").write_text(json.dumps(as_list(OBJECTS)))
        return str(where / "c.json")
    if shape == "yaml-list":
        (where / "c.yaml").write_text(yaml.safe_dump(as_list(OBJECTS)))
        return str(where / "c.yaml")
    if shape == "nested-lists":
        (where / "c.yaml").write_text(yaml.safe_dump(as_list([as_list(OBJECTS[:3]), as_list([as_list(OBJECTS[3:])])])))
        return str(where / "c.yaml")
    if shape == "typed-lists":
        (where / "c.yaml").write_text(yaml.safe_dump_all(_typed(OBJECTS)))
        return str(where / "c.yaml")
    if shape == "directory":
        d = where / "dir"
        d.mkdir()
        for i, obj in enumerate(OBJECTS):
            (d / f"{i:02d}.yaml").write_text(yaml.safe_dump(obj))
        return str(d)
    raise AssertionError(shape)


SHAPES = ["multi-document-yaml", "json-list", "yaml-list", "nested-lists", "typed-lists", "directory"]


def loaded(path: str, stdin: str | None = None, **options: Any) -> dict[str, Any]:
    """What the shared loader makes of ``path``: object keys, addresses, accounting."""
    result = load_paths([path], stdin=io.StringIO(stdin) if stdin is not None else None, **options)
    c = result.cluster
    return {
        "errors": [str(e) for e in result.errors],
        "pods": {p.key: p.ip for p in c.pods},
        "policies": sorted(p.key for p in c.policies),
        "namespaces": {n.name: dict(n.labels.items()) for n in c.namespaces},
        "nodes": {n.name: n.ip for n in c.nodes},
        "used": result.inputs()["used"],
        "ignored": result.inputs()["ignored"],
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return loaded(write_shape("multi-document-yaml", tmp_path_factory.mktemp("ref")))


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_loads_the_same_objects(shape: str, tmp_path: Path, reference: dict[str, Any]) -> None:
    assert loaded(write_shape(shape, tmp_path)) == reference
    assert reference["errors"] == [] and reference["policies"] == ["shop/db-from-web", "shop/web-from-outside"]
    assert reference["nodes"] == {"n1": "172.18.0.2", "n2": "172.18.0.3"}  # from hostIP, nothing made up
    assert {"kind": "ConfigMap", "count": 1, "reason": "not a kind these tools read"} in reference["ignored"]


def test_standard_input_loads_the_same_objects(reference: dict[str, Any]) -> None:
    assert loaded("-", stdin=yaml.safe_dump(as_list(OBJECTS))) == reference


@pytest.mark.parametrize("shape", SHAPES)
def test_the_simulator_gives_the_same_verdicts_in_every_shape(shape: str, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    def verdicts(path: str) -> list[Any]:
        code, out, err = run_npm_sim(capsys, "reach", "-f", path, "--port", "5432/TCP", "--port", "80/TCP",
                                     "-o", "json")
        assert code == 0, err
        assert "inputs: used 2 Namespace, 4 Pod, 2 NetworkPolicy, 0 Node; implied 2 Node" in err
        return sorted(json.dumps(row, sort_keys=True) for row in json.loads(out)["connections"])

    base = tmp_path / "base"
    base.mkdir()
    assert verdicts(write_shape(shape, tmp_path)) == verdicts(write_shape("multi-document-yaml", base))


@pytest.mark.parametrize("shape", SHAPES)
def test_the_harness_reads_the_same_objects_in_every_shape(shape: str, tmp_path: Path) -> None:
    if shape == "directory":
        pytest.skip("the harness reads a directory as many scenario files, one per file")
    (scenario,), errors = load_file(write_shape(shape, tmp_path))
    assert errors == []
    assert sorted(scenario.initial.policies) == ["shop/db-from-web", "shop/web-from-outside"]
    assert sorted(scenario.initial.pods) == ["ops/pending", "ops/probe", "shop/db", "shop/web"]


@pytest.mark.parametrize("shape", ["multi-document-yaml", "yaml-list", "nested-lists", "typed-lists", "json-list"])
def test_the_daemons_manifest_source_reads_the_same_objects(shape: str, tmp_path: Path) -> None:
    path = write_shape(shape, tmp_path)
    state = read_file(path, None, (0, 0, 0))
    assert not state.broken and not state.invalid
    assert sorted(k for kind, k in state.objects if kind == "NetworkPolicy") == [
        "shop/db-from-web", "shop/web-from-outside"]
    pods = sorted(k for kind, k in state.objects if kind == "Pod")
    assert pods == ["ops/pending", "ops/probe", "shop/db", "shop/web"]


def input_addresses() -> list[ipaddress.IPv4Network]:
    """Every address or network the input states: pod and host IPs, policy CIDRs."""
    text = json.dumps(OBJECTS)
    found = set()
    for token in text.replace('"', " ").replace(",", " ").split():
        try:
            found.add(ipaddress.ip_network(token, strict=False))
        except ValueError:
            continue
    return sorted(n for n in found if n.version == 4)


def kernel_addresses(run: Callable[[list[str]], str]) -> set[ipaddress.IPv4Network]:
    """Every address in our ipsets and in our rules' -s/-d matches."""
    out: set[ipaddress.IPv4Network] = set()
    for line in run(["ipset", "save"]).splitlines():
        parts = line.split()
        if parts[:1] == ["add"] and parts[1].startswith("azure-npm-") and not parts[2].startswith("azure-npm-"):
            out.add(ipaddress.ip_network(parts[2].split(",")[0], strict=False))  # list sets hold set names
    for line in run(["iptables-save"]).splitlines():
        parts = line.split()
        if "AZURE-NPM" in line:
            for flag in ("-s", "-d"):
                if flag in parts:
                    out.add(ipaddress.ip_network(parts[parts.index(flag) + 1], strict=False))
    return out


@pytest.mark.kernel
@pytest.mark.parametrize("shape", ["yaml-list", "directory"])
def test_the_enforcer_never_writes_an_address_the_input_did_not_contain(shape: str, tmp_path: Path) -> None:
    path = write_shape(shape, tmp_path)
    ns = f"npm-parity-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        def run(argv: list[str]) -> str:
            return subprocess.run(["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=True).stdout

        proc = subprocess.run(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "npm.cli", "apply", "-f", path, "--node-name", "n1",
             "-o", "json"], capture_output=True, text=True, cwd=ROOT)
        assert proc.returncode == 0, proc.stderr
        assert "left out 1 pod(s) without an IP (ops/pending)" in proc.stderr
        stated = input_addresses()
        written = kernel_addresses(run)
        assert written, "nothing was enforced"
        for net in written:
            # Each address in the kernel lies inside something the input stated (the /0 of an
            # ipBlock is split in two halves, and an except is written as itself).
            assert any(net.subnet_of(s) for s in stated), f"{net} is in the kernel, but in no input address"
        assert json.loads(proc.stdout)["inputs"]["ignored"]
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_every_npm_sim_json_output_carries_the_inputs_accounting(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write_shape("yaml-list", tmp_path)
    for argv in (["reach", "--port", "80/TCP"], ["summary"], ["lint"], ["explain", "shop/web", "shop/db"]):
        code, out, err = run_npm_sim(capsys, *argv, "-f", path, "-o", "json")
        assert code in (0, 1), err
        doc = json.loads(out)
        assert doc["inputs"]["used"] == {"Namespace": 2, "Pod": 4, "NetworkPolicy": 2, "Node": 0}, argv
        assert doc["inputs"]["implied"] == {"Namespace": 0, "Node": 2}, argv
        assert {"kind": "ConfigMap", "count": 1, "reason": "not a kind these tools read"} in doc["inputs"]["ignored"]
