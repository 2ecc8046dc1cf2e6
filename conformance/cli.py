"""``npm-conformance``: run NetworkPolicy scenarios on a real dataplane and compare with the simulator.

Exit codes: 0 every probe matched; 1 mismatches (or a written expectation contradicted);
2 bad input or usage; 3 backend failure (namespaces, daemon, cluster); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from conformance.backends import Backend, BackendError
from conformance.cli_generate import register as register_generate
from conformance.cli_generate import run as run_generate
from conformance.report import dumps_json, junit_report, summarize, table_report
from conformance.runner import Runner, RunOptions
from conformance.scenario import DEFAULT_NODES, Scenario, load_scenarios
from kube.arguments import port_type

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_BACKEND, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

EPILOG = """\
exit codes: 0 every probe matched, 1 mismatches, 2 bad input or usage,
            3 backend failure, 130 interrupted

examples:
  npm-conformance run -f scenarios                       # every scenario, netns backend
  npm-conformance run -f scenarios/upstream --tag udp -v # UDP ones, all truth tables
  npm-conformance run -f policies.yaml --port 80/TCP -o json
  npm-conformance run -f scenarios --backend kind        # on a kind cluster (docker, kind)
  npm-conformance run -f scenarios --node-image azure-npm:0.1.0  # netns nodes run the image (root, podman)
  npm-conformance validate -f scenarios                  # check files only
"""


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="npm-conformance",
        description="Run NetworkPolicy scenarios on a real dataplane (network namespaces running the "
        "enforcer, or a kind/real cluster) and compare every probe with the simulator's prediction.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def files(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "-f",
            "--file",
            dest="files",
            action="append",
            required=True,
            metavar="FILE|DIR",
            help="scenario or manifest file, or a directory of them (repeatable)",
        )
        p.add_argument("--tag", action="append", default=[], help="only scenarios with this tag (repeatable: any)")
        p.add_argument("--exclude-tag", action="append", default=[], help="skip scenarios with this tag")
        p.add_argument(
            "--nodes",
            type=int,
            default=DEFAULT_NODES,
            metavar="N",
            help=f"nodes for scenarios that do not say (default {DEFAULT_NODES})",
        )

    run = sub.add_parser(
        "run",
        help="run scenarios and compare observed with predicted",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    files(run)
    run.add_argument(
        "--backend",
        choices=("netns", "kind", "cluster"),
        default="netns",
        help="where to run: netns (default: this machine, no cluster), kind, cluster (kubeconfig)",
    )
    run.add_argument(
        "--port",
        action="append",
        type=port_type,
        default=[],
        metavar="PORT/PROTO",
        help="probe these ports (repeatable) instead of each step's ports or each destination's declared ports",
    )
    run.add_argument(
        "-o", "--output", choices=("table", "json", "junit"), default="table", help="report format on stdout"
    )
    run.add_argument("--out", metavar="DIR", help="also write report.json and junit.xml into DIR")
    run.add_argument(
        "-v", "--verbose", action="store_true", help="print truth tables of every step, not only mismatches"
    )
    run.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    run.add_argument("--probe-timeout", type=_positive, metavar="S", help="one probe's timeout (netns 0.5, kind 1)")
    run.add_argument(
        "--converge-timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help="how long a step may take to agree with the prediction (default 10)",
    )
    run.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="netns backend: skip azure-npm verify on every node after each step (by default each node's "
        "kernel is checked against the objects it enforces, and a disagreement fails the step)",
    )
    run.add_argument(
        "--node-image",
        metavar="IMAGE",
        help="netns backend: run each node's enforcer from this container image, as the DaemonSet "
        "runs it (podman, root; build it with make azure-npm-image)",
    )
    run.add_argument(
        "--dataplane",
        choices=("iptables", "nftables"),
        default="iptables",
        help="netns backend: the enforcer's dataplane (azure-npm start --dataplane; default iptables)",
    )
    kind = run.add_argument_group("kind and cluster backends")
    kind.add_argument(
        "--kind-cluster", default="npm-conformance", metavar="NAME", help="kind cluster name (reused if it exists)"
    )
    kind.add_argument("--kind-config", metavar="FILE", help="kind cluster config (default kind-config/cluster.yaml)")
    kind.add_argument("--keep-cluster", action="store_true", help="do not delete the kind cluster afterwards")
    kind.add_argument("--image", default="azure-npm:conformance", help="enforcer image to build and load")
    kind.add_argument("--skip-build", action="store_true", help="use --image as it is (no make azure-npm-image)")
    kind.add_argument("--kubeconfig", help="cluster backend: kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    kind.add_argument("--context", help="cluster backend: kubeconfig context")
    kind.add_argument("--deploy-enforcer", action="store_true", help="cluster backend: also deploy npm/azure-npm.yaml")

    validate = sub.add_parser("validate", help="check scenario files and list the scenarios")
    files(validate)
    sub.add_parser("cleanup", help="remove namespaces left behind by killed netns runs")
    register_generate(sub)
    return parser


def select(scenarios: Sequence[Scenario], tags: Sequence[str], exclude: Sequence[str]) -> list[Scenario]:
    """Scenarios with any of ``tags`` (all if none) and none of ``exclude``."""
    return [s for s in scenarios if (not tags or set(tags) & set(s.tags)) and not set(exclude) & set(s.tags)]


def make_backend(args: argparse.Namespace, log: object) -> Backend:
    if args.backend == "netns":
        from conformance.backends.netns import NetnsBackend

        return NetnsBackend(log=log, node_image=args.node_image, dataplane=args.dataplane)  # type: ignore[arg-type]
    if args.backend == "kind":
        from conformance.backends.kind import KindBackend

        return KindBackend(
            cluster_name=args.kind_cluster,
            config=args.kind_config,
            keep=args.keep_cluster,
            image=args.image,
            build=not args.skip_build,
            log=log,  # type: ignore[arg-type]
        )
    from conformance.backends.cluster import ClusterBackend

    return ClusterBackend(
        kubeconfig=args.kubeconfig,
        context=args.context,
        deploy_enforcer=args.deploy_enforcer,
        image=args.image,
        log=log,  # type: ignore[arg-type]
    )


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP behave like Ctrl-C, so every ``finally`` cleans up."""

    signals = (signal.SIGTERM, signal.SIGHUP)

    def handler(signum: int, _frame: object) -> None:
        for s in signals:  # once: a second one (a hangup reaching us twice) must not cut the cleanup short
            signal.signal(s, signal.SIG_IGN)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    saved = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h)


class Progress:
    """A progress line on stderr: rewritten in place on a terminal, one line per event otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        if self.quiet:
            return
        text = f"[{time.monotonic() - self.started:6.1f}s] {message}"
        if self.tty:
            sys.stderr.write("\r\033[K" + text[:160])
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def note(self, message: str) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\r\033[K")
        sys.stderr.write(f"npm-conformance: {message}\n")

    def done(self) -> None:
        if self.tty and not self.quiet:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "cleanup":
        return _cleanup()
    if args.command == "generate":
        return run_generate(args)
    if args.nodes < 1:
        print("npm-conformance: --nodes must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    scenarios, errors = load_scenarios(args.files, default_nodes=args.nodes)
    for err in errors:
        print(f"npm-conformance: {err}", file=sys.stderr)
    if errors:
        return EXIT_USAGE
    for sc in scenarios:
        if sc.inputs:  # a manifest file: say what of it the scenario uses, as every tool does
            print(f"npm-conformance: {sc.source}: {sc.inputs}", file=sys.stderr)
        for note in sc.notes:  # e.g. a ClusterNetworkPolicy peer not understood: its rule fails closed
            print(f"npm-conformance: note: {note}", file=sys.stderr)
    chosen = select(scenarios, args.tag, args.exclude_tag)
    if not chosen:
        print("npm-conformance: no scenario left after --tag/--exclude-tag", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "validate":
        return _validate(chosen)
    if args.node_image:
        from conformance.netns.container import unavailable

        why = "only the netns backend runs a node image" if args.backend != "netns" else unavailable()
        if why:
            print(f"npm-conformance: --node-image: {why}", file=sys.stderr)
            return EXIT_USAGE
    return _run(args, chosen)


def _validate(scenarios: list[Scenario]) -> int:
    """List the scenarios and check their written expectations against the simulator."""
    from conformance.runner import check_expectations

    contradicted = 0
    for sc in scenarios:
        print(f"{sc.name}\t{len(sc.steps)} steps\t{','.join(sc.tags)}\t{sc.source}")
        for p in check_expectations(sc):
            contradicted += 1
            print(
                f"npm-conformance: {sc.source}: scenario {sc.name}: steps[{p.step}].probe.expect: "
                f"{p.src} -> {p.dst} {p.port} expected {'allowed' if p.expected else 'denied'}, "
                f"the simulator says {'allowed' if p.predicted else 'denied'}",
                file=sys.stderr,
            )
    print(
        f"{len(scenarios)} scenarios valid, {contradicted} expectations contradicted by the simulator", file=sys.stderr
    )
    return EXIT_MISMATCH if contradicted else EXIT_OK


def _cleanup() -> int:
    from conformance.netns.rootless import ensure_privileges

    ensure_privileges()
    from conformance.netns.topology import cleanup_stale

    removed = cleanup_stale()
    print(f"removed {len(removed)} stale run(s)" + (f": {', '.join(removed)}" if removed else ""))
    return EXIT_OK


def _run(args: argparse.Namespace, scenarios: list[Scenario]) -> int:
    if args.backend == "netns":
        from conformance.netns.rootless import ensure_privileges

        ensure_privileges()  # re-executes under unshare when not root
    progress = Progress(args.quiet)
    options = RunOptions(
        ports=tuple(args.port), probe_timeout=args.probe_timeout, converge_timeout=args.converge_timeout,
        verify=args.verify,
    )
    started = time.monotonic()
    code = EXIT_OK
    backend = None
    runner = None
    results = []
    with _signals_interrupt():
        try:
            backend = make_backend(args, progress.note)
            runner = Runner(backend, options, progress)
            results = runner.run(scenarios)
        except BackendError as exc:
            progress.done()
            progress.note(f"backend failure ({args.backend}): {exc}")
            code = EXIT_BACKEND
        except KeyboardInterrupt:
            progress.done()
            progress.note("interrupted; cleaning up")
            code = EXIT_INTERRUPTED
        finally:
            if runner is not None and not results:
                results = runner.completed
            if backend is not None:
                try:
                    backend.close()
                except Exception as exc:  # cleanup must not hide the run's result
                    progress.note(f"cleanup failed: {exc}")
                    code = code or EXIT_BACKEND
    progress.done()
    summary = summarize(results, time.monotonic() - started)
    _emit(args, results)
    print(f"npm-conformance: {summary.line()}", file=sys.stderr if args.output != "table" else sys.stdout)
    if code == EXIT_OK and not summary.ok:
        code = EXIT_MISMATCH
    return code


def _emit(args: argparse.Namespace, results: list) -> None:  # type: ignore[type-arg]
    if args.output == "json":
        sys.stdout.write(dumps_json(results))
    elif args.output == "junit":
        sys.stdout.write(junit_report(results))
    else:
        text = table_report(results, args.verbose)
        if text:
            print(text)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "report.json").write_text(dumps_json(results))
        (out / "junit.xml").write_text(junit_report(results))


if __name__ == "__main__":
    sys.exit(main())
