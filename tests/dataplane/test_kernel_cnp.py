"""ClusterNetworkPolicy tiers enforced on the real kernel: real TCP/UDP connections between pods
in network namespaces, one topology per test shared by its cases (each case: apply, probe).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from kube.model import Labels, Node, PortSpec
from tests.dataplane.helpers import TCP80, cluster, cnp, never_reaches, ns_is, pod, policy, web_ports, world

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]
UDP53 = PortSpec(53, "UDP")
WEB = {"pods": {"namespaceSelector": ns_is("x"), "podSelector": {"matchLabels": {"app": "web"}}}}
IN_X = {"namespaces": ns_is("x")}
FROM_Y = [{"namespaces": ns_is("y")}]
FROM_ALL = [{"namespaces": {}}]


def _web_from(app: str):
    return policy(
        "x",
        "web",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": app}}}]}],
        },
    )


def _deny(ns: str, types: list[str], selector: dict | None = None):
    return policy(
        ns, "deny-" + "-".join(t.lower() for t in types), {"podSelector": selector or {}, "policyTypes": types}
    )


@pytest.mark.parametrize("backend", ("nft", "legacy"))
def test_admin_and_baseline_tiers_around_networkpolicy_ingress_and_egress(backend: str) -> None:
    pods = [
        pod("x/web", "10.1.0.2", {"app": "web"}, ports=web_ports()),
        pod("x/client", "10.1.0.3", {"app": "client"}, ports=web_ports()),
        pod("y/client", "10.1.0.4", {"app": "client"}, ports=web_ports()),
    ]
    x_web, y_web, y_x = ("x/client", "x/web", TCP80), ("y/client", "x/web", TCP80), ("y/client", "x/client", TCP80)
    with world(pods, backend=backend) as w:

        def case(policies, cluster_policies, probes):
            w.apply(cluster(pods, policies, cluster_policies=cluster_policies))
            return w.matrix(probes)

        # Admin Deny overrides a NetworkPolicy that allows.
        deny_y = cnp("deny-y", subject=WEB, ingress=[{"action": "Deny", "from": FROM_Y}])
        assert case([_web_from("client")], [deny_y], [x_web, y_web]) == [True, False]
        # Admin Accept overrides a NetworkPolicy that denies (ingress).
        accept_y = cnp("accept-y", subject=WEB, ingress=[{"action": "Accept", "from": FROM_Y}])
        assert case([_deny("x", ["Ingress"], {"matchLabels": {"app": "web"}})], [accept_y], [x_web, y_web]) == [
            False,
            True,
        ]
        # Pass goes on to NetworkPolicy, skipping the later Admin Deny.
        pass_x = cnp("pass-x", priority=1, subject=WEB, ingress=[{"action": "Pass", "from": [IN_X]}])
        deny_all = cnp("deny-all", priority=2, subject=WEB, ingress=[{"action": "Deny", "from": FROM_ALL}])
        assert case([_web_from("client")], [pass_x, deny_all], [x_web, y_web]) == [True, False]
        assert case([_web_from("other")], [pass_x, deny_all], [x_web, y_web]) == [False, False]
        # Priorities: the lower number decides.
        accept_first = cnp("b-accept", priority=1, subject=WEB, ingress=[{"action": "Accept", "from": FROM_Y}])
        deny_second = cnp("a-deny", priority=2, subject=WEB, ingress=[{"action": "Deny", "from": FROM_Y}])
        assert case([], [accept_first, deny_second], [y_web]) == [True]
        assert case([], [replace(accept_first, priority=3), deny_second], [y_web]) == [False]
        # Baseline Deny only for the pods no NetworkPolicy selects in that direction.
        baseline = cnp("baseline", "Baseline", subject={"namespaces": {}}, ingress=[{"action": "Deny", "from": FROM_Y}])
        assert case([_web_from("client")], [baseline], [x_web, y_web, y_x]) == [True, True, False]
        # An egress Accept ends egress evaluation only: ingress at the destination still applies.
        out_y = cnp("out-y", subject={"namespaces": ns_is("y")}, egress=[{"action": "Accept", "to": FROM_ALL}])
        policies = [_deny("y", ["Egress"]), _deny("x", ["Ingress"], {"matchLabels": {"app": "web"}})]
        assert case(policies, [out_y], [y_web, y_x, ("y/client", "x/client", UDP53)]) == [False, True, True]
        assert case(policies, [], [y_x]) == [False]  # without it, y's NetworkPolicy denies its egress


def test_networks_nodes_and_unsupported_peers_on_egress() -> None:
    pods = [
        pod("x/client", "10.1.0.3", {"app": "client"}, ports=web_ports()),
        pod("y/client", "10.1.0.4", {"app": "client"}, ports=web_ports()),
    ]
    nodes = [
        Node("n1", ip="172.18.0.10", labels=Labels({"role": "worker"})),
        Node("n2", ip="172.18.0.11", labels=Labels({"role": "infra"})),
    ]
    outside, node2 = "10.9.0.9", "172.18.0.11"
    with world(pods, nodes=("n1", "n2")) as w:
        # A server outside the cluster (no object names it) and a hostNetwork server on node n2.
        w.topo.add_pod("n1", "ext/server", outside, web_ports())
        w.topo.add_pod("n2", "n2/host", node2, web_ports(), host_network=True)
        enforcer = w.enforcers["n1"]  # every probe leaves from a pod on n1: egress is checked there

        def case(cluster_policies, probes):
            res = enforcer.apply(cluster(pods, nodes=nodes, cluster_policies=cluster_policies))
            assert res.ok, res.failures
            return w.matrix(probes)

        from_x = [("x/client", outside, TCP80), ("x/client", "y/client", TCP80), ("x/client", node2, TCP80)]
        from_y = [("y/client", outside, TCP80), ("y/client", node2, TCP80)]
        assert case([], from_x + from_y) == [True] * 5
        # networks: an outside address and a pod's address alike.
        nets = cnp(
            "nets", subject=IN_X, egress=[{"action": "Deny", "to": [{"networks": ["10.9.0.0/24", "10.1.0.4/32"]}]}]
        )
        assert case([nets], from_x + from_y) == [False, False, True, True, True]
        # nodes: the address of the Node objects the selector picks.
        infra = cnp(
            "infra", subject=IN_X, egress=[{"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "infra"}}}]}]
        )
        assert case([infra], from_x + from_y) == [True, True, False, True, True]
        # domainNames cannot be enforced: a Deny with it denies all egress of its subject (ports ignored) ...
        dns = cnp(
            "dns",
            subject=IN_X,
            egress=[
                {
                    "action": "Deny",
                    "to": [{"domainNames": ["example.com"]}],
                    "protocols": [{"tcp": {"destinationPort": {"number": 443}}}],
                }
            ],
        )
        probes = [*from_x, ("x/client", "y/client", UDP53), *from_y, ("y/client", "x/client", TCP80)]
        assert case([dns], probes) == [False, False, False, False, True, True, True]
        res = enforcer.apply(cluster(pods, nodes=nodes, cluster_policies=[dns]))
        assert [k for k, _ in res.unenforceable] == ["cnp:dns"]
        # ... and an Accept with it matches nothing (a NetworkPolicy denying egress still decides).
        accept = cnp("dns", subject=IN_X, egress=[{"action": "Accept", "to": [{"domainNames": ["example.com"]}]}])
        res = enforcer.apply(cluster(pods, [_deny("x", ["Egress"])], nodes=nodes, cluster_policies=[accept]))
        assert res.ok and w.matrix(from_x) == [False] * 3
        # The command line: apply from files, the debug tool on the live kernel, cleanup.
        enforcer.cleanup()
        manifests = w.topo.scratch("manifests") / "cluster.yaml"
        manifests.write_text(CLI_MANIFESTS)

        def azure_npm(*args: str) -> subprocess.CompletedProcess[str]:
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            return w.topo.node_run("n1", [sys.executable, "-m", "npm.cli", *args], env=env, timeout=60)

        res = azure_npm("apply", "-f", str(manifests), "--node-name", "n1")
        assert res.returncode == 0, res.stderr
        assert "1 ClusterNetworkPolicy" in res.stderr and "cluster network policies: 1 Admin" in res.stdout
        assert w.matrix(from_x + from_y) == [False, True, True, True, True]
        res = azure_npm("debug", "gettuples", "-s", "10.1.0.3", "-d", outside, "-o", "json")
        decided = json.loads(res.stdout)["decided_by"]
        assert [(d["tier"], d["rule"]) for d in decided] == [
            ("Admin", "cnp:outside Admin egress[0] to[0] protocols[any] Deny")
        ]
        assert azure_npm("cleanup").returncode == 0
        assert w.matrix(from_x) == [True] * 3
        # The nftables dataplane does not evaluate them: it says so rather than ignoring them.
        from npm.dataplane.nft_enforcer import NftEnforcer

        nft = NftEnforcer("n1", config=enforcer.config, runner=enforcer.runner)
        res = nft.apply(cluster(pods, nodes=nodes, cluster_policies=[nets]))
        assert [str(f) for f in res.failures] == [
            "nftables failed: 1 ClusterNetworkPolicy object(s) not enforced (nets): the nftables dataplane does "
            "not evaluate them yet; the iptables dataplane does"]
        nft.cleanup()


def test_refused_rules_or_sets_fail_the_cluster_policy_closed_and_name_it() -> None:
    from npm.dataplane import names
    from npm.dataplane.translate import translate

    pods = [
        pod("x/web", "10.1.0.2", {"app": "web"}, ports=web_ports()),
        pod("x/client", "10.1.0.3", {"app": "client"}, ports=web_ports()),
        pod("y/client", "10.1.0.4", {"app": "client"}, ports=web_ports()),
    ]
    clients = {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "client"}}}}
    guard = cnp(
        "guard", subject=WEB, ingress=[{"action": "Accept", "from": FROM_Y}, {"action": "Deny", "from": [clients]}]
    )
    other = cnp("other", "Baseline", subject={"namespaces": ns_is("y")}, ingress=[{"action": "Deny", "from": [IN_X]}])
    c = cluster(pods, cluster_policies=[guard, other])
    probes = [("y/client", "x/web", TCP80), ("x/client", "x/web", TCP80), ("x/client", "y/client", TCP80)]
    with world(pods) as w:
        e = w.enforcers["n1"]
        assert e.apply(c).ok and w.matrix(probes) == [True, False, False]
        # The kernel refuses the Accept rule (its peer set is missing): the policy is applied in its
        # fail-closed form (its Deny matches everything), the other one as written.
        e.cleanup()
        desired = translate(c)
        peer = next(n for n, s in desired.sets.items() if s.meaning == "nslabel:kubernetes.io/metadata.name=y")
        base = tuple(
            replace(ch, rules=tuple(r for r in ch.rules if peer not in r.args)) if ch.name == names.CHAIN_SETS else ch
            for ch in desired.base_chains
        )
        res = e.apply_desired(
            replace(desired, sets={n: s for n, s in desired.sets.items() if n != peer}, base_chains=base)
        )
        (failure,) = res.failures
        assert failure.policy == failure.failed_closed == "cnp:guard" and failure.line is not None
        assert "cnp:guard Admin ingress[0] from[0] protocols[any] Accept" in str(failure)
        assert "ClusterNetworkPolicy guard applied in its fail-closed form" in str(failure)
        assert w.matrix(probes) == [False, False, False]
        assert e.apply(c).ok and w.matrix(probes) == [True, False, False]  # a correct apply repairs it
        # A set the kernel refuses to create (someone holds its name): the same, for the policy using it.
        e.cleanup()
        deny_peer = next(n for n, s in desired.sets.items() if s.meaning == "podlabel:app=client (closing copy)")
        w.topo.node_run("n1", ["ipset", "create", deny_peer, "hash:net"], check=True)
        fresh = type(e)("n1", config=e.config, runner=e.runner)
        res = fresh.apply(c)
        (failure,) = res.failures
        assert failure.failed_closed == "cnp:guard" and failure.line_text.startswith("create " + deny_peer)
        assert w.matrix(probes) == [False, False, False]  # guard denies all; the other policy is in force
        # The squatter's set carried our prefix, so the apply removed it as stale: the next one succeeds.
        assert fresh.apply(c).ok and w.matrix(probes) == [True, False, False]


def test_a_pod_leaving_a_deny_peer_for_the_rules_new_peer_is_never_let_in() -> None:
    """Deny role=b becomes Deny role=b or role=c while the stranger's role goes from b to c: it
    is denied before and after, and every intermediate state (held a second each) keeps it out.
    Removing it from the role=b set opens under the old rules, so that waits for the new ones."""
    from npm.dataplane.kernel import Runner
    from tests.dataplane.test_kernel_ordering import PAUSE

    web = pod("x/web", "10.1.0.2", {"app": "web"}, ports=web_ports())
    client = pod("x/client", "10.1.0.3", {"role": "a"}, ports=web_ports())
    stranger = pod("x/stranger", "10.1.0.4", {"role": "b"}, ports=web_ports())

    def deny(*roles: str):
        peers = [{"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"role": r}}}} for r in roles]
        return cnp("keep-out", subject=WEB, ingress=[{"action": "Deny", "from": peers}])

    probes = [("x/client", "x/web", TCP80), ("x/stranger", "x/web", TCP80)]
    with world([web, client, stranger]) as w:
        w.apply(cluster([web, client, stranger], cluster_policies=[deny("b")]))
        assert w.matrix(probes) == [True, False]
        after = cluster(
            [web, client, replace(stranger, labels=Labels({"role": "c"}))], cluster_policies=[deny("b", "c")]
        )
        enforcer = w.enforcers["n1"]
        enforcer.runner = Runner([*PAUSE, *w.topo.node_runner("n1")])
        with never_reaches(w, "x/stranger", "x/web"):
            res = enforcer.apply(after)
        assert res.ok, res.failures
        assert [k for k, _ in res.latencies] == ["ipset", "iptables-nft", "ipset-after"], res.latencies
        assert w.matrix(probes) == [True, False]


CLI_MANIFESTS = """
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: x}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.1.0.3}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: y}
spec: {nodeName: n1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.1.0.4}
---
apiVersion: policy.networking.k8s.io/v1alpha2
kind: ClusterNetworkPolicy
metadata: {name: outside}
spec:
  tier: Admin
  priority: 0
  subject: {namespaces: {matchLabels: {kubernetes.io/metadata.name: x}}}
  egress: [{action: Deny, to: [{networks: [10.9.0.0/24]}]}]
"""
