"""``npm-sim`` subcommands for what-if analysis: diff, what-if, lint, exposure.

``simulator.cli`` calls :func:`add_whatif_commands` while building its parser; each
subparser carries its handler (``args.handler``). Handlers take ``(args, cluster, out)`` like
the core's and return the exit code: 0 success, 1 a ``--fail-on`` condition was met, 2 bad
input or usage. Shared options and loading come from ``simulator.cli_common``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TextIO

from kube.model import Cluster, Pod
from simulator.cli_common import (
    EXIT_FAIL,
    EXIT_OK,
    UsageError,
    accept,
    add_command,
    add_pod_cidr_option,
    add_port_option,
    add_skip_invalid_option,
    choose_ports,
    with_inputs,
)
from simulator.lint_kinds import KINDS as LINT_KINDS
from simulator.whatif_load import Deletion

# Heavy modules (numpy, networkx, the engine, the HTML report) are imported by the handlers
# that use them, so that every command pays only for what it runs.
if TYPE_CHECKING:
    import networkx as nx

    from simulator import exposure
    from simulator.whatif import Diff

DIFF_EPILOG = """\
output (-o):
  text      groups of changes by source and destination workload, ports folded, with causes
  json      exactly {"gained": [...], "lost": [...]}; each entry {"src", "dst", "port",
            "protocol", "because"}; src/dst are namespace/name
  markdown  a pull-request comment (a table of groups; the rest in -o json)
  html      one self-contained page: counts, groups, namespace heatmap of changes, graph
  dot       Graphviz digraph of the changed connections (green gained, red lost)

because: "ns/policy ingress[0]" is the rule that now allows a gained connection (or that
allowed a lost one); "ns/policy isolates egress" a policy that now isolates (lost) or no
longer does (gained); "cnp/NAME egress[1] Accept|Pass|Deny" a ClusterNetworkPolicy rule
that accepts or passes on the allowed side, or denies on the denied side; "pod ns/name
added|deleted|relabelled", "namespace N relabelled", "node N relabelled".
Pods only in the after state: their allowed connections count as gained; pods only in the
before state: theirs as lost. Ports: --port on every pair, else each destination's declared
container ports (80/TCP if no pod declares any).

exit codes:
  0  done (and --fail-on not triggered)
  1  --fail-on gained|lost|any: there are such changes
  2  bad input or usage
"""


PORT_HELP = "compare on this port for every pair (repeatable); default: declared ports"


def add_whatif_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add diff, what-if, lint and exposure to ``npm-sim`` (``common``: the input options)."""
    diff = add_command(
        sub, "diff", epilog=DIFF_EPILOG,
        help="connections gained and lost between two states (before/after snapshots)",
        description="Compare two cluster states and list the connections gained and lost, each "
        "attributed to the policies and rules (or object changes) that caused it.",
    )
    diff.add_argument("--before", dest="files", nargs="+", action="extend", default=[], metavar="PATH",
                      required=True, help="files/directories of the state before")
    diff.add_argument("--after", nargs="+", action="extend", default=[], metavar="PATH", required=True,
                      help="files/directories of the state after")
    add_pod_cidr_option(diff)
    add_skip_invalid_option(diff)
    diff.set_defaults(kubeconfig=None, context=None, handler=cmd_diff)
    _diff_options(diff)

    whatif = add_command(
        sub, "what-if", parents=[common], epilog=DIFF_EPILOG,
        help="the diff an overlay (apply/delete) would make on a snapshot, without writing it",
        description="Apply manifests and delete objects on top of a snapshot in memory and "
        "list the connections gained and lost. Policy-only changes are re-evaluated "
        "incrementally (only the namespaces they live in).",
    )
    whatif.add_argument("--apply", action="extend", nargs="+", default=[], metavar="FILE",
                        help="manifests to apply on top of the snapshot (replace same-named objects)")
    whatif.add_argument("--delete", action="extend", nargs="+", default=[], type=_deletion, metavar="KIND/NS/NAME",
                        help="objects to delete: NetworkPolicy/ns/name, Pod/ns/name, Namespace/name, Node/name, "
                        "ClusterNetworkPolicy/name")
    whatif.set_defaults(handler=cmd_whatif)
    _diff_options(whatif)

    lint_p = add_command(
        sub, "lint", parents=[common], epilog=LINT_KINDS
        + "\nexit codes:\n  0  done (and --fail-on not triggered)\n  1  --fail-on: a finding of that severity"
        " or worse\n  2  bad input or usage\n",
        help="findings about policies: dead selectors, shadowed rules, DNS lock-outs, ...",
        description="Check policies for problems; each finding names the policy, the rule and a reason.",
    )
    lint_p.add_argument("-o", "--output", choices=["text", "json", "sarif", "github"], default="text",
                        help="text, json, sarif (SARIF 2.1.0 for code scanning) or github (workflow annotations)")
    lint_p.add_argument("--fail-on", choices=["warning", "error"], help="exit 1 on findings of this severity or worse")
    lint_p.add_argument("--config", metavar="FILE",
                        help="a YAML file of findings to suppress (ignore: [{rule, namespace, policy, reason}]); "
                        "policies and namespaces may also carry the annotation npm-sim.io/ignore: RULE,...")
    lint_p.set_defaults(handler=cmd_lint)

    check = add_command(
        sub, "check", parents=[common],
        epilog="exit codes:\n  0  every assertion holds\n  1  an assertion does not hold\n"
        "  2  bad input or usage (an assertion naming nothing gets 'did you mean' suggestions)\n",
        help="check what a team states must (and must never) be reachable",
        description="Evaluate the assertions of a YAML file (see docs/ci.md) on the cluster: each has a name, "
        "from and to (a pod, ns/name[Kind] workload, ns/*, {namespace, selector}, node/NAME or a CIDR), a port "
        "(N/PROTO or a port name resolved on the destination) and expect: allow|deny.",
    )
    check.add_argument("--assertions", required=True, metavar="FILE", help="the assertions file (YAML)")
    check.add_argument("-o", "--output", choices=["text", "json", "junit", "sarif", "github"], default="text",
                       help="text, json, junit, sarif (SARIF 2.1.0 for code scanning) or github (workflow annotations)")
    check.set_defaults(handler=cmd_check)

    exp = add_command(
        sub, "exposure", parents=[common],
        help="what a compromised pod can reach; the most exposed pods and largest blast radius",
        description="With --from: the pods and ports POD reaches in one hop and transitively (any "
        "allowed port is an edge), with a shortest path to each and a per-workload summary. "
        "Without: the most exposed pods (most source pods reach them), the pods with the largest "
        "blast radius (transitive reach) and per workload the pods and ports that reach it. "
        "Computed over equivalence classes and their strongly connected components.",
        epilog="exit codes:\n  0  done\n  2  bad input or usage (e.g. unknown --from pod)\n",
    )
    exp.add_argument("--from", dest="source", metavar="NAME",
                     help="the compromised pod: namespace/name, a workload namespace/name[Kind] or namespace/* "
                     "(when policy treats its pods alike)")
    exp.add_argument("--hops", type=int, metavar="N", help="limit the transitive search to N hops")
    exp.add_argument("--top", type=int, default=10, metavar="N", help="length of the rankings (default 10)")
    exp.add_argument(
        "--no-outside",
        dest="outside",
        action="store_false",
        help="with --from: leave out the nodes and blocks of outside addresses the pod reaches (or is reached "
        "by); by default they are listed, each block as its CIDRs",
    )
    add_port_option(exp, PORT_HELP)
    exp.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                     help="leave these pods out (ns/name, ns/*, ns/name[Kind], globs; repeatable), e.g. DNS, "
                     "which every pod may reach and which would otherwise connect everything")
    exp.add_argument("-o", "--output", choices=["text", "json", "html", "dot"], default="text")
    exp.set_defaults(handler=cmd_exposure)


def _diff_options(parser: argparse.ArgumentParser) -> None:
    add_port_option(parser, PORT_HELP)
    parser.add_argument("-o", "--output", choices=["text", "json", "markdown", "html", "dot", "sarif", "github"],
                        default="text", help="text, json, markdown (a job summary), html, dot, sarif (SARIF 2.1.0 "
                        "for code scanning) or github (workflow annotations at the manifest responsible)")
    parser.add_argument("--fail-on", choices=["gained", "lost", "any"], help="exit 1 when there are such changes")
    parser.add_argument(
        "--assertions", metavar="FILE",
        help="assertions (see npm-sim check) checked before and after: exit 1 if the change breaks one",
    )
    parser.add_argument(
        "--no-outside",
        dest="outside",
        action="store_false",
        help="compare pods with pods only; by default nodes (node/NAME) and the blocks of outside addresses "
        "that ipBlocks tell apart (written as CIDRs) are endpoints too, on the ports the pods declare and "
        "the ports the policies name",
    )


def _outside(args: argparse.Namespace, before: Cluster, after: Cluster, update: Any) -> dict[str, Any]:
    """The outside endpoints, their ports and the namespaces to compare with them, for
    ``diff_states`` (nothing with --no-outside). After an incremental or aligned evaluation
    only the namespaces it touched can have changed towards the outside, on the ports their
    policies name."""
    if not args.outside:
        return {}
    from simulator.outside import outside_endpoints
    from simulator.whatif import policy_ports

    namespaces = None if update.mode == "full" else tuple(update.namespaces)
    scope = [before, after]
    if namespaces is not None:
        keep = set(namespaces)
        scope = [replace(c, policies=tuple(p for p in c.policies if p.namespace in keep)) for c in scope]
    return {
        "outside": outside_endpoints([before, after]),
        "outside_ports": policy_ports(scope),
        "outside_namespaces": namespaces,
    }


def _deletion(text: str) -> Deletion:
    try:
        return Deletion.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _read_assertions(path: str) -> list[Any]:
    """The assertions of ``path`` (see ``simulator.assertions``); UsageError for a bad file."""
    from kube.documents import list_item_lines
    from simulator import assertions as checks

    doc, text = _read_yaml(path, "--assertions")
    try:
        return checks.parse_assertions(doc, path, list_item_lines(text, "assertions"))
    except checks.AssertionsError as exc:
        raise UsageError(str(exc)) from None


def _read_yaml(path: str, option: str) -> tuple[Any, str]:
    """The one YAML document of ``path`` (read strictly) and its text; UsageError otherwise."""
    from kube.documents import DocumentError, parse_yaml

    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot read: {exc.strerror or exc}") from None
    docs = [d for d in parse_yaml(text) if d is not None]
    if len(docs) != 1 or isinstance(docs[0], DocumentError):
        problem = docs[0] if docs and isinstance(docs[0], DocumentError) else "expected one YAML document"
        raise UsageError(f"{path}: {problem}")
    return docs[0], text


def _assertions_before_after(args: argparse.Namespace, diff: Diff) -> list[tuple[Any, Any]]:
    """Each assertion's outcome before and after the change (none without --assertions)."""
    if not getattr(args, "assertions", None):
        return []
    from simulator import assertions as checks

    stated = _read_assertions(args.assertions)
    try:
        before, after = checks.check(diff.before, stated, missing_ok=True), checks.check(diff.after, stated)
    except checks.AssertionsError as exc:
        raise UsageError(str(exc)) from None
    return list(zip(before, after, strict=True))


def _write_diff(diff: Diff, args: argparse.Namespace, out: TextIO) -> int:
    from simulator import diff_render, html_report

    outcomes = _assertions_before_after(args, diff)
    # An assertion is broken by the change when it does not hold after it but did before, or
    # did not apply before (it names a workload the change adds).
    def broke(b: Any, a: Any) -> bool:
        return not a.holds and (b.holds or not b.applicable)

    checked = [{**a.to_json(), "held_before": b.holds if b.applicable else None, "broken": broke(b, a)}
               for b, a in outcomes]
    broken = [c for c in checked if c["broken"]]
    if args.output in ("sarif", "github"):
        from simulator import ci_output

        results = ci_output.diff_results(diff, [a for b, a in outcomes if broke(b, a)], args.assertions or "")
        out.write((ci_output.sarif if args.output == "sarif" else ci_output.github)(results))
    elif args.output == "json":
        doc = diff.to_json()
        if checked:
            doc["assertions"] = checked
        out.write(json.dumps(with_inputs(doc, args), indent=2) + "\n")
    elif args.output == "markdown":
        out.write(diff_render.to_markdown(diff))
        if checked:
            out.write(f"\n**Assertions broken by this change: {len(broken)} of {len(checked)}**\n")
            out.writelines(f"- {c['name']}: {len(c['violations'])} violation(s)\n" for c in broken)
    elif args.output == "html":
        out.write(html_report.diff_page(diff))
    elif args.output == "dot":
        out.write(_diff_dot(diff))
    else:
        out.write(diff_render.to_text(diff))
        if checked:
            out.write(f"assertions broken by this change: {len(broken)} of {len(checked)}\n")
            out.writelines(f"  BROKEN {c['name']}: {len(c['violations'])} violation(s)\n" for c in broken)
    return EXIT_FAIL if diff.failed(args.fail_on) or broken else EXIT_OK


def _diff_dot(diff: Diff) -> str:
    pairs: dict[tuple[str, str, str], list[str]] = {}
    for kind, changes in (("gained", diff.gained), ("lost", diff.lost)):
        for c in changes:
            pairs.setdefault((kind, c.src, c.dst), []).append(f"{c.port}/{c.protocol}")
    lines = ["digraph diff {", "  rankdir=LR;", "  node [shape=ellipse, fontsize=10];"]
    for (kind, s, d), ports in pairs.items():
        color = "darkgreen" if kind == "gained" else "red3"
        label = ("+" if kind == "gained" else "-") + " " + ", ".join(ports)
        lines.append(f"  {json.dumps(s)} -> {json.dumps(d)} [color={color}, label={json.dumps(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def cmd_diff(args: argparse.Namespace, before: Cluster, out: TextIO) -> int:
    from kube.load import load_paths
    from simulator.incremental import evaluate_change
    from simulator.whatif import diff_states
    from simulator.whatif_load import evaluated

    result = evaluated(load_paths(args.after, pod_cidr=args.pod_cidr))
    args.inputs_after = result.inputs()
    after = accept(result, args.skip_invalid)
    ports, declared_only = choose_ports([before, after], args.port)
    started = time.perf_counter()
    print(f"comparing {len(before.pods)} -> {len(after.pods)} pods on {len(ports)} port(s)...", file=sys.stderr)
    state_b, state_a, update = evaluate_change(before, after, ports)
    diff = diff_states(state_b, state_a, ports, declared_only=declared_only, **_outside(args, before, after, update))
    print(f"{update.describe()} evaluation in {time.perf_counter() - started:.3f} s", file=sys.stderr)
    return _write_diff(diff, args, out)


def cmd_whatif(args: argparse.Namespace, before: Cluster, out: TextIO) -> int:
    if not args.apply and not args.delete:
        raise UsageError("nothing to change: give --apply FILE and/or --delete KIND/NS/NAME")
    from simulator.incremental import evaluate_change
    from simulator.whatif import diff_states
    from simulator.whatif_load import overlay_cluster

    result = overlay_cluster(before, apply=args.apply, deletions=args.delete, pod_cidr=args.pod_cidr)
    args.inputs_after = result.inputs()
    after = accept(result, args.skip_invalid)
    ports, declared_only = choose_ports([before, after], args.port)
    started = time.perf_counter()
    state_b, state_a, update = evaluate_change(before, after, ports)
    diff = diff_states(state_b, state_a, ports, declared_only=declared_only, **_outside(args, before, after, update))
    print(f"{update.describe()} re-evaluation of {', '.join(update.namespaces) or 'nothing'}: "
          f"{update.seconds * 1000:.1f} ms; evaluation and diff in {time.perf_counter() - started:.3f} s",
          file=sys.stderr)
    return _write_diff(diff, args, out)


def cmd_check(args: argparse.Namespace, cluster: Cluster, out: TextIO) -> int:
    from simulator import assertions as checks

    try:
        outcomes = checks.check(cluster, _read_assertions(args.assertions))
    except checks.AssertionsError as exc:
        raise UsageError(str(exc)) from None
    if args.output == "json":
        doc = {"assertions": [o.to_json() for o in outcomes]}
        out.write(json.dumps(with_inputs(doc, args), indent=2) + "\n")
    elif args.output == "junit":
        out.write(checks.render_junit(outcomes))
    elif args.output in ("sarif", "github"):
        from simulator import ci_output

        results = ci_output.check_results(outcomes, args.assertions)
        out.write((ci_output.sarif if args.output == "sarif" else ci_output.github)(results))
    else:
        out.write(checks.render_text(outcomes))
    return EXIT_OK if all(o.holds for o in outcomes) else EXIT_FAIL


def cmd_lint(args: argparse.Namespace, cluster: Cluster, out: TextIO) -> int:
    from simulator import lint, lint_suppress

    config: list[Any] = []
    if args.config:
        doc, _text = _read_yaml(args.config, "--config")
        try:
            config = lint_suppress.parse_config(doc, args.config)
        except lint_suppress.ConfigError as exc:
            raise UsageError(str(exc)) from None
    started = time.perf_counter()
    findings, suppressed, notes = lint_suppress.suppress(lint.lint(cluster), cluster, config)
    cnps = f" and {len(cluster.cluster_policies)} ClusterNetworkPolicies" if cluster.cluster_policies else ""
    print(f"linted {len(cluster.policies)} policies{cnps} in {time.perf_counter() - started:.3f} s", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if suppressed:
        by = {k: sum(s.by == k for s in suppressed) for k in ("annotation", "config")}
        print(f"{len(suppressed)} finding(s) suppressed ({by['annotation']} by annotation, {by['config']} by "
              "config)", file=sys.stderr)
    if args.output == "json":
        doc = {**lint.to_json(findings), "suppressed": [s.to_json() for s in suppressed]}
        out.write(json.dumps(with_inputs(doc, args), indent=2) + "\n")
    elif args.output in ("sarif", "github"):
        from simulator import ci_output

        results = ci_output.lint_results(findings, cluster, suppressed)
        out.write((ci_output.sarif if args.output == "sarif" else ci_output.github)(results))
    else:
        out.write(lint.to_text(findings))
        if suppressed:
            out.write(f"{len(suppressed)} suppressed finding(s) not shown (see -o json)\n")
    return EXIT_FAIL if lint.failed(findings, args.fail_on) else EXIT_OK


def cmd_exposure(args: argparse.Namespace, cluster: Cluster, out: TextIO) -> int:
    if args.hops is not None and args.hops < 1:
        raise UsageError("--hops must be at least 1")
    from simulator import exposure, html_report
    from simulator.engine import Simulator

    source = None
    sim = Simulator(cluster)
    if args.source:
        from simulator.endpoint_names import one_endpoint

        try:
            source, _name = one_endpoint(sim, args.source)
        except ValueError as exc:
            raise UsageError(f"--from {exc}") from None
    if args.exclude:
        cluster = _without_pods(cluster, args.exclude, keep=source)
        sim = Simulator(cluster)
    # As reach: --port on every pair, else each destination on the ports it declares.
    ports, declared_only = choose_ports([cluster], args.port)
    print(f"exposure over {len(cluster.pods)} pods ({sim.classes.count} classes) on {len(ports)} port(s)...",
          file=sys.stderr)
    cg = exposure.build(sim, ports, declared_only=declared_only)
    result = exposure.from_pod(cg, source, hops=args.hops) if source else exposure.ranking(cg, top=args.top)
    if source is not None and args.outside:
        from simulator.outside import outside_endpoints

        result["outside"] = exposure.outside_from_pod(cg, source, outside_endpoints([cluster]), hops=args.hops)
    if args.output == "json":
        out.write(json.dumps(with_inputs(result, args), indent=2) + "\n")
    elif args.output in ("html", "dot"):
        graph = _pod_graph(cg, cluster, result if source else None)
        if args.output == "dot":
            out.write(_graph_dot(graph))
        else:
            out.write(html_report.exposure_page(result, graph))
    else:
        out.write(exposure.text_from(result) if source else exposure.text_ranking(result))
    return EXIT_OK


def _without_pods(cluster: Cluster, patterns: Sequence[str], keep: Pod | None) -> Cluster:
    """``cluster`` without the pods ``patterns`` name (``ns/name``, ``ns/*``, ``ns/name[Kind]``,
    globs): endpoints such as DNS that every pod reaches and that would connect everything.
    Verdicts between the other pods do not depend on them."""
    from fnmatch import fnmatchcase

    def excluded(pod: Pod) -> bool:
        return pod is not keep and any(fnmatchcase(pod.key, p) or (pod.workload and fnmatchcase(pod.workload, p))
                                       for p in patterns)

    kept = tuple(p for p in cluster.pods if not excluded(p))
    if len(kept) == len(cluster.pods):
        raise UsageError(f"--exclude {' '.join(patterns)}: names no pod")
    print(f"excluding {len(cluster.pods) - len(kept)} pod(s)", file=sys.stderr)
    return replace(cluster, pods=kept)


def _pod_graph(cg: exposure.ClassGraph, cluster: Cluster, result: dict | None) -> nx.DiGraph:
    """Pod-level graph for drawing: the source and what it reaches, or all pods (small clusters)."""
    import networkx as nx

    from simulator import html_report

    t = cg.sim.classes
    keys = [p.key for p in cluster.pods]
    if result is not None:
        keep = {result["from"]} | {e["pod"] for e in result["transitive"]["targets"]}
        keys = [k for k in keys if k in keep]
    graph = nx.DiGraph()
    graph.add_nodes_from(keys)
    if len(keys) > html_report.GRAPH_LIMIT * 5:
        return graph  # too many to draw or list edges usefully
    cls = {k: int(t.pod_class[t.pod_index[k]]) for k in keys}
    for a in keys:
        for b in keys:
            if a != b and cg.adj[cls[a], cls[b]]:
                ports = ",".join(str(s) for s in cg.ports if cg.per_port[s][cls[a], cls[b]])
                graph.add_edge(a, b, ports=ports)
    return graph


def _graph_dot(graph: nx.DiGraph) -> str:
    lines = ["digraph exposure {", "  rankdir=LR;", "  node [shape=ellipse, fontsize=10];"]
    lines += [f"  {json.dumps(n)};" for n in graph]
    lines += [f"  {json.dumps(a)} -> {json.dumps(b)} [label={json.dumps(d.get('ports', ''))}];"
              for a, b, d in graph.edges(data=True)]
    lines.append("}")
    return "\n".join(lines) + "\n"


__all__ = ["add_whatif_commands", "cmd_diff", "cmd_exposure", "cmd_lint", "cmd_whatif"]
