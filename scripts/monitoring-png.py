"""Render the cluster's main graphs from Prometheus's HTTP API into one PNG (matplotlib, as the benchmark's charts).

    .venv/bin/python scripts/monitoring-png.py --prometheus http://HOST:9090 --out docs/images/monitoring-lab.png
        [--minutes 15] [--step 5]

One panel per query of the cluster dashboard (roles/grafana/files/dashboards/inferops-cluster.json) plus CPU and
memory per node: tokens/s, requests running/waiting, KV cache, TTFT/TPOT p99, targets up. Reads /api/v1/query_range;
writes nothing else. Fails when Prometheus answers an error.
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "roles" / "grafana" / "files" / "dashboards" / "inferops-cluster.json"
EXTRA = [
    ("CPU busy per node", '1 - avg by (host) (rate(node_cpu_seconds_total{mode="idle"}[1m]))', "{host}"),
    ("Memory available per node (GiB)", "node_memory_MemAvailable_bytes / 2^30", "{host}"),
]


def query_range(base: str, expr: str, start: float, end: float, step: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(f"{base.rstrip('/')}/api/v1/query_range?{params}", timeout=30) as resp:
        body = json.load(resp)
    if body.get("status") != "success":
        raise SystemExit(f"prometheus: {expr}: {body.get('error')}")
    return body["data"]["result"]


def panels() -> list[tuple[str, list[tuple[str, str]]]]:
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dash["panels"]:
        targets = [
            (t["expr"], t.get("legendFormat", "").replace("{{", "{").replace("}}", "}")) for t in panel["targets"]
        ]
        out.append((panel["title"], targets))
    out += [(title, [(expr, legend)]) for title, expr, legend in EXTRA]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--prometheus", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=15)
    parser.add_argument("--step", type=float, default=5)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = time.time()
    start = end - args.minutes * 60
    todo = panels()
    cols = 2
    rows = (len(todo) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(13, 3.2 * rows), squeeze=False)
    empty = []
    for ax, (title, targets) in zip(axes.flat, todo, strict=False):
        drawn = 0
        for expr, legend in targets:
            for series in query_range(args.prometheus, expr, start, end, args.step):
                xs = [(float(t) - end) / 60 for t, _v in series["values"]]
                ys = [float(v) for _t, v in series["values"]]
                label = legend.format_map({**{k: "" for k in ("host", "replica", "job", "gpu")}, **series["metric"]})
                ax.plot(xs, ys, label=label.strip() or expr)
                drawn += 1
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("minutes before now", fontsize=8)
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize=7, loc="upper left")
        else:
            empty.append(title)
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    for ax in list(axes.flat)[len(todo) :]:
        ax.axis("off")
    fig.suptitle(f"inferops cluster from {args.prometheus} ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(end))})")
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"{args.out}: {len(todo)} panels" + (f", no data: {', '.join(empty)}" if empty else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
