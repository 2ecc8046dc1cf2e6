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
DATAPLANES = (("iptables", "nft"), ("iptables", "legacy"), ("nftables", "nft"))  # (dataplane, iptables backend)


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


def test_admin_and_baseline_tiers_around_networkpolicy_ingress_and_egress() -> None:
    pods = [
        pod("x/web", "10.1.0.2", {"app": "web"}, ports=web_ports()),
        pod("x/client", "10.1.0.3", {"app": "client"}, ports=web_ports()),
        pod("y/client", "10.1.0.4", {"app": "client"}, ports=web_ports()),
    ]
    x_web, y_web, y_x = ("x/client", "x/web", TCP80), ("y/client", "x/web", TCP80), ("y/client", "x/client", TCP80)
    deny_y = cnp("deny-y", subject=WEB, ingress=[{"action": "Deny", "from": FROM_Y}])
    accept_y = cnp("accept-y", subject=WEB, ingress=[{"action": "Accept", "from": FROM_Y}])
    pass_x = cnp("pass-x", priority=1, subject=WEB, ingress=[{"action": "Pass", "from": [IN_X]}])
    deny_all = cnp("deny-all", priority=2, subject=WEB, ingress=[{"action": "Deny", "from": FROM_ALL}])
    accept_first = cnp("b-accept", priority=1, subject=WEB, ingress=[{"action": "Accept", "from": FROM_Y}])
    deny_second = cnp("a-deny", priority=2, subject=WEB, ingress=[{"action": "Deny", "from": FROM_Y}])
    baseline = cnp("baseline", "Baseline", subject={"namespaces": {}}, ingress=[{"action": "Deny", "from": FROM_Y}])
    out_y = cnp("out-y", subject={"namespaces": ns_is("y")}, egress=[{"action": "Accept", "to": FROM_ALL}])
    deny_web = _deny("x", ["Ingress"], {"matchLabels": {"app": "web"}})
    deny_out_in = [_deny("y", ["Egress"]), deny_web]
    cases = [  # (what, NetworkPolicies, ClusterNetworkPolicies, probes, expected)
        ("Admin Deny overrides a NetworkPolicy that allows", [_web_from("client")], [deny_y], [x_web, y_web],
         [True, False]),
        ("Admin Accept overrides a NetworkPolicy that denies", [deny_web], [accept_y], [x_web, y_web], [False, True]),
        ("Pass goes on to NetworkPolicy, skipping the later Admin Deny", [_web_from("client")], [pass_x, deny_all],
         [x_web, y_web], [True, False]),
        ("Pass goes on to NetworkPolicy, which denies", [_web_from("other")], [pass_x, deny_all], [x_web, y_web],
         [False, False]),
        ("the lower priority number decides (Accept)", [], [accept_first, deny_second], [y_web], [True]),
        ("the lower priority number decides (Deny)", [], [replace(accept_first, priority=3), deny_second], [y_web],
         [False]),
        ("Baseline Deny only for pods no NetworkPolicy selects", [_web_from("client")], [baseline],
         [x_web, y_web, y_x], [True, True, False]),
        ("an egress Accept leaves the destination's ingress to decide", deny_out_in, [out_y],
         [y_web, y_x, ("y/client", "x/client", UDP53)], [False, True, True]),
        ("without it, y's NetworkPolicy denies its egress", deny_out_in, [], [y_x], [False]),
    ]
    with world(pods) as w:
        for dataplane, backend in DATAPLANES:  # one topology, each dataplane in turn
            w.use(dataplane, backend)
            for what, policies, cluster_policies, probes, expected in cases:
                w.apply(cluster(pods, policies, cluster_policies=cluster_policies))
                assert w.matrix(probes) == expected, f"{dataplane} ({backend}): {what}"


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
    from_x = [("x/client", outside, TCP80), ("x/client", "y/client", TCP80), ("x/client", node2, TCP80)]
    from_y = [("y/client", outside, TCP80), ("y/client", node2, TCP80)]
    nets = cnp("nets", subject=IN_X, egress=[{"action": "Deny", "to": [{"networks": ["10.9.0.0/24", "10.1.0.4/32"]}]}])
    infra = cnp(
        "infra", subject=IN_X, egress=[{"action": "Deny", "to": [{"nodes": {"matchLabels": {"role": "infra"}}}]}]
    )
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
    dns_probes = [*from_x, ("x/client", "y/client", UDP53), *from_y, ("y/client", "x/client", TCP80)]
    accept = cnp("dns", subject=IN_X, egress=[{"action": "Accept", "to": [{"domainNames": ["example.com"]}]}])
    with world(pods, nodes=("n1", "n2")) as w:
        # A server outside the cluster (no object names it) and a hostNetwork server on node n2.
        w.topo.add_pod("n1", "ext/server", outside, web_ports())
        w.topo.add_pod("n2", "n2/host", node2, web_ports(), host_network=True)

        def case(cluster_policies, probes, policies=()):
            # Every probe leaves from a pod on n1: egress is checked there.
            res = w.enforcers["n1"].apply(cluster(pods, policies, nodes=nodes, cluster_policies=cluster_policies))
            assert res.ok, res.failures
            return w.matrix(probes)

        def azure_npm(dataplane: str, *args: str) -> subprocess.CompletedProcess[str]:
            env = {**os.environ, "PYTHONPATH": str(ROOT)}
            argv = [sys.executable, "-m", "npm.cli", *args, "--dataplane", dataplane]
            return w.topo.node_run("n1", argv, env=env, timeout=60)

        for dataplane, backend in DATAPLANES[::2]:  # iptables (nft backend), then nftables
            w.use(dataplane, backend)
            enforcer = w.enforcers["n1"]

            assert case([], from_x + from_y) == [True] * 5, dataplane
            # networks: an outside address and a pod's address alike.
            assert case([nets], from_x + from_y) == [False, False, True, True, True], dataplane
            # nodes: the address of the Node objects the selector picks.
            assert case([infra], from_x + from_y) == [True, True, False, True, True], dataplane
            # domainNames cannot be enforced: a Deny with it denies all egress of its subject (ports ignored) ...
            assert case([dns], dns_probes) == [False, False, False, False, True, True, True], dataplane
            res = enforcer.apply(cluster(pods, nodes=nodes, cluster_policies=[dns]))
            assert [k for k, _ in res.unenforceable] == ["cnp:dns"], dataplane
            assert res.counts["cluster_policies_admin"] == 1, res.counts
            # ... and an Accept with it matches nothing (a NetworkPolicy denying egress still decides).
            assert case([accept], from_x, [_deny("x", ["Egress"])]) == [False] * 3, dataplane
            enforcer.cleanup()
            # The command line: apply from files, the debug tool on the live kernel, cleanup.
            manifests = w.topo.scratch("manifests") / "cluster.yaml"
            manifests.write_text(CLI_MANIFESTS)
            res = azure_npm(dataplane, "apply", "-f", str(manifests), "--node-name", "n1")
            assert res.returncode == 0, res.stderr
            assert "1 ClusterNetworkPolicy" in res.stderr and "cluster network policies: 1 Admin" in res.stdout
            assert "not yet evaluated" not in res.stderr
            assert w.matrix(from_x + from_y) == [False, True, True, True, True], dataplane
            # verify: the kernel's verdicts, read back, are the simulator's (which evaluates CNPs too).
            res = azure_npm(dataplane, "verify", "-f", str(manifests), "--node-name", "n1")
            assert res.returncode == 0, res.stdout + res.stderr
            assert "1 ClusterNetworkPolicy" in res.stderr and "not yet evaluated" not in res.stderr
            if dataplane == "iptables":  # gettuples evaluates iptables rules
                res = azure_npm(dataplane, "debug", "gettuples", "-s", "10.1.0.3", "-d", outside, "-o", "json")
                decided = json.loads(res.stdout)["decided_by"]
                assert [(d["tier"], d["rule"]) for d in decided] == [
                    ("Admin", "cnp:outside Admin egress[0] to[0] protocols[any] Deny")
                ]
            else:  # the table names the rule
                res = azure_npm(dataplane, "debug", "convertiptable")
                assert "cnp:outside Admin egress[0] to[0] protocols[any] Deny" in res.stdout, res.stdout
            assert azure_npm(dataplane, "cleanup").returncode == 0
            assert w.matrix(from_x) == [True] * 3, dataplane


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
        # nftables: nft refuses the Accept rule of a table without its peer set; the transaction is
        # run again with the policy in its fail-closed form, the other one as written.
        from npm.dataplane.nft_translate import NftTranslator

        w.use("nftables")
        e = w.enforcers["n1"]
        state = NftTranslator().translate(c)
        peer = next(n for n, s in state.sets.items() if s.meaning == "nslabel:kubernetes.io/metadata.name=y")
        res = e.apply_desired(replace(state, sets={n: s for n, s in state.sets.items() if n != peer}))
        (failure,) = res.failures
        assert failure.policy == failure.failed_closed == "cnp:guard" and failure.line is not None
        assert "cnp:guard Admin ingress[0] from[0] protocols[any] Accept" in str(failure)
        assert "ClusterNetworkPolicy guard applied in its fail-closed form" in str(failure)
        assert w.matrix(probes) == [False, False, False]
        assert e.apply(c).ok and w.matrix(probes) == [True, False, False]  # a correct apply repairs it


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
        # nftables: one transaction, no intermediate state to order (still probed, paused after it).
        before = cluster([web, client, stranger], cluster_policies=[deny("b")])
        enforcer.runner = Runner(w.topo.node_runner("n1"))  # its cleanup unpaused
        w.use("nftables")
        w.apply(before)
        assert w.matrix(probes) == [True, False]
        enforcer = w.enforcers["n1"]
        enforcer.runner = Runner([*PAUSE, *w.topo.node_runner("n1")])
        with never_reaches(w, "x/stranger", "x/web"):
            res = enforcer.apply(after)
        assert res.ok and [k for k, _ in res.latencies] == ["nft"], (res.failures, res.latencies)
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


def test_random_clusters_read_back_from_the_nftables_table_agree_with_the_semantics() -> None:
    """The random clusters of test_translate_cnp.py's cross-check (1-4 random CNPs of both
    tiers, every action, peer and port kind, failing-closed peers, over random NetworkPolicies),
    applied in turn to one node, read back as the kernel lists the table and walked by the
    nftables evaluator: every verdict is the one tests/dataplane/cnp_oracle.py reads, and the
    simulator's (azure-npm verify over pods, nodes and outside addresses)."""
    from npm.dataplane import nft, nft_eval
    from npm.dataplane.debug import Packet
    from npm.verify.check import verify
    from npm.verify.nft_view import NftView
    from npm.verify.oracle import Oracle
    from tests.dataplane.cnp_oracle import allowed, random_cluster
    from tests.dataplane.test_translate_cnp import PROBE_PORTS

    checked = 0
    with world([], dataplane="nftables") as w:
        enforcer = w.enforcers["n1"]
        for seed in range(30):
            c, probes = random_cluster(seed)
            res = enforcer.apply(c)
            assert res.ok, (seed, res.failures)
            listed = nft.list_table(enforcer.runner)
            assert listed.ok, listed.stderr
            view = NftView.from_json(listed.stdout)  # the simulator agrees too (azure-npm verify's check)
            report = verify(view, Oracle(c), view.edge_addresses())
            assert report.agrees, (seed, report.render())
            checked += report.connections
            evaluator = nft_eval.Evaluator(nft.read_table(listed.stdout))
            for src in probes:
                for dst in probes:
                    for port, proto in PROBE_PORTS:
                        trace = evaluator.evaluate(Packet(src, dst, proto.lower(), port))
                        assert not trace.undecided, (seed, trace.undecided)
                        want = allowed(c, src, dst, PortSpec(port, proto))
                        assert (trace.verdict == "accept") == want, (
                            f"seed {seed}: {src} -> {dst}:{port}/{proto}: table says {trace.verdict}, "
                            f"semantics say {want}; hits: {[h.comment for h in trace.hits]}")
    assert checked > 3000
