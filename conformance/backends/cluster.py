"""The cluster backend: scenarios on any Kubernetes cluster reachable with a kubeconfig.

Pods run agnhost, as the upstream e2e suite does: one container per served port and
protocol (``serve-hostname --tcp|--udp --port N``, SCTP through ``porter``), and probes are
``agnhost connect IP:PORT --timeout=1s --protocol=tcp`` run in the source pod through exec;
exit status 0 is a connection, anything else (``TIMEOUT``, ``REFUSED``, ``OTHER`` on stderr)
is none. The backend creates and deletes only namespaces it owns (annotated
``npm-conformance/owned``); it refuses to touch a namespace of the same name it did not
create. It deploys the enforcer (``npm/azure-npm.yaml``) only with ``--deploy-enforcer``.

ClusterNetworkPolicies (cluster-scoped, a CRD the cluster must serve) are applied with
``kubectl``, labelled ``npm-conformance/owned=true``; the backend deletes only those, and
refuses to replace one of the same name that it did not create. A cluster without the CRD
is a backend failure as soon as a scenario has a ClusterNetworkPolicy (the kind backend
installs it).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from conformance.backends import BackendError, ProbeRequest
from kube.load import CNP_KIND
from kube.model import NAMESPACE_NAME_LABEL, Cluster, Pod, PortSpec

AGNHOST_IMAGE = "registry.k8s.io/e2e-test-images/agnhost:2.53"
OWNED = "npm-conformance/owned"
CNP_RESOURCE = "clusternetworkpolicies.policy.networking.k8s.io"
CNP_CRD_FILE = Path(__file__).resolve().parents[2] / "kind-config" / "clusternetworkpolicies-v0.2.0.yaml"
SHAPE = "npm-conformance/shape"
ENFORCER_MANIFEST = Path(__file__).resolve().parents[2] / "npm" / "azure-npm.yaml"
CONNECT_FAILURES = ("TIMEOUT", "REFUSED", "DNS", "OTHER", "UNKNOWN")


# -- pure helpers (tested without a cluster) ---------------------------------------------
def container_name(port: int, protocol: str) -> str:
    """Upstream's container naming: ``cont-80-tcp``."""
    return f"cont-{port}-{protocol.lower()}"


def agnhost_containers(pod: Pod, serve: Sequence[PortSpec] = (), image: str = AGNHOST_IMAGE) -> list[dict[str, Any]]:
    """One agnhost container per (port, protocol) the pod declares or must serve.

    Declared ports keep their names (named ports resolve on them); extra served ports are
    not declared. A pod serving nothing gets one idle container (``agnhost pause``) so that
    probes can still be run from it.
    """
    declared = {(p.port, p.protocol): p for p in pod.ports}
    wanted = dict.fromkeys(declared)
    for spec in serve:
        wanted.setdefault((spec.port, spec.protocol))
    containers = []
    for port, proto in wanted:
        env: list[dict[str, str]] = []
        if proto == "TCP":
            command = ["/agnhost", "serve-hostname", "--tcp", "--http=false", "--port", str(port)]
        elif proto == "UDP":
            command = ["/agnhost", "serve-hostname", "--udp", "--http=false", "--port", str(port)]
        else:
            env = [{"name": f"SERVE_SCTP_PORT_{port}", "value": "foo"}]
            command = ["/agnhost", "porter"]
        container: dict[str, Any] = {
            "name": container_name(port, proto),
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "command": command,
            "env": env,
            "securityContext": {},
        }
        if (port, proto) in declared:
            entry = declared[(port, proto)]
            container["ports"] = [
                {"containerPort": port, "protocol": proto, **({"name": entry.name} if entry.name else {})}
            ]
        containers.append(container)
    if not containers:
        containers.append({"name": "cont-idle", "image": image, "imagePullPolicy": "IfNotPresent", "args": ["pause"]})
    return containers


def pod_manifest(
    pod: Pod, node_name: str, serve: Sequence[PortSpec] = (), image: str = AGNHOST_IMAGE
) -> dict[str, Any]:
    """The Pod to create for a scenario pod, pinned to ``node_name`` and annotated with its shape."""
    containers = agnhost_containers(pod, serve, image)
    shape = hashlib.sha256(json.dumps([node_name, pod.host_network, containers], sort_keys=True).encode()).hexdigest()
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod.name,
            "namespace": pod.namespace,
            "labels": dict(pod.labels),
            "annotations": {SHAPE: shape[:32]},
        },
        "spec": {
            "nodeName": node_name,
            "hostNetwork": pod.host_network,
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{"operator": "Exists"}],
            "containers": containers,
        },
    }


def connect_argv(ip: str, port: PortSpec, timeout: float) -> list[str]:
    """``agnhost connect`` as upstream runs it."""
    host = f"[{ip}]" if ":" in ip else ip
    return [
        "/agnhost",
        "connect",
        f"{host}:{port.port}",
        f"--timeout={timeout:g}s",
        f"--protocol={port.protocol.lower()}",
    ]


def parse_connect(exit_code: int | None, stdout: str, stderr: str) -> bool | None:
    """Upstream's reading of ``agnhost connect``: exit 0 is connected, any failure is not.

    None (skipped) when the protocol cannot be used at all: SCTP without kernel support
    ("protocol not supported"), which upstream would count as a block.
    """
    if exit_code == 0:
        return True
    text = f"{stdout}\n{stderr}".lower()
    if "protocol not supported" in text or "address family not supported" in text:
        return None
    return False


def connect_reason(stderr: str) -> str:
    """The fixed prefix agnhost prints on failure (TIMEOUT, REFUSED, ...), or ''."""
    for line in stderr.splitlines():
        head = line.split(":", 1)[0].strip()
        if head in CONNECT_FAILURES:
            return head
    return ""


def owned_cluster_policy(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """A ClusterNetworkPolicy as the backend applies it: labelled as its own, status left out."""
    body = {k: v for k, v in manifest.items() if k != "status"}
    meta = dict(body.get("metadata") or {})
    meta["labels"] = {**(meta.get("labels") or {}), OWNED: "true"}
    return {**body, "metadata": meta}


def cluster_policy_plan(
    wanted: Mapping[str, Mapping[str, Any]], existing: Sequence[Mapping[str, Any]]
) -> tuple[list[str], list[str]]:
    """(names to delete, names that exist but are not ours) for ClusterNetworkPolicies ``wanted``
    by name, given the ``existing`` items as ``kubectl get -o json`` lists them."""
    owned, foreign = [], []
    for item in existing:
        meta = item.get("metadata") or {}
        (owned if (meta.get("labels") or {}).get(OWNED) == "true" else foreign).append(meta.get("name", ""))
    return sorted(n for n in owned if n not in wanted), sorted(n for n in foreign if n in wanted)


def enforcer_manifests(image: str, path: Path = ENFORCER_MANIFEST) -> list[dict[str, Any]]:
    """``npm/azure-npm.yaml`` with the DaemonSet's enforcer image set to ``image``."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    for doc in docs:
        if doc.get("kind") == "DaemonSet":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                container["image"] = image
                container["imagePullPolicy"] = "IfNotPresent"
    return docs


# -- the backend -------------------------------------------------------------------------
class ClusterBackend:
    """Scenarios on an existing cluster (kubeconfig); the enforcer deployed on request."""

    name = "cluster"
    default_probe_timeout = 1.0

    def __init__(
        self,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        deploy_enforcer: bool = False,
        image: str = "azure-npm:conformance",
        agnhost_image: str = AGNHOST_IMAGE,
        log: Callable[[str], None] | None = None,
        workers: int = 16,
        pod_timeout: float = 180.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.deploy_enforcer = deploy_enforcer
        self.image = image
        self.agnhost_image = agnhost_image
        self.log = log or (lambda _msg: None)
        self.workers = workers
        self.pod_timeout = pod_timeout
        self._api: Any = None
        self._node_map: dict[str, str] = {}
        self._node_ips: dict[str, str] = {}
        self._pods: dict[str, Pod] = {}
        self._containers: dict[str, str] = {}
        self._deployed = False
        self._cluster_policies = False  # whether any ClusterNetworkPolicy was applied (to clean up)

    # -- API ---------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._api is None:
            from kubernetes import client, config

            try:
                config.load_kube_config(config_file=self.kubeconfig, context=self.context)
            except Exception as exc:
                raise BackendError(f"cannot load kubeconfig: {exc}") from exc
            api = client.ApiClient()
            self._api = (client.CoreV1Api(api), client.NetworkingV1Api(api))
        return self._api

    def _kubectl(self, args: Sequence[str], stdin: str | None = None) -> str:
        argv = ["kubectl", *(["--kubeconfig", self.kubeconfig] if self.kubeconfig else [])]
        argv += ["--context", self.context] if self.context else []
        proc = subprocess.run([*argv, *args], input=stdin, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BackendError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
        return proc.stdout

    def deploy(self) -> None:
        """Apply the enforcer's manifests and wait for its DaemonSet to roll out."""
        docs = enforcer_manifests(self.image)
        self._kubectl(["apply", "-f", "-"], yaml.safe_dump_all(docs))
        for doc in docs:
            if doc.get("kind") == "DaemonSet":
                meta = doc["metadata"]
                self._kubectl(
                    [
                        "-n",
                        meta.get("namespace", "default"),
                        "rollout",
                        "status",
                        f"ds/{meta['name']}",
                        "--timeout=300s",
                    ]
                )
        self._deployed = True

    # -- Backend -----------------------------------------------------------------------
    def open(self, nodes: Sequence[str]) -> dict[str, str]:
        core, _net = self._client()
        if self.deploy_enforcer and not self._deployed:
            self.deploy()
        if not self._node_ips or any(n not in self._node_map for n in nodes):
            try:
                items = core.list_node().items
            except Exception as exc:
                raise BackendError(f"cannot list nodes: {exc}") from exc
            workers = [n for n in items if "node-role.kubernetes.io/control-plane" not in (n.metadata.labels or {})]
            real = sorted(workers or items, key=lambda n: n.metadata.name)
            for i, name in enumerate(nodes):
                node = real[i % len(real)]
                self._node_map[name] = node.metadata.name
                self._node_ips[name] = next(
                    (a.address for a in node.status.addresses or [] if a.type == "InternalIP"), ""
                )
        return dict(self._node_ips)

    def sync_workloads(self, cluster: Cluster, serve: Sequence[PortSpec] = ()) -> Cluster:
        core, _net = self._client()
        wanted_ns = {ns.name: ns for ns in cluster.namespaces}
        try:
            self._sync_namespaces(core, wanted_ns)
            ips = self._sync_pods(core, cluster, serve)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"cannot create namespaces or pods: {exc}") from exc
        pods = tuple(replace(p, ip=ips[p.key], ips=(ips[p.key],)) for p in cluster.pods)
        return replace(cluster, pods=pods)

    def _owned_namespaces(self, core: Any) -> dict[str, Any]:
        return {
            ns.metadata.name: ns
            for ns in core.list_namespace().items
            if (ns.metadata.annotations or {}).get(OWNED) == "true"
        }

    def _sync_namespaces(self, core: Any, wanted: Mapping[str, Any]) -> None:
        from kubernetes.client.exceptions import ApiException

        owned = self._owned_namespaces(core)
        for name in set(owned) - set(wanted):
            core.delete_namespace(name)
        for name, ns in wanted.items():
            labels = {k: v for k, v in ns.labels.items() if k != NAMESPACE_NAME_LABEL}
            if name in owned and owned[name].status.phase != "Terminating":
                current = {k: v for k, v in (owned[name].metadata.labels or {}).items() if k != NAMESPACE_NAME_LABEL}
                if current != labels:
                    patch = {k: None for k in current if k not in labels} | labels
                    core.patch_namespace(name, {"metadata": {"labels": patch}})
                continue
            body = {"metadata": {"name": name, "labels": labels, "annotations": {OWNED: "true"}}}
            deadline = time.monotonic() + self.pod_timeout
            while True:
                try:
                    core.create_namespace(body)
                    break
                except ApiException as exc:
                    if exc.status == 409 and name not in owned:
                        existing = core.read_namespace(name)
                        if (existing.metadata.annotations or {}).get(OWNED) != "true":
                            raise BackendError(
                                f"namespace {name} exists and was not created by npm-conformance"
                            ) from None
                    if exc.status != 409 or time.monotonic() > deadline:
                        raise
                    time.sleep(1)  # still terminating from an earlier scenario

    def _sync_pods(self, core: Any, cluster: Cluster, serve: Sequence[PortSpec]) -> dict[str, str]:
        from kubernetes.client.exceptions import ApiException

        wanted = {
            p.key: pod_manifest(p, self._node_map.get(p.node, p.node), serve, self.agnhost_image) for p in cluster.pods
        }
        existing = {}
        for ns in {p.namespace for p in cluster.pods} | {k.split("/")[0] for k in self._pods}:
            try:
                for item in core.list_namespaced_pod(ns).items:
                    existing[f"{ns}/{item.metadata.name}"] = item
            except ApiException as exc:
                if exc.status != 404:
                    raise
        keep = set()
        for key, item in existing.items():
            want = wanted.get(key)
            shape = (item.metadata.annotations or {}).get(SHAPE)
            if want is None or shape != want["metadata"]["annotations"][SHAPE] or item.metadata.deletion_timestamp:
                if not item.metadata.deletion_timestamp:
                    core.delete_namespaced_pod(item.metadata.name, item.metadata.namespace, grace_period_seconds=0)
                self._wait_gone(core, key)
                continue
            keep.add(key)
            labels = dict(item.metadata.labels or {})
            if labels != want["metadata"]["labels"]:  # labels are the one thing a pod may change in place
                patch = {k: None for k in labels if k not in want["metadata"]["labels"]} | want["metadata"]["labels"]
                core.patch_namespaced_pod(item.metadata.name, item.metadata.namespace, {"metadata": {"labels": patch}})
        for key, body in wanted.items():
            if key not in keep:
                core.create_namespaced_pod(body["metadata"]["namespace"], body)
        self._containers = {key: body["spec"]["containers"][0]["name"] for key, body in wanted.items()}
        self._pods = {p.key: p for p in cluster.pods}
        return self._wait_running(core, list(wanted))

    def _wait_gone(self, core: Any, key: str) -> None:
        from kubernetes.client.exceptions import ApiException

        ns, name = key.split("/", 1)
        deadline = time.monotonic() + self.pod_timeout
        while time.monotonic() < deadline:
            try:
                core.read_namespaced_pod(name, ns)
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise
            time.sleep(0.5)
        raise BackendError(f"pod {key} not deleted after {self.pod_timeout:.0f}s")

    def _wait_running(self, core: Any, keys: list[str]) -> dict[str, str]:
        deadline = time.monotonic() + self.pod_timeout
        ips: dict[str, str] = {}
        while True:
            for key in keys:
                if key in ips:
                    continue
                ns, name = key.split("/", 1)
                pod = core.read_namespaced_pod(name, ns)
                ready = all(c.ready for c in pod.status.container_statuses or []) and pod.status.container_statuses
                if pod.status.phase == "Running" and pod.status.pod_ip and ready:
                    ips[key] = pod.status.pod_ip
            if len(ips) == len(keys):
                return ips
            if time.monotonic() > deadline:
                missing = ", ".join(k for k in keys if k not in ips)
                raise BackendError(f"pods not running after {self.pod_timeout:.0f}s: {missing}")
            time.sleep(1)

    def sync_policies(self, cluster: Cluster, manifests: Sequence[Mapping[str, Any]]) -> None:
        from kubernetes.client.exceptions import ApiException

        _core, net = self._client()
        self._sync_cluster_policies([m for m in manifests if m.get("kind") == CNP_KIND])
        manifests = [m for m in manifests if m.get("kind") != CNP_KIND]
        wanted = {f"{m['metadata']['namespace']}/{m['metadata']['name']}": m for m in manifests}
        try:
            for ns in {n.name for n in cluster.namespaces}:
                for item in net.list_namespaced_network_policy(ns).items:
                    if f"{ns}/{item.metadata.name}" not in wanted:
                        net.delete_namespaced_network_policy(item.metadata.name, ns)
            for key, manifest in wanted.items():
                ns, name = key.split("/", 1)
                body = {k: v for k, v in manifest.items() if k != "status"}
                try:
                    current = net.read_namespaced_network_policy(name, ns)
                    body = {
                        **body,
                        "metadata": {**body["metadata"], "resourceVersion": current.metadata.resource_version},
                    }
                    net.replace_namespaced_network_policy(name, ns, body)
                except ApiException as exc:
                    if exc.status != 404:
                        raise
                    net.create_namespaced_network_policy(ns, body)
        except ApiException as exc:
            raise BackendError(f"cannot apply NetworkPolicies: {exc.reason}: {exc.body}") from exc

    def _sync_cluster_policies(self, manifests: Sequence[Mapping[str, Any]]) -> None:
        """Make the cluster hold exactly these ClusterNetworkPolicies of ours (``kubectl``)."""
        if not manifests and not self._cluster_policies:
            return  # a cluster without the CRD runs every scenario that has none
        wanted = {m["metadata"]["name"]: owned_cluster_policy(m) for m in manifests}
        try:
            existing = json.loads(self._kubectl(["get", CNP_RESOURCE, "-o", "json"])).get("items", [])
        except BackendError as exc:
            raise BackendError(
                f"cannot list ClusterNetworkPolicies ({exc}); does the cluster serve the CRD? "
                f"kubectl apply -f {CNP_CRD_FILE.relative_to(CNP_CRD_FILE.parents[1])} installs it"
            ) from None
        stale, foreign = cluster_policy_plan(wanted, existing)
        if foreign:
            raise BackendError(
                f"ClusterNetworkPolicy {', '.join(foreign)} exists and was not created by npm-conformance"
            )
        if stale:
            self._kubectl(["delete", CNP_RESOURCE, *stale, "--ignore-not-found"])
        if wanted:
            self._cluster_policies = True
            listing = {"apiVersion": "v1", "kind": "List", "items": list(wanted.values())}
            self._kubectl(["apply", "-f", "-"], yaml.safe_dump(listing))

    def probe(self, requests: Sequence[ProbeRequest], timeout: float) -> list[bool | None]:
        core, _net = self._client()

        def one(req: ProbeRequest) -> bool | None:
            ns, name = req.src.split("/", 1)
            container = self._containers[req.src]
            code, out, err = self._exec(core, ns, name, container, connect_argv(req.dst_ip, req.port, timeout), timeout)
            return parse_connect(code, out, err)

        try:
            with ThreadPoolExecutor(max_workers=self.workers) as pool:
                return list(pool.map(one, requests))
        except Exception as exc:
            raise BackendError(f"probe failed: {exc}") from exc

    @staticmethod
    def _exec(
        core: Any, ns: str, name: str, container: str, argv: list[str], timeout: float
    ) -> tuple[int | None, str, str]:
        from kubernetes.stream import stream

        resp = stream(
            core.connect_get_namespaced_pod_exec,
            name,
            ns,
            container=container,
            command=argv,
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
        )
        resp.run_forever(timeout=timeout + 20)
        out, err = resp.read_stdout() or "", resp.read_stderr() or ""
        code = resp.returncode
        resp.close()
        return code, out, err

    def close(self) -> None:
        if self._api is None:
            return
        core, _net = self._api
        try:
            for name in self._owned_namespaces(core):
                core.delete_namespace(name)
        except Exception as exc:
            self.log(f"could not delete namespaces: {exc}")
        if self._cluster_policies:
            try:
                self._kubectl(["delete", CNP_RESOURCE, "-l", f"{OWNED}=true", "--ignore-not-found"])
            except BackendError as exc:
                self.log(f"could not delete ClusterNetworkPolicies: {exc}")
