"""One NEW packet through our nftables table, as the kernel lists it (``nft -j``).

The nftables counterpart of ``debug.evaluate``: it walks the table's base chains on the
forward hook (by priority) for a packet (source, destination, protocol, destination port)
and reports every rule that acted on it and the verdict. It reads what is really listed,
never the desired state, and knows the expressions our rules use and the common ones next
to them: ``ip``/``ip6`` saddr/daddr/protocol, ``meta l4proto``/``nfproto``, ``th``/``tcp``/
``udp``/``sctp`` dport, ``ct state``, named and anonymous sets (plain, interval, concatenated),
verdict maps, jump/goto/return/accept/drop/reject, counter and log. Anything else on the
packet's path (a match it cannot decide, a statement it does not know, a base chain on
another hook forwarded packets cross) makes the verdict undecided, with the expression
named in ``Trace.undecided``: the evaluator never guesses.

A payload match carries nft's implicit dependency: ``tcp dport 80`` only matches a TCP
packet, ``ip saddr`` only an IPv4 one (whatever the operator, ``!=`` included).

The verdict is our table's only. In nftables an ``accept`` ends one base chain, not the
packet's journey: the base chains of other tables (kube-proxy's, iptables-nft's ``filter``)
still see a packet we accept, and any of them may drop it.
"""

from __future__ import annotations

import functools
import ipaddress
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from npm.dataplane.debug import Hit, Packet, Trace
from npm.dataplane.nft import ListedChain, ListedRule, ListedSet, ListedTable

ACCEPT = "accept"
DROP = "drop"
HOOK = "forward"
# Hooks a forwarded packet also crosses: a base chain there could drop or rewrite it.
CROSSED_HOOKS = ("ingress", "prerouting", "postrouting")
MAX_STEPS = 100_000
MAX_DEPTH = 16  # the kernel's jump stack

ADDR4, ADDR6, PROTO, PORT = "ipv4_addr", "ipv6_addr", "inet_proto", "inet_service"
WORDS = "words"  # string-valued keys compared as words: ct state, meta nfproto
RANGED = (ADDR4, ADDR6, PROTO, PORT)
PROTOCOLS = {"icmp": 1, "igmp": 2, "tcp": 6, "udp": 17, "dccp": 33, "gre": 47, "esp": 50, "ah": 51,
             "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "udplite": 136}
PORTED = ("tcp", "udp", "sctp", "dccp", "udplite")
VERDICTS = ("accept", "drop", "reject", "return", "continue", "jump", "goto")
NO_EFFECT = ("counter", "log")  # statements that never change the verdict

Span = tuple[int, int]  # an inclusive range of ints (an address, protocol or port range)


class Undecided(Exception):
    """An expression the evaluator cannot decide for this packet (the message names it)."""


class _Absent(Exception):
    """The packet lacks the header an expression reads: its rule does not match."""


def _text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


# ---- values -----------------------------------------------------------------------------------
def _ip_int(text: Any, kind: str) -> int:
    try:
        addr = ipaddress.ip_address(str(text))
    except ValueError:
        raise Undecided(f"{text!r} is not an address") from None
    if (addr.version == 4) != (kind == ADDR4):
        raise Undecided(f"{text} is not an {kind}")
    return int(addr)


def _scalar(kind: str, value: Any) -> int:
    if kind in (ADDR4, ADDR6):
        return _ip_int(value, kind)
    if isinstance(value, bool):
        raise Undecided(f"{value!r} as {kind}")
    if isinstance(value, int):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    if kind == PROTO and text.lower() in PROTOCOLS:
        return PROTOCOLS[text.lower()]
    raise Undecided(f"{value!r} as {kind}")  # a service name, an unknown protocol


def span(kind: str, literal: Any) -> Span:
    """A literal (scalar, ``prefix`` or ``range``) as the range of ``kind`` values it covers."""
    if kind not in RANGED:
        raise Undecided(f"values of type {kind}")
    if isinstance(literal, dict) and "elem" in literal:
        return span(kind, literal["elem"]["val"])
    if isinstance(literal, dict) and "prefix" in literal and kind in (ADDR4, ADDR6):
        p = literal["prefix"]
        net = ipaddress.ip_network(f"{p['addr']}/{p['len']}", strict=False)
        if (net.version == 4) != (kind == ADDR4):
            raise Undecided(f"{_text(literal)} is not an {kind}")
        return int(net.network_address), int(net.broadcast_address)
    if isinstance(literal, dict) and "range" in literal:
        lo, hi = literal["range"]
        return _scalar(kind, lo), _scalar(kind, hi)
    if isinstance(literal, dict | list):
        raise Undecided(f"{_text(literal)} as {kind}")
    v = _scalar(kind, literal)
    return v, v


def _parts(literal: Any, n: int) -> list[Any]:
    if isinstance(literal, dict) and "elem" in literal:
        return _parts(literal["elem"]["val"], n)
    parts = literal["concat"] if isinstance(literal, dict) and "concat" in literal else [literal]
    if len(parts) != n:
        raise Undecided(f"{_text(literal)} has {len(parts)} part(s), the key {n}")
    return parts


def _verdict_of(data: Any) -> dict[str, Any]:
    if isinstance(data, dict) and len(data) == 1 and next(iter(data)) in VERDICTS:
        return data
    raise Undecided(f"map data {_text(data)} is not a verdict")


@dataclass(frozen=True)
class Element:
    """A set or map element: per key part the range it covers; a map's data; as listed."""

    spans: tuple[Span, ...]
    data: Any
    text: str


@dataclass
class ElementIndex:
    """The elements of a set or map for lookups: exact keys in a dict, ranges in a list."""

    name: str
    kinds: tuple[str, ...]
    exact: dict[tuple[int, ...], Element] = field(default_factory=dict)
    ranges: list[Element] = field(default_factory=list)
    error: str = ""  # why it cannot be looked up (lookups are then undecided)

    @classmethod
    def build(cls, name: str, kinds: Sequence[str], elements: Iterable[Any], is_map: bool) -> ElementIndex:
        index = cls(name, tuple(kinds))
        bad = [k for k in kinds if k not in RANGED]
        if bad:
            index.error = f"{name}: a key of type {' . '.join(kinds)}"
            return index
        for e in elements:
            try:
                key, data = (e[0], e[1]) if is_map else (e, None)
                spans = tuple(span(k, p) for k, p in zip(kinds, _parts(key, len(kinds)), strict=True))
            except (Undecided, KeyError, TypeError, ValueError, IndexError) as exc:
                index.error = f"{name}: element {_text(e)}: {exc}"
                return index
            element = Element(spans, data, _text(e))
            if all(lo == hi for lo, hi in spans):
                index.exact[tuple(lo for lo, _ in spans)] = element
            else:
                index.ranges.append(element)
        return index

    def lookup(self, key: tuple[int, ...]) -> Element | None:
        """The element holding ``key`` (one int per key part), or None."""
        if self.error:
            raise Undecided(self.error)
        found = self.exact.get(key)
        if found is not None:
            return found
        for e in self.ranges:
            if all(lo <= v <= hi for v, (lo, hi) in zip(key, e.spans, strict=True)):
                return e
        return None

    def elements(self) -> Iterator[Element]:
        yield from self.exact.values()
        yield from self.ranges


def set_index(s: ListedSet) -> ElementIndex:
    """A named set or map, indexed for lookups."""
    return ElementIndex.build(s.name, s.key, s.elements, s.is_map)


# ---- expressions ------------------------------------------------------------------------------
def left_kinds(left: Any) -> tuple[str, ...]:
    """The key types a left-hand expression yields (one per concatenated part)."""
    if isinstance(left, dict) and "concat" in left:
        return tuple(k for part in left["concat"] for k in left_kinds(part))
    if isinstance(left, dict) and "payload" in left:
        p = left["payload"]
        proto, fld = p.get("protocol"), p.get("field")
        if proto in ("ip", "ip6") and fld in ("saddr", "daddr"):
            return (ADDR4 if proto == "ip" else ADDR6,)
        if (proto, fld) in (("ip", "protocol"), ("ip6", "nexthdr")):
            return (PROTO,)
        if (proto in PORTED or proto == "th") and fld == "dport":
            return (PORT,)
    if isinstance(left, dict) and "meta" in left:
        key = left["meta"].get("key")
        if key == "l4proto":
            return (PROTO,)
        if key == "nfproto":
            return (WORDS,)
    if isinstance(left, dict) and "ct" in left and left["ct"].get("key") == "state" and "dir" not in left["ct"]:
        return (WORDS,)
    raise Undecided(_text(left))


@dataclass(frozen=True)
class _Fields:
    """A packet's header fields, parsed once."""

    version: int
    src: int
    dst: int
    protocol: str
    proto: int
    port: int


@functools.lru_cache(maxsize=1 << 16)
def _address(text: str) -> tuple[int, int]:
    """(version, value) of an address (the same few addresses are evaluated over and over)."""
    addr = ipaddress.ip_address(text)
    return addr.version, int(addr)


def _value(left: Any, pkt: _Fields) -> tuple[Any, ...]:
    """What a left-hand expression reads from the packet (one value per part); _Absent when
    the packet has no such header."""
    if isinstance(left, dict) and "concat" in left:
        return tuple(v for part in left["concat"] for v in _value(part, pkt))
    (kind,) = left_kinds(left)
    if "payload" in left:
        proto, fld = left["payload"]["protocol"], left["payload"]["field"]
        if proto in ("ip", "ip6"):
            if (proto == "ip") != (pkt.version == 4):
                raise _Absent
            if fld == "saddr":
                return (pkt.src,)
            if fld == "daddr":
                return (pkt.dst,)
            return (pkt.proto,)
        if proto != "th" and proto != pkt.protocol:
            raise _Absent
        if pkt.protocol not in PORTED:
            raise _Absent
        return (pkt.port,)
    if "meta" in left:
        return (pkt.proto,) if kind == PROTO else (frozenset({f"ipv{pkt.version}"}),)
    return (frozenset({"new"}),)  # ct state: the packet opens a connection


def _words(right: Any) -> frozenset[str]:
    if isinstance(right, dict) and "set" in right:
        return _words(right["set"])
    if isinstance(right, list):
        return frozenset(str(x) for x in right)
    if isinstance(right, str) and not right.startswith("@"):
        return frozenset({right})
    raise Undecided(_text(right))


class Evaluator:
    """Evaluates NEW packets through a listed table (sets indexed once)."""

    def __init__(self, table: ListedTable) -> None:
        self.table = table
        self._indexes: dict[str, ElementIndex] = {}
        # literals and anonymous sets, by the identity of their JSON (alive as long as the table)
        self._literals: dict[tuple[int, tuple[str, ...], bool], ElementIndex] = {}

    def index(self, name: str) -> ElementIndex:
        found = self._indexes.get(name)
        if found is None:
            s = self.table.sets.get(name)
            if s is None:
                raise Undecided(f"set @{name} is not in the table")
            found = self._indexes[name] = set_index(s)
        return found

    def _anonymous(self, right: Any, kinds: tuple[str, ...], is_map: bool) -> ElementIndex:
        index = self._literals.get((id(right), kinds, is_map))
        if index is None:
            items = right["set"] if isinstance(right, dict) and "set" in right else right
            items = items if isinstance(items, list) else [items]
            index = self._literals[(id(right), kinds, is_map)] = ElementIndex.build("{anonymous}", kinds, items, is_map)
        if index.error:
            raise Undecided(index.error)
        return index

    def _contains(self, right: Any, kinds: tuple[str, ...], key: tuple[Any, ...]) -> bool:
        if WORDS in kinds:
            if len(kinds) != 1:
                raise Undecided(_text(right))
            return bool(key[0] & _words(right))
        if isinstance(right, str) and right.startswith("@"):
            index = self.index(right[1:])
            if index.kinds != kinds:
                raise Undecided(f"@{index.name} is keyed by {' . '.join(index.kinds)}, not {' . '.join(kinds)}")
            return index.lookup(key) is not None
        return self._anonymous(right, kinds, False).lookup(key) is not None

    def match(self, m: dict[str, Any], pkt: _Fields) -> bool:
        """One ``match`` expression; raises Undecided or _Absent."""
        op, left, right = m.get("op", "=="), m["left"], m["right"]
        kinds = left_kinds(left)
        key = _value(left, pkt)
        if op in ("==", "in"):
            return self._contains(right, kinds, key)
        if op == "!=":
            return not self._contains(right, kinds, key)
        if op in ("<", ">", "<=", ">=") and len(kinds) == 1 and kinds[0] in RANGED:
            bound = _scalar(kinds[0], right)
            v = key[0]
            return {"<": v < bound, ">": v > bound, "<=": v <= bound, ">=": v >= bound}[op]
        raise Undecided(f"operator {op!r}")

    def vmap(self, v: dict[str, Any], pkt: _Fields) -> tuple[dict[str, Any], str] | None:
        """A verdict map lookup: (the verdict, what it shows as), or None (no element)."""
        kinds = left_kinds(v["key"])
        key = _value(v["key"], pkt)
        data = v["data"]
        if isinstance(data, str) and data.startswith("@"):
            index = self.index(data[1:])
            if index.kinds != kinds:
                raise Undecided(f"@{index.name} is keyed by {' . '.join(index.kinds)}, not {' . '.join(kinds)}")
            where = data
        else:
            index, where = self._anonymous(data, kinds, True), "{anonymous map}"
        found = index.lookup(key)
        if found is None:
            return None
        verdict = _verdict_of(found.data)
        return verdict, f"vmap {where}: {render_verdict(verdict)}"

    def rule(self, rule: ListedRule, pkt: _Fields) -> tuple[dict[str, Any], str] | None:
        """The verdict ``rule`` gives the packet and how it shows, or None (it does not match)."""
        try:
            return self._rule(rule, pkt)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:  # a shape nft does not print
            raise Undecided(f"malformed rule {_text(list(rule.expr))}: {exc!r}") from None

    def _rule(self, rule: ListedRule, pkt: _Fields) -> tuple[dict[str, Any], str] | None:
        pending: Undecided | None = None  # an undecided match: fatal unless a later one fails
        for st in rule.expr:
            if not isinstance(st, dict) or len(st) != 1:
                raise Undecided(f"statement {_text(st)}")
            (word, body), = st.items()
            try:
                if word == "match":
                    try:
                        if not self.match(body, pkt):
                            return None
                    except Undecided as exc:
                        pending = pending or exc
                    continue
                if word in NO_EFFECT:
                    continue
                if pending is not None:
                    raise pending
                if word == "vmap":
                    return self.vmap(body, pkt)
                if word in VERDICTS:
                    return st, render_verdict(st)
            except _Absent:
                return None
            raise Undecided(f"statement {_text(st)}")
        return None

    def evaluate(self, pkt: Packet) -> Trace:
        """Walk the forward hook's base chains of the table for ``pkt``. ``Trace.verdict`` is
        ``accept``, ``drop``, or "" when undecided (``Trace.undecided`` says at what)."""
        trace = Trace()
        if pkt.protocol not in PROTOCOLS:
            trace.undecided.append(f"protocol {pkt.protocol!r}")
            return trace
        (version, src), (dst_version, dst) = _address(pkt.src), _address(pkt.dst)
        if version != dst_version:
            trace.undecided.append(f"{pkt.src} -> {pkt.dst}: addresses of two families")
            return trace
        fields = _Fields(version, src, dst, pkt.protocol, PROTOCOLS[pkt.protocol], pkt.port)
        crossed = [c for c in self.table.chains.values() if c.hook in CROSSED_HOOKS]
        if crossed:
            trace.undecided += [f"base chain {c.name} on hook {c.hook}: not evaluated" for c in crossed]
            return trace
        bases = sorted((c for c in self.table.chains.values() if c.hook == HOOK), key=lambda c: (c.prio, c.name))
        for base in bases:  # a packet one base chain accepts goes on to the next; a drop is final
            verdict = self._walk(base, fields, trace)
            if verdict != ACCEPT:
                trace.verdict = verdict or ""
                return trace
        trace.verdict = ACCEPT  # nothing in our table stops it
        return trace

    def _walk(self, base: ListedChain, pkt: _Fields, trace: Trace) -> str | None:
        stack: list[tuple[str, int]] = []
        chain, pos = base.name, 0
        policy = DROP if base.policy == DROP else ACCEPT
        for _ in range(MAX_STEPS):
            rules = self.table.chains[chain].rules
            if pos >= len(rules):
                if not stack:
                    return policy
                chain, pos = stack.pop()
                continue
            rule = rules[pos]
            pos += 1
            try:
                outcome = self.rule(rule, pkt)
            except Undecided as exc:
                trace.undecided.append(f"{chain}#{pos} (handle {rule.handle}): cannot decide {exc}")
                return None
            if outcome is None:
                continue
            verdict, shown = outcome
            trace.hits.append(Hit(chain, pos, rule.comment, shown, f"handle {rule.handle}: {render_rule(rule)}"))
            (word, body), = verdict.items()
            if word in (ACCEPT, DROP):
                return word
            if word == "reject":
                return DROP
            if word == "return":
                if not stack:
                    return policy
                chain, pos = stack.pop()
            elif word in ("jump", "goto"):
                target = body["target"]
                if target not in self.table.chains or len(stack) >= MAX_DEPTH:
                    trace.undecided.append(f"{chain}#{pos} (handle {rule.handle}): {word} {target}: "
                                           + ("no such chain" if target not in self.table.chains else "too deep"))
                    return None
                if word == "jump":
                    stack.append((chain, pos))
                chain, pos = target, 0
        trace.undecided.append(f"more than {MAX_STEPS} steps")
        return None


def evaluate(table: ListedTable, pkt: Packet) -> Trace:
    """Walk ``table`` for one NEW packet (see :class:`Evaluator`)."""
    return Evaluator(table).evaluate(pkt)


# ---- readable rules ---------------------------------------------------------------------------
def render_verdict(v: dict[str, Any]) -> str:
    (word, body), = v.items()
    return f"{word} {body['target']}" if word in ("jump", "goto") else word


def _render_value(x: Any) -> str:
    if isinstance(x, dict):
        if "prefix" in x:
            return f"{x['prefix']['addr']}/{x['prefix']['len']}"
        if "range" in x:
            return "-".join(_render_value(v) for v in x["range"])
        if "concat" in x:
            return " . ".join(_render_value(v) for v in x["concat"])
        if "set" in x:
            items = x["set"] if isinstance(x["set"], list) else [x["set"]]
            return "{ " + ", ".join(_render_value(v) for v in items) + " }"
        if "payload" in x:
            return f"{x['payload'].get('protocol', '?')} {x['payload'].get('field', '?')}"
        if "meta" in x:
            return f"meta {x['meta'].get('key', '?')}"
        if "ct" in x:
            return f"ct {x['ct'].get('key', '?')}"
        if len(x) == 1 and next(iter(x)) in VERDICTS:
            return render_verdict(x)
        return _text(x)
    if isinstance(x, list):
        if len(x) == 2 and isinstance(x[1], dict) and next(iter(x[1]), "") in VERDICTS:
            return f"{_render_value(x[0])} : {_render_value(x[1])}"
        return ",".join(_render_value(v) for v in x)
    return str(x)


def render_rule(rule: ListedRule) -> str:
    """A rule close to how ``nft list`` prints it (unknown statements as JSON)."""
    out = []
    for st in rule.expr:
        if isinstance(st, dict) and "match" in st:
            m = st["match"]
            op = m.get("op", "==")
            word = "" if op in ("==", "in") else f"{op} "
            out.append(f"{_render_value(m['left'])} {word}{_render_value(m['right'])}")
        elif isinstance(st, dict) and "vmap" in st:
            out.append(f"{_render_value(st['vmap']['key'])} vmap {_render_value(st['vmap']['data'])}")
        elif isinstance(st, dict) and len(st) == 1 and next(iter(st)) in VERDICTS:
            out.append(render_verdict(st))
        elif isinstance(st, dict) and len(st) == 1 and next(iter(st)) in NO_EFFECT:
            out.append(next(iter(st)))
        else:
            out.append(_text(st))
    return " ".join(out)
