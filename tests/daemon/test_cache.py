"""The cache: what a snapshot reuses, what parsed objects share, what a relist keeps."""

from __future__ import annotations

import time
from collections import Counter

from kube.load import ObjectSet, build_cluster
from kube.parse import parse_pod
from npm.daemon.cache import ObjectCache, SharedParts
from tests.daemon import objects as o

KINDS = ("Namespace", "Pod", "NetworkPolicy")


def filled() -> ObjectCache:
    cache = ObjectCache(KINDS)
    cache.replace_raw("Namespace", [o.namespace("a"), o.namespace("b")])
    cache.replace_raw("Pod", [o.pod("a", "p", "10.0.0.1", app="web"), o.pod("b", "q", "10.0.0.2", app="db")])
    cache.replace_raw("NetworkPolicy", [o.deny_all("a")])
    return cache


def full_build(cache: ObjectCache):  # type: ignore[no-untyped-def]
    """The cluster built from scratch from what the cache holds (what every snapshot must equal)."""
    dump = cache.dump()
    tables = {"Namespace": dump["namespaces"], "Pod": dump["pods"], "NetworkPolicy": dump["policies"]}
    objects = ObjectSet.of({kind: {getattr(x, "key", x.name): x for x in xs} for kind, xs in tables.items()})
    return build_cluster(objects, allocate_ips=False, left_out=Counter())[0]


def test_a_snapshot_after_policy_changes_alone_reuses_the_pods_and_equals_a_full_build():
    cache = filled()
    first = cache.snapshot().cluster
    cache.event_raw("NetworkPolicy", "ADDED", o.allow_from("a", "x", {"app": "web"}, {"app": "db"}), time.monotonic())
    second = cache.snapshot().cluster
    assert second.pods is first.pods and second.namespaces is first.namespaces  # the same tuples
    assert [p.key for p in second.policies] == ["a/deny-all", "a/x"]
    assert second == full_build(cache)
    # A policy in a namespace nothing else names makes that namespace implicit: built anew.
    cache.event_raw("NetworkPolicy", "ADDED", o.deny_all("c"), time.monotonic())
    third = cache.snapshot().cluster
    assert "c" in third.namespace_by_name and third == full_build(cache)
    # Removing it takes the implicit namespace away again.
    cache.event_raw("NetworkPolicy", "DELETED", o.deny_all("c"), time.monotonic())
    fourth = cache.snapshot().cluster
    assert "c" not in fourth.namespace_by_name and fourth == full_build(cache)
    # Any other change builds the desired state anew.
    cache.event_raw("Pod", "MODIFIED", o.pod("a", "p", "10.0.0.1", app="api"), time.monotonic())
    fifth = cache.snapshot().cluster
    assert fifth.pods is not fourth.pods and fifth == full_build(cache)


def test_replicas_share_one_label_map_and_one_port_list():
    cache = ObjectCache(KINDS)
    cache.replace_raw("Pod", [o.pod("a", f"web-{i}", f"10.0.0.{i + 1}", app="web") for i in range(3)])
    cache.event_raw("Pod", "ADDED", o.pod("a", "web-9", "10.0.0.9", app="web"), time.monotonic())
    pods = cache.snapshot().cluster.pods
    assert len({id(p.labels) for p in pods}) == 1 and len({id(p.ports) for p in pods}) == 1
    assert all(p.labels == {"app": "web"} for p in pods)


def test_shared_values_no_pod_uses_any_more_are_dropped_when_the_table_is_rebuilt():
    shared = SharedParts()
    old = shared.pod(parse_pod(o.pod("a", "p", "10.0.0.1", app="old")))
    new = shared.pod(parse_pod(o.pod("a", "p", "10.0.0.1", app="new")))
    shared.rebuild([new])  # the cache holds only the new version
    again_old = parse_pod(o.pod("a", "q", "10.0.0.2", app="old"))
    again_new = parse_pod(o.pod("a", "q", "10.0.0.2", app="new"))
    assert shared.pod(again_old).labels is not old.labels  # dropped: not kept alive by the table
    assert shared.pod(again_new).labels is new.labels  # still shared


def test_a_relist_of_the_same_objects_keeps_the_ones_in_force_and_changes_nothing():
    cache = filled()
    before, version = cache.snapshot().cluster, cache.version
    cache.replace_raw("Pod", [o.pod("a", "p", "10.0.0.1", app="web"), o.pod("b", "q", "10.0.0.2", app="db")])
    assert cache.version == version
    after = cache.snapshot().cluster
    assert all(x is y for x, y in zip(before.pods, after.pods, strict=True))
