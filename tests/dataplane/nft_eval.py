"""A packet walk over a translated nftables table, without a kernel (test-only).

Reads the rule expressions the nftables translation writes, with nft's semantics: rules in
order, every match of a rule must hold; ``jump`` pushes a return point and ``goto`` does
not; the end of a chain (or ``return``) goes back to the last return point, and the base
chain's end applies its policy (accept); ``accept`` and ``drop`` end the walk; a verdict map
lookup that finds no element goes on with the next rule. A NEW connection's first packet is
walked (``ct state established,related`` never matches). An expression this reader does not
know raises instead of being guessed at, and so does a walk deeper than the kernel's jump
stack (16).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from npm.dataplane.nft_translate import CHAIN_FORWARD, NftSet, NftState

JUMP_STACK = 16  # the kernel's NFT_JUMP_STACK_SIZE


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str  # "tcp", "udp", "sctp"
    dport: int


@dataclass
class Walk:
    verdict: str = ""
    rules: list[str] = field(default_factory=list)  # comments of the rules that matched, in order
    depth: int = 0  # the deepest the jump stack went


def _in_set(s: NftSet, key: str) -> bool:
    if not s.interval:
        return key in s.elements
    addr = ipaddress.ip_address(key)
    return any(addr in ipaddress.ip_network(e) for e in s.elements)


def _lookup(s: NftSet, key: str) -> str | None:
    for element in s.elements:
        k, _, verdict = element.partition(" : ")
        if k == key:
            return verdict
    return None


class _Reader:
    def __init__(self, state: NftState, packet: Packet) -> None:
        self.state = state
        self.p = packet

    def field(self, name: str) -> str:
        return {"saddr": self.p.src, "daddr": self.p.dst}[name]

    def matches(self, words: list[str]) -> tuple[bool, str]:
        """Whether the match words (everything before the verdict) hold, and the verdict words."""
        i = 0
        while i < len(words):
            w = words[i]
            if w == "ct":  # ct state established,related: never for a NEW connection
                assert words[i + 1] == "state" and words[i + 2] == "established,related", words
                return False, ""
            if w == "ip" and words[i + 2] == "vmap":
                name = words[i + 3].removeprefix("@")
                found = _lookup(self.state.sets[name], self.field(words[i + 1]))
                return True, found or "continue"
            if w == "ip" and words[i + 1] == "daddr" and words[i + 2] == ".":  # ip daddr . meta l4proto . th dport @s
                assert words[i + 2:i + 7] == [".", "meta", "l4proto", ".", "th"] and words[i + 7] == "dport", words
                key = f"{self.p.dst} . {self.p.proto} . {self.p.dport}"
                if key not in self.state.sets[words[i + 8].removeprefix("@")].elements:
                    return False, ""
                i += 9
                continue
            if w == "ip":
                value = self.field(words[i + 1])
                negated = words[i + 2] == "!="
                right = words[i + 3 if negated else i + 2]
                if right.startswith("@"):
                    found = _in_set(self.state.sets[right[1:]], value)
                else:
                    found = ipaddress.ip_address(value) in ipaddress.ip_network(right)
                if found == negated:
                    return False, ""
                i += 4 if negated else 3
                continue
            if w == "meta" and words[i + 1] == "l4proto":
                if self.p.proto != words[i + 2]:
                    return False, ""
                i += 3
                continue
            if w in ("tcp", "udp", "sctp") and words[i + 1] == "dport":
                lo, _, hi = words[i + 2].partition("-")
                if self.p.proto != w or not int(lo) <= self.p.dport <= int(hi or lo):
                    return False, ""
                i += 3
                continue
            if w in ("accept", "drop", "return", "jump", "goto"):
                return True, " ".join(words[i:])
            raise ValueError(f"unknown expression at {w!r}: {' '.join(words)}")
        raise ValueError(f"rule without a verdict: {' '.join(words)}")


def walk(state: NftState, packet: Packet) -> Walk:
    """The verdict of ``forward`` (and the rules it matched) for a NEW packet."""
    reader = _Reader(state, packet)
    out = Walk()
    stack: list[tuple[str, int]] = []
    chain, position = CHAIN_FORWARD, 0
    for _ in range(10_000):
        rules = state.chains[chain].rules
        if position >= len(rules):
            if not stack:
                out.verdict = "accept"  # the base chain's policy
                return out
            chain, position = stack.pop()
            continue
        rule = rules[position]
        position += 1
        ok, verdict = reader.matches(rule.expr.split())
        if not ok or verdict == "continue":
            continue
        out.rules.append(rule.comment)
        word, _, target = verdict.partition(" ")
        if word in ("accept", "drop"):
            out.verdict = word
            return out
        if word == "return":
            if not stack:
                out.verdict = "accept"
                return out
            chain, position = stack.pop()
        elif word == "jump":
            stack.append((chain, position))
            out.depth = max(out.depth, len(stack))
            if len(stack) > JUMP_STACK:
                raise RuntimeError(f"jump stack over {JUMP_STACK}: {out.rules}")
            chain, position = target, 0
        elif word == "goto":
            chain, position = target, 0
        else:
            raise ValueError(f"unknown verdict {verdict!r}")
    raise RuntimeError("the walk did not end")
