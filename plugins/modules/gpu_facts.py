#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Gather NVIDIA GPU facts from nvidia-smi
description:
  - Runs C(nvidia-smi --query-gpu=... --format=csv,noheader,nounits), C(nvidia-smi -q),
    C(nvidia-smi topo -m) and C(nvidia-smi nvlink -s) (argv lists, read only) and reads the PCI
    bus in sysfs for NVSwitch bridges.
  - Sets the fact C(inferops_gpu) with the driver and CUDA versions, GPU models, count, memory,
    persistence mode, MIG mode, NVLink and whether an NVSwitch fabric is present (then the
    fabric manager is needed).
  - On a node without C(nvidia-smi), or where it reports no device, the fact is a clear
    C(present=false) result with the reason; the module does not fail.
version_added: 0.1.0
author:
  - inferops maintainers (@inferops)
options:
  nvidia_smi:
    description:
      - Path or name of the C(nvidia-smi) executable. A bare name is looked up in E(PATH)
        and the usual driver locations.
    type: str
    default: nvidia-smi
  pci_root:
    description:
      - Directory of PCI devices scanned for NVSwitch bridges (vendor C(0x10de), class C(0x0680xx)).
    type: path
    default: /sys/bus/pci/devices
  expected_driver_version:
    description:
      - When set, the result says in RV(driver_matches) whether the running driver equals this
        version exactly. The module never fails on a mismatch; roles decide.
    type: str
extends_documentation_fragment:
  - inferops.cluster.attributes
  - inferops.cluster.attributes.read_only
"""

EXAMPLES = r"""
- name: Gather GPU facts
  inferops.cluster.gpu_facts:
    expected_driver_version: "580.159.04"
  register: __gpu

- name: Show the GPUs
  ansible.builtin.debug:
    msg: "{{ ansible_facts['inferops_gpu']['count'] }} x {{ ansible_facts['inferops_gpu']['models'] }}"
"""

RETURN = r"""
ansible_facts:
  description: Facts set on the host.
  returned: always
  type: dict
  contains:
    inferops_gpu:
      description:
        - C(present), C(reason) (why not present), C(driver_version), C(cuda_version), C(count),
          C(gpus) (index, name, uuid, pci_bus_id, driver_version, memory_total_mib,
          persistence_mode, mig_mode, compute_cap), C(models), C(memory_total_mib),
          C(persistence_mode) (all GPUs), C(mig_enabled) (any GPU), C(nvswitch)
          (present, evidence, fabric_states), C(nvlink_active_links), C(topology).
      type: dict
      returned: always
      sample:
        present: true
        driver_version: "580.159.04"
        cuda_version: "13.0"
        count: 1
        models: ["NVIDIA H100 80GB HBM3"]
driver_matches:
  description: Whether the running driver equals O(expected_driver_version) (null when that is not set).
  returned: always
  type: bool
  sample: true
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.cluster.plugins.module_utils._gpu import (
    QUERY_FIELDS,
    build_facts,
    driver_matches,
    no_gpu,
)

_DRIVER_DIRS = ["/usr/bin", "/usr/local/nvidia/bin", "/usr/local/bin", "/opt/nvidia/bin"]


def nvswitch_pci_devices(pci_root: str) -> list[str]:
    found = []
    try:
        entries = sorted(os.listdir(pci_root))
    except OSError:
        return found
    for entry in entries:
        try:
            with open(os.path.join(pci_root, entry, "vendor"), encoding="ascii") as handle:
                vendor = handle.read().strip().lower()
            with open(os.path.join(pci_root, entry, "class"), encoding="ascii") as handle:
                pci_class = handle.read().strip().lower()
        except OSError:
            continue
        if vendor == "0x10de" and pci_class.startswith("0x0680"):
            found.append(entry)
    return found


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "nvidia_smi": {"type": "str", "default": "nvidia-smi"},
            "pci_root": {"type": "path", "default": "/sys/bus/pci/devices"},
            "expected_driver_version": {"type": "str"},
        },
        supports_check_mode=True,
    )
    smi = module.params["nvidia_smi"]
    if os.sep not in smi:
        smi = module.get_bin_path(smi, required=False, opt_dirs=_DRIVER_DIRS)
    elif not os.access(smi, os.X_OK):
        smi = None
    pin = module.params["expected_driver_version"]

    if not smi:
        facts = no_gpu("nvidia-smi not found: no NVIDIA driver installed (or no NVIDIA GPU)")
    else:
        query = [smi, f"--query-gpu={','.join(QUERY_FIELDS)}", "--format=csv,noheader,nounits"]
        rc, out, err = module.run_command(query)
        if rc != 0:
            text = (out + err).strip()
            facts = no_gpu(f"nvidia-smi failed (rc={rc}): {text.splitlines()[-1] if text else 'no output'}")
        else:
            smi_q = module.run_command([smi, "-q"])[1]
            topo = module.run_command([smi, "topo", "-m"])[1]
            nvlink = module.run_command([smi, "nvlink", "-s"])[1]
            facts = build_facts(out, smi_q, topo, nvlink, nvswitch_pci_devices(module.params["pci_root"]))
    facts["nvidia_smi"] = smi
    module.exit_json(
        changed=False,
        ansible_facts={"inferops_gpu": facts},
        driver_matches=driver_matches(facts, pin) if pin else None,
    )


if __name__ == "__main__":
    main()
