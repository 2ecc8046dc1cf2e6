"""The enforcer from its container image, run on a virtual node as the DaemonSet runs it.

Everything about how the container runs comes from ``npm/azure-npm.yaml``, so what is tested
is what ships: the DaemonSet container's image, arguments and environment, its
``securityContext`` (capabilities, read-only root, no privilege escalation, seccomp), its
resource limits and its volumes (the xtables lock from the host, the ConfigMap's file where
``NPM_CONFIG`` points, an emptyDir on /tmp). A securityContext field or volume type this
module does not know is an error, never silently dropped.

hostNetwork is the node's network namespace, joined by path with podman's
``--network ns:/run/netns/NODE``. The engine runs from the host's mount namespace, never
under ``ip netns exec`` (which remounts /sys for the namespace and confuses the runtime).
podman runs with ``imagebuild/containers.conf`` unless CONTAINERS_CONF is set (why: that file).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "npm" / "azure-npm.yaml"
CONTAINERS_CONF = ROOT / "imagebuild" / "containers.conf"
ENGINE = "podman"  # docker cannot join a network namespace by path
NETNS_DIR = Path("/run/netns")
# securityContext fields and what they become; anything else is refused (see security_flags).
KNOWN_SECURITY = {
    "privileged", "allowPrivilegeEscalation", "readOnlyRootFilesystem", "capabilities", "seccompProfile",
    "runAsUser", "runAsGroup", "runAsNonRoot",
}


class ContainerError(RuntimeError):
    """The DaemonSet asks for something this runner cannot reproduce, or no engine is usable."""


@dataclass(frozen=True)
class Volume:
    """One of the container's volume mounts with its pod volume."""

    name: str
    mount_path: str
    read_only: bool
    kind: str  # hostPath, configMap, emptyDir
    host_path: str = ""
    host_type: str = ""
    files: tuple[tuple[str, str], ...] = ()  # configMap: (key, content)


@dataclass(frozen=True)
class DaemonSetContainer:
    """What the DaemonSet's enforcer container is made of."""

    image: str
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...]  # literal values
    field_env: tuple[tuple[str, str], ...]  # (name, fieldPath) from the downward API
    security_context: Mapping[str, Any]
    limits: Mapping[str, str]
    volumes: tuple[Volume, ...]


def daemonset_container(path: Path = MANIFEST) -> DaemonSetContainer:
    """The enforcer container of the DaemonSet in ``path``, with its volumes resolved."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    daemonset = next(d for d in docs if d["kind"] == "DaemonSet")
    config_maps = {d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"}
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pod_volumes = {v["name"]: v for v in pod.get("volumes", [])}
    volumes = []
    for mount in container.get("volumeMounts", []):
        source = pod_volumes[mount["name"]]
        common = {"name": mount["name"], "mount_path": mount["mountPath"], "read_only": bool(mount.get("readOnly"))}
        if "hostPath" in source:
            volumes.append(
                Volume(**common, kind="hostPath", host_path=source["hostPath"]["path"],
                       host_type=source["hostPath"].get("type", ""))
            )
        elif "configMap" in source:
            data = config_maps[source["configMap"]["name"]]
            volumes.append(Volume(**common, kind="configMap", files=tuple(sorted(data.items()))))
        elif "emptyDir" in source:
            volumes.append(Volume(**common, kind="emptyDir"))
        else:
            raise ContainerError(f"volume {mount['name']}: only hostPath, configMap and emptyDir can be reproduced")
    env = tuple((e["name"], e["value"]) for e in container.get("env", []) if "value" in e)
    field_env = tuple(
        (e["name"], e["valueFrom"]["fieldRef"]["fieldPath"])
        for e in container.get("env", [])
        if "fieldRef" in e.get("valueFrom", {})
    )
    return DaemonSetContainer(
        image=container["image"],
        args=tuple(container.get("args", ())),
        env=env,
        field_env=field_env,
        security_context=container.get("securityContext", {}),
        limits=container.get("resources", {}).get("limits", {}),
        volumes=tuple(volumes),
    )


def security_flags(context: Mapping[str, Any]) -> list[str]:
    """podman flags for a container securityContext, as a kubelet with runc would apply it."""
    unknown = set(context) - KNOWN_SECURITY
    if unknown:
        raise ContainerError(f"securityContext fields not reproduced here: {', '.join(sorted(unknown))}")
    flags: list[str] = []
    if context.get("privileged"):
        flags.append("--privileged")
    capabilities = context.get("capabilities", {})
    for cap in capabilities.get("drop", []):
        flags += ["--cap-drop", cap]
    for cap in capabilities.get("add", []):
        flags += ["--cap-add", cap]
    if context.get("readOnlyRootFilesystem"):
        # Kubernetes mounts no tmpfs of its own on a read-only root; podman would (/tmp, /run).
        flags += ["--read-only", "--read-only-tmpfs=false"]
    if context.get("allowPrivilegeEscalation") is False:
        flags += ["--security-opt", "no-new-privileges"]
    seccomp = context.get("seccompProfile", {}).get("type", "Unconfined")  # Kubernetes' default
    if seccomp == "Unconfined":
        flags += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":  # RuntimeDefault: the engine's default profile, no flag
        raise ContainerError(f"seccompProfile {seccomp} not reproduced here")
    if "runAsUser" in context or "runAsGroup" in context:
        flags += ["--user", f"{context.get('runAsUser', 0)}:{context.get('runAsGroup', 0)}"]
    return flags


def _quantity(text: str, units: Mapping[str, float]) -> float:
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(text))
    if not match or match[2] not in units:
        raise ContainerError(f"resource quantity {text!r} not understood")
    return float(match[1]) * units[match[2]]


def limit_flags(limits: Mapping[str, str]) -> list[str]:
    """podman flags for resource limits (cpu, memory)."""
    flags = []
    if "cpu" in limits:
        flags += ["--cpus", f"{_quantity(limits['cpu'], {'': 1, 'm': 0.001}):g}"]
    if "memory" in limits:
        units = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3}
        flags += ["--memory", str(int(_quantity(limits["memory"], units)))]
    return flags


def volume_flags(volumes: Sequence[Volume], scratch: Path) -> list[str]:
    """podman flags for the volumes; ConfigMap files are written under ``scratch``."""
    flags = []
    for volume in volumes:
        suffix = ":ro" if volume.read_only else ""
        if volume.kind == "hostPath":
            host = Path(volume.host_path)
            if volume.host_type == "FileOrCreate" and not host.exists():
                host.parent.mkdir(parents=True, exist_ok=True)
                host.touch()
            elif volume.host_type == "DirectoryOrCreate":
                host.mkdir(parents=True, exist_ok=True)
            flags += ["--volume", f"{host}:{volume.mount_path}{suffix}"]
        elif volume.kind == "configMap":
            directory = scratch / volume.name
            directory.mkdir(parents=True, exist_ok=True)
            for key, content in volume.files:
                (directory / key).write_text(content)
            flags += ["--volume", f"{directory}:{volume.mount_path}:ro"]  # configMap volumes are read-only
        else:  # emptyDir
            flags += ["--mount", f"type=tmpfs,destination={volume.mount_path},tmpfs-mode=1777"]
    return flags


def run_prefix(
    netns: str | None,
    *,
    node_name: str,
    scratch: Path,
    image: str | None = None,
    mounts: Sequence[tuple[Path, str]] = (),
    name: str | None = None,
    entrypoint: str | None = None,
    spec: DaemonSetContainer | None = None,
) -> list[str]:
    """``podman run ... IMAGE``: append the container's arguments (the entry point is azure-npm).

    ``netns`` is a name under /run/netns (the node: hostNetwork), or None for no network;
    ``mounts`` adds read-only (host path, container path) binds, e.g. a manifest directory;
    ``image`` defaults to the DaemonSet's.
    """
    spec = spec or daemonset_container()
    env = [*spec.env, *((key, node_name) for key, path in spec.field_env if path == "spec.nodeName")]
    network = f"ns:{NETNS_DIR / netns}" if netns else "none"
    argv = [ENGINE, "run", "--rm", "--pull=never", "--network", network]
    if name:
        argv += ["--name", name]
    if entrypoint:
        argv += ["--entrypoint", entrypoint]
    argv += security_flags(spec.security_context)
    argv += limit_flags(spec.limits)
    argv += volume_flags(spec.volumes, scratch)
    for host, path in mounts:
        argv += ["--volume", f"{host}:{path}:ro"]
    for key, value in env:
        argv += ["--env", f"{key}={value}"]
    return [*argv, image or spec.image]


def engine_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for podman: ``environ`` with CONTAINERS_CONF set to ours when unset."""
    env = dict(os.environ if environ is None else environ)
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def unavailable() -> str | None:
    """Why containers cannot run here, or None."""
    if shutil.which(ENGINE) is None:
        return f"{ENGINE} is not installed (apt-get install podman runc)"
    if os.geteuid() != 0:
        return f"needs root: {ENGINE} joins network namespaces under {NETNS_DIR}"
    try:
        with open("/proc/self/uid_map") as fh:
            if fh.readline().split() != ["0", "0", "4294967295"]:
                return "needs real root, not a user namespace"
    except OSError:
        pass
    return None
