"""Render ``iptables-restore --noflush`` payloads and parse ``iptables-save`` output.

A payload is one ``*filter`` transaction ending in ``COMMIT``: the kernel applies it as a
whole or not at all, so a new rule generation, the switch of the jumps and the removal of
the old chains happen in one step. Each rendered line remembers who it belongs to so that
"line N failed" from iptables-restore maps back to a policy and rule.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass, field

from npm.dataplane.types import Failure, LineOwner, RuleSpec

_SAFE = re.compile(r"^[A-Za-z0-9_./:,!=+@%-]+$")
_FAILED_LINE = re.compile(r"line (\d+) failed|Error occurred at line: (\d+)")


def quote(token: str) -> str:
    """Quote a token the way iptables-restore's tokenizer reads it."""
    if token and _SAFE.match(token):
        return token
    return '"' + token.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_rule(rule: RuleSpec, op: str = "-A", position: int | None = None) -> str:
    """``-A CHAIN args -m comment --comment "..."`` (or ``-I CHAIN N``/``-D CHAIN``)."""
    head = [op, rule.chain] + ([str(position)] if position is not None else [])
    return " ".join([*head, *(quote(t) for t in rule.tokens())])


@dataclass
class Payload:
    """Lines of one table transaction and the owner of each line (1-based line numbers)."""

    table: str = "filter"
    lines: list[str] = field(default_factory=list)
    owners: dict[int, LineOwner] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lines.append(f"*{self.table}")

    def add(self, line: str, owner: LineOwner | None = None) -> None:
        self.lines.append(line)
        if owner is not None:
            self.owners[len(self.lines)] = owner

    def declare(self, chain: str) -> None:
        """``:CHAIN - [0:0]``: creates the chain, or flushes it if it exists (--noflush)."""
        self.add(f":{chain} - [0:0]", LineOwner(f"chain {chain}"))

    def rule(self, rule: RuleSpec, op: str = "-A", position: int | None = None) -> None:
        self.add(render_rule(rule, op, position), LineOwner(rule.comment, rule.policy))

    @property
    def changes(self) -> int:
        return len(self.lines) - 1

    def text(self) -> str:
        return "\n".join([*self.lines, "COMMIT", ""])

    def locate(self, failure: Failure) -> Failure:
        """``failure`` with the line iptables-restore named, its text and its owner."""
        m = _FAILED_LINE.search(failure.message)
        if not m:
            return failure
        line = int(m.group(1) or m.group(2))
        return failure.at(line, self.lines, self.owners.get(line))


@dataclass(frozen=True)
class SavedRule:
    """One ``-A`` line of iptables-save, tokenized."""

    chain: str
    tokens: tuple[str, ...]

    @property
    def comment(self) -> str:
        return _option(self.tokens, "--comment") or ""

    @property
    def target(self) -> str:
        return _option(self.tokens, "-j") or _option(self.tokens, "-g") or ""

    def set_matches(self) -> tuple[tuple[bool, str, str], ...]:
        """(negated, set name, directions) for each ``--match-set`` in order."""
        return set_matches(self.tokens)

    def fingerprint(self) -> Fingerprint:
        """What identifies a rule independent of how the backend prints its matches."""
        return fingerprint(self.tokens)


Fingerprint = tuple[str, str, tuple[tuple[bool, str, str], ...]]


def set_matches(t: tuple[str, ...]) -> tuple[tuple[bool, str, str], ...]:
    """(negated, set name, directions) for each ``--match-set`` in ``t``, in order."""
    out = []
    for i, tok in enumerate(t):
        if tok == "--match-set" and i + 2 < len(t):
            out.append((i > 0 and t[i - 1] == "!", t[i + 1], t[i + 2]))
    return tuple(out)


def fingerprint(tokens: tuple[str, ...]) -> Fingerprint:
    """(comment, target, sorted set matches): stable across nft/legacy printing differences."""
    return (
        _option(tokens, "--comment") or "",
        _option(tokens, "-j") or _option(tokens, "-g") or "",
        tuple(sorted(set_matches(tokens))),
    )


def _option(tokens: tuple[str, ...], flag: str) -> str | None:
    for i, tok in enumerate(tokens[:-1]):
        if tok == flag:
            return tokens[i + 1]
    return None


def spec_fingerprint(rule: RuleSpec) -> Fingerprint:
    """The fingerprint our rule will have once iptables-save prints it back."""
    return fingerprint(rule.tokens())


@dataclass
class SavedTable:
    """A table from iptables-save: chains in order with their rules."""

    name: str
    chains: dict[str, list[SavedRule]] = field(default_factory=dict)
    policies: dict[str, str] = field(default_factory=dict)


def parse_save(text: str) -> dict[str, SavedTable]:
    """Parse ``iptables-save`` output into tables; unknown lines are ignored."""
    tables: dict[str, SavedTable] = {}
    current: SavedTable | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], SavedTable(line[1:]))
        elif current is None or line == "COMMIT":
            continue
        elif line.startswith(":"):
            name, _, rest = line[1:].partition(" ")
            current.chains.setdefault(name, [])
            current.policies[name] = rest.split(" ")[0] if rest else "-"
        elif line.startswith("-A "):
            try:
                tokens = shlex.split(line)
            except ValueError:
                tokens = line.split()
            chain = tokens[1]
            current.chains.setdefault(chain, []).append(SavedRule(chain, tuple(tokens[2:])))
    return tables


def chains_referencing(table: SavedTable, names: Iterable[str]) -> list[SavedRule]:
    """Rules in any chain that jump to one of ``names``."""
    wanted = set(names)
    return [r for rules in table.chains.values() for r in rules if r.target in wanted]
