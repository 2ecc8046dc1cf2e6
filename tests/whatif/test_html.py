"""HTML reports render in headless Chromium and show the same numbers as the JSON output."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from whatif_helpers import ALLOW_DB, BASE, run, write

from kube.manifests import container_port, namespace, node, pod, policy

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/setup should install it)"
)


VOID = {"input", "br", "meta", "img", "hr", "link", "col", "wbr"}


class Ids(HTMLParser):
    """Collects the attributes of every element that has an id, elements by class, and every
    element in document order (its tag under ``"<tag>"``, its text under ``"<text>"``)."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}
        self.by_class: dict[str, list[dict[str, str]]] = {}
        self.elements: list[dict[str, str]] = []
        self._open: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        a["<tag>"], a["<text>"] = tag, ""
        self.elements.append(a)
        if "id" in a:
            self.by_id[a["id"]] = a
        for cls in a.get("class", "").split():
            self.by_class.setdefault(cls, []).append(a)
        if tag not in VOID:
            self._open.append(a)

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self._open.pop()

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            if self._open.pop()["<tag>"] == tag:
                break

    def handle_data(self, data: str) -> None:
        for a in self._open:
            a["<text>"] += data


def render(path: Path, *, window: tuple[int, int] = (1400, 1000), fragment: str = "") -> Ids:
    """The DOM after Chromium loaded the page in a window of ``window`` pixels (scripts ran,
    no network); ``fragment`` is added to the address (``#ns=...``)."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             f"--window-size={window[0]},{window[1]}", "--dump-dom", path.as_uri() + fragment],
            capture_output=True, text=True, timeout=120, check=False,
        )
    assert proc.returncode == 0, proc.stderr[-2000:]
    parser = Ids()
    parser.feed(proc.stdout)
    return parser


def static(path: Path) -> Ids:
    parser = Ids()
    parser.feed(path.read_text())
    return parser


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, str]:
    return {
        "before": write(tmp_path / "before.yaml", BASE),
        "patch": write(tmp_path / "patch.yaml", [ALLOW_DB, policy("y", "deny", {"podSelector": {},
                                                                                   "policyTypes": ["Egress"]})]),
    }


def _diff_html(capsys, files, tmp_path) -> tuple[Path, dict]:
    _, out, _ = run(capsys, "what-if", "-f", files["before"], "--apply", files["patch"], "-o", "json")
    data = json.loads(out)
    _, page, _ = run(capsys, "what-if", "-f", files["before"], "--apply", files["patch"], "-o", "html")
    path = tmp_path / "diff.html"
    path.write_text(page)
    return path, data


def test_html_is_self_contained(capsys, files, tmp_path) -> None:
    path, _ = _diff_html(capsys, files, tmp_path)
    text = path.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "<style>" in text and "<script>" in text and "<svg" in text


def _check_diff(dom: Ids, data: dict) -> None:
    assert int(dom.by_id["gained-count"]["data-count"]) == len(data["gained"]) > 0
    assert int(dom.by_id["lost-count"]["data-count"]) == len(data["lost"]) > 0
    heat = dom.by_id["diff-heatmap"]
    assert int(heat["data-gained"]) == len(data["gained"]) and int(heat["data-lost"]) == len(data["lost"])
    rows = dom.by_class["connections"]
    assert sum(int(r["data-count"]) for r in rows) == len(data["gained"]) + len(data["lost"])


def test_diff_numbers_match_json_static(capsys, files, tmp_path) -> None:
    path, data = _diff_html(capsys, files, tmp_path)
    _check_diff(static(path), data)


@needs_chromium
def test_diff_page_renders_in_chromium_with_json_numbers(capsys, files, tmp_path) -> None:
    path, data = _diff_html(capsys, files, tmp_path)
    _check_diff(render(path), data)


@needs_chromium
def test_reach_page_renders_with_json_numbers(capsys, files, tmp_path) -> None:
    _, out, _ = run(capsys, "reach", "-f", files["before"], "-o", "json")
    rows = json.loads(out)["connections"]
    code, page, _ = run(capsys, "reach", "-f", files["before"], "-o", "html")
    assert code == 0
    path = tmp_path / "reach.html"
    path.write_text(page)
    dom = render(path)
    assert int(dom.by_id["allowed-count"]["data-count"]) == sum(r["allowed"] for r in rows)
    for cell in dom.by_class["port-count"]:
        number, proto = cell["data-port"].split("/")
        same = [r for r in rows if r["port"] == int(number) and r["protocol"] == proto]
        assert int(cell["data-allowed"]) == sum(r["allowed"] for r in same)
        assert int(cell["data-checked"]) == len(same)
    assert int(dom.by_id["graph"]["data-nodes"]) == 4


@needs_chromium
def test_exposure_page_renders_with_json_numbers(capsys, files, tmp_path) -> None:
    _, out, _ = run(capsys, "exposure", "-f", files["before"], "--from", "y/client-1", "-o", "json")
    data = json.loads(out)
    _, page, _ = run(capsys, "exposure", "-f", files["before"], "--from", "y/client-1", "-o", "html")
    path = tmp_path / "exposure.html"
    path.write_text(page)
    dom = render(path)
    assert int(dom.by_id["one-hop-count"]["data-count"]) == data["one_hop"]["count"] == 2
    assert int(dom.by_id["transitive-count"]["data-count"]) == data["transitive"]["count"]
    assert int(dom.by_id["workloads"]["data-rows"]) == len(data["workloads"])


@needs_chromium
def test_screenshot_is_not_blank(capsys, files, tmp_path) -> None:
    path, _ = _diff_html(capsys, files, tmp_path)
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={profile}", f"--screenshot={shot}", "--window-size=900,700",
                        path.as_uri()], capture_output=True, timeout=120, check=False)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


# ----- big clusters: a page that reads at a glance and fits a 1400-pixel window --------------
NAMESPACES = ("payments-processing-eu-west", "checkout", "inventory-management", "search",
              "notifications-and-email-delivery", "auth")
ROLES = (("web", 80), ("api", 8080), ("db", 5432))
WINDOW = (1400, 1000)


def big_cluster(per_namespace: int = 11) -> list:
    """Pods with long names in six namespaces (web -> api -> db inside each, every namespace
    and 203.0.113.0/24 -> the first one's web), a node: with --outside about 90 endpoints."""
    objects = [node("worker-node-1", "172.18.0.2")]
    for k, ns in enumerate(NAMESPACES):
        objects.append(namespace(ns, {"team": f"t{k}"}))
        for i in range(per_namespace):
            role, port = ROLES[i % 3]
            objects.append(pod(ns, f"{ns[:12]}-{role}-orchestrator-deployment-7d4b9c5f6-x{i:02d}z", {"app": role},
                               ports=[container_port(port)], node="worker-node-1"))
        objects += [
            policy(ns, "deny-ingress", {"podSelector": {}, "policyTypes": ["Ingress"]}),
            policy(ns, "api-from-web", {"podSelector": {"matchLabels": {"app": "api"}},
                                        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}),
            policy(ns, "db-from-api", {"podSelector": {"matchLabels": {"app": "db"}},
                                       "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}]}]}),
        ]
    objects.append(policy(NAMESPACES[0], "web-from-everywhere", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"namespaceSelector": {}}, {"ipBlock": {"cidr": "203.0.113.0/24"}}]}],
    }))
    return objects


def _heatmap_rows(dom: Ids, ident: str) -> tuple[list[dict], list[tuple[dict, dict, list[dict]]]]:
    """(column headers, [(row tr, row header, cells)]) of the heatmap table ``ident``."""
    start = dom.elements.index(dom.by_id[ident])
    cols: list[dict] = []
    rows: list[tuple[dict, dict, list[dict]]] = []
    for el in dom.elements[start + 1:]:
        if el["<tag>"] == "table":
            break
        classes = el.get("class", "").split()
        if el["<tag>"] == "th" and "col" in classes:
            cols.append(el)
        elif el["<tag>"] == "tr" and "data-ns" in el:
            rows.append((el, {}, []))
        elif el["<tag>"] == "th" and "row" in classes:
            rows[-1] = (rows[-1][0], el, rows[-1][2])
        elif el["<tag>"] == "td":
            rows[-1][2].append(el)
    return cols, rows


def _assert_fits(dom: Ids) -> None:
    """The page's own measurements: no horizontal scrolling at 1400 pixels, no figure wider
    than its box, no heatmap label cut, every graph label inside its SVG's viewBox."""
    body = dom.elements[[e["<tag>"] for e in dom.elements].index("body")]
    assert int(body["data-window-width"]) == WINDOW[0]
    assert int(body["data-page-width"]) <= WINDOW[0]
    assert int(body["data-wide-figures"]) == 0
    assert int(body["data-clipped-labels"]) == 0
    graph = dom.by_id["graph"]
    drawn = [e for e in (*dom.by_class["node"], *dom.by_class["cluster"]) if "off" not in e["class"].split()]
    assert int(graph["data-labels"]) == len(drawn) > 10  # each node and box has one label
    assert int(graph["data-label-overflow"]) == 0


def _grouped_runs(groups: list[str]) -> list[str]:
    return [g for k, g in enumerate(groups) if k == 0 or groups[k - 1] != g]


@needs_chromium
def test_reach_page_of_90_endpoints_fits_1400_pixels_grouped_by_namespace(capsys, tmp_path) -> None:
    path = write(tmp_path / "big.yaml", big_cluster())
    _, out, _ = run(capsys, "reach", "-f", path, "--outside", "-o", "json")
    rows = json.loads(out)["connections"]
    names = {r["src"] for r in rows} | {r["dst"] for r in rows}
    _, page, _ = run(capsys, "reach", "-f", path, "--outside", "-o", "html")
    html_path = tmp_path / "reach.html"
    html_path.write_text(page)
    dom = render(html_path, window=WINDOW)
    _assert_fits(dom)

    cols, heat = _heatmap_rows(dom, "heatmap")
    assert dom.by_id["heatmap"]["data-level"] == "endpoint"
    assert [c["title"] for c in cols] == [h["title"] for _, h, _ in heat]  # same order both ways
    assert set(c["title"] for c in cols) == names and len(cols) == len(names) > 80
    # Rows ordered by namespace, each namespace one run, then the node, then the outside blocks.
    groups = [tr["data-ns"] for tr, _, _ in heat]
    assert _grouped_runs(groups) == [*sorted(NAMESPACES), "(nodes)", "(outside)"]
    assert dict(zip([h["title"] for _, h, _ in heat], groups, strict=True))["node/worker-node-1"] == "(nodes)"
    assert "203.0.113.0/24" in names and all(g == "(outside)" for (_, h, _), g in zip(heat, groups, strict=True)
                                              if h["title"][0].isdigit())
    # Short labels (namespace dropped, middle cut), the full name on hover.
    for tr, header, _ in heat:
        text, full = header["<text>"], header["title"]
        assert len(text) <= 28
        if tr["data-ns"] in NAMESPACES:
            name = full.removeprefix(tr["data-ns"] + "/")
            head, _, tail = text.partition("…")
            assert name != full and (text == name or (name.startswith(head) and name.endswith(tail)))
    assert sum("…" in h["<text>"] for _, h, _ in heat) >= 60  # the long pod names are cut
    # Every cell says what the JSON says: allowed on some port, denied, or not checked.
    allowed = {(r["src"], r["dst"]) for r in rows if r["allowed"]}
    checked = {(r["src"], r["dst"]) for r in rows}
    for _, header, cells in heat:
        assert len(cells) == len(cols)
        for col, cell in zip(cols, cells, strict=True):
            pair = (header["title"], col["title"])
            kind = cell.get("class", "").replace("ns-start", "").strip()
            assert kind == ("y" if pair in allowed else "" if pair in checked else "u"), (pair, kind)
    assert int(dom.by_id["heatmap"]["data-allowed-pairs"]) == len(allowed)
    # Legend, axes and the filter are there.
    axes = " ".join(a["<text>"] for a in dom.by_class["axis"])
    assert "source" in axes and "destination" in axes
    legend = " ".join(x["<text>"] for x in dom.by_class["legend"])
    assert "allowed on at least one port" in legend and "not checked" in legend and "namespace" in legend
    assert int(dom.by_id["ns-filter"]["data-groups"]) == len(NAMESPACES) + 2
    # The graph: one box per namespace, every endpoint in its namespace's box.
    assert {c["data-ns"] for c in dom.by_class["cluster"]} == {*NAMESPACES, "(nodes)", "(outside)"}
    assert int(dom.by_id["graph"]["data-nodes"]) == len(names)


@needs_chromium
def test_diff_page_of_a_cluster_wide_change_fits_1400_pixels(capsys, tmp_path) -> None:
    path = write(tmp_path / "big.yaml", big_cluster(13))
    args = ["what-if", "-f", path, "--delete", f"networkpolicy/{NAMESPACES[0]}/web-from-everywhere"]
    _, out, _ = run(capsys, *args, "-o", "json")
    lost = json.loads(out)["lost"]
    _, page, _ = run(capsys, *args, "-o", "html")
    html_path = tmp_path / "diff.html"
    html_path.write_text(page)
    dom = render(html_path, window=WINDOW)
    _assert_fits(dom)
    ends = {c["src"] for c in lost} | {c["dst"] for c in lost}
    assert len(ends) > 50
    cols, heat = _heatmap_rows(dom, "diff-heatmap")
    assert {c["title"] for c in cols} == ends
    assert _grouped_runs([tr["data-ns"] for tr, _, _ in heat]) == [*sorted(NAMESPACES), "(outside)"]
    counted = {(h["title"], col["title"]): int(cell["data-lost"])
               for _, h, cells in heat for col, cell in zip(cols, cells, strict=True) if "data-lost" in cell}
    expected: dict[tuple[str, str], int] = {}
    for c in lost:
        expected[(c["src"], c["dst"])] = expected.get((c["src"], c["dst"]), 0) + 1
    assert counted == expected
    legend = " ".join(x["<text>"] for x in dom.by_class["legend"])
    assert "gained" in legend and "lost" in legend and "both" in legend
    edges = [e for e in dom.elements if "edge" in e.get("class", "").split()]
    assert len(edges) == len(expected) and {e["stroke"] for e in edges} == {"#b3261e"}  # all lost: red


@needs_chromium
def test_namespace_filter_hides_the_other_namespaces(capsys, tmp_path) -> None:
    path = write(tmp_path / "big.yaml", big_cluster())
    _, page, _ = run(capsys, "reach", "-f", path, "--outside", "-o", "html")
    html_path = tmp_path / "reach.html"
    html_path.write_text(page)
    dom = render(html_path, window=WINDOW, fragment="#ns=checkout,(outside)")
    shown = {"checkout", "(outside)"}
    assert set(dom.elements[[e["<tag>"] for e in dom.elements].index("body")]["data-shown"].split()) == shown

    def off(el: dict) -> bool:
        return "off" in el.get("class", "").split()

    cols, heat = _heatmap_rows(dom, "heatmap")
    assert all(off(c) == (c["data-ns"] not in shown) for c in cols)
    for tr, _, cells in heat:
        assert off(tr) == (tr["data-ns"] not in shown)
        assert [off(td) for td in cells] == [off(c) for c in cols]  # cells follow their column
    assert all(off(n) == (n["data-ns"] not in shown) for n in dom.by_class["node"])
    assert all(off(c) == (c["data-ns"] not in shown) for c in dom.by_class["cluster"])
    assert any(not off(n) for n in dom.by_class["node"]) and any(off(n) for n in dom.by_class["node"])
    _assert_fits(dom)  # hidden labels are not measured; the shown ones still fit


@needs_chromium
def test_fit_measurements_catch_a_page_too_wide_and_labels_outside_the_graph(capsys, tmp_path) -> None:
    path = write(tmp_path / "big.yaml", big_cluster())
    _, page, _ = run(capsys, "reach", "-f", path, "--outside", "-o", "html")
    match = re.search(r'<svg id="graph"[^>]*? width="(\d+)"[^>]*? viewBox="-4 -4 (\d+) (\d+)"', page)
    assert match
    width, height = int(match[2]), int(match[3])
    narrow = match[0].replace(f'width="{match[1]}"', f'width="{width // 2}"').replace(
        f'viewBox="-4 -4 {width} {height}"', f'viewBox="-4 -4 {width // 2} {height}"')
    broken = page.replace(match[0], narrow).replace("<h1>", '<div style="width:1700px">wide</div><h1>', 1)
    html_path = tmp_path / "broken.html"
    html_path.write_text(broken)
    dom = render(html_path, window=WINDOW)
    body = dom.elements[[e["<tag>"] for e in dom.elements].index("body")]
    assert int(body["data-page-width"]) > WINDOW[0]
    assert int(dom.by_id["graph"]["data-label-overflow"]) > 10


@needs_chromium
def test_screenshot_of_a_big_page_is_1400_pixels_wide(capsys, tmp_path) -> None:
    path = write(tmp_path / "big.yaml", big_cluster())
    _, page, _ = run(capsys, "reach", "-f", path, "--outside", "-o", "html")
    html_path = tmp_path / "reach.html"
    html_path.write_text(page)
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run",
                        f"--user-data-dir={profile}", f"--screenshot={shot}",
                        f"--window-size={WINDOW[0]},{WINDOW[1]}", html_path.as_uri()],
                       capture_output=True, timeout=120, check=False)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == WINDOW and len(data) > 20000


@needs_chromium
def test_reach_page_above_100_endpoints_shows_namespace_pairs_with_json_shares(capsys, tmp_path) -> None:
    path = write(tmp_path / "big.yaml", big_cluster(13))
    _, out, _ = run(capsys, "reach", "-f", path, "--outside", "-o", "json")
    rows = json.loads(out)["connections"]
    _, page, _ = run(capsys, "reach", "-f", path, "--outside", "-o", "html")
    html_path = tmp_path / "reach.html"
    html_path.write_text(page)
    dom = render(html_path, window=WINDOW)
    _assert_fits(dom)

    def group(name: str) -> str:
        return "(nodes)" if name.startswith("node/") else "(outside)" if name[0].isdigit() else name.split("/")[0]

    sizes: dict[str, int] = {}
    for name in {r["src"] for r in rows} | {r["dst"] for r in rows}:
        sizes[group(name)] = sizes.get(group(name), 0) + 1
    assert sum(sizes.values()) > 100
    pairs: dict[tuple[str, str], int] = {}
    for src, dst in {(r["src"], r["dst"]) for r in rows if r["allowed"]}:
        pairs[(group(src), group(dst))] = pairs.get((group(src), group(dst)), 0) + 1
    assert dom.by_id["heatmap"]["data-level"] == "namespace"
    cols, heat = _heatmap_rows(dom, "heatmap")
    assert [c["title"] for c in cols] == [*sorted(NAMESPACES), "(nodes)", "(outside)"]
    for _, header, cells in heat:
        for col, cell in zip(cols, cells, strict=True):
            a, b = header["title"], col["title"]
            count = pairs.get((a, b), 0)
            assert cell["data-v"] == f"{count / (sizes[a] * sizes[b]):.0%} of endpoint pairs allowed ({count})"


def test_diff_of_more_than_100_endpoints_counts_changes_per_namespace_pair(capsys, tmp_path) -> None:
    path = write(tmp_path / "big.yaml", big_cluster(18))
    args = ["what-if", "-f", path, "--delete", f"networkpolicy/{NAMESPACES[0]}/web-from-everywhere"]
    _, out, _ = run(capsys, *args, "-o", "json")
    lost = json.loads(out)["lost"]
    _, page, _ = run(capsys, *args, "-o", "html")
    html_path = tmp_path / "diff.html"
    html_path.write_text(page)
    dom = static(html_path)
    assert dom.by_id["diff-heatmap"]["data-level"] == "namespace"
    cols, heat = _heatmap_rows(dom, "diff-heatmap")
    assert [c["title"] for c in cols] == [*sorted(NAMESPACES), "(outside)"]
    counted = {(h["title"], col["title"]): int(cell["data-lost"])
               for _, h, cells in heat for col, cell in zip(cols, cells, strict=True) if "data-lost" in cell}

    def group(name: str) -> str:
        return "(outside)" if name[0].isdigit() else name.split("/")[0]

    expected: dict[tuple[str, str], int] = {}
    for c in lost:
        expected[(group(c["src"]), group(c["dst"]))] = expected.get((group(c["src"]), group(c["dst"])), 0) + 1
    assert counted == expected and sum(expected.values()) == len(lost)
    assert len({c["src"] for c in lost} | {c["dst"] for c in lost}) > 100
