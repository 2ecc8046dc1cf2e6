"""What-if speed: incremental re-evaluation of single policy changes, diff, exposure and lint.

    python benchmarks/whatif_bench.py --pods 5000 --policies 1000 [--changes 30] [--json]

Generates a cluster with ``benchmarks/cluster_gen.py`` (not timed), evaluates it once on every
declared port (the base cost a long-running what-if service pays once), then applies
``--changes`` single-policy changes one at a time to that base state, a third each of:
deleting an allow policy, editing one (dropping its last ingress rule or, with one rule, its
ports) and adding a new allow policy (ingress to api pods, egress to db pods anywhere). For each it times

- ``incremental``: ``IncrementalSimulator.with_policies`` (only the policy's namespace is
  re-evaluated; target: at most 100 ms at 5,000 pods / 1,000 policies),
- ``flips``: finding the class pairs whose verdict changed (the touched slices only),
- ``diff``: the whole ``diff_states`` including expansion to pods and attribution,

and compares with a full rebuild (a fresh Simulator on every port). Then times exposure
(class graph, SCC condensation, ranking, one ``--from``) and lint on the same cluster.
Exit code 1 when the median incremental time exceeds --budget-ms (default 100).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from cluster_gen import generate

from kube.manifests import policy
from kube.model import NetworkPolicy, PolicyPort
from kube.parse import parse_network_policy
from simulator import exposure
from simulator.engine import Simulator, all_declared_ports
from simulator.incremental import IncrementalSimulator
from simulator.lint import lint
from simulator.whatif import _flips, diff_states


def _changes(cluster, count: int, seed: int) -> list[tuple[str, dict[str, NetworkPolicy | None]]]:
    rng = random.Random(seed)
    allow = [p for p in cluster.policies if p.name.startswith("allow-") and p.ingress]
    out: list[tuple[str, dict[str, NetworkPolicy | None]]] = []
    for i in range(count):
        victim = rng.choice(allow)
        kind = ("delete", "edit", "add")[i % 3]
        if kind == "delete":
            out.append((kind, {victim.key: None}))
        elif kind == "edit":
            if len(victim.ingress) > 1:
                edited = replace(victim, ingress=victim.ingress[:-1])
            else:
                edited = replace(victim, ingress=(replace(victim.ingress[0], ports=(PolicyPort("TCP", 8080),)),))
            out.append((kind, {victim.key: edited}))
        else:
            new = parse_network_policy(policy(victim.namespace, f"bench-new-{i}", {
                "podSelector": {"matchLabels": {"tier": "api"}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "search"}}}],
                             "ports": [{"port": 8080}, {"port": 9000, "endPort": 9100}]}],
                "egress": [{"to": [{"namespaceSelector": {}, "podSelector": {"matchLabels": {"tier": "db"}}}],
                            "ports": [{"port": 5432}]}],
            }))
            out.append((kind, {new.key: new}))
    return out


def _ms(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values) * 1000, 2), "max": round(max(values) * 1000, 2)}


def run(pods: int, policies: int, seed: int, count: int, with_lint: bool) -> dict[str, object]:
    cluster = generate(pods, policies, seed)
    ports = all_declared_ports(cluster)
    started = time.perf_counter()
    sim = Simulator(cluster)
    base = IncrementalSimulator(sim)
    base.prepare(ports)
    base_seconds = time.perf_counter() - started

    incremental, flips, diffs, changed = [], [], [], []
    for _kind, change in _changes(cluster, count, seed):
        t0 = time.perf_counter()
        state, _update = base.with_policies(change)
        t1 = time.perf_counter()
        arange = np.arange(base.classes.count, dtype=np.int64)
        unstable = np.zeros(base.classes.count, dtype=bool)
        unstable[state.touched] = True
        for spec in ports:
            _flips(base, state, spec, arange, arange, unstable)
        t2 = time.perf_counter()
        d = diff_states(base, state, ports)
        t3 = time.perf_counter()
        incremental.append(t1 - t0)
        flips.append(t2 - t1)
        diffs.append(t3 - t2)
        changed.append(len(d.gained) + len(d.lost))
        print(f"  {_kind:6s} {next(iter(change)):40s} incremental {1000 * (t1 - t0):6.1f} ms, "
              f"flips {1000 * (t2 - t1):5.1f} ms, diff {1000 * (t3 - t2):7.1f} ms, "
              f"{len(d.gained)} gained / {len(d.lost)} lost", file=sys.stderr)

    started = time.perf_counter()
    full = Simulator(cluster)
    for spec in ports:
        full.class_matrix(spec)
    full_seconds = time.perf_counter() - started

    started = time.perf_counter()
    cg = exposure.build(sim, ports)
    build_seconds = time.perf_counter() - started
    started = time.perf_counter()
    ranking = exposure.ranking(cg)
    ranking_seconds = time.perf_counter() - started
    started = time.perf_counter()
    exposure.from_pod(cg, cluster.pods[len(cluster.pods) // 2])
    from_seconds = time.perf_counter() - started

    result: dict[str, object] = {
        "pods": pods, "policies": policies, "classes": sim.classes.count, "ports": len(ports),
        "base_evaluation_s": round(base_seconds, 3), "full_rebuild_s": round(full_seconds, 3),
        "changes": count,
        "incremental_ms": _ms(incremental), "flips_ms": _ms(flips), "diff_ms": _ms(diffs),
        "changed_connections_median": statistics.median(changed),
        "exposure_graph_s": round(build_seconds, 3), "exposure_ranking_s": round(ranking_seconds, 3),
        "exposure_from_s": round(from_seconds, 3), "most_exposed": ranking["most_exposed"][0]["pod"],
    }
    if with_lint:
        started = time.perf_counter()
        findings = lint(cluster, sim)
        result["lint_s"] = round(time.perf_counter() - started, 2)
        result["lint_findings"] = len(findings)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--budget-ms", type=float, default=100.0)
    parser.add_argument("--lint", action="store_true", help="also time lint (tens of seconds at 5,000 pods)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.pods, args.policies, args.seed, args.changes, args.lint)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:28s} {value}")
    median = result["incremental_ms"]["median"]  # type: ignore[index]
    if median > args.budget_ms:
        print(f"incremental median {median} ms exceeds the {args.budget_ms} ms budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
