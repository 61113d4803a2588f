"""Pure logic of the benchmark sweep: tool argv, result normalisation, summaries.

Two tools, one report:

* ``python3 -m sglang.bench_serving`` (sglang) appends one JSON object per run to ``--output-file``
  (JSON lines). Its ``--random-range-ratio r`` draws lengths uniformly from ``[L * r, L]``:
  ``1.0`` means fixed lengths.
* ``vllm bench serve`` (vLLM) writes one JSON object to ``--result-dir/--result-filename``. Its
  ``--random-range-ratio r`` draws from ``[L * (1 - r), L * (1 + r)]`` and must be below 1:
  ``0.0`` means fixed lengths. It reports no ``input_throughput``: it is computed here as
  ``total_input_tokens / duration`` (what sglang reports under that name).

The sweep is described once, tool-neutral: length pairs ``{input, output}``, concurrencies, and a
``spread`` in ``[0, 1)``: request lengths are drawn from ``[L * (1 - spread), L]`` (``0`` = every
request exactly ``L``, the seeds' setting). :func:`tool_argv` maps that onto each tool's flags.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from typing import Any

from ansible_collections.inferops.cluster.plugins.module_utils._argv import REDACTED, redact_argv

TOOLS = ("sglang", "vllm")

# The seed's table (003): concurrency, mean TTFT, input/output throughput, mean TPOT, mean lengths.
SUMMARY_FIELDS = (
    "input_len",
    "output_len",
    "concurrency",
    "num_prompts",
    "completed",
    "failed",
    "mean_ttft_ms",
    "input_throughput",
    "output_throughput",
    "mean_tpot_ms",
    "mean_input_len",
    "mean_output_len",
    "mean_itl_ms",
    "mean_e2el_ms",
    "p99_ttft_ms",
    "p99_tpot_ms",
    "request_throughput",
    "duration_s",
)

MD_COLUMNS = (
    ("concurrency", "Concurrency", "{:d}"),
    ("mean_ttft_ms", "Mean TTFT (ms)", "{:.2f}"),
    ("input_throughput", "Input Throughput (tokens/s)", "{:.2f}"),
    ("output_throughput", "Output Throughput (tokens/s)", "{:.2f}"),
    ("mean_tpot_ms", "Mean TPOT (ms)", "{:.2f}"),
    ("mean_input_len", "Mean Input Len", "{:.1f}"),
    ("mean_output_len", "Mean Output Len", "{:.1f}"),
)

_SECRET = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)


def case_name(input_len: int, output_len: int, concurrency: int) -> str:
    """File stem of one run: the seed's serving_benchmark_{concurrency}_{in}_{out}."""
    return f"serving_benchmark_{concurrency}_{input_len}_{output_len}"


_CASE = re.compile(r"^serving_benchmark_(\d+)_(\d+)_(\d+)(?:\.jsonl?)?$")


def parse_case_name(name: str) -> dict[str, int] | None:
    """{concurrency, input_len, output_len} from a result file name, or None (not a result)."""
    match = _CASE.match(name.rsplit("/", 1)[-1])
    if not match:
        return None
    conc, input_len, output_len = (int(g) for g in match.groups())
    return {"concurrency": conc, "input_len": input_len, "output_len": output_len}


def num_prompts(concurrency: int, per_concurrency: int = 1, minimum: int = 1) -> int:
    """The seeds send as many prompts as the concurrency; more gives steadier numbers."""
    return max(int(concurrency) * int(per_concurrency), int(minimum), 1)


def expand_cases(
    lengths: list[dict[str, Any]],
    concurrencies: list[int],
    per_concurrency: int = 1,
    min_prompts: int = 1,
) -> list[dict[str, Any]]:
    """The sweep: every length pair times every concurrency, in a stable order."""
    if not lengths:
        raise ValueError("the sweep needs at least one length pair")
    if not concurrencies:
        raise ValueError("the sweep needs at least one concurrency")
    cases = []
    for pair in lengths:
        try:
            input_len, output_len = int(pair["input"]), int(pair["output"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"each length pair needs integer 'input' and 'output', got {pair!r}") from exc
        if input_len < 1 or output_len < 1:
            raise ValueError(f"lengths must be positive, got {pair!r}")
        for conc in concurrencies:
            conc = int(conc)
            if conc < 1:
                raise ValueError(f"concurrency must be positive, got {conc}")
            cases.append(
                {
                    "name": case_name(input_len, output_len, conc),
                    "input_len": input_len,
                    "output_len": output_len,
                    "concurrency": conc,
                    "num_prompts": num_prompts(conc, per_concurrency, min_prompts),
                }
            )
    return cases


def range_flags(tool: str, input_len: int, output_len: int, spread: float) -> dict[str, Any]:
    """Map the tool-neutral spread onto each tool's (length, --random-range-ratio).

    Target: lengths uniform in ``[L * (1 - spread), L]``.
    sglang: ``[L * r, L]``          -> r = 1 - spread, length L.
    vLLM:   ``[c * (1 - r), c * (1 + r)]`` -> centre c = L * (1 - spread / 2), r = spread / (2 - spread).
    """
    spread = float(spread)
    if not 0.0 <= spread < 1.0:
        raise ValueError(f"spread must be in [0, 1), got {spread}")
    if tool == "sglang":
        return {"input_len": input_len, "output_len": output_len, "range_ratio": round(1.0 - spread, 6)}
    if tool == "vllm":
        ratio = spread / (2.0 - spread)
        return {
            "input_len": max(1, round(input_len * (1.0 - spread / 2.0))),
            "output_len": max(1, round(output_len * (1.0 - spread / 2.0))),
            "range_ratio": round(ratio, 6),
        }
    raise ValueError(f"tool must be one of {', '.join(TOOLS)}, got {tool!r}")


def tool_argv(
    tool: str,
    case: dict[str, Any],
    *,
    command: list[str],
    base_url: str,
    model: str,
    tokenizer: str,
    result_dir: str,
    spread: float = 0.0,
    dataset_path: str = "",
    seed: int = 42,
    backend: str = "",
    extra_args: list[str] | None = None,
    warmups: int = 0,
) -> list[str]:
    """The benchmark command line for one case (``command`` is the tool's launcher).

    ``backend`` is the tool's request format: sglang ``sglang`` (native /generate, the seeds'
    choice) or ``sglang-oai``; vLLM ``openai`` (/v1/completions). ``warmups`` unmeasured requests
    go first (vLLM ``--num-warmups``, sglang ``--warmup-requests``), sent at the case's concurrency:
    an engine that compiles kernels per batch shape (vLLM for CPU) is warm when measuring starts.
    """
    warmups = int(warmups)
    if warmups < 0:
        raise ValueError(f"warmups must be >= 0, got {warmups}")
    flags = range_flags(tool, int(case["input_len"]), int(case["output_len"]), spread)
    name = case["name"]
    common = [
        "--base-url",
        base_url,
        "--tokenizer",
        tokenizer,
        "--num-prompts",
        str(case["num_prompts"]),
        "--max-concurrency",
        str(case["concurrency"]),
        "--random-input-len",
        str(flags["input_len"]),
        "--random-output-len",
        str(flags["output_len"]),
        "--random-range-ratio",
        str(flags["range_ratio"]),
        "--seed",
        str(seed),
    ]
    if tool == "sglang":
        # "random" samples text from ShareGPT (downloaded unless --dataset-path names a copy);
        # "random-ids" uses random token ids and needs no file.
        dataset = (
            ["--dataset-name", "random", "--dataset-path", dataset_path]
            if dataset_path
            else ["--dataset-name", "random-ids"]
        )
        argv = [
            *command,
            "--backend",
            backend or "sglang",
            "--model",
            model,
            *dataset,
            *common,
            "--output-file",
            f"{result_dir}/{name}.json",
            "--output-details",
            "--disable-tqdm",
            "--warmup-requests",
            str(warmups),
        ]
    elif tool == "vllm":
        argv = [
            *command,
            "--backend",
            backend or "openai",
            "--endpoint",
            "/v1/completions",
            "--model",
            model,
            "--served-model-name",
            model,
            "--dataset-name",
            "random",
            *common,
            "--ignore-eos",
            "--percentile-metrics",
            "ttft,tpot,itl,e2el",
            "--save-result",
            "--save-detailed",
            "--result-dir",
            result_dir,
            "--result-filename",
            f"{name}.json",
            "--disable-tqdm",
            "--num-warmups",
            str(warmups),
        ]
    else:
        raise ValueError(f"tool must be one of {', '.join(TOOLS)}, got {tool!r}")
    return argv + [str(a) for a in (extra_args or [])]


def redact_env(env: dict[str, Any]) -> dict[str, str]:
    """Environment safe to store: values of secret-looking names replaced."""
    return {k: (REDACTED if _SECRET.search(k) else str(v)) for k, v in sorted(env.items())}


def run_record(result: dict[str, Any], wrapper: int = 0) -> dict[str, Any]:
    """What run.json keeps of one looped command result: case, argv (redacted), rc, times, error tail.

    ``wrapper``: how many leading words of the command are the wrapper that reads the API key (not the tool's argv).
    """
    case = dict(result.get("item") or {})
    record = {
        "input_len": case.get("input_len"),
        "output_len": case.get("output_len"),
        "concurrency": case.get("concurrency"),
        "num_prompts": case.get("num_prompts"),
        "argv": redact_argv((result.get("cmd") or [])[wrapper:]),
        "rc": result.get("rc"),
        "start": result.get("start"),
        "end": result.get("end"),
    }
    if result.get("rc") != 0:
        lines = [line for line in str(result.get("stderr") or result.get("msg") or "").splitlines() if line.strip()]
        record["error_tail"] = lines[-20:]
    return record


def load_result(text: str) -> dict[str, Any]:
    """One tool result: a JSON object, or JSON lines (sglang appends): the last object wins."""
    text = text.strip()
    if not text:
        raise ValueError("empty result file")
    try:
        data = json.loads(text)
    except ValueError:
        data = None
        for line in text.splitlines():
            line = line.strip()
            if line:
                data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError("a benchmark result must be a JSON object")
    return data


def detect_tool(result: dict[str, Any]) -> str:
    """Which tool wrote ``result``: vLLM's has total_token_throughput, sglang's input_throughput."""
    if "total_token_throughput" in result or "endpoint_type" in result:
        return "vllm"
    if "input_throughput" in result or "total_throughput" in result:
        return "sglang"
    raise ValueError("cannot tell which tool wrote this result (neither vLLM nor sglang keys)")


def _mean_len(result: dict[str, Any], lens_key: str, total_key: str, completed: int) -> float | None:
    lens = result.get(lens_key)
    errors = result.get("errors")
    if isinstance(lens, list) and lens:
        if isinstance(errors, list) and len(errors) == len(lens):
            ok = [n for n, err in zip(lens, errors, strict=True) if not err]
            if ok:
                return sum(ok) / len(ok)
        return sum(lens) / len(lens)
    total = result.get(total_key)
    if total is not None and completed:
        return float(total) / completed
    return None


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(value) else value


def normalize(result: dict[str, Any], tool: str | None = None, case: dict[str, Any] | None = None) -> dict[str, Any]:
    """One row of the summary from a raw tool result (either tool)."""
    tool = tool or detect_tool(result)
    case = case or {}
    duration = _num(result.get("duration"))
    completed = int(result.get("completed") or 0)
    total_input = _num(result.get("total_input_tokens"))
    if tool == "sglang":
        input_throughput = _num(result.get("input_throughput"))
        concurrency = result.get("max_concurrency")
        prompts = case.get("num_prompts") or (len(result["input_lens"]) if result.get("input_lens") else None)
        failed = (int(prompts) - completed) if prompts else None
        input_len, output_len = result.get("random_input_len"), result.get("random_output_len")
    elif tool == "vllm":
        # vLLM reports no input throughput: total input tokens over the benchmark's duration.
        input_throughput = (total_input / duration) if total_input is not None and duration else None
        concurrency = result.get("max_concurrency")
        prompts = result.get("num_prompts")
        failed = result.get("failed")
        input_len = output_len = None
    else:
        raise ValueError(f"tool must be one of {', '.join(TOOLS)}, got {tool!r}")
    row = {
        "tool": tool,
        "input_len": int(case.get("input_len") or input_len or 0),
        "output_len": int(case.get("output_len") or output_len or 0),
        "concurrency": int(case.get("concurrency") or concurrency or 0),
        "num_prompts": int(prompts) if prompts is not None else None,
        "completed": completed,
        "failed": int(failed) if failed is not None else None,
        "duration_s": duration,
        "mean_ttft_ms": _num(result.get("mean_ttft_ms")),
        "p99_ttft_ms": _num(result.get("p99_ttft_ms")),
        "mean_tpot_ms": _num(result.get("mean_tpot_ms")),
        "p99_tpot_ms": _num(result.get("p99_tpot_ms")),
        "mean_itl_ms": _num(result.get("mean_itl_ms")),
        "mean_e2el_ms": _num(result.get("mean_e2el_ms", result.get("mean_e2e_latency_ms"))),
        "input_throughput": input_throughput,
        "output_throughput": _num(result.get("output_throughput")),
        "request_throughput": _num(result.get("request_throughput")),
        "mean_input_len": _mean_len(result, "input_lens", "total_input_tokens", completed),
        "mean_output_len": _mean_len(result, "output_lens", "total_output_tokens", completed),
    }
    return row


def summarize(
    files: dict[str, str], tool: str | None = None, cases: dict[str, dict[str, Any]] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows from ``{file name: text}`` of raw results, and the problems met (unreadable files).

    Files whose names are not ``serving_benchmark_C_IN_OUT.json`` are skipped; ``cases`` (by case
    name) may add what the file does not hold, such as the number of prompts sent.
    """
    rows, problems = [], []
    for name in sorted(files):
        case = parse_case_name(name)
        if case is None:
            continue
        stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        extra = dict((cases or {}).get(stem) or {})
        extra.update(case)
        try:
            rows.append(normalize(load_result(files[name]), tool, extra))
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{name}: {exc}")
    return sort_rows(rows), problems


def sort_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["input_len"], r["output_len"], r["concurrency"]))


def _cell(value: Any, fmt: str = "{:.2f}") -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return fmt.format(value) if not fmt.endswith("d}") else str(int(value))
    if isinstance(value, int) and not fmt.endswith("d}"):
        return fmt.format(float(value))
    return str(value)


def to_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SUMMARY_FIELDS), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in sort_rows(rows):
        writer.writerow(
            {
                k: ("" if row.get(k) is None else (round(row[k], 4) if isinstance(row[k], float) else row[k]))
                for k in SUMMARY_FIELDS
            }
        )
    return buf.getvalue()


def to_markdown(rows: list[dict[str, Any]], meta: dict[str, Any] | None = None, charts: list[str] | None = None) -> str:
    """summary.md: a header with what was measured, then one seed-style table per length pair."""
    meta = meta or {}
    lines = [f"# {meta.get('title') or 'Benchmark summary'}", ""]
    facts = [
        ("engine", " ".join(str(x) for x in (meta.get("engine"), meta.get("engine_version")) if x)),
        ("tool", meta.get("tool")),
        ("model", meta.get("model")),
        ("endpoint", meta.get("base_url")),
        ("client", meta.get("client")),
        ("nodes", ", ".join(meta.get("nodes") or [])),
        ("run", meta.get("run_id")),
    ]
    for key, value in facts:
        if value:
            lines.append(f"- {key}: {value}")
    if len(lines) > 2:
        lines.append("")
    groups: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for row in sort_rows(rows):
        groups.setdefault((row["input_len"], row["output_len"]), []).append(row)
    header = "| " + " | ".join(column[1] for column in MD_COLUMNS) + " |"
    rule = "|" + "---:|" * len(MD_COLUMNS)
    for (input_len, output_len), group in groups.items():
        lines += [f"## input {input_len} / output {output_len}", "", header, rule]
        for row in group:
            lines.append("| " + " | ".join(_cell(row.get(key), fmt) for key, _title, fmt in MD_COLUMNS) + " |")
        failed = sum(int(r.get("failed") or 0) for r in group)
        if failed:
            lines += ["", f"{failed} request(s) failed in this group."]
        lines.append("")
    for chart in charts or []:
        lines += [f"![{chart}]({chart})", ""]
    return "\n".join(lines).rstrip() + "\n"


def chart_series(rows: list[dict[str, Any]], key: str) -> dict[str, tuple[list[int], list[float]]]:
    """{"in/out": ([concurrency...], [value...])} for one metric, one line per length pair."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for row in sort_rows(rows):
        value = row.get(key)
        if value is None:
            continue
        xs, ys = series.setdefault(f"{row['input_len']}/{row['output_len']}", ([], []))
        xs.append(row["concurrency"])
        ys.append(float(value))
    return series


def write_charts(rows: list[dict[str, Any]], out_dir: str, title: str = "") -> list[str]:
    """throughput.png and latency.png under ``out_dir``; needs matplotlib on the controller."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    panels = {
        "throughput.png": [
            ("output_throughput", "output throughput (tokens/s)"),
            ("input_throughput", "input throughput (tokens/s)"),
        ],
        "latency.png": [("mean_ttft_ms", "mean TTFT (ms)"), ("mean_tpot_ms", "mean TPOT (ms)")],
    }
    for filename, metrics in panels.items():
        fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.2))
        for ax, (key, label) in zip(axes, metrics, strict=True):
            for pair, (xs, ys) in chart_series(rows, key).items():
                ax.plot(xs, ys, marker="o", label=f"in/out {pair}")
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrency")
            ax.set_ylabel(label)
            ax.set_title(f"{label} vs concurrency")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        path = f"{out_dir.rstrip('/')}/{filename}"
        fig.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written
