"""An in-memory dataplane that records what the controller asks of it.

It implements the two methods the controller calls (``apply``, ``reconcile``) and nothing
of the kernel side: it is for testing the controller's own logic (sync, coalescing,
deletes, failed-closed reporting). Enforcement itself is tested against the real
``npm.dataplane.enforcer.Enforcer`` in network namespaces.
"""

from __future__ import annotations

import threading
import time

from kube.model import Cluster
from npm.dataplane.enforcer import ApplyResult


class RecordingDataplane:
    """Keeps every desired state it is given; can be told to fail or to fail policies closed."""

    def __init__(self) -> None:
        self.applied: list[Cluster] = []
        self.apply_times: list[float] = []
        self.reconciles = 0
        self.cleaned = False
        self.fail_next = 0  # raise on the next N applies
        self.unenforceable: dict[str, str] = {}  # policy key -> reason, reported when present
        self.threads: set[str] = set()
        self.changed = threading.Condition()

    def apply(self, cluster: Cluster) -> ApplyResult:
        self.threads.add(threading.current_thread().name)
        if self.fail_next:
            self.fail_next -= 1
            raise RuntimeError("injected apply failure")
        with self.changed:
            self.applied.append(cluster)
            self.apply_times.append(time.monotonic())
            self.changed.notify_all()
        keys = {p.key for p in cluster.policies} | {f"cnp:{p.name}" for p in cluster.cluster_policies}
        return ApplyResult(
            changed=True,
            counts={"policies": len(cluster.policies), "iptables_rules": 3 * len(cluster.policies),
                    "ipsets": len(cluster.namespaces), "ipset_entries": len(cluster.pods)},
            latencies=[("iptables-nft", 0.01), ("ipset", 0.002)],
            unenforceable=[(k, r) for k, r in self.unenforceable.items() if k in keys],
            backend="recorded",
        )

    def reconcile(self) -> ApplyResult:
        self.threads.add(threading.current_thread().name)
        self.reconciles += 1
        return ApplyResult(backend="recorded")

    def cleanup(self) -> None:
        self.cleaned = True

    @property
    def last(self) -> Cluster:
        return self.applied[-1]

    def wait_for(self, predicate, timeout: float = 10.0) -> Cluster:  # type: ignore[no-untyped-def]
        """Wait until the last applied state satisfies ``predicate``; returns it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (self.applied and predicate(self.applied[-1])):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    state = self.applied[-1] if self.applied else None
                    raise AssertionError(f"condition not met within {timeout}s; last applied: {state}")
                self.changed.wait(remaining)
            return self.applied[-1]
