"""List and watch one kind of object on the API server with the ``kubernetes`` client.

Each ``ResourceWatcher`` is a thread: it lists (in pages), hands the whole list to the cache
(which deletes what vanished), then watches from the list's resourceVersion with bookmarks,
passing every event on. A watch that ends (server timeout, dropped connection) resumes
from the last resourceVersion seen; ``410 Gone`` (an ERROR event or the HTTP status) means
that version is too old, so it lists again. Failures back off exponentially with jitter.
Raw JSON streams (``_preload_content=False``) are read so objects reach ``kube.parse`` as
the plain dicts it validates, without a round trip through the client's model classes.

ClusterNetworkPolicies come from a CRD (``policy.networking.k8s.io/v1alpha2``) that a cluster
may not have: a 404 is said once, counts as "no ClusterNetworkPolicy" (the other kinds are
enforced meanwhile) and the list is tried again every ``crd_retry`` seconds, so installing
the CRD later is noticed. A 403 (RBAC not granting them) is the same at start; later it
keeps the ClusterNetworkPolicies last listed rather than dropping them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from kube.load import CNP_KIND
from kube.model import CNP_API_VERSION
from npm.backoff import Backoff

log = logging.getLogger("npm.daemon.sources.watch")

LIST_PAGE_SIZE = 500
CONNECT_TIMEOUT = 10.0
LIST_READ_TIMEOUT = 120.0
GONE = 410
DEFAULT_BACKOFF = Backoff()
OPTIONAL_KINDS = ("Node",)  # forbidden or missing: go on without them
CRD_KINDS = (CNP_KIND,)  # not served (404) or forbidden (403): none of them, and look again later
CNP_PLURAL = "clusternetworkpolicies"


class Sink(Protocol):
    """Where a watcher sends what it learns (``npm.daemon.cache.ObjectCache``)."""

    def replace_raw(self, kind: str, items: Iterable[dict[str, Any]], seen: float | None = None) -> None: ...

    def event_raw(self, kind: str, event_type: str, obj: dict[str, Any], seen: float) -> None: ...


class WatchMetrics(Protocol):
    """The counters a watcher updates (``npm.daemon.metrics.Metrics`` has them)."""

    watch_events: Any
    watch_relists: Any
    watch_errors: Any


class Gone(Exception):
    """The resourceVersion we resume from is no longer available: list again."""


# kind -> (API class name, list function for all namespaces)
RESOURCES: dict[str, tuple[str, str]] = {
    "Namespace": ("CoreV1Api", "list_namespace"),
    "Pod": ("CoreV1Api", "list_pod_for_all_namespaces"),
    "NetworkPolicy": ("NetworkingV1Api", "list_network_policy_for_all_namespaces"),
    "Node": ("CoreV1Api", "list_node"),
}


def api_client(kubeconfig: str = "") -> Any:
    """A ``kubernetes`` ApiClient: from ``kubeconfig`` if given, else the pod's service account.

    Without either (no kubeconfig and not in a pod), the default ``~/.kube/config``.
    """
    from kubernetes import client, config  # imported here: only the API-server source needs it

    from npm.daemon.config import ConfigError

    configuration = client.Configuration()
    try:
        if kubeconfig:
            config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        elif "KUBERNETES_SERVICE_HOST" in os.environ:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config(client_configuration=configuration)
    except (config.ConfigException, OSError) as exc:
        in_cluster = "KUBERNETES_SERVICE_HOST" in os.environ
        where = kubeconfig or ("in-cluster service account" if in_cluster else "~/.kube/config")
        raise ConfigError(where, "kubeconfig", f"cannot load API server credentials: {exc}") from None
    return client.ApiClient(configuration)


def list_function(api: Any, kind: str) -> Callable[..., Any]:
    """The client's list-for-all-namespaces method for ``kind``."""
    from kubernetes import client

    if kind == CNP_KIND:
        group, _, version = CNP_API_VERSION.partition("/")
        custom = client.CustomObjectsApi(api)

        def list_cluster_policies(**kwargs: Any) -> Any:
            return custom.list_cluster_custom_object(group, version, CNP_PLURAL, **kwargs)

        return list_cluster_policies
    class_name, method = RESOURCES[kind]
    return getattr(getattr(client, class_name)(api), method)


def iter_lines(response: Any) -> Iterator[bytes]:
    """Complete lines of a streaming HTTP response, as chunks arrive."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=False):
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _status_code(exc: BaseException) -> int | None:
    status = getattr(exc, "status", None)
    return status if isinstance(status, int) else None


class ResourceWatcher(threading.Thread):
    """Keeps one kind in the cache in step with the API server until ``stop`` is set."""

    def __init__(
        self,
        kind: str,
        lister: Callable[..., Any],
        sink: Sink,
        metrics: WatchMetrics | None,
        stop: threading.Event,
        *,
        watch_timeout: float = 300.0,
        backoff: Backoff = DEFAULT_BACKOFF,
        optional: bool = False,
        crd_retry: float | None = None,
    ) -> None:
        super().__init__(name=f"watch-{kind}", daemon=True)
        self.optional = optional
        self.crd_retry = crd_retry  # a CRD kind: seconds between looks while it is not served
        self.unserved: int | None = None  # the HTTP status while a CRD kind is not served
        self.listed = False
        self.kind = kind
        self.lister = lister
        self.sink = sink
        self.metrics = metrics
        self.stop_event = stop
        self.watch_timeout = watch_timeout
        self.backoff = backoff
        self.resource_version: str | None = None
        self.connected = False
        self.last_error = ""
        self._response: Any = None
        self._lock = threading.Lock()

    def run(self) -> None:
        attempt = 0
        while not self.stop_event.is_set():
            try:
                if self.resource_version is None:
                    self.resource_version = self._list()
                self.resource_version = self._watch(self.resource_version)
                attempt = 0
            except Gone:
                log.info("%s: resourceVersion %s is gone; listing again", self.kind, self.resource_version)
                self.resource_version = None
                attempt = 0
            except Exception as exc:  # any failure: retry; the watch must never die
                self.connected = False
                if self.stop_event.is_set():
                    break
                if _status_code(exc) == GONE:
                    self.resource_version = None
                    continue
                if self.crd_retry is not None and _status_code(exc) in (403, 404):
                    self._not_served(exc)
                    self.stop_event.wait(self.crd_retry)
                    continue
                if self.optional and _status_code(exc) in (401, 403, 404):
                    # Nodes only refine hostNetwork pod addresses: run without them rather
                    # than never becoming ready when RBAC does not grant them.
                    log.warning("%s: %s; continuing without %ss", self.kind, _short(exc), self.kind)
                    self.sink.replace_raw(self.kind, [], time.monotonic())
                    break
                self.last_error = f"{type(exc).__name__}: {_short(exc)}"
                if self.metrics:
                    self.metrics.watch_errors.labels(self.kind).inc()
                wait = self.backoff.delay(attempt)
                attempt += 1
                log.warning("%s: %s; retrying in %.1fs", self.kind, self.last_error, wait)
                self.stop_event.wait(wait)
        self.connected = False

    def _not_served(self, exc: BaseException) -> None:
        """A CRD kind the API server does not serve (or lets us read): none of its objects."""
        status = _status_code(exc)
        self.resource_version = None  # list again when it is back
        self.last_error = f"{_short(exc)}: " + (
            f"{CNP_API_VERSION} is not served (CRD not installed)" if status == 404 else "forbidden (RBAC)"
        )
        # Not served: there are none. Forbidden: none at start, else the last listed stay (we cannot tell).
        keep = status != 404 and self.listed
        if self.unserved != status:  # said once per change, not on every look
            now = "keeping the ones last listed" if keep else f"enforcing without any {self.kind}"
            log.warning("%s: %s; %s, looking again every %gs", self.kind, self.last_error, now, self.crd_retry)
            self.unserved = status
        if not keep:
            self.sink.replace_raw(self.kind, [], time.monotonic())  # the first time marks it listed

    def close(self) -> None:
        """Interrupt a blocking read (used when stopping)."""
        with self._lock:
            response = self._response
        if response is not None:
            # Closing a half-dead socket may fail; there is nothing else to do then.
            with contextlib.suppress(Exception):
                response.close()

    def _call(self, **kwargs: Any) -> Any:
        response = self.lister(_preload_content=False, **kwargs)
        with self._lock:
            self._response = response
        return response

    def _list(self) -> str:
        """List every object (in pages) and replace the cache's copy; returns the list's version.

        Each page is parsed into the cache's objects as it arrives and then dropped, so the
        raw objects of a large cluster are never all in memory at once. A page that fails
        leaves the cache as it was (the whole list is retried).
        """
        listed = {"version": "", "count": 0}
        self.sink.replace_raw(self.kind, self._pages(listed))
        self.listed = True
        if self.metrics:
            self.metrics.watch_relists.labels(self.kind).inc()
        log.info("%s: listed %d at resourceVersion %s", self.kind, listed["count"], listed["version"])
        return str(listed["version"])

    def _pages(self, listed: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The items of every page of the list, one page in memory at a time; ``listed``
        receives the list's resourceVersion and the number of items."""
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": LIST_PAGE_SIZE, "_request_timeout": (CONNECT_TIMEOUT, LIST_READ_TIMEOUT)}
            if token:
                kwargs["_continue"] = token
            response = self._call(**kwargs)
            try:
                body = json.loads(response.data)
            finally:
                response.release_conn()
            if self.unserved is not None:  # a page came back: served again
                log.warning("%s: %s is served now", self.kind, CNP_API_VERSION if self.kind == CNP_KIND else self.kind)
                self.unserved, self.last_error = None, ""
            meta = body.get("metadata") or {}
            listed["version"] = listed["version"] or str(meta.get("resourceVersion") or "")
            items = body.get("items") or []
            del body
            token = meta.get("continue") or None
            items.reverse()
            while items:
                item = items.pop()  # released as soon as the cache has parsed it
                if isinstance(item, dict):
                    item.setdefault("kind", self.kind)  # list items carry no kind
                    listed["count"] += 1
                    yield item
            if not token:
                return

    def _watch(self, version: str) -> str:
        """Follow the watch stream from ``version``; returns the last version seen when it ends."""
        response = self._call(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=max(1, int(self.watch_timeout)),
            # The read timeout catches a silent dead connection; the server ends the watch first.
            _request_timeout=(CONNECT_TIMEOUT, self.watch_timeout + 30),
        )
        self.connected = True
        self.last_error = ""
        try:
            for line in iter_lines(response):
                if self.stop_event.is_set():
                    break
                version = self._handle(line, version)
                # Kept current so a broken connection resumes from here, not from the list.
                self.resource_version = version
        finally:
            self.connected = False
            response.release_conn()
        return version

    def _handle(self, line: bytes, version: str) -> str:
        try:
            event = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"malformed watch event: {exc.msg}") from None
        event_type = event.get("type")
        obj = event.get("object") or {}
        if self.metrics and event_type in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"):
            self.metrics.watch_events.labels(self.kind, event_type).inc()
        if event_type == "ERROR":
            if obj.get("code") == GONE:
                raise Gone()
            raise RuntimeError(f"watch error {obj.get('code')}: {obj.get('message', '')}")
        new_version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        if event_type in ("ADDED", "MODIFIED", "DELETED"):
            obj.setdefault("kind", self.kind)
            self.sink.event_raw(self.kind, event_type, obj, time.monotonic())
        return new_version


def _short(exc: BaseException) -> str:
    status = _status_code(exc)
    if status:
        return f"HTTP {status} {getattr(exc, 'reason', '') or ''}".strip()
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def start_watchers(
    api: Any,
    kinds: list[str],
    sink: Sink,
    metrics: WatchMetrics | None,
    stop: threading.Event,
    *,
    watch_timeout: float,
    backoff: Backoff,
    crd_retry: float = 60.0,
) -> list[ResourceWatcher]:
    """Start one watcher thread per kind."""
    watchers = [
        ResourceWatcher(
            kind,
            list_function(api, kind),
            sink,
            metrics,
            stop,
            watch_timeout=watch_timeout,
            backoff=backoff,
            optional=kind in OPTIONAL_KINDS,
            crd_retry=crd_retry if kind in CRD_KINDS else None,
        )
        for kind in kinds
    ]
    for watcher in watchers:
        watcher.start()
    return watchers
