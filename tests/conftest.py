"""Shared test configuration: kernel tests run as root or inside a user namespace."""

from __future__ import annotations

import os
import shutil

import pytest


def kernel_available() -> tuple[bool, str]:
    """Whether this process can create network namespaces and use netfilter."""
    if os.geteuid() != 0:
        return False, "needs root or a user namespace (run via `nox -s tests`, which uses unshare when not root)"
    for tool in ("ip", "iptables-restore", "ipset"):
        if shutil.which(tool) is None:
            return False, f"{tool} is not installed (apt-get install iproute2 iptables ipset)"
    return True, ""


def running_in_user_namespace() -> bool:
    """True when running as root of a user namespace (rootless), not as the real root."""
    try:
        with open("/proc/self/uid_map") as fh:
            first = fh.readline().split()
    except OSError:
        return False
    return first != ["0", "0", "4294967295"]


# iptables-nft inside a user namespace cannot enlarge its netlink buffer, so the kernel
# rejects very large restore transactions ("Message too long"); tests that need one say so.
needs_real_root = pytest.mark.skipif(
    running_in_user_namespace(), reason="needs real root: large iptables-nft transactions fail in a user namespace"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ok, reason = kernel_available()
    if ok:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(skip)
