"""The usage examples of the original Azure NPM README / AKS network policy docs.

A backend (app=webapp, role=backend) in namespace development (purpose=development), a
frontend in the same namespace, another frontend and an unlabelled pod in production
(purpose=production), and the three successive versions of ``backend-policy``.
"""

from __future__ import annotations

from typing import Any

from kube.manifests import cluster_of, container_port, namespace, pod, policy
from kube.model import PortSpec
from simulator.engine import Simulator
from simulator.explain import explain

HTTP = PortSpec(80)
BACKEND = {"app": "webapp", "role": "backend"}
FRONTEND = {"app": "webapp", "role": "frontend"}


def aks_sim(spec: dict[str, Any]) -> Simulator:
    web = [container_port(80, name="http")]
    return Simulator(
        cluster_of(
            [
                namespace("development", {"purpose": "development"}),
                namespace("production", {"purpose": "production"}),
                pod("development", "backend", BACKEND, ports=web),
                pod("development", "frontend", FRONTEND, ports=web),
                pod("development", "other", {"app": "other"}, ports=web),
                pod("production", "frontend", FRONTEND, ports=web),
                pod("production", "other", {"app": "other"}, ports=web),
                policy("development", "backend-policy", spec),
            ]
        )
    )


SOURCES = ("development/frontend", "development/other", "production/frontend", "production/other")


def reachable_sources(sim: Simulator) -> set[str]:
    return {s for s in SOURCES if sim.allowed(s, "development/backend", HTTP)}


def test_deny_all_inbound_traffic_to_a_pod() -> None:
    sim = aks_sim({"podSelector": {"matchLabels": BACKEND}, "ingress": []})
    assert reachable_sources(sim) == set()
    assert not sim.allowed("203.0.113.9", "development/backend", HTTP)
    # Only the backend is isolated: the rest of the namespace is untouched.
    assert sim.allowed("production/other", "development/frontend", HTTP)
    why = explain(sim, "development/frontend", "development/backend", HTTP)
    assert why.ingress.isolated and why.ingress.policies == ("development/backend-policy",)


def test_allow_inbound_traffic_based_on_a_pod_label() -> None:
    sim = aks_sim(
        {
            "podSelector": {"matchLabels": BACKEND},
            "ingress": [{"from": [{"namespaceSelector": {}, "podSelector": {"matchLabels": FRONTEND}}]}],
        }
    )
    assert reachable_sources(sim) == {"development/frontend", "production/frontend"}


def test_allow_traffic_only_from_within_a_defined_namespace() -> None:
    sim = aks_sim(
        {
            "podSelector": {"matchLabels": BACKEND},
            "ingress": [
                {
                    "from": [
                        {
                            "namespaceSelector": {"matchLabels": {"purpose": "development"}},
                            "podSelector": {"matchLabels": FRONTEND},
                        }
                    ]
                }
            ],
        }
    )
    assert reachable_sources(sim) == {"development/frontend"}
    why = explain(sim, "development/frontend", "development/backend", HTTP)
    assert why.ingress.rule is not None
    assert (why.ingress.rule.policy, why.ingress.rule.rule, why.ingress.rule.peer) == (
        "development/backend-policy",
        0,
        0,
    )
