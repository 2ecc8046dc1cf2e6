"""diff_states: which connections flip, and the policies, rules and objects blamed for it."""

from __future__ import annotations

import copy

from whatif_helpers import ALLOW_DB, BASE, DB, WEB

from kube.manifests import cluster_of, namespace, pod, policy
from kube.model import PortSpec
from simulator.engine import Simulator
from simulator.whatif import diff_states

P80, P5432 = PortSpec(80), PortSpec(5432)


def diff(before: list, after: list, ports=(P80, P5432), declared_only: bool = False):
    return diff_states(Simulator(cluster_of(before)), Simulator(cluster_of(after)), list(ports),
                       declared_only=declared_only)


def triples(changes) -> set[tuple[str, str, int]]:
    return {(c.src, c.dst, c.port) for c in changes}


def test_added_allow_policy_gains_connections_blamed_on_its_rule() -> None:
    d = diff(BASE, [*BASE, ALLOW_DB])
    assert triples(d.gained) == {("x/web-1", "x/db-1", 5432), ("x/web-2", "x/db-1", 5432)}
    assert not d.lost
    assert all(c.because == ("x/allow-db ingress[0]",) for c in d.gained)
    assert d.policies.added == ("x/allow-db",)


def test_deleted_allow_policy_loses_what_its_rule_allowed() -> None:
    after = [o for o in BASE if o["metadata"]["name"] != "allow-web"]
    d = diff(BASE, after)
    assert triples(d.lost) == {("y/client-1", "x/web-1", 80), ("y/client-1", "x/web-2", 80)}
    assert {c.because for c in d.lost} == {("x/allow-web ingress[0]",)}
    assert d.policies.deleted == ("x/allow-web",)


def test_new_isolation_is_blamed_on_the_isolating_policy() -> None:
    deny_y = policy("y", "deny-egress", {"podSelector": {}, "policyTypes": ["Egress"]})
    d = diff(BASE, [*BASE, deny_y])
    assert ("y/client-1", "x/web-1", 80) in triples(d.lost)
    assert {c.because for c in d.lost} == {("y/deny-egress isolates egress",)}
    assert not d.gained


def test_removed_isolation_gains_connections_naming_the_policy_that_isolated() -> None:
    after = [o for o in BASE if o["metadata"]["name"] != "deny-all"]
    d = diff(BASE, after)
    # db was isolated by deny-all alone; web stays isolated by allow-web
    assert ("x/web-1", "x/db-1", 5432) in triples(d.gained)
    assert ("y/client-1", "x/web-1", 5432) not in triples(d.gained)
    blamed = {c.because for c in d.gained if c.dst == "x/db-1"}
    assert blamed == {("x/deny-all isolates ingress",)}


def test_edited_rule_port_moves_connections() -> None:
    edited = copy.deepcopy(BASE)
    edited[-1]["spec"]["ingress"][0]["ports"] = [{"port": 5432}]
    d = diff(BASE, edited)
    assert triples(d.lost) == {("y/client-1", "x/web-1", 80), ("y/client-1", "x/web-2", 80)}
    assert triples(d.gained) == {("y/client-1", "x/web-1", 5432), ("y/client-1", "x/web-2", 5432)}
    assert d.policies.edited == ("x/allow-web",)


def test_relabelled_pod_is_named_with_the_rule() -> None:
    after = [o for o in BASE if o["metadata"]["name"] != "web-2"]
    after.append(pod("x", "web-2", {"app": "other"}, ports=WEB))
    d = diff(BASE, after)
    lost = [c for c in d.lost if c.dst == "x/web-2"]
    assert lost and all(c.because == ("x/allow-web ingress[0]", "pod x/web-2 relabelled") for c in lost)


def test_relabelled_namespace_is_named() -> None:
    after = [namespace("y", {"team": "c"}) if o["kind"] == "Namespace" and o["metadata"]["name"] == "y" else o
             for o in BASE]
    d = diff(BASE, after)
    assert triples(d.lost) == {("y/client-1", "x/web-1", 80), ("y/client-1", "x/web-2", 80)}
    assert all("namespace y relabelled" in c.because for c in d.lost)


def test_added_and_deleted_pods_count_all_their_allowed_connections() -> None:
    added = pod("y", "client-2", {"app": "client"}, ports=WEB)
    d = diff(BASE, [*BASE, added])
    # client-2 reaches the web pods (allow-web) and client-1 (y has no policy), and client-1 reaches it
    assert triples(d.gained) == {
        ("y/client-2", "x/web-1", 80), ("y/client-2", "x/web-2", 80), ("y/client-2", "y/client-1", 80),
        ("y/client-1", "y/client-2", 80), ("y/client-2", "y/client-1", 5432), ("y/client-1", "y/client-2", 5432),
        # x pods may send anywhere (no egress policy) and y/client-2 is not isolated
        ("x/web-1", "y/client-2", 80), ("x/web-2", "y/client-2", 80), ("x/db-1", "y/client-2", 80),
        ("x/web-1", "y/client-2", 5432), ("x/web-2", "y/client-2", 5432), ("x/db-1", "y/client-2", 5432),
    }
    assert all("pod y/client-2 added" in c.because for c in d.gained)
    assert ("y/client-2 -> x/web-1", ("x/allow-web ingress[0]", "pod y/client-2 added")) in {
        (f"{c.src} -> {c.dst}", c.because) for c in d.gained
    }
    back = diff([*BASE, added], BASE)
    assert triples(back.lost) == triples(d.gained) and not back.gained
    assert all("pod y/client-2 deleted" in c.because for c in back.lost)


def test_declared_only_compares_each_destination_on_its_own_ports() -> None:
    d = diff(BASE, [o for o in BASE if o["metadata"]["name"] != "deny-all"], declared_only=True)
    assert {(c.dst, c.port) for c in d.gained} <= {("x/db-1", 5432), ("x/web-1", 80), ("x/web-2", 80)}
    assert ("x/web-1", "x/db-1", 5432) in triples(d.gained)
    assert all(not (c.dst == "x/db-1" and c.port == 80) for c in d.gained)


def test_no_change_no_diff_and_self_pairs_never_reported() -> None:
    d = diff(BASE, BASE)
    assert d.to_json() == {"gained": [], "lost": []}
    d = diff(BASE, [*BASE, pod("x", "db-2", {"app": "db"}, ports=DB)])
    assert all(c.src != c.dst for c in d.gained)


def test_json_shape_is_exact() -> None:
    d = diff(BASE, [*BASE, ALLOW_DB]).to_json()
    assert set(d) == {"gained", "lost"}
    for entry in d["gained"]:
        assert set(entry) == {"src", "dst", "port", "protocol", "because"}
        assert isinstance(entry["port"], int) and entry["protocol"] == "TCP"
        assert all(isinstance(b, str) for b in entry["because"])
        assert entry["src"].count("/") == 1
