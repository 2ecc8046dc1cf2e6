"""The rules enforce NetworkPolicy on the real kernel: real TCP/UDP connections between pods.

Every test builds its own virtual node(s) (network namespaces, unique names per test, so
``pytest -n 2`` is safe), applies policies with the enforcer, and probes. Each runs on both
dataplanes (iptables, nftables); the first ones also on both iptables backends.
"""

from __future__ import annotations

import pytest

from kube.model import ContainerPort, PortSpec
from tests.dataplane.helpers import TCP80, cluster, pod, policy, web_ports, world

pytestmark = pytest.mark.kernel
DATAPLANES = ("iptables", "nftables")
# (dataplane, iptables backend): the nftables dataplane has no backend of its own.
SETUPS = [("iptables", "nft"), ("iptables", "legacy"), ("nftables", "nft")]
UDP53 = PortSpec(53, "UDP")
TCP8080 = PortSpec(8080, "TCP")


def _pods():
    return [
        pod("x/web", "10.1.0.2", {"app": "web"}, ports=web_ports()),
        pod("x/client", "10.1.0.3", {"app": "client"}, ports=web_ports()),
        pod("y/client", "10.1.0.4", {"app": "client"}, ports=web_ports()),
    ]


@pytest.mark.parametrize(("dataplane", "backend"), SETUPS)
def test_ingress_policy_allows_only_its_peers_and_ports(dataplane: str, backend: str) -> None:
    pods = _pods()
    with world(pods, backend=backend, dataplane=dataplane) as w:
        probes = [
            ("x/client", "x/web", TCP80),
            ("y/client", "x/web", TCP80),
            ("x/client", "x/web", TCP8080),
            ("x/client", "x/web", UDP53),
            ("x/web", "x/client", TCP80),
        ]
        assert w.matrix(probes) == [True] * 5  # nothing isolated yet
        p = policy(
            "x",
            "allow-client",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [
                    {
                        "from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                        "ports": [{"port": "http"}, {"protocol": "UDP", "port": 53}],
                    }
                ],
            },
        )
        (res,) = w.apply(cluster(pods, [p]))
        assert res.changed and res.backend == (backend if dataplane == "iptables" else "nftables")
        assert w.matrix(probes) == [True, False, False, True, True]


@pytest.mark.parametrize(("dataplane", "backend"), SETUPS)
def test_egress_policy_is_enforced_at_the_source(dataplane: str, backend: str) -> None:
    pods = _pods()
    with world(pods, backend=backend, dataplane=dataplane) as w:
        p = policy(
            "x",
            "client-out",
            {
                "podSelector": {"matchLabels": {"app": "client"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 80}]}],
            },
        )
        w.apply(cluster(pods, [p]))
        got = w.matrix(
            [
                ("x/client", "x/web", TCP80),
                ("x/client", "x/web", TCP8080),
                ("x/client", "y/client", TCP80),
                ("y/client", "x/client", TCP80),
                ("x/client", "x/web", UDP53),
            ]
        )
        assert got == [True, False, False, True, False]


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_ingress_and_egress_together_and_deny_all(dataplane: str) -> None:
    pods = _pods()
    with world(pods, dataplane=dataplane) as w:
        deny_y = policy("y", "deny-all", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
        w.apply(cluster(pods, [deny_y]))
        got = w.matrix([("x/client", "y/client", TCP80), ("y/client", "x/web", TCP80), ("x/client", "x/web", TCP80)])
        assert got == [False, False, True]


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_named_ports_end_port_and_ip_block_with_except(dataplane: str) -> None:
    pods = [
        pod("x/web", "10.1.0.2", {"app": "web"}, ports=(ContainerPort(80, "TCP", "http"), ContainerPort(8080, "TCP"))),
        pod("x/web2", "10.1.0.5", {"app": "web"}, ports=(ContainerPort(8080, "TCP", "http"), ContainerPort(80, "TCP"))),
        pod("x/client", "10.1.0.3", ports=web_ports()),
        pod("y/client", "10.1.0.4", ports=web_ports()),
    ]
    with world(pods, dataplane=dataplane) as w:
        named = policy(
            "x",
            "named",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [
                    {
                        "from": [{"ipBlock": {"cidr": "10.1.0.0/24", "except": ["10.1.0.4/32"]}}],
                        "ports": [{"port": "http"}],
                    }
                ],
            },
        )
        w.apply(cluster(pods, [named]))
        got = w.matrix(
            [
                ("x/client", "x/web", TCP80),
                ("x/client", "x/web", TCP8080),
                ("x/client", "x/web2", TCP8080),
                ("x/client", "x/web2", TCP80),
                ("y/client", "x/web", TCP80),
            ]
        )
        assert got == [True, False, True, False, False]
        ranged = policy(
            "x",
            "named",
            {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 79, "endPort": 80}]}]},
        )
        w.apply(cluster(pods, [ranged]))
        got = w.matrix([("x/client", "x/web", TCP80), ("y/client", "x/web", TCP80), ("x/client", "x/web", TCP8080)])
        assert got == [True, True, False]


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_label_change_moves_a_pod_in_and_out_of_a_policy_without_touching_rules(dataplane: str) -> None:
    pods = _pods()
    with world(pods, dataplane=dataplane) as w:
        p = policy(
            "x",
            "allow-client",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
            },
        )
        w.apply(cluster(pods, [p]))
        assert w.reach("x/client", "x/web")
        relabelled = [pods[0], pod("x/client", "10.1.0.3", {"app": "other"}, ports=web_ports()), pods[2]]
        (res,) = w.apply(cluster(relabelled, [p]))
        assert not w.reach("x/client", "x/web")
        if dataplane == "iptables":
            assert [k for k, _ in res.latencies] == ["ipset"], res.summary  # set members only, no rule change
        else:
            assert [k for k, _ in res.latencies] == ["nft"] and "0 chains created, 0 rewritten" in res.summary[-1]
        (res,) = w.apply(cluster(pods, [p]))
        assert w.reach("x/client", "x/web")


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_policy_update_and_delete(dataplane: str) -> None:
    pods = _pods()
    with world(pods, dataplane=dataplane) as w:
        v1 = policy("x", "p", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 80}]}]})
        v2 = policy(
            "x", "p", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{"ports": [{"port": 8080}]}]}
        )
        w.apply(cluster(pods, [v1]))
        assert w.matrix([("x/client", "x/web", TCP80), ("x/client", "x/web", TCP8080)]) == [True, False]
        (res,) = w.apply(cluster(pods, [v2]))
        assert "policies updated: x/p" in res.summary
        assert w.matrix([("x/client", "x/web", TCP80), ("x/client", "x/web", TCP8080)]) == [False, True]
        (res,) = w.apply(cluster(pods, []))
        assert "policies removed: x/p" in res.summary
        assert w.matrix([("x/client", "x/web", TCP80), ("x/client", "x/web", TCP8080)]) == [True, True]
        kernel = w.enforcers["n1"]._read_kernel()
        if dataplane == "iptables":
            assert not kernel.sets
            assert not [c for c in kernel.chains if c.startswith(("AZURE-NPM-IN-", "AZURE-NPM-EG-"))]
        else:  # only the (empty) dispatch maps and the base chains are left
            assert set(kernel.sets) == {"ingress-dispatch", "egress-dispatch"}
            assert not kernel.sets["ingress-dispatch"][1]
            assert set(kernel.chains) == {"forward", "ingress", "policies"}


@pytest.mark.parametrize("dataplane", DATAPLANES)
def test_cross_node_traffic_is_enforced_at_both_ends(dataplane: str) -> None:
    pods = [
        pod("x/web", "10.1.0.2", {"app": "web"}, node="n1", ports=web_ports()),
        pod("x/client", "10.2.0.3", {"app": "client"}, node="n2", ports=web_ports()),
        pod("x/stranger", "10.2.0.4", {"app": "stranger"}, node="n2", ports=web_ports()),
    ]
    with world(pods, nodes=("n1", "n2"), dataplane=dataplane) as w:
        ingress = policy(
            "x",
            "web-in",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
            },
        )
        egress = policy(
            "x",
            "client-out",
            {
                "podSelector": {"matchLabels": {"app": "client"}},
                "policyTypes": ["Egress"],
                "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 80}]}],
            },
        )
        w.apply(cluster(pods, [ingress, egress]))
        got = w.matrix(
            [
                ("x/client", "x/web", TCP80),
                ("x/stranger", "x/web", TCP80),
                ("x/client", "x/web", TCP8080),
                ("x/client", "x/stranger", TCP80),
                ("x/web", "x/client", TCP80),
            ]
        )
        assert got == [True, False, False, False, True]
        # Targets are cluster-wide sets, so each node alone enforces both directions of a
        # flow that crosses it: the verdict never depends on which node checks.
        w.enforcers["n2"].cleanup()
        assert w.matrix(
            [("x/stranger", "x/web", TCP80), ("x/client", "x/web", TCP8080), ("x/client", "x/web", TCP80)]
        ) == [False, False, True]
        w.enforcers["n1"].cleanup()
        w.enforcers["n2"].apply(cluster(pods, [ingress, egress]))
        assert w.matrix(
            [("x/stranger", "x/web", TCP80), ("x/client", "x/web", TCP8080), ("x/client", "x/web", TCP80)]
        ) == [False, False, True]


@pytest.mark.parametrize(("dataplane", "backend"), SETUPS)
def test_sctp_rules_load_in_both_backends(dataplane: str, backend: str) -> None:
    # This kernel may lack SCTP sockets (no probe possible); the rules must still load.
    pods = _pods()
    with world(pods, backend=backend, dataplane=dataplane) as w:
        p = policy(
            "x",
            "sctp",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"ports": [{"protocol": "SCTP", "port": 3868, "endPort": 3870}, {"protocol": "SCTP"}]}],
            },
        )
        (res,) = w.apply(cluster(pods, [p]))
        assert res.ok
        if dataplane == "iptables":
            saved = w.topo.node_run("n1", [f"iptables-{backend}-save"]).stdout
            assert "-p sctp -m sctp --dport 3868:3870" in saved
        else:
            saved = w.topo.node_run("n1", ["nft", "list", "table", "inet", "azure-npm"]).stdout
            assert "sctp dport 3868-3870" in saved
        assert not w.reach("x/client", "x/web")  # TCP is not allowed by an SCTP-only policy
