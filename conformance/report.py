"""Reports of a run: truth tables (as the upstream e2e suite prints them), JSON, JUnit, summary.

The JSON shape is a contract (docs/conformance.md)::

    {"scenarios": [{"name": "...",
                    "results": [{"step": 0, "src": "x/a", "dst": "y/b", "port": 80,
                                 "protocol": "TCP", "predicted": true, "observed": true}, ...],
                    "steps": [{"step": 0, "converged_seconds": 0.4, ...}, ...]}]}

``results`` holds every probe of every step, a pod with itself included; a skipped probe
(SCTP where the kernel has none) has ``"observed": null``.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from conformance.results import ProbeResult, ScenarioResult, StepResult
from kube.model import PortSpec

ALLOWED, DENIED, UNKNOWN = ".", "X", "?"


# -- truth tables ------------------------------------------------------------------------
def truth_table(keys: Sequence[str], values: dict[tuple[str, str], bool | None], indent: str = "") -> str:
    """Upstream's rendering: ``-`` then destinations; rows of ``.`` (true), ``X`` (false), ``?``."""
    lines = [indent + "\t".join(["-", *keys])]
    for src in keys:
        marks = []
        for dst in keys:
            value = values.get((src, dst))
            marks.append(UNKNOWN if value is None else ALLOWED if value else DENIED)
        lines.append(indent + "\t".join([src, *marks]))
    return "\n".join(lines)


def _ordered_keys(probes: Iterable[ProbeResult]) -> list[str]:
    keys: dict[str, None] = {}
    for p in probes:
        keys.setdefault(p.src)
        keys.setdefault(p.dst)
    return sorted(keys, key=lambda k: tuple(k.split("/", 1)))


def _by_port(probes: Iterable[ProbeResult]) -> dict[PortSpec, list[ProbeResult]]:
    out: dict[PortSpec, list[ProbeResult]] = {}
    for p in probes:
        out.setdefault(p.port, []).append(p)
    return out


def port_report(step: StepResult, port: PortSpec, probes: Sequence[ProbeResult]) -> str:
    """Expected, observed and comparison tables of one step and port, with counts."""
    keys = _ordered_keys(probes)
    if all(p.skipped for p in probes):
        return f"  port {port}: {len(probes)} probes skipped (protocol not supported by this kernel/backend)"
    wrong = sum(p.mismatch for p in probes)
    ignored = sum(p.loopback and p.observed is not None and p.observed != p.predicted for p in probes)
    skipped = sum(p.skipped for p in probes)
    right = len(probes) - wrong - ignored - skipped
    head = f"  port {port}: correct {right}, incorrect {wrong}"
    if ignored:
        head += f", ignored {ignored} (loopback)"
    if skipped:
        head += f", skipped {skipped}"
    expected = {(p.src, p.dst): p.predicted for p in probes}
    observed = {(p.src, p.dst): p.observed for p in probes}
    comparison = {(p.src, p.dst): None if p.observed is None else p.observed == p.predicted for p in probes}
    parts = [
        head,
        "  expected (simulator):",
        truth_table(keys, expected, "    "),
        "  observed:",
        truth_table(keys, observed, "    "),
        "  comparison ('.' agrees, 'X' differs):",
        truth_table(keys, comparison, "    "),
    ]
    written = [p for p in probes if p.expectation_mismatch]
    if written:
        parts.append("  written expectation contradicted:")
        for p in written:
            parts.append(
                f"    {p.src} -> {p.dst} {p.port}: expected {_word(p.expected)}, "
                f"simulator {_word(p.predicted)}, observed {_word(p.observed)}"
            )
    return "\n".join(parts)


def _word(value: bool | None) -> str:
    return "skipped" if value is None else "allowed" if value else "denied"


def step_report(step: StepResult, verbose: bool = False) -> str:
    """The tables of one step: every port if verbose, else only ports with a problem."""
    title = f"step {step.index}" + (f" ({step.name})" if step.name else "")
    conv = "did not converge" if step.converged_seconds is None else f"converged in {step.converged_seconds:.2f}s"
    lines = [f"-- {title}: {len(step.probes)} probes, {len(step.mismatches)} mismatches, {conv}"]
    if step.error:
        lines.append(f"  error: {step.error}")
    for v in step.verify:
        if verbose or not v.agrees:
            state = "agrees" if v.agrees else f"DISAGREES on {v.mismatched} connection(s)"
            lines.append(f"  verify {v.node}: the kernel {state} ({v.connections} connections checked)")
            lines += [f"    {line}" for line in v.detail.splitlines()]
    for port, probes in _by_port(step.probes).items():
        bad = any(p.mismatch or p.expectation_mismatch for p in probes)
        if verbose or bad:
            lines.append(port_report(step, port, probes))
    return "\n".join(lines)


def table_report(results: Sequence[ScenarioResult], verbose: bool = False) -> str:
    """Human report: one line per scenario, truth tables for what went wrong (all if verbose)."""
    out = []
    for sc in results:
        status = "PASS" if sc.passed else "FAIL"
        probes = sc.probes
        out.append(
            f"{status} {sc.name} ({sc.source}): {len(sc.steps)} steps, {len(probes)} probes, "
            f"{sum(p.mismatch for p in probes)} mismatches, {sum(p.skipped for p in probes)} skipped, {sc.seconds:.1f}s"
        )
        if sc.error:
            out.append(f"  error: {sc.error}")
        for step in sc.steps:
            if verbose or not step.passed:
                out.append(step_report(step, verbose))
    return "\n".join(out)


# -- JSON --------------------------------------------------------------------------------
def probe_json(p: ProbeResult) -> dict[str, object]:
    """One entry of ``results``: exactly these seven keys."""
    return {
        "step": p.step,
        "src": p.src,
        "dst": p.dst,
        "port": p.port.port,
        "protocol": p.port.protocol,
        "predicted": p.predicted,
        "observed": p.observed,
    }


def json_report(results: Sequence[ScenarioResult]) -> dict[str, object]:
    """The machine report (see the module docstring for the shape)."""
    scenarios = []
    for sc in results:
        steps = []
        for s in sc.steps:
            entry: dict[str, object] = {
                "step": s.index,
                "converged_seconds": None if s.converged_seconds is None else round(s.converged_seconds, 3),
                "seconds": round(s.seconds, 3),
                "passed": s.passed,
            }
            if s.error:
                entry["error"] = s.error
            if s.verify:
                entry["verify"] = [v.to_json() for v in s.verify]
            if s.expectation_mismatches:
                entry["expectation_mismatches"] = [
                    {**probe_json(p), "expected": p.expected} for p in s.expectation_mismatches
                ]
            steps.append(entry)
        scenarios.append(
            {"name": sc.name, "results": [probe_json(p) for s in sc.steps for p in s.probes], "steps": steps}
        )
    return {"scenarios": scenarios}


def dumps_json(results: Sequence[ScenarioResult]) -> str:
    return json.dumps(json_report(results), indent=2) + "\n"


# -- JUnit -------------------------------------------------------------------------------
def junit_report(results: Sequence[ScenarioResult], suite: str = "npm-conformance") -> str:
    """JUnit XML: one testcase per scenario step, failures carrying the truth tables."""
    cases = []
    failures = errors = skipped = 0
    total_time = 0.0
    for sc in results:
        steps = sc.steps or [StepResult(0, error=sc.error or "no step ran")]
        for step in steps:
            case = ET.Element(
                "testcase",
                classname=sc.name,
                name=f"step {step.index}" + (f": {step.name}" if step.name else ""),
                time=f"{step.seconds:.3f}",
                file=sc.source,
            )
            total_time += step.seconds
            if step.error or (sc.error and not sc.steps):
                errors += 1
                ET.SubElement(case, "error", message=step.error or sc.error).text = step.error or sc.error
            elif not step.passed:
                failures += 1
                n = len(step.mismatches) + len(step.expectation_mismatches)
                message = f"{n} probes disagree" if n else f"verify: {len(step.verify_failures)} node(s) disagree"
                ET.SubElement(case, "failure", message=message).text = step_report(step)
            elif step.probes and all(p.skipped for p in step.probes):
                skipped += 1
                ET.SubElement(case, "skipped", message="every probe skipped (protocol not supported)")
            cases.append(case)
    root = ET.Element("testsuites", name=suite, tests=str(len(cases)), failures=str(failures), errors=str(errors))
    ts = ET.SubElement(
        root,
        "testsuite",
        name=suite,
        tests=str(len(cases)),
        failures=str(failures),
        errors=str(errors),
        skipped=str(skipped),
        time=f"{total_time:.3f}",
    )
    ts.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# -- summary -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    scenarios: int
    passed: int
    probes: int
    mismatches: int
    expectation_mismatches: int
    skipped: int
    seconds: float
    verified: int = 0  # node checks by azure-npm verify
    verify_failures: int = 0

    @property
    def ok(self) -> bool:
        return self.passed == self.scenarios

    def line(self) -> str:
        text = (
            f"{self.scenarios} scenarios ({self.passed} passed, {self.scenarios - self.passed} failed), "
            f"{self.probes} probes, {self.mismatches} mismatches, {self.skipped} skipped"
        )
        if self.expectation_mismatches:
            text += f", {self.expectation_mismatches} contradicted expectations"
        if self.verified:
            text += f", verify: {self.verified - self.verify_failures} of {self.verified} node checks agree"
        return text + f", {self.seconds:.1f}s"


def summarize(results: Sequence[ScenarioResult], seconds: float) -> Summary:
    probes = [p for sc in results for p in sc.probes]
    return Summary(
        scenarios=len(results),
        passed=sum(sc.passed for sc in results),
        probes=len(probes),
        mismatches=sum(p.mismatch for p in probes),
        expectation_mismatches=sum(p.expectation_mismatch for p in probes),
        skipped=sum(p.skipped for p in probes),
        seconds=seconds,
        verified=sum(len(s.verify) for sc in results for s in sc.steps),
        verify_failures=sum(len(s.verify_failures) for sc in results for s in sc.steps),
    )
