"""playbooks/convert.yml + role fp8_to_bf16 on this machine (local connection, the real converter
in this Python, which has torch): converts into the directory the node spec serves, is idempotent,
does nothing when conversion is off, and refuses bad paths before touching the host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ansible_collections.inferops.cluster.tests.integration.playbook_run import (
    ANSIBLE_PLAYBOOK,
    ansible_playbook,
    recap,
)

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def model(tmp_path):
    src = tmp_path / "models" / "DeepSeek-tiny"
    src.mkdir(parents=True)
    gen = torch.Generator().manual_seed(5)
    w = (torch.randn(200, 130, generator=gen) * 2).to(torch.float8_e4m3fn)
    save_file(
        {
            "w.weight": w,
            "w.weight_scale_inv": torch.rand(2, 2, generator=gen),
            "norm.weight": torch.ones(8, dtype=torch.bfloat16),
        },
        str(src / "model-00001-of-00001.safetensors"),
        metadata={"format": "pt"},
    )
    weight_map = dict.fromkeys(["w.weight", "w.weight_scale_inv", "norm.weight"], "model-00001-of-00001.safetensors")
    (src / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (src / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "fp8"}, "x": 1}))
    return src


def write_inventory(path: Path, model: Path, **extra) -> None:
    """One local node serving MODEL; no key: the API open on purpose."""
    host = {
        "ansible_connection": "local",
        "ansible_host": "127.0.0.1",
        "ansible_python_interpreter": sys.executable,
        "inferops_model_path": str(model),
        "inferops_api_open": True,
        **extra,
    }
    path.write_text(json.dumps({"inferops_nodes": {"hosts": {"node1": host}}}))


def play(tmp_path: Path, model: Path, convert: bool, **extra) -> tuple[subprocess.CompletedProcess, dict]:
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.fail(f"no ansible-playbook beside {sys.executable}: run the tests with the venv (make unit)")
    seen = tmp_path / "seen.txt"
    wrapper = tmp_path / "site.yml"
    wrapper.write_text(
        f"""---
- name: Conversion phase
  ansible.builtin.import_playbook: {ROOT}/playbooks/convert.yml

- name: Plan as the serving phase does
  ansible.builtin.import_playbook: {ROOT}/playbooks/plan_step.yml

- name: What the serving phase would see
  hosts: inferops_nodes
  gather_facts: false
  tasks:
    - name: Write the model directory the node spec serves
      ansible.builtin.copy:
        content: "{{{{ inferops_node.runtime.model_dir }}}}"
        dest: {seen}
        mode: "0644"
"""
    )
    inventory = tmp_path / "hosts.yml"
    write_inventory(inventory, model)
    evars = {
        "inferops_convert_fp8_to_bf16": convert,
        "inferops_device": "cpu",
        "inferops_runtime": "systemd",
        "fp8_to_bf16_python": sys.executable,
        "fp8_to_bf16_dir": str(tmp_path / "opt"),
        "fp8_to_bf16_poll": 1,
        "ansible_become": False,  # tests run as the owner of every path; no sudo here
        **extra,
    }
    res = ansible_playbook("-i", str(inventory), str(wrapper), "-e", json.dumps(evars), timeout=None)
    totals = dict(recap(res.stdout).get("node1", {}))
    totals["seen"] = seen.read_text() if seen.exists() else None
    return res, totals


def test_converts_switches_the_model_path_and_is_idempotent(tmp_path, model):
    out = Path(f"{model}-bf16")
    res, recap = play(tmp_path, model, True)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert recap["changed"] >= 3  # script, output directory, conversion (+ the seen file)
    assert recap["seen"] == str(out)
    assert "1 converted, 0 skipped" in res.stdout
    assert "quantization_config" not in json.loads((out / "config.json").read_text())
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert sorted(index["weight_map"]) == ["norm.weight", "w.weight"]

    res, recap = play(tmp_path, model, True)
    assert res.returncode == 0, res.stdout[-3000:]
    assert recap["changed"] == 0, res.stdout[-3000:]
    assert "0 converted, 1 skipped" in res.stdout

    # the FP8 copy deleted after the conversion: the complete BF16 copy is served, nothing converts
    model.rename(model.with_name("gone"))
    res, recap = play(tmp_path, model, True)
    assert res.returncode == 0, res.stdout[-3000:]
    assert recap["changed"] == 0 and recap["seen"] == str(out)
    assert "Convert FP8 to BF16" in res.stdout and "skipping: [node1]" in res.stdout

    # neither the FP8 copy nor a complete conversion: refused, naming the host and the variables
    (out / ".fp8_to_bf16.state.json").unlink()
    res, recap = play(tmp_path, model, True)
    assert res.returncode != 0 and recap["failed"] == 1
    assert "node1: fp8_to_bf16_input" in res.stdout and "no complete conversion" in res.stdout


def test_does_nothing_when_conversion_is_off(tmp_path, model):
    res, recap = play(tmp_path, model, False)
    assert res.returncode == 0, res.stdout[-3000:]
    assert recap["seen"] == str(model)
    assert not Path(f"{model}-bf16").exists()
    assert not (tmp_path / "opt").exists()


def test_output_inside_input_fails_before_changing_the_host(tmp_path, model):
    res, recap = play(tmp_path, model, True, fp8_to_bf16_output=str(model / "bf16"))
    assert res.returncode != 0
    assert recap["failed"] == 1 and recap["changed"] == 0
    assert "node1: bad fp8_to_bf16 settings" in res.stdout
    assert "fp8_to_bf16_output" in res.stdout
    assert not (model / "bf16").exists() and not (tmp_path / "opt").exists()


def test_docker_runtime_runs_the_converter_in_the_engine_image(tmp_path, model):
    """The argv the role builds for runtime docker (rendered by the role itself, not run here)."""
    if not ANSIBLE_PLAYBOOK.exists():
        pytest.fail(f"no ansible-playbook beside {sys.executable}: run the tests with the venv (make unit)")
    argv_file = tmp_path / "argv.json"
    wrapper = tmp_path / "render.yml"
    inventory = tmp_path / "hosts.yml"
    write_inventory(
        inventory,
        model,
        inferops_convert_fp8_to_bf16=True,
        inferops_runtime="docker",
        inferops_engine_image="vllm/vllm-openai:v0.11.0",
        inferops_gpus_per_node=1,
    )
    wrapper.write_text(
        f"""---
- name: Plan the node
  ansible.builtin.import_playbook: {ROOT}/playbooks/plan_step.yml

- name: Render the docker command
  hosts: inferops_nodes
  gather_facts: false
  tasks:
    - name: Preflight of the role
      ansible.builtin.include_role:
        name: inferops.cluster.fp8_to_bf16
        tasks_from: preflight.yml
        public: true
    - name: Write the command
      ansible.builtin.copy:
        content: "{{{{ _fp8_to_bf16_command | to_json }}}}"
        dest: {argv_file}
        mode: "0644"
"""
    )
    res = ansible_playbook("-i", str(inventory), str(wrapper), timeout=None)
    assert res.returncode == 0, res.stdout[-3000:]
    argv = json.loads(argv_file.read_text())
    out = f"{model}-bf16"
    image = argv.index("vllm/vllm-openai:v0.11.0")
    assert argv[:2] == ["docker", "run"] and "--rm" in argv
    assert argv[argv.index("--gpus") + 1] == "all"
    vols = [argv[i + 1] for i, a in enumerate(argv) if a == "--volume"]
    assert f"{model}:{model}:ro" in vols and f"{out}:{out}" in vols
    assert "/opt/inferops/fp8-to-bf16/fp8_to_bf16.py:/inferops/fp8_to_bf16.py:ro" in vols
    assert argv[argv.index("--entrypoint") + 1] == "python3"
    assert argv[image + 1 :] == [
        "/inferops/fp8_to_bf16.py",
        "--input",
        str(model),
        "--output",
        out,
        "--device",
        "auto",
        "--workers",
        "0",
    ]
