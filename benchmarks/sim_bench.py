"""Simulator speed and memory, in process for one cluster or as whole ``npm-sim`` processes.

    python benchmarks/sim_bench.py                                    # every figure of the table
    python benchmarks/sim_bench.py --pods 5000 --policies 1000 [--shape closed|realistic]

Without ``--pods`` it measures whole ``npm-sim`` processes (wall time and peak RSS from
``wait4``), each on a generated cluster written once as a JSON List into ``--cache-dir``:

- ``summary`` on 6 ports over realistic clusters (``realistic_gen``: mostly open, diverse
  labels) of 5,000 / 20,000 / 150,000 pods and over the almost closed clusters of
  ``cluster_gen`` (5,000 / 20,000);
- ``reach -o json`` and ``-o csv`` on 6 ports over 1,000 realistic pods;
- ``import simulator.cli`` (what every command pays before it starts);
- ``what-if`` adding one policy at 20,000 / 4,000: the incremental evaluation time it reports.

Each row is printed with its target and ``ok``/``MISS``; the exit code is 1 if a target is
missed. Runs one process at a time (the machine is shared). With ``--pods`` it times building
the Simulator and ``Simulator.summary`` in process, as before.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster_gen
import realistic_gen

from kube.model import PortSpec

DEFAULT_PORTS = realistic_gen.BENCH_PORTS
MIB = 1 << 20
WHATIF_POLICY = """\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bench-allow-api-from-gateway, namespace: ns-0007}
spec:
  podSelector: {matchLabels: {app: api}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {env: prod}}
      podSelector: {matchLabels: {app: gateway}}
    ports: [{port: 8080}, {port: 9000, endPort: 9100}]
"""


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _generate(shape: str, pods: int, policies: int, seed: int):
    module = realistic_gen if shape == "realistic" else cluster_gen
    return module.generate(pods, policies, seed)


def run(pods: int, policies: int, seed: int, ports: list[PortSpec], trace: bool, shape: str) -> dict[str, object]:
    """In process: generate (not timed), then build the Simulator and count every pair."""
    from simulator.classes import build_classes
    from simulator.engine import Simulator

    started = time.perf_counter()
    cluster = _generate(shape, pods, policies, seed)
    gen_seconds = time.perf_counter() - started
    rss_before = _rss_mib()
    if trace:
        tracemalloc.start()
    started = time.perf_counter()
    sim = Simulator(cluster)
    setup = time.perf_counter() - started
    summary = sim.summary(ports)
    wall = time.perf_counter() - started
    traced_peak = tracemalloc.get_traced_memory()[1] / MIB if trace else None
    if trace:
        tracemalloc.stop()
    return {
        "shape": shape,
        "pods": len(cluster.pods),
        "policies": len(cluster.policies),
        "namespaces": len(cluster.namespaces),
        "classes": summary.classes,
        "classes_with_every_label": build_classes(cluster, label_keys=None).count,
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


# ----- whole processes -----------------------------------------------------------------------
@dataclass
class Row:
    work: str
    seconds: float
    rss_mib: float
    target: str
    ok: bool
    note: str = ""
    cpu_seconds: float = 0.0  # user + system: steadier than wall time on a shared machine


def _cluster_file(cache: str, shape: str, pods: int, policies: int, seed: int) -> str:
    """A generated cluster as a JSON List, written once per (shape, size, seed)."""
    path = os.path.join(cache, f"{shape}-{pods}-{policies}-{seed}.json")
    if not os.path.exists(path):
        print(f"  generating {shape} {pods} pods / {policies} policies -> {path}", file=sys.stderr)
        module = realistic_gen if shape == "realistic" else cluster_gen
        objs = module.generate_objects(pods, policies, seed)
        with open(path + ".tmp", "w") as fh:
            realistic_gen.write_list(objs, fh)
        os.replace(path + ".tmp", path)
    return path


def _process(argv: list[str], stdout: int | None = subprocess.DEVNULL) -> tuple[float, float, str]:
    """Run ``argv``; (wall seconds, peak RSS MiB, stderr) of that one process; its CPU
    seconds (user + system) are left in ``_LAST_CPU``."""
    with tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=stdout, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read()
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: {text[-2000:]}")
    _LAST_CPU[0] = usage.ru_utime + usage.ru_stime
    return seconds, usage.ru_maxrss / 1024, text


_LAST_CPU = [0.0]


def _npm_sim(*args: str) -> list[str]:
    return [sys.executable, "-m", "simulator.cli", *args]


def _ports_args() -> list[str]:
    return [a for p in DEFAULT_PORTS for a in ("--port", p)]


def table_rows(cache: str, seed: int, big: bool, report: Callable[[Row], None]) -> list[Row]:
    rows: list[Row] = []

    def add(row: Row) -> None:
        row.cpu_seconds = round(_LAST_CPU[0], 2)
        rows.append(row)
        report(row)

    sizes = [("realistic", 5000, 1000, 1.0, None), ("realistic", 20000, 4000, 5.0, 1024)]
    if big:
        sizes.append(("realistic", 150000, 10000, 60.0, 8192))
    sizes += [("closed", 5000, 1000, None, None), ("closed", 20000, 4000, None, None)]
    for shape, pods, policies, t_s, t_mib in sizes:
        path = _cluster_file(cache, shape, pods, policies, seed)
        seconds, rss, err = _process(_npm_sim("summary", "-f", path, *_ports_args()))
        classes = re.search(r"\((\d+) classes\)", err)
        target = ("≤ " + f"{t_s:g} s" + (f", ≤ {t_mib} MiB" if t_mib else "")) if t_s else "(reported)"
        ok = (t_s is None or seconds <= t_s) and (t_mib is None or rss <= t_mib)
        note = f"{classes.group(1) if classes else '?'} classes"
        add(Row(f"summary, {shape}, {pods:,} pods / {policies:,} policies, 6 ports", seconds, rss, target, ok, note))

    path = _cluster_file(cache, "realistic", 1000, 200, seed)
    for output, t_s in (("json", 8.0), ("csv", 5.0)):
        out = os.path.join(cache, f"reach.{output}")
        with open(out, "w") as fh:
            seconds, rss, _ = _process(_npm_sim("reach", "-f", path, *_ports_args(), "-o", output), stdout=fh.fileno())
        size = os.path.getsize(out)
        with open(out) as fh:
            lines = sum(1 for _ in fh)
        os.remove(out)
        rows_out = (lines - 4) // 7 if output == "json" else lines - 1
        add(Row(f"reach -o {output}, realistic 1,000 pods / 200 policies, 6 ports", seconds, rss,
                f"≤ {t_s:g} s, ≤ 300 MiB", seconds <= t_s and rss <= 300, f"{rows_out:,} rows, {size / 1e6:,.0f} MB"))

    best = min(
        float(_process([sys.executable, "-c", "import time; t = time.perf_counter(); import simulator.cli; "
                        "import sys; print(time.perf_counter() - t, file=sys.stderr)"])[2].strip())
        for _ in range(5)
    )
    add(Row("import simulator.cli (best of 5, in process)", best, 0.0, "≤ 0.1 s", best <= 0.1))

    path = _cluster_file(cache, "realistic", 20000, 4000, seed)
    policy = os.path.join(cache, "whatif-policy.yaml")
    with open(policy, "w") as fh:
        fh.write(WHATIF_POLICY)
    seconds, rss, err = _process(_npm_sim("what-if", "-f", path, "--apply", policy, *_ports_args(), "-o", "json"))
    found = re.search(r"(\w+) re-evaluation of .*?: ([\d.]+) ms; evaluation and diff in ([\d.]+) s", err)
    ms = float(found.group(2)) if found else float("inf")
    mode = found.group(1) if found else "?"
    add(Row("what-if, one new policy, realistic 20,000 / 4,000, 6 ports", seconds, rss, "≤ 50 ms of evaluation",
            mode == "incremental" and ms <= 50,
            f"{mode} evaluation {ms:.1f} ms; base evaluation and diff {found.group(3) if found else '?'} s"))
    return rows


def _print_row(row: Row) -> None:
    rss = f"{row.rss_mib:7.0f} MiB" if row.rss_mib else " " * 11
    cpu = f"{row.cpu_seconds:7.2f} s" if row.rss_mib else " " * 9
    print(f"{row.work:66s} {row.seconds:8.2f} s {cpu} {rss}  {row.target:21s} {'ok' if row.ok else 'MISS':4s}  "
          f"{row.note}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, help="one in-process run of this size (default: the whole table)")
    parser.add_argument("--policies", type=int, default=1000)
    parser.add_argument("--shape", choices=["closed", "realistic"], default="closed",
                        help="with --pods: cluster_gen (closed, default) or realistic_gen")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--port", action="append", help="port/protocol (repeatable); default: " + ", ".join(DEFAULT_PORTS)
    )
    parser.add_argument(
        "--tracemalloc", action="store_true", help="also report the simulation's own peak allocation (slower)"
    )
    parser.add_argument("--cache-dir", default=os.path.join(tempfile.gettempdir(), "npm-sim-bench"),
                        help="where generated clusters are kept between runs")
    parser.add_argument("--no-150k", dest="big", action="store_false", help="table: skip the 150,000-pod cluster")
    parser.add_argument("-o", "--output", choices=["text", "json"], default="text")
    args = parser.parse_args(argv)
    if args.pods is None:
        os.makedirs(args.cache_dir, exist_ok=True)
        print(f"{'work':66s} {'wall':>10s} {'cpu':>9s} {'peak RSS':>11s}  {'target':21s} {'':4s}  notes")
        rows = table_rows(args.cache_dir, args.seed, args.big, _print_row if args.output == "text" else lambda r: None)
        if args.output == "json":
            print(json.dumps([r.__dict__ for r in rows], indent=2))
        return 0 if all(r.ok for r in rows) else 1
    ports = [PortSpec.parse(p) for p in (args.port or DEFAULT_PORTS)]
    print(f"generating {args.shape} {args.pods} pods / {args.policies} policies (seed {args.seed})...", file=sys.stderr)
    result = run(args.pods, args.policies, args.seed, ports, args.tracemalloc, args.shape)
    if args.output == "json":
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{result['pods']} pods, {result['policies']} policies, {result['namespaces']} namespaces, "
        f"{result['classes']} equivalence classes ({result['classes_with_every_label']} if every label counted; "
        f"generated in {result['generate_seconds']} s)"
    )
    print(f"simulator setup: {result['setup_seconds']} s")
    for port, row in result["ports"].items():  # type: ignore[union-attr]
        print(f"  {port:>9}: {row['allowed']:>14,} allowed {row['denied']:>14,} denied  {row['seconds']} s")
    print(f"wall time (setup + {len(ports)} ports): {result['wall_seconds']} s")
    print(f"peak RSS: {result['peak_rss_mib']} MiB (before simulating: {result['rss_before_mib']} MiB)")
    if result["simulation_peak_alloc_mib"] is not None:
        print(f"peak memory allocated by the simulation (tracemalloc): {result['simulation_peak_alloc_mib']} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
