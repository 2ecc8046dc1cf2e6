"""The controller: one writer, retries after a failed apply, periodic and requested reconciles."""

from __future__ import annotations

import time

from npm.daemon.cache import ObjectCache
from npm.daemon.controller import Controller
from npm.daemon.metrics import Metrics
from tests.daemon import objects as o
from tests.daemon.recorder import RecordingDataplane


def wait(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.01)


def running(dataplane: RecordingDataplane, **options) -> tuple[ObjectCache, Controller]:  # type: ignore[no-untyped-def]
    metrics = Metrics()
    cache = ObjectCache(("Namespace", "Pod", "NetworkPolicy"), metrics=metrics)
    controller = Controller(cache, dataplane, metrics=metrics, **options)
    cache.on_change = controller.notify
    controller.start()
    return cache, controller


def test_nothing_is_applied_until_every_kind_is_synced():
    dataplane = RecordingDataplane()
    cache, controller = running(dataplane, coalesce_window=0.01)
    try:
        cache.replace_raw("Namespace", [o.namespace("a")], time.monotonic())
        cache.replace_raw("Pod", [o.pod("a", "p", "10.0.0.1")], time.monotonic())
        time.sleep(0.3)
        assert dataplane.applied == [] and not controller.status.ready
        cache.replace_raw("NetworkPolicy", [o.deny_all("a")], time.monotonic())
        state = dataplane.wait_for(lambda c: True)
        assert {p.key for p in state.policies} == {"a/deny-all"} and len(state.pods) == 1
    finally:
        controller.stop()


def test_a_failed_apply_is_retried_and_its_latency_counts_from_the_first_sighting():
    dataplane = RecordingDataplane()
    cache, controller = running(dataplane, coalesce_window=0.01, retry_initial=0.1)
    try:
        for kind in ("Namespace", "Pod", "NetworkPolicy"):
            cache.replace_raw(kind, [], time.monotonic())
        dataplane.wait_for(lambda c: True)
        dataplane.fail_next = 2
        seen = time.monotonic()
        cache.event_raw("NetworkPolicy", "ADDED", o.deny_all("a"), seen)
        dataplane.wait_for(lambda c: bool(c.policies))
        assert controller.status.apply_failures == 2
        assert controller.latencies[-1] >= 0.1 + 0.2 - 0.05  # two backoffs passed before success
        assert 'npm_dataplane_apply_failure_total{operation="apply"} 2.0' in Metrics.render(controller.metrics).decode()
    finally:
        controller.stop()


def test_reconcile_runs_periodically_and_on_request():
    dataplane = RecordingDataplane()
    cache, controller = running(dataplane, coalesce_window=0.01, reconcile_interval=0.2)
    try:
        for kind in ("Namespace", "Pod", "NetworkPolicy"):
            cache.replace_raw(kind, [], time.monotonic())
        dataplane.wait_for(lambda c: True)
        wait(lambda: dataplane.reconciles >= 2, 3)
    finally:
        controller.stop()
    dataplane = RecordingDataplane()
    cache, controller = running(dataplane, coalesce_window=0.01, reconcile_interval=3600)
    try:
        for kind in ("Namespace", "Pod", "NetworkPolicy"):
            cache.replace_raw(kind, [], time.monotonic())
        dataplane.wait_for(lambda c: True)
        time.sleep(0.1)
        assert dataplane.reconciles == 0
        controller.request_reconcile()  # what SIGHUP does
        wait(lambda: dataplane.reconciles == 1)
        assert controller.status.reconciles == 1
    finally:
        controller.stop()


def test_a_relist_deletes_objects_that_vanished_and_keeps_invalid_ones_last_valid():
    dataplane = RecordingDataplane()
    cache, controller = running(dataplane, coalesce_window=0.01)
    try:
        cache.replace_raw("Namespace", [], time.monotonic())
        cache.replace_raw("Pod", [o.pod("a", "p", "10.0.0.1"), o.pod("a", "q", "10.0.0.2")], time.monotonic())
        good = o.allow_from("a", "x", {"app": "a"}, {"app": "b"}, port=80)
        cache.replace_raw("NetworkPolicy", [good], time.monotonic())
        dataplane.wait_for(lambda c: len(c.pods) == 2)
        broken = o.allow_from("a", "x", {"app": "a"}, {"app": "b"}, port=0)
        cache.replace_raw("Pod", [o.pod("a", "p", "10.0.0.1")], time.monotonic())
        cache.replace_raw("NetworkPolicy", [broken], time.monotonic())
        state = dataplane.wait_for(lambda c: len(c.pods) == 1)
        assert state.policy_by_key["a/x"].ingress[0].ports[0].port == 80
        assert [i["key"] for i in cache.dump()["invalid"]] == ["a/x"]
    finally:
        controller.stop()


def synced(cache: ObjectCache, dataplane: RecordingDataplane) -> None:
    for kind in ("Namespace", "Pod", "NetworkPolicy"):
        cache.replace_raw(kind, [], time.monotonic())
    dataplane.wait_for(lambda c: True)


def test_an_isolated_change_is_applied_at_once_not_after_the_coalescing_window():
    dataplane = RecordingDataplane()
    # A window far longer than the wait below: only an apply that does not wait for it passes.
    cache, controller = running(dataplane, coalesce_window=60.0, coalesce_gap=0.05)
    try:
        synced(cache, dataplane)
        time.sleep(0.1)  # quiet for longer than the gap: the next change is an isolated one
        cache.event_raw("NetworkPolicy", "ADDED", o.deny_all("a"), time.monotonic())
        dataplane.wait_for(lambda c: bool(c.policies), timeout=5)
        assert len(dataplane.applied) == 2
    finally:
        controller.stop()


def test_a_burst_of_changes_becomes_far_fewer_applies():
    dataplane = RecordingDataplane()
    cache, controller = running(dataplane, coalesce_window=1.0)
    try:
        synced(cache, dataplane)
        before = len(dataplane.applied)
        for i in range(300):
            cache.event_raw("Pod", "ADDED", o.pod("a", f"p{i}", f"10.0.{i // 250}.{i % 250 + 1}"), time.monotonic())
        dataplane.wait_for(lambda c: len(c.pods) == 300)
        time.sleep(0.3)
        applies = len(dataplane.applied) - before
        assert 1 <= applies <= 10, applies  # the first change at once, the rest together
    finally:
        controller.stop()


def test_changes_that_keep_coming_are_applied_at_least_once_per_window():
    dataplane = RecordingDataplane()
    cache, controller = running(dataplane, coalesce_window=0.2, coalesce_gap=0.2)
    try:
        synced(cache, dataplane)
        before = len(dataplane.applied)
        # A change every 20 ms for 1 s never leaves the gap quiet: only the window bounds the wait.
        for i in range(50):
            cache.event_raw("Pod", "ADDED", o.pod("a", f"p{i}", f"10.0.0.{i + 1}"), time.monotonic())
            time.sleep(0.02)
        during = len(dataplane.applied) - before
        assert during >= 3, during
        dataplane.wait_for(lambda c: len(c.pods) == 50)
    finally:
        controller.stop()
