"""npm-sim diff / what-if / lint / exposure end to end: JSON shape, exit codes, markdown, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from whatif_helpers import ALLOW_DB, BASE, run, write

from kube.manifests import policy


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    deny_y = policy("y", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    return {
        "before": write(tmp_path / "before.yaml", BASE),
        "after": write(tmp_path / "after.yaml", [o for o in BASE if o["metadata"]["name"] != "allow-web"] + [ALLOW_DB]),
        "allow_db": write(tmp_path / "allow-db.yaml", [ALLOW_DB]),
        "deny_y": write(tmp_path / "deny-y.yaml", [deny_y]),
    }


def test_diff_json_has_gained_and_lost_and_the_inputs_beside_them(capsys, files) -> None:
    code, out, err = run(capsys, "diff", "--before", files["before"], "--after", files["after"], "-o", "json")
    assert code == 0, err
    data = json.loads(out)
    assert set(data) == {"gained", "lost", "inputs"}
    assert set(data["inputs"]) == {"before", "after"} and data["inputs"]["after"]["used"]["Pod"] == 4
    assert {(c["src"], c["dst"], c["port"]) for c in data["gained"]} == {
        ("x/web-1", "x/db-1", 5432), ("x/web-2", "x/db-1", 5432)}
    assert {(c["src"], c["dst"], c["port"], tuple(c["because"])) for c in data["lost"]} == {
        ("y/client-1", "x/web-1", 80, ("x/allow-web ingress[0]",)),
        ("y/client-1", "x/web-2", 80, ("x/allow-web ingress[0]",))}


@pytest.mark.parametrize(("fail_on", "code"), [("gained", 1), ("lost", 0), ("any", 1), (None, 0)])
def test_whatif_fail_on_exit_codes_when_only_gaining(capsys, files, fail_on, code) -> None:
    argv = ["what-if", "-f", files["before"], "--apply", files["allow_db"], "-o", "json"]
    got, out, err = run(capsys, *argv, *(["--fail-on", fail_on] if fail_on else []))
    assert got == code, err
    assert len(json.loads(out)["gained"]) == 2


@pytest.mark.parametrize(("fail_on", "code"), [("gained", 0), ("lost", 1), ("any", 1)])
def test_whatif_fail_on_exit_codes_when_only_losing(capsys, files, fail_on, code) -> None:
    got, _, err = run(capsys, "what-if", "-f", files["before"], "--apply", files["deny_y"], "--fail-on", fail_on)
    assert got == code, err


def test_whatif_delete_equals_diff_of_written_state(capsys, files) -> None:
    _, a, _ = run(capsys, "what-if", "-f", files["before"], "--apply", files["allow_db"],
                  "--delete", "NetworkPolicy/x/allow-web", "-o", "json")
    _, b, _ = run(capsys, "diff", "--before", files["before"], "--after", files["after"], "-o", "json")
    same = ("gained", "lost")  # the inputs differ: one overlay, one file
    assert {k: json.loads(a)[k] for k in same} == {k: json.loads(b)[k] for k in same}


def test_whatif_reports_incremental_mode(capsys, files) -> None:
    _, _, err = run(capsys, "what-if", "-f", files["before"], "--apply", files["allow_db"])
    assert "incremental re-evaluation of x" in err


def test_markdown_is_a_pr_comment(capsys, files) -> None:
    code, out, _ = run(capsys, "diff", "--before", files["before"], "--after", files["after"], "-o", "markdown")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "### NetworkPolicy diff: **+2** gained, **-2** lost connections"
    assert "Policies: `+ x/allow-db`, `- x/allow-web`" in lines
    rows = [line for line in lines if line.startswith("| **")]
    assert rows == [
        "| **+** | `x/app=web` | `x/app=db` | 5432/TCP | 2 → 1 (2) | `x/allow-db ingress[0]` |",
        "| **-** | `y/app=client` | `x/app=web` | 80/TCP | 1 → 2 (2) | `x/allow-web ingress[0]` |",
    ]


def test_text_groups_by_workload(capsys, files) -> None:
    _, out, _ = run(capsys, "diff", "--before", files["before"], "--after", files["after"])
    assert "2 connection(s) gained, 2 lost" in out
    assert "- y/app=client -> x/app=web on 80/TCP: 2 connection(s) (1 source pod(s), 2 destination pod(s))" in out


def test_bad_delete_and_missing_object_are_usage_errors(capsys, files) -> None:
    code, _, err = run(capsys, "what-if", "-f", files["before"], "--delete", "Deployment/x/web")
    assert code == 2 and "unknown kind" in err
    code, _, err = run(capsys, "what-if", "-f", files["before"], "--delete", "NetworkPolicy/x/nope")
    assert code == 2 and "NetworkPolicy x/nope" in err and "no such object" in err
    code, _, err = run(capsys, "what-if", "-f", files["before"])
    assert code == 2 and "nothing to change" in err


def test_namespace_delete_removes_its_pods(capsys, files) -> None:
    code, out, _ = run(capsys, "what-if", "-f", files["before"], "--delete", "ns/y", "-o", "json")
    data = json.loads(out)
    assert code == 0 and not data["gained"]
    assert {c["src"] for c in data["lost"]} | {c["dst"] for c in data["lost"]} >= {"y/client-1"}
    assert all("pod y/client-1 deleted" in c["because"] for c in data["lost"])


def test_lint_cli_json_and_fail_on(capsys, files) -> None:
    code, out, _ = run(capsys, "lint", "-f", files["before"], "-o", "json")
    data = json.loads(out)
    assert code == 0 and data["counts"] == {"info": 0, "warning": 1, "error": 0}
    assert data["findings"][0]["kind"] == "unprotected-namespace"
    assert run(capsys, "lint", "-f", files["before"], "--fail-on", "warning")[0] == 1
    assert run(capsys, "lint", "-f", files["before"], "--fail-on", "error")[0] == 0


def test_exposure_cli(capsys, files) -> None:
    code, out, _ = run(capsys, "exposure", "-f", files["before"], "--from", "y/client-1", "-o", "json")
    data = json.loads(out)
    assert code == 0 and data["from"] == "y/client-1"
    assert {t["pod"] for t in data["one_hop"]["targets"]} == {"x/web-1", "x/web-2"}
    code, _, err = run(capsys, "exposure", "-f", files["before"], "--from", "x/nope")
    assert code == 2 and "names no pod, workload or namespace" in err
    code, out, _ = run(capsys, "exposure", "-f", files["before"], "-o", "dot")
    assert out.startswith("digraph exposure") and '"y/client-1" -> "x/web-1"' in out


def test_help_lists_the_new_commands(capsys) -> None:
    code, out, _ = run(capsys, "--help")
    assert code == 0
    for name in ("diff", "what-if", "lint", "exposure"):
        assert name in out


def test_diff_dot_colours_gained_and_lost(capsys, files) -> None:
    code, out, _ = run(capsys, "diff", "--before", files["before"], "--after", files["after"], "-o", "dot")
    assert code == 0 and out.startswith("digraph diff")
    assert '"x/web-1" -> "x/db-1" [color=darkgreen, label="+ 5432/TCP"];' in out
    assert '"y/client-1" -> "x/web-2" [color=red3, label="- 80/TCP"];' in out
