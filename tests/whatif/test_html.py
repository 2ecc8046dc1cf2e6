"""HTML reports render in headless Chromium and show the same numbers as the JSON output."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from whatif_helpers import ALLOW_DB, BASE, run, write

from kube.manifests import policy

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium; .ci/setup should install it)"
)


class Ids(HTMLParser):
    """Collects the attributes of every element that has an id, and elements by class."""

    def __init__(self) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str]] = {}
        self.by_class: dict[str, list[dict[str, str]]] = {}

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = {k: v or "" for k, v in attrs}
        if "id" in a:
            self.by_id[a["id"]] = a
        for cls in a.get("class", "").split():
            self.by_class.setdefault(cls, []).append(a)


def render(path: Path) -> Ids:
    """The DOM after Chromium loaded the page (scripts ran, no network)."""
    with tempfile.TemporaryDirectory() as profile:
        proc = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--dump-dom", path.as_uri()],
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
