"""The replica heals itself (issue 14), on the two-node lab (vLLM for CPU, TP 2 across the nodes).

Each failure below is followed by a chat completion through the head with NO playbook run in between:
the healer (inferops-healer.service: the supervisor on the head, an agent on the follower) finds the
replica dead and restarts every rank in a new generation.

1. SIGKILL of the follower's engine, then of the head's;
2. SIGSTOP of the follower's engine (a hang: running, no tokens);
3. `docker restart` of the follower's node container (a reboot);
4. site.yml after those heals changes nothing;
5. a cause that persists (the model directory unreadable on the follower) ends in `gave up (...)` with
   the cause, shown by status.yml.

One lab for the module (its own lab_name). INFEROPS_HEAL_LAB_INVENTORY=DIR uses an existing lab (left
running). Timings are the lab's: short probes and backoff, written into the inventory (docs/healing.md).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from playbook_run import ansible_playbook, recap

LAB = os.environ.get("INFEROPS_HEAL_LAB_NAME", f"inferops-heal{os.getpid() % 1000}")
UNIT = "inferops-engine.service"
# The lab's healer settings: quick probes, a short backoff, give up after 2 restarts (the defaults suit real
# models: a 30 s probe timeout, a 30 min start deadline, 5 restarts)
HEALER_VARS = {
    "inferops_healer_probe_interval": 3,
    "inferops_healer_probe_timeout": 10,
    "inferops_healer_probe_failures": 3,
    "inferops_healer_start_deadline": 420,
    "inferops_healer_backoff_initial": 5,
    "inferops_healer_backoff_max": 10,
    "inferops_healer_give_up_after": 2,
    "inferops_healer_stable_after": 30,
}
RECOVERY_TIMEOUT = 900

pytestmark = [pytest.mark.lab]


def ansible(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = ansible_playbook(*args)
    if check and proc.returncode != 0:
        pytest.fail(f"ansible-playbook {' '.join(args)} failed (rc {proc.returncode}):\n{proc.stdout[-6000:]}")
    return proc


def sh(node: str, *argv: str, check: bool = True) -> str:
    return subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True, check=check).stdout.strip()


STATE_READER = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())"


class Lab:
    def __init__(self, inventory: Path) -> None:
        self.inventory = inventory
        hosts = yaml.safe_load((inventory / "hosts.yml").read_text())["all"]["children"]["inferops_nodes"]["hosts"]
        self.head, self.follower = sorted(hosts)
        self.head_address = hosts[self.head]["inferops_address"]
        self.key = yaml.safe_load((inventory / "group_vars" / "all" / "secrets.yml").read_text())["inferops_api_key"]
        self.api_url = f"http://{self.head_address}:8000"

    def completion(self, timeout: float = 60) -> dict:
        request = urllib.request.Request(
            f"{self.api_url}/v1/chat/completions",
            data=json.dumps(
                {"model": "tiny-llama", "messages": [{"role": "user", "content": "Hello, lab"}], "max_tokens": 4}
            ).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.key}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return json.load(resp)

    def healer(self) -> dict:
        # asked on the head itself: the firewall (site.yml) opens the healer's port to the replica's nodes only
        answer = subprocess.run(
            ["docker", "exec", self.head, "python3", "-c", STATE_READER, "http://127.0.0.1:8390/state"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if answer.returncode != 0:
            raise OSError(f"healer state from {self.head}: {answer.stderr.strip()[-300:]}")
        return json.loads(answer.stdout)

    def invocation(self, node: str) -> str:
        return sh(node, "systemctl", "show", "-p", "InvocationID", "--value", UNIT)

    def wait_ready(self, since_generation: int, timeout: float = RECOVERY_TIMEOUT) -> tuple[float, dict]:
        """Seconds until a completion through the head answers in a generation after since_generation."""
        start = time.monotonic()
        last = None
        while time.monotonic() - start < timeout:
            try:
                state = self.healer()
                if state["generation"] > since_generation:
                    answer = self.completion()
                    if answer["usage"]["completion_tokens"] >= 1:
                        return time.monotonic() - start, state
            except (OSError, ValueError, KeyError) as exc:
                last = exc
            time.sleep(2)
        raise AssertionError(f"no completion within {timeout} s (last: {last}); healer: {self.healer_or_error()}")

    def healer_or_error(self) -> object:
        try:
            return self.healer()
        except OSError as exc:
            return exc


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    existing = os.environ.get("INFEROPS_HEAL_LAB_INVENTORY")
    if existing:
        inventory = Path(existing).resolve()
        (inventory / "group_vars" / "all" / "healer.yml").write_text(yaml.safe_dump(HEALER_VARS))
        ansible("site.yml", "-i", str(inventory))
        yield Lab(inventory)
        return
    inventory = tmp_path_factory.mktemp("heal") / "inventory"
    common = ["-e", f"lab_name={LAB}", "-e", f"lab_inventory_dir={inventory}"]
    ansible("playbooks/lab.yml", *common)
    try:
        (inventory / "group_vars" / "all" / "healer.yml").write_text(yaml.safe_dump(HEALER_VARS))
        ansible("site.yml", "-i", str(inventory))
        yield Lab(inventory)
    finally:
        ansible("playbooks/lab.yml", *common, "-e", "lab_state=absent", check=False)


def stable(lab: Lab, timeout: float = 300) -> dict:
    """The healer ready with its restart streak over (inferops_healer_stable_after seconds of good probes): a fault
    injected before that counts toward the same streak and, past give_up_after, ends in gave_up by design."""
    deadline = time.monotonic() + timeout
    while True:
        state = lab.healer()
        if state["state"]["phase"] == "ready" and state["state"]["restarts"] == 0:
            return state
        assert time.monotonic() < deadline, state
        time.sleep(2)


def heal_after(lab: Lab, break_it) -> dict:
    state = stable(lab)
    before = {node: lab.invocation(node) for node in (lab.head, lab.follower)}
    break_it()
    seconds, after = lab.wait_ready(state["generation"])
    print(f"recovered in {seconds:.0f} s: {after['status']}")
    assert after["generation"] == state["generation"] + 1  # one restart of the whole replica, not several
    now = {node: lab.invocation(node) for node in (lab.head, lab.follower)}
    assert now[lab.head] != before[lab.head] and now[lab.follower] != before[lab.follower]  # every rank restarted
    return after


def test_follower_sigkill_then_head_sigkill_heal_without_a_playbook(lab):
    after = heal_after(lab, lambda: sh(lab.follower, "systemctl", "kill", "--signal=SIGKILL", UNIT))
    # the cause is named: the follower's engine is not running (or, had the head noticed first, failed probes)
    errors = " ".join(h["error"] or "" for h in after["state"]["history"])
    assert f"{lab.follower} engine failed" in errors or "probes failed" in errors, after["state"]["history"]
    heal_after(lab, lambda: sh(lab.head, "systemctl", "kill", "--signal=SIGKILL", UNIT))


def test_follower_hang_sigstop_heals(lab):
    after = heal_after(lab, lambda: sh(lab.follower, "systemctl", "kill", "--signal=SIGSTOP", UNIT))
    errors = " ".join(h["error"] or "" for h in after["state"]["history"])
    assert "probes failed in a row, no token generated" in errors, after["state"]["history"]


def test_follower_node_reboot_heals(lab):
    heal_after(lab, lambda: subprocess.run(["docker", "restart", lab.follower], check=True, capture_output=True))


def test_site_after_the_heals_changes_nothing(lab):
    before = {node: lab.invocation(node) for node in (lab.head, lab.follower)}
    again = ansible("site.yml", "-i", str(lab.inventory))
    totals = recap(again.stdout)
    assert totals[lab.head]["changed"] == 0, again.stdout[-4000:]
    assert totals[lab.follower]["changed"] == 0, again.stdout[-4000:]
    assert {node: lab.invocation(node) for node in (lab.head, lab.follower)} == before


def test_a_cause_that_persists_ends_in_gave_up_named_by_status(lab):
    model = "/opt/inferops/models/tiny-llama"
    # the model directory unreadable on the follower (a tmpfs with mode 000 over it), then its engine killed
    sh(lab.follower, "mount", "-t", "tmpfs", "-o", "mode=000", "tmpfs", model)
    try:
        sh(lab.follower, "systemctl", "kill", "--signal=SIGKILL", UNIT)
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while time.monotonic() < deadline and lab.healer()["state"]["phase"] != "gave_up":
            time.sleep(3)
        state = lab.healer()
        assert state["state"]["phase"] == "gave_up", state
        status = ansible("playbooks/status.yml", "-i", str(lab.inventory), check=False)
        said = " ".join(status.stdout.split())
        assert status.returncode != 0  # a replica down fails status.yml
        assert re.search(r"replica r0 healer: gave up \(\d+ restarts did not bring the replica back", said), said[
            -3000:
        ]
        assert f"{lab.follower} engine failed" in said, said[-3000:]
        print(state["status"])
    finally:
        sh(lab.follower, "umount", model, check=False)
    # the operator fixed the cause: the next site.yml run brings the replica back and the healer follows
    ansible("site.yml", "-i", str(lab.inventory))
    assert lab.completion()["usage"]["completion_tokens"] >= 1
    assert lab.healer()["state"]["phase"] == "ready"
