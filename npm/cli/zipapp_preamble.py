"""The first code the single-file executable runs (``make azure-npm``): refuse a Python it
was not built for, before anything imports a compiled module.

The executable is a shiv zipapp that starts with whatever ``python3`` the node has, but the
compiled modules it carries (pydantic-core, pulled in by the kubernetes client, and others)
were built for one CPython version: on any other one their import fails deep inside the
kubernetes client with a traceback. shiv runs this script (``--preamble``) after unpacking
the archive and before the entry point, with the unpacked ``site_packages`` directory in
its globals; it looks at the compiled modules there and stops with a message naming both
versions and what to do. Standard library only: nothing of ours is imported yet.
"""

from __future__ import annotations

import sys
from pathlib import Path

EXIT_WRONG_PYTHON = 2
TAG_PREFIX = "cpython-"


def built_for(site_packages: Path) -> dict[str, Path]:
    """The CPython tags (``cpython-311``) the compiled modules under ``site_packages`` need,
    each with one module as an example; version-independent ones (abi3) need none."""
    found: dict[str, Path] = {}
    for pattern in (f"*.{TAG_PREFIX}*", f"*/*.{TAG_PREFIX}*", f"*/*/*.{TAG_PREFIX}*"):
        for path in sorted(site_packages.glob(pattern)):
            tag = path.name.split(".")[-2].split("-")
            if len(tag) >= 2 and f"{tag[0]}-" == TAG_PREFIX and tag[1].isdigit():
                found.setdefault(f"{tag[0]}-{tag[1]}", path)
    return found


def version_of(tag: str) -> str:
    """``cpython-311`` -> ``3.11``."""
    digits = tag.removeprefix(TAG_PREFIX)
    return f"{digits[0]}.{digits[1:]}" if digits.isdigit() and len(digits) >= 2 else tag


def refusal(site_packages: Path, running_tag: str, executable: str, program: str = "azure-npm") -> str | None:
    """Why this interpreter (``executable``, of ``running_tag``) cannot run ``program``, or None."""
    needed = built_for(site_packages)
    if not needed or running_tag in needed:
        return None
    tag, example = sorted(needed.items())[0]
    want, have = version_of(tag), version_of(running_tag)
    return (
        f"azure-npm: this executable was built for Python {want} (its compiled modules, such as "
        f"{example.relative_to(site_packages)}, load only there), but {executable} is Python {have}.\n"
        f"Run it with Python {want} (python{want} {program} ...), build it with this "
        f"node's Python (make azure-npm PYTHON=python{have}), or run the container image (make azure-npm-image)."
    )


if __name__ == "__main__":
    # shiv passes the unpacked directory (``site_packages``) and the executable (``archive``) as globals.
    unpacked = globals().get("site_packages")
    if unpacked is not None:
        program = str(globals().get("archive") or "azure-npm")
        message = refusal(Path(unpacked), sys.implementation.cache_tag or "", sys.executable or "python3", program)
        if message:
            print(message, file=sys.stderr)
            sys.exit(EXIT_WRONG_PYTHON)
