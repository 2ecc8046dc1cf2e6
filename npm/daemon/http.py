"""The daemon's HTTP endpoints: health, readiness, metrics, and the debug cache dump.

Two listeners: the main one (``listen``, default ``0.0.0.0:10091`` as the original) serves
``/healthz``, ``/readyz``, ``/metrics`` (everything) and the original's ``/node-metrics`` and
``/cluster-metrics``; the debug one (``debug_listen``, default on localhost only, since the
dump shows every pod and policy) serves ``/npm/v1/debug/manager`` and the daemon's memory
(``/npm/v1/debug/memory``, see ``npm.daemon.heap``). The dump is encoded and
sent as it is written, one object at a time (HTTP/1.0, ended by closing the connection):
at 20,000 pods a dump built whole first cost the daemon about 130 MiB at once.

The main port is reachable from every pod (hostNetwork), so no client may hold the server:
each connection has a read timeout and a whole-connection deadline (10 s; 300 s on the
debug listener, whose answers at 100,000 pods take longer to write), at most
:data:`MAX_CONNECTIONS` are served at once (at most :data:`MAX_PER_CLIENT` from one address,
so one pod cannot starve the kubelet's probes) and the rest are closed at once, and a client
that goes away mid-response costs that one response, nothing more.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST

from npm.daemon.cache import json_data

log = logging.getLogger("npm.http")

DEBUG_MANAGER_PATH = "/npm/v1/debug/manager"
DEBUG_MEMORY_PATH = "/npm/v1/debug/memory"
DEBUG_VERIFY_PATH = "/npm/v1/debug/verify"  # runs azure-npm verify on this node now
READ_TIMEOUT = 5.0  # seconds one read may block
CONNECTION_DEADLINE = 10.0  # seconds a connection may live, however slowly it trickles
# The debug listener (localhost by default) answers with the whole cache or a memory census,
# which at 100,000 pods takes longer than the main listener's deadline to write.
DEBUG_CONNECTION_DEADLINE = 300.0
MAX_CONNECTIONS = 16
MAX_PER_CLIENT = 4


class Endpoints:
    """What the handlers read; callables so the server holds no daemon state of its own."""

    def __init__(
        self,
        *,
        healthy: Callable[[], tuple[bool, str]],
        ready: Callable[[], tuple[bool, str]],
        metrics: Callable[[str], bytes],
        dump: Callable[[], dict[str, Any]],
        memory: Callable[[], dict[str, Any]],
        verify: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.healthy = healthy
        self.ready = ready
        self.metrics = metrics
        self.dump = dump
        self.memory = memory
        self.verify = verify


def _handler(endpoints: Endpoints, routes: tuple[str, ...]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "azure-npm"
        timeout = READ_TIMEOUT

        def parse_request(self) -> bool:
            if not super().parse_request():
                return False
            if self.request_version == "HTTP/0.9":  # no headers to answer with: refuse and close
                self.close_connection = True
                return False
            return True

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path not in routes:
                self._send(404, "text/plain; charset=utf-8", f"not found: {path}\n".encode())
                return
            try:
                self._route(path)
            except OSError:  # the client hung up or timed out mid-response: nothing to answer
                self.close_connection = True
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
                self._stream(200, "application/json", _json_chunks(endpoints.dump()))
            elif path == DEBUG_MEMORY_PATH:
                self._send(200, "application/json", json.dumps(endpoints.memory(), indent=1).encode())
            elif path == DEBUG_VERIFY_PATH:
                if endpoints.verify is None:
                    self._send(404, "text/plain; charset=utf-8", b"verify is not available\n")
                    return
                report = endpoints.verify()
                status = 200 if report.get("agrees") is not False else 409
                self._send(status, "application/json", json.dumps(report, indent=1).encode())

        def _stream(self, status: int, content_type: str, chunks: Iterator[bytes]) -> None:
            # No Content-Length: the body ends when the connection closes (HTTP/1.0).
            self.close_connection = True
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.end_headers()
            for chunk in chunks:
                self.wfile.write(chunk)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


def _json_chunks(data: Any, size: int = 1 << 16) -> Iterator[bytes]:
    """``data`` as indented JSON in pieces of about ``size`` bytes, encoded as it goes;
    objects JSON does not know (the cache's model objects) go through ``json_data``."""
    pending: list[str] = []
    length = 0
    for piece in json.JSONEncoder(indent=1, sort_keys=True, default=json_data).iterencode(data):
        pending.append(piece)
        length += len(piece)
        if length >= size:
            yield "".join(pending).encode()
            pending, length = [], 0
    pending.append("\n")
    yield "".join(pending).encode()


MAIN_ROUTES = ("/healthz", "/readyz", "/metrics", "/node-metrics", "/cluster-metrics")
DEBUG_ROUTES = (DEBUG_MANAGER_PATH, DEBUG_MEMORY_PATH, DEBUG_VERIFY_PATH)


class _Deadlines(threading.Thread):
    """Shuts down connections that outlive their deadline (a slow trickle defeats a read timeout)."""

    def __init__(self) -> None:
        super().__init__(name="http-deadlines", daemon=True)
        self._heap: list[tuple[float, int, socket.socket]] = []
        self._cond = threading.Condition()
        self._sequence = 0
        self._stopped = False

    def add(self, sock: socket.socket, seconds: float) -> None:
        with self._cond:
            self._sequence += 1
            heapq.heappush(self._heap, (time.monotonic() + seconds, self._sequence, sock))
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def run(self) -> None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    sock = heapq.heappop(self._heap)[2]
                    if sock.fileno() != -1:  # still open: its handler is stuck on it
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                self._cond.wait(timeout=(self._heap[0][0] - now) if self._heap else None)


class _BoundedServer(ThreadingHTTPServer):
    """A threading HTTP server that serves a bounded number of connections, each for a bounded time."""

    daemon_threads = True
    request_queue_size = 64

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], deadline: float = CONNECTION_DEADLINE
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, handler)
        self.deadline = deadline
        self._lock = threading.Lock()
        self._active = 0
        self._per_client: Counter[str] = Counter()
        self._deadlines = _Deadlines()
        self._deadlines.start()
        self.refused = 0  # connections closed at once because the server was full

    def process_request(self, request: Any, client_address: Any) -> None:
        host = str(client_address[0]) if client_address else ""
        with self._lock:
            full = self._active >= MAX_CONNECTIONS or self._per_client[host] >= MAX_PER_CLIENT
            if not full:
                self._active += 1
                self._per_client[host] += 1
            else:
                self.refused += 1
        if full:
            self.shutdown_request(request)
            return
        self._deadlines.add(request, self.deadline)
        try:
            super().process_request(request, client_address)
        except Exception:  # no thread could be started: give the slot back
            self._release(host)
            self.shutdown_request(request)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release(str(client_address[0]) if client_address else "")

    def _release(self, host: str) -> None:
        with self._lock:
            self._active -= 1
            self._per_client[host] -= 1
            if self._per_client[host] <= 0:
                del self._per_client[host]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets, times out or hangs up mid-response is the client's business.
        log.debug("connection from %s ended early", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        self._deadlines.stop()


class Server:
    """One listener in a background thread."""

    def __init__(
        self,
        address: tuple[str, int],
        endpoints: Endpoints,
        routes: tuple[str, ...],
        *,
        deadline: float = CONNECTION_DEADLINE,
    ) -> None:
        self.httpd = _BoundedServer(address, _handler(endpoints, routes), deadline)
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
