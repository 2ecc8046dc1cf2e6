"""``npm-conformance generate``: write cyclonus-style generated cases as scenario files.

Registered from ``conformance.cli.build_parser`` by :func:`register`; ``conformance.cli.main``
calls :func:`run`. Exit codes: 0 written or listed, 2 bad usage (unknown tag, nothing selected).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from conformance.generate import ALL_TAGS, CNP_TAGS, TAG_GROUPS, Case, case, covering, select, tag_counts, write_cases
from conformance.generate_cases import all_cases
from conformance.generate_cnp_cases import cnp_cases, cnp_tags

DEFAULT_OUT = "reports/generated"
DEFAULT_RANDOM = 20
EXIT_OK, EXIT_USAGE = 0, 2

DESCRIPTION = """\
Generate conformance cases over the dimensions cyclonus made standard (target selectors,
peers, ports and protocols, policy types and empty rule lists, actions, conflicting
stacks), over the upstream model (namespaces x, y, z; pods a, b, c; ports 80 and 81 on TCP,
UDP and SCTP), as scenario files without expectations: `npm-conformance run` compares the
dataplane with the simulator on every probe. The same seed gives the same files. With --cnp,
ClusterNetworkPolicy cases too (and random cases with ClusterNetworkPolicies); without it, the
output is what it always was.
"""

EPILOG = """\
tags (a case with a subordinate tag also has its primary):
{tags}

examples:
  npm-conformance generate --list                          # every case with its tags
  npm-conformance generate --out gen --include cyclonus    # cyclonus's 230 cases
  npm-conformance generate --out gen --exclude action --exclude random
  npm-conformance generate --out gen --cover               # ~20 cases with every tag
  npm-conformance generate --out gen --cnp --include cnp   # the ClusterNetworkPolicy cases
  npm-conformance run -f gen --backend netns

exit codes: 0 written or listed, 2 bad usage (unknown tag, nothing selected)
"""


def _tag_help() -> str:
    return "\n".join(
        f"  {primary}: {', '.join(subs)}{' (with --cnp)' if primary == 'cnp' else ''}"
        for primary, subs in TAG_GROUPS.items()
    )


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``generate`` subcommand to ``npm-conformance``'s subparsers."""
    parser = subparsers.add_parser(
        "generate",
        help="write generated cases (cyclonus-style) as scenario files",
        description=DESCRIPTION,
        epilog=EPILOG.format(tags=_tag_help()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="DIR", help=f"where to write (default {DEFAULT_OUT})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random cases (default 0)")
    parser.add_argument(
        "--random",
        type=int,
        default=DEFAULT_RANDOM,
        metavar="N",
        help=f"also write N random cases (random policies and actions over the model; default {DEFAULT_RANDOM})",
    )
    parser.add_argument(
        "--include",
        nargs="+",
        action="extend",
        default=[],
        metavar="TAG",
        help="only cases with any of these tags (repeatable)",
    )
    parser.add_argument(
        "--exclude", nargs="+", action="extend", default=[], metavar="TAG", help="skip cases with any of these tags"
    )
    parser.add_argument(
        "--cover", action="store_true", help="only a few cases that together carry every selected tag (quick runs)"
    )
    parser.add_argument(
        "--cnp",
        action="store_true",
        help="ClusterNetworkPolicy cases too (tags cnp-*), and ClusterNetworkPolicies in the random cases",
    )
    parser.add_argument("--list", action="store_true", help="print the cases and their tags instead of writing")
    parser.add_argument("--tags", action="store_true", help="print each tag with its number of selected cases")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="format of --list/--tags")


def random_cases(count: int, seed: int, *, cnp: bool = False) -> list[Case]:
    """``count`` random cases over the upstream model, the same ones for the same seed;
    ``cnp``: with ClusterNetworkPolicies (never a peer field an API server would refuse)."""
    from dataclasses import replace

    from conformance.fuzz_model import RandomChooser, scenario

    chooser = RandomChooser(seed)
    out = []
    for i in range(count):
        doc = scenario(chooser, model=True, cnp=cnp, future_peers=False)
        steps = [dict(s) for s in doc["steps"]]
        # The initial policies become the first step's apply, as every generated case does.
        steps[0] = {**steps[0], "actions": [{"apply": p} for p in doc["policies"]]}
        made = case(f"random {seed}-{i + 1}", ["random", *(["cnp", *cnp_tags(steps)] if cnp else [])], *steps)
        out.append(replace(made, nodes=doc["nodes"]) if "nodes" in doc else made)
    return out


def cases_for(args: argparse.Namespace) -> list[Case]:
    """The selected cases: fixed ones (with ``--cnp`` the ClusterNetworkPolicy ones after them),
    then random ones; ValueError for unknown tags."""
    fixed = all_cases() + (cnp_cases() if args.cnp else [])
    chosen = select(fixed + random_cases(args.random, args.seed, cnp=args.cnp), args.include, args.exclude)
    return covering(chosen) if args.cover else chosen


def run(args: argparse.Namespace) -> int:
    if args.random < 0:
        print("npm-conformance: --random must be 0 or more", file=sys.stderr)
        return EXIT_USAGE
    wants_cnp = sorted(set(args.include) & CNP_TAGS)
    if wants_cnp and not args.cnp:
        print(f"npm-conformance: --include {wants_cnp[0]}: the ClusterNetworkPolicy cases need --cnp", file=sys.stderr)
        return EXIT_USAGE
    try:
        chosen = cases_for(args)
    except ValueError as exc:
        print(f"npm-conformance: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not chosen:
        print("npm-conformance: no case left after --include/--exclude", file=sys.stderr)
        return EXIT_USAGE
    if args.tags:
        counts = {t: n for t, n in tag_counts(chosen, cnp=args.cnp).items() if t in ALL_TAGS}
        if args.output == "json":
            print(json.dumps(counts))
        else:
            for tag, n in counts.items():
                print(f"{n:5d}  {tag}")
        return EXIT_OK
    if args.list:
        if args.output == "json":
            print(json.dumps([{"number": i, "title": c.title, "tags": list(c.tags)} for i, c in enumerate(chosen, 1)]))
        else:
            for i, c in enumerate(chosen, 1):
                print(f"{i:4d}  {c.title}\t[{', '.join(c.tags)}]")
            print(f"{len(chosen)} cases", file=sys.stderr)
        return EXIT_OK
    command = "npm-conformance generate " + " ".join(_argv_of(args))
    written = write_cases(chosen, args.out, command.strip())
    print(f"npm-conformance: wrote {len(written)} cases to {args.out}", file=sys.stderr)
    return EXIT_OK


def _argv_of(args: argparse.Namespace) -> list[str]:
    """The options that shape the output, for the files' header."""
    out = [f"--seed {args.seed}", f"--random {args.random}", *(["--cnp"] if args.cnp else [])]
    out += [f"--include {t}" for t in args.include]
    out += [f"--exclude {t}" for t in args.exclude]
    return [*out, "--cover"] if args.cover else out
