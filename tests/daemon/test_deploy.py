"""The DaemonSet manifest, scrape config and dashboard are valid and match the daemon."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from npm.daemon.config import DaemonConfig
from npm.daemon.http import MAIN_ROUTES
from npm.daemon.metrics import Metrics

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "npm" / "azure-npm.yaml"


def documents() -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def by_kind(kind: str) -> dict[str, Any]:
    return next(d for d in documents() if d["kind"] == kind)


def validate(doc: dict[str, Any]) -> None:
    """Strict schema validation: kubernetes-validate's bundled schemas (offline), else the
    kubernetes client's own models (pydantic, extra fields forbidden)."""
    try:
        import kubernetes_validate
    except ImportError:
        from kubernetes import client

        group_version = doc["apiVersion"].split("/")[-1].capitalize()
        model = getattr(client, f"{group_version}{doc['kind']}")
        model.model_validate(doc)
        return
    kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


@pytest.mark.parametrize("doc", documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_manifest_is_valid_against_the_kubernetes_schema(doc):
    validate(doc)


def test_the_validator_rejects_an_unknown_field():
    ds = by_kind("DaemonSet")
    ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilites"] = {}
    with pytest.raises(Exception, match="capabilites"):
        validate(ds)


def test_daemonset_runs_on_every_node_with_only_the_capabilities_it_needs():
    ds = by_kind("DaemonSet")
    assert ds["metadata"]["namespace"] == "kube-system"
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in pod["tolerations"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["privileged"] is False and sc["readOnlyRootFilesystem"] is True
    assert sorted(sc["capabilities"]["add"]) == ["NET_ADMIN", "NET_RAW"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["xtables-lock"] == "/run/xtables.lock"
    assert volumes["xtables-lock"]["hostPath"]["path"] == "/run/xtables.lock"
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    assert container["resources"]["requests"] and container["resources"]["limits"]


def test_daemonset_names_the_image_of_this_version_under_the_runtimes_seccomp_profile():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (container,) = by_kind("DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"azure-npm:{version}"  # what make azure-npm-image builds
    assert container["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


def test_probes_and_ports_point_at_the_daemons_endpoints():
    port = int(DaemonConfig().listen.rsplit(":", 1)[1])
    container = by_kind("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}
    assert {"/healthz", "/readyz"} <= set(MAIN_ROUTES)
    assert by_kind("Service")["spec"]["ports"][0]["targetPort"] == port


def test_configmap_holds_a_valid_config_file(tmp_path):
    from npm.daemon.config import load

    cm = by_kind("ConfigMap")
    assert cm["metadata"]["name"] == "azure-npm-config"
    (name, text) = next(iter(cm["data"].items()))
    container = by_kind("DaemonSet")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["NPM_CONFIG"].endswith("/" + name)
    cfg_file = tmp_path / name
    cfg_file.write_text(text)
    cfg = load({}, path=str(cfg_file), environ={})  # raises on an unknown key or bad value
    assert cfg.listen == DaemonConfig().listen


def test_clusterrole_grants_watching_and_events_only():
    rules = by_kind("ClusterRole")["rules"]
    grants = {(g, r): set(rule["verbs"]) for rule in rules for g in rule["apiGroups"] for r in rule["resources"]}
    for resource in ("pods", "namespaces", "nodes"):
        assert grants[("", resource)] == {"get", "list", "watch"}
    assert grants[("networking.k8s.io", "networkpolicies")] == {"get", "list", "watch"}
    assert grants[("policy.networking.k8s.io", "clusternetworkpolicies")] == {"get", "list", "watch"}
    assert grants[("", "events")] == {"create", "patch"}


METRIC = re.compile(r"\bnpm_[a-z0-9_]+")


def test_dashboard_references_only_metrics_that_exist():
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used, "the dashboard queries no metric"
    assert used <= Metrics().names(), sorted(used - Metrics().names())


def test_scrape_config_targets_the_metrics_endpoint():
    jobs = yaml.safe_load((ROOT / "deploy" / "prometheus-scrape.yaml").read_text())
    text = (ROOT / "deploy" / "prometheus-scrape.yaml").read_text()
    assert set(METRIC.findall(text)) <= Metrics().names()
    for job in jobs:
        assert job["metrics_path"] in MAIN_ROUTES


def relabel(labels: dict[str, str], rules: list[dict[str, Any]]) -> dict[str, str] | None:
    """Prometheus relabelling (keep, drop, replace) of one discovered target; None when dropped."""
    labels = dict(labels)
    for rule in rules:
        value = rule.get("separator", ";").join(labels.get(name, "") for name in rule.get("source_labels", []))
        match = re.fullmatch(rule.get("regex", "(.*)"), value)
        action = rule.get("action", "replace")
        if (action == "keep" and not match) or (action == "drop" and match):
            return None
        if action == "replace" and match:
            labels[rule["target_label"]] = match.expand(rule.get("replacement", "$1").replace("$", "\\"))
    return labels


def pod_targets(name: str, node: str, ip: str, labels: dict[str, str], ports: list[dict[str, Any]],
                phase: str = "Running") -> list[dict[str, str]]:
    """The targets Prometheus's pod discovery makes of one pod: one per declared container port."""
    meta = {f"__meta_kubernetes_pod_label_{re.sub(r'[^a-zA-Z0-9_]', '_', k)}": v for k, v in labels.items()}
    return [
        {"__address__": f"{ip}:{port['containerPort']}", "__meta_kubernetes_namespace": "kube-system",
         "__meta_kubernetes_pod_name": name, "__meta_kubernetes_pod_node_name": node,
         "__meta_kubernetes_pod_phase": phase, "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
         **meta}
        for port in ports
    ]


def test_scrape_config_is_one_job_that_finds_each_daemon_once():
    (job,) = yaml.safe_load((ROOT / "deploy" / "prometheus-scrape.yaml").read_text())  # no second job to overlap
    template = by_kind("DaemonSet")["spec"]["template"]
    labels, ports = template["metadata"]["labels"], template["spec"]["containers"][0]["ports"]
    discovered = [
        *pod_targets("azure-npm-a", "node-a", "172.18.0.2", labels, ports),
        *pod_targets("azure-npm-b", "node-b", "172.18.0.3", labels, ports),
        *pod_targets("azure-npm-c", "node-c", "172.18.0.4", labels, ports, phase="Pending"),
        *pod_targets("coredns-1", "node-a", "10.244.0.5", {"k8s-app": "kube-dns"},
                     [{"containerPort": 53, "name": "dns"}, {"containerPort": 9153, "name": "metrics"}]),
        *pod_targets("lookalike", "node-a", "10.244.0.6", {"k8s-app": "azure-npm-exporter"},
                     [{"containerPort": 9100, "name": "metrics"}]),
    ]
    kept = [t for t in (relabel(d, job["relabel_configs"]) for d in discovered) if t is not None]
    port = DaemonConfig().listen.rsplit(":", 1)[1]
    assert sorted(t["__address__"] for t in kept) == [f"172.18.0.2:{port}", f"172.18.0.3:{port}"]
    assert sorted((t["node"], t["pod"]) for t in kept) == [("node-a", "azure-npm-a"), ("node-b", "azure-npm-b")]


PER_NODE_GAUGES = ("npm_num_policies", "npm_num_policies_failed_closed", "npm_pods_watched", "npm_invalid_objects")


def test_dashboard_does_not_sum_what_every_node_reports():
    # Every node reports the cluster's policies, pods and invalid objects: summed over nodes,
    # three nodes would show three times the policies.
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    seen = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            gauges = set(METRIC.findall(target["expr"])) & set(PER_NODE_GAUGES)
            if not gauges or panel["title"].endswith("per node"):
                continue
            seen |= gauges
            assert re.match(r"^(max|avg|min) by \(\w+\) \(npm_\w+\)$", target["expr"]), target["expr"]
            assert "not a sum" in panel.get("description", ""), panel["title"]
    assert seen == set(PER_NODE_GAUGES)


def test_metrics_carry_the_original_names():
    names = Metrics().names()
    for name in (
        "npm_num_policies",
        "npm_num_iptables_rules",
        "npm_num_ipsets",
        "npm_num_ipset_entries",
        "npm_pods_watched",
        "npm_add_policy_exec_time",
        "npm_controller_policy_exec_time",
        "npm_controller_pod_exec_time",
        "npm_controller_namespace_exec_time",
        "npm_linux_iptables_restore_latency_seconds",
        "npm_linux_iptables_restore_failure_total",
        "npm_policy_enforcement_latency_seconds",
        "npm_policy_failed_closed_total",
    ):
        assert name in names


def test_the_docs_say_how_to_build_and_override_the_image_the_daemonset_names():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    (container,) = by_kind("DaemonSet")["spec"]["template"]["spec"]["containers"]
    name = by_kind("DaemonSet")["metadata"]["name"]
    daemon_doc, readme = (ROOT / "docs" / "daemon.md").read_text(), (ROOT / "README.md").read_text()
    for doc in (daemon_doc, readme):
        assert container["image"] in doc and "make azure-npm-image" in doc
    # The override commands name this DaemonSet and container, and the Makefile's IMAGE variable.
    assert f"set image daemonset/{name} {container['name']}=registry.example.com/azure-npm:{version}" in daemon_doc
    assert "make azure-npm-image IMAGE=registry.example.com/azure-npm" in daemon_doc
    assert "IMAGE ?= azure-npm" in (ROOT / "Makefile").read_text()
