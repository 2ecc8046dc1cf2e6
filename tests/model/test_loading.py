"""Loading from YAML, JSON, lists, directories and stdin; bad files; cluster assembly."""

from __future__ import annotations

import io
import json
from pathlib import Path

import yaml

from kube.load import load_paths
from kube.manifests import namespace, node, pod, policy
from kube.model import NAMESPACE_NAME_LABEL

OBJS = [
    namespace("x", {"team": "a"}),
    pod("x", "a", {"app": "a"}, ip="10.244.0.10"),
    policy("x", "deny", {"podSelector": {}}),
]


def write(path: Path, text: str | bytes) -> str:
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return str(path)


def test_loads_multi_document_yaml(tmp_path: Path) -> None:
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump_all(OBJS))])
    assert not result.errors
    c = result.cluster
    assert [n.name for n in c.namespaces] == ["x"] and c.namespaces[0].labels[NAMESPACE_NAME_LABEL] == "x"
    assert [p.key for p in c.pods] == ["x/a"] and c.pods[0].ip == "10.244.0.10"
    assert [p.key for p in c.policies] == ["x/deny"] and c.policies[0].policy_types == ("Ingress",)
    assert c.pods[0].source.document == 1


def test_loads_json_and_kind_list(tmp_path: Path) -> None:
    listing = {"apiVersion": "v1", "kind": "List", "items": OBJS}
    result = load_paths([write(tmp_path / "c.json", json.dumps(listing))])
    assert not result.errors
    assert len(result.cluster.pods) == 1 and len(result.cluster.policies) == 1
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump({"kind": "PodList", "items": [OBJS[1]]}))])
    assert [p.key for p in result.cluster.pods] == ["x/a"]


def test_loads_directories_recursively_taking_manifest_files_only(tmp_path: Path) -> None:
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    write(tmp_path / "ns.yaml", yaml.safe_dump(OBJS[0]))
    write(tmp_path / "sub" / "pod.yml", yaml.safe_dump(OBJS[1]))
    write(tmp_path / "sub" / "deeper" / "pol.json", json.dumps(OBJS[2]))
    write(tmp_path / "README.md", "# not a manifest: {{")
    result = load_paths([str(tmp_path)])
    assert not result.errors
    assert len(result.cluster.pods) == 1 and len(result.cluster.policies) == 1


def test_loads_stdin() -> None:
    result = load_paths(["-"], stdin=io.StringIO(yaml.safe_dump_all(OBJS)))
    assert not result.errors and len(result.cluster.pods) == 1
    assert result.cluster.pods[0].source.file == "<stdin>"


def test_binary_empty_and_malformed_files_give_errors_not_tracebacks(tmp_path: Path) -> None:
    paths = [
        write(tmp_path / "bin.yaml", b"\x00\x01\x02"),
        write(tmp_path / "empty.yaml", "  \n"),
        write(tmp_path / "bad.yaml", "kind: Pod\nmetadata: [unclosed\n"),
        write(tmp_path / "bad.json", '{"kind": "Pod",'),
        write(tmp_path / "latin1.yaml", "name: caf\xe9".encode("latin-1")),
        write(tmp_path / "scalar.yaml", "just a string\n"),
        str(tmp_path / "missing.yaml"),
        write(tmp_path / "ok.yaml", yaml.safe_dump_all(OBJS)),
    ]
    result = load_paths(paths)
    messages = {Path(e.source.file).name: e.message for e in result.errors}
    assert "binary" in messages["bin.yaml"]
    assert "empty" in messages["empty.yaml"]
    assert "invalid YAML at line" in messages["bad.yaml"]
    assert "invalid JSON" in messages["bad.json"]
    assert "not UTF-8" in messages["latin1.yaml"]
    assert "expected a Kubernetes object" in messages["scalar.yaml"]
    assert "cannot read" in messages["missing.yaml"]
    assert "ok.yaml" not in messages and len(result.cluster.pods) == 1


def test_other_kinds_are_skipped_and_counted(tmp_path: Path) -> None:
    others = [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}] * 2 + [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    ]
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump_all([*OBJS, *others]))])
    assert not result.errors
    assert result.skipped == {"Service": 2, "ConfigMap": 1}


def test_ip_allocation_is_deterministic_and_stable(tmp_path: Path) -> None:
    few = [pod("x", name, {}) for name in ("a", "b")]
    more = [*few, *(pod("x", f"extra{i}", {}) for i in range(20))]
    first = load_paths([write(tmp_path / "one.yaml", yaml.safe_dump_all(few))])
    again = load_paths([write(tmp_path / "two.yaml", yaml.safe_dump_all(few))])
    bigger = load_paths([write(tmp_path / "three.yaml", yaml.safe_dump_all(more))])
    ips = {p.key: p.ip for p in first.cluster.pods}
    assert ips == {p.key: p.ip for p in again.cluster.pods}
    assert all(p.ip_allocated for p in first.cluster.pods)
    assert {k: v for k, v in ((p.key, p.ip) for p in bigger.cluster.pods) if k in ips} == ips
    assert len({p.ip for p in bigger.cluster.pods}) == len(more)
    assert all(ip.startswith("10.244.") for ip in ips.values())
    assert any("had no IP" in n for n in first.notes)


def test_pod_cidr_option_is_used_for_allocation(tmp_path: Path) -> None:
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump(pod("x", "a", {})))], pod_cidr="192.168.7.0/24")
    assert result.cluster.pods[0].ip.startswith("192.168.7.")


def test_succeeded_and_failed_pods_are_ignored(tmp_path: Path) -> None:
    objs = [pod("x", "run", {}), pod("x", "done", {}, phase="Succeeded"), pod("x", "crashed", {}, phase="Failed")]
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump_all(objs))])
    assert [p.key for p in result.cluster.pods] == ["x/run"]
    assert any("Succeeded or Failed" in n for n in result.notes)


def test_host_network_pods_take_the_node_ip(tmp_path: Path) -> None:
    objs = [
        node("n1", "172.18.0.5"),
        node("n2"),
        pod("x", "agent", {}, node="n1", host_network=True, ip="10.244.0.99"),
        pod("x", "agent2", {}, node="n2", host_network=True),
    ]
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump_all(objs))])
    pods = result.cluster.pod_by_key
    assert pods["x/agent"].ip == "172.18.0.5" and pods["x/agent"].ips == ("172.18.0.5",)
    n2 = result.cluster.node_by_name["n2"]
    assert n2.ip_allocated and n2.ip.startswith("172.18.")
    assert pods["x/agent2"].ip == n2.ip
    assert any("node n2: no InternalIP" in n and "made up" in n for n in result.notes)


def test_a_node_without_internal_ip_takes_the_host_ip_its_pods_report(tmp_path: Path) -> None:
    # `kubectl get ns,pods,networkpolicies` has no Node objects, but every pod says where it runs.
    objs = [
        pod("x", "web", {}, node="n1", ip="10.244.1.5", host_ip="172.18.0.7"),
        pod("x", "agent", {}, node="n2", host_network=True, ip="172.18.0.8"),
    ]
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump_all(objs))])
    nodes = result.cluster.node_by_name
    assert (nodes["n1"].ip, nodes["n1"].ip_allocated, nodes["n1"].ip_from) == ("172.18.0.7", False, "a pod's hostIP")
    assert (nodes["n2"].ip, nodes["n2"].ip_allocated) == ("172.18.0.8", False)
    assert not any("made up" in n for n in result.notes)


def test_without_allocation_pods_without_ip_are_left_out_and_counted(tmp_path: Path) -> None:
    objs = [pod("x", "pending", {}, node="n1"), pod("x", "web", {}, node="n1", ip="10.244.1.5")]
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump_all(objs))], allocate_ips=False)
    assert [p.key for p in result.cluster.pods] == ["x/web"]
    assert any("left out 1 pod(s) without an IP (x/pending)" in n for n in result.notes)
    assert result.cluster.node_by_name["n1"].ip == ""  # and no node address made up either


def test_implicit_namespaces_and_nodes_are_added(tmp_path: Path) -> None:
    objs = [pod("y", "a", {}, node="n9"), policy("z", "p", {"podSelector": {}})]
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump_all(objs))])
    ns = result.cluster.namespace_by_name
    assert set(ns) == {"y", "z"} and ns["y"].implicit and ns["z"].labels == {NAMESPACE_NAME_LABEL: "z"}
    assert "n9" in result.cluster.node_by_name


def test_a_later_copy_of_an_object_replaces_the_earlier_one(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", yaml.safe_dump(pod("x", "a", {"v": "1"})))
    second = write(tmp_path / "b.yaml", yaml.safe_dump(pod("x", "a", {"v": "2"})))
    result = load_paths([first, second])
    assert [p.labels["v"] for p in result.cluster.pods] == ["2"]
    assert any("appears twice" in n for n in result.notes)


def test_without_allocation_pods_lacking_ips_are_left_out(tmp_path: Path) -> None:
    objs = [pod("x", "a", {}), pod("x", "b", {}, ip="10.244.3.3")]
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump_all(objs))], allocate_ips=False)
    assert [p.key for p in result.cluster.pods] == ["x/b"]


def test_defaults_are_applied(tmp_path: Path) -> None:
    spec = {
        "podSelector": {},
        "egress": [{"ports": [{"port": 53}, {"port": 80, "endPort": 80}]}],
    }
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump(policy("x", "p", spec)))])
    pol = result.cluster.policies[0]
    assert pol.policy_types == ("Ingress", "Egress")
    assert [(p.protocol, p.port, p.end_port) for p in pol.egress[0].ports] == [("TCP", 53, None), ("TCP", 80, None)]


def test_namespace_defaults_to_default(tmp_path: Path) -> None:
    raw = {"kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    result = load_paths([write(tmp_path / "c.yaml", yaml.safe_dump(raw))])
    assert [p.key for p in result.cluster.pods] == ["default/p"]
