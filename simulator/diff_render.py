"""Render a :class:`simulator.whatif.Diff` for people: grouped by workload, ports folded.

A *workload* is a pod's namespace plus its labels without the pod-specific ones that
controllers add (``pod-template-hash``, ``controller-revision-hash``, ...); a pod whose
remaining labels are empty is named by its name with the controller suffix stripped
(``web-7d4b9c-x2x5z`` -> ``web-*``). Changes between the same source and destination
workloads with the same attribution form one group; its ports are folded into ranges.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kube.model import Cluster, Pod
from simulator.whatif import Change, Diff

POD_SPECIFIC_LABELS = frozenset(
    {
        "pod-template-hash",
        "controller-revision-hash",
        "pod-template-generation",
        "statefulset.kubernetes.io/pod-name",
        "apps.kubernetes.io/pod-index",
        "controller-uid",
        "batch.kubernetes.io/controller-uid",
        "job-name",
        "batch.kubernetes.io/job-name",
        "batch.kubernetes.io/job-completion-index",
    }
)
_SUFFIXES = (re.compile(r"-[a-z0-9]{5}$"), re.compile(r"-[a-f0-9]{6,10}$"), re.compile(r"-\d+$"))
MARKDOWN_GROUP_LIMIT = 50


def name_prefix(name: str) -> str:
    """``web-7d4b9c5f6-x2x5z`` -> ``web``: strip a ReplicaSet/StatefulSet/Job suffix."""
    out = name
    for pattern in _SUFFIXES:
        stripped = pattern.sub("", out)
        if stripped and stripped != out:
            out = stripped
    return out


def workload(pod: Pod) -> str:
    """The pod's workload: ``ns/name[Kind]`` where its controllers say (or it stands for one),
    else ``ns/app=web,tier=fe`` (labels minus pod-specific ones), else ``ns/web-*``."""
    if pod.workload:
        return pod.workload
    labels = {k: v for k, v in pod.labels.items() if k not in POD_SPECIFIC_LABELS}
    if labels:
        return f"{pod.namespace}/" + ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return f"{pod.namespace}/{name_prefix(pod.name)}-*"


def fold_ports(ports: Iterable[tuple[str, int]]) -> str:
    """``{(TCP,80),(TCP,81),(TCP,82),(UDP,53)}`` -> ``80-82/TCP, 53/UDP``."""
    by_proto: dict[str, list[int]] = {}
    for proto, number in sorted(set(ports)):
        by_proto.setdefault(proto, []).append(number)
    parts = []
    for proto, numbers in by_proto.items():
        start = prev = numbers[0]
        for n in [*numbers[1:], None]:
            if n is not None and n == prev + 1:
                prev = n
                continue
            parts.append(f"{start}/{proto}" if start == prev else f"{start}-{prev}/{proto}")
            if n is not None:
                start = prev = n
    return ", ".join(parts)


@dataclass(frozen=True)
class Group:
    """Changes between two workloads with one attribution."""

    kind: str  # "gained" or "lost"
    src: str
    dst: str
    ports: str
    sources: int  # distinct source pods
    destinations: int  # distinct destination pods
    connections: int
    because: tuple[str, ...]


def group_changes(kind: str, changes: Sequence[Change], before: Cluster, after: Cluster) -> list[Group]:
    """Group ``changes`` by (source workload, destination workload, because)."""
    pods = {**before.pod_by_key, **after.pod_by_key}

    def wl(key: str) -> str:
        pod = pods.get(key)
        return workload(pod) if pod else key

    acc: dict[tuple[str, str, tuple[str, ...]], tuple[set[str], set[str], set[tuple[str, int]], set[str], list[int]]]
    acc = {}
    for c in changes:
        # Object notes naming single pods would split groups per pod; rules and namespaces do not.
        because = tuple(b for b in c.because if not b.startswith("pod "))
        entry = acc.setdefault((wl(c.src), wl(c.dst), because), (set(), set(), set(), set(), [0]))
        entry[0].add(c.src)
        entry[1].add(c.dst)
        entry[2].add((c.protocol, c.port))
        entry[3].update(b for b in c.because if b.startswith("pod "))
        entry[4][0] += 1
    out = []
    for (src, dst, because), (srcs, dsts, ports, notes, count) in acc.items():
        out.append(Group(kind, src, dst, fold_ports(ports), len(srcs), len(dsts), count[0], (*because, *sorted(notes))))
    out.sort(key=lambda g: (-g.connections, g.src, g.dst))
    return out


def policy_lines(diff: Diff) -> list[str]:
    """``+ x/new``, ``~ x/edited``, ``- x/old`` lines for the policy changes."""
    pc = diff.policies
    return [f"+ {k}" for k in pc.added] + [f"~ {k}" for k in pc.edited] + [f"- {k}" for k in pc.deleted]


def render_json(diff: Diff) -> str:
    """The JSON document: exactly ``{"gained": [...], "lost": [...]}``."""
    return json.dumps(diff.to_json(), indent=2) + "\n"


def to_text(diff: Diff) -> str:
    """Grouped plain text: a header, policy changes, then one line per group."""
    lines = [
        f"{len(diff.gained)} connection(s) gained, {len(diff.lost)} lost "
        f"(ports: {fold_ports((p.protocol, p.port) for p in diff.ports)})"
    ]
    pl = policy_lines(diff)
    if pl:
        lines.append("policies: " + ", ".join(pl))
    for kind, changes, mark in (("gained", diff.gained, "+"), ("lost", diff.lost, "-")):
        groups = group_changes(kind, changes, diff.before, diff.after)
        if groups:
            lines.append(f"{kind}:")
        for g in groups:
            lines.append(
                f"  {mark} {g.src} -> {g.dst} on {g.ports}: {g.connections} connection(s) "
                f"({g.sources} source pod(s), {g.destinations} destination pod(s))"
            )
            if g.because:
                lines.append(f"      because: {'; '.join(g.because)}")
    return "\n".join(lines) + "\n"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(diff: Diff, *, limit: int = MARKDOWN_GROUP_LIMIT) -> str:
    """A pull-request comment: summary line, policy changes, one table row per group."""
    head = f"### NetworkPolicy diff: **+{len(diff.gained)}** gained, **-{len(diff.lost)}** lost connections"
    lines = [head, ""]
    if not diff.gained and not diff.lost:
        lines.append("No connection changes.")
    pl = policy_lines(diff)
    if pl:
        lines.append("Policies: " + ", ".join(f"`{p}`" for p in pl))
        lines.append("")
    groups = group_changes("gained", diff.gained, diff.before, diff.after) + group_changes(
        "lost", diff.lost, diff.before, diff.after
    )
    if groups:
        lines += ["| | from | to | ports | pods | because |", "|---|---|---|---|---|---|"]
        for g in groups[:limit]:
            mark = "**+**" if g.kind == "gained" else "**-**"
            because = "<br>".join(f"`{_md(b)}`" for b in g.because) or "-"
            lines.append(
                f"| {mark} | `{_md(g.src)}` | `{_md(g.dst)}` | {g.ports} | "
                f"{g.sources} → {g.destinations} ({g.connections}) | {because} |"
            )
        if len(groups) > limit:
            lines.append("")
            lines.append(f"… and {len(groups) - limit} more group(s); `-o json` lists every connection.")
    return "\n".join(lines) + "\n"


__all__ = ["Group", "fold_ports", "group_changes", "name_prefix", "render_json", "to_markdown", "to_text", "workload"]
