"""npm-sim side by side with network-config-analyzer (``nca --connectivity``) on generated clusters.

    python benchmarks/compare_nca.py [--sizes 60:12,200:40,500:100] [--seed 1] [--nca PATH] [--json]

For each size a cluster is generated with ``benchmarks/cluster_gen.py`` and written as
Namespace, Pod and NetworkPolicy files; ``nca --connectivity ... -o txt_no_fw_rules
--output_endpoints pods`` prints the allowed pod-to-pod connections, which are compared with
``npm-sim``'s verdicts for every ordered pair of distinct pods on every declared container
port. Each disagreement is classified by explaining npm-sim's verdict (which rule allowed it
or which policy isolated it) and by the pods involved; the table shows counts per class and
the wall time of each tool (nca is a separate process: its time includes its start-up).

nca is looked up as --nca, then $NCA, then ``nca`` on PATH. It pins its own dependency
versions, so install it in its own virtual environment, e.g.
``python3 -m venv /tmp/nca && /tmp/nca/bin/pip install network-config-analyzer`` and pass
``--nca /tmp/nca/bin/nca``. Exit code 2 when nca cannot be found.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cluster_gen import generate_objects

from kube.manifests import cluster_of
from kube.model import Cluster, Pod, PortSpec
from simulator.engine import Simulator, all_declared_ports
from simulator.explain import explain

_LINE = re.compile(r"^(\S+) => (\S+) : (.+)$")
_GROUP = re.compile(r"\{protocols:([A-Z, ]+?)(?:,dst_ports:([0-9,\- ]+))?\}")


def parse_connections(text: str) -> dict[tuple[str, str], list[tuple[set[str], list[tuple[int, int]] | None]]]:
    """(src, dst) -> [(protocols, port ranges or None for all)] from nca's txt_no_fw_rules output."""
    out: dict[tuple[str, str], list[tuple[set[str], list[tuple[int, int]] | None]]] = {}
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m or "/" not in m.group(1) or "/" not in m.group(2) or "." in m.group(1).split("/")[0]:
            continue  # IP ranges and other lines
        src, dst, conns = m.groups()
        # nca may print several lines for one pair (one per protocol group): keep them all.
        if conns.startswith("All connections"):
            out.setdefault((src, dst), []).append(({"TCP", "UDP", "SCTP"}, None))
            continue
        groups = []
        for proto_text, ports_text in _GROUP.findall(conns):
            protocols = {p.strip() for p in proto_text.split(",") if p.strip()}
            ranges = None
            if ports_text:
                ranges = []
                for part in ports_text.split(","):
                    lo, _, hi = part.strip().partition("-")
                    ranges.append((int(lo), int(hi or lo)))
            groups.append((protocols, ranges))
        out.setdefault((src, dst), []).extend(groups)
    return out


def nca_allows(groups: list[tuple[set[str], list[tuple[int, int]] | None]], spec: PortSpec) -> bool:
    for protocols, ranges in groups:
        if spec.protocol in protocols and (ranges is None or any(lo <= spec.port <= hi for lo, hi in ranges)):
            return True
    return False


def classify(cluster: Cluster, sim: Simulator, src: Pod, dst: Pod, spec: PortSpec, ours: bool) -> str:
    """Why the tools may disagree on this connection (from npm-sim's explanation)."""
    if (src.host_network or dst.host_network) and src.node and src.node == dst.node:
        return "a pod and a hostNetwork pod on the same node (npm-sim: a node and its pods always reach each other)"
    if src.host_network or dst.host_network:
        return "hostNetwork pod (npm-sim: node address, never selected by pod selectors; nca: a labelled pod)"
    e = explain(sim, src, dst, spec)
    for part in (e.egress, e.ingress):
        if part.rule is None:
            continue
        policy = cluster.policy_by_key[part.rule.policy]
        rules = policy.egress if part.rule.direction == "Egress" else policy.ingress
        rule = rules[part.rule.rule]
        if ours and part.rule.peer is not None and rule.peers[part.rule.peer].ip_block is not None:
            return "ipBlock matching a pod address (npm-sim: matches; nca: not)"
        if part.rule.port is not None and rule.ports[part.rule.port].is_named:
            return "named port"
    named = [p for p in cluster.policies for r in (*p.ingress, *p.egress) for e in r.ports if e.is_named]
    if not ours and named:
        return "named port (nca ignores pods lacking a named port)"
    return "other"


def run_one(nca: str, pods: int, policies: int, seed: int, host_network: bool = True) -> dict[str, object]:
    objects = generate_objects(pods, policies, seed)
    if not host_network:
        objects = [o for o in objects if not (o["kind"] == "Pod" and o["spec"].get("hostNetwork"))]
    cluster = cluster_of(objects)
    with tempfile.TemporaryDirectory() as tmp:
        by_kind: dict[str, list] = {}
        for obj in objects:
            by_kind.setdefault(obj["kind"], []).append(obj)
        paths = {}
        for kind in ("Namespace", "Pod", "NetworkPolicy"):
            paths[kind] = Path(tmp) / f"{kind}.yaml"
            paths[kind].write_text(yaml.safe_dump_all(by_kind.get(kind, [])))
        started = time.perf_counter()
        proc = subprocess.run(
            [nca, "--connectivity", str(paths["NetworkPolicy"]), "--pod_list", str(paths["Pod"]),
             "--ns_list", str(paths["Namespace"]), "-o", "txt_no_fw_rules", "--output_endpoints", "pods"],
            capture_output=True, text=True, timeout=3600, check=False,
        )
        nca_seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"nca failed ({proc.returncode}): {proc.stderr[-1000:]}")
    theirs = parse_connections(proc.stdout)

    started = time.perf_counter()
    sim = Simulator(cluster)
    ports = all_declared_ports(cluster)
    matrix = sim.matrix(ports)
    ours_seconds = time.perf_counter() - started

    agree = only_ours = only_theirs = 0
    reasons: Counter[str] = Counter()
    examples: dict[str, str] = {}
    keys = [p.key for p in cluster.pods]
    for spec in ports:
        grid = matrix.allowed[spec]
        for i, src in enumerate(cluster.pods):
            for j, dst in enumerate(cluster.pods):
                if i == j:
                    continue
                ours = bool(grid[i, j])
                other = nca_allows(theirs.get((keys[i], keys[j]), []), spec)
                if ours == other:
                    agree += 1
                    continue
                if ours:
                    only_ours += 1
                else:
                    only_theirs += 1
                why = classify(cluster, sim, src, dst, spec, ours)
                label = f"{'npm-sim only' if ours else 'nca only'}: {why}"
                reasons[label] += 1
                examples.setdefault(label, f"{keys[i]} -> {keys[j]} {spec}")
    return {
        "pods": len(cluster.pods), "policies": len(cluster.policies), "ports": len(ports),
        "compared": agree + only_ours + only_theirs, "agree": agree, "npm_sim_only": only_ours,
        "nca_only": only_theirs, "npm_sim_s": round(ours_seconds, 3), "nca_s": round(nca_seconds, 2),
        "ratio": round(nca_seconds / max(ours_seconds, 1e-6), 1),
        "disagreements": dict(reasons), "examples": examples,
    }


def ipblock_probe(nca: str) -> dict[str, object]:
    """A two-pod cluster where only an ipBlock covering x/a's address admits x/a -> x/b."""
    from kube.manifests import namespace, pod, policy

    objects = [
        namespace("x"),
        pod("x", "a", {"app": "a"}, ip="10.244.0.5"),
        pod("x", "b", {"app": "b"}, ip="10.244.0.6"),
        policy("x", "b-from-cidr", {"podSelector": {"matchLabels": {"app": "b"}},
                                    "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/24"}}]}]}),
    ]
    cluster = cluster_of(objects)
    ours = Simulator(cluster).allowed("x/a", "x/b", PortSpec(80))
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for kind in ("Namespace", "Pod", "NetworkPolicy"):
            path = Path(tmp) / f"{kind}.yaml"
            path.write_text(yaml.safe_dump_all([o for o in objects if o["kind"] == kind]))
            files.append(str(path))
        proc = subprocess.run([nca, "--connectivity", files[2], "--pod_list", files[1], "--ns_list", files[0],
                               "-o", "txt_no_fw_rules", "--output_endpoints", "pods"],
                              capture_output=True, text=True, timeout=600, check=False)
    theirs = nca_allows(parse_connections(proc.stdout).get(("x/a", "x/b"), []), PortSpec(80))
    return {"case": "ipBlock 10.244.0.0/24 admits pod x/a (10.244.0.5) to x/b", "npm_sim": ours, "nca": theirs}


def table(rows: list[dict[str, object]]) -> str:
    head = ["pods", "policies", "ports", "compared", "agree", "npm_sim_only", "nca_only", "npm_sim_s", "nca_s",
            "ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[h]) for h in head) + " |")
    lines.append("")
    for r in rows:
        for label, count in sorted(r["disagreements"].items()):  # type: ignore[union-attr]
            lines.append(f"- {r['pods']} pods: {count} x {label}; e.g. {r['examples'][label]}")  # type: ignore[index]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="60:12,200:40,500:100", help="pods:policies pairs, comma separated")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--nca", default=os.environ.get("NCA") or shutil.which("nca"), help="the nca executable")
    parser.add_argument("--no-host-network", action="store_true",
                        help="leave out the generator's hostNetwork pods (the main source of disagreement)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.nca or not (os.path.exists(args.nca) or shutil.which(args.nca)):
        print("nca not found: pip install network-config-analyzer (own venv) and pass --nca PATH", file=sys.stderr)
        return 2
    rows = []
    for size in args.sizes.split(","):
        pods, _, policies = size.partition(":")
        print(f"comparing at {pods} pods / {policies} policies...", file=sys.stderr)
        rows.append(run_one(args.nca, int(pods), int(policies), args.seed, not args.no_host_network))
    probe = ipblock_probe(args.nca)
    if args.json:
        print(json.dumps({"sizes": rows, "ipblock_probe": probe}, indent=2))
    else:
        print(table(rows), end="")
        verdict = {True: "allowed", False: "denied"}
        print(f"- probe: {probe['case']}: npm-sim {verdict[bool(probe['npm_sim'])]}, nca {verdict[bool(probe['nca'])]}"
              " (nca does not match ipBlocks against pod addresses; npm-sim matches any address, pod or not)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
