"""Generated cases and regression scenarios on the netns dataplane (real enforcer daemons)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.backends.netns import NetnsBackend
from conformance.generate import covering, write_cases
from conformance.generate_cases import all_cases
from conformance.runner import Runner
from conformance.scenario import load_scenarios

pytestmark = [pytest.mark.kernel, pytest.mark.slow]
REGRESSIONS = Path(__file__).resolve().parents[2] / "scenarios" / "regressions"


def run_all(paths: list[str]) -> list[str]:
    """Run every scenario under ``paths`` on one netns backend; the failures, described."""
    scenarios, errors = load_scenarios(paths)
    assert errors == []
    backend = NetnsBackend()
    try:
        results = Runner(backend).run(scenarios)
    finally:
        backend.close()
    failed = []
    for result in results:
        for step in result.steps:
            failed += [f"{result.name} step {step.index + 1}: {step.error}"] if step.error else []
            failed += [
                f"{result.name} step {p.step + 1}: {p.src} -> {p.dst} {p.port}: predicted {p.predicted}, "
                f"observed {p.observed}"
                for p in step.mismatches
            ]
    return failed


def test_a_covering_set_of_generated_cases_agrees_with_the_simulator(tmp_path: Path) -> None:
    cases = covering(all_cases())
    assert 10 <= len(cases) <= 30
    write_cases(cases, tmp_path)
    assert run_all([str(tmp_path)]) == []


@pytest.mark.skipif(not any(REGRESSIONS.glob("**/*.yaml")), reason="no regression scenario yet")
def test_regression_scenarios_agree_with_the_simulator() -> None:
    assert run_all([str(REGRESSIONS)]) == []
