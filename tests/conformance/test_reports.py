"""Report shapes: the JSON contract, upstream-style truth tables, JUnit, the summary line."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from conformance.report import dumps_json, junit_report, summarize, table_report, truth_table
from conformance.results import ProbeResult, ScenarioResult, StepResult
from kube.model import PortSpec

KEYS = ["x/a", "x/b"]


def result(mismatch: bool = False, sctp: bool = False) -> ScenarioResult:
    port = PortSpec(80, "SCTP" if sctp else "TCP")
    probes = []
    for src in KEYS:
        for dst in KEYS:
            predicted = not (src == "x/b" and dst == "x/a")
            observed = None if sctp else (not predicted if mismatch and src != dst else predicted)
            probes.append(ProbeResult(0, src, dst, port, predicted, observed))
    step = StepResult(0, "first", probes, converged_seconds=None if mismatch else 0.25, seconds=0.5)
    return ScenarioResult("demo", "demo.yaml", [step], seconds=0.5)


def test_json_has_exactly_the_contract_keys():
    doc = json.loads(dumps_json([result()]))
    assert list(doc) == ["scenarios"]
    (sc,) = doc["scenarios"]
    assert sc["name"] == "demo"
    assert len(sc["results"]) == 4  # every ordered pair, a pod with itself included
    for entry in sc["results"]:
        assert list(entry) == ["step", "src", "dst", "port", "protocol", "predicted", "observed"]
    assert sc["results"][1] == {
        "step": 0,
        "src": "x/a",
        "dst": "x/b",
        "port": 80,
        "protocol": "TCP",
        "predicted": True,
        "observed": True,
    }
    assert sc["steps"][0]["step"] == 0 and sc["steps"][0]["converged_seconds"] == 0.25


def test_json_skipped_probe_is_null():
    doc = json.loads(dumps_json([result(sctp=True)]))
    assert {e["observed"] for e in doc["scenarios"][0]["results"]} == {None}
    assert {e["protocol"] for e in doc["scenarios"][0]["results"]} == {"SCTP"}


def test_truth_table_marks_like_upstream():
    text = truth_table(KEYS, {("x/a", "x/a"): True, ("x/a", "x/b"): False, ("x/b", "x/a"): None})
    assert text.splitlines() == ["-\tx/a\tx/b", "x/a\t.\tX", "x/b\t?\t?"]


def test_table_report_shows_only_failures_unless_verbose():
    ok = table_report([result()])
    assert ok.startswith("PASS demo") and "expected" not in ok
    assert "expected (simulator)" in table_report([result()], verbose=True)
    bad = table_report([result(mismatch=True)])
    assert bad.startswith("FAIL demo")
    assert "did not converge" in bad
    lines = bad.splitlines()
    comparison = lines[lines.index("  comparison ('.' agrees, 'X' differs):") + 1 :]
    assert comparison[:3] == ["    -\tx/a\tx/b", "    x/a\t.\tX", "    x/b\tX\t."]
    assert "correct 2, incorrect 2" in bad


def test_loopback_differences_are_ignored():
    sc = result()
    p = sc.steps[0].probes[0]
    sc.steps[0].probes[0] = ProbeResult(p.step, p.src, p.dst, p.port, False, True)
    assert sc.passed


def test_junit_one_case_per_step_with_tables_on_failure():
    xml = junit_report([result(mismatch=True), result(sctp=True)])
    root = ET.fromstring(xml)
    suite = root.find("testsuite")
    assert suite.get("tests") == "2" and suite.get("failures") == "1" and suite.get("skipped") == "1"
    failure = suite.find("testcase/failure")
    assert failure.get("message") == "2 probes disagree"
    assert "comparison" in failure.text
    assert suite.findall("testcase")[1].find("skipped") is not None


def test_summary_counts():
    s = summarize([result(), result(mismatch=True), result(sctp=True)], 1.5)
    assert (s.scenarios, s.passed, s.probes, s.mismatches, s.skipped) == (3, 2, 12, 2, 4)
    assert s.line() == "3 scenarios (2 passed, 1 failed), 12 probes, 2 mismatches, 4 skipped, 1.5s"
