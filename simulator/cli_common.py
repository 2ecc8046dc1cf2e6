"""What every ``npm-sim`` command shares: input options, argument types, loading, port choice.

``simulator.cli`` (reach, summary, explain, and the parser) and ``simulator.cli_whatif``
(diff, what-if, lint, exposure) both build on these, so neither imports the other's internals.
Handlers take ``(args, cluster, out)`` and return an exit code; bad input the user can fix
is a :class:`UsageError` (printed without a traceback, exit code 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from kube.arguments import cidr_type, port_type
from kube.load import DEFAULT_POD_CIDR, LoadResult, load_live, load_paths
from kube.model import Cluster, PortSpec
from simulator.whatif_load import evaluated

EXIT_OK = 0
EXIT_FAIL = 1  # explain: denied; diff, what-if, lint: the --fail-on condition was met
EXIT_USAGE = 2
DEFAULT_PORT = PortSpec(80, "TCP")


class UsageError(Exception):
    """Bad input the user can fix; printed without a traceback, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors raise :class:`UsageError` instead of exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        raise UsageError(message)


def add_pod_cidr_option(parser: Any) -> None:
    """``--pod-cidr``: where pods without an IP get one from."""
    parser.add_argument(
        "--pod-cidr",
        type=cidr_type,
        default=DEFAULT_POD_CIDR,
        help=f"range for pods that have no IP (default {DEFAULT_POD_CIDR})",
    )


def add_skip_invalid_option(parser: Any) -> None:
    """``--skip-invalid``: analyse the valid objects even if some are invalid."""
    parser.add_argument(
        "--skip-invalid",
        action="store_true",
        help="analyse the valid objects even if some are invalid (errors are still listed)",
    )


def input_options() -> argparse.ArgumentParser:
    """A parent parser with ``-f``, ``--kubeconfig``, ``--context``, ``--pod-cidr``, ``--skip-invalid``."""
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
    add_pod_cidr_option(group)
    add_skip_invalid_option(group)
    return common


def add_command(
    sub: Any, name: str, *, help: str, description: str, epilog: str | None, parents: Sequence[Any] = ()
) -> argparse.ArgumentParser:
    """Add subcommand ``name`` (its epilog printed as written) and return its parser."""
    return sub.add_parser(
        name,
        parents=list(parents),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=epilog,
        help=help,
        description=description,
    )


def add_port_option(parser: argparse.ArgumentParser, help: str = "e.g. 80/TCP (repeatable)") -> None:
    """``--port PORT[/PROTO]`` (repeatable) into ``args.port``."""
    parser.add_argument("--port", type=port_type, action="append", metavar="PORT[/PROTO]", help=help)


def load(args: argparse.Namespace, stdin: TextIO | None = None) -> Cluster:
    """Load the cluster the input options describe; print errors and notes; raise UsageError."""
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
    args.inputs = evaluated(result).inputs()
    return accept(result, args.skip_invalid)


def with_inputs(doc: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``doc`` with the ``inputs`` accounting of the loads beside its own keys (JSON outputs)."""
    inputs = getattr(args, "inputs", None)
    after = getattr(args, "inputs_after", None)
    if inputs is not None:
        doc["inputs"] = {"before": inputs, "after": after} if after is not None else inputs
    return doc


def accept(result: LoadResult, skip_invalid: bool) -> Cluster:
    """Print a load's errors and notes to stderr and return its cluster.

    Raises UsageError when there are errors and ``skip_invalid`` is not set.
    """
    for error in result.errors:
        print(f"error: {error}", file=sys.stderr)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    print(result.summary(), file=sys.stderr)
    if result.errors and not skip_invalid:
        raise UsageError(f"{len(result.errors)} invalid input(s); fix them or use --skip-invalid")
    if result.errors:
        print(f"note: analysing without the {len(result.errors)} invalid input(s)", file=sys.stderr)
    return result.cluster


def choose_ports(clusters: Iterable[Cluster], given: Sequence[PortSpec] | None) -> tuple[list[PortSpec], bool]:
    """(ports, declared_only): ``--port`` (deduplicated) on every pair; else every port a pod of
    ``clusters`` declares, each destination checked on its own; else 80/TCP on every pair."""
    if given:
        return list(dict.fromkeys(given)), False
    from simulator.engine import all_declared_ports  # numpy: only for commands that evaluate

    declared = sorted({s for c in clusters for s in all_declared_ports(c)}, key=lambda s: (s.protocol, s.port))
    return (declared, True) if declared else ([DEFAULT_PORT], False)


__all__ = [
    "DEFAULT_PORT",
    "EXIT_FAIL",
    "EXIT_OK",
    "EXIT_USAGE",
    "Parser",
    "UsageError",
    "accept",
    "add_command",
    "add_pod_cidr_option",
    "add_port_option",
    "add_skip_invalid_option",
    "choose_ports",
    "cidr_type",
    "input_options",
    "load",
    "port_type",
    "with_inputs",
]
