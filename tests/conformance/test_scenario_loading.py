"""Scenario files: valid ones load, bad ones get located errors (file, scenario, field path)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from conformance.runner import check_expectations
from conformance.scenario import load_file, load_scenarios
from conformance.state import StateError, materialize
from tests.conformance.cnp_evaluation import simulator_evaluates_cluster_network_policies

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return str(path)


def errors_of(tmp_path: Path, text: str) -> list[str]:
    scenarios, errors = load_file(write(tmp_path, text))
    assert not scenarios
    return [str(e) for e in errors]


def test_every_shipped_scenario_loads():
    scenarios, errors = load_scenarios([str(ROOT / "scenarios")])
    assert errors == []
    upstream = [s for s in scenarios if "upstream" in s.tags]
    assert len(upstream) >= 45
    assert {s.name for s in scenarios if "example" in s.tags} >= {
        "example: deny all inbound traffic to a pod",
        "example: allow inbound traffic based on a pod label",
        "example: allow traffic only from within a defined namespace",
    }


def test_every_shipped_scenario_states_what_the_simulator_predicts():
    # The upstream e2e cases (scenarios/upstream) are written down once, there; this checks
    # each of their truth tables, step by step, against the simulator. The ClusterNetworkPolicy
    # ones (scenarios/cnp) are checked by test_cnp_scenarios, once the simulator evaluates them.
    scenarios, errors = load_scenarios([str(ROOT / "scenarios")])
    assert errors == []
    checked = [s for s in scenarios if any(step.expect is not None for step in s.steps)]
    if not simulator_evaluates_cluster_network_policies():
        checked = [s for s in checked if "cnp" not in s.tags]
    assert len([s for s in checked if "upstream" in s.tags]) >= 45
    for scenario in checked:
        assert check_expectations(scenario) == [], scenario.name


def test_upstream_model_builds_nine_pods_with_named_ports(tmp_path):
    (sc,), errors = load_file(write(tmp_path, "name: m\nmodel: upstream\n"))
    assert not errors
    pods = sc.initial.pods
    assert sorted(pods) == [f"{ns}/{p}" for ns in "xyz" for p in "abc"]
    assert pods["x/a"].named_port("serve-81-udp", "UDP") == 81
    assert sc.initial.namespaces["y"] == {"ns": "y"}
    assert {p.node for p in pods.values()} == {"node-1", "node-2"}  # round-robin over the default 2 nodes


def test_unknown_field_is_located(tmp_path):
    errs = errors_of(tmp_path, "name: s\nsteps:\n  - probe: {portz: [80/TCP]}\n")
    assert len(errs) == 1
    assert "s.yaml: scenario s: steps[0].probe: unknown field" in errs[0]
    assert "portz" in errs[0]


def test_invalid_policy_reuses_object_model_messages(tmp_path):
    errs = errors_of(
        tmp_path,
        """\
        name: s
        model: upstream
        steps:
          - actions:
              - apply:
                  metadata: {name: p, namespace: x}
                  spec:
                    podSelector: {}
                    ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/33}}]}]
        """,
    )
    assert errs == [
        f"{tmp_path}/s.yaml: scenario s: steps[0].actions[0].apply.spec.ingress[0].from[0].ipBlock.cidr: "
        '"10.0.0.0/33" is not a valid CIDR'
    ]


def test_reference_to_missing_pod_is_located_at_its_step(tmp_path):
    errs = errors_of(
        tmp_path,
        """\
        name: s
        model: upstream
        steps:
          - probe: {ports: [80/TCP]}
          - actions:
              - delete: {pod: x/a}
              - label: {pod: x/a, set: {k: v}}
        """,
    )
    assert len(errs) == 1
    assert "steps[1].actions[1].label" in errs[0] and "no pod 'x/a'" in errs[0]


UPSTREAM_POLICY = """\
    name: s
    model: upstream
    policies:
      - metadata: {name: p, namespace: x}
        spec:
          podSelector: {}
          egress: [{to: [{ipBlock: {cidr: "${ip q/zz}/32"}}]}]
    """
UPSTREAM_EXPECT = """\
    name: s
    model: upstream
    steps:
      - probe:
          ports: [80/TCP]
          expect: %s
    """


@pytest.mark.parametrize(
    ("text", "located"),
    [
        pytest.param("name: s\nsteps:\n  - probe: {ports: [80/ICMP]}\n", "steps[0].probe.ports[0]", id="port-spec"),
        pytest.param(UPSTREAM_POLICY, "names pod 'q/zz'", id="placeholder-naming-a-missing-pod"),
        pytest.param(
            UPSTREAM_EXPECT % "[{from: x/a, to: y/b, allowed: maybe}]",
            "steps[0].probe.expect[0].allowed",
            id="expectation-verdict",
        ),
        pytest.param(
            UPSTREAM_EXPECT % "|\n            -    x/a  x/b\n            x/a  .",
            "has 1 marks for 2 destinations",
            id="truth-table-row",
        ),
    ],
)
def test_bad_input_is_located(tmp_path, text, located):
    errs = errors_of(tmp_path, text)
    assert errs and located in errs[0]


def test_one_bad_file_does_not_hide_the_others(tmp_path):
    write(tmp_path, "name: good\nmodel: upstream\n", "a.yaml")
    write(tmp_path, "name: bad\nnodes: 0\n", "b.yaml")
    scenarios, errors = load_scenarios([str(tmp_path)])
    assert [s.name for s in scenarios] == ["good"]
    assert len(errors) == 1 and "b.yaml: scenario bad: nodes" in str(errors[0])


def test_duplicate_names_are_refused(tmp_path):
    write(tmp_path, "name: same\nmodel: upstream\n", "a.yaml")
    write(tmp_path, "name: same\nmodel: upstream\n", "b.yaml")
    _scenarios, errors = load_scenarios([str(tmp_path)])
    assert len(errors) == 1 and "also used by" in str(errors[0])


def test_manifest_file_is_a_one_step_scenario_honouring_ip_and_node(tmp_path):
    path = write(
        tmp_path,
        """\
        apiVersion: v1
        kind: Pod
        metadata: {name: web, namespace: shop, labels: {app: web}}
        spec: {nodeName: n7, containers: [{name: c, ports: [{containerPort: 80}]}]}
        status: {podIP: 10.9.8.7}
        ---
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: deny, namespace: shop}
        spec: {podSelector: {}}
        """,
        "shop.yaml",
    )
    (sc,), errors = load_file(path)
    assert not errors
    assert sc.name == "shop" and len(sc.steps) == 1
    pod = sc.initial.pods["shop/web"]
    assert (pod.ip, pod.node) == ("10.9.8.7", "n7")
    assert "n7" in sc.nodes
    assert list(sc.initial.policies) == ["shop/deny"]


def test_manifest_file_with_a_bad_object_reports_it(tmp_path):
    path = write(tmp_path, "kind: NetworkPolicy\nmetadata: {name: p}\nspec: {policyTypes: [Sideways]}\n")
    scenarios, errors = load_file(path)
    assert not scenarios
    assert "spec.policyTypes[0]" in str(errors[0])


def test_actions_replay_labels_and_deletions(tmp_path):
    (sc,), errors = load_file(
        write(
            tmp_path,
            """\
            name: s
            model: upstream
            steps:
              - actions:
                  - label: {namespace: y, set: {team: blue}, remove: [ns]}
                  - label: {pod: x/a, set: {role: db}}
              - actions:
                  - delete: {namespace: z}
                  - add: {namespace: {name: w, labels: {a: b}}}
                  - add: {pod: {namespace: w, name: p, ports: [80/TCP]}}
            """,
        )
    )
    assert not errors
    first, second = sc.states()
    assert first.namespaces["y"] == {"team": "blue"}
    assert first.pods["x/a"].labels == {"pod": "a", "role": "db"}
    assert not any(k.startswith("z/") for k in second.pods)
    assert "w/p" in second.pods and second.namespaces["w"] == {"a": "b"}


def test_state_rejects_duplicate_pod():
    from conformance.state import State
    from kube.model import Pod

    state = State(("n1",))
    state.add_pod(Pod("x", "a"))
    with pytest.raises(StateError, match="already exists"):
        state.add_pod(Pod("x", "a"))


def test_a_kind_list_dump_keeps_its_policies(tmp_path):
    # What `kubectl get ns,pods,networkpolicies -A -o yaml` writes: one List document.
    from kube import manifests

    items = [
        manifests.namespace("x"),
        manifests.pod("x", "a", {"app": "a"}, ip="10.244.0.5", node="n1"),
        manifests.pod("x", "b", {"app": "b"}, ip="10.244.0.6", node="n1"),
        manifests.policy("x", "deny", {"podSelector": {}}),
        {"apiVersion": "v1", "kind": "List", "items": [manifests.policy("x", "nested", {"podSelector": {}})]},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x"}},
    ]
    path = tmp_path / "dump.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
    (scenario,), errors = load_file(str(path))
    assert errors == []
    assert sorted(scenario.initial.policies) == ["x/deny", "x/nested"]
    assert "used 1 Namespace, 2 Pod, 2 NetworkPolicy" in scenario.inputs
    assert "ignored 1 ConfigMap" in scenario.inputs  # said, not silently dropped


def test_an_expectation_naming_a_pod_that_does_not_exist_at_that_step_is_refused(tmp_path):
    text = """
    name: dangling
    model: upstream
    steps:
      - probe:
          expect:
            - {from: x/a, to: q/*, allowed: false}
    """
    messages = errors_of(tmp_path, textwrap.dedent(text))
    assert any("steps[0]" in m and "'q/*' names no pod" in m for m in messages), messages


def test_two_pods_with_one_address_are_refused_at_load(tmp_path):
    text = """
    name: twins
    namespaces: {x: {}}
    pods:
      - {namespace: x, name: a, ip: 10.244.0.5}
      - {namespace: x, name: b, ip: 10.244.0.5}
    """
    messages = errors_of(tmp_path, textwrap.dedent(text))
    assert any("x/a and x/b both have address 10.244.0.5" in m for m in messages), messages


# -- ClusterNetworkPolicies in scenarios ----------------------------------------------------
CNP_SCENARIO = """\
name: cnp
model: upstream
nodes: {node-1: {zone: a}, node-2: {}}
policies:
  - kind: ClusterNetworkPolicy
    metadata: {name: guard}
    spec:
      tier: Admin
      priority: 10
      subject: {namespaces: {matchLabels: {ns: x}}}
      egress:
        - {action: Deny, to: [{networks: ["${net y/a 32}", "${net y/b 32}"]}]}
        - {action: Pass, to: [{nodes: {matchLabels: {zone: a}}}]}
steps:
  - probe: {ports: [80/TCP]}
  - actions:
      - apply:
          kind: ClusterNetworkPolicy
          metadata: {name: baseline}
          spec:
            tier: Baseline
            priority: 10
            subject: {pods: {namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}}
            ingress: [{action: Deny, from: [{namespaces: {}}], protocols: [{destinationNamedPort: serve-80-tcp}]}]
  - actions:
      - delete: {clusterNetworkPolicy: guard}
      - delete: {namespace: x}
"""


def test_cluster_network_policies_are_created_updated_and_deleted_by_steps(tmp_path):
    (sc,), errors = load_file(write(tmp_path, CNP_SCENARIO))
    assert errors == []
    first, second, third = sc.states()
    assert sorted(first.cluster_policies) == ["guard"]
    assert sorted(second.cluster_policies) == ["baseline", "guard"]
    assert sorted(third.cluster_policies) == ["baseline"]  # cluster-scoped: a namespace's deletion leaves it
    cluster, manifests = materialize(first, first.workloads())
    (guard,) = cluster.cluster_policies
    assert guard.tier == "Admin" and guard.priority == 10 and cluster.policies == ()
    # Placeholders in networks are filled with the pods' addresses, as in ipBlocks.
    y_a, y_b = cluster.pod_by_key["y/a"].ip, cluster.pod_by_key["y/b"].ip
    assert [str(n) for n in guard.egress[0].peers[0].networks] == [f"{y_a}/32", f"{y_b}/32"]
    assert manifests[0]["kind"] == "ClusterNetworkPolicy" and manifests[0]["apiVersion"].endswith("/v1alpha2")


def test_nodes_carry_the_kubelets_labels_and_the_scenarios_own(tmp_path):
    (sc,), errors = load_file(write(tmp_path, CNP_SCENARIO))
    assert errors == []
    nodes = {n.name: n.labels for n in sc.initial.workloads().nodes}
    assert nodes["node-1"] == {"kubernetes.io/hostname": "node-1", "kubernetes.io/os": "linux", "zone": "a"}
    assert nodes["node-2"] == {"kubernetes.io/hostname": "node-2", "kubernetes.io/os": "linux"}


V1ALPHA1 = "kind: ClusterNetworkPolicy\n    apiVersion: policy.networking.k8s.io/v1alpha1\n    metadata: {name: guard}"


@pytest.mark.parametrize(
    ("change", "located"),
    [
        pytest.param(("priority: 10", "priority: 1001"), "spec.priority: 1001 must be between", id="priority"),
        pytest.param(("tier: Admin", "tier: Middle"), 'policies[0].spec.tier: "Middle" is not supported', id="tier"),
        pytest.param(
            ("kind: ClusterNetworkPolicy\n    metadata: {name: guard}", V1ALPHA1),
            'policies[0].apiVersion: "policy.networking.k8s.io/v1alpha1" is not supported',
            id="api-version",
        ),
        pytest.param(
            ("delete: {clusterNetworkPolicy: guard}", "delete: {clusterNetworkPolicy: gaurd}"),
            "steps[2].actions[0].delete.clusterNetworkPolicy: no ClusterNetworkPolicy 'gaurd'",
            id="delete",
        ),
        pytest.param(("${net y/b 32}", "${net q/b 32}"), "guard names pod 'q/b'", id="missing-pod"),
        pytest.param(("${net y/b 32}", "${net y/a 32}"), "networks[1]: duplicate value", id="duplicate-network"),
        pytest.param(
            ("{node-1: {zone: a}, node-2: {}}", "{node-1: {zone: -a}, node-2: {}}"), "nodes.node-1.zone", id="label"
        ),
    ],
)
def test_bad_cluster_network_policy_input_is_located(tmp_path, change, located):
    text = CNP_SCENARIO.replace(*change)
    assert text != CNP_SCENARIO
    errs = errors_of(tmp_path, text)
    assert errs and located in errs[0], errs


def test_a_peer_not_understood_is_said_with_what_its_rule_does_instead(tmp_path):
    text = CNP_SCENARIO.replace("{action: Pass, to: [{nodes:", "{action: Pass, to: [{serviceAccounts: {}}, {nodes:")
    (sc,), errors = load_file(write(tmp_path, text))
    assert errors == []
    (note,) = sc.notes
    assert note.startswith(f"{tmp_path}/s.yaml: scenario cnp: policies[0]: ClusterNetworkPolicy guard: ")
    assert "spec.egress[1].to[0].serviceAccounts: not supported" in note and "fail closed" in note


def test_network_policy_api_model_is_upstreams_base_cluster_placed_across_two_nodes(tmp_path):
    (sc,), errors = load_file(write(tmp_path, "name: m\nmodel: network-policy-api\n"))
    assert errors == []
    pods = sc.initial.pods
    houses = ("gryffindor", "slytherin", "hufflepuff", "ravenclaw", "forbidden-forrest")
    assert {ns: labels["conformance-house"] for ns, labels in sc.initial.namespaces.items()} == {
        f"network-policy-conformance-{h}": h for h in houses
    }
    harry = pods["network-policy-conformance-gryffindor/harry-potter-1"]
    assert harry.named_port("web", "TCP") == 80 and harry.named_port("dns", "UDP") == 53
    centaur = pods["network-policy-conformance-forbidden-forrest/centaur-1"]
    assert centaur.host_network and centaur.named_port("web-34345", "TCP") == 34345
    # The node tests' clients (gryffindor) never share a node with their server (centaur-1).
    assert {p.node for p in pods.values() if "gryffindor" in p.namespace} == {"node-1"} and centaur.node == "node-2"
    one_node = errors_of(tmp_path, "name: m\nmodel: network-policy-api\nnodes: 1\n")
    assert one_node and "model: network-policy-api: node 'node-2' is not one of this scenario's nodes" in one_node[0]


def test_a_manifest_file_with_cluster_network_policies_uses_them_and_says_so(tmp_path):
    from kube import manifests

    items = [
        manifests.namespace("x"),
        manifests.pod("x", "a", {"app": "a"}, ip="10.244.0.5", node="n1"),
        manifests.cluster_network_policy("deny", ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}]),
    ]
    path = tmp_path / "dump.yaml"
    path.write_text(yaml.safe_dump_all(items))
    (scenario,), errors = load_file(str(path))
    assert errors == []
    assert sorted(scenario.initial.cluster_policies) == ["deny"]
    assert "1 ClusterNetworkPolicy" in scenario.inputs and "not yet evaluated" not in scenario.inputs
