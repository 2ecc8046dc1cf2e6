"""Memory checks before large allocations: a clear message instead of a MemoryError traceback."""

from __future__ import annotations

import os

# Never plan to use more than this share of the memory available when asked.
SHARE = 0.8


def available_bytes() -> int:
    """Memory this process can still use: MemAvailable, capped by a cgroup v2/v1 limit."""
    out = _meminfo_available()
    for path, used_path in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit, used = _read_int(path), _read_int(used_path)
        if limit is not None and used is not None and limit < (1 << 60):
            out = min(out, max(0, limit - used))
    return out


def _meminfo_available() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 1 << 62  # unknown: do not refuse


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            text = fh.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class TooLarge(Exception):
    """An evaluation would need more memory than is available; the message says what to do."""

    def __init__(self, what: str, needed: int, available: int, hint: str) -> None:
        self.what, self.needed, self.available, self.hint = what, needed, available, hint
        super().__init__(
            f"{what} needs about {_size(needed)} of memory, but only {_size(available)} is available; {hint}"
        )


def ensure(what: str, needed: int, hint: str) -> None:
    """Raise :class:`TooLarge` if ``needed`` bytes exceed the usable share of free memory."""
    limit_text = os.environ.get("NPM_SIM_MEMORY_LIMIT")  # for tests and for sharing a machine
    available = int(limit_text) if limit_text and limit_text.isdigit() else available_bytes()
    if needed > SHARE * available:
        raise TooLarge(what, needed, available, hint)


def out_of_memory() -> str:
    """The message for a MemoryError that no :func:`ensure` foresaw."""
    return (
        f"out of memory ({_size(available_bytes())} available now); use `npm-sim summary` or fewer --port "
        "values, analyse fewer pods (e.g. some namespaces' manifests), or run on a machine with more memory"
    )


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} bytes"


__all__ = ["TooLarge", "available_bytes", "ensure", "out_of_memory"]
