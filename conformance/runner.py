"""Run scenarios on a backend: replay each step, probe, compare with the simulator.

Per step: apply the actions to the desired state, make the backend hold it, ask the
simulator for every (source, destination, port) verdict, then probe them all for real. A
probe that disagrees is retried about once a second until it agrees or the step's deadline
(10 s, as the upstream suite polls) passes; the time until every probe agreed is the step's
convergence time. Hand-written expectations are compared with both the simulator and the
dataplane.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conformance.backends import Backend, ProbeRequest
from conformance.results import ProbeResult, ScenarioResult, StepResult
from conformance.scenario import Scenario, Step
from conformance.state import State, StateError, materialize
from kube.model import Cluster, PortSpec
from simulator.engine import Simulator, declared_ports


@dataclass(frozen=True)
class RunOptions:
    """Knobs of a run. ``ports`` (from ``--port``) replaces every step's probe ports."""

    ports: tuple[PortSpec, ...] = ()
    probe_timeout: float | None = None  # None: the backend's default
    converge_timeout: float = 10.0
    retry_interval: float = 1.0
    verify: bool = True  # after each step, azure-npm verify on every node (backends that can)


Progress = Callable[[str], None]


class Runner:
    """Runs scenarios one after another on one backend (which keeps what it can reuse)."""

    def __init__(self, backend: Backend, options: RunOptions = RunOptions(), progress: Progress | None = None) -> None:
        self.backend = backend
        self.options = options
        self.progress = progress or (lambda _msg: None)
        self.completed: list[ScenarioResult] = []  # results so far, for a report after a failure

    def run(self, scenarios: Sequence[Scenario]) -> list[ScenarioResult]:
        """Run every scenario; a BackendError propagates (the caller reports what ran)."""
        results = self.completed = []
        for number, scenario in enumerate(scenarios, start=1):
            self.progress(f"[{number}/{len(scenarios)}] {scenario.name}")
            results.append(self.run_scenario(scenario, f"[{number}/{len(scenarios)}]"))
        return results

    def run_scenario(self, scenario: Scenario, label: str = "") -> ScenarioResult:
        started = time.monotonic()
        result = ScenarioResult(scenario.name, scenario.source)
        node_ips = self.backend.open(scenario.nodes)
        # Ports probed explicitly are served by every pod, declared or not, so that a probe
        # measures policy and never a closed port.
        serve = sorted({*self.options.ports, *(p for s in scenario.steps for p in s.ports)}, key=str)
        state = scenario.initial.copy()
        for step in scenario.steps:
            for action in step.actions:
                state.apply(action)
            step_result = self._run_step(scenario, step, state, node_ips, serve)
            result.steps.append(step_result)
            bad = len(step_result.mismatches) + len(step_result.expectation_mismatches)
            bad += sum(v.mismatched or 1 for v in step_result.verify_failures)
            conv = (
                "" if step_result.converged_seconds is None else f", converged in {step_result.converged_seconds:.1f}s"
            )
            self.progress(
                f"{label} {scenario.name} step {step.index + 1}/{len(scenario.steps)}: "
                f"{len(step_result.probes)} probes, {bad} mismatches{conv}"
            )
        result.seconds = time.monotonic() - started
        return result

    def _run_step(
        self, scenario: Scenario, step: Step, state: State, node_ips: dict[str, str], serve: Sequence[PortSpec]
    ) -> StepResult:
        started = time.monotonic()
        out = StepResult(step.index, step.name)
        actual = self.backend.sync_workloads(state.workloads(node_ips), serve)
        try:
            cluster, manifests = materialize(state, actual, scenario.source)
        except StateError as exc:  # an address-dependent policy that the real addresses break
            out.error = str(exc)
            return out
        self.backend.sync_policies(cluster, manifests)
        sim = Simulator(cluster)
        requests = probe_requests(cluster, step, self.options.ports)
        predicted = [sim.allowed(r.src, r.dst, r.port) for r in requests]
        observed, converged = self._observe(requests, predicted, started)
        for req, pred, obs in zip(requests, predicted, observed, strict=True):
            expected = None
            if step.expect is not None:
                exp = step.expect.for_port(req.port, step.ports)
                expected = exp.verdict(req.src, req.dst) if exp else None
            out.probes.append(ProbeResult(step.index, req.src, req.dst, req.port, pred, obs, expected))
        out.converged_seconds = converged
        verify = getattr(self.backend, "verify", None)
        if self.options.verify and verify is not None:
            out.verify = verify()
        out.seconds = time.monotonic() - started
        return out

    def _observe(
        self, requests: list[ProbeRequest], predicted: list[bool], started: float
    ) -> tuple[list[bool | None], float | None]:
        """Probe everything, then retry disagreeing probes until they agree or time is up."""
        timeout = self.options.probe_timeout or self.backend.default_probe_timeout
        deadline = started + self.options.converge_timeout
        observed = self.backend.probe(requests, timeout) if requests else []

        def pending() -> list[int]:
            return [
                i
                for i, (req, obs) in enumerate(zip(requests, observed, strict=True))
                if obs is not None and req.src != req.dst and obs != predicted[i]
            ]

        todo = pending()
        while todo and time.monotonic() < deadline:
            round_started = time.monotonic()
            again = self.backend.probe([requests[i] for i in todo], timeout)
            for i, value in zip(todo, again, strict=True):
                observed[i] = value
            todo = pending()
            if todo:
                time.sleep(max(0.0, self.options.retry_interval - (time.monotonic() - round_started)))
        return observed, (None if todo else time.monotonic() - started)


def probe_requests(cluster: Cluster, step: Step, override: Sequence[PortSpec] = ()) -> list[ProbeRequest]:
    """Every ordered pod pair (a pod with itself included) on each destination's ports.

    Ports: ``override`` (``--port``) if given, else the step's ``ports``, else the ports the
    destination declares. Ordered by port (protocol, number), then source, then destination.
    """
    pods = sorted(cluster.pods, key=lambda p: (p.namespace, p.name))
    requests = []
    for dst in pods:
        ports = list(override) or list(step.ports) or declared_ports(dst)
        for port in ports:
            for src in pods:
                requests.append(ProbeRequest(src.key, dst.key, dst.ip, port))
    order = {p.key: i for i, p in enumerate(pods)}
    requests.sort(key=lambda r: (r.port.protocol, r.port.port, order[r.src], order[r.dst]))
    return requests


def check_expectations(scenario: Scenario, override: Sequence[PortSpec] = ()) -> list[ProbeResult]:
    """Written expectations the simulator contradicts, on the planned addresses (no dataplane).

    What ``npm-conformance validate`` reports: a scenario's own expectations are checked
    against the simulator before anything runs.
    """
    bad: list[ProbeResult] = []
    state = scenario.initial.copy()
    for step in scenario.steps:
        for action in step.actions:
            state.apply(action)
        if step.expect is None:
            continue
        cluster, _manifests = materialize(state, state.workloads(), scenario.source)
        sim = Simulator(cluster)
        for req in probe_requests(cluster, step, override):
            exp = step.expect.for_port(req.port, step.ports)
            expected = exp.verdict(req.src, req.dst) if exp else None
            result = ProbeResult(
                step.index, req.src, req.dst, req.port, sim.allowed(req.src, req.dst, req.port), None, expected
            )
            if result.expectation_mismatch:
                bad.append(result)
    return bad
