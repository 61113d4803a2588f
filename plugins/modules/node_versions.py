#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: node_versions
short_description: Read the versions on a node that can change a communication check's result
description:
  - Reads the kernel release, the NVIDIA driver (C(/sys/module/nvidia/version)), the mlx5 module and
    MLNX_OFED (C(ofed_info -s)), and either the torch / NCCL distributions of a virtualenv or the id of
    a container image.
  - The comm_check role keys the stamp of a passed check on this, so that a check is measured again
    after any of them changed.
version_added: 0.2.0
author:
  - inferops maintainers (@inferops)
options:
  venv:
    description: Virtualenv whose torch and nvidia-nccl distributions are read.
    type: path
    default: ""
  image:
    description: Container image whose id is read (C(docker image inspect)).
    type: str
    default: ""
extends_documentation_fragment:
  - inferops.cluster.attributes
  - inferops.cluster.attributes.read_only
"""

EXAMPLES = r"""
- name: Read the versions the check depends on
  inferops.cluster.node_versions:
    venv: /opt/inferops/engine-venv
  register: __versions
"""

RETURN = r"""
versions:
  description: The versions read ('' where a component is absent).
  returned: always
  type: dict
  sample:
    kernel: 6.8.0-60-generic
    nvidia_driver: 580.159.04
    mlx5_core: 24.10-1.1.4
    ofed: MLNX_OFED_LINUX-24.10-1.1.4.0
    python_packages: [torch-2.8.0.dist-info, nvidia_nccl_cu12-2.27.3.dist-info]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.cluster.plugins.module_utils._node_versions import node_versions


def main() -> None:
    module = AnsibleModule(
        argument_spec={"venv": {"type": "path", "default": ""}, "image": {"type": "str", "default": ""}},
        supports_check_mode=True,
    )

    def run(argv: list[str]) -> str:
        if not module.get_bin_path(argv[0]):
            return ""
        rc, out, _err = module.run_command(argv)
        return out.strip() if rc == 0 else ""

    module.exit_json(changed=False, versions=node_versions(run, module.params["venv"], module.params["image"]))


if __name__ == "__main__":
    main()
