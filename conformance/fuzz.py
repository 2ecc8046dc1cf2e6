"""Differential testing: the simulator against the netns dataplane on random clusters.

``python -m conformance.fuzz --cases 1000 --seed 0`` draws random scenarios
(:mod:`conformance.fuzz_model`) with hypothesis, runs each on one netns virtual cluster
kept open across cases (each node running the real ``azure-npm start`` daemon, exactly as
``npm-conformance run --backend netns``), and compares every probe with the simulator. A
disagreement is confirmed by running the case again on a fresh state (so a slow daemon is
not mistaken for a wrong one), then shrunk by hypothesis to a minimal scenario, written as
``DIR/disagreement-<hash>.yaml``; ``npm-conformance run -f`` that file reproduces it.
``--cnp`` draws ClusterNetworkPolicies too (tiers, priorities, Accept/Deny/Pass, every peer
kind, fail-closed peers; see :mod:`conformance.fuzz_model`).

Exit codes: 0 every case agreed, 1 a disagreement (its file is named on stderr), 2 bad
usage, 3 backend failure (namespaces, daemon), 130 interrupted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from conformance.backends import BackendError
from conformance.results import ProbeResult, ScenarioResult
from conformance.runner import Runner, RunOptions
from conformance.scenario import parse_scenario
from kube.model import Source

DEFAULT_OUT = "reports/fuzz"
EXIT_OK, EXIT_DISAGREEMENT, EXIT_USAGE, EXIT_BACKEND, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class _PlainDumper(yaml.SafeDumper):
    """No anchors and aliases: a reproducer reads like a hand-written scenario."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(doc: Mapping[str, Any]) -> str:
    return yaml.dump(dict(doc), Dumper=_PlainDumper, sort_keys=False, width=120)


class InvalidCase(ValueError):
    """A drawn scenario that does not load: a bug of the case generator, not of the enforcer."""


class Disagreement(AssertionError):
    """The dataplane and the simulator disagree on a case (raised inside hypothesis)."""

    def __init__(self, doc: Mapping[str, Any], mismatches: Sequence[ProbeResult], errors: Sequence[str]) -> None:
        super().__init__(describe(mismatches, errors))
        self.doc = doc
        self.mismatches = list(mismatches)
        self.errors = list(errors)


def describe(mismatches: Sequence[ProbeResult], errors: Sequence[str] = ()) -> str:
    """One line per disagreeing probe: who said what."""
    lines = [f"step error: {e}" for e in errors]
    for p in mismatches:
        lines.append(
            f"step {p.step + 1}: {p.src} -> {p.dst} {p.port}: simulator "
            f"{'allowed' if p.predicted else 'denied'}, dataplane {'allowed' if p.observed else 'denied'}"
        )
    return "\n".join(lines)


def doc_hash(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:10]


class Differential:
    """Runs scenario documents on one netns backend kept open across them."""

    def __init__(
        self,
        *,
        converge_timeout: float = 5.0,
        probe_timeout: float | None = None,
        manifest_filter: Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
        log: Callable[[str], None] | None = None,
        dataplane: str = "iptables",
    ) -> None:
        from conformance.backends.netns import NetnsBackend

        self.backend = NetnsBackend(manifest_filter=manifest_filter, log=log, dataplane=dataplane)
        self.runner = Runner(self.backend, RunOptions(probe_timeout=probe_timeout, converge_timeout=converge_timeout))
        self.probes = 0

    def __enter__(self) -> Differential:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.backend.close()

    def run(self, doc: Mapping[str, Any]) -> ScenarioResult:
        """Run one scenario document; InvalidCase if it does not load."""
        scenario, errors = parse_scenario(dict(doc), Source("<fuzz>"))
        if scenario is None:
            raise InvalidCase("; ".join(str(e) for e in errors))
        result = self.runner.run_scenario(scenario)
        self.probes += len(result.probes)
        return result

    def check(self, doc: Mapping[str, Any]) -> tuple[list[ProbeResult], list[str]]:
        """Disagreeing probes and step errors of one run (both empty: agreement)."""
        result = self.run(doc)
        errors = [f"steps[{s.index}]: {s.error}" for s in result.steps if s.error]
        return [p for p in result.probes if p.mismatch], errors


def write_reproducer(doc: Mapping[str, Any], disagreement: Disagreement, out_dir: str | Path, seed: int | None) -> Path:
    """``out_dir/disagreement-<hash>.yaml``: the scenario, with what disagreed as comments."""
    directory = Path(out_dir)
    directory.mkdir(parents=True, exist_ok=True)
    digest = doc_hash(doc)
    named = {**doc, "name": f"fuzz disagreement {digest}"}
    named.setdefault("tags", ["fuzz"])
    header = [
        f"# Found by python -m conformance.fuzz{'' if seed is None else f' --seed {seed}'} and shrunk by hypothesis.",
        "# Reproduce: npm-conformance run -f THIS_FILE --backend netns",
        "# What disagreed (simulator = prediction, dataplane = observed):",
        *(f"#   {line}" for line in str(disagreement).splitlines()),
    ]
    path = directory / f"disagreement-{digest}.yaml"
    path.write_text("\n".join(header) + "\n" + dump(named))
    return path


def write_history(
    previous: Mapping[str, Any],
    doc: Mapping[str, Any],
    mismatches: Sequence[ProbeResult],
    out_dir: str | Path,
    seed: int | None,
) -> Path:
    """A disagreement that needs the state a previous case left: both cases, in run order.

    ``npm-conformance run -f DIR`` runs the files of DIR in name order on one backend (pods
    kept), which replays the history.
    """
    digest = doc_hash({"previous": previous, "doc": doc})
    directory = Path(out_dir) / f"history-{digest}"
    directory.mkdir(parents=True, exist_ok=True)
    lines = [
        f"# Found by python -m conformance.fuzz{'' if seed is None else f' --seed {seed}'}: this case disagrees",
        "# only after 1-previous.yaml ran on the same virtual cluster (it agrees on a fresh one).",
        f"# Reproduce: npm-conformance run -f {directory} --backend netns",
        *(f"#   {line}" for line in describe(mismatches).splitlines()),
    ]
    for name, body, header in (("1-previous.yaml", previous, []), ("2-disagrees.yaml", doc, lines)):
        named = {**body, "name": f"fuzz history {digest} {name[0]}", "tags": ["fuzz"]}
        (directory / name).write_text("\n".join(header) + ("\n" if header else "") + dump(named))
    return directory


@dataclass
class FuzzReport:
    """What a fuzz run did."""

    cases: int = 0  # distinct cases run before any disagreement (shrinking not counted)
    probes: int = 0
    transient: int = 0  # disagreements that a fresh virtual cluster did not show again nor a rerun
    history: list[Path] = field(default_factory=list)  # disagreements that need the previous case
    disagreement: Disagreement | None = None
    first: Disagreement | None = None  # as first found, before shrinking
    reproducer: Path | None = None
    shrink_runs: int = 0
    seconds: float = 0.0
    seen: set[str] = field(default_factory=set)

    @property
    def disagreements(self) -> int:
        return len(self.history) + (0 if self.disagreement is None else 1)

    def to_json(self) -> dict[str, Any]:
        return {
            "cases": self.cases,
            "probes": self.probes,
            "disagreements": self.disagreements,
            "reproducer": str(self.reproducer) if self.reproducer else None,
            "mismatches": str(self.disagreement) if self.disagreement else None,
            "history_reproducers": [str(p) for p in self.history],
            "transient": self.transient,
            "shrink_runs": self.shrink_runs,
            "seconds": round(self.seconds, 1),
        }


Filter = Callable[[str, list[dict[str, Any]]], list[dict[str, Any]]]


class _FuzzRun:
    """The state of one differential run: the report, the failing cases seen, the previous
    case (for history-dependent disagreements), and a backend failure once one happened."""

    def __init__(
        self,
        diff: Differential,
        cases: int,
        seed: int,
        out_dir: str | Path,
        *,
        shrink_budget: int,
        fresh: Callable[[], Differential],
        say: Callable[[str], None],
    ) -> None:
        self.diff, self.cases, self.seed, self.out_dir = diff, cases, seed, out_dir
        self.shrink_budget, self.fresh, self.say = shrink_budget, fresh, say
        self.report = FuzzReport()
        self.failing: dict[str, Disagreement] = {}
        self.broken: BaseException | None = None  # every later call fails fast
        self.previous: Mapping[str, Any] | None = None
        self.started = time.monotonic()

    def check(self, doc: dict[str, Any]) -> None:
        """One case (hypothesis calls it): raise :class:`Disagreement` if the two disagree."""
        if self.broken is not None:
            raise self.broken
        key = doc_hash(doc)
        if key in self.failing:
            raise self.failing[key]
        shrinking = bool(self.failing)
        if not self._count(key, shrinking):
            return
        before = self.diff.probes
        try:
            mismatches, errors = self.diff.check(doc)
            if (mismatches or errors) and not shrinking:
                mismatches, errors = self.fresh_check(doc)
                if not (mismatches or errors):
                    self._triage(doc)
        except BackendError as exc:
            self.broken = exc
            raise
        if not shrinking:
            self.previous = doc
            self.report.probes += self.diff.probes - before
            if self.report.cases % 10 == 0 or mismatches or errors:
                rate = self.report.cases / max(time.monotonic() - self.started, 1e-9)
                self.say(f"[{self.report.cases}/{self.cases}] {self.report.probes} probes, {rate:.2f} cases/s")
        if mismatches or errors:
            self.failing[key] = Disagreement(doc, mismatches, errors)
            if len(self.failing) == 1:
                self.say(f"case {self.report.cases}: disagreement, shrinking:\n{describe(mismatches, errors)}")
            raise self.failing[key]

    def _count(self, key: str, shrinking: bool) -> bool:
        """Whether to run this case: a new distinct draw, or a shrink run within the budget."""
        if shrinking:
            self.report.shrink_runs += 1
            return self.report.shrink_runs <= self.shrink_budget  # past it, the smallest so far stands
        if key in self.report.seen or self.report.cases >= self.cases:
            return False  # a duplicate draw, or enough distinct cases already
        self.report.seen.add(key)
        self.report.cases += 1
        return True

    def _triage(self, doc: Mapping[str, Any]) -> None:
        """A disagreement that a fresh cluster does not show: history, or a transient? Run the pair again."""
        again: list[ProbeResult] = []
        if self.previous is not None:
            self.diff.check(self.previous)
            again, _ = self.diff.check(doc)
        if again and self.previous is not None:
            path = write_history(self.previous, doc, again, self.out_dir, self.seed)
            self.report.history.append(path)
            self.say(f"case {self.report.cases}: disagreement after the previous case only; wrote {path}")
        else:
            self.report.transient += 1
            self.say(f"case {self.report.cases}: disagreement did not happen again (transient)")

    def fresh_check(self, doc: Mapping[str, Any]) -> tuple[list[ProbeResult], list[str]]:
        with self.fresh() as fresh:
            return fresh.check(doc)

    def conclude(self, exc: Disagreement) -> None:
        """Shrinking ran on the shared cluster: keep the smallest case only if it still
        disagrees on a fresh one, else the case as first found (confirmed fresh)."""
        first = next(iter(self.failing.values()))
        found = exc
        if exc is not first:
            mismatches, errors = self.fresh_check(exc.doc)
            found = Disagreement(exc.doc, mismatches, errors) if mismatches or errors else first
        self.report.disagreement = found
        self.report.first = first
        self.report.reproducer = write_reproducer(found.doc, found, self.out_dir, self.seed)


def fuzz(
    cases: int,
    seed: int,
    out_dir: str | Path = DEFAULT_OUT,
    *,
    max_steps: int = 3,
    converge_timeout: float = 5.0,
    shrink_budget: int = 150,
    manifest_filter: Filter | None = None,
    progress: Callable[[str], None] | None = None,
    dataplane: str = "iptables",
    cnp: bool = False,
) -> FuzzReport:
    """Draw up to ``cases`` random scenarios and check each on one shared virtual cluster.

    A disagreement is confirmed on a fresh virtual cluster (new namespaces, new daemons).
    If it happens there too, the case alone reproduces it: hypothesis shrinks it on the
    shared cluster within ``shrink_budget`` further runs (past it, only replays of cases
    already seen failing still run, so shrinking ends with the smallest failure found); the
    smallest case is kept if a fresh cluster confirms it (else the case as first found), is
    written with :func:`write_reproducer`, and the run stops. If it does not happen on a
    fresh cluster but again after re-running the previous case, it depends on what that
    case left in the enforcer: the pair is written with :func:`write_history` and the run
    goes on; if neither, it is counted as transient. ``cnp``: the cases have
    ClusterNetworkPolicies too.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed

    from conformance.fuzz_model import strategy

    say = progress or (lambda _msg: None)

    def fresh() -> Differential:
        return Differential(
            converge_timeout=converge_timeout, manifest_filter=manifest_filter, log=say, dataplane=dataplane
        )

    with fresh() as diff:
        run = _FuzzRun(diff, cases, seed, out_dir, shrink_budget=shrink_budget, fresh=fresh, say=say)
        agree = settings(
            max_examples=cases + cases // 10 + 10,  # room for duplicate draws: ``cases`` distinct ones run
            database=None,
            deadline=None,
            phases=[Phase.generate, Phase.shrink],
            suppress_health_check=list(HealthCheck),
            report_multiple_bugs=False,
        )(fixed_seed(seed)(given(strategy(max_steps=max_steps, cnp=cnp))(run.check)))
        try:
            agree()
        except Disagreement as exc:
            run.conclude(exc)
    run.report.seconds = time.monotonic() - run.started
    return run.report


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conformance.fuzz",
        description="Differential testing: random clusters and policies on the netns dataplane (real enforcer "
        "daemons) against the simulator. A disagreement is shrunk to a minimal scenario file that "
        "`npm-conformance run -f FILE` reproduces.",
        epilog="exit codes: 0 no disagreement, 1 disagreement (file written), 2 usage, 3 backend failure, "
        "130 interrupted",
    )
    parser.add_argument("--cases", type=int, default=1000, metavar="N", help="random cases to run (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed: same seed, same cases (default 0)")
    parser.add_argument(
        "--out", default=DEFAULT_OUT, metavar="DIR", help=f"where reproducers go (default {DEFAULT_OUT})"
    )
    parser.add_argument("--max-steps", type=int, default=3, metavar="N", help="steps per case, at most (default 3)")
    parser.add_argument(
        "--converge-timeout", type=float, default=5.0, metavar="S", help="how long a step may take to agree (default 5)"
    )
    parser.add_argument(
        "--shrink-budget", type=int, default=150, metavar="N", help="runs spent shrinking (default 150)"
    )
    parser.add_argument(
        "--dataplane", choices=("iptables", "nftables"), default="iptables",
        help="the enforcer's dataplane (azure-npm start --dataplane; default iptables)",
    )
    parser.add_argument(
        "--cnp",
        action="store_true",
        help="draw ClusterNetworkPolicies too (tiers, priorities, Pass, every peer kind, fail-closed peers); "
        "without it a seed draws the cases it always drew",
    )
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text", help="summary format on stdout")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cases < 1 or args.max_steps < 1:
        print("fuzz: --cases and --max-steps must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    from conformance.netns.rootless import ensure_privileges

    ensure_privileges()  # re-executes under unshare when not root

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, interrupt)  # every ``finally`` (namespaces, daemons) runs

    def progress(message: str) -> None:
        if not args.quiet:
            print(f"fuzz: {message}", file=sys.stderr, flush=True)

    try:
        report = fuzz(
            args.cases,
            args.seed,
            args.out,
            max_steps=args.max_steps,
            converge_timeout=args.converge_timeout,
            shrink_budget=args.shrink_budget,
            progress=progress,
            dataplane=args.dataplane,
            cnp=args.cnp,
        )
    except BackendError as exc:
        print(f"fuzz: backend failure: {exc}", file=sys.stderr)
        return EXIT_BACKEND
    except InvalidCase as exc:  # a bug of conformance.fuzz_model, not of the enforcer
        print(f"fuzz: the case generator drew an invalid scenario: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("fuzz: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.output == "json":
        print(json.dumps(report.to_json()))
    else:
        print(
            f"{report.cases} cases, {report.probes} probes, {report.disagreements} disagreements, "
            f"{report.transient} transient, {report.seconds:.0f}s"
        )
        for path in report.history:
            print(f"disagreement that needs the previous case: npm-conformance run -f {path} --backend netns")
        if report.disagreement is not None:
            print(f"disagreement (shrunk in {report.shrink_runs} runs), reproduce with:")
            print(f"  npm-conformance run -f {report.reproducer} --backend netns")
            print(str(report.disagreement))
    return EXIT_OK if report.disagreements == 0 else EXIT_DISAGREEMENT


if __name__ == "__main__":
    sys.exit(main())
