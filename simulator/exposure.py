"""Exposure: what a compromised pod can reach, and which pods are most exposed.

The reachability graph is built over equivalence classes of pods (``simulator.classes``),
never per pod: an edge ``a -> b`` exists when some port of ``ports`` is allowed from class
``a`` to class ``b``. A self edge of a one-pod class is dropped (a pod reaching itself is
not exposure). Transitive reach uses networkx's strongly connected components and the
condensation DAG: the classes reachable from a class are computed once per component, in
reverse topological order, as numpy bit rows, so thousands of pods cost milliseconds.

Per-pod exceptions (a node reaching its own pods) are not edges: exposure is about pods.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np

from kube.model import Pod, PortSpec
from simulator.classes import declaring
from simulator.diff_render import fold_ports, workload
from simulator.engine import Simulator


@dataclass
class ClassGraph:
    """Class-level reachability on ``ports`` with transitive closure over SCCs."""

    sim: Simulator
    ports: tuple[PortSpec, ...]
    adj: np.ndarray  # bool [C, C]: any port allowed (self edges of one-pod classes removed)
    per_port: dict[PortSpec, np.ndarray]  # same, per port
    reach: np.ndarray  # bool [C, C]: class b reachable from class a in one or more hops
    graph: nx.DiGraph
    seconds: float = 0.0
    workloads: dict[str, np.ndarray] = field(default_factory=dict)  # workload -> class ids
    workload_pods: dict[str, int] = field(default_factory=dict)  # workload -> number of pods


def build(sim: Simulator, ports: Sequence[PortSpec], *, declared_only: bool = False) -> ClassGraph:
    """Build the class graph and its transitive closure. With ``declared_only`` (no --port,
    as in ``reach``) an edge needs a port the destination declares."""
    started = time.perf_counter()
    t = sim.classes
    count = t.count
    lonely = np.flatnonzero(t.sizes == 1)
    per_port: dict[PortSpec, np.ndarray] = {}
    adj = np.zeros((count, count), dtype=bool)
    for spec in ports:
        m = sim.class_matrix(spec).copy()
        m[lonely, lonely] = False
        if declared_only:
            m[:, ~declaring(t, spec)] = False
        per_port[spec] = m
        adj |= m
    graph = nx.DiGraph()
    graph.add_nodes_from(range(count))
    graph.add_edges_from(zip(*(a.tolist() for a in np.nonzero(adj)), strict=True))
    cond = nx.condensation(graph)
    mapping = cond.graph["mapping"]  # class -> component
    comp_of = np.array([mapping[c] for c in range(count)], dtype=np.int64).reshape(count)
    k = cond.number_of_nodes()
    comp_reach = np.zeros((k, k), dtype=bool)  # component j reachable from component i (>= 1 hop)
    for i in reversed(list(nx.topological_sort(cond))):
        members = cond.nodes[i]["members"]
        if len(members) > 1 or any(adj[c, c] for c in members):
            comp_reach[i, i] = True
        succ = list(cond.successors(i))
        if succ:
            comp_reach[i, succ] = True
            comp_reach[i] |= np.logical_or.reduce(comp_reach[succ], axis=0)
    reach = comp_reach[np.ix_(comp_of, comp_of)]
    # From the pods, not from class representatives: a class can hold pods of several
    # workloads (classes ignore labels no policy looks at) and a workload span classes.
    wl: dict[str, dict[int, None]] = {}
    pods_of: dict[str, int] = {}
    for pod, c in zip(t.pods, t.pod_class.tolist(), strict=True):
        w = workload(pod)
        wl.setdefault(w, {})[c] = None
        pods_of[w] = pods_of.get(w, 0) + 1
    return ClassGraph(sim, tuple(ports), adj, per_port, reach, graph, time.perf_counter() - started,
                      {w: np.array(sorted(cs), dtype=np.int64) for w, cs in sorted(wl.items())}, pods_of)


def _class_of(sim: Simulator, pod: Pod) -> int:
    return int(sim.classes.pod_class[sim.classes.pod_index[pod.key]])


def _bfs(adj: np.ndarray, start: int) -> tuple[np.ndarray, np.ndarray]:
    """(hops, parent) over classes from ``start`` counting paths of one or more edges."""
    count = adj.shape[0]
    hops = np.full(count, -1, dtype=np.int64)
    parent = np.full(count, -1, dtype=np.int64)
    frontier = np.array([start])
    depth = 0
    while len(frontier):
        depth += 1
        sub = adj[frontier]
        new = sub.any(axis=0) & (hops < 0)
        nxt = np.flatnonzero(new)
        hops[nxt] = depth
        parent[nxt] = frontier[np.argmax(sub[:, nxt], axis=0)]
        frontier = nxt
    return hops, parent


def from_pod(cg: ClassGraph, pod: Pod, *, hops: int | None = None) -> dict[str, Any]:
    """What ``pod`` reaches: one hop (with ports), transitively (with a shortest path each),
    and a per-workload summary. ``hops`` limits the transitive search."""
    started = time.perf_counter()
    sim, t = cg.sim, cg.sim.classes
    c0 = _class_of(sim, pod)
    depth, parent = _bfs(cg.adj, c0)
    if hops is not None:
        depth[depth > hops] = -1
    few: dict[int, list[str]] = {}  # up to three members per class, for path stops
    for i, c in enumerate(t.pod_class.tolist()):
        if len(few.setdefault(c, [])) < 3:
            few[c].append(t.pods[i].key)

    def via(c: int, avoid: set[str]) -> str:
        return next((k for k in few[c] if k not in avoid), few[c][0])

    one_hop, transitive = [], []
    for target in t.pods:
        if target.key == pod.key:
            continue
        c = int(t.pod_class[t.pod_index[target.key]])
        if depth[c] < 0:
            continue
        chain = [c]
        while chain[-1] != c0 or len(chain) == 1:
            p = int(parent[chain[-1]])
            chain.append(p)
            if p == c0:
                break
        chain.reverse()  # c0 ... c
        avoid = {pod.key, target.key}
        path = [pod.key] + [via(x, avoid) for x in chain[1:-1]] + [target.key]
        entry = {"pod": target.key, "hops": int(depth[c]), "path": path}
        transitive.append(entry)
        if depth[c] == 1:
            ports = [str(s) for s in cg.ports if cg.per_port[s][c0, c]]
            one_hop.append({"pod": target.key, "ports": ports})
    per_wl: dict[str, dict[str, Any]] = {}
    for e in transitive:
        w = workload(sim.cluster.pod_by_key[e["pod"]])
        d = per_wl.setdefault(w, {"workload": w, "pods": 0, "one_hop_pods": 0, "ports": set(), "min_hops": e["hops"]})
        d["pods"] += 1
        d["min_hops"] = min(d["min_hops"], e["hops"])
    for e in one_hop:
        d = per_wl[workload(sim.cluster.pod_by_key[e["pod"]])]
        d["one_hop_pods"] += 1
        d["ports"].update(e["ports"])
    workloads = sorted(per_wl.values(), key=lambda d: (-d["pods"], d["workload"]))
    for d in workloads:
        d["ports"] = _fold(d["ports"])
    return {
        "from": pod.key,
        "ports": [str(s) for s in cg.ports],
        "hops_limit": hops,
        "one_hop": {"count": len(one_hop), "targets": one_hop},
        "transitive": {"count": len(transitive), "targets": transitive},
        "workloads": workloads,
        "seconds": round(cg.seconds + time.perf_counter() - started, 4),
    }


def outside_from_pod(cg: ClassGraph, pod: Pod, endpoints: Sequence[Any], *, hops: int | None = None) -> dict[str, Any]:
    """The nodes and blocks of outside addresses ``pod`` can open connections to, directly
    (with the ports) or through pods it reaches (fewest hops, the port of the last hop), and
    those that can reach it directly: where data can leave, and where an attack can come from."""
    from simulator.outside import outside_verdicts

    sim, t = cg.sim, cg.sim.classes
    i = t.pod_index[pod.key]
    c0 = _class_of(sim, pod)
    depth, _parent = _bfs(cg.adj, c0)
    if hops is not None:
        depth[depth > hops] = -1
    reached = np.zeros(len(t.pods), dtype=bool)
    reached[depth[t.pod_class] >= 0] = True
    reached[i] = True
    pod_depth = np.where(np.arange(len(t.pods)) == i, 0, depth[t.pod_class] + 1)
    out_rows, in_rows = [], []
    for endpoint in endpoints:
        direct: list[str] = []
        inbound: list[str] = []
        best: int | None = None
        for spec in cg.ports:
            into, outward = outside_verdicts(sim, endpoint, spec)
            if outward[i]:
                direct.append(str(spec))
            if into[i]:
                inbound.append(str(spec))
            via = reached & outward
            if via.any():
                d = int(pod_depth[via].min())
                best = d if best is None else min(best, d)
        for name in endpoint.names:
            if best is not None:
                out_rows.append({"endpoint": name, "ports": direct, "hops": best})
            if inbound:
                in_rows.append({"endpoint": name, "ports": inbound})
    return {"reaches": out_rows, "reached_by": in_rows}


def _fold(specs: set[str]) -> str:
    pairs = []
    for text in specs:
        number, _, proto = text.partition("/")
        pairs.append((proto, int(number)))
    return fold_ports(pairs)


def ranking(cg: ClassGraph, *, top: int = 10) -> dict[str, Any]:
    """Most exposed pods (most source pods reach them in one hop), largest blast radius
    (most pods reachable transitively), and per workload the pods and ports reaching it."""
    started = time.perf_counter()
    t = cg.sim.classes
    sizes = t.sizes.astype(np.int64)
    diag_adj = np.diagonal(cg.adj).astype(np.int64)
    sources = cg.adj.T.astype(np.int64) @ sizes - diag_adj  # per class: pods reaching a member (not itself)
    one_hop = cg.adj.astype(np.int64) @ sizes - diag_adj
    transitive = cg.reach.astype(np.int64) @ sizes - np.diagonal(cg.reach).astype(np.int64)

    def top_pods(score: np.ndarray, extra: dict[str, np.ndarray]) -> list[dict[str, Any]]:
        order = np.argsort(-score[t.pod_class], kind="stable")[:top]
        out = []
        for i in order:
            c = int(t.pod_class[i])
            row = {"pod": t.pods[i].key, "workload": workload(t.pods[i])}
            row.update({k: int(v[c]) for k, v in extra.items()})
            out.append(row)
        return out

    workloads = []
    for w, classes in cg.workloads.items():
        into = cg.adj[:, classes].any(axis=1)
        ports = [s for s in cg.ports if cg.per_port[s][:, classes].any()]
        workloads.append({"workload": w, "pods": cg.workload_pods[w], "sources": int(sizes[into].sum()),
                          "ports": fold_ports((s.protocol, s.port) for s in ports)})
    workloads.sort(key=lambda d: (-d["sources"], d["workload"]))
    return {
        "pods": len(t.pods),
        "classes": t.count,
        "ports": [str(s) for s in cg.ports],
        "most_exposed": top_pods(sources, {"sources": sources}),
        "largest_blast_radius": top_pods(transitive, {"one_hop": one_hop, "transitive": transitive}),
        "workloads": workloads,
        "seconds": round(cg.seconds + time.perf_counter() - started, 4),
    }


def _text_outside(result: dict[str, Any], limit: int) -> list[str]:
    outside = result.get("outside")
    if not outside:
        return []
    lines = [f"outside endpoints it reaches: {len(outside['reaches'])}"]
    for row in outside["reaches"][:limit]:
        how = f"directly on {', '.join(row['ports'])}" if row["ports"] else f"through pods, {row['hops']} hop(s)"
        lines.append(f"  {row['endpoint']}: {how}")
    lines.append(f"outside endpoints that reach it: {len(outside['reached_by'])}")
    lines += [f"  {row['endpoint']}: on {', '.join(row['ports'])}" for row in outside["reached_by"][:limit]]
    return lines


def text_from(result: dict[str, Any], *, limit: int = 30) -> str:
    lines = [f"from {result['from']} on {', '.join(result['ports'])}:",
             f"  one hop: {result['one_hop']['count']} pod(s); transitively: {result['transitive']['count']} pod(s)"
             + (f" (within {result['hops_limit']} hops)" if result["hops_limit"] else ""),
             "  per workload (pods reachable / in one hop, ports in one hop, fewest hops):"]
    for d in result["workloads"][:limit]:
        lines.append(f"    {d['workload']}: {d['pods']} / {d['one_hop_pods']}, {d['ports'] or '-'}, {d['min_hops']}")
    longest = sorted(result["transitive"]["targets"], key=lambda e: -e["hops"])[:5]
    if longest:
        lines.append("  longest shortest paths:")
        lines += [f"    {' -> '.join(e['path'])}" for e in longest]
    lines += ["  " + line for line in _text_outside(result, limit)]
    lines.append(f"  ({result['seconds']}s)")
    return "\n".join(lines) + "\n"


def text_ranking(result: dict[str, Any], *, limit: int = 20) -> str:
    lines = [f"{result['pods']} pods ({result['classes']} classes) on {', '.join(result['ports'])}",
             "most exposed (source pods that reach it in one hop):"]
    lines += [f"  {r['sources']:6d}  {r['pod']}" for r in result["most_exposed"]]
    lines.append("largest blast radius (pods reachable transitively / in one hop):")
    lines += [f"  {r['transitive']:6d} / {r['one_hop']:<6d} {r['pod']}" for r in result["largest_blast_radius"]]
    lines.append("workloads (pods, source pods reaching it, ports):")
    lines += [f"  {d['workload']}: {d['pods']}, {d['sources']}, {d['ports'] or '-'}"
              for d in result["workloads"][:limit]]
    lines.append(f"({result['seconds']}s)")
    return "\n".join(lines) + "\n"


__all__ = ["ClassGraph", "build", "from_pod", "ranking", "text_from", "text_ranking"]
