"""The generated catalogue: cyclonus's 230 cases and ours, tags, files, and what the cases mean."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from conformance import generate_cases as gc
from conformance.cli_generate import random_cases
from conformance.generate import ALL_TAGS, PRIMARY_OF, case, select, step, write_cases
from conformance.generate_cnp_cases import cnp_cases
from conformance.runner import probe_requests
from conformance.scenario import load_scenarios
from conformance.state import materialize
from kube.model import PortSpec
from simulator.engine import Simulator


def states(path: Path) -> list[Simulator]:
    """The simulator of each step of the scenario in ``path``."""
    scenarios, errors = load_scenarios([str(path)])
    assert not errors, errors
    out = []
    for state in scenarios[0].states():
        cluster, _ = materialize(state, state.workloads())
        out.append(Simulator(cluster))
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every fixed case written once: title -> file."""
    out = tmp_path_factory.mktemp("generated")
    cases = gc.all_cases()
    paths = write_cases(cases, out)
    return {c.title: p for c, p in zip(cases, paths, strict=True)}


def test_cyclonus_families_have_cyclonus_sizes() -> None:
    sizes = {
        "targets": len(list(gc.target_cases())),
        "rules": len(list(gc.rule_cases())),
        "peers": len(list(gc.peer_cases())),
        "ports": len(list(gc.port_cases())),
        "example": len(list(gc.example_cases())),
        "actions": len(list(gc.action_cases())),
        "conflicts": len(list(gc.conflict_cases())),
        "namespaces": len(list(gc.namespace_cases())),
        "upstream": len(list(gc.upstream_cases())),
    }
    # 3 namespaces + 3 selectors; deny/allow x 2 directions; 2 + 2x10 + 2x45 peers;
    # 2 + 2x(24+3) + 2x7 ports; 6 actions; 16 conflict stacks; 2; 13 upstream e2e cases.
    assert sizes == {
        "targets": 6,
        "rules": 4,
        "peers": 112,
        "ports": 70,
        "example": 1,
        "actions": 6,
        "conflicts": 16,
        "namespaces": 2,
        "upstream": 13,
    }
    assert len(gc.cyclonus_cases()) == 230
    assert all("cyclonus" in c.tags for c in gc.cyclonus_cases())
    assert len(gc.extra_cases()) > 50 and all("extra" in c.tags for c in gc.extra_cases())


def test_every_case_loads_as_a_scenario_with_a_unique_name(written: dict[str, Path]) -> None:
    scenarios, errors = load_scenarios([str(next(iter(written.values())).parent)])
    assert errors == []
    assert len({c.title for c in gc.all_cases()}) == len(gc.all_cases())
    assert len(scenarios) == len(written) == len({s.name for s in scenarios})
    assert all(s.steps and "generated" in s.tags for s in scenarios)


def test_tags_are_known_and_carry_their_primary() -> None:
    counts: Counter[str] = Counter()
    for c in gc.all_cases() + cnp_cases():  # the ClusterNetworkPolicy ones come with --cnp
        assert set(c.tags) <= ALL_TAGS, c.title
        for tag in c.tags:
            counts[tag] += 1
            if tag in PRIMARY_OF:
                assert PRIMARY_OF[tag] in c.tags, (c.title, tag)
    # Every subordinate tag is exercised by at least one fixed case (random is by seed).
    unused = {t for t in PRIMARY_OF if counts[t] == 0} - {"random"}
    assert unused == set()


def test_include_and_exclude_select_by_any_tag() -> None:
    cases = gc.all_cases()
    ipblock = select(cases, ["peer-ipblock"])
    assert ipblock and all("peer-ipblock" in c.tags for c in ipblock)
    both = select(cases, ["udp", "sctp"], ["egress"])
    assert both and all({"udp", "sctp"} & set(c.tags) and "egress" not in c.tags for c in both)
    assert len(select(cases, exclude=["cyclonus"])) == len(cases) - 230
    with pytest.raises(ValueError, match=r"unknown tag.*nope"):
        select(cases, ["nope"])


def test_random_cases_are_deterministic_by_seed() -> None:
    first = [c.scenario(1) for c in random_cases(5, seed=7)]
    assert first == [c.scenario(1) for c in random_cases(5, seed=7)]
    assert first != [c.scenario(1) for c in random_cases(5, seed=8)]


def test_writing_replaces_generated_files_and_keeps_others(tmp_path: Path) -> None:
    (tmp_path / "hand-written.yaml").write_text("name: mine\n")
    write_cases(gc.all_cases()[:5], tmp_path)
    write_cases(gc.all_cases()[:2], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir())[-1] == "hand-written.yaml"
    assert len(list(tmp_path.glob("g*.yaml"))) == 2


def test_unknown_tag_in_a_case_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown tag"):
        case("x", ["not-a-tag"], step())


# -- what the cases mean, through the simulator -------------------------------------------
TCP80, TCP81, UDP80 = PortSpec(80), PortSpec(81), PortSpec(80, "UDP")


def test_named_port_with_the_wrong_protocol_isolates_and_opens_nothing(written: dict[str, Path]) -> None:
    (sim,) = states(written["ingress: open a named port that doesn't match its protocol"])
    for src in ("x/b", "y/c", "z/a"):
        for p in (TCP80, TCP81, UDP80, PortSpec(81, "UDP")):
            assert not sim.allowed(src, "x/a", p)
    assert sim.allowed("y/b", "x/c", TCP80)


def test_ipblock_except_is_allowed_by_a_selector_peer(written: dict[str, Path]) -> None:
    (sim,) = states(written["ingress, 2-peer: pod network except x/b, and x/b by selectors"])
    assert sim.allowed("x/b", "x/a", TCP80)
    assert sim.allowed("y/c", "x/a", TCP80)
    assert not sim.allowed("y/c", "x/a", TCP81)


def test_empty_egress_list_without_policy_types_means_ingress_only(written: dict[str, Path]) -> None:
    (sim,) = states(written["policyTypes left out, egress: [] (empty list): Ingress only"])
    assert sim.allowed("x/a", "z/c", UDP80)  # egress not isolated
    assert sim.allowed("x/b", "x/a", TCP80) and not sim.allowed("x/b", "x/a", TCP81)


def test_named_port_resolves_on_each_destination(written: dict[str, Path]) -> None:
    before, after = states(written["named port resolves per pod: a pod serving serve-80-tcp on 81"])
    assert before.allowed("y/a", "x/b", TCP80) and not before.allowed("y/a", "x/b", TCP81)
    assert after.allowed("y/a", "x/d", TCP81) and not after.allowed("y/a", "x/d", TCP80)


def test_probes_cover_every_declared_port_of_the_model(written: dict[str, Path]) -> None:
    scenarios, _ = load_scenarios([str(written["set namespace to x"])])
    state = scenarios[0].states()[0]
    cluster, _ = materialize(state, state.workloads())
    requests = probe_requests(cluster, scenarios[0].steps[0])
    assert len(requests) == 9 * 9 * 6  # 80/81 on TCP, UDP and SCTP
