"""The in-pod agent: serves a pod's TCP/UDP ports and makes probes on request.

It runs inside the pod's network namespace and is driven over a unix socket (which lives
in the file system, so the harness reaches every agent without any network path that
policy could affect). Requests are one JSON line: ``{"probes": [{"ip": "10.0.0.2",
"port": 80, "protocol": "TCP"}, ...], "timeout": 1.0}``; the answer is one JSON line
``{"results": [true, false, null, ...]}`` where null means the protocol can't be probed
on this kernel (SCTP without kernel support).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import sys

UDP_PAYLOAD = b"npm-probe"


def sctp_supported() -> bool:
    """Whether this kernel can open SCTP sockets."""
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError:
        return False
    return True


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


class _UdpProbe(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not self.done.done():
            self.done.set_result(True)

    def error_received(self, exc: Exception) -> None:  # ICMP unreachable
        if not self.done.done():
            self.done.set_result(False)


async def probe_tcp(ip: str, port: int, timeout: float, proto: int = 0) -> bool:
    """A TCP (or SCTP) connect that completes within ``timeout``."""
    try:
        if proto:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
            sock.setblocking(False)
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (ip, port)), timeout)
            finally:
                sock.close()
            return True
        _reader, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    except (TimeoutError, OSError):
        return False


async def probe_udp(ip: str, port: int, timeout: float) -> bool:
    """A datagram to ``ip:port`` answered by the echo server within ``timeout``.

    Resent a few times within the timeout: a single datagram may be lost while the
    first packet of a new flow sets up conntrack state.
    """
    loop = asyncio.get_running_loop()
    try:
        transport, proto = await loop.create_datagram_endpoint(_UdpProbe, remote_addr=(ip, port))
    except OSError:
        return False
    try:
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            transport.sendto(UDP_PAYLOAD)
            try:
                return await asyncio.wait_for(asyncio.shield(proto.done), min(0.25, deadline - loop.time()))
            except TimeoutError:
                continue
        return False
    finally:
        transport.close()


async def run_probe(req: dict, timeout: float, sctp: bool) -> bool | None:
    protocol = req.get("protocol", "TCP").upper()
    ip, port = req["ip"], int(req["port"])
    if protocol == "TCP":
        return await probe_tcp(ip, port, timeout)
    if protocol == "UDP":
        return await probe_udp(ip, port, timeout)
    if protocol == "SCTP":
        return await probe_tcp(ip, port, timeout, socket.IPPROTO_SCTP) if sctp else None
    return None


async def serve(socket_path: str, tcp: list[int], udp: list[int], sctp_ports: list[int], bind: str) -> None:
    """Serve the ports, then answer probe requests on ``socket_path`` until killed."""
    loop = asyncio.get_running_loop()
    sctp = sctp_supported()
    servers = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    for port in tcp:
        servers.append(await asyncio.start_server(accept, bind, port, reuse_address=True))
    for port in udp:
        await loop.create_datagram_endpoint(_UdpEcho, local_addr=(bind, port))
    sctp_socks = []
    if sctp:
        for port in sctp_ports:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((bind, port))
            s.listen(64)
            s.setblocking(False)
            sctp_socks.append(s)
            loop.add_reader(s.fileno(), lambda s=s: s.accept()[0].close())

    async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                request = json.loads(line)
                timeout = float(request.get("timeout", 1.0))
                results = await asyncio.gather(*(run_probe(p, timeout, sctp) for p in request.get("probes", [])))
                writer.write(json.dumps({"results": results, "sctp": sctp}).encode() + b"\n")
                await writer.drain()
        finally:
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)
    tmp = socket_path + ".tmp"
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)
    ctl = await asyncio.start_unix_server(control, tmp)
    os.rename(tmp, socket_path)  # the socket appears only once every port is bound
    async with ctl:
        await ctl.serve_forever()


def _ports(text: str) -> list[int]:
    return [int(p) for p in text.split(",") if p]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve a pod's ports and probe others on request.")
    parser.add_argument("--socket", required=True, help="unix socket path for probe requests")
    parser.add_argument("--tcp", default="", help="comma-separated TCP ports to serve")
    parser.add_argument("--udp", default="", help="comma-separated UDP ports to serve")
    parser.add_argument("--sctp", default="", help="comma-separated SCTP ports to serve (if supported)")
    parser.add_argument("--bind", default="0.0.0.0", help="address to serve on")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.socket, _ports(args.tcp), _ports(args.udp), _ports(args.sctp), args.bind))
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
