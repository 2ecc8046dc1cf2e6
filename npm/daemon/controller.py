"""The one thread that writes to the dataplane.

``Controller`` takes snapshots of the ``ObjectCache`` (``npm.daemon.cache``): it waits until
every source has synced, applies the whole desired state at once, then applies again after
each change and reconciles with the kernel periodically and on request (SIGHUP). Only the
controller thread touches the dataplane.

Coalescing costs latency only when there is something to coalesce: a change that comes
after a quiet spell (none in the ``coalesce_gap`` before it, a fifth of ``coalesce_window``
by default) is applied at once. Changes that follow each other closer than that are a
burst: the controller waits until the burst has been quiet for ``coalesce_gap``, but never
longer than ``coalesce_window`` after the burst's first pending change, then applies them
all together.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from kube.model import Cluster, ClusterNetworkPolicy, NetworkPolicy
from npm.backoff import Backoff
from npm.daemon import heap
from npm.daemon.cache import ObjectCache
from npm.daemon.metrics import RESTORE_OPERATIONS, TIERS, Metrics, bounded
from npm.dataplane.enforcer import ApplyResult
from npm.dataplane.names import CNP_KEY_PREFIX

log = logging.getLogger("npm.daemon.controller")

class Dataplane(Protocol):
    """What the daemon needs from ``npm.dataplane.enforcer.Enforcer`` (tests record it instead)."""

    def apply(self, cluster: Cluster) -> ApplyResult: ...

    def reconcile(self) -> ApplyResult: ...

    def cleanup(self) -> None: ...


class EventSink(Protocol):
    """Where failed-closed policies are reported (``npm.daemon.events``)."""

    def policy_failed_closed(
        self, policy: NetworkPolicy | ClusterNetworkPolicy | None, key: str, reason: str
    ) -> None: ...


def _policy_of(cluster: Cluster, key: str) -> NetworkPolicy | ClusterNetworkPolicy | None:
    """The policy a dataplane key names (``ns/name``, or ``cnp:name`` for a ClusterNetworkPolicy)."""
    if key.startswith(CNP_KEY_PREFIX):
        return cluster.cluster_policy_by_name.get(key[len(CNP_KEY_PREFIX):])
    return cluster.policy_by_key.get(key)


def _clip(text: str, limit: int = 600) -> str:
    """Long summaries (every chain name) are cut in the log; the debug endpoint has it all."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"


@dataclass
class ControllerStatus:
    """What the controller has done, for /readyz, the debug endpoint and tests."""

    ready: bool = False
    applies: int = 0
    reconciles: int = 0
    apply_failures: int = 0
    applied_version: int = -1
    last_apply_seconds: float = 0.0
    last_error: str = ""
    last_summary: str = ""
    failed_closed: dict[str, str] = field(default_factory=dict)


class Controller:
    """Owns the dataplane: applies the cache's desired state and reconciles it."""

    def __init__(
        self,
        cache: ObjectCache,
        dataplane: Dataplane,
        *,
        metrics: Metrics | None = None,
        events: EventSink | None = None,
        coalesce_window: float = 0.1,
        coalesce_gap: float | None = None,
        reconcile_interval: float = 60.0,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
        latency_history: int = 200_000,
    ) -> None:
        self.cache = cache
        self.dataplane = dataplane
        self.metrics = metrics
        self.events = events
        self.coalesce_window = coalesce_window
        # A burst is over once it has been quiet this long (default: a fifth of the window).
        self.coalesce_gap = coalesce_window / 5 if coalesce_gap is None else min(coalesce_gap, coalesce_window)
        self.reconcile_interval = reconcile_interval
        self.backoff = Backoff(retry_initial, retry_max, jitter=False)
        self.status = ControllerStatus()
        # Event-seen-to-enforced latencies, newest last (the benchmark and tests read them).
        self.latencies: deque[float] = deque(maxlen=latency_history)
        self.latency_count = 0
        self._wake = threading.Event()
        self._reconcile_requested = threading.Event()
        self._applied_policies: set[str] = set()
        self._applied_seen = float("-inf")  # when the newest change already applied was seen
        self._thread: threading.Thread | None = None
        self.stop_event = threading.Event()
        self.applied = threading.Condition()
        # Held for every write to the kernel, so a reader (npm.daemon.verifier) sees the kernel
        # and ``applied_cluster`` (the objects of the last successful apply) from the same moment.
        self.kernel_lock = threading.Lock()
        self.applied_cluster: Cluster | None = None
        self._kernel_version = -1  # the cache version of applied_cluster

    def notify(self) -> None:
        """Called by the cache when something changed."""
        self._wake.set()

    def request_reconcile(self) -> None:
        """Reconcile with the kernel soon (SIGHUP)."""
        self._reconcile_requested.set()
        self._wake.set()

    def start(self) -> threading.Thread:
        """Run the writer loop in its own thread."""
        self._thread = threading.Thread(target=self.run, name="controller", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the loop after the current apply and wait for it."""
        self.stop_event.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def applied_version(self) -> int:
        """The cache version of ``applied_cluster`` (-1 before the first apply); read it under
        ``kernel_lock`` to get the pair."""
        return self._kernel_version

    def wait_applied(self, version: int, timeout: float) -> bool:
        """Wait until a cache version at or after ``version`` is in the dataplane."""
        deadline = time.monotonic() + timeout
        with self.applied:
            while self.status.applied_version < version:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.applied.wait(remaining)
        return True

    def run(self) -> None:
        """The writer loop: first full apply after sync, then coalesced applies and reconciles."""
        try:
            self._loop()
        except Exception:
            # /healthz turns 503 once this thread is gone, so the kubelet restarts the pod.
            log.exception("the controller stopped on an unexpected error")
            raise

    def _loop(self) -> None:
        next_reconcile = time.monotonic() + self.reconcile_interval
        retry_at = 0.0
        retries = 0
        while not self.stop_event.is_set():
            now = time.monotonic()
            timeout = 0.5 if not self.status.ready else max(0.0, next_reconcile - now)
            if retry_at:
                timeout = min(timeout, max(0.0, retry_at - now))
            self._wake.wait(timeout)
            # Clear before reading any state: a change notified from here on wakes the next round.
            self._wake.clear()
            if self.stop_event.is_set():
                break
            if not self.cache.synced:
                continue
            now = time.monotonic()
            if retry_at and now < retry_at:
                continue
            if self.cache.version != self.status.applied_version or not self.status.ready:
                if self.status.ready:
                    self._coalesce()
                if self.stop_event.is_set():
                    break
                if self._apply():
                    retries, retry_at = 0, 0.0
                    next_reconcile = time.monotonic() + self.reconcile_interval
                else:
                    delay = self.backoff.delay(retries)
                    retries += 1
                    retry_at = time.monotonic() + delay
                continue
            if self._reconcile_requested.is_set() or now >= next_reconcile:
                self._reconcile_requested.clear()
                self._reconcile()
                next_reconcile = time.monotonic() + self.reconcile_interval

    def _coalesce(self) -> None:
        """Apply a change that came after a quiet spell at once; let a burst finish first.

        A burst ends when no change has come for ``coalesce_gap``, or at the latest
        ``coalesce_window`` after its first pending change.
        """
        if self.coalesce_window <= 0:
            return
        while not self.stop_event.is_set():
            span = self.cache.pending_span()
            if span is None:
                return
            first, last = span
            if first - self._applied_seen >= self.coalesce_gap and last == first:
                return  # one change after a quiet spell: nothing to wait for
            delay = min(last + self.coalesce_gap, first + self.coalesce_window) - time.monotonic()
            if delay <= 0:
                return
            self.stop_event.wait(delay)

    def _apply(self) -> bool:
        snapshot = self.cache.snapshot()
        started = time.perf_counter()
        try:
            with self.kernel_lock:
                result = self.dataplane.apply(snapshot.cluster)
                self.applied_cluster, self._kernel_version = snapshot.cluster, snapshot.version
        except Exception as exc:  # keep running: the next attempt may succeed
            self.cache.restore_pending(snapshot)
            self._failed("apply", exc)
            return False
        elapsed = time.perf_counter() - started
        done = time.monotonic()
        if snapshot.seen:
            self._applied_seen = max(self._applied_seen, max(snapshot.seen))
        self._record(result, "apply", elapsed)
        for seen in snapshot.seen:
            latency = max(0.0, done - seen)
            self.latencies.append(latency)
            self.latency_count += 1
            if self.metrics:
                self.metrics.enforcement_latency.observe(latency)
        current = {p.key for p in snapshot.cluster.policies}
        added = current - self._applied_policies
        if self.metrics:
            for _key in added:
                self.metrics.add_policy_exec_time.labels(str(not result.ok).lower()).observe(elapsed * 1000)
        self._applied_policies = current
        self._failed_closed(result, snapshot.cluster)
        first = not self.status.ready
        with self.applied:
            self.status.applies += 1
            self.status.applied_version = snapshot.version
            self.status.ready = True
            self.applied.notify_all()
        summary = "; ".join(result.summary)
        self.status.last_summary = summary
        level = logging.INFO if first or snapshot.changes else logging.DEBUG
        log.log(
            level,
            "%s: %d namespaces, %d pods, %d policies, %d cluster network policies in %.3fs (%s)%s",
            "initial apply" if first else "applied",
            len(snapshot.cluster.namespaces),
            len(snapshot.cluster.pods),
            len(snapshot.cluster.policies),
            len(snapshot.cluster.cluster_policies),
            elapsed,
            ", ".join(f"{k}: {v}" for k, v in sorted(snapshot.changes.items())) or "no changes",
            f"; {_clip(summary)}" if summary else "",
        )
        if first or sum(snapshot.changes.values()) >= heap.SETTLE_AFTER_CHANGES:
            # After the latencies are taken: the pause lands between applies, not inside one.
            heap.settle()
        return True

    def _reconcile(self) -> None:
        started = time.perf_counter()
        try:
            with self.kernel_lock:
                result = self.dataplane.reconcile()
        except Exception as exc:
            self._failed("reconcile", exc)
            return
        self._record(result, "reconcile", time.perf_counter() - started)
        self.status.reconciles += 1
        if result.changed:
            log.warning("reconcile repaired drift in the kernel: %s", _clip("; ".join(result.summary)))

    def _failed(self, operation: str, exc: BaseException) -> None:
        self.status.apply_failures += 1
        self.status.last_error = f"{operation}: {type(exc).__name__}: {exc}"
        log.error("dataplane %s failed: %s: %s", operation, type(exc).__name__, exc)
        if self.metrics:
            self.metrics.apply_failures.labels(operation).inc()

    def _record(self, result: ApplyResult, operation: str, elapsed: float) -> None:
        self.status.last_apply_seconds = elapsed
        failures = result.failures
        if failures:
            self.status.last_error = f"{operation}: {len(failures)} failure(s): {failures[0]}"
            log.error("dataplane %s reported %d failure(s): %s", operation, len(failures), failures[0])
        if self.metrics is None:
            return
        m = self.metrics
        m.apply_duration.labels(operation).observe(elapsed)
        label = bounded(operation, RESTORE_OPERATIONS)
        if failures:
            m.apply_failures.labels(operation).inc()
        for failure in failures:
            if failure.iptables:
                m.iptables_restore_failures.labels(label).inc()
        for restore, seconds in result.latencies:
            if restore.startswith("iptables"):
                m.iptables_restore_latency.labels(label).observe(seconds)
        for name, gauge in (
            ("policies", m.num_policies),
            ("iptables_rules", m.num_iptables_rules),
            ("ipsets", m.num_ipsets),
            ("ipset_entries", m.num_ipset_entries),
        ):
            if name in result.counts:
                gauge.set(result.counts[name])
        for tier in TIERS:  # ClusterNetworkPolicy
            if f"cluster_policies_{tier.lower()}" in result.counts:
                m.cluster_policies.labels(tier).set(result.counts[f"cluster_policies_{tier.lower()}"])
                if f"cluster_policy_rules_{tier.lower()}" in result.counts:  # iptables rules (not nftables)
                    m.cluster_policy_rules.labels(tier).set(result.counts[f"cluster_policy_rules_{tier.lower()}"])
        m.pods_watched.set(self.cache.count("Pod"))
        if not failures:
            m.last_apply_timestamp.set_to_current_time()

    def _failed_closed(self, result: ApplyResult, cluster: Cluster) -> None:
        now = dict(result.unenforceable)
        before = self.status.failed_closed
        for key, reason in sorted(now.items()):
            if before.get(key) == reason:
                continue
            log.warning("policy %s failed closed (its pods deny all traffic it covers): %s", key, reason)
            if self.metrics:
                self.metrics.policies_failed_closed.inc()
            if self.events is not None:
                self.events.policy_failed_closed(_policy_of(cluster, key), key, reason)
        self.status.failed_closed = now
        if self.metrics:
            self.metrics.num_policies_failed_closed.set(len(now))
