"""Verdicts of the nftables table a node really has (``nft -j list table inet azure-npm``).

A NEW packet is walked through the table's forward base chain by ``nft_eval``; as for the
iptables view, a packet's verdict depends on its addresses only through the sets, map keys
and rule literals that hold them, so addresses with the same memberships (their
*signature*) get the same verdict for the same protocol and port.

The verdict is our table's: an ``accept`` here does not skip other tables' base chains
(kube-proxy's, iptables-nft's), which this view does not judge.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Any

from npm.dataplane.debug import Packet
from npm.dataplane.nft import ListedTable, read_table
from npm.dataplane.nft_eval import (
    ACCEPT,
    ADDR4,
    ADDR6,
    Element,
    ElementIndex,
    Evaluator,
    Undecided,
    left_kinds,
    render_verdict,
)
from npm.verify.kernel import KernelVerdict, edges

Part = tuple[Any, ...]


class NftView:
    """Our nftables table, as listed by the kernel (or saved ``nft -j`` output)."""

    name = "nftables"

    def __init__(self, table: ListedTable | None) -> None:
        self.table = table if table is not None else ListedTable()
        self.evaluator = Evaluator(self.table)
        self._points: dict[tuple[str, int], list[Part]] = {}
        self._ranges: list[tuple[str, int, int, Part]] = []
        for name in self.table.sets:
            index = self.evaluator.index(name)
            if not index.error:  # its lookups are undecided for every address alike
                self._add(("set", name), index)
        for chain in self.table.chains.values():
            for rule in chain.rules:
                for i, st in enumerate(rule.expr):
                    for index in _literals(st):
                        self._add(("rule", chain.name, rule.handle, i), index)

    @classmethod
    def from_json(cls, text: str) -> NftView:
        """The view of saved ``nft -j list table`` output (ValueError, KeyError or TypeError
        when it is not that)."""
        return cls(read_table(text))

    def _add(self, where: tuple[Any, ...], index: ElementIndex) -> None:
        addressed = [p for p, k in enumerate(index.kinds) if k in (ADDR4, ADDR6)]
        for element in index.elements():
            for p in addressed:
                part = (*where, p, element.spans[:p] + element.spans[p + 1:], _data(element))
                lo, hi = element.spans[p]
                if lo == hi:
                    self._points.setdefault((index.kinds[p], lo), []).append(part)
                else:
                    self._ranges.append((index.kinds[p], lo, hi, part))

    def signature(self, ip: str) -> tuple:
        """What the table can tell about ``ip``: the sets, map keys (with their verdicts) and
        rule literals holding it; for a concatenation, with the other parts of the element."""
        addr = ipaddress.ip_address(ip)
        kind, value = (ADDR4 if addr.version == 4 else ADDR6), int(addr)
        parts = set(self._points.get((kind, value), ()))
        parts.update(part for k, lo, hi, part in self._ranges if k == kind and lo <= value <= hi)
        return tuple(sorted(parts))

    def verdict(self, src: str, dst: str, protocol: str, port: int) -> KernelVerdict:
        """Our table's verdict for a NEW packet ``src -> dst`` on ``port``/``protocol``."""
        trace = self.evaluator.evaluate(Packet(src, dst, protocol.lower(), port))
        if not trace.verdict:
            return KernelVerdict(None, trace)
        return KernelVerdict(trace.verdict == ACCEPT, trace)

    def edge_addresses(self) -> list[str]:
        """The first and last address of every IPv4 range a set, map or rule tests, and the
        addresses just outside it."""
        return edges(sorted({(lo, hi) for kind, lo, hi, _part in self._ranges if kind == ADDR4}))


def _data(element: Element) -> str:
    if element.data is None:
        return ""
    try:
        return render_verdict(element.data)
    except (AttributeError, KeyError, TypeError, ValueError):
        return str(element.data)


def _literals(st: Any) -> Iterator[ElementIndex]:
    """The anonymous sets and literals of a statement whose key reads an address."""
    if not isinstance(st, dict):
        return
    if "match" in st:
        left, right, is_map = st["match"].get("left"), st["match"].get("right"), False
    elif "vmap" in st:
        left, right, is_map = st["vmap"].get("key"), st["vmap"].get("data"), True
    else:
        return
    if isinstance(right, str) and right.startswith("@"):
        return  # a named set: indexed with the sets
    try:
        kinds = left_kinds(left)
    except Undecided:
        return  # undecided when reached, for every address alike
    if not any(k in (ADDR4, ADDR6) for k in kinds):
        return
    items = right["set"] if isinstance(right, dict) and "set" in right else right
    index = ElementIndex.build("{literal}", kinds, items if isinstance(items, list) else [items], is_map)
    if not index.error:
        yield index
