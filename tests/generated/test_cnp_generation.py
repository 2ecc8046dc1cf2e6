"""ClusterNetworkPolicy dimensions of the generator and the fuzzer (``--cnp``): valid, varied,
and off by default without changing what a seed gave before."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from conformance.cli import main
from conformance.cli_generate import random_cases
from conformance.fuzz import build_parser
from conformance.fuzz_model import RandomChooser, scenario, strategy
from conformance.generate import TAG_GROUPS, write_cases
from conformance.generate_cases import all_cases
from conformance.generate_cnp_cases import cnp_cases
from conformance.scenario import load_scenarios, parse_scenario
from kube.model import Source
from tests.generated.test_fuzz_model import check


def digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def test_without_cnp_every_seed_gives_what_it_gave_before():
    # Digests of the output before the ClusterNetworkPolicy dimensions existed (main at 9a5e5f3).
    assert digest([scenario(RandomChooser(s)) for s in range(100)]) == (
        "8696d9aa0cc5421e87de20f72d8008396b91cb0d55621fea3a85d7828e2163a4"
    )
    assert digest([scenario(RandomChooser(s), model=True) for s in range(100)]) == (
        "f8562c1dcc54afd2bb4ddefb03b57846950ea50c2907e2a9608f264b528194b2"
    )
    cases = [c.scenario(i) for i, c in enumerate(all_cases() + random_cases(20, 0), 1)]
    assert digest(cases) == "fdaf84ae4aa7aa80278cddbca1f27c7e149a92bd9693e761618b545df219f495"


def test_the_cnp_catalogue_loads_and_carries_every_cnp_tag(tmp_path: Path):
    cases = cnp_cases()
    write_cases(cases, tmp_path)
    scenarios, errors = load_scenarios([str(tmp_path)])
    assert errors == [] and len(scenarios) == len(cases) >= 25
    assert all(s.initial.cluster_policies or s.steps[0].actions for s in scenarios)
    carried = {t for c in cases for t in c.tags}
    assert set(TAG_GROUPS["cnp"]) <= carried
    # The fail-closed cases say what they do instead, as every tool does.
    notes = [n for s in scenarios for n in s.notes]
    assert any("domainNames: not supported" in n and "matches no traffic" in n for n in notes)
    assert any("serviceAccounts: not supported" in n and "treated as denying" in n for n in notes)


def test_random_cnp_scenarios_are_valid_and_reach_every_dimension():
    docs = [scenario(RandomChooser(s), cnp=True) for s in range(150)]
    docs += [scenario(RandomChooser(s), model=True, cnp=True, future_peers=False) for s in range(150)]
    for doc in docs:
        loaded, errors = parse_scenario(doc, Source("<test>"))
        assert errors == [] and loaded is not None
    text = repr(docs)
    for needle in (
        "'Pass'", "'Accept'", "'Deny'", "'Baseline'", "'Admin'", "'networks'", "'nodes'", "'domainNames'",
        "'serviceAccounts'", "'range'", "'destinationNamedPort'", "'hostNetwork'", "'clusterNetworkPolicy'",
        "'zone': 'a'",
    ):
        assert needle in text, needle
    # Equal priorities in one tier are common, not a rarity.
    equal = 0
    for doc in docs:
        seen = [(p["spec"]["tier"], p["spec"]["priority"]) for p in doc["policies"] if p.get("kind")]
        equal += len(seen) != len(set(seen))
    assert equal >= 10
    # An API server would refuse a peer field v1alpha2 lacks: the generator never writes one.
    assert "serviceAccounts" not in repr(docs[150:])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy(cnp=True))
def test_drawn_cnp_scenarios_load_and_simulate(doc: dict) -> None:
    check(doc)


def run_generate(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["generate", *argv])
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_cnp_adds_the_catalogue_and_cnp_random_cases(capsys: pytest.CaptureFixture[str]):
    code, out, _ = run_generate(capsys, "--list", "-o", "json", "--cnp", "--include", "cnp", "--random", "3")
    listed = json.loads(out)
    assert code == 0 and len(listed) == len(cnp_cases()) + 3
    assert sum("random" in c["tags"] for c in listed) == 3
    code, out, _ = run_generate(capsys, "--tags", "-o", "json", "--random", "0")
    assert code == 0 and "cnp-admin" not in json.loads(out)  # without --cnp, --tags lists what it always listed
    code, _, err = run_generate(capsys, "--list", "--include", "cnp-pass")
    assert code == 2 and "need --cnp" in err


def test_the_fuzzer_takes_cnp():
    assert build_parser().parse_args(["--cnp"]).cnp and not build_parser().parse_args([]).cnp
