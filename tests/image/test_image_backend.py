"""Inside the container, the enforcer picks the iptables backend the node uses.

kubelet marks its backend with a chain in the mangle table (``npm/dataplane/backend.py``); here the
node's side creates that chain with iptables-nft or iptables-legacy, from outside the
container, and the enforcer in the image has to follow it."""

from __future__ import annotations

import json

import pytest

from tests.daemon.test_daemon_kernel import ALLOW_CLIENTS_IN_X, reach
from tests.image.conftest import in_container
from tests.image.test_image_enforce import WEB, manifests

pytestmark = [pytest.mark.image, pytest.mark.kernel]


def chains(topo, backend: str) -> list[str]:
    saved = topo.node_run("n1", [f"iptables-{backend}-save", "-t", "filter"]).stdout
    return sorted({line.split()[0][1:] for line in saved.splitlines() if line.startswith(":AZURE-NPM")})


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_the_image_enforces_with_the_nodes_iptables_backend(image, node, tmp_path, backend):
    topo = node
    marked = topo.node_run("n1", [f"iptables-{backend}", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT"])
    assert marked.returncode == 0, marked.stderr
    directory = manifests(topo, tmp_path, ALLOW_CLIENTS_IN_X)

    applied = in_container(
        topo, image, ["apply", "-f", "/manifests", "--node-name", "n1", "-o", "json"], tmp_path / "c",
        mounts=[(directory, "/manifests")],
    )
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["backend"] == backend
    other = "legacy" if backend == "nft" else "nft"
    assert chains(topo, backend) and not chains(topo, other)
    assert reach(topo, "y/client", WEB) is False

    # The debug tool in the image reads the same backend back.
    converted = in_container(topo, image, ["debug", "convertiptable"], tmp_path / "c")
    assert converted.returncode == 0, converted.stderr
    assert set(json.loads(converted.stdout)["chains"]) == set(chains(topo, backend))
