"""Backends: where scenarios run. Each makes a cluster hold a state and probes it.

- ``netns``: a virtual cluster of network namespaces on this machine, one real
  ``azure-npm start`` daemon per node (conformance.backends.netns);
- ``kind``: a kind cluster it creates (or reuses) with the enforcer deployed;
- ``cluster``: any cluster from a kubeconfig (creates and deletes only its own objects).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from kube.model import Cluster, PortSpec


class BackendError(RuntimeError):
    """The backend could not do its job (exit code 3): not a mismatch, a broken harness or cluster."""


@dataclass(frozen=True)
class ProbeRequest:
    """One connection attempt: from pod ``src`` to pod ``dst`` (at ``dst_ip``) on ``port``."""

    src: str
    dst: str
    dst_ip: str
    port: PortSpec


class Backend(Protocol):
    """What the runner needs from a backend."""

    name: str
    default_probe_timeout: float

    def open(self, nodes: Sequence[str]) -> dict[str, str]:
        """Make ``nodes`` exist; return each node's address."""
        ...

    def sync_workloads(self, cluster: Cluster, serve: Sequence[PortSpec] = ()) -> Cluster:
        """Make the cluster hold exactly these namespaces and pods; return them as they are
        (with the addresses the backend gave them). Every pod also serves ``serve`` (ports
        probed explicitly), without declaring them: declared ports stay the pod's own."""
        ...

    def sync_policies(self, cluster: Cluster, manifests: Sequence[Mapping[str, Any]]) -> None:
        """Make the enforcer see ``cluster`` with exactly these NetworkPolicies."""
        ...

    def probe(self, requests: Sequence[ProbeRequest], timeout: float) -> list[bool | None]:
        """Real connections; None for a probe that cannot be made (e.g. no SCTP)."""
        ...

    def close(self) -> None:
        """Remove everything the backend created."""
        ...
