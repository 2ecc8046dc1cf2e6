"""SARIF and GitHub annotations from lint and check, the SARIF validated against the official schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml
from test_check_assertions import CLUSTER, NEVER, files
from whatif_helpers import run

from kube import manifests as m

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "sarif" / "sarif-2.1.0-rtm.5.json").read_text())
OPENED = [*CLUSTER, m.policy("payments", "db-from-all", {
    "podSelector": {"matchLabels": {"app": "postgres"}}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})]


def valid_sarif(text: str) -> dict:
    log = json.loads(text)
    jsonschema.Draft4Validator(SCHEMA).validate(log)  # the official schema is draft-04
    return log


def test_lint_sarif_validates_and_points_at_the_policy_file(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "policies.yaml"
    path.write_text(yaml.safe_dump_all([m.namespace("x"), m.pod("x", "a", {"app": "a"}, ip="10.244.0.5"),
                                        m.policy("x", "ghost", {"podSelector": {"matchLabels": {"app": "nope"}}})]))
    code, out, err = run(capsys, "lint", "-f", str(path), "-o", "sarif")
    assert code == 0, err
    log = valid_sarif(out)
    results = log["runs"][0]["results"]
    ghost = [r for r in results if r["ruleId"] == "selects-no-pod"]
    assert ghost and ghost[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == str(path)
    assert {r["id"] for r in log["runs"][0]["tool"]["driver"]["rules"]} >= {"selects-no-pod"}


def test_check_sarif_and_github_annotations_name_the_broken_assertion(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    c, a = files(tmp_path, [NEVER], OPENED)
    code, out, _err = run(capsys, "check", "-f", c, "--assertions", a, "-o", "sarif")
    assert code == 1
    (result,) = valid_sarif(out)["runs"][0]["results"]
    assert result["ruleId"] == "assertion" and NEVER["name"] in result["message"]["text"]
    code, out, _err = run(capsys, "check", "-f", c, "--assertions", a, "-o", "github")
    assert code == 1
    (line,) = out.splitlines()
    assert line.startswith(f"::error file={a},line=2,title=assertion::") and "payments/db-from-all" in line
    assert result["locations"][0]["physicalLocation"]["region"] == {"startLine": 2}


def test_every_lint_kind_has_a_summary_for_sarif() -> None:
    import re

    from simulator.lint_kinds import KINDS, SUMMARIES

    assert set(re.findall(r"^- ``([a-z-]+)``", KINDS, re.M)) == set(SUMMARIES)


def _lines_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_lint_points_at_the_line_a_policy_starts_on_in_a_stream_and_in_a_list(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ghost = m.policy("x", "ghost", {"podSelector": {"matchLabels": {"app": "nope"}}})
    stream = tmp_path / "stream.yaml"
    stream.write_text(yaml.safe_dump_all([m.namespace("x"), m.pod("x", "a", {"app": "a"}, ip="10.244.0.5"), ghost]))
    listed = tmp_path / "list.yaml"
    listed.write_text("# a dump\n" + yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": [
        m.namespace("x"), m.pod("x", "a", {"app": "a"}, ip="10.244.0.5"), ghost]}))
    for path in (stream, listed):
        code, out, err = run(capsys, "lint", "-f", str(path), "-o", "github")
        assert code == 0, err
        (line,) = [x for x in out.splitlines() if "selects-no-pod" in x]
        text = path.read_text()
        # the object starts at its first key (safe_dump sorts keys: apiVersion first)
        start = _lines_of(text, "name: ghost")
        expected = max(i for i, x in enumerate(text.splitlines()[:start], 1) if "apiVersion" in x)
        assert line.startswith(f"::warning file={path},line={expected},title=selects-no-pod::"), line


def test_lint_from_a_json_list_names_the_file_without_a_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "dump.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        m.namespace("x"), m.policy("x", "ghost", {"podSelector": {"matchLabels": {"app": "nope"}}})]}, indent=1))
    _code, out, _err = run(capsys, "lint", "-f", str(path), "-o", "sarif")
    (ghost,) = [r for r in valid_sarif(out)["runs"][0]["results"] if r["ruleId"] == "selects-no-pod"]
    assert ghost["locations"][0]["physicalLocation"] == {"artifactLocation": {"uri": str(path)}}


IGNORED_GHOST = {**m.policy("x", "ghost", {"podSelector": {"matchLabels": {"app": "nope"}}})}
IGNORED_GHOST["metadata"] = {**IGNORED_GHOST["metadata"], "annotations": {"npm-sim.io/ignore": "selects-no-pod"}}


def test_an_annotation_suppresses_that_rule_on_that_policy_and_says_so(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    other = m.policy("x", "other", {"podSelector": {"matchLabels": {"app": "nope2"}}})
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump_all([m.namespace("x"), m.pod("x", "a", {"app": "a"}, ip="10.244.0.5"),
                                        IGNORED_GHOST, other]))
    code, out, err = run(capsys, "lint", "-f", str(path), "-o", "json", "--fail-on", "warning")
    assert code == 1  # "other" still fails
    doc = json.loads(out)
    assert [f["policy"] for f in doc["findings"] if f["kind"] == "selects-no-pod"] == ["x/other"]
    (s,) = doc["suppressed"]
    assert (s["policy"], s["kind"], s["suppressed_by"]) == ("x/ghost", "selects-no-pod", "annotation")
    assert "1 finding(s) suppressed (1 by annotation, 0 by config)" in err
    code, out, _err = run(capsys, "lint", "-f", str(path), "-o", "sarif")
    results = valid_sarif(out)["runs"][0]["results"]
    (sup,) = [r for r in results if r.get("suppressions")]
    assert sup["suppressions"][0]["kind"] == "inSource" and "x/ghost" in sup["message"]["text"]
    code, out, _err = run(capsys, "lint", "-f", str(path), "-o", "github")
    assert "x/ghost" not in out and "x/other" in out


def test_a_namespace_annotation_covers_its_policies_and_unknown_ids_are_reported(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    ns = m.namespace("x")
    ns["metadata"]["annotations"] = {"npm-sim.io/ignore": "all, no-such-rule"}
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump_all([ns, m.pod("x", "a", {"app": "a"}, ip="10.244.0.5"),
                                        m.policy("x", "ghost", {"podSelector": {"matchLabels": {"app": "nope"}}})]))
    _code, out, err = run(capsys, "lint", "-f", str(path), "-o", "json")
    doc = json.loads(out)
    assert not [f for f in doc["findings"] if f["namespace"] == "x" or f["policy"].startswith("x/")]
    assert doc["suppressed"] and "no-such-rule" in err and "Namespace x" in err


def test_a_config_file_suppresses_by_rule_namespace_and_policy(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump_all([
        m.namespace("x"), m.namespace("y"), m.pod("x", "a", {"app": "a"}, ip="10.244.0.5"),
        m.pod("y", "b", {"app": "b"}, ip="10.244.0.6"),
        m.policy("x", "ghost", {"podSelector": {"matchLabels": {"app": "nope"}}}),
        m.policy("y", "ghost", {"podSelector": {"matchLabels": {"app": "nope"}}})]))
    config = tmp_path / "lint.yaml"
    config.write_text(yaml.safe_dump({"ignore": [
        {"rule": "selects-no-pod", "policy": "x/ghost", "reason": "reviewed in SEC-1"},
        {"rule": "unprotected-namespace", "namespace": "y"}]}))
    code, out, _err = run(capsys, "lint", "-f", str(path), "--config", str(config), "-o", "json")
    assert code == 0
    doc = json.loads(out)
    assert {(f["kind"], f["policy"]) for f in doc["findings"] if f["kind"] == "selects-no-pod"} == {
        ("selects-no-pod", "y/ghost")}
    assert {(s["kind"], s["justification"]) for s in doc["suppressed"]} >= {("selects-no-pod", "reviewed in SEC-1")}
    code, out, _err = run(capsys, "lint", "-f", str(path), "--config", str(config), "-o", "sarif")
    kinds = {r["suppressions"][0]["kind"] for r in valid_sarif(out)["runs"][0]["results"] if r.get("suppressions")}
    assert kinds == {"external"}


def test_a_bad_config_file_is_a_located_usage_error(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump_all([m.namespace("x")]))
    config = tmp_path / "lint.yaml"
    config.write_text(yaml.safe_dump({"ignore": [{"rule": "selects-no-pods"}]}))
    code, _out, err = run(capsys, "lint", "-f", str(path), "--config", str(config))
    assert code == 2 and f"{config} ignore[0].rule" in err and "selects-no-pod" in err and "Traceback" not in err


def test_diff_sarif_points_a_new_deployment_at_its_manifest_and_a_policy_edit_at_the_policy(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from tests.model.test_workloads import workload

    base = [m.namespace("shop"), workload("Deployment", "shop", "web", {"app": "web"}, ports=(80,)),
            m.policy("shop", "web-from-api", {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}]}]})]
    before = tmp_path / "before.yaml"
    before.write_text(yaml.safe_dump_all(base))
    api = workload("Deployment", "shop", "api", {"app": "api"}, ports=(8080,))
    after_dir = tmp_path / "after"
    after_dir.mkdir()
    (after_dir / "base.yaml").write_text(yaml.safe_dump_all(base))
    (after_dir / "api.yaml").write_text("# the new service\n---\n" + yaml.safe_dump(api))
    code, out, err = run(capsys, "diff", "--before", str(before), "--after", str(after_dir), "-o", "sarif",
                         "--fail-on", "gained")
    assert code == 1, err
    results = valid_sarif(out)["runs"][0]["results"]
    gained = [r for r in results if r["ruleId"] == "connection-gained" and "shop/api[Deployment] -> shop/web" in
              r["message"]["text"]]
    assert gained, [r["message"]["text"] for r in results]
    where = gained[0]["locations"][0]["physicalLocation"]
    assert where["artifactLocation"]["uri"] == str(after_dir / "api.yaml") and where["region"]["startLine"] == 3
    # relabelling nothing, but editing the policy: the policy's manifest answers for it
    edited = [*base[:2], m.policy("shop", "web-from-api", {"podSelector": {"matchLabels": {"app": "web"}},
                                                            "ingress": []}), api]
    after = tmp_path / "edited.yaml"
    after.write_text(yaml.safe_dump_all(edited))
    with_api = tmp_path / "with_api.yaml"
    with_api.write_text(yaml.safe_dump_all([*base, api]))
    code, out, err = run(capsys, "diff", "--before", str(with_api), "--after", str(after), "-o", "github",
                         "--port", "80/TCP")
    lines = [x for x in out.splitlines() if "connection-lost" in x and "shop/api[Deployment] -> shop/web" in x]
    assert lines, out
    policy_line = _lines_of(after.read_text(), "name: web-from-api")
    assert f"file={after},line=" in lines[0]
    line = int(lines[0].split("line=", 1)[1].split(",", 1)[0])
    between = "\n".join(after.read_text().splitlines()[line - 1:policy_line])
    assert line <= policy_line and "kind: NetworkPolicy" in between


def test_what_if_github_reports_the_assertion_a_change_breaks(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    c, a = files(tmp_path, [NEVER])
    opener = tmp_path / "open.yaml"
    opener.write_text(yaml.safe_dump(OPENED[-1]))
    code, out, _err = run(capsys, "what-if", "-f", c, "--apply", str(opener), "--assertions", a, "-o", "github")
    assert code == 1
    broken = [x for x in out.splitlines() if "title=assertion-broken" in x]
    assert broken and broken[0].startswith(f"::error file={a},line=2,")
    gained = [x for x in out.splitlines() if "title=connection-gained" in x and "payments/postgres" in x]
    assert gained and f"file={opener},line=1" in gained[0]
    code, out, _err = run(capsys, "what-if", "-f", c, "--apply", str(opener), "--assertions", a, "-o", "sarif")
    rules = {r["ruleId"] for r in valid_sarif(out)["runs"][0]["results"]}
    assert rules == {"assertion-broken", "connection-gained"}


def test_docs_list_every_rule_id_with_its_source() -> None:
    import re

    from simulator.ci_output import RULES

    text = (Path(__file__).resolve().parents[2] / "docs" / "ci.md").read_text()
    documented = set(re.findall(r"^\| `([a-z-]+)` \|", text, re.M))
    assert documented == set(RULES)


def test_a_cluster_network_policy_change_points_at_its_manifest(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    base = [m.namespace("a"), m.namespace("b"), m.pod("a", "x", {"app": "x"}, ip="10.244.0.5"),
            m.pod("b", "y", {"app": "y"}, ip="10.244.0.6")]
    before = tmp_path / "before.yaml"
    before.write_text(yaml.safe_dump_all(base))
    subject = {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "b"}}}
    deny = m.cluster_network_policy("deny-b", subject=subject,
                                    ingress=[{"name": "all", "action": "Deny", "from": [{"namespaces": {}}]}])
    after = tmp_path / "after.yaml"
    after.write_text(yaml.safe_dump_all([*base, deny]))
    code, out, err = run(capsys, "diff", "--before", str(before), "--after", str(after), "-o", "github",
                         "--port", "80/TCP", "--no-outside")
    assert code == 0, err
    lost = [x for x in out.splitlines() if "connection-lost" in x and "-> b/app=y" in x]
    assert lost and f"file={after},line=" in lost[0], out
    line = int(lost[0].split("line=", 1)[1].split(",", 1)[0])
    assert "ClusterNetworkPolicy" in "\n".join(after.read_text().splitlines()[line - 1:line + 2])
