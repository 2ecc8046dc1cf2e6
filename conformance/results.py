"""What a run found: per probe, per step, per scenario. Plain data for the reports."""

from __future__ import annotations

from dataclasses import dataclass, field

from kube.model import PortSpec


@dataclass(frozen=True)
class ProbeResult:
    """One probe: the simulator's verdict, what the dataplane did, and any written expectation."""

    step: int
    src: str
    dst: str
    port: PortSpec
    predicted: bool
    observed: bool | None  # None: skipped (e.g. SCTP without kernel support)
    expected: bool | None = None  # hand-written expectation, when the scenario states one

    @property
    def loopback(self) -> bool:
        return self.src == self.dst

    @property
    def skipped(self) -> bool:
        return self.observed is None

    @property
    def mismatch(self) -> bool:
        """Observed differs from predicted. Loopback never counts (upstream ignores it)."""
        return not self.loopback and self.observed is not None and self.observed != self.predicted

    @property
    def expectation_mismatch(self) -> bool:
        """A written expectation the simulator contradicts (loopback aside).

        Where expectation and simulator agree, the dataplane is held to both by ``mismatch``.
        """
        return self.expected is not None and not self.loopback and self.expected != self.predicted


@dataclass(frozen=True)
class NodeVerify:
    """``azure-npm verify`` on one node after a step: its kernel against the objects it enforces."""

    node: str
    agrees: bool
    connections: int
    mismatched: int
    detail: str = ""  # the verify report's text when it disagrees, or why it could not run

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"node": self.node, "agrees": self.agrees, "connections": self.connections,
                                  "mismatched_connections": self.mismatched}
        if self.detail:
            out["detail"] = self.detail
        return out


@dataclass
class StepResult:
    """The probes of one step and how long the dataplane took to agree."""

    index: int
    name: str = ""
    probes: list[ProbeResult] = field(default_factory=list)
    converged_seconds: float | None = None  # None: did not converge before the deadline
    seconds: float = 0.0
    error: str = ""
    verify: list[NodeVerify] = field(default_factory=list)  # empty: not run (--no-verify, or a remote backend)

    @property
    def verify_failures(self) -> list[NodeVerify]:
        return [v for v in self.verify if not v.agrees]

    @property
    def mismatches(self) -> list[ProbeResult]:
        return [p for p in self.probes if p.mismatch]

    @property
    def expectation_mismatches(self) -> list[ProbeResult]:
        return [p for p in self.probes if p.expectation_mismatch]

    @property
    def skipped(self) -> list[ProbeResult]:
        return [p for p in self.probes if p.skipped]

    @property
    def passed(self) -> bool:
        return not self.error and not self.mismatches and not self.expectation_mismatches and not self.verify_failures


@dataclass
class ScenarioResult:
    """Every step of one scenario."""

    name: str
    source: str
    steps: list[StepResult] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.error and all(s.passed for s in self.steps)

    @property
    def probes(self) -> list[ProbeResult]:
        return [p for s in self.steps for p in s.probes]
