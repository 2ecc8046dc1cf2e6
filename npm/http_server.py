"""The daemon's HTTP endpoints: health, readiness, metrics, and the debug cache dump.

Two listeners: the main one (``listen``, default ``0.0.0.0:10091`` as the original) serves
``/healthz``, ``/readyz``, ``/metrics`` (everything) and the original's ``/node-metrics`` and
``/cluster-metrics``; the debug one (``debug_listen``, default on localhost only, since the
dump shows every pod and policy) serves ``/npm/v1/debug/manager``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger("npm.http")

DEBUG_MANAGER_PATH = "/npm/v1/debug/manager"


class Endpoints:
    """What the handlers read; callables so the server holds no daemon state of its own."""

    def __init__(
        self,
        *,
        healthy: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
        metrics: Callable[[str], bytes],
        dump: Callable[[], dict[str, Any]],
    ) -> None:
        self.healthy = healthy
        self.ready = ready
        self.metrics = metrics
        self.dump = dump


def _handler(endpoints: Endpoints, routes: tuple[str, ...]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "azure-npm"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path not in routes:
                self._send(404, "text/plain; charset=utf-8", f"not found: {path}\n".encode())
                return
            try:
                self._route(path)
            except Exception as exc:  # a failing endpoint must not take the server down
                log.exception("error serving %s", path)
                self._send(500, "text/plain; charset=utf-8", f"internal error: {exc}\n".encode())

        def _route(self, path: str) -> None:
            if path in ("/healthz", "/readyz"):
                ok, why = (endpoints.healthy if path == "/healthz" else endpoints.ready)()
                self._send(200 if ok else 503, "text/plain; charset=utf-8", f"{'ok' if ok else why}\n".encode())
            elif path in ("/metrics", "/node-metrics", "/cluster-metrics"):
                which = {"/metrics": "all", "/node-metrics": "node", "/cluster-metrics": "cluster"}[path]
                self._send(200, CONTENT_TYPE_LATEST, endpoints.metrics(which))
            elif path == DEBUG_MANAGER_PATH:
                body = json.dumps(endpoints.dump(), indent=1, sort_keys=True).encode()
                self._send(200, "application/json", body)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


MAIN_ROUTES = ("/healthz", "/readyz", "/metrics", "/node-metrics", "/cluster-metrics")
DEBUG_ROUTES = (DEBUG_MANAGER_PATH,)


class Server:
    """One listener in a background thread."""

    def __init__(self, address: tuple[str, int], endpoints: Endpoints, routes: tuple[str, ...]) -> None:
        server_class = ThreadingHTTPServer
        if ":" in address[0]:
            import socket

            server_class = type("V6Server", (ThreadingHTTPServer,), {"address_family": socket.AF_INET6})
        self.httpd = server_class(address, _handler(endpoints, routes))
        self.httpd.daemon_threads = True
        self.routes = routes
        self.thread = threading.Thread(target=self.httpd.serve_forever, name=f"http-{address[1]}", daemon=True)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    def start(self) -> Server:
        self.thread.start()
        log.info("serving %s on %s:%d", ", ".join(self.routes), *self.address)
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
