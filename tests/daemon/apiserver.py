"""A Kubernetes API server for tests: the real list/watch protocol over HTTP on loopback.

It keeps Pods, Namespaces, Nodes, NetworkPolicies and ClusterNetworkPolicies with one resourceVersion counter (as
etcd does) and an event history per resource, and serves what the ``kubernetes`` client
asks for: paginated JSON lists with ``metadata.resourceVersion``; chunked watch streams
(``?watch=true&resourceVersion=N&allowWatchBookmarks=true&timeoutSeconds=T``) of
ADDED/MODIFIED/DELETED/BOOKMARK JSON lines; ``410 Gone`` for a resourceVersion older than
the compacted history (as an ERROR event in the stream, as the real server does, or as an
HTTP 410 when asked); Event create (409 when it exists) and patch. Tests change objects
with ``put``/``delete`` and break things with ``compact``, ``drop_watches``, ``stop`` and
``start`` (a restart on the same port).
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import json
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

# resource name -> (list path, kind)
RESOURCES = {
    "pods": ("/api/v1/pods", "Pod"),
    "namespaces": ("/api/v1/namespaces", "Namespace"),
    "nodes": ("/api/v1/nodes", "Node"),
    "networkpolicies": ("/apis/networking.k8s.io/v1/networkpolicies", "NetworkPolicy"),
    "clusternetworkpolicies": (
        "/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies", "ClusterNetworkPolicy"
    ),
}
KIND_TO_RESOURCE = {kind: name for name, (_path, kind) in RESOURCES.items()}
PATH_TO_RESOURCE = {path: name for name, (path, _kind) in RESOURCES.items()}
API_VERSION = {"Pod": "v1", "Namespace": "v1", "Node": "v1", "NetworkPolicy": "networking.k8s.io/v1",
               "ClusterNetworkPolicy": "policy.networking.k8s.io/v1alpha2"}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A meta/v1 Status object."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def object_key(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta['name']}" if ns else str(meta["name"])


class Store:
    """Objects, their history and the resourceVersion counter; shared by server restarts."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.rv = 100
        self.objects: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in RESOURCES}
        # per resource: list of (rv, type, object), rv increasing
        self.history: dict[str, list[tuple[int, str, dict[str, Any]]]] = {name: [] for name in RESOURCES}
        self.compacted = 0  # watches from a version below this get 410
        self.events: dict[tuple[str, str], dict[str, Any]] = {}
        self.requests: list[tuple[str, str]] = []

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        obj = copy.deepcopy(obj)
        resource = KIND_TO_RESOURCE[obj["kind"]]
        obj.setdefault("apiVersion", API_VERSION[obj["kind"]])
        meta = obj.setdefault("metadata", {})
        if obj["kind"] in ("Pod", "NetworkPolicy"):
            meta.setdefault("namespace", "default")
        with self.cond:
            key = object_key(obj)
            old = self.objects[resource].get(key)
            meta.setdefault("uid", (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()))
            self.rv += 1
            meta["resourceVersion"] = str(self.rv)
            self.objects[resource][key] = obj
            self.history[resource].append((self.rv, "MODIFIED" if old else "ADDED", obj))
            self.cond.notify_all()
        return obj

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        resource = KIND_TO_RESOURCE[kind]
        key = f"{namespace}/{name}" if namespace else name
        with self.cond:
            obj = self.objects[resource].pop(key)
            obj = copy.deepcopy(obj)
            self.rv += 1
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.history[resource].append((self.rv, "DELETED", obj))
            self.cond.notify_all()

    def compact(self) -> None:
        """Forget history: every watch from an older resourceVersion gets 410 Gone."""
        with self.cond:
            self.compacted = self.rv + 1
            for resource in self.history:
                self.history[resource] = []
            self.cond.notify_all()


class ApiServer:
    """The test API server. ``url`` is what a kubeconfig or Configuration points at."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        bookmark_interval: float = 1.0,
        gone_as_http_status: bool = False,
        store: Store | None = None,
        netns: str | None = None,
    ) -> None:
        self.netns = netns  # listen inside this named network namespace (ip netns)
        self.host = host
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.gone_as_http_status = gone_as_http_status
        self.store = store or Store()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._watches: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._generation = 0  # bumped to end every open watch (drop, stop)
        self.forbidden: set[str] = set()  # resources that answer 403 (RBAC not granted)
        self.absent: set[str] = set()  # resources that answer 404 (a CRD not installed)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> ApiServer:
        self._stopped = False
        handler = _make_handler(self)
        server_class = type("Server", (ThreadingHTTPServer,), {"allow_reuse_address": True, "daemon_threads": True})
        deadline = time.monotonic() + 10
        while True:
            try:
                self._httpd = in_netns(self.netns, lambda: server_class((self.host, self.port), handler))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut every open connection (as a crashed API server would)."""
        self._stopped = True  # a watch accepted just before this must not outlive the server
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        self.drop_watches()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_watches(self) -> None:
        """Close every open watch connection abruptly (no final chunk)."""
        with self._lock:
            sockets = list(self._watches)
            self._generation += 1
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self.store.cond:
            self.store.cond.notify_all()

    # -- test helpers ------------------------------------------------------------------------

    def put(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self.store.put(obj)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        self.store.delete(kind, name, namespace)

    def compact(self) -> None:
        self.store.compact()

    def requests(self, path_prefix: str = "") -> list[tuple[str, str]]:
        with self.store.cond:
            return [r for r in self.store.requests if r[1].startswith(path_prefix)]

    def events(self) -> list[dict[str, Any]]:
        with self.store.cond:
            return [copy.deepcopy(e) for e in self.store.events.values()]

    def open_watches(self) -> int:
        with self._lock:
            return len(self._watches)

    def kubeconfig(self, path: str) -> str:
        """Write a kubeconfig that points at this server (no credentials)."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": self.url}}],
            "users": [{"name": "test", "user": {}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
            "current-context": "test",
        }
        with open(path, "w") as fh:
            json.dump(config, fh)
        return path


def in_netns(netns: str | None, make: Any) -> Any:
    """Call ``make`` with the calling thread in ``netns``: sockets it creates stay there."""
    if netns is None:
        return make()
    import ctypes
    import os

    clone_newnet = 0x40000000
    libc = ctypes.CDLL(None, use_errno=True)
    result: list[Any] = []

    def body() -> None:
        # setns() moves only this thread; a fresh thread is used so no other work sees it.
        here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        there = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        try:
            if libc.setns(there, clone_newnet) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {netns}")
            try:
                result.append(make())
            finally:
                libc.setns(here, clone_newnet)
        except BaseException as exc:
            result.append(exc)
        finally:
            os.close(here)
            os.close(there)

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def _make_handler(server: ApiServer) -> type[BaseHTTPRequestHandler]:
    store = server.store

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _json(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> Any:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"null")

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            with store.cond:
                store.requests.append(("GET", self.path))
            resource = PATH_TO_RESOURCE.get(url.path)
            if resource is None or resource in server.absent:
                self._json(404, status(404, "NotFound", f"no resource at {url.path}"))
                return
            if resource in server.forbidden:
                self._json(403, status(403, "Forbidden", f"{resource} is forbidden"))
                return
            if query.get("watch") in ("true", "1"):
                self._watch(resource, query)
            else:
                self._list(resource, query)

        def _list(self, resource: str, query: dict[str, str]) -> None:
            limit = int(query.get("limit") or 0)
            offset = 0
            with store.cond:
                rv = store.rv
                if query.get("continue"):
                    token_rv, _, token_offset = query["continue"].partition(":")
                    if int(token_rv) < store.compacted:
                        self._json(410, status(410, "Expired", "the provided continue parameter is too old"))
                        return
                    rv, offset = int(token_rv), int(token_offset)
                keys = sorted(store.objects[resource])
                chosen = keys[offset : offset + limit] if limit else keys[offset:]
                page = [copy.deepcopy(store.objects[resource][k]) for k in chosen]
            meta: dict[str, Any] = {"resourceVersion": str(rv)}
            if limit and offset + limit < len(keys):
                meta["continue"] = f"{rv}:{offset + limit}"
            kind = RESOURCES[resource][1]
            for item in page:
                # The real server leaves kind and apiVersion out of list items.
                item.pop("kind", None)
                item.pop("apiVersion", None)
            self._json(200, {"kind": f"{kind}List", "apiVersion": API_VERSION[kind], "metadata": meta, "items": page})

        def _watch(self, resource: str, query: dict[str, str]) -> None:
            since = int(query.get("resourceVersion") or 0)
            bookmarks = query.get("allowWatchBookmarks") in ("true", "1")
            timeout = float(query.get("timeoutSeconds") or 1800)
            with store.cond:
                too_old = since and since < store.compacted - 1
                # Events with rv > since; a "0"/absent version starts from now.
                history = store.history[resource]
                if not since:
                    since = store.rv
            if too_old and server.gone_as_http_status:
                self._json(410, status(410, "Gone", f"too old resource version: {since}"))
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if too_old:
                self._chunk({"type": "ERROR", "object": status(410, "Expired", f"too old resource version: {since}")})
                self._end()
                return
            with server._lock:
                server._watches.add(self.connection)
                generation = server._generation
            deadline = time.monotonic() + timeout
            last_bookmark = time.monotonic()
            sent_rv = since
            try:
                while True:
                    with store.cond:
                        history = store.history[resource]
                        start = bisect.bisect_right([h[0] for h in history], sent_rv)
                        pending = history[start:]
                        if not pending:
                            store.cond.wait(0.1)
                            history = store.history[resource]
                            start = bisect.bisect_right([h[0] for h in history], sent_rv)
                            pending = history[start:]
                        current = store.rv
                        compacted = store.compacted
                    if server._generation != generation or server._stopped:
                        return  # dropped or stopped: the connection is closed on the way out
                    if sent_rv < compacted - 1 and not pending:
                        # Our position was compacted away while we watched.
                        self._chunk({"type": "ERROR", "object": status(410, "Expired", "too old resource version")})
                        self._end()
                        return
                    for rv, event_type, obj in pending:
                        self._chunk({"type": event_type, "object": obj})
                        sent_rv = rv
                    now = time.monotonic()
                    if bookmarks and now - last_bookmark >= server.bookmark_interval:
                        kind = RESOURCES[resource][1]
                        bookmark = {
                            "kind": kind,
                            "apiVersion": API_VERSION[kind],
                            "metadata": {"resourceVersion": str(max(sent_rv, current))},
                        }
                        self._chunk({"type": "BOOKMARK", "object": bookmark})
                        sent_rv = max(sent_rv, current)
                        last_bookmark = now
                    if now >= deadline:
                        self._end()
                        return
            except OSError:
                return
            finally:
                with server._lock:
                    server._watches.discard(self.connection)
                self.close_connection = True

        def _chunk(self, event: dict[str, Any]) -> None:
            data = json.dumps(event).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        def _end(self) -> None:
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def do_POST(self) -> None:
            parts = urlsplit(self.path).path.strip("/").split("/")
            with store.cond:
                store.requests.append(("POST", self.path))
            # /api/v1/namespaces/{ns}/events
            if len(parts) == 5 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "events":
                body = self._body()
                key = (parts[3], body["metadata"]["name"])
                with store.cond:
                    if key in store.events:
                        self._json(409, status(409, "AlreadyExists", f'events "{key[1]}" already exists'))
                        return
                    store.rv += 1
                    body["metadata"]["resourceVersion"] = str(store.rv)
                    body["metadata"].setdefault("namespace", parts[3])
                    store.events[key] = body
                self._json(201, body)
                return
            self._json(405, status(405, "MethodNotAllowed", f"POST {self.path}"))

        def do_PATCH(self) -> None:
            parts = urlsplit(self.path).path.strip("/").split("/")
            with store.cond:
                store.requests.append(("PATCH", self.path))
            if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "events":
                patch = self._body()
                key = (parts[3], parts[5])
                with store.cond:
                    if key not in store.events:
                        self._json(404, status(404, "NotFound", f'events "{key[1]}" not found'))
                        return
                    store.events[key].update(patch)
                    body = copy.deepcopy(store.events[key])
                self._json(200, body)
                return
            self._json(405, status(405, "MethodNotAllowed", f"PATCH {self.path}"))

    return Handler
