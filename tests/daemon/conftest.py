"""Fixtures: the test API server and an in-process daemon wired to a dataplane."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from npm.daemon.config import DaemonConfig
from npm.daemon.daemon import Daemon
from tests.daemon.apiserver import ApiServer
from tests.daemon.recorder import RecordingDataplane

FAST = DaemonConfig(
    node_name="node-a",
    listen="127.0.0.1:0",
    debug_listen="127.0.0.1:0",
    coalesce_window=0.05,
    reconcile_interval=60.0,
    poll_interval=0.05,
    watch_timeout=30.0,
    backoff_initial=0.05,
    backoff_max=0.3,
)


@pytest.fixture
def apiserver() -> Iterator[ApiServer]:
    server = ApiServer(bookmark_interval=0.5).start()
    yield server
    server.stop()


def api_client_for(server: ApiServer) -> Any:
    """A real kubernetes ApiClient configured for the test server."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = server.url
    return client.ApiClient(configuration)


@pytest.fixture
def start_daemon() -> Iterator[Callable[..., tuple[Daemon, RecordingDataplane]]]:
    daemons: list[Daemon] = []

    def start(server: ApiServer | None = None, **overrides: Any) -> tuple[Daemon, RecordingDataplane]:
        dataplane = overrides.pop("dataplane", None) or RecordingDataplane()
        cfg = replace(FAST, **overrides)
        daemon = Daemon(cfg, dataplane, api=api_client_for(server) if server else None)
        daemon.start()
        daemons.append(daemon)
        return daemon, dataplane

    yield start
    for daemon in daemons:
        daemon.shutdown()
