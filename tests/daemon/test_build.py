"""``make azure-npm`` and ``make azure-npm-archive`` build a working single-file executable."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.conftest import running_in_user_namespace

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.skipif(running_in_user_namespace(), reason="the build fetches from PyPI: a rootless run has no network")
def test_make_builds_an_executable_and_an_archive(tmp_path):
    out = tmp_path / "output"
    env = {**os.environ, "SHIV_ROOT": str(tmp_path / "shiv")}
    build = subprocess.run(
        ["make", "-C", str(ROOT), "azure-npm-archive", f"OUTPUT={out}"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert build.returncode == 0, build.stdout[-2000:] + build.stderr[-2000:]
    exe = out / "azure-npm"
    assert os.access(exe, os.X_OK)
    helped = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert helped.returncode == 0 and "start" in helped.stdout
    started = subprocess.run([str(exe), "start", "--help"], capture_output=True, text=True, timeout=120, env=env)
    assert started.returncode == 0 and "--manifests" in started.stdout
    # The executable loads the kubernetes client (with its compiled dependencies) too.
    checked = subprocess.run(
        [str(exe), "start", "--check-config", "-o", "json"], capture_output=True, text=True, timeout=120, env=env
    )
    assert checked.returncode == 0, checked.stderr
    probe = subprocess.run(
        ["python3", str(exe), "start", "--node-name", "n", "--kubeconfig", "/nonexistent", "--listen", "127.0.0.1:0"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert probe.returncode in (1, 2) and "Traceback" not in probe.stderr, probe.stderr[-2000:]
    (archive,) = out.glob("azure-npm-*-linux.tar.gz")
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["azure-npm"]
        member = tar.getmember("azure-npm")
        assert member.mode & 0o111 and member.size == exe.stat().st_size
