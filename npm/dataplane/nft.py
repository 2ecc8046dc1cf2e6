"""nftables on the kernel side: ``nft -f -`` transactions and ``nft -j list table`` read-back.

A payload is one ``nft -f`` run: the kernel commits it as one transaction, wholly or not at
all. Every line is one command and remembers who it belongs to, so the line nft names in an
error (``/dev/stdin:LINE:COL: Error: ...``) maps back to a policy. Only our table is ever
named: the ruleset is never flushed or listed as a whole.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from npm.dataplane.kernel import Completed, Runner
from npm.dataplane.nft_translate import FAMILY, TABLE, NftChain, NftRule, NftSet
from npm.dataplane.types import Failure, LineOwner

NFT = "nft"
TABLE_REF = f"{FAMILY} {TABLE}"
_ERROR_LINE = re.compile(r"/dev/stdin:(\d+):[0-9-]+: Error: (.*)")

Fingerprint = tuple[str, str, tuple[tuple[bool, str], ...]]


def _quote(text: str) -> str:
    return '"' + text.replace('"', "'").replace("\\", "/").replace("\n", " ") + '"'


@dataclass
class NftPayload:
    """The commands of one ``nft -f -`` transaction and the owner of each line (1-based)."""

    lines: list[str] = field(default_factory=list)
    owners: dict[int, LineOwner] = field(default_factory=dict)

    def add(self, line: str, owner: LineOwner | None = None) -> None:
        self.lines.append(line)
        if owner is not None:
            self.owners[len(self.lines)] = owner

    def declare_set(self, s: NftSet, owner: LineOwner | None = None) -> None:
        kind = "map" if s.is_map else "set"
        flags = " flags interval;" if s.interval else ""
        comment = _quote(s.meaning[:128])
        self.add(f"add {kind} {TABLE_REF} {s.name} {{ type {s.type};{flags} comment {comment}; }}", owner)

    def elements(self, verb: str, s: NftSet, elements: Iterable[str], owner: LineOwner | None = None) -> None:
        """``add element`` / ``delete element`` lines (nothing when there are no elements)."""
        items = sorted(elements)
        for start in range(0, len(items), 4096):  # bounded lines; still one transaction
            self.add(f"{verb} element {TABLE_REF} {s.name} {{ {', '.join(items[start:start + 4096])} }}", owner)

    def declare_chain(self, c: NftChain) -> None:
        hook = f" {{ {c.hook} }}" if c.hook else ""
        self.add(f"add chain {TABLE_REF} {c.name}{hook}", LineOwner(f"chain {c.name}", c.policy))

    def rule(self, chain: str, rule: NftRule) -> None:
        self.add(f"add rule {TABLE_REF} {chain} {rule.expr} comment {_quote(rule.comment)}",
                 LineOwner(rule.comment, rule.policy))

    def text(self) -> str:
        return "\n".join([*self.lines, ""])

    def locate(self, failure: Failure) -> Failure:
        """``failure`` with the first line nft named, its text and its owner."""
        m = _ERROR_LINE.search(failure.message)
        if not m:
            return failure
        line = int(m.group(1))
        return replace(failure.at(line, self.lines, self.owners.get(line)), message=m.group(2))


def run(runner: Runner, payload: NftPayload) -> Completed:
    """Run one transaction (``nft -f -``)."""
    return runner.run([NFT, "-f", "-"], payload.text())


def delete_table(runner: Runner) -> Completed:
    """Remove our table if it exists (``add`` then ``delete`` in one transaction: never an error
    for a missing table, never anything else touched)."""
    return runner.run([NFT, "-f", "-"], f"add table {TABLE_REF}\ndelete table {TABLE_REF}\n")


def list_table(runner: Runner, *, json_output: bool = True) -> Completed:
    """``nft [-j] list table inet azure-npm`` (rc != 0 when the table does not exist)."""
    return runner.run([NFT, *(["-j"] if json_output else []), "list", "table", FAMILY, TABLE])


def no_table(res: Completed) -> bool:
    """Whether ``list_table`` failed because our table does not exist."""
    return not res.ok and "No such file or directory" in res.stderr


def has_table(runner: Runner) -> bool:
    """Whether our table exists."""
    return runner.run([NFT, "list", "table", FAMILY, TABLE]).ok


# ---- reading back ---------------------------------------------------------------------------
@dataclass
class NftTable:
    """Our table as ``nft -j`` shows it: sets (type, elements) and chains (hook, rule fingerprints)."""

    sets: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    chains: dict[str, tuple[str, tuple[Fingerprint, ...]]] = field(default_factory=dict)
    meanings: dict[str, str] = field(default_factory=dict)  # set name -> its comment (what it holds)


def set_type(s: NftSet) -> str:
    """The type key a set reads back with (``interval`` added)."""
    return s.type + (" interval" if s.interval else "")


def chain_hook(c: NftChain) -> str:
    """What a chain's hook reads back as ("" for a regular chain)."""
    return "filter forward 0 accept" if c.hook else ""


@dataclass(frozen=True)
class ListedSet:
    """A set or map of our table as ``nft -j`` lists it, its elements as printed (JSON values)."""

    name: str
    key: tuple[str, ...]  # ("ipv4_addr",) or the parts of a concatenation
    data: str  # "" for a set; what a map maps to ("verdict")
    flags: tuple[str, ...]
    elements: tuple[Any, ...]
    comment: str = ""

    @property
    def is_map(self) -> bool:
        return bool(self.data)


@dataclass(frozen=True)
class ListedRule:
    """A rule: its handle (``nft delete rule ... handle N``), comment and statements (JSON)."""

    handle: int
    comment: str
    expr: tuple[Any, ...]


@dataclass(frozen=True)
class ListedChain:
    """A chain; ``hook`` is "" for a regular chain (then ``type``, ``prio``, ``policy`` are unused)."""

    name: str
    rules: tuple[ListedRule, ...] = ()
    hook: str = ""
    type: str = ""
    prio: int = 0
    policy: str = "accept"


@dataclass(frozen=True)
class ListedTable:
    """Everything ``nft -j list table`` shows of one table."""

    sets: dict[str, ListedSet] = field(default_factory=dict)
    chains: dict[str, ListedChain] = field(default_factory=dict)


def read_table(text: str) -> ListedTable:
    """``nft -j list table`` output, structured; raises ValueError (or KeyError/TypeError) on
    something that is not its JSON."""
    doc = json.loads(text)
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise ValueError("no top-level \"nftables\" list")
    sets: dict[str, ListedSet] = {}
    chains: dict[str, dict[str, Any]] = {}
    rules: dict[str, list[ListedRule]] = {}
    for item in doc["nftables"]:
        if "set" in item or "map" in item:
            s = item.get("set") or item["map"]
            key = tuple(s["type"]) if isinstance(s["type"], list) else (str(s["type"]),)
            data = str(s["map"]) if "map" in item else ""
            sets[s["name"]] = ListedSet(s["name"], key, data, tuple(s.get("flags", ())), tuple(s.get("elem", ())),
                                        s.get("comment", ""))
        elif "chain" in item:
            chains[item["chain"]["name"]] = item["chain"]
        elif "rule" in item:
            r = item["rule"]
            rules.setdefault(r["chain"], []).append(
                ListedRule(int(r.get("handle", 0)), r.get("comment", ""), tuple(r.get("expr", ()))))
    out = ListedTable(sets=sets)
    for name in dict.fromkeys([*chains, *rules]):
        c = chains.get(name, {})
        out.chains[name] = ListedChain(name, tuple(rules.get(name, ())), c.get("hook", ""), c.get("type", ""),
                                       int(c.get("prio", 0)), c.get("policy", "accept"))
    return out


def parse_table(text: str) -> NftTable:
    """Parse ``nft -j list table`` output into what the enforcer diffs against; raises
    ValueError on something that is not its JSON."""
    listed = read_table(text)
    table = NftTable()
    for s in listed.sets.values():
        kind = " . ".join(s.key) + (f" : {s.data}" if s.data else "") + (" interval" if "interval" in s.flags else "")
        table.sets[s.name] = (kind, frozenset(_element(e) for e in s.elements))
        table.meanings[s.name] = s.comment
    for c in listed.chains.values():
        hook = f"{c.type} {c.hook} {c.prio} {c.policy}" if c.hook else ""
        table.chains[c.name] = (hook, tuple(rule_fingerprint({"comment": r.comment, "expr": r.expr}) for r in c.rules))
    return table


def _value(v: Any) -> str:
    if isinstance(v, dict):
        if "prefix" in v:
            p = v["prefix"]
            return p["addr"] if p["len"] == 32 else f"{p['addr']}/{p['len']}"
        if "concat" in v:
            return " . ".join(_value(x) for x in v["concat"])
        if "range" in v:
            return "-".join(_value(x) for x in v["range"])
        if "elem" in v:
            return _value(v["elem"]["val"])
        for verdict in ("goto", "jump"):
            if verdict in v:
                return f"{verdict} {v[verdict]['target']}"
        if len(v) == 1:
            return next(iter(v))  # {"drop": null}, {"accept": null}
    return str(v)


def _element(e: Any) -> str:
    if isinstance(e, list) and len(e) == 2:  # map element: [key, verdict]
        return f"{_value(e[0])} : {_value(e[1])}"
    return _value(e)


def rule_fingerprint(rule: dict[str, Any]) -> Fingerprint:
    """(comment, verdict, sorted set matches) of a read-back rule, as :meth:`NftRule.fingerprint`."""
    verdict = ""
    sets: list[tuple[bool, str]] = []
    for expr in rule.get("expr", []):
        if "match" in expr:
            right = expr["match"].get("right")
            if isinstance(right, str) and right.startswith("@"):
                sets.append((expr["match"].get("op") == "!=", right[1:]))
        elif "vmap" in expr:
            verdict = f"vmap {str(expr['vmap']['data']).lstrip('@')}"
        else:
            for word in ("accept", "drop", "return"):
                if word in expr:
                    verdict = word
            for word in ("jump", "goto"):
                if word in expr:
                    verdict = f"{word} {expr[word]['target']}"
    return (rule.get("comment", ""), verdict, tuple(sorted(sets)))
