"""Suppressing ``npm-sim lint`` findings a team has reviewed and accepts.

Two ways, both by the finding's stable rule id (its kind, see ``simulator.lint_kinds``):

- an annotation ``npm-sim.io/ignore: rule-id,rule-id`` (or ``all``) on a NetworkPolicy
  suppresses those findings about it; on a Namespace, those about the namespace and every
  policy in it;
- a config file (``npm-sim lint --config FILE``)::

      ignore:
        - rule: unprotected-namespace
          namespace: legacy            # optional: only this namespace
          reason: reviewed in SEC-123  # optional, shown in the outputs
        - rule: redundant-rule
          policy: shop/allow-web       # optional: only this policy (namespace/name)

Nothing is dropped silently: suppressed findings are counted in the text output, listed
under ``suppressed`` in JSON and carried as SARIF results with a ``suppressions`` entry,
and an unknown rule id in an annotation is reported as a note.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kube.model import Cluster
from simulator.lint_kinds import SUMMARIES

ANNOTATION = "npm-sim.io/ignore"
ALL = "all"


class ConfigError(ValueError):
    """A lint config file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class IgnoreEntry:
    """One ``ignore`` entry of a config file."""

    rule: str
    namespace: str | None = None
    policy: str | None = None
    reason: str = ""
    where: str = ""  # "FILE ignore[3]", for messages

    def covers(self, finding: Any) -> bool:
        if self.rule not in (ALL, finding.kind):
            return False
        if self.policy is not None and finding.policy != self.policy:
            return False
        return self.namespace is None or _namespace_of(finding) == self.namespace


@dataclass(frozen=True)
class Suppressed:
    """A finding that was suppressed, and by what."""

    finding: Any
    by: str  # "annotation" or "config"
    justification: str

    def to_json(self) -> dict[str, Any]:
        return {**self.finding.to_json(), "suppressed_by": self.by, "justification": self.justification}


def _namespace_of(finding: Any) -> str:
    if finding.namespace or not finding.policy or finding.policy.startswith("cnp/"):
        return finding.namespace  # a ClusterNetworkPolicy (cnp/NAME) is in no namespace
    return finding.policy.split("/", 1)[0]


def parse_config(doc: Any, path: str) -> list[IgnoreEntry]:
    """The ``ignore`` entries of a lint config document; ConfigError naming the field."""
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{path}: expected a mapping with an 'ignore' list")
    unknown = set(doc) - {"ignore"}
    if unknown:
        raise ConfigError(f"{path}: unknown field(s) {', '.join(sorted(map(str, unknown)))} (expected: ignore)")
    entries = doc.get("ignore") or []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: ignore: must be a list")
    out = []
    for i, raw in enumerate(entries):
        where = f"{path} ignore[{i}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where}: must be a mapping with a rule")
        unknown = set(raw) - {"rule", "namespace", "policy", "reason"}
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        rule = raw.get("rule")
        if rule != ALL and rule not in SUMMARIES:
            raise ConfigError(f"{where}.rule: {rule!r} is not a lint rule id ({', '.join(sorted(SUMMARIES))}, all)")
        for name in ("namespace", "policy", "reason"):
            if raw.get(name) is not None and not isinstance(raw.get(name), str):
                raise ConfigError(f"{where}.{name}: must be a string")
        policy = raw.get("policy")
        if policy is not None and policy.count("/") != 1:
            raise ConfigError(f"{where}.policy: {policy!r} must be namespace/name")
        out.append(IgnoreEntry(rule, raw.get("namespace"), policy, raw.get("reason") or "", where))
    return out


def annotation_rules(value: str) -> tuple[set[str], list[str]]:
    """The rule ids an annotation value names, and the names that are not rule ids."""
    named = {part.strip() for part in value.split(",") if part.strip()}
    return named, sorted(n for n in named if n != ALL and n not in SUMMARIES)


def suppress(
    findings: Sequence[Any], cluster: Cluster, config: Sequence[IgnoreEntry] = ()
) -> tuple[list[Any], list[Suppressed], list[str]]:
    """``(kept, suppressed, notes)``: findings with the annotations of ``cluster`` and the
    ``config`` entries applied; notes name annotations that name unknown rule ids."""
    notes: list[str] = []
    by_policy: dict[str, set[str]] = {}
    by_namespace: dict[str, set[str]] = {}
    for owner, table, what in ((cluster.policies, by_policy, "NetworkPolicy"),
                               (cluster.namespaces, by_namespace, "Namespace")):
        for obj in owner:
            value = obj.annotations.get(ANNOTATION)
            if value is None:
                continue
            key = getattr(obj, "key", None) or obj.name
            rules, unknown = annotation_rules(value)
            if unknown:
                notes.append(f"{what} {key}: annotation {ANNOTATION} names unknown rule id(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(SUMMARIES))}, all)")
            table[key] = rules
    kept: list[Any] = []
    suppressed: list[Suppressed] = []
    for finding in findings:
        why = _annotated(finding, by_policy, by_namespace)
        if why:
            suppressed.append(Suppressed(finding, "annotation", why))
            continue
        entry = next((e for e in config if e.covers(finding)), None)
        if entry is not None:
            suppressed.append(Suppressed(finding, "config", entry.reason or f"{entry.where}"))
            continue
        kept.append(finding)
    return kept, suppressed, notes


def _annotated(finding: Any, by_policy: Mapping[str, set[str]], by_namespace: Mapping[str, set[str]]) -> str:
    for rules, owner in ((by_policy.get(finding.policy, set()), f"NetworkPolicy {finding.policy}"),
                         (by_namespace.get(_namespace_of(finding), set()), f"Namespace {_namespace_of(finding)}")):
        if finding.kind in rules or ALL in rules:
            return f"{ANNOTATION} on {owner}"
    return ""


__all__ = ["ANNOTATION", "ConfigError", "IgnoreEntry", "Suppressed", "annotation_rules", "parse_config", "suppress"]
