"""The kindnet manifest a kind conformance cluster gets: pinned, with its policy enforcement off.

kind's own kindnetd enforces NetworkPolicy with no way to turn it off, so
``kind-config/cluster.yaml`` disables kind's default CNI and kindnet from
kubernetes-sigs/kindnet is installed instead, from a copy of one release's manifest kept in
``kind-config/`` (``DEFAULT_MANIFEST``), rewritten to ``--network-policy=false``.
``$NPM_KINDNET_MANIFEST`` (a file or URL) replaces that copy.

Standard library only: ``scripts/ci-kind.sh`` runs ``python3 -m conformance.kindnet`` before
the project's dependencies are installed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KINDNET_VERSION = "v1.0.0"
DEFAULT_MANIFEST = ROOT / "kind-config" / f"kindnet-{KINDNET_VERSION}.yaml"
KINDNET_ENV = "NPM_KINDNET_MANIFEST"  # a file or URL to use instead


def kindnet_without_policy(manifest: str) -> str:
    """kindnet's install manifest with NetworkPolicy enforcement switched off.

    ValueError if there is no kindnetd command to switch it off in: applying such a manifest
    could leave a CNI that enforces policies itself and hides the enforcer under test.
    """
    end = r"(?=[\s\"'\]]|$)"  # the flag ends where its YAML or JSON list item does
    text, count = re.subn(rf"--network-policy(=true)?{end}", "--network-policy=false", manifest)
    if count or re.search(rf"--network-policy=false{end}", text):
        return text
    # An older layout without the flag (enforcing by default): add it after the command.
    text, count = re.subn(r"(- /bin/kindnetd\s*\n)(\s*)", r"\1\2- --network-policy=false\n\2", manifest, count=1)
    if not count:
        raise ValueError("not a kindnet manifest (no kindnetd command with --network-policy)")
    return text


def manifest_location(environ: Mapping[str, str] = os.environ) -> str:
    """Where the manifest comes from: ``$NPM_KINDNET_MANIFEST`` if set, else the pinned copy."""
    return environ.get(KINDNET_ENV) or str(DEFAULT_MANIFEST)


def read_manifest(location: str) -> str:
    """The text at ``location``, a file or a URL; OSError if it cannot be read."""
    if os.path.exists(location):
        return Path(location).read_text()
    if "://" not in location:
        raise FileNotFoundError(f"no such file: {location}")
    with urllib.request.urlopen(location, timeout=60) as resp:
        return resp.read().decode()


def main(argv: Sequence[str] | None = None) -> int:
    """Write the policy-free manifest; exit 1 (message on stderr) if it cannot be read or is not kindnet's."""
    parser = argparse.ArgumentParser(
        prog="python3 -m conformance.kindnet",
        description="Write kindnet's install manifest with --network-policy=false (the enforcer under test "
        f"must be the only one). Reads --from, else ${KINDNET_ENV}, else {DEFAULT_MANIFEST.relative_to(ROOT)}.",
    )
    parser.add_argument("--from", dest="source", metavar="FILE|URL", help="manifest to read")
    parser.add_argument("--out", metavar="FILE", help="where to write it (default: stdout)")
    args = parser.parse_args(argv)
    location = args.source or manifest_location()
    try:
        text = kindnet_without_policy(read_manifest(location))
    except (OSError, ValueError) as exc:
        print(f"cannot use the kindnet manifest {location}: {exc} (set ${KINDNET_ENV})", file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
