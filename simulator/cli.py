"""``npm-sim``: predict from NetworkPolicies alone which connections are allowed."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, TextIO

from kube.model import Cluster, PortSpec
from simulator.cli_common import (
    DEFAULT_PORT,
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    UsageError,
    add_command,
    add_port_option,
    choose_ports,
    input_options,
    load,
    port_type,
    with_inputs,
)
from simulator.cli_whatif import add_whatif_commands
from simulator.memory import TooLarge, out_of_memory

# The engine (numpy), the renderers and the HTML report are imported by the handlers that use
# them, so that every command pays only for what it runs.

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
     --port, unknown pod; or a cluster too large for the memory available (the message
     says how much was needed and what to do instead)
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``npm-sim`` parser; each subcommand's ``args.handler`` runs it."""
    common = input_options()
    parser = Parser(
        prog="npm-sim",
        description="Reachability simulator: which pods may connect to which, on which ports, "
        "according to Kubernetes NetworkPolicy semantics (no cluster or dataplane needed).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True

    def command(name: str, *, help: str, description: str) -> argparse.ArgumentParser:
        return add_command(sub, name, parents=[common], epilog=EPILOG, help=help, description=description)

    reach = command(
        "reach",
        help="truth tables of allowed connections between every pair of pods",
        description="Print, per port, whether each pod (row) may connect to each pod (column). "
        "Without --port each destination is checked on the ports its containers declare: the "
        "table has one block per port any pod declares and shows '-' where the destination "
        "does not declare that port; json/csv/dot leave those cells out (html hatches them). If no pod "
        "declares a port, 80/TCP is used. Builds the pod x pod matrix: use `summary` for large clusters. "
        "-o html writes one self-contained page (heatmap and graph grouped by namespace, with a legend "
        "and a namespace filter).",
    )
    add_port_option(reach)
    reach.add_argument(
        "--ip",
        action="append",
        default=[],
        metavar="ADDRESS",
        help="also include this external address as a source and destination (repeatable); "
        "it is checked on every listed port",
    )
    reach.add_argument(
        "--outside",
        action="store_true",
        help="also include the nodes (node/NAME) and the blocks of outside addresses that the policies' "
        "ipBlocks tell apart, each written as its CIDRs (one row per CIDR) and checked on every listed port",
    )
    reach.add_argument(
        "--by",
        choices=["pod", "workload"],
        default="pod",
        help="workload: one endpoint per workload (ns/name[Kind]) wherever its pods' verdicts are all the same; "
        "a pod that policy treats differently (a canary relabelled by hand) keeps a row of its own, and a note "
        "says so (default: pod)",
    )
    reach.add_argument(
        "--focus",
        action="append",
        default=[],
        metavar="NAME",
        help="show only these endpoints: a pod, a workload ns/name[Kind], ns/* or a glob (repeatable)",
    )
    reach.add_argument("-o", "--output", choices=["table", "json", "csv", "dot", "html"], default="table")
    reach.set_defaults(handler=cmd_reach)

    summary = command(
        "summary",
        help="count allowed and denied pod pairs per port (scales to large clusters)",
        description="Count allowed and denied (source, destination) pod pairs per port over the "
        "whole cluster, self pairs included, without building the pod x pod matrix. Ports: "
        "--port, else every declared container port, else 80/TCP.",
    )
    add_port_option(summary)
    summary.add_argument(
        "--outside",
        action="store_true",
        help="also count pairs of a pod and a node or a block of outside addresses (both ways; see reach --outside)",
    )
    summary.add_argument("-o", "--output", choices=["text", "json"], default="text")
    summary.set_defaults(handler=cmd_summary)

    exp = command(
        "explain",
        help="why one connection is allowed or denied",
        description="Explain the verdict for SRC -> DST: the policies that isolate the source "
        "for egress and the destination for ingress, and the rule (policy, direction, rule, "
        "peer and port index) that allows each side. Exit 0 if allowed, 1 if denied.",
    )
    exp.add_argument("src", metavar="SRC", help="source: a pod namespace/name, a workload namespace/name[Kind], "
                     "namespace/* (when policy treats its pods alike), an IP address, a CIDR or node/NAME")
    exp.add_argument("dst", metavar="DST", help="destination: the same forms as SRC")
    exp.add_argument("--port", type=port_type, default=DEFAULT_PORT, metavar="PORT[/PROTO]", help="default 80/TCP")
    exp.add_argument("-o", "--output", choices=["text", "json"], default="text")
    exp.set_defaults(handler=cmd_explain)

    add_whatif_commands(sub, common)
    return parser


def cmd_reach(args: argparse.Namespace, cluster: Cluster, out: TextIO) -> int:
    from simulator.engine import Simulator

    sim = Simulator(cluster)
    ports, declared_only = choose_ports([cluster], args.port)
    externals: list[str] = []
    for ip in args.ip:
        try:
            ep = sim.endpoint(ip)
        except ValueError as exc:
            raise UsageError(f"--ip {ip}: {exc}") from None
        if ep.key not in cluster.pod_by_key and ep.key not in externals:
            externals.append(ep.key)
    names = list(externals)
    if args.outside:
        from simulator.outside import outside_endpoints

        for endpoint in outside_endpoints([cluster]):
            for name in endpoint.names:
                externals.append(endpoint.address)
                names.append(name)
    folds = _endpoints(sim, args)
    if args.output in ("json", "csv", "table"):
        # Written row by row as computed: memory does not grow with the number of rows.
        from simulator.reach_stream import plan_for, stream

        plan = plan_for(sim, externals, ports, declared_only, names, folds)
        stream(plan, args.output, out, getattr(args, "inputs", None))
        return EXIT_OK
    result = _whole_reach(sim, externals, ports, declared_only, names, folds)
    if args.output == "dot":
        from simulator import render

        out.write(render.to_dot(result, names))
    else:
        from simulator import html_report

        out.write(html_report.reach_page(result.names, result.ports, result.allowed, result.checked, names))
    return EXIT_OK


def _endpoints(sim: Any, args: argparse.Namespace) -> list[Any] | None:
    """The pod rows of ``reach``: None for every pod, else the --focus and --by workload view."""
    if args.by == "pod" and not args.focus:
        return None
    from simulator.endpoint_names import Folded, UnknownName, fold_by_workload, pods_named

    positions = None
    if args.focus:
        wanted: set[str] = set()
        for name in args.focus:
            try:
                wanted.update(p.key for p in pods_named(sim.cluster, name))
            except UnknownName as exc:
                raise UsageError(f"--focus {exc}") from None
        positions = [i for i, p in enumerate(sim.cluster.pods) if p.key in wanted]
    if args.by == "pod":
        return [Folded(sim.cluster.pods[i].key, (i,)) for i in positions or ()]
    folds, notes = fold_by_workload(sim, positions, nodes_shown=args.outside)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    folded = sum(len(f.members) for f in folds)
    print(f"{folded} pod(s) shown as {len(folds)} endpoint(s)", file=sys.stderr)
    return folds


def _whole_reach(
    sim: Any, externals: list[str], ports: list[PortSpec], declared_only: bool, names: list[str],
    folds: list[Any] | None = None,
) -> Any:
    """Every verdict in memory at once (``render.Reach``), for the dot and html outputs."""
    import numpy as np

    from simulator import memory, render
    from simulator.reach_stream import plan_for

    plan = plan_for(sim, externals, ports, declared_only, names, folds)
    size = len(plan.names)
    memory.ensure(f"the {size:,} x {size:,} pod matrix on {len(ports)} port(s)", 2 * size * size * len(ports),
                  "use `-o json`, `-o csv` or `-o table`, which stream, or `npm-sim summary`")
    allowed, checked = {}, {}
    for spec in ports:
        allowed[spec] = np.concatenate(list(plan.tiles(spec))) if size else np.zeros((0, 0), dtype=bool)
        checked[spec] = np.broadcast_to(plan.checked(spec), (size, size))
    return render.Reach(tuple(plan.names), tuple(ports), allowed, checked)


def cmd_summary(args: argparse.Namespace, cluster: Cluster, out: TextIO) -> int:
    from simulator import render
    from simulator.engine import Simulator

    started = time.perf_counter()
    sim = Simulator(cluster)
    ports, _declared_only = choose_ports([cluster], args.port)
    print(
        f"evaluating {len(cluster.pods)} pods ({sim.classes.count} classes) on {len(ports)} port(s)...",
        file=sys.stderr,
    )
    summary = sim.summary(ports)
    outside = None
    if args.outside:
        from simulator.outside import outside_counts, outside_endpoints

        endpoints = outside_endpoints([cluster])
        outside = {str(spec): outside_counts(sim, endpoints, spec) for spec in ports}
    seconds = time.perf_counter() - started
    if args.output == "json":
        out.write(render.summary_json(summary, seconds, getattr(args, "inputs", None), outside))
    else:
        out.write(render.summary_text(summary, seconds, outside))
    return EXIT_OK


def cmd_explain(args: argparse.Namespace, cluster: Cluster, out: TextIO) -> int:
    from simulator.engine import Simulator
    from simulator.explain import explain

    sim = Simulator(cluster)
    try:
        (src, src_name), (dst, dst_name) = _named(sim, args.src), _named(sim, args.dst)
        result = explain(sim, src, dst, args.port)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = replace(result, src=src_name or result.src, dst=dst_name or result.dst)
    if args.output == "json":
        out.write(json.dumps(with_inputs(result.to_json(), args), indent=2) + "\n")
    else:
        out.write(result.render() + "\n")
    return EXIT_OK if result.allowed else EXIT_FAIL


def _named(sim: Any, text: str) -> tuple[Any, str]:
    """``text`` as ``explain`` takes it: a pod for a pod, workload or ``ns/*`` name (whose
    pods policy must treat alike) with the name to show, else the text itself (an address,
    a CIDR, ``node/NAME``) with no name."""
    import ipaddress

    from simulator.endpoint_names import one_endpoint

    if text.startswith("node/") or text in sim.cluster.pod_by_key:
        return text, ""
    try:
        ipaddress.ip_network(text.strip(), strict=False)
        return text, ""
    except ValueError:
        pass
    if "/" not in text:
        return text, ""  # neither a name nor an address: explain says so
    return one_endpoint(sim, text)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``npm-sim``; returns the exit code (see ``npm-sim --help``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        cluster = load(args)
        return args.handler(args, cluster, sys.stdout)
    except (UsageError, TooLarge) as exc:
        print(f"npm-sim: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MemoryError:  # an allocation no check foresaw: still a message, not a traceback
        print(f"npm-sim: error: {out_of_memory()}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as exc:  # --help, or argparse exiting on its own
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE


if __name__ == "__main__":
    raise SystemExit(main())
