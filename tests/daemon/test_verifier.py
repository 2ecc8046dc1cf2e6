"""The daemon's verifier: what it checks, when it skips, and what a disagreement sets off."""

from __future__ import annotations

import threading

from kube import manifests as m
from npm.daemon.metrics import Metrics
from npm.daemon.verifier import Verifier


class FakeController:
    """The two things the verifier reads from the controller, and the reconcile it may ask for."""

    def __init__(self, cluster) -> None:  # type: ignore[no-untyped-def]
        self.kernel_lock = threading.Lock()
        self.applied_cluster = cluster
        self.reconciles = 0

    def applied_version(self) -> int:
        return 7

    def request_reconcile(self) -> None:
        self.reconciles += 1


def test_nothing_applied_yet_and_a_cluster_over_the_pod_cap_are_skipped_and_said() -> None:
    metrics = Metrics()
    v = Verifier(FakeController(None), "iptables", metrics=metrics, max_pods=1)
    assert v.check()["skipped"] == "nothing applied yet"
    cluster = m.cluster_of([m.namespace("x"), m.pod("x", "a", {}, ip="10.244.0.2"),
                            m.pod("x", "b", {}, ip="10.244.0.3")])
    v = Verifier(FakeController(cluster), "iptables", metrics=metrics, max_pods=1)
    doc = v.check(periodic=True)
    assert doc["agrees"] is None and "over verify_max_pods (1)" in doc["skipped"]
    assert v.status.skipped and v.status.runs == 1
    assert 'npm_verify_runs_total{result="skipped"} 2.0' in metrics.render().decode()


def test_an_unreadable_kernel_is_an_error_not_an_agreement() -> None:
    cluster = m.cluster_of([m.namespace("x"), m.pod("x", "a", {}, ip="10.244.0.2")])

    class Broken:
        def run(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            raise OSError("no kernel here")

    v = Verifier(FakeController(cluster), "nftables", runner=Broken())
    doc = v.check()
    assert doc["agrees"] is None and "cannot read the kernel" in doc["error"] and v.status.error
