"""`azure-npm start`: placeholder until the daemon lands (owned by the daemon work)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``start`` subcommand to the azure-npm CLI."""
    parser = subparsers.add_parser("start", help="run the enforcer daemon (not yet available)")
    parser.set_defaults(func=lambda _args: 2)
