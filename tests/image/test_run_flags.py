"""How the DaemonSet's container becomes podman flags (no engine needed): nothing it asks for
is dropped, and what cannot be reproduced is refused."""

from __future__ import annotations

import dataclasses

import pytest

from conformance.netns.container import (
    ContainerError,
    daemonset_container,
    limit_flags,
    run_prefix,
    security_flags,
    volume_flags,
)


def test_the_daemonsets_security_context_becomes_exactly_these_flags():
    flags = security_flags(daemonset_container().security_context)
    assert flags == [
        "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
        "--read-only", "--read-only-tmpfs=false", "--security-opt", "no-new-privileges",
    ]  # RuntimeDefault seccomp: the engine's default profile, so no flag; not privileged


def test_without_a_seccomp_profile_the_container_is_unconfined_as_in_kubernetes():
    assert security_flags({})[-2:] == ["--security-opt", "seccomp=unconfined"]


@pytest.mark.parametrize("context", [{"procMount": "Unmasked"}, {"seccompProfile": {"type": "Localhost"}}])
def test_a_security_setting_that_cannot_be_reproduced_is_refused(context):
    with pytest.raises(ContainerError):
        security_flags(context)


def test_limits_become_cpu_and_memory_flags():
    assert limit_flags({"cpu": "250m", "memory": "600Mi"}) == ["--cpus", "0.25", "--memory", str(600 * 1024**2)]
    with pytest.raises(ContainerError):
        limit_flags({"memory": "lots"})


def test_volumes_are_the_host_lock_the_configmap_file_and_a_tmpfs(tmp_path):
    spec = daemonset_container()
    flags = volume_flags([v for v in spec.volumes if v.kind != "hostPath"], tmp_path)
    config = next(v for v in spec.volumes if v.kind == "configMap")
    env = dict(spec.env)
    key, content = config.files[0]
    assert env["NPM_CONFIG"] == f"{config.mount_path}/{key}"
    assert (tmp_path / config.name / key).read_text() == content
    assert f"{tmp_path / config.name}:{config.mount_path}:ro" in flags
    assert "type=tmpfs,destination=/tmp,tmpfs-mode=1777" in flags
    lock = next(v for v in spec.volumes if v.kind == "hostPath")
    assert lock.host_path == lock.mount_path == "/run/xtables.lock"


def test_the_container_joins_the_node_namespace_with_the_node_name_from_the_downward_api(tmp_path):
    spec = daemonset_container()
    spec = dataclasses.replace(spec, volumes=tuple(v for v in spec.volumes if v.kind != "hostPath"))  # host untouched
    argv = run_prefix("npmx-n0", node_name="n1", scratch=tmp_path, image="img:1", mounts=[(tmp_path, "/m")], spec=spec)
    assert argv[:2] == ["podman", "run"] and argv[-1] == "img:1"
    assert argv[argv.index("--network") + 1] == "ns:/run/netns/npmx-n0"
    assert "NODE_NAME=n1" in argv and f"{tmp_path}:/m:ro" in argv and "--pull=never" in argv
