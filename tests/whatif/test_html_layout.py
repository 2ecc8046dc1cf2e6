"""The HTML reports' grouping, short labels and graph layout (no browser needed)."""

from __future__ import annotations

import re

import networkx as nx

from simulator.html_graph import EDGE_LIMIT, graph_svg
from simulator.html_layout import FIT_WIDTH, NODES, OUTSIDE, graph_layout, group_of, grouped, label, shorten


def test_nodes_and_address_blocks_are_grouped_apart_from_namespaces() -> None:
    outside = {"node/n1", "10.0.0.0/8 (+2 more)"}
    assert group_of("node/n1", outside) == NODES
    assert group_of("10.0.0.0/8 (+2 more)", outside) == OUTSIDE
    assert group_of("node/web-1", outside) == "node"  # a pod in a namespace called "node"
    assert group_of("shop/frontend[Deployment]", outside) == "shop"


def test_groups_are_namespaces_in_order_then_nodes_then_blocks_by_address() -> None:
    outside = {"node/b", "node/a", "203.0.113.0/24", "8.0.0.0/7", "10.0.0.0/8"}
    names = ["web/z", "api/b", "203.0.113.0/24", "node/b", "api/a", "8.0.0.0/7", "node/a", "10.0.0.0/8", "api/a"]
    assert grouped(names, outside) == [
        ("api", ["api/a", "api/b"]), ("web", ["web/z"]), (NODES, ["node/a", "node/b"]),
        (OUTSIDE, ["8.0.0.0/7", "10.0.0.0/8", "203.0.113.0/24"]),
    ]


def test_long_names_keep_their_start_and_end() -> None:
    name = "checkout-orchestrator-deployment-7d4b9c5f6-x2x5z"
    short = shorten(name, 20)
    assert len(short) == 20 and short.startswith("checkout-") and short.endswith("x2x5z") and "…" in short
    assert shorten("web-1", 20) == "web-1"
    assert label("shop/web-1", "shop") == "web-1" and label("203.0.113.0/24", OUTSIDE) == "203.0.113.0/24"


def test_graph_clusters_do_not_overlap_and_rows_fit_the_width() -> None:
    sizes = [1, 2, 13, 40, 5, 8, 1, 25]
    groups = [(f"namespace-{k}", [f"namespace-{k}/pod-with-a-long-name-{i:03d}" for i in range(n)])
              for k, n in enumerate(sizes)]
    labels = {m: label(m, g, 22) for g, members in groups for m in members}
    layout = graph_layout(groups, labels)
    assert layout == graph_layout(groups, labels)  # deterministic
    boxes = layout.clusters
    assert [b.group for b in boxes] == [g for g, _ in groups]
    for a in boxes:
        assert a.x + a.width <= max(FIT_WIDTH, a.width) and a.x + a.width <= layout.width
        assert a.y + a.height <= layout.height
        for b in boxes:
            if a is not b:
                assert a.x + a.width <= b.x or b.x + b.width <= a.x or a.y + a.height <= b.y or b.y + b.height <= a.y
    for (_, members), box in zip(groups, boxes, strict=True):
        for m in members:
            spot = layout.nodes[m]
            assert box.x < spot.x < box.x + box.width and box.y < spot.y < box.y + box.height


def _complete(namespaces: int, per: int) -> nx.DiGraph:
    g = nx.DiGraph()
    names = [f"ns-{k}/pod-{i}" for k in range(namespaces) for i in range(per)]
    g.add_edges_from((a, b, {"ports": "80/TCP"}) for a in names for b in names if a != b)
    return g


def test_a_dense_graph_draws_one_line_per_namespace_pair() -> None:
    g = _complete(4, 13)
    assert g.number_of_edges() > EDGE_LIMIT
    svg = graph_svg(g)
    assert 'data-bundled="1"' in svg
    counts = [int(n) for n in re.findall(r"<title>ns-\d → ns-\d: (\d+) connection", svg)]
    assert len(counts) == 4 * 3 and sum(counts) == 4 * 13 * 39  # every edge between two namespaces
    assert len(re.findall(r'class="node"', svg)) == 52


def test_a_sparse_graph_draws_every_connection() -> None:
    g = _complete(3, 5)
    assert g.number_of_edges() <= EDGE_LIMIT
    svg = graph_svg(g)
    assert 'data-bundled="0"' in svg and len(re.findall(r'class="edge"', svg)) == g.number_of_edges()
