"""Convert a block-scaled FP8 safetensors checkpoint (DeepSeek-V3/R1 layout) to BF16.

    python3 fp8_to_bf16.py --input DIR --output DIR [--device auto|cuda|cpu] [--workers N]

Arithmetic (identical to DeepSeek-V3's inference/fp8_cast_bf16.py + kernel.py weight_dequant):
for every float8 tensor W (e4m3fn or e5m2, 2-D) that has a `<name>_scale_inv` tensor S
(in any shard), each 128x128 block, partial edge blocks included, becomes
bf16(fp32(W[block]) * S[block]) with IEEE fp32 multiply and round-to-nearest-even to bf16.
Every other tensor is copied byte for byte in its own dtype; the `_scale_inv` tensors are
dropped. A float8 tensor without a scale stops the run before anything is written.

How it runs: safetensors headers are parsed lazily (8-byte length + JSON, the format's own
layout); the output layout of every shard (header, offsets, sizes) is computed up front, so
the free-space check and the index's total_size are exact before a byte is written. The
tensors are cut into work items of at most --item-mb of input (128-row bands for float8
tensors, byte ranges for the rest). A pool of --workers threads takes the items in shard
order; each thread preads its item into its own buffer, converts it (CUDA: pinned buffer ->
GPU -> pinned buffer on the thread's own stream; CPU: torch on that thread), and pwrites
the result at its final offset in the output shard. Reading, converting and writing of
different items, across shard boundaries, therefore overlap, and memory is bounded by
workers x (input item + output item + scratch), whatever the number or size of shards.

Safety: each output shard is written as `.NAME.partial` and renamed (after fsync) only when
all its tensors are written; a state record (.fp8_to_bf16.state.json) keeps, per input
shard, its size and a fingerprint (sha256 over the header, which lists every tensor's name,
dtype, shape and offsets, and over nine 64 KiB windows of the data spread across the file;
--fingerprint full hashes every byte). A re-run converts only the shards whose record or
output is missing or different; leftover .partial files of a killed run are removed.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import hashlib
import json
import os
import resource
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass, field

STATE_NAME = ".fp8_to_bf16.state.json"
STATE_FORMAT = 1
INDEX_NAME = "model.safetensors.index.json"
CONFIG_NAME = "config.json"
CONFIG_ORIG_SUFFIX = ".fp8-orig"
SCALE_SUFFIX = "_scale_inv"
BLOCK = 128
FP8_DTYPES = ("F8_E4M3", "F8_E5M2")
SCALE_DTYPES = ("F32", "BF16", "F16")
MAX_HEADER = 100 * 1024 * 1024
SAMPLE_WINDOWS = 9
SAMPLE_BYTES = 64 * 1024


class ConvertError(Exception):
    """A user-facing error: printed as one line, exit status 1."""


@dataclass
class SrcTensor:
    name: str
    dtype: str
    shape: list[int]
    begin: int  # absolute file offset
    end: int
    shard: int  # index into Plan.shards


@dataclass
class InShard:
    name: str
    path: str
    size: int
    data_start: int
    header: bytes
    metadata: dict
    tensors: list[SrcTensor] = field(default_factory=list)


@dataclass
class Item:
    shard: int
    kind: str  # "copy" or "fp8"
    src_shard: int
    src_off: int
    n_in: int
    out_off: int
    n_out: int
    fp8_dtype: str = ""
    rows: int = 0
    cols: int = 0
    scale_shard: int = -1
    scale_off: int = 0
    scale_rows: int = 0
    scale_cols: int = 0
    scale_dtype: str = ""


@dataclass
class OutShard:
    name: str
    src: int
    header: bytes
    size: int
    weight_bytes: int
    tensor_names: list[str]
    items: list[Item] = field(default_factory=list)


@dataclass
class Plan:
    shards: list[InShard]
    out: list[OutShard]
    had_index: bool
    index_metadata: dict
    total_size: int


def log(msg: str) -> None:
    print(msg, flush=True)


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


# ---------------------------------------------------------------- reading the input


def read_header(name: str, path: str, shard: int) -> InShard:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ConvertError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        n = int.from_bytes(raw, "little")
        if n > MAX_HEADER or 8 + n > size:
            raise ConvertError(f"{path}: not a safetensors file (header length {n})")
        header = f.read(n)
    try:
        meta = json.loads(header)
    except ValueError as exc:
        raise ConvertError(f"{path}: unreadable safetensors header: {exc}") from exc
    data_start = 8 + n
    sh = InShard(name, path, size, data_start, header, meta.pop("__metadata__", None) or {})
    for key, info in meta.items():
        begin, end = info["data_offsets"]
        if not 0 <= begin <= end or data_start + end > size:
            raise ConvertError(f"{path}: tensor {key} has offsets {begin}..{end} outside the file")
        sh.tensors.append(
            SrcTensor(key, info["dtype"], list(info["shape"]), data_start + begin, data_start + end, shard)
        )
    sh.tensors.sort(key=lambda t: t.begin)
    return sh


def list_shards(inp: str) -> tuple[list[str], bool, dict]:
    index_path = os.path.join(inp, INDEX_NAME)
    if os.path.isfile(index_path):
        with open(index_path) as f:
            index = json.load(f)
        names = sorted(set(index.get("weight_map", {}).values()))
        missing = [n for n in names if not os.path.isfile(os.path.join(inp, n))]
        if missing:
            raise ConvertError(f"{index_path} lists shards that are not in {inp}: {', '.join(missing[:5])}")
        return names, True, dict(index.get("metadata") or {})
    names = sorted(n for n in os.listdir(inp) if n.endswith(".safetensors") and not n.startswith("."))
    return names, False, {}


def fingerprint(sh: InShard, full: bool) -> str:
    h = hashlib.sha256()
    h.update(f"{sh.size}\n".encode())
    with open(sh.path, "rb") as f:
        if full:
            while chunk := f.read(16 << 20):
                h.update(chunk)
            return "sha256:" + h.hexdigest()
        h.update(f.read(sh.data_start))
        span = sh.size - sh.data_start
        for i in range(SAMPLE_WINDOWS):
            off = sh.data_start + (span - SAMPLE_BYTES) * i // (SAMPLE_WINDOWS - 1) if span > SAMPLE_BYTES else 0
            f.seek(max(off, sh.data_start))
            h.update(f.read(SAMPLE_BYTES))
    return "sha256-sampled:" + h.hexdigest()


# ---------------------------------------------------------------- the plan


def build_plan(inp: str, item_bytes: int) -> Plan:
    names, had_index, index_meta = list_shards(inp)
    if not names:
        raise ConvertError(f"no *.safetensors shards in {inp}")
    shards = [read_header(n, os.path.join(inp, n), i) for i, n in enumerate(names)]
    by_name: dict[str, SrcTensor] = {}
    for sh in shards:
        for t in sh.tensors:
            if t.name in by_name:
                other = shards[by_name[t.name].shard].name
                raise ConvertError(f"tensor {t.name} is in two shards: {other} and {sh.name}")
            by_name[t.name] = t

    used_scales: set[str] = set()
    for t in by_name.values():
        if t.dtype not in FP8_DTYPES:
            continue
        sname = t.name + SCALE_SUFFIX
        s = by_name.get(sname)
        if s is None:
            raise ConvertError(
                f"FP8 tensor {t.name} ({t.dtype}) in shard {shards[t.shard].name} has no {sname} in any shard: "
                "refusing to write a checkpoint that mixes FP8 and BF16"
            )
        if len(t.shape) != 2:
            raise ConvertError(f"FP8 tensor {t.name} in shard {shards[t.shard].name} is not 2-D: {t.shape}")
        want = [-(-t.shape[0] // BLOCK), -(-t.shape[1] // BLOCK)]
        if s.shape != want or s.dtype not in SCALE_DTYPES:
            raise ConvertError(
                f"scale {sname} in shard {shards[s.shard].name} is {s.dtype}{s.shape}; "
                f"{t.name} {t.shape} needs float {want} (128x128 blocks)"
            )
        if t.end - t.begin != t.shape[0] * t.shape[1]:
            raise ConvertError(f"FP8 tensor {t.name} in shard {shards[t.shard].name} has the wrong byte length")
        used_scales.add(sname)

    out: list[OutShard] = []
    total = 0
    for si, sh in enumerate(shards):
        entries: dict[str, dict] = {}
        items: list[Item] = []
        off = 0
        kept = []
        for t in sh.tensors:
            if t.name in used_scales:
                continue
            kept.append(t)
            n_in = t.end - t.begin
            if t.dtype in FP8_DTYPES:
                n_out = 2 * n_in
                entries[t.name] = {"dtype": "BF16", "shape": t.shape, "data_offsets": [off, off + n_out]}
                s = by_name[t.name + SCALE_SUFFIX]
                rows, cols = t.shape
                ssize = {"F32": 4, "BF16": 2, "F16": 2}[s.dtype]
                band = max(BLOCK, (item_bytes // max(cols, 1)) // BLOCK * BLOCK)
                for r0 in range(0, rows, band):
                    r1 = min(rows, r0 + band)
                    srow0 = r0 // BLOCK
                    items.append(
                        Item(
                            si,
                            "fp8",
                            t.shard,
                            t.begin + r0 * cols,
                            (r1 - r0) * cols,
                            off + 2 * r0 * cols,
                            2 * (r1 - r0) * cols,
                            fp8_dtype=t.dtype,
                            rows=r1 - r0,
                            cols=cols,
                            scale_shard=s.shard,
                            scale_off=s.begin + srow0 * s.shape[1] * ssize,
                            scale_rows=-(-(r1 - r0) // BLOCK),
                            scale_cols=s.shape[1],
                            scale_dtype=s.dtype,
                        )
                    )
            else:
                n_out = n_in
                entries[t.name] = {"dtype": t.dtype, "shape": t.shape, "data_offsets": [off, off + n_out]}
                for c0 in range(0, n_in, item_bytes):
                    c1 = min(n_in, c0 + item_bytes)
                    items.append(Item(si, "copy", t.shard, t.begin + c0, c1 - c0, off + c0, c1 - c0))
            off += n_out
        meta = {str(k): str(v) for k, v in sh.metadata.items()}
        meta["format"] = "pt"
        header = json.dumps({"__metadata__": meta, **entries}, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)
        data_start = 8 + len(header)
        for it in items:
            it.out_off += data_start
        out.append(OutShard(sh.name, si, header, data_start + off, off, [t.name for t in kept], items))
        total += off
    return Plan(shards, out, had_index, index_meta, total)


# ---------------------------------------------------------------- file helpers


def pread_into(fd: int, buf: memoryview, off: int) -> None:
    done = 0
    n = len(buf)
    while done < n:
        got = os.preadv(fd, [buf[done:]], off + done)
        if got <= 0:
            raise ConvertError(f"unexpected end of file reading fd {fd} at offset {off + done}")
        done += got


def pwrite_all(fd: int, buf, off: int) -> None:
    view = memoryview(buf)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], off + done)


class Writeback:
    """Starts the disk write of each finished item at once (sync_file_range SYNC_FILE_RANGE_WRITE,
    asynchronous), instead of leaving it dirty in the page cache until the kernel's thresholds or
    the shard's fsync: the disk writes from the first second, beside the reads."""

    SYNC_FILE_RANGE_WRITE = 2

    def __init__(self, enabled: bool):
        self.call = None
        if enabled and sys.platform.startswith("linux"):
            with contextlib.suppress(OSError, AttributeError):
                fn = ctypes.CDLL(None, use_errno=True).sync_file_range
                fn.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
                fn.restype = ctypes.c_int
                self.call = fn

    def start(self, fd: int, off: int, n: int) -> None:
        if self.call is not None and n > 0:
            self.call(fd, off, n, self.SYNC_FILE_RANGE_WRITE)  # a failure only loses the hint


def host_view(t, n: int) -> memoryview:
    """A writable memoryview over the first n bytes of a contiguous CPU tensor (no numpy needed)."""
    return memoryview((ctypes.c_char * n).from_address(t.data_ptr())).cast("B")


def write_atomic(path: str, data: bytes) -> None:
    tmp = os.path.join(os.path.dirname(path), "." + os.path.basename(path) + ".partial")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_or_none(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return None


def is_within(child: str, parent: str) -> bool:
    return child == parent or child.startswith(parent.rstrip(os.sep) + os.sep)


# ---------------------------------------------------------------- conversion engines


class Engine:
    """Per-thread buffers and the dequantisation itself, on CPU or one CUDA device."""

    def __init__(self, torch, device: str, item_bytes: int):
        self.torch = torch
        self.device = device
        self.cuda = device.startswith("cuda")
        self.item_bytes = item_bytes
        self.local = threading.local()
        self.fp8 = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
        self.sdt = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
        # CPU: torch's own fp8 -> fp32 conversion of all 256 codes as a table; a gather through it
        # is exact by construction and about 4x faster than the elementwise conversion on CPU.
        codes = torch.arange(256, dtype=torch.uint8)
        self.lut = {k: codes.view(v).to(torch.float32) for k, v in self.fp8.items()}

    def ctx(self):
        c = self.local
        if not hasattr(c, "h_in"):
            t = self.torch
            pin = self.cuda
            n = self.item_bytes
            c.h_in = t.empty(n, dtype=t.uint8, pin_memory=pin)
            c.h_out = t.empty(2 * n, dtype=t.uint8, pin_memory=pin)
            c.v_in = host_view(c.h_in, n)
            c.v_out = host_view(c.h_out, 2 * n)
            if self.cuda:
                c.stream = t.cuda.Stream(device=self.device)
                c.d_in = t.empty(n, dtype=t.uint8, device=self.device)
                c.d_out = t.empty(2 * n, dtype=t.uint8, device=self.device)
                c.scratch = t.empty(n, dtype=t.float32, device=self.device)
            else:
                c.scratch = t.empty(0, dtype=t.float32)
                c.idx = t.empty(0, dtype=t.int32)
        return c

    def to_f32(self, w_rows, x, it: Item, idx) -> None:
        """x (fp32) = w_rows (fp8 codes as uint8, same shape), exactly."""
        if idx is None:
            x.copy_(w_rows.view(self.fp8[it.fp8_dtype]))
        else:
            i = idx[: w_rows.numel()]
            i.copy_(w_rows.reshape(-1))
            self.torch.index_select(self.lut[it.fp8_dtype], 0, i, out=x.view(-1))

    def dequant(self, w_u8, it: Item, s, out_u8, scratch, step_rows: int, idx=None) -> None:
        """out = bf16(fp32(w) * s) per 128x128 block; w, out are flat byte tensors, scratch flat fp32."""
        t = self.torch
        rows, cols = it.rows, it.cols
        w = w_u8.view(rows, cols)
        out = out_u8.view(t.bfloat16).view(rows, cols)
        s_cols = s.repeat_interleave(BLOCK, dim=1)[:, :cols]  # (row blocks, cols), fp32
        for r0 in range(0, rows, step_rows):
            r1 = min(rows, r0 + step_rows)
            b0, nfull = r0 // BLOCK, (r1 - r0) // BLOCK
            if nfull:
                x = scratch[: nfull * BLOCK * cols].view(nfull, BLOCK, cols)
                self.to_f32(w[r0 : r0 + nfull * BLOCK].view(nfull, BLOCK, cols), x, it, idx)
                x.mul_(s_cols[b0 : b0 + nfull, None, :])  # IEEE fp32 multiply
                out[r0 : r0 + nfull * BLOCK].view(nfull, BLOCK, cols).copy_(x)  # round to nearest even
            tail = r0 + nfull * BLOCK
            if tail < r1:
                x = scratch[: (r1 - tail) * cols].view(r1 - tail, cols)
                self.to_f32(w[tail:r1], x, it, idx)
                x.mul_(s_cols[tail // BLOCK])
                out[tail:r1].copy_(x)

    def scale(self, fd: int, it: Item):
        t = self.torch
        ssize = {"F32": 4, "BF16": 2, "F16": 2}[it.scale_dtype]
        raw = bytearray(it.scale_rows * it.scale_cols * ssize)
        pread_into(fd, memoryview(raw), it.scale_off)
        return t.frombuffer(raw, dtype=self.sdt[it.scale_dtype]).view(it.scale_rows, it.scale_cols).to(t.float32)

    def run(self, it: Item, fd_in: int, fd_scale: int, fd_out: int) -> None:
        c = self.ctx()
        pread_into(fd_in, c.v_in[: it.n_in], it.src_off)
        if it.kind == "copy":
            pwrite_all(fd_out, c.v_in[: it.n_in], it.out_off)
            return
        s = self.scale(fd_scale, it)
        if self.cuda:
            t = self.torch
            with t.cuda.stream(c.stream):
                d_in = c.d_in[: it.n_in]
                d_in.copy_(c.h_in[: it.n_in], non_blocking=True)
                d_s = s.to(self.device, non_blocking=False)
                d_out = c.d_out[: it.n_out]
                self.dequant(d_in, it, d_s, d_out, c.scratch, it.rows)
                c.h_out[: it.n_out].copy_(d_out, non_blocking=True)
            c.stream.synchronize()
        else:
            # steps of whole 128-row blocks with a ~4 MiB fp32 scratch that stays in cache
            step = max(BLOCK, (4 << 20) // (4 * max(it.cols, 1)) // BLOCK * BLOCK)
            if c.scratch.numel() < step * it.cols:
                c.scratch = self.torch.empty(step * it.cols, dtype=self.torch.float32)
                c.idx = self.torch.empty(step * it.cols, dtype=self.torch.int32)
            self.dequant(c.h_in[: it.n_in], it, s, c.h_out[: it.n_out], c.scratch, step, c.idx)
        pwrite_all(fd_out, c.v_out[: it.n_out], it.out_off)


# ---------------------------------------------------------------- the run


def fs_type(path: str) -> str:
    """The file system type of path, from /proc/self/mountinfo ('' when unknown)."""
    real, best, kind = os.path.realpath(path), "", ""
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _sep, right = line.partition(" - ")
                mnt = left.split()[4].replace("\\040", " ")
                if is_within(real, mnt) and len(mnt) >= len(best):
                    best, kind = mnt, right.split()[0]
    except (OSError, IndexError):
        return ""
    return kind


def output_defaults(out: str) -> tuple[int, str]:
    """Shards written at once and the writeback mode for the output's file system.

    tmpfs/ramfs: 8 shards (writes to one file are serialised, so spread them; measured on /dev/shm,
    GPU: 1 -> 15.0 s, 4 -> 9.1-10.0 s, 8 -> 8.2-8.3 s) and kernel writeback (nothing to write back).
    Disks: 1 shard (shards finish and fsync one after another; 4 at once measured 25.8 s -> 37.4 s on
    a local disk) and early writeback (start each item's write at once)."""
    return (8, "kernel") if fs_type(out) in ("tmpfs", "ramfs") else (1, "early")


def interleave(plan: Plan, todo: list[int], k: int) -> list[Item]:
    """Items of k shards at a time, taken in turn: k output files are written at once (a file
    takes its writers one at a time on Linux), yet at most k shards are ever partial."""
    order: list[Item] = []
    for g in range(0, len(todo), k):
        queues = [plan.out[si].items for si in todo[g : g + k]]
        for i in range(max((len(q) for q in queues), default=0)):
            order.extend(q[i] for q in queues if i < len(q))
    return order


class Background:
    """Import torch in a thread and meanwhile ask the kernel to read ahead the first input
    shards (posix_fadvise WILLNEED), so a cold start's library loading overlaps disk reads."""

    def __init__(self, paths: list[str]):
        self.torch = None
        self.error: BaseException | None = None
        self.loaded = threading.Event()
        self.importer = threading.Thread(target=self._import, daemon=True)
        self.reader = threading.Thread(target=self._readahead, args=(paths,), daemon=True)
        self.importer.start()
        self.reader.start()

    def _import(self) -> None:
        try:
            import torch  # deferred: argument and layout errors must not wait for torch's import

            self.torch = torch
        except BaseException as exc:
            self.error = exc
        finally:
            self.loaded.set()

    def _readahead(self, paths: list[str]) -> None:
        if not hasattr(os, "posix_fadvise"):
            return
        for path in paths:
            fd = os.open(path, os.O_RDONLY)
            try:
                size = os.fstat(fd).st_size
                for off in range(0, size, 64 << 20):
                    if self.loaded.is_set():
                        return
                    os.posix_fadvise(fd, off, 64 << 20, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)

    def get_torch(self):
        self.importer.join()
        if self.error is not None:
            raise ConvertError(f"cannot import torch: {self.error}")
        return self.torch


class Runner:
    def __init__(self, plan: Plan, todo: list[int], args, engine: Engine, state: dict, fps: dict[int, str]):
        self.plan = plan
        self.todo = todo
        self.args = args
        self.engine = engine
        self.state = state
        self.fps = fps
        self.items = interleave(plan, todo, args.open_shards)
        self.writeback = Writeback(args.writeback == "early")
        self.next = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.remaining = {si: len(plan.out[si].items) for si in todo}
        self.out_fd: dict[int, int] = {}
        self.in_fd = {i: os.open(sh.path, os.O_RDONLY) for i, sh in enumerate(plan.shards)}
        self.t0 = time.perf_counter()
        self.shard_t0: dict[int, float] = {}
        self.done_in = 0
        self.done_out = 0
        self.done_shards = 0
        self.read_budget = args.max_read_mbps * 1e6 if args.max_read_mbps else 0.0
        self.read_bytes = 0

    def tmp_path(self, si: int) -> str:
        return os.path.join(self.args.output, "." + self.plan.out[si].name + ".partial")

    def open_shard(self, si: int) -> int:
        # called with self.lock held
        fd = self.out_fd.get(si)
        if fd is None:
            o = self.plan.out[si]
            fd = os.open(self.tmp_path(si), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self.out_fd[si] = fd
            self.shard_t0[si] = time.perf_counter()
            pwrite_all(fd, len(o.header).to_bytes(8, "little") + o.header, 0)
        return fd

    def take(self) -> tuple[Item, int] | None:
        with self.lock:
            if self.stop.is_set() or self.next >= len(self.items):
                return None
            it = self.items[self.next]
            self.next += 1
            return it, self.open_shard(it.shard)

    def throttle(self, n: int) -> None:
        if not self.read_budget:
            return
        with self.lock:
            self.read_bytes += n
            due = self.t0 + self.read_bytes / self.read_budget
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)

    def finish_shard(self, si: int) -> None:
        o = self.plan.out[si]
        sh = self.plan.shards[o.src]
        with self.lock:
            fd = self.out_fd.pop(si)
        tmp = self.tmp_path(si)
        try:
            try:
                written = os.fstat(fd).st_size
                if written != o.size:
                    raise ConvertError(f"{tmp}: {written} bytes written, {o.size} expected")
                if not self.args.no_fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, os.path.join(self.args.output, o.name))
        except OSError as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise ConvertError(f"{tmp}: {exc.strerror or exc}") from exc
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        with self.lock:
            self.state["shards"][o.name] = {
                "input_size": sh.size,
                "input_fingerprint": self.fps[o.src],
                "output_size": o.size,
            }
            write_atomic(os.path.join(self.args.output, STATE_NAME), json.dumps(self.state, indent=1).encode())
            self.done_shards += 1
            self.done_in += sh.size
            self.done_out += o.size
            el = time.perf_counter() - self.t0
            log(
                f"[{self.done_shards}/{len(self.todo)}] {o.name}: {gb(sh.size)} -> {gb(o.size)} in "
                f"{time.perf_counter() - self.shard_t0[si]:.1f} s; overall {gb(self.done_in)} in, "
                f"{gb(self.done_out)} out, {el:.1f} s, {self.done_in / el / 1e9:.2f} GB/s in"
            )

    def worker(self) -> None:
        try:
            while (got := self.take()) is not None:
                it, fd_out = got
                self.throttle(it.n_in)
                try:
                    self.engine.run(it, self.in_fd[it.src_shard], self.in_fd.get(it.scale_shard, -1), fd_out)
                except OSError as exc:
                    raise ConvertError(f"{self.tmp_path(it.shard)}: {exc.strerror or exc}") from exc
                self.writeback.start(fd_out, it.out_off, it.n_out)
                with self.lock:
                    self.remaining[it.shard] -= 1
                    last = self.remaining[it.shard] == 0
                if last:
                    self.finish_shard(it.shard)
        except BaseException as exc:
            with self.lock:
                if self.error is None:
                    self.error = exc
            self.stop.set()

    def run(self, workers: int) -> None:
        for si in self.todo:
            if not self.plan.out[si].items:  # a shard with nothing but scales
                with self.lock:
                    self.open_shard(si)
                self.finish_shard(si)
        threads = [threading.Thread(target=self.worker, name=f"fp8-{i}", daemon=True) for i in range(workers)]
        for th in threads:
            th.start()
        try:
            for th in threads:
                while th.is_alive():
                    th.join(0.2)
        except BaseException:
            self.stop.set()
            for th in threads:
                th.join()
            self.cleanup()
            raise
        if self.error is not None:
            self.cleanup()
            raise self.error

    def cleanup(self) -> None:
        for si, fd in list(self.out_fd.items()):
            with contextlib.suppress(OSError):
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp_path(si))
        self.out_fd.clear()


def copy_side_files(inp: str, out: str, plan: Plan) -> list[str]:
    """Copy every non-weight file (tokenizer, generation_config, *.py, ...); rewrite config.json."""
    skip = {o.name for o in plan.out} | {INDEX_NAME, CONFIG_NAME}
    copied = []
    for root, dirs, files in os.walk(inp):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(root, inp)
        for fname in sorted(files):
            relname = os.path.normpath(os.path.join(rel, fname))
            if fname.startswith(".") or relname in skip or (rel == "." and fname.endswith(".safetensors")):
                continue
            src, dst = os.path.join(root, fname), os.path.join(out, relname)
            st = os.stat(src)
            try:
                dt = os.stat(dst)
                if dt.st_size == st.st_size and int(dt.st_mtime) == int(st.st_mtime):
                    continue
            except FileNotFoundError:
                pass
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(src, dst)
            copied.append(relname)
    cfg = os.path.join(inp, CONFIG_NAME)
    if os.path.isfile(cfg):
        with open(cfg, "rb") as f:
            raw = f.read()
        conf = json.loads(raw)
        conf.pop("quantization_config", None)
        new = (json.dumps(conf, indent=2) + "\n").encode()
        for path, data in (
            (os.path.join(out, CONFIG_NAME + CONFIG_ORIG_SUFFIX), raw),
            (os.path.join(out, CONFIG_NAME), new),
        ):
            if read_or_none(path) != data:
                write_atomic(path, data)
                copied.append(os.path.basename(path))
    return copied


def side_bytes(inp: str, plan: Plan) -> int:
    names = {o.name for o in plan.out} | {INDEX_NAME}
    total = 0
    for root, dirs, files in os.walk(inp):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for fname in files:
            if not fname.startswith(".") and fname not in names:
                total += os.path.getsize(os.path.join(root, fname))
    return total


def check_output_dir(inp: str, out: str) -> None:
    rin, rout = os.path.realpath(inp), os.path.realpath(out)
    if not os.path.isdir(rin):
        raise ConvertError(f"input {inp} is not a directory")
    if is_within(rout, rin):
        raise ConvertError(f"output {out} is the input directory or inside it ({rin}); choose another directory")
    try:
        os.makedirs(out, exist_ok=True)
        probe = os.path.join(out, f".fp8_to_bf16.probe.{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"x")
        os.unlink(probe)
    except OSError as exc:
        raise ConvertError(f"output {out} is not writable: {exc.strerror or exc}") from exc


def load_state(out: str, inp: str) -> dict:
    path = os.path.join(out, STATE_NAME)
    try:
        with open(path) as f:
            st = json.load(f)
        if st.get("format") == STATE_FORMAT and isinstance(st.get("shards"), dict):
            return st
    except (FileNotFoundError, ValueError):
        pass
    return {"format": STATE_FORMAT, "input": os.path.realpath(inp), "shards": {}, "complete": False}


def pick_device(torch, want: str) -> str:
    if want == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if want.startswith("cuda") and not torch.cuda.is_available():
        raise ConvertError(f"--device {want}: torch {torch.__version__} sees no CUDA device")
    return want


def convert(args) -> dict:
    inp, out = args.input, args.output
    check_output_dir(inp, out)
    item_bytes = max(1, args.item_mb) << 20
    open_shards, writeback = output_defaults(out)
    args.open_shards = args.open_shards or open_shards
    args.writeback = args.writeback or writeback
    plan = build_plan(inp, item_bytes)
    state = load_state(out, inp)

    # leftovers of a killed run never carry a final name; remove them
    for fname in os.listdir(out):
        if fname.startswith(".") and fname.endswith(".partial"):
            os.unlink(os.path.join(out, fname))

    fps = {i: fingerprint(sh, args.fingerprint == "full") for i, sh in enumerate(plan.shards)}
    todo = []
    for si, o in enumerate(plan.out):
        rec = state["shards"].get(o.name)
        final = os.path.join(out, o.name)
        ok = (
            rec is not None
            and rec.get("input_size") == plan.shards[o.src].size
            and rec.get("input_fingerprint") == fps[o.src]
            and rec.get("output_size") == o.size
            and os.path.isfile(final)
            and os.path.getsize(final) == o.size
        )
        if not ok:
            state["shards"].pop(o.name, None)
            todo.append(si)
    skipped = len(plan.out) - len(todo)

    need = sum(plan.out[si].size for si in todo) + side_bytes(inp, plan)
    need -= sum(
        os.path.getsize(os.path.join(out, plan.out[si].name))
        for si in todo
        if os.path.isfile(os.path.join(out, plan.out[si].name))
    )
    free = shutil.disk_usage(out).free
    if need > free:
        raise ConvertError(f"not enough free space in {out}: {gb(need)} needed, {gb(free)} free")

    in_bytes = sum(plan.shards[plan.out[si].src].size for si in todo)
    log(
        f"fp8_to_bf16: {len(plan.out)} shards in {inp}; {len(todo)} to convert ({gb(in_bytes)}), "
        f"{skipped} already done; output {out}"
    )
    bg = Background([plan.shards[plan.out[si].src].path for si in todo]) if todo else None
    side = copy_side_files(inp, out, plan)
    state["complete"] = False
    write_atomic(os.path.join(out, STATE_NAME), json.dumps(state, indent=1).encode())

    t0 = time.perf_counter()
    device = "none"
    if todo:
        torch = bg.get_torch()
        device = pick_device(torch, args.device)
        cpus = len(os.sched_getaffinity(0))
        workers = args.workers or min(16, cpus)
        if device.startswith("cuda:"):
            torch.cuda.set_device(torch.device(device))
        else:
            torch.set_num_threads(1)  # parallel over items, one thread each
        biggest = max((it.n_in for si in todo for it in plan.out[si].items), default=1)
        engine = Engine(torch, device, biggest)
        log(
            f"fp8_to_bf16: device {device}, {workers} workers, items of {args.item_mb} MiB, "
            f"{args.open_shards} shard(s) at a time, writeback {args.writeback}"
        )
        Runner(plan, todo, args, engine, state, fps).run(workers)

    index = {
        "metadata": {**plan.index_metadata, "total_size": plan.total_size},
        "weight_map": {n: o.name for o in plan.out for n in sorted(o.tensor_names)},
    }
    index["weight_map"] = dict(sorted(index["weight_map"].items()))
    if plan.had_index or len(plan.out) > 1:
        data = (json.dumps(index, indent=2) + "\n").encode()
        ipath = os.path.join(out, INDEX_NAME)
        if read_or_none(ipath) != data:
            write_atomic(ipath, data)
    state["complete"] = True
    write_atomic(os.path.join(out, STATE_NAME), json.dumps(state, indent=1).encode())

    dt = time.perf_counter() - t0
    out_bytes = sum(plan.out[si].size for si in todo)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    rate = f"{in_bytes / dt / 1e9:.2f} GB/s in, {out_bytes / dt / 1e9:.2f} GB/s out" if todo and dt > 0 else "-"
    log(
        f"fp8_to_bf16: done: {len(todo)} converted, {skipped} skipped, {gb(in_bytes)} in, {gb(out_bytes)} out "
        f"in {dt:.1f} s ({rate}); peak RSS {rss:.2f} GiB"
    )
    result = {
        "converted": len(todo),
        "skipped": skipped,
        "device": device,
        "input_bytes": in_bytes,
        "output_bytes": out_bytes,
        "seconds": round(dt, 2),
        "peak_rss_bytes": int(rss * 2**30),
        "side_files": side,
        "total_size": plan.total_size,
    }
    log("RESULT " + json.dumps(result, sort_keys=True))
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="fp8_to_bf16.py",
        description="Convert a 128x128 block-scaled FP8 safetensors checkpoint (DeepSeek-V3/R1) to BF16, "
        "bit-identical to DeepSeek's fp8_cast_bf16.py, streaming, parallel and resumable.",
    )
    p.add_argument("--input", required=True, help="directory of the FP8 checkpoint")
    p.add_argument("--output", required=True, help="directory for the BF16 checkpoint (not inside --input)")
    p.add_argument("--device", default="auto", help="auto (CUDA if torch sees a GPU), cuda, cuda:N or cpu")
    p.add_argument(
        "--workers", type=int, default=0, help="threads reading, converting and writing (default: cores, at most 16)"
    )
    p.add_argument("--item-mb", type=int, default=16, help="input bytes per work item in MiB (default 16)")
    p.add_argument(
        "--open-shards",
        type=int,
        default=0,
        help="output shards written at once (default: 8 on tmpfs, 1 on disks); this many may be partial after a kill",
    )
    p.add_argument(
        "--fingerprint",
        choices=("sampled", "full"),
        default="sampled",
        help="how input shards are recognised on a re-run",
    )
    p.add_argument(
        "--writeback",
        choices=("early", "kernel"),
        default="",
        help="early: start writing each item to disk at once (default on disks); kernel: leave it to the "
        "page cache until fsync (default on tmpfs)",
    )
    p.add_argument("--no-fsync", action="store_true", help="rename shards without fsync (faster, not crash-safe)")
    p.add_argument(
        "--max-read-mbps",
        type=float,
        default=0.0,
        help="cap the read rate in MB/s (0: no cap), e.g. to spare a serving disk",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        convert(args)
    except ConvertError as exc:
        print(f"fp8_to_bf16: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except OSError as exc:
        print(f"fp8_to_bf16: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("fp8_to_bf16: interrupted; completed shards are kept, a re-run resumes", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(main())
