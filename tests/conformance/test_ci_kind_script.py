"""The kind CI job: scripts/ci-kind.sh linted and dry-run, the workflow that calls it, the pinned kindnet.

kind and docker are not needed: the script's dry run prints its commands without running
any, and the tests read the order and arguments from that output.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conformance.kindnet import DEFAULT_MANIFEST, KINDNET_ENV, KINDNET_VERSION, kindnet_without_policy

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "ci-kind.sh"
WORKFLOW = ROOT / ".github" / "workflows" / "conformance-kind.yaml"
FULL_VERSION = re.compile(r"v\d+\.\d+\.\d+")
# What the dry run may call: the shell's own helpers, none of the tools that do the work.
DRY_RUN_TOOLS = ("bash", "dirname", "mktemp", "rm", "awk")


def dry_run(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> list[list[str]]:
    """The commands a dry run prints, split as the shell would, with kind, kubectl, docker,
    python3 and nox off PATH: a command the dry run really ran would fail it."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in DRY_RUN_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is needed to run the script"
        (bin_dir / tool).symlink_to(found)
    base = {k: v for k, v in os.environ.items() if k not in (KINDNET_ENV, "DRY_RUN", "CLUSTER_NAME")}
    proc = subprocess.run(
        [str(SCRIPT), *args],
        env={**base, "PATH": str(bin_dir), **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(line.startswith("+ ") for line in lines), proc.stdout
    return [shlex.split(line[2:]) for line in lines]


def position(commands: list[list[str]], *prefix: str) -> int:
    """Index of the one command starting with ``prefix``."""
    found = [i for i, argv in enumerate(commands) if argv[: len(prefix)] == list(prefix)]
    assert len(found) == 1, f"{prefix} in {commands}"
    return found[0]


def option(argv: list[str], name: str) -> str:
    """The value of ``--name VALUE`` or ``--name=VALUE`` in ``argv``."""
    for i, arg in enumerate(argv):
        if arg == name:
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} not in {argv}")


def test_script_is_valid_bash():
    proc = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_script_is_shellcheck_clean():
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("how", ["flag", "env"])
def test_dry_run_creates_then_applies_pinned_kindnet_then_waits_for_ready_nodes_then_runs_the_suite(tmp_path, how):
    commands = dry_run(tmp_path, "--dry-run") if how == "flag" else dry_run(tmp_path, env={"DRY_RUN": "1"})
    create = position(commands, "kind", "create", "cluster")
    convert = position(commands, "python3", "-m", "conformance.kindnet")
    apply = next(i for i, argv in enumerate(commands) if "apply" in argv and argv[0] == "kubectl")
    wait = next(i for i, argv in enumerate(commands) if "wait" in argv and argv[0] == "kubectl")
    suite = position(commands, "python3", "-m", "nox", "-s", "conformance")
    delete = position(commands, "kind", "delete", "cluster")
    assert create < convert < apply < wait < suite < delete

    # No node is Ready before kindnet runs: kind must not wait for that.
    assert not [arg for arg in commands[create] if arg.startswith("--wait")]
    assert option(commands[create], "--config") == "kind-config/cluster.yaml"
    # kindnet from the pinned copy, policy switched off, is what gets applied.
    assert Path(ROOT / option(commands[convert], "--from")) == DEFAULT_MANIFEST
    assert option(commands[apply], "-f") == option(commands[convert], "--out")
    assert commands[wait][commands[wait].index("wait") :][:4] == ["wait", "--for=condition=Ready", "nodes", "--all"]
    assert re.fullmatch(r"\d+[sm]", option(commands[wait], "--timeout"))
    # The suite runs on this cluster (reused by the kind backend, not created again).
    name = option(commands[create], "--name")
    run = commands[suite][commands[suite].index("--") :]
    assert option(run, "--backend") == "kind"
    assert option(run, "--kind-cluster") == name
    assert option(commands[delete], "--name") == name


def test_dry_run_passes_extra_arguments_to_the_suite_and_takes_manifest_override(tmp_path):
    commands = dry_run(
        tmp_path,
        "--dry-run",
        "--",
        "--tag",
        "upstream",
        env={KINDNET_ENV: "https://example.test/kindnet.yaml", "CLUSTER_NAME": "c2"},
    )
    convert = commands[position(commands, "python3", "-m", "conformance.kindnet")]
    assert option(convert, "--from") == "https://example.test/kindnet.yaml"
    suite = commands[position(commands, "python3", "-m", "nox", "-s", "conformance")]
    assert suite[-2:] == ["--tag", "upstream"]
    assert option(suite, "--kind-cluster") == "c2"
    assert option(commands[position(commands, "kind", "create", "cluster")], "--name") == "c2"


def test_script_refuses_unknown_arguments(tmp_path):
    proc = subprocess.run([str(SCRIPT), "--dry-rn"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--dry-rn" in proc.stderr


def test_workflow_runs_the_script_with_pinned_actions_and_kind():
    workflow = yaml.safe_load(WORKFLOW.read_text())
    (job,) = workflow["jobs"].values()
    assert isinstance(job["timeout-minutes"], int)
    steps = job["steps"]
    for step in steps:
        if "uses" in step:
            action, _, version = step["uses"].partition("@")
            assert FULL_VERSION.fullmatch(version), f"{action} is not pinned to a full version: {step['uses']}"
    runs = [step.get("run", "") for step in steps]
    assert any("scripts/ci-kind.sh" in run for run in runs)
    # The suite runs only through the script, so that what the tests dry-run is what CI does.
    assert not any("nox -s conformance" in run for run in runs)
    kind_version = job["env"]["KIND_VERSION"]
    assert FULL_VERSION.fullmatch(kind_version)
    (install,) = [run for run in runs if "sigs.k8s.io/kind@" in run]
    assert "sigs.k8s.io/kind@${KIND_VERSION}" in install


def test_pinned_kindnet_manifest_names_its_release_source_and_license():
    text = DEFAULT_MANIFEST.read_text()
    header = text.split("\n---", 1)[0]
    assert f"github.com/kubernetes-sigs/kindnet/blob/{KINDNET_VERSION}/install-kindnet.yaml" in header
    assert "Apache License 2.0" in header
    (daemonset,) = [d for d in yaml.safe_load_all(text) if d and d["kind"] == "DaemonSet"]
    images = {c["image"] for c in daemonset["spec"]["template"]["spec"]["containers"]}
    assert images == {f"registry.k8s.io/networking/kindnet:{KINDNET_VERSION}"}


def test_pinned_kindnet_manifest_applied_without_policy_enforcement():
    applied = yaml.safe_load_all(kindnet_without_policy(DEFAULT_MANIFEST.read_text()))
    (daemonset,) = [d for d in applied if d and d["kind"] == "DaemonSet"]
    (kindnetd,) = daemonset["spec"]["template"]["spec"]["containers"]
    flags = [arg for arg in kindnetd["command"] if arg.startswith("--network-policy")]
    assert flags == ["--network-policy=false"]
