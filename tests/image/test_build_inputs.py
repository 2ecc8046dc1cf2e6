"""What the image build takes from the host (no engine needed): the Debian mirrors apt uses,
pip's index settings without host paths, and a lock that pins every dependency."""

from __future__ import annotations

from pathlib import Path

from imagebuild import pip_setup, rootfs

ROOT = Path(__file__).resolve().parents[2]


def test_mirrors_come_from_one_line_and_deb822_sources(tmp_path):
    (tmp_path / "sources.list").write_text("deb [arch=amd64] http://mirror.example/debian bookworm main contrib\n")
    (tmp_path / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://other.example/debian\nSuites: trixie\nComponents: main\nEnabled: yes\n"
    )
    sources = rootfs.host_sources("bookworm", [tmp_path / "sources.list", tmp_path / "debian.sources"])
    assert [s.line() for s in sources] == [
        "deb http://mirror.example/debian bookworm main",
        "deb http://deb.debian.org/debian bookworm-updates main",  # not configured: Debian's own
        "deb http://security.example/debian-security bookworm-security main",
    ]


def test_the_base_cache_key_follows_packages_and_mirrors():
    sources = rootfs.host_sources("bookworm", [])
    key = rootfs.cache_key("bookworm", ("python3", "ipset"), sources)
    assert key == rootfs.cache_key("bookworm", ("ipset", "python3"), sources)
    assert key != rootfs.cache_key("bookworm", ("python3",), sources)
    assert key != rootfs.cache_key("bookworm", ("python3", "ipset"), sources[:1])


def test_build_pip_conf_keeps_remote_indexes_and_points_at_the_ca_secret():
    settings = {
        "index-url": "https://pypi.example/simple",
        "extra-index-url": "file:///opt/pypi/simple https://extra.example/simple",
        "find-links": "/opt/wheels",
        "default-timeout": "180",
        "cert": "/etc/ssl/certs/ca-certificates.crt",
    }
    conf, notes = pip_setup.build_pip_conf(settings, ca_secret="ca-bundle")
    lines = conf.splitlines()
    assert "cert = /run/secrets/ca-bundle" in lines
    assert "index-url = https://pypi.example/simple" in lines
    assert "extra-index-url = https://extra.example/simple" in lines
    assert "default-timeout = 180" in lines
    assert "/opt" not in conf and len(notes) == 2


def test_the_lock_pins_every_direct_dependency():
    assert pip_setup.missing_from_lock(ROOT / "pyproject.toml") == []
    assert all("==" in line for line in pip_setup.locked())
