"""``make azure-npm`` and ``make azure-npm-archive`` build a working single-file executable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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
    # Another CPython on this machine, if there is one: the executable refuses it at once, clearly.
    other = another_python()
    if other is not None:
        refused = subprocess.run([other, str(exe), "--help"], capture_output=True, text=True, timeout=120, env=env)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr[-2000:]
        assert "this executable was built for Python 3." in refused.stderr
        assert "make azure-npm PYTHON=" in refused.stderr
    (archive,) = out.glob("azure-npm-*-linux.tar.gz")
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["azure-npm"]
        member = tar.getmember("azure-npm")
        assert member.mode & 0o111 and member.size == exe.stat().st_size


def another_python() -> str | None:
    """A CPython 3 of another minor version than this one (on PATH or under pyenv; the
    nearest first), or None."""
    mine = sys.version_info.minor
    for minor in sorted(range(8, 16), key=lambda m: abs(m - mine)):
        if minor == mine:
            continue
        version = f"3.{minor}"
        found = shutil.which(f"python{version}")
        candidates = [found] if found and "/shims/" not in found else []  # a pyenv shim is no interpreter
        candidates += sorted(str(p) for p in Path.home().glob(f".pyenv/versions/{version}.*/bin/python{version}"))
        for candidate in candidates:
            if os.access(candidate, os.X_OK):
                return candidate
    return None


PREAMBLE = ROOT / "npm" / "cli" / "zipapp_preamble.py"
# How shiv runs a preamble: after unpacking, with the unpacked site-packages in its globals.
RUN_AS_SHIV_DOES = (
    "import runpy, sys; runpy.run_path(sys.argv[1], init_globals={'site_packages': sys.argv[2]}, run_name='__main__')"
)


def _fake_site_packages(root: Path, tag: str) -> Path:
    site = root / "site-packages"
    (site / "pydantic_core").mkdir(parents=True)
    (site / "pydantic_core" / f"_pydantic_core.{tag}-x86_64-linux-gnu.so").write_bytes(b"")
    (site / "yaml").mkdir()
    (site / "yaml" / "_yaml.abi3.so").write_bytes(b"")  # version-independent: never a reason to refuse
    return site


def test_the_executable_refuses_a_python_it_was_not_built_for_naming_both(tmp_path):
    running = sys.implementation.cache_tag  # e.g. cpython-311
    other = "cpython-310" if running != "cpython-310" else "cpython-312"
    site = _fake_site_packages(tmp_path / "other", other)
    res = subprocess.run([sys.executable, "-c", RUN_AS_SHIV_DOES, str(PREAMBLE), str(site)],
                         capture_output=True, text=True, timeout=60)
    want = f"{other[8]}.{other[9:]}"
    have = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert res.returncode == 2, res.stderr
    assert f"built for Python {want}" in res.stderr and f"is Python {have}" in res.stderr
    assert "pydantic_core/_pydantic_core" in res.stderr and f"make azure-npm PYTHON=python{have}" in res.stderr
    assert "Traceback" not in res.stderr
    # Built for this Python: nothing said, nothing stopped.
    site = _fake_site_packages(tmp_path / "same", running)
    res = subprocess.run([sys.executable, "-c", RUN_AS_SHIV_DOES, str(PREAMBLE), str(site)],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and res.stderr == ""
