"""Incremental translation: an index carried from one cluster to the next (as the Enforcer
does) must give exactly what a fresh translation of the new cluster gives, whatever changed:
pods added, removed, relabelled or readdressed, namespaces relabelled, policies changed."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from kube.model import Labels
from npm.dataplane.index import ClusterIndex
from npm.dataplane.translate import translate
from tests.dataplane.helpers import cluster, pod, policy
from tests.dataplane.randomized import random_cluster


def _mutate(c, donor, rng: random.Random):
    """``c`` with some pods dropped, relabelled or readdressed, some of ``donor``'s pods,
    namespaces and policies taken in, and some policies dropped."""
    pods = []
    for p in c.pods:
        roll = rng.random()
        if roll < 0.15:
            continue
        if roll < 0.3:
            p = replace(p, labels=Labels({**p.labels, "moved": str(rng.randrange(3))}))
        elif roll < 0.35 and p.ip:
            ip = f"10.99.{rng.randrange(4)}.{rng.randrange(1, 250)}"  # may collide: shared addresses too
            p = replace(p, ip=ip, ips=(ip,))
        pods.append(p)
    keys = {p.key for p in pods}
    pods += [p for p in donor.pods if p.key not in keys and rng.random() < 0.3]
    policy_keys = {p.key for p in c.policies}
    policies = [p for p in c.policies if rng.random() < 0.8]
    policies += [p for p in donor.policies if p.key not in policy_keys and rng.random() < 0.3]
    namespaces = {n.name: n for n in c.namespaces}
    for n in donor.namespaces:
        if rng.random() < 0.5:
            namespaces[n.name] = n
    return replace(
        c, pods=tuple(pods), policies=tuple(policies), namespaces=tuple(namespaces[k] for k in sorted(namespaces))
    )


@pytest.mark.parametrize("seed", range(20))
def test_translation_with_a_carried_index_equals_a_fresh_one(seed: int) -> None:
    rng = random.Random(seed)
    current, _ = random_cluster(seed)
    index = ClusterIndex(current)
    assert translate(current, index=index) == translate(current)
    for step in range(6):
        donor, _ = random_cluster(1000 + seed * 10 + step)
        current = _mutate(current, donor, rng)
        assert translate(current, index=index) == translate(current), f"step {step}"


def test_a_pod_event_changes_only_the_sets_that_pod_is_in() -> None:
    web = pod("x/web", "10.1.0.2", {"app": "web"})
    client = pod("x/client", "10.1.0.3", {"app": "client"})
    other = pod("y/other", "10.1.0.4", {"app": "other"})
    allow = policy(
        "x",
        "allow",
        {
            "podSelector": {"matchLabels": {"app": "web"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}, {"namespaceSelector": {}}]}],
        },
    )
    before = cluster([web, client, other], [allow])
    index = ClusterIndex(before)
    first = translate(before, index=index)
    moved = replace(client, labels=Labels({"app": "gone"}))
    second = translate(replace(before, pods=(web, moved, other)), index=index)
    changed = {first.sets[n].meaning for n in first.sets if first.sets[n] is not second.sets.get(n)}
    assert changed == {"podlabel:app=client"}
    # Unchanged chains are the very same objects: the Enforcer compares them by identity.
    assert all(second.chains[name] is chain for name, chain in first.chains.items())
