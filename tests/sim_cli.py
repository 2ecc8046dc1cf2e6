"""Run the ``npm-sim`` CLI in process, for the simulator and what-if tests."""

from __future__ import annotations

import pytest

from simulator.cli import main


def run_npm_sim(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``npm-sim ARGV`` in process: (exit code, stdout, stderr)."""
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err
