"""The nftables dataplane: converge our table (``inet azure-npm``) to a Cluster, atomically.

Each change is one ``nft -f`` transaction holding the set, map and rule changes together,
so the kernel goes from the old state to the new one in one step: there is no ordering of
set and rule changes to get right, and no moment more open than both states.

The change is a diff against what our table holds: new sets and chains are added, changed
chains are flushed and refilled, elements are added and deleted, chains and sets no longer
used are removed. What the table holds comes from memory after our own changes, and from
``nft -j list table`` after a restart or on ``reconcile`` (drift repair): a new process
converges from whatever is there without deleting anything first. When the table holds
something the diff cannot edit (a set of another type, a base chain with another hook), the
whole table is replaced, still in one transaction (``add``, ``delete``, then the new table).

A transaction the kernel refuses is located (the line nft names -> the policy whose rule or
set it is); that policy is applied without its allow rules (its pods stay isolated: fail
closed) and the rest goes in. The first successful change also removes what the iptables
dataplane left (chains, jumps, ipsets), after our table is in force: switching dataplanes
never leaves a node without enforcement.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace

from kube.model import Cluster
from npm.backoff import Backoff
from npm.dataplane import nft
from npm.dataplane.enforcer import ApplyError, ApplyResult, DataplaneConfig, Enforcer
from npm.dataplane.kernel import Completed, Runner
from npm.dataplane.nft import Fingerprint, NftPayload, NftTable
from npm.dataplane.nft_translate import CHAIN_POLICIES, NftChain, NftSet, NftState, NftTranslator
from npm.dataplane.types import Failure, LineOwner

log = logging.getLogger("npm.dataplane.nft_enforcer")
DATAPLANE = "nftables"


class _Rejected(ApplyError):
    """nft refused one line of a transaction (``failure``: which, and whose)."""


@dataclass
class _Plan:
    payload: NftPayload | None
    summary: list[str]


class NftEnforcer:
    """Keeps one node's nftables table in line with the NetworkPolicies of a Cluster.

    The same public API as :class:`npm.dataplane.enforcer.Enforcer` (``apply``,
    ``reconcile``, ``cleanup``, ``desired``), so the daemon and the CLI use either.
    """

    def __init__(self, node_name: str, *, config: DataplaneConfig | None = None, runner: Runner | None = None) -> None:
        self.node_name = node_name
        self.config = config or DataplaneConfig(kind=DATAPLANE)
        self.runner = runner or Runner()
        self._translator = NftTranslator()
        self._desired: NftState | None = None
        self._kernel: NftTable | None = None  # None: unknown, read the kernel before changing it
        self._fps: dict[str, tuple[NftChain, tuple[Fingerprint, ...]]] = {}
        self._iptables_checked = False
        self._backoff = Backoff(self.config.retry_initial_delay, self.config.retry_max_delay, jitter=False)

    backend = DATAPLANE

    # ---- public API ---------------------------------------------------------------------
    @property
    def desired(self) -> NftState | None:
        """What the last apply asked the kernel to hold (None before the first)."""
        return self._desired

    def apply(self, cluster: Cluster) -> ApplyResult:
        """Make our table hold exactly what ``cluster`` asks for (incremental, one transaction)."""
        desired = self._translator.translate(cluster)
        self._desired = desired
        result = self._converge(desired, reread=self._kernel is None)
        cnps = cluster.cluster_policies
        if cnps:  # never silently: this dataplane does not translate them
            shown = ", ".join(p.name for p in cnps[:5]) + (f" and {len(cnps) - 5} more" if len(cnps) > 5 else "")
            result.failures.append(Failure(
                DATAPLANE, f"{len(cnps)} ClusterNetworkPolicy object(s) not enforced ({shown}): the nftables "
                "dataplane does not evaluate them yet; the iptables dataplane does"))
        return result

    def reconcile(self) -> ApplyResult:
        """Re-read our table and repair any drift from the last applied Cluster."""
        if self._desired is None:
            return ApplyResult(summary=["nothing applied yet"], backend=DATAPLANE)
        return self._converge(self._desired, reread=True)

    def cleanup(self) -> None:
        """Remove our table, and nothing else."""
        res = nft.delete_table(self.runner)
        self._kernel = None
        if not res.ok:
            raise ApplyError(Failure("nft-cleanup", res.stderr.strip()[:500], res.rc))

    def saved_state(self) -> NftTable | None:
        """Our table as it is in the kernel (None when there is none)."""
        res = nft.list_table(self.runner)
        if not res.ok:
            if "No such file or directory" in res.stderr:
                return None
            raise ApplyError(Failure("nft list", res.stderr.strip()[:500], res.rc))
        return nft.parse_table(res.stdout)

    # ---- converge -----------------------------------------------------------------------
    def _read_kernel(self) -> NftTable:
        return self.saved_state() or NftTable()

    def _converge(self, desired: NftState, *, reread: bool) -> ApplyResult:
        result = ApplyResult(backend=DATAPLANE)
        for attempt in range(2):
            result = ApplyResult(backend=DATAPLANE, unenforceable=list(desired.unenforceable))
            try:
                if reread or self._kernel is None:
                    self._kernel = self._read_kernel()
                current = self._kernel
                _describe_policies(desired, current, result)
                applied = self._write(desired, current, result)
                self._remove_iptables(result)
            except ApplyError as exc:
                self._kernel = None  # unknown now: read the kernel before the next change
                if attempt == 0 and not reread:
                    reread = True  # our memory may be stale (someone changed the table): read and retry
                    continue
                result.failures.append(exc.failure)
            else:
                self._kernel = self._as_table(applied)
            break
        result.counts = {
            "policies": desired.policies,
            "nft_rules": desired.rule_count(),
            "nft_sets": len(desired.sets),
            "nft_set_elements": desired.element_count(),
        }
        return result

    def _write(self, desired: NftState, current: NftTable, result: ApplyResult) -> NftState:
        """Run the change; on a refused line owned by policies, drop their allows and retry."""
        excluded: set[str] = set()
        for _ in range(len(desired.chains_of_policy) + 1):
            plan = self._plan(desired, current)
            if plan.payload is None:
                return desired
            try:
                self._run(plan.payload, result)
            except _Rejected as exc:
                owners = _owners(exc.failure, desired)
                if not owners or owners & excluded:
                    raise ApplyError(exc.failure) from None
                for policy in sorted(owners):
                    excluded.add(policy)
                    result.failures.append(replace(exc.failure, failed_closed=policy))
                    desired = _without_allows(desired, policy)
                continue
            result.changed = True
            result.summary += plan.summary
            return desired
        raise ApplyError(Failure("nft", "nft kept rejecting the transaction"))

    def _run(self, payload: NftPayload, result: ApplyResult) -> None:
        res: Completed | None = None
        for attempt in range(self.config.retry_attempts):
            res = nft.run(self.runner, payload)
            if res.ok:
                result.latencies.append(("nft", res.seconds))
                return
            failure = payload.locate(Failure("nft", res.stderr.strip()[:500], res.rc))
            if failure.line is not None:
                raise _Rejected(failure)  # a refused command: the same payload would fail again
            if attempt + 1 < self.config.retry_attempts:
                time.sleep(self._backoff.delay(attempt))
        assert res is not None
        raise ApplyError(Failure("nft", res.stderr.strip()[:500], res.rc))

    def _fingerprints(self, chain: NftChain) -> tuple[Fingerprint, ...]:
        found = self._fps.get(chain.name)
        if found is None or found[0] is not chain:
            found = self._fps[chain.name] = (chain, tuple(r.fingerprint() for r in chain.rules))
        return found[1]

    def _as_table(self, state: NftState) -> NftTable:
        table = NftTable(
            sets={s.name: (nft.set_type(s), s.elements) for s in state.sets.values()},
            chains={c.name: (nft.chain_hook(c), self._fingerprints(c)) for c in state.chains.values()},
        )
        self._fps = {n: self._fps[n] for n in table.chains}
        return table

    def _plan(self, desired: NftState, current: NftTable) -> _Plan:
        """The transaction taking ``current`` to ``desired`` (payload None: nothing to do)."""
        new_sets = [s for s in desired.sets.values() if s.name not in current.sets]
        retyped = [s.name for s in desired.sets.values() if s.name in current.sets
                   and current.sets[s.name][0] != nft.set_type(s)]
        rehooked = [c.name for c in desired.chains.values() if c.name in current.chains
                    and current.chains[c.name][0] != nft.chain_hook(c)]
        if retyped or rehooked:
            return self._replace_table(desired, f"table replaced ({', '.join(retyped + rehooked)} changed type)")
        wanted = {c.name: (nft.chain_hook(c), self._fingerprints(c)) for c in desired.chains.values()}
        new_chains = [c for c in desired.chains.values() if c.name not in current.chains]
        changed = [c for c in desired.chains.values() if c.name in current.chains
                   and current.chains[c.name] != wanted[c.name]]
        stale_chains = sorted(n for n in current.chains if n not in desired.chains)
        stale_sets = sorted(n for n in current.sets if n not in desired.sets)
        edits: list[tuple[NftSet, frozenset[str], frozenset[str]]] = []
        for s in desired.sets.values():
            have = current.sets.get(s.name)
            if have is not None and have[1] is not s.elements and have[1] != s.elements:
                edits.append((s, have[1] - s.elements, s.elements - have[1]))
        if not (new_sets or new_chains or changed or stale_chains or stale_sets or edits):
            return _Plan(None, [])
        p = NftPayload()
        p.add(f"add table {nft.TABLE_REF}", LineOwner("table"))
        for s in new_sets:
            p.declare_set(s, _set_owner(s, desired))
        for c in new_chains:
            p.declare_chain(c)
        for s in new_sets:
            if not s.is_map:
                p.elements("add", s, s.elements, _set_owner(s, desired))
        for c in changed:
            p.add(f"flush chain {nft.TABLE_REF} {c.name}", LineOwner(f"chain {c.name}", c.policy))
        for c in (*new_chains, *changed):
            for rule in c.rules:
                p.rule(c.name, rule)
        for s in new_sets:
            if s.is_map:
                p.elements("add", s, s.elements, _set_owner(s, desired))
        for s, gone, added in edits:
            p.elements("delete", s, gone, _set_owner(s, desired))
            p.elements("add", s, added, _set_owner(s, desired))
        for name in stale_chains:
            p.add(f"flush chain {nft.TABLE_REF} {name}", LineOwner(f"chain {name} (stale)"))
        for name in stale_chains:
            p.add(f"delete chain {nft.TABLE_REF} {name}", LineOwner(f"chain {name} (stale)"))
        for name in stale_sets:
            kind = "map" if " : " in current.sets[name][0] else "set"
            p.add(f"delete {kind} {nft.TABLE_REF} {name}", LineOwner(f"set {name} (stale)"))
        plus = sum(len(a) for _, _, a in edits) + sum(len(s.elements) for s in new_sets)
        minus = sum(len(g) for _, g, _ in edits)
        summary = [
            f"nft: one transaction: {len(new_sets)} sets created, {len(edits)} updated (+{plus}/-{minus} elements), "
            f"{len(stale_sets)} deleted; {len(new_chains)} chains created, {len(changed)} rewritten, "
            f"{len(stale_chains)} deleted"
        ]
        return _Plan(p, summary)

    def _replace_table(self, desired: NftState, why: str) -> _Plan:
        """The whole table, replacing whatever is there, in one transaction."""
        p = NftPayload()
        p.add(f"add table {nft.TABLE_REF}", LineOwner("table"))
        p.add(f"delete table {nft.TABLE_REF}", LineOwner("table"))
        p.add(f"add table {nft.TABLE_REF}", LineOwner("table"))
        for s in desired.sets.values():
            p.declare_set(s, _set_owner(s, desired))
        for c in desired.chains.values():
            p.declare_chain(c)
        for s in desired.sets.values():
            if not s.is_map:
                p.elements("add", s, s.elements, _set_owner(s, desired))
        for c in desired.chains.values():
            for rule in c.rules:
                p.rule(c.name, rule)
        for s in desired.sets.values():
            if s.is_map:
                p.elements("add", s, s.elements, _set_owner(s, desired))
        return _Plan(p, [f"nft: {why}"])

    def _remove_iptables(self, result: ApplyResult) -> None:
        """Once, after our table is in force: remove the iptables dataplane's chains and sets."""
        if self._iptables_checked:
            return
        self._iptables_checked = True
        old = Enforcer(self.node_name, config=replace(self.config, kind="iptables"), runner=self.runner)
        try:
            if old.installed():
                old.cleanup()
                result.summary.append("removed the iptables dataplane's chains and ipsets")
                result.changed = True
        except ApplyError as exc:
            result.summary.append(f"could not remove the iptables dataplane's leftovers: {exc}")
            log.warning("could not remove the iptables dataplane's leftovers: %s", exc)


def _set_owner(s: NftSet, desired: NftState) -> LineOwner:
    users = sorted(p for p, sets in desired.sets_of_policy.items() if s.name in sets)
    return LineOwner(f"set {s.meaning}", users[0] if len(users) == 1 else None)


def _owners(failure: Failure, desired: NftState) -> set[str]:
    """The policies a refused line belongs to: the rule's policy, or every policy using the set."""
    if failure.policy is not None:
        return {failure.policy}
    words = failure.line_text.split()
    if len(words) > 4 and words[0] == "add" and words[1] in ("set", "element"):
        name = words[4]
        return {p for p, sets in desired.sets_of_policy.items() if name in sets}
    return set()


def _without_allows(desired: NftState, policy: str) -> NftState:
    """``desired`` without ``policy``'s allow chains (its pods stay isolated: their groups end
    in drop) and without the sets only it used."""
    gone = set(desired.chains_of_policy.get(policy, ()))
    chains = {}
    for name, chain in desired.chains.items():
        if name in gone:
            continue
        kept = tuple(r for r in chain.rules if r.verdict.split(" ")[-1] not in gone)
        chains[name] = chain if len(kept) == len(chain.rules) else replace(chain, rules=kept)
    others = set().union(*(v for k, v in desired.sets_of_policy.items() if k != policy))
    only = desired.sets_of_policy.get(policy, frozenset()) - others
    sets = {n: s for n, s in desired.sets.items() if n not in only}
    of = dict(desired.chains_of_policy)
    of[policy] = ()
    sets_of = dict(desired.sets_of_policy)
    sets_of[policy] = frozenset()
    return replace(desired, chains=chains, sets=sets, chains_of_policy=of, sets_of_policy=sets_of)


def _describe_policies(desired: NftState, current: NftTable, result: ApplyResult) -> None:
    old = _policies_in(current)
    new = {k: tuple(sorted(v)) for k, v in desired.chains_of_policy.items()}
    for word, keys in (
        ("added", sorted(set(new) - set(old))),
        ("updated", sorted(k for k in set(new) & set(old) if new[k] != old[k])),
        ("removed", sorted(set(old) - set(new))),
    ):
        if keys:
            shown = ", ".join(keys[:10]) + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")
            result.summary.append(f"policies {word}: {shown}")


def _policies_in(table: NftTable) -> dict[str, tuple[str, ...]]:
    """Policy key -> its chains, read from the ``policies`` markers and the group chains' jumps."""
    out: dict[str, set[str]] = {}
    for comment, _verdict, _sets in table.chains.get(CHAIN_POLICIES, ("", ()))[1]:
        words = comment.split(" ")
        if len(words) >= 2 and words[0] == "policy":
            out.setdefault(words[1], set())
    for name, (_hook, fps) in table.chains.items():
        if name.startswith(("in-grp-", "eg-grp-")):
            for comment, verdict, _sets in fps:
                if verdict.startswith("jump "):
                    out.setdefault(comment.rsplit(" ", 2)[0], set()).add(verdict[5:])
    return {k: tuple(sorted(v)) for k, v in out.items()}
