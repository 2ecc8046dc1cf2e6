"""exposure as reach counts ports, can leave out endpoints such as DNS, and names workloads."""

from __future__ import annotations

import json

import yaml
from whatif_helpers import run

from kube import manifests as m
from tests.model.test_workloads import workload

# No policies: every pod may reach every pod, on the ports the destination declares.
CLUSTER = [
    m.namespace("app"),
    m.namespace("kube-system"),
    workload("Deployment", "app", "web", {"app": "web"}, ports=(8080,)),
    workload("Deployment", "app", "batch", {"app": "batch"}, ports=()),
    m.pod("kube-system", "dns", {"k8s-app": "dns"}, ip="10.244.9.9", ports=[m.container_port(53, "UDP")]),
]


def exposure(tmp_path, capsys, *args: str) -> dict:  # type: ignore[no-untyped-def]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump_all(CLUSTER))
    code, out, err = run(capsys, "exposure", "-f", str(tmp_path / "c.yaml"), "--from", "app/web[Deployment]",
                         "--no-outside", "-o", "json", *args)
    assert code == 0, err
    return json.loads(out)


def test_an_edge_needs_a_port_the_destination_declares(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    result = exposure(tmp_path, capsys)
    targets = {t["pod"]: t["ports"] for t in result["one_hop"]["targets"]}
    assert targets == {"kube-system/dns": ["53/UDP"]}  # batch declares nothing: no edge to it


def test_exclude_leaves_dns_out_and_workloads_are_named(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    result = exposure(tmp_path, capsys, "--exclude", "kube-system/*", "--port", "8080/TCP")
    assert {t["pod"] for t in result["transitive"]["targets"]} == {"app/batch[Deployment]"}
    assert [w["workload"] for w in result["workloads"]] == ["app/batch[Deployment]"]
