"""What the nvidia_container_toolkit role left on a Debian 12 node (no NVIDIA repository here)."""

from __future__ import annotations


def test_repository_from_the_mirror_with_the_offline_key(host):
    src = host.file("/etc/apt/sources.list.d/nvidia-container-toolkit.sources").content_string
    assert "URIs: https://mirrors.ustc.edu.cn/libnvidia-container/stable/deb/amd64" in src
    assert "Suites: /" in src
    assert "Signed-By: /etc/apt/keyrings/nvidia-container-toolkit.asc" in src
    assert host.file("/etc/apt/keyrings/nvidia-container-toolkit.asc").content_string.startswith(
        "-----BEGIN PGP PUBLIC KEY BLOCK-----"
    )


def test_refused_package_file_was_not_copied(host):
    assert not host.file("/var/cache/inferops/nvidia-container-toolkit").exists
