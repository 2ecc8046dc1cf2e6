"""Self-contained HTML reports for reach, diff and exposure (inline CSS, JS and SVG).

Nothing is loaded from the network. Every figure a reader might check is also in the DOM
as a ``data-*`` attribute on an element with an id (``#summary``, ``#gained-count``,
``#lost-count``, ``#one-hop-count``, ...), so tests compare the rendered page with the
JSON output. Matrices are drawn as heatmaps grouped by namespace: pod x pod when the
cluster is small, namespace x namespace (share of allowed pairs) when it is not. Graphs
are drawn for small clusters only, with a networkx layout computed here.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import networkx as nx
import numpy as np

from simulator.diff_render import group_changes, policy_lines
from simulator.whatif import Diff

POD_GRID_LIMIT = 60  # pods; above this the heatmap is namespace x namespace
GRAPH_LIMIT = 40  # pods; above this no graph is drawn
CELL = 12

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.5em}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}
.gained{color:#0a7a2f}.lost{color:#b3261e}.muted{color:#777}
.stat{display:inline-block;margin-right:2em;font-size:1.1em}.stat b{font-size:1.4em}
svg text{font-size:9px;font-family:monospace}
.legend span{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}
"""

JS = """
document.querySelectorAll('[data-tip]').forEach(function(el){
  el.addEventListener('mouseover',function(){document.getElementById('tip').textContent=el.dataset.tip;});
});
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def page(title: str, body: str) -> str:
    """A complete HTML document."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body>"
        f"<h1>{_e(title)}</h1>{body}<p id=\"tip\" class=\"muted\"></p><script>{JS}</script></body></html>\n"
    )


def _stat(ident: str, label: str, value: int, cls: str = "") -> str:
    return (f'<span class="stat {cls}" id="{ident}" data-count="{value}">{_e(label)}: <b>{value}</b></span>')


def _color(share: float, rgb: tuple[int, int, int]) -> str:
    r, g, b = (int(255 - (255 - c) * share) for c in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(names: Sequence[str], values: np.ndarray, *, rgb: tuple[int, int, int] = (32, 110, 200),
            label: str = "allowed", ident: str = "heatmap", counts: np.ndarray | None = None) -> str:
    """An SVG heatmap; ``values`` in [0, 1] (share), rows are sources, columns destinations.

    Names are grouped by namespace (their prefix before ``/``) with separator lines.
    """
    n = len(names)
    cell = CELL * 2 if n <= 20 else CELL  # small matrices get readable cells
    pad = 8 + 7 * max((len(x) for x in names), default=1)
    size = pad + n * cell + 10
    parts = [f'<svg id="{ident}" xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
             f'data-rows="{n}">']
    for i, name in enumerate(names):
        y = pad + i * cell + cell - 3
        parts.append(f'<text x="{pad - 4}" y="{y}" text-anchor="end">{_e(name)}</text>')
        x = pad + i * cell + cell - 3
        parts.append(f'<text transform="translate({x},{pad - 4}) rotate(-90)">{_e(name)}</text>')
    for i in range(n):
        for j in range(n):
            v = float(values[i, j])
            extra = f" ({int(counts[i, j])})" if counts is not None else ""
            tip = f"{names[i]} -> {names[j]}: {label} {v:.0%}{extra}" if counts is not None or v not in (0, 1) \
                else f"{names[i]} -> {names[j]}: {label if v else 'no'}"
            parts.append(f'<rect x="{pad + j * cell}" y="{pad + i * cell}" width="{cell - 1}" height="{cell - 1}" '
                         f'fill="{_color(v, rgb)}" data-tip="{_e(tip)}"/>')
    ns = [x.split("/", 1)[0] for x in names]
    for k in range(1, n):
        if ns[k] != ns[k - 1]:
            z = pad + k * cell - 1
            parts.append(f'<line x1="{pad}" y1="{z}" x2="{pad + n * cell}" y2="{z}" stroke="#444"/>')
            parts.append(f'<line x1="{z}" y1="{pad}" x2="{z}" y2="{pad + n * cell}" stroke="#444"/>')
    parts.append("</svg>")
    return "".join(parts)


def _by_namespace(names: Sequence[str], grid: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Aggregate a pod x pod bool grid to namespace x namespace (share, count)."""
    ns = [x.split("/", 1)[0] for x in names]
    order = sorted(set(ns))
    idx = np.array([order.index(x) for x in ns], dtype=np.int64)
    onehot = np.zeros((len(names), len(order)), dtype=np.float64)
    onehot[np.arange(len(names)), idx] = 1
    counts = onehot.T @ grid.astype(np.float64) @ onehot
    sizes = onehot.sum(axis=0)
    total = np.outer(sizes, sizes)
    return order, counts / np.maximum(total, 1), counts


def graph_svg(graph: nx.DiGraph, *, highlight: str | None = None, edge_colors: dict | None = None,
              ident: str = "graph") -> str:
    """Draw ``graph`` (pods as nodes) with a spring layout; nodes coloured by namespace."""
    if graph.number_of_nodes() == 0:
        return ""
    pos = nx.spring_layout(graph, seed=7) if graph.number_of_nodes() > 1 else {n: (0.0, 0.0) for n in graph}
    w, h, m = 760, 440, 60
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    span_x, span_y = (max(xs) - min(xs)) or 1, (max(ys) - min(ys)) or 1

    def at(node: str) -> tuple[float, float]:
        x, y = pos[node]
        return m + (x - min(xs)) / span_x * (w - 2 * m), m + (y - min(ys)) / span_y * (h - 2 * m)

    palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
    namespaces = sorted({str(n).split("/", 1)[0] for n in graph})
    parts = [f'<svg id="{ident}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
             f'data-nodes="{graph.number_of_nodes()}" data-edges="{graph.number_of_edges()}">',
             '<defs><marker id="arrow" viewBox="0 0 10 10" refX="16" refY="5" markerWidth="6" markerHeight="6" '
             'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#999"/></marker></defs>']
    for a, b in graph.edges:
        (x1, y1), (x2, y2) = at(a), at(b)
        color = (edge_colors or {}).get((a, b), "#bbb")
        ports = graph.edges[a, b].get("ports", "")
        parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{color}" '
                     f'marker-end="url(#arrow)" data-tip="{_e(f"{a} -> {b} {ports}")}"/>')
    for node in graph:
        x, y = at(node)
        color = palette[namespaces.index(str(node).split("/", 1)[0]) % len(palette)]
        stroke = ' stroke="#000" stroke-width="3"' if node == highlight else ""
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="{color}"{stroke} data-tip="{_e(node)}"/>')
        parts.append(f'<text x="{x + 9:.1f}" y="{y + 3:.1f}">{_e(node)}</text>')
    parts.append("</svg>")
    return "".join(parts)


# ----- reach ---------------------------------------------------------------------------------
def reach_page(names: Sequence[str], ports: Sequence[Any], allowed: dict, checked: dict) -> str:
    """The reach report: per-port counts, heatmap of the union over ports, graph if small."""
    n = len(names)
    union = np.zeros((n, n), dtype=bool)
    rows = []
    total_allowed = 0
    for spec in ports:
        grid = allowed[spec] & checked[spec]
        union |= grid
        count = int(grid.sum())
        total_allowed += count
        rows.append(f'<tr><td>{_e(spec)}</td><td class="port-count" data-port="{_e(spec)}" data-allowed="{count}" '
                    f'data-checked="{int(checked[spec].sum())}">{count} / {int(checked[spec].sum())}</td></tr>')
    body = [f'<div id="summary" data-pods="{n}" data-ports="{len(ports)}" data-allowed="{total_allowed}">',
            _stat("pods-count", "endpoints", n), _stat("allowed-count", "allowed (src, dst, port)", total_allowed),
            "</div>", "<h2>Per port (allowed / checked)</h2><table>", *rows, "</table>"]
    body.append("<h2>Reachability (any port) grouped by namespace</h2>")
    if n <= POD_GRID_LIMIT:
        body.append(heatmap(names, union.astype(float)))
    else:
        order, share, counts = _by_namespace(names, union)
        body.append(heatmap(order, share, counts=counts))
    if 0 < n <= GRAPH_LIMIT:
        g = nx.DiGraph()
        g.add_nodes_from(names)
        for i, j in zip(*np.nonzero(union), strict=True):
            if i != j:
                ports_ij = ",".join(str(s) for s in ports if (allowed[s] & checked[s])[i, j])
                g.add_edge(names[i], names[j], ports=ports_ij)
        body.append("<h2>Graph</h2>" + graph_svg(g))
    return page("npm-sim reach", "".join(body))


# ----- diff ----------------------------------------------------------------------------------
def diff_page(diff: Diff) -> str:
    """The diff report: counts, policy changes, grouped tables, namespace heatmap of changes."""
    body = [
        '<div id="summary">',
        _stat("gained-count", "gained", len(diff.gained), "gained"),
        _stat("lost-count", "lost", len(diff.lost), "lost"),
        "</div>",
    ]
    pl = policy_lines(diff)
    if pl:
        body.append("<p>Policies: " + ", ".join(f"<code>{_e(p)}</code>" for p in pl) + "</p>")
    for kind, changes in (("gained", diff.gained), ("lost", diff.lost)):
        groups = group_changes(kind, changes, diff.before, diff.after)
        body.append(f'<h2 class="{kind}">{kind.capitalize()} ({len(changes)})</h2>')
        if not groups:
            body.append('<p class="muted">none</p>')
            continue
        body.append(f'<table id="{kind}-groups" data-groups="{len(groups)}"><tr><th>from</th><th>to</th>'
                    "<th>ports</th><th>connections</th><th>because</th></tr>")
        for g in groups:
            body.append(f'<tr class="{kind}"><td>{_e(g.src)}</td><td>{_e(g.dst)}</td><td>{_e(g.ports)}</td>'
                        f'<td class="connections" data-count="{g.connections}">{g.connections}</td>'
                        f'<td>{"<br>".join(_e(b) for b in g.because)}</td></tr>')
        body.append("</table>")
    names = sorted({k for c in (*diff.gained, *diff.lost) for k in (c.src, c.dst)})
    if names:
        body.append("<h2>Changes by namespace pair</h2>")
        body.append('<p class="legend"><span style="background:#0a7a2f"></span>gained'
                    '<span style="background:#b3261e"></span>lost</p>')
        body.append(_diff_heatmap(diff))
    if 0 < len(names) <= GRAPH_LIMIT:
        g = nx.DiGraph()
        g.add_nodes_from(names)
        colors = {}
        for kind, changes, color in (("gained", diff.gained, "#0a7a2f"), ("lost", diff.lost, "#b3261e")):
            for c in changes:
                g.add_edge(c.src, c.dst, ports=f"{kind} {c.port}/{c.protocol}")
                colors[(c.src, c.dst)] = color
        body.append("<h2>Changed connections</h2>" + graph_svg(g, edge_colors=colors))
    return page("npm-sim diff", "".join(body))


def _diff_heatmap(diff: Diff) -> str:
    """Namespace x namespace: gained (green) or lost (red) connection counts; cells with both show the larger."""
    ns = sorted({k.split("/", 1)[0] for c in (*diff.gained, *diff.lost) for k in (c.src, c.dst)})
    index = {n: i for i, n in enumerate(ns)}
    gained = np.zeros((len(ns), len(ns)))
    lost = np.zeros((len(ns), len(ns)))
    for arr, changes in ((gained, diff.gained), (lost, diff.lost)):
        for c in changes:
            arr[index[c.src.split("/", 1)[0]], index[c.dst.split("/", 1)[0]]] += 1
    peak = max(float(gained.max(initial=0)), float(lost.max(initial=0)), 1.0)
    pad = 8 + 7 * max(len(x) for x in ns)
    size = pad + len(ns) * CELL * 2 + 10
    cell = CELL * 2
    parts = [f'<svg id="diff-heatmap" xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
             f'data-gained="{int(gained.sum())}" data-lost="{int(lost.sum())}">']
    for i, name in enumerate(ns):
        parts.append(f'<text x="{pad - 4}" y="{pad + i * cell + cell - 8}" text-anchor="end">{_e(name)}</text>')
        x = pad + i * cell + cell - 8
        parts.append(f'<text transform="translate({x},{pad - 4}) rotate(-90)">{_e(name)}</text>')
    for i in range(len(ns)):
        for j in range(len(ns)):
            g, lo = gained[i, j], lost[i, j]
            if g >= lo:
                fill = _color(g / peak, (10, 122, 47)) if g else "#ffffff"
            else:
                fill = _color(lo / peak, (179, 38, 30))
            tip = f"{ns[i]} -> {ns[j]}: +{int(g)} -{int(lo)}"
            parts.append(f'<rect x="{pad + j * cell}" y="{pad + i * cell}" width="{cell - 1}" height="{cell - 1}" '
                         f'fill="{fill}" stroke="#eee" data-gained="{int(g)}" data-lost="{int(lo)}" '
                         f'data-tip="{_e(tip)}"/>')
    parts.append("</svg>")
    return "".join(parts)


# ----- exposure ------------------------------------------------------------------------------
def exposure_page(result: dict[str, Any], graph: nx.DiGraph | None = None) -> str:
    """The exposure report for ``exposure.from_pod`` or ``exposure.ranking`` results."""
    body = []
    if "from" in result:
        body += ['<div id="summary">', _stat("one-hop-count", "one hop", result["one_hop"]["count"]),
                 _stat("transitive-count", "transitively", result["transitive"]["count"]), "</div>",
                 f"<p>From <code>{_e(result['from'])}</code> on {_e(', '.join(result['ports']))}</p>",
                 f'<h2>Per workload</h2><table id="workloads" data-rows="{len(result["workloads"])}">'
                 "<tr><th>workload</th><th>pods reachable</th><th>in one hop</th><th>ports (one hop)</th>"
                 "<th>fewest hops</th></tr>"]
        for d in result["workloads"]:
            body.append(f'<tr><td>{_e(d["workload"])}</td><td data-count="{d["pods"]}">{d["pods"]}</td>'
                        f'<td>{d["one_hop_pods"]}</td><td>{_e(d["ports"] or "-")}</td><td>{d["min_hops"]}</td></tr>')
        body.append("</table><h2>Shortest paths</h2><table><tr><th>pod</th><th>hops</th><th>path</th></tr>")
        for e in result["transitive"]["targets"][:500]:
            body.append(f'<tr><td>{_e(e["pod"])}</td><td>{e["hops"]}</td><td>{_e(" → ".join(e["path"]))}</td></tr>')
        body.append("</table>")
        highlight = result["from"]
    else:
        body += ['<div id="summary">', _stat("pods-count", "pods", result["pods"]),
                 _stat("classes-count", "classes", result["classes"]), "</div>",
                 '<h2>Most exposed</h2><table id="most-exposed"><tr><th>pod</th><th>source pods</th></tr>']
        body += [f'<tr><td>{_e(r["pod"])}</td><td data-count="{r["sources"]}">{r["sources"]}</td></tr>'
                 for r in result["most_exposed"]]
        body.append('</table><h2>Largest blast radius</h2><table id="blast-radius"><tr><th>pod</th>'
                    "<th>transitive</th><th>one hop</th></tr>")
        body += [f'<tr><td>{_e(r["pod"])}</td><td data-count="{r["transitive"]}">{r["transitive"]}</td>'
                 f'<td>{r["one_hop"]}</td></tr>' for r in result["largest_blast_radius"]]
        body.append("</table><h2>Workloads</h2><table><tr><th>workload</th><th>pods</th><th>source pods</th>"
                    "<th>ports</th></tr>")
        body += [f'<tr><td>{_e(d["workload"])}</td><td>{d["pods"]}</td><td>{d["sources"]}</td>'
                 f'<td>{_e(d["ports"] or "-")}</td></tr>' for d in result["workloads"][:200]]
        body.append("</table>")
        highlight = None
    if graph is not None and 0 < graph.number_of_nodes() <= GRAPH_LIMIT:
        body.append("<h2>Graph</h2>" + graph_svg(graph, highlight=highlight))
    return page("npm-sim exposure", "".join(body))


__all__ = ["diff_page", "exposure_page", "graph_svg", "heatmap", "page", "reach_page"]
