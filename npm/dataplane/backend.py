"""Which iptables backend (nft or legacy) this node uses, detected as kube-proxy does.

kubelet/kube-proxy leave marker chains in the mangle table: ``KUBE-IPTABLES-HINT`` (newer)
and ``KUBE-KUBELET-CANARY`` (older). We look for the hint in nft then legacy, then for the
canary in nft then legacy, retrying a few times because kubelet may create them just after
we start. With neither, we choose nft when the nft tools work (every current distribution
defaults to it and mixing backends is what breaks nodes) and legacy otherwise.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from npm.dataplane.kernel import Runner

BACKENDS = ("nft", "legacy")
MARKERS = ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")


@dataclass(frozen=True)
class Tools:
    """Binaries of one backend."""

    backend: str

    @property
    def save(self) -> str:
        return f"iptables-{self.backend}-save"

    @property
    def restore(self) -> str:
        return f"iptables-{self.backend}-restore"

    @property
    def iptables(self) -> str:
        return f"iptables-{self.backend}"


def other(backend: str) -> str:
    """The backend we do not use."""
    return "legacy" if backend == "nft" else "nft"


def legacy_tables(runner: Runner) -> set[str]:
    """Tables the legacy (x_tables) backend has in this namespace, read without creating any.

    ``iptables-legacy-save -t T`` would instantiate table T (and make every later
    iptables-nft call warn about legacy tables), so look at /proc first.
    """
    res = runner.run(["cat", "/proc/net/ip_tables_names"])
    return set(res.stdout.split()) if res.ok else set()


def has_table(runner: Runner, backend: str, table: str) -> bool:
    """Whether ``table`` may hold rules in ``backend`` (legacy: only if already loaded)."""
    return backend != "legacy" or table in legacy_tables(runner)


def _has_chain(runner: Runner, backend: str, chain: str) -> bool:
    if not has_table(runner, backend, "mangle"):
        return False
    res = runner.run([Tools(backend).save, "-t", "mangle"])
    return res.ok and any(line.startswith(f":{chain} ") for line in res.stdout.splitlines())


def detect(runner: Runner, override: str = "auto", attempts: int = 3, delay: float = 0.2) -> tuple[str, str]:
    """(backend, why). ``override`` other than ``auto`` wins."""
    if override in BACKENDS:
        return override, f"--backend {override}"
    if override != "auto":
        raise ValueError(f"backend must be auto, nft or legacy, not {override!r}")
    for attempt in range(attempts):
        for marker in MARKERS:
            for backend in BACKENDS:
                if _has_chain(runner, backend, marker):
                    return backend, f"mangle chain {marker} found in iptables-{backend}"
        if attempt + 1 < attempts:
            time.sleep(delay * (2**attempt))
    if runner.run([Tools("nft").save, "-t", "filter"]).ok:
        return "nft", "no kubelet marker chain; iptables-nft works"
    return "legacy", "no kubelet marker chain; iptables-nft unavailable"
