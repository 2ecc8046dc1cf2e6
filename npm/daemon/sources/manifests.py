"""Objects from a directory of manifests instead of an API server (``start --manifests DIR``).

The directory tree is scanned every ``poll_interval`` seconds (modification time, size and
inode of every .yaml/.yml/.json file; no inotify needed). A changed file is read with
``kube.load.read_documents``; a file that does not parse (half written, broken YAML) keeps
its last good version in force and is logged. Within a file that parses, an object that
fails validation is skipped, or keeps its last valid version if it had one. The merged
objects of all files (later files, in sorted path order, win over earlier ones) replace the
cache's content at once, so a deleted file deletes its objects.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from kube.documents import MANIFEST_SUFFIXES, read_documents
from kube.errors import ObjectError
from kube.load import KINDS, ObjectSet, add_documents
from npm.daemon.cache import Obj, ObjectCache

log = logging.getLogger("npm.static")

Stamp = tuple[int, int, int]  # mtime_ns, size, inode


@dataclass
class FileState:
    """What one manifest file last contributed: its good objects and its invalid ones."""

    stamp: Stamp
    objects: dict[tuple[str, str], Obj] = field(default_factory=dict)
    invalid: dict[tuple[str, str], list[ObjectError]] = field(default_factory=dict)
    broken: str = ""  # the last read error, while the last good version is kept


def scan(directory: str) -> dict[str, Stamp]:
    """Every manifest file under ``directory`` with its change stamp."""
    out: dict[str, Stamp] = {}
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in files:
            # Editors' and atomic writers' temporary files start with a dot: not manifests yet.
            if name.startswith(".") or not name.endswith(MANIFEST_SUFFIXES):
                continue
            path = os.path.join(root, name)
            try:
                st = os.stat(path)
            except FileNotFoundError:
                continue  # removed between listing and stat
            out[path] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return out


def _identity_of(error: ObjectError) -> tuple[str, str] | None:
    """(kind, key) of the object an error is about, if it is one the daemon keeps."""
    return (error.kind, error.key) if error.kind in KINDS and error.key else None


def read_file(path: str, previous: FileState | None, stamp: Stamp) -> FileState:
    """Parse one manifest file into its objects, keeping ``previous`` where this version fails."""
    parsed = ObjectSet()
    add_documents(parsed, read_documents(path))
    broken = [e for e in parsed.errors if not e.obj]
    if broken:
        # The file as a whole is unreadable (half written, bad YAML): keep its last good version.
        kept = "keeping its last good version" if previous and previous.objects else "nothing to keep"
        log.error("manifest %s; %s", broken[0], kept)
        base = previous or FileState(stamp)
        return FileState(stamp, base.objects, base.invalid, broken=str(broken[0]))
    objects: dict[tuple[str, str], Obj] = {
        (kind, key): obj for kind in KINDS for key, obj in parsed.table(kind).items()
    }
    ignored = Counter(parsed.skipped) + Counter(w.kind for w in parsed.workloads.values())
    for note in parsed.notes:  # e.g. a ClusterNetworkPolicy peer that fails closed
        log.warning("manifest %s: %s", path, note)
    if ignored:  # read only when the file changes: said once per change, not per poll
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(ignored.items()))
        log.info("manifest %s: ignored %s (not kinds the enforcer acts on)", path, kinds)
    invalid: dict[tuple[str, str], list[ObjectError]] = {}
    for error in parsed.errors:
        ident = _identity_of(error)
        old = previous.objects.get(ident) if previous and ident else None
        log.error("invalid object: %s; %s", error, "keeping its last valid version" if old else "skipped")
        if ident:
            invalid.setdefault(ident, []).append(error)
            if old is not None and ident not in objects:
                objects[ident] = old
    return FileState(stamp, objects, invalid)


class StaticSource(threading.Thread):
    """Polls a manifest directory and keeps the cache equal to its content."""

    def __init__(
        self,
        directory: str,
        cache: ObjectCache,
        stop: threading.Event,
        *,
        poll_interval: float = 0.25,
        metrics: object = None,
        events: object = None,
    ) -> None:
        super().__init__(name="manifests", daemon=True)
        self.directory = directory
        self.cache = cache
        self.stop_event = stop
        self.poll_interval = poll_interval
        self.metrics = metrics
        self.events = events
        self.files: dict[str, FileState] = {}
        self.scans = 0
        self.failing = False  # the directory is missing: the last good state stays, /readyz says why
        self.last_error = ""

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.poll()
            except Exception as exc:  # a failed scan is retried at the next tick
                log.error("scanning %s failed: %s: %s", self.directory, type(exc).__name__, exc)
            self.stop_event.wait(self.poll_interval)

    def poll(self) -> bool:
        """Scan once; returns whether anything changed (the first scan always publishes)."""
        seen = time.monotonic()
        if not os.path.isdir(self.directory):
            # Never "no manifests, so no policies": a missing or vanished directory (an unmounted
            # volume, a typo) keeps what is enforced and makes the node unready until it is back.
            self._failed(f"manifest directory {self.directory} does not exist (or is not a directory); "
                         "keeping the last good state")
            return False
        if self.failing:
            log.warning("manifest directory %s is back", self.directory)
            self.failing, self.last_error = False, ""
        stamps = scan(self.directory)
        changed = self.scans == 0 or stamps.keys() != self.files.keys()
        new_files: dict[str, FileState] = {}
        for path in sorted(stamps):
            previous = self.files.get(path)
            if previous is not None and previous.stamp == stamps[path]:
                new_files[path] = previous
                continue
            state = read_file(path, previous, stamps[path])
            if state.broken and self.metrics is not None:
                self.metrics.source_errors.inc()  # type: ignore[attr-defined]
            new_files[path] = state
            changed = True
        self.files = new_files
        self.scans += 1
        if changed:
            self._publish(seen)
        return changed

    def _failed(self, reason: str) -> None:
        if self.failing and self.last_error == reason:
            return
        self.failing, self.last_error = True, reason
        log.error("%s", reason)
        if self.metrics is not None:
            self.metrics.source_errors.inc()  # type: ignore[attr-defined]
        report = getattr(self.events, "source_failed", None)
        if report is not None:
            report(self.directory, reason)

    def _publish(self, seen: float) -> None:
        tables: dict[str, dict[str, Obj]] = {kind: {} for kind in KINDS}
        invalid: dict[tuple[str, str], list[ObjectError]] = {}
        for path in sorted(self.files):
            state = self.files[path]
            for (kind, key), obj in state.objects.items():
                tables[kind][key] = obj
            # Invalid versions show even where the last valid one stays in force (monitoring sees them).
            invalid.update(state.invalid)
        self.cache.replace_all(tables, seen, invalid=invalid)
