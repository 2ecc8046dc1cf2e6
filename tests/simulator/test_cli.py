"""npm-sim end to end: files in, tables/JSON/CSV/DOT out, exit codes and error messages."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from kube.manifests import container_port, namespace, pod, policy
from tests.sim_cli import run_npm_sim as run

OBJECTS = [
    namespace("x"),
    namespace("y"),
    pod("x", "a", {"pod": "a"}, ports=[container_port(80, name="http")]),
    pod("x", "b", {"pod": "b"}, ports=[container_port(80, name="http"), container_port(53, "UDP", "dns")]),
    pod("y", "a", {"pod": "a"}),
    policy(
        "x",
        "a-from-b",
        {
            "podSelector": {"matchLabels": {"pod": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"pod": "b"}}}]}],
        },
    ),
]


@pytest.fixture()
def manifest(tmp_path: Path) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(OBJECTS))
    return path




def test_reach_json_has_exactly_the_documented_shape(manifest: Path, capsys) -> None:
    code, out, _ = run(capsys, "reach", "-f", str(manifest), "--port", "80/TCP", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert list(data) == ["connections", "inputs"]  # the load's accounting beside the connections
    rows = data["connections"]
    assert len(rows) == 9  # every pair, a pod with itself included
    assert all(list(r) == ["src", "dst", "port", "protocol", "allowed"] for r in rows)
    verdict = {(r["src"], r["dst"]): r["allowed"] for r in rows}
    assert verdict[("x/b", "x/a")] is True
    assert verdict[("y/a", "x/a")] is False
    assert verdict[("x/a", "x/a")] is True
    assert {r["port"] for r in rows} == {80} and {r["protocol"] for r in rows} == {"TCP"}


def test_reach_without_port_uses_declared_ports(manifest: Path, capsys) -> None:
    code, out, _ = run(capsys, "reach", "-f", str(manifest), "-o", "json")
    assert code == 0
    rows = json.loads(out)["connections"]
    assert {(r["port"], r["protocol"]) for r in rows} == {(80, "TCP"), (53, "UDP")}
    assert {r["dst"] for r in rows if r["protocol"] == "UDP"} == {"x/b"}
    assert {r["dst"] for r in rows if r["port"] == 80} == {"x/a", "x/b"}


def test_reach_table_marks_allowed_denied_and_undeclared(manifest: Path, capsys) -> None:
    code, out, _ = run(capsys, "reach", "-f", str(manifest))
    assert code == 0
    blocks = out.strip().split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ["80/TCP:", "53/UDP:"]
    tcp = blocks[0].splitlines()
    header = tcp[1].split()
    assert header[-3:] == ["x/a", "x/b", "y/a"]
    rows = {line.split()[0]: line.split()[1:] for line in tcp[2:]}
    assert rows["x/b"] == [".", ".", "-"]
    assert rows["y/a"] == ["X", ".", "-"]


def test_reach_csv_and_dot(manifest: Path, capsys) -> None:
    code, out, _ = run(capsys, "reach", "-f", str(manifest), "--port", "80", "-o", "csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "src,dst,port,protocol,allowed"
    assert "y/a,x/a,80,TCP,false" in lines and "x/b,x/a,80,TCP,true" in lines
    code, out, _ = run(capsys, "reach", "-f", str(manifest), "--port", "80", "-o", "dot", "--ip", "8.8.8.8")
    assert code == 0
    assert out.startswith("digraph")
    assert '"x/b" -> "x/a" [label="80/TCP"];' in out
    assert '"y/a" -> "x/a"' not in out
    assert '"8.8.8.8" [shape=box];' in out and '"8.8.8.8" -> "x/b"' in out


def test_reach_reads_stdin(manifest: Path, capsys, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(manifest.read_text()))
    code, out, _ = run(capsys, "reach", "-f", "-", "--port", "80", "-o", "json")
    assert code == 0 and len(json.loads(out)["connections"]) == 9


def test_summary_counts_pairs(manifest: Path, capsys) -> None:
    code, out, err = run(capsys, "summary", "-f", str(manifest), "--port", "80/TCP", "-o", "json")
    assert code == 0
    data = json.loads(out)
    (row,) = data["ports"]
    assert (row["port"], row["protocol"], row["allowed"], row["denied"]) == (80, "TCP", 8, 1)
    assert data["pods"] == 3 and "seconds" in data
    assert "evaluating" in err


def test_summary_text_defaults_to_declared_ports(manifest: Path, capsys) -> None:
    code, out, _ = run(capsys, "summary", "-f", str(manifest))
    assert code == 0
    assert "80/TCP: 8 allowed" in out and "53/UDP: 8 allowed" in out


def test_explain_exit_codes_and_json(manifest: Path, capsys) -> None:
    code, out, _ = run(capsys, "explain", "-f", str(manifest), "x/b", "x/a", "--port", "80/TCP", "-o", "json")
    assert code == 0
    data = json.loads(out)
    assert data["verdict"] == "allowed"
    assert data["ingress"]["rule"] == {
        "policy": "x/a-from-b",
        "direction": "Ingress",
        "rule": 0,
        "peer": 0,
        "port": None,
    }
    code, out, _ = run(capsys, "explain", "-f", str(manifest), "y/a", "x/a", "--port", "80")
    assert code == 1
    assert "DENIED" in out and "x/a-from-b" in out
    code, out, _ = run(capsys, "explain", "-f", str(manifest), "8.8.8.8", "x/b")
    assert code == 0


def test_explain_unknown_pod_is_a_clear_error(manifest: Path, capsys) -> None:
    code, _, err = run(capsys, "explain", "-f", str(manifest), "x/nope", "x/a")
    assert code == 2
    assert "'x/nope' names no pod, workload or namespace" in err and "Traceback" not in err


def test_missing_file_is_a_clear_error(tmp_path: Path, capsys) -> None:
    code, out, err = run(capsys, "reach", "-f", str(tmp_path / "missing.yaml"))
    assert code == 2 and out == ""
    assert "missing.yaml: cannot read" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["99999", "http", "80/ICMP", "0"])
def test_bad_port_value_is_a_clear_error(manifest: Path, capsys, value: str) -> None:
    code, _, err = run(capsys, "reach", "-f", str(manifest), "--port", value)
    assert code == 2
    assert "--port" in err and "Traceback" not in err


def test_no_input_is_a_usage_error(capsys) -> None:
    code, _, err = run(capsys, "reach")
    assert code == 2 and "no input" in err


def test_invalid_objects_exit_2_listing_every_error(tmp_path: Path, capsys) -> None:
    bad = [*OBJECTS]
    bad.append(
        policy("x", "bad-cidr", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "300.0.0.0/8"}}]}]})
    )
    bad.append(policy("x", "bad-port", {"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]}))
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all(bad))
    code, out, err = run(capsys, "reach", "-f", str(path), "--port", "80")
    assert code == 2 and out == ""
    assert "NetworkPolicy x/bad-cidr: spec.ingress[0].from[0].ipBlock.cidr" in err
    assert "NetworkPolicy x/bad-port: spec.ingress[0].ports[0].port" in err


def test_skip_invalid_analyses_the_rest_and_still_lists_errors(tmp_path: Path, capsys) -> None:
    bad = [*OBJECTS, policy("x", "bad", {"podSelector": {"matchLabels": {"bad key!": "v"}}})]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump_all(bad))
    code, out, err = run(capsys, "reach", "-f", str(path), "--port", "80", "-o", "json", "--skip-invalid")
    assert code == 0
    assert len(json.loads(out)["connections"]) == 9
    assert "NetworkPolicy x/bad" in err


def test_notes_about_allocated_ips_go_to_stderr(manifest: Path, capsys) -> None:
    _, _, err = run(capsys, "summary", "-f", str(manifest), "--port", "80")
    assert "had no IP" in err


def test_help_documents_exit_codes(capsys) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "exit codes" in out
    code, out, _ = run(capsys, "explain", "--help")
    assert code == 0 and "1  explain only" in out


def test_bad_pod_cidr_is_a_clear_error(manifest: Path, capsys) -> None:
    code, _, err = run(capsys, "summary", "-f", str(manifest), "--pod-cidr", "banana")
    assert code == 2 and "not a CIDR" in err
