"""Configuration: defaults, then file, then environment, then flags; clear errors (exit 2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from npm.daemon.config import ConfigError, DaemonConfig, as_dict, load


def test_a_partial_file_keeps_the_other_defaults(tmp_path):
    path = tmp_path / "npm.yaml"
    path.write_text("reconcile_interval: 30\nlisten: 127.0.0.1:9999\n")
    cfg = load({}, path=str(path), environ={})
    assert cfg.reconcile_interval == 30.0 and cfg.listen == "127.0.0.1:9999"
    assert cfg.coalesce_window == DaemonConfig().coalesce_window


def test_precedence_is_file_then_environment_then_flags(tmp_path):
    path = tmp_path / "npm.json"
    path.write_text(json.dumps({"reconcile_interval": 30, "coalesce_window": 0.5, "node_name": "from-file"}))
    env = {"NPM_CONFIG": str(path), "NPM_COALESCE_WINDOW": "0.2", "NODE_NAME": "from-env", "NPM_POST_EVENTS": "false"}
    cfg = load({"coalesce_window": 0.05, "node_name": None}, environ=env)
    assert cfg.reconcile_interval == 30.0  # file
    assert cfg.node_name == "from-env"  # environment over file; an absent flag does not count
    assert cfg.coalesce_window == 0.05  # flag over environment
    assert cfg.post_events is False


@pytest.mark.parametrize(
    ("content", "key"),
    [
        ("reconcile_intervall: 3\n", "reconcile_intervall"),
        ("reconcile_interval: soon\n", "reconcile_interval"),
        ("reconcile_interval: -1\n", "reconcile_interval"),
        ("listen: nowhere\n", "listen"),
        ("cleanup_on_exit: 3\n", "cleanup_on_exit"),
        ("log_level: loud\n", "log_level"),
    ],
)
def test_unknown_keys_and_bad_values_name_the_key(tmp_path, content, key):
    path = tmp_path / "npm.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        load({}, path=str(path), environ={})
    assert info.value.key == key and str(path) in str(info.value)


def test_bad_environment_value_names_the_variable_key():
    with pytest.raises(ConfigError, match="environment: poll_interval"):
        load({}, environ={"NPM_POLL_INTERVAL": "fast"})


def run_start(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "npm.cli", "start", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_start_exits_2_naming_the_bad_key(tmp_path):
    path = tmp_path / "npm.yaml"
    path.write_text("coalesce_windw: 0.1\n")
    proc = run_start("--config", str(path), "--node-name", "n")
    assert proc.returncode == 2
    assert "coalesce_windw" in proc.stderr and "unknown key" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_start_without_a_node_name_exits_2(tmp_path):
    proc = run_start("--manifests", str(tmp_path), env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2 and "node_name" in proc.stderr


def test_unknown_dataplane_keys_exit_2(tmp_path):
    path = tmp_path / "npm.yaml"
    path.write_text("dataplane: {backnd: nft}\n")
    proc = run_start("--config", str(path), "--node-name", "n", "--manifests", str(tmp_path))
    assert proc.returncode == 2 and "backnd" in proc.stderr


def test_check_config_prints_the_effective_configuration_as_json(tmp_path):
    path = tmp_path / "npm.yaml"
    path.write_text("reconcile_interval: 12\n")
    proc = run_start("--config", str(path), "--listen", "127.0.0.1:1", "--check-config", "-o", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["reconcile_interval"] == 12.0 and data["listen"] == "127.0.0.1:1"


def test_check_config_text_is_a_config_file_not_python_reprs(tmp_path):
    from tests.dataplane.test_restore_and_debug import PYTHON_REPR

    path = tmp_path / "npm.yaml"
    path.write_text("reconcile_interval: 12\ndataplane: {backend: nft, retry_attempts: 3}\n")
    proc = run_start("--config", str(path), "--cleanup-on-exit", "--check-config")
    assert proc.returncode == 0, proc.stderr
    assert PYTHON_REPR.search(proc.stdout) is None, PYTHON_REPR.search(proc.stdout)
    assert "\nlisten: 0.0.0.0:10091\n" in proc.stdout and "\ncleanup_on_exit: true\n" in proc.stdout
    # The text is the effective configuration as YAML: read back, it is the same configuration.
    again = tmp_path / "effective.yaml"
    again.write_text(proc.stdout)
    assert yaml.safe_load(proc.stdout)["dataplane"] == {"backend": "nft", "retry_attempts": 3}
    assert as_dict(load({}, path=str(again), environ={})) == yaml.safe_load(proc.stdout)
