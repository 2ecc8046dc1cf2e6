"""Self-contained HTML reports for reach, diff and exposure (inline CSS, JS and SVG).

Nothing is loaded from the network. Every figure a reader might check is also in the DOM
as a ``data-*`` attribute on an element with an id (``#summary``, ``#gained-count``,
``#lost-count``, ``#one-hop-count``, ...), so tests compare the rendered page with the
JSON output. Endpoints are grouped by namespace everywhere (``simulator.html_layout``):
the heatmap's rows (sources) and columns (destinations) are ordered and banded by namespace
(endpoint x endpoint up to ``POD_GRID_LIMIT`` endpoints, namespace x namespace above), the
graph draws each namespace as a cluster, and a namespace filter hides the others. Long names
are shortened; the full name is the hover title. The page shell and its script are in
``simulator.html_page``, the figures in ``simulator.html_heatmap`` and ``simulator.html_graph``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import networkx as nx
import numpy as np

from simulator.diff_render import group_changes, policy_lines
from simulator.html_graph import graph_section
from simulator.html_heatmap import Cell, heatmap, namespace_counts
from simulator.html_layout import group_of, grouped
from simulator.html_page import ALLOWED, BOTH, EDGE, GAINED, LOST, esc, legend, namespace_colors, page, shade, stat
from simulator.whatif import Diff

POD_GRID_LIMIT = 100  # endpoints; above this the heatmap is namespace x namespace
GRAPH_LIMIT = 150  # endpoints; above this no graph is drawn


# ----- reach ---------------------------------------------------------------------------------
def reach_page(names: Sequence[str], ports: Sequence[Any], allowed: dict, checked: dict,
               outside: Collection[str] = ()) -> str:
    """The reach report: per-port counts, heatmap of the union over ports, graph if small.

    ``outside`` names the endpoints that are no pods (nodes, address blocks, ``--ip``).
    """
    n = len(names)
    outside = frozenset(outside)
    union = np.zeros((n, n), dtype=bool)
    any_checked = np.zeros((n, n), dtype=bool)
    rows = []
    total_allowed = 0
    grids = {}
    for spec in ports:
        grid = grids[spec] = allowed[spec] & checked[spec]
        union |= grid
        any_checked |= checked[spec]
        count = int(grid.sum())
        total_allowed += count
        rows.append(f'<tr><td>{esc(spec)}</td><td class="port-count" data-port="{esc(spec)}" data-allowed="{count}" '
                    f'data-checked="{int(checked[spec].sum())}">{count} / {int(checked[spec].sum())}</td></tr>')
    groups = grouped(names, outside)
    colors = namespace_colors([g for g, _ in groups])
    body = [f'<div id="summary" data-pods="{n}" data-ports="{len(ports)}" data-allowed="{total_allowed}">',
            stat("pods-count", "endpoints", n), stat("allowed-count", "allowed (src, dst, port)", total_allowed),
            "</div>", "<h2>Per port (allowed / checked)</h2><table>", *rows, "</table>"]
    if n:
        pairs = f'data-allowed-pairs="{int(union.sum())}" data-empty="denied on every port checked"'
        body.append(f"<h2>Reachability on any port, grouped by namespace ({n} endpoints)</h2>")
        index = {x: i for i, x in enumerate(names)}
        if n <= POD_GRID_LIMIT:
            body.append(legend((ALLOWED, "allowed on at least one port"), ("#fff", "denied on every port checked"),
                                ("repeating-linear-gradient(45deg,#fff 0 2px,#ccc 2px 4px)",
                                 "not checked (the destination declares none of the ports)"),
                                ("", "; hover a cell for its ports, a label for the full name.")))
            body.append(heatmap("heatmap", groups, colors, _reach_cell(index, ports, grids, checked, union,
                                                                          any_checked),
                                attrs=pairs))
        else:
            order, share, counts = namespace_counts(names, outside, union)
            at = {g: i for i, g in enumerate(order)}
            body.append(legend((shade(0.1, (32, 110, 200)), "few"), (shade(1, (32, 110, 200)),
                                "all pairs of the two namespaces allowed (on any port)"),
                                ("", f"; more than {POD_GRID_LIMIT} endpoints, so one cell per namespace pair.")))

            def ns_cell(a: str, b: str) -> Cell:
                i, j = at[a], at[b]
                style = f' style="background:{shade(float(share[i, j]), (32, 110, 200))}"'
                return Cell("", f"{share[i, j]:.0%} of endpoint pairs allowed ({int(counts[i, j])})", style)
            body.append(heatmap("heatmap", [(g, [g]) for g in order], colors, ns_cell, banded=False,
                                attrs=pairs))
    if 0 < n <= GRAPH_LIMIT:
        g = nx.DiGraph()
        g.add_nodes_from(names)
        for i, j in zip(*np.nonzero(union), strict=True):
            if i != j:
                ports_ij = ",".join(str(s) for s in ports if grids[s][i, j])
                g.add_edge(names[i], names[j], ports=ports_ij)
        body.append(graph_section("Graph", g, outside, colors, [(EDGE, "allowed on at least one port")]))
    return page("npm-sim reach", "".join(body), {g: len(m) for g, m in groups}, colors)


def _reach_cell(index: dict[str, int], ports: Sequence[Any], grids: dict, checked: dict, union: np.ndarray,
                any_checked: np.ndarray) -> Callable[[str, str], Cell]:
    def cell(src: str, dst: str) -> Cell:
        i, j = index[src], index[dst]
        if union[i, j]:
            on = ", ".join(str(s) for s in ports if grids[s][i, j])
            return Cell("y", f"allowed on {on}")
        if any_checked[i, j]:
            return Cell()
        return Cell("u")
    return cell


# ----- diff ----------------------------------------------------------------------------------
def diff_page(diff: Diff) -> str:
    """The diff report: counts, policy changes, grouped tables, heatmap and graph of changes."""
    changed = [k for c in (*diff.gained, *diff.lost) for k in (c.src, c.dst)]
    pods = diff.before.pod_by_key.keys() | diff.after.pod_by_key.keys()
    outside = frozenset(k for k in changed if k not in pods)
    groups = grouped(changed, outside)
    colors = namespace_colors([g for g, _ in groups])
    body = [
        '<div id="summary">',
        stat("gained-count", "gained", len(diff.gained), "gained"),
        stat("lost-count", "lost", len(diff.lost), "lost"),
        "</div>",
    ]
    pl = policy_lines(diff)
    if pl:
        body.append("<p>Policies: " + ", ".join(f"<code>{esc(p)}</code>" for p in pl) + "</p>")
    for kind, changes in (("gained", diff.gained), ("lost", diff.lost)):
        table = group_changes(kind, changes, diff.before, diff.after)
        body.append(f'<h2 class="{kind}">{kind.capitalize()} ({len(changes)})</h2>')
        if not table:
            body.append('<p class="muted">none</p>')
            continue
        body.append(f'<table id="{kind}-groups" data-groups="{len(table)}"><tr><th>from</th><th>to</th>'
                    "<th>ports</th><th>connections</th><th>because</th></tr>")
        for g in table:
            ns = " ".join(dict.fromkeys((group_of(g.src, outside), group_of(g.dst, outside))))
            body.append(f'<tr class="{kind}" data-ns="{esc(ns)}"><td>{esc(g.src)}</td><td>{esc(g.dst)}</td>'
                        f'<td>{esc(g.ports)}</td><td class="connections" data-count="{g.connections}">'
                        f'{g.connections}</td><td>{"<br>".join(esc(b) for b in g.because)}</td></tr>')
        body.append("</table>")
    names = [m for _, members in groups for m in members]
    if names:
        body.append(f"<h2>Changed connections, grouped by namespace ({len(names)} endpoints)</h2>")
        body.append(_diff_heatmap(diff, groups, outside, colors))
    if 0 < len(names) <= GRAPH_LIMIT:
        g = nx.DiGraph()
        g.add_nodes_from(names)
        edge_colors: dict[tuple[str, str], str] = {}
        ports: dict[tuple[str, str], list[str]] = {}
        for kind, changes, color in (("gained", diff.gained, GAINED), ("lost", diff.lost, LOST)):
            for c in changes:
                pair = (c.src, c.dst)
                edge_colors[pair] = BOTH if edge_colors.get(pair, color) != color else color
                ports.setdefault(pair, []).append(f"{kind} {c.port}/{c.protocol}")
        for pair, listed in ports.items():
            g.add_edge(*pair, ports=", ".join(listed))
        meaning = [(GAINED, "gained"), (LOST, "lost"), (BOTH, "gained on some ports, lost on others")]
        body.append(graph_section("Graph of changed connections", g, outside, colors, meaning,
                                  edge_colors=edge_colors))
    return page("npm-sim diff", "".join(body), {g: len(m) for g, m in groups}, colors)


def _diff_heatmap(diff: Diff, groups: Sequence[tuple[str, Sequence[str]]], outside: Collection[str],
                  colors: dict[str, str]) -> str:
    """Endpoint x endpoint (namespace x namespace above ``POD_GRID_LIMIT``): green where
    connections were gained, red where lost, split where both."""
    endpoint_level = sum(len(m) for _, m in groups) <= POD_GRID_LIMIT
    key = (lambda x: x) if endpoint_level else (lambda x: group_of(x, outside))
    counts: dict[tuple[str, str], list[list[str]]] = {}
    for k, changes in enumerate((diff.gained, diff.lost)):
        for c in changes:
            counts.setdefault((key(c.src), key(c.dst)), [[], []])[k].append(f"{c.port}/{c.protocol}")
    peak = max((len(v[0]) + len(v[1]) for v in counts.values()), default=1)

    def cell(src: str, dst: str) -> Cell:
        got = counts.get((src, dst))
        if got is None:
            return Cell()
        gained, lost = got
        what = "; ".join(f"{kind} {len(ps)}: {', '.join(ps[:12])}{' …' if len(ps) > 12 else ''}"
                         for kind, ps in (("gained", gained), ("lost", lost)) if ps)
        extra = f' data-gained="{len(gained)}" data-lost="{len(lost)}"'
        if not endpoint_level:  # darker for more changes
            share = 0.25 + 0.75 * (len(gained) + len(lost)) / peak
            g, r = shade(share, (10, 122, 47)), shade(share, (179, 38, 30))
            fill = f"linear-gradient(135deg,{g} 50%,{r} 50%)" if gained and lost else (g if gained else r)
            extra += f' style="background:{fill}"'
        return Cell("b" if gained and lost else "g" if gained else "l", what, extra)

    above = "" if endpoint_level else (f" More than {POD_GRID_LIMIT} endpoints changed, so one cell per "
                                       "namespace pair, darker for more.")
    caption = legend((GAINED, "connections gained"), (LOST, "lost"),
                     (f"linear-gradient(135deg,{GAINED} 50%,{LOST} 50%)", "both (different ports)"),
                     ("", "; hover a cell for the ports." + above))
    rows = groups if endpoint_level else [(g, [g]) for g, _ in groups]
    attrs = f'data-gained="{len(diff.gained)}" data-lost="{len(diff.lost)}" data-empty="no change"'
    return caption + heatmap("diff-heatmap", rows, colors, cell, banded=endpoint_level, attrs=attrs)


# ----- exposure ------------------------------------------------------------------------------
def exposure_page(result: dict[str, Any], graph: nx.DiGraph | None = None) -> str:
    """The exposure report for ``exposure.from_pod`` or ``exposure.ranking`` results."""
    body = []
    if "from" in result:
        body += ['<div id="summary">', stat("one-hop-count", "one hop", result["one_hop"]["count"]),
                 stat("transitive-count", "transitively", result["transitive"]["count"]), "</div>",
                 f"<p>From <code>{esc(result['from'])}</code> on {esc(', '.join(result['ports']))}</p>",
                 f'<h2>Per workload</h2><table id="workloads" data-rows="{len(result["workloads"])}">'
                 "<tr><th>workload</th><th>pods reachable</th><th>in one hop</th><th>ports (one hop)</th>"
                 "<th>fewest hops</th></tr>"]
        for d in result["workloads"]:
            body.append(f'<tr data-ns="{esc(group_of(d["workload"], ()))}"><td>{esc(d["workload"])}</td>'
                        f'<td data-count="{d["pods"]}">{d["pods"]}</td>'
                        f'<td>{d["one_hop_pods"]}</td><td>{esc(d["ports"] or "-")}</td><td>{d["min_hops"]}</td></tr>')
        body.append("</table><h2>Shortest paths</h2><table><tr><th>pod</th><th>hops</th><th>path</th></tr>")
        for e in result["transitive"]["targets"][:500]:
            body.append(f'<tr data-ns="{esc(group_of(e["pod"], ()))}"><td>{esc(e["pod"])}</td><td>{e["hops"]}</td>'
                        f'<td>{esc(" → ".join(e["path"]))}</td></tr>')
        body.append("</table>")
        highlight = result["from"]
    else:
        body += ['<div id="summary">', stat("pods-count", "pods", result["pods"]),
                 stat("classes-count", "classes", result["classes"]), "</div>",
                 '<h2>Most exposed</h2><table id="most-exposed"><tr><th>pod</th><th>source pods</th></tr>']
        body += [f'<tr data-ns="{esc(group_of(r["pod"], ()))}"><td>{esc(r["pod"])}</td>'
                 f'<td data-count="{r["sources"]}">{r["sources"]}</td></tr>'
                 for r in result["most_exposed"]]
        body.append('</table><h2>Largest blast radius</h2><table id="blast-radius"><tr><th>pod</th>'
                    "<th>transitive</th><th>one hop</th></tr>")
        body += [f'<tr data-ns="{esc(group_of(r["pod"], ()))}"><td>{esc(r["pod"])}</td>'
                 f'<td data-count="{r["transitive"]}">{r["transitive"]}</td>'
                 f'<td>{r["one_hop"]}</td></tr>' for r in result["largest_blast_radius"]]
        body.append("</table><h2>Workloads</h2><table><tr><th>workload</th><th>pods</th><th>source pods</th>"
                    "<th>ports</th></tr>")
        body += [f'<tr data-ns="{esc(group_of(d["workload"], ()))}"><td>{esc(d["workload"])}</td><td>{d["pods"]}</td>'
                 f'<td>{d["sources"]}</td>'
                 f'<td>{esc(d["ports"] or "-")}</td></tr>' for d in result["workloads"][:200]]
        body.append("</table>")
        highlight = None
    if graph is not None and 0 < graph.number_of_nodes() <= GRAPH_LIMIT:
        ordered = grouped([str(x) for x in graph], ())
        groups = {g: len(m) for g, m in ordered}
        colors = namespace_colors(list(groups))
        if highlight:
            body.append(legend(("", f"The ringed node is {highlight}.")))
        body.append(graph_section("Graph", graph, (), colors, [(EDGE, "allowed on at least one port")],
                                   highlight=highlight))
        return page("npm-sim exposure", "".join(body), groups, colors)
    return page("npm-sim exposure", "".join(body))


__all__ = ["GRAPH_LIMIT", "POD_GRID_LIMIT", "diff_page", "exposure_page", "reach_page"]
