"""playbooks/plan.yml for real: every example inventory, the JSON it writes, and bad inventories.

The example hosts do not exist: the plan must be made without contacting any of them. Their API keys are vaulted
with the test vault password tests/vault-password.txt.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from playbook_run import ansible_playbook, recap

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.name for p in (ROOT / "inventories" / "examples").iterdir() if p.is_dir())
VAULT_PASSWORD = ROOT / "tests" / "vault-password.txt"  # a test value; the examples' keys are test values too


def run_plan(inventory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return ansible_playbook(
        str(ROOT / "playbooks" / "plan.yml"),
        "-i",
        str(inventory),
        "--vault-password-file",
        str(VAULT_PASSWORD),
        *extra,
        timeout=300,
    )


@pytest.mark.parametrize("example", EXAMPLES)
def test_plan_of_each_example(example: str, tmp_path: Path) -> None:
    inventory = ROOT / "inventories" / "examples" / example
    out = tmp_path / "plan.json"
    first = run_plan(inventory, "-e", f"plan_output={out}")
    assert first.returncode == 0, first.stdout + first.stderr
    plan = json.loads(out.read_text())
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text())["all"]["children"]["inferops_nodes"]["hosts"]
    assert set(plan["hosts"]) == set(hosts)
    for host, node in plan["hosts"].items():
        for key in ("replica", "node_rank", "head", "head_address", "nnodes", "engine", "argv", "env"):
            assert key in node, (host, key)
        assert node["head_address"] == hosts[node["head"]]["ansible_host"]
        assert f"{host}" in first.stdout
    # the table: one row per host with its rank
    for host, node in plan["hosts"].items():
        assert re.search(rf"^\s*{node['replica']}\s+{re.escape(host)}\s+{node['node_rank']}\s", first.stdout, re.M)
    assert all(r["unreachable"] == 0 and r["failed"] == 0 for r in recap(first.stdout).values())
    assert "example-only-key" not in first.stdout + out.read_text()  # the vaulted key is in neither
    assert all(node["secret_env"] for node in plan["hosts"].values() if node["serves_api"])
    second = run_plan(inventory, "-e", f"plan_output={out}")
    assert second.returncode == 0
    assert all(r["changed"] == 0 for r in recap(second.stdout).values()), second.stdout


BAD = [
    (
        "duplicate-rank",
        {
            "n1": {"ansible_host": "10.9.0.1", "inferops_node_rank": 1},
            "n2": {"ansible_host": "10.9.0.2", "inferops_node_rank": 1},
        },
        {},
        "host n2: inferops_node_rank: rank 1 is also held by n1 in replica r0",
    ),
    (
        "tp-mismatch",
        {"n1": {"ansible_host": "10.9.0.1"}, "n2": {"ansible_host": "10.9.0.2"}},
        {"inferops_tp": 8},
        "host n1: inferops_tp: tp x pp = 8 but replica r0 has 2 nodes x 8 GPUs = 16",
    ),
    (
        "docker-bridge-head",
        {"n1": {"ansible_host": "172.17.0.2"}, "n2": {"ansible_host": "10.9.0.2"}},
        {},
        "host n1: inferops_address: head address 172.17.0.2 is on the Docker bridge 172.17.0.0/16",
    ),
    (
        "gpu-counts-differ",
        {"n1": {"ansible_host": "10.9.0.1"}, "n2": {"ansible_host": "10.9.0.2", "inferops_gpus_per_node": 4}},
        {"inferops_tp": 12},
        "host n2: inferops_gpus_per_node: GPU counts differ inside replica r0: n1=8, n2=4",
    ),
    (
        "unknown-engine",
        {"n1": {"ansible_host": "10.9.0.1"}},
        {"inferops_engine": "tensorrt"},
        "host n1: inferops_engine: unknown engine 'tensorrt'",
    ),
    (
        "no-api-key",
        {"n1": {"ansible_host": "10.9.0.1"}},
        {"inferops_api_key": ""},
        "host n1: inferops_api_key: is not set: the engine would serve its API to anyone who can reach it",
    ),
]


@pytest.mark.parametrize(("name", "hosts", "group_vars", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_inventory_fails_naming_host_and_variable(name, hosts, group_vars, message, tmp_path: Path) -> None:
    inv = tmp_path / name
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"inferops_nodes": {"hosts": hosts}}}}))
    common = {
        "inferops_engine": "vllm",
        "inferops_gpus_per_node": 8,
        "inferops_model_path": "/m",
        "inferops_api_key": "test-only-not-a-secret",
        **group_vars,
    }
    (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump(common))
    result = run_plan(inv, "-e", f"plan_output={tmp_path / 'plan.json'}")
    assert result.returncode != 0
    assert message in result.stdout, result.stdout
    assert not (tmp_path / "plan.json").exists()
    assert "UNREACHABLE" not in result.stdout  # failed before contacting any host
