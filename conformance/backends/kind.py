"""The kind backend: the cluster backend on a kind cluster it creates (or reuses) and deletes.

Steps: ``kind create cluster`` with ``kind-config/cluster.yaml`` (kept if a cluster of that
name exists), install kindnet for pod networking with its NetworkPolicy enforcement off,
wait for the nodes to be Ready, install the ClusterNetworkPolicy CRD (the pinned copy in
``kind-config/``) and wait for it to be served, build the enforcer image (``make
azure-npm-image``), ``kind load docker-image`` it, deploy ``npm/azure-npm.yaml``, then run
scenarios as the cluster backend does. A scenario's own node labels (``nodes: {NAME:
LABELS}``) are put on the kind node it maps to (and taken off when no longer wanted); the
kubelet's labels stay the kind nodes' own (``kubernetes.io/hostname`` is the kind node's name).

Why kindnet is installed by hand: since kind v0.24 the kindnetd that kind bundles always
enforces NetworkPolicy itself (kube-network-policies, built in; no flag turns it off), which
would hide the enforcer under test. The config disables kind's default CNI and this backend
installs kindnet from its own project (kubernetes-sigs/kindnet, a pinned copy in
``kind-config/``), whose kindnetd has ``--network-policy``, with ``--network-policy=false``
(``conformance/kindnet.py``). See docs/conformance.md.

Why ``kind create cluster`` gets no ``--wait``: without a CNI no node turns Ready, so kind's
wait for Ready nodes could only time out. The nodes are waited for after kindnet is applied.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from conformance.backends import BackendError
from conformance.backends.cluster import CNP_CRD_FILE, CNP_RESOURCE, ClusterBackend
from conformance.kindnet import KINDNET_ENV, kindnet_without_policy, manifest_location, read_manifest
from conformance.state import kubelet_labels
from kube.model import Cluster, PortSpec

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = ROOT / "kind-config" / "cluster.yaml"
NODES_READY_TIMEOUT = "300s"


# -- command lines (pure, tested) ---------------------------------------------------------
def kind_get_clusters_argv() -> list[str]:
    return ["kind", "get", "clusters"]


def kind_create_argv(name: str, config: str | Path, wait: str | None = None) -> list[str]:
    """``kind create cluster``; no ``--wait`` unless asked (the config's nodes lack a CNI until kindnet)."""
    return ["kind", "create", "cluster", "--name", name, "--config", str(config), *(["--wait", wait] if wait else [])]


def nodes_ready_argv(timeout: str = NODES_READY_TIMEOUT) -> list[str]:
    """The kubectl arguments that wait until every node is Ready (possible once kindnet runs)."""
    return ["wait", "--for=condition=Ready", "nodes", "--all", f"--timeout={timeout}"]


def cnp_crd_argv(path: str | Path = CNP_CRD_FILE) -> list[str]:
    """The kubectl arguments that install the ClusterNetworkPolicy CRD (server-side: it is large)."""
    return ["apply", "--server-side", "--force-conflicts", "-f", str(path)]


def crd_established_argv(timeout: str = "60s") -> list[str]:
    """The kubectl arguments that wait until the API server serves the ClusterNetworkPolicy CRD."""
    return ["wait", "--for=condition=Established", f"crd/{CNP_RESOURCE}", f"--timeout={timeout}"]


def node_label_argv(node: str, labels: Mapping[str, str], remove: Sequence[str] = ()) -> list[str]:
    """``kubectl label node`` setting ``labels`` and removing ``remove`` (``key-``)."""
    return ["label", "node", node, "--overwrite", *(f"{k}={v}" for k, v in labels.items()), *(f"{k}-" for k in remove)]


def kind_kubeconfig_argv(name: str) -> list[str]:
    return ["kind", "get", "kubeconfig", "--name", name]


def kind_load_argv(image: str, name: str) -> list[str]:
    return ["kind", "load", "docker-image", image, "--name", name]


def kind_delete_argv(name: str) -> list[str]:
    return ["kind", "delete", "cluster", "--name", name]


def image_build_argv(image: str) -> list[str]:
    """``make azure-npm-image`` producing ``image`` (IMAGE:VERSION split at the tag)."""
    repo, _, tag = image.rpartition(":") if ":" in image.split("/")[-1] else (image, "", "latest")
    return ["make", "azure-npm-image", f"IMAGE={repo}", f"VERSION={tag}"]


# -- the backend -------------------------------------------------------------------------
class KindBackend(ClusterBackend):
    """Creates or reuses a kind cluster, deploys the enforcer, runs like the cluster backend."""

    name = "kind"

    def __init__(
        self,
        *,
        cluster_name: str = "npm-conformance",
        config: str | None = None,
        keep: bool = False,
        image: str = "azure-npm:conformance",
        build: bool = True,
        log: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(deploy_enforcer=True, image=image, log=log)
        self.cluster_name = cluster_name
        self.config = Path(config) if config else DEFAULT_CONFIG
        self.keep = keep
        self.build = build
        self._created = False
        self._ready = False
        self._kubeconfig_dir: str | None = None
        self._node_labels: dict[str, dict[str, str]] = {}  # kind node -> the labels we put on it

    def _run(self, argv: Sequence[str], *, cwd: Path | None = None, stdin: str | None = None) -> str:
        if shutil.which(argv[0]) is None:
            raise BackendError(f"{argv[0]} is not installed (the kind backend needs docker, kind and kubectl)")
        self.log("$ " + " ".join(argv))
        proc = subprocess.run(list(argv), cwd=cwd, input=stdin, capture_output=True, text=True)
        if proc.returncode != 0:
            raise BackendError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def _prepare(self) -> None:
        existing = self._run(kind_get_clusters_argv()).split()
        if self.cluster_name not in existing:
            self._run(kind_create_argv(self.cluster_name, self.config))
            self._created = True
        self._kubeconfig_dir = tempfile.mkdtemp(prefix="npm-kind-")
        path = os.path.join(self._kubeconfig_dir, "kubeconfig")
        Path(path).write_text(self._run(kind_kubeconfig_argv(self.cluster_name)))
        self.kubeconfig = path
        if self._created:
            self._kubectl(["apply", "-f", "-"], _kindnet_manifest())
            self._kubectl(nodes_ready_argv())
        self._kubectl(cnp_crd_argv())
        self._kubectl(crd_established_argv())
        if self.build:
            self._run(image_build_argv(self.image), cwd=ROOT)
        self._run(kind_load_argv(self.image, self.cluster_name))
        self._ready = True

    def open(self, nodes: Sequence[str]) -> dict[str, str]:
        if not self._ready:
            self._prepare()
        return super().open(nodes)

    def sync_workloads(self, cluster: Cluster, serve: Sequence[PortSpec] = ()) -> Cluster:
        self._sync_node_labels(cluster)
        return super().sync_workloads(cluster, serve)

    def _sync_node_labels(self, cluster: Cluster) -> None:
        """Put each scenario node's own labels on the kind node it maps to."""
        wanted: dict[str, dict[str, str]] = {}
        for node in cluster.nodes:
            real = self._node_map.get(node.name, node.name)
            own = {k: v for k, v in node.labels.items() if k not in kubelet_labels(node.name)}
            if real in wanted and wanted[real] != own:
                self.log(f"scenario nodes sharing kind node {real} want different labels; the last one is used")
            wanted[real] = own
        for real in sorted(set(wanted) | set(self._node_labels)):
            want, had = wanted.get(real, {}), self._node_labels.get(real, {})
            if want != had:
                self._kubectl(node_label_argv(real, want, [k for k in had if k not in want]))
            self._node_labels[real] = want

    def close(self) -> None:
        try:
            for real, had in self._node_labels.items():  # a kept or reused cluster gets its nodes back as they were
                if had:
                    self._kubectl(node_label_argv(real, {}, list(had)))
            super().close()
        finally:
            if self._created and not self.keep:
                self._run(kind_delete_argv(self.cluster_name))
            if self._kubeconfig_dir:
                shutil.rmtree(self._kubeconfig_dir, ignore_errors=True)


def _kindnet_manifest() -> str:
    location = manifest_location()
    try:
        return kindnet_without_policy(read_manifest(location))
    except (OSError, ValueError) as exc:
        raise BackendError(f"cannot use the kindnet manifest {location}: {exc} (set ${KINDNET_ENV})") from exc
