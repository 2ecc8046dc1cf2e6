"""Dataplane benchmarks on the real kernel, inside throw-away network namespaces.

Run as root (or via ``nox -s bench``, which uses a user namespace otherwise):

    python benchmarks/dataplane_bench.py [--pods 20000] [--policies 1000] [--connects 2000]
        [--cnps 0] [--dataplane both|iptables|nftables] [-o json]

Measures: translation + apply of the whole cluster on one node; one policy added, updated,
removed with the others present; a burst of pod events applied at once; rules and set
members per policy; the cost of new TCP connections through a node with 0 vs N policies.
With ``--cnps N``, also N ClusterNetworkPolicies (``cluster_policies``): translation and
apply with them, one of them added / updated / removed, and the connection cost for pods
they do not apply to.
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

from kube import manifests  # noqa: E402
from kube.model import Cluster, ClusterNetworkPolicy, ContainerPort, Labels, Pod  # noqa: E402
from kube.parse import parse_cluster_network_policy, parse_network_policy  # noqa: E402
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


def cluster_policies(count: int) -> tuple[ClusterNetworkPolicy, ...]:
    """``count`` ClusterNetworkPolicies over the generated cluster's namespace labels (team,
    env), both tiers, every action, pods/namespaces/networks/nodes peers, ports and ranges.
    Their subjects are namespaces of a team or an env: pods of other namespaces are no subject."""
    from cluster_gen import ENVS, TEAMS

    def ns(**labels: str) -> dict[str, object]:
        return {"namespaces": {"matchLabels": labels}}

    tcp = [{"tcp": {"destinationPort": {"range": {"start": 5432, "end": 6379}}}}]
    out = []
    for i in range(count):
        team, env = TEAMS[i % len(TEAMS)], ENVS[i % len(ENVS)]
        shape = i % 4
        tier = "Admin" if shape < 2 else "Baseline"
        ingress: list[dict[str, object]]
        egress: list[dict[str, object]]
        if shape == 0:
            subject = ns(team=team)
            ingress = [{"action": "Pass", "from": [ns(team=team)]}, {"action": "Deny", "from": [ns(env="dev")],
                                                                      "protocols": tcp}]
            egress = [{"action": "Deny", "to": [{"networks": ["169.254.169.254/32"]}]}]
        elif shape == 1:
            subject = {"pods": {"namespaceSelector": {"matchLabels": {"team": team}},
                                "podSelector": {"matchLabels": {"tier": "db"}}}}
            ingress = [{"action": "Accept", "from": [{"pods": {"namespaceSelector": {},
                                                               "podSelector": {"matchLabels": {"tier": "backend"}}}}]},
                       {"action": "Deny", "from": [ns()]}]
            egress = [{"action": "Accept", "to": [{"nodes": {}}]}]
        elif shape == 2:
            subject = ns(team=team)
            ingress = [{"action": "Deny", "from": [ns(env="dev")], "protocols": [{"destinationNamedPort": "http"}]}]
            egress = [{"action": "Deny", "to": [{"networks": ["10.0.0.0/8", "192.168.0.0/16"]}],
                       "protocols": [{"tcp": {"destinationPort": {"number": 22}}}]}]
        else:
            subject = ns(env=env)
            ingress = [{"action": "Accept", "from": [ns(env=env)]}, {"action": "Deny", "from": [ns()]}]
            egress = []
        raw = manifests.cluster_network_policy(f"bench-cnp-{i:03d}", tier=tier, priority=i % 7, subject=subject,
                                               ingress=ingress, egress=egress)
        out.append(parse_cluster_network_policy(raw))
    return tuple(sorted(out, key=lambda p: p.name))


def bench_cluster_policies(
    e: Any, c: Cluster, cnps: tuple[ClusterNetworkPolicy, ...], config: DataplaneConfig, runner: Runner
) -> dict[str, object]:
    """Translation and apply with ``cnps`` beside the policies of ``c`` (``e`` holds ``c``),
    each from scratch also without them, back to back (the same warm process)."""
    with_cnps = replace(c, cluster_policies=cnps)
    node = c.nodes[0].name
    out: dict[str, object] = {"cluster_policies": len(cnps)}
    for label, cluster in (("translate_without_s", c), ("translate_s", with_cnps)):
        t = time.perf_counter()
        if config.kind == "nftables":
            NftEnforcer(node)._translator.translate(cluster)
        else:
            translate(cluster)
        out[label] = round(time.perf_counter() - t, 3)
    secs, res = timed_apply(e, with_cnps)
    out["all_added_s"] = round(secs, 3)
    out["counts"] = res.counts
    first = cnps[0]
    steps = {}
    for label, policies in (
        ("add", (*cnps, replace(first, name="bench-cnp-extra"))),
        ("update", (*cnps, replace(first, name="bench-cnp-extra", priority=first.priority + 1))),
        ("remove", cnps),
    ):
        secs, res = timed_apply(e, replace(with_cnps, cluster_policies=policies))
        steps[label] = {"total_s": round(secs, 4), "kernel_s": round(kernel_seconds(res), 4)}
    out["one_cluster_policy"] = steps
    out["no_change_s"] = round(timed_apply(e, with_cnps)[0], 4)
    for label, cluster in (("full_apply_without", c), ("full_apply", with_cnps)):  # fresh enforcers
        e.cleanup()
        secs, res = timed_apply(make_enforcer(node, config, runner), cluster)
        out[f"{label}_s"] = round(secs, 3)
        out[f"{label}_kernel_s"] = round(kernel_seconds(res), 3)
    return out


def bench_apply(
    pods: int, policies: int, backend: str, dataplane: str = "iptables", cnps: int = 0
) -> dict[str, object]:
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
        runner = Runner(["ip", "netns", "exec", ns])
        e = make_enforcer(node, config, runner)
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
        if cnps:
            log(f"{dataplane}: {cnps} ClusterNetworkPolicies ...")
            out["with_cluster_policies"] = bench_cluster_policies(e, c, cluster_policies(cnps), config, runner)
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
    policies: int, pods: int, connects: int, backend: str, dataplanes: Sequence[str], cnps: int = 0
) -> dict[str, object]:
    """Per dataplane: a new connection with no policies, with ``policies`` and the server
    selected by none, and with the server isolated in the namespace dispatched last; with
    ``cnps``, also with them present and neither end a subject of any."""
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
            figures = {
                "us_per_connect_0_policies": round(empty * 1e6, 1),
                f"us_per_connect_{n}_policies_unselected_pods": round(unselected * 1e6, 1),
                f"us_per_connect_{n}_policies_isolated_pod_last_namespace": round(selected * 1e6, 1),
                "ratio_unselected": round(unselected / empty, 3),
                "ratio_isolated": round(selected / empty, 3),
            }
            if cnps:
                # Without and with them in turn, three times (the best of each): the figures
                # move by more than the difference between one run and the next.
                runs: dict[bool, list[float]] = {False: [], True: []}
                for _ in range(3):
                    for present in (False, True):
                        res = e.apply(replace(c, cluster_policies=cluster_policies(cnps) if present else ()))
                        assert not res.failures, res.failures
                        runs[present].append(per_connect())
                without, with_cnps = min(runs[False]), min(runs[True])
                figures[f"us_per_connect_{n}_policies_unselected_pods_alternating"] = round(without * 1e6, 1)
                figures[f"us_per_connect_{n}_policies_{cnps}_cnps_unselected_pods"] = round(with_cnps * 1e6, 1)
                figures["ratio_unselected_with_cnps_vs_without"] = round(with_cnps / without, 3)
            e.cleanup()
            out[dataplane] = figures
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
    ap.add_argument("--cnps", type=int, default=0, help="also measure with N ClusterNetworkPolicies (default 0)")
    ap.add_argument("--backend", choices=("nft", "legacy"), default="nft", help="the iptables dataplane's backend")
    ap.add_argument("--dataplane", choices=("both", *DATAPLANES), default="both")
    ap.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = ap.parse_args(argv)
    if not is_root():
        return 2
    dataplanes = DATAPLANES if args.dataplane == "both" else (args.dataplane,)
    results: dict[str, Any] = {
        "backend": args.backend,
        "apply": {d: bench_apply(args.pods, args.policies, args.backend, d, args.cnps) for d in dataplanes},
    }
    results["connect"] = bench_connect(args.policies, args.pods, args.connects, args.backend, dataplanes, args.cnps)
    print_report(results, args.output)
    if args.output == "text":
        print("\n".join(side_by_side(results, dataplanes)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
