"""``azure-npm verify``: does this node's kernel mean what the policies say?"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from npm.verify.kernel import IptablesView
    from npm.verify.nft_view import NftView

EXIT_AGREE = 0
EXIT_DISAGREE = 1
EXIT_INPUT = 2
EXIT_KERNEL = 3

EPILOG = """exit codes:
  0  the kernel's rules give every checked connection the verdict the policies give
  1  they differ (each differing flow is listed, with the rules it hit and the policies' account)
  2  bad command line or bad input
  3  the kernel could not be read
"""


def register(sub: Any) -> None:
    """Add the ``verify`` subcommand to the ``azure-npm`` parser."""
    p = sub.add_parser(
        "verify",
        help="check that the rules in this node's kernel mean what the policies say",
        description=(
            "Translation validation. Read the rules and sets really in this network namespace's\n"
            "kernel (or saved with -i/-c; with --dataplane nftables, our table inet azure-npm, or\n"
            "saved with --nft-file), evaluate every pod pair on the ports the destination\n"
            "declares and the ports the policies name, and every pod with the nodes and one\n"
            "address of each block of outside addresses the policies tell apart (plus the edges of\n"
            "every CIDR the rules test), and compare each verdict with the simulator's for the same\n"
            "objects (the -f input, read as `apply` reads it). Pairs the kernel and the policies\n"
            "cannot tell apart are evaluated once. Traffic that bypasses policy (a pod and itself, a\n"
            "node and its own pods) is not forwarded and not checked."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-f", "--filename", dest="paths", action="append", required=True, metavar="PATH",
                   help="the objects the node enforces: manifest file, directory or - (repeatable)")
    p.add_argument("--node-name", required=True, help="the node this kernel belongs to")
    p.add_argument("-i", "--iptables-file", help="iptables-save output to read instead of the kernel")
    p.add_argument("-c", "--ipset-file", help="ipset save output to read instead of the kernel")
    p.add_argument("--nft-file", help="`nft -j list table inet azure-npm` output to read instead of the kernel "
                   "(with --dataplane nftables)")
    p.add_argument("--dataplane", choices=("iptables", "nftables"), default="iptables",
                   help="the dataplane whose rules to check: iptables (ipsets and iptables rules) or nftables "
                   "(our table, inet azure-npm; only its verdict is judged, not other tables') (default: iptables)")
    p.add_argument("--backend", choices=("auto", "nft", "legacy"), default="auto",
                   help="iptables backend; auto detects it as kube-proxy does (default: auto)")
    p.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    p.set_defaults(func=cmd_verify)


def cmd_verify(args: argparse.Namespace) -> int:
    from kube.load import load_paths
    from npm.verify.check import verify_kernel

    if args.dataplane == "nftables" and (args.iptables_file or args.ipset_file):
        print("azure-npm: -i/-c are iptables dumps; with --dataplane nftables give --nft-file", file=sys.stderr)
        return EXIT_INPUT
    if args.dataplane == "iptables" and args.nft_file:
        print("azure-npm: --nft-file is read with --dataplane nftables", file=sys.stderr)
        return EXIT_INPUT
    loaded = load_paths(args.paths, allocate_ips=False)  # the addresses the node was given, no others
    loaded.not_evaluated = ()  # the simulator and both dataplanes evaluate ClusterNetworkPolicies
    for note in loaded.notes:  # what was left out (pods without an address, nodes without one)
        print(f"note: {note}", file=sys.stderr)
    print(loaded.summary(), file=sys.stderr)
    if loaded.errors:
        for e in loaded.errors:
            print(f"error: {e}", file=sys.stderr)
        print(f"azure-npm: {len(loaded.errors)} invalid object(s): nothing verified", file=sys.stderr)
        return EXIT_INPUT
    view = _nft_view(args) if args.dataplane == "nftables" else _iptables_view(args)
    if isinstance(view, int):
        return view
    report = verify_kernel(view, loaded.cluster,
                    progress=lambda msg: print(msg, file=sys.stderr))
    if args.output == "json":
        print(json.dumps({**report.to_json(), "node": args.node_name, "inputs": loaded.inputs()}, indent=2))
    else:
        sys.stdout.write(report.render())
    return EXIT_AGREE if report.agrees else EXIT_DISAGREE


def _iptables_view(args: argparse.Namespace) -> IptablesView | int:
    """The filter table and ipsets (kernel, or -i/-c), or an exit code."""
    from npm.dataplane.ipset import parse_save as parse_ipsets
    from npm.dataplane.iptables import parse_save
    from npm.verify.kernel import IptablesView
    from npm.verify.views import KernelUnreadable, read_view

    try:
        live = None
        if not (args.iptables_file and args.ipset_file):
            live = read_view("iptables", backend=args.backend)
        table = live.table if live else None
        sets = live.sets if live else {}
        if args.iptables_file:
            with open(args.iptables_file) as fh:
                table = parse_save(fh.read()).get("filter")
        if args.ipset_file:
            with open(args.ipset_file) as fh:
                sets = parse_ipsets(fh.read())
    except OSError as exc:
        print(f"azure-npm: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_INPUT
    except KernelUnreadable as exc:
        print(f"azure-npm: cannot read the kernel: {exc}", file=sys.stderr)
        return EXIT_KERNEL
    return IptablesView(table, sets)


def _nft_view(args: argparse.Namespace) -> NftView | int:
    """Our nftables table (kernel, or --nft-file), or an exit code."""
    from npm.dataplane.nft import TABLE_REF, read_table
    from npm.verify.nft_view import NftView
    from npm.verify.views import KernelUnreadable, read_view

    if not args.nft_file:
        notes: list[str] = []
        try:
            view = read_view("nftables", notes=notes)
        except KernelUnreadable as exc:
            print(f"azure-npm: cannot read the kernel: {exc}", file=sys.stderr)
            return EXIT_KERNEL
        for note in notes:
            print(f"note: {note}", file=sys.stderr)
        return view
    try:
        with open(args.nft_file) as fh:
            text = fh.read()
    except OSError as exc:
        print(f"azure-npm: cannot read {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_INPUT
    try:
        return NftView(read_table(text))
    except (ValueError, KeyError, TypeError) as exc:
        print(f"azure-npm: {args.nft_file}: not the output of `nft -j list table {TABLE_REF}`: {exc!r}",
              file=sys.stderr)
        return EXIT_INPUT
