"""Lab helpers for the weights test and benchmark: nodes, a Hub mirror (olah), a model repo.

Nodes are containers of the lab image (systemd as PID 1) on a private Docker network, named
``iw-*``; Ansible reaches them through the community.docker connection (no SSH needed to drive
them; the role's own node-to-node transport is its rsync daemon). The Hub is a real
Hugging-Face-compatible server, olah, run on the controller and bound to the network's gateway
address, serving a git repository whose weight shards are Git LFS objects.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

from playbook_run import ansible_playbook

IMAGE = os.environ.get("LAB_IMAGE", "inferops-lab:bookworm")
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def sh(*argv: str, check: bool = True, capture: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=check, text=True, capture_output=capture, **kw)


# ---------------------------------------------------------------------------
# a model repository with LFS shards
# ---------------------------------------------------------------------------
def safetensors_bytes(name: str, nbytes: int, seed: int) -> bytes:
    """A valid safetensors file holding one float32 tensor of random bytes."""
    n = nbytes // 4
    header = json.dumps({name: {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    header += b" " * (-len(header) % 8)
    data = hashlib.shake_256(f"{name}-{seed}".encode()).digest(4 * n) if n < (1 << 24) else os.urandom(4 * n)
    return struct.pack("<Q", len(header)) + header + data


def make_model_repo(root: Path, org: str, name: str, shards: int, shard_bytes: int, seed: int = 0) -> str:
    """Create ``root/models/org/name`` as a git repo (olah's local mirror layout) with LFS
    pointers for the shards; return the commit id."""
    repo = root / "models" / org / name
    if repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True)
    sh("git", "init", "-q", "-b", "main", str(repo))
    (repo / "config.json").write_text(
        json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 256, "num_attention_heads": 4}) + "\n"
    )
    (repo / "generation_config.json").write_text('{"do_sample": false}\n')
    (repo / "tokenizer_config.json").write_text('{"model_max_length": 512}\n')
    (repo / "tokenizer.json").write_text(json.dumps({"version": "1.0", "model": {"type": "BPE", "vocab": {}}}) + "\n")
    index = {"metadata": {"total_size": 0}, "weight_map": {}}
    objects = repo / ".git" / "lfs" / "objects"
    for i in range(1, shards + 1):
        fname = f"model-{i:05d}-of-{shards:05d}.safetensors"
        blob = safetensors_bytes(f"layer{i}.weight", shard_bytes, seed)
        oid = hashlib.sha256(blob).hexdigest()
        obj = objects / oid[:2] / oid[2:4] / oid
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(blob)
        (repo / fname).write_text(f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(blob)}\n")
        index["weight_map"][f"layer{i}.weight"] = fname
        index["metadata"]["total_size"] += len(blob)
    (repo / "model.safetensors.index.json").write_text(json.dumps(index, indent=1) + "\n")
    (repo / ".gitattributes").write_text("*.safetensors filter=lfs diff=lfs merge=lfs -text\n")
    sh("git", "-C", str(repo), "add", "-A")
    sh("git", "-C", str(repo), "-c", "user.email=lab@inferops.invalid", "-c", "user.name=lab", "commit", "-qm", "model")
    return sh("git", "-C", str(repo), "rev-parse", "HEAD").stdout.strip()


def lfs_objects(root: Path, org: str, name: str) -> dict[str, bytes]:
    """Shard file name -> content, read back from the repo (what the Hub serves)."""
    repo = root / "models" / org / name
    out = {}
    for p in sorted(repo.glob("*.safetensors")):
        oid = p.read_text().split("oid sha256:")[1].split()[0]
        out[p.name] = (repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).read_bytes()
    return out


# ---------------------------------------------------------------------------
# olah, a self-hosted Hugging Face mirror, serving the local repo
# ---------------------------------------------------------------------------
def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class Hub:
    def __init__(self, workdir: Path, host: str) -> None:
        self.workdir = workdir
        self.host = host
        self.port = free_port(host)
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        conf = self.workdir / "olah.toml"
        conf.write_text(
            "[basic]\n"
            f'host = "{self.host}"\nport = {self.port}\n'
            f'mirror-netloc = "{self.host}:{self.port}"\nmirror-lfs-netloc = "{self.host}:{self.port}"\n'
            f'repos-path = "{self.workdir / "cache"}"\nmirrors-path = ["{self.workdir / "mirrors"}"]\n'
            "[accessibility]\noffline = true\n"
        )
        log = open(self.workdir / "olah.out", "w")  # noqa: SIM115 - lives as long as the server
        self.proc = subprocess.Popen(
            [
                os.environ.get("WEIGHTS_HUB_PYTHON", sys.executable),
                "-m",
                "olah.server",
                "-c",
                str(conf),
                "--log-path",
                str(self.workdir / "logs"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError((self.workdir / "olah.out").read_text()[-3000:]) from None
                time.sleep(0.5)
        raise RuntimeError("olah did not start listening")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# ---------------------------------------------------------------------------
# lab nodes
# ---------------------------------------------------------------------------
class Lab:
    def __init__(self, prefix: str, nodes: int, memory: str = "1g") -> None:
        self.prefix = prefix
        self.network = f"{prefix}-net"
        self.names = [f"{prefix}-n{i}" for i in range(1, nodes + 1)]
        self.memory = memory
        self.addresses: dict[str, str] = {}
        self.gateway = ""

    def up(self, net_admin: bool = False) -> None:
        self.down()
        sh("docker", "network", "create", "--label", "io.inferops.lab=iw", self.network)
        info = json.loads(sh("docker", "network", "inspect", self.network).stdout)[0]
        self.gateway = info["IPAM"]["Config"][0]["Gateway"]
        for name in self.names:
            argv = ["docker", "run", "-d", "--name", name, "--hostname", name, "--network", self.network]
            argv += ["--cap-add", "SYS_ADMIN", "--tmpfs", "/run", "--tmpfs", "/run/lock"]
            argv += ["-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro", "--memory", self.memory, "--label", "io.inferops.lab=iw"]
            if net_admin:
                argv += ["--cap-add", "NET_ADMIN"]
            sh(*argv, IMAGE, "/lib/systemd/systemd")
        for name in self.names:
            deadline = time.monotonic() + 90
            while True:
                state = sh("docker", "exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
                if state in ("running", "degraded"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{name} did not boot: {state}")
                time.sleep(1)
            ip = sh(
                "docker", "inspect", "-f", f'{{{{(index .NetworkSettings.Networks "{self.network}").IPAddress}}}}', name
            ).stdout.strip()
            self.addresses[name] = ip

    def down(self) -> None:
        for name in self.names:
            sh("docker", "rm", "-f", name, check=False)
        sh("docker", "network", "rm", self.network, check=False)

    def exec(self, name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("docker", "exec", name, *argv, check=check)

    def inventory(self, path: Path, group_vars: dict, replica_size: int = 0) -> Path:
        """Write the inventory; with ``replica_size``, consecutive nodes form replicas r0, r1, ..."""
        hosts = {name: {"ansible_host": name, "inferops_address": self.addresses[name]} for name in self.names}
        if replica_size:
            for i, name in enumerate(self.names):
                hosts[name]["inferops_replica"] = f"r{i // replica_size}"
        doc = {
            "all": {
                "children": {
                    "inferops_nodes": {
                        "hosts": hosts,
                        "vars": {
                            "ansible_connection": "community.docker.docker",
                            "ansible_python_interpreter": "/usr/bin/python3",
                            **group_vars,
                        },
                    }
                }
            }
        }
        path.write_text(json.dumps(doc, indent=1))  # JSON is YAML
        return path


def plan_vars(model_path: str, tp: int = 1) -> dict:
    """The cluster settings the plan needs (CPU lab, like the embedded default)."""
    return {
        "inferops_engine": "vllm",
        "inferops_engine_mode": "native",
        "inferops_runtime": "systemd",
        "inferops_device": "cpu",
        "inferops_tp": tp,
        "inferops_pp": 1,
        "inferops_dp": 1,
        "inferops_ep": 1,
        "inferops_gpus_per_node": 1,
        "inferops_model_path": model_path,
        "inferops_served_model_name": "tiny",
        "inferops_api_key": "weights-lab-key-not-a-secret",  # the plan refuses a node without one
    }


def playbook(inventory: Path, *extra: str, playbook_path: str = "playbooks/weights.yml", env: dict | None = None):
    """Run a playbook with the json callback; return (rc, parsed result or None, raw stdout)."""
    json_callback = {"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_CALLBACK_RESULT_FORMAT": "json"}
    proc = ansible_playbook(
        "-i", str(inventory), playbook_path, *extra, timeout=None, venv_path=True, env={**json_callback, **(env or {})}
    )
    try:
        start = proc.stdout.index("{")
        data = json.loads(proc.stdout[start:])
    except ValueError:
        data = None
    return proc.returncode, data, proc.stdout + proc.stderr


def task_results(data: dict, name_part: str) -> dict[str, dict]:
    """host -> result of the (last) task whose name contains ``name_part``."""
    out: dict[str, dict] = {}
    for play in data["plays"]:
        for task in play["tasks"]:
            if name_part in task["task"]["name"]:
                out.update(task["hosts"])
    return out


def recap(data: dict) -> dict[str, dict]:
    return data["stats"]


def failures(data: dict | None, raw: str) -> str:
    """The failed tasks' messages (for assertion output), else the tail of the raw output."""
    if not data:
        return raw[-4000:]
    lines = []
    for play in data["plays"]:
        for task in play["tasks"]:
            for host, res in task["hosts"].items():
                if res.get("failed") or res.get("unreachable"):
                    lines.append(f"{task['task']['name']} [{host}]: {res.get('msg')} {res.get('stderr', '')[-800:]}")
    return "\n".join(lines) or raw[-4000:]
