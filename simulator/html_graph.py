"""The graph in the HTML reports: each namespace a box with its endpoints on a circle, the
boxes in rows that fit the page (``simulator.html_layout``), drawn as inline SVG."""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import networkx as nx

from simulator.html_layout import (
    GRAPH_LABEL_CHARS,
    NODE_RADIUS,
    NODES,
    OUTSIDE,
    ClusterBox,
    cluster_title,
    graph_layout,
    grouped,
    label,
)
from simulator.html_page import BOTH, EDGE, esc, legend, namespace_colors

EDGE_LIMIT = 600  # connections; above this the graph draws one line per namespace pair


def _arrow(ident: str, i: int, color: str) -> str:
    """Arrowheads in ``color``: ``arrow`` grows with its (thin) edge, ``bundle`` has a fixed size
    so that a wide namespace-pair line does not get a huge head."""
    head = f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{color}"/></marker>'
    return (f'<marker id="{ident}-arrow{i}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" '
            f'markerHeight="6" orient="auto">{head}'
            f'<marker id="{ident}-bundle{i}" viewBox="0 0 10 10" refX="9" refY="5" markerUnits="userSpaceOnUse" '
            f'markerWidth="16" markerHeight="16" orient="auto">{head}')


def _curve(x1: float, y1: float, x2: float, y2: float, gap1: float, gap2: float) -> str:
    """A gently bent path from (x1, y1) to (x2, y2) stopping ``gap`` short of each end; the two
    directions between a pair bend to opposite sides, so both stay visible."""
    dx, dy = x2 - x1, y2 - y1
    length = math.hypot(dx, dy) or 1.0
    cx, cy = (x1 + x2) / 2 - dy * 0.12, (y1 + y2) / 2 + dx * 0.12
    def towards(px: float, py: float, qx: float, qy: float, gap: float) -> tuple[float, float]:
        d = math.hypot(qx - px, qy - py) or 1.0
        return px + (qx - px) / d * gap, py + (qy - py) / d * gap
    sx, sy = towards(x1, y1, cx, cy, min(gap1, length / 3))
    ex, ey = towards(x2, y2, cx, cy, min(gap2, length / 3))
    return f"M{sx:.1f},{sy:.1f} Q{cx:.1f},{cy:.1f} {ex:.1f},{ey:.1f}"


def graph_svg(graph: nx.DiGraph, *, outside: Collection[str] = (), colors: dict[str, str] | None = None,
              highlight: str | None = None, edge_colors: dict | None = None, ident: str = "graph") -> str:
    """Draw ``graph`` (endpoints as nodes): each namespace a box with its endpoints on a circle,
    labels pointing outwards, the boxes in rows that fit ``FIT_WIDTH``; an edge per connection
    (ports in its hover title), or one line per namespace pair above ``EDGE_LIMIT`` edges."""
    if graph.number_of_nodes() == 0:
        return ""
    groups = grouped([str(n) for n in graph], outside)
    colors = colors or namespace_colors([g for g, _ in groups])
    group = {m: g for g, members in groups for m in members}
    labels = {m: label(m, g, GRAPH_LABEL_CHARS) for m, g in group.items()}
    layout = graph_layout(groups, labels)
    edges = [(str(a), str(b)) for a, b in graph.edges if a != b]
    bundled = len(edges) > EDGE_LIMIT
    margin = 4
    parts = [f'<div class="figure"><svg id="{ident}" class="graph" xmlns="http://www.w3.org/2000/svg" '
             f'width="{layout.width + 2 * margin:.0f}" height="{layout.height + 2 * margin:.0f}" '
             f'viewBox="{-margin} {-margin} {layout.width + 2 * margin:.0f} {layout.height + 2 * margin:.0f}" '
             f'data-nodes="{graph.number_of_nodes()}" data-edges="{graph.number_of_edges()}" '
             f'data-bundled="{int(bundled)}">']
    palette = sorted({*(edge_colors or {}).values(), EDGE, BOTH})
    parts.append("<defs>" + "".join(_arrow(ident, i, c) for i, c in enumerate(palette)) + "</defs>")
    inside: dict[str, int] = {}
    if bundled:
        pairs: dict[tuple[str, str], list[str]] = {}
        for a, b in edges:
            pairs.setdefault((group[a], group[b]), []).append((edge_colors or {}).get((a, b), EDGE))
        boxes = {c.group: c for c in layout.clusters}
        for (ga, gb), shades in pairs.items():
            if ga == gb:
                inside[ga] = len(shades)
                continue
            color = shades[0] if len(set(shades)) == 1 else BOTH
            a, b = boxes[ga], boxes[gb]
            gap_a = _box_gap(a, b.cx - a.cx, b.cy - a.cy)
            gap_b = _box_gap(b, a.cx - b.cx, a.cy - b.cy)
            parts.append(f'<path class="edge" d="{_curve(a.cx, a.cy, b.cx, b.cy, gap_a, gap_b)}" stroke="{color}" '
                         f'style="stroke-width:{min(9.0, 1.5 + math.log2(len(shades))):.1f}px;opacity:.6" '
                         f'data-ns="{esc(ga)} {esc(gb)}" marker-end="url(#{ident}-bundle{palette.index(color)})">'
                         f"<title>{esc(f'{ga} → {gb}: {len(shades)} connection(s)')}</title></path>")
    for box in layout.clusters:
        color = colors.get(box.group, EDGE)
        members = sum(1 for g in group.values() if g == box.group)
        note = f", {inside[box.group]} connection(s) among them" if box.group in inside else ""
        parts.append(f'<g class="cluster" data-ns="{esc(box.group)}"><title>{esc(box.group)}: {members} '
                     f'endpoint(s){note}</title><rect x="{box.x + 2:.1f}" y="{box.y + 2:.1f}" '
                     f'width="{box.width - 4:.1f}" height="{box.height - 4:.1f}" rx="6" fill="{color}" '
                     f'fill-opacity=".06" stroke="{color}" stroke-opacity=".5"/><text class="ns" '
                     f'x="{box.x + 8:.1f}" y="{box.y + 15:.1f}" fill="{color}">'
                     f"{esc(cluster_title(box.group, members))}</text></g>")
    if not bundled:
        spots = layout.nodes
        for a, b in edges:
            color = (edge_colors or {}).get((a, b), EDGE)
            d = _curve(spots[a].x, spots[a].y, spots[b].x, spots[b].y, NODE_RADIUS + 1, NODE_RADIUS + 2)
            ports = graph.edges[a, b].get("ports", "")
            ns = " ".join(dict.fromkeys((group[a], group[b])))
            parts.append(f'<path class="edge" d="{d}" stroke="{color}" data-ns="{esc(ns)}" data-src="{esc(a)}" '
                         f'data-dst="{esc(b)}" marker-end="url(#{ident}-arrow{palette.index(color)})">'
                         f"<title>{esc(f'{a} → {b}: {ports}')}</title></path>")
    for name, spot in layout.nodes.items():
        g = group[name]
        color = colors.get(g, EDGE)
        ring = ' stroke="#000" stroke-width="2.5"' if name == highlight else ""
        if g in (NODES, OUTSIDE):
            mark = (f'<rect x="{spot.x - NODE_RADIUS:.1f}" y="{spot.y - NODE_RADIUS:.1f}" width="{2 * NODE_RADIUS}" '
                    f'height="{2 * NODE_RADIUS}" fill="{color}"{ring}/>')
        else:
            mark = f'<circle cx="{spot.x:.1f}" cy="{spot.y:.1f}" r="{NODE_RADIUS}" fill="{color}"{ring}/>'
        right = math.cos(spot.angle) > -1e-9
        tx = spot.x + (NODE_RADIUS + 4) * math.cos(spot.angle)
        ty = spot.y + (NODE_RADIUS + 4) * math.sin(spot.angle)
        turn = math.degrees(spot.angle) + (0 if right else 180)
        parts.append(f'<g class="node" data-ns="{esc(g)}" data-name="{esc(name)}"><title>{esc(name)}</title>{mark}'
                     f'<text x="{tx:.1f}" y="{ty:.1f}" text-anchor="{"start" if right else "end"}" '
                     f'dominant-baseline="central" transform="rotate({turn:.1f} {tx:.1f} {ty:.1f})">'
                     f"{esc(labels[name])}</text></g>")
    parts.append("</svg></div>")
    return "".join(parts)


def _box_gap(box: ClusterBox, dx: float, dy: float) -> float:
    """How far from ``box``'s circle centre a line towards (dx, dy) leaves the box."""
    half_w, half_h = box.width / 2, box.height / 2
    limits = [half_w / abs(dx) if dx else math.inf, half_h / abs(dy) if dy else math.inf]
    return min(limits) * math.hypot(dx, dy)


def _graph_legend(bundled: bool, *edges: tuple[str, str]) -> str:
    items = [("", "Each box is a namespace (its colour); ● pod or workload, ■ node or outside addresses. Lines:"),
             *edges, ("", " — arrows point from source to destination; hover a node for its connections, an edge "
                          "for its ports.")]
    if bundled:
        items.append(("", f" More than {EDGE_LIMIT} connections: one line per namespace pair, wider for more; "
                          "a box's title counts the connections inside it."))
    return legend(*items)


def graph_section(heading: str, graph: nx.DiGraph, outside: Collection[str], colors: dict[str, str],
                  edges: Sequence[tuple[str, str]], **kwargs: Any) -> str:
    """A heading, the legend (``edges``: what each line colour means) and ``graph_svg``."""
    bundled = sum(1 for a, b in graph.edges if a != b) > EDGE_LIMIT
    return (f"<h2>{esc(heading)}</h2>" + _graph_legend(bundled, *edges)
            + graph_svg(graph, outside=outside, colors=colors, **kwargs))


__all__ = ["EDGE_LIMIT", "graph_section", "graph_svg"]
