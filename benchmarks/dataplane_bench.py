"""Dataplane benchmarks on the real kernel, inside throw-away network namespaces.

Run as root (or via ``nox -s bench``, which uses a user namespace otherwise):

    python benchmarks/dataplane_bench.py [--pods 20000] [--policies 1000] [--connects 2000] [-o json]

Measures: translation + apply of the whole cluster on one node; one policy added, updated,
removed with the others present; a burst of pod events applied at once; rules and set
members per policy; the cost of new TCP connections through a node with 0 vs N policies.
Nothing on the host is touched: every kernel object lives in a namespace deleted at exit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cluster_gen import generate  # noqa: E402

from kube.model import Cluster, ContainerPort, Labels, Pod  # noqa: E402
from kube.parse import parse_network_policy  # noqa: E402
from npm.dataplane.enforcer import ApplyResult, DataplaneConfig, Enforcer  # noqa: E402
from npm.dataplane.kernel import Runner  # noqa: E402
from npm.dataplane.translate import translate  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def is_root() -> bool:
    """Benchmarks need root for network namespaces; say how to get it when missing."""
    if os.geteuid() != 0:
        log("needs root (network namespaces); run under `nox -s bench` or sudo")
    return os.geteuid() == 0


def print_report(report: dict[str, object], output: str) -> None:
    """The figures as one JSON document (``-o json``) or one ``key: value`` line each."""
    if output == "json":
        print(json.dumps(report, indent=2))
    else:
        for key, value in report.items():
            print(f"{key}: {json.dumps(value)}")


def kernel_seconds(res: ApplyResult) -> float:
    return sum(s for _, s in res.latencies)


def timed_apply(e: Enforcer, c: Cluster) -> tuple[float, ApplyResult]:
    start = time.perf_counter()
    res = e.apply(c)
    elapsed = time.perf_counter() - start
    if res.failures:
        raise SystemExit(f"apply failed: {res.failures}")
    return elapsed, res


def bench_apply(pods: int, policies: int, backend: str) -> dict[str, object]:
    ns = f"npmbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        log(f"generating {pods} pods, {policies} policies ...")
        c = generate(pods, policies, seed=1)
        node = c.nodes[0].name
        t = time.perf_counter()
        desired = translate(c, node)
        translate_s = time.perf_counter() - t
        e = Enforcer(node, config=DataplaneConfig(backend=backend), runner=Runner(["ip", "netns", "exec", ns]))
        log("full apply ...")
        full_s, full = timed_apply(e, c)
        out: dict[str, object] = {
            "pods": len(c.pods),
            "policies": len(c.policies),
            "translate_s": round(translate_s, 3),
            "full_apply_s": round(full_s, 3),
            "full_apply_kernel_s": round(kernel_seconds(full), 3),
            "counts": full.counts,
            "rules_per_policy": round(desired.rule_count() / max(1, len(c.policies)), 2),
            "set_entries_per_policy": round(desired.entry_count() / max(1, len(c.policies)), 1),
        }
        log("one policy added / updated / removed ...")
        base = c.policies[0]
        extra = replace(base, name="bench-extra")
        changed = replace(extra, pod_selector=c.policies[1].pod_selector)
        steps = {}
        for label, pols in (
            ("add", (*c.policies, extra)),
            ("update", (*c.policies, changed)),
            ("remove", c.policies),
        ):
            secs, res = timed_apply(e, replace(c, policies=pols))
            steps[label] = {"total_s": round(secs, 4), "kernel_s": round(kernel_seconds(res), 4)}
        out["one_policy"] = steps
        log("1000 pod events in a burst ...")
        burst = list(c.pods)
        for i in range(0, min(1000, len(burst))):
            p = burst[i]
            if p.host_network:
                continue
            burst[i] = replace(p, labels=Labels({**p.labels, "canary": "true" if i % 2 else "false"}))
        secs, res = timed_apply(e, replace(c, pods=tuple(burst)))
        out["pod_burst_1000"] = {
            "total_s": round(secs, 4),
            "kernel_s": round(kernel_seconds(res), 4),
            "restores": [k for k, _ in res.latencies],
        }
        secs, res = timed_apply(e, c)
        out["no_change_s"] = round(timed_apply(e, c)[0], 4)
        t = time.perf_counter()
        rec = e.reconcile()
        out["reconcile_s"] = round(time.perf_counter() - t, 3)
        out["reconcile_changed"] = rec.changed
        e.cleanup()
        return out
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


# Connects to a port nobody listens on: the SYN crosses the node's FORWARD chain as a NEW
# packet and the server's kernel answers RST, so no user-space server adds noise.
CONNECT_SCRIPT = """
import socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
for _ in range(n):
    s = socket.socket()
    s.settimeout(2)
    try:
        s.connect((ip, port))
    except ConnectionRefusedError:
        pass
    else:
        raise SystemExit("port unexpectedly open")
    finally:
        s.close()
print(time.perf_counter() - start)
"""


def bench_connect(policies: int, pods: int, connects: int, backend: str) -> dict[str, object]:
    from conformance.netns.topology import Topology

    c = generate(pods, policies, seed=1)
    with Topology() as topo:
        topo.add_node("bench")
        topo.add_pod("bench", "bench/server", "10.255.0.2", (ContainerPort(80, "TCP"),))
        topo.add_pod("bench", "bench/client", "10.255.0.3", ())
        client_ns = topo.pods["bench/client"].netns

        def per_connect() -> float:
            runs = []
            for _ in range(6):
                res = subprocess.run(
                    [
                        "ip",
                        "netns",
                        "exec",
                        client_ns,
                        sys.executable,
                        "-c",
                        CONNECT_SCRIPT,
                        "10.255.0.2",
                        "81",
                        str(connects),
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                runs.append(float(res.stdout) / connects)
            return min(runs[1:])  # the first run warms up neighbour entries

        empty = per_connect()
        e = Enforcer("bench", config=DataplaneConfig(backend=backend), runner=Runner(topo.node_runner("bench")))
        e.apply(c)
        unselected = per_connect()
        # Worst case: the server is isolated, in the namespace dispatched last, and allowed by a rule.
        server = Pod(
            "zz-bench", "server", Labels({"app": "server"}), ip="10.255.0.2", ips=("10.255.0.2",), node="bench"
        )
        client = Pod(
            "zz-bench", "client", Labels({"app": "client"}), ip="10.255.0.3", ips=("10.255.0.3",), node="bench"
        )
        allow = parse_network_policy(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "allow-client", "namespace": "zz-bench"},
                "spec": {
                    "podSelector": {"matchLabels": {"app": "server"}},
                    "ingress": [
                        {
                            "from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                            "ports": [{"port": 80, "endPort": 81}],
                        }
                    ],
                },
            }
        )
        res = e.apply(replace(c, pods=(*c.pods, server, client), policies=(*c.policies, allow)))
        assert not res.failures, res.failures
        selected = per_connect()
        n = len(c.policies)
        return {
            "connects": connects,
            "policies": n,
            "us_per_connect_0_policies": round(empty * 1e6, 1),
            f"us_per_connect_{n}_policies_unselected_pods": round(unselected * 1e6, 1),
            f"us_per_connect_{n}_policies_isolated_pod_last_namespace": round(selected * 1e6, 1),
            "ratio_unselected": round(unselected / empty, 3),
            "ratio_isolated": round(selected / empty, 3),
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=20000)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--connects", type=int, default=2000)
    ap.add_argument("--backend", choices=("nft", "legacy"), default="nft")
    ap.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = ap.parse_args(argv)
    if not is_root():
        return 2
    results = {"backend": args.backend, "apply": bench_apply(args.pods, args.policies, args.backend)}
    log("connection cost ...")
    results["connect"] = bench_connect(args.policies, args.pods, args.connects, args.backend)
    print_report(results, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
