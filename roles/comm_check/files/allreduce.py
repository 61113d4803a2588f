# inferops.cluster comm_check: torch.distributed all-reduce across the nodes of a replica.
#
# Run the same command on every node (node rank 0 first or not: the rendezvous waits):
#   python3 allreduce.py --backend nccl --master-addr HEAD --master-port 29650 \
#       --nnodes 2 --node-rank R --nproc-per-node 8
# Each node starts --nproc-per-node processes (one per GPU with nccl); global rank =
# node_rank * nproc_per_node + local_rank. Rank 0 hosts a TCPStore at master-addr:master-port;
# every rank registers there, and rank 0 waits --join-timeout seconds for all of them, then
# names the ones that never came. Results are JSON lines prefixed with "INFEROPS_COMM "
# (parsed by plugins/module_utils/_comm.py); NCCL's own log (NCCL_DEBUG=INFO) goes to stdout too.
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import socket
import sys
import time
from datetime import timedelta

PREFIX = "INFEROPS_COMM "


def emit(**event):
    print(PREFIX + json.dumps(event, sort_keys=True), flush=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["nccl", "gloo"], required=True)
    parser.add_argument("--master-addr", required=True)
    parser.add_argument("--master-port", type=int, required=True)
    parser.add_argument("--nnodes", type=int, required=True)
    parser.add_argument("--node-rank", type=int, required=True)
    parser.add_argument("--nproc-per-node", type=int, default=1)
    parser.add_argument("--min-bytes", type=int, default=1 << 20)
    parser.add_argument("--max-bytes", type=int, default=1 << 30)
    parser.add_argument("--factor", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--join-timeout", type=float, default=120.0)
    parser.add_argument("--op-timeout", type=float, default=600.0)
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    return parser.parse_args(argv)


def sizes(args):
    out, size = [], args.min_bytes
    while size <= args.max_bytes:
        out.append(size)
        size *= args.factor
    if not out or out[-1] != args.max_bytes:
        out.append(args.max_bytes)
    return out


def rendezvous(args, rank, world_size):
    """Connect to rank 0's store; rank 0 waits for everybody and names who is missing."""
    import torch.distributed as dist

    deadline = time.monotonic() + args.join_timeout
    try:
        store = dist.TCPStore(
            args.master_addr,
            args.master_port,
            world_size,
            is_master=(rank == 0),
            timeout=timedelta(seconds=args.join_timeout),
            wait_for_workers=False,
        )
    except Exception as exc:  # the head's store never answered
        emit(
            event="error",
            rank=rank,
            missing_ranks=[0],
            message=f"rank {rank} could not reach the rendezvous at {args.master_addr}:{args.master_port} "
            f"within {args.join_timeout:.0f}s (rank 0 on the head not up, or the address/port unreachable): {exc}",
        )
        return None
    store.set(f"inferops/joined/{rank}", socket.gethostname())
    if rank == 0:
        keys = [f"inferops/joined/{r}" for r in range(world_size)]
        while True:
            missing = [r for r, key in enumerate(keys) if not store.check([key])]
            if not missing:
                store.set("inferops/go", "1")
                return store
            if time.monotonic() >= deadline:
                message = (
                    f"{len(missing)} of {world_size} ranks did not join the rendezvous at "
                    f"{args.master_addr}:{args.master_port} within {args.join_timeout:.0f}s: "
                    + ", ".join(str(r) for r in missing)
                )
                store.set("inferops/abort", message)
                emit(event="missing", rank=0, world_size=world_size, missing_ranks=missing, message=message)
                time.sleep(2)  # let the ranks that did join read the abort
                return None
            time.sleep(0.2)
    while True:
        if store.check(["inferops/go"]):
            return store
        if store.check(["inferops/abort"]):
            emit(event="aborted", rank=rank, message=store.get("inferops/abort").decode())
            return None
        if time.monotonic() >= deadline + 30:
            emit(event="error", rank=rank, missing_ranks=[0], message="rank 0 never released the rendezvous")
            return None
        time.sleep(0.2)


def worker(args, local_rank):
    import torch
    import torch.distributed as dist

    world_size = args.nnodes * args.nproc_per_node
    rank = args.node_rank * args.nproc_per_node + local_rank
    dtype = getattr(torch, args.dtype)
    if args.backend == "nccl":
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    store = rendezvous(args, rank, world_size)
    if store is None:
        return 3
    dist.init_process_group(
        args.backend,
        store=dist.PrefixStore("inferops/pg", store),
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=args.op_timeout),
    )
    report = local_rank == 0
    if report:
        emit(
            event="start",
            backend=args.backend,
            rank=rank,
            node_rank=args.node_rank,
            world_size=world_size,
            nnodes=args.nnodes,
            nproc_per_node=args.nproc_per_node,
            dtype=args.dtype,
            torch=torch.__version__,
            devices=(torch.cuda.get_device_name(device) if args.backend == "nccl" else "cpu"),
            host=socket.gethostname(),
        )

    def sync():
        if args.backend == "nccl":
            torch.cuda.synchronize(device)

    elem = torch.tensor([], dtype=dtype).element_size()
    expected = world_size * (world_size + 1) / 2
    for nbytes in sizes(args):
        count = max(1, nbytes // elem)
        tensor = torch.full((count,), float(rank + 1), dtype=dtype, device=device)
        dist.all_reduce(tensor)
        sync()
        correct = bool(torch.eq(tensor, expected).all().item())
        tensor.zero_()
        for _warm in range(args.warmup):
            dist.all_reduce(tensor)
        sync()
        start = time.perf_counter()
        for _timed in range(args.iters):
            dist.all_reduce(tensor)
        sync()
        elapsed = (time.perf_counter() - start) / args.iters
        # the slowest rank sets the pace (and every rank must agree the data was right)
        stats = torch.tensor([elapsed, 0.0 if correct else 1.0], dtype=torch.float64, device=device)
        dist.all_reduce(stats, op=dist.ReduceOp.MAX)
        if report:
            emit(
                event="result",
                bytes=count * elem,
                count=count,
                dtype=args.dtype,
                time_us=stats[0].item() * 1e6,
                correct=stats[1].item() == 0.0,
                world_size=world_size,
            )
        del tensor
    dist.barrier()
    if report:
        emit(event="done", rank=rank)
    dist.destroy_process_group()
    return 0


def _child(args, local_rank, queue):
    try:
        code = worker(args, local_rank)
    except Exception as exc:
        emit(
            event="error",
            rank=args.node_rank * args.nproc_per_node + local_rank,
            message=f"{type(exc).__name__}: {exc}",
        )
        code = 1
    queue.put(code)
    sys.stdout.flush()
    os._exit(code)


def main(argv=None):
    args = parse_args(argv)
    if args.nproc_per_node == 1:
        try:
            return worker(args, 0)
        except Exception as exc:
            emit(event="error", rank=args.node_rank, message=f"{type(exc).__name__}: {exc}")
            return 1
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(args, i, queue)) for i in range(args.nproc_per_node)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join()
    return max((proc.exitcode or 0) for proc in procs)


if __name__ == "__main__":
    sys.exit(main())
