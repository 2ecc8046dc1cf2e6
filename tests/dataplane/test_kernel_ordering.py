"""Order of one change on the real kernel: set members and rules change in separate restores,
and no moment in between may open a flow that is denied both before and after the change.

Each kernel command of the change is followed by a pause (the Runner prefix runs it, then
sleeps), so every intermediate state stays in the kernel for a second while probers keep
connecting over the flows that must stay denied.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from npm.dataplane.kernel import Runner
from tests.dataplane.helpers import TCP80, cluster, never_reaches, pod, policy, web_ports, world

pytestmark = pytest.mark.kernel

PAUSE = ["sh", "-c", '"$@"; rc=$?; sleep 1; exit $rc', "pause-after"]


def _allow_web_from(role: str):
    return policy(
        "x",
        "allow-web",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": role}}}]}],
        },
    )


def _deny_all(ns: str):
    return policy(ns, "deny-all", {"podSelector": {}, "policyTypes": ["Ingress"]})


def test_pods_moving_between_sets_while_rules_change_never_open_a_denied_flow() -> None:
    web = pod("x/web", "10.1.0.2", {"app": "web"}, ports=web_ports())
    client = pod("x/client", "10.1.0.3", {"role": "a"}, ports=web_ports())
    stranger = pod("x/stranger", "10.1.0.4", {"role": "b"}, ports=web_ports())
    db = pod("w/db", "10.1.0.5", {"app": "db"}, ports=web_ports())
    with world([web, client, stranger, db]) as w:
        # Before: web admits role=a (the client); namespace w denies all ingress (db).
        w.apply(cluster([web, client, stranger, db], [_allow_web_from("a"), _deny_all("w")]))
        assert w.reach("x/client", "x/web") and not w.reach("x/stranger", "x/web")
        assert not w.reach("x/client", "w/db")
        # After, in one change: web admits role=b, and client and stranger swap roles (a peer
        # set gains a member the old rules allow); db's address now belongs to a pod of
        # namespace z, isolated by a new policy there (its namespace chain is new).
        after = cluster(
            [
                web,
                replace(client, labels=stranger.labels),
                replace(stranger, labels=client.labels),
                replace(db, namespace="z", name="reused"),
            ],
            [_allow_web_from("b"), _deny_all("w"), _deny_all("z")],
        )
        enforcer = w.enforcers["n1"]
        enforcer.runner = Runner([*PAUSE, *w.topo.node_runner("n1")])
        with never_reaches(w, "x/stranger", "x/web"), never_reaches(w, "x/client", "w/db"):
            res = enforcer.apply(after)
        assert not res.failures, res.failures
        assert [k for k, _ in res.latencies] == ["ipset", "iptables-nft", "ipset-after"], res.latencies
        # The client kept its access through the role it has now; the stranger is still out.
        assert w.topo.probe("x/client", "10.1.0.2", TCP80, 0.6) is True
        assert w.topo.probe("x/stranger", "10.1.0.2", TCP80, 0.6) is False
