"""The versions a communication check's stamp is keyed on."""

from __future__ import annotations

from ansible_collections.inferops.cluster.plugins.module_utils._node_versions import node_versions, venv_packages


def test_venv_packages_keeps_torch_and_nccl_only(tmp_path):
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"
    for name in ("torch-2.8.0.dist-info", "nvidia_nccl_cu12-2.27.3.dist-info", "numpy-2.1.0.dist-info"):
        (site / name).mkdir(parents=True)
    assert venv_packages(str(tmp_path / "venv")) == ["nvidia_nccl_cu12-2.27.3.dist-info", "torch-2.8.0.dist-info"]


def test_node_versions_reads_driver_and_rdma_stack_from_sysfs(tmp_path):
    (tmp_path / "module" / "nvidia").mkdir(parents=True)
    (tmp_path / "module" / "nvidia" / "version").write_text("580.159.04\n")
    calls = []

    def run(argv):
        calls.append(argv)
        return {"ofed_info": "MLNX_OFED_LINUX-24.10-1.1.4.0", "docker": "sha256:abc"}.get(argv[0], "")

    versions = node_versions(run, image="vllm/vllm-openai:v0.11.0", sys_root=str(tmp_path))
    assert versions["nvidia_driver"] == "580.159.04"
    assert versions["mlx5_core"] == ""  # no mlx5 module: absent, not an error
    assert versions["ofed"] == "MLNX_OFED_LINUX-24.10-1.1.4.0"
    assert versions["image"] == "sha256:abc"
    assert "python_packages" not in versions
    assert ["docker", "image", "inspect", "--format", "{{.Id}}", "vllm/vllm-openai:v0.11.0"] in calls


def test_a_driver_upgrade_changes_the_versions(tmp_path):
    (tmp_path / "module" / "nvidia").mkdir(parents=True)
    (tmp_path / "module" / "nvidia" / "version").write_text("570.86.15\n")
    before = node_versions(lambda argv: "", sys_root=str(tmp_path))
    (tmp_path / "module" / "nvidia" / "version").write_text("580.159.04\n")
    assert node_versions(lambda argv: "", sys_root=str(tmp_path)) != before
