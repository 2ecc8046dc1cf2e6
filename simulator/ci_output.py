"""Findings for CI systems: SARIF 2.1.0 (code-scanning upload) and GitHub workflow annotations.

``lint`` findings point at the file of the policy they are about; a violated assertion
points at the assertions file. (Line numbers are not carried from the reader yet, so a
location names the file only, which SARIF allows.)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from kube.model import Cluster
from simulator.lint_kinds import SUMMARIES

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL = {"name": "npm-sim", "informationUri": "https://github.com/Azure/azure-container-networking"}
LEVELS = {"error": "error", "warning": "warning", "info": "note"}
_RULE_TEXT = {**SUMMARIES, "assertion": "A stated assertion about reachability does not hold"}


def _log(results: list[dict[str, Any]]) -> str:
    rules = sorted({r["ruleId"] for r in results})
    driver = {**TOOL, "rules": [{"id": rule, "shortDescription": {"text": _RULE_TEXT.get(rule, rule)}}
                                for rule in rules]}
    log = {"$schema": SARIF_SCHEMA, "version": "2.1.0", "runs": [{"tool": {"driver": driver}, "results": results}]}
    return json.dumps(log, indent=2) + "\n"


def _result(rule: str, level: str, message: str, uri: str) -> dict[str, Any]:
    out: dict[str, Any] = {"ruleId": rule, "level": level, "message": {"text": message}}
    if uri:
        out["locations"] = [{"physicalLocation": {"artifactLocation": {"uri": uri}}}]
    return out


def _policy_file(cluster: Cluster, key: str) -> str:
    policy = cluster.policy_by_key.get(key)
    return policy.source.file if policy is not None and not policy.source.file.startswith("<") else ""


def lint_sarif(findings: Sequence[Any], cluster: Cluster) -> str:
    """``npm-sim lint`` findings as a SARIF log."""
    return _log([_result(f.kind, LEVELS.get(f.severity, "note"), f.render(), _policy_file(cluster, f.policy))
                 for f in findings])


def lint_github(findings: Sequence[Any], cluster: Cluster) -> str:
    """``npm-sim lint`` findings as GitHub workflow commands (``::warning file=...::...``)."""
    lines = []
    for f in findings:
        level = {"error": "error", "warning": "warning"}.get(f.severity, "notice")
        uri = _policy_file(cluster, f.policy)
        lines.append(_command(level, uri, f.kind, f.render()))
    return "".join(lines)


def check_sarif(outcomes: Sequence[Any], assertions_file: str) -> str:
    """Violated assertions of ``npm-sim check`` as a SARIF log."""
    return _log([_result("assertion", "error", _violation_text(o), assertions_file) for o in outcomes if not o.holds])


def check_github(outcomes: Sequence[Any], assertions_file: str) -> str:
    return "".join(_command("error", assertions_file, "assertion", _violation_text(o)) for o in outcomes if not o.holds)


def _violation_text(outcome: Any) -> str:
    first = outcome.violations[0]
    verdict = "allowed" if first.allowed else "denied"
    more = f" (and {len(outcome.violations) - 1} more)" if len(outcome.violations) > 1 else ""
    return (f"{outcome.assertion.name}: {first.src} -> {first.dst} {first.port}/{first.protocol} is {verdict}"
            f"{more}; {'; '.join(first.because) or 'no rule'}")


def _command(level: str, uri: str, title: str, message: str) -> str:
    """One workflow command; its properties and message escaped as GitHub documents."""
    def escape(text: str, props: bool = False) -> str:
        text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
        return text.replace(":", "%3A").replace(",", "%2C") if props else text

    props = ",".join(p for p in (f"file={escape(uri, True)}" if uri else "", f"title={escape(title, True)}") if p)
    return f"::{level} {props}::{escape(message)}\n"
