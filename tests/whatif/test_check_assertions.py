"""npm-sim check: assertions a team keeps next to its manifests, with CI exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import yaml
from whatif_helpers import run

from kube import manifests as m
from tests.model.test_workloads import workload

CLUSTER = [
    m.namespace("storefront"),
    m.namespace("payments"),
    workload("Deployment", "storefront", "frontend", {"app": "frontend"}, ports=(8080,)),
    workload("StatefulSet", "payments", "postgres", {"app": "postgres"}, ports=(5432,)),
    workload("Deployment", "payments", "checkout", {"app": "checkout"}, ports=(8443,)),
    m.policy("payments", "db-from-checkout", {
        "podSelector": {"matchLabels": {"app": "postgres"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "checkout"}}}], "ports": [{"port": 5432}]}],
    }),
]
NEVER = {"name": "storefront never reaches the payments database", "from": "storefront/*",
         "to": "payments/postgres[StatefulSet]", "port": "5432/TCP", "expect": "deny"}
REACHES = {"name": "checkout reaches the database", "from": {"namespace": "payments",
                                                             "selector": {"matchLabels": {"app": "checkout"}}},
           "to": "payments/postgres[StatefulSet]", "port": 5432, "expect": "allow"}


def files(tmp_path: Path, assertions: list[dict], cluster: list[dict] = CLUSTER) -> tuple[str, str]:
    (tmp_path / "c.yaml").write_text(yaml.safe_dump_all(cluster))
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({"assertions": assertions}))
    return str(tmp_path / "c.yaml"), str(tmp_path / "a.yaml")


def test_assertions_that_hold_exit_0(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    c, a = files(tmp_path, [NEVER, REACHES])
    code, out, err = run(capsys, "check", "-f", c, "--assertions", a, "-o", "json")
    assert code == 0, err
    doc = json.loads(out)
    assert [(x["name"], x["holds"], x["pairs"]) for x in doc["assertions"]] == [
        (NEVER["name"], True, 1), (REACHES["name"], True, 1)]


def test_a_broken_assertion_exits_1_and_names_the_rule_behind_the_violation(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    opened = [*CLUSTER, m.policy("payments", "db-from-all", {
        "podSelector": {"matchLabels": {"app": "postgres"}},
        "ingress": [{"from": [{"namespaceSelector": {}}]}]})]
    c, a = files(tmp_path, [NEVER], opened)
    code, out, _err = run(capsys, "check", "-f", c, "--assertions", a, "-o", "json")
    assert code == 1
    (result,) = json.loads(out)["assertions"]
    (v,) = result["violations"]
    assert (v["src"], v["dst"], v["port"], v["allowed"]) == (
        "storefront/frontend[Deployment]", "payments/postgres[StatefulSet]", 5432, True)
    assert any("payments/db-from-all" in b for b in v["because"])
    code, out, _err = run(capsys, "check", "-f", c, "--assertions", a, "-o", "junit")
    suite = ET.fromstring(out)
    assert suite.get("failures") == "1" and suite.find("testcase/failure") is not None


def test_a_named_port_resolves_on_the_destination(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    cluster = [m.namespace("shop"),
               m.pod("shop", "api", {"app": "api"}, ip="10.244.0.5", ports=[m.container_port(9000, name="grpc")]),
               m.pod("shop", "web", {"app": "web"}, ip="10.244.0.6")]
    c, a = files(tmp_path, [{"name": "web reaches api", "from": "shop/web", "to": "shop/api", "port": "grpc",
                             "expect": "allow"}], cluster)
    code, out, err = run(capsys, "check", "-f", c, "--assertions", a, "-o", "json")
    assert code == 0, err
    assert json.loads(out)["assertions"][0]["pairs"] == 1


def test_an_assertion_naming_nothing_is_bad_input_with_suggestions(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    c, a = files(tmp_path, [{**NEVER, "to": "payments/postgress[StatefulSet]"}])
    code, _out, err = run(capsys, "check", "-f", c, "--assertions", a)
    assert code == 2
    assert "names no pod, workload or namespace" in err and "did you mean payments/postgres[StatefulSet]" in err


def test_what_if_reports_the_assertions_a_change_breaks_and_exits_1(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    c, a = files(tmp_path, [NEVER, REACHES])
    opening = tmp_path / "open.yaml"
    opening.write_text(yaml.safe_dump(m.policy("payments", "db-from-all", {
        "podSelector": {"matchLabels": {"app": "postgres"}}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})))
    code, out, err = run(capsys, "what-if", "-f", c, "--apply", str(opening), "--assertions", a, "-o", "json")
    assert code == 1, err
    checked = {x["name"]: x for x in json.loads(out)["assertions"]}
    assert checked[NEVER["name"]]["broken"] is True and checked[REACHES["name"]]["broken"] is False
    code, out, _err = run(capsys, "what-if", "-f", c, "--apply", str(opening), "--assertions", a)
    assert code == 1 and f"BROKEN {NEVER['name']}" in out
