"""SARIF and GitHub annotations from lint and check, the SARIF validated against the official schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml
from test_check_assertions import CLUSTER, NEVER, files
from whatif_helpers import run

from kube import manifests as m

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "sarif" / "sarif-2.1.0-rtm.5.json").read_text())
OPENED = [*CLUSTER, m.policy("payments", "db-from-all", {
    "podSelector": {"matchLabels": {"app": "postgres"}}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})]


def valid_sarif(text: str) -> dict:
    log = json.loads(text)
    jsonschema.Draft4Validator(SCHEMA).validate(log)  # the official schema is draft-04
    return log


def test_lint_sarif_validates_and_points_at_the_policy_file(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump_all([m.namespace("x"), m.pod("x", "a", {"app": "a"}, ip="10.244.0.5"),
                                        m.policy("x", "ghost", {"podSelector": {"matchLabels": {"app": "nope"}}})]))
    code, out, err = run(capsys, "lint", "-f", str(path), "-o", "sarif")
    assert code == 0, err
    log = valid_sarif(out)
    results = log["runs"][0]["results"]
    ghost = [r for r in results if r["ruleId"] == "selects-no-pod"]
    assert ghost and ghost[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == str(path)
    assert {r["id"] for r in log["runs"][0]["tool"]["driver"]["rules"]} >= {"selects-no-pod"}


def test_check_sarif_and_github_annotations_name_the_broken_assertion(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    c, a = files(tmp_path, [NEVER], OPENED)
    code, out, _err = run(capsys, "check", "-f", c, "--assertions", a, "-o", "sarif")
    assert code == 1
    (result,) = valid_sarif(out)["runs"][0]["results"]
    assert result["ruleId"] == "assertion" and NEVER["name"] in result["message"]["text"]
    code, out, _err = run(capsys, "check", "-f", c, "--assertions", a, "-o", "github")
    assert code == 1
    (line,) = out.splitlines()
    assert line.startswith(f"::error file={a},title=assertion::") and "payments/db-from-all" in line


def test_every_lint_kind_has_a_summary_for_sarif() -> None:
    import re

    from simulator.lint_kinds import KINDS, SUMMARIES

    assert set(re.findall(r"^- ``([a-z-]+)``", KINDS, re.M)) == set(SUMMARIES)
