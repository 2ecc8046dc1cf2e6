"""``azure-npm start --manifests DIR`` from the image, in the node's network namespace (as
hostNetwork runs it): probes answer, metrics are served, a policy written to DIR reaches the
kernel, and SIGTERM stops it leaving the rules in force (the ConfigMap's cleanup_on_exit)."""

from __future__ import annotations

import subprocess

import pytest

from conformance.netns.container import daemonset_container, engine_env, run_prefix
from tests.daemon import objects as o
from tests.daemon.test_daemon_kernel import (
    ALLOW_CLIENTS_IN_X,
    base_objects,
    http_get,
    metric,
    reach,
    stop,
    wait_until,
    write,
)

pytestmark = [pytest.mark.image, pytest.mark.kernel]
WEB = "10.1.0.2"
PORT = 10091  # the DaemonSet's probes and metrics port


def test_daemon_from_the_image_is_ready_serves_metrics_and_enforces_a_written_policy(image, node, tmp_path):
    topo = node
    directory = tmp_path / "manifests"
    directory.mkdir()
    write(directory, "cluster.yaml", o.node("n1", topo.nodes["n1"].ip), *base_objects())
    spec = daemonset_container()
    argv = [
        *run_prefix(topo.nodes["n1"].netns, node_name="n1", scratch=tmp_path / "c", image=image,
                    mounts=[(directory, str(directory))]),
        *spec.args, "--manifests", str(directory), "--node-name", "n1",
    ]
    log = tmp_path / "daemon.log"
    with open(log, "wb") as fh:
        daemon = topo.host_popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=engine_env())
    address = f"{topo.nodes['n1'].ip}:{PORT}"  # where the kubelet probes a hostNetwork pod

    wait_until(lambda: http_get(topo, "/readyz", address)[0] == 200, 60, "ready", log)
    assert http_get(topo, "/healthz", address)[0] == 200
    status, body = http_get(topo, "/metrics", address)
    assert status == 200
    assert metric(body, "npm_num_policies") == 0 and metric(body, "npm_pods_watched") == 3
    assert reach(topo, "y/client", WEB) is True

    write(directory, "policy.yaml", ALLOW_CLIENTS_IN_X)
    wait_until(lambda: reach(topo, "y/client", WEB) is False, 10, "the written policy enforced", log)
    assert reach(topo, "x/client", WEB) is True
    assert metric(http_get(topo, "/metrics", address)[1], "npm_num_policies") == 1

    assert stop(daemon) == 0, log.read_text()[-2000:]
    assert reach(topo, "y/client", WEB) is False
