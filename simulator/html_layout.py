"""Where things go in the HTML reports: endpoints grouped by namespace, short labels, and the
graph drawn as namespace clusters in a grid (pure: names in, coordinates out).

An endpoint is a pod (``ns/name``), a workload (``ns/name[Kind]``), a node (``node/NAME``) or a
block of outside addresses (a CIDR, or ``CIDR (+N more)``). Pods and workloads are shown under
their namespace; nodes under ``(nodes)`` and address blocks under ``(outside)``: parentheses
cannot occur in a namespace name, so these groups never clash with one.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

NODES = "(nodes)"
OUTSIDE = "(outside)"
LABEL_CHARS = 28  # longest heatmap label; the full name is in the hover title
GRAPH_LABEL_CHARS = 22  # longest graph label: shorter, so that three clusters fit side by side
FIT_WIDTH = 1300  # pixels a figure may take: a 1400-pixel window less the page margins
CHAR_EM = 0.62  # advance of one monospace character in em, rounded up (DejaVu Sans Mono: 0.602)
GRAPH_FONT = 10  # px, graph labels
NODE_RADIUS = 5
_SPACING = 13.0  # px of circumference per node, enough for one radial label's height
_HEADER = 18.0  # px above a cluster's circle for its namespace
_PAD = 8.0


def group_of(name: str, outside: Collection[str]) -> str:
    """The group ``name`` is shown under: the namespace of a pod or workload, ``(nodes)`` for
    a node, ``(outside)`` for a block of outside addresses (``outside`` names the non-pods)."""
    if name in outside:
        return NODES if name.startswith("node/") else OUTSIDE
    return name.split("/", 1)[0]


def _address_key(name: str) -> tuple[int, int, str]:
    try:
        net = ipaddress.ip_network(name.split(" ", 1)[0], strict=False)
    except ValueError:
        return (9, 0, name)
    return (net.version, int(net.network_address), name)


def grouped(names: Iterable[str], outside: Collection[str]) -> list[tuple[str, list[str]]]:
    """``names`` by group: namespaces alphabetically, then nodes, then outside blocks; pods and
    nodes sorted by name within a group, address blocks by address."""
    groups: dict[str, list[str]] = {}
    for name in dict.fromkeys(names):
        groups.setdefault(group_of(name, outside), []).append(name)
    rank = {NODES: 1, OUTSIDE: 2}
    out = []
    for group in sorted(groups, key=lambda g: (rank.get(g, 0), g)):
        members = groups[group]
        out.append((group, sorted(members, key=_address_key) if group == OUTSIDE else sorted(members)))
    return out


def shorten(text: str, limit: int = LABEL_CHARS) -> str:
    """``text`` cut to ``limit`` characters in the middle (``…``): a pod name's start says its
    workload and its end tells replicas apart, so both are kept."""
    if len(text) <= limit:
        return text
    head = (limit - 1) * 3 // 5
    return text[:head] + "…" + text[len(text) - (limit - 1 - head):]


def label(name: str, group: str, limit: int = LABEL_CHARS) -> str:
    """The short label of ``name`` under its group: without the namespace (the group shows
    it) and at most ``limit`` long."""
    if group == OUTSIDE:
        return shorten(name, limit)
    return shorten(name.split("/", 1)[1] if "/" in name else name, limit)


def cluster_title(group: str, count: int) -> str:
    """A cluster's heading in the graph: its (shortened) namespace and how many endpoints."""
    return f"{shorten(group)} ({count})"


def text_width(text: str, font_px: float) -> float:
    """The width ``text`` takes in a monospace font of ``font_px`` pixels (an upper bound)."""
    return len(text) * font_px * CHAR_EM


@dataclass(frozen=True)
class NodeSpot:
    """A node's centre and the direction (radians) its label points, away from its cluster's centre."""

    x: float
    y: float
    angle: float


@dataclass(frozen=True)
class ClusterBox:
    """A namespace's box: top-left corner, size, and the centre of its circle of nodes."""

    group: str
    x: float
    y: float
    width: float
    height: float
    cx: float
    cy: float


@dataclass(frozen=True)
class GraphLayout:
    """Every node's spot, every cluster's box, and the size of the whole drawing."""

    nodes: dict[str, NodeSpot]
    clusters: tuple[ClusterBox, ...]
    width: float
    height: float


def graph_layout(groups: Sequence[tuple[str, Sequence[str]]], labels: dict[str, str],
                 max_width: float = FIT_WIDTH) -> GraphLayout:
    """Each group's nodes on a circle with their labels pointing outwards, the circles in
    square boxes placed left to right in rows no wider than ``max_width`` (a box wider than
    that gets a row of its own). Deterministic: the same groups give the same drawing."""
    sized = []
    for group, members in groups:
        k = len(members)
        radius = 0.0 if k == 1 else max(18.0, k * _SPACING / (2 * math.pi))
        longest = max(text_width(labels[m], GRAPH_FONT) for m in members)
        # A label starts NODE_RADIUS + 4 from its node and may be rotated: half its height (and a
        # margin) past its length keeps every corner inside the box.
        reach = radius + NODE_RADIUS + 4 + longest + GRAPH_FONT
        side = 2 * reach
        width = max(side, text_width(cluster_title(group, k), GRAPH_FONT + 1) + 2 * _PAD)
        sized.append((group, members, radius, width, side + _HEADER))
    nodes: dict[str, NodeSpot] = {}
    boxes: list[ClusterBox] = []
    x = y = row_height = total_width = 0.0
    for group, members, radius, width, height in sized:
        if x > 0 and x + width > max_width:
            x, y, row_height = 0.0, y + row_height, 0.0
        cx, cy = x + width / 2, y + _HEADER + (height - _HEADER) / 2
        boxes.append(ClusterBox(group, x, y, width, height, cx, cy))
        for i, name in enumerate(members):
            angle = 2 * math.pi * i / len(members)
            nodes[name] = NodeSpot(cx + radius * math.cos(angle), cy + radius * math.sin(angle), angle)
        x += width
        total_width = max(total_width, x)
        row_height = max(row_height, height)
    return GraphLayout(nodes, tuple(boxes), total_width, y + row_height)


__all__ = [
    "FIT_WIDTH", "GRAPH_LABEL_CHARS", "LABEL_CHARS", "NODES", "OUTSIDE", "ClusterBox", "GraphLayout", "NodeSpot",
    "cluster_title", "graph_layout", "group_of", "grouped", "label", "shorten", "text_width",
]
