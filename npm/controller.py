"""The daemon's cache of watched objects and the one thread that writes to the dataplane.

Sources (API-server watchers, the manifest directory) feed ``ObjectCache``: every object is
validated by ``npm.parse`` on arrival, an invalid one is logged with its located error and
skipped (a previously valid version stays in force), and each change is stamped with the
time it was seen. ``Controller`` waits until every source has synced, applies the whole
desired state at once, then applies again after each burst of changes (coalesced within a
short window) and reconciles with the kernel periodically and on request (SIGHUP). Only the
controller thread touches the dataplane.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Protocol

from npm.enforcer import ApplyResult
from npm.errors import ObjectError
from npm.load import ObjectSet, build_cluster
from npm.metrics import RESTORE_OPERATIONS, Metrics, bounded
from npm.model import Cluster, Namespace, NetworkPolicy, Node, Pod, Source

log = logging.getLogger("npm.controller")

KINDS = ("Namespace", "Pod", "NetworkPolicy", "Node")
Obj = Namespace | Pod | NetworkPolicy | Node


class Dataplane(Protocol):
    """What the daemon needs from ``npm.enforcer.Enforcer`` (tests record it instead)."""

    def apply(self, cluster: Cluster) -> ApplyResult: ...

    def reconcile(self) -> ApplyResult: ...

    def cleanup(self) -> None: ...


class EventSink(Protocol):
    """Where failed-closed policies are reported (``npm.events``)."""

    def policy_failed_closed(self, policy: NetworkPolicy | None, key: str, reason: str) -> None: ...


def object_key(kind: str, obj: Obj | Mapping[str, Any]) -> str:
    """The identity of an object in its kind: ``name`` or ``namespace/name``."""
    if isinstance(obj, Mapping):
        meta = obj.get("metadata") or {}
        name = str(meta.get("name") or "")
        namespace = str(meta.get("namespace") or "default")
    else:
        name = obj.name
        namespace = getattr(obj, "namespace", "")
    return name if kind in ("Namespace", "Node") else f"{namespace}/{name}"


def parse_object(raw: Any, source: Source) -> tuple[Obj | None, list[ObjectError]]:
    """Validate one raw object with the loader's own rules: the object, or its errors."""
    single = ObjectSet()
    single.add_raw(source, raw)
    for table in (single.namespaces, single.pods, single.policies, single.nodes):
        for obj in table.values():
            return obj, single.errors
    return None, single.errors


def _table_name(kind: str) -> str:
    return {"Namespace": "namespaces", "Pod": "pods", "NetworkPolicy": "policies", "Node": "nodes"}[kind]


@dataclass
class Snapshot:
    """The desired state at one cache version, and when its not-yet-applied changes were seen."""

    version: int
    cluster: Cluster
    seen: list[float]
    changes: dict[str, int]


class ObjectCache:
    """Thread-safe store of the valid objects of each kind, fed by the sources."""

    def __init__(
        self,
        kinds: Iterable[str] = KINDS,
        *,
        metrics: Metrics | None = None,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.kinds = tuple(kinds)
        self.metrics = metrics
        self.on_change = on_change or (lambda: None)
        self._lock = threading.Lock()
        self._tables: dict[str, dict[str, Obj]] = {kind: {} for kind in KINDS}
        self._invalid: dict[tuple[str, str], list[ObjectError]] = {}
        self._synced: set[str] = set()
        self._version = 0
        self._seen: list[float] = []
        self._changes: dict[str, int] = {}

    # -- sources --------------------------------------------------------------------------

    def replace_raw(self, kind: str, items: list[dict[str, Any]], seen: float) -> None:
        """A full list of ``kind``: objects not in it are deleted (they vanished meanwhile)."""
        table: dict[str, Obj] = {}
        invalid: dict[tuple[str, str], list[ObjectError]] = {}
        with self._lock:
            old = self._tables[kind]
        for index, raw in enumerate(items):
            key = object_key(kind, raw)
            obj, errors = parse_object(raw, Source(f"api:{kind}", index))
            if obj is None:
                invalid[(kind, key)] = errors
                self._log_invalid(errors, kept=key in old)
                if key in old:
                    table[key] = old[key]  # keep the last valid version in force
                continue
            table[key] = obj
        self.replace(kind, table, seen, invalid=invalid)

    def event_raw(self, kind: str, event_type: str, raw: dict[str, Any], seen: float) -> None:
        """One watch event (ADDED, MODIFIED, DELETED) for ``kind``."""
        started = time.perf_counter()
        key = object_key(kind, raw)
        operation = {"ADDED": "create", "MODIFIED": "update", "DELETED": "delete"}.get(event_type, "noop")
        had_error = False
        if event_type == "DELETED":
            changed = self._delete(kind, key, seen)
        else:
            obj, errors = parse_object(raw, Source(f"api:{kind}"))
            if obj is None:
                had_error = True
                with self._lock:
                    kept = key in self._tables[kind]
                    self._invalid[(kind, key)] = errors
                self._log_invalid(errors, kept=kept)
                self._update_invalid_gauge()
                changed = False
            else:
                changed = self._put(kind, key, obj, seen)
        if not changed:
            operation = "noop" if not had_error else operation
        self._observe(kind, operation, had_error, started)

    def replace(
        self,
        kind: str,
        table: Mapping[str, Obj],
        seen: float,
        *,
        invalid: Mapping[tuple[str, str], list[ObjectError]] | None = None,
    ) -> int:
        """Set every object of ``kind`` at once and mark it synced; returns how many changed."""
        with self._lock:
            old = self._tables[kind]
            changed = sum(1 for k, v in table.items() if old.get(k) != v) + sum(1 for k in old if k not in table)
            self._tables[kind] = dict(table)
            for ident in [i for i in self._invalid if i[0] == kind]:
                del self._invalid[ident]
            self._invalid.update(invalid or {})
            first_sync = kind not in self._synced
            self._synced.add(kind)
            if changed:
                self._mark(kind, seen, changed)
        self._update_invalid_gauge()
        if changed or first_sync:
            self.on_change()
        return changed

    def replace_all(
        self,
        tables: Mapping[str, Mapping[str, Obj]],
        seen: float,
        *,
        invalid: Mapping[tuple[str, str], list[ObjectError]] | None = None,
    ) -> int:
        """Set every kind at once (one consistent change) and mark all synced."""
        changed = 0
        with self._lock:
            first_sync = not all(kind in self._synced for kind in KINDS)
            for kind in KINDS:
                table = tables.get(kind, {})
                old = self._tables[kind]
                count = sum(1 for k, v in table.items() if old.get(k) != v) + sum(1 for k in old if k not in table)
                self._tables[kind] = dict(table)
                if count:
                    self._mark(kind, seen, count)
                changed += count
            self._invalid = dict(invalid or {})
            self._synced.update(KINDS)
        self._update_invalid_gauge()
        if self.metrics is not None:
            self.metrics.pods_watched.set(self.count("Pod"))
        if changed or first_sync:
            self.on_change()
        return changed

    def _put(self, kind: str, key: str, obj: Obj, seen: float) -> bool:
        with self._lock:
            self._invalid.pop((kind, key), None)
            if self._tables[kind].get(key) == obj:
                return False
            self._tables[kind][key] = obj
            self._mark(kind, seen, 1)
        self.on_change()
        return True

    def _delete(self, kind: str, key: str, seen: float) -> bool:
        with self._lock:
            self._invalid.pop((kind, key), None)
            if self._tables[kind].pop(key, None) is None:
                return False
            self._mark(kind, seen, 1)
        self.on_change()
        return True

    def _mark(self, kind: str, seen: float, count: int) -> None:
        # Caller holds the lock.
        self._version += 1
        self._seen.append(seen)
        self._changes[kind] = self._changes.get(kind, 0) + count

    def _observe(self, kind: str, operation: str, had_error: bool, started: float) -> None:
        if self.metrics is None:
            return
        summary = self.metrics.exec_time(kind)
        if summary is not None:
            summary.labels(operation, str(had_error).lower()).observe((time.perf_counter() - started) * 1000)
        if kind == "Pod":
            self.metrics.pods_watched.set(self.count("Pod"))

    def _log_invalid(self, errors: list[ObjectError], *, kept: bool) -> None:
        suffix = "; keeping its last valid version" if kept else "; skipped"
        for error in errors:
            log.error("invalid object: %s%s", error, suffix)

    def _update_invalid_gauge(self) -> None:
        if self.metrics is None:
            return
        with self._lock:
            counts = {kind: 0 for kind in KINDS}
            for kind, _key in self._invalid:
                counts[kind] = counts.get(kind, 0) + 1
        for kind, count in counts.items():
            self.metrics.invalid_objects.labels(kind).set(count)

    # -- the controller ----------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """Whether every kind this cache waits for has been listed at least once."""
        with self._lock:
            return all(kind in self._synced for kind in self.kinds)

    @property
    def version(self) -> int:
        with self._lock:
            return self._version

    def first_pending(self) -> float | None:
        """When the oldest change not yet taken by ``snapshot`` was seen."""
        with self._lock:
            return self._seen[0] if self._seen else None

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._tables[kind])

    def snapshot(self) -> Snapshot:
        """The desired state now; takes the pending change times (for latency)."""
        with self._lock:
            objects = ObjectSet(
                namespaces=dict(self._tables["Namespace"]),  # type: ignore[arg-type]
                pods=dict(self._tables["Pod"]),  # type: ignore[arg-type]
                policies=dict(self._tables["NetworkPolicy"]),  # type: ignore[arg-type]
                nodes=dict(self._tables["Node"]),  # type: ignore[arg-type]
            )
            version, seen, changes = self._version, self._seen, self._changes
            self._seen, self._changes = [], {}
        # Pods without an IP cannot be matched by rules yet: they are left out, not invented.
        cluster, _notes = build_cluster(objects, allocate_ips=False)
        return Snapshot(version, cluster, seen, changes)

    def restore_pending(self, snapshot: Snapshot) -> None:
        """Put back the change times of a snapshot whose apply failed (it will be retried)."""
        with self._lock:
            self._seen = snapshot.seen + self._seen
            for kind, count in snapshot.changes.items():
                self._changes[kind] = self._changes.get(kind, 0) + count

    def dump(self) -> dict[str, Any]:
        """The cache as JSON-ready data, for the debug endpoint."""
        with self._lock:
            tables = {kind: list(table.values()) for kind, table in self._tables.items()}
            invalid = [
                {"kind": kind, "key": key, "errors": [e.to_json() for e in errors]}
                for (kind, key), errors in sorted(self._invalid.items())
            ]
            synced = sorted(self._synced)
            version = self._version
        return {
            "version": version,
            "synced": synced,
            "namespaces": [to_json(o) for o in tables["Namespace"]],
            "pods": [to_json(o) for o in tables["Pod"]],
            "policies": [to_json(o) for o in tables["NetworkPolicy"]],
            "nodes": [to_json(o) for o in tables["Node"]],
            "invalid": invalid,
        }


def to_json(value: Any) -> Any:
    """Model objects as plain JSON data (dataclass fields, label maps, tuples)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


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
        self.reconcile_interval = reconcile_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.status = ControllerStatus()
        # Event-seen-to-enforced latencies, newest last (the benchmark and tests read them).
        self.latencies: deque[float] = deque(maxlen=latency_history)
        self.latency_count = 0
        self._wake = threading.Event()
        self._reconcile_requested = threading.Event()
        self._applied_policies: set[str] = set()
        self._thread: threading.Thread | None = None
        self.stop_event = threading.Event()
        self.applied = threading.Condition()

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
                    delay = min(self.retry_max, self.retry_initial * 2**retries)
                    retries += 1
                    retry_at = time.monotonic() + delay
                continue
            if self._reconcile_requested.is_set() or now >= next_reconcile:
                self._reconcile_requested.clear()
                self._reconcile()
                next_reconcile = time.monotonic() + self.reconcile_interval

    def _coalesce(self) -> None:
        """Let a burst finish: wait until ``coalesce_window`` after its first change."""
        first = self.cache.first_pending()
        if first is None or self.coalesce_window <= 0:
            return
        delay = first + self.coalesce_window - time.monotonic()
        if delay > 0:
            self.stop_event.wait(delay)

    def _apply(self) -> bool:
        snapshot = self.cache.snapshot()
        started = time.perf_counter()
        try:
            result = self.dataplane.apply(snapshot.cluster)
        except Exception as exc:  # keep running: the next attempt may succeed
            self.cache.restore_pending(snapshot)
            self._failed("apply", exc)
            return False
        elapsed = time.perf_counter() - started
        done = time.monotonic()
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
            "%s: %d namespaces, %d pods, %d policies in %.3fs (%s)%s",
            "initial apply" if first else "applied",
            len(snapshot.cluster.namespaces),
            len(snapshot.cluster.pods),
            len(snapshot.cluster.policies),
            elapsed,
            ", ".join(f"{k}: {v}" for k, v in sorted(snapshot.changes.items())) or "no changes",
            f"; {_clip(summary)}" if summary else "",
        )
        return True

    def _reconcile(self) -> None:
        started = time.perf_counter()
        try:
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
            if "iptables" in failure:
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
                self.events.policy_failed_closed(cluster.policy_by_key.get(key), key, reason)
        self.status.failed_closed = now
        if self.metrics:
            self.metrics.num_policies_failed_closed.set(len(now))
