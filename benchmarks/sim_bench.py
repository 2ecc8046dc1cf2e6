"""Simulator speed and memory: full reachability over a synthetic cluster, per port.

    python benchmarks/sim_bench.py --pods 5000 --policies 1000

Generates a cluster with ``benchmarks/cluster_gen.py`` (not timed), then times building the
Simulator (equivalence classes, selector evaluation) and ``Simulator.summary`` over four
ports, i.e. every (source, destination) pod pair per port. Reports wall time, the peak
resident set size of the process (``ru_maxrss``) and, with ``--tracemalloc``, the peak memory
the simulation itself allocated (numpy reports to tracemalloc; tracing slows the run down,
so wall times are only meaningful without it).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from cluster_gen import generate

from kube.model import PortSpec
from simulator.engine import Simulator

DEFAULT_PORTS = ("80/TCP", "443/TCP", "53/UDP", "8080/TCP")


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run(pods: int, policies: int, seed: int, ports: list[PortSpec], trace: bool) -> dict[str, object]:
    started = time.perf_counter()
    cluster = generate(pods, policies, seed)
    gen_seconds = time.perf_counter() - started
    rss_before = _rss_mib()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    sim = Simulator(cluster)
    setup = time.perf_counter() - started
    summary = sim.summary(ports)
    wall = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace else None
    if trace:
        tracemalloc.stop()
    return {
        "pods": len(cluster.pods),
        "policies": len(cluster.policies),
        "namespaces": len(cluster.namespaces),
        "classes": summary.classes,
        "generate_seconds": round(gen_seconds, 3),
        "setup_seconds": round(setup, 3),
        "wall_seconds": round(wall, 3),
        "ports": {
            str(p.port): {"allowed": p.allowed, "denied": p.denied, "seconds": round(p.seconds, 3)}
            for p in summary.ports
        },
        "rss_before_mib": round(rss_before, 1),
        "peak_rss_mib": round(_rss_mib(), 1),
        "simulation_peak_alloc_mib": None if traced_peak is None else round(traced_peak, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=5000)
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--port", action="append", help="port/protocol (repeatable); default: " + ", ".join(DEFAULT_PORTS)
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also report the simulation's own peak allocation (slower)"
    )
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)
    ports = [PortSpec.parse(p) for p in (args.port or DEFAULT_PORTS)]
    print(f"generating {args.pods} pods / {args.policies} policies (seed {args.seed})...", file=sys.stderr)
    result = run(args.pods, args.policies, args.seed, ports, args.tracemalloc)
    if args.output == "json":
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['pods']} pods, {result['policies']} policies, {result['namespaces']} namespaces, "
        f"{result['classes']} equivalence classes (generated in {result['generate_seconds']} s)"
    )
    print(f"simulator setup: {result['setup_seconds']} s")
    for port, row in result["ports"].items():  # type: ignore[union-attr]
        print(f"  {port:>9}: {row['allowed']:>12,} allowed {row['denied']:>12,} denied  {row['seconds']} s")
    print(f"wall time (setup + {len(ports)} ports): {result['wall_seconds']} s")
    print(f"peak RSS: {result['peak_rss_mib']} MiB (before simulating: {result['rss_before_mib']} MiB)")
    if result["simulation_peak_alloc_mib"] is not None:
        print(f"peak memory allocated by the simulation (tracemalloc): {result['simulation_peak_alloc_mib']} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
