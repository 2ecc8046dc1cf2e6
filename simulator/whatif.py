"""Connections gained and lost between two cluster states, each attributed to its causes.

``diff_states(before, after, ports)`` compares two evaluated states (a
:class:`simulator.engine.Simulator` or an :class:`simulator.incremental.IncrementalSimulator`:
anything with ``cluster``, ``classes`` and ``class_matrix(spec)``). Pods are matched by
``namespace/name``. For pods present in both states the comparison runs over *joint*
classes (pairs of before-class and after-class), so a cluster of thousands of pods costs a
matrix comparison of a few hundred rows; only changed class pairs are expanded to pods.

Pods present in one state only: every allowed connection from or to a pod that exists only
after counts as gained, every allowed connection of a pod that exists only before as lost.
Self pairs (a pod reaching itself) are never reported.

Attribution (``because``) is a list of strings with this fixed grammar:

- ``"<ns>/<policy> ingress[<i>]"`` / ``"<ns>/<policy> egress[<i>]"``: the rule that allows
  the connection after the change (gained) or that allowed it before (lost);
- ``"cnp/<name> ingress[<i>] Accept"`` (``egress``; the rule's name in parentheses before the
  action when it has one): a ClusterNetworkPolicy rule that accepts the connection on the
  allowed side; ``"... Pass"``: one it passed on the allowed side; ``"... Deny"``: one that
  denies it on the denied side (``"... Deny (fail closed)"`` for a rule with a peer this
  implementation does not understand). Every such entry starts with ``cnp/<name>``;
- ``"<ns>/<policy> isolates ingress"`` / ``"... isolates egress"``: a policy that selects the
  pod for that direction without allowing the connection: after the change for a lost
  connection (it now isolates), before the change for a gained one (it no longer does), when
  no rule is named on the allowed side and no ClusterNetworkPolicy denies it;
- ``"pod <ns>/<name> added|deleted|relabelled"``, ``"namespace <name> relabelled"``: object
  changes on either end that the connection depends on.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from kube.model import EGRESS, INGRESS, Cluster, ClusterNetworkPolicy, NetworkPolicy, Pod, PortSpec
from simulator import semantics
from simulator.classes import ClassTable, declaring
from simulator.outside import OutsideEndpoint
from simulator.tiers import cnp_key


class State(Protocol):
    """What a diff needs from an evaluated cluster."""

    cluster: Cluster
    classes: ClassTable

    def class_matrix(self, spec: PortSpec) -> np.ndarray: ...

    def block(self, spec: PortSpec, rows: np.ndarray | slice, cols: np.ndarray | slice) -> np.ndarray: ...


@dataclass(frozen=True)
class Change:
    """One gained or lost connection with the reasons for it."""

    src: str
    dst: str
    port: int
    protocol: str
    because: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        """``{"src", "dst", "port", "protocol", "because": [...]}``."""
        return {**asdict(self), "because": list(self.because)}


@dataclass(frozen=True)
class PolicyChanges:
    """Policy keys added, deleted and edited between two states (ClusterNetworkPolicies as
    ``cnp/NAME``)."""

    added: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    edited: tuple[str, ...] = ()

    def status(self, key: str) -> str:
        """``added``, ``deleted``, ``edited`` or ``unchanged``."""
        for name in ("added", "deleted", "edited"):
            if key in getattr(self, name):
                return name
        return "unchanged"


@dataclass(frozen=True)
class Diff:
    """Gained and lost connections between ``before`` and ``after`` on ``ports``."""

    gained: tuple[Change, ...]
    lost: tuple[Change, ...]
    ports: tuple[PortSpec, ...]
    before: Cluster
    after: Cluster
    policies: PolicyChanges = field(default_factory=PolicyChanges)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Exactly ``{"gained": [...], "lost": [...]}`` (see the module docstring)."""
        return {"gained": [c.to_json() for c in self.gained], "lost": [c.to_json() for c in self.lost]}

    def failed(self, fail_on: str | None) -> bool:
        """Whether ``--fail-on gained|lost|any`` is triggered."""
        if fail_on == "gained":
            return bool(self.gained)
        if fail_on == "lost":
            return bool(self.lost)
        if fail_on == "any":
            return bool(self.gained or self.lost)
        return False


def policy_changes(before: Cluster, after: Cluster) -> PolicyChanges:
    """Which policies were added, deleted or edited (spec or types changed): NetworkPolicies,
    then ClusterNetworkPolicies (``cnp/NAME``)."""
    out = []
    for b, a, same in (
        (before.policy_by_key, after.policy_by_key, _same_policy),
        ({cnp_key(k): p for k, p in before.cluster_policy_by_name.items()},
         {cnp_key(k): p for k, p in after.cluster_policy_by_name.items()}, _same_cluster_policy),
    ):
        edited = [k for k in a if k in b and not same(a[k], b[k])]
        out.append((sorted(set(a) - set(b)), sorted(set(b) - set(a)), sorted(edited)))
    return PolicyChanges(*(tuple(nps + cnps) for nps, cnps in zip(*out, strict=True)))


def _same_policy(x: NetworkPolicy, y: NetworkPolicy) -> bool:
    fields = ("pod_selector", "ingress", "egress", "policy_types")
    return all(getattr(x, f) == getattr(y, f) for f in fields)


def _same_cluster_policy(x: ClusterNetworkPolicy, y: ClusterNetworkPolicy) -> bool:
    fields = ("tier", "priority", "subject", "ingress", "egress")
    return all(getattr(x, f) == getattr(y, f) for f in fields)


def _node_local(src: Pod, dst: Pod) -> bool:
    """The exception policy never overrides: a hostNetwork pod reaching pods on its node."""
    return src.host_network and bool(src.node) and src.node == dst.node


class _Attributor:
    """Builds ``because`` lists; rule attribution is cached per class quadruple and port."""

    def __init__(self, before: State, after: State) -> None:
        self.before, self.after = before, after
        self._cache: dict[tuple[int, int, int, int, PortSpec], tuple[str, ...]] = {}
        self.scoped_before, self.scoped_after = NamespaceScoped(before.cluster), NamespaceScoped(after.cluster)
        nb, na = before.cluster, after.cluster
        self.relabelled_pods: set[str] = set()
        self.relabelled_ns: set[str] = set()
        # Node labels matter to ClusterNetworkPolicy nodes peers (a node, or hostNetwork pods on it).
        self.relabelled_nodes = {n.name for n in na.nodes if n.name in nb.node_by_name
                                 and nb.node_by_name[n.name].labels != n.labels}
        self.host_network_node = {p.key: p.node for c in (nb, na) for p in c.pods if p.host_network and p.node}
        if (nb.pods, nb.namespaces) == (na.pods, na.namespaces):
            return
        self.relabelled_pods = {
            k for k, p in na.pod_by_key.items() if k in nb.pod_by_key and nb.pod_by_key[k].labels != p.labels
        }
        names = {n.name for n in na.namespaces} | {n.name for n in nb.namespaces}
        self.relabelled_ns = {n for n in names if nb.namespace_labels(n) != na.namespace_labels(n)}

    def rules(self, gained: bool, cb: tuple[int, int], ca: tuple[int, int], spec: PortSpec) -> tuple[str, ...]:
        key = (cb[0], ca[0], cb[1], ca[1], spec)
        got = self._cache.get(key)
        if got is None:
            tb, ta = self.before.classes, self.after.classes
            got = self._cache[key] = explain_change(
                self.scoped_before,
                (tb.reps[cb[0]], tb.reps[cb[1]]),
                self.scoped_after,
                (ta.reps[ca[0]], ta.reps[ca[1]]),
                spec,
                gained,
            )
        return got

    def objects(self, src: str, dst: str, node: str = "") -> list[str]:
        """Object changes the connection depends on; ``node``: an outside endpoint's node."""
        out = []
        for key in (src, dst):
            if key in self.relabelled_pods:
                out.append(f"pod {key} relabelled")
        for ns in dict.fromkeys(k.split("/", 1)[0] for k in (src, dst)):
            if ns in self.relabelled_ns:
                out.append(f"namespace {ns} relabelled")
        if self.relabelled_nodes:
            nodes = [node] + [self.host_network_node.get(k, "") for k in (src, dst)]
            out += [f"node {n} relabelled" for n in dict.fromkeys(nodes) if n in self.relabelled_nodes]
        return out


class NamespaceScoped:
    """``semantics.evaluate_direction`` with only the subject's namespace's policies.

    A policy only ever selects pods of its own namespace, so the verdict is the same; this
    just avoids scanning every policy of a large cluster for each attribution.
    """

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._scoped: dict[str, Cluster] = {}
        self._by_ns: dict[str, list[NetworkPolicy]] | None = None

    def scoped(self, namespace: str) -> Cluster:
        got = self._scoped.get(namespace)
        if got is None:
            if self._by_ns is None:  # one pass over the policies, not one per namespace
                self._by_ns = {}
                for p in self.cluster.policies:
                    self._by_ns.setdefault(p.namespace, []).append(p)
            got = self._scoped[namespace] = replace(self.cluster, policies=tuple(self._by_ns.get(namespace, ())))
        return got

    def direction(self, src: Pod, dst: Pod, spec: PortSpec, direction: str) -> semantics.DirectionVerdict:
        subject = src if direction == EGRESS else dst
        return semantics.evaluate_direction(self.scoped(subject.namespace), src, dst, spec, direction)


def explain_change(
    before: Cluster | NamespaceScoped,
    pair_before: tuple[Pod, Pod],
    after: Cluster | NamespaceScoped,
    pair_after: tuple[Pod, Pod],
    spec: PortSpec,
    gained: bool,
) -> tuple[str, ...]:
    """The rule/isolation strings for one connection whose verdict flipped.

    For each direction whose verdict flipped: the allowing rule on the allowed side, or the
    isolating policies on the denied side when no rule is involved there.
    """
    before = before if isinstance(before, NamespaceScoped) else NamespaceScoped(before)
    after = after if isinstance(after, NamespaceScoped) else NamespaceScoped(after)
    out: list[str] = []
    for direction in (EGRESS, INGRESS):
        vb = before.direction(*pair_before, spec, direction)
        va = after.direction(*pair_after, spec, direction)
        out += _direction_change(vb, va, gained, direction)
    return tuple(out)


def _direction_change(
    vb: semantics.DirectionVerdict, va: semantics.DirectionVerdict, gained: bool, direction: str
) -> list[str]:
    """What allows it on the allowed side (Pass rules it went through, then the accepting
    ClusterNetworkPolicy or NetworkPolicy rule), then what denies it on the denied side (a
    ClusterNetworkPolicy Deny; else, when nothing was named on the allowed side, the isolating
    policies)."""
    if vb.allowed == va.allowed:
        return []
    allowed_side, denied_side = (va, vb) if gained else (vb, va)
    out = allowing_reasons(allowed_side)
    deny = denied_side.cnp_rule
    if deny is not None:
        out.append(deny.describe())
    elif not out:
        out = [f"{p} isolates {direction.lower()}" for p in denied_side.policies]
    return out


def allowing_reasons(v: semantics.DirectionVerdict) -> list[str]:
    """The Pass rules an allowed direction went through and the rule that allowed it (a
    ClusterNetworkPolicy Accept or a NetworkPolicy rule); nothing when no tier decided."""
    out = [ref.describe() for ref in v.passed]
    if v.cnp_rule is not None:
        out.append(v.cnp_rule.describe())
    elif v.rule is not None:
        out.append(rule_text(v.rule))
    return out


def rule_text(ref: semantics.RuleRef) -> str:
    """``ns/policy ingress[0]`` for a rule reference."""
    return f"{ref.policy} {ref.direction.lower()}[{ref.rule}]"


def _members(joint: np.ndarray, count: int) -> list[np.ndarray]:
    order = np.argsort(joint, kind="stable")
    bounds = np.searchsorted(joint[order], np.arange(count + 1))
    return [order[bounds[i] : bounds[i + 1]] for i in range(count)]


def diff_states(
    before: State,
    after: State,
    ports: Sequence[PortSpec],
    *,
    declared_only: bool = False,
    outside: Sequence[OutsideEndpoint] = (),
    outside_ports: Sequence[PortSpec] = (),
    outside_namespaces: Sequence[str] | None = None,
) -> Diff:
    """Connections gained and lost from ``before`` to ``after`` (see the module docstring).

    With ``declared_only`` a destination is compared only on the ports its containers
    declare (as ``npm-sim reach`` does without ``--port``); otherwise on every port.
    ``outside`` endpoints (nodes, blocks of outside addresses: ``simulator.outside``) are
    compared with every pod both ways, on ``ports`` and ``outside_ports`` (e.g. the ports the
    policies name, which no pod may declare); a block is written as one row per CIDR. With
    ``outside_namespaces`` (the namespaces a change touched) only their pods are compared
    with the outside endpoints: no other pod's verdict towards them can have changed.
    """
    started = time.perf_counter()
    tb, ta = before.classes, after.classes
    pods_b, pods_a = tb.pods, ta.pods
    common = [k for k in (p.key for p in pods_a) if k in tb.pod_index]
    ib = np.array([tb.pod_index[k] for k in common], dtype=np.int64)
    ia = np.array([ta.pod_index[k] for k in common], dtype=np.int64)
    cls_b = tb.pod_class[ib].astype(np.int64) if len(common) else np.zeros(0, dtype=np.int64)
    cls_a = ta.pod_class[ia].astype(np.int64) if len(common) else np.zeros(0, dtype=np.int64)
    uniq, joint = np.unique(cls_b * max(1, ta.count) + cls_a, return_inverse=True)
    jb, ja = uniq // max(1, ta.count), uniq % max(1, ta.count)
    members = _members(joint.reshape(-1), len(uniq))
    attr = _Attributor(before, after)
    gained: list[Change] = []
    lost: list[Change] = []

    same_pods = tb.pods is ta.pods
    added = [] if same_pods else [p for p in pods_a if p.key not in tb.pod_index]
    deleted = [] if same_pods else [p for p in pods_b if p.key not in ta.pod_index]
    # After an incremental change (the after state derived from this one, its classes aligned
    # with these) only pairs involving a touched class or a pod that changed class can flip.
    unstable = None
    if getattr(after, "parent", None) is before and getattr(after, "touched", None) is not None:
        touched = np.zeros(ta.count, dtype=bool)
        touched[after.touched] = True
        unstable = (jb != ja) | touched[ja]
    for spec in ports:
        if declared_only:
            serves = declaring(tb, spec)[jb] | declaring(ta, spec)[ja]
        for is_gain, (xs, ys) in _flips(before, after, spec, jb, ja, unstable):
            out = gained if is_gain else lost
            if declared_only:
                keep = serves[ys]
                xs, ys = xs[keep], ys[keep]
            for x, y in zip(xs.tolist(), ys.tolist(), strict=True):
                rules = attr.rules(is_gain, (int(jb[x]), int(jb[y])), (int(ja[x]), int(ja[y])), spec)
                for s in members[x]:
                    for d in members[y]:
                        if s == d:
                            continue
                        # the per-pod exception of the state where the connection is allowed anyway
                        ps, pd = (pods_b[ib[s]], pods_b[ib[d]]) if is_gain else (pods_a[ia[s]], pods_a[ia[d]])
                        if _node_local(ps, pd):
                            continue
                        because = (*rules, *attr.objects(ps.key, pd.key))
                        out.append(Change(ps.key, pd.key, spec.port, spec.protocol, because))
        gained += _lonely(after, added, spec, "added", declared_only)
        lost += _lonely(before, deleted, spec, "deleted", declared_only)
    if outside:
        scope = _OutsideScope(before, after, (ib, ia, jb, ja, members), attr, outside_namespaces)
        for spec in dict.fromkeys([*ports, *outside_ports]):
            g, lo = scope.changes(spec, outside, added, deleted, declared_only)
            gained += g
            lost += lo

    key = _sort_key
    return Diff(
        tuple(sorted(gained, key=key)),
        tuple(sorted(lost, key=key)),
        tuple(ports),
        before.cluster,
        after.cluster,
        policy_changes(before.cluster, after.cluster),
        time.perf_counter() - started,
    )


def policy_ports(clusters: Sequence[Cluster]) -> list[PortSpec]:
    """The numbered ports the rules of ``clusters`` name (a range by its first port), those of
    ClusterNetworkPolicies too: the ports on which traffic to and from outside addresses can change."""
    found: dict[PortSpec, None] = {}
    for cluster in clusters:
        for policy in cluster.policies:
            for rule in (*policy.ingress, *policy.egress):
                for entry in rule.ports:
                    if isinstance(entry.port, int):
                        found[PortSpec(entry.port, entry.protocol)] = None
        for cnp in cluster.cluster_policies:
            for cnp_rule in (*cnp.ingress, *cnp.egress):
                for e in cnp_rule.ports:
                    if e.protocol is not None and e.port is not None:
                        found[PortSpec(e.port, e.protocol)] = None
    return sorted(found, key=lambda s: (s.protocol, s.port))


def _engine(state: State) -> Any:
    """The Simulator behind a state (an IncrementalSimulator wraps one)."""
    return getattr(state, "sim", state)


def _outside_rows(
    endpoint: OutsideEndpoint, pod: Pod, spec: PortSpec, egress: bool, because: tuple[str, ...]
) -> list[Change]:
    return [
        Change(pod.key, name, spec.port, spec.protocol, because) if egress
        else Change(name, pod.key, spec.port, spec.protocol, because)
        for name in endpoint.names
    ]


class _OutsideScope:
    """The outside part of a diff: pods against nodes and blocks of outside addresses. What
    depends only on the two states (their joint classes, the classes of the namespaces to look
    at) is computed once; what depends on the port, once per port."""

    def __init__(
        self,
        before: State,
        after: State,
        joint: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]],
        attr: _Attributor,
        namespaces: Sequence[str] | None,
    ) -> None:
        self.before, self.after, self.joint, self.attr, self.namespaces = before, after, joint, attr, namespaces
        # Classes looked at: all, or those of the namespaces a change touched.
        self.ids = {id(s): (None if namespaces is None else _engine(s).namespace_classes(namespaces))
                    for s in (before, after)}

    def changes(
        self, spec: PortSpec, endpoints: Sequence[OutsideEndpoint], added: list[Pod], deleted: list[Pod],
        declared_only: bool,
    ) -> tuple[list[Change], list[Change]]:
        """Gained and lost connections with ``endpoints`` on ``spec``."""
        b, a = self.before, self.after
        serves_b = declaring(b.classes, spec) if declared_only else None
        serves_a = declaring(a.classes, spec) if declared_only else None
        gained: list[Change] = []
        lost: list[Change] = []
        for endpoint in endpoints:
            g, lo = self._flips(spec, endpoint, serves_b, serves_a)
            gained += g + _outside_lonely(a, added, spec, endpoint, "added", serves_a)
            lost += lo + _outside_lonely(b, deleted, spec, endpoint, "deleted", serves_b)
        return gained, lost

    def _external(self, state: State, address: str, spec: PortSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ingress from, egress to) ``address`` per class of ``state``, and which classes were
        evaluated (the others are left allowed, and not looked at)."""
        engine, count, ids = _engine(state), state.classes.count, self.ids[id(state)]
        if ids is None:
            ing, eg = engine.external(address, spec)
            return ing, eg, np.ones(count, dtype=bool)
        part_in, part_eg = engine.external(address, spec, self.namespaces)
        ing, eg, looked = np.ones(count, dtype=bool), np.ones(count, dtype=bool), np.zeros(count, dtype=bool)
        ing[ids], eg[ids], looked[ids] = part_in, part_eg, True
        return ing, eg, looked

    def _flips(
        self, spec: PortSpec, endpoint: OutsideEndpoint, serves_b: np.ndarray | None, serves_a: np.ndarray | None
    ) -> tuple[list[Change], list[Change]]:
        """Connections between the pods present in both states and ``endpoint`` that flipped."""
        before, after, attr = self.before, self.after, self.attr
        ib, ia, jb, ja, members = self.joint
        ext = semantics.External(endpoint.address)
        ing_b, eg_b, in_b = self._external(before, endpoint.address, spec)
        ing_a, eg_a, in_a = self._external(after, endpoint.address, spec)
        looked = in_b[jb] | in_a[ja]
        serves = serves_b[jb] | serves_a[ja] if serves_b is not None and serves_a is not None else None
        gained: list[Change] = []
        lost: list[Change] = []
        pods_b, pods_a = before.classes.pods, after.classes.pods
        for egress, vb, va in ((True, eg_b[jb], eg_a[ja]), (False, ing_b[jb], ing_a[ja])):
            direction = EGRESS if egress else INGRESS
            for x in np.flatnonzero((vb != va) & looked).tolist():
                if not egress and serves is not None and not serves[x]:
                    continue  # not a port this pod declares
                is_gain = bool(va[x])
                rep_b, rep_a = before.classes.reps[int(jb[x])], after.classes.reps[int(ja[x])]
                pair_b, pair_a = ((rep_b, ext), (rep_a, ext)) if egress else ((ext, rep_b), (ext, rep_a))
                because = tuple(_direction_change(
                    attr.scoped_before.direction(*pair_b, spec, direction),
                    attr.scoped_after.direction(*pair_a, spec, direction),
                    is_gain,
                    direction,
                ))
                for m in members[x].tolist():
                    pod = pods_b[ib[m]] if is_gain else pods_a[ia[m]]
                    if endpoint.node and pod.node == endpoint.node:
                        continue  # a pod and its own node always reach each other
                    notes = attr.objects(pod.key, pod.key, endpoint.node)
                    rows = _outside_rows(endpoint, pod, spec, egress, (*because, *notes))
                    (gained if is_gain else lost).extend(rows)
        return gained, lost


def _outside_lonely(
    state: State, pods: list[Pod], spec: PortSpec, endpoint: OutsideEndpoint, what: str, serves: np.ndarray | None
) -> list[Change]:
    """The allowed connections between ``endpoint`` and pods present in ``state`` only
    (``serves``: the classes declaring ``spec``, when only declared ports count)."""
    if not pods:
        return []
    t = state.classes
    ing, eg = _engine(state).external(endpoint.address, spec)
    out: list[Change] = []
    for pod in pods:
        c = int(t.pod_class[t.pod_index[pod.key]])
        local = bool(endpoint.node) and pod.node == endpoint.node
        because = (f"pod {pod.key} {what}",)
        if eg[c] or local:
            out += _outside_rows(endpoint, pod, spec, True, because)
        if (ing[c] or local) and (serves is None or serves[c]):
            out += _outside_rows(endpoint, pod, spec, False, because)
    return out


def _flips(
    before: State, after: State, spec: PortSpec, jb: np.ndarray, ja: np.ndarray, unstable: np.ndarray | None
) -> list[tuple[bool, tuple[np.ndarray, np.ndarray]]]:
    """(gained?, (rows, cols)) of joint class pairs whose verdict flipped on ``spec``.

    With ``unstable`` (bool per joint class: the only ones whose rows and columns can
    differ) only those rows and columns are read: O(unstable x joint classes).
    """
    if unstable is None:
        mb = _block(before, spec, jb, jb)
        ma = _block(after, spec, ja, ja)
        return [(True, np.nonzero(ma & ~mb)), (False, np.nonzero(mb & ~ma))]
    xs = np.flatnonzero(unstable)
    rows_b, rows_a = _block(before, spec, jb[xs], jb), _block(after, spec, ja[xs], ja)
    cols_b, cols_a = _block(before, spec, jb, jb[xs]), _block(after, spec, ja, ja[xs])
    stable = ~unstable[:, None]  # pairs of two unstable classes come from the rows only
    out = []
    for is_gain, (new_r, old_r, new_c, old_c) in (
        (True, (rows_a, rows_b, cols_a, cols_b)),
        (False, (rows_b, rows_a, cols_b, cols_a)),
    ):
        x1, y1 = np.nonzero(new_r & ~old_r)
        x2, y2 = np.nonzero(new_c & ~old_c & stable)
        out.append((is_gain, (np.concatenate([xs[x1], x2]), np.concatenate([y1, xs[y2]]))))
    return out


def _block(state: State, spec: PortSpec, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """bool [len(rows), len(cols)] class verdicts, from the factored form when the state has it."""
    if hasattr(state, "block"):
        return state.block(spec, rows, cols)
    return state.class_matrix(spec)[np.ix_(rows, cols)]


def _sort_key(c: Change) -> tuple[str, str, str, int]:
    return (c.src, c.dst, c.protocol, c.port)


def _lonely(state: State, pods: list[Pod], spec: PortSpec, what: str, declared_only: bool = False) -> list[Change]:
    """Every allowed connection from or to ``pods`` (present in ``state`` only)."""
    if not pods:
        return []
    t = state.classes
    all_pods = t.pods
    lonely = {p.key for p in pods}
    out: list[Change] = []
    seen: set[tuple[str, str]] = set()
    cache: dict[tuple[int, int], tuple[str, ...]] = {}
    scoped = NamespaceScoped(state.cluster)

    def rules(cs: int, cd: int) -> tuple[str, ...]:
        got = cache.get((cs, cd))
        if got is None:
            got = cache[(cs, cd)] = _allowing_rules(scoped, t.reps[cs], t.reps[cd], spec)
        return got

    serves = declaring(t, spec)[t.pod_class] if declared_only else np.ones(len(all_pods), dtype=bool)
    # Only the rows and columns of the lonely pods' classes are read.
    mine = np.unique(np.array([t.pod_class[t.pod_index[p.key]] for p in pods], dtype=np.int64))
    at = {int(c): k for k, c in enumerate(mine)}
    rows = _block(state, spec, mine, t.pod_class.astype(np.int64))
    cols = _block(state, spec, t.pod_class.astype(np.int64), mine)
    for pod in pods:
        i = t.pod_index[pod.key]
        c = int(t.pod_class[i])
        row = rows[at[c]] & serves
        col = cols[:, at[c]] & serves[i]
        for j, other in enumerate(all_pods):
            if j == i:
                continue
            for s, d, ok, dst_serves in ((pod, other, row[j], serves[j]), (other, pod, col[j], serves[i])):
                if not dst_serves or not (ok or _node_local(s, d)) or (s.key, d.key) in seen:
                    continue
                seen.add((s.key, d.key))
                why = [f"pod {k} {what}" for k in (s.key, d.key) if k in lonely]
                if not _node_local(s, d):
                    cs, cd = int(t.pod_class[t.pod_index[s.key]]), int(t.pod_class[t.pod_index[d.key]])
                    why[:0] = rules(cs, cd)
                out.append(Change(s.key, d.key, spec.port, spec.protocol, tuple(why)))
    return out


def _allowing_rules(scoped: NamespaceScoped, src: Pod, dst: Pod, spec: PortSpec) -> tuple[str, ...]:
    out = []
    for direction in (EGRESS, INGRESS):
        out += allowing_reasons(scoped.direction(src, dst, spec, direction))
    return tuple(out)


__all__ = ["Change", "Diff", "PolicyChanges", "State", "diff_states", "policy_changes"]
