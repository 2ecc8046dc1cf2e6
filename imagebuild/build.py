"""``make azure-npm-image``: the enforcer's container image, built from this checkout.

    python3 -m imagebuild.build [--image azure-npm:VERSION] [--engine auto|docker|podman|buildah]
                           [--force] [--refresh-base] [--lock]

1. The base (``imagebuild/rootfs.py``): a cached debootstrap tarball of Debian packages, imported
   as ``localhost/azure-npm-base:<release>-<key>`` when the engine does not have it yet.
2. Reuse: an image of the requested name whose label ``org.azure-npm.source-hash`` equals
   the hash of everything that goes into it (sources, Dockerfile, lock, this recipe, base)
   is kept as it is, unless ``--force``.
3. A build context of its own (never the checkout): the wheel built from a clean copy of
   the sources (a stale ``build/`` directory can leak deleted modules into a wheel), pip
   as a wheel, and the dependency lock.
4. ``<engine> build -f Dockerfile`` with the host's pip settings and CA bundle as build
   secrets (``imagebuild/pip_setup.py``); labels record the version, source hash, base and
   the exact Debian and Python package versions.

Builds are serialised by a lock in the cache directory, so parallel callers (test workers)
wait for one build and then reuse it. Progress goes to stderr; stdout is the image name.
Exit status: 0 built or reused, 1 failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from imagebuild import engine as engines
from imagebuild import pip_setup, rootfs

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
# The packages the wheel holds, read from [tool.setuptools.packages.find] so the two never differ.
PACKAGES_IN_WHEEL = tuple(
    p.rstrip("*")
    for p in tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
)
PIP_VERSION = "25.1.1"  # runs the install inside the build; pinned like everything else
LABEL = "org.azure-npm"
SOURCE_HASH_LABEL = f"{LABEL}.source-hash"


def log(message: str) -> None:
    print(f"azure-npm-image: {message}", file=sys.stderr, flush=True)


def project() -> tuple[str, str]:
    """(name, version) from pyproject.toml."""
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return meta["name"], meta["version"]


def _inputs() -> Iterator[Path]:
    for name in ("pyproject.toml", "README.md"):
        yield ROOT / name
    yield DOCKERFILE
    yield pip_setup.LOCK
    yield from sorted((ROOT / "imagebuild").glob("*.py"))
    for package in PACKAGES_IN_WHEEL:
        yield from sorted(p for p in (ROOT / package).rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def source_hash(base_image: str) -> str:
    """16 hex digits over every input of the image: file names and contents, the base, pip."""
    digest = hashlib.sha256(f"{base_image}\n{PIP_VERSION}\n".encode())
    for path in _inputs():
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _run(argv: Sequence[str], what: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(list(argv), capture_output=True, text=True, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{(proc.stdout + proc.stderr).strip()[-3000:]}")


def build_wheel(python: str, out: Path) -> Path:
    """The project's wheel, built from a copy of the sources that go into it."""
    with tempfile.TemporaryDirectory(prefix="azure-npm-src-") as tmp:
        src = Path(tmp)
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, src / name)
        for package in PACKAGES_IN_WHEEL:
            shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
        _run([python, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), str(src)], "building the wheel")
    (wheel,) = out.glob("*.whl")
    return wheel


def pip_wheel(python: str, cache: Path) -> Path:
    """pip itself as a wheel (cached); the build runs it from its mount, so no pip stays in the image."""
    wheel = cache / f"pip-{PIP_VERSION}-py3-none-any.whl"
    if not wheel.exists():
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            _run(
                [python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "-d", tmp,
                 f"pip=={PIP_VERSION}"],
                "downloading pip",
            )
            (Path(tmp) / wheel.name).replace(wheel)
    return wheel


def _git_revision() -> str:
    proc = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    if proc.returncode != 0:
        return "unknown"
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain"], capture_output=True, text=True).stdout
    return proc.stdout.strip() + ("-dirty" if dirty.strip() else "")


def labels(base: rootfs.Base, version: str, digest: str, pins: Sequence[str], mirrors: Sequence[str]) -> dict[str, str]:
    """What the image says about itself (``podman image inspect``)."""
    name, _ = project()
    return {
        "org.opencontainers.image.title": name,
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": _git_revision(),
        "org.opencontainers.image.base.name": base.image,
        SOURCE_HASH_LABEL: digest,
        f"{LABEL}.debian-release": base.release,
        f"{LABEL}.debian-mirrors": " ".join(mirrors),
        f"{LABEL}.debian-packages": " ".join(base.packages),
        f"{LABEL}.python-packages": " ".join([f"{name}=={version}", *pins]),
    }


@contextmanager
def _exclusive(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / "build.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def build(image: str, *, engine_name: str, python: str, force: bool, refresh_base: bool) -> str:
    """Build (or reuse) ``image``; its name."""
    started = time.monotonic()
    engine = engines.pick(engine_name)
    cache = rootfs.cache_dir()
    _name, version = project()
    missing = pip_setup.missing_from_lock(ROOT / "pyproject.toml")
    if missing:
        raise RuntimeError(
            f"{pip_setup.LOCK.relative_to(ROOT)} pins no version of {', '.join(missing)}: make azure-npm-image-lock"
        )
    with _exclusive(cache):
        sources = rootfs.host_sources()
        base = rootfs.ensure_tarball(sources=sources, cache=cache, refresh=refresh_base, log=log)
        if refresh_base or engine.labels(base.image) is None:
            log(f"importing {base.tarball.name} as {base.image} ({engine.name})")
            engine.import_rootfs(base.tarball, base.image)
        digest = source_hash(base.image)
        current = engine.labels(image)
        if not force and current is not None and current.get(SOURCE_HASH_LABEL) == digest:
            log(f"{image} is up to date (source {digest}); reused in {time.monotonic() - started:.1f} s")
            return image
        replaced = engine.image_id(image)
        log(f"building {image} with {engine.name} from {base.image} (source {digest})")
        with tempfile.TemporaryDirectory(prefix="azure-npm-image-") as tmp:
            context, secrets_dir = Path(tmp) / "context", Path(tmp) / "secrets"
            context.mkdir()
            secrets_dir.mkdir(mode=0o700)
            build_wheel(python, context)
            shutil.copy2(pip_wheel(python, cache), context / "pip.whl")
            shutil.copy2(pip_setup.LOCK, context / "requirements.txt")
            settings = pip_setup.host_settings(python)
            ca = pip_setup.ca_bundle(settings)
            conf, notes = pip_setup.build_pip_conf(settings, ca_secret="ca-bundle" if ca else None)
            for note in notes:
                log(f"note: {note}")
            (secrets_dir / "pip.conf").write_text(conf)
            if ca is None:  # the Dockerfile mounts it either way; pip.conf then names no cert
                ca = secrets_dir / "no-ca-bundle"
                ca.write_text("")
            secrets = {"pip.conf": secrets_dir / "pip.conf", "ca-bundle": ca}
            engine.build(
                dockerfile=DOCKERFILE,
                context=context,
                tag=image,
                build_args={"BASE": base.image, "SOURCE_HASH": digest},
                labels=labels(base, version, digest, pip_setup.locked(), [s.line() for s in sources]),
                secrets=secrets,
            )
        if replaced and replaced != engine.image_id(image):
            engine.remove_if_untagged(replaced)  # rebuilds would otherwise pile up unnamed images
    log(f"built {image} in {time.monotonic() - started:.1f} s")
    return image


def lock(python: str) -> int:
    """Resolve the dependencies of this checkout's wheel and write imagebuild/requirements.txt."""
    name, _version = project()
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_wheel(python, Path(tmp))
        pins = pip_setup.resolve(python, wheel, name)
    pip_setup.write_lock(pins)
    log(f"wrote {pip_setup.LOCK.relative_to(ROOT)}: {len(pins)} packages")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    name, version = project()
    parser = argparse.ArgumentParser(prog="python3 -m imagebuild.build", description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=f"{name}:{version}", help="name:tag to build (default %(default)s)")
    parser.add_argument("--engine", default="auto", help="auto (docker with a daemon, else podman, else buildah)")
    parser.add_argument("--python", default=sys.executable, help="Python whose pip builds the wheel (default: this)")
    parser.add_argument("--force", action="store_true", help="build even if an image of this source exists")
    parser.add_argument("--refresh-base", action="store_true", help="make the base again (newer Debian updates)")
    parser.add_argument("--lock", action="store_true", help="only resolve and write imagebuild/requirements.txt")
    args = parser.parse_args(argv)
    try:
        if args.lock:
            return lock(args.python)
        image = build(
            args.image, engine_name=args.engine, python=args.python, force=args.force, refresh_base=args.refresh_base
        )
    except (RuntimeError, engines.EngineError, rootfs.RootfsError, subprocess.CalledProcessError) as exc:
        log(f"failed: {exc}")
        return 1
    print(image)
    return 0


if __name__ == "__main__":
    sys.exit(main())
