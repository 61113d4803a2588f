"""The node spec's runtime section: RDMA wiring from facts, the served model, mounts, names, warnings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError, build_plan, plan_table
from ansible_collections.inferops.cluster.plugins.module_utils._rdma import facts_from_tools
from ansible_collections.inferops.cluster.plugins.module_utils._spec import hub_repositories, hub_secret_env

ROOT = Path(__file__).resolve().parents[4]
ROCE = ROOT / "tests" / "inventories" / "roce-2x8-docker"
RDMA_FIXTURES = ROOT / "tests" / "unit" / "fixtures" / "rdma"
SEED003_HCAS = [f"mlx5_{i}:1" for i in range(1, 9)]


def _yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def roce_hostvars(engine: str) -> dict[str, dict[str, Any]]:
    """The RoCE inventory's variables as Ansible would hand them to the plan (its one template resolved)."""
    common = _yaml(ROCE / "group_vars" / "all.yml")
    common["inferops_engine"] = engine
    common["inferops_engine_image"] = common["roce_images"][engine]
    hosts = _yaml(ROCE / "hosts.yml")["all"]["children"]["inferops_nodes"]["hosts"]
    return {h: {**common, **own, **_yaml(ROCE / "host_vars" / f"{h}.yml")} for h, own in hosts.items()}


def base(**extra: Any) -> dict[str, dict[str, Any]]:
    common = {
        "inferops_engine": "vllm",
        "inferops_gpus_per_node": 8,
        "inferops_model_path": "/models/r1",
        "inferops_engine_image": "vllm/vllm-openai:v0.11.0",
        "inferops_api_key": True,  # as the action passes it: set or not
        **extra,
    }
    return {"n1": {**common, "ansible_host": "10.0.0.1"}, "n2": {**common, "ansible_host": "10.0.0.2"}}


@pytest.mark.parametrize("node", ["node01", "node02"])
def test_roce_inventory_holds_the_seed003_captures(node):
    facts = _yaml(ROCE / "host_vars" / f"{node}.yml")["inferops_rdma"]
    captured = facts_from_tools(
        (RDMA_FIXTURES / f"seed003_{node}_ibdev2netdev.txt").read_text(encoding="utf-8"),
        (RDMA_FIXTURES / f"seed003_{node}_show_gids.txt").read_text(encoding="utf-8"),
    )
    assert {k: v for k, v in facts.items() if k != "route"} == captured
    assert facts["route"]["ifname"] == "xgbe0"


@pytest.mark.parametrize("engine", ["sglang", "vllm"])
def test_roce_docker_nodes_get_the_rdma_devices_from_facts(engine):
    plan = build_plan(roce_hostvars(engine))
    for host in ("node01", "node02"):
        node = plan["hosts"][host]
        rt = node["runtime"]
        assert rt["kind"] == "docker" and rt["container"] == "inferops-engine" and rt["unit"] is None
        assert rt["devices"] == ["/dev/infiniband"]
        assert rt["capabilities"] == ["IPC_LOCK"]
        assert rt["device_requests"] == [{"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}]
        assert rt["rdma"] == {"enabled": True, "hcas": SEED003_HCAS, "gid_index": "3", "source": "facts"}
        assert node["env"]["NCCL_IB_HCA"] == ",".join(SEED003_HCAS)
        assert node["env"]["NCCL_IB_GID_INDEX"] == "3"
        assert node["env"]["NCCL_IB_DISABLE"] == "0"
        assert node["env"]["NCCL_SOCKET_IFNAME"] == node["env"]["GLOO_SOCKET_IFNAME"] == "xgbe0"
        assert node["warnings"] == []
        assert [(m["source"], m["read_only"]) for m in rt["mounts"]] == [
            ("/mnt/models/DeepSeek-R1", True),
            ("/etc/inferops/templates/deepseek-r1.jinja", True),
            ("/var/cache/inferops/inductor", False),
        ]
    table = "\n".join(plan_table(plan))
    assert table.count("/dev/infiniband  caps: IPC_LOCK") == 2
    assert table.count(f"rdma:    {','.join(SEED003_HCAS)} gid 3 (from facts)") == 2


def test_pinned_hcas_are_wired_too_and_say_so():
    plan = build_plan(base(inferops_nccl_env={"NCCL_IB_HCA": "mlx5_0:1", "NCCL_IB_DISABLE": "0"}))
    rdma = plan["hosts"]["n2"]["runtime"]["rdma"]
    assert rdma["source"] == "inventory" and rdma["hcas"] == ["mlx5_0:1"]
    assert plan["hosts"]["n2"]["runtime"]["capabilities"] == ["IPC_LOCK"]


def test_gpu_nodes_without_rdma_facts_are_not_silently_on_tcp():
    plan = build_plan(base())
    for host in ("n1", "n2"):
        node = plan["hosts"][host]
        assert node["env"]["NCCL_IB_DISABLE"] == "1"
        assert node["runtime"]["rdma"]["enabled"] is False and node["runtime"]["devices"] == []
        assert len(node["warnings"]) == 1 and "no RDMA facts" in node["warnings"][0]
    assert "\n".join(plan_table(plan)).count("WARNING: NCCL between nodes over TCP") == 2


@pytest.mark.parametrize(
    ("extra", "warned"),
    [
        ({"inferops_nccl_env": {"NCCL_IB_DISABLE": "1"}}, False),  # TCP on purpose
        ({"inferops_device": "cpu", "inferops_gpus_per_node": 1}, False),  # gloo, no NCCL
        ({"inferops_rdma": {"present": True, "devices": []}}, True),  # facts, but no active port
    ],
)
def test_tcp_warning_cases(extra, warned):
    plan = build_plan(base(**extra))
    assert bool(plan["hosts"]["n1"]["warnings"]) is warned


def test_one_node_replica_needs_no_rdma():
    hv = base()
    del hv["n2"]
    assert build_plan(hv)["hosts"]["n1"]["warnings"] == []


def test_runtime_defaults_to_docker_and_systemd_names_come_from_the_inventory():
    assert build_plan(base())["hosts"]["n1"]["runtime"]["kind"] == "docker"
    plan = build_plan(
        base(
            inferops_runtime="systemd",
            inferops_engine_mode="ray",
            inferops_engine_package="vllm",
            inferops_engine_version="0.11.0",
            inference_server_unit="llm",
            inference_server_venv="/srv/venv",
        )
    )
    rt = plan["hosts"]["n2"]["runtime"]
    assert (rt["unit"], rt["ray_unit"], rt["container"], rt["venv"]) == (
        "llm.service",
        "llm-ray.service",
        None,
        "/srv/venv",
    )
    assert (rt["package"], rt["version"], rt["image"], rt["shm_size"]) == ("vllm", "0.11.0", None, None)
    assert rt["devices"] == [] and rt["capabilities"] == [] and rt["device_requests"] == []
    assert rt["secrets_file"] == "/etc/inferops/llm-secrets.env"


def test_converted_model_is_served_by_every_phase():
    plan = build_plan(base(inferops_convert_fp8_to_bf16=True, inferops_engine="sglang"))
    node = plan["hosts"]["n1"]
    assert node["runtime"]["model_dir"] == node["model_path"] == "/models/r1-bf16"
    assert node["runtime"]["model_source"] == "/models/r1" and node["runtime"]["convert_fp8_to_bf16"] is True
    assert node["argv"][node["argv"].index("--model-path") + 1] == "/models/r1-bf16"
    assert node["runtime"]["mounts"][0] == {
        "source": "/models/r1-bf16",
        "target": "/models/r1-bf16",
        "read_only": True,
        "from": "model",
    }
    explicit = build_plan(base(inferops_convert_fp8_to_bf16=True, inferops_converted_model_path="/fast/r1-bf16"))
    assert explicit["hosts"]["n2"]["runtime"]["model_dir"] == "/fast/r1-bf16"


def test_every_path_the_engine_args_point_at_is_mounted():
    args = {
        "speculative-config": {"method": "eagle", "model": "/models/draft"},
        "chat-template": "/etc/templates/chat.jinja",
        "tokenizer": "/models/r1/tokenizer",  # inside the model directory: already mounted
        "lora-modules": ["sql=/models/lora/sql"],
        "download-dir": "/var/cache/hf",
        "compilation-config": {"cache_dir": "/var/cache/vllm-compile"},
    }
    mounts = build_plan(base(inferops_engine_args=args, inferops_env={"VLLM_CACHE_ROOT": "/var/cache/vllm"}))["hosts"][
        "n1"
    ]["runtime"]["mounts"]
    assert [(m["source"], m["read_only"], m["from"]) for m in mounts] == [
        ("/models/r1", True, "model"),
        ("/models/draft", True, "inferops_engine_args.speculative-config.model"),
        ("/etc/templates/chat.jinja", True, "inferops_engine_args.chat-template"),
        ("/models/lora/sql", True, "inferops_engine_args.lora-modules"),
        ("/var/cache/hf", False, "inferops_engine_args.download-dir"),
        ("/var/cache/vllm-compile", False, "inferops_engine_args.compilation-config.cache_dir"),
        ("/var/cache/vllm", False, "env.VLLM_CACHE_ROOT"),
    ]


def test_sglang_draft_model_is_mounted():
    plan = build_plan(base(inferops_engine="sglang", inferops_engine_args={"speculative-draft-model-path": "/m/d"}))
    assert {
        "source": "/m/d",
        "target": "/m/d",
        "read_only": True,
        "from": "inferops_engine_args.speculative-draft-model-path",
    } in plan["hosts"]["n1"]["runtime"]["mounts"]


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"inferops_runtime": "podman"}, "inferops_runtime"),
        ({"inference_server_image_pull": "sometimes"}, "inference_server_image_pull"),
        ({"inferops_model_path": "models/r1"}, "inferops_model_path"),
        (
            {"inferops_convert_fp8_to_bf16": True, "inferops_converted_model_path": "/models/r1/bf16"},
            "inferops_converted_model_path",
        ),
        ({"inference_server_ulimits": "memlock:-1:-1"}, "inference_server_ulimits"),
    ],
)
def test_bad_runtime_input_names_host_and_variable(extra, variable):
    with pytest.raises(PlanError) as err:
        build_plan(base(**extra))
    assert err.value.variable == variable and err.value.host in ("n1", "n2")


@pytest.mark.parametrize(
    ("engine_args", "repos"),
    [
        ({"tokenizer": "meta-llama/Llama-3.1-8B"}, ["meta-llama/Llama-3.1-8B"]),
        ({"tokenizer": "/models/tok", "hf_config_path": "/models/cfg"}, []),
        ({"speculative-config": '{"model": "acme/draft", "num_speculative_tokens": 2}'}, ["acme/draft"]),
        ({"speculative_config": {"model": "/models/draft"}}, []),
        ({"lora-modules": ["sql=acme/sql-lora", "local=/loras/x"]}, ["acme/sql-lora"]),
        ({"lora-paths": ["acme/a", "acme/a"], "tokenizer-path": "acme/tok"}, ["acme/a", "acme/tok"]),
        ({"chat-template": "templates/chat.jinja", "dtype": "bfloat16", "enable-metrics": True}, []),
    ],
)
def test_hub_repositories_come_only_from_model_naming_args(engine_args, repos):
    assert hub_repositories(engine_args) == repos


@pytest.mark.parametrize(
    ("token", "args", "want"),
    [
        ("hf_x", {"tokenizer": "org/tok"}, ["HF_TOKEN"]),
        (True, {"tokenizer": "org/tok"}, ["HF_TOKEN"]),  # the action may pass only whether it is set
        ("", {"tokenizer": "org/tok"}, []),
        (None, {"tokenizer": "org/tok"}, []),
        ("hf_x", {"tokenizer": "/models/tok"}, []),
    ],
)
def test_hf_token_joins_the_secret_env_only_when_the_engine_fetches(token, args, want):
    assert hub_secret_env({"inferops_hf_token": token}, args) == want
