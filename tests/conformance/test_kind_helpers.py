"""What the kind and cluster backends need without a cluster: manifests, argv, agnhost output."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conformance.backends.cluster import (
    CNP_CRD_FILE,
    agnhost_containers,
    cluster_policy_plan,
    connect_argv,
    connect_reason,
    enforcer_manifests,
    owned_cluster_policy,
    parse_connect,
    pod_manifest,
)
from conformance.backends.kind import (
    DEFAULT_CONFIG,
    cnp_crd_argv,
    crd_established_argv,
    image_build_argv,
    kind_create_argv,
    kind_load_argv,
    node_label_argv,
    nodes_ready_argv,
)
from conformance.kindnet import DEFAULT_MANIFEST, KINDNET_ENV, kindnet_without_policy, main, manifest_location
from kube.model import ContainerPort, Labels, Pod, PortSpec


def test_agnhost_container_per_port_and_protocol_as_upstream():
    pod = Pod(
        "x", "a", Labels({"pod": "a"}), ports=(ContainerPort(80, "TCP", "serve-80-tcp"), ContainerPort(81, "UDP"))
    )
    cs = agnhost_containers(pod, serve=[PortSpec(80, "SCTP")])
    assert [c["name"] for c in cs] == ["cont-80-tcp", "cont-81-udp", "cont-80-sctp"]
    assert cs[0]["command"] == ["/agnhost", "serve-hostname", "--tcp", "--http=false", "--port", "80"]
    assert cs[1]["command"] == ["/agnhost", "serve-hostname", "--udp", "--http=false", "--port", "81"]
    assert cs[2]["command"] == ["/agnhost", "porter"]
    assert cs[2]["env"] == [{"name": "SERVE_SCTP_PORT_80", "value": "foo"}]
    assert cs[0]["ports"] == [{"containerPort": 80, "protocol": "TCP", "name": "serve-80-tcp"}]
    assert "ports" not in cs[2]  # served for probes, not declared: named ports stay the pod's own


def test_pod_without_ports_gets_an_idle_container():
    (c,) = agnhost_containers(Pod("x", "idle"))
    assert c["args"] == ["pause"]


def test_pod_manifest_pins_node_and_hashes_shape():
    pod = Pod("x", "a", Labels({"pod": "a"}), ports=(ContainerPort(80),))
    m1 = pod_manifest(pod, "kind-worker")
    m2 = pod_manifest(pod, "kind-worker2")
    assert m1["spec"]["nodeName"] == "kind-worker" and m1["metadata"]["labels"] == {"pod": "a"}
    shape = "npm-conformance/shape"
    assert m1["metadata"]["annotations"][shape] != m2["metadata"]["annotations"][shape]
    relabelled = pod_manifest(Pod("x", "a", Labels({"pod": "z"}), ports=(ContainerPort(80),)), "kind-worker")
    assert relabelled["metadata"]["annotations"][shape] == m1["metadata"]["annotations"][shape]


def test_connect_argv_as_upstream():
    assert connect_argv("10.244.1.5", PortSpec(81, "UDP"), 1.0) == [
        "/agnhost",
        "connect",
        "10.244.1.5:81",
        "--timeout=1s",
        "--protocol=udp",
    ]
    assert connect_argv("fd00::5", PortSpec(80), 1.0)[2] == "[fd00::5]:80"


@pytest.mark.parametrize(
    ("code", "stderr", "want", "reason"),
    [
        (0, "", True, ""),
        (1, "TIMEOUT\n", False, "TIMEOUT"),
        (1, "REFUSED\n", False, "REFUSED"),
        (1, "OTHER: dial tcp 10.0.0.1:80: connect: no route to host\n", False, "OTHER"),
        (1, "UNKNOWN: read udp: i/o timeout\n", False, "UNKNOWN"),
        (1, "OTHER: socket: protocol not supported\n", None, "OTHER"),
        (None, "", False, ""),
    ],
)
def test_parse_recorded_agnhost_connect_outputs(code, stderr, want, reason):
    assert parse_connect(code, "", stderr) is want
    assert connect_reason(stderr) == reason


def test_kind_command_lines():
    # No --wait by default: the config has no CNI, so no node is Ready until kindnet is applied.
    assert kind_create_argv("c1", "cfg.yaml") == ["kind", "create", "cluster", "--name", "c1", "--config", "cfg.yaml"]
    assert kind_create_argv("c1", "cfg.yaml", wait="30s")[-2:] == ["--wait", "30s"]
    assert nodes_ready_argv("120s") == ["wait", "--for=condition=Ready", "nodes", "--all", "--timeout=120s"]
    assert kind_load_argv("azure-npm:dev", "c1") == ["kind", "load", "docker-image", "azure-npm:dev", "--name", "c1"]
    assert image_build_argv("azure-npm:conformance") == [
        "make",
        "azure-npm-image",
        "IMAGE=azure-npm",
        "VERSION=conformance",
    ]
    assert image_build_argv("localhost:5000/npm") == [
        "make",
        "azure-npm-image",
        "IMAGE=localhost:5000/npm",
        "VERSION=latest",
    ]


def test_kind_config_has_one_control_plane_two_workers_and_no_default_cni():
    cfg = yaml.safe_load(DEFAULT_CONFIG.read_text())
    assert [n["role"] for n in cfg["nodes"]] == ["control-plane", "worker", "worker"]
    assert cfg["networking"]["disableDefaultCNI"] is True


def test_kindnet_manifest_patched_to_stop_enforcing():
    manifest = (
        "      - name: kindnet-cni\n        command:\n        - /bin/kindnetd\n"
        "        - --network-policy=true\n        - --v=2\n"
    )
    assert "--network-policy=false" in kindnet_without_policy(manifest)
    assert "--network-policy=true" not in kindnet_without_policy(manifest)
    older = "        command:\n        - /bin/kindnetd\n        - --v=2\n"
    assert "- --network-policy=false\n" in kindnet_without_policy(older)
    already = "        command:\n        - /bin/kindnetd\n        - --network-policy=false\n"
    assert kindnet_without_policy(already) == already
    with pytest.raises(ValueError):
        kindnet_without_policy("kind: ConfigMap\n")
    # Naming kindnetd (a comment, as in kind-config/cluster.yaml) is not running it.
    with pytest.raises(ValueError):
        kindnet_without_policy(DEFAULT_CONFIG.read_text())


def test_kindnet_manifest_from_override_else_pinned_copy():
    assert manifest_location({}) == str(DEFAULT_MANIFEST)
    assert manifest_location({KINDNET_ENV: ""}) == str(DEFAULT_MANIFEST)
    assert manifest_location({KINDNET_ENV: "/srv/kindnet.yaml"}) == "/srv/kindnet.yaml"


def test_kindnet_command_writes_policy_free_manifest_or_fails_with_a_message(tmp_path, capsys):
    out = tmp_path / "kindnet.yaml"
    assert main(["--from", str(DEFAULT_MANIFEST), "--out", str(out)]) == 0
    assert "--network-policy=false" in out.read_text()
    assert "--network-policy=true" not in out.read_text()
    assert main(["--from", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml" in capsys.readouterr().err
    assert main(["--from", str(DEFAULT_CONFIG)]) == 1
    assert "not a kindnet manifest" in capsys.readouterr().err


def test_enforcer_manifest_gets_the_image_under_test():
    docs = enforcer_manifests("azure-npm:conformance")
    (ds,) = [d for d in docs if d["kind"] == "DaemonSet"]
    images = {c["image"] for c in ds["spec"]["template"]["spec"]["containers"]}
    assert images == {"azure-npm:conformance"}


# -- ClusterNetworkPolicy on kind and other clusters ---------------------------------------
def test_the_vendored_crd_is_the_pinned_release_with_its_attribution():
    text = CNP_CRD_FILE.read_text()
    header = text.split("\n---\n", 1)[0]
    assert "tag v0.2.0, commit a17adecd0316b8ff1c3f83939ec0441d68cd6cce" in header
    assert "License: Apache License 2.0" in header
    (crd,) = [d for d in yaml.safe_load_all(text) if d]
    annotations = crd["metadata"]["annotations"]
    assert annotations["policy.networking.k8s.io/bundle-version"] == "v0.2.0"
    assert annotations["policy.networking.k8s.io/channel"] == "experimental"  # nodes peers and named ports
    assert crd["spec"]["scope"] == "Cluster" and [v["name"] for v in crd["spec"]["versions"]] == ["v1alpha2"]


def test_the_vendored_crd_has_the_fields_the_object_model_reads():
    import runpy

    gen = runpy.run_path(str(Path(__file__).resolve().parents[2] / "scripts" / "gen_kube_fields.py"))
    assert gen["check_crd"](str(CNP_CRD_FILE)) == []


def test_kind_installs_the_crd_server_side_and_waits_until_it_is_served():
    assert cnp_crd_argv() == ["apply", "--server-side", "--force-conflicts", "-f", str(CNP_CRD_FILE)]
    assert crd_established_argv("30s") == [
        "wait", "--for=condition=Established", "crd/clusternetworkpolicies.policy.networking.k8s.io", "--timeout=30s"
    ]


def test_node_labels_are_set_and_taken_off_in_one_kubectl_label():
    assert node_label_argv("kind-worker", {"zone": "a"}, ["rack"]) == [
        "label", "node", "kind-worker", "--overwrite", "zone=a", "rack-"
    ]


def test_cluster_policies_are_applied_labelled_as_ours_and_only_ours_are_deleted():
    body = owned_cluster_policy({"kind": "ClusterNetworkPolicy", "metadata": {"name": "a"}, "spec": {}, "status": {}})
    assert body["metadata"]["labels"] == {"npm-conformance/owned": "true"} and "status" not in body
    ours = {"metadata": {"name": "old", "labels": {"npm-conformance/owned": "true"}}}
    kept = {"metadata": {"name": "a", "labels": {"npm-conformance/owned": "true"}}}
    theirs = {"metadata": {"name": "site-guard"}}
    assert cluster_policy_plan({"a": body}, [ours, kept, theirs]) == (["old"], [])
    # One of the same name that the backend did not create is never replaced.
    assert cluster_policy_plan({"site-guard": body}, [theirs]) == ([], ["site-guard"])
