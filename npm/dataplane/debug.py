"""Debug tools over what is in the kernel: readable rules and a packet evaluator.

Input is ``iptables-save`` and ``ipset save`` text, from the live kernel or from files.
Set names are resolved to their meaning through the ``AZURE-NPM-SETS`` index chain, whose
rule comments say what each of our sets holds (``set podlabel:app=web``), so the mapping
survives restarts and can be read from a saved dump alone.

The evaluator walks the filter table's FORWARD chain for one NEW packet (source IP,
destination IP, protocol, destination port) and reports every rule it hits and the
verdict. It understands the matches and targets our rules use (and common ones such as
``-s``/``-d``/``--dport``); a rule with a match it cannot decide is reported as
undecided and treated as not matching.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from npm.dataplane import names
from npm.dataplane.ipset import SavedSet, create_line
from npm.dataplane.iptables import SavedRule, SavedTable, render_rule
from npm.dataplane.nft import NftTable
from npm.dataplane.types import LIST_SET, DesiredState

_TERMINAL = {"ACCEPT", "DROP", "REJECT"}


def set_meanings(table: SavedTable | None) -> dict[str, str]:
    """name -> meaning from the comments of the ``AZURE-NPM-SETS`` index chain."""
    out: dict[str, str] = {}
    if table is None:
        return out
    for rule in table.chains.get(names.CHAIN_SETS, []):
        matches = rule.set_matches()
        if matches and rule.comment.startswith("set "):
            out[matches[0][1]] = rule.comment[4:]
    return out


def describe_rule(rule: SavedRule, meanings: Mapping[str, str]) -> dict[str, object]:
    """A rule as a dict: comment, target, set matches with their meaning, other options."""
    t = rule.tokens
    sets = [
        {"set": name, "meaning": meanings.get(name, "?"), "negated": neg, "direction": dirs}
        for neg, name, dirs in rule.set_matches()
    ]
    options: dict[str, str] = {}
    for i, tok in enumerate(t[:-1]):
        if tok in (
            "-p",
            "--dport",
            "--dports",
            "--sport",
            "--mark",
            "--ctstate",
            "--state",
            "-s",
            "-d",
            "-i",
            "-o",
            "--set-xmark",
            "--set-mark",
        ):
            neg = "!" if i > 0 and t[i - 1] == "!" else ""
            options[tok.lstrip("-")] = neg + t[i + 1]
    return {"comment": rule.comment, "target": rule.target, "sets": sets, "options": options, "rule": " ".join(t)}


def convert(table: SavedTable | None, sets: Mapping[str, SavedSet]) -> dict[str, object]:
    """Our chains (and the FORWARD jump) and our sets, readable, as a JSON-able dict."""
    meanings = set_meanings(table)
    chains: dict[str, object] = {}
    forward: list[object] = []
    if table is not None:
        for name, rules in table.chains.items():
            if names.is_ours_chain(name):
                chains[name] = [describe_rule(r, meanings) for r in rules]
        forward = [
            {"position": i + 1, **describe_rule(r, meanings)}
            for i, r in enumerate(table.chains.get("FORWARD", []))
            if r.target == names.CHAIN_MAIN
        ]
    out_sets = {
        name: {"meaning": meanings.get(name, "?"), "type": s.kind, "members": sorted(s.members)}
        for name, s in sorted(sets.items())
        if names.is_ours_set(name)
    }
    return {"forward_jumps": forward, "chains": chains, "sets": out_sets}


@dataclass(frozen=True)
class Packet:
    """A NEW packet: addresses, protocol (lower case) and destination port."""

    src: str
    dst: str
    protocol: str = "tcp"
    port: int = 80


@dataclass
class Hit:
    chain: str
    index: int  # 1-based, as iptables -L --line-numbers counts
    comment: str
    target: str
    rule: str
    tier: str = ""  # the tier the chain evaluates: Admin, NetworkPolicy, Baseline (ClusterNetworkPolicy tiers)


@dataclass
class Trace:
    """The rules a packet hit (in order) and the final verdict."""

    verdict: str = ""
    hits: list[Hit] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)
    mark: int = 0

    def decided_by(self) -> list[Hit]:
        """The hits that made a decision: a drop, or an allow of a direction (with their tier)."""
        allows = (names.CHAIN_INGRESS_ALLOW, names.CHAIN_EGRESS_ALLOW)
        return [h for h in self.hits if h.target in (*_TERMINAL, *allows) and h.chain != "FORWARD"]

    def to_json(self) -> dict[str, object]:
        return {
            "verdict": self.verdict,
            "decided_by": [{"tier": h.tier, "chain": h.chain, "rule": h.comment, "target": h.target}
                           for h in self.decided_by()],
            "hits": [h.__dict__ for h in self.hits],
            "undecided": self.undecided,
            "final_mark": hex(self.mark),
        }


class SetLookup:
    """Membership tests over ``ipset save`` content, like the kernel's set types."""

    def __init__(self, sets: Mapping[str, SavedSet]) -> None:
        self.sets = sets

    def contains(self, name: str, dims: list[tuple[str, int | None]], proto: str, depth: int = 0) -> bool | None:
        """``dims``: (ip, port) per direction flag. None when the set is unknown."""
        s = self.sets.get(name)
        if s is None or depth > 4:
            return None
        ip, _ = dims[0]
        if s.kind == "hash:ip":
            return ip in s.members
        if s.kind == "hash:net":
            return _net_contains(s.members, ip)
        if s.kind == "hash:ip,port":
            if len(dims) < 2:
                return False
            port = dims[1][1]
            return f"{ip},{proto}:{port}" in s.members
        if s.kind == "list:set":
            return any(self.contains(m, dims, proto, depth + 1) for m in s.members)
        return None


def _net_contains(members: set[str], ip: str) -> bool:
    addr = ipaddress.ip_address(ip)
    best: tuple[int, bool] | None = None
    for m in members:
        net_text, _, flag = m.partition(" ")
        net = ipaddress.ip_network(net_text, strict=False)
        if addr in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, flag != "nomatch")
    return bool(best and best[1])


def _port_in(spec: str, port: int) -> bool:
    for part in spec.split(","):
        lo, _, hi = part.partition(":")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def _match(rule: SavedRule, pkt: Packet, mark: int, sets: SetLookup) -> bool | None:
    """Whether ``rule`` matches ``pkt``; None when a match cannot be decided."""
    t = rule.tokens
    i = 0
    while i < len(t):
        neg = t[i] == "!"
        if neg:
            i += 1
        opt = t[i]
        arg = t[i + 1] if i + 1 < len(t) else ""
        step = 2
        if opt in ("-j", "-g"):
            break
        if opt == "-m":
            ok: bool | None = True
        elif opt == "-p":
            ok = arg.lower() in (pkt.protocol, "all")
        elif opt in ("-s", "-d"):
            ok = ipaddress.ip_address(pkt.src if opt == "-s" else pkt.dst) in ipaddress.ip_network(arg, strict=False)
        elif opt in ("--dport", "--dports"):
            ok = _port_in(arg, pkt.port)
        elif opt in ("--ctstate", "--state"):
            ok = "NEW" in arg.split(",")
        elif opt == "--mark":
            value, _, mask = arg.partition("/")
            ok = (mark & int(mask or "0xffffffff", 0)) == int(value, 0)
        elif opt == "--match-set":
            dirs = t[i + 2].split(",") if i + 2 < len(t) else ["src"]
            step = 3
            dims = [(pkt.src, None) if d == "src" else (pkt.dst, pkt.port) for d in dirs]
            ok = sets.contains(arg, dims, pkt.protocol)
        elif opt == "--comment":
            ok = True
        else:
            return None
        if ok is None:
            return None
        if ok == neg:
            return False
        i += step
    return True


def evaluate(table: SavedTable, sets: Mapping[str, SavedSet], pkt: Packet, start: str = "FORWARD") -> Trace:
    """Walk ``start`` for a NEW packet; follow jumps, RETURN, MARK; stop on a verdict."""
    trace = Trace()
    lookup = SetLookup(sets)
    mark = 0
    stack: list[tuple[str, int]] = []
    chain, pos = start, 0
    for _ in range(100_000):
        rules = table.chains.get(chain, [])
        if pos >= len(rules):
            if not stack:
                trace.verdict = table.policies.get(chain, "ACCEPT") if chain == start else "ACCEPT"
                break
            chain, pos = stack.pop()
            continue
        rule = rules[pos]
        pos += 1
        ok = _match(rule, pkt, mark, lookup)
        if ok is None:
            trace.undecided.append(f"{chain}#{pos}: {' '.join(rule.tokens)}")
            continue
        if not ok:
            continue
        target = rule.target
        trace.hits.append(Hit(chain, pos, rule.comment, target, " ".join(rule.tokens), names.tier_of_chain(chain)))
        if target in _TERMINAL:
            trace.verdict = target
            break
        if target == "RETURN":
            if not stack:
                trace.verdict = table.policies.get(start, "ACCEPT")
                break
            chain, pos = stack.pop()
        elif target == "MARK":
            mark = _apply_mark(rule, mark)
        elif target in table.chains:
            if "-g" not in rule.tokens:
                stack.append((chain, pos))
            chain, pos = target, 0
    trace.mark = mark
    return trace


def _apply_mark(rule: SavedRule, mark: int) -> int:
    t = rule.tokens
    for i, tok in enumerate(t[:-1]):
        if tok in ("--set-xmark", "--set-mark"):
            value, _, mask = t[i + 1].partition("/")
            v, m = int(value, 0), int(mask or "0xffffffff", 0)
            return (mark & ~m) ^ v if tok == "--set-xmark" else (mark & ~m) | v
    return mark


def desired_as_saved(desired: DesiredState, forward_policy: str = "ACCEPT") -> tuple[str, str]:
    """(iptables-save text, ipset save text) of a desired state, as the kernel would print it.

    Lets the evaluator answer "what would these objects do" without a kernel (tests, dry runs).
    """
    lines = ["*filter", f":FORWARD {forward_policy} [0:0]"]
    chains = desired.chains
    lines += [f":{name} - [0:0]" for name in chains]
    lines.append(render_rule(desired.forward_jump))
    for chain in chains.values():
        lines += [render_rule(r) for r in chain.rules]
    lines.append("COMMIT")
    sets: list[str] = []
    for spec in sorted(desired.sets.values(), key=lambda s: s.kind == LIST_SET):
        sets.append(create_line(spec))
        sets += [f"add {spec.name} {m}" for m in sorted(spec.members)]
    return "\n".join(lines) + "\n", "\n".join(sets) + "\n"


def convert_nft(table: NftTable) -> dict[str, object]:
    """Our nftables table as a dict: sets and maps with meaning and elements, chains with
    each rule's comment, verdict and the sets it matches (with their meaning)."""
    return {
        "table": "inet azure-npm",
        "sets": {
            name: {"meaning": table.meanings.get(name, ""), "type": kind, "elements": sorted(elements)}
            for name, (kind, elements) in sorted(table.sets.items())
        },
        "chains": {
            name: {
                "hook": hook,
                "rules": [
                    {
                        "comment": comment,
                        "verdict": verdict,
                        "sets": [
                            {"set": s, "meaning": table.meanings.get(s, "?"), "negated": neg} for neg, s in sets
                        ],
                    }
                    for comment, verdict, sets in fps
                ],
            }
            for name, (hook, fps) in table.chains.items()
        },
    }
