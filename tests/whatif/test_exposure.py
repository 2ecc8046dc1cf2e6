"""Exposure: one-hop and transitive reach, shortest paths, rankings; checked against a pod-level BFS."""

from __future__ import annotations

import itertools
from dataclasses import replace

import networkx as nx
import numpy as np
from cluster_gen import generate

from kube.manifests import cluster_of, namespace, pod, policy
from kube.model import PortSpec
from simulator import exposure
from simulator.engine import Simulator, all_declared_ports

P80 = PortSpec(80)


def chain_cluster():
    """a -> b -> c -> d on port 80 only (each pod admits only its predecessor; egress open)."""
    objs = [namespace("n")]
    names = ["a", "b", "c", "d"]
    for name in names:
        objs.append(pod("n", name, {"role": name}))
    for prev, name in itertools.pairwise(names):
        objs.append(policy("n", f"to-{name}", {"podSelector": {"matchLabels": {"role": name}},
                                                "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": prev}}}],
                                                             "ports": [{"port": 80}]}]}))
    objs.append(policy("n", "to-a", {"podSelector": {"matchLabels": {"role": "a"}}, "policyTypes": ["Ingress"]}))
    return cluster_of(objs)


def test_chain_one_hop_transitive_and_paths() -> None:
    cluster = chain_cluster()
    cg = exposure.build(Simulator(cluster), [P80])
    r = exposure.from_pod(cg, cluster.pod_by_key["n/a"])
    assert [t["pod"] for t in r["one_hop"]["targets"]] == ["n/b"]
    assert r["one_hop"]["targets"][0]["ports"] == ["80/TCP"]
    assert {t["pod"]: (t["hops"], t["path"]) for t in r["transitive"]["targets"]} == {
        "n/b": (1, ["n/a", "n/b"]), "n/c": (2, ["n/a", "n/b", "n/c"]), "n/d": (3, ["n/a", "n/b", "n/c", "n/d"])}
    limited = exposure.from_pod(cg, cluster.pod_by_key["n/a"], hops=2)
    assert limited["transitive"]["count"] == 2
    assert exposure.from_pod(cg, cluster.pod_by_key["n/d"])["transitive"]["count"] == 0


def test_chain_ranking() -> None:
    cluster = chain_cluster()
    r = exposure.ranking(exposure.build(Simulator(cluster), [P80]), top=4)
    blast = {x["pod"]: (x["transitive"], x["one_hop"]) for x in r["largest_blast_radius"]}
    assert blast == {"n/a": (3, 1), "n/b": (2, 1), "n/c": (1, 1), "n/d": (0, 0)}
    exposed = {x["pod"]: x["sources"] for x in r["most_exposed"]}
    assert exposed == {"n/a": 0, "n/b": 1, "n/c": 1, "n/d": 1}


def test_class_level_reach_matches_pod_level_bfs() -> None:
    cluster = generate(300, 60, seed=5)
    cluster = replace(cluster, pods=tuple(p for p in cluster.pods if not p.host_network))
    sim = Simulator(cluster)
    ports = all_declared_ports(cluster)
    cg = exposure.build(sim, ports)
    matrix = sim.matrix(ports)
    union = np.zeros((len(cluster.pods),) * 2, dtype=bool)
    for spec in ports:
        union |= matrix.allowed[spec]
    np.fill_diagonal(union, False)
    g = nx.DiGraph()
    g.add_nodes_from(range(len(cluster.pods)))
    g.add_edges_from(zip(*np.nonzero(union), strict=True))
    ranking = exposure.ranking(cg, top=len(cluster.pods))
    got = {x["pod"]: (x["transitive"], x["one_hop"]) for x in ranking["largest_blast_radius"]}
    sources = {x["pod"]: x["sources"] for x in ranking["most_exposed"]}
    for i, p in enumerate(cluster.pods):
        assert got[p.key] == (len(nx.descendants(g, i)), int(union[i].sum())), p.key
        assert sources[p.key] == int(union[:, i].sum())
    for i in (0, 57, 123):
        r = exposure.from_pod(cg, cluster.pods[i])
        lengths = nx.single_source_shortest_path_length(g, i)
        want = {cluster.pods[j].key: d for j, d in lengths.items() if j != i}
        assert {t["pod"]: t["hops"] for t in r["transitive"]["targets"]} == want
        for t in r["transitive"]["targets"]:  # every path is a real path of allowed edges
            idx = [matrix.index(k) for k in t["path"]]
            assert len(idx) == t["hops"] + 1 and all(union[a, b] for a, b in itertools.pairwise(idx))


def test_workloads_sharing_a_class_are_counted_by_their_own_pods() -> None:
    # No policy looks at "version", so the v1 and v2 pods share a class; they are still two workloads.
    objs = [namespace("n"), pod("n", "client", {"role": "client"})]
    objs += [pod("n", f"web-v1-{i}", {"app": "web", "version": "v1"}) for i in range(3)]
    objs.append(pod("n", "web-v2-0", {"app": "web", "version": "v2"}))
    objs.append(policy("n", "web", {"podSelector": {"matchLabels": {"app": "web"}},
                                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "client"}}}]}]}))
    sim = Simulator(cluster_of(objs))
    assert sim.classes.count == 2
    ranking = exposure.ranking(exposure.build(sim, [P80]))
    pods = {d["workload"]: d["pods"] for d in ranking["workloads"]}
    assert pods == {"n/app=web,version=v1": 3, "n/app=web,version=v2": 1, "n/role=client": 1}
