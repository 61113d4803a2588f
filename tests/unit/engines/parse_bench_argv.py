"""Parse benchmark argv with the engines' own benchmark parsers (run inside the engines venv).

stdin: JSON list of {"id", "argv"}; stdout: JSON list of {"id", "ok", "error", "args"}.
Only vLLM's (`vllm bench serve`, vllm.benchmarks.serve.add_cli_args): sglang's benchmark module
imports torchvision and dataset libraries that the CPU engines venv cannot carry, so its options are
checked against its source instead (test_bench_parsers.py).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys

KEYS = ("num_warmups", "warmup_requests", "max_concurrency", "num_prompts", "random_input_len", "base_url")


def parse_vllm(argv: list[str]) -> argparse.Namespace:
    from vllm.benchmarks.serve import add_cli_args
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm bench serve")
    add_cli_args(parser)
    return parser.parse_args(argv)


def parse(item: dict) -> dict:
    argv = item["argv"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            if argv[:3] == ["vllm", "bench", "serve"]:
                ns = parse_vllm(argv[3:])
            else:
                return {"id": item["id"], "ok": False, "error": f"unknown command {argv[:3]}", "args": {}}
    except SystemExit:
        return {"id": item["id"], "ok": False, "error": err.getvalue().strip()[-500:], "args": {}}
    args = {k: getattr(ns, k) for k in KEYS if hasattr(ns, k)}
    return {"id": item["id"], "ok": True, "error": "", "args": json.loads(json.dumps(args, default=str))}


def main() -> None:
    json.dump([parse(item) for item in json.load(sys.stdin)], sys.stdout)


if __name__ == "__main__":
    main()
