"""Naming endpoints as people do: a pod, a workload, a namespace; and folding a workload's pods
into one endpoint where policy cannot tell them apart.

A name is ``ns/pod``, a workload ``ns/name[Kind]`` (its running pods, or the stand-in of a
workload with none), ``ns/*`` (every pod of a namespace) or ``*``; glob patterns (``shop/web-*``)
match pod and workload names. An unknown name gets "did you mean" suggestions.

Folding (``--by workload``): the pods of one workload become one endpoint when every verdict
to and from them is the same: the same equivalence class (so the same verdicts with every
other pod and address), the same declared ports, and, where node traffic can tell pods apart
(a hostNetwork pod is in the cluster, or nodes are endpoints), the same node. A pod that
differs (a canary relabelled by hand) stays an endpoint of its own, and a note says so.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase

from kube.model import Cluster, Pod
from simulator.engine import Simulator, declared_ports


class UnknownName(ValueError):
    """A name that matches no endpoint; the message suggests close ones."""


def pods_named(cluster: Cluster, text: str) -> list[Pod]:
    """The pods ``text`` names (see the module docstring); UnknownName if none."""
    text = text.strip()
    if text in cluster.pod_by_key:
        return [cluster.pod_by_key[text]]
    if text == "*":
        found = list(cluster.pods)
    elif text.endswith("/*") and not any(c in text[:-2] for c in "*?["):
        found = [p for p in cluster.pods if p.namespace == text[:-2]]
    else:
        found = [p for p in cluster.pods if p.workload == text]
        if not found and any(c in text for c in "*?["):
            found = [p for p in cluster.pods
                     if fnmatchcase(p.key, text) or (p.workload and fnmatchcase(p.workload, text))]
    if not found:
        raise UnknownName(f"{text!r} names no pod, workload or namespace{suggest(cluster, text)}")
    return found


def suggest(cluster: Cluster, text: str) -> str:
    """`` (did you mean a, b?)`` with the closest endpoint names, or ""."""
    names = [p.key for p in cluster.pods if not p.stand_in] + sorted({p.workload for p in cluster.pods if p.workload})
    names += sorted({f"{p.namespace}/*" for p in cluster.pods})
    close = difflib.get_close_matches(text, names, n=3, cutoff=0.5)
    return f" (did you mean {', '.join(close)}?)" if close else ""


@dataclass(frozen=True)
class Folded:
    """One endpoint of a folded view: a name and the pods it stands for (positions in
    ``cluster.pods``; the first is the one whose verdicts are shown)."""

    name: str
    members: tuple[int, ...]


def fold_by_workload(sim: Simulator, pods: Iterable[int] | None = None, nodes_shown: bool = False,
                     ) -> tuple[list[Folded], list[str]]:
    """The endpoints of ``pods`` (positions; default all) with each workload's pods folded
    where policy cannot tell them apart, and notes naming the pods that differ."""
    cluster, t = sim.cluster, sim.classes
    node_matters = nodes_shown or bool(t.pod_hostnet.any())
    positions = range(len(cluster.pods)) if pods is None else pods
    groups: dict[str, dict[tuple, list[int]]] = {}
    order: list[str] = []
    for i in positions:
        pod = cluster.pods[i]
        name = pod.workload or pod.key
        if name not in groups:
            groups[name] = {}
            order.append(name)
        groups[name].setdefault(_alike(sim, i, node_matters), []).append(i)
    out: list[Folded] = []
    notes: list[str] = []
    for name in order:
        parts = sorted(groups[name].values(), key=lambda members: (-len(members), members[0]))
        out.append(Folded(name, tuple(parts[0])))
        if len(parts) > 1:
            odd = [cluster.pods[i] for part in parts[1:] for i in part]
            total = sum(len(p) for p in parts)
            notes.append(f"{name}: {len(odd)} of its {total} pods {'is' if len(odd) == 1 else 'are'} treated "
                         f"differently by policy and shown on {'its' if len(odd) == 1 else 'their'} own: "
                         f"{_describe(odd, cluster.pods[parts[0][0]])}")
            out += [Folded(cluster.pods[i].key, (i,)) for part in parts[1:] for i in part]
    return out, notes


def _alike(sim: Simulator, i: int, node_matters: bool) -> tuple[int, frozenset, str]:
    """What two pods must share for every verdict to and from them to be the same."""
    pod = sim.cluster.pods[i]
    return (int(sim.classes.pod_class[i]), frozenset(declared_ports(pod)), pod.node if node_matters else "")


def _describe(odd: Sequence[Pod], usual: Pod) -> str:
    shown = []
    for pod in odd[:5]:
        extra = {k: v for k, v in pod.labels.items() if usual.labels.get(k) != v}
        missing = sorted(k for k in usual.labels if k not in pod.labels)
        how = ", ".join([f"{k}={v}" for k, v in sorted(extra.items())] + [f"no {k}" for k in missing])
        shown.append(f"{pod.key} ({how})" if how else pod.key)
    more = f" and {len(odd) - 5} more" if len(odd) > 5 else ""
    return ", ".join(shown) + more


def one_endpoint(sim: Simulator, text: str) -> tuple[Pod, str]:
    """The pod that stands for ``text`` when one endpoint is wanted (``explain``, ``exposure
    --from``) and the name to show: a pod, or a workload or namespace whose pods policy treats
    alike. ValueError when they differ, naming the pods to choose from."""
    cluster = sim.cluster
    found = pods_named(cluster, text)
    if len(found) == 1:
        pod = found[0]
        return pod, pod.workload if pod.stand_in else pod.key
    node_matters = bool(sim.classes.pod_hostnet.any())
    if len({_alike(sim, sim.classes.pod_index[p.key], node_matters) for p in found}) == 1:
        return found[0], text
    keys = ", ".join(p.key for p in found[:6]) + (" ..." if len(found) > 6 else "")
    raise ValueError(f"{text!r} names {len(found)} pods that policy treats differently ({keys}): name one of them")


__all__ = ["Folded", "UnknownName", "fold_by_workload", "one_endpoint", "pods_named", "suggest"]
