"""Translation validation in the daemon: ``azure-npm verify`` on this node, periodically and on
``/npm/v1/debug/verify``.

The check compares the kernel with the objects the controller last applied, so both must be
read with no apply in between: the kernel is read under the controller's kernel lock (held by
the controller for every apply and reconcile; reading takes one ``iptables-save`` and one
``ipset save``, or one ``nft list``), together with the version and cluster of the last
apply. The comparison itself runs afterwards, off the controller's thread.

A disagreement sets ``npm_verify_mismatches``, posts a ``VerifyMismatch`` Event on the node
and asks the controller to reconcile (which repairs drift such as a rule deleted by hand).
A check that would take more evaluations than the budget is not run, and says so; the
periodic check also skips clusters of more than ``max_pods`` pods, whose simulator would
cost the daemon more memory than it otherwise holds (``/npm/v1/debug/verify`` still runs it
when asked).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

from kube.model import Cluster

log = logging.getLogger("npm.daemon.verifier")

DEFAULT_BUDGET = 250_000  # kernel walks per check: seconds on a busy node, never minutes
DEFAULT_MAX_PODS = 5_000  # periodic checks only: the simulator of a larger cluster costs more memory


class Controlled(Protocol):
    """What the verifier needs from ``npm.daemon.controller.Controller``."""

    kernel_lock: threading.Lock
    applied_cluster: Cluster | None

    def applied_version(self) -> int: ...

    def request_reconcile(self) -> None: ...


class NodeEvents(Protocol):
    def verify_mismatch(self, message: str) -> None: ...


@dataclass
class VerifyStatus:
    """The last check, for /debug/verify, the debug dump and tests."""

    runs: int = 0
    agrees: bool | None = None  # None: never run, or not run (skipped, error)
    mismatched_connections: int = 0
    version: int = -1  # the applied cache version it checked
    seconds: float = 0.0
    skipped: str = ""
    error: str = ""


class Verifier:
    """Checks this node's kernel against the policies, with the simulator as the judge."""

    def __init__(self, controller: Controlled, dataplane: str, *, metrics: Any = None,
                 events: NodeEvents | None = None, interval: float = 900.0, budget: int = DEFAULT_BUDGET,
                 max_pods: int = DEFAULT_MAX_PODS, runner: Any = None) -> None:
        self.controller = controller
        self.dataplane = dataplane
        self.metrics = metrics
        self.events = events
        self.interval = interval
        self.budget = budget
        self.max_pods = max_pods
        self.runner = runner
        self.status = VerifyStatus()
        self.last_report: dict[str, Any] | None = None
        self._running = threading.Lock()  # one check at a time (the loop and /debug/verify)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Check every ``interval`` seconds (0: only on request)."""
        if self.interval <= 0:
            return
        self._thread = threading.Thread(target=self._loop, name="verifier", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.check(periodic=True)
            except Exception:  # a check must never take the daemon down
                log.exception("verify failed unexpectedly")

    def check(self, periodic: bool = False) -> dict[str, Any]:
        """Run one check now and return its report (JSON-ready)."""
        with self._running:
            return self._check(periodic)

    def _check(self, periodic: bool) -> dict[str, Any]:
        from npm.verify.check import verify_kernel
        from npm.verify.views import read_view

        started = time.perf_counter()
        with self.controller.kernel_lock:
            version = self.controller.applied_version()
            cluster = self.controller.applied_cluster
            if cluster is None:
                return self._record({"agrees": None, "skipped": "nothing applied yet"}, version, started)
            if periodic and len(cluster.pods) > self.max_pods:
                why = (f"{len(cluster.pods):,} pods, over verify_max_pods ({self.max_pods:,}): not checked "
                       "periodically (ask /npm/v1/debug/verify, or run azure-npm verify)")
                return self._record({"agrees": None, "skipped": why}, version, started)
            try:
                view = read_view(self.dataplane, self.runner)
            except Exception as exc:
                self.status.error = f"cannot read the kernel: {exc}"
                return self._record({"agrees": None, "error": self.status.error}, version, started)
        report = verify_kernel(view, cluster, budget=self.budget)
        doc = report.to_json()
        if not report.skipped and not report.agrees:
            text = report.render()
            log.error("verify: the kernel disagrees with the policies on %d connection(s); reconciling\n%s",
                      report.mismatched_connections, text[:4000])
            if self.events is not None:
                first = report.mismatches[0]
                self.events.verify_mismatch(
                    f"the kernel disagrees with the policies on {report.mismatched_connections} connection(s), "
                    f"e.g. {first.src} -> {first.dst} {first.port}: kernel {'allowed' if first.kernel else 'denied'}"
                    f", policies {'allowed' if first.policy else 'denied'}; reconciling")
            self.controller.request_reconcile()
        return self._record(doc, version, started)

    def _record(self, doc: dict[str, Any], version: int, started: float) -> dict[str, Any]:
        s = self.status
        s.runs += 1
        s.version = version
        s.seconds = time.perf_counter() - started
        s.agrees = doc.get("agrees")
        s.skipped = doc.get("skipped") or ""
        s.error = doc.get("error", "")
        s.mismatched_connections = int(doc.get("mismatched_connections", 0))
        doc = {**doc, "applied_version": version, "seconds": round(s.seconds, 3)}
        self.last_report = doc
        if self.metrics is not None:
            result = "error" if s.error else "skipped" if s.skipped else "agree" if s.agrees else "disagree"
            self.metrics.verify_runs.labels(result).inc()
            if result in ("agree", "disagree"):
                self.metrics.verify_mismatches.set(s.mismatched_connections)
        return doc
