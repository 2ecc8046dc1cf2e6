"""Dataplane benchmarks on the real kernel, inside throw-away network namespaces.

Run as root (or via ``nox -s bench``, which uses a user namespace otherwise):

    python benchmarks/dataplane_bench.py [--pods 20000] [--policies 1000] [--connects 2000]
        [--dataplane both|iptables|nftables] [-o json]

Measures: translation + apply of the whole cluster on one node; one policy added, updated,
removed with the others present; a burst of pod events applied at once; rules and set
members per policy; the cost of new TCP connections through a node with 0 vs N policies.
Both dataplanes (iptables, nftables) by default, side by side; the connection costs are
measured on one virtual node, each dataplane against its own empty baseline.
Nothing on the host is touched: every kernel object lives in a namespace deleted at exit.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from cluster_gen import generate  # noqa: E402

from kube.model import Cluster, ContainerPort, Labels, Pod  # noqa: E402
from kube.parse import parse_network_policy  # noqa: E402
from npm.dataplane.dataplanes import DATAPLANES, make_enforcer  # noqa: E402
from npm.dataplane.enforcer import ApplyResult, DataplaneConfig  # noqa: E402
from npm.dataplane.kernel import Runner  # noqa: E402
from npm.dataplane.nft_enforcer import NftEnforcer  # noqa: E402
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


def timed_apply(e: Any, c: Cluster) -> tuple[float, ApplyResult]:
    start = time.perf_counter()
    res = e.apply(c)
    elapsed = time.perf_counter() - start
    if res.failures:
        raise SystemExit(f"apply failed: {res.failures}")
    return elapsed, res


def bench_apply(pods: int, policies: int, backend: str, dataplane: str = "iptables") -> dict[str, object]:
    ns = f"npmbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        log(f"{dataplane}: generating {pods} pods, {policies} policies ...")
        c = generate(pods, policies, seed=1)
        node = c.nodes[0].name
        config = DataplaneConfig(kind=dataplane, backend=backend)
        t = time.perf_counter()
        if dataplane == "nftables":
            state = NftEnforcer(node)._translator.translate(c)
            rules, entries = state.rule_count(), state.element_count()
        else:
            desired = translate(c)
            rules, entries = desired.rule_count(), desired.entry_count()
        translate_s = time.perf_counter() - t
        e = make_enforcer(node, config, Runner(["ip", "netns", "exec", ns]))
        log(f"{dataplane}: full apply ...")
        full_s, full = timed_apply(e, c)
        out: dict[str, object] = {
            "pods": len(c.pods),
            "policies": len(c.policies),
            "translate_s": round(translate_s, 3),
            "full_apply_s": round(full_s, 3),
            "full_apply_kernel_s": round(kernel_seconds(full), 3),
            "counts": full.counts,
            "rules_per_policy": round(rules / max(1, len(c.policies)), 2),
            "set_entries_per_policy": round(entries / max(1, len(c.policies)), 1),
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


def bench_connect(
    policies: int, pods: int, connects: int, backend: str, dataplanes: Sequence[str]
) -> dict[str, object]:
    """Per dataplane: a new connection with no policies, with ``policies`` and the server
    selected by none, and with the server isolated in the namespace dispatched last."""
    from conformance.netns.topology import Topology

    c = generate(pods, policies, seed=1)
    out: dict[str, object] = {"connects": connects, "policies": len(c.policies)}
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
        n = len(c.policies)
        for dataplane in dataplanes:
            log(f"{dataplane}: connection cost ...")
            empty = per_connect()
            e = make_enforcer(
                "bench", DataplaneConfig(kind=dataplane, backend=backend), Runner(topo.node_runner("bench"))
            )
            e.apply(c)
            unselected = per_connect()
            res = e.apply(replace(c, pods=(*c.pods, server, client), policies=(*c.policies, allow)))
            assert not res.failures, res.failures
            selected = per_connect()
            e.cleanup()
            out[dataplane] = {
                "us_per_connect_0_policies": round(empty * 1e6, 1),
                f"us_per_connect_{n}_policies_unselected_pods": round(unselected * 1e6, 1),
                f"us_per_connect_{n}_policies_isolated_pod_last_namespace": round(selected * 1e6, 1),
                "ratio_unselected": round(unselected / empty, 3),
                "ratio_isolated": round(selected / empty, 3),
            }
    return out


def side_by_side(results: dict[str, Any], dataplanes: Sequence[str]) -> list[str]:
    """The headline figures, one line each, one column per dataplane."""
    rows: list[tuple[str, list[str]]] = []
    apply = results["apply"]
    connect = results["connect"]
    n = connect["policies"]
    for label, get in (
        ("full apply (s)", lambda d: apply[d]["full_apply_s"]),
        ("one policy added (s)", lambda d: apply[d]["one_policy"]["add"]["total_s"]),
        ("one policy updated (s)", lambda d: apply[d]["one_policy"]["update"]["total_s"]),
        ("one policy removed (s)", lambda d: apply[d]["one_policy"]["remove"]["total_s"]),
        ("connect, 0 policies (us)", lambda d: connect[d]["us_per_connect_0_policies"]),
        (f"connect, {n} policies, isolated pod, last namespace (x)", lambda d: connect[d]["ratio_isolated"]),
        (f"connect, {n} policies, pod no policy selects (x)", lambda d: connect[d]["ratio_unselected"]),
    ):
        rows.append((label, [str(get(d)) for d in dataplanes]))
    width = max(len(label) for label, _ in rows)
    lines = [f"{'':{width}}  " + "  ".join(f"{d:>10}" for d in dataplanes)]
    lines += [f"{label:{width}}  " + "  ".join(f"{v:>10}" for v in values) for label, values in rows]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=20000)
    ap.add_argument("--policies", type=int, default=1000)
    ap.add_argument("--connects", type=int, default=2000)
    ap.add_argument("--backend", choices=("nft", "legacy"), default="nft", help="the iptables dataplane's backend")
    ap.add_argument("--dataplane", choices=("both", *DATAPLANES), default="both")
    ap.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = ap.parse_args(argv)
    if not is_root():
        return 2
    dataplanes = DATAPLANES if args.dataplane == "both" else (args.dataplane,)
    results: dict[str, Any] = {
        "backend": args.backend,
        "apply": {d: bench_apply(args.pods, args.policies, args.backend, d) for d in dataplanes},
    }
    results["connect"] = bench_connect(args.policies, args.pods, args.connects, args.backend, dataplanes)
    print_report(results, args.output)
    if args.output == "text":
        print("\n".join(side_by_side(results, dataplanes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
