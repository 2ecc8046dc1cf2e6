"""The ``azure-npm`` command."""

from npm.cli.commands import main

__all__ = ["main"]
