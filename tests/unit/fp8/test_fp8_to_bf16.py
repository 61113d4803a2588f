"""roles/fp8_to_bf16/files/fp8_to_bf16.py on small synthetic checkpoints (CPU).

The expected BF16 values come from an independent dequantisation written here: float8 codes
decoded from the formats' definitions in plain Python, the product formed exactly in float64
(a 4-bit by 24-bit significand fits) and rounded once to float32 (= an IEEE fp32 multiply),
then rounded to bf16 with integer round-to-nearest-even on the bit pattern.
"""

from __future__ import annotations

import importlib.util
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "roles" / "fp8_to_bf16" / "files" / "fp8_to_bf16.py"
SHARDS = [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
SIDE_FILES = {
    "tokenizer.json": '{"model": {"type": "BPE"}}\n',
    "tokenizer_config.json": '{"bos_token": "<s>"}\n',
    "generation_config.json": '{"temperature": 0.6}\n',
    "modeling_deepseek.py": "# remote code\n",
}
CONFIG = {
    "architectures": ["DeepseekV3ForCausalLM"],
    "hidden_size": 7168,
    "quantization_config": {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [128, 128]},
}


def load_converter():
    spec = importlib.util.spec_from_file_location("fp8_to_bf16", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


conv = load_converter()


# ------------------------------------------------------------------ independent reference


def decode_fp8(code: int, fmt: str) -> float:
    sign = -1.0 if code & 0x80 else 1.0
    if fmt == "e4m3":
        exp, man, bias, mbits = (code >> 3) & 0xF, code & 0x7, 7, 3
        if exp == 15 and man == 7:
            return float("nan")
    else:
        exp, man, bias, mbits = (code >> 2) & 0x1F, code & 0x3, 15, 2
        if exp == 31:
            return sign * float("inf") if man == 0 else float("nan")
    if exp == 0:
        return sign * man / 2**mbits * 2.0 ** (1 - bias)
    return sign * (1 + man / 2**mbits) * 2.0 ** (exp - bias)


TABLES = {fmt: torch.tensor([decode_fp8(c, fmt) for c in range(256)], dtype=torch.float64) for fmt in ("e4m3", "e5m2")}
FMT = {torch.float8_e4m3fn: "e4m3", torch.float8_e5m2: "e5m2"}


def reference_bf16_bits(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """bf16 bit patterns (int64) of bf16(fp32(w) * s) per 128x128 block."""
    rows, cols = w.shape
    x = TABLES[FMT[w.dtype]][w.view(torch.uint8).long()]
    srow = torch.arange(rows) // 128
    scol = torch.arange(cols) // 128
    s64 = s.double()[srow][:, scol]
    p32 = (x * s64).to(torch.float32)  # exact product, rounded once to fp32
    bits = p32.view(torch.int32).long() & 0xFFFFFFFF
    return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) & 0xFFFF


def bf16_bits(t: torch.Tensor) -> torch.Tensor:
    return t.view(torch.int16).long() & 0xFFFF


# ------------------------------------------------------------------ synthetic checkpoints


def fp8_codes(shape, dtype, gen) -> torch.Tensor:
    codes = torch.randint(0, 256, shape, generator=gen, dtype=torch.int32).to(torch.uint8)
    nan = [0x7F, 0xFF] if dtype == torch.float8_e4m3fn else [0x7D, 0x7E, 0x7F, 0xFD, 0xFE, 0xFF]
    for c in nan:
        codes[codes == c] = 0x01
    if dtype == torch.float8_e5m2:  # keep +-inf and -0 in the data
        codes.view(-1)[:3] = torch.tensor([0x7C, 0xFC, 0x80], dtype=torch.uint8)
    return codes.view(dtype)


def scales(shape, gen) -> torch.Tensor:
    rows, cols = -(-shape[0] // 128), -(-shape[1] // 128)
    return torch.rand((rows, cols), generator=gen) * 3e-2 + 1e-4


def make_checkpoint(path: Path, seed: int = 0, drop: str | None = None) -> dict[str, torch.Tensor]:
    """Three shards with every edge case; returns all tensors by name."""
    gen = torch.Generator().manual_seed(seed)
    f8, f5 = torch.float8_e4m3fn, torch.float8_e5m2
    w_a = fp8_codes((300, 200), f8, gen)  # dims not multiples of 128; scale in the next shard
    w_b = fp8_codes((130, 257), f5, gen)  # e5m2
    w_g = fp8_codes((256, 384), f8, gen)  # exact multiples
    w_i = fp8_codes((2500, 600), f8, gen)  # several work items with --item-mb 1, ragged last band
    shards = [
        {
            "model.layers.0.self_attn.q_a_proj.weight": w_a,
            "model.layers.0.mlp.e5m2.weight": w_b,
            "model.layers.0.mlp.e5m2.weight_scale_inv": scales(w_b.shape, gen),
            "model.layers.0.int8_table": torch.randint(-128, 127, (17, 5), generator=gen, dtype=torch.int8),
            "model.layers.0.mask": torch.rand(33, generator=gen) > 0.5,
            "model.layers.0.mlp.gate.e_score_correction_bias": torch.randn(256, generator=gen),
            "model.layers.0.input_layernorm.weight": torch.randn(64, generator=gen).to(torch.bfloat16),
        },
        {
            "model.layers.0.self_attn.q_a_proj.weight_scale_inv": scales(w_a.shape, gen),
            "model.layers.1.mlp.down_proj.weight": w_g,
            "model.layers.1.mlp.down_proj.weight_scale_inv": scales(w_g.shape, gen),
        },
        {
            "model.layers.2.mlp.up_proj.weight": w_i,
            "model.layers.2.mlp.up_proj.weight_scale_inv": scales(w_i.shape, gen),
            "lm_head.weight": torch.randn(100, 64, generator=gen).to(torch.bfloat16),
        },
    ]
    if drop:
        for sd in shards:
            sd.pop(drop, None)
    path.mkdir(parents=True, exist_ok=True)
    weight_map = {}
    for name, sd in zip(SHARDS, shards, strict=True):
        save_file(sd, str(path / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(sd, name))
    (path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 1}, "weight_map": weight_map})
    )
    (path / "config.json").write_text(json.dumps(CONFIG, indent=1))
    for name, text in SIDE_FILES.items():
        (path / name).write_text(text)
    return {k: v for sd in shards for k, v in sd.items()}


def verify_output(inp: Path, out: Path, tensors: dict[str, torch.Tensor]) -> None:
    index = json.loads((out / "model.safetensors.index.json").read_text())
    found: dict[str, str] = {}
    total = 0
    for name in SHARDS:
        with safe_open(str(out / name), "pt") as f:
            assert f.metadata() == {"format": "pt"}
            for k in f.keys():  # noqa: SIM118 - safe_open has no __iter__
                t = f.get_tensor(k)
                found[k] = name
                total += t.numel() * t.element_size()
                src = tensors[k]
                if src.dtype in FMT:
                    assert t.dtype == torch.bfloat16, k
                    assert torch.equal(bf16_bits(t), reference_bf16_bits(src, tensors[k + "_scale_inv"])), k
                else:
                    assert t.dtype == src.dtype, k
                    assert torch.equal(t.view(-1).view(torch.uint8), src.view(-1).view(torch.uint8)), k
    expected = {k for k in tensors if not k.endswith("_scale_inv")}
    assert set(found) == expected
    assert index["weight_map"] == dict(sorted(found.items()))
    assert index["metadata"]["total_size"] == total
    assert not any(k.endswith("_scale_inv") for k in index["weight_map"])
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["architectures"] == CONFIG["architectures"]
    assert (out / "config.json.fp8-orig").read_bytes() == (inp / "config.json").read_bytes()
    for name in SIDE_FILES:
        assert (out / name).read_bytes() == (inp / name).read_bytes()
    assert not [p.name for p in out.iterdir() if p.name.endswith(".partial")]
    assert json.loads((out / conv.STATE_NAME).read_text())["complete"] is True


def run_inproc(capsys, *args: str) -> tuple[int, str, str]:
    rc = conv.main([*args, "--device", "cpu", "--workers", "2"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def result_of(stdout: str) -> dict:
    return json.loads(next(line for line in stdout.splitlines() if line.startswith("RESULT "))[7:])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("fp8") / "in"
    return path, make_checkpoint(path)


# ------------------------------------------------------------------ tests


def test_converts_bit_exactly_with_a_loadable_layout_and_skips_on_rerun(ckpt, tmp_path, capsys):
    inp, tensors = ckpt
    out = tmp_path / "out"
    rc, stdout, stderr = run_inproc(capsys, "--input", str(inp), "--output", str(out), "--item-mb", "1")
    assert rc == 0, stderr
    assert result_of(stdout)["converted"] == 3
    assert "[3/3]" in stdout and "GB/s" in stdout
    verify_output(inp, out, tensors)

    before = {n: os.stat(out / n).st_ino for n in SHARDS}
    rc, stdout, _err = run_inproc(capsys, "--input", str(inp), "--output", str(out))
    assert rc == 0
    assert (result_of(stdout)["converted"], result_of(stdout)["skipped"]) == (0, 3)
    assert {n: os.stat(out / n).st_ino for n in SHARDS} == before


@pytest.mark.parametrize("mode", ["early", "kernel"])
def test_writeback_modes_write_the_same_bits(ckpt, tmp_path, capsys, monkeypatch, mode):
    """early asks the kernel to start writing every item's bytes (each shard's data section
    exactly, nothing twice); kernel asks for nothing. Both give the reference bits."""
    inp, tensors = ckpt
    out = tmp_path / "out"
    hinted = []
    real_start = conv.Writeback.start

    def record(self, fd, off, n):
        if self.call is not None:
            hinted.append((os.readlink(f"/proc/self/fd/{fd}"), off, n))
        real_start(self, fd, off, n)

    monkeypatch.setattr(conv.Writeback, "start", record)
    args = ("--input", str(inp), "--output", str(out), "--item-mb", "1", "--writeback", mode, "--open-shards", "2")
    rc, _stdout, stderr = run_inproc(capsys, *args)
    assert rc == 0, stderr
    verify_output(inp, out, tensors)
    if mode == "kernel":
        assert hinted == []
        return
    for name in SHARDS:
        data = (out / name).read_bytes()
        start = 8 + int.from_bytes(data[:8], "little")
        ranges = sorted((off, n) for path, off, n in hinted if os.path.basename(path) == f".{name}.partial")
        covered = start
        for off, n in ranges:
            assert off == covered, (name, off, covered)
            covered += n
        assert covered == len(data), name


@pytest.mark.parametrize("use_table", [True, False], ids=["cpu-table", "elementwise-as-on-cuda"])
def test_dequant_paths_match_the_reference(use_table):
    """Both conversion branches (the CPU table and the elementwise one the CUDA path runs), with
    128-row steps over a ragged tensor, give the reference bits."""
    gen = torch.Generator().manual_seed(3)
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        w = fp8_codes((389, 300), dtype, gen)
        s = scales(w.shape, gen)
        eng = conv.Engine(torch, "cpu", w.numel())
        it = conv.Item(0, "fp8", 0, 0, w.numel(), 0, 2 * w.numel(), fp8_dtype=conv.FP8_DTYPES[FMT[dtype] == "e5m2"])
        it.rows, it.cols = w.shape
        out = torch.empty(2 * w.numel(), dtype=torch.uint8)
        scratch = torch.empty(128 * 300)
        idx = torch.empty(128 * 300, dtype=torch.int32) if use_table else None
        eng.dequant(w.view(torch.uint8).reshape(-1), it, s, out, scratch, 128, idx)
        assert torch.equal(bf16_bits(out.view(torch.bfloat16).view(389, 300)), reference_bf16_bits(w, s))


def test_missing_scale_stops_before_writing(tmp_path, capsys):
    inp = tmp_path / "in"
    make_checkpoint(inp, drop="model.layers.0.self_attn.q_a_proj.weight_scale_inv")
    out = tmp_path / "out"
    rc, _out, stderr = run_inproc(capsys, "--input", str(inp), "--output", str(out))
    assert rc == 1
    assert "model.layers.0.self_attn.q_a_proj.weight" in stderr
    assert "model-00001-of-00003.safetensors" in stderr
    assert not list(out.glob("*.safetensors")) and not list(out.glob(".*.partial"))


def test_refuses_to_write_into_its_input(ckpt, capsys):
    inp = ckpt[0]
    listing = sorted(p.name for p in inp.iterdir())
    for target in (inp, inp / "bf16"):
        rc, _out, stderr = run_inproc(capsys, "--input", str(inp), "--output", str(target))
        assert rc == 1
        assert "inside it" in stderr
    assert sorted(p.name for p in inp.iterdir()) == listing


def test_free_space_is_checked_first(ckpt, tmp_path, capsys, monkeypatch):
    inp = ckpt[0]
    out = tmp_path / "out"
    monkeypatch.setattr(conv.shutil, "disk_usage", lambda _p: shutil._ntuple_diskusage(10**9, 10**9 - 4096, 4096))
    rc, _out, stderr = run_inproc(capsys, "--input", str(inp), "--output", str(out))
    assert rc == 1
    assert "not enough free space" in stderr and "0.00 GB free" in stderr
    assert not list(out.glob("*.safetensors")) and not (out / "config.json").exists()


def test_changed_input_shard_is_converted_again(tmp_path, capsys):
    inp, out = tmp_path / "in", tmp_path / "out"
    make_checkpoint(inp, seed=1)
    assert run_inproc(capsys, "--input", str(inp), "--output", str(out))[0] == 0
    tensors = make_checkpoint(inp, seed=2)  # same names and shapes, new data
    rc, stdout, stderr = run_inproc(capsys, "--input", str(inp), "--output", str(out))
    assert rc == 0, stderr
    assert result_of(stdout)["converted"] == 3
    verify_output(inp, out, tensors)


def converter_cmd(inp: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(SCRIPT), "--input", str(inp), "--output", str(out), "--device", "cpu", *extra]


def test_resumes_after_sigkill_without_partial_shards(ckpt, tmp_path):
    inp, tensors = ckpt
    out = tmp_path / "out"
    cmd = converter_cmd(inp, out, "--workers", "1", "--max-read-mbps", "1.5", "--item-mb", "1")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    state = out / conv.STATE_NAME
    deadline = time.monotonic() + 60
    done: list[str] = []
    while time.monotonic() < deadline and proc.poll() is None:
        if state.exists():
            done = list(json.loads(state.read_text())["shards"])
            if done and list(out.glob(".*.safetensors.partial")):
                break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the converter finished before it could be killed"
    assert done and list(out.glob(".*.safetensors.partial"))
    finals = sorted(p.name for p in out.glob("*.safetensors"))
    assert finals == sorted(json.loads(state.read_text())["shards"])  # only completed shards carry a final name
    inode = {n: os.stat(out / n).st_ino for n in finals}

    res = subprocess.run(converter_cmd(inp, out), capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    r = result_of(res.stdout)
    assert r["skipped"] == len(finals) and r["converted"] == 3 - len(finals)
    assert {n: os.stat(out / n).st_ino for n in finals} == inode
    verify_output(inp, out, tensors)


def _limit_file_size():
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def test_full_output_fails_cleanly_and_resumes(ckpt, tmp_path):
    """RLIMIT_FSIZE makes writes past 1 MiB fail as they would on a full disk (EFBIG for ENOSPC)."""
    inp, tensors = ckpt
    out = tmp_path / "out"
    res = subprocess.run(
        converter_cmd(inp, out, "--workers", "1"),
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
        check=False,
    )
    assert res.returncode == 1
    assert res.stderr.startswith("fp8_to_bf16: error: ") and "File too large" in res.stderr
    assert "Traceback" not in res.stderr
    assert not list(out.glob(".*.partial"))
    for p in out.glob("*.safetensors"):  # whatever carries a final name is complete
        with safe_open(str(p), "pt") as f:
            assert list(f.keys())
    res = subprocess.run(converter_cmd(inp, out), capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    verify_output(inp, out, tensors)


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory that refuses new files: mode 0555, and for root (who ignores modes) the
    immutable attribute as well."""
    path = tmp_path / "ro"
    path.mkdir()
    path.chmod(0o555)
    immutable = False
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        immutable = True
    yield path
    if immutable:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    path.chmod(0o755)


def test_read_only_output_fails_cleanly(ckpt, read_only_dir):
    inp = ckpt[0]
    res = subprocess.run(converter_cmd(inp, read_only_dir), capture_output=True, text=True, check=False)
    assert res.returncode == 1
    assert res.stderr.startswith(f"fp8_to_bf16: error: output {read_only_dir} is not writable")
    assert "Traceback" not in res.stderr
    assert list(read_only_dir.iterdir()) == []
