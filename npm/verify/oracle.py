"""What the policies say, from the simulator: the one place where the enforcer consults the
oracle (pyproject's import contracts allow this module, and only it, to import the simulator).

The simulator evaluates policy semantics on its own and never imports the enforcer, so
comparing with it checks the translation rather than repeating it.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, replace

from kube.model import Cluster, Pod, PortSpec
from simulator import semantics
from simulator.engine import Simulator, declared_ports
from simulator.explain import explain
from simulator.outside import outside_endpoints
from simulator.whatif import policy_ports

DEFAULT_PORT = PortSpec(80, "TCP")


@dataclass(frozen=True)
class Endpoint:
    """A source or destination of a checked connection."""

    name: str  # ns/pod, node/NAME, or a CIDR of a block of outside addresses
    ip: str
    pod: Pod | None = None
    node: str = ""  # the node an endpoint is (node/NAME)

    @property
    def ref(self) -> Pod | str:
        return self.pod if self.pod is not None else self.ip


class Oracle:
    """The simulator's verdicts for the pods, nodes and outside addresses of ``cluster``
    (running pods only: a workload's stand-in has no address in any kernel)."""

    def __init__(self, cluster: Cluster) -> None:
        pods = tuple(p for p in cluster.pods if not p.stand_in and p.ip and not p.ip_allocated)
        self.cluster = replace(cluster, pods=pods, workloads=())
        self.sim = Simulator(self.cluster)
        self.extra_ports = policy_ports([self.cluster])
        self._host_pods = any(p.host_network for p in pods)

    def endpoints(self, extra_outside: tuple[str, ...] = ()) -> list[Endpoint]:
        """Pods (hostNetwork ones are their node's address), nodes, a representative of each
        block of outside addresses, and ``extra_outside`` addresses that are none of those."""
        out = [Endpoint(p.key, p.ip, p) for p in self.cluster.pods]
        taken = {p.ip for p in self.cluster.pods}
        for ep in outside_endpoints([self.cluster]):
            out.append(Endpoint(ep.names[0], ep.address, None, ep.node or ""))
            taken.add(ep.address)
        taken |= {n.ip for n in self.cluster.nodes if n.ip}
        out += [Endpoint(ip, ip) for ip in dict.fromkeys(extra_outside) if ip not in taken]
        return out

    def ports(self, dst: Endpoint) -> list[PortSpec]:
        """The ports to check towards ``dst``: those it declares and those the policies name."""
        found = dict.fromkeys([*(declared_ports(dst.pod) if dst.pod else ()), *self.extra_ports])
        return list(found) or [DEFAULT_PORT]

    def kind_key(self, ep: Endpoint) -> Hashable:
        """Endpoints with the same key get the same verdicts from the policies (the
        equivalence class of a pod; any other endpoint is its own)."""
        if ep.pod is None:
            return ("address", ep.ip)
        t = self.sim.classes
        # A hostNetwork pod is its node: the pods of that node bypass policy with it, so where
        # there are any, pods are told apart by node too.
        return ("pod", int(t.pod_class[t.pod_index[ep.pod.key]]), ep.pod.node if self._host_pods else "")

    def bypass(self, src: Endpoint, dst: Endpoint) -> str | None:
        """Why policy does not apply to the pair (a pod and itself, a node and its pods), or None."""
        s, d = self.sim.endpoint(src.ref), self.sim.endpoint(dst.ref)
        return semantics.always_allowed(self.cluster, s, d)

    def allowed(self, src: Endpoint, dst: Endpoint, spec: PortSpec) -> bool:
        return self.sim.allowed(src.ref, dst.ref, spec)

    def because(self, src: Endpoint, dst: Endpoint, spec: PortSpec) -> str:
        """The simulator's account of the verdict, one line."""
        return " / ".join(explain(self.sim, src.ref, dst.ref, spec).render().splitlines()[1:]).strip()
