"""The one narrow wrapper through which the enforcer runs kernel tools (ipset, iptables).

A :class:`Runner` may carry a command prefix such as ``["ip", "netns", "exec", "node1"]``
so tests and tools can drive another network namespace from outside. It never raises on a
non-zero exit: callers look at :attr:`Completed.rc` and :attr:`Completed.stderr`.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Completed:
    """The outcome of one command."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.rc == 0


class Runner:
    """Runs commands, optionally inside a namespace via a prefix, with a timeout."""

    def __init__(self, prefix: Sequence[str] = (), timeout: float = 120.0) -> None:
        self.prefix = tuple(prefix)
        self.timeout = timeout

    def run(self, argv: Sequence[str], stdin: str | None = None) -> Completed:
        """Run ``prefix + argv`` feeding ``stdin``; a missing binary is exit code 127."""
        full = (*self.prefix, *argv)
        start = time.monotonic()
        try:
            proc = subprocess.run(full, input=stdin, capture_output=True, text=True, timeout=self.timeout, check=False)
        except FileNotFoundError as exc:
            return Completed(full, 127, "", f"{full[0]}: not found ({exc.strerror})", time.monotonic() - start)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            return Completed(full, 124, out, f"timed out after {self.timeout}s", time.monotonic() - start)
        return Completed(full, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - start)

    def __repr__(self) -> str:
        return f"Runner(prefix={list(self.prefix)!r})"
