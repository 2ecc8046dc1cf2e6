"""The simulator against the real dataplane (netns, real enforcer daemons) on random clusters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.backends.netns import BARRIER_NAMESPACE
from conformance.fuzz import Differential, fuzz
from conformance.scenario import load_scenarios

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


def test_simulator_and_dataplane_agree_on_random_clusters(tmp_path: Path) -> None:
    report = fuzz(10, seed=20240, out_dir=tmp_path)
    assert report.disagreement is None, f"reproduce: npm-conformance run -f {report.reproducer}\n{report.disagreement}"
    assert report.cases == 10 and report.probes > 0
    assert not list(tmp_path.iterdir())


def ignore_egress_policies(_node: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A broken enforcer: it never sees a policy that says Egress in policyTypes."""
    return [
        d
        for d in docs
        if not (
            d.get("kind") == "NetworkPolicy"
            and d["metadata"]["namespace"] != BARRIER_NAMESPACE
            and "Egress" in (d["spec"].get("policyTypes") or [])
        )
    ]


def test_a_disagreement_is_shrunk_to_a_reproducing_scenario(tmp_path: Path) -> None:
    report = fuzz(
        20,
        seed=1,
        out_dir=tmp_path,
        max_steps=1,
        converge_timeout=3.0,
        shrink_budget=50,
        manifest_filter=ignore_egress_policies,
    )
    assert report.disagreement is not None and report.reproducer is not None and report.first is not None
    doc = yaml.safe_load(report.reproducer.read_text())

    def size(d: dict[str, Any]) -> tuple[int, int]:
        return len(d["policies"]), len(yaml.safe_dump(d))

    # Shrunk (never larger than as found), and it has what the broken enforcer drops.
    assert size(doc) <= size({**report.first.doc, "name": doc["name"], "tags": doc["tags"]})
    assert any("Egress" in p["spec"].get("policyTypes", []) for p in doc["policies"])
    assert len(doc["steps"]) == 1
    scenarios, errors = load_scenarios([str(report.reproducer)])
    assert errors == [] and len(scenarios) == 1
    # The file reproduces the disagreement with the broken enforcer, and not with the real one.
    with Differential(manifest_filter=ignore_egress_policies) as broken:
        mismatches, _ = broken.check(doc)
        assert mismatches
    with Differential() as real:
        assert real.check(doc) == ([], [])
