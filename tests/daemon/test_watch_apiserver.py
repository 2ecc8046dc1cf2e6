"""The daemon follows the API server through the real kubernetes client and list/watch protocol."""

from __future__ import annotations

import json
import time
import urllib.request

from kube.model import Cluster
from tests.daemon import objects as o
from tests.daemon.apiserver import ApiServer


def policy_keys(cluster: Cluster) -> set[str]:
    return {p.key for p in cluster.policies}


def pod_labels(cluster: Cluster, key: str) -> dict[str, str] | None:
    pod = cluster.pod_by_key.get(key)
    return dict(pod.labels) if pod else None


def http_get(address: tuple[str, int], path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def seed(server: ApiServer) -> None:
    server.put(o.namespace("prod", team="a"))
    server.put(o.pod("prod", "web", "10.1.0.2", app="web"))
    server.put(o.pod("prod", "db", "10.1.0.3", app="db"))
    server.put(o.node("node-a", "172.18.0.10"))
    server.put(o.deny_all("prod"))


def test_first_apply_has_the_whole_listed_state_and_readyz_follows(apiserver, start_daemon):
    seed(apiserver)
    daemon, dataplane = start_daemon(apiserver)
    state = dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    # The very first apply already holds everything: no partial state reached the dataplane.
    first = dataplane.applied[0]
    assert policy_keys(first) == {"prod/deny-all"}
    assert {p.key for p in first.pods} == {"prod/web", "prod/db"}
    assert state.namespace_by_name["prod"].labels["team"] == "a"
    assert daemon.controller.wait_applied(0, 5)
    status, _ = http_get(daemon.servers[0].address, "/readyz")
    assert status == 200


def test_readyz_is_503_until_every_kind_is_listed():
    server = ApiServer()  # not started: lists fail
    from npm.daemon.daemon import Daemon
    from tests.daemon.conftest import FAST, api_client_for
    from tests.daemon.recorder import RecordingDataplane

    dataplane = RecordingDataplane()
    server.start()
    port = server.port
    server.stop()
    daemon = Daemon(FAST, dataplane, api=api_client_for(server))
    daemon.start()
    try:
        time.sleep(0.5)
        status, body = http_get(daemon.servers[0].address, "/readyz")
        assert status == 503 and b"waiting" in body
        assert http_get(daemon.servers[0].address, "/healthz")[0] == 200
        assert dataplane.applied == []
        server.port = port
        server.start()
        seed(server)
        dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c), timeout=10)
        deadline = time.monotonic() + 5
        while http_get(daemon.servers[0].address, "/readyz")[0] != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        daemon.shutdown()
        server.stop()


def test_updates_and_deletes_reach_the_dataplane(apiserver, start_daemon):
    seed(apiserver)
    _daemon, dataplane = start_daemon(apiserver)
    dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))

    apiserver.put(o.pod("prod", "web", "10.1.0.2", app="web", tier="front"))
    dataplane.wait_for(lambda c: pod_labels(c, "prod/web") == {"app": "web", "tier": "front"})

    apiserver.put(o.allow_from("prod", "allow-web", {"app": "db"}, {"app": "web"}))
    dataplane.wait_for(lambda c: policy_keys(c) == {"prod/deny-all", "prod/allow-web"})

    apiserver.delete("NetworkPolicy", "deny-all", "prod")
    apiserver.delete("Pod", "db", "prod")
    state = dataplane.wait_for(lambda c: policy_keys(c) == {"prod/allow-web"} and "prod/db" not in c.pod_by_key)
    assert "prod/web" in state.pod_by_key


def test_a_burst_of_events_becomes_few_applies(apiserver, start_daemon):
    seed(apiserver)
    _daemon, dataplane = start_daemon(apiserver, coalesce_window=0.3)
    dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    before = len(dataplane.applied)
    for i in range(200):
        apiserver.put(o.pod("prod", f"burst-{i}", f"10.2.{i // 250}.{i % 250 + 1}", app="burst"))
    dataplane.wait_for(lambda c: sum(p.key.startswith("prod/burst-") for p in c.pods) == 200)
    time.sleep(0.4)
    applies = len(dataplane.applied) - before
    assert 1 <= applies <= 3, applies


def test_only_the_controller_thread_writes_to_the_dataplane(apiserver, start_daemon):
    seed(apiserver)
    _daemon, dataplane = start_daemon(apiserver)
    dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    apiserver.put(o.pod("prod", "x", "10.1.0.9", app="x"))
    dataplane.wait_for(lambda c: "prod/x" in c.pod_by_key)
    assert dataplane.threads == {"controller"}


def test_pods_without_an_ip_are_not_enforced_until_they_get_one(apiserver, start_daemon):
    seed(apiserver)
    apiserver.put(o.pod("prod", "pending", None, app="web"))
    daemon, dataplane = start_daemon(apiserver)
    state = dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    assert "prod/pending" not in state.pod_by_key
    assert daemon.metrics.pods_without_ip._value.get() == 1  # counted, not invented
    apiserver.put(o.pod("prod", "pending", "10.1.0.7", app="web"))
    state = dataplane.wait_for(lambda c: "prod/pending" in c.pod_by_key)
    assert state.pod_by_key["prod/pending"].ip == "10.1.0.7"
    assert not state.pod_by_key["prod/pending"].ip_allocated
    assert daemon.metrics.pods_without_ip._value.get() == 0


def test_an_invalid_policy_is_skipped_and_the_others_are_enforced(apiserver, start_daemon, caplog):
    seed(apiserver)
    bad = o.policy("prod", "bad", {"podSelector": {}, "ingress": [{"ports": [{"port": 70000}]}]})
    apiserver.put(bad)
    daemon, dataplane = start_daemon(apiserver)
    state = dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    assert "prod/bad" not in policy_keys(state)
    assert "spec.ingress[0].ports[0].port" in caplog.text and "NetworkPolicy prod/bad" in caplog.text
    # Another valid change still flows.
    apiserver.put(o.allow_from("prod", "good", {"app": "db"}, {"app": "web"}))
    dataplane.wait_for(lambda c: "prod/good" in policy_keys(c))
    _status, body = http_get(daemon.servers[0].address, "/metrics")
    assert 'npm_invalid_objects{kind="NetworkPolicy"} 1.0' in body.decode()


def test_an_invalid_update_keeps_the_last_valid_version(apiserver, start_daemon):
    seed(apiserver)
    apiserver.put(o.allow_from("prod", "p", {"app": "db"}, {"app": "web"}, port=80))
    _daemon, dataplane = start_daemon(apiserver)
    dataplane.wait_for(lambda c: "prod/p" in policy_keys(c))
    apiserver.put(o.allow_from("prod", "p", {"app": "db"}, {"app": "web"}, port=0))
    apiserver.put(o.pod("prod", "marker", "10.1.0.50"))
    state = dataplane.wait_for(lambda c: "prod/marker" in c.pod_by_key)
    assert state.policy_by_key["prod/p"].ingress[0].ports[0].port == 80


def test_a_dropped_watch_resumes_without_listing_again(apiserver, start_daemon):
    seed(apiserver)
    _daemon, dataplane = start_daemon(apiserver)
    dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    lists_before = [r for r in apiserver.requests() if "watch=" not in r[1]]
    apiserver.drop_watches()
    time.sleep(0.2)
    apiserver.put(o.pod("prod", "after-drop", "10.1.0.20"))
    dataplane.wait_for(lambda c: "prod/after-drop" in c.pod_by_key)
    lists_after = [r for r in apiserver.requests() if "watch=" not in r[1]]
    assert lists_after == lists_before  # resumed from the last resourceVersion


def test_410_gone_in_the_stream_relists_and_deletes_what_vanished(apiserver, start_daemon):
    seed(apiserver)
    daemon, dataplane = start_daemon(apiserver)
    dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    # While the watch is down, the policy is deleted and the history is compacted away:
    # the resumed watch gets 410 Gone and only a fresh list can show the deletion.
    apiserver.stop()
    apiserver.delete("NetworkPolicy", "deny-all", "prod")
    apiserver.put(o.pod("prod", "new", "10.1.0.30"))
    apiserver.compact()
    apiserver.start()
    state = dataplane.wait_for(lambda c: "prod/deny-all" not in policy_keys(c) and "prod/new" in c.pod_by_key)
    assert {p.key for p in state.pods} == {"prod/web", "prod/db", "prod/new"}
    relists = [r for r in apiserver.requests("/apis/networking.k8s.io") if "watch=" not in r[1]]
    assert len(relists) >= 2
    body = http_get(daemon.servers[0].address, "/metrics")[1].decode()
    assert 'npm_watch_relists_total{kind="NetworkPolicy"} 2.0' in body


def test_410_as_http_status_relists_too(start_daemon):
    with ApiServer(gone_as_http_status=True, bookmark_interval=0.5) as server:
        seed(server)
        _daemon, dataplane = start_daemon(server)
        dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
        server.stop()
        server.delete("Pod", "db", "prod")
        server.compact()
        server.start()
        dataplane.wait_for(lambda c: "prod/db" not in c.pod_by_key)


def test_recovers_after_the_api_server_restarts_with_fresh_state(start_daemon):
    # A restart that loses everything (new store, new resourceVersions below ours).
    server = ApiServer(bookmark_interval=0.5).start()
    seed(server)
    server.put(o.allow_from("prod", "old", {"app": "db"}, {"app": "web"}))
    _daemon, dataplane = start_daemon(server)
    dataplane.wait_for(lambda c: "prod/old" in policy_keys(c))
    port = server.port
    server.stop()
    time.sleep(0.3)
    fresh = ApiServer(port=port, bookmark_interval=0.5)
    fresh.store.rv = 5_000  # the new store's versions are unrelated to the old ones
    fresh.store.compacted = 4_000
    fresh.start()
    try:
        fresh.put(o.namespace("prod", team="b"))
        fresh.put(o.pod("prod", "web", "10.1.0.2", app="web"))
        # Each kind relists on its own: wait for all three, not for the first state without the policy.
        dataplane.wait_for(
            lambda c: not c.policies
            and "prod/db" not in c.pod_by_key
            and "prod/web" in c.pod_by_key
            and c.namespace_labels("prod").get("team") == "b",
            timeout=15,
        )
    finally:
        fresh.stop()


def test_bookmarks_advance_the_resume_point(apiserver, start_daemon):
    seed(apiserver)
    daemon, dataplane = start_daemon(apiserver)
    dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    watcher = next(s for s in daemon.sources if s.kind == "Pod")
    before = int(watcher.resource_version)
    for i in range(3):
        apiserver.put(o.namespace(f"other-{i}"))  # moves the global version, not the pod stream
    deadline = time.monotonic() + 5
    while int(watcher.resource_version) <= before:
        assert time.monotonic() < deadline, "no bookmark moved the pod watch forward"
        time.sleep(0.05)


def test_failed_closed_policy_is_logged_counted_and_posted_as_an_event(apiserver, start_daemon):
    seed(apiserver)
    from tests.daemon.recorder import RecordingDataplane

    dataplane = RecordingDataplane()
    dataplane.unenforceable = {"prod/deny-all": "named port http resolves to several numbers"}
    daemon, _ = start_daemon(apiserver, dataplane=dataplane)
    dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    deadline = time.monotonic() + 5
    while not apiserver.events():
        assert time.monotonic() < deadline, "no Event posted"
        time.sleep(0.05)
    event = apiserver.events()[0]
    assert event["reason"] == "PolicyFailedClosed" and event["type"] == "Warning"
    assert event["involvedObject"]["kind"] == "NetworkPolicy"
    assert event["involvedObject"]["name"] == "deny-all" and event["involvedObject"]["namespace"] == "prod"
    assert event["involvedObject"]["uid"]  # the policy's uid from the API server
    assert "named port http" in event["message"]
    body = http_get(daemon.servers[0].address, "/metrics")[1].decode()
    assert "npm_policy_failed_closed_total 1.0" in body
    assert "npm_num_policies_failed_closed 1.0" in body
    # Reported once per change of reason, not on every apply.
    apiserver.put(o.pod("prod", "more", "10.1.0.40"))
    dataplane.wait_for(lambda c: "prod/more" in c.pod_by_key)
    assert "npm_policy_failed_closed_total 1.0" in http_get(daemon.servers[0].address, "/metrics")[1].decode()


def test_a_second_report_of_the_same_event_patches_its_count(apiserver):
    from kube.model import LabelSelector, NetworkPolicy
    from npm.daemon.events import ApiEvents
    from tests.daemon.conftest import api_client_for

    policy = NetworkPolicy("prod", "p", LabelSelector(), uid="u-1")
    first = ApiEvents(api_client_for(apiserver), "node-a")
    first.policy_failed_closed(policy, "prod/p", "reason")
    first.close()
    # A restarted daemon posts the same event again: create conflicts, so it patches.
    second = ApiEvents(api_client_for(apiserver), "node-a")
    second.policy_failed_closed(policy, "prod/p", "reason")
    second.close()
    events = apiserver.events()
    assert len(events) == 1 and events[0]["count"] == 2
    assert [m for m, _p in apiserver.requests("/api/v1/namespaces/prod/events")] == ["POST", "POST", "PATCH"]


def test_debug_endpoint_dumps_the_cache(apiserver, start_daemon):
    seed(apiserver)
    daemon, dataplane = start_daemon(apiserver)
    dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    host, port = daemon.servers[1].address
    assert host == "127.0.0.1"
    status, body = http_get((host, port), "/npm/v1/debug/manager")
    assert status == 200
    dump = json.loads(body)
    assert {p["name"] for p in dump["pods"]} == {"web", "db"}
    assert [p["name"] for p in dump["policies"]] == ["deny-all"]
    assert dump["namespaces"][0]["labels"]["kubernetes.io/metadata.name"] == "prod"
    assert dump["controller"]["ready"] is True
    assert {s["name"] for s in dump["sources"]} == {
        "watch-Namespace", "watch-Pod", "watch-NetworkPolicy", "watch-Node", "watch-ClusterNetworkPolicy"}
    # The debug dump is not on the public listener.
    assert http_get(daemon.servers[0].address, "/npm/v1/debug/manager")[0] == 404
    status, body = http_get((host, port), "/npm/v1/debug/memory")
    assert status == 200 and json.loads(body)["rss_kib"] > 0


def test_gettuples_resolves_pod_names_through_the_running_daemon(apiserver, start_daemon, tmp_path, capsys):
    from npm.cli import main
    from npm.dataplane.debug import desired_as_saved
    from npm.dataplane.translate import translate

    seed(apiserver)
    apiserver.put(o.pod("prod", "pending", None, app="web"))
    daemon, dataplane = start_daemon(apiserver)
    state = dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    ipt, ips = desired_as_saved(translate(state))
    (tmp_path / "ipt").write_text(ipt)
    (tmp_path / "ips").write_text(ips)
    host, port = daemon.servers[1].address
    args = ["debug", "gettuples", "--from-daemon", f"http://{host}:{port}", "-i", str(tmp_path / "ipt"),
            "-c", str(tmp_path / "ips"), "--port", "5432/TCP", "-o", "json"]
    assert main([*args, "-s", "prod/web", "-d", "prod/db"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["src"], out["dst"], out["port"], out["verdict"]) == ("10.1.0.2", "10.1.0.3", "5432/TCP", "DROP")
    assert main([*args, "-s", "prod/pending", "-d", "prod/db"]) == 2
    assert 'pod "prod/pending" has no IP yet in the daemon\'s cache' in capsys.readouterr().err
    assert main([*args, "-s", "prod/web", "-d", "prod/db", "--from-daemon", "127.0.0.1:1"]) == 1
    assert "cannot reach the daemon at http://127.0.0.1:1/npm/v1/debug/manager" in capsys.readouterr().err


def test_without_rbac_for_nodes_the_daemon_runs_without_them(apiserver, start_daemon, caplog):
    seed(apiserver)
    apiserver.forbidden.add("nodes")
    daemon, dataplane = start_daemon(apiserver)
    state = dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    assert "continuing without Nodes" in caplog.text
    assert daemon.controller.status.ready and {p.key for p in state.pods} == {"prod/web", "prod/db"}


def test_other_api_errors_are_retried_until_the_server_answers(apiserver, start_daemon):
    seed(apiserver)
    apiserver.forbidden.add("pods")
    daemon, dataplane = start_daemon(apiserver)
    time.sleep(0.5)
    assert dataplane.applied == [] and not daemon.controller.status.ready
    apiserver.forbidden.clear()
    dataplane.wait_for(lambda c: {p.key for p in c.pods} == {"prod/web", "prod/db"})


def cluster_policy_names(cluster: Cluster) -> set[str]:
    return {p.name for p in cluster.cluster_policies}


DENY_Y = {"action": "Deny", "from": [{"namespaces": {"matchLabels": {"team": "y"}}}]}


def test_cluster_network_policies_are_listed_and_watched(apiserver, start_daemon):
    seed(apiserver)
    apiserver.put(o.cluster_network_policy("guard", priority=3, ingress=[DENY_Y]))
    daemon, dataplane = start_daemon(apiserver)
    first = dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    assert cluster_policy_names(first) == {"guard"}  # in the first apply, with everything else
    apiserver.put(o.cluster_network_policy("guard", priority=7, ingress=[DENY_Y]))
    dataplane.wait_for(lambda c: c.cluster_policy_by_name["guard"].priority == 7)
    outside = {"action": "Deny", "to": [{"networks": ["192.0.2.0/24"]}]}
    apiserver.put(o.cluster_network_policy("floor", tier="Baseline", egress=[outside]))
    dataplane.wait_for(lambda c: cluster_policy_names(c) == {"guard", "floor"})
    apiserver.delete("ClusterNetworkPolicy", "guard")
    dataplane.wait_for(lambda c: cluster_policy_names(c) == {"floor"})
    dump = json.loads(http_get(daemon.servers[1].address, "/npm/v1/debug/manager")[1])
    assert [p["name"] for p in dump["cluster_policies"]] == ["floor"]


def test_an_invalid_cluster_network_policy_keeps_its_last_valid_version(apiserver, start_daemon, caplog):
    seed(apiserver)
    apiserver.put(o.cluster_network_policy("guard", priority=3, ingress=[DENY_Y]))
    _daemon, dataplane = start_daemon(apiserver)
    dataplane.wait_for(lambda c: cluster_policy_names(c) == {"guard"})
    apiserver.put(o.cluster_network_policy("guard", priority=5000, ingress=[DENY_Y]))
    wait_for_log(caplog, "ClusterNetworkPolicy guard: spec.priority: 5000 must be between 0 and 1000")
    apiserver.put(o.pod("prod", "later", "10.1.0.9"))  # a later change, applied with the kept version
    state = dataplane.wait_for(lambda c: "prod/later" in c.pod_by_key)
    assert state.cluster_policy_by_name["guard"].priority == 3


def test_without_the_crd_the_daemon_enforces_the_rest_and_finds_it_once_installed(apiserver, start_daemon, caplog):
    seed(apiserver)
    apiserver.absent.add("clusternetworkpolicies")
    daemon, dataplane = start_daemon(apiserver, crd_retry_interval=0.2)
    dataplane.wait_for(lambda c: "prod/deny-all" in policy_keys(c))
    assert daemon.controller.status.ready
    time.sleep(0.7)  # several more looks
    said = [r for r in caplog.records if "is not served (CRD not installed)" in r.getMessage()]
    assert len(said) == 1 and "looking again every 0.2s" in said[0].getMessage()  # said once
    lists = [p for _m, p in apiserver.requests("/apis/policy.networking.k8s.io/v1alpha2/clusternetworkpolicies")]
    assert len(lists) >= 3  # it keeps looking
    apiserver.absent.clear()
    apiserver.put(o.cluster_network_policy("guard", ingress=[DENY_Y]))
    dataplane.wait_for(lambda c: cluster_policy_names(c) == {"guard"}, timeout=5)
    assert "v1alpha2 is served now" in caplog.text
    # Forbidden later (RBAC changed): the ones last listed stay enforced; removing the CRD removes them.
    deadline = time.monotonic() + 5
    while apiserver.open_watches() < 5:  # the watch is open, so dropping it drops it
        assert time.monotonic() < deadline, "the ClusterNetworkPolicy watch never opened"
        time.sleep(0.02)
    apiserver.forbidden.add("clusternetworkpolicies")
    apiserver.drop_watches()
    wait_for_log(caplog, "forbidden (RBAC); keeping the ones last listed")
    apiserver.put(o.pod("prod", "later", "10.1.0.9"))
    assert cluster_policy_names(dataplane.wait_for(lambda c: "prod/later" in c.pod_by_key)) == {"guard"}
    apiserver.forbidden.clear()
    apiserver.absent.add("clusternetworkpolicies")
    dataplane.wait_for(lambda c: not c.cluster_policies, timeout=5)


def wait_for_log(caplog, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in caplog.text:
        assert time.monotonic() < deadline, f"never logged: {text}"
        time.sleep(0.05)


def test_a_cluster_policy_that_fails_closed_is_posted_as_an_event_on_it(apiserver, start_daemon):
    seed(apiserver)
    from tests.daemon.recorder import RecordingDataplane

    dns = {"action": "Deny", "to": [{"domainNames": ["example.com"]}]}
    apiserver.put(o.cluster_network_policy("dns", egress=[dns]))
    dataplane = RecordingDataplane()
    dataplane.unenforceable = {"cnp:dns": "spec.egress[0]: domainNames is not supported"}
    start_daemon(apiserver, dataplane=dataplane)
    deadline = time.monotonic() + 5
    while not apiserver.events():
        assert time.monotonic() < deadline, "no Event posted"
        time.sleep(0.05)
    (event,) = apiserver.events()
    involved = event["involvedObject"]
    assert involved["kind"] == "ClusterNetworkPolicy" and involved["name"] == "dns" and "namespace" not in involved
    assert involved["apiVersion"] == "policy.networking.k8s.io/v1alpha2" and involved["uid"]
    assert event["metadata"]["namespace"] == "default" and "fails it closed" in event["message"]
