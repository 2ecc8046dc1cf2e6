"""``npm-sim``: predict from NetworkPolicies alone which connections are allowed."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import time
from collections.abc import Sequence
from typing import TextIO

import numpy as np

from npm.load import DEFAULT_POD_CIDR, LoadResult, load_live, load_paths
from npm.model import Cluster, PortSpec
from simulator import render
from simulator.engine import Simulator, all_declared_ports, declared_ports
from simulator.explain import explain

EXIT_OK = 0
EXIT_DENIED = 1
EXIT_USAGE = 2
DEFAULT_PORT = PortSpec(80, "TCP")

EPILOG = """\
input:
  -f PATH reads YAML (multi-document), JSON, `kind: List` (kubectl get -o yaml) or every
  .yaml/.yml/.json file under a directory; `-f -` reads stdin. Namespaces, Pods, Nodes and
  NetworkPolicies are used, other kinds are skipped. Pods without an IP get a deterministic
  one from --pod-cidr; hostNetwork pods use their node's address. --kubeconfig/--context
  read a live cluster instead.

exit codes:
  0  success (explain: the connection is allowed)
  1  explain only: the connection is denied
  2  bad input or usage: unreadable file, invalid object (unless --skip-invalid), bad
     --port, unknown pod
"""


class UsageError(Exception):
    """Bad input the user can fix; printed without a traceback, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _port(text: str) -> PortSpec:
    try:
        return PortSpec.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cidr(text: str) -> str:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a CIDR such as 10.244.0.0/16") from None
    return text


def _input_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("input")
    group.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        default=[],
        metavar="PATH",
        help="manifest file, directory or - for stdin (repeatable)",
    )
    group.add_argument("--kubeconfig", help="read a live cluster with this kubeconfig")
    group.add_argument("--context", help="kubeconfig context of the live cluster")
    group.add_argument(
        "--pod-cidr",
        type=_cidr,
        default=DEFAULT_POD_CIDR,
        help=f"range for pods that have no IP (default {DEFAULT_POD_CIDR})",
    )
    group.add_argument(
        "--skip-invalid",
        action="store_true",
        help="analyse the valid objects even if some are invalid (errors are still listed)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _input_options()
    parser = _Parser(
        prog="npm-sim",
        description="Reachability simulator: which pods may connect to which, on which ports, "
        "according to Kubernetes NetworkPolicy semantics (no cluster or dataplane needed).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    reach = sub.add_parser(
        "reach",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        help="truth tables of allowed connections between every pair of pods",
        description="Print, per port, whether each pod (row) may connect to each pod (column). "
        "Without --port each destination is checked on the ports its containers declare: the "
        "table has one block per port any pod declares and shows '-' where the destination "
        "does not declare that port; json/csv/dot leave those cells out. If no pod declares a "
        "port, 80/TCP is used. Builds the pod x pod matrix: use `summary` for large clusters.",
    )
    reach.add_argument("--port", type=_port, action="append", metavar="PORT[/PROTO]", help="e.g. 80/TCP (repeatable)")
    reach.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="also include this external address as a source and destination (repeatable); "
        "it is checked on every listed port",
    )
    reach.add_argument("-o", "--output", choices=["table", "json", "csv", "dot"], default="table")

    summary = sub.add_parser(
        "summary",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        help="count allowed and denied pod pairs per port (scales to large clusters)",
        description="Count allowed and denied (source, destination) pod pairs per port over the "
        "whole cluster, self pairs included, without building the pod x pod matrix. Ports: "
        "--port, else every declared container port, else 80/TCP.",
    )
    summary.add_argument("--port", type=_port, action="append", metavar="PORT[/PROTO]", help="e.g. 80/TCP (repeatable)")
    summary.add_argument("-o", "--output", choices=["text", "json"], default="text")

    exp = sub.add_parser(
        "explain",
        parents=[common],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
        help="why one connection is allowed or denied",
        description="Explain the verdict for SRC -> DST: the policies that isolate the source "
        "for egress and the destination for ingress, and the rule (policy, direction, rule, "
        "peer and port index) that allows each side. Exit 0 if allowed, 1 if denied.",
    )
    exp.add_argument("src", metavar="SRC", help="source: namespace/name or an IP address")
    exp.add_argument("dst", metavar="DST", help="destination: namespace/name or an IP address")
    exp.add_argument("--port", type=_port, default=DEFAULT_PORT, metavar="PORT[/PROTO]", help="default 80/TCP")
    exp.add_argument("-o", "--output", choices=["text", "json"], default="text")
    __import__("simulator.cli_whatif", fromlist=["register"]).register(sub)  # diff, what-if, lint, exposure
    return parser


def load(args: argparse.Namespace, stdin: TextIO | None = None) -> Cluster:
    """Load the cluster the options describe; print errors and notes; raise UsageError."""
    if args.files and (args.kubeconfig or args.context):
        raise UsageError("give either -f PATH or --kubeconfig/--context, not both")
    if args.files:
        result = load_paths(args.files, pod_cidr=args.pod_cidr, stdin=stdin)
    elif args.kubeconfig or args.context:
        try:
            result = load_live(args.kubeconfig, args.context, pod_cidr=args.pod_cidr)
        except Exception as exc:  # the client raises many types; all mean "cannot read the cluster"
            raise UsageError(f"cannot read the live cluster: {exc}") from None
    else:
        raise UsageError("no input: give -f PATH (file, directory or -) or --kubeconfig/--context")
    return _report(result, args.skip_invalid)


def _report(result: LoadResult, skip_invalid: bool) -> Cluster:
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.skipped:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(result.skipped.items()))
        print(f"note: skipped objects of other kinds: {kinds}", file=sys.stderr)
    if result.errors and not skip_invalid:
        raise UsageError(f"{len(result.errors)} invalid input(s); fix them or use --skip-invalid")
    if result.errors:
        print(f"note: analysing without the {len(result.errors)} invalid input(s)", file=sys.stderr)
    return result.cluster


def _ports_or_declared(cluster: Cluster, ports: list[PortSpec] | None) -> tuple[list[PortSpec], bool]:
    """The ports to check and whether they came from --port (else from declarations)."""
    if ports:
        return list(dict.fromkeys(ports)), True
    declared = all_declared_ports(cluster)
    return (declared, False) if declared else ([DEFAULT_PORT], True)


def cmd_reach(args: argparse.Namespace, cluster: Cluster, out: TextIO) -> int:
    sim = Simulator(cluster)
    ports, explicit = _ports_or_declared(cluster, args.port)
    pods = list(cluster.pods)
    externals: list[str] = []
    for ip in args.ip:
        try:
            ep = sim.endpoint(ip)
        except ValueError as exc:
            raise UsageError(f"--ip {ip}: {exc}") from None
        if ep.key not in cluster.pod_by_key and ep.key not in externals:
            externals.append(ep.key)
    names = tuple([p.key for p in pods] + externals)
    n, size = len(pods), len(names)
    matrix = sim.matrix(ports)
    allowed: dict[PortSpec, np.ndarray] = {}
    checked: dict[PortSpec, np.ndarray] = {}
    for spec in ports:
        grid = np.zeros((size, size), dtype=bool)
        grid[:n, :n] = matrix.allowed[spec]
        for k, ip in enumerate(externals, start=n):
            for i, p in enumerate(pods):
                grid[i, k] = sim.allowed(p, ip, spec)
                grid[k, i] = sim.allowed(ip, p, spec)
            for m, other in enumerate(externals, start=n):
                grid[k, m] = sim.allowed(ip, other, spec)
        mask = np.ones((size, size), dtype=bool)
        if not explicit:
            declares = np.array([spec in declared_ports(p) for p in pods] + [True] * len(externals), dtype=bool)
            mask[:, ~declares] = False
        allowed[spec], checked[spec] = grid, mask
    result = render.Reach(names, tuple(ports), allowed, checked)
    if args.output == "json":
        out.write(render.to_json(result))
    elif args.output == "csv":
        out.write(render.to_csv(result))
    elif args.output == "dot":
        out.write(render.to_dot(result, externals))
    else:
        if not names:
            out.write("no pods\n")
        else:
            out.write(render.table(result))
    return EXIT_OK


def cmd_summary(args: argparse.Namespace, cluster: Cluster, out: TextIO) -> int:
    started = time.perf_counter()
    sim = Simulator(cluster)
    ports, _explicit = _ports_or_declared(cluster, args.port)
    print(
        f"evaluating {len(cluster.pods)} pods ({sim.classes.count} classes) on {len(ports)} port(s)...",
        file=sys.stderr,
    )
    summary = sim.summary(ports)
    seconds = time.perf_counter() - started
    out.write(render.summary_json(summary, seconds) if args.output == "json" else render.summary_text(summary, seconds))
    return EXIT_OK


def cmd_explain(args: argparse.Namespace, cluster: Cluster, out: TextIO) -> int:
    sim = Simulator(cluster)
    try:
        result = explain(sim, args.src, args.dst, args.port)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.output == "json":
        out.write(json.dumps(result.to_json(), indent=2) + "\n")
    else:
        out.write(result.render() + "\n")
    return EXIT_OK if result.allowed else EXIT_DENIED


COMMANDS = {"reach": cmd_reach, "summary": cmd_summary, "explain": cmd_explain}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``npm-sim``; returns the exit code (see ``npm-sim --help``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        cluster = load(args)
        return COMMANDS[args.command](args, cluster, sys.stdout)
    except UsageError as exc:
        print(f"npm-sim: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, or argparse exiting on its own
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
