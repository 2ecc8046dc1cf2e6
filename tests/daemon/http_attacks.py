"""Hostile HTTP clients against the daemon's port; run inside the node namespace, prints JSON.

Usage: ``python http_attacks.py HOST PORT``. The attackers connect from 127.0.0.2 so that a
well-behaved client (127.0.0.1, the kubelet's probe) is a different address, as in a cluster.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import threading
import time
import urllib.request

ATTACKER = "127.0.0.2"


def connect(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((ATTACKER, 0))
    sock.connect((host, port))
    return sock


def hang_up_before_reading(host: str, port: int, tries: int) -> None:
    """Ask for the largest response, then reset the connection without reading it."""
    for _ in range(tries):
        sock = connect(host, port)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        sock.close()


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed ``sock`` (EOF or reset), None if it stayed open."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except OSError:
        pass
    return time.monotonic() - started


def healthz(host: str, port: int) -> int:
    try:
        return urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2).status
    except OSError:
        return 0


def main(host: str, port: int) -> dict[str, object]:
    result: dict[str, object] = {}
    hang_up_before_reading(host, port, 20)
    result["healthz_after_hangups"] = healthz(host, port)

    # Idle connections that never send a byte, and one that trickles a byte a second.
    idle = []
    for _ in range(200):
        try:
            idle.append(connect(host, port))
        except OSError:
            break
    trickle = connect(host, port)
    trickling = threading.Event()

    def drip() -> None:
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
            if not trickling.is_set():
                return
            try:
                trickle.send(bytes([byte]))
            except OSError:
                return
            time.sleep(0.5)

    trickling.set()
    threading.Thread(target=drip, daemon=True).start()
    time.sleep(0.3)
    result["healthz_while_held"] = healthz(host, port)

    old = connect(host, port)
    old.sendall(b"GET /\r\n")  # HTTP/0.9: no headers to answer with
    result["http09_closed_after"] = closed_within(old, 3.0)

    closes = [closed_within(s, 8.0) for s in idle[:8]]
    result["idle_opened"] = len(idle)
    result["idle_closed_after_max"] = max((c for c in closes if c is not None), default=None)
    result["idle_still_open"] = sum(c is None for c in closes)
    result["trickle_closed_after"] = closed_within(trickle, 12.0)
    trickling.clear()
    for s in idle:
        s.close()
    result["healthz_after"] = healthz(host, port)
    return result


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
