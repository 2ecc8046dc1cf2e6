"""The daemon's HTTP port is open to every pod: no client behaviour may stop enforcement."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.daemon.test_daemon_kernel import (
    LISTEN,
    base_objects,
    http_get,
    node,  # noqa: F401  (fixture)
    start_daemon,
    stop,
    wait_until,
    write,
)

pytestmark = pytest.mark.kernel
ATTACKS = Path(__file__).with_name("http_attacks.py")


def thread_count(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_daemon_survives_hangups_idle_trickling_and_http09_clients(node, tmp_path):  # noqa: F811
    topo = node
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    write(manifests, "base.yaml", *base_objects())
    log = tmp_path / "daemon.log"
    daemon = start_daemon(topo, "--manifests", str(manifests), log=log)
    try:
        wait_until(lambda: http_get(topo, "/readyz")[0] == 200, 30, "ready", log)
        threads_before = thread_count(daemon.pid)
        host, port = LISTEN.split(":")
        proc = topo.node_run("n1", [sys.executable, str(ATTACKS), host, port], timeout=60)
        assert proc.returncode == 0, proc.stderr
        seen = json.loads(proc.stdout)

        assert daemon.poll() is None, log.read_text()[-2000:]  # clients that hang up never kill it
        assert seen["healthz_after_hangups"] == 200
        assert seen["healthz_while_held"] == 200  # 200 held connections do not starve the probe
        # refused at once, not left to the read timeout
        assert seen["http09_closed_after"] is not None and seen["http09_closed_after"] < 3.0
        assert seen["idle_still_open"] == 0 and seen["idle_closed_after_max"] < 7.0  # read timeout
        assert seen["trickle_closed_after"] is not None and seen["trickle_closed_after"] < 11.5  # deadline
        assert seen["healthz_after"] == 200
        assert thread_count(daemon.pid) <= threads_before + 2  # nothing left holding a thread
        assert "Traceback" not in log.read_text()
    finally:
        assert stop(daemon) == 0
