"""Pathological but valid policies, found by the hardening audit, as benchmark targets.

Run as root (or via ``nox -s bench``):

    python benchmarks/pathology_bench.py [--rules 10000] [--values 100000] [-o json]

Measures, each in a throw-away network namespace:
- one NetworkPolicy with ``--rules`` ingress rules (distinct peers and ports): translation +
  apply (target <= 5 s), and ``npm-sim summary`` on it as a whole process (target <= 5 s);
- one NetworkPolicy whose selector has ``In`` with ``--values`` values: apply, and how many
  ipsets it needs (one per requirement since the hash translation, not one per value).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dataplane_bench import is_root, log, print_report  # noqa: E402

from kube import manifests  # noqa: E402
from kube.manifests import cluster_of  # noqa: E402
from npm.dataplane.enforcer import DataplaneConfig, Enforcer  # noqa: E402
from npm.dataplane.kernel import Runner  # noqa: E402

PODS = 200


def pods() -> list[dict]:
    return [
        manifests.pod("x", f"p{i}", {"app": f"a{i % 20}", "v": f"v{i}"}, ip=f"10.9.{i // 250}.{i % 250 + 1}",
                      node="n1", ports=[manifests.container_port(80), manifests.container_port(443)])
        for i in range(PODS)
    ]


def many_rules(count: int) -> dict:
    rules = [
        {"from": [{"ipBlock": {"cidr": f"10.{100 + i // 65536 % 100}.{i // 256 % 256}.{i % 256}/32"}}],
         "ports": [{"port": 1024 + i % 60000, "protocol": "TCP"}]}
        for i in range(count)
    ]
    return manifests.policy("x", "many-rules", {"podSelector": {"matchLabels": {"app": "a1"}}, "ingress": rules})


def many_values(count: int) -> dict:
    values = [f"v{i}" for i in range(count)]
    selector = {"matchExpressions": [{"key": "v", "operator": "In", "values": values}]}
    return manifests.policy("x", "many-values", {"podSelector": {}, "ingress": [{"from": [{"podSelector": selector}]}]})


def apply_in_netns(objects: list[dict]) -> dict[str, float]:
    """Translate and apply ``objects`` in a fresh namespace; seconds and counts."""
    cluster = cluster_of(objects)
    ns = f"npm-patho-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        enforcer = Enforcer("n1", config=DataplaneConfig(backend="nft"), runner=Runner(["ip", "netns", "exec", ns]))
        started = time.perf_counter()
        result = enforcer.apply(cluster)
        seconds = time.perf_counter() - started
        if result.failures:
            log(f"apply failed: {result.failures[0]}")
        return {"seconds": round(seconds, 2), "ok": result.ok, **result.counts}
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def sim_summary(objects: list[dict]) -> float:
    """``npm-sim summary`` on the objects, as a whole process; seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cluster.yaml"
        path.write_text(yaml.safe_dump_all([manifests.namespace("x"), *objects]))
        started = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "simulator.cli", "summary", "-f", str(path)],
                              capture_output=True, text=True, cwd=ROOT)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            log(f"npm-sim summary exited {proc.returncode}: {proc.stderr[-500:]}")
        return round(seconds, 2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--values", type=int, default=100_000)
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args()
    if not is_root():
        return 1
    base = pods()
    report: dict[str, object] = {}
    log(f"one policy with {args.rules} rules ...")
    report[f"apply_one_policy_{args.rules}_rules"] = apply_in_netns([*base, many_rules(args.rules)])
    report[f"npm_sim_summary_one_policy_{args.rules}_rules_seconds"] = sim_summary([*base, many_rules(args.rules)])
    log(f"one policy with In over {args.values} values ...")
    report[f"apply_one_policy_in_{args.values}_values"] = apply_in_netns([*base, many_values(args.values)])
    print_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
