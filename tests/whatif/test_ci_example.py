"""The example pull-request pipeline (examples/ci/): its script, run on the sample repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "ci"
SCHEMA = json.loads((ROOT / "tests" / "sarif" / "sarif-2.1.0-rtm.5.json").read_text())


def gate(tmp_path: Path, base: str, pr: str, *extra: str) -> tuple[subprocess.CompletedProcess, str, Path]:
    summary = tmp_path / "summary.md"
    env = {**os.environ, "OUT": str(tmp_path / "out"), "GITHUB_STEP_SUMMARY": str(summary),
           "NPM_SIM": f"{sys.executable} -m simulator.cli", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(["bash", str(EXAMPLE / "policy-gate.sh"), str(EXAMPLE / "sample" / base),
                           str(EXAMPLE / "sample" / pr), *extra], capture_output=True, text=True, env=env, timeout=300)
    return proc, summary.read_text() if summary.exists() else "", tmp_path / "out"


def test_the_sample_pull_request_breaks_an_assertion_and_the_gate_says_where(tmp_path: Path) -> None:
    proc, summary, out = gate(tmp_path, "base", "pr", "network-assertions.yaml")
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Assertions broken by this change: 1 of 3" in summary
    assert "payments/reporting[Deployment]" in summary and "FAIL storefront never reaches" in summary
    annotations = [line for line in proc.stdout.splitlines() if line.startswith("::")]
    # repository-relative files, the line of the responsible object
    assert "::error file=network-assertions.yaml,line=2,title=assertion-broken::" in proc.stdout
    assert any(a.startswith("::warning file=manifests/reporting.yaml,line=1,title=connection-gained::")
               for a in annotations)
    assert any("file=manifests/policies.yaml" in a and "storefront/frontend[Deployment] -> payments/postgres" in a
               for a in annotations)
    for name in ("npm-sim-diff.sarif", "npm-sim-lint.sarif"):
        log = json.loads((out / name).read_text())
        jsonschema.Draft4Validator(SCHEMA).validate(log)
        assert log["runs"][0]["results"]
    diff = json.loads((out / "npm-sim-diff.sarif").read_text())
    assert {r["ruleId"] for r in diff["runs"][0]["results"]} == {"connection-gained", "assertion-broken"}


def test_a_pull_request_that_changes_nothing_passes(tmp_path: Path) -> None:
    proc, summary, _out = gate(tmp_path, "base", "base", "network-assertions.yaml")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "**+0** gained, **-0** lost" in summary and "2 of 2 assertion(s) hold" in summary


def test_bad_input_exits_2(tmp_path: Path) -> None:
    proc, _summary, _out = gate(tmp_path, "base", "pr", "no-such-assertions.yaml")
    assert proc.returncode == 2


def test_the_workflow_runs_the_script_and_uploads_both_sarif_files() -> None:
    workflow = yaml.safe_load((EXAMPLE / "network-policy.yaml").read_text())
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as true
    assert workflow["permissions"]["security-events"] == "write"
    steps = workflow["jobs"]["gate"]["steps"]
    runs = " ".join(s.get("run", "") for s in steps)
    assert "ci/policy-gate.sh base pr network-assertions.yaml" in runs
    uploads = [s["with"]["sarif_file"] for s in steps
               if s.get("uses", "").startswith("github/codeql-action/upload-sarif")]
    assert sorted(uploads) == ["npm-sim-out/npm-sim-diff.sarif", "npm-sim-out/npm-sim-lint.sarif"]
    assert all("@" in s["uses"] for s in steps if "uses" in s)  # actions are pinned to a version


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_script_is_shellcheck_clean() -> None:
    proc = subprocess.run(["shellcheck", str(EXAMPLE / "policy-gate.sh")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
