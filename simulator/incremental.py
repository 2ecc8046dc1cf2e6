"""Re-evaluate a cluster after policy changes, touching only the namespaces they live in.

A NetworkPolicy only decides ingress into pods of its own namespace and egress out of them.
So after adding, editing or deleting policies of namespace N, the class x class verdict
matrix changes at most in N's columns (ingress) and N's rows (egress). The
:class:`IncrementalSimulator` keeps a base :class:`simulator.engine.Simulator` and derives
the changed one with ``Simulator.with_policies``, which re-evaluates only those slices with
the engine's own per-namespace evaluation, so the two cannot drift apart; the tests compare
them with a fresh Simulator.

Limits: the class table (equivalence classes of pods) is kept, so changes to pods, nodes or
namespace labels, and policies that add an ipBlock range no existing policy uses (it could
split classes), need a full rebuild: :func:`with_policies` raises
:class:`simulator.engine.NeedsRebuild` and :func:`evaluate_change` falls back to a fresh
Simulator. A ClusterNetworkPolicy selects subjects and peers in every namespace, so a change
to one, or any change but to NetworkPolicies while there are some, is evaluated in full too
(the ``Update`` says why); NetworkPolicy changes beside unchanged ClusterNetworkPolicies stay
incremental.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kube.model import Cluster, NetworkPolicy, PortSpec
from simulator.classes import CannotAlign, ClassTable, build_classes
from simulator.engine import NeedsRebuild, Simulator


@dataclass(frozen=True)
class Update:
    """What an incremental update touched, for reporting and benchmarks."""

    namespaces: tuple[str, ...]
    classes: int  # classes whose rows/columns were recomputed
    seconds: float
    mode: str  # "incremental", "aligned" or "full"
    reason: str = ""  # why the evaluation was full, when it was

    def describe(self) -> str:
        """The mode, with the reason for a full evaluation: ``full (a ClusterNetworkPolicy changed)``."""
        return f"{self.mode} ({self.reason})" if self.reason else self.mode


class IncrementalSimulator:
    """A Simulator state that can be updated per namespace.

    Exposes ``cluster``, ``classes`` and ``class_matrix(spec)`` like the engine, which is
    what :func:`simulator.whatif.diff_states` needs, plus ``blocks(spec, cols)`` (the
    columns and rows of ``cols``) and ``touched`` (the classes a change recomputed), so that
    a diff after an incremental change compares only those slices. Verdicts are the
    engine's factored ones (``Simulator.verdicts``): a change re-evaluates the sets of the
    touched namespaces' classes, and no class x class matrix is built unless asked for.
    """

    def __init__(
        self, sim: Simulator, *, parent: IncrementalSimulator | None = None, touched: np.ndarray | None = None
    ) -> None:
        self.sim = sim
        self.cluster: Cluster = sim.cluster
        self.classes: ClassTable = sim.classes
        self.parent = parent
        self.touched = touched

    def prepare(self, ports: Sequence[PortSpec]) -> None:
        """Evaluate ``ports`` now (the base cost, paid once before any change)."""
        for spec in ports:
            self.sim.verdicts(spec)

    def class_matrix(self, spec: PortSpec) -> np.ndarray:
        """bool [C, C]: egress & ingress between classes (as ``Simulator.class_matrix``)."""
        return self.sim.class_matrix(spec)

    def block(self, spec: PortSpec, rows: np.ndarray | slice, cols: np.ndarray | slice) -> np.ndarray:
        """bool [len(rows), len(cols)]: class verdicts (as ``Simulator.block``)."""
        return self.sim.block(spec, rows, cols)

    def blocks(self, spec: PortSpec, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(combined[:, cols], combined[cols, :]) without building the full matrix."""
        every = slice(0, self.classes.count)
        return self.sim.block(spec, every, cols), self.sim.block(spec, cols, every)

    def with_policies(
        self, changes: Mapping[str, NetworkPolicy | None], ports: Sequence[PortSpec] | None = None
    ) -> tuple[IncrementalSimulator, Update]:
        """A new state with policies set (``key -> policy``) or deleted (``key -> None``).

        ``ports`` (default: every port already evaluated on this state) are carried over
        incrementally; others are evaluated on demand in the new state. Raises NeedsRebuild
        when classes could split.
        """
        started = time.perf_counter()
        self.prepare(ports or ())
        sim = self.sim.with_policies(changes)  # re-evaluates only the touched namespaces
        touched = sorted({k.split("/", 1)[0] for k in changes})
        cols = sim.namespace_classes(touched)
        state = IncrementalSimulator(sim, parent=self, touched=cols)
        return state, Update(tuple(touched), len(cols), time.perf_counter() - started, "incremental")


def policy_delta(before: Cluster, after: Cluster) -> dict[str, NetworkPolicy | None] | None:
    """``key -> new policy or None`` when only NetworkPolicies differ between the states, else None."""
    if (before.pods, before.namespaces, before.nodes, before.cluster_policies) != (
        after.pods, after.namespaces, after.nodes, after.cluster_policies
    ):
        return None
    b, a = before.policy_by_key, after.policy_by_key
    out: dict[str, NetworkPolicy | None] = {k: None for k in b if k not in a}
    out.update({k: p for k, p in a.items() if b.get(k) != p})
    return out


def evaluate_change(
    before: Cluster, after: Cluster, ports: Sequence[PortSpec], *, base: Simulator | None = None
) -> tuple[IncrementalSimulator, IncrementalSimulator, Update]:
    """Before and after states for a diff.

    Only policies changed: the after state is derived incrementally (only the namespaces of
    the changed policies are re-evaluated). Pods, namespaces or nodes changed too: the after
    state's classes are aligned with the before state's (same ids for the same classes,
    :func:`simulator.classes.build_classes` with ``like``) and it records the classes whose
    verdicts can differ (``touched``: new classes, and the classes of namespaces whose
    labels or policies changed), so that the diff reads only their rows and columns (mode
    ``aligned``). Falls back to two unrelated evaluations (mode ``full``, with the reason)
    when the new policies look at a label key or range the old classes do not separate, or
    ClusterNetworkPolicies changed, or there are some and more than NetworkPolicies changed.
    """
    start = IncrementalSimulator(base if base is not None else Simulator(before))
    start.prepare(ports)
    delta = policy_delta(before, after)
    if delta is not None:
        try:
            return (start, *start.with_policies(delta))
        except NeedsRebuild:
            pass
    started = time.perf_counter()
    try:
        if before.cluster_policies != after.cluster_policies:
            raise CannotAlign("a ClusterNetworkPolicy changed, and its subjects and peers span namespaces")
        if before.cluster_policies:
            raise CannotAlign("more than NetworkPolicies changed beside ClusterNetworkPolicies, which span namespaces")
        table = build_classes(after, like=start.classes)
    except CannotAlign as exc:
        end = IncrementalSimulator(Simulator(after))
        end.prepare(ports)
        namespaces = tuple(sorted({n.name for n in after.namespaces}))
        return start, end, Update(namespaces, end.classes.count, time.perf_counter() - started, "full", str(exc))
    changed = _changed_namespaces(before, after)
    sim = start.sim.with_cluster(after, table, changed)  # re-evaluates the touched classes only
    touched = sim.touched_classes if sim.touched_classes is not None else np.zeros(0, dtype=np.int64)
    end = IncrementalSimulator(sim, parent=start, touched=touched)
    end.prepare(ports)
    return start, end, Update(tuple(changed), len(touched), time.perf_counter() - started, "aligned")


def _changed_namespaces(before: Cluster, after: Cluster) -> list[str]:
    """Namespaces whose labels or policies differ between the two states."""
    names = {n.name for n in before.namespaces} | {n.name for n in after.namespaces}
    out = {n for n in names if before.namespace_labels(n) != after.namespace_labels(n)}
    b, a = before.policy_by_key, after.policy_by_key
    out |= {k.split("/", 1)[0] for k in set(b) | set(a) if b.get(k) != a.get(k)}
    return sorted(out)


__all__ = ["IncrementalSimulator", "Update", "evaluate_change", "policy_delta"]
