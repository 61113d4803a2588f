"""Parse rendered argv with the real engines' own parsers (run inside the engines venv).

stdin: JSON list of {"id": ..., "argv": [...], "keys": [more attributes to return, optional]};
stdout: JSON list of {"id", "ok", "error", "args"}.
vLLM: the `vllm serve` sub-command parser and its validation; sglang: ServerArgs.add_cli_args.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys

KEYS = (
    "model",
    "model_tag",
    "model_path",
    "served_model_name",
    "tensor_parallel_size",
    "tp_size",
    "pipeline_parallel_size",
    "pp_size",
    "data_parallel_size",
    "dp_size",
    "ep_size",
    "enable_expert_parallel",
    "nnodes",
    "node_rank",
    "master_addr",
    "master_port",
    "headless",
    "dist_init_addr",
    "distributed_executor_backend",
    "host",
    "port",
    "api_key",
)


def vllm_parser():
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm")
    sub = parser.add_subparsers(dest="subparser")
    cmd = ServeSubcommand()
    cmd.subparser_init(sub)
    return parser, cmd


def sglang_parser():
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="sglang.launch_server")
    ServerArgs.add_cli_args(parser)
    return parser


def parse(item, parsers):
    argv = item["argv"]
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            if argv[:2] == ["vllm", "serve"]:
                if "vllm" not in parsers:
                    parsers["vllm"] = vllm_parser()
                parser, cmd = parsers["vllm"]
                ns = parser.parse_args(argv[1:])
                cmd.validate(ns)
            elif argv[:3] == ["python3", "-m", "sglang.launch_server"]:
                if "sglang" not in parsers:
                    parsers["sglang"] = sglang_parser()
                ns = parsers["sglang"].parse_args(argv[3:])
            else:
                return {"id": item["id"], "ok": False, "error": f"unknown command {argv[:3]}", "args": {}}
    except SystemExit:
        return {"id": item["id"], "ok": False, "error": err.getvalue().strip()[-500:], "args": {}}
    except Exception as exc:  # the engine's own validation
        return {"id": item["id"], "ok": False, "error": f"{type(exc).__name__}: {exc}", "args": {}}
    args = {k: getattr(ns, k) for k in (*KEYS, *item.get("keys", ())) if hasattr(ns, k)}
    return {"id": item["id"], "ok": True, "error": "", "args": json.loads(json.dumps(args, default=str))}


def main():
    items = json.load(sys.stdin)
    parsers = {}
    json.dump([parse(item, parsers) for item in items], sys.stdout)


if __name__ == "__main__":
    main()
