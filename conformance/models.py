"""The built-in clusters a scenario names with ``model:``.

- ``upstream``: the NetworkPolicy e2e suite's model (``test/e2e/network/netpol``):
  namespaces x, y, z labelled ``ns=<name>``; pods a, b, c in each labelled ``pod=<name>``,
  each declaring ports 80 and 81 on TCP, UDP and SCTP, named ``serve-80-tcp`` and so on.
  Pods are placed round-robin over the scenario's nodes.
- ``network-policy-api``: the base cluster of the ClusterNetworkPolicy conformance suite of
  kubernetes-sigs/network-policy-api (``conformance/base/manifests.yaml``): namespaces
  ``network-policy-conformance-<house>`` labelled ``conformance-house=<house>``, each with
  the two pods of a StatefulSet labelled like their namespace, declaring ``web`` (80/TCP)
  and ``dns`` (53/UDP); and namespace ``...-forbidden-forrest`` with two hostNetwork pods
  ``centaur-0`` and ``centaur-1`` declaring the suite's host ports. See :data:`NPAPI_PLACEMENT`
  for where the pods run.
"""

from __future__ import annotations

from conformance.state import State
from kube.model import PROTOCOLS, ContainerPort, Labels, Pod

UPSTREAM = "upstream"
UPSTREAM_NAMESPACES = ("x", "y", "z")
UPSTREAM_PODS = ("a", "b", "c")
UPSTREAM_PORTS = (80, 81)

NETWORK_POLICY_API = "network-policy-api"
NPAPI_NAMESPACE_PREFIX = "network-policy-conformance-"
NPAPI_HOUSE_LABEL = "conformance-house"
# (house, StatefulSet): the namespace is NPAPI_NAMESPACE_PREFIX + house, pods <set>-0 and <set>-1.
NPAPI_HOUSES = (
    ("gryffindor", "harry-potter"),
    ("slytherin", "draco-malfoy"),
    ("hufflepuff", "cedric-diggory"),
    ("ravenclaw", "luna-lovegood"),
)
NPAPI_HOST_NETWORK_HOUSE = ("forbidden-forrest", "centaur")  # upstream's spelling
# The suite's host-network ports: its default range (34345 and the 7 after it), in its order:
# [0] and [1] TCP, [2] and [4] UDP, [6] and [7] SCTP ([3] and [5] are netexec's HTTP ports).
NPAPI_HOST_PORTS = tuple(range(34345, 34353))
# Where the pods run. Upstream leaves placement to the scheduler; ours is fixed so that every
# probe upstream states between a pod and a hostNetwork pod crosses nodes (the API leaves
# traffic between a pod and its own node to the implementation), with two nodes as on the kind
# cluster: gryffindor's pods (the clients of the node tests) and every ``-0`` pod on node-1,
# the other ``-1`` pods on node-2, centaur-0 on node-1 and centaur-1 (the node tests' server)
# on node-2.
NPAPI_NODES = ("node-1", "node-2")


def npapi_namespace(house: str) -> str:
    """The namespace of a house: ``network-policy-conformance-<house>``."""
    return NPAPI_NAMESPACE_PREFIX + house


def npapi_node(house: str, ordinal: int) -> str:
    """The node pod ``<set>-<ordinal>`` of ``house`` runs on (see :data:`NPAPI_NODES`)."""
    if house == NPAPI_HOUSES[0][0]:
        return NPAPI_NODES[0]
    return NPAPI_NODES[ordinal % len(NPAPI_NODES)]


def upstream_model(state: State) -> None:
    """Upstream's model: namespaces x, y, z (ns=x); pods a, b, c (pod=a); 80/81 on each protocol."""
    ports = tuple(
        ContainerPort(port, proto, f"serve-{port}-{proto.lower()}") for port in UPSTREAM_PORTS for proto in PROTOCOLS
    )
    for ns in UPSTREAM_NAMESPACES:
        state.add_namespace(ns, {"ns": ns})
    for ns in UPSTREAM_NAMESPACES:
        for name in UPSTREAM_PODS:
            state.add_pod(Pod(ns, name, Labels({"pod": name}), ports=ports))


def network_policy_api_model(state: State) -> None:
    """network-policy-api's conformance base: four houses of two pods, two hostNetwork centaurs.

    Raises :class:`conformance.state.StateError` if the scenario lacks node-1 or node-2.
    """
    house_ports = (ContainerPort(80, "TCP", "web"), ContainerPort(53, "UDP", "dns"))
    p = NPAPI_HOST_PORTS
    host_ports = (
        ContainerPort(p[0], "TCP", f"web-{p[0]}"),
        ContainerPort(p[1], "TCP", f"web-{p[1]}"),
        ContainerPort(p[2], "UDP", f"dns-{p[2]}"),
        ContainerPort(p[4], "UDP", f"dns-{p[4]}"),
    )
    houses = [(house, pods, house_ports, False) for house, pods in NPAPI_HOUSES]
    houses.append((*NPAPI_HOST_NETWORK_HOUSE, host_ports, True))
    for house, _pods, _ports, _host in houses:
        state.add_namespace(npapi_namespace(house), {NPAPI_HOUSE_LABEL: house})
    for house, pods, ports, host_network in houses:
        for ordinal in range(2):
            pod = Pod(
                npapi_namespace(house),
                f"{pods}-{ordinal}",
                Labels({NPAPI_HOUSE_LABEL: house}),
                node=npapi_node(house, ordinal),
                host_network=host_network,
                ports=ports,
            )
            state.add_pod(pod, "model")
