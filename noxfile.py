"""Development sessions: tests, lint, bench, conformance (and more as the project grows)."""

from __future__ import annotations

import os
import sys

import nox

sys.path.insert(0, os.path.dirname(__file__))
from conformance.netns.rootless import in_user_namespace

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True


def _privileged(args: list[str]) -> list[str]:
    """Kernel work needs root; a non-root user gets it inside a user namespace."""
    return args if os.geteuid() == 0 else in_user_namespace(args)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite (kernel tests included) in parallel."""
    session.install("-e", ".[dev]")
    args = session.posargs or ["-n", "2", "-q"]
    session.run(*_privileged(["python", "-m", "pytest", *args]), external=True)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the whole tree, and the layout's import contracts (pyproject.toml)."""
    session.install("ruff", "import-linter")
    session.run("ruff", "check", ".")
    session.install("-e", ".")  # import-linter reads the packages as Python sees them
    session.run("lint-imports")


@nox.session
def bench(session: nox.Session) -> None:
    """Speed and memory benchmarks; figures are printed, and quoted in the README."""
    session.install("-e", ".[dev]")
    for script in sorted(os.listdir("benchmarks")):
        if script.endswith("_bench.py"):
            session.log(f"== benchmarks/{script}")
            session.run(*_privileged(["python", f"benchmarks/{script}"]), external=True)


@nox.session
def conformance(session: nox.Session) -> None:
    """The main job: every scenario on the embedded netns backend, with reports."""
    session.install("-e", ".")
    args = session.posargs or []
    command = ["npm-conformance", "run", "-f", "scenarios", "--out", "reports/conformance", *args]
    # kind and cluster backends talk to docker and API servers, and --node-image runs podman
    # on the host's namespaces: no private namespace for them.
    remote = any(a in ("kind", "cluster", "--backend=kind", "--backend=cluster") for a in args)
    remote = remote or any(a.startswith("--node-image") for a in args)
    session.run(*(command if remote else _privileged(command)), external=True)


@nox.session
def compare(session: nox.Session) -> None:
    """npm-sim against network-config-analyzer on generated clusters: agreement and time."""
    session.install("-e", ".")
    # nca pins its own dependency versions, so it lives in a venv of its own.
    nca_venv = os.path.join(session.virtualenv.location, "..", "nca")
    if not os.path.exists(os.path.join(nca_venv, "bin", "nca")):
        session.run("python", "-m", "venv", nca_venv)
        session.run(os.path.join(nca_venv, "bin", "pip"), "install", "-q", "network-config-analyzer", external=True)
    session.run("python", "benchmarks/compare_nca.py", "--nca", os.path.join(nca_venv, "bin", "nca"), *session.posargs)


@nox.session
def fuzz(session: nox.Session) -> None:
    """Long differential run (not in CI): simulator vs the netns dataplane on random clusters."""
    session.install("-e", ".[dev]")
    args = session.posargs or ["--cases", "1000", "--seed", "0"]
    command = ["python", "-m", "conformance.fuzz", *args, "--out", "reports/fuzz"]
    session.run(*_privileged(command), external=True)
