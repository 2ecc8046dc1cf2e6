"""Convergence on the real kernel: drift repair, restarts, killed appliers, the xtables lock,
rejected rules, both backends, cleanup, and the CLI.

A background prober keeps connecting over a flow that must stay denied while the kernel is
being changed, and the tests assert it never got through.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from kube.model import INGRESS
from npm.dataplane import names
from npm.dataplane.enforcer import DataplaneConfig, Enforcer
from npm.dataplane.kernel import Runner
from npm.dataplane.translate import translate
from tests.conftest import needs_real_root
from tests.dataplane.helpers import cluster, never_reaches, pod, policy, web_ports, world

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[2]


def _pods():
    return [
        pod("x/web", "10.1.0.2", {"app": "web"}, ports=web_ports()),
        pod("x/client", "10.1.0.3", {"app": "client"}, ports=web_ports()),
        pod("x/stranger", "10.1.0.4", {"app": "stranger"}, ports=web_ports()),
    ]


ALLOW_CLIENT = policy(
    "x",
    "allow-client",
    {
        "podSelector": {"matchLabels": {"app": "web"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
    },
)


def _sh(w, *argv: str) -> subprocess.CompletedProcess[str]:
    res = w.topo.node_run("n1", list(argv))
    assert res.returncode == 0, res.stderr
    return res


def _converged(e: Enforcer) -> bool:
    res = e.reconcile()
    return not res.changed and not res.failures


@pytest.mark.parametrize("backend", ["nft", "legacy"])
@pytest.mark.parametrize(
    "damage",
    [
        [
            "iptables-nft",
            "-D",
            "FORWARD",
            "-m",
            "comment",
            "--comment",
            "azure-npm: enforce network policies",
            "-j",
            "AZURE-NPM",
        ],
        ["iptables-nft", "-I", "FORWARD", "1", "-j", "ACCEPT"],
        ["iptables-nft", "-F", "AZURE-NPM-INGRESS"],
        ["iptables-nft", "-F", "AZURE-NPM"],
    ],
    ids=["forward-jump-deleted", "accept-inserted-before-us", "ingress-chain-flushed", "main-chain-flushed"],
)
def test_reconcile_repairs_rule_drift(damage: list[str], backend: str) -> None:
    pods = _pods()
    with world(pods, backend=backend) as w:
        e = w.enforcers["n1"]
        w.apply(cluster(pods, [ALLOW_CLIENT]))
        assert not w.reach("x/stranger", "x/web")
        _sh(w, f"iptables-{backend}", *damage[1:])
        assert w.reach("x/stranger", "x/web"), "the damage should have opened the flow"
        res = e.reconcile()
        assert res.changed and not res.failures, res.failures
        assert not w.reach("x/stranger", "x/web") and w.reach("x/client", "x/web")
        assert _converged(e)


def test_reconcile_repairs_a_deleted_policy_chain_and_destroyed_sets() -> None:
    pods = _pods()
    with world(pods) as w:
        e = w.enforcers["n1"]
        w.apply(cluster(pods, [ALLOW_CLIENT]))
        (chain,) = e.desired.chains_of_policy["x/allow-client"]
        _sh(w, "iptables-nft", "-F", "AZURE-NPM-INGRESS")
        _sh(w, "iptables-nft", "-F", names.namespace_chain_name(INGRESS, "x"))
        _sh(w, "iptables-nft", "-F", "AZURE-NPM-SETS")
        _sh(w, "iptables-nft", "-F", chain)
        _sh(w, "iptables-nft", "-X", chain)
        for name in e.desired.sets:
            _sh(w, "ipset", "destroy", name)
        assert w.reach("x/stranger", "x/web")
        res = e.reconcile()
        assert not res.failures, res.failures
        assert not w.reach("x/stranger", "x/web") and w.reach("x/client", "x/web")
        assert _converged(e)


def test_reconcile_refills_a_set_flushed_from_outside() -> None:
    pods = _pods()
    with world(pods) as w:
        e = w.enforcers["n1"]
        w.apply(cluster(pods, [ALLOW_CLIENT]))
        client_set = next(n for n, s in e.desired.sets.items() if s.meaning == "podlabel:app=client")
        _sh(w, "ipset", "flush", client_set)
        assert not w.reach("x/client", "x/web"), "flushing the peer set should close the flow"
        res = e.reconcile()
        assert "ipsets: 0 created, 1 updated (+1/-0 entries)" in res.summary
        assert w.reach("x/client", "x/web")


def test_restart_converges_from_existing_rules_without_a_gap() -> None:
    pods = _pods()
    with world(pods) as w:
        w.apply(cluster(pods, [ALLOW_CLIENT]))
        extra = [
            policy("x", f"extra-{i}", {"podSelector": {"matchLabels": {"app": "client"}}, "ingress": [{}]})
            for i in range(30)
        ]
        with never_reaches(w, "x/stranger", "x/web"):
            fresh = Enforcer("n1", config=DataplaneConfig(backend="nft"), runner=Runner(w.topo.node_runner("n1")))
            res = fresh.apply(cluster(pods, [ALLOW_CLIENT, *extra]))
            assert not res.failures
            assert "policies added: " in res.summary[0] and "x/allow-client" not in res.summary[0]
            res = Enforcer("n1", config=DataplaneConfig(backend="nft"), runner=Runner(w.topo.node_runner("n1"))).apply(
                cluster(pods, [ALLOW_CLIENT])
            )
            assert any(s.startswith("policies removed: ") for s in res.summary)
        assert w.reach("x/client", "x/web")
        # A third instance, reading the kernel, finds nothing to do.
        again = Enforcer("n1", config=DataplaneConfig(backend="nft"), runner=Runner(w.topo.node_runner("n1")))
        res = again.apply(cluster(pods, [ALLOW_CLIENT]))
        assert not res.changed, res.summary


def _write_manifests(path: Path, pods, policies) -> None:
    docs = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in sorted({p.namespace for p in pods})
    ]
    for p in pods:
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": p.name, "namespace": p.namespace, "labels": dict(p.labels)},
                "spec": {
                    "nodeName": p.node,
                    "containers": [
                        {
                            "name": "c",
                            "ports": [
                                {
                                    "containerPort": cp.port,
                                    "protocol": cp.protocol,
                                    **({"name": cp.name} if cp.name else {}),
                                }
                                for cp in p.ports
                            ],
                        }
                    ],
                },
                "status": {"podIP": p.ip, "phase": "Running"},
            }
        )
    for pol in policies:
        docs.append(pol)
    path.write_text(yaml.safe_dump_all(docs))


def _policy_doc(ns: str, name: str, spec: dict) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }


def _cli(w, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*w.topo.node_runner("n1"), sys.executable, "-m", "npm.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=check,
    )


@needs_real_root
def test_killed_applier_never_opens_and_the_next_run_converges(tmp_path: Path) -> None:
    pods = _pods()
    allow = _policy_doc(
        "x",
        "allow-client",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
        },
    )
    many = [
        _policy_doc(
            "x",
            f"p{i}",
            {
                "podSelector": {"matchLabels": {"app": "client"}},
                "ingress": [
                    {"from": [{"podSelector": {"matchLabels": {f"k{i}": "v"}}}], "ports": [{"port": 1000 + i}]}
                ],
            },
        )
        for i in range(300)
    ]
    small, big = tmp_path / "small.yaml", tmp_path / "big.yaml"
    _write_manifests(small, pods, [allow])
    _write_manifests(big, pods, [allow, *many])
    with world(pods) as w:
        assert _cli(w, "apply", "-f", str(small), "--node-name", "n1", "--backend", "nft").returncode == 0
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        rng = random.Random(7)
        with never_reaches(w, "x/stranger", "x/web"):
            for i in range(8):
                target = big if i % 2 == 0 else small
                proc = subprocess.Popen(
                    [
                        *w.topo.node_runner("n1"),
                        sys.executable,
                        "-m",
                        "npm.cli",
                        "apply",
                        "-f",
                        str(target),
                        "--node-name",
                        "n1",
                        "--backend",
                        "nft",
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                time.sleep(rng.uniform(0.2, 0.9))
                proc.kill()
                proc.wait()
            res = _cli(w, "apply", "-f", str(big), "--node-name", "n1", "--backend", "nft", "-o", "json")
            assert res.returncode == 0, res.stderr
        assert w.reach("x/client", "x/web")
        fresh = Enforcer("n1", config=DataplaneConfig(backend="nft"), runner=Runner(w.topo.node_runner("n1")))
        from kube.load import load_paths

        result = fresh.apply(load_paths([str(big)]).cluster)
        assert not result.changed, result.summary


def test_apply_waits_for_the_xtables_lock_and_old_rules_hold_meanwhile() -> None:
    pods = _pods()
    with world(pods, backend="legacy") as w:
        e = w.enforcers["n1"]
        w.apply(cluster(pods, [ALLOW_CLIENT]))
        holder = w.topo.node_popen("n1", ["flock", "-x", "/run/xtables.lock", "sleep", "2"])
        time.sleep(0.3)
        stricter = policy(
            "x",
            "allow-client",
            {
                "podSelector": {"matchLabels": {"app": "web"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": 8080}]}],
            },
        )
        with never_reaches(w, "x/stranger", "x/web"):
            start = time.monotonic()
            res = e.apply(cluster(pods, [stricter]))
            waited = time.monotonic() - start
        holder.wait()
        assert not res.failures, res.failures
        assert waited > 1.0, "the restore should have waited for the lock"
        assert not w.reach("x/client", "x/web")


def test_a_rejected_rule_is_reported_precisely_and_its_policy_fails_closed() -> None:
    pods = _pods()
    with world(pods) as w:
        e = w.enforcers["n1"]
        good = policy("x", "good", {"podSelector": {"matchLabels": {"app": "stranger"}}, "ingress": [{}]})
        c = cluster(pods, [ALLOW_CLIENT, good])
        desired = translate(c)
        client_set = next(n for n, s in desired.sets.items() if s.meaning == "podlabel:app=client")
        # The kernel will refuse rules referencing a set that does not exist.
        base = tuple(
            replace(ch, rules=tuple(r for r in ch.rules if client_set not in r.args))
            if ch.name == names.CHAIN_SETS
            else ch
            for ch in desired.base_chains
        )
        broken = replace(desired, sets={n: s for n, s in desired.sets.items() if n != client_set}, base_chains=base)
        res = e.apply_desired(broken)
        assert len(res.failures) == 1, res.failures
        failure = res.failures[0]
        assert failure.policy == failure.failed_closed == "x/allow-client" and failure.line is not None
        msg = str(failure)
        assert "x/allow-client ingress[0] from[0] ports[any]" in msg and "line " in msg and "fails closed" in msg
        assert not w.reach("x/client", "x/web")  # isolated, nothing allowed
        assert w.reach("x/client", "x/stranger")  # the other policy is in force
        assert not w.reach("x/stranger", "x/web")
        assert e.apply(c).ok and w.reach("x/client", "x/web")  # a correct apply repairs it


def test_switching_backend_removes_our_rules_from_the_other_one_without_a_gap() -> None:
    pods = _pods()
    with world(pods, backend="legacy") as w:
        w.apply(cluster(pods, [ALLOW_CLIENT]))
        assert "AZURE-NPM" in _sh(w, "iptables-legacy-save").stdout
        nft = Enforcer("n1", config=DataplaneConfig(backend="nft"), runner=Runner(w.topo.node_runner("n1")))
        with never_reaches(w, "x/stranger", "x/web"):
            res = nft.apply(cluster(pods, [ALLOW_CLIENT]))
        assert "removed our rules from iptables-legacy" in res.summary
        assert "AZURE-NPM" not in _sh(w, "iptables-legacy-save").stdout
        assert not w.reach("x/stranger", "x/web") and w.reach("x/client", "x/web")


def test_backend_detection_follows_kubelet_markers() -> None:
    from npm.dataplane.backend import detect

    with world([]) as w:
        runner = Runner(w.topo.node_runner("n1"))
        assert detect(runner, attempts=1)[0] == "nft"
        _sh(w, "iptables-legacy", "-t", "mangle", "-N", "KUBE-IPTABLES-HINT")
        backend, why = detect(runner, attempts=1)
        assert backend == "legacy" and "KUBE-IPTABLES-HINT" in why
        _sh(w, "iptables-nft", "-t", "mangle", "-N", "KUBE-KUBELET-CANARY")
        assert detect(runner, attempts=1)[0] == "legacy"  # the hint wins over the canary
        assert detect(runner, "nft")[0] == "nft"


def test_cleanup_removes_ours_and_nothing_else() -> None:
    pods = _pods()
    with world(pods) as w:
        _sh(w, "iptables-nft", "-N", "KUBE-FORWARD")
        _sh(w, "iptables-nft", "-A", "FORWARD", "-j", "KUBE-FORWARD")
        _sh(w, "ipset", "create", "kube-foreign", "hash:ip")
        w.apply(cluster(pods, [ALLOW_CLIENT]))
        res = _cli(w, "cleanup")
        assert res.returncode == 0, res.stderr
        saved = _sh(w, "iptables-nft-save").stdout
        assert "AZURE-NPM" not in saved and "-A FORWARD -j KUBE-FORWARD" in saved
        assert _sh(w, "ipset", "list", "-n").stdout.split() == ["kube-foreign"]
        assert w.reach("x/stranger", "x/web")


def test_cli_apply_refuses_bad_input_and_leaves_the_kernel_alone(tmp_path: Path) -> None:
    pods = _pods()
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    allow = _policy_doc(
        "x",
        "allow-client",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
        },
    )
    _write_manifests(good, pods, [allow])
    broken = _policy_doc("x", "broken", {"podSelector": {}, "ingress": [{"ports": [{"port": 99999}]}]})
    _write_manifests(bad, pods, [broken])
    with world(pods) as w:
        res = _cli(w, "apply", "-f", str(good), "--node-name", "n1", "-o", "json")
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["changed"] and out["counts"]["policies"] == 1
        before = _sh(w, "iptables-nft-save").stdout.split("\n", 1)[1]
        res = _cli(w, "apply", "-f", str(bad), "--node-name", "n1")
        assert res.returncode == 2
        assert "NetworkPolicy x/broken" in res.stderr and "spec.ingress[0].ports[0].port" in res.stderr
        assert (
            _sh(w, "iptables-nft-save").stdout.split("\n", 1)[1].split("# Completed")[0]
            == before.split("# Completed")[0]
        )
        res = _cli(w, "apply", "-f", str(bad), "--node-name", "n1", "--skip-invalid")
        assert res.returncode == 0 and "policies removed: x/allow-client" in res.stdout
        assert w.reach("x/stranger", "x/web")


def test_debug_tools_read_the_live_kernel(tmp_path: Path) -> None:
    pods = _pods()
    manifests = tmp_path / "m.yaml"
    allow = _policy_doc(
        "x",
        "allow-client",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}]}],
        },
    )
    _write_manifests(manifests, pods, [allow])
    with world(pods) as w:
        assert _cli(w, "apply", "-f", str(manifests), "--node-name", "n1").returncode == 0
        doc = json.loads(_cli(w, "debug", "convertiptable", check=True).stdout)
        meanings = {s["meaning"] for s in doc["sets"].values()}
        assert {"ns:x", "podlabel:app=web", "podlabel:app=client"} <= meanings
        client = next(s for s in doc["sets"].values() if s["meaning"] == "podlabel:app=client")
        assert client["members"] == ["10.1.0.3"]
        assert doc["forward_jumps"][0]["position"] == 1
        for src, expect in (("x/client", True), ("x/stranger", False)):
            out = json.loads(
                _cli(w, "debug", "gettuples", "-s", src, "-d", "x/web", "-f", str(manifests), check=True).stdout
            )
            assert (out["verdict"] == "ACCEPT") == expect == w.reach(src, "x/web")
            if not expect:
                assert out["hits"][-1]["comment"] == "namespace x: isolated for ingress"
                assert "x/allow-client ingress rules" in [h["comment"] for h in out["hits"]]
        saved_ipt, saved_sets = tmp_path / "ipt", tmp_path / "sets"
        saved_ipt.write_text(_sh(w, "iptables-nft-save").stdout)
        saved_sets.write_text(_sh(w, "ipset", "save").stdout)
    out = json.loads(
        subprocess.run(
            [
                sys.executable,
                "-m",
                "npm.cli",
                "debug",
                "gettuples",
                "-s",
                "10.1.0.4",
                "-d",
                "10.1.0.2",
                "-i",
                str(saved_ipt),
                "-c",
                str(saved_sets),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        ).stdout
    )
    assert out["verdict"] == "DROP"
    assert names.CHAIN_INGRESS in {h["chain"] for h in out["hits"]}
