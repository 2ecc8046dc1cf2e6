"""Whether the simulator evaluates ClusterNetworkPolicies yet, asked of the simulator itself.

The harness carries ClusterNetworkPolicies to the simulator and to the enforcer; the
simulator's tiers land separately. Until they do, a check of the upstream expectations against
the simulator can only say that it ignores them, so such checks skip, naming why. The answer
comes from behaviour (an Admin Deny of everything), not from a flag anyone could forget.
"""

from __future__ import annotations

from functools import cache

from kube.manifests import cluster_network_policy, cluster_of, namespace, pod
from kube.model import PortSpec
from simulator.engine import Simulator


@cache
def simulator_evaluates_cluster_network_policies() -> bool:
    """Whether an Admin ClusterNetworkPolicy denying all ingress makes the simulator deny."""
    deny_all = cluster_network_policy(
        "deny-all", ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}], subject={"namespaces": {}}
    )
    cluster = cluster_of(
        [namespace("x"), pod("x", "a", ip="10.244.0.10"), pod("x", "b", ip="10.244.0.11"), deny_all]
    )
    return not Simulator(cluster).allowed("x/a", "x/b", PortSpec(80))
