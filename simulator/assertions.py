"""Assertions: what a team states must, and must never, be reachable, checked against a state.

An assertions file is YAML::

    assertions:
      - name: storefront never reaches the payments database
        from: storefront/*
        to: payments/postgres[StatefulSet]
        port: 5432/TCP
        expect: deny          # allow | deny

``from``/``to`` take a pod (``ns/name``), a workload (``ns/name[Kind]``: its running pods,
or its stand-in when it has none), every pod of a namespace (``ns/*``), a selector
(``{namespace: shop, selector: {matchLabels: {...}}}``), a node (``node/NAME``) or a CIDR.
``port`` is ``N/PROTO``, ``N`` (TCP) or a port name, resolved on each destination pod. An
``allow`` assertion holds when every pair it covers is allowed, a ``deny`` one when every
pair is denied; the pairs that are not are its violations, each with the rule or isolation
behind its verdict.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kube.model import Cluster, LabelSelector, Pod, PortSpec
from kube.parse import Problems, parse_selector
from simulator.explain import explain


class AssertionsError(ValueError):
    """A bad assertions file or an assertion naming nothing: located, never a traceback."""


@dataclass(frozen=True)
class Side:
    """One end of an assertion as written, and how to find its endpoints."""

    text: str
    namespace: str | None = None
    selector: LabelSelector | None = None


@dataclass(frozen=True)
class Assertion:
    name: str
    src: Side
    dst: Side
    port: str  # "N/PROTO" or a port name
    allow: bool
    where: str  # "assertions[3]", for messages
    line: int | None = None  # where it starts in its file, for CI annotations


@dataclass(frozen=True)
class Violation:
    src: str
    dst: str
    port: int
    protocol: str
    allowed: bool
    because: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "port": self.port, "protocol": self.protocol,
                "allowed": self.allowed, "because": list(self.because)}


@dataclass(frozen=True)
class Outcome:
    assertion: Assertion
    pairs: int
    violations: tuple[Violation, ...] = field(default=())
    applicable: bool = True  # False: it names something this cluster does not have (check(missing_ok=True))

    @property
    def holds(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        out = {"name": self.assertion.name, "holds": self.holds, "pairs": self.pairs,
               "violations": [v.to_json() for v in self.violations]}
        if not self.applicable:
            out["applicable"] = False
        return out


def parse_assertions(doc: Any, source: str, lines: Sequence[int] = ()) -> list[Assertion]:
    """The assertions of a loaded YAML document (``lines``: where each starts); raises
    AssertionsError naming the field."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("assertions"), list):
        raise AssertionsError(f"{source}: expected a mapping with an `assertions` list")
    out = []
    for i, raw in enumerate(doc["assertions"]):
        where = f"{source}: assertions[{i}]"
        if not isinstance(raw, Mapping):
            raise AssertionsError(f"{where}: must be a mapping")
        unknown = set(raw) - {"name", "from", "to", "port", "expect"}
        if unknown:
            raise AssertionsError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        expect = raw.get("expect")
        if expect not in ("allow", "deny"):
            raise AssertionsError(f"{where}.expect: must be allow or deny, not {expect!r}")
        port = raw.get("port", "80/TCP")
        if not isinstance(port, str | int) or isinstance(port, bool):
            raise AssertionsError(f"{where}.port: must be N/PROTO, N or a port name")
        name = raw.get("name") or f"assertion {i}"
        out.append(Assertion(str(name), _side(raw.get("from"), f"{where}.from"), _side(raw.get("to"), f"{where}.to"),
                             str(port), expect == "allow", where, lines[i] if i < len(lines) else None))
    return out


def _side(raw: Any, where: str) -> Side:
    if isinstance(raw, str) and raw:
        return Side(raw)
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"namespace", "selector"}
        if unknown:
            raise AssertionsError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        problems = Problems()
        selector = parse_selector(raw.get("selector") or {}, f"{where}.selector", problems)
        if problems.errors:
            raise AssertionsError("; ".join(f"{e.path}: {e.message}" for e in problems.errors))
        namespace = raw.get("namespace")
        if namespace is not None and not isinstance(namespace, str):
            raise AssertionsError(f"{where}.namespace: must be a string")
        text = f"{namespace or '*'}/{{{selector}}}" if selector.requirements else f"{namespace or '*'}/*"
        return Side(text, namespace, selector)
    raise AssertionsError(f"{where}: required: a pod, workload, namespace/*, selector, node/NAME or CIDR")


def endpoints(cluster: Cluster, side: Side, where: str) -> list[Pod | str]:
    """The pods (or one address/node name) ``side`` stands for; AssertionsError if none."""
    from simulator.endpoint_names import UnknownName, pods_named

    text = side.text
    if side.selector is not None:
        found: list[Pod | str] = [p for p in cluster.pods if (side.namespace in (None, p.namespace))
                                  and side.selector.matches(p.labels)]
        if not found:
            raise AssertionsError(f"{where}: {text!r} selects no pod in the cluster")
        return found
    if text.startswith("node/"):
        if text[5:] in cluster.node_by_name:
            return [text]
        raise AssertionsError(f"{where}: no node {text[5:]!r} in the cluster")
    if "/" not in text or text.rsplit("/", 1)[1].isdigit():
        try:
            ipaddress.ip_network(text, strict=False)
            return [text]
        except ValueError:
            pass
    try:
        return list(pods_named(cluster, text))
    except UnknownName as exc:
        raise AssertionsError(f"{where}: {exc}") from None


def _ports(assertion: Assertion, dst: Pod | str) -> list[PortSpec]:
    """The port(s) to check towards ``dst``: a number, or a name resolved on the pod."""
    text = assertion.port
    try:
        return [PortSpec.parse(text)]
    except ValueError:
        pass
    if not isinstance(dst, Pod):
        raise AssertionsError(f"{assertion.where}.port: {text!r} is a port name, and {dst} has no named ports")
    return [PortSpec(p.port, p.protocol) for p in dst.ports if p.name == text]


def check(cluster: Cluster, assertions: Sequence[Assertion], missing_ok: bool = False) -> list[Outcome]:
    """Evaluate every assertion on ``cluster``. With ``missing_ok`` an assertion naming
    something the cluster does not have (the state before a change that adds it) is an
    outcome that does not apply, not an error."""
    from simulator.engine import Simulator

    sim = Simulator(cluster)
    out = []
    for a in assertions:
        try:
            srcs = endpoints(cluster, a.src, f"{a.where}.from")
            dsts = endpoints(cluster, a.dst, f"{a.where}.to")
        except AssertionsError:
            if not missing_ok:
                raise
            out.append(Outcome(a, 0, applicable=False))
            continue
        pairs = 0
        named = False
        violations = []
        for dst in dsts:
            specs = _ports(a, dst)
            named = named or bool(specs)
            for spec in specs:
                for src in srcs:
                    if src is dst:
                        continue
                    pairs += 1
                    result = explain(sim, src, dst, spec)
                    if result.allowed != a.allow:
                        violations.append(Violation(result.src, result.dst, spec.port, spec.protocol, result.allowed,
                                                    _because(result)))
        if not named:
            raise AssertionsError(f"{a.where}.port: no destination of {a.dst.text!r} declares a port named {a.port!r}")
        out.append(Outcome(a, pairs, tuple(violations)))
    return out


def _because(result: Any) -> tuple[str, ...]:
    """The rule that allows the connection, the ClusterNetworkPolicy rule that accepts or denies
    it, or the policies that isolate it."""
    if result.bypass:
        return (result.bypass,)
    out = []
    for part in (result.egress, result.ingress):
        if part.cnp_rule is not None:
            out.append(part.cnp_rule.describe())
        elif part.rule is not None:
            out.append(part.rule.describe())
        elif part.isolated and not part.allowed:
            out += [f"{p} isolates {part.direction.lower()}" for p in part.policies]
    return tuple(out)


def render_text(outcomes: Sequence[Outcome]) -> str:
    lines = []
    for o in outcomes:
        lines.append(f"{'ok  ' if o.holds else 'FAIL'} {o.assertion.name} ({o.pairs} pair(s))")
        for v in o.violations[:20]:
            why = "; ".join(v.because) or "-"
            verdict = "allowed" if v.allowed else "denied"
            lines.append(f"       {v.src} -> {v.dst} {v.port}/{v.protocol}: {verdict} ({why})")
        if len(o.violations) > 20:
            lines.append(f"       ... and {len(o.violations) - 20} more")
    failed = sum(not o.holds for o in outcomes)
    lines.append(f"{len(outcomes) - failed} of {len(outcomes)} assertion(s) hold")
    return "\n".join(lines) + "\n"


def render_junit(outcomes: Sequence[Outcome], suite: str = "npm-sim check") -> str:
    import xml.etree.ElementTree as ET

    failures = sum(not o.holds for o in outcomes)
    root = ET.Element("testsuite", name=suite, tests=str(len(outcomes)), failures=str(failures))
    for o in outcomes:
        case = ET.SubElement(root, "testcase", classname="assertions", name=o.assertion.name)
        if not o.holds:
            fail = ET.SubElement(case, "failure", message=f"{len(o.violations)} violation(s)")
            fail.text = "\n".join(f"{v.src} -> {v.dst} {v.port}/{v.protocol}: {'; '.join(v.because)}"
                                  for v in o.violations)
    return ET.tostring(root, encoding="unicode") + "\n"
