"""Run the netns backend without root, inside a user namespace.

A non-root user gets the same powers over a private network stack with
``unshare --user --map-root-user --net --mount``. Inside, a private tmpfs on /run holds
``/run/netns`` and ``/run/xtables.lock`` so nothing of the host is touched.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence

_MARK = "NPM_IN_USERNS"


def in_private_namespace() -> bool:
    """True once we re-executed ourselves under unshare."""
    return os.environ.get(_MARK) == "1"


def ensure_privileges(argv: Sequence[str] | None = None) -> None:
    """Return if we may create network namespaces; otherwise re-exec under unshare.

    The re-executed process runs the same program with the same arguments; this call never
    returns in the original process.
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
    os.execv(command[0], command)


def in_user_namespace(args: Sequence[str], unshare: str = "") -> list[str]:
    """The command line that runs ``args`` as root of a fresh user, net and mount namespace."""
    # A private /run: ip-netns keeps its mounts in /run/netns, iptables locks /run/xtables.lock.
    script = 'mount -t tmpfs tmpfs /run && mkdir -p /run/netns && exec "$@"'
    unshare = unshare or shutil.which("unshare") or "unshare"
    return [unshare, "--user", "--map-root-user", "--net", "--mount", "--fork", "--", "sh", "-c", script, "sh", *args]
