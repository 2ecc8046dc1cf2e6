"""Run the netns backend without root, inside a user namespace.

A non-root user gets the same powers over a private network stack with
``unshare --user --map-root-user --net --mount``. Inside, a private tmpfs on /run holds
``/run/netns`` and ``/run/xtables.lock`` so nothing of the host is touched.

Everything a run starts lives in a PID namespace of its own too (``--pid --mount-proc``),
whose first process is the run itself, and unshare kills it if unshare dies
(``--kill-child``): a run killed with SIGKILL takes its daemons and agents with it, and so
its namespaces, which no later run could reach to clean up. unshare itself ignores SIGTERM
and SIGINT while it waits, so the original process stays and passes SIGTERM and SIGHUP on
to the run, which cleans up as it does as root (a terminal's Ctrl-C reaches it directly);
if that process is killed, the kernel kills unshare (``PR_SET_PDEATHSIG``), and so the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

_MARK = "NPM_IN_USERNS"


def in_private_namespace() -> bool:
    """True once we re-executed ourselves under unshare."""
    return os.environ.get(_MARK) == "1"


def ensure_privileges(argv: Sequence[str] | None = None) -> None:
    """Return if we may create network namespaces; otherwise re-exec under unshare.

    The program runs again with the same arguments inside; the original process waits for
    it, passes SIGTERM and SIGHUP on, and exits with its exit code: this call never returns
    there.
    """
    if os.geteuid() == 0:
        return
    if in_private_namespace():
        raise SystemExit("still not root inside the user namespace: unprivileged user namespaces are disabled")
    unshare = shutil.which("unshare")
    if unshare is None:
        raise SystemExit("not root and `unshare` (util-linux) is not installed: cannot create network namespaces")
    os.environ[_MARK] = "1"
    command = in_user_namespace(list(argv if argv is not None else [sys.executable, *sys.argv]))
    proc = subprocess.Popen(command, preexec_fn=_die_with_parent)  # one thread here: preexec_fn is safe

    def forward(signum: int, _frame: object) -> None:
        for child in _children(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGHUP, forward)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal sends it to the run as well
    code = proc.wait()
    raise SystemExit(128 - code if code < 0 else code)


def _die_with_parent() -> None:
    """Have the kernel SIGKILL this process when its parent dies (then unshare kills the run)."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def _children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def in_user_namespace(args: Sequence[str], unshare: str = "") -> list[str]:
    """The command line that runs ``args`` as root of fresh user, net, mount and PID namespaces."""
    # A private /run: ip-netns keeps its mounts in /run/netns, iptables locks /run/xtables.lock.
    # The new network namespace starts with loopback down; local servers (tests) need it.
    script = 'mount -t tmpfs tmpfs /run && mkdir -p /run/netns && ip link set lo up && exec "$@"'
    unshare = unshare or shutil.which("unshare") or "unshare"
    namespaces = ["--user", "--map-root-user", "--net", "--mount", "--pid", "--mount-proc", "--fork", "--kill-child"]
    return [unshare, *namespaces, "--", "sh", "-c", script, "sh", *args]
