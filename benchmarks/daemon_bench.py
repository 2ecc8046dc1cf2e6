"""Daemon benchmark: memory with a large cluster watched, and event-to-enforced latency.

The test API server (tests/daemon/apiserver.py) serves a synthetic cluster
(benchmarks/cluster_gen.py) from inside a scratch network namespace; ``azure-npm start``
runs as a subprocess in that namespace with the real Enforcer, so the full path is
measured: list/watch through the kubernetes client, validation, cache, translation and
iptables-restore/ipset restore in that namespace's kernel (never the host's).

Figures: time to ready; resident memory (VmRSS) after the first apply, after the pod burst
and at the end ("later"), and the peak (VmHWM) up to each of those; latency p50/p99/max (a
change seen by the watcher to its apply finishing, from the daemon's debug endpoint) under
a burst of pod label changes and for policy changes made one at a time on an otherwise idle
daemon (the first is applied at once, not after a coalescing window). ``--tracemalloc N``
runs the daemon with ``PYTHONTRACEMALLOC=N`` and prints where its live memory is, by module,
at each of those points (``/npm/v1/debug/memory``; tracing slows the daemon and inflates its
memory, so the other figures of such a run are not comparable). Needs root (or
``nox -s bench``, which uses a user namespace).

    python benchmarks/daemon_bench.py [--pods 20000 --policies 1000 --burst 1000 --policy-changes 100]
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from cluster_gen import generate_objects  # noqa: E402
from dataplane_bench import is_root, print_report  # noqa: E402

from npm.daemon.heap import status_kib  # noqa: E402
from tests.daemon.apiserver import ApiServer, in_netns  # noqa: E402

LISTEN = ("127.0.0.1", 10091)
DEBUG = ("127.0.0.1", 10093)


def get(netns: str, address: tuple[str, int], path: str, timeout: float = 60) -> tuple[int, bytes]:
    """HTTP GET over a socket opened inside ``netns``."""
    try:
        sock = in_netns(netns, lambda: socket.create_connection(address, timeout=timeout))
    except OSError:
        return 0, b""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {
        "n": len(ordered),
        "p50_ms": round(q(0.5) * 1000, 1),
        "p99_ms": round(q(0.99) * 1000, 1),
        "max_ms": round(ordered[-1] * 1000, 1),
    }


def latencies_since(netns: str, count_before: int) -> list[float]:
    """The enforcement latencies (seconds) the daemon recorded after the first ``count_before``."""
    _status, body = get(netns, DEBUG, "/npm/v1/debug/manager")
    info = json.loads(body)["enforcement_latency"]
    new = info["count"] - count_before
    return info["recent_seconds"][-new:] if new > 0 else []


def metric(netns: str, series: str) -> int:
    """The value of one series of the daemon's /metrics (0 when absent)."""
    _status, body = get(netns, LISTEN, "/metrics")
    for line in body.decode().splitlines():
        if line.startswith(series + " "):
            return int(float(line.split()[1]))
    return 0


def latency_count(netns: str) -> int:
    """How many changes the daemon has enforced (the latency histogram's count)."""
    return metric(netns, "npm_policy_enforcement_latency_seconds_count")


def apply_count(netns: str) -> int:
    """How many applies the daemon has made."""
    return metric(netns, 'npm_dataplane_apply_seconds_count{operation="apply"}')


def wait_quiet(netns: str, settle: float = 1.0, timeout: float = 300) -> int:
    """Wait until the daemon's latency count stops moving; returns it."""
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        count = latency_count(netns)
        if count == last:
            return count
        last = count
        time.sleep(settle)
    return last


def memory_report(netns: str) -> dict[str, Any]:
    """The daemon's ``/npm/v1/debug/memory``: collector figures, and allocations by module when
    it runs with PYTHONTRACEMALLOC (that census takes minutes at 20,000 pods)."""
    _status, body = get(netns, DEBUG, "/npm/v1/debug/memory", timeout=600)
    data = json.loads(body)
    out: dict[str, Any] = {"gc": {k.removeprefix("gc_"): v for k, v in data.items() if k.startswith("gc_")}}
    traced = data.get("tracemalloc")
    if traced:
        out["traced_mib"] = round(traced["traced_kib"] / 1024, 1)
        out["by_module"] = [f"{m['kib'] / 1024:.1f} MiB {m['module']}" for m in traced["by_module"][:15]]
    return out


def remove_stale_namespaces() -> None:
    """Delete scratch namespaces of earlier runs that were killed before cleaning up."""
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()
    for name in listing:
        if name.startswith("npmbench") and name[8:].isdigit() and not Path(f"/proc/{name[8:]}").exists():
            subprocess.run(["ip", "netns", "del", name], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pods", type=int, default=20_000)
    parser.add_argument("--policies", type=int, default=1_000)
    parser.add_argument("--burst", type=int, default=1_000, help="pod label changes sent at once")
    parser.add_argument("--policy-changes", type=int, default=100, help="policy changes sent one at a time")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between policy changes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tracemalloc", type=int, default=0, metavar="FRAMES",
                        help="trace the daemon's allocations (PYTHONTRACEMALLOC=FRAMES) and print them by module")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    if not is_root():
        return 2

    objects = generate_objects(args.pods, args.policies, args.seed)
    node = next(o["spec"]["nodeName"] for o in objects if o["kind"] == "Pod" and o["spec"].get("nodeName"))
    remove_stale_namespaces()
    netns = f"npmbench{os.getpid()}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
    server = ApiServer(bookmark_interval=5.0, netns=netns).start()
    work = Path(tempfile.mkdtemp(prefix="npm-bench-"))
    log = open(work / "daemon.log", "wb")  # noqa: SIM115 (kept open for the daemon's lifetime)
    daemon: subprocess.Popen[bytes] | None = None
    report: dict[str, Any] = {"pods": args.pods, "policies": args.policies, "node": node}
    rss: dict[str, float] = {}

    def measure(stage: str) -> None:
        """Resident memory now and the peak so far (and allocations by module when tracing)."""
        assert daemon is not None
        memory = status_kib(daemon.pid)
        rss[stage] = round(memory["VmRSS"] / 1024, 1)
        rss[f"peak_until_{stage}"] = round(memory["VmHWM"] / 1024, 1)
        report.setdefault("heap", {})[stage] = memory_report(netns)
    try:
        for obj in objects:
            server.put(obj)
        kubeconfig = server.kubeconfig(str(work / "kubeconfig"))
        print(f"serving {len(objects)} objects; starting the daemon for {node}", file=sys.stderr)
        started = time.monotonic()
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-m", "npm.cli", "start", "--kubeconfig", kubeconfig,
             "--node-name", node, "--listen", f"{LISTEN[0]}:{LISTEN[1]}", "--debug-listen", f"{DEBUG[0]}:{DEBUG[1]}"],
            env={**os.environ, "PYTHONPATH": str(ROOT),
                 **({"PYTHONTRACEMALLOC": str(args.tracemalloc)} if args.tracemalloc else {})},
            stdout=log, stderr=subprocess.STDOUT,
        )
        while get(netns, LISTEN, "/readyz", timeout=5)[0] != 200:
            if daemon.poll() is not None or time.monotonic() - started > 600:
                raise SystemExit(f"daemon not ready; log in {work / 'daemon.log'}")
            time.sleep(0.2)
        report["ready_seconds"] = round(time.monotonic() - started, 2)
        measure("after_first_apply")
        _s, metrics = get(netns, LISTEN, "/metrics")
        for line in metrics.decode().splitlines():
            for name in ("npm_num_policies", "npm_num_iptables_rules", "npm_num_ipsets", "npm_num_ipset_entries",
                         "npm_pods_watched"):
                if line.startswith(name + " "):
                    report[name] = float(line.split()[1])
        count = wait_quiet(netns)
        applies = apply_count(netns)

        # A burst of pod events: label changes that move pods in and out of selected sets.
        pods = [o for o in objects if o["kind"] == "Pod" and o["status"].get("podIP")][: args.burst]
        burst_start = time.monotonic()
        for i, pod in enumerate(pods):
            changed = copy.deepcopy(pod)
            changed["metadata"]["labels"]["bench"] = f"b{i % 7}"
            server.put(changed)
        put_seconds = time.monotonic() - burst_start
        time.sleep(1.0)
        count_after = wait_quiet(netns)
        measure("after_pod_burst")
        burst = latencies_since(netns, count)
        report["pod_burst"] = {"events": len(pods), "sent_in_s": round(put_seconds, 3),
                               "applies": apply_count(netns) - applies, **quantiles(burst)}
        count, applies = count_after, apply_count(netns)

        # Policy changes, one at a time, each on an idle daemon (the previous one is applied by then).
        policies = [o for o in objects if o["kind"] == "NetworkPolicy"][: args.policy_changes]
        for i, policy in enumerate(policies):
            changed = copy.deepcopy(policy)
            changed["spec"]["podSelector"].setdefault("matchLabels", {})["bench"] = f"p{i % 3}"
            server.put(changed)
            time.sleep(args.interval)
        time.sleep(1.0)
        wait_quiet(netns)
        measure("later")
        changes = latencies_since(netns, count)
        report["policy_change_on_idle_daemon"] = {"changes": len(policies), "applies": apply_count(netns) - applies,
                                                  **quantiles(changes)}
        report["rss_mib"] = rss
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
        server.stop()
        subprocess.run(["ip", "netns", "del", netns], check=False)
        log.close()
    print_report(report, args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
