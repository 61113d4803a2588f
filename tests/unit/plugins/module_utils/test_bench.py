"""Benchmark sweep: tool argv (range-ratio mapping), normalisation of both tools' JSON, summaries."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.filter.verify import bench_argv, bench_cases
from ansible_collections.inferops.cluster.plugins.module_utils._bench import (
    REDACTED,
    chart_series,
    detect_tool,
    expand_cases,
    load_result,
    normalize,
    parse_case_name,
    range_flags,
    redact_env,
    run_record,
    summarize,
    to_csv,
    to_markdown,
)

FIXTURES = Path(__file__).parent / "fixtures" / "bench"
CASES = yaml.safe_load((FIXTURES / "cases.yml").read_text())


def _files(tool):
    return {p.name: p.read_text() for p in sorted((FIXTURES / tool).glob("*.json"))}


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_normalize_real_and_constructed_results(case):
    text = (FIXTURES / case["file"]).read_text()
    raw = load_result(text)
    assert detect_tool(raw) == case["tool"]
    name = Path(case["file"]).name
    row = normalize(raw, None, parse_case_name(name))
    for key, value in case["row"].items():
        if isinstance(value, float):
            assert row[key] == pytest.approx(value, rel=1e-3), key
        else:
            assert row[key] == value, key
    if "input_throughput_from" in case:
        tokens, duration = (raw[k] for k in case["input_throughput_from"])
        assert "input_throughput" not in raw  # vLLM does not report it ...
        assert row["input_throughput"] == pytest.approx(tokens / duration)  # ... so it is computed


def test_vllm_spread_lengths_stayed_in_target_range():
    raw = load_result((FIXTURES / "vllm" / "serving_benchmark_2_64_32.json").read_text())
    # asked (tool-neutral) for 64/32 with spread 0.5: lengths in [32, 64] and [16, 32]
    assert all(32 <= n <= 64 for n in raw["input_lens"])
    assert all(16 <= n <= 32 for n in raw["output_lens"])
    assert len(set(raw["input_lens"])) > 1


@pytest.mark.parametrize(
    ("tool", "length", "spread", "expected"),
    [
        ("sglang", 128, 0.0, (128, 1.0)),
        ("vllm", 128, 0.0, (128, 0.0)),
        ("sglang", 64, 0.5, (64, 0.5)),
        ("vllm", 64, 0.5, (48, 0.333333)),
        ("vllm", 1000, 0.2, (900, 0.111111)),
    ],
)
def test_range_flags_map_one_spread_onto_both_tools(tool, length, spread, expected):
    flags = range_flags(tool, length, length, spread)
    assert (flags["input_len"], flags["range_ratio"]) == expected
    # both describe [L(1-spread), L]
    if tool == "sglang":
        lo, hi = length * flags["range_ratio"], length
    else:
        centre, r = flags["input_len"], flags["range_ratio"]
        lo, hi = centre * (1 - r), centre * (1 + r)
    assert lo == pytest.approx(length * (1 - spread), abs=0.5)
    assert hi == pytest.approx(length, abs=0.5)


@pytest.mark.parametrize("spread", [-0.1, 1.0, 1.5])
def test_range_flags_reject_bad_spread(spread):
    with pytest.raises(ValueError, match="spread"):
        range_flags("vllm", 128, 128, spread)


def test_cases_are_lengths_times_concurrencies():
    cases = bench_cases([{"input": 128, "output": 128}, {"input": 256, "output": 256}], [1, 2, 4], 2, 4)
    assert [(c["input_len"], c["concurrency"], c["num_prompts"]) for c in cases] == [
        (128, 1, 4),
        (128, 2, 4),
        (128, 4, 8),
        (256, 1, 4),
        (256, 2, 4),
        (256, 4, 8),
    ]
    assert cases[0]["name"] == "serving_benchmark_1_128_128"


@pytest.mark.parametrize(
    ("lengths", "concurrencies", "message"),
    [
        ([], [1], "length pair"),
        ([{"input": 128}], [1], "integer 'input' and 'output'"),
        ([{"input": 0, "output": 1}], [1], "positive"),
        ([{"input": 1, "output": 1}], [], "concurrency"),
        ([{"input": 1, "output": 1}], [0], "positive"),
    ],
)
def test_cases_reject(lengths, concurrencies, message):
    with pytest.raises(ValueError, match=message):
        expand_cases(lengths, concurrencies)


COMMON = {
    "base_url": "http://10.0.0.1:8000",
    "model": "tiny-llama",
    "tokenizer": "/opt/inferops/models/tiny-llama",
    "result_dir": "/var/tmp/bench/run1",
}


def _flag(argv, name):
    return argv[argv.index(name) + 1]


def test_vllm_argv():
    case = expand_cases([{"input": 64, "output": 32}], [8])[0]
    argv = bench_argv(case, "vllm", command=["/opt/venv/bin/vllm", "bench", "serve"], spread=0.5, **COMMON)
    assert argv[:3] == ["/opt/venv/bin/vllm", "bench", "serve"]
    assert _flag(argv, "--random-input-len") == "48"
    assert _flag(argv, "--random-range-ratio") == "0.333333"
    assert _flag(argv, "--max-concurrency") == "8"
    assert _flag(argv, "--num-prompts") == "8"
    assert _flag(argv, "--result-dir") == "/var/tmp/bench/run1"
    assert _flag(argv, "--result-filename") == "serving_benchmark_8_64_32.json"
    assert "--save-detailed" in argv and "--ignore-eos" in argv


def test_sglang_argv_without_dataset_uses_random_ids():
    case = expand_cases([{"input": 128, "output": 128}], [4])[0]
    argv = bench_argv(case, "sglang", command=["python3", "-m", "sglang.bench_serving"], **COMMON)
    assert _flag(argv, "--backend") == "sglang"
    assert _flag(argv, "--dataset-name") == "random-ids"
    assert _flag(argv, "--random-range-ratio") == "1.0"
    assert _flag(argv, "--output-file") == "/var/tmp/bench/run1/serving_benchmark_4_128_128.json"
    with_path = bench_argv(case, "sglang", command=["python3"], dataset_path="/data/sharegpt.json", **COMMON)
    assert _flag(with_path, "--dataset-name") == "random"
    assert _flag(with_path, "--dataset-path") == "/data/sharegpt.json"


def test_argv_rejects_unknown_tool():
    case = expand_cases([{"input": 1, "output": 1}], [1])[0]
    with pytest.raises(Exception, match="tool"):
        bench_argv(case, "lmdeploy", command=["x"], **COMMON)


def test_redact_env():
    env = redact_env({"OPENAI_API_KEY": "s3cret", "HF_TOKEN": "t", "NCCL_IB_HCA": "mlx5_1", "OMP_NUM_THREADS": 1})
    assert env == {"HF_TOKEN": REDACTED, "NCCL_IB_HCA": "mlx5_1", "OMP_NUM_THREADS": "1", "OPENAI_API_KEY": REDACTED}


@pytest.mark.parametrize("text", ["", "[1, 2]", "not json"])
def test_load_result_rejects(text):
    with pytest.raises(ValueError):
        load_result(text)


def test_summary_csv_and_markdown_from_vllm_fixtures():
    rows, problems = summarize(dict(_files("vllm"), **{"run.json": "{}", "junk.json": "{"}))
    assert problems == []  # run.json and junk.json are not result names: skipped
    assert [(r["input_len"], r["concurrency"]) for r in rows] == [(32, 1), (32, 4), (64, 2)]
    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert [int(t["concurrency"]) for t in table] == [1, 4, 2]
    assert float(table[1]["input_throughput"]) == pytest.approx(rows[1]["input_throughput"], rel=1e-3)
    md = to_markdown(rows, {"engine": "vllm", "engine_version": "0.32.0", "nodes": ["a", "b"]}, ["throughput.png"])
    assert "- engine: vllm 0.32.0" in md
    assert "- nodes: a, b" in md
    assert "## input 32 / output 16" in md and "## input 64 / output 32" in md
    assert (
        "| Concurrency | Mean TTFT (ms) | Input Throughput (tokens/s) | Output Throughput (tokens/s) | Mean TPOT (ms) "
        "| Mean Input Len | Mean Output Len |" in md
    )
    assert "![throughput.png](throughput.png)" in md
    first = next(line for line in md.splitlines() if line.startswith("| 1 |"))
    assert first.endswith("| 32.0 | 16.0 |")


def test_summary_reports_unreadable_result():
    rows, problems = summarize({"serving_benchmark_1_8_8.json": "{", **_files("sglang")})
    assert len(rows) == 3
    assert problems and problems[0].startswith("serving_benchmark_1_8_8.json")


def test_markdown_matches_seed_row_for_sglang():
    rows, _skipped = summarize(_files("sglang"))
    md = to_markdown(rows)
    assert "| 1 | 285.84 | 17.42 | 17.42 | 55.60 | 128.0 | 128.0 |" in md  # seed 003's row, as printed there


def test_chart_series_one_line_per_length_pair():
    rows, _skipped = summarize(_files("sglang"))
    series = chart_series(rows, "output_throughput")
    assert sorted(series) == ["128/128", "256/256"]
    assert series["128/128"][0] == [1, 2]


def test_vllm_fixture_is_real_tool_output():
    raw = json.loads((FIXTURES / "vllm" / "serving_benchmark_4_32_16.json").read_text())
    assert raw["backend"] == "openai" and raw["model_id"] == "tiny-llama"
    assert len(raw["ttfts"]) == raw["num_prompts"] == 8


@pytest.mark.parametrize(("tool", "flag"), [("vllm", "--num-warmups"), ("sglang", "--warmup-requests")])
def test_warmup_requests_go_through_the_tools_own_flag(tool, flag):
    case = expand_cases([{"input": 64, "output": 32}], [4])[0]
    assert _flag(bench_argv(case, tool, command=["x"], warmups=4, **COMMON), flag) == "4"
    assert _flag(bench_argv(case, tool, command=["x"], **COMMON), flag) == "0"
    with pytest.raises(Exception, match="warmups"):
        bench_argv(case, tool, command=["x"], warmups=-1, **COMMON)


def test_run_record_keeps_the_tools_argv_without_the_key_wrapper() -> None:
    wrapper = ["/bin/sh", "-c", 'set -a; . "$1"; set +a; shift; exec "$@"', "inferops-bench", "/tmp/r/.api-key.env"]
    result = {"item": {"name": "c1"}, "cmd": [*wrapper, "vllm", "bench", "serve", "--model", "m"], "rc": 0}
    assert run_record(result, len(wrapper))["argv"] == ["vllm", "bench", "serve", "--model", "m"]
    assert run_record(result)["argv"][0] == "/bin/sh"  # no wrapper: the whole command
