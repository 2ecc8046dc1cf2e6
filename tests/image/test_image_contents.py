"""What the image holds: the kernel tools of both iptables backends, this checkout's enforcer,
labels naming exactly what is installed, and nothing left of the build."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import time

import pytest

from conformance.netns.container import engine_env
from tests.image.conftest import ROOT, in_image

pytestmark = [pytest.mark.image, pytest.mark.kernel]
VENV = "/opt/azure-npm"


def inspect(image: str) -> dict:
    proc = subprocess.run(["podman", "image", "inspect", image], capture_output=True, text=True, env=engine_env())
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)[0]


def normalised(pins: str) -> set[str]:
    return {re.sub(r"[-_.]+", "-", pin.lower()) for pin in pins.split()}


def test_image_has_both_iptables_backends_ipset_nft_ip_and_the_enforcer(image, tmp_path):
    tools = ("iptables-nft iptables-nft-save iptables-nft-restore iptables-legacy iptables-legacy-save "
             "iptables-legacy-restore ipset nft ip azure-npm")
    out = in_image(image, f"for t in {tools}; do command -v $t >/dev/null || echo missing $t; done; "
                   "iptables-nft --version; iptables-legacy --version; azure-npm --help | head -1", tmp_path)
    assert "missing" not in out, out
    assert "(nf_tables)" in out and "(legacy)" in out
    assert out.rstrip().endswith("COMMAND ...")


def test_container_has_only_net_admin_and_net_raw_a_read_only_root_and_seccomp(image, tmp_path):
    out = in_image(image, "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; "
                   "touch /root-is-writable 2>/dev/null && echo root-writable; touch /tmp/x && echo tmp-writable",
                   tmp_path)
    status = dict(line.split(":\t") for line in out.splitlines() if ":\t" in line)
    net_admin, net_raw = 12, 13  # linux/capability.h
    assert int(status["CapEff"], 16) == int(status["CapBnd"], 16) == (1 << net_admin) | (1 << net_raw)
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"  # a filter: the engine's default profile
    assert "root-writable" not in out and "tmp-writable" in out


def test_labels_name_every_installed_package_with_its_version(image, tmp_path):
    labels = inspect(image)["Labels"]
    out = in_image(
        image,
        "dpkg-query -W -f '${Package}=${Version}\\n'; echo ---; "
        f"{VENV}/bin/python -c \"import importlib.metadata as m; "
        "print('\\n'.join(d.name + '==' + d.version for d in m.distributions()))\"",
        tmp_path,
    )
    debian, python = out.split("---\n")
    assert set(debian.split()) == set(labels["org.azure-npm.debian-packages"].split())
    assert normalised(python) == normalised(labels["org.azure-npm.python-packages"])
    assert labels["org.opencontainers.image.base.name"].startswith("localhost/azure-npm-base:bookworm-")
    assert any(p.startswith("iptables=") for p in debian.split())


def test_image_holds_this_checkouts_enforcer(image, tmp_path):
    local = {
        str(p.relative_to(ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((ROOT / "npm").rglob("*.py"))
    }
    out = in_image(
        image,
        f"cd {VENV}/lib/python3*/site-packages && find npm -name '*.py' -exec sha256sum {{}} +",
        tmp_path,
    )
    inside = {path: digest for digest, path in (line.split() for line in out.splitlines())}
    assert inside == local


def test_nothing_of_the_build_stays_in_the_image(image, tmp_path):
    from imagebuild.pip_setup import ca_bundle, host_settings

    bundle = ca_bundle(host_settings(sys.executable))
    size, digest = (bundle.stat().st_size, hashlib.sha256(bundle.read_bytes()).hexdigest()) if bundle else (0, "")
    out = in_image(
        image,
        f"{VENV}/bin/python -c 'import pip' 2>/dev/null && echo pip-installed; "
        "for t in pip pip3 apt apt-get gcc cc; do command -v $t; done; "
        "find / -xdev \\( -name pip.conf -o -path '/run/secrets/*' -o -path '/mnt/build/*' \\) -print; "
        f"find / -xdev -type f -size {size}c -exec sha256sum {{}} + 2>/dev/null | grep {digest or 'none'} || true",
        tmp_path,
    )
    assert out.strip() == "", out


def test_a_second_build_of_the_same_sources_reuses_the_image(image):
    before = inspect(image)["Id"]
    started = time.monotonic()
    repo, tag = image.rsplit(":", 1)
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "azure-npm-image", f"IMAGE={repo}", f"VERSION={tag}", f"PYTHON={sys.executable}"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "is up to date" in proc.stderr
    assert time.monotonic() - started < 20
    assert inspect(image)["Id"] == before
