"""What the nvidia_driver role left on a Debian 12 node (package installs skipped: no NVIDIA repo here)."""

from __future__ import annotations

import json


def test_no_gpu_fact(host):
    facts = json.loads(host.file("/var/tmp/inferops-gpu-facts.json").content_string)
    assert facts["present"] is False
    assert facts["count"] == 0
    assert facts["reason"].startswith("nvidia-smi not found")


def test_cuda_repository_from_the_mirror_with_the_offline_key(host):
    src = host.file("/etc/apt/sources.list.d/nvidia-cuda.sources").content_string
    assert "URIs: https://mirrors.aliyun.com/nvidia-cuda/debian12/x86_64/" in src
    assert "Suites: /" in src
    assert "Signed-By: /etc/apt/keyrings/nvidia-cuda.asc" in src
    key = host.file("/etc/apt/keyrings/nvidia-cuda.asc")
    assert key.mode == 0o644
    assert key.content_string.startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")


def test_nouveau_blacklisted(host):
    conf = host.file("/etc/modprobe.d/blacklist-nouveau.conf").content_string
    assert "\nblacklist nouveau\n" in conf
    assert "options nouveau modeset=0" in conf
    # modprobe reads it: the resolved configuration has the blacklist
    assert "blacklist nouveau" in host.check_output("modprobe --showconfig")


def test_module_options(host):
    conf = host.file("/etc/modprobe.d/nvidia-inferops.conf").content_string
    assert "options nvidia NVreg_EnableStreamMemOPs=1 NVreg_PreserveVideoMemoryAllocations=1" in conf
    assert "Ansible managed" in conf


def test_peermem_loaded_at_boot(host):
    assert host.file("/etc/modules-load.d/nvidia-peermem.conf").content_string.strip().endswith("nvidia-peermem")


def test_initramfs_tool_present_for_the_rebuild(host):
    assert host.exists("update-initramfs")
