"""Benchmark of the weights distribution (not a test): staging time against the number of nodes.

Builds N lab nodes (containers of the lab image, ``iw-b*``), limits every node's egress on eth0
with ``tc`` (tbf, default 200 Mbit/s), writes a checkpoint of SIZE MiB in SHARDS safetensors-like
files on the first node, runs ``playbooks/weights.yml`` (source ``local`` on the first node) and
measures how long the other N-1 nodes take to receive and verify it, for each strategy.

The reference T1 is one transfer of the whole checkpoint over one link (a plain rsync pull from
the first node to the second). Goal from issue 6: chain with N=4 <= 1.5 x T1 (a star ~ 3 x T1).

    .venv/bin/python scripts/bench-weights.py                      # N=2,4,8; chain, tree, star
    .venv/bin/python scripts/bench-weights.py --nodes 2,4 --size-mib 1024 --rate 200mbit

Needs Docker, the lab image (make lab-image) and about SIZE x (N+1) of disk. Run it alone: it
measures wall time on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))

from weights_lab import Lab, failures, plan_vars, playbook, task_results  # noqa: E402

SRC = "/srv/src/ckpt"
DEST = "/srv/models/ckpt"


def parse_time(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def task_span(data: dict, first: str, last: str) -> float:
    start = end = None
    for play in data["plays"]:
        for task in play["tasks"]:
            name = task["task"]["name"]
            if first in name and start is None:
                start = parse_time(task["task"]["duration"]["start"])
            if last in name:
                end = parse_time(task["task"]["duration"]["end"])
    if start is None or end is None:
        raise RuntimeError(f"tasks {first!r}/{last!r} not found")
    return end - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", default="2,4,8", help="node counts, comma separated")
    ap.add_argument("--strategies", default="chain,tree,star")
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--shards", type=int, default=16)
    ap.add_argument("--rate", default="200mbit", help="tc tbf rate on every node's eth0")
    ap.add_argument("--memory", default="1g", help="memory limit of each node container")
    ap.add_argument("--out", default=str(ROOT / ".cache" / "bench-weights.json"))
    args = ap.parse_args()
    counts = [int(n) for n in args.nodes.split(",")]
    strategies = args.strategies.split(",")
    shard_mib = args.size_mib // args.shards
    rows: list[dict] = []
    t1 = None
    for n in counts:
        lab = Lab(f"iw-b{n}", n, memory=args.memory)
        work = Path(tempfile.mkdtemp(prefix="iw-bench-"))
        try:
            lab.up(net_admin=True)
            for name in lab.names:
                lab.exec(name, "tc", "qdisc", "replace", "dev", "eth0", "root", "tbf", "rate", args.rate,
                         "burst", "256kb", "latency", "100ms")  # fmt: skip
            first = lab.names[0]
            script = (
                f"mkdir -p {SRC} && echo '{{\"hidden_size\": 7168}}' > {SRC}/config.json && "
                f"for i in $(seq -w 1 {args.shards}); do "
                f"head -c {shard_mib}M /dev/urandom > {SRC}/model-000$i-of-{args.shards:05d}.safetensors; done"
            )
            lab.exec(first, "sh", "-c", script)
            inv = lab.inventory(
                work / "hosts.json",
                {
                    **plan_vars(DEST, tp=n),
                    "model_weights_source": "local",
                    "model_weights_url": SRC,
                    "model_weights_download_host": first,
                    "model_weights_reserve_bytes": 0,
                    "model_weights_poll_delay": 1,
                },
            )
            for strategy in strategies if n > 2 else strategies[:1]:
                for name in lab.names[1:]:
                    lab.exec(name, "rm", "-rf", DEST)
                rc, data, raw = playbook(inv, "-e", f"model_weights_distribution={strategy}")
                if rc != 0:
                    print(failures(data, raw), file=sys.stderr)
                    return 1
                pulls = task_results(data, "Wait for the transfers")
                seconds = max(r["seconds"] for h, r in pulls.items() if not r.get("skipped"))
                wall = task_span(data, "Pull the weights from the upstream", "Wait for the transfers")
                row = {"nodes": n, "strategy": strategy, "module_s": round(seconds, 1), "wall_s": round(wall, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
            if t1 is None:
                # T1: one transfer of the whole checkpoint over one link, plain rsync, no role
                second = lab.names[1]
                lab.exec(first, "systemctl", "start", "inferops-weights-rsyncd")
                start = time.monotonic()
                lab.exec(second, "rsync", "-r", f"rsync://{lab.addresses[first]}:8730/inferops-weights/", "/tmp/t1/")
                t1 = time.monotonic() - start
                lab.exec(first, "systemctl", "stop", "inferops-weights-rsyncd")
                lab.exec(second, "rm", "-rf", "/tmp/t1")
                print(json.dumps({"t1_s": round(t1, 1)}), flush=True)
        finally:
            lab.down()
            shutil.rmtree(work, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"t1_s": t1, "rows": rows, "args": vars(args)}, indent=1) + "\n")
    print(f"\n{args.size_mib} MiB in {args.shards} files, every node's egress {args.rate}; T1 = {t1:.1f} s\n")
    print("| nodes | strategy | staging (module) s | staging (wall) s | x T1 (wall) |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['nodes']} | {r['strategy']} | {r['module_s']} | {r['wall_s']} | {r['wall_s'] / t1:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
