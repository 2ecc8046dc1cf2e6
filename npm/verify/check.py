"""Compare the kernel's verdicts with the policies' for every pair of endpoints and port.

Pairs are grouped by what each side can tell apart: the kernel by an address's signature
(the sets and rule CIDRs that hold it), the oracle by its equivalence class. One pair per
group is evaluated on both sides; a disagreement is reported for every pair of the group
(counted, with the first few named).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kube.model import Cluster, PortSpec
from npm.verify.kernel import KernelVerdict
from npm.verify.oracle import Endpoint, Oracle

EXAMPLES_PER_MISMATCH = 5


class KernelView(Protocol):
    name: str

    def edge_addresses(self) -> list[str]: ...

    def signature(self, ip: str) -> tuple: ...

    def verdict(self, src: str, dst: str, protocol: str, port: int) -> KernelVerdict: ...


@dataclass(frozen=True)
class Mismatch:
    """A group of connections on which the kernel and the policies disagree."""

    src: str
    dst: str
    port: PortSpec
    kernel: bool | None  # None: the kernel's rules could not be decided for it
    policy: bool
    pairs: int  # connections of the group (same signatures and classes)
    examples: tuple[tuple[str, str], ...]
    rules: tuple[str, ...]  # the kernel rules the packet hit
    because: str  # the simulator's account

    def to_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "port": self.port.port, "protocol": self.port.protocol,
                "kernel": _word(self.kernel), "policy": _word(self.policy), "pairs": self.pairs,
                "examples": [list(e) for e in self.examples], "kernel_rules": list(self.rules),
                "because": self.because}

    def render(self) -> str:
        more = f" (+{self.pairs - 1} more like it)" if self.pairs > 1 else ""
        return (f"MISMATCH {self.src} -> {self.dst} {self.port}: kernel {_word(self.kernel)}, policies "
                f"{_word(self.policy)}{more}\n    kernel rules: {'; '.join(self.rules) or 'none'}\n"
                f"    policies: {self.because}")


def _word(allowed: bool | None) -> str:
    return "undecided" if allowed is None else ("allowed" if allowed else "denied")


@dataclass
class Report:
    dataplane: str
    endpoints: int = 0
    connections: int = 0  # (src, dst, port) checked
    bypassed: int = 0  # pairs policy does not apply to (a pod and itself, a node and its pods)
    evaluations: int = 0  # distinct groups evaluated on both sides
    mismatches: list[Mismatch] = field(default_factory=list)
    seconds: float = 0.0
    skipped: str = ""  # why nothing was evaluated (over the evaluation budget)

    @property
    def agrees(self) -> bool:
        return not self.mismatches and not self.skipped

    @property
    def mismatched_connections(self) -> int:
        return sum(m.pairs for m in self.mismatches)

    def to_json(self) -> dict[str, Any]:
        return {"dataplane": self.dataplane, "agrees": self.agrees, "skipped": self.skipped or None,
                "endpoints": self.endpoints,
                "connections": self.connections, "bypassed": self.bypassed, "evaluations": self.evaluations,
                "mismatched_connections": self.mismatched_connections,
                "mismatches": [m.to_json() for m in self.mismatches], "seconds": round(self.seconds, 3)}

    def render(self) -> str:
        if self.skipped:
            return f"verify ({self.dataplane}): not run: {self.skipped}\n"
        head = (f"verify ({self.dataplane}): {self.connections:,} connection(s) between {self.endpoints} endpoint(s) "
                f"checked in {self.evaluations:,} evaluation(s), {self.bypassed:,} pair(s) bypass policy; ")
        if self.agrees:
            return head + "the kernel agrees with the policies\n"
        lines = [head + f"{self.mismatched_connections:,} connection(s) DISAGREE"]
        lines += [m.render() for m in self.mismatches]
        return "\n".join(lines) + "\n"


def verify(view: KernelView, oracle: Oracle, extra_outside: Sequence[str] = (),
           progress: Callable[[str], None] | None = None, budget: int | None = None) -> Report:
    """Every endpoint pair on its ports: the kernel's verdict against the policies'. With a
    ``budget``, a check that would take more evaluations is not run and says so."""
    started = time.perf_counter()
    endpoints = oracle.endpoints(tuple(extra_outside))
    report = Report(view.name, endpoints=len(endpoints))
    ports = [tuple(oracle.ports(ep)) for ep in endpoints]
    members: dict[tuple, list[int]] = {}
    for i, ep in enumerate(endpoints):
        members.setdefault((view.signature(ep.ip), oracle.kind_key(ep), ports[i]), []).append(i)
    groups = list(members.values())
    needed = len(groups) * sum(len(ports[b[0]]) for b in groups)
    if budget is not None and needed > budget:
        report.skipped = (f"{len(groups):,} groups of endpoints would take up to {needed:,} evaluations, over the "
                          f"budget of {budget:,}")
        report.seconds = time.perf_counter() - started
        return report
    for gi, a in enumerate(groups):
        for b in groups:
            count, examples = _pairs(oracle, endpoints, a, b)
            report.bypassed += len(a) * len(b) - (len(a) if a is b else 0) - count
            if not count:
                continue
            i, j = examples[0]
            src, dst = endpoints[i], endpoints[j]
            for spec in ports[j]:
                report.connections += count
                kernel = view.verdict(src.ip, dst.ip, spec.protocol, spec.port)
                policy = oracle.allowed(src, dst, spec)
                report.evaluations += 1
                if kernel.allowed != policy:
                    rules = tuple(f"{h.chain}#{h.index} {h.comment or h.target}".strip() for h in kernel.trace.hits)
                    rules += tuple(f"undecided {u}" for u in kernel.trace.undecided[:3])
                    named = tuple((endpoints[x].name, endpoints[y].name) for x, y in examples)
                    report.mismatches.append(Mismatch(src.name, dst.name, spec, kernel.allowed, policy, count,
                                                      named, rules, oracle.because(src, dst, spec)))
        if progress is not None and gi and gi % 200 == 0:
            progress(f"checked {gi:,} of {len(groups):,} source groups")
    report.mismatches.sort(key=lambda m: (-m.pairs, m.src, m.dst, m.port.protocol, m.port.port))
    report.seconds = time.perf_counter() - started
    return report


def verify_kernel(view: KernelView, cluster: Cluster, *, budget: int | None = None,
                  progress: Callable[[str], None] | None = None) -> Report:
    """The check of ``azure-npm verify``: ``view`` (what a node's kernel holds) against the
    simulator's verdicts for ``cluster``, outside addresses and the edges of the kernel's CIDRs
    included. The command, the daemon and the harness all check this way."""
    return verify(view, Oracle(cluster), view.edge_addresses(), progress=progress, budget=budget)


def _pairs(oracle: Oracle, endpoints: Sequence[Endpoint], a: list[int], b: list[int],
           ) -> tuple[int, list[tuple[int, int]]]:
    """How many pairs of ``a`` x ``b`` policy applies to, and the first few of them.

    Policy is bypassed by a pod with itself, by a node (a group of one) with its own pods, and
    by a hostNetwork pod with the pods of its node (pods are then grouped by node, see
    ``Oracle.kind_key``): so when both groups have several members, one pair tells for all;
    otherwise each pair is looked at."""
    if len(a) > 1 and len(b) > 1:
        first = [(x, y) for x in a[:2] for y in b[:3] if x != y][:EXAMPLES_PER_MISMATCH]
        if oracle.bypass(endpoints[first[0][0]], endpoints[first[0][1]]):
            return 0, []
        return len(a) * len(b) - (len(a) if a is b else 0), first
    found = [(x, y) for x in a for y in b if x != y and not oracle.bypass(endpoints[x], endpoints[y])]
    return len(found), found[:EXAMPLES_PER_MISMATCH]
