#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Turn a benchmark sweep's raw results into summary.csv, summary.md and PNG charts."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: bench_report
short_description: Summarise a benchmark sweep (sglang.bench_serving or vllm bench serve) into CSV, Markdown and charts
version_added: 0.1.0
description:
  - Reads every raw result named C(serving_benchmark_CONCURRENCY_INPUT_OUTPUT.json) in I(src), written by
    C(python3 -m sglang.bench_serving) (JSON lines, the last line is used) or C(vllm bench serve) (one JSON object).
  - Normalises both tools to one row per run. vLLM reports no input throughput; it is computed as
    C(total_input_tokens / duration), which is what sglang reports under that name.
  - Writes in I(dest) C(summary.csv), C(summary.md) (the seed's columns per length pair - concurrency, mean TTFT,
    input and output throughput, mean TPOT, mean input and output length) and, with I(charts),
    C(throughput.png) and C(latency.png) (one line per length pair, concurrency on a log2 axis).
  - Meant to run on the controller (C(delegate_to=localhost)); charts need matplotlib there.
options:
  src:
    description: Directory holding the raw result files.
    type: path
    required: true
  dest:
    description: Directory to write the summary files into (created when missing).
    type: path
    required: true
  run_file:
    description:
      - JSON file describing the run (engine, engine_version, tool, model, base_url, client, nodes, run_id, cases).
      - Its facts head C(summary.md); its C(cases) (by case name) add the number of prompts sent.
    type: path
  tool:
    description: Which tool wrote the results; detected from their keys when omitted.
    type: str
    choices: [sglang, vllm]
  title:
    description: Title of C(summary.md) and of the charts.
    type: str
    default: Benchmark summary
  charts:
    description: Write the PNG charts (needs matplotlib on the host running the module).
    type: bool
    default: true
extends_documentation_fragment:
  - inferops.cluster.attributes
  - inferops.cluster.attributes.files
attributes:
  check_mode:
    details: Computes the summary and reports whether files would change, writing nothing.
  diff_mode:
    details: Shows the change to C(summary.md).
  idempotent:
    details: Files are rewritten only when their content differs.
requirements:
  - matplotlib (on the host running the module) when I(charts=true)
author:
  - inferops maintainers (@inferops)
"""

EXAMPLES = r"""
- name: Summarise the sweep on the controller
  inferops.cluster.bench_report:
    src: out/bench/r0/20261121T150000Z/raw
    dest: out/bench/r0/20261121T150000Z
    run_file: out/bench/r0/20261121T150000Z/run.json
    title: vLLM-CPU lab, TP2 over 2 nodes
  delegate_to: localhost
"""

RETURN = r"""
rows:
  description: One normalised row per run, sorted by input length, output length and concurrency.
  returned: always
  type: list
  elements: dict
  sample:
    - {input_len: 128, output_len: 128, concurrency: 1, mean_ttft_ms: 285.84, input_throughput: 17.42,
       output_throughput: 17.42, mean_tpot_ms: 55.6, mean_input_len: 128.0, mean_output_len: 128.0}
files:
  description: Paths of the summary files (written, or that would be written in check mode).
  returned: always
  type: list
  elements: str
summary_md:
  description: Content of C(summary.md).
  returned: always
  type: str
problems:
  description: Raw files that could not be read, with the reason.
  returned: always
  type: list
  elements: str
"""

import json
import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.inferops.cluster.plugins.module_utils._bench import (
    summarize,
    to_csv,
    to_markdown,
    write_charts,
)

CHART_FILES = ("throughput.png", "latency.png")


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "run_file": {"type": "path"},
            "tool": {"type": "str", "choices": ["sglang", "vllm"]},
            "title": {"type": "str", "default": "Benchmark summary"},
            "charts": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not os.path.isdir(p["src"]):
        module.fail_json(msg=f"src {p['src']} is not a directory")
    meta = {}
    if p["run_file"]:
        raw = _read(p["run_file"])
        if raw is None:
            module.fail_json(msg=f"run_file {p['run_file']} cannot be read")
        try:
            meta = json.loads(raw)
        except ValueError as exc:
            module.fail_json(msg=f"run_file {p['run_file']} is not JSON: {exc}")
    files = {}
    for name in sorted(os.listdir(p["src"])):
        path = os.path.join(p["src"], name)
        if os.path.isfile(path) and name.endswith((".json", ".jsonl")):
            files[name] = (_read(path) or b"").decode("utf-8", errors="replace")
    rows, problems = summarize(files, p["tool"] or meta.get("tool"), meta.get("cases"))
    if not rows:
        module.fail_json(msg=f"no readable benchmark result in {p['src']}", problems=problems)
    meta = dict(meta, title=p["title"])
    charts = list(CHART_FILES) if p["charts"] else []
    outputs = {
        "summary.csv": to_csv(rows).encode(),
        "summary.md": to_markdown(rows, meta, charts).encode(),
    }
    if charts:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            module.fail_json(msg=missing_required_lib("matplotlib", reason="to draw the benchmark charts"))
        tmp = tempfile.mkdtemp(prefix="inferops-bench-")
        try:
            for path in write_charts(rows, tmp, p["title"]):
                outputs[os.path.basename(path)] = _read(path) or b""
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    dest = p["dest"]
    before_md = _read(os.path.join(dest, "summary.md"))
    changed_files = [name for name, data in outputs.items() if _read(os.path.join(dest, name)) != data]
    if changed_files and not module.check_mode:
        os.makedirs(dest, exist_ok=True)
        for name in changed_files:
            target = os.path.join(dest, name)
            fd, tmp_path = tempfile.mkstemp(dir=dest, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as fh:
                fh.write(outputs[name])
            os.chmod(tmp_path, 0o644)
            module.atomic_move(tmp_path, target)
    result = {
        "changed": bool(changed_files),
        "rows": rows,
        "files": [os.path.join(dest, name) for name in outputs],
        "summary_md": outputs["summary.md"].decode(),
        "problems": problems,
    }
    if module._diff:
        result["diff"] = {
            "before_header": os.path.join(dest, "summary.md"),
            "after_header": os.path.join(dest, "summary.md"),
            "before": (before_md or b"").decode(),
            "after": outputs["summary.md"].decode(),
        }
    module.exit_json(**result)


if __name__ == "__main__":
    main()
