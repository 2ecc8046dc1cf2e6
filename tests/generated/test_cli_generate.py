"""`npm-conformance generate`: files, listing, tags, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.scenario import load_scenarios


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``npm-conformance generate ARGV``; argparse usage errors exit via SystemExit."""
    try:
        code = main(["generate", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_writes_loadable_scenarios_deterministically(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--out", str(tmp_path / "a"), "--seed", "3", "--random", "4")
    assert code == 0 and "wrote 314 cases" in err
    run(capsys, "--out", str(tmp_path / "b"), "--seed", "3", "--random", "4")
    files_a = sorted((tmp_path / "a").iterdir())
    assert [p.read_text() for p in files_a] == [p.read_text() for p in sorted((tmp_path / "b").iterdir())]
    scenarios, errors = load_scenarios([str(tmp_path / "a")])
    assert errors == [] and len(scenarios) == 314
    assert "# Tags:" in files_a[0].read_text().splitlines()[1]


def test_list_with_include_and_exclude(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--list", "-o", "json", "--include", "cyclonus", "--exclude", "peer-pods", "action")
    listed = json.loads(out)
    assert code == 0 and listed
    assert all("cyclonus" in c["tags"] and not {"peer-pods", "action"} & set(c["tags"]) for c in listed)
    code, out, _ = run(capsys, "--list", "--include", "cyclonus")
    assert code == 0 and len(out.splitlines()) == 230


def test_tags_counts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--tags", "-o", "json", "--random", "0")
    counts = json.loads(out)
    assert code == 0 and counts["cyclonus"] == 230 and counts["random"] == 0 and counts["peer-ipblock"] > 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--include", "nope"], "unknown tag(s): nope"),
        (["--include", "cyclonus", "--exclude", "origin"], "no case left"),
        (["--random", "-1"], "--random must be 0 or more"),
    ],
)
def test_bad_usage_exits_2(capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    code, _, err = run(capsys, "--list", *argv)
    assert code == 2 and message in err
