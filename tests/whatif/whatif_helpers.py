"""Shared builders for the what-if tests: small clusters as raw objects, a CLI runner."""

from __future__ import annotations

from pathlib import Path

import yaml

from kube.manifests import container_port, namespace, pod, policy
from tests.sim_cli import run_npm_sim

WEB = [container_port(80, name="http")]
DB = [container_port(5432, name="pg")]

BASE = [
    namespace("x", {"team": "a"}),
    namespace("y", {"team": "b"}),
    pod("x", "web-1", {"app": "web"}, ports=WEB),
    pod("x", "web-2", {"app": "web"}, ports=WEB),
    pod("x", "db-1", {"app": "db"}, ports=DB),
    pod("y", "client-1", {"app": "client"}, ports=WEB),
    policy("x", "deny-all", {"podSelector": {}}),
    policy("x", "allow-web", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "b"}}}], "ports": [{"port": "http"}]}],
    }),
]

ALLOW_DB = policy("x", "allow-db", {
    "podSelector": {"matchLabels": {"app": "db"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 5432}]}],
})


def write(path: Path, objects: list) -> str:
    path.write_text(yaml.safe_dump_all(objects))
    return str(path)


run = run_npm_sim  # the what-if tests' name for it
