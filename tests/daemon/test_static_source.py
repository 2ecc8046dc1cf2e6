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
    started = time.monotonic()
    dataplane.wait_for(lambda c: keys(c) == {"prod/deny-all", "prod/allow"})
    assert time.monotonic() - started < 1.0  # sub-second, as the conformance harness needs
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
