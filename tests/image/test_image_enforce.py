"""``azure-npm apply`` and ``cleanup`` from the image, with exactly the DaemonSet's security
context, enforce on the node's kernel: checked with real connections between its pods."""

from __future__ import annotations

import dataclasses
import json

import pytest

from conformance.netns.container import daemonset_container
from tests.daemon import objects as o
from tests.daemon.test_daemon_kernel import ALLOW_CLIENTS_IN_X, base_objects, reach, write
from tests.image.conftest import in_container

pytestmark = [pytest.mark.image, pytest.mark.kernel]
WEB = "10.1.0.2"


def manifests(topo, tmp_path, *extra):
    directory = tmp_path / "manifests"
    directory.mkdir()
    write(directory, "cluster.yaml", o.node("n1", topo.nodes["n1"].ip), *base_objects(), *extra)
    return directory


def ours(topo) -> tuple[list[str], list[str]]:
    """Our chains (iptables-nft) and sets in the node's kernel, read from outside the container."""
    rules = topo.node_run("n1", ["iptables-nft-save", "-t", "filter"]).stdout
    sets = topo.node_run("n1", ["ipset", "list", "-n"]).stdout.split()
    return [line for line in rules.splitlines() if "AZURE-NPM" in line], [s for s in sets if s.startswith("azure-npm")]


def test_apply_then_cleanup_from_the_image_enforce_and_remove_the_policy(image, node, tmp_path):
    topo = node
    directory = manifests(topo, tmp_path, ALLOW_CLIENTS_IN_X)
    assert reach(topo, "y/client", WEB) is True  # nothing enforced yet

    applied = in_container(
        topo, image, ["apply", "-f", "/manifests", "--node-name", "n1", "-o", "json"], tmp_path / "c",
        mounts=[(directory, "/manifests")],
    )
    assert applied.returncode == 0, applied.stderr
    result = json.loads(applied.stdout)
    assert result["failures"] == [] and result["changed"]
    assert reach(topo, "y/client", WEB) is False
    assert reach(topo, "x/client", WEB) is True
    rules, sets = ours(topo)
    assert rules and sets

    cleaned = in_container(topo, image, ["cleanup"], tmp_path / "c")
    assert cleaned.returncode == 0, cleaned.stderr
    assert reach(topo, "y/client", WEB) is True
    assert ours(topo) == ([], [])


def test_without_net_admin_the_image_cannot_touch_the_kernel(image, node, tmp_path):
    # The control for the test above: the security context is really applied, and NET_ADMIN
    # is what lets the enforcer program the kernel.
    spec = daemonset_container()
    context = dict(spec.security_context)
    context["capabilities"] = {"drop": ["ALL"], "add": ["NET_RAW"]}
    weaker = dataclasses.replace(spec, security_context=context)
    directory = manifests(node, tmp_path, ALLOW_CLIENTS_IN_X)
    applied = in_container(
        node, image, ["apply", "-f", "/manifests", "--node-name", "n1"], tmp_path / "c",
        mounts=[(directory, "/manifests")], spec=weaker,
    )
    assert applied.returncode == 1
    assert reach(node, "y/client", WEB) is True
    assert ours(node) == ([], [])
