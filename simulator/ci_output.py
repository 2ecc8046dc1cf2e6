"""Findings for CI systems: SARIF 2.1.0 (code-scanning upload) and GitHub workflow annotations.

Every result points at the file, and the line where it is known, of the object responsible:
a lint finding at its policy (or namespace), a violated assertion at the assertion, a
connection a change gains or loses at the manifest that changed it (a workload added,
deleted or relabelled, a namespace relabelled) or else at the policy rule that decides it.
Lines come from the YAML reader (``Source.line``); objects read from JSON lists, from a live
cluster or from standard input have a file but no line, which SARIF allows.

Rule ids are stable (docs/ci.md lists them): the lint kinds, ``assertion``,
``assertion-broken``, ``connection-gained`` and ``connection-lost``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kube.model import Cluster, Source
from simulator.lint_kinds import SUMMARIES

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL = {"name": "npm-sim", "informationUri": "https://github.com/Azure/azure-container-networking"}
LEVELS = {"error": "error", "warning": "warning", "info": "note"}
RULES = {
    **SUMMARIES,
    "assertion": "A stated assertion about reachability does not hold",
    "assertion-broken": "A change breaks an assertion that held before it",
    "connection-gained": "A change allows connections that were denied",
    "connection-lost": "A change denies connections that were allowed",
}


@dataclass(frozen=True)
class Location:
    """A file and, where known, the 1-based line an object starts on."""

    file: str = ""
    line: int | None = None

    @classmethod
    def of(cls, source: Source | None) -> Location:
        """The location of an object read from ``source`` (none for built or live objects)."""
        if source is None or not source.file or source.file.startswith("<") or ":" in source.file.split("/")[0]:
            return cls()  # <memory>, <stdin>, cluster:Pod, api:Pod: no file to point at
        return cls(source.file, source.line)


@dataclass(frozen=True)
class Result:
    """One finding in a CI system's terms."""

    rule: str
    level: str  # "error", "warning" or "note"
    message: str
    location: Location = Location()
    suppression: str = ""  # why it was suppressed ("" when it was not)
    suppressed_by: str = ""  # "annotation" (in source) or "config" (external)


def sarif(results: Sequence[Result]) -> str:
    """A SARIF 2.1.0 log of ``results`` (suppressed ones carry a ``suppressions`` entry)."""
    rules = sorted({r.rule for r in results})
    driver = {**TOOL, "rules": [{"id": rule, "shortDescription": {"text": RULES.get(rule, rule)}} for rule in rules]}
    out = []
    for r in results:
        item: dict[str, Any] = {"ruleId": r.rule, "level": r.level, "message": {"text": r.message}}
        if r.location.file:
            physical: dict[str, Any] = {"artifactLocation": {"uri": r.location.file}}
            if r.location.line:
                physical["region"] = {"startLine": r.location.line}
            item["locations"] = [{"physicalLocation": physical}]
        if r.suppressed_by:
            kind = "inSource" if r.suppressed_by == "annotation" else "external"
            item["suppressions"] = [{"kind": kind, "justification": r.suppression}]
        out.append(item)
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": out}]}
    return json.dumps(log, indent=2) + "\n"


def github(results: Sequence[Result]) -> str:
    """GitHub workflow commands (``::error file=F,line=L,title=RULE::message``); suppressed
    results are left out (they are counted on standard error by the caller)."""
    level = {"error": "error", "warning": "warning"}
    return "".join(_command(level.get(r.level, "notice"), r.location, r.rule, r.message)
                   for r in results if not r.suppressed_by)


def lint_results(findings: Sequence[Any], cluster: Cluster, suppressed: Sequence[Any] = ()) -> list[Result]:
    """``npm-sim lint`` findings (and the suppressed ones, marked) as results."""
    out = [Result(f.kind, LEVELS.get(f.severity, "note"), f.render(), _finding_location(cluster, f)) for f in findings]
    for s in suppressed:
        f = s.finding
        out.append(Result(f.kind, LEVELS.get(f.severity, "note"), f.render(), _finding_location(cluster, f),
                          s.justification, s.by))
    return out


def _policy_source(clusters: Sequence[Cluster], key: str) -> Source | None:
    """Where the policy ``key`` came from: a NetworkPolicy ``ns/name`` or a ClusterNetworkPolicy
    ``cnp/NAME`` (a NetworkPolicy of a namespace called cnp is looked up first), in the first
    of ``clusters`` that has it."""
    for cluster in clusters:
        policy = cluster.policy_by_key.get(key)
        if policy is not None:
            return policy.source
    if key.startswith("cnp/"):
        for cluster in clusters:
            cnp = cluster.cluster_policy_by_name.get(key[4:])
            if cnp is not None:
                return cnp.source
    return None


def _finding_location(cluster: Cluster, finding: Any) -> Location:
    source = _policy_source([cluster], finding.policy) if finding.policy else None
    if source is not None:
        return Location.of(source)
    ns = cluster.namespace_by_name.get(finding.namespace)
    return Location.of(ns.source) if ns is not None and not ns.implicit else Location()


def check_results(outcomes: Sequence[Any], assertions_file: str) -> list[Result]:
    """Violated assertions of ``npm-sim check`` as results, at the assertion's line."""
    return [Result("assertion", "error", violation_text(o), Location(assertions_file, o.assertion.line))
            for o in outcomes if not o.holds]


def violation_text(outcome: Any) -> str:
    """``name: src -> dst port is allowed (and N more); because``: an assertion's first violation."""
    first = outcome.violations[0]
    verdict = "allowed" if first.allowed else "denied"
    more = f" (and {len(outcome.violations) - 1} more)" if len(outcome.violations) > 1 else ""
    return (f"{outcome.assertion.name}: {first.src} -> {first.dst} {first.port}/{first.protocol} is {verdict}"
            f"{more}; {'; '.join(first.because) or 'no rule'}")


def diff_results(diff: Any, broken: Sequence[Any] = (), assertions_file: str = "") -> list[Result]:
    """The connections a change gains and loses, a result per group of ``diff_render``
    (source workload, destination workload, reasons), and the assertions it breaks."""
    from simulator.diff_render import group_changes

    out = []
    for kind, changes in (("gained", diff.gained), ("lost", diff.lost)):
        for g in group_changes(kind, changes, diff.before, diff.after):
            because = f"; because: {'; '.join(g.because)}" if g.because else ""
            message = (f"{kind}: {g.src} -> {g.dst} on {g.ports}: {g.connections} connection(s) "
                       f"({g.sources} source pod(s), {g.destinations} destination pod(s)){because}")
            out.append(Result(f"connection-{kind}", "warning", message, _change_location(diff, g.because)))
    for outcome in broken:
        out.append(Result("assertion-broken", "error", violation_text(outcome),
                          Location(assertions_file, outcome.assertion.line)))
    return out


def _change_location(diff: Any, because: Sequence[str]) -> Location:
    """The manifest behind a change: a pod or workload added, deleted or relabelled, a
    namespace relabelled, else the policy whose rule or isolation decides it."""
    before, after = diff.before, diff.after
    for reason in because:
        words = reason.split()
        if reason.startswith("pod ") and len(words) >= 3:
            pod = (before if words[2] == "deleted" else after).pod_by_key.get(words[1])
            if pod is not None:
                return Location.of(pod.source)
        elif reason.startswith("namespace ") and len(words) >= 2:
            ns = after.namespace_by_name.get(words[1])
            if ns is not None and not ns.implicit:
                return Location.of(ns.source)
    for reason in because:
        source = _policy_source([after, before], reason.split(" ", 1)[0])
        if source is not None:
            return Location.of(source)
    return Location()


def _command(level: str, location: Location, title: str, message: str) -> str:
    """One workflow command; its properties and message escaped as GitHub documents."""
    def escape(text: str, props: bool = False) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if props else text

    props = []
    if location.file:
        props.append(f"file={escape(location.file, True)}")
        if location.line:
            props.append(f"line={location.line}")
    props.append(f"title={escape(title, True)}")
    return f"::{level} {','.join(props)}::{escape(message)}\n"


__all__ = ["RULES", "Location", "Result", "check_results", "diff_results", "github", "lint_results", "sarif",
           "violation_text"]
