"""Render ``ipset restore`` payloads and parse ``ipset save`` output.

``ipset restore`` is not transactional (a failing line leaves earlier lines applied), so
the enforcer orders its payloads to be safe at every prefix: sets are created and filled
before any rule references them, and destroyed only after no rule does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from npm.dataplane.types import HASH_IP, HASH_IP_PORT, HASH_NET, LIST_SET, Failure, LineOwner, SetSpec

# Hash sets grow on demand; maxelem and list:set size are only ceilings, so make them wide
# enough that pod churn never needs a re-create.
HASH_MAXELEM = 1 << 20
LIST_SIZE = 1 << 16
_ERROR_LINE = re.compile(r"Error in line (\d+): (.*)")


@dataclass
class SavedSet:
    """One set from ``ipset save``."""

    name: str
    kind: str
    members: set[str] = field(default_factory=set)


def create_line(spec: SetSpec) -> str:
    """The ``create`` line for a set of our making."""
    if spec.kind == LIST_SET:
        return f"create {spec.name} list:set size {LIST_SIZE}"
    if spec.kind in (HASH_IP, HASH_NET, HASH_IP_PORT):
        return f"create {spec.name} {spec.kind} family inet hashsize 1024 maxelem {HASH_MAXELEM}"
    raise ValueError(f"unknown set type {spec.kind}")


@dataclass
class IpsetPayload:
    """Lines for one ``ipset restore -exist`` run, with the owner (set meaning) of each line."""

    lines: list[str] = field(default_factory=list)
    owners: dict[int, str] = field(default_factory=dict)  # line -> the set's meaning

    def add(self, line: str, owner: str) -> None:
        self.lines.append(line)
        self.owners[len(self.lines)] = owner

    def create(self, spec: SetSpec) -> None:
        self.add(create_line(spec), spec.meaning)

    def members(self, spec: SetSpec, verb: str, members: Iterable[str]) -> None:
        for m in sorted(members):
            self.add(f"{verb} {spec.name} {m}", spec.meaning)

    def flush(self, name: str, owner: str) -> None:
        self.add(f"flush {name}", owner)

    def destroy(self, name: str, owner: str) -> None:
        self.add(f"destroy {name}", owner)

    def extend(self, other: IpsetPayload) -> None:
        """Append ``other``'s lines (and owners) after ours."""
        for number, line in enumerate(other.lines, 1):
            self.add(line, other.owners.get(number, ""))

    def text(self) -> str:
        return "\n".join([*self.lines, ""])

    def locate(self, failure: Failure) -> Failure:
        """``failure`` with the line ``ipset restore`` named, its text and the set it concerns."""
        m = _ERROR_LINE.search(failure.message)
        if not m:
            return failure
        line = int(m.group(1))
        owner = self.owners.get(line)
        return failure.at(line, self.lines, LineOwner(f"set {owner}") if owner else None)


def parse_save(text: str) -> dict[str, SavedSet]:
    """Parse ``ipset save`` output; members keep their flags (e.g. ``10.0.0.0/8 nomatch``)."""
    sets: dict[str, SavedSet] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "create":
            sets[parts[1]] = SavedSet(parts[1], parts[2])
        elif len(parts) >= 3 and parts[0] == "add" and parts[1] in sets:
            member = parts[2]
            if "nomatch" in parts[3:]:
                member += " nomatch"
            sets[parts[1]].members.add(member)
    return sets


def normalise_member(kind: str, member: str) -> str:
    """A member the way ``ipset save`` prints it (hash:net /32 without prefix)."""
    if kind == HASH_NET:
        addr, flag = ([*member.split(" ", 1), ""])[:2]
        if addr.endswith("/32"):
            addr = addr[:-3]
        return f"{addr} {flag}".strip()
    return member
