"""Incremental re-evaluation equals a fresh Simulator, and touches only the changed namespace."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest
from cluster_gen import generate

from kube.manifests import cluster_of, namespace, pod, policy
from kube.model import Labels, PortSpec
from kube.parse import parse_network_policy
from simulator.classes import CannotAlign, build_classes
from simulator.engine import NeedsRebuild, Simulator, all_declared_ports
from simulator.incremental import IncrementalSimulator, _changed_namespaces, evaluate_change
from simulator.whatif import diff_states
from tests.simulator.test_engine_matches_reference import KEYS, PORTS, VALUES, random_cluster


@pytest.fixture(scope="module")
def cluster():
    return generate(400, 80, seed=3)


def _new_policy(ns: str, name: str, cidr: str | None = None):
    spec = {
        "podSelector": {"matchLabels": {"tier": "api"}},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [{"from": [{"namespaceSelector": {}}], "ports": [{"port": 8080}]}],
        "egress": [{"to": [{"podSelector": {}}]}],
    }
    if cidr:
        spec["egress"].append({"to": [{"ipBlock": {"cidr": cidr}}]})
    return parse_network_policy(policy(ns, name, spec))


def test_random_policy_changes_match_a_full_rebuild(cluster) -> None:
    rng = random.Random(7)
    ports = all_declared_ports(cluster)
    base = IncrementalSimulator(Simulator(cluster))
    base.prepare(ports)
    keys = [p.key for p in cluster.policies]
    changes = [{k: None} for k in rng.sample(keys, 6)]
    changes.append({"ns-001/new-api": _new_policy("ns-001", "new-api")})
    for change in changes:
        state, update = base.with_policies(change)
        assert update.mode == "incremental" and update.namespaces == (next(iter(change)).split("/")[0],)
        policies = {p.key: p for p in cluster.policies}
        for k, v in change.items():
            policies.pop(k, None) if v is None else policies.__setitem__(k, v)
        fresh = Simulator(replace(cluster, policies=tuple(policies[k] for k in sorted(policies))))
        for spec in ports:
            assert np.array_equal(state.class_matrix(spec), fresh.class_matrix(spec)), (change, spec)
        # the incremental diff (touched slices only) equals the diff of two full evaluations
        assert diff_states(base, state, ports).to_json() == diff_states(Simulator(cluster), fresh, ports).to_json()


def test_only_the_changed_namespace_is_recomputed(cluster) -> None:
    base = IncrementalSimulator(Simulator(cluster))
    base.prepare(all_declared_ports(cluster))
    _, update = base.with_policies({"ns-002/default-deny": None})
    in_ns = int(np.sum(base.classes.ns_id == base.classes.ns_index["ns-002"]))
    assert update.classes == in_ns < base.classes.count


def test_a_new_ip_range_needs_a_rebuild_and_evaluate_change_falls_back(cluster) -> None:
    base = IncrementalSimulator(Simulator(cluster))
    new = _new_policy("ns-001", "odd-range", cidr="10.244.0.0/30")
    with pytest.raises(NeedsRebuild):
        base.with_policies({new.key: new})
    after = replace(cluster, policies=(*cluster.policies, new))
    ports = all_declared_ports(cluster)[:3]
    _before_state, after_state, update = evaluate_change(cluster, after, ports)
    assert update.mode == "full"
    fresh = Simulator(after)
    for spec in ports:
        assert np.array_equal(after_state.class_matrix(spec), fresh.class_matrix(spec))


def test_pod_changes_are_evaluated_on_aligned_classes(cluster) -> None:
    after = replace(cluster, pods=cluster.pods[1:])
    before_state, after_state, update = evaluate_change(cluster, after, all_declared_ports(cluster)[:2])
    assert update.mode == "aligned" and update.classes == 0  # a deleted pod changes no class verdict
    assert after_state.classes.class_keys[: before_state.classes.count] == before_state.classes.class_keys


def _mutate(cluster, rng: random.Random):
    """The cluster after a few random object changes (pods, namespace labels, policies)."""
    pods = list(cluster.pods)
    namespaces = list(cluster.namespaces)
    policies = list(cluster.policies)
    for step in range(rng.randint(1, 4)):
        kind = rng.choice(["delete-pod", "add-pod", "relabel-pod", "relabel-ns", "delete-policy", "edit-policy"])
        if kind == "delete-pod" and pods:
            pods.pop(rng.randrange(len(pods)))
        elif kind == "add-pod" and pods:
            model = rng.choice(pods)
            labels = dict(model.labels)
            if rng.random() < 0.5:
                labels[rng.choice(KEYS)] = rng.choice(VALUES)
            ip = f"10.244.200.{10 + step}" if not model.host_network else model.ip
            pods.append(replace(model, name=f"new-{step}", labels=Labels(labels), ip=ip, ips=(ip,)))
        elif kind == "relabel-pod" and pods:
            i = rng.randrange(len(pods))
            labels = {k: rng.choice(VALUES) for k in KEYS if rng.random() < 0.5}
            pods[i] = replace(pods[i], labels=Labels(labels))
        elif kind == "relabel-ns":
            i = rng.randrange(len(namespaces))
            ns = namespaces[i]
            labels = {k: rng.choice(VALUES) for k in KEYS if rng.random() < 0.5}
            namespaces[i] = replace(ns, labels=Labels({**labels, "kubernetes.io/metadata.name": ns.name}))
        elif kind == "delete-policy" and policies:
            policies.pop(rng.randrange(len(policies)))
        elif kind == "edit-policy" and policies:  # same key, fewer rules: its sets must not be reused
            i = rng.randrange(len(policies))
            p = policies[i]
            policies[i] = replace(p, ingress=p.ingress[1:]) if p.ingress else replace(p, egress=p.egress[1:])
    return replace(cluster, pods=tuple(pods), namespaces=tuple(namespaces), policies=tuple(policies))


@pytest.mark.parametrize("seed", range(60))
def test_object_changes_on_aligned_classes_diff_like_two_full_evaluations(seed: int) -> None:
    rng = random.Random(seed)
    before = random_cluster(seed)
    after = _mutate(before, rng)
    ports = PORTS if seed % 2 else PORTS[:2]
    for declared_only in (False, True):
        b, a, update = evaluate_change(before, after, ports)
        assert update.mode in ("aligned", "incremental", "full")
        expected = diff_states(Simulator(before), Simulator(after), ports, declared_only=declared_only)
        assert diff_states(b, a, ports, declared_only=declared_only).to_json() == expected.to_json(), (seed, update)


@pytest.mark.parametrize("seed", range(60))
def test_derived_verdicts_after_object_changes_equal_a_fresh_evaluation(seed: int) -> None:
    rng = random.Random(1000 + seed)
    before = random_cluster(seed)
    after = _mutate(before, rng)
    base = Simulator(before)
    for spec in PORTS[:3]:
        base.verdicts(spec)  # carried over incrementally; the other ports are evaluated afresh
    try:
        table = build_classes(after, like=base.classes)
    except CannotAlign:
        return
    changed = [n.name for n in after.namespaces]  # any superset of the changed namespaces is valid
    for names in (_changed_namespaces(before, after), changed):
        derived = base.with_cluster(after, table, names)
        fresh = Simulator(after, classes=table)
        for spec in PORTS:
            assert np.array_equal(derived.class_matrix(spec), fresh.class_matrix(spec)), (seed, spec, names)
            assert derived.summary([spec]).ports[0].allowed == fresh.summary([spec]).ports[0].allowed


@pytest.mark.parametrize("seed", range(200))
def test_editing_a_policy_in_place_matches_a_full_rebuild(seed: int) -> None:
    cluster = random_cluster(seed)
    if not cluster.policies:
        return
    rng = random.Random(seed)
    base = IncrementalSimulator(Simulator(cluster))
    base.prepare(PORTS)
    p, other = rng.choice(cluster.policies), rng.choice(cluster.policies)
    # the same key with other rules: sets made of the old rules must not be reused
    edited = replace(p, ingress=other.ingress, egress=other.egress) if rng.random() < 0.7 else replace(
        p, ingress=p.ingress[::-1], egress=p.egress[::-1])
    state, _ = base.with_policies({p.key: edited})
    after = replace(cluster, policies=tuple(edited if q.key == p.key else q for q in cluster.policies))
    fresh = Simulator(after, classes=base.classes)  # the same classes (the edit may need fewer)
    for spec in PORTS:
        assert np.array_equal(state.class_matrix(spec), fresh.class_matrix(spec)), (seed, spec)


def test_a_policy_edited_in_place_does_not_reuse_the_old_rule_sets() -> None:
    def allow_from(app: str):
        return parse_network_policy(policy("x", "to-a", {
            "podSelector": {"matchLabels": {"app": "a"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": app}}}]}],
        }))

    objs = [namespace("x")] + [pod("x", name, {"app": name}) for name in "abc"]
    cluster = replace(cluster_of(objs), policies=(allow_from("b"),))
    base = IncrementalSimulator(Simulator(cluster))
    base.prepare([PortSpec(80)])
    state, _ = base.with_policies({"x/to-a": allow_from("c")})  # same key, same rule index
    assert state.sim.allowed("x/c", "x/a", PortSpec(80))
    assert not state.sim.allowed("x/b", "x/a", PortSpec(80))


@pytest.mark.parametrize("seed", range(30))
def test_successive_derived_engines_match_a_fresh_evaluation(seed: int) -> None:
    rng = random.Random(2000 + seed)
    first = random_cluster(seed)
    sim = Simulator(first)
    sim.verdicts(PORTS[0])
    clusters = [first]
    for _ in range(2):  # a change, then a change of the changed state (policies only or objects)
        after = _mutate(clusters[-1], rng)
        try:
            table = build_classes(after, like=sim.classes)
        except CannotAlign:
            return
        sim = sim.with_cluster(after, table, _changed_namespaces(clusters[-1], after))
        clusters.append(after)
    fresh = Simulator(clusters[-1], classes=sim.classes)
    for spec in PORTS[:3]:  # the first carried over twice, the others evaluated afresh
        assert np.array_equal(sim.class_matrix(spec), fresh.class_matrix(spec)), (seed, spec)
