"""Hand-written expected reachability: truth tables and ordered rules, as upstream writes them.

Three spellings, all of which mean "for these ports, this (source, destination) is allowed":

- a truth table in the upstream e2e suite's print format (``-`` then the destinations on
  the first line; each further line a source followed by ``.`` allowed, ``X`` denied or
  ``?`` not stated);
- a list of rules applied in order over a default (``true`` unless ``default`` says
  otherwise), each ``{from: PEER, to: PEER, allowed: BOOL}`` where PEER is ``*``, ``x/*``
  (a namespace), ``*/a`` (a pod name in any namespace), ``x/a`` or a glob such as
  ``x/web*``: upstream's
  ``NewReachability(pods, true)`` followed by ``ExpectPeer``/``Expect``/``ExpectAllIngress``;
- a mapping from port (``80/TCP``) to one of the two above, for steps probing several ports.

Loopback (a pod to itself) is never compared, as upstream ignores it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from kube.model import PortSpec

MARK_ALLOWED = "."
MARK_DENIED = "X"
MARK_UNKNOWN = "?"


class ExpectError(ValueError):
    """A malformed expectation; ``path`` is relative to the ``expect`` field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


def peer_matches(pattern: str, key: str) -> bool:
    """Whether ``ns/name`` matches ``*``, ``ns/*``, ``ns``, ``*/name``, ``ns/name`` or a glob (``x/web*``)."""
    if pattern == "*":
        return True
    ns, _, name = key.partition("/")
    p_ns, slash, p_name = pattern.partition("/")
    if not slash:
        p_name = "*"
    return fnmatchcase(ns, p_ns) and fnmatchcase(name, p_name)


@dataclass(frozen=True)
class ExpectRule:
    """One ordered rule: every pair matching ``src`` -> ``dst`` gets ``allowed``."""

    src: str
    dst: str
    allowed: bool


@dataclass(frozen=True)
class Expectation:
    """Expected verdicts for one port: a table (explicit pairs) or rules over a default."""

    default: bool | None = True
    rules: tuple[ExpectRule, ...] = ()
    table: tuple[tuple[tuple[str, str], bool], ...] | None = None

    def verdict(self, src: str, dst: str) -> bool | None:
        """The expected verdict for ``src`` -> ``dst``; None if not stated."""
        if self.table is not None:
            return dict(self.table).get((src, dst))
        value = self.default
        for rule in self.rules:
            if peer_matches(rule.src, src) and peer_matches(rule.dst, dst):
                value = rule.allowed
        return value


@dataclass(frozen=True)
class Expect:
    """Expectations of one step: per port, or one for every port the step names (key None)."""

    by_port: tuple[tuple[PortSpec | None, Expectation], ...]

    def for_port(self, spec: PortSpec, step_ports: Sequence[PortSpec]) -> Expectation | None:
        """The expectation for ``spec``; a port-less one covers only the step's own ports."""
        table = dict(self.by_port)
        if spec in table:
            return table[spec]
        if None in table and (not step_ports or spec in step_ports):
            return table[None]
        return None


def parse_expect(raw: Any) -> Expect:
    """Parse the ``expect`` field of a probe; raises ExpectError with a relative path."""
    if isinstance(raw, Mapping) and raw and not set(raw) <= {"default", "rules"}:
        out: list[tuple[PortSpec | None, Expectation]] = []
        for key, value in raw.items():
            try:
                spec = PortSpec.parse(str(key))
            except ValueError as exc:
                raise ExpectError(str(key), f"not a port: {exc}") from None
            out.append((spec, _parse_one(value, str(key))))
        return Expect(tuple(out))
    return Expect(((None, _parse_one(raw, "")),))


def _join(path: str, more: str) -> str:
    return f"{path}.{more}" if path and not more.startswith("[") else f"{path}{more}"


def _parse_one(raw: Any, path: str) -> Expectation:
    if isinstance(raw, str):
        return parse_table(raw, path)
    if isinstance(raw, list):
        return Expectation(True, _parse_rules(raw, path))
    if isinstance(raw, Mapping):
        default = raw.get("default", True)
        if not isinstance(default, bool):
            raise ExpectError(_join(path, "default"), f"must be true or false, not {default!r}")
        rules = raw.get("rules", [])
        if not isinstance(rules, list):
            raise ExpectError(_join(path, "rules"), "must be a list of {from, to, allowed}")
        return Expectation(default, _parse_rules(rules, _join(path, "rules")))
    raise ExpectError(path, "must be a truth table (text), a list of rules, or a mapping of port to either")


def _parse_rules(raw: list[Any], path: str) -> tuple[ExpectRule, ...]:
    rules = []
    for i, item in enumerate(raw):
        ipath = f"{path}[{i}]"
        if not isinstance(item, Mapping):
            raise ExpectError(ipath, "a rule is {from: PEER, to: PEER, allowed: true|false}")
        extra = set(item) - {"from", "to", "allowed"}
        if extra:
            raise ExpectError(_join(ipath, sorted(extra)[0]), "unknown key (expected from, to, allowed)")
        allowed = item.get("allowed")
        if not isinstance(allowed, bool):
            raise ExpectError(_join(ipath, "allowed"), "required: true or false")
        peers = []
        for key in ("from", "to"):
            value = item.get(key, "*")
            if not isinstance(value, str) or not _valid_pattern(value):
                raise ExpectError(_join(ipath, key), f"{value!r} is not a peer (*, ns/*, */pod or ns/pod)")
            peers.append(value)
        rules.append(ExpectRule(peers[0], peers[1], allowed))
    return tuple(rules)


def _valid_pattern(text: str) -> bool:
    if text == "*":
        return True
    parts = text.split("/")
    return 1 <= len(parts) <= 2 and all(p and " " not in p for p in parts)


def parse_table(text: str, path: str = "") -> Expectation:
    """Parse an upstream-style truth table (``-`` header, rows of ``.``/``X``/``?``)."""
    lines = [line.split() for line in text.strip().splitlines() if line.strip()]
    if not lines or lines[0][0] != "-":
        raise ExpectError(path, "a truth table starts with a header line: '-' then the destination pods")
    tos = lines[0][1:]
    if not tos:
        raise ExpectError(path, "the header names no destination pods")
    cells: list[tuple[tuple[str, str], bool]] = []
    for number, row in enumerate(lines[1:], start=2):
        src, marks = row[0], row[1:]
        if len(marks) != len(tos):
            raise ExpectError(path, f"line {number} ({src}) has {len(marks)} marks for {len(tos)} destinations")
        for dst, mark in zip(tos, marks, strict=True):
            if mark == MARK_UNKNOWN:
                continue
            if mark not in (MARK_ALLOWED, MARK_DENIED):
                raise ExpectError(path, f"line {number} ({src}): {mark!r} is not '.', 'X' or '?'")
            cells.append(((src, dst), mark == MARK_ALLOWED))
    return Expectation(None, (), tuple(cells))
