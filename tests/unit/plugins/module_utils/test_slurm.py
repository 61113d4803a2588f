"""The slurm runtime: the plan's sbatch job, checked against seed 004's script, the launcher run for real, the
partition fit and the keep-or-replace decision."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.module_utils import _slurm
from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError, build_plan, plan_table
from ansible_collections.inferops.cluster.plugins.module_utils._slurm_launch import (
    LaunchError,
    read_secrets,
    resolve,
    with_secrets,
)

ROOT = Path(__file__).resolve().parents[4]
EXAMPLE = ROOT / "inventories" / "examples" / "h20-sglang-tp16"
FIXTURES = ROOT / "tests" / "unit" / "fixtures"
SEED = yaml.safe_load((FIXTURES / "slurm" / "seed004.yml").read_text(encoding="utf-8"))["script"]
# The seed's site values, given as inventory variables.
SEED_SITE = {
    "inferops_runtime": "slurm",
    "inferops_slurm_partition": "lmsys.org",
    "inferops_slurm_time_limit": "12:00:00",
    "inferops_slurm_cpus_per_task": 18,
    "inferops_slurm_mem": "224GB",
    "inferops_slurm_shared_dir": "/shared/inferops",
}
sys.path.insert(0, str(FIXTURES / "rdma"))
from sysfs_tree import build, spec_from_tools  # noqa: E402


class _VaultLoader(yaml.SafeLoader):
    pass


_VaultLoader.add_constructor("!vault", lambda loader, node: "vaulted")


def example_hostvars(**extra: Any) -> dict[str, dict[str, Any]]:
    """inventories/examples/h20-sglang-tp16 as the action hands it to the plan (the key: set or not)."""
    common = yaml.load((EXAMPLE / "group_vars" / "all.yml").read_text(encoding="utf-8"), Loader=_VaultLoader)
    common["inferops_api_key"] = True
    common.update(SEED_SITE)
    common.update(extra)
    hosts = yaml.safe_load((EXAMPLE / "hosts.yml").read_text(encoding="utf-8"))["all"]["children"]
    return {h: {**common, **own} for h, own in hosts["inferops_nodes"]["hosts"].items()}


def example_plan(**extra: Any) -> dict[str, Any]:
    return build_plan(example_hostvars(**extra))


def example_script(**extra: Any) -> str:
    return _slurm.render_sbatch(example_plan(**extra)["slurm"])


def plan_and_script(**extra: Any) -> tuple[dict[str, Any], str]:
    plan = example_plan(**extra)
    return plan, _slurm.render_sbatch(plan["slurm"])


def _one(pattern: str, text: str) -> str:
    found = re.findall(pattern, text, flags=re.MULTILINE)
    assert len(found) == 1, f"{pattern!r}: {found}"
    return found[0]


# (what, the seed's line, our line): each pair must find one value in its script, and the values must agree.
KEY_LINES = [
    ("nodes", r"^#SBATCH --nodes=(\d+)", r"^#SBATCH --nodes=(\d+)$"),
    ("tasks", r"^#SBATCH --ntasks=(\d+)", r"^#SBATCH --ntasks=(\d+)$"),
    ("one task per node", r"^#SBATCH --ntasks-per-node=(\d+)", r"^#SBATCH --ntasks-per-node=(\d+)$"),
    ("partition", r'^#SBATCH --partition="([^"]+)"', r"^#SBATCH --partition=(\S+)$"),
    ("gres", r"^#SBATCH --gres=(\S+)", r"^#SBATCH --gres=(\S+)$"),
    ("time", r"^#SBATCH --time=(\S+)", r"^#SBATCH --time=(\S+)$"),
    ("cpus", r"^#SBATCH --cpus-per-task=(\d+)", r"^#SBATCH --cpus-per-task=(\d+)$"),
    ("mem", r"^#SBATCH --mem=(\S+)", r"^#SBATCH --mem=(\S+)$"),
    (
        "head: the allocation's first node",
        r'^HEAD_NODE=\$\(scontrol show hostname "\$SLURM_NODELIST" \| (head -n 1)\)',
        r'^INFEROPS_HEAD_NODE=\$\(scontrol show hostnames "\$SLURM_JOB_NODELIST" \| (head -n 1)\)$',
    ),
    ("srun tasks", r"^srun --ntasks=(\d+)", r"^    --ntasks=(\d+) \\$"),
    ("srun nodes", r"^srun --ntasks=\d+ --nodes=(\d+)", r"^    --nodes=(\d+) \\$"),
    ("node rank", r'--node-rank "(\$SLURM_NODEID)"', r"--node-rank (\$SLURM_NODEID) "),
    ("nnodes", r"--nnodes (\d+)", r"--nnodes (\d+) "),
    ("tp", r"^tp_size=(\d+)", r"--tp-size (\d+) "),
]


@pytest.mark.parametrize(("what", "seed", "ours"), KEY_LINES, ids=[k[0] for k in KEY_LINES])
def test_the_example_script_has_the_seed_key_lines(what, seed, ours):
    script = example_script()
    assert _one(seed, SEED) == _one(ours, script), what


def test_dist_init_is_the_first_node_of_the_allocation():
    """The seed: --dist-init-addr "${HEAD_NODE}:port"; here the head's address resolved in the job, the plan's
    dist_init port (the seed put sglang's API on 30000 and the rendezvous on 8000; the plan keeps them apart)."""
    script = example_script()
    assert _one(r'^NCCL_INIT_ADDR="\$\{(HEAD_NODE)\}:8000"', SEED) == "HEAD_NODE"
    assert _one(r"--dist-init-addr (\$INFEROPS_HEAD_ADDR:\d+) ", script) == "$INFEROPS_HEAD_ADDR:30000"
    assert "export INFEROPS_HEAD_NODE" in script.splitlines()


def test_the_script_carries_the_plan_hash_image_and_logs_but_no_secret():
    plan, script = plan_and_script()
    slurm = plan["slurm"]
    assert f"#SBATCH --comment=inferops-plan={slurm['hash']}" in script.splitlines()
    assert "--container-image=lmsysorg/sglang:v0.4.6.post1-cu124 \\" in script
    assert (
        "--container-mounts=/shared/inferops:/shared/inferops,/mnt/models/DeepSeek-R1:/mnt/models/DeepSeek-R1:ro"
        in script
    )
    # per-rank logs: %n is the node's index in the job (the seed's $SLURM_NODEID there is the batch node's: 0)
    assert "--output=/shared/inferops/inferops-r0/logs/%x_%j_node%n.out \\" in script
    assert "${INFEROPS_API_KEY}" in script and "vaulted" not in script
    assert subprocess.run(["bash", "-n"], input=script, text=True, check=False).returncode == 0


def test_the_same_plan_renders_the_same_script_and_a_change_changes_the_hash():
    one, script = plan_and_script()
    two, again = plan_and_script()
    assert script == again and one["slurm"]["hash"] == two["slurm"]["hash"]
    changed = example_plan(inferops_engine_args={"context-length": 32768})
    assert changed["slurm"]["hash"] != one["slurm"]["hash"]


def test_venv_without_image_runs_the_shared_venv_python():
    plan, script = plan_and_script(inferops_engine_image="", inference_server_venv="/shared/venvs/sglang")
    assert plan["slurm"]["venv"] == "/shared/venvs/sglang" and plan["slurm"]["image"] is None
    assert "    /shared/venvs/sglang/bin/python3 \\" in script and "--container-image" not in script


def test_the_plan_table_names_srun_tasks():
    plan = example_plan()
    text = "\n".join(plan_table(plan))
    assert "node02: slurm srun task on node 1 of the job; image lmsysorg/sglang:v0.4.6.post1-cu124 (pyxis)" in text
    assert "NCCL between nodes over TCP" not in text  # no facts at plan time: resolved in the job


@pytest.mark.parametrize(
    ("extra", "variable"),
    [
        ({"inferops_slurm_shared_dir": "relative/dir"}, "inferops_slurm_shared_dir"),
        ({"inferops_slurm_shared_dir": None}, "inferops_slurm_shared_dir"),
        ({"inferops_slurm_time_limit": "soon"}, "inferops_slurm_time_limit"),
        ({"inferops_slurm_job_name": "my job"}, "inferops_slurm_job_name"),
        ({"inferops_slurm_cpus_per_task": 0}, "inferops_slurm_cpus_per_task"),
        ({"inferops_slurm_sbatch_options": {"nodes": 3}}, "inferops_slurm_sbatch_options"),
        ({"inferops_slurm_partition": "a b"}, "inferops_slurm_partition"),
    ],
)
def test_bad_slurm_input_names_the_variable(extra, variable):
    with pytest.raises(PlanError) as err:
        build_plan(example_hostvars(**extra))
    assert err.value.variable == variable and err.value.host == "node01"


def test_mixed_runtimes_and_two_replicas_are_refused():
    hv = example_hostvars()
    hv["node02"]["inferops_runtime"] = "docker"
    with pytest.raises(PlanError, match="every serving host must use slurm") as err:
        build_plan(hv)
    assert err.value.variable == "inferops_runtime"
    hv = example_hostvars(inferops_tp=8)
    hv["node02"]["inferops_replica"] = "r1"
    with pytest.raises(PlanError, match="one replica per job") as err:
        build_plan(hv)
    assert err.value.variable == "inferops_replica"


# Captured from the lab's Slurm 22.05 (Debian 12 packages), then a GPU partition as sinfo prints it.
LAB_PARTITION = (
    "PartitionName=inferops AllowGroups=ALL AllowAccounts=ALL AllowQos=ALL AllocNodes=ALL Default=YES QoS=N/A "
    "DefaultTime=NONE DisableRootJobs=NO ExclusiveUser=NO GraceTime=0 Hidden=NO MaxNodes=UNLIMITED "
    "MaxTime=UNLIMITED MinNodes=0 LLN=NO MaxCPUsPerNode=UNLIMITED Nodes=ifo-slurm-[2-3] PriorityJobFactor=1 "
    "PriorityTier=1 RootOnly=NO ReqResv=NO OverSubscribe=NO OverTimeLimit=NONE PreemptMode=OFF State=UP "
    "TotalCPUs=2 TotalNodes=2 SelectTypeParameters=NONE JobDefaults=(null) DefMemPerNode=UNLIMITED "
    "MaxMemPerNode=UNLIMITED TRES=cpu=2,mem=2M,node=2,billing=2"
)
GPU_PARTITION = LAB_PARTITION.replace("MaxTime=UNLIMITED", "MaxTime=2-00:00:00").replace(
    "Nodes=ifo-slurm-[2-3]", "Nodes=gpu[01-03]"
)


@pytest.mark.parametrize(
    ("sinfo", "extra", "variable", "message"),
    [
        ("gpu01 gpu:h20:8(S:0-1)\ngpu02 gpu:h20:8(S:0-1)\n", {}, None, None),
        ("gpu01 gpu:8\n", {}, "inferops_nodes", "needs 2 nodes (one per host of inferops_nodes) but partition"),
        (
            "gpu01 gpu:a100:4\ngpu02 gpu:a100:4\ngpu03 gpu:8\n",
            {},
            "inferops_gpus_per_node",
            "8 GPUs per node on 2 nodes, but partition lmsys.org has 1 node(s) with that many",
        ),
        ("gpu01 (null)\ngpu02 (null)\n", {}, "inferops_gpus_per_node", "gres: at most gpu:0 per node"),
        (
            "gpu01 gpu:8\ngpu02 gpu:8\n",
            {"inferops_slurm_time_limit": "3-00:00:00"},
            "inferops_slurm_time_limit",
            "exceeds partition lmsys.org's MaxTime=2-00:00:00",
        ),
        (
            "gpu01 gpu:8\ngpu02 gpu:8\n",
            {"inferops_slurm_time_limit": "UNLIMITED"},
            "inferops_slurm_time_limit",
            "MaxTime",
        ),
    ],
)
def test_partition_fit(sinfo, extra, variable, message):
    plan = example_plan(**extra)
    partition = _slurm.parse_partition(GPU_PARTITION)
    nodes = _slurm.parse_sinfo_nodes(sinfo)
    if variable is None:
        _slurm.check_partition_fit(plan["slurm"], "node01", partition, nodes)
        return
    with pytest.raises(PlanError) as err:
        _slurm.check_partition_fit(plan["slurm"], "node01", partition, nodes)
    assert err.value.variable == variable and err.value.host == "node01"
    assert message in str(err.value)


def test_partition_max_nodes_is_read():
    plan = example_plan()
    partition = _slurm.parse_partition(GPU_PARTITION.replace("MaxNodes=UNLIMITED", "MaxNodes=1"))
    with pytest.raises(PlanError, match="allows MaxNodes=1") as err:
        _slurm.check_partition_fit(plan["slurm"], "node01", partition, {"gpu01": 8, "gpu02": 8})
    assert err.value.variable == "inferops_nodes"


@pytest.mark.parametrize(
    ("text", "minutes"),
    [("30", 30), ("90:30", 91), ("12:00:00", 720), ("1-00", 1440), ("2-03:04", 2 * 1440 + 184), ("UNLIMITED", None)],
)
def test_time_minutes(text, minutes):
    assert _slurm.time_minutes(text) == minutes


def test_keep_the_same_plans_job_and_cancel_the_others():
    plan = example_plan()
    same = _slurm.job_comment(plan["slurm"])
    squeue = f"41|RUNNING|inferops-plan=0123456789abcdef|gpu[01-02]\n42|PENDING|{same}|\n"
    decision = _slurm.keep_or_replace(_slurm.queue_state(squeue, "inferops-r0"), plan["slurm"])
    assert decision == {"keep": "42", "keep_state": "PENDING", "cancel": ["41"]}
    decision = _slurm.keep_or_replace(_slurm.queue_state("41|RUNNING|other|x\n", "inferops-r0"), plan["slurm"])
    assert decision == {"keep": None, "keep_state": None, "cancel": ["41"]}


# The launcher, run for real: the seed 003 captures as node02's sysfs, `ip` answering as node02 did.
IP_ROUTE = "10.63.65.207 dev xgbe0 src 10.63.65.208 uid 0\n    cache\n"


def _node02_sysfs(tmp_path: Path) -> Path:
    rdma = FIXTURES / "rdma"
    spec = spec_from_tools(
        (rdma / "seed003_node02_ibdev2netdev.txt").read_text(encoding="utf-8"),
        (rdma / "seed003_node02_show_gids.txt").read_text(encoding="utf-8"),
    )
    return build(spec, tmp_path / "infiniband")


def test_resolve_derives_the_wiring_on_the_node_as_the_plan_does(tmp_path):
    """Without inferops_nccl_env the HCAs and GID come from this node's sysfs through _nccl (as rdma_facts +
    the plan do over SSH): mlx5_0 carries xgbe0, the route to the head, so it stays out of NCCL_IB_HCA."""
    plan = example_plan(inferops_nccl_env={})
    root = _node02_sysfs(tmp_path)
    info = resolve(
        plan["slurm"], 1, "gpu01", run=lambda argv: IP_ROUTE, lookup=lambda name: "10.63.65.207", sysfs_root=str(root)
    )
    assert info["address"] == "10.63.65.208" and info["ifname"] == "xgbe0"
    env = info["env"]
    assert env["NCCL_IB_HCA"] == ",".join(f"mlx5_{i}:1" for i in range(1, 9))
    assert env["NCCL_IB_GID_INDEX"] == "3" and env["NCCL_IB_DISABLE"] == "0"
    assert env["NCCL_SOCKET_IFNAME"] == env["GLOO_SOCKET_IFNAME"] == "xgbe0"
    assert env["SGLANG_HOST_IP"] == env["HOST_IP"] == "10.63.65.208"
    argv = info["argv"]
    assert argv[argv.index("--dist-init-addr") + 1] == "10.63.65.207:30000"
    assert argv[argv.index("--node-rank") + 1] == "1"


def test_pins_and_inferops_env_win_over_the_node(tmp_path):
    plan = example_plan(inferops_env={"NCCL_IB_HCA": "mlx5_3:1"})
    info = resolve(
        plan["slurm"],
        0,
        "gpu01",
        run=lambda argv: IP_ROUTE.replace("src 10.63.65.208", "src 10.1.1.1"),
        lookup=lambda name: "10.63.65.207",
        sysfs_root=str(_node02_sysfs(tmp_path)),
    )
    assert info["env"]["NCCL_IB_HCA"] == "mlx5_3:1"  # inferops_env, set last as in the plan
    assert info["env"]["NCCL_IB_GID_INDEX"] == "3" and info["env"]["TP_SOCKET_IFNAME"] == "xgbe0"  # pins


def test_the_head_finds_its_interface_through_its_own_address():
    plan = example_plan()
    answers = {
        "route": "local 10.63.65.207 dev lo table local src 10.63.65.207 uid 0\n    cache <local>\n",
        "addr": "2: xgbe0    inet 10.63.65.207/24 brd 10.63.65.255 scope global xgbe0\\       valid_lft forever\n",
    }
    info = resolve(
        plan["slurm"],
        0,
        "gpu01",
        run=lambda argv: answers["route" if argv[1] == "route" else "addr"],
        lookup=lambda name: "10.63.65.207",
        sysfs_root="/nonexistent",
    )
    assert info["ifname"] == "xgbe0" and info["address"] == "10.63.65.207"
    with pytest.raises(LaunchError, match="outside the plan's 2 ranks"):
        resolve(plan["slurm"], 2, "gpu01", run=lambda argv: "", lookup=lambda name: "10.63.65.207")


def test_secrets_file_is_read_back_byte_for_byte(tmp_path):
    from ansible_collections.inferops.cluster.plugins.module_utils._envfile import env_file

    value = 'k$e"y\\`1 2'
    path = tmp_path / "secrets.env"
    path.write_text(env_file({"INFEROPS_API_KEY": value}), encoding="utf-8")
    assert read_secrets(str(path)) == {"INFEROPS_API_KEY": value}
    assert with_secrets(["--api-key", "${INFEROPS_API_KEY}"], ["INFEROPS_API_KEY"], {"INFEROPS_API_KEY": value}) == [
        "--api-key",
        value,
    ]
    with pytest.raises(LaunchError, match="lacks INFEROPS_API_KEY"):
        with_secrets([], ["INFEROPS_API_KEY"], {})


def test_the_embedded_launcher_runs_and_execs_the_engine(tmp_path):
    """The launcher exactly as the script writes it, run by a real Python as srun would on node 1: the embedded
    modules load, the engine command is exec'd (a stand-in python3 that records its argv and env)."""
    plan, script = plan_and_script(inferops_nccl_env={}, inferops_slurm_shared_dir=str(tmp_path / "shared"))
    slurm = plan["slurm"]
    launcher = script.split("<<'INFEROPS_LAUNCHER'\n", 1)[1].split("\nINFEROPS_LAUNCHER\n", 1)[0]
    (tmp_path / "launch.py").write_text(launcher, encoding="utf-8")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "engine.json"
    fakes = {
        "ip": f"#!/bin/sh\nprintf '%s' '{IP_ROUTE}'\n",
        "python3": f"#!{sys.executable}\nimport json, os, sys\n"
        f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(record)!r}, 'w'))\n",
    }
    for name, text in fakes.items():
        (bin_dir / name).write_text(text, encoding="utf-8")
        (bin_dir / name).chmod(0o755)
    Path(slurm["job_dir"]).mkdir(parents=True)
    secrets = Path(slurm["secrets_file"])
    secrets.write_text('INFEROPS_API_KEY="sk-test"\n', encoding="utf-8")
    secrets.chmod(0o600)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "SLURM_NODEID": "1",
        "SLURM_JOB_ID": "77",
        "INFEROPS_HEAD_NODE": "10.63.65.207",
        "INFEROPS_SYSFS_ROOT": str(_node02_sysfs(tmp_path)),
    }
    done = subprocess.run(
        [sys.executable, str(tmp_path / "launch.py")], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "[inferops] rank 1 (node02)" in done.stdout and "NCCL_IB_HCA=mlx5_1:1" in done.stdout
    assert "sk-test" not in done.stdout + done.stderr
    ran = json.loads(record.read_text(encoding="utf-8"))
    argv = ran["argv"]
    assert argv[:2] == ["-m", "sglang.launch_server"]
    assert argv[argv.index("--node-rank") + 1] == "1" and argv[argv.index("--nnodes") + 1] == "2"
    assert argv[argv.index("--dist-init-addr") + 1] == "10.63.65.207:30000"
    assert argv[argv.index("--api-key") + 1] == "sk-test"
    assert ran["env"]["NCCL_IB_GID_INDEX"] == "3" and ran["env"]["SGLANG_HOST_IP"] == "10.63.65.208"
    assert not Path(slurm["endpoint_file"]).exists()  # rank 0 writes it
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o600


@pytest.mark.parametrize(
    ("squeue", "running", "status"),
    [
        ("RUNNING|2026-12-01T14:30:00\n", True, "running"),
        ("PENDING|N/A\n", False, "pending"),
        ("COMPLETING|2026-12-01T14:30:00\n", False, "exited (completing)"),
        ("", False, "absent (the job left the queue: ended, cancelled or failed)"),
    ],
)
def test_the_waiter_reads_the_job_from_squeue(squeue, running, status):
    """A pending job is worth waiting for; a job that left the queue is fatal (AliveWatch's terminal states)."""
    from ansible_collections.inferops.cluster.plugins.module_utils._readiness import AliveWatch, slurm_rank_state

    state = slurm_rank_state("77", squeue)
    assert (state["running"], state["status"]) == (running, status)
    probe = AliveWatch(lambda: state)()
    assert probe.ok is running
    assert probe.fatal is (status.startswith(("exited", "absent")))


def test_the_filter_picks_the_named_or_default_partition():
    from ansible_collections.inferops.cluster.plugins.filter.slurm import slurm_partition_problem

    plan = example_plan()
    other = GPU_PARTITION.replace("PartitionName=inferops", "PartitionName=debug").replace("Default=YES", "Default=NO")
    lmsys = GPU_PARTITION.replace("PartitionName=inferops", "PartitionName=lmsys.org").replace(
        "Default=YES", "Default=NO"
    )
    sinfo = "gpu01 gpu:8\ngpu02 gpu:8\n"
    assert slurm_partition_problem(plan, f"{other}\n{lmsys}\n", sinfo) == ""
    assert "partition 'lmsys.org' does not exist" in slurm_partition_problem(plan, other, sinfo)
    assert "inferops_gpus_per_node" in slurm_partition_problem(plan, lmsys, "gpu01 gpu:4\ngpu02 gpu:4\n")


def lab_hostvars() -> dict[str, dict[str, Any]]:
    """The Slurm lab's inventory: two rank slots, vLLM for CPU, the venv on the shared volume."""
    common = {
        "inferops_engine": "vllm",
        "inferops_runtime": "slurm",
        "inferops_device": "cpu",
        "inferops_tp": 2,
        "inferops_gpus_per_node": 1,
        "inferops_model_path": "/opt/inferops/models/tiny-llama",
        "inferops_served_model_name": "tiny-llama",
        "inferops_api_key": True,
        "inferops_slurm_partition": "inferops",
        "inferops_slurm_shared_dir": "/shared/inferops",
        "inferops_slurm_job_name": "ifo-slurm-engine",
        "inference_server_venv": "/shared/venvs/vllm-cpu",
        "inferops_env": {"OMP_NUM_THREADS": "1"},
    }
    return {"rank0": dict(common), "rank1": dict(common)}


def test_the_lab_job_vllm_native_on_cpu_fits_the_lab_partition():
    plan = build_plan(lab_hostvars())
    slurm = plan["slurm"]
    script = _slurm.render_sbatch(slurm)
    lines = script.splitlines()
    assert slurm["gres"] is None and not any(line.startswith("#SBATCH --gres") for line in lines)
    assert "    /shared/venvs/vllm-cpu/bin/python3 \\" in lines
    template = _one(r"^#   (vllm serve .*)$", script)
    assert "--nnodes 2 --node-rank $SLURM_NODEID --master-addr $INFEROPS_HEAD_ADDR --master-port 29500" in template
    assert template.endswith("[--headless on ranks > 0]")
    assert slurm["secret_env"] == ["VLLM_API_KEY"]
    _slurm.check_partition_fit(
        slurm,
        "rank0",
        _slurm.parse_partition(LAB_PARTITION),
        _slurm.parse_sinfo_nodes("ifo-slurm-2 (null)\nifo-slurm-3 (null)\n"),
    )
    with pytest.raises(PlanError, match="needs 2 nodes"):
        _slurm.check_partition_fit(
            slurm, "rank0", _slurm.parse_partition(LAB_PARTITION), _slurm.parse_sinfo_nodes("ifo-slurm-2 (null)\n")
        )
    info = resolve(
        slurm,
        1,
        "ifo-slurm-2",
        run=lambda argv: "172.30.0.2 dev eth0 src 172.30.0.4 uid 0\n",
        lookup=lambda name: "172.30.0.2",
        sysfs_root="/nonexistent",
    )
    argv = info["argv"]
    assert argv[argv.index("--master-addr") + 1] == "172.30.0.2" and "--headless" in argv
    assert info["env"]["VLLM_HOST_IP"] == "172.30.0.4" and info["env"]["GLOO_SOCKET_IFNAME"] == "eth0"
    assert info["env"]["OMP_NUM_THREADS"] == "1"
