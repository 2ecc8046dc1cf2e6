"""The daemon's cache of watched objects.

Sources (API-server watchers, the manifest directory) feed ``ObjectCache``: every object is
validated by ``kube.parse`` on arrival, an invalid one is logged with its located error and
skipped (a previously valid version stays in force), and each change is stamped with the
time it was seen. The controller takes snapshots of it.

Only parsed objects are kept, never the raw API objects: a full list is parsed as it is
read (page by page), so the raw pages of a large cluster are never all in memory at once.
Pods with equal labels or ports (replicas) share one label map and one port list
(``SharedParts``), and a relist keeps the objects already in force where nothing changed.
A snapshot after changes to NetworkPolicies alone reuses the pods, namespaces and nodes of
the previous one (the same tuples, so the dataplane's index sees at once that no pod
changed); any other change builds the desired state anew.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields, is_dataclass, replace
from typing import Any

from kube.errors import ObjectError
from kube.load import KINDS, ObjectSet, build_cluster
from kube.model import Cluster, ClusterNetworkPolicy, Namespace, NetworkPolicy, Node, Pod, Source, raw_key
from kube.model import object_key as model_key
from npm.daemon.metrics import Metrics

log = logging.getLogger("npm.daemon.cache")

Obj = Namespace | Pod | NetworkPolicy | Node | ClusterNetworkPolicy


def object_key(kind: str, obj: Obj | Mapping[str, Any]) -> str:
    """The identity of an object (model or raw) in its kind: ``name`` or ``namespace/name``."""
    if isinstance(obj, Mapping):
        return raw_key(kind, obj)
    return model_key(kind, getattr(obj, "namespace", None), obj.name)


def parse_object(raw: Any, source: Source) -> tuple[Obj | None, list[ObjectError]]:
    """Validate one raw object with the loader's own rules: the object, or its errors."""
    single = ObjectSet()
    single.add_raw(source, raw)
    for kind in KINDS:
        for obj in single.table(kind).values():
            return obj, single.errors
    return None, single.errors


class SharedParts:
    """One object for the equal label maps and port lists of different pods.

    Replicas carry the same labels and ports; parsed one by one, each pod would hold its own
    copies (at 20,000 pods, 8 of the cache's 18 MiB). Values no pod uses any more must not
    pile up: the table is rebuilt from the pods in the cache whenever it has doubled since.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[Any, Any] = {}
        self._rebuild_at = 4096

    def pod(self, pod: Pod) -> Pod:
        """``pod``, or an equal pod whose labels and ports are the shared objects."""
        with self._lock:
            labels = self._values.setdefault(pod.labels, pod.labels)
            ports = self._values.setdefault(pod.ports, pod.ports)
        return pod if labels is pod.labels and ports is pod.ports else replace(pod, labels=labels, ports=ports)

    @property
    def full(self) -> bool:
        return len(self._values) >= self._rebuild_at

    def rebuild(self, pods: Iterable[Pod]) -> None:
        """Keep only the values ``pods`` use."""
        values: dict[Any, Any] = {}
        for pod in pods:
            values.setdefault(pod.labels, pod.labels)
            values.setdefault(pod.ports, pod.ports)
        with self._lock:
            self._values = values
            self._rebuild_at = max(4096, 2 * len(values))


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
        # The last snapshot's cluster and the namespaces its policies are in: a snapshot
        # after policy changes only starts from it (see ``snapshot``).
        self._last: Cluster | None = None
        self._last_policy_namespaces: frozenset[str] = frozenset()
        self._shared = SharedParts()

    # -- sources --------------------------------------------------------------------------

    def replace_raw(self, kind: str, items: Iterable[Mapping[str, Any]], seen: float | None = None) -> None:
        """A full list of ``kind``: objects not in it are deleted (they vanished meanwhile).

        ``items`` is consumed one object at a time and only the parsed objects are kept, so
        a source may pass a generator that reads the list page by page; if it raises, the
        cache is left as it was. ``seen``: when the list was seen (default: once it is read).
        """
        table: dict[str, Obj] = {}
        invalid: dict[tuple[str, str], list[ObjectError]] = {}
        with self._lock:
            old = self._tables[kind]
        source = Source(f"api:{kind}")
        for raw in items:
            key = object_key(kind, raw)
            obj, errors = parse_object(raw, source)
            if obj is None:
                invalid[(kind, key)] = errors
                self._log_invalid(errors, kept=key in old)
                if key in old:
                    table[key] = old[key]  # keep the last valid version in force
                continue
            table[key] = self._share(obj)
        self.replace(kind, table, time.monotonic() if seen is None else seen, invalid=invalid)

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
                changed = self._put(kind, key, self._share(obj), seen)
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
            changed = sum(1 for k in old if k not in table)
            kept: dict[str, Obj] = {}
            for k, v in table.items():
                before = old.get(k)
                if before is not None and before == v:
                    v = before  # the object already in force: the dataplane's index knows it by identity
                else:
                    changed += 1
                kept[k] = v
            self._tables[kind] = kept
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
        shared = {kind: {k: self._share(v) for k, v in tables.get(kind, {}).items()} for kind in KINDS}
        with self._lock:
            first_sync = not all(kind in self._synced for kind in KINDS)
            for kind in KINDS:
                table = shared[kind]
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

    def _share(self, obj: Obj) -> Obj:
        """A pod with the labels and ports other pods already have, as shared objects."""
        if not isinstance(obj, Pod):
            return obj
        if self._shared.full:
            with self._lock:
                pods = list(self._tables["Pod"].values())
            self._shared.rebuild(pods)
        return self._shared.pod(obj)

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

    def pending_span(self) -> tuple[float, float] | None:
        """When the oldest and the newest change not yet taken by ``snapshot`` were seen."""
        with self._lock:
            return (min(self._seen), max(self._seen)) if self._seen else None

    def count(self, kind: str) -> int:
        with self._lock:
            return len(self._tables[kind])

    def snapshot(self) -> Snapshot:
        """The desired state now; takes the pending change times (for latency)."""
        with self._lock:
            version, seen, changes = self._version, self._seen, self._changes
            self._seen, self._changes = [], {}
            last = self._last
            if last is not None and set(changes) <= {"NetworkPolicy"}:
                table = self._tables["NetworkPolicy"]
                policies = tuple(table[k] for k in sorted(table))
                # Namespaces named only by a policy are implicit members of the cluster: with
                # the same set of them, everything but the policies is as it was.
                if frozenset(p.namespace for p in policies) == self._last_policy_namespaces:
                    return self._keep(Snapshot(version, replace(last, policies=policies), seen, changes))
            objects = ObjectSet.of(self._tables)
        # Pods without an IP cannot be matched by rules yet: they are left out, not invented.
        left_out: Counter[tuple[str, str]] = Counter()
        cluster, _notes = build_cluster(objects, allocate_ips=False, left_out=left_out)
        del objects
        if self.metrics is not None:
            self.metrics.pods_without_ip.set(left_out[("Pod", "no IP yet")])
        return self._keep(Snapshot(version, cluster, seen, changes))

    def _keep(self, snapshot: Snapshot) -> Snapshot:
        self._last = snapshot.cluster
        self._last_policy_namespaces = frozenset(p.namespace for p in snapshot.cluster.policies)
        return snapshot

    def restore_pending(self, snapshot: Snapshot) -> None:
        """Put back the change times of a snapshot whose apply failed (it will be retried)."""
        with self._lock:
            self._seen = snapshot.seen + self._seen
            for kind, count in snapshot.changes.items():
                self._changes[kind] = self._changes.get(kind, 0) + count

    def dump(self) -> dict[str, Any]:
        """The cache for the debug endpoint: plain data, except that the lists of objects hold
        the model objects themselves; :func:`json_data` turns each into plain data when it
        is encoded (``json.JSONEncoder(default=json_data)``), one at a time."""
        with self._lock:
            tables = {kind: list(table.values()) for kind, table in self._tables.items()}
            invalid = [
                {
                    "kind": kind,
                    "key": key,
                    "errors": [e.to_json() for e in errors],
                    "last_valid_version_in_force": key in self._tables[kind],
                }
                for (kind, key), errors in sorted(self._invalid.items())
            ]
            synced = sorted(self._synced)
            version = self._version
        return {
            "version": version,
            "synced": synced,
            "namespaces": tables["Namespace"],
            "pods": tables["Pod"],
            "policies": tables["NetworkPolicy"],
            "nodes": tables["Node"],
            "cluster_policies": tables["ClusterNetworkPolicy"],
            "invalid": invalid,
        }


def json_data(value: Any) -> Any:
    """Model objects as plain JSON data (dataclass fields, label maps, tuples)."""
    names = _field_names(type(value))
    if names is not None:
        return {name: json_data(getattr(value, name)) for name in names}
    if isinstance(value, Mapping):
        return {str(k): json_data(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_data(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


@functools.cache
def _field_names(cls: type) -> tuple[str, ...] | None:
    """The field names of a dataclass (looked up once per class), or None for other types."""
    return tuple(f.name for f in fields(cls)) if is_dataclass(cls) else None
