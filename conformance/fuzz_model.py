"""Random small clusters, policies and actions, as scenario documents.

Every random decision goes through a :class:`Chooser`, so the same code serves two masters:
:class:`RandomChooser` (a seeded ``random.Random``: ``npm-conformance generate --random``)
and :class:`DrawChooser` (hypothesis draws: the differential test and ``python -m
conformance.fuzz``, where a disagreement is shrunk). Options are listed simplest first,
because hypothesis shrinks a choice towards the first option and an integer towards its
lower bound.

What is drawn: 1-3 namespaces (x, y, z) with random ``ns``/``env`` labels; 1-3 pods per
namespace (a, b, c) with random ``pod``/``role`` labels, declared ports among 80/81 on TCP
and UDP (unnamed, ``serve-80-tcp`` style, or ``web``, a name meaning different numbers on
different pods) and a hashed address or a fixed one in 10.244.7.0/24; 1-3 valid policies
(selectors with every operator, peers of every shape, ipBlocks with excepts, numbered,
named and ranged ports on every protocol, policyTypes given or defaulted, missing versus
empty lists); then 0-2 further steps, each one action (label or unlabel a pod or a
namespace, add or delete a pod, delete a namespace, create, update or delete a policy).
Every step probes 80 and 81 on TCP and UDP between all pods.

With ``cnp`` (``--cnp``), ClusterNetworkPolicies too: 0-2 at the start besides 0-3
NetworkPolicies, and actions that create, update and delete them. Each has a tier, a priority
among 10, 20 and 30 (so equal priorities in a tier are common), a subject of either form, and
0-2 ingress and egress rules with every action (Accept, Deny, Pass); peers of every kind
(namespaces, pods, and for egress networks, nodes and, in Accept rules, domainNames) and, with
``future_peers``, a peer field this API version does not have (both fail closed); protocols
left out, or port numbers, ranges and (with selector peers only) named ports. The nodes are
labelled ``zone=a`` and ``zone=b`` for ``nodes`` peers, and a random cluster may have a
hostNetwork pod (``h/agent`` on node-2), the one address that a nodes peer matches. Without
``cnp`` nothing of this is drawn, so a seed gives what it gave before.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

NAMESPACES = ("x", "y", "z")
POD_NAMES = ("a", "b", "c")
NODES = 2
PROBE_PORTS = ("80/TCP", "81/TCP", "80/UDP", "81/UDP")
DECLARABLE = ((80, "TCP"), (81, "TCP"), (80, "UDP"), (81, "UDP"))
FIXED_NET = "10.244.7."
NAME_LABEL = "kubernetes.io/metadata.name"
CNP_API_VERSION = "policy.networking.k8s.io/v1alpha2"
CNP_TIERS = ("Admin", "Baseline")
CNP_PRIORITIES = (10, 20, 30)  # few, so that equal priorities in a tier are common; 0 is the netns barrier's
CNP_ACTIONS = ("Deny", "Accept", "Pass")
NODE_LABELS = {"node-1": {"zone": "a"}, "node-2": {"zone": "b"}}
HOST_POD = {
    "namespace": "h",
    "name": "agent",
    "labels": {"pod": "agent"},
    "node": "node-2",
    "hostNetwork": True,
    "ports": [{"port": number, "protocol": proto} for number, proto in DECLARABLE],
}


class Chooser(Protocol):
    """Where random decisions come from."""

    def choice(self, options: Sequence[T]) -> T:
        """One of ``options`` (the first is the simplest)."""
        ...

    def integer(self, low: int, high: int) -> int:
        """An integer in [low, high] (low is the simplest)."""
        ...


class RandomChooser:
    """Decisions from a seeded ``random.Random``: deterministic for a seed."""

    def __init__(self, seed: int | random.Random) -> None:
        self.rng = seed if isinstance(seed, random.Random) else random.Random(seed)

    def choice(self, options: Sequence[T]) -> T:
        return options[self.rng.randrange(len(options))]

    def integer(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)


class DrawChooser:
    """Decisions drawn by hypothesis (``draw`` of a composite strategy or ``st.data()``)."""

    def __init__(self, draw: Callable[[Any], Any]) -> None:
        from hypothesis import strategies as st

        self._st = st
        self.draw = draw

    def choice(self, options: Sequence[T]) -> T:
        return self.draw(self._st.sampled_from(list(options)))

    def integer(self, low: int, high: int) -> int:
        return self.draw(self._st.integers(low, high))


def flag(c: Chooser) -> bool:
    """A coin: False is the simpler side."""
    return c.choice((False, True))


# -- selectors, peers, ports ------------------------------------------------------------
def _expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    req: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        req["values"] = list(values)
    return {"matchExpressions": [req]}


POD_SELECTORS: tuple[dict[str, Any], ...] = (
    {},
    {"matchLabels": {"pod": "a"}},
    {"matchLabels": {"pod": "b"}},
    {"matchLabels": {"role": "web"}},
    _expr("pod", "In", "a", "b"),
    _expr("pod", "NotIn", "a"),
    _expr("role", "Exists"),
    _expr("role", "DoesNotExist"),
    {"matchLabels": {"pod": "c"}, "matchExpressions": [{"key": "role", "operator": "NotIn", "values": ["web", "db"]}]},
)
NAMESPACE_SELECTORS: tuple[dict[str, Any], ...] = (
    {},
    {"matchLabels": {"ns": "x"}},
    {"matchLabels": {"ns": "y"}},
    {"matchLabels": {NAME_LABEL: "z"}},
    _expr("ns", "NotIn", "x"),
    _expr("env", "Exists"),
    {"matchLabels": {"env": "prod"}},
    _expr("env", "DoesNotExist"),
)
POLICY_PORTS: tuple[dict[str, Any], ...] = (
    {"port": 80},
    {"protocol": "UDP"},
    {"protocol": "UDP", "port": 81},
    {"protocol": "TCP", "port": 80, "endPort": 81},
    {"protocol": "UDP", "port": 79, "endPort": 80},
    {"port": "serve-80-tcp"},
    {"protocol": "TCP", "port": "web"},
    {"protocol": "UDP", "port": "web"},
    {"protocol": "UDP", "port": "serve-81-udp"},
    {"protocol": "TCP", "port": "serve-81-udp"},
    {"protocol": "SCTP"},
    {"protocol": "SCTP", "port": 80},
    {},
    {"protocol": "TCP", "port": 81, "endPort": 90},
)


class World:
    """What exists at the current point of the scenario, for drawing valid references.

    ``cnp``: ClusterNetworkPolicies are drawn too; ``future_peers``: their peers may include a
    field this API version does not have (the netns backend passes it on; an API server refuses it).
    """

    def __init__(
        self,
        namespaces: dict[str, dict[str, str]],
        pods: list[dict[str, Any]],
        *,
        cnp: bool = False,
        future_peers: bool = False,
    ) -> None:
        self.namespaces = dict(namespaces)
        self.pods = {f"{p['namespace']}/{p['name']}": p for p in pods}
        self.policies: dict[str, dict[str, Any]] = {}
        self.cluster_policies: dict[str, dict[str, Any]] = {}
        self.protected: set[str] = set()  # pods named by an address placeholder: never deleted
        self.policy_count = 0
        self.cnp = cnp
        self.future_peers = future_peers

    def alive(self) -> list[str]:
        return sorted(self.pods)


def ip_block(c: Chooser, world: World) -> dict[str, Any]:
    """A valid ipBlock: except ranges always strictly inside the cidr."""
    # A hostNetwork pod has its node's address, outside the pod network the fixed cidrs cover.
    alive = [k for k in world.alive() if not world.pods[k].get("hostNetwork")]
    kind = c.choice(("pod32", "net24", "all-pods", "everything", "fixed24", "fixed29"))
    if kind in ("pod32", "net24") and not alive:
        kind = "everything"
    block: dict[str, Any]
    if kind == "pod32":
        key = c.choice(alive)
        world.protected.add(key)
        return {"ipBlock": {"cidr": f"${{ip {key}}}/32"}}
    if kind == "net24":
        key = c.choice(alive)
        world.protected.add(key)
        block = {"cidr": f"${{net {key} 24}}"}
        if flag(c):
            block["except"] = [f"${{ip {key}}}/{c.choice((28, 32))}"]
        return {"ipBlock": block}
    cidr = {
        "all-pods": "10.0.0.0/8",
        "everything": "0.0.0.0/0",
        "fixed24": FIXED_NET + "0/24",
        "fixed29": FIXED_NET + "8/29",
    }[kind]
    block = {"cidr": cidr}
    if kind != "fixed29" and flag(c):
        options = [FIXED_NET + "8/29"]
        if kind != "fixed24":
            options.append(FIXED_NET + "0/24")
            options += [f"${{ip {k}}}/32" for k in alive]
        if kind == "everything":
            options.append("10.244.0.0/16")
        picked = c.choice(options)
        if picked.startswith("${"):
            world.protected.add(picked[len("${ip ") :].split("}")[0])
        block["except"] = [picked]
    return {"ipBlock": block}


def peer(c: Chooser, world: World) -> dict[str, Any]:
    kind = c.choice(("pods", "namespaces", "both", "ipblock"))
    if kind == "ipblock":
        return ip_block(c, world)
    out: dict[str, Any] = {}
    if kind in ("pods", "both"):
        out["podSelector"] = copy.deepcopy(c.choice(POD_SELECTORS))
    if kind in ("namespaces", "both"):
        out["namespaceSelector"] = copy.deepcopy(c.choice(NAMESPACE_SELECTORS))
    return out


def rule(c: Chooser, world: World, peer_field: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    shape = c.choice(("missing", "some", "empty"))
    if shape == "some":
        out[peer_field] = [peer(c, world) for _ in range(c.integer(1, 2))]
    elif shape == "empty":
        out[peer_field] = []
    shape = c.choice(("missing", "some", "empty"))
    if shape == "some":
        out["ports"] = [copy.deepcopy(c.choice(POLICY_PORTS)) for _ in range(c.integer(1, 2))]
    elif shape == "empty":
        out["ports"] = []
    return out


def policy(c: Chooser, world: World, name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    """A valid NetworkPolicy manifest in one of the namespaces that exist."""
    if namespace is None:
        namespace = c.choice(sorted(world.namespaces))
    if name is None:
        world.policy_count += 1
        name = f"p{world.policy_count}"
    spec: dict[str, Any] = {"podSelector": copy.deepcopy(c.choice(POD_SELECTORS))}
    types = c.choice(((), ("Ingress",), ("Egress",), ("Ingress", "Egress")))
    if types:
        spec["policyTypes"] = list(types)
    for field, peer_field in (("ingress", "from"), ("egress", "to")):
        shape = c.choice(("missing", "rules", "empty") if field == "ingress" else ("missing", "empty", "rules"))
        if shape == "rules":
            spec[field] = [rule(c, world, peer_field) for _ in range(c.integer(1, 2))]
        elif shape == "empty":
            spec[field] = []
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}


# -- ClusterNetworkPolicies --------------------------------------------------------------
NODE_SELECTORS: tuple[dict[str, Any], ...] = (
    {},
    {"matchLabels": {"zone": "a"}},
    {"matchLabels": {"kubernetes.io/os": "linux"}},
    _expr("zone", "NotIn", "a"),
)
CNP_PORTS: tuple[dict[str, Any], ...] = (
    {"tcp": {"destinationPort": {"number": 80}}},
    {"udp": {"destinationPort": {"number": 81}}},
    {"tcp": {"destinationPort": {"range": {"start": 80, "end": 81}}}},
    {"udp": {"destinationPort": {"range": {"start": 79, "end": 80}}}},
    {"sctp": {"destinationPort": {"number": 80}}},
    {"tcp": {"destinationPort": {"range": {"start": 81, "end": 90}}}},
)
CNP_NAMED_PORTS: tuple[dict[str, Any], ...] = (
    {"destinationNamedPort": "serve-80-tcp"},
    {"destinationNamedPort": "web"},
    {"destinationNamedPort": "serve-81-udp"},
)
FUTURE_PEER = {"serviceAccounts": {"namespaceSelector": {}}}  # not a v1alpha2 peer: its rule fails closed


def networks(c: Chooser, world: World) -> list[str]:
    """One CIDR (two pods' /24s may be one network, and a list must not repeat one)."""
    alive = world.alive()
    options = ["10.0.0.0/8", "0.0.0.0/0", FIXED_NET + "0/24"]
    kind = c.choice(("fixed", "pod32", "pod24") if alive else ("fixed",))
    if kind == "fixed":
        return [c.choice(options)]
    key = c.choice(alive)
    world.protected.add(key)
    return [f"${{net {key} {32 if kind == 'pod32' else 24}}}"]


def cnp_peer(c: Chooser, world: World, field: str, action: str) -> dict[str, Any]:
    """A peer of a ``field`` (ingress or egress) rule with ``action``."""
    kinds = ["namespaces", "pods"]
    if field == "egress":
        kinds += ["networks", "nodes"]
        if action == "Accept":
            kinds.append("domainNames")  # the API allows them in Accept rules only
    if world.future_peers:
        kinds.append("future")
    kind = c.choice(kinds)
    if kind == "namespaces":
        return {"namespaces": copy.deepcopy(c.choice(NAMESPACE_SELECTORS))}
    if kind == "pods":
        return {
            "pods": {
                "namespaceSelector": copy.deepcopy(c.choice(NAMESPACE_SELECTORS)),
                "podSelector": copy.deepcopy(c.choice(POD_SELECTORS)),
            }
        }
    if kind == "networks":
        return {"networks": networks(c, world)}
    if kind == "nodes":
        return {"nodes": copy.deepcopy(c.choice(NODE_SELECTORS))}
    if kind == "domainNames":
        return {"domainNames": ["example.com"]}
    return copy.deepcopy(FUTURE_PEER)


def cnp_rule(c: Chooser, world: World, field: str, peer_field: str) -> dict[str, Any]:
    action = c.choice(CNP_ACTIONS)
    peers = [cnp_peer(c, world, field, action) for _ in range(c.integer(1, 2))]
    out: dict[str, Any] = {"action": action, peer_field: peers}
    if c.choice(("all", "some")) == "some":
        # A named port is refused beside networks, nodes and domainNames peers.
        named = CNP_NAMED_PORTS if all(set(p) <= {"namespaces", "pods"} for p in peers) else ()
        protocols: list[dict[str, Any]] = []
        for _ in range(c.integer(1, 2)):
            entry = c.choice(CNP_PORTS + named)
            if entry not in protocols:
                protocols.append(copy.deepcopy(entry))
        out["protocols"] = protocols
    return out


def cluster_policy(c: Chooser, world: World, name: str | None = None) -> dict[str, Any]:
    """A valid ClusterNetworkPolicy manifest (``future_peers`` aside, which fail closed)."""
    if name is None:
        world.policy_count += 1
        name = f"c{world.policy_count}"
    spec: dict[str, Any] = {"tier": c.choice(CNP_TIERS), "priority": c.choice(CNP_PRIORITIES)}
    if flag(c):
        spec["subject"] = {
            "pods": {
                "namespaceSelector": copy.deepcopy(c.choice(NAMESPACE_SELECTORS)),
                "podSelector": copy.deepcopy(c.choice(POD_SELECTORS)),
            }
        }
    else:
        spec["subject"] = {"namespaces": copy.deepcopy(c.choice(NAMESPACE_SELECTORS))}
    for field, peer_field in (("ingress", "from"), ("egress", "to")):
        count = c.integer(0, 2)
        if count:
            spec[field] = [cnp_rule(c, world, field, peer_field) for _ in range(count)]
    return {"apiVersion": CNP_API_VERSION, "kind": "ClusterNetworkPolicy", "metadata": {"name": name}, "spec": spec}


# -- cluster ------------------------------------------------------------------------------
def namespace_labels(c: Chooser, name: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    ns = c.choice((name, None, *NAMESPACES))
    if ns is not None:
        labels["ns"] = ns
    env = c.choice((None, "prod", "dev"))
    if env is not None:
        labels["env"] = env
    return labels


def pod_labels(c: Chooser, name: str) -> dict[str, str]:
    labels: dict[str, str] = {}
    value = c.choice((name, None, *POD_NAMES))
    if value is not None:
        labels["pod"] = value
    role = c.choice((None, "web", "db"))
    if role is not None:
        labels["role"] = role
    return labels


def pod(c: Chooser, namespace: str, name: str) -> dict[str, Any]:
    """A pod on a fixed node (so its netns shape is stable across cases) with random labels, ports, IP."""
    ordinal = NAMESPACES.index(namespace) * len(POD_NAMES) + POD_NAMES.index(name)
    ports = []
    web_used = False
    for number, proto in DECLARABLE:
        naming = c.choice(("undeclared", "serve", "unnamed", "web"))
        if naming == "undeclared":
            continue
        entry: dict[str, Any] = {"port": number, "protocol": proto}
        if naming == "serve":
            entry["name"] = f"serve-{number}-{proto.lower()}"
        elif naming == "web" and not web_used:
            entry["name"] = "web"
            web_used = True
        ports.append(entry)
    out: dict[str, Any] = {
        "namespace": namespace,
        "name": name,
        "labels": pod_labels(c, name),
        "node": f"node-{ordinal % NODES + 1}",
        "ports": ports,
    }
    if flag(c):
        out["ip"] = f"{FIXED_NET}{10 + ordinal}"
    return out


def cluster(
    c: Chooser, *, model: bool = False, host: bool = False
) -> tuple[dict[str, dict[str, str]], list[dict[str, Any]]]:
    """Namespaces and pods; with ``model`` the upstream model's (drawn nothing). With ``host``
    a random cluster may also have the hostNetwork pod ``h/agent``."""
    if model:
        return {ns: {"ns": ns} for ns in NAMESPACES}, []
    namespaces = {ns: namespace_labels(c, ns) for ns in NAMESPACES[: c.integer(1, 3)]}
    pods = [pod(c, ns, name) for ns in namespaces for name in POD_NAMES[: c.integer(1, 3)]]
    if host and flag(c):
        namespaces["h"] = {"ns": "h"}
        pods.append(copy.deepcopy(HOST_POD))
    return namespaces, pods


def _model_pods() -> list[dict[str, Any]]:
    return [{"namespace": ns, "name": n, "labels": {"pod": n}} for ns in NAMESPACES for n in POD_NAMES]


# -- actions ------------------------------------------------------------------------------
def action(c: Chooser, world: World) -> dict[str, Any]:
    """One valid action on ``world`` (which it updates)."""
    kinds = ["label-pod", "apply-new", "label-namespace"]
    if world.policies:
        kinds += ["update-policy", "delete-policy"]
    free = [f"{ns}/{n}" for ns in NAMESPACES for n in POD_NAMES if f"{ns}/{n}" not in world.pods]
    if free:
        kinds.append("add-pod")
    deletable = [k for k in world.alive() if k not in world.protected]
    if len(deletable) > 1:
        kinds.append("delete-pod")
    protected_ns = {k.split("/")[0] for k in world.protected}
    doomed = [ns for ns in sorted(world.namespaces) if ns not in protected_ns]
    if len(world.namespaces) > 1 and doomed:
        kinds.append("delete-namespace")
    if world.cnp:
        kinds.append("apply-new-cnp")
        if world.cluster_policies:
            kinds += ["update-cnp", "delete-cnp"]
    kind = c.choice(kinds)
    if kind in ("apply-new-cnp", "update-cnp", "delete-cnp"):
        return cnp_action(c, world, kind)
    if kind == "label-pod" and world.pods:
        key = c.choice(world.alive())
        labels = pod_labels(c, key.split("/")[1])
        remove = [k for k in ("pod", "role") if k not in labels and k in world.pods[key]["labels"]]
        world.pods[key] = {**world.pods[key], "labels": labels}
        body: dict[str, Any] = {"pod": key}
        if labels:
            body["set"] = labels
        if remove or not labels:
            body["remove"] = remove or ["pod"]
        return {"label": body}
    if kind == "label-namespace":
        ns = c.choice(sorted(world.namespaces))
        labels = namespace_labels(c, ns)
        remove = [k for k in ("ns", "env") if k not in labels]
        world.namespaces[ns] = labels
        body = {"namespace": ns}
        if labels:
            body["set"] = labels
        if remove:
            body["remove"] = remove
        return {"label": body}
    if kind == "update-policy":
        key = c.choice(sorted(world.policies))
        ns, name = key.split("/")
        manifest = policy(c, world, name=name, namespace=ns)
        world.policies[key] = manifest
        return {"apply": manifest}
    if kind == "delete-policy":
        key = c.choice(sorted(world.policies))
        del world.policies[key]
        return {"delete": {"policy": key}}
    if kind == "add-pod":
        key = c.choice(free)
        ns, name = key.split("/")
        new = pod(c, ns, name)
        world.pods[key] = new
        world.namespaces.setdefault(ns, {})
        return {"add": {"pod": new}}
    if kind == "delete-pod":
        key = c.choice(deletable)
        del world.pods[key]
        return {"delete": {"pod": key}}
    if kind == "delete-namespace":
        ns = c.choice(doomed)
        del world.namespaces[ns]
        world.pods = {k: v for k, v in world.pods.items() if not k.startswith(ns + "/")}
        world.policies = {k: v for k, v in world.policies.items() if not k.startswith(ns + "/")}
        return {"delete": {"namespace": ns}}
    manifest = policy(c, world)
    world.policies[f"{manifest['metadata']['namespace']}/{manifest['metadata']['name']}"] = manifest
    return {"apply": manifest}


def cnp_action(c: Chooser, world: World, kind: str) -> dict[str, Any]:
    """Create, update or delete a ClusterNetworkPolicy of ``world`` (which it updates)."""
    if kind == "delete-cnp":
        name = c.choice(sorted(world.cluster_policies))
        del world.cluster_policies[name]
        return {"delete": {"clusterNetworkPolicy": name}}
    name = c.choice(sorted(world.cluster_policies)) if kind == "update-cnp" else None
    manifest = cluster_policy(c, world, name=name)
    world.cluster_policies[manifest["metadata"]["name"]] = manifest
    return {"apply": manifest}


def scenario(
    c: Chooser,
    *,
    name: str = "fuzz",
    model: bool = False,
    max_steps: int = 3,
    cnp: bool = False,
    future_peers: bool = True,
) -> dict[str, Any]:
    """A random scenario document (no expectations: the simulator predicts).

    ``model``: the upstream model's cluster instead of a random one (the policies and
    actions stay random); used by ``npm-conformance generate --random``. ``cnp``:
    ClusterNetworkPolicies too (module docstring); ``future_peers`` (with ``cnp``): their
    peers may have a field this API version lacks, which only the netns backend accepts.
    """
    namespaces, pods = cluster(c, model=model, host=cnp)
    world = World(namespaces, pods if not model else _model_pods(), cnp=cnp, future_peers=future_peers)
    policies = []
    for _ in range(c.integer(0 if cnp else 1, 3)):
        manifest = policy(c, world)
        world.policies[f"{manifest['metadata']['namespace']}/{manifest['metadata']['name']}"] = manifest
        policies.append(manifest)
    for _ in range(c.integer(0, 2) if cnp else 0):
        manifest = cluster_policy(c, world)
        world.cluster_policies[manifest["metadata"]["name"]] = manifest
        policies.append(manifest)
    steps: list[dict[str, Any]] = [{}]
    for _ in range(c.integer(0, max_steps - 1)):
        steps.append({"actions": [action(c, world)]})
    if not model:
        for entry in steps:
            entry["probe"] = {"ports": list(PROBE_PORTS)}  # a fresh list each: no YAML anchors
    doc: dict[str, Any] = {"name": name}
    if model:
        doc["model"] = "upstream"
        if cnp:
            doc["nodes"] = copy.deepcopy(NODE_LABELS)
    else:
        doc["nodes"] = copy.deepcopy(NODE_LABELS) if cnp else NODES
        doc["namespaces"] = namespaces
        doc["pods"] = pods
    doc["policies"] = policies
    doc["steps"] = steps
    return doc


def strategy(model: bool = False, max_steps: int = 3, cnp: bool = False) -> Any:
    """A hypothesis strategy of random scenario documents (shrinks towards simpler ones)."""
    from hypothesis import strategies as st

    @st.composite
    def scenarios(draw: Callable[[Any], Any]) -> dict[str, Any]:
        return scenario(DrawChooser(draw), model=model, max_steps=max_steps, cnp=cnp)

    return scenarios()
