"""The image's base: a Debian root filesystem made with debootstrap, cached as a tarball.

Why not ``FROM debian:bookworm-slim``: the machines that build and test the image may reach
no public image registry, only Debian's package mirror. So the base is made from Debian
packages: ``debootstrap --variant=minbase`` of one release (pinned: ``RELEASE``) with the
packages the enforcer drives, from the mirror the host's apt uses, then upgraded from the
release's ``-updates`` and ``-security`` suites (also as the host configures them), trimmed
of documentation, apt and its lists. The tarball is cached under ``cache_dir()`` keyed by
release, package list, mirrors and ``RECIPE``: later builds reuse it, so the base changes
only when that key changes (or on ``--refresh-base``); the installed package versions are
kept next to it and go into the image's labels.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

RELEASE = "bookworm"
# What the enforcer runs: python3 for itself; iptables (nft and legacy: the node decides),
# ipset, nft (iptables-nft's backend tools) and ip. Nothing else is installed on purpose.
PACKAGES = ("python3", "iptables", "ipset", "nftables", "iproute2")
# Removed after the upgrade: the image is rebuilt, never upgraded in place.
PURGED = ("apt", "libapt-pkg6.0", "debian-archive-keyring", "gpgv")
RECIPE = 1  # bump when what follows changes the root filesystem, to invalidate cached tarballs
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))
FALLBACK_MIRRORS = {"": "http://deb.debian.org/debian", "-updates": "http://deb.debian.org/debian",
                    "-security": "http://deb.debian.org/debian-security"}


class RootfsError(RuntimeError):
    """The base root filesystem could not be made."""


@dataclass(frozen=True)
class AptSource:
    """One suite of one Debian mirror."""

    uri: str
    suite: str

    def line(self) -> str:
        return f"deb {self.uri} {self.suite} main"


@dataclass(frozen=True)
class Base:
    """A cached base: its tarball, the image name it is imported as, its package versions."""

    release: str
    key: str
    tarball: Path
    packages: tuple[str, ...]  # name=version, sorted

    @property
    def image(self) -> str:
        return f"localhost/azure-npm-base:{self.release}-{self.key}"


def cache_dir() -> Path:
    """Where base tarballs are kept: $AZURE_NPM_IMAGE_CACHE, else ~/.cache/azure-npm-image."""
    explicit = os.environ.get("AZURE_NPM_IMAGE_CACHE")
    if explicit:
        return Path(explicit)
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "azure-npm-image"


def _source_entries(paths: Iterable[Path]) -> Iterable[tuple[list[str], str, list[str], list[str]]]:
    """(types, uri, suites, components) of every entry in one-line and deb822 source files."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix in (".list", ".sources"))
        elif path.is_file():
            files.append(path)
    for file in files:
        text = file.read_text(errors="replace")
        if file.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields: dict[str, str] = {}
                for line in stanza.splitlines():
                    if line.startswith("#") or ":" not in line or line[:1].isspace():
                        continue
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.strip()
                if fields.get("enabled", "yes").lower() == "no" or "uris" not in fields:
                    continue
                for uri in fields["uris"].split():
                    yield fields.get("types", "").split(), uri, fields.get("suites", "").split(), \
                        fields.get("components", "").split()
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3:
                    yield [words[0]], words[1], [words[2]], words[3:]


def host_sources(release: str = RELEASE, paths: Iterable[Path] = SOURCES) -> list[AptSource]:
    """The host's mirrors for ``release``, its -updates and -security suites (main component).

    Suites the host does not configure come from deb.debian.org.
    """
    found: dict[str, AptSource] = {}
    for types, uri, suites, components in _source_entries(paths):
        if "deb" not in types or "main" not in components:
            continue
        for suite in suites:
            for tail in FALLBACK_MIRRORS:
                if suite == release + tail:
                    found.setdefault(tail, AptSource(uri.rstrip("/"), suite))
    return [found.get(tail, AptSource(uri, release + tail)) for tail, uri in FALLBACK_MIRRORS.items()]


def cache_key(release: str, packages: Sequence[str], sources: Sequence[AptSource]) -> str:
    """12 hex digits naming one recipe: release, packages, mirrors."""
    text = json.dumps(
        {"release": release, "packages": sorted(packages), "sources": [s.line() for s in sources], "recipe": RECIPE},
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _run(argv: Sequence[str], what: str, **kwargs: object) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
        raise RootfsError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def installed_packages(root: Path) -> tuple[str, ...]:
    """name=version of every package installed in the root filesystem at ``root``."""
    proc = subprocess.run(
        ["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f", "${Package}=${Version}\n"],
        capture_output=True,
        text=True,
        check=True,
    )
    return tuple(sorted(line for line in proc.stdout.splitlines() if line))


def _make_rootfs(root: Path, release: str, packages: Sequence[str], sources: Sequence[AptSource]) -> None:
    main = sources[0]
    keyring = [f"--keyring={KEYRING}"] if KEYRING.exists() else []
    _run(
        ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", *keyring, release, str(root), main.uri],
        "debootstrap",
    )
    chroot = ["chroot", str(root)]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    (root / "etc/apt/sources.list").write_text("".join(s.line() + "\n" for s in sources))
    shutil.copyfile("/etc/resolv.conf", root / "etc/resolv.conf")  # apt in the chroot resolves the mirrors
    try:
        _run([*chroot, "apt-get", "-qq", "update"], "apt-get update (in the base)", env=env)
        _run([*chroot, "apt-get", "-qq", "-y", "upgrade"], "apt-get upgrade (in the base)", env=env)
        _run([*chroot, "dpkg", "--purge", "--force-remove-protected", *PURGED], "removing apt", env=env)
    finally:
        (root / "etc/resolv.conf").unlink(missing_ok=True)
    _trim(root)


def _trim(root: Path) -> None:
    """Delete what nothing at run time reads: docs (copyright notices stay), apt's state, logs."""
    for rel in ("usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian", "var/cache/apt",
                "var/lib/apt", "var/log/apt", "etc/apt"):
        shutil.rmtree(root / rel, ignore_errors=True)
    for path in (root / "usr/share/doc").rglob("*"):
        if path.is_file() and path.name != "copyright":
            path.unlink()
    for pattern in ("var/log/*.log", "var/cache/debconf/*-old", "var/lib/dpkg/*-old", "var/cache/ldconfig/aux-cache"):
        for path in root.glob(pattern):
            path.unlink()
    (root / "etc/machine-id").write_text("")  # per container, never one baked into the image


def ensure_tarball(
    *,
    release: str = RELEASE,
    packages: Sequence[str] = PACKAGES,
    sources: Sequence[AptSource] | None = None,
    cache: Path | None = None,
    refresh: bool = False,
    log: Callable[[str], None] = print,
) -> Base:
    """The cached base tarball for this recipe, made first when missing (or ``refresh``)."""
    sources = list(sources) if sources is not None else host_sources(release)
    cache = cache or cache_dir()
    key = cache_key(release, packages, sources)
    tarball = cache / f"base-{release}-{key}.tar"
    versions = tarball.with_suffix(".packages")
    if tarball.exists() and versions.exists() and not refresh:
        return Base(release, key, tarball, tuple(versions.read_text().split()))
    if os.geteuid() != 0:
        raise RootfsError("making the base needs root (debootstrap, chroot); or copy a cached tarball to " + str(cache))
    if shutil.which("debootstrap") is None:
        raise RootfsError("debootstrap is not installed (apt-get install debootstrap)")
    cache.mkdir(parents=True, exist_ok=True)
    log(f"making the {release} base with debootstrap from {sources[0].uri} (cached as {tarball.name})")
    with tempfile.TemporaryDirectory(dir=cache, prefix="rootfs-") as tmp:
        root = Path(tmp) / "rootfs"
        _make_rootfs(root, release, packages, sources)
        packages_found = installed_packages(root)
        partial = Path(tmp) / "base.tar"
        # Sorted names and numeric owners: the same tree gives the same archive. File times are
        # kept: Debian's .pyc files are checked against their sources' times.
        _run(["tar", "--sort=name", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], "tar")
        versions.write_text("\n".join(packages_found) + "\n")
        os.replace(partial, tarball)
    return Base(release, key, tarball, packages_found)
