"""diff and what-if count connections to and from outside addresses and nodes, not only pods."""

from __future__ import annotations

import json

from whatif_helpers import run, write

from kube.manifests import container_port, namespace, node, pod, policy

WEB = [container_port(80, name="http")]
CLUSTER = [
    namespace("shop"),
    node("n1", "172.18.0.2"),
    pod("shop", "web", {"app": "web"}, ip="10.244.0.5", node="n1", ports=WEB),
    pod("shop", "api", {"app": "api"}, ip="10.244.0.6", node="n1", ports=WEB),
    policy("shop", "default-deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}),
    policy("shop", "api-to-payments", {
        "podSelector": {"matchLabels": {"app": "api"}},
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "203.0.113.0/24"}}], "ports": [{"port": 443}]}],
    }),
    policy("shop", "web-from-internet", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]}],
    }),
]


def test_deleting_the_only_egress_to_an_outside_range_is_a_lost_connection(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "c.yaml", CLUSTER)
    code, out, err = run(capsys, "what-if", "-f", path, "--delete", "networkpolicy/shop/api-to-payments",
                         "--fail-on", "lost", "-o", "json")
    assert code == 1, err  # a CI gate on lost connections fails
    lost = json.loads(out)["lost"]
    rows = {(c["src"], c["dst"], c["port"], c["protocol"]) for c in lost}
    assert rows == {("shop/api", "203.0.113.0/24", 443, "TCP")}
    assert lost[0]["because"] == ["shop/api-to-payments egress[0]"]


def test_deleting_ingress_from_the_internet_says_the_internet_lost_the_port(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "c.yaml", CLUSTER)
    code, out, err = run(capsys, "what-if", "-f", path, "--delete", "networkpolicy/shop/web-from-internet",
                         "-o", "json")
    assert code == 0, err
    lost = json.loads(out)["lost"]
    sources = {c["src"] for c in lost if c["dst"] == "shop/web" and c["port"] == 80}
    assert "203.0.113.0/24" in sources and "8.0.0.0/7" in sources  # the internet, CIDR by CIDR
    assert not any(s.startswith("10.") for s in sources)  # the excepted range never had it
    assert "node/n1" not in sources  # a node always reaches its own pods: nothing lost


def test_no_outside_compares_pods_only(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "c.yaml", CLUSTER)
    code, out, _err = run(capsys, "what-if", "-f", path, "--delete", "networkpolicy/shop/api-to-payments",
                          "--no-outside", "-o", "json")
    doc = json.loads(out)
    assert code == 0 and (doc["gained"], doc["lost"]) == ([], [])
    assert doc["inputs"]["before"]["used"]["NetworkPolicy"] == 3  # the accounting rides along


def test_a_new_egress_to_another_node_is_a_gained_connection(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    cluster = [*CLUSTER, node("n2", "172.18.0.3")]
    allow = policy("shop", "api-to-n2", {
        "podSelector": {"matchLabels": {"app": "api"}},
        "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": "172.18.0.3/32"}}], "ports": [{"port": 10250}]}],
    })
    path = write(tmp_path / "c.yaml", cluster)
    new = write(tmp_path / "new.yaml", [allow])
    code, out, err = run(capsys, "what-if", "-f", path, "--apply", new, "-o", "json")
    assert code == 0, err
    gained = {(c["src"], c["dst"], c["port"]) for c in json.loads(out)["gained"]}
    assert ("shop/api", "node/n2", 10250) in gained


def test_reach_outside_adds_nodes_and_outside_blocks_as_rows(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "c.yaml", CLUSTER)
    code, out, err = run(capsys, "reach", "-f", path, "--outside", "--port", "443/TCP", "--port", "80/TCP",
                         "-o", "json")
    assert code == 0, err
    rows = {(c["src"], c["dst"], c["port"]): c["allowed"] for c in json.loads(out)["connections"]}
    assert rows[("shop/api", "203.0.113.0/24", 443)] is True
    world = [dst for src, dst, port in rows if src == "shop/api" and port == 443 and dst.startswith("8.")]
    assert world and not any(rows[("shop/api", dst, 443)] for dst in world)  # the rest of the world: denied
    assert rows[("8.0.0.0/7", "shop/web", 80)] is True and rows[("8.0.0.0/7", "shop/api", 80)] is False
    assert rows[("node/n1", "shop/api", 80)] is True  # its own node
    code, out, _err = run(capsys, "reach", "-f", path, "--port", "80/TCP", "-o", "json")
    assert not any("/" in c["src"] and not c["src"].startswith("shop/") for c in json.loads(out)["connections"])


def test_summary_outside_counts_pairs_with_nodes_and_outside_blocks(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "c.yaml", CLUSTER)
    code, out, err = run(capsys, "summary", "-f", path, "--port", "443/TCP", "--outside", "-o", "json")
    assert code == 0, err
    counts = json.loads(out)["outside"]["443/TCP"]
    # 2 pods x (node n1 + 3 blocks) x 2 directions: api -> 203.0.113.0/24 and both pods <-> their own
    # node are allowed, plus the internet (but not 10/8) -> web; every other pair is denied.
    assert counts["endpoints"] == 4 and counts["allowed"] + counts["denied"] == 16
    assert counts["allowed"] == 1 + 4 + 2


def test_exposure_lists_the_outside_endpoints_a_pod_reaches(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path / "c.yaml", CLUSTER)
    code, out, err = run(capsys, "exposure", "-f", path, "--from", "shop/api", "--port", "443/TCP", "-o", "json")
    assert code == 0, err
    outside = json.loads(out)["outside"]
    reaches = {r["endpoint"]: r for r in outside["reaches"]}
    assert reaches["203.0.113.0/24"]["ports"] == ["443/TCP"] and reaches["node/n1"]["hops"] == 0
    assert not any(e.startswith("8.") for e in reaches)  # nothing else outside
