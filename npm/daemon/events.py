"""Kubernetes Events for policies that failed closed, posted off the controller's thread.

One Event per (node, policy, reason): the first report creates it, a repeat patches its
count and lastTimestamp (the way kubelet aggregates events). Posting never blocks or
breaks enforcement: reports go through a bounded queue to a worker thread, and API errors
are logged and dropped.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kube.model import CNP_API_VERSION, ClusterNetworkPolicy, NetworkPolicy
from npm.dataplane.names import CNP_KEY_PREFIX

log = logging.getLogger("npm.daemon.events")

REASON_FAILED_CLOSED = "PolicyFailedClosed"
REASON_SOURCE_FAILED = "ManifestSourceFailed"
REASON_VERIFY_MISMATCH = "VerifyMismatch"
COMPONENT = "azure-npm"
QUEUE_SIZE = 1000
CLUSTER_SCOPED_EVENTS_NAMESPACE = "default"  # where Events about cluster-scoped objects go (as kubectl shows them)
Policy = NetworkPolicy | ClusterNetworkPolicy


def _where(key: str) -> tuple[str, str, str, str]:
    """(Event namespace, object name, kind, apiVersion) of the policy a dataplane key names."""
    if key.startswith(CNP_KEY_PREFIX):
        return CLUSTER_SCOPED_EVENTS_NAMESPACE, key[len(CNP_KEY_PREFIX):], "ClusterNetworkPolicy", CNP_API_VERSION
    namespace, _, name = key.partition("/")
    return namespace, name, "NetworkPolicy", "networking.k8s.io/v1"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event_name(policy_name: str, node: str, reason: str) -> str:
    """A stable, valid Event name for one (policy, node, reason)."""
    digest = hashlib.sha256(f"{node}\0{reason}".encode()).hexdigest()[:10]
    return f"{policy_name[:200]}.{digest}"


def event_body(policy: Policy | None, key: str, reason: str, node: str, name: str) -> dict[str, Any]:
    """A core/v1 Event about the policy ``key`` that failed closed on ``node``."""
    namespace, policy_name, kind, api_version = _where(key)
    stamp = _now()
    involved: dict[str, Any] = {"apiVersion": api_version, "kind": kind, "name": policy_name}
    if kind == "NetworkPolicy":
        involved["namespace"] = namespace
    what = (
        "cannot express this policy and denies all traffic it covers for the selected pods"
        if kind == "NetworkPolicy"
        else "cannot express part of this policy and fails it closed as the API says"
    )
    if policy is not None and policy.uid:
        involved["uid"] = policy.uid
    if policy is not None and policy.resource_version:
        involved["resourceVersion"] = policy.resource_version
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": namespace},
        "involvedObject": involved,
        "reason": REASON_FAILED_CLOSED,
        "type": "Warning",
        "message": f"azure-npm on node {node} {what}: {reason}"[:1024],
        "source": {"component": COMPONENT, "host": node},
        "reportingComponent": COMPONENT,
        "reportingInstance": node,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class LogEvents:
    """Reports failed-closed policies in the log only (no API server: the manifest source)."""

    def policy_failed_closed(self, policy: Policy | None, key: str, reason: str) -> None:
        log.warning("event %s on %s %s: %s", REASON_FAILED_CLOSED, _where(key)[2], key, reason)

    def source_failed(self, source: str, reason: str) -> None:
        log.warning("event %s on %s: %s", REASON_SOURCE_FAILED, source, reason)

    def verify_mismatch(self, message: str) -> None:
        log.warning("event %s: %s", REASON_VERIFY_MISMATCH, message)

    def close(self) -> None:
        """Nothing to flush."""


class ApiEvents:
    """Posts Events through the ``kubernetes`` client on a worker thread."""

    def __init__(self, api: Any, node: str) -> None:
        from kubernetes import client  # imported here: only the API-server source needs it

        self.core = client.CoreV1Api(api)
        self.node = node
        self.counts: dict[str, int] = {}
        self.posted = 0
        self._queue: queue.Queue[tuple[str, Callable[[], None]] | None] = queue.Queue(QUEUE_SIZE)
        self._thread = threading.Thread(target=self._run, name="events", daemon=True)
        self._thread.start()

    def policy_failed_closed(self, policy: Policy | None, key: str, reason: str) -> None:
        self._enqueue(f"policy {key}", lambda: self._post(policy, key, reason))

    def verify_mismatch(self, message: str) -> None:
        """A Warning Event on this node: its kernel disagrees with the policies (npm.daemon.verifier)."""
        self._enqueue(f"node {self.node}", lambda: self._post_node(REASON_VERIFY_MISMATCH, message))

    def _enqueue(self, about: str, post: Callable[[], None]) -> None:
        try:
            self._queue.put_nowait((about, post))
        except queue.Full:
            log.warning("event queue full; not posting event for %s", about)

    def close(self, timeout: float = 5.0) -> None:
        """Post what is queued (up to ``timeout``), then stop the worker."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            about, post = item
            try:
                post()
            except Exception as exc:  # an Event is best effort; enforcement goes on
                log.warning("cannot post event for %s: %s", about, _reason(exc))

    def _post_node(self, reason: str, message: str) -> None:
        """A new Event about this node (each check that disagrees is one; they are rare)."""
        stamp = _now()
        digest = hashlib.sha256(f"{reason}\0{stamp}\0{message}".encode()).hexdigest()[:10]
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{self.node[:200]}.{digest}", "namespace": CLUSTER_SCOPED_EVENTS_NAMESPACE},
            "involvedObject": {"apiVersion": "v1", "kind": "Node", "name": self.node},
            "reason": reason,
            "type": "Warning",
            "message": f"azure-npm on node {self.node}: {message}"[:1024],
            "source": {"component": COMPONENT, "host": self.node},
            "reportingComponent": COMPONENT,
            "reportingInstance": self.node,
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        self.core.create_namespaced_event(CLUSTER_SCOPED_EVENTS_NAMESPACE, body)
        self.posted += 1
        log.info("posted event %s on Node %s", reason, self.node)

    def _post(self, policy: Policy | None, key: str, reason: str) -> None:
        from kubernetes.client.exceptions import ApiException

        namespace, policy_name, kind, _ = _where(key)
        name = event_name(policy_name, self.node, reason)
        body = event_body(policy, key, reason, self.node, name)
        try:
            self.core.create_namespaced_event(namespace, body)
            self.counts[name] = 1
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Already reported (by us before a restart, or earlier): bump it.
            count = self.counts.get(name, 1) + 1
            self.counts[name] = count
            patch = {"count": count, "lastTimestamp": _now(), "message": body["message"]}
            self.core.patch_namespaced_event(name, namespace, patch)
        self.posted += 1
        log.info("posted event %s on %s %s", REASON_FAILED_CLOSED, kind, key)


def _reason(exc: BaseException) -> str:
    status = getattr(exc, "status", None)
    if status:
        return f"HTTP {status} {getattr(exc, 'reason', '')}".strip()
    return f"{type(exc).__name__}: {exc}"
