"""Exponential backoff: the one way the enforcer waits between retries."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Waits that double from ``initial`` up to ``maximum`` seconds; with ``jitter`` each is
    drawn from the upper half of its step, so that the nodes of a cluster do not retry in step
    (after an API server restart, say)."""

    initial: float = 0.5
    maximum: float = 30.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        """How long to wait before retry number ``attempt`` (0 is the first)."""
        ceiling = min(self.maximum, self.initial * (2 ** min(attempt, 30)))
        return random.uniform(ceiling / 2, ceiling) if self.jitter else ceiling
