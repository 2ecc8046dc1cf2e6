"""npm-sim --kubeconfig/--context: a live cluster read through the real kubernetes client.

The cluster is the test API server (real list protocol over HTTP, list items without
``kind``, as the real server sends them); every verdict is checked against the same objects
loaded from a manifest file with ``-f``.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.daemon import objects as o
from tests.daemon.apiserver import ApiServer
from tests.sim_cli import run_npm_sim as run

CONTEXT = "test"  # the context ApiServer.kubeconfig names


def succeeded(raw: dict[str, Any]) -> dict[str, Any]:
    raw["status"]["phase"] = "Succeeded"
    return raw


OBJECTS = [
    o.namespace("prod", team="a"),
    o.namespace("dev", team="b"),
    o.node("node-a", "172.18.0.10"),
    o.node("node-b", "172.18.0.11"),
    o.pod("prod", "web", "10.244.1.2", app="web"),
    o.pod("prod", "db", "10.244.1.3", node="node-b", ports=(5432,), app="db"),
    o.pod("dev", "client", "10.244.2.2", node="node-b", app="client"),
    o.pod("dev", "pending", None, app="client"),  # no IP yet: gets a deterministic one
    succeeded(o.pod("prod", "job", "10.244.1.9", app="web")),  # finished: left out
    o.allow_from("prod", "db-from-web", {"app": "db"}, {"app": "web"}, port=5432),
    o.policy(
        "dev",
        "client-egress-to-prod",
        {
            "podSelector": {"matchLabels": {"app": "client"}},
            "policyTypes": ["Egress"],
            "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"team": "a"}}}]}],
        },
    ),
]

# Each would isolate every dev pod for ingress if it were (wrongly) half applied.
INVALID = {
    "except-outside-cidr": (
        o.policy(
            "dev",
            "bad",
            {
                "podSelector": {},
                "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/8"]}}]}],
            },
        ),
        "spec.ingress[0].from[0].ipBlock.except[0]",
    ),
    # The client's model classes reject this one outright: it must still be one located error.
    "ipblock-without-cidr": (
        o.policy("dev", "bad", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"except": ["10.1.0.0/16"]}}]}]}),
        "spec.ingress[0].from[0].ipBlock.cidr",
    ),
}


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def server() -> Iterator[ApiServer]:
    with ApiServer() as api:
        for raw in OBJECTS:
            api.put(raw)
        yield api


@pytest.fixture()
def kubeconfig(server: ApiServer, tmp_path: Path) -> Path:
    """The server's kubeconfig, with a current context that points at a closed port.

    So a run only reaches the server if ``--context`` is honoured.
    """
    path = Path(server.kubeconfig(str(tmp_path / "kubeconfig")))
    config = json.loads(path.read_text())
    config["clusters"].append({"name": "stale", "cluster": {"server": f"http://127.0.0.1:{closed_port()}"}})
    config["contexts"].append({"name": "stale", "context": {"cluster": "stale", "user": "test"}})
    config["current-context"] = "stale"
    path.write_text(json.dumps(config))
    return path


def manifest(tmp_path: Path, objects: list[dict[str, Any]]) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    return path




def connections(out: str) -> dict[tuple[str, str, int, str], bool]:
    rows = json.loads(out)["connections"]
    return {(r["src"], r["dst"], r["port"], r["protocol"]): r["allowed"] for r in rows}


def test_live_reach_matches_the_same_objects_from_a_file(kubeconfig: Path, tmp_path: Path, capsys) -> None:
    code, out, err = run(capsys, "reach", "--kubeconfig", str(kubeconfig), "--context", CONTEXT, "-o", "json")
    assert code == 0, err
    live = connections(out)
    code, out, _ = run(capsys, "reach", "-f", str(manifest(tmp_path, OBJECTS)), "-o", "json")
    assert code == 0
    assert live == connections(out)

    assert "ignored 1 pod(s) in phase Succeeded" in err
    pods = {src for src, *_ in live}
    assert pods == {"prod/web", "prod/db", "dev/client", "dev/pending"}
    assert live[("prod/web", "prod/db", 5432, "TCP")] is True
    assert live[("dev/client", "prod/db", 5432, "TCP")] is False  # db admits only app=web
    assert live[("dev/client", "prod/web", 80, "TCP")] is True  # egress to team=a
    assert live[("dev/client", "dev/pending", 80, "TCP")] is False  # no egress inside dev
    assert live[("prod/web", "dev/client", 80, "TCP")] is True  # dev is not isolated for ingress


def test_live_reach_honours_context_over_current_context(kubeconfig: Path, capsys) -> None:
    # The current context points at a closed port: only --context reaches the server.
    code, _, err = run(capsys, "reach", "--kubeconfig", str(kubeconfig), "-o", "json")
    assert code == 2
    assert "cannot read the live cluster" in err and "Traceback" not in err
    code, _, err = run(capsys, "reach", "--kubeconfig", str(kubeconfig), "--context", "nope")
    assert code == 2
    assert "cannot read the live cluster" in err and "nope" in err and "Traceback" not in err


@pytest.mark.parametrize("case", sorted(INVALID))
def test_invalid_live_policy_is_located_and_skip_invalid_analyses_the_rest(
    case: str, server: ApiServer, kubeconfig: Path, tmp_path: Path, capsys
) -> None:
    bad, field = INVALID[case]
    server.put(bad)
    live = ("reach", "--kubeconfig", str(kubeconfig), "--context", CONTEXT, "-o", "json")

    code, out, err = run(capsys, *live)
    assert code == 2 and out == ""
    located = re.search(r"^error: cluster:NetworkPolicy\[\d+\]: NetworkPolicy dev/bad: (\S+): ", err, re.M)
    assert located and located.group(1) == field, err
    assert "1 invalid input(s); fix them or use --skip-invalid" in err and "Traceback" not in err

    code, out, err = run(capsys, *live, "--skip-invalid")
    assert code == 0, err
    assert "NetworkPolicy dev/bad" in err and "analysing without the 1 invalid input(s)" in err
    skipped = connections(out)
    code, out, _ = run(capsys, "reach", "-f", str(manifest(tmp_path, OBJECTS)), "-o", "json")
    assert skipped == connections(out)
    assert skipped[("prod/web", "dev/client", 80, "TCP")] is True  # the bad policy isolated nothing


def test_unreachable_api_server_is_a_clear_error(tmp_path: Path, capsys) -> None:
    server = ApiServer(port=closed_port())  # never started: the port is closed
    path = server.kubeconfig(str(tmp_path / "kubeconfig"))
    code, out, err = run(capsys, "reach", "--kubeconfig", path, "--context", CONTEXT, "-o", "json")
    assert code == 2 and out == ""
    assert err.startswith("npm-sim: error: cannot read the live cluster: ")
    assert str(server.port) in err and "Traceback" not in err
