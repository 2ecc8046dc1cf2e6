"""Verdicts of the rules a node really has: the iptables dataplane's FORWARD walk, read back.

A packet's verdict depends on its addresses only through the sets and CIDRs the rules test,
so addresses with the same memberships (their *signature*) get the same verdict for the same
protocol and port: ``check`` evaluates one address per signature.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from npm.dataplane.debug import Packet, Trace, evaluate
from npm.dataplane.ipset import SavedSet
from npm.dataplane.iptables import SavedTable

ACCEPTED = ("ACCEPT",)


@dataclass(frozen=True)
class KernelVerdict:
    """``allowed`` is None when a rule on the packet's path could not be decided."""

    allowed: bool | None
    trace: Trace


class IptablesView:
    """The filter table and the ipsets of a node, as ``iptables-save`` and ``ipset save`` print them."""

    name = "iptables"

    def __init__(self, table: SavedTable | None, sets: Mapping[str, SavedSet]) -> None:
        self.table = table if table is not None else SavedTable("filter")
        self.sets = dict(sets)
        self._by_ip: dict[str, list[str]] = {}
        self._by_ip_port: dict[str, list[str]] = {}
        self._nets: list[tuple[str, list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, bool]]]] = []
        for s in self.sets.values():
            if s.kind == "hash:ip":
                for m in s.members:
                    self._by_ip.setdefault(m, []).append(s.name)
            elif s.kind == "hash:ip,port":
                for m in s.members:
                    ip, _, rest = m.partition(",")
                    self._by_ip_port.setdefault(ip, []).append(f"{s.name}:{rest}")
            elif s.kind == "hash:net":
                nets = []
                for m in s.members:
                    text, _, flag = m.partition(" ")
                    nets.append((ipaddress.ip_network(text, strict=False), flag != "nomatch"))
                self._nets.append((s.name, nets))
        cidrs = set()
        for rules in self.table.chains.values():
            for rule in rules:
                t = rule.tokens
                cidrs.update(t[i + 1] for i in range(len(t) - 1) if t[i] in ("-s", "-d"))
        self._cidrs = [ipaddress.ip_network(c, strict=False) for c in sorted(cidrs)]

    def edge_addresses(self) -> list[str]:
        """The first and last address of every IPv4 CIDR the rules and sets test, and the
        addresses just outside them: where an off-by-one in the translation would show."""
        out: list[str] = []
        nets = [net for _name, members in self._nets for net, _match in members] + list(self._cidrs)
        for net in nets:
            if net.version != 4 or net.prefixlen == 32:
                continue
            lo, hi = int(net.network_address), int(net.broadcast_address)
            out += [str(ipaddress.IPv4Address(x)) for x in (lo - 1, lo, hi, hi + 1) if 0 <= x < 1 << 32]
        return out

    def signature(self, ip: str) -> tuple:
        """What the rules can tell about ``ip``: the sets and rule CIDRs that hold it."""
        return _signature(self, ip)

    def verdict(self, src: str, dst: str, protocol: str, port: int) -> KernelVerdict:
        """The FORWARD verdict for a NEW packet ``src -> dst`` on ``port``/``protocol``."""
        trace = evaluate(self.table, self.sets, Packet(src, dst, protocol.lower(), port))
        if trace.undecided and not trace.verdict:
            return KernelVerdict(None, trace)
        return KernelVerdict(trace.verdict in ACCEPTED, trace)


def _signature(view: IptablesView, ip: str) -> tuple:
    addr = ipaddress.ip_address(ip)
    nets = []
    for name, members in view._nets:
        best: tuple[int, bool] | None = None
        for net, match in members:
            if addr.version == net.version and addr in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, match)
        if best and best[1]:
            nets.append(name)
    cidrs = tuple(str(c) for c in view._cidrs if addr.version == c.version and addr in c)
    return (tuple(sorted(view._by_ip.get(ip, ()))), tuple(sorted(view._by_ip_port.get(ip, ()))), tuple(nets), cidrs)
