"""The plan step (playbooks/plan_step.yml) for real: every playbook that plans, alone and through site.yml, gives
the same plan for one inventory; an empty serving group fails; facts are gathered once per run.

Local connection only: fixture hosts with `ansible_connection: local` and saved RoCE facts (-e plan_facts_dir).
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from plan_facts import write_facts
from playbook_run import ansible_playbook, recap, task_outcomes

ROOT = Path(__file__).resolve().parents[2]
PHASES = [
    "preflight",
    "prepare",
    "weights",
    "convert",
    "serve",
    "verify",
    "bench",
    "smoke",
    "status",
    "upgrade",
    "teardown",
    "collect_logs",
    "router",
    "firewall",
    "monitoring",
    "plan",
]
# 2 replicas x 2 nodes x 8 GPUs, RoCE (seed 003 captures), vLLM in Docker, an API key.
HOSTS = {
    "gpu1": {"ansible_host": "10.63.65.207", "inferops_replica": "r0"},
    "gpu2": {"ansible_host": "10.63.65.208", "inferops_replica": "r0"},
    "gpu3": {"ansible_host": "10.63.65.209", "inferops_replica": "r1"},
    "gpu4": {"ansible_host": "10.63.65.210", "inferops_replica": "r1"},
}
HEADS = {"gpu1": "10.63.65.207", "gpu2": "10.63.65.207", "gpu3": "10.63.65.209", "gpu4": "10.63.65.209"}
LOCAL = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
COMMON = {
    **LOCAL,
    "inferops_engine": "vllm",
    "inferops_runtime": "docker",
    "inferops_engine_image": "vllm/vllm-openai:v0.11.0",
    "inferops_model_path": "/models/DeepSeek-R1",
    "inferops_api_key": "fixture-secret-key",
}
# What may run besides the plan step under --tags plan: read-only fact gathering, role argument checks, plan.yml's
# table.
PLAN_STEP_TASKS = {
    t["name"] for play in yaml.safe_load((ROOT / "playbooks" / "plan_step.yml").read_text()) for t in play["tasks"]
}
ALSO_UNDER_TAGS = re.compile(
    r"Gathering Facts|Gather the facts the roles need|Show the plan|.* : Validating arguments against arg spec .*"
    r"|Write the sbatch script .*"  # plan.yml's, skipped without -e plan_sbatch (a file on the controller only)
)


def statuses(output: str, task: str) -> list[str]:
    """The first result word (ok, skipping, changed, fatal) after each run of TASK."""
    return [run[0] for run in task_outcomes(output, task) if run]


def inventory(directory: Path, hosts: dict, common: dict, group: str = "inferops_nodes") -> Path:
    (directory / "group_vars").mkdir(parents=True)
    (directory / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {group: {"hosts": hosts}}}}))
    (directory / "group_vars" / "all.yml").write_text(yaml.safe_dump(common))
    return directory


@pytest.fixture(scope="module")
def roce(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("roce")
    write_facts(base / "facts", HOSTS, HEADS)
    return inventory(base / "inventory", HOSTS, COMMON), base / "facts"


def plan_through(playbook: str, roce: tuple[Path, Path], out: Path, *extra: str) -> dict:
    inv, facts = roce
    run = ansible_playbook(
        playbook, "-i", str(inv), "-e", f"plan_facts_dir={facts}", "-e", f"plan_output={out}", *extra, timeout=300
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert all(r["failed"] == 0 and r["unreachable"] == 0 for r in recap(run.stdout).values()), run.stdout
    if "--tags" in extra:
        ran = set(re.findall(r"^TASK \[(.+?)\] \*", run.stdout, flags=re.M)) - PLAN_STEP_TASKS
        assert all(ALSO_UNDER_TAGS.fullmatch(task) for task in ran), ran
        # nothing changes but the plan file, written on the controller and reported on the first host
        assert all(r["changed"] == 0 for host, r in recap(run.stdout).items() if host != next(iter(HOSTS))), run.stdout
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def reference(roce: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """plan.yml, untagged: the plan every other playbook must reproduce."""
    return plan_through("playbooks/plan.yml", roce, tmp_path_factory.mktemp("ref") / "plan.json")


def test_reference_plan_uses_the_saved_facts(reference: dict) -> None:
    for host, node in reference["hosts"].items():
        env = node["env"]
        assert env["NCCL_IB_DISABLE"] == "0", host
        assert env["NCCL_IB_HCA"] == ",".join(f"mlx5_{i}:1" for i in range(1, 9)), host
        assert env["NCCL_IB_GID_INDEX"] == "3", host
        assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "xgbe0", host
        assert node["gpus_per_node"] == 8, host  # from the saved gpu_facts: the inventory does not say
    text = json.dumps(reference)
    assert "fixture-secret-key" not in text
    assert COMMON["inferops_api_key"] not in text


@pytest.mark.parametrize("phase", PHASES)
def test_each_playbook_alone_plans_the_same(phase: str, roce, reference: dict, tmp_path: Path) -> None:
    plan = plan_through(f"playbooks/{phase}.yml", roce, tmp_path / "plan.json", "--tags", "plan")
    assert plan == reference


def test_site_plans_the_same(roce, reference: dict, tmp_path: Path) -> None:
    assert plan_through("site.yml", roce, tmp_path / "plan.json", "--tags", "plan") == reference


@pytest.mark.parametrize("group", ["inferops_node", "inferops_nodes"])
def test_empty_or_misspelled_group_fails(group: str, tmp_path: Path) -> None:
    """A misspelled group, or the right one with no hosts: fails, naming the group and the inventory."""
    inv = inventory(
        tmp_path / "inv", {"n1": {"ansible_host": "10.9.0.1"}} if group != "inferops_nodes" else {}, COMMON, group
    )
    for playbook in ("playbooks/plan.yml", "site.yml"):
        run = ansible_playbook(playbook, "-i", str(inv), timeout=120)
        assert run.returncode != 0, run.stdout
        assert "the group inferops_nodes (the serving nodes) has no hosts or does not exist" in run.stdout, run.stdout
        assert str(inv) in run.stdout


def own_address() -> tuple[str, str]:
    """(interface, IPv4 address) of this machine's first global address off Docker's bridges."""
    argv = ["ip", "-4", "-o", "addr", "show", "scope", "global"]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    for ifname, cidr in re.findall(r"^\d+:\s+(\S+)\s+inet\s+(\S+)", out.stdout, flags=re.M):
        if not ifname.startswith(("docker", "br-", "veth")):
            return ifname, cidr.split("/")[0]
    raise AssertionError(f"no global IPv4 address to plan on: {out.stdout}")


def test_facts_are_gathered_once_per_run(tmp_path: Path) -> None:
    """No saved facts: the first phase gathers rdma_facts (route to the head), later phases of the run reuse them,
    and the plan reads them (GLOO_SOCKET_IFNAME: the interface that holds the head's address). Both hosts of the
    2-node replica are this machine (local connection); the second one's address is only a name in the plan."""
    ifname, address = own_address()
    inv = inventory(
        tmp_path / "inv",
        {"cpu1": {"ansible_host": address}, "cpu2": {"ansible_host": "192.0.2.10"}},
        {**LOCAL, "inferops_device": "cpu", "inferops_model_path": "/models/tiny", "inferops_api_open": True},
    )
    out = tmp_path / "plan.json"
    run = ansible_playbook("site.yml", "-i", str(inv), "-e", f"plan_output={out}", "--tags", "plan", timeout=300)
    assert run.returncode == 0, run.stdout[-4000:]
    rdma = statuses(run.stdout, "Read the RDMA devices and the interface that reaches the head (once per run and head)")
    assert len(rdma) == 9 and rdma[0] == "ok" and set(rdma[1:]) == {"skipping"}, rdma  # 9 phases (no bench)
    assert set(statuses(run.stdout, "Read the GPUs (once per run, again while none was found)")) == {"skipping"}
    plan = json.loads(out.read_text())
    assert plan["hosts"]["cpu1"]["head_address"] == address
    assert plan["hosts"]["cpu1"]["env"]["GLOO_SOCKET_IFNAME"] == ifname
    assert plan["hosts"]["cpu2"]["env"]["GLOO_SOCKET_IFNAME"] == ifname
    # a day-2 playbook alone gathers the same facts and plans the same
    for playbook in ("playbooks/verify.yml", "playbooks/upgrade.yml"):
        alone = tmp_path / f"{Path(playbook).stem}.json"
        run = ansible_playbook(playbook, "-i", str(inv), "-e", f"plan_output={alone}", "--tags", "plan", timeout=300)
        assert run.returncode == 0, run.stdout[-4000:]
        assert statuses(
            run.stdout, "Read the RDMA devices and the interface that reaches the head (once per run and head)"
        ) == ["ok"]
        assert json.loads(alone.read_text()) == plan


def test_router_host_outside_the_serving_group(roce, tmp_path: Path) -> None:
    """inferops_router_host may name any inventory host: the action passes every host of the inventory."""
    inv = tmp_path / "inv"
    gateway = {"gw1": {"ansible_host": "10.63.65.1"}}
    hosts = {"all": {"children": {"inferops_nodes": {"hosts": HOSTS}, "gateways": {"hosts": gateway}}}}
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    (inv / "group_vars" / "all.yml").write_text(yaml.safe_dump({**COMMON, "inferops_router_host": "gw1"}))
    out = tmp_path / "plan.json"
    run = ansible_playbook(
        "playbooks/plan.yml", "-i", str(inv), "-e", f"plan_facts_dir={roce[1]}", "-e", f"plan_output={out}"
    )
    assert run.returncode == 0, run.stdout[-3000:]
    plan = json.loads(out.read_text())
    assert set(plan["hosts"]) == set(HOSTS)
    # the router host's address (read by the action although gw1 is no serving node) may reach each head's API
    api = next(rule for rule in plan["hosts"]["gpu1"]["firewall"] if rule["name"] == "api")
    assert "10.63.65.1" in api["from"]
    # a router host whose name does not resolve on the controller fails the plan, naming host and variable
    gateway["gw1"]["ansible_host"] = "gw1.invalid"
    (inv / "hosts.yml").write_text(yaml.safe_dump(hosts))
    run = ansible_playbook("playbooks/plan.yml", "-i", str(inv), "-e", f"plan_facts_dir={roce[1]}")
    assert run.returncode != 0
    assert "host gw1: ansible_host: 'gw1.invalid' does not resolve" in " ".join(run.stdout.split())


def test_a_one_node_replica_reads_no_route(tmp_path: Path) -> None:
    """A replica on one node sends nothing between nodes: no rdma_facts (and no `ip`) needed to plan it."""
    _ifname, address = own_address()
    inv = inventory(
        tmp_path / "inv",
        {"cpu1": {"ansible_host": address}},
        {**LOCAL, "inferops_device": "cpu", "inferops_model_path": "/models/tiny", "inferops_api_open": True},
    )
    out = tmp_path / "plan.json"
    run = ansible_playbook("playbooks/preflight.yml", "-i", str(inv), "-e", f"plan_output={out}", timeout=300)
    assert run.returncode == 0, run.stdout[-4000:]
    task = "Read the RDMA devices and the interface that reaches the head (once per run and head)"
    assert statuses(run.stdout, task) == ["skipping"]
    assert "GLOO_SOCKET_IFNAME" not in json.loads(out.read_text())["hosts"]["cpu1"]["env"]
