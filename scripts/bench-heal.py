"""Benchmark (not a test): mean time to recovery of a healed replica on the lab, beside its cold start.

    .venv/bin/python scripts/bench-heal.py INVENTORY_DIR [--kills 10] [--cold 2] [--out FILE.json]

Cold start first (measured like a kill): with the healer paused, stop both ranks, start both, time until a
completion answers. Then for each kill (alternating follower and head): SIGKILL the rank's engine unit, then
time until a chat completion through the head answers (no playbook runs: the healer restarts the replica).
Each kill waits for the healer's restart streak to end (set inferops_healer_stable_after: 0 on the lab, else
the backoff grows kill after kill). Prints a Markdown table
(median and max) and writes the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

UNIT = "inferops-engine.service"


def sh(node: str, *argv: str) -> str:
    return subprocess.run(["docker", "exec", node, *argv], capture_output=True, text=True, check=True).stdout.strip()


def completion(api_url: str, key: str) -> bool:
    request = urllib.request.Request(
        f"{api_url}/v1/chat/completions",
        data=json.dumps(
            {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
        ).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return json.load(resp)["usage"]["completion_tokens"] >= 1
    except (OSError, ValueError, KeyError):
        return False


def healer_state(head: str) -> dict:
    """The supervisor's state, asked on the head itself (the firewall opens the healer port to the replica only)."""
    reader = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())"
    return json.loads(sh(head, "python3", "-c", reader, "http://127.0.0.1:8390/state"))


def until_served(api_url: str, key: str, started: float, timeout: float, after=lambda: True) -> float:
    while time.monotonic() - started < timeout:
        if after() and completion(api_url, key):
            return time.monotonic() - started
        time.sleep(1)
    raise SystemExit(f"not served within {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("inventory", type=Path)
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--cold", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--out", type=Path, default=Path("bench-heal.json"))
    args = parser.parse_args()
    hosts = yaml.safe_load((args.inventory / "hosts.yml").read_text())["all"]["children"]["inferops_nodes"]["hosts"]
    head, follower = sorted(hosts)
    address = hosts[head]["inferops_address"]
    key = yaml.safe_load((args.inventory / "group_vars" / "all" / "secrets.yml").read_text())["inferops_api_key"]
    api_url = f"http://{address}:8000"
    results: dict = {"kills": [], "cold": []}

    def ready_and_stable() -> bool:
        # a kill per restart streak: with inferops_healer_stable_after 0 the streak ends at the first good probe
        state = healer_state(head)["state"]
        return state["phase"] == "ready" and state["restarts"] == 0

    for index in range(args.cold):
        sh(head, "sh", "-c", f"echo $(( $(date +%s) + {int(args.timeout) + 300} )) > /var/lib/inferops/healer/paused")
        try:
            for node in (head, follower):
                sh(node, "systemctl", "stop", UNIT)
            started = time.monotonic()
            for node in (head, follower):
                sh(node, "systemctl", "start", UNIT)
            seconds = until_served(api_url, key, started, args.timeout)
        finally:
            sh(head, "rm", "-f", "/var/lib/inferops/healer/paused")
        results["cold"].append({"seconds": round(seconds, 1)})
        print(f"cold start {index + 1}: served after {seconds:.1f} s", flush=True)
        args.out.write_text(json.dumps(results, indent=1))

    for index in range(args.kills):
        node = follower if index % 2 == 0 else head
        until_served(api_url, key, time.monotonic(), args.timeout, ready_and_stable)
        generation = healer_state(head)["generation"]
        started = time.monotonic()
        sh(node, "systemctl", "kill", "--signal=SIGKILL", UNIT)
        seconds = until_served(
            api_url, key, started, args.timeout, lambda gen=generation: healer_state(head)["generation"] > gen
        )
        results["kills"].append({"rank": "head" if node == head else "follower", "seconds": round(seconds, 1)})
        print(f"kill {index + 1} ({results['kills'][-1]['rank']}): served again after {seconds:.1f} s", flush=True)
        args.out.write_text(json.dumps(results, indent=1))

    def row(name: str, values: list[float]) -> str:
        if not values:
            return f"| {name} | 0 | - | - | - |"
        return (
            f"| {name} | {len(values)} | {statistics.mean(values):.0f} s | {statistics.median(values):.0f} s "
            f"| {max(values):.0f} s |"
        )

    print("| measured | runs | mean | median | max |\n| --- | --- | --- | --- | --- |")
    kills = results["kills"]
    print(row("kill -> completion, follower", [k["seconds"] for k in kills if k["rank"] == "follower"]))
    print(row("kill -> completion, head", [k["seconds"] for k in kills if k["rank"] == "head"]))
    print(row("kill -> completion, all", [k["seconds"] for k in kills]))
    print(row("cold start (stop both, start both -> completion)", [c["seconds"] for c in results["cold"]]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
