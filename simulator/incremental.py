"""Re-evaluate a cluster after policy changes, touching only the namespaces they live in.

A NetworkPolicy only decides ingress into pods of its own namespace and egress out of them.
So after adding, editing or deleting policies of namespace N, the class x class verdict
matrix changes at most in N's columns (ingress) and N's rows (egress). The
:class:`IncrementalSimulator` keeps the ingress and egress matrices of a base
:class:`simulator.engine.Simulator` per port and recomputes only those slices, reusing the
engine's own per-namespace evaluation (``Simulator.with_policies`` derives the changed
engine, ``Simulator.ingress``/``egress`` with ``namespaces`` evaluate only the touched
namespaces), so the two cannot drift apart; the tests compare them with a fresh Simulator.

Limits: the class table (equivalence classes of pods) is kept, so changes to pods, nodes or
namespace labels, and policies that add an ipBlock range no existing policy uses (it could
split classes), need a full rebuild: :func:`with_policies` raises
:class:`simulator.engine.NeedsRebuild` and :func:`evaluate_change` falls back to a fresh
Simulator.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from kube.model import Cluster, NetworkPolicy, PortSpec
from simulator.classes import ClassTable
from simulator.engine import NeedsRebuild, Simulator


@dataclass(frozen=True)
class Update:
    """What an incremental update touched, for reporting and benchmarks."""

    namespaces: tuple[str, ...]
    classes: int  # classes whose rows/columns were recomputed
    seconds: float
    mode: str  # "incremental" or "full"


class IncrementalSimulator:
    """A Simulator state whose class matrices can be updated per namespace.

    Exposes ``cluster``, ``classes`` and ``class_matrix(spec)`` like the engine, which is
    what :func:`simulator.whatif.diff_states` needs, plus ``blocks(spec, cols)`` (the
    columns and rows of ``cols``) and ``touched`` (the classes a change recomputed), so that
    a diff after an incremental change compares only those slices. A derived state keeps
    only its recomputed slices and builds full matrices from its parent on first use.
    """

    def __init__(
        self,
        sim: Simulator,
        *,
        parent: IncrementalSimulator | None = None,
        touched: np.ndarray | None = None,
        overrides: dict[PortSpec, tuple[np.ndarray, ...]] | None = None,
    ) -> None:
        self.sim = sim
        self.cluster: Cluster = sim.cluster
        self.classes: ClassTable = sim.classes
        self.parent = parent
        self.touched = touched
        # spec -> (ingress cols [C,k], egress rows [k,C], combined cols [C,k], combined rows [k,C])
        self._overrides = overrides or {}
        self._parts: dict[PortSpec, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def _get(self, spec: PortSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ingress, egress, combined) bool [C, C] for ``spec``."""
        got = self._parts.get(spec)
        if got is not None:
            return got
        over = self._overrides.get(spec)
        if over is not None and self.parent is not None:
            ing, eg, both = (a.copy() for a in self.parent._get(spec))
            cols = self.touched
            ing[:, cols], eg[cols, :] = over[0], over[1]
            both[:, cols], both[cols, :] = over[2], over[3]
        else:
            ing, eg = self.sim.ingress(spec), self.sim.egress(spec)
            both = ing & eg
        for a in (ing, eg, both):
            a.flags.writeable = False
        got = self._parts[spec] = (ing, eg, both)
        return got

    def prepare(self, ports: Sequence[PortSpec]) -> None:
        """Evaluate ``ports`` now (the base cost, paid once before any change)."""
        for spec in ports:
            self._get(spec)

    def class_matrix(self, spec: PortSpec) -> np.ndarray:
        """bool [C, C]: egress & ingress between classes (as ``Simulator.class_matrix``)."""
        return self._get(spec)[2]

    def blocks(self, spec: PortSpec, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(combined[:, cols], combined[cols, :]) without building the full matrix if possible."""
        over = self._overrides.get(spec)
        if over is not None and spec not in self._parts and cols is self.touched:
            return over[2], over[3]
        both = self._get(spec)[2]
        return both[:, cols], both[cols, :]

    def with_policies(
        self, changes: Mapping[str, NetworkPolicy | None], ports: Sequence[PortSpec] | None = None
    ) -> tuple[IncrementalSimulator, Update]:
        """A new state with policies set (``key -> policy``) or deleted (``key -> None``).

        ``ports`` (default: every port already evaluated on this state) are carried over
        incrementally; others are evaluated on demand in the new state. Raises NeedsRebuild
        when classes could split.
        """
        started = time.perf_counter()
        sim = self.sim.with_policies(changes)
        touched = sorted({k.split("/", 1)[0] for k in changes})
        cols = sim.namespace_classes(touched)
        overrides: dict[PortSpec, tuple[np.ndarray, ...]] = {}
        if ports is None:
            ports = list(self._parts) + [s for s in self._overrides if s not in self._parts]
        for spec in ports:
            # Only the touched namespaces' policies are evaluated: ingress into their classes
            # (columns) and egress out of them (rows); the rest comes from this state.
            ing_c, eg_r = sim.ingress(spec, touched), sim.egress(spec, touched)
            ing, eg, _ = self._get(spec)
            eg_c = eg[:, cols]
            eg_c[cols, :] = eg_r[:, cols]
            ing_r = ing[cols, :]
            ing_r[:, cols] = ing_c[cols, :]
            overrides[spec] = (ing_c, eg_r, ing_c & eg_c, ing_r & eg_r)
        state = IncrementalSimulator(sim, parent=self, touched=cols, overrides=overrides)
        return state, Update(tuple(touched), len(cols), time.perf_counter() - started, "incremental")


def policy_delta(before: Cluster, after: Cluster) -> dict[str, NetworkPolicy | None] | None:
    """``key -> new policy or None`` when only policies differ between the states, else None."""
    if (before.pods, before.namespaces, before.nodes) != (after.pods, after.namespaces, after.nodes):
        return None
    b, a = before.policy_by_key, after.policy_by_key
    out: dict[str, NetworkPolicy | None] = {k: None for k in b if k not in a}
    out.update({k: p for k, p in a.items() if b.get(k) != p})
    return out


def evaluate_change(
    before: Cluster, after: Cluster, ports: Sequence[PortSpec], *, base: Simulator | None = None
) -> tuple[IncrementalSimulator, IncrementalSimulator, Update]:
    """Before and after states for a diff: incremental when only policies changed, else full."""
    start = IncrementalSimulator(base if base is not None else Simulator(before))
    start.prepare(ports)
    delta = policy_delta(before, after)
    if delta is not None:
        try:
            return (start, *start.with_policies(delta))
        except NeedsRebuild:
            pass
    started = time.perf_counter()
    end = IncrementalSimulator(Simulator(after))
    end.prepare(ports)
    namespaces = tuple(sorted({n.name for n in after.namespaces}))
    return start, end, Update(namespaces, end.classes.count, time.perf_counter() - started, "full")


__all__ = ["IncrementalSimulator", "Update", "evaluate_change", "policy_delta"]
