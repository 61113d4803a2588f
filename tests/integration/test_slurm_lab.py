"""The slurm runtime on a real Slurm: the lab's login node (slurmctld) and two compute nodes (slurmd), munge and
Slurm from Debian 12's packages, vLLM for CPU with tensor parallelism 2 across the two Slurm nodes.

Ansible talks to the login node only (playbooks/slurm.yml); the test reads the compute nodes with docker exec.
1. a plan that names a partition the cluster lacks is refused before anything is submitted;
2. the job serves a chat completion through the head (the allocation's first node);
3. a second run keeps the job (same job id, changed=0); status.yml shows it from squeue;
4. teardown.yml (scancel) leaves nothing: squeue empty, no engine process on either compute node.

Needs Docker, the lab image and the wheelhouse (`make lab-image wheelhouse`); marker `lab`.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

import pytest
import yaml
from playbook_run import ansible_playbook, recap

LAB = os.environ.get("INFEROPS_SLURM_LAB_NAME", "inferops-islurm")
LOGIN, COMPUTE = f"{LAB}-1", [f"{LAB}-2", f"{LAB}-3"]
JOB = f"{LAB}-engine"
JOB_DIR = f"/shared/inferops/{JOB}"

pytestmark = [pytest.mark.lab]


def ansible(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = ansible_playbook(*args)
    if check and proc.returncode != 0:
        pytest.fail(f"ansible-playbook {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stdout[-8000:]}")
    return proc


def docker_exec(node: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True, check=check)


def squeue() -> list[str]:
    return docker_exec(LOGIN, "squeue", "-h", "-n", JOB, "-o", "%i|%T|%k|%N").stdout.split()


def chat(api_url: str, key: str, model: str) -> dict:
    request = urllib.request.Request(
        f"{api_url}/v1/chat/completions",
        data=json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "Hello, Slurm"}], "max_tokens": 4}
        ).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def slurm_lab(tmp_path_factory):
    inventory = tmp_path_factory.mktemp("slurm-lab") / "inventory"
    common = ["-e", f"lab_name={LAB}", "-e", f"lab_inventory_dir={inventory}"]
    ansible("playbooks/lab.yml", *common, "-e", "lab_nodes=3", "-e", "lab_slurm=true")
    try:
        yield inventory
    finally:
        ansible("playbooks/lab.yml", *common, "-e", "lab_state=absent", check=False)


def test_a_partition_the_cluster_lacks_is_refused_before_submission(slurm_lab):
    proc = ansible("playbooks/slurm.yml", "-i", str(slurm_lab), "-e", "inferops_slurm_partition=gpu-h20", check=False)
    assert proc.returncode != 0
    assert "inferops_slurm_partition: partition 'gpu-h20' does not exist" in proc.stdout
    assert squeue() == []


def test_the_job_serves_is_kept_and_scancel_leaves_nothing(slurm_lab):
    first = ansible("playbooks/slurm.yml", "-i", str(slurm_lab))
    assert recap(first.stdout)[LOGIN]["changed"] > 0
    jobs = squeue()
    assert len(jobs) == 1 and jobs[0].split("|")[1] == "RUNNING", jobs
    job_id, _state, comment, nodes = jobs[0].split("|")
    assert comment.startswith("inferops-plan=")
    assert docker_exec(LOGIN, "scontrol", "show", "hostnames", nodes).stdout.split() == COMPUTE

    endpoint = json.loads(docker_exec(LOGIN, "cat", f"{JOB_DIR}/endpoint.json").stdout)
    assert endpoint["job_id"] == job_id and endpoint["head_node"] == COMPUTE[0]
    settings = yaml.safe_load((slurm_lab / "group_vars" / "all" / "inferops.yml").read_text())
    key = yaml.safe_load((slurm_lab / "group_vars" / "all" / "secrets.yml").read_text())["inferops_api_key"]
    answer = chat(endpoint["api_url"], key, settings["inferops_served_model_name"])
    assert answer["choices"][0]["message"]["content"] is not None
    # both ranks ran: rank 1's log names its own node, and the key is in no script, log or argv
    rank1 = docker_exec(LOGIN, "cat", f"{JOB_DIR}/logs/{JOB}_{job_id}_node1.out").stdout
    assert f"[inferops] rank 1 (rank1) on {COMPUTE[1]}" in rank1
    assert key not in docker_exec(LOGIN, "cat", f"{JOB_DIR}/job.sh", f"{JOB_DIR}/launch-{job_id}.py").stdout
    assert docker_exec(LOGIN, "stat", "-c", "%a", f"{JOB_DIR}/secrets.env").stdout.strip() == "600"

    second = ansible("playbooks/slurm.yml", "-i", str(slurm_lab))
    assert recap(second.stdout)[LOGIN]["changed"] == 0
    assert squeue() == jobs  # the same job, still running

    status = ansible("playbooks/status.yml", "-i", str(slurm_lab))  # the day-2 playbooks take the login node
    assert f"running job {job_id} RUNNING" in status.stdout

    down = ansible("playbooks/teardown.yml", "-i", str(slurm_lab))
    assert recap(down.stdout)[LOGIN]["changed"] > 0
    assert squeue() == []
    for node in COMPUTE:  # no engine process left on the compute nodes
        left = docker_exec(node, "pgrep", "-af", "vllm|_slurm_launch|launch-", check=False)
        assert left.returncode == 1, f"{node}: {left.stdout}"
    assert docker_exec(LOGIN, "test", "-e", f"{JOB_DIR}/secrets.env", check=False).returncode == 1
