"""What pip inside the image build needs from the host: its index settings, its CA bundle, the lock.

pip in the build runs in the base image, which knows nothing of this machine: package
downloads may go through a TLS-inspecting proxy whose CA only the host trusts, and the host
may name its own index. So the build gets the host's effective pip settings (``pip config
list``: files and PIP_* variables) as a pip.conf, and the host's CA bundle, both as build
secrets: mounted for the one step that runs pip, never written to a layer. Settings that
name host paths (file:// indexes, find-links, constraints) cannot work in the build and are
left out, with a note.

The dependencies are installed from ``imagebuild/requirements.txt``, exact versions resolved once
with ``--lock`` (every build then installs the same ones); the build's ``pip check`` fails
when that lock no longer satisfies the project's requirements.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

LOCK = Path(__file__).resolve().with_name("requirements.txt")
SECRET_DIR = "/run/secrets"  # where RUN --mount=type=secret puts secrets by default
# Settings carried into the build; the rest (cache, find-links, constraint, ...) stay on the host.
CARRIED = ("index-url", "extra-index-url", "trusted-host", "timeout", "default-timeout", "retries", "proxy")
_RANK = {"global": 0, "download": 1, "install": 1, ":env:": 2}  # pip: variables override files


def host_settings(python: str) -> dict[str, str]:
    """pip's effective settings for ``install`` on this host, as ``pip config list`` shows them."""
    proc = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True)
    best: dict[str, tuple[int, str]] = {}
    for line in proc.stdout.splitlines():
        match = re.match(r"^(:env:|[\w-]+)\.([\w-]+)='(.*)'$", line)
        if not match or match[1] not in _RANK:
            continue
        section, key, value = match.groups()
        if key not in best or _RANK[section] >= best[key][0]:
            best[key] = (_RANK[section], value)
    return {key: value for key, (_rank, value) in best.items()}


def ca_bundle(settings: Mapping[str, str], environ: Mapping[str, str] | None = None) -> Path | None:
    """The CA bundle host pip trusts: its ``cert`` setting, else the usual variables, else Debian's."""
    env = os.environ if environ is None else environ
    for candidate in (
        settings.get("cert"),
        env.get("REQUESTS_CA_BUNDLE"),
        env.get("SSL_CERT_FILE"),
        "/etc/ssl/certs/ca-certificates.crt",
    ):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _remote(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def build_pip_conf(settings: Mapping[str, str], *, ca_secret: str | None) -> tuple[str, list[str]]:
    """(pip.conf text for the build, notes on host settings left out)."""
    lines = ["[global]", "disable-pip-version-check = true", "no-cache-dir = true"]
    notes = []
    if ca_secret:
        lines.append(f"cert = {SECRET_DIR}/{ca_secret}")
    for key in CARRIED:
        value = settings.get(key)
        if not value:
            continue
        if key in ("index-url", "extra-index-url"):
            urls = value.split()
            kept = [u for u in urls if _remote(u)]
            notes += [f"{key} {u} is on this host only; the build uses the others" for u in urls if u not in kept]
            if key == "index-url" and not kept:
                continue  # the default index (PyPI) then
            value = " ".join(kept)
            if not value:
                continue
        lines.append(f"{key} = {value}")
    for key in ("find-links", "constraint", "requirement"):
        if settings.get(key):
            notes.append(f"{key} {settings[key]} is on this host only; not used in the build")
    return "\n".join(lines) + "\n", notes


def project_requirements(pyproject: Path) -> list[str]:
    """Normalised names of the project's runtime dependencies."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return sorted({_normalise(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", d)[0]) for d in deps})  # type: ignore[index]


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked(lock: Path = LOCK) -> list[str]:
    """The ``name==version`` lines of the lock."""
    if not lock.exists():
        return []
    return [line.strip() for line in lock.read_text().splitlines() if line.strip() and not line.startswith("#")]


def missing_from_lock(pyproject: Path, lock: Path = LOCK) -> list[str]:
    """Direct dependencies of the project that the lock does not pin."""
    pinned = {_normalise(line.split("==")[0]) for line in locked(lock)}
    return [name for name in project_requirements(pyproject) if name not in pinned]


def resolve(python: str, wheel: Path, project: str) -> list[str]:
    """``name==version`` of every dependency pip resolves for ``wheel`` (binary wheels only: the
    image has no compiler), with the host's pip settings."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        proc = subprocess.run(
            [python, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:",
             "--quiet", "--report", str(report), str(wheel)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pip could not resolve the dependencies:\n{proc.stderr.strip()}")
        items = json.loads(report.read_text())["install"]
    pins = {_normalise(i["metadata"]["name"]): i["metadata"]["version"] for i in items}
    pins.pop(_normalise(project), None)
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def write_lock(pins: Sequence[str], lock: Path = LOCK) -> None:
    """Write the lock file with a header saying how it is made."""
    header = (
        "# The image's Python dependencies, exact versions (imagebuild/pip_setup.py). Regenerate after\n"
        "# changing [project] dependencies in pyproject.toml: make azure-npm-image-lock\n"
    )
    lock.write_text(header + "".join(p + "\n" for p in pins))
