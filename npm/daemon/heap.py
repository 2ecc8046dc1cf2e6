"""The daemon's memory: keep long-lived objects out of the collector's way, and say where
memory goes.

The desired state of a large cluster is millions of Python objects (pods, labels, set
members) that live until the object changes. The cyclic collector's full pass walks every
one of them (about 0.3 s at 20,000 pods on this machine), stalling whichever apply it
lands in. ``settle`` collects once and then freezes what survived (``gc.freeze``): frozen
objects are still freed by reference counting when the cache drops them, but the
collector no longer scans them, so later passes cost what was allocated since. The
controller calls it after the first apply and after any apply that took in many changes
(a relist), when a pause is cheap next to the apply itself.

``report`` is the debug endpoint's view: resident memory, and with tracing on
(``PYTHONTRACEMALLOC=N`` in the daemon's environment) the live allocations grouped by the
module of ours that made them.
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

log = logging.getLogger("npm.daemon.heap")

# An apply that took in at least this many object changes is followed by ``settle``.
SETTLE_AFTER_CHANGES = 1000
# Allocations are credited to the innermost frame in one of these packages.
OUR_PACKAGES = ("npm", "kube")
_ROOT = Path(__file__).resolve().parents[2]


class _FullCollections:
    """How many full (generation 2) collections ran, and the longest, for ``report``."""

    def __init__(self) -> None:
        self.count = 0
        self.longest = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.count += 1
            self.longest = max(self.longest, time.perf_counter() - self._started)


FULL_COLLECTIONS = _FullCollections()


def watch_collections() -> None:
    """Count full collections and their longest pause (once per process)."""
    if FULL_COLLECTIONS not in gc.callbacks:
        gc.callbacks.append(FULL_COLLECTIONS)


def settle() -> float:
    """Collect garbage, then exempt every surviving object from later collections; seconds taken."""
    started = time.perf_counter()
    gc.collect()
    gc.freeze()
    elapsed = time.perf_counter() - started
    log.debug("heap settled in %.3fs: %d objects frozen", elapsed, gc.get_freeze_count())
    return elapsed


def status_kib(pid: int | str = "self") -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (resident at most) of a process, in KiB."""
    out: dict[str, int] = {}
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return out
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def report(top: int = 25) -> dict[str, Any]:
    """Resident memory, collector state and, when tracing, live allocations by module."""
    memory = status_kib()
    out: dict[str, Any] = {
        "rss_kib": memory.get("VmRSS"),
        "peak_rss_kib": memory.get("VmHWM"),
        "gc_frozen_objects": gc.get_freeze_count(),
        "gc_full_collections": FULL_COLLECTIONS.count,
        "gc_longest_full_collection_seconds": round(FULL_COLLECTIONS.longest, 4),
        "tracemalloc": None,
    }
    if not tracemalloc.is_tracing():
        out["tracemalloc_hint"] = "start the daemon with PYTHONTRACEMALLOC=10 to see allocations by module"
        return out
    traced, peak = tracemalloc.get_traced_memory()
    sizes: Counter[str] = Counter()
    blocks: Counter[str] = Counter()
    for stat in tracemalloc.take_snapshot().statistics("traceback"):
        where = module_of(stat.traceback)
        sizes[where] += stat.size
        blocks[where] += stat.count
    out["tracemalloc"] = {
        "frames": tracemalloc.get_traceback_limit(),
        "traced_kib": traced >> 10,
        "peak_kib": peak >> 10,
        "by_module": [
            {"module": where, "kib": size >> 10, "blocks": blocks[where]} for where, size in sizes.most_common(top)
        ],
    }
    return out


def module_of(traceback: tracemalloc.Traceback) -> str:
    """The module of ours that made an allocation: the innermost frame in our packages (a
    JSON string decoded for the watcher counts as the watcher's), else the innermost file."""
    for frame in reversed(traceback):  # newest frame last: walk from the allocation outwards
        module = _our_module(frame.filename)
        if module:
            return module
    innermost = traceback[-1].filename if len(traceback) else "?"
    return f"(other) {os.path.basename(innermost)}"


@functools.lru_cache(maxsize=4096)
def _our_module(filename: str) -> str:
    """``npm.daemon.cache`` for a file of our packages, "" for any other file."""
    path = Path(filename)
    try:
        relative = path.relative_to(_ROOT)
    except ValueError:
        return ""
    return ".".join(relative.with_suffix("").parts) if relative.parts[:1] in [(p,) for p in OUR_PACKAGES] else ""
