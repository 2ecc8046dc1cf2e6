"""The enforcer's container image: built once per session, run as the DaemonSet runs it.

The image under test is the one ``npm/azure-npm.yaml`` names, built by ``make
azure-npm-image`` from this checkout (reused at once when its sources are unchanged). Every
container runs with the DaemonSet's security context, limits, volumes and environment
(``conformance.netns.container``), in the network namespace of a virtual node built by
``conformance.netns.topology``, and is probed with real connections between its pods.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from conformance.netns.container import DaemonSetContainer, daemonset_container, engine_env, run_prefix, unavailable
from tests.daemon.test_daemon_kernel import daemon_node

ROOT = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT = 900  # a cold build (debootstrap, every wheel) takes 1.5 min here; reruns take a second


@pytest.fixture(scope="session")
def image() -> str:
    """The DaemonSet's image, built from this checkout."""
    why = unavailable()
    if why:
        pytest.skip(f"container image tests: {why}")
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    name = daemonset_container().image
    repo, tag = name.rsplit(":", 1)
    started = time.monotonic()
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "azure-npm-image", f"IMAGE={repo}", f"VERSION={tag}", f"PYTHON={sys.executable}"],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT,
    )
    if proc.returncode != 0:
        pytest.fail(f"make azure-npm-image failed:\n{(proc.stdout + proc.stderr)[-4000:]}", pytrace=False)
    print(f"make azure-npm-image: {time.monotonic() - started:.1f} s", file=sys.stderr)
    return name


@pytest.fixture
def node() -> Iterator[Any]:
    """Node n1 with the daemon tests' pods, serving TCP 80 (``tests/daemon/test_daemon_kernel.py``)."""
    with daemon_node() as topo:
        yield topo


def in_container(
    topo: Any,
    image: str,
    args: Sequence[str],
    scratch: Path,
    *,
    mounts: Sequence[tuple[Path, str]] = (),
    spec: DaemonSetContainer | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the image in node n1's namespace as the DaemonSet would (or as ``spec`` says), with
    ``args``; wait for it."""
    netns = topo.nodes["n1"].netns
    prefix = run_prefix(netns, node_name="n1", scratch=scratch, image=image, mounts=mounts, spec=spec)
    return subprocess.run([*prefix, *args], capture_output=True, text=True, env=engine_env(), timeout=timeout)


def in_image(image: str, script: str, scratch: Path) -> str:
    """Output of a shell script in the image (no network, the DaemonSet's security context)."""
    prefix = run_prefix(None, node_name="n1", scratch=scratch, image=image, entrypoint="sh")
    proc = subprocess.run([*prefix, "-c", script], capture_output=True, text=True, env=engine_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
