"""The dataplane's data types: sets, rules, chains, marks, the desired state, set references.

Shared by translation (which produces them), the kernel payloads (which render them) and
the enforcer (which compares them with the kernel); they depend on nothing but the names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

from kube.model import Direction, NetworkPolicy, Requirement
from npm.dataplane import names

HASH_IP = "hash:ip"
HASH_NET = "hash:net"
HASH_IP_PORT = "hash:ip,port"
LIST_SET = "list:set"
DEFAULT_INGRESS_MARK = 0x2000
DEFAULT_EGRESS_MARK = 0x1000
DEFAULT_PASS_MARK = 0x800  # ClusterNetworkPolicy Pass, only while a tier chain is walked
FORWARD_COMMENT = "azure-npm: enforce network policies"


@dataclass(frozen=True)
class SetSpec:
    """One ipset: kernel name, type, what it means, and its members in ipset-save form."""

    name: str
    kind: str
    meaning: str
    members: frozenset[str]


@dataclass(frozen=True)
class RuleSpec:
    """One iptables rule of ``chain``: its tokens (after ``-A CHAIN``) and attribution."""

    chain: str
    args: tuple[str, ...]
    comment: str
    policy: str | None = None

    def tokens(self) -> tuple[str, ...]:
        """Arguments including the comment match, ready for rendering."""
        return (*self.args, "-m", "comment", "--comment", self.comment)


@dataclass(frozen=True)
class ChainSpec:
    """A chain and its rules in order; ``policy`` is set for per-policy chains."""

    name: str
    rules: tuple[RuleSpec, ...]
    policy: str | None = None


@dataclass(frozen=True)
class Marks:
    """The skb mark bits the verdict uses (each a single bit; they must differ)."""

    ingress: int = DEFAULT_INGRESS_MARK
    egress: int = DEFAULT_EGRESS_MARK
    cnp_pass: int = DEFAULT_PASS_MARK  # set by a ClusterNetworkPolicy Pass rule, cleared by its tier chain

    def __post_init__(self) -> None:
        for bit in (self.ingress, self.egress, self.cnp_pass):
            if bit <= 0 or bit & (bit - 1):
                raise ValueError(f"mark {bit:#x} must be a single bit")
        if self.ingress == self.egress:
            raise ValueError("ingress and egress marks must differ")
        if self.cnp_pass in (self.ingress, self.egress):
            raise ValueError("the Pass mark must differ from the ingress and egress marks")

    @property
    def both(self) -> int:
        return self.ingress | self.egress


@dataclass(frozen=True)
class DesiredState:
    """Everything the kernel should hold for one node."""

    sets: Mapping[str, SetSpec]
    base_chains: tuple[ChainSpec, ...]
    policy_chains: Mapping[str, ChainSpec]
    chains_of_policy: Mapping[str, tuple[str, ...]]
    forward_jump: RuleSpec
    unenforceable: tuple[tuple[str, str], ...] = ()
    policies: int = 0
    sets_of_policy: Mapping[str, frozenset[str]] = field(default_factory=dict)  # the sets its rules use
    cluster_policy_tiers: Mapping[str, str] = field(default_factory=dict)  # CNP key -> "Admin" / "Baseline"

    @property
    def chains(self) -> dict[str, ChainSpec]:
        """Base and policy chains by name."""
        out = {c.name: c for c in self.base_chains}
        out.update(self.policy_chains)
        return out

    def rule_count(self) -> int:
        """Rules in all our chains plus the FORWARD jump."""
        return 1 + sum(len(c.rules) for c in self.base_chains) + sum(len(c.rules) for c in self.policy_chains.values())

    def entry_count(self) -> int:
        """Members over all sets."""
        return sum(len(s.members) for s in self.sets.values())


@dataclass(frozen=True)
class SetRef:
    """A set rules refer to: kernel name, meaning, type, and where its members come from.

    ``recipe`` is one of ``("ns", ns)``, ``("podlabel", k, v)``, ``("podkey", k)``,
    ``("named", name, PROTO)`` (tables of the cluster index), ``("podin", k, v, ...)`` (the
    pods whose label ``k`` has one of the values),
    ``("nslist", requirement)``, ``("all",)`` (list sets), ``("static", member, ...)`` or
    ``("isolated", direction)``, ``("nodes", node selector)`` (addresses of Node objects).
    Policy renderings hold references only, so they do not depend on pods or namespaces.
    ``tag`` names a copy of a set under its own name (same members) that ClusterNetworkPolicy
    rules use where a member change has the opposite effect (npm/dataplane/translate_cnp.py);
    the sets a tagged list holds carry the same tag.
    """

    name: str
    meaning: str
    kind: str
    recipe: tuple[Any, ...]
    tag: str = ""


def set_ref(meaning: str, kind: str, *recipe: Any) -> SetRef:
    return SetRef(names.set_name(meaning), meaning, kind, recipe)


def namespace_ref(ns: str) -> SetRef:
    return set_ref(f"ns:{ns}", HASH_IP, "ns", ns)


def pod_label_ref(key: str, value: str) -> SetRef:
    return set_ref(f"podlabel:{key}={value}", HASH_IP, "podlabel", key, value)


def namespace_list_ref(meaning: str, requirement: Requirement) -> SetRef:
    return set_ref(meaning, LIST_SET, "nslist", requirement)


def tagged(ref: SetRef, tag: str) -> SetRef:
    """``ref``'s copy for ``tag`` (``ref`` itself for no tag): same members, its own name."""
    if not tag or ref.tag == tag:
        return ref
    meaning = f"{ref.meaning} ({tag} copy)"
    return SetRef(names.set_name(meaning), meaning, ref.kind, ref.recipe, tag)


ALL_NAMESPACES = set_ref("all-namespaces", LIST_SET, "all")
LIST_RECIPES_OF_NAMESPACES = ("nslist", "all")



@dataclass(frozen=True, eq=False)
class PolicyRendering:
    """A policy's chains and namespace-chain jumps per direction, its index marker, and the
    sets its rules use. Depends on the policy and the marks only."""

    policy: NetworkPolicy
    marks: Marks
    parts: tuple[tuple[Direction, ChainSpec | None, RuleSpec | None], ...]
    marker: RuleSpec
    sets: tuple[SetRef, ...]
    unenforceable: tuple[tuple[str, str], ...]

    # Derived once per rendering: a translation after one policy changed reuses the others'.
    @cached_property
    def set_names(self) -> frozenset[str]:
        """The names of the sets its rules use."""
        return frozenset(ref.name for ref in self.sets)

    @cached_property
    def chain_meanings(self) -> tuple[str, ...]:
        """Per part, what its chain stands for (for the name registry)."""
        key = self.policy.key
        return tuple(f"{direction.word} chain of {key}" for direction, _chain, _jump in self.parts)


@dataclass(frozen=True)
class LineOwner:
    """What one line of a restore payload belongs to: a rule, chain or set, and its policy."""

    what: str
    policy: str | None = None

    def __str__(self) -> str:
        return self.what + (f" (policy {self.policy})" if self.policy else "")


@dataclass(frozen=True)
class Failure:
    """One thing the kernel refused or a kernel tool could not do, located as precisely as it said."""

    restore: str  # the operation: "ipset", "ipset-after", "iptables-nft", "ipset save", ...
    message: str  # the tool's own words
    exit_code: int | None = None
    line: int | None = None  # 1-based line of the payload the tool named
    line_text: str = ""
    owner: LineOwner | None = None
    failed_closed: str | None = None  # the policy applied without its allow rules because of it

    @property
    def policy(self) -> str | None:
        """The policy the refused line belongs to, if any."""
        return self.owner.policy if self.owner is not None else None

    @property
    def iptables(self) -> bool:
        return self.restore.startswith("iptables")

    def at(self, line: int, lines: list[str], owner: LineOwner | None) -> Failure:
        """This failure located at 1-based ``line`` of a payload of ``lines``, owned by ``owner``:
        what every restore payload's ``locate`` does once it has read the line from the message."""
        text = lines[line - 1] if 0 < line <= len(lines) else ""
        return replace(self, line=line, line_text=text, owner=owner)

    def __str__(self) -> str:
        code = f" (exit {self.exit_code})" if self.exit_code is not None else ""
        if self.line is None:
            text = f"{self.restore} failed{code}: {self.message}"
        else:
            owner = f" [{self.owner}]" if self.owner is not None else ""
            shown = f" ({self.line_text[:200]})" if self.line_text else ""
            text = f"{self.restore} rejected line {self.line}{owner}: {self.message}{shown}"
        if self.failed_closed and self.failed_closed.startswith(names.CNP_KEY_PREFIX):
            text += (f" -> ClusterNetworkPolicy {self.failed_closed[len(names.CNP_KEY_PREFIX):]} applied in its "
                     "fail-closed form (Accept rules match nothing, its first Deny or Pass rule denies all)")
        elif self.failed_closed:
            text += f" -> policy {self.failed_closed} applied without its allow rules (fails closed)"
        return text

    def to_json(self) -> dict[str, object]:
        return {
            "restore": self.restore,
            "message": self.message,
            "exit_code": self.exit_code,
            "line": self.line,
            "line_text": self.line_text,
            "owner": self.owner.what if self.owner is not None else None,
            "policy": self.policy,
            "failed_closed": self.failed_closed,
        }
