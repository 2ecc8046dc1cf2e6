"""Semantics, not speed: npm-sim against network-config-analyzer on the generated cases.

    python benchmarks/fuzz_nca.py [--nca PATH] [--include TAG ...] [--exclude TAG ...] [--random N]
                                  [--jobs 2] [--json FILE]

Every case of ``npm-conformance generate`` (cyclonus's 230 and ours) is replayed step by
step; after each step the cluster (planned pod addresses, placeholders filled in) is written
as Namespace, Pod and NetworkPolicy files and given to ``nca --connectivity``; its allowed
pod-to-pod connections are compared with npm-sim's verdict for every ordered pair of
distinct pods on every port the destination declares (what ``npm-conformance run``
probes). Prints, per case that differs, how many probes differ and examples; ``--json``
writes everything. The parsing of nca's output is ``benchmarks/compare_nca.py``'s (its
timing comparison on synthetic clusters is separate); nca is called with the same options.

nca pins its own dependencies: install it in its own venv (``python3 -m venv /tmp/nca-venv
&& /tmp/nca-venv/bin/pip install network-config-analyzer``) and pass ``--nca
/tmp/nca-venv/bin/nca`` (default: $NCA, then ``nca`` on PATH). Exit code 2 without nca.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from compare_nca import nca_allows, parse_connections

from conformance.cli_generate import random_cases
from conformance.generate import Case, select
from conformance.generate_cases import all_cases
from conformance.manifests import namespace_manifest, pod_status_manifest
from conformance.scenario import parse_scenario
from conformance.state import materialize
from kube.model import Cluster, Source
from simulator.engine import Simulator, declared_ports


def nca_connections(nca: str, cluster: Cluster, manifests: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """nca's allowed connections for one cluster snapshot (as compare_nca.run_one calls it)."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = {
            "ns": Path(tmp) / "Namespace.yaml",
            "pods": Path(tmp) / "Pod.yaml",
            "policies": Path(tmp) / "NetworkPolicy.yaml",
        }
        paths["ns"].write_text(yaml.safe_dump_all([namespace_manifest(n) for n in cluster.namespaces]))
        paths["pods"].write_text(yaml.safe_dump_all([pod_status_manifest(p) for p in cluster.pods]))
        policies = [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", **m} for m in manifests]
        # nca wants at least one policy document; an empty file means "no policies" to us.
        paths["policies"].write_text(yaml.safe_dump_all(policies) if policies else "")
        argv = [nca, "--connectivity", str(paths["policies"]), "--pod_list", str(paths["pods"])]
        argv += ["--ns_list", str(paths["ns"]), "-o", "txt_no_fw_rules", "--output_endpoints", "pods"]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"nca failed ({proc.returncode}): {proc.stderr[-500:]}")
    return merged_connections(proc.stdout)


def merged_connections(text: str) -> dict[tuple[str, str], Any]:
    """compare_nca's parsing, line by line: nca prints one line per protocol group, so the
    same pair can appear on several lines (``x/a => y/a : {protocols:TCP,dst_ports:53,80}``
    then ``x/a => y/a : {protocols:UDP,dst_ports:53}``); their groups add up."""
    out: dict[tuple[str, str], Any] = {}
    for line in text.splitlines():
        for pair, groups in parse_connections(line).items():
            out.setdefault(pair, []).extend(groups)
    return out


def compare_case(nca: str, number: int, case: Case) -> dict[str, Any]:
    """Every step of one case: probes compared and those that differ."""
    scenario, errors = parse_scenario(case.scenario(number), Source(f"<case {number}>"))
    if scenario is None:
        return {"number": number, "title": case.title, "error": "; ".join(map(str, errors))}
    compared = 0
    differ: list[dict[str, Any]] = []
    for index, state in enumerate(scenario.states()):
        cluster, manifests = materialize(state, state.workloads())
        if not manifests:
            continue  # no policy: both say everything is allowed
        try:
            theirs = nca_connections(nca, cluster, manifests)
        except RuntimeError as exc:  # nca refuses some valid policies: report, keep going
            return {"number": number, "title": case.title, "error": f"step {index + 1}: {exc}"}
        sim = Simulator(cluster)
        step = scenario.steps[index]
        for dst in cluster.pods:
            for port in step.ports or declared_ports(dst):
                for src in cluster.pods:
                    if src.key == dst.key:
                        continue
                    compared += 1
                    ours = sim.allowed(src, dst, port)
                    other = nca_allows(theirs.get((src.key, dst.key), []), port)
                    if ours != other:
                        differ.append(
                            {"step": index + 1, "src": src.key, "dst": dst.key, "port": str(port), "npm_sim": ours}
                        )
    return {"number": number, "title": case.title, "tags": list(case.tags), "compared": compared, "differ": differ}


def summary(rows: list[dict[str, Any]]) -> str:
    lines = []
    total = sum(r.get("compared", 0) for r in rows)
    differing = [r for r in rows if r.get("differ")]
    lines.append(
        f"{len(rows)} cases, {total} probes compared, {sum(len(r['differ']) for r in differing)} differ "
        f"in {len(differing)} cases"
    )
    for r in rows:
        if r.get("error"):
            lines.append(f"  case {r['number']} {r['title']}: error {r['error']}")
    for r in differing:
        sides = Counter("npm-sim allows" if d["npm_sim"] else "nca allows" for d in r["differ"])
        ports = Counter(d["port"] for d in r["differ"])
        ex = r["differ"][0]
        lines.append(
            f"  {r['number']:4d} {r['title']}: {len(r['differ'])}/{r['compared']} "
            f"({', '.join(f'{n} {s}' for s, n in sides.items())}; ports {', '.join(sorted(ports))}); "
            f"e.g. step {ex['step']} {ex['src']} -> {ex['dst']} {ex['port']}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nca", default=os.environ.get("NCA") or shutil.which("nca"), help="the nca executable")
    parser.add_argument("--include", nargs="+", action="extend", default=[], metavar="TAG")
    parser.add_argument("--exclude", nargs="+", action="extend", default=[], metavar="TAG")
    parser.add_argument("--random", type=int, default=0, metavar="N", help="also N random cases (seed --seed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="nca processes at once (default 2)")
    parser.add_argument("--json", metavar="FILE", help="write every compared case to FILE")
    args = parser.parse_args(argv)
    if not args.nca or not (os.path.exists(args.nca) or shutil.which(args.nca)):
        print("nca not found: pip install network-config-analyzer (own venv) and pass --nca PATH", file=sys.stderr)
        return 2
    cases = select(all_cases() + random_cases(args.random, args.seed), args.include, args.exclude)
    done = 0

    def one(item: tuple[int, Case]) -> dict[str, Any]:
        nonlocal done
        row = compare_case(args.nca, *item)
        done += 1
        if done % 20 == 0:
            print(f"fuzz_nca: {done}/{len(cases)} cases", file=sys.stderr, flush=True)
        return row

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        rows = list(pool.map(one, enumerate(cases, start=1)))
    print(summary(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
