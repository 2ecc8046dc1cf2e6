"""The container engine that builds the image: docker where its daemon answers, else podman, else buildah.

One narrow wrapper around the engine's command line: import a root filesystem tarball as
an image, read an image's labels, build from a Dockerfile with build secrets. podman and
buildah get ``CONTAINERS_CONF`` pointing at ``imagebuild/containers.conf`` (unless the caller
set one): see that file for why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ENGINES = ("docker", "podman", "buildah")
CONTAINERS_CONF = Path(__file__).resolve().with_name("containers.conf")


class EngineError(RuntimeError):
    """No usable engine, or an engine command failed."""


def engine_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) with CONTAINERS_CONF set to ours when unset."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def _docker_answers() -> bool:
    # A docker client without a reachable daemon is common (CI images, remote contexts):
    # only a daemon that answers counts as "docker exists".
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def pick(requested: str = "auto") -> Engine:
    """The engine to use: ``requested``, or the first of docker (daemon up), podman, buildah."""
    if requested != "auto":
        if requested not in ENGINES:
            raise EngineError(f"unknown engine {requested!r} (one of {', '.join(ENGINES)}, or auto)")
        if shutil.which(requested) is None:
            raise EngineError(f"{requested} is not installed")
        return Engine(requested)
    if _docker_answers():
        return Engine("docker")
    for name in ("podman", "buildah"):
        if shutil.which(name):
            return Engine(name)
    raise EngineError(
        "no container engine: need docker (with a running daemon), podman or buildah "
        "(apt-get install podman buildah runc)"
    )


@dataclass(frozen=True)
class Engine:
    """One engine's command line."""

    name: str

    @property
    def env(self) -> dict[str, str]:
        return engine_env() if self.name != "docker" else dict(os.environ)

    def run(self, argv: Sequence[str], *, stdin: bytes | None = None, quiet: bool = False) -> str:
        """Run ``<engine> argv``; its stdout, or EngineError with stderr."""
        proc = subprocess.run(
            [self.name, *argv],
            input=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE if quiet else None,
            env=self.env,
        )
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip() if quiet and proc.stderr else ""
            raise EngineError(f"{self.name} {' '.join(argv[:2])} failed (exit {proc.returncode}) {detail}".strip())
        return proc.stdout.decode(errors="replace")

    def _inspect(self, image: str) -> dict | None:
        argv = ["inspect", "--type", "image", image] if self.name == "buildah" else ["image", "inspect", image]
        proc = subprocess.run([self.name, *argv], capture_output=True, env=self.env)
        if proc.returncode != 0:
            return None
        doc = json.loads(proc.stdout)
        return (doc[0] if doc else {}) if isinstance(doc, list) else doc

    def labels(self, image: str) -> dict[str, str] | None:
        """The labels of local image ``image``, or None when there is no such image."""
        doc = self._inspect(image)
        if doc is None:
            return None
        for config in (doc.get("Config"), doc.get("OCIv1", {}).get("config"), doc):
            if isinstance(config, dict) and config.get("Labels"):
                return dict(config["Labels"])
        return {}

    def image_id(self, image: str) -> str | None:
        """The ID of local image ``image``, or None."""
        doc = self._inspect(image)
        return None if doc is None else str(doc.get("Id") or doc.get("FromImageID") or "") or None

    def remove_if_untagged(self, image_id: str) -> None:
        """Remove an image a rebuild replaced, unless it still has a name or a container uses it."""
        doc = self._inspect(image_id)
        if doc is not None and not (doc.get("RepoTags") or doc.get("Names")):
            subprocess.run([self.name, "rmi", image_id], capture_output=True, env=self.env)

    def import_rootfs(self, tarball: Path, image: str) -> None:
        """Make image ``image`` out of a root filesystem tarball (no registry involved)."""
        if self.name == "buildah":
            # buildah has no import: a container from scratch, the tarball added (unpacked) at /.
            ctr = self.run(["from", "scratch"], quiet=True).strip()
            try:
                self.run(["add", ctr, str(tarball), "/"], quiet=True)
                self.run(["commit", "--quiet", ctr, image], quiet=True)
            finally:
                subprocess.run(["buildah", "rm", ctr], capture_output=True, env=self.env)
            return
        with open(tarball, "rb") as fh:
            proc = subprocess.run([self.name, "import", "-", image], stdin=fh, capture_output=True, env=self.env)
        if proc.returncode != 0:
            raise EngineError(f"{self.name} import failed: {proc.stderr.decode(errors='replace').strip()}")

    def build(
        self,
        *,
        dockerfile: Path,
        context: Path,
        tag: str,
        build_args: Mapping[str, str],
        labels: Mapping[str, str],
        secrets: Mapping[str, Path],
    ) -> None:
        """Build ``dockerfile`` in ``context`` as ``tag``; secrets are files mounted only while a step runs."""
        argv = ["build", "-f", str(dockerfile), "-t", tag]
        for key, value in build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in labels.items():
            argv += ["--label", f"{key}={value}"]
        for name, path in secrets.items():
            argv += ["--secret", f"id={name},src={path}"]
        if self.name != "docker":
            # FROM is the imported base: never ask a registry. No layer cache: a build happens
            # only when the sources changed, and then its one RUN step has to run anyway.
            argv += ["--layers=false", "--pull=never"]
        argv.append(str(context))
        env = self.env
        if self.name == "docker":
            env["DOCKER_BUILDKIT"] = "1"  # RUN --mount (secrets, bind) needs BuildKit
        proc = subprocess.run([self.name, *argv], env=env)
        if proc.returncode != 0:
            raise EngineError(f"{self.name} build failed (exit {proc.returncode})")
