"""Hostile and malformed input: every tool refuses it cleanly, fast, and leaves the kernel alone.

The corpus (``refuse/``, ``mixed/``, ``valid/``, indexed by ``expect.yaml``) is written by
``make_corpus.py``; oversized documents are generated here at run time. For every hostile
file, ``npm-sim lint``, ``npm-conformance validate`` and ``azure-npm apply`` must:

* exit with 2 (bad input), a located error on stderr naming the file (and the field, where
  ``expect.yaml`` gives one), no Python traceback, stderr of bounded size;
* finish well under 2 s in bounded memory;
* ``azure-npm apply`` only: leave the kernel as it was (``test_apply_of_every_hostile_file_...``).

Each call runs the CLI's ``main`` in a forked copy of this process (no new interpreter, so it
is cheap) with its output captured, its address space capped, and a hard kill when it runs
too long: an in-process alarm cannot interrupt a C parser expanding an alias bomb. The
``azure-npm apply`` calls run in a private network namespace, so a file that is wrongly
accepted changes nothing on the machine running the tests.

Only the three public entry points are imported: ``npm.cli.main``, ``simulator.cli.main``
and ``conformance.cli.main``.

Run (as root for the kernel test; it is skipped otherwise), from the repository root::

    python -m pytest -q tests/hostile --no-header -p no:cacheprovider

``HOSTILE_REPORT=FILE`` appends one JSON line per (file, tool) verdict, for summaries;
``HOSTILE_TIME_LIMIT`` (default 2 s) and ``HOSTILE_KERNEL_BUDGET`` (default 25 s of real
apply calls) tune the limits. ``python tests/hostile/make_corpus.py`` rewrites the corpus.
"""

from __future__ import annotations

import atexit
import ctypes
import importlib.util
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: forked children inherit no BLAS threads

from conformance.cli import main as conformance_main
from npm.cli import main as npm_main
from simulator.cli import main as sim_main

HERE = Path(__file__).resolve().parent
REFUSE, MIXED, VALID = HERE / "refuse", HERE / "mixed", HERE / "valid"
EXPECT: dict[str, dict[str, str]] = yaml.safe_load((HERE / "expect.yaml").read_text())

TIME_LIMIT = float(os.environ.get("HOSTILE_TIME_LIMIT", "2.0"))  # seconds one call may take
KILL_AFTER = TIME_LIMIT + 0.5  # then it is killed and reported as a hang
MEMORY_HEADROOM = 1 << 30  # address space a call may add to what this process already maps
STDERR_LIMIT = 100_000  # bytes: an error message is not a copy of a 50 MB input
EXIT_INPUT = 2
TRACEBACK = "Traceback (most recent call last)"
PWNED = Path("/tmp/azure-npm-hostile-pwned")  # what the python/object/apply tags would create
MAIN_FILE = Path(__file__).resolve()

Main = Callable[[Sequence[str]], Any]


# --- running one CLI call in a fork ------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one CLI call did: exit code (None when it was killed or crashed), output, time."""

    code: int | None
    stdout: str
    stderr: str
    seconds: float
    death: str = ""  # why there is no exit code: "killed after 2.5 s", "signal 11"
    reached_kernel: bool = False  # it ran iptables or ipset (a tripwire stopped it there)

    def text(self) -> str:
        """stdout and stderr together."""
        return self.stdout + self.stderr


class NoIsolation(Exception):
    """Running as root but unable to enter a private network namespace."""


CLONE_NEWNET = 0x40000000
CLONE_NEWUSER = 0x10000000
CODE_NO_ISOLATION = 197
CODE_UNCAUGHT = 198
KERNEL_TOOLS = [
    f"{family}{suffix}{action}"
    for family in ("iptables", "ip6tables")
    for suffix in ("", "-nft", "-legacy")
    for action in ("", "-save", "-restore")
] + ["ipset", "nft", "ip", "modprobe", "xtables-nft-multi", "xtables-legacy-multi"]
TRIPWIRE = '#!/bin/sh\n: > "$HOSTILE_TRIPWIRE"\nkill -KILL "$PPID"\nexit 1\n'


def _tripwire_dir() -> str:
    """A directory of stand-ins for every kernel tool: each records that it ran, then kills its caller."""
    global _TRIPWIRES
    if _TRIPWIRES is None:
        _TRIPWIRES = tempfile.mkdtemp(prefix="hostile-tripwire-")
        atexit.register(shutil.rmtree, _TRIPWIRES, True)
        for name in KERNEL_TOOLS:
            path = os.path.join(_TRIPWIRES, name)
            with open(path, "w") as fh:
                fh.write(TRIPWIRE)
            os.chmod(path, 0o755)
    return _TRIPWIRES


_TRIPWIRES: str | None = None


def _enter_private_netns() -> bool:
    """unshare(2) a new network namespace (through a user namespace when not root)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) == 0:
        return True
    return libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0


def _cap_memory() -> None:
    with open("/proc/self/status") as fh:
        vm = next((int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:")), 0)
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm + MEMORY_HEADROOM
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


@dataclass(frozen=True)
class _Call:
    main: Main
    argv: Sequence[str]
    out: str
    err: str
    code_file: str
    private_netns: bool
    tripwire: str | None  # marker file: kernel tools replaced by tripwires that create it


def _child(call: _Call) -> None:
    """In the fork: redirect output, isolate, cap memory, call ``main``, record the exit code."""
    code = CODE_UNCAUGHT
    try:
        if call.tripwire:
            os.environ["PATH"] = _tripwire_dir()
            os.environ["HOSTILE_TRIPWIRE"] = call.tripwire
        for fd, path in ((1, call.out), (2, call.err)):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(target, fd)
            os.close(target)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        sys.stdin = open(0, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
        sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if call.private_netns and not _enter_private_netns() and os.geteuid() == 0:
            code = CODE_NO_ISOLATION
            return
        _cap_memory()
        try:
            result = call.main(list(call.argv))
            code = result if isinstance(result, int) else 0
        except SystemExit as exc:
            if isinstance(exc.code, int) or exc.code is None:
                code = exc.code or 0
            else:
                print(exc.code, file=sys.stderr)
                code = 1
        except BaseException:
            traceback.print_exc()
            code = CODE_UNCAUGHT
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
            with open(call.code_file, "w") as fh:
                fh.write(str(code))
        finally:
            os._exit(0)


def _read(path: str) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode("utf-8", "backslashreplace")
    except FileNotFoundError:
        return ""


def run_cli(
    main: Main,
    argv: Sequence[str],
    *,
    private_netns: bool = False,
    tripwire: bool = False,
    kill_after: float = KILL_AFTER,
) -> Outcome:
    """Call ``main(argv)`` in a fork: captured output, capped memory, killed after ``kill_after``.

    ``private_netns``: in a network namespace of its own. ``tripwire``: with iptables, ipset
    and friends replaced by stand-ins that stop the call the moment it reaches the kernel.
    """
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        names = ("out", "err", "code", "reached-kernel")
        out, err, code_file, marker = (os.path.join(tmp, n) for n in names)
        if tripwire:
            _tripwire_dir()  # made before the fork, once
        sys.stdout.flush()
        sys.stderr.flush()
        started = time.monotonic()
        pid = os.fork()
        if pid == 0:
            _child(_Call(main, argv, out, err, code_file, private_netns, marker if tripwire else None))
        pidfd = os.pidfd_open(pid)
        death = ""
        try:
            ready, _, _ = select.select([pidfd], [], [], kill_after)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                death = f"killed after {kill_after:.1f} s"
        finally:
            os.close(pidfd)
        _pid, status = os.waitpid(pid, 0)
        seconds = time.monotonic() - started
        reached = os.path.exists(marker)
        if not death and os.WIFSIGNALED(status) and not reached:
            death = f"died of signal {os.WTERMSIG(status)}"
        code_text = _read(code_file)
        code = int(code_text) if code_text and not death and not reached else None
        if code is None and not death and not reached:
            death = "exited without recording an exit code"
        if code == CODE_NO_ISOLATION:
            raise NoIsolation("cannot create a private network namespace for azure-npm apply")
        return Outcome(code, _read(out), _read(err), seconds, death, reached)


# --- the files -----------------------------------------------------------------------------------


def _write_50mb_label_value(path: Path) -> None:
    # Inside a List, so that the object-size limit (3 MiB, for a file holding one object) does
    # not refuse it first: the label check must, with a message of bounded size.
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "huge", "namespace": "prod", "labels": {"app": "w" * 50_000_000}},
        "spec": {"podSelector": {}},
    }
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [policy]}))


def _write_50mb_annotation(path: Path) -> None:
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "huge", "namespace": "prod", "annotations": {"note": "x" * 50_000_000}},
        "spec": {"podSelector": {}},
    }
    path.write_text(json.dumps(policy))


def _write_50mb_ingress_rules(path: Path) -> None:
    rule = '{"from":[{"podSelector":{"matchLabels":{"app":"client"}}}],"ports":[{"protocol":"TCP","port":80}]}'
    count = 50_000_000 // (len(rule) + 1)
    head = '{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"huge","namespace":"prod"},'
    with path.open("w") as fh:
        fh.write(head + '"spec":{"podSelector":{},"ingress":[')
        fh.write(",".join([rule] * count))
        fh.write("]}}")


def _write_50mb_separators(path: Path) -> None:
    path.write_text("---\n" * 12_500_000)


def _write_deep_block_mapping(depth: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with path.open("w") as fh:
            for i in range(depth):
                fh.write(" " * i + "a:\n")
            fh.write(" " * depth + "b: 1\n")

    return write


def _write_deep_json(depth: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.write_text("[" * depth + "]" * depth)

    return write


# name -> (writer, field the error must name or None, why)
GENERATED: dict[str, tuple[Callable[[Path], None], str | None, str]] = {
    "gen-50mb-label-value.json": (_write_50mb_label_value, "metadata.labels", "a 50 MB label value in a List"),
    "gen-50mb-annotation.json": (_write_50mb_annotation, None, "a 50 MB annotation (the API's limit is 256 KiB)"),
    "gen-50mb-ingress-rules.json": (_write_50mb_ingress_rules, None, "one 50 MB NetworkPolicy (request limit 3 MiB)"),
    "gen-50mb-separators.yaml": (_write_50mb_separators, None, "12.5 million empty documents"),
    "gen-deep-yaml-block-mapping-1000.yaml": (_write_deep_block_mapping(1000), None, "1000-deep block mapping"),
    "gen-deep-yaml-block-mapping-10000.yaml": (
        _write_deep_block_mapping(10000),
        None,
        "10000-deep block mapping, 50 MB",
    ),
    "gen-deep-json-array-100000.json": (_write_deep_json(100_000), None, "100000-deep JSON array"),
}


@dataclass(frozen=True)
class HostileFile:
    """One input every tool must refuse."""

    name: str
    folder: str  # refuse, mixed or generated
    field: str | None
    why: str


def _corpus(folder: str) -> list[str]:
    return sorted(name for name, entry in EXPECT.items() if entry["folder"] == folder)


HOSTILE: list[HostileFile] = [
    HostileFile(name, EXPECT[name]["folder"], EXPECT[name].get("field"), EXPECT[name]["why"])
    for name in _corpus("refuse") + _corpus("mixed")
] + [HostileFile(name, "generated", field, why) for name, (_w, field, why) in GENERATED.items()]


@pytest.fixture(scope="session")
def generated_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Where the oversized documents are written, once per session (and removed after it)."""
    root = tmp_path_factory.mktemp("hostile-generated")
    for name, (writer, _field, _why) in GENERATED.items():
        writer(root / name)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def path_of(case: HostileFile, generated: Path | None) -> str:
    """The absolute path of a hostile file."""
    if case.folder == "generated":
        assert generated is not None
        return str(generated / case.name)
    return str(HERE / case.folder / case.name)


# --- the three tools -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tool:
    """A CLI entry point and how to hand it one file."""

    name: str
    main: Main
    argv: Callable[[str], list[str]]
    kernel: bool = False  # azure-npm apply: run it where it cannot touch this machine's kernel


TOOLS = [
    Tool("npm-sim-lint", sim_main, lambda p: ["lint", "-f", p]),
    Tool("npm-conformance-validate", conformance_main, lambda p: ["validate", "-f", p]),
    Tool("azure-npm-apply", npm_main, lambda p: ["apply", "-f", p, "--node-name", "n1"], kernel=True),
]


def call(tool: Tool, path: str, *, with_kernel_tools: bool = False) -> Outcome:
    """Run ``tool`` on ``path``; skip when apply cannot be isolated from this machine's kernel.

    azure-npm apply runs in a private network namespace and, unless ``with_kernel_tools``,
    with tripwires for iptables and ipset: a refusal happens before the kernel is touched, so
    a call that reaches them accepted the input. The real kernel is checked once, for all the
    files, by the kernel test below.
    """
    try:
        return run_cli(
            tool.main, tool.argv(path), private_netns=tool.kernel, tripwire=tool.kernel and not with_kernel_tools
        )
    except NoIsolation as exc:
        pytest.skip(str(exc))


def health_problems(outcome: Outcome) -> list[str]:
    """What is wrong with any call on hostile input, whatever its exit code: hang, traceback..."""
    problems = []
    if outcome.death and not outcome.reached_kernel:
        problems.append(f"hang: {outcome.death}")
    if outcome.code == CODE_UNCAUGHT:
        problems.append("uncaught exception")
    if TRACEBACK in outcome.text():
        problems.append("traceback")
    if not outcome.death and not outcome.reached_kernel and outcome.seconds > TIME_LIMIT:
        problems.append(f"slow: {outcome.seconds:.2f} s")
    if len(outcome.stderr) > STDERR_LIMIT:
        problems.append(f"stderr is {len(outcome.stderr)} bytes")
    if PWNED.exists():
        problems.append(f"{PWNED} exists: a YAML tag ran code")
    return problems


def location_problems(outcome: Outcome, path: str, field: str | None) -> list[str]:
    """Whether an error line names the file and, on the same line, the field."""
    located = [line for line in outcome.stderr.splitlines() if path in line]
    if not located:
        return ["no error names the file"]
    if field and not any(field in line for line in located):
        return [f"no error names the field {field!r}"]
    return []


def refusal_problems(outcome: Outcome, path: str, field: str | None) -> list[str]:
    """Everything wrong with how a hostile file was handled (empty when it was refused well)."""
    problems = []
    if outcome.reached_kernel:
        problems.append("accepted silently (went on to run iptables/ipset)")
    elif outcome.code == 0:
        problems.append("accepted silently (exit 0)")
    elif outcome.code not in (None, EXIT_INPUT, CODE_UNCAUGHT):
        problems.append(f"wrong exit code {outcome.code} (want {EXIT_INPUT})")
    problems += health_problems(outcome)
    if outcome.code not in (0, None):
        problems += location_problems(outcome, path, field)
    return problems


def _record(case: HostileFile, tool: Tool, problems: list[str]) -> None:
    """Append one verdict to $HOSTILE_REPORT (JSON lines), for summaries across the corpus."""
    report = os.environ.get("HOSTILE_REPORT")
    if report:
        category = EXPECT.get(case.name, {}).get("category", case.folder)
        with open(report, "a") as fh:
            fh.write(
                json.dumps({"file": case.name, "category": category, "tool": tool.name, "problems": problems}) + "\n"
            )


def _describe(outcome: Outcome) -> str:
    tail = outcome.stderr[-600:] if len(outcome.stderr) > 600 else outcome.stderr
    return f"exit {outcome.code}, {outcome.seconds:.2f} s, stderr tail:\n{tail}"


# --- the tests -----------------------------------------------------------------------------------


def test_expect_yaml_indexes_exactly_the_committed_files() -> None:
    """Every committed file has an expect.yaml entry and every entry a file."""
    on_disk = {f"{d.name}/{p.name}" for d in (REFUSE, MIXED, VALID) for p in d.iterdir()}
    indexed = {f"{entry['folder']}/{name}" for name, entry in EXPECT.items()}
    assert on_disk == indexed
    assert len(_corpus("refuse")) >= 320


def test_committed_files_are_small_and_match_the_generator(tmp_path: Path) -> None:
    """make_corpus.py regenerates the committed files byte for byte; none is over 24 KB."""
    spec = importlib.util.spec_from_file_location("hostile_make_corpus", HERE / "make_corpus.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    try:
        spec.loader.exec_module(module)
        module.write(tmp_path)
    finally:
        del sys.modules[spec.name]
    for name, entry in EXPECT.items():
        committed = (HERE / entry["folder"] / name).read_bytes()
        assert committed == (tmp_path / entry["folder"] / name).read_bytes(), f"{name}: run make_corpus.py"
        assert len(committed) <= 24_000, name
    assert (HERE / "expect.yaml").read_text() == (tmp_path / "expect.yaml").read_text()


APPLIED_VALID = ("valid-list.yaml", "valid-mixed-good-part.yaml")  # apply is slow: two files cover every kind


@pytest.mark.parametrize(
    ("tool", "name"),
    [
        pytest.param(t, n, id=f"{n}-{t.name}", marks=[pytest.mark.kernel] if t.kernel else [])
        for n in _corpus("valid")
        for t in TOOLS
        if not t.kernel or n in APPLIED_VALID
    ],
)
def test_valid_files_the_cases_are_made_from_are_accepted(tool: Tool, name: str) -> None:
    """The objects the hostile cases edit are valid, so each case fails for its one fault."""
    outcome = call(tool, str(VALID / name), with_kernel_tools=True)
    assert outcome.code == 0 and TRACEBACK not in outcome.text(), _describe(outcome)


@pytest.mark.parametrize(
    ("tool", "case"), [pytest.param(t, c, id=f"{c.name}-{t.name}") for c in HOSTILE for t in TOOLS]
)
def test_hostile_file_is_refused_with_a_located_error(
    tool: Tool, case: HostileFile, request: pytest.FixtureRequest
) -> None:
    """Exit 2, an error naming the file (and field), no traceback, no hang, bounded output."""
    generated = request.getfixturevalue("generated_dir") if case.folder == "generated" else None
    path = path_of(case, generated)
    outcome = call(tool, path)
    problems = refusal_problems(outcome, path, case.field)
    _record(case, tool, problems)
    assert not problems, f"{case.name} ({case.why}) via {tool.name}: {'; '.join(problems)}\n{_describe(outcome)}"


GOOD_PODS = {"prod/web", "prod/client", "prod/other"}


@pytest.mark.parametrize("name", _corpus("mixed"))
def test_skip_invalid_analyses_the_good_objects_and_locates_the_bad_one(name: str) -> None:
    """npm-sim --skip-invalid: the good pods and policy are analysed, the bad object reported."""
    entry = EXPECT[name]
    path = str(MIXED / name)
    argv = ["reach", "-f", path, "--port", "80/TCP", "-o", "json", "--skip-invalid"]
    outcome = run_cli(sim_main, argv)
    problems = health_problems(outcome) + location_problems(outcome, path, entry.get("field"))
    if outcome.code != 0:
        problems.append(f"exit {outcome.code} with --skip-invalid (want 0)")
    else:
        try:
            rows = json.loads(outcome.stdout)["connections"]
        except (ValueError, KeyError, TypeError):
            rows = []
            problems.append("stdout is not reach JSON")
        allowed = {(r["src"], r["dst"]): r["allowed"] for r in rows}
        pods = {src for src, _dst in allowed}
        if pods != GOOD_PODS:
            problems.append(f"analysed pods {sorted(pods)}, want {sorted(GOOD_PODS)}")
        if allowed.get(("prod/client", "prod/web")) is not True:
            problems.append("prod/client -> prod/web should be allowed by the good policy")
        if allowed.get(("prod/other", "prod/web")) is not False:
            problems.append("prod/other -> prod/web should be denied (the good policy isolates web)")
    bad = entry.get("object")
    if bad and not any(path in line and bad in line for line in outcome.stderr.splitlines()):
        problems.append(f"no error names the bad object {bad!r}")
    assert not problems, f"{name} ({entry['why']}): {'; '.join(problems)}\n{_describe(outcome)}"


# --- the kernel: apply every hostile file in one namespace, then compare -------------------------

_COUNTERS = re.compile(r"\[\d+:\d+\]")
_INITVAL = re.compile(r" initval 0x[0-9a-f]+")
SNAPSHOT_TOOLS = (
    ("iptables-nft-save",),
    ("iptables-legacy-save",),
    ("ip6tables-nft-save",),
    ("ip6tables-legacy-save",),
    ("ipset", "save"),
)


def kernel_snapshot() -> str:
    """iptables (both backends, v4 and v6) and ipsets of this network namespace, normalised."""
    parts = []
    for argv in SNAPSHOT_TOOLS:
        exe = shutil.which(argv[0])
        if exe is None:
            continue
        res = subprocess.run([exe, *argv[1:]], capture_output=True, text=True, timeout=30, check=False)
        lines = [
            _INITVAL.sub("", _COUNTERS.sub("[0:0]", line))
            for line in res.stdout.splitlines()
            if line.strip() and not line.startswith("#")
        ]
        if argv[0] == "ipset":
            lines.sort()
        parts.append(f"## {argv[0]}\n" + "\n".join(lines))
    return "\n".join(parts) + "\n"


CHECK_EVERY = 25  # also compare after this many files in a row that all exited 2
DRIVER_BUDGET = float(os.environ.get("HOSTILE_KERNEL_BUDGET", "25"))  # seconds of real apply calls


def apply_driver(baseline: str, files: Sequence[str], budget: float = DRIVER_BUDGET) -> dict[str, Any]:
    """Inside the test namespace: apply ``baseline``, then every file, recording kernel changes.

    The kernel is compared with the baseline after every call that did not exit 2 and after
    every ``CHECK_EVERY`` calls; on a change the culprit (or the range it is in) is recorded
    and the baseline re-applied, so later files are judged against the same state. Refusals
    take milliseconds, but a file that gets through costs a real apply and a restore: after
    ``budget`` seconds the remaining files run with tripwires instead of kernel tools, and
    those that reach a tripwire are recorded as changing the kernel without being applied.
    """
    apply = ["apply", "--node-name", "n1", "-f"]
    deadline = time.monotonic() + budget
    first = run_cli(npm_main, [*apply, baseline], kill_after=30)
    if first.code != 0:
        return {"error": f"the baseline did not apply: {_describe(first)}"}
    before = kernel_snapshot()

    def restore() -> bool:
        return run_cli(npm_main, [*apply, baseline], kill_after=30).code == 0 and kernel_snapshot() == before

    def diff() -> list[str]:
        lines = sorted(set(before.splitlines()) ^ set(kernel_snapshot().splitlines()))
        return [line[:100] for line in lines[:2]]

    changed: list[dict[str, Any]] = []
    tripped: list[str] = []
    unchecked: list[str] = []
    for index, path in enumerate(files):
        if time.monotonic() > deadline:
            if run_cli(npm_main, [*apply, path], tripwire=True).reached_kernel:
                tripped.append(path)
            continue
        outcome = run_cli(npm_main, [*apply, path])
        unchecked.append(path)
        if outcome.code == EXIT_INPUT and len(unchecked) < CHECK_EVERY and index != len(files) - 1:
            continue
        if kernel_snapshot() != before:
            blamed, seen = unchecked, diff()
            if outcome.code != EXIT_INPUT and len(unchecked) > 1:
                # The call that got through changed the kernel; did the refusals before it too?
                if not restore():
                    return {"error": f"could not restore the baseline after {path}", "changed": changed}
                for earlier in unchecked[:-1]:
                    run_cli(npm_main, [*apply, earlier])
                if kernel_snapshot() != before:
                    changed.append({"files": unchecked[:-1], "code": EXIT_INPUT, "diff": diff()})
                blamed = unchecked[-1:]
            changed.append({"files": blamed, "code": outcome.code, "diff": seen})
            if not restore():
                return {"error": f"could not restore the baseline after {path}", "changed": changed}
        unchecked = []
    return {"changed": changed, "tripped": tripped}


def _culprit(files: Sequence[str]) -> str:
    if len(files) == 1:
        return Path(files[0]).name
    return f"one of {len(files)} files from {Path(files[0]).name} to {Path(files[-1]).name}"


@pytest.mark.kernel
def test_apply_of_every_hostile_file_leaves_the_kernel_unchanged(generated_dir: Path) -> None:
    """In a fresh namespace holding one applied policy, no hostile file changes a rule or set."""
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2")
    files = [path_of(case, generated_dir) for case in HOSTILE]
    netns = f"npm-hostile-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", netns], check=True, capture_output=True)
    exec_in = ["ip", "netns", "exec", netns]
    try:
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
            json.dump(files, fh)
            listing = fh.name
        try:
            res = subprocess.run(
                [
                    *exec_in,
                    sys.executable,
                    str(MAIN_FILE),
                    "--apply-driver",
                    str(VALID / "valid-baseline.yaml"),
                    listing,
                ],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
                cwd=str(HERE.parent.parent),
            )
        finally:
            os.unlink(listing)
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False, capture_output=True)
    assert res.returncode == 0, f"the driver failed:\n{res.stderr[-3000:]}"
    report = json.loads(res.stdout.strip().splitlines()[-1])
    assert "error" not in report, report
    culprits = [f"{_culprit(c['files'])} (exit {c['code']}): {c['diff']}" for c in report["changed"]]
    tripped = [Path(f).name for f in report["tripped"]]
    summary = f"{len(culprits)} apply call(s) changed the kernel:\n" + "\n".join(culprits)
    if tripped:
        summary += (
            f"\nand, past the {DRIVER_BUDGET:.0f} s budget for real applies, {len(tripped)} more went on to run"
            f" iptables/ipset: {', '.join(tripped)}"
        )
    assert not culprits and not tripped, summary


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--apply-driver":
        with open(sys.argv[3]) as listing_file:
            hostile_files = json.load(listing_file)
        print(json.dumps(apply_driver(sys.argv[2], hostile_files)))
        sys.exit(0)
    sys.exit(f"usage: {sys.argv[0]} --apply-driver BASELINE FILES.json")
