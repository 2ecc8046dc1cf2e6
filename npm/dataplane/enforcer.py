"""The Linux dataplane: converge the kernel's ipsets and iptables to a Cluster, safely.

Each change runs at most three restores, in an order where nothing opens that must stay
closed:

1. ``ipset restore``: create and fill new sets (hash sets before the list sets that contain
   them), and make the member changes that cannot open anything under the rules in the
   kernel now (see ``_opening_verbs``);
2. ``iptables-restore --noflush -w``: one ``*filter`` transaction that declares the new
   rule generation (new, content-named chains for new or changed policies), rewrites the
   base chains whose content changed (switching the jumps), fixes the FORWARD jump, and
   flushes and deletes the chains no longer used. The kernel commits it atomically;
3. ``ipset restore``: the remaining member changes (those that open something, now under
   the new rules), then destroy sets no rule references any more.

Without a rule change, 1 and 3 are one restore (closing changes first).

The Enforcer remembers what it applied; a new Enforcer (a restart) reads the kernel first,
so it converges from whatever is there without flushing. ``reconcile`` always re-reads
the kernel (``iptables-save``, ``ipset save``) and repairs drift.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from difflib import SequenceMatcher
from functools import lru_cache

from kube.model import Cluster
from npm.backoff import Backoff
from npm.dataplane import backend as backends
from npm.dataplane import names, nft
from npm.dataplane.index import ClusterIndex
from npm.dataplane.ipset import IpsetPayload, SavedSet
from npm.dataplane.ipset import parse_save as parse_ipset_save
from npm.dataplane.iptables import Fingerprint, Payload, SavedRule, SavedTable, parse_save, spec_fingerprint
from npm.dataplane.iptables import quote as _q
from npm.dataplane.kernel import Completed, Runner
from npm.dataplane.translate import translate
from npm.dataplane.translate_cnp import closed_form, is_cnp_key, opening_verbs
from npm.dataplane.translate_cnp import counts as cnp_counts
from npm.dataplane.types import (
    DEFAULT_EGRESS_MARK,
    DEFAULT_INGRESS_MARK,
    DEFAULT_PASS_MARK,
    LIST_SET,
    ChainSpec,
    DesiredState,
    Failure,
    LineOwner,
    Marks,
    RuleSpec,
    SetSpec,
)

log = logging.getLogger("npm.dataplane.enforcer")
DATAPLANES = ("iptables", "nftables")


@dataclass(frozen=True)
class DataplaneConfig:
    """How the dataplane talks to the kernel.

    ``kind``: the dataplane, ``iptables`` (ipsets and iptables rules, this module) or
    ``nftables`` (one nftables table, ``npm.dataplane.nft_enforcer``).
    ``backend``: the iptables backend, ``auto`` (detect as kube-proxy does), ``nft`` or ``legacy``.
    Marks: single bits, defaulting to 0x2000/0x1000 (clear of kube-proxy's 0x4000 masquerade
    and 0x8000 drop bits); ``pass_mark`` (0x800) marks a ClusterNetworkPolicy Pass while a tier
    chain is walked. A failed restore is retried ``retry_attempts`` times with
    exponential backoff from ``retry_initial_delay`` up to ``retry_max_delay`` seconds.
    """

    kind: str = "iptables"
    backend: str = "auto"
    ingress_mark: int = DEFAULT_INGRESS_MARK
    egress_mark: int = DEFAULT_EGRESS_MARK
    pass_mark: int = DEFAULT_PASS_MARK
    retry_attempts: int = 5
    retry_initial_delay: float = 0.05
    retry_max_delay: float = 2.0
    lock_wait_seconds: int = 5
    forward_position: int = 1

    def __post_init__(self) -> None:
        if self.kind not in DATAPLANES:
            raise ValueError(f"kind (the dataplane) must be {' or '.join(DATAPLANES)}, not {self.kind!r}")
        if self.backend not in ("auto", *backends.BACKENDS):
            raise ValueError(f"backend must be auto, nft or legacy, not {self.backend!r}")
        self.marks  # noqa: B018 (validates the mark bits: raises ValueError)
        if self.retry_attempts < 1 or self.forward_position < 1 or self.lock_wait_seconds < 0:
            raise ValueError("retry_attempts and forward_position must be >= 1, lock_wait_seconds >= 0")

    @property
    def marks(self) -> Marks:
        return Marks(self.ingress_mark, self.egress_mark, self.pass_mark)


@dataclass
class ApplyResult:
    """What one apply/reconcile did."""

    changed: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    latencies: list[tuple[str, float]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    unenforceable: list[tuple[str, str]] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    backend: str = ""

    @property
    def ok(self) -> bool:
        return not self.failures

    def text(self) -> str:
        """A human report: what changed, counts, failures."""
        lines = list(self.summary) or ["no change"]
        c = self.counts
        if "nft_rules" in c:
            lines.append(
                f"in kernel (nftables): {c.get('policies', 0)} policies, {c['nft_rules']} rules, "
                f"{c.get('nft_sets', 0)} sets and maps, {c.get('nft_set_elements', 0)} elements"
            )
        else:
            lines.append(
                f"in kernel ({self.backend}): {c.get('policies', 0)} policies, "
                f"{c.get('iptables_rules', 0)} iptables rules, "
                f"{c.get('ipsets', 0)} ipsets, {c.get('ipset_entries', 0)} set entries"
            )
        lines += [f"unenforceable (fails closed): {k}: {why}" for k, why in self.unenforceable]
        if c.get("cluster_policies_admin") or c.get("cluster_policies_baseline"):  # ClusterNetworkPolicy
            lines.append(
                f"cluster network policies: {c['cluster_policies_admin']} Admin "
                f"({c['cluster_policy_rules_admin']} iptables rules), {c['cluster_policies_baseline']} Baseline "
                f"({c['cluster_policy_rules_baseline']} iptables rules)"
            )
        lines += [f"FAILED: {f}" for f in self.failures]
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        return {
            "changed": self.changed,
            "backend": self.backend,
            "counts": self.counts,
            "latencies": [{"restore": k, "seconds": round(s, 6)} for k, s in self.latencies],
            "failures": [str(f) for f in self.failures],
            "failure_details": [f.to_json() for f in self.failures],
            "unenforceable": [{"policy": k, "reason": r} for k, r in self.unenforceable],
            "summary": self.summary,
        }


class ApplyError(Exception):
    """A restore failed after all retries; ``failure`` says which, where and why."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(str(failure))
        self.failure = failure


@dataclass
class _Kernel:
    """Our objects as they are (or as we last left them) in the kernel."""

    sets: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    chains: dict[str, tuple[Fingerprint, ...]] = field(default_factory=dict)
    forward: list[SavedRule] = field(default_factory=list)  # our jumps in FORWARD
    forward_ok: bool = False  # exactly one jump, at the configured position
    policies: dict[str, tuple[str, ...]] = field(default_factory=dict)


@lru_cache(maxsize=1 << 16)
def _rule_fingerprint(rule: RuleSpec) -> Fingerprint:
    return spec_fingerprint(rule)


class Enforcer:
    """Keeps one node's kernel in line with the NetworkPolicies of a Cluster."""

    def __init__(self, node_name: str, *, config: DataplaneConfig | None = None, runner: Runner | None = None) -> None:
        self.node_name = node_name
        self.config = config or DataplaneConfig()
        self.runner = runner or Runner()
        self._backend: str | None = None
        self._backend_why = ""
        self._kernel: _Kernel | None = None  # None: unknown, read the kernel before changing it
        self._desired: DesiredState | None = None
        self._other_checked = False
        self._index: ClusterIndex | None = None  # translation cache, brought up to date by translate
        self._fps: dict[str, tuple[ChainSpec, tuple[Fingerprint, ...]]] = {}  # by chain name
        self._backoff = Backoff(self.config.retry_initial_delay, self.config.retry_max_delay, jitter=False)

    # ---- public API ---------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The iptables backend in use (detected on first use)."""
        if self._backend is None:
            self._backend, self._backend_why = backends.detect(self.runner, self.config.backend)
        return self._backend

    def apply(self, cluster: Cluster) -> ApplyResult:
        """Make the kernel hold exactly what ``cluster`` asks for (incremental)."""
        if self._index is None:
            self._index = ClusterIndex(cluster)
        desired = translate(cluster, self.config.marks, self._index)
        self._desired = desired
        return self._converge(desired, reread=self._kernel is None)

    @property
    def desired(self) -> DesiredState | None:
        """What the last apply asked the kernel to hold (None before the first)."""
        return self._desired

    def apply_desired(self, desired: DesiredState) -> ApplyResult:
        """Make the kernel hold exactly ``desired`` (already translated), reading it first."""
        self._desired = desired
        return self._converge(desired, reread=True)

    def reconcile(self) -> ApplyResult:
        """Re-read the kernel and repair any drift from the last applied Cluster."""
        if self._desired is None:
            return ApplyResult(summary=["nothing applied yet"], backend=self.backend)
        return self._converge(self._desired, reread=True)

    def installed(self) -> bool:
        """Whether any chain (in either backend) or ipset of ours is in the kernel."""
        for be in backends.BACKENDS:
            if not backends.has_table(self.runner, be, "filter"):
                continue
            res = self.runner.run([backends.Tools(be).save, "-t", "filter"])
            table = parse_save(res.stdout).get("filter") if res.ok else None
            if table is not None and any(names.is_ours_chain(c) for c in table.chains):
                return True
        res = self.runner.run(["ipset", "list", "-n"])
        return res.ok and any(names.is_ours_set(n) for n in res.stdout.split())

    def cleanup(self) -> None:
        """Remove every chain, rule and set we created (in both backends) and nothing else.

        A set that a rule of someone else's still uses cannot be destroyed: every other set
        is removed, then the error names the set and the rules that hold it.
        """
        for be in backends.BACKENDS:
            self._remove_rules(be)
        sets = self._read_sets()
        held = self._foreign_references(set(sets))
        # A held list keeps its members alive too.
        pinned = set(held) | {m for n in held if sets[n][0] == LIST_SET for m in sets[n][1]}
        payload = IpsetPayload()
        ordered = sorted((n for n in sets if n not in pinned), key=lambda n: sets[n][0] != LIST_SET)  # lists first
        for name in ordered:
            payload.flush(name, name)
        for name in ordered:
            payload.destroy(name, name)
        if payload.lines:
            self._restore_ipset(payload, "ipset-cleanup", ApplyResult())
        self._kernel = None
        if held:
            users = "; ".join(f"{name} is used by {', '.join(rules[:3])}" for name, rules in sorted(held.items()))
            raise ApplyError(Failure(
                "cleanup", f"{len(held)} set(s) left in place because rules we did not make use them: {users}. "
                "Remove those rules, then run cleanup again"))

    def _foreign_references(self, ours: set[str]) -> dict[str, list[str]]:
        """Our sets that rules outside our chains match, with those rules (any table, both backends)."""
        held: dict[str, list[str]] = {}
        for be in backends.BACKENDS:
            tools = backends.Tools(be)
            tables = backends.legacy_tables(self.runner) if be == "legacy" else {None}
            for table_name in tables:
                argv = [tools.save] + (["-t", table_name] if table_name else [])
                res = self.runner.run(argv)
                if not res.ok:
                    continue
                for table in parse_save(res.stdout).values():
                    for chain, rules in table.chains.items():
                        if names.is_ours_chain(chain):
                            continue
                        for rule in rules:
                            for _negated, name, _dirs in rule.set_matches():
                                if name in ours:
                                    where = f"'-A {chain} {' '.join(rule.tokens)}' (iptables-{be} {table.name})"
                                    held.setdefault(name, []).append(where)
        return held

    # ---- kernel reading -----------------------------------------------------------------
    def saved_state(self) -> tuple[SavedTable | None, dict[str, SavedSet]]:
        """The kernel as it is: the filter table of our backend and every ipset (ours or not)."""
        table = parse_save(self._save(self.backend)).get("filter")
        sets = parse_ipset_save(self._retry(["ipset", "save"], None, "ipset save").stdout)
        return table, sets

    def _save(self, be: str) -> str:
        res = self._retry([backends.Tools(be).save, "-t", "filter"], None, f"iptables-{be}-save")
        return res.stdout

    def _read_sets(self) -> dict[str, tuple[str, frozenset[str]]]:
        res = self._retry(["ipset", "save"], None, "ipset save")
        return {
            n: (s.kind, frozenset(s.members)) for n, s in parse_ipset_save(res.stdout).items() if names.is_ours_set(n)
        }

    def _read_kernel(self) -> _Kernel:
        table = parse_save(self._save(self.backend)).get("filter")
        k = _Kernel(sets=self._read_sets())
        if table is not None:
            for name, rules in table.chains.items():
                if names.is_ours_chain(name):
                    k.chains[name] = tuple(r.fingerprint() for r in rules)
            forward = table.chains.get("FORWARD", [])
            k.forward = [r for r in forward if r.target == names.CHAIN_MAIN]
            pos = self.config.forward_position - 1
            k.forward_ok = len(k.forward) == 1 and len(forward) > pos and forward[pos] is k.forward[0]
            k.policies = _policies_in(table)
        return k

    def _remove_rules(self, be: str) -> bool:
        """Delete our FORWARD jumps and chains from backend ``be``; True if any existed."""
        tools = backends.Tools(be)
        if not backends.has_table(self.runner, be, "filter"):
            return False
        res = self.runner.run([tools.save, "-t", "filter"])
        if not res.ok:
            return False
        table = parse_save(res.stdout).get("filter")
        if table is None:
            return False
        ours = [c for c in table.chains if names.is_ours_chain(c)]
        jumps = [
            r for rules in table.chains.values() for r in rules if r.target in ours and not names.is_ours_chain(r.chain)
        ]
        if not ours and not jumps:
            return False
        payload = Payload()
        for r in jumps:
            payload.add(" ".join(["-D", r.chain, *(_q(t) for t in r.tokens)]))
        for c in ours:
            payload.add(f"-F {c}")
        for c in ours:
            payload.add(f"-X {c}")
        self._restore_iptables(payload, ApplyResult(), be, f"iptables-{be}-cleanup")
        return True

    # ---- converge -----------------------------------------------------------------------
    def _converge(self, desired: DesiredState, *, reread: bool) -> ApplyResult:
        result = ApplyResult()
        current_sets: set[str] | None = None  # our sets in the kernel before this attempt
        for attempt in range(2):
            result = ApplyResult(backend=self.backend, unenforceable=list(desired.unenforceable))
            try:
                if reread or self._kernel is None:
                    self._kernel = self._read_kernel()
                current = self._kernel
                current_sets = set(current.sets)
                self._describe_policies(desired, current, result)
                wanted, after, rules = self._sets_before_rules(desired, current, current_sets, result)
                applied = self._phase_rules(wanted, current, rules, result)
                # Only now that our rules are in force here, drop any copy in the other backend
                # (switching backends must not leave a gap); its references to our sets go too.
                self._remove_other_backend(result)
                self._destroy_stale(applied, current, after, result)
                if after.lines:
                    self._restore_ipset(after, "ipset-after", result)
            except ApplyError as exc:
                self._kernel = None  # unknown now: read the kernel before the next change
                self._drop_unreferenced_new_sets(current_sets)
                if attempt == 0 and not reread:
                    reread = True  # our memory may be stale (someone changed the kernel): read and retry
                    continue
                result.failures.append(exc.failure)
            else:
                chains = {c.name: self._fingerprints(c) for c in applied.chains.values()}
                self._fps = {name: self._fps[name] for name in chains}
                self._kernel = _Kernel(
                    sets={n: (s.kind, s.members) for n, s in applied.sets.items()},
                    chains=chains,
                    forward_ok=True,
                    policies=dict(applied.chains_of_policy),
                )
            break
        result.counts = {
            "policies": desired.policies,
            "iptables_rules": desired.rule_count(),
            "ipsets": len(desired.sets),
            "ipset_entries": desired.entry_count(),
            **cnp_counts(desired),
        }
        return result

    def _sets_before_rules(
        self, desired: DesiredState, current: _Kernel, current_sets: set[str], result: ApplyResult
    ) -> tuple[DesiredState, IpsetPayload, tuple[Payload | None, str]]:
        """Make the set changes that go before the rules; the state to apply, the payload of
        set changes for after the rules, and the rules payload.

        A set the kernel refuses to create or fill (a kernel limit, a name taken by a set of
        another type) fails closed the policies whose rules use it: they keep isolating their
        pods without their allow rules, the set and its half-made siblings are removed, and
        the others are applied. A set no single policy owns fails the whole change.
        """
        summary = len(result.summary)
        while True:
            del result.summary[summary:]
            before, after = self._sets_payloads(desired, current, result)
            rules = self._rules_payload(desired, current)
            if rules[0] is None:
                before.extend(after)  # no rule change: one restore, closing changes first
                after = IpsetPayload()
            try:
                if before.lines:
                    self._restore_ipset(before, "ipset", result)
                return desired, after, rules
            except ApplyError as exc:
                words = exc.failure.line_text.split()
                name = words[1] if len(words) > 1 and words[0] in ("create", "add") else ""
                owners = sorted(p for p, sets in desired.sets_of_policy.items() if name in sets)
                if not owners:
                    raise
                self._drop_unreferenced_new_sets(current_sets)
                for policy in owners:
                    desired = _without_sets_of(_fail_closed(desired, policy), policy)
                    result.failures.append(replace(exc.failure, failed_closed=policy))

    def _drop_unreferenced_new_sets(self, before: set[str] | None) -> None:
        """After a failed change, destroy the sets it created that no rule references.

        A restore that stops half-way (too many sets, a kernel limit, a tool that died)
        leaves the sets it had created so far; no rule uses them, so they open nothing, but
        left alone they pile up on every retry.
        """
        if before is None:
            return
        try:
            sets = self._read_sets()
            table = parse_save(self._save(self.backend)).get("filter")
        except ApplyError:
            return
        used = {
            name
            for rules in (table.chains.values() if table is not None else ())
            for rule in rules
            for _negated, name, _dirs in rule.fingerprint()[2]
        }
        candidates = {n for n in sets if n not in before and n not in used}
        pinned = {m for n, (kind, members) in sets.items() if kind == LIST_SET and n not in candidates for m in members}
        gone = sorted(candidates - pinned, key=lambda n: sets[n][0] != LIST_SET)  # lists before their members
        if not gone:
            return
        payload = IpsetPayload()
        for name in gone:
            payload.flush(name, name)
        for name in gone:
            payload.destroy(name, name)
        try:
            self._restore_ipset(payload, "ipset-rollback", ApplyResult())
        except ApplyError as exc:
            log.warning("could not remove %d set(s) left by a failed change: %s", len(gone), exc)

    def _remove_other_backend(self, result: ApplyResult) -> None:
        if self._other_checked:
            return
        other = backends.other(self.backend)
        if self._remove_rules(other):
            result.summary.append(f"removed our rules from iptables-{other}")
            result.changed = True
        if nft.has_table(self.runner):  # the nftables dataplane's table (switching dataplanes)
            res = nft.delete_table(self.runner)
            if not res.ok:
                raise ApplyError(Failure("nft-cleanup", res.stderr.strip()[:500], res.rc))
            result.summary.append("removed the nftables dataplane's table")
            result.changed = True
        self._other_checked = True

    def _describe_policies(self, desired: DesiredState, current: _Kernel, result: ApplyResult) -> None:
        old, new = current.policies, desired.chains_of_policy
        added = sorted(set(new) - set(old))
        removed = sorted(set(old) - set(new))
        # As sets: read back from the kernel, a policy's chains come in the order iptables-save lists them.
        updated = sorted(k for k in set(new) & set(old) if set(new[k]) != set(old[k]))
        for word, keys in (("added", added), ("updated", updated), ("removed", removed)):
            if keys:
                shown = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
                result.summary.append(f"policies {word}: {shown}")

    def _fingerprints(self, chain: ChainSpec) -> tuple[Fingerprint, ...]:
        """The fingerprints of a chain's rules, computed once per chain object."""
        found = self._fps.get(chain.name)
        if found is None or found[0] is not chain:
            found = self._fps[chain.name] = (chain, tuple(_rule_fingerprint(r) for r in chain.rules))
        return found[1]

    def _sets_payloads(
        self, desired: DesiredState, current: _Kernel, result: ApplyResult
    ) -> tuple[IpsetPayload, IpsetPayload]:
        """Set changes to make before the rules change, and after it (see ``_opening_verbs``)."""
        before, after = IpsetPayload(), IpsetPayload()
        created = updated = plus = minus = 0
        changes: list[tuple[SetSpec, str, frozenset[str]]] = []
        # Hash sets first: list:set members must exist before they are added.
        for spec in sorted(desired.sets.values(), key=lambda s: s.kind == LIST_SET):
            have = current.sets.get(spec.name)
            want = spec.members  # translate already emits members as ipset save prints them
            if have is None or have[0] != spec.kind:
                # Not in the kernel, so no rule there uses it: filling it opens nothing.
                before.create(spec)
                before.members(spec, "add", want)
                created += 1
                plus += len(want)
                continue
            if have[1] is want or have[1] == want:
                continue
            add, delete = want - have[1], have[1] - want
            updated += 1
            plus += len(add)
            minus += len(delete)
            changes += [(spec, "del", delete), (spec, "add", add)]
        if changes:
            opening = _opening_verbs(current)
            later: list[tuple[SetSpec, str, frozenset[str]]] = []
            for spec, verb, members in changes:
                if verb in opening.get(spec.name, ()):
                    later.append((spec, verb, members))
                else:
                    before.members(spec, verb, members)
            # The new rules mostly use sets as the old ones did: removals close, so they go first.
            for spec, verb, members in sorted(later, key=lambda c: c[1] != "del"):
                after.members(spec, verb, members)
        if created or updated:
            result.changed = True
            result.summary.append(f"ipsets: {created} created, {updated} updated (+{plus}/-{minus} entries)")
        return before, after

    def _phase_rules(
        self, desired: DesiredState, current: _Kernel, rules: tuple[Payload | None, str], result: ApplyResult
    ) -> DesiredState:
        """Write the new generation (``rules``: its payload) and switch to it; drop a policy's
        allows if the kernel refuses them."""
        excluded: set[str] = set()
        for _ in range(max(1, len(desired.chains_of_policy) + 1)):
            payload, stats = rules
            if payload is None:
                return desired
            try:
                self._restore_iptables(payload, result, self.backend, f"iptables-{self.backend}")
            except _LineRejected as exc:
                policy = exc.failure.policy
                if policy is None or policy in excluded:
                    raise ApplyError(exc.failure) from None
                excluded.add(policy)
                result.failures.append(replace(exc.failure, failed_closed=policy))
                desired = _fail_closed(desired, policy)
                rules = self._rules_payload(desired, current)
                continue
            result.changed = True
            result.summary.append(stats)
            return desired
        raise ApplyError(Failure(f"iptables-{self.backend}", "iptables-restore kept rejecting rules"))

    def _rules_payload(self, desired: DesiredState, current: _Kernel) -> tuple[Payload | None, str]:
        chains = desired.chains
        wanted = {c.name: self._fingerprints(c) for c in chains.values()}
        changed = [c for c in chains.values() if current.chains.get(c.name) != wanted[c.name]]
        stale = sorted(n for n in current.chains if n not in chains)
        fix_forward = not current.forward_ok
        if not changed and not stale and not fix_forward:
            return None, ""
        payload = Payload()
        # Policy chains are named after their content: a new name is a new generation, written
        # whole. Base and namespace chains exist already: edit them in place (fewer lines,
        # same atomicity) unless most of a chain changed.
        whole: list[ChainSpec] = []
        edits: list[tuple[ChainSpec, list[tuple[str, int, int, int, int]]]] = []
        for c in changed:
            have = current.chains.get(c.name)
            if have is None or c.policy is not None:
                whole.append(c)
                continue
            ops = [
                op for op in SequenceMatcher(a=have, b=wanted[c.name], autojunk=False).get_opcodes() if op[0] != "equal"
            ]
            touched = sum(max(i2 - i1, j2 - j1) for _, i1, i2, j1, j2 in ops)
            if touched * 2 > len(c.rules) + len(have):
                whole.append(c)
            else:
                edits.append((c, ops))
        for c in whole:
            payload.declare(c.name)
        for c in sorted(whole, key=lambda c: c.policy is None):  # new generation before the jumps to it
            for rule in c.rules:
                payload.rule(rule)
        for c, ops in edits:
            for _, i1, i2, j1, j2 in reversed(ops):  # from the end, so earlier positions stay valid
                for _ in range(i2 - i1):
                    payload.add(f"-D {c.name} {i1 + 1}", LineOwner(f"chain {c.name} (old rule {i1 + 1})"))
                for k, rule in enumerate(c.rules[j1:j2]):
                    payload.rule(rule, "-I", i1 + 1 + k)
        if fix_forward:
            for saved in current.forward:
                line = " ".join(["-D", "FORWARD", *(_q(t) for t in saved.tokens)])
                payload.add(line, LineOwner("FORWARD jump (old)"))
            payload.rule(desired.forward_jump, "-I", self.config.forward_position)
        for name in stale:
            payload.add(f"-F {name}", LineOwner(f"chain {name} (stale)"))
        for name in stale:
            payload.add(f"-X {name}", LineOwner(f"chain {name} (stale)"))
        new_policy = sum(1 for c in whole if c.policy is not None)
        parts = [f"chains: {new_policy} policy chains written, {len(stale)} removed"]
        rewritten = sorted(c.name for c in whole if c.policy is None)
        if rewritten:
            parts.append(f"written whole: {', '.join(rewritten)}")
        if edits:
            parts.append(f"edited in place: {', '.join(sorted(c.name for c, _ in edits))}")
        if fix_forward:
            parts.append(
                f"FORWARD jump {'moved' if current.forward else 'inserted'} at position {self.config.forward_position}"
            )
        return payload, "; ".join(parts)

    def _destroy_stale(
        self, desired: DesiredState, current: _Kernel, payload: IpsetPayload, result: ApplyResult
    ) -> None:
        """Add flush and destroy lines for the sets no rule references any more."""
        stale = [n for n in current.sets if n not in desired.sets]
        if not stale:
            return
        stale.sort(key=lambda n: current.sets[n][0] != LIST_SET)  # lists before their members
        for name in stale:
            payload.flush(name, name)
        for name in stale:
            payload.destroy(name, name)
        result.changed = True
        result.summary.append(f"ipsets: {len(stale)} destroyed")

    # ---- running restores ---------------------------------------------------------------
    def _retry(self, argv: list[str], stdin: str | None, what: str) -> Completed:
        res: Completed | None = None
        for attempt in range(self.config.retry_attempts):
            res = self.runner.run(argv, stdin)
            if res.ok:
                return res
            if attempt + 1 < self.config.retry_attempts:
                time.sleep(self._backoff.delay(attempt))
        assert res is not None
        raise ApplyError(Failure(what, res.stderr.strip()[:500], res.rc))

    def _restore_ipset(self, payload: IpsetPayload, what: str, result: ApplyResult) -> None:
        # -exist makes every line idempotent, so a retry after a partial run is safe.
        try:
            res = self._retry(["ipset", "restore", "-exist"], payload.text(), what)
        except ApplyError as exc:
            raise ApplyError(payload.locate(exc.failure)) from None
        result.latencies.append((what, res.seconds))

    def _restore_iptables(self, payload: Payload, result: ApplyResult, be: str, what: str) -> None:
        argv = [backends.Tools(be).restore, "--noflush", "-w", str(self.config.lock_wait_seconds)]
        res: Completed | None = None
        for attempt in range(self.config.retry_attempts):
            res = self.runner.run(argv, payload.text())
            if res.ok:
                result.latencies.append((what, res.seconds))
                return
            failure = payload.locate(Failure(what, res.stderr.strip()[:300], res.rc))
            last = attempt + 1 == self.config.retry_attempts
            if failure.line is not None and "lock" not in res.stderr.lower() and (failure.policy is not None or last):
                raise _LineRejected(failure)
            if attempt + 1 < self.config.retry_attempts:
                time.sleep(self._backoff.delay(attempt))
        assert res is not None
        raise ApplyError(Failure(what, res.stderr.strip()[:500], res.rc))


class _LineRejected(ApplyError):
    """The kernel refused one line of a rules payload (``failure.policy``: whose)."""


def _without_allows(desired: DesiredState, policy: str) -> DesiredState:
    """``desired`` with ``policy``'s allow chains removed but its isolation (drops) kept."""
    gone = set(desired.chains_of_policy.get(policy, ()))
    base = tuple(
        replace(c, rules=tuple(r for r in c.rules if not (r.policy == policy and _target(r) in gone)))
        for c in desired.base_chains
    )
    chains: Mapping[str, ChainSpec] = {n: c for n, c in desired.policy_chains.items() if n not in gone}
    of = dict(desired.chains_of_policy)
    of[policy] = ()
    return replace(desired, base_chains=base, policy_chains=chains, chains_of_policy=of)


def _fail_closed(desired: DesiredState, policy: str) -> DesiredState:
    """``desired`` with ``policy`` in its fail-closed form (a ClusterNetworkPolicy: see ``closed_form``)."""
    return closed_form(desired, policy) if is_cnp_key(policy) else _without_allows(desired, policy)


def _without_sets_of(desired: DesiredState, policy: str) -> DesiredState:
    """``desired`` without the sets only ``policy``'s (removed) allow rules used, and their index rules."""
    others = set().union(*(v for k, v in desired.sets_of_policy.items() if k != policy))
    used = {
        name
        for chain in desired.chains.values()
        if chain.name != names.CHAIN_SETS
        for rule in chain.rules
        for _negated, name, _dirs in spec_fingerprint(rule)[2]
    } | others
    lists = [s for n, s in desired.sets.items() if n in used and s.kind == LIST_SET]
    used |= {m for s in lists for m in s.members}
    sets = {n: s for n, s in desired.sets.items() if n in used}

    def indexed(rule: RuleSpec) -> bool:
        return all(name in sets for _negated, name, _dirs in spec_fingerprint(rule)[2])

    base = tuple(
        replace(c, rules=tuple(filter(indexed, c.rules))) if c.name == names.CHAIN_SETS else c
        for c in desired.base_chains
    )
    of = dict(desired.sets_of_policy)
    of[policy] = frozenset()
    return replace(desired, sets=sets, base_chains=base, sets_of_policy=of)


def _opening_verbs(kernel: _Kernel) -> dict[str, set[str]]:
    """Per set, the member changes (``add``, ``del``) that can open traffic under the rules in
    ``kernel``: every NetworkPolicy rule that matches a set (except the never-traversed index
    chain) leads towards an allow (a policy chain, an allow chain, a namespace chain ending in
    DROP, or the RETURN of a destination nobody isolates), so adding to a set it matches opens,
    and removing from a set it matches negated (``!``) opens; a ClusterNetworkPolicy rule may
    lead to a DROP instead, or either way (``translate_cnp.opening_verbs``). A set a list set
    holds inherits the list's uses.

    Making only the other changes while the old rules are in force, and these after the new
    rules are, keeps closed what is closed both before and after, as long as each set is used
    the same way (only positively or only negated) by the old and the new rules.
    """
    out: dict[str, set[str]] = {}
    for chain, fingerprints in kernel.chains.items():
        if chain == names.CHAIN_SETS:
            continue
        for _comment, target, matches in fingerprints:
            for negated, name, _dirs in matches:
                out.setdefault(name, set()).update(opening_verbs(target, negated))
    for name, (kind, members) in kernel.sets.items():
        if kind == LIST_SET and name in out:
            for member in members:
                out.setdefault(member, set()).update(out[name])
    return out


def _policies_in(table: SavedTable) -> dict[str, tuple[str, ...]]:
    """Policy key -> its chains, read back from the AZURE-NPM-POLICIES markers and the
    comments of the namespace (and ClusterNetworkPolicy tier) chains' jumps."""
    out: dict[str, tuple[str, ...]] = {}
    for rule in table.chains.get(names.CHAIN_POLICIES, []):
        if rule.comment.startswith("policy "):
            out.setdefault(rule.comment.split(" ")[1], ())
    for chain, rules in table.chains.items():
        dispatches = chain.startswith((names.INGRESS_NS_PREFIX, names.EGRESS_NS_PREFIX))
        if not dispatches and chain not in names.CNP_TIER_CHAINS:
            continue
        for rule in rules:
            for direction in ("ingress", "egress"):
                suffix = f" {direction} rules"
                if rule.comment.endswith(suffix):
                    key = rule.comment[: -len(suffix)]
                    out[key] = (*out.get(key, ()), rule.target)
    return out


def _target(rule: RuleSpec) -> str:
    args = rule.args
    return args[args.index("-j") + 1] if "-j" in args else ""


__all__ = ["ApplyError", "ApplyResult", "DataplaneConfig", "Enforcer", "SetSpec"]
