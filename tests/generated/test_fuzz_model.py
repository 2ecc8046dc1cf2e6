"""Random scenarios for differential testing: always valid, seeded, and simulated without errors."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from conformance.fuzz_model import RandomChooser, scenario, strategy
from conformance.scenario import parse_scenario
from conformance.state import materialize
from kube.model import Source
from simulator import semantics
from simulator.engine import Simulator


def check(doc: dict) -> int:
    """Load ``doc``, simulate every step and check each verdict against the reference
    semantics; the number of probes it made."""
    loaded, errors = parse_scenario(doc, Source("<test>"))
    assert errors == [], errors
    assert loaded is not None
    probes = 0
    for state, step in zip(loaded.states(), loaded.steps, strict=True):
        cluster, _ = materialize(state, state.workloads())
        sim = Simulator(cluster)
        for src in cluster.pods:
            for dst in cluster.pods:
                for port in step.ports:
                    assert sim.allowed(src, dst, port) == semantics.allowed(cluster, src, dst, port), (
                        step.index, src.key, dst.key, str(port))
                    probes += 1
    return probes


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy())
def test_drawn_scenarios_load_and_simulate(doc: dict) -> None:
    check(doc)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy(model=True))
def test_drawn_policies_over_the_model_load(doc: dict) -> None:
    loaded, errors = parse_scenario(doc, Source("<test>"))
    assert errors == [] and loaded is not None


def test_seeded_scenarios_are_reproducible_and_varied() -> None:
    docs = [scenario(RandomChooser(seed)) for seed in range(200)]
    assert docs == [scenario(RandomChooser(seed)) for seed in range(200)]
    assert all(check(d) > 0 for d in docs[:20])
    # The draws reach every shape the differential test relies on.
    text = repr(docs)
    for needle in (
        "ipBlock",
        "except",
        "endPort",
        "'web'",
        "SCTP",
        "NotIn",
        "DoesNotExist",
        "'delete'",
        "'label'",
        "'add'",
        "policyTypes",
        "10.244.7.",
    ):
        assert needle in text, needle
    assert {len(d["steps"]) for d in docs} == {1, 2, 3}
