"""``start --manifests DIR``: the directory is the desired state, re-read as files change."""

from __future__ import annotations

import os
import time

import yaml

from tests.daemon import objects as o


def write(directory, name: str, *docs) -> None:  # type: ignore[no-untyped-def]
    """Write atomically, as the conformance harness does (temporary file, then rename)."""
    tmp = os.path.join(directory, f".{name}.tmp")
    with open(tmp, "w") as fh:
        yaml.safe_dump_all(list(docs), fh)
    os.replace(tmp, os.path.join(directory, name))


def keys(cluster) -> set[str]:  # type: ignore[no-untyped-def]
    return {p.key for p in cluster.policies}


def test_manifests_are_enforced_and_follow_file_changes(tmp_path, start_daemon):
    write(tmp_path, "base.yaml", o.namespace("prod"), o.pod("prod", "web", "10.1.0.2", app="web"))
    write(tmp_path, "deny.yaml", o.deny_all("prod"))
    daemon, dataplane = start_daemon(manifests=str(tmp_path))
    first = dataplane.wait_for(lambda c: keys(c) == {"prod/deny-all"})
    assert dataplane.applied[0] is first  # the first apply is the whole directory
    write(tmp_path, "allow.yaml", o.allow_from("prod", "allow", {"app": "web"}, {"app": "x"}))
    dataplane.wait_for(lambda c: keys(c) == {"prod/deny-all", "prod/allow"})
    os.unlink(tmp_path / "deny.yaml")
    dataplane.wait_for(lambda c: keys(c) == {"prod/allow"})
    write(tmp_path, "base.yaml", o.namespace("prod"), o.pod("prod", "web", "10.1.0.2", app="web", v="2"))
    state = dataplane.wait_for(lambda c: c.pod_by_key["prod/web"].labels.get("v") == "2")
    assert keys(state) == {"prod/allow"}
    assert daemon.controller.status.ready


def test_a_file_that_fails_to_parse_keeps_its_last_good_version(tmp_path, start_daemon, caplog):
    write(tmp_path, "deny.yaml", o.deny_all("prod"))
    _daemon, dataplane = start_daemon(manifests=str(tmp_path))
    dataplane.wait_for(lambda c: keys(c) == {"prod/deny-all"})
    (tmp_path / "deny.yaml").write_text("kind: NetworkPolicy\nmetadata: {name: [unclosed\n")
    write(tmp_path, "marker.yaml", o.pod("prod", "marker", "10.1.0.9"))
    state = dataplane.wait_for(lambda c: "prod/marker" in c.pod_by_key)
    assert keys(state) == {"prod/deny-all"}
    assert "deny.yaml" in caplog.text and "keeping its last good version" in caplog.text
    write(tmp_path, "deny.yaml", o.deny_all("prod", "renamed"))
    dataplane.wait_for(lambda c: keys(c) == {"prod/renamed"})


def test_an_invalid_object_is_skipped_and_the_rest_of_its_file_applies(tmp_path, start_daemon, caplog):
    bad = o.policy("prod", "bad", {"podSelector": {"matchLabels": {"a b": "x"}}})
    write(tmp_path, "mixed.yaml", bad, o.deny_all("prod"))
    _daemon, dataplane = start_daemon(manifests=str(tmp_path))
    state = dataplane.wait_for(lambda c: "prod/deny-all" in keys(c))
    assert keys(state) == {"prod/deny-all"}
    assert "NetworkPolicy prod/bad" in caplog.text and "spec.podSelector.matchLabels" in caplog.text


def test_an_empty_directory_is_a_valid_empty_state(tmp_path, start_daemon):
    daemon, dataplane = start_daemon(manifests=str(tmp_path))
    state = dataplane.wait_for(lambda c: True)
    assert not state.policies and not state.pods
    assert daemon.controller.status.ready


def test_a_vanished_directory_keeps_the_last_state_and_makes_the_node_unready(tmp_path, start_daemon, caplog):
    manifests = tmp_path / "m"
    manifests.mkdir()
    write(manifests, "deny.yaml", o.deny_all("prod"))
    daemon, dataplane = start_daemon(manifests=str(manifests))
    dataplane.wait_for(lambda c: keys(c) == {"prod/deny-all"})
    assert daemon.ready() == (True, "")
    applies = len(dataplane.applied)
    os.rename(manifests, tmp_path / "elsewhere")  # an unmounted volume, a deleted directory
    wait_until(lambda: not daemon.ready()[0])
    _ok, why = daemon.ready()
    assert "does not exist" in why and str(manifests) in why
    time.sleep(0.3)  # several polls: still nothing removed
    assert len(dataplane.applied) == applies and keys(dataplane.applied[-1]) == {"prod/deny-all"}
    assert "ManifestSourceFailed" in caplog.text
    assert daemon.metrics.source_errors._value.get() >= 1
    os.rename(tmp_path / "elsewhere", manifests)
    wait_until(lambda: daemon.ready()[0])


def test_a_directory_missing_from_the_start_is_never_ready(tmp_path, start_daemon):
    daemon, dataplane = start_daemon(manifests=str(tmp_path / "missing"))
    time.sleep(0.3)
    assert dataplane.applied == []
    assert not daemon.ready()[0] and "does not exist" in daemon.ready()[1]


def test_an_invalid_edit_keeps_the_last_valid_version_and_shows_in_the_dump_and_metrics(tmp_path, start_daemon):
    write(tmp_path, "deny.yaml", o.deny_all("prod"))
    daemon, dataplane = start_daemon(manifests=str(tmp_path))
    dataplane.wait_for(lambda c: keys(c) == {"prod/deny-all"})
    broken = o.deny_all("prod")
    broken["spec"]["podSelector"] = {"matchExpressions": [{}]}  # matches nothing the API accepts
    write(tmp_path, "deny.yaml", broken)
    wait_until(lambda: daemon.dump()["invalid"])
    (entry,) = daemon.dump()["invalid"]
    assert entry["key"] == "prod/deny-all" and entry["last_valid_version_in_force"] is True
    assert daemon.metrics.invalid_objects.labels("NetworkPolicy")._value.get() == 1
    assert keys(dataplane.applied[-1]) == {"prod/deny-all"}


def test_a_near_miss_kind_keeps_the_policy_it_was_meant_to_be(tmp_path, start_daemon, caplog):
    write(tmp_path, "deny.yaml", o.deny_all("prod"))
    daemon, dataplane = start_daemon(manifests=str(tmp_path))
    dataplane.wait_for(lambda c: keys(c) == {"prod/deny-all"})
    typo = {**o.deny_all("prod"), "kind": "Networkpolicy"}
    write(tmp_path, "deny.yaml", typo)
    wait_until(lambda: daemon.dump()["invalid"])
    assert 'did you mean "NetworkPolicy"' in caplog.text
    assert keys(dataplane.applied[-1]) == {"prod/deny-all"}  # never opened by a typo


def wait_until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_cluster_network_policies_in_manifests_are_enforced(tmp_path, start_daemon, caplog):
    deny = {"action": "Deny", "to": [{"domainNames": ["example.com"]}]}
    write(tmp_path, "base.yaml", o.namespace("prod"), o.pod("prod", "web", "10.1.0.2", app="web"),
          o.cluster_network_policy("guard", egress=[deny]))
    _daemon, dataplane = start_daemon(manifests=str(tmp_path))
    first = dataplane.wait_for(lambda c: True)
    assert [p.name for p in first.cluster_policies] == ["guard"]
    assert "spec.egress[0].to[0].domainNames: not supported" in caplog.text  # said, with where it is
    assert "ignored" not in caplog.text
    write(tmp_path, "base.yaml", o.namespace("prod"), o.pod("prod", "web", "10.1.0.2", app="web"))
    dataplane.wait_for(lambda c: not c.cluster_policies)
