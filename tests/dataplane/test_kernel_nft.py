"""The nftables dataplane on the real kernel: drift repair, restarts without a gap, other
tables left alone, real nft errors attributed, and switching dataplanes under probing."""

from __future__ import annotations

import pytest

from npm.dataplane.dataplanes import make_enforcer
from npm.dataplane.enforcer import DataplaneConfig
from npm.dataplane.kernel import Runner
from npm.dataplane.nft import NftPayload
from npm.dataplane.nft_enforcer import NftEnforcer
from npm.dataplane.types import Failure
from tests.dataplane.helpers import TCP80, cluster, never_reaches, pod, policy, web_ports, world

pytestmark = pytest.mark.kernel

PAUSE = ["sh", "-c", '"$@"; rc=$?; sleep 0.3; exit $rc', "pause-after"]
FOREIGN = "add table inet other\nadd chain inet other c { type filter hook forward priority 10; policy accept; }\n" \
          "add rule inet other c counter\n"


def _pods():
    return [
        pod("x/web", "10.1.0.2", {"app": "web"}, ports=web_ports()),
        pod("x/client", "10.1.0.3", {"app": "client"}, ports=web_ports()),
        pod("x/stranger", "10.1.0.4", {"app": "stranger"}, ports=web_ports()),
    ]


def _allow_client(port: int = 80):
    return policy("x", "allow-client", {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": port}]}],
    })


def _nft(w, *args: str, stdin: str | None = None) -> str:
    res = w.topo.node_run("n1", ["nft", *args], input=stdin)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_drift_is_repaired_restarts_keep_enforcing_and_other_tables_are_left_alone() -> None:
    pods = _pods()
    with world(pods, dataplane="nftables") as w:
        _nft(w, "-f", "-", stdin=FOREIGN)
        e = w.enforcers["n1"]
        c = cluster(pods, [_allow_client()])
        w.apply(c)
        probes = [("x/client", "x/web", TCP80), ("x/stranger", "x/web", TCP80)]
        assert w.matrix(probes) == [True, False]
        # Drift: the web pod's dispatch element deleted (it would be open to all) and the
        # policy's chain flushed (the client would be denied).
        (chain,) = e.desired.chains_of_policy["x/allow-client"]
        _nft(w, "delete", "element", "inet", "azure-npm", "ingress-dispatch", "{ 10.1.0.2 }")
        _nft(w, "flush", "chain", "inet", "azure-npm", chain)
        assert w.matrix(probes) == [True, True]
        res = e.reconcile()
        assert res.changed and not res.failures, res.failures
        assert w.matrix(probes) == [True, False]
        assert not e.reconcile().changed  # converged: nothing left to do
        # A restart: a new process reads the table and changes nothing when it is right...
        again = NftEnforcer("n1", runner=Runner(w.topo.node_runner("n1")))
        assert not again.apply(c).changed
        # ...and replaces what changed in one transaction, never a moment open (paused after it).
        slow = NftEnforcer("n1", runner=Runner([*PAUSE, *w.topo.node_runner("n1")]))
        with never_reaches(w, "x/stranger", "x/web"):
            res = slow.apply(cluster(pods, [_allow_client(8080)]))
        assert not res.failures and [k for k, _ in res.latencies] == ["nft"], res.latencies
        assert "policies updated: x/allow-client" in res.summary
        assert "table inet other" in _nft(w, "list", "tables")
        again.cleanup()
        assert _nft(w, "list", "tables").split() == ["table", "inet", "other"]


def test_a_rule_nft_refuses_is_located_and_named_after_its_policy() -> None:
    pods = _pods()
    with world(pods, dataplane="nftables") as w:
        e = w.enforcers["n1"]
        state = e._translator.translate(cluster(pods, [_allow_client()]))
        missing = next(s for s in state.sets.values() if s.meaning == "podlabel:app=client")
        payload = NftPayload()
        payload.add("add table inet azure-npm")
        for s in state.sets.values():
            if s is not missing:  # one set the policy uses is never declared: nft refuses its rule
                payload.declare_set(s)
        for chain in state.chains.values():
            payload.declare_chain(chain)
        for chain in state.chains.values():
            for rule in chain.rules:
                payload.rule(chain.name, rule)
        res = w.topo.node_run("n1", ["nft", "-c", "-f", "-"], input=payload.text())  # -c: check only
        assert res.returncode != 0
        failure = payload.locate(Failure("nft", res.stderr, res.returncode))
        assert failure.line_text.startswith("add rule") and f"@{missing.name}" in failure.line_text, failure
        assert failure.policy == "x/allow-client", failure


@pytest.mark.parametrize("first", ["iptables", "nftables"])
def test_switching_dataplanes_never_leaves_a_moment_without_enforcement(first: str) -> None:
    pods = _pods()
    second = "nftables" if first == "iptables" else "iptables"
    with world(pods, dataplane=first) as w:
        c = cluster(pods, [_allow_client()])
        w.apply(c)
        assert not w.reach("x/stranger", "x/web") and w.reach("x/client", "x/web")
        # Every kernel command of the switch is followed by a second's pause: each
        # intermediate state (both enforcing, then the old one going) is held while probing.
        new = make_enforcer("n1", DataplaneConfig(kind=second), Runner([*PAUSE, *w.topo.node_runner("n1")]))
        with never_reaches(w, "x/stranger", "x/web"):
            res = new.apply(c)
        assert not res.failures, res.failures
        removed = "removed the iptables dataplane" if second == "nftables" else "removed the nftables dataplane"
        assert any(removed in line for line in res.summary), res.summary
        assert w.reach("x/client", "x/web") and not w.reach("x/stranger", "x/web")
        tables = w.topo.node_run("n1", ["nft", "list", "tables"]).stdout
        saved = w.topo.node_run("n1", ["iptables-nft-save", "-t", "filter"]).stdout
        sets = w.topo.node_run("n1", ["ipset", "list", "-n"]).stdout
        if second == "nftables":
            assert "AZURE-NPM" not in saved and "azure-npm-" not in sets and "inet azure-npm" in tables
        else:
            assert "AZURE-NPM" in saved and "inet azure-npm" not in tables
