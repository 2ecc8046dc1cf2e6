"""Workloads as endpoints: manifests with Deployments and no pods still say who talks to whom."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from kube import manifests as m
from kube.load import load_paths
from tests.sim_cli import run_npm_sim


def workload(kind: str, ns: str, name: str, labels: dict[str, str], *, ports: tuple[int, ...] = (80,),
             owner: tuple[str, str] | None = None, host_network: bool = False) -> dict[str, Any]:
    api = {"Job": "batch/v1", "CronJob": "batch/v1", "ReplicationController": "v1"}.get(kind, "apps/v1")
    template = {"metadata": {"labels": labels},
                "spec": {"hostNetwork": host_network,
                         "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": p} for p in ports]}]}}
    spec: dict[str, Any] = {"template": template}
    if kind == "CronJob":
        spec = {"jobTemplate": {"spec": spec}}
    meta: dict[str, Any] = {"name": name, "namespace": ns}
    if owner:
        meta["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "u",
                                    "controller": True}]
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def owned_pod(ns: str, name: str, labels: dict[str, str], ip: str, owner: tuple[str, str]) -> dict[str, Any]:
    pod = m.pod(ns, name, labels, ip=ip, node="n1", ports=[m.container_port(80)])
    pod["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": owner[0], "name": owner[1], "uid": "u",
                                           "controller": True}]
    return pod


def load(tmp_path: Path, objects: list[dict[str, Any]], **options: Any):  # type: ignore[no-untyped-def]
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump_all(objects))
    result = load_paths([str(path)], **options)
    assert result.errors == [], [str(e) for e in result.errors]
    return result


def test_a_workload_without_pods_is_an_endpoint_with_its_templates_labels_and_ports(tmp_path: Path) -> None:
    result = load(tmp_path, [m.namespace("shop"), workload("Deployment", "shop", "frontend", {"app": "frontend"},
                                                            ports=(8080,))])
    (pod,) = result.cluster.pods
    assert pod.key == "shop/frontend[Deployment]" and dict(pod.labels.items()) == {"app": "frontend"}
    assert [p.port for p in pod.ports] == [8080] and pod.ip and pod.workload == "shop/frontend[Deployment]"
    assert result.inputs()["used"]["Deployment"] == 1 and result.inputs()["used"]["Pod"] == 0
    assert any("without running pods" in n for n in result.notes)


def test_running_pods_belong_to_their_workload_through_the_replicaset_and_hide_the_stand_in(tmp_path: Path) -> None:
    objects = [
        m.namespace("shop"),
        workload("Deployment", "shop", "web", {"app": "web"}),
        workload("ReplicaSet", "shop", "web-5d8f7", {"app": "web"}, owner=("Deployment", "web")),
        workload("ReplicaSet", "shop", "web-old", {"app": "web", "v": "1"}, owner=("Deployment", "web")),
        owned_pod("shop", "web-5d8f7-abcde", {"app": "web"}, "10.244.0.5", ("ReplicaSet", "web-5d8f7")),
    ]
    pods = load(tmp_path, objects).cluster.pods
    assert [(p.key, p.workload) for p in pods] == [("shop/web-5d8f7-abcde", "shop/web[Deployment]")]


def test_without_the_replicaset_the_pod_template_hash_name_leads_to_the_deployment(tmp_path: Path) -> None:
    objects = [m.namespace("shop"), workload("Deployment", "shop", "web", {"app": "web"}),
               owned_pod("shop", "web-5d8f7-abcde", {"app": "web"}, "10.244.0.5", ("ReplicaSet", "web-5d8f7"))]
    pods = load(tmp_path, objects).cluster.pods
    assert [(p.key, p.workload) for p in pods] == [("shop/web-5d8f7-abcde", "shop/web[Deployment]")]


def test_a_cronjob_without_jobs_is_an_endpoint_through_its_job_template(tmp_path: Path) -> None:
    pods = load(tmp_path, [m.namespace("ops"), workload("CronJob", "ops", "backup", {"app": "backup"})]).cluster.pods
    assert [(p.key, p.labels.get("app")) for p in pods] == [("ops/backup[CronJob]", "backup")]


def test_a_daemonset_is_one_endpoint_per_known_node(tmp_path: Path) -> None:
    objects = [m.namespace("kube-system"), m.node("n1", "172.18.0.2"), m.node("n2", "172.18.0.3"),
               workload("DaemonSet", "kube-system", "agent", {"app": "agent"}, host_network=True)]
    pods = load(tmp_path, objects).cluster.pods
    assert {(p.key, p.ip) for p in pods} == {("kube-system/agent[DaemonSet@n1]", "172.18.0.2"),
                                             ("kube-system/agent[DaemonSet@n2]", "172.18.0.3")}


def test_the_enforcer_path_makes_no_stand_ins(tmp_path: Path) -> None:
    result = load(tmp_path, [m.namespace("shop"), workload("Deployment", "shop", "web", {"app": "web"})],
                  allocate_ips=False)
    assert result.cluster.pods == () and len(result.cluster.workloads) == 1


def test_a_workload_with_a_misspelled_template_field_is_refused_with_its_path(tmp_path: Path) -> None:
    bad = workload("Deployment", "shop", "web", {"app": "web"})
    bad["spec"]["template"]["spec"]["hostNetwrk"] = True
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(bad))
    (error,) = load_paths([str(path)]).errors
    assert error.path == "spec.template.spec.hostNetwrk" and "Deployment shop/web" in str(error)


def test_a_pull_request_adding_a_deployment_shows_its_new_connections_under_its_name(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    base = [m.namespace("shop"),
            workload("StatefulSet", "shop", "db", {"app": "db"}, ports=(5432,)),
            m.policy("shop", "db-from-api", {
                "podSelector": {"matchLabels": {"app": "db"}},
                "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}]}]})]
    (tmp_path / "before.yaml").write_text(yaml.safe_dump_all(base))
    after = [*base, workload("Deployment", "shop", "api", {"app": "api"})]
    (tmp_path / "after.yaml").write_text(yaml.safe_dump_all(after))
    code, out, err = run_npm_sim(capsys, "diff", "--before", str(tmp_path / "before.yaml"), "--after",
                                 str(tmp_path / "after.yaml"), "--port", "5432/TCP", "--no-outside", "-o", "json")
    assert code == 0, err
    gained = {(c["src"], c["dst"]) for c in json.loads(out)["gained"]}
    assert ("shop/api[Deployment]", "shop/db[StatefulSet]") in gained
