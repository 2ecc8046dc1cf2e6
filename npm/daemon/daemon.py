"""One running enforcer: a source of objects, the cache, the controller and the HTTP servers.

Wires the pieces together: configuration (``npm.daemon.config``), a source of objects
(API-server watchers in ``npm.daemon.sources.watch``, or a manifest directory in
``npm.daemon.sources.manifests``), the cache (``npm.daemon.cache``), the single writer thread
(``npm.daemon.controller``), the dataplane (``npm.dataplane.enforcer``), HTTP endpoints
(``npm.daemon.http``), metrics (``npm.daemon.metrics``) and Events (``npm.daemon.events``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from kube.load import KINDS
from npm.daemon import config as npm_config
from npm.daemon import heap
from npm.daemon.cache import ObjectCache
from npm.daemon.config import ConfigError, DaemonConfig
from npm.daemon.controller import Controller, Dataplane
from npm.daemon.events import ApiEvents, LogEvents
from npm.daemon.http import DEBUG_CONNECTION_DEADLINE, DEBUG_ROUTES, MAIN_ROUTES, Endpoints, Server
from npm.daemon.metrics import Metrics
from npm.daemon.sources.manifests import StaticSource
from npm.daemon.sources.watch import Backoff, ResourceWatcher, api_client, start_watchers
from npm.daemon.verifier import Verifier
from npm.dataplane.dataplanes import make_enforcer
from npm.dataplane.enforcer import DataplaneConfig, Enforcer
from npm.dataplane.nft_enforcer import NftEnforcer

log = logging.getLogger("npm.daemon")


def make_dataplane(cfg: DaemonConfig) -> Enforcer | NftEnforcer:
    """The real enforcer for this node, configured from the ``dataplane`` section (its
    ``kind``, iptables or nftables, chooses the dataplane)."""
    allowed = tuple(f.name for f in fields(DataplaneConfig))
    npm_config.check_dataplane_keys(cfg, allowed)
    try:
        dp_config = DataplaneConfig(**cfg.dataplane)
    except (TypeError, ValueError) as exc:
        raise ConfigError("dataplane", "-", str(exc)) from None
    return make_enforcer(cfg.node_name, dp_config)



@dataclass
class Daemon:
    """One running enforcer: source, cache, controller, HTTP servers. Also used by tests."""

    cfg: DaemonConfig
    dataplane: Dataplane
    api: Any = None  # a kubernetes ApiClient (imported lazily); made from the config when None
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.metrics = Metrics()
        kinds = [k for k in KINDS if k != "Node" or self.cfg.watch_nodes or self.cfg.manifests]
        self.cache = ObjectCache(kinds, metrics=self.metrics)
        self.events: ApiEvents | LogEvents | None = None
        self.controller = Controller(
            self.cache,
            self.dataplane,
            metrics=self.metrics,
            coalesce_window=self.cfg.coalesce_window,
            reconcile_interval=self.cfg.reconcile_interval,
            retry_initial=self.cfg.backoff_initial,
            retry_max=self.cfg.backoff_max,
        )
        self.cache.on_change = self.controller.notify
        # Translation validation needs a real dataplane (tests' recorders have no kernel).
        kind = getattr(getattr(self.dataplane, "config", None), "kind", None)
        self.verifier = None if kind is None else Verifier(
            self.controller, kind, metrics=self.metrics, interval=self.cfg.verify_interval,
            budget=self.cfg.verify_budget, max_pods=self.cfg.verify_max_pods,
            runner=getattr(self.dataplane, "runner", None),
        )
        self.kinds = kinds
        self.sources: list[ResourceWatcher | StaticSource] = []
        self.servers: list[Server] = []
        self.started = time.monotonic()
        heap.watch_collections()

    def start(self) -> None:
        """Start HTTP servers, the controller, then the sources."""
        endpoints = Endpoints(
            healthy=self.healthy, ready=self.ready, metrics=self.metrics.render, dump=self.dump, memory=heap.report,
            verify=self.verifier.check if self.verifier is not None else None,
        )
        self.servers.append(Server(self.cfg.listen_address(), endpoints, MAIN_ROUTES).start())
        debug = self.cfg.debug_address()
        if debug is not None:
            self.servers.append(Server(debug, endpoints, DEBUG_ROUTES, deadline=DEBUG_CONNECTION_DEADLINE).start())
        if self.cfg.manifests:
            self.events = LogEvents()
            self.controller.events = self.events
            self.controller.start()
            self._start_verifier()
            source = StaticSource(
                self.cfg.manifests, self.cache, self.stop_event, poll_interval=self.cfg.poll_interval,
                metrics=self.metrics, events=self.events,
            )
            source.start()
            self.sources.append(source)
            log.info("node %s: enforcing the manifests under %s", self.cfg.node_name, self.cfg.manifests)
            return
        if self.api is None:
            self.api = api_client(self.cfg.kubeconfig)
        self.events = ApiEvents(self.api, self.cfg.node_name) if self.cfg.post_events else LogEvents()
        self.controller.events = self.events
        self.controller.start()
        self._start_verifier()
        self.sources.extend(
            start_watchers(
                self.api,
                self.kinds,
                self.cache,
                self.metrics,
                self.stop_event,
                watch_timeout=self.cfg.watch_timeout,
                backoff=Backoff(self.cfg.backoff_initial, self.cfg.backoff_max),
                crd_retry=self.cfg.crd_retry_interval,
            )
        )
        log.info("node %s: watching %s on %s", self.cfg.node_name, ", ".join(self.kinds), self.api.configuration.host)

    def _start_verifier(self) -> None:
        if self.verifier is not None:
            self.verifier.events = self.events
            self.verifier.start()

    def wait(self) -> None:
        """Block until stopped (a signal sets ``stop_event``)."""
        while not self.stop_event.wait(1.0):
            pass

    def shutdown(self) -> None:
        """Stop sources and the controller; clean the dataplane if configured; stop servers."""
        self.stop_event.set()
        for source in self.sources:
            close = getattr(source, "close", None)
            if close:
                close()
        for source in self.sources:
            source.join(5)
        if self.verifier is not None:
            self.verifier.stop()
        self.controller.stop()
        if self.controller.alive:
            # Still inside an apply after the grace period: a second writer must not start.
            log.error("the controller did not stop in time; leaving the kernel as it is")
        elif self.cfg.cleanup_on_exit:
            try:
                self.dataplane.cleanup()
                log.info("removed every rule and set (--cleanup-on-exit)")
            except Exception as exc:
                log.error("cleanup failed: %s: %s", type(exc).__name__, exc)
        else:
            log.info("stopping; rules stay in place")
        if self.events is not None:
            self.events.close()
        for server in self.servers:
            server.stop()

    # -- endpoints -------------------------------------------------------------------------

    def healthy(self) -> tuple[bool, str]:
        if self.controller.alive:
            return True, ""
        return False, "the controller thread is not running"

    def ready(self) -> tuple[bool, str]:
        for source in self.sources:
            if getattr(source, "failing", False):
                return False, str(getattr(source, "last_error", "a source is failing"))
        if self.controller.status.ready:
            return True, ""
        if not self.cache.synced:
            return False, "waiting for the first list of every kind"
        return False, "waiting for the first full apply"

    def dump(self) -> dict[str, Any]:
        data = self.cache.dump()
        data["node"] = self.cfg.node_name
        data["controller"] = asdict(self.controller.status)
        if self.verifier is not None:
            data["verify"] = asdict(self.verifier.status)
        data["sources"] = [
            {
                "name": getattr(s, "name", ""),
                "connected": getattr(s, "connected", None),
                "resource_version": getattr(s, "resource_version", None),
                "last_error": getattr(s, "last_error", ""),
            }
            for s in self.sources
        ]
        data["uptime_seconds"] = round(time.monotonic() - self.started, 3)
        latencies = list(self.controller.latencies)
        data["enforcement_latency"] = {
            "count": self.controller.latency_count,
            # The newest ones (seconds from a change being seen to its apply finishing).
            "recent_seconds": [round(v, 6) for v in latencies[-5000:]],
        }
        return data
