"""The ``azure-npm`` command: apply, cleanup, debug tools, and ``start`` (the daemon).

Exit codes (all subcommands but ``start``, which documents its own):
  0  success
  1  the kernel refused a change or a kernel tool failed (details on stderr / in JSON)
  2  bad command line or bad input (located errors); the kernel is left as it was
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from npm.cli import start as cli_start
from npm.cli import verify as cli_verify
from npm.cli.daemon_client import DaemonUnreadable, daemon_pods
from npm.daemon.http import DEBUG_MANAGER_PATH

if TYPE_CHECKING:
    from npm.dataplane.ipset import SavedSet
    from npm.dataplane.iptables import SavedTable

DEFAULT_TUPLE_PORT = "80/TCP"
EXIT_OK = 0
EXIT_KERNEL = 1
EXIT_INPUT = 2

EPILOG = """exit codes:
  0  success
  1  the kernel refused a change or a kernel tool failed
  2  bad command line or bad input; the kernel is left as it was
"""


def _add_backend(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataplane",
        choices=("iptables", "nftables"),
        default="iptables",
        help="iptables (ipsets and iptables rules) or nftables (one table, inet azure-npm) (default: iptables)",
    )
    p.add_argument(
        "--backend",
        choices=("auto", "nft", "legacy"),
        default="auto",
        help="iptables backend; auto detects it as kube-proxy does (default: auto)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="azure-npm",
        description="Kubernetes NetworkPolicy enforcer: NetworkPolicies as ipsets and iptables rules on this node.",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ap = sub.add_parser(
        "apply",
        help="make this network namespace's kernel enforce exactly the given objects, then exit",
        description=(
            "One-shot declarative reconcile: load Namespaces, Pods, Nodes, NetworkPolicies and\n"
            "ClusterNetworkPolicies from files, directories or - (stdin), and converge this network\n"
            "namespace's ipsets and iptables rules to exactly them (policies not in the input are\n"
            "removed). Existing rules stay in force until the new ones replace them; nothing is\n"
            "flushed first."
        ),
        epilog=EPILOG,
        formatter_class=fmt,
    )
    ap.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        required=True,
        metavar="PATH",
        help="manifest file, directory or - (repeatable)",
    )
    ap.add_argument("--node-name", required=True, help="the node this kernel belongs to")
    _add_backend(ap)
    ap.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    ap.add_argument(
        "--skip-invalid",
        action="store_true",
        help="apply the valid objects and report the invalid ones, instead of refusing all",
    )
    ap.add_argument(
        "--allow-empty",
        action="store_true",
        help="accept input with no Namespace, Pod, Node or (Cluster)NetworkPolicy at all, which removes every "
        "policy from this node (without it such input is refused: a file of comments is not a decision)",
    )
    ap.set_defaults(func=cmd_apply)

    cp = sub.add_parser(
        "cleanup",
        help="remove every chain, rule and set azure-npm created (and nothing else)",
        description="Remove our FORWARD jump, every AZURE-NPM* chain (both iptables backends) and every\n"
        "azure-npm-* ipset from this network namespace; with --dataplane nftables, our table\n"
        "(inet azure-npm). Other rules, tables and sets are untouched.",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    _add_backend(cp)
    cp.set_defaults(func=cmd_cleanup)

    dp = sub.add_parser("debug", help="inspect what is in the kernel", description="Debug tools.")
    dsub = dp.add_subparsers(dest="debug_command", metavar="TOOL")
    dsub.required = True
    conv = dsub.add_parser(
        "convertiptable",
        help="our rules and sets as readable JSON",
        description="Print our chains, rules and sets as JSON, set names resolved to what they mean\n"
        "(read from the AZURE-NPM-SETS index chain) with their members. Reads the live kernel,\n"
        "or saved files given with -i (iptables-save output) and -c (ipset save output).\n"
        "With --dataplane nftables: our table (inet azure-npm), live or from -i (the output of\n"
        "`nft -j list table inet azure-npm`); -o text prints it as nft does.",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    _add_saved(conv)
    conv.set_defaults(func=cmd_convert)
    tup = dsub.add_parser(
        "gettuples",
        help="which rules a flow hits and the verdict",
        description="Evaluate one NEW connection from SRC to DST through FORWARD over the live rules\n"
        "and sets (or saved files) and print every rule it hits and the verdict. SRC and DST are\n"
        "IPs or pods (namespace/name), resolved through the manifests given with -f or through\n"
        "the cache of the daemon running on this node (--from-daemon). Without --port the\n"
        f"connection is to {DEFAULT_TUPLE_PORT}, and the output says that it was assumed.\n"
        "With --dataplane nftables: through our table's forward chain (inet azure-npm), live or\n"
        "from -i (saved `nft -j list table inet azure-npm` output); the verdict is our table's.",
        epilog=EPILOG,
        formatter_class=fmt,
    )
    tup.add_argument("-s", "--src", required=True, help="source IP or namespace/name")
    tup.add_argument("-d", "--dst", required=True, help="destination IP or namespace/name")
    tup.add_argument(
        "--port", help=f"destination port and protocol, e.g. 5432/TCP (without it: {DEFAULT_TUPLE_PORT}, said so)"
    )
    names_from = tup.add_mutually_exclusive_group()
    names_from.add_argument(
        "-f",
        "--filename",
        dest="paths",
        action="append",
        default=[],
        metavar="PATH",
        help="manifests to resolve pod names",
    )
    names_from.add_argument(
        "--from-daemon",
        metavar="URL",
        help="resolve pod names through the running daemon's cache: its debug address, e.g. "
        "http://127.0.0.1:10093 (the daemon's debug_listen), read from "
        f"{DEBUG_MANAGER_PATH}",
    )
    _add_saved(tup)
    tup.set_defaults(func=cmd_gettuples)

    cli_start.register(sub)
    cli_verify.register(sub)
    return parser


def _add_saved(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--iptables-file", help="iptables-save output to read instead of the kernel")
    p.add_argument("-c", "--ipset-file", help="ipset save output to read instead of the kernel")
    _add_backend(p)
    p.add_argument("-o", "--output", choices=("text", "json"), default="json", help="output format (default json)")


def _err(msg: str) -> None:
    print(f"azure-npm: {msg}", file=sys.stderr)


def cmd_apply(args: argparse.Namespace) -> int:
    from kube.load import load_paths
    from npm.dataplane.dataplanes import make_enforcer
    from npm.dataplane.enforcer import DataplaneConfig

    loaded = load_paths(args.paths, allocate_ips=False)  # never an address the input did not give
    loaded.not_evaluated = ()  # both dataplanes enforce ClusterNetworkPolicies too
    for note in loaded.notes:
        print(f"note: {note}", file=sys.stderr)
    print(loaded.summary(), file=sys.stderr)
    if loaded.errors:
        for e in loaded.errors:
            print(f"{'skipped' if args.skip_invalid else 'error'}: {e}", file=sys.stderr)
        if not args.skip_invalid:
            _err(
                f"{len(loaded.errors)} invalid object(s); kernel left unchanged (use --skip-invalid to apply the rest)"
            )
            return EXIT_INPUT
    c = loaded.cluster
    if not (c.namespaces or c.pods or c.policies or c.nodes or c.cluster_policies) and not args.allow_empty:
        _err("the input holds no Namespace, Pod, Node, NetworkPolicy or ClusterNetworkPolicy; kernel left unchanged "
             "(--allow-empty removes every policy; `azure-npm cleanup` removes everything)")
        return EXIT_INPUT
    enforcer = make_enforcer(args.node_name, DataplaneConfig(kind=args.dataplane, backend=args.backend))
    try:
        result = enforcer.apply(loaded.cluster)
    except Exception as exc:  # a name collision or an unexpected kernel state: say it, no traceback
        _err(f"apply failed: {exc}")
        return EXIT_KERNEL
    if args.output == "json":
        out = result.to_json()
        out["input_errors"] = [e.to_json() for e in loaded.errors]
        out["inputs"] = loaded.inputs()
        print(json.dumps(out, indent=2))
    else:
        print(result.text())
    return EXIT_OK if result.ok else EXIT_KERNEL


def cmd_cleanup(args: argparse.Namespace) -> int:
    from npm.dataplane.dataplanes import make_enforcer
    from npm.dataplane.enforcer import ApplyError, DataplaneConfig

    try:
        make_enforcer("", DataplaneConfig(kind=args.dataplane, backend=args.backend)).cleanup()
    except ApplyError as exc:
        _err(f"cleanup failed: {exc}")
        return EXIT_KERNEL
    if args.dataplane == "nftables":
        print("removed the azure-npm nftables table")
    else:
        print("removed azure-npm chains, rules and sets")
    return EXIT_OK


def _read_saved(args: argparse.Namespace) -> tuple[SavedTable | None, dict[str, SavedSet]] | None:
    """The rules and sets to inspect: saved files where given (-i, -c), else the live kernel."""
    from npm.dataplane.enforcer import ApplyError, DataplaneConfig, Enforcer
    from npm.dataplane.ipset import parse_save as parse_ipsets
    from npm.dataplane.iptables import parse_save

    try:
        live = None
        if not (args.iptables_file and args.ipset_file):
            live = Enforcer("", config=DataplaneConfig(backend=args.backend)).saved_state()
        if args.iptables_file:
            with open(args.iptables_file) as fh:
                table = parse_save(fh.read()).get("filter")
        else:
            table = live[0] if live else None
        if args.ipset_file:
            with open(args.ipset_file) as fh:
                sets = parse_ipsets(fh.read())
        else:
            sets = live[1] if live else {}
    except OSError as exc:
        _err(f"cannot read {exc.filename}: {exc.strerror}")
        return None
    except ApplyError as exc:
        _err(f"cannot read the kernel: {exc}")
        return None
    return table, sets


def _nft_json(args: argparse.Namespace) -> str | int:
    """``nft -j list table inet azure-npm`` output: from ``-i``, else the kernel; or an exit code."""
    from npm.dataplane.kernel import Runner
    from npm.dataplane.nft import list_table

    if args.iptables_file:
        try:
            with open(args.iptables_file) as fh:
                return fh.read()
        except OSError as exc:
            _err(f"cannot read {exc.filename}: {exc.strerror}")
            return EXIT_INPUT
    res = list_table(Runner())
    if not res.ok:
        _err(f"cannot read the table inet azure-npm: {res.stderr.strip() or res.rc}")
        return EXIT_KERNEL
    return res.stdout


def _not_nft_json(args: argparse.Namespace, exc: Exception) -> int:
    _err(f"{args.iptables_file or 'the kernel'}: not the output of `nft -j list table inet azure-npm`: {exc}")
    return EXIT_INPUT


def _convert_nft(args: argparse.Namespace) -> int:
    """``convertiptable --dataplane nftables``: our table from the kernel (or ``-i``: saved ``nft -j`` output)."""
    from npm.dataplane.debug import convert_nft
    from npm.dataplane.kernel import Runner
    from npm.dataplane.nft import list_table, parse_table

    if args.output == "text" and not args.iptables_file:
        res = list_table(Runner(), json_output=False)
        if not res.ok:
            _err(f"cannot read the table inet azure-npm: {res.stderr.strip() or res.rc}")
            return EXIT_KERNEL
        print(res.stdout, end="")
        return EXIT_OK
    text = _nft_json(args)
    if isinstance(text, int):
        return text
    try:
        doc = convert_nft(parse_table(text))
    except (ValueError, KeyError, TypeError) as exc:
        return _not_nft_json(args, exc)
    print(json.dumps(doc, indent=2))
    return EXIT_OK


def cmd_convert(args: argparse.Namespace) -> int:
    from npm.dataplane.debug import convert

    if args.dataplane == "nftables":
        return _convert_nft(args)
    saved = _read_saved(args)
    if saved is None:
        return EXIT_INPUT if (args.iptables_file or args.ipset_file) else EXIT_KERNEL
    table, sets = saved
    doc = convert(table, sets)
    if args.output == "json":
        print(json.dumps(doc, indent=2))
    else:
        for line in _convert_text(doc):
            print(line)
    return EXIT_OK


# The iptables options ``convert`` reports, in words.
_OPTION_WORDS = {
    "p": "protocol", "dport": "port", "dports": "ports", "sport": "source port", "mark": "mark",
    "ctstate": "state", "state": "state", "s": "source", "d": "destination", "i": "in-interface",
    "o": "out-interface", "set-xmark": "set mark", "set-mark": "set mark",
}
SHOWN_MEMBERS = 5


def _convert_text(doc: dict[str, Any]) -> Iterator[str]:
    """``convert``'s document as lines for a person: what each rule matches, in words."""
    for jump in doc["forward_jumps"]:
        yield f"FORWARD rule {jump['position']}: jump to {jump['target']} ({jump['comment']})"
    for name, rules in doc["chains"].items():
        yield f"chain {name}:" + ("" if rules else " (empty)")
        for rule in rules:
            matches = [
                f"{'not in' if s['negated'] else 'in'} set {s['meaning']} ({s['direction']})" for s in rule["sets"]
            ]
            for option, value in rule["options"].items():
                negated, value = value.startswith("!"), value.lstrip("!")
                if option in ("dport", "dports", "sport"):
                    value = value.replace(":", "-")  # iptables writes ranges as 80:90
                matches.append(f"{_OPTION_WORDS.get(option, option)} {'not ' if negated else ''}{value}")
            comment = rule["comment"] or "(no comment)"
            yield f"  {comment}: {', '.join(matches) or 'every packet'} -> {rule['target']}"
    yield "sets:" + ("" if doc["sets"] else " (none)")
    for name, info in doc["sets"].items():
        members = info["members"]
        shown = ", ".join(members[:SHOWN_MEMBERS]) + (", ..." if len(members) > SHOWN_MEMBERS else "")
        count = f"{len(members)} member{'' if len(members) == 1 else 's'}"
        yield f"  {name} ({info['type']}) {info['meaning']}: {count}" + (f": {shown}" if members else "")


def _resolve(text: str, pods: dict[str, str]) -> str | None:
    import ipaddress

    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return pods.get(text) or None


def cmd_gettuples(args: argparse.Namespace) -> int:
    from kube.load import load_paths
    from kube.model import PortSpec
    from npm.dataplane.debug import Packet, evaluate

    try:
        port = PortSpec.parse(args.port or DEFAULT_TUPLE_PORT)
    except ValueError as exc:
        _err(str(exc))
        return EXIT_INPUT
    if args.port is None and args.output == "json":  # the text output says so in its first line
        print(f"azure-npm: no --port given: evaluating a connection to {port}", file=sys.stderr)
    pods: dict[str, str] = {}
    where = "the given manifests (-f)"
    if args.paths:
        loaded = load_paths(args.paths, allocate_ips=False)  # never an address the input did not give
        for e in loaded.errors:
            print(f"error: {e}", file=sys.stderr)
        pods = {p.key: p.ip for p in loaded.cluster.pods}
    elif args.from_daemon:
        try:
            pods = daemon_pods(args.from_daemon)
        except DaemonUnreadable as exc:
            _err(str(exc))
            return EXIT_KERNEL
        where = f"the daemon's cache ({args.from_daemon})"
    src, dst = _resolve(args.src, pods), _resolve(args.dst, pods)
    for given, ip in ((args.src, src), (args.dst, dst)):
        if ip is None:
            if pods.get(given) == "":
                _err(f'pod "{given}" has no IP yet in {where}: no rule can match it')
            else:
                _err(f'"{given}" is neither an IP nor a pod in {where}')
            return EXIT_INPUT
    pkt = Packet(src, dst, port.protocol.lower(), port.port)
    if args.dataplane == "nftables":
        from npm.dataplane import nft_eval
        from npm.dataplane.nft import read_table

        text = _nft_json(args)
        if isinstance(text, int):
            return text
        try:
            trace = nft_eval.evaluate(read_table(text), pkt)
        except (ValueError, KeyError, TypeError) as exc:
            return _not_nft_json(args, exc)
        doc = {"src": src, "dst": dst, "port": str(port), "port_given": args.port is not None, **trace.to_json()}
        doc.pop("final_mark")  # nftables: no mark bits
    else:
        saved = _read_saved(args)
        if saved is None:
            return EXIT_INPUT if (args.iptables_file or args.ipset_file) else EXIT_KERNEL
        table, sets = saved
        if table is None:
            _err("no filter table in the iptables input")
            return EXIT_INPUT
        trace = evaluate(table, sets, pkt)
        doc = {"src": src, "dst": dst, "port": str(port), "port_given": args.port is not None, **trace.to_json()}
    if args.output == "json":
        print(json.dumps(doc, indent=2))
    else:
        assumed = "" if args.port is not None else " (assumed: no --port given)"
        print(f"{src} -> {dst} {port}{assumed}: {trace.verdict or 'undecided'}")
        for h in trace.decided_by():
            print(f"  decided by: {h.tier or 'azure-npm'}: {h.comment} ({h.target})")
        for h in trace.hits:
            tier = f"[{h.tier}] " if h.tier else ""
            print(f"  {h.chain}#{h.index} -> {h.target}  {tier}{h.comment}")
        how = "verdict left undecided" if args.dataplane == "nftables" else "treated as no match"
        for u in trace.undecided:
            print(f"  undecided ({how}): {u}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``azure-npm``.

    SIGPIPE keeps Python's disposition (ignored): a closed pipe is an error on the one write
    that hit it, never the death of the process. The daemon writes to HTTP clients and to the
    stdin of ``ipset``/``iptables-restore``, any of which may go away early.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # Our own stdout was closed (`azure-npm debug ... | head`): stop quietly, as a
        # filter would, and keep the interpreter from complaining again at exit.
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
