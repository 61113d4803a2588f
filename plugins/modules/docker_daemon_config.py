#!/usr/bin/python
# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: docker_daemon_config
short_description: Merge settings into Docker's daemon.json, keeping every other key
description:
  - Reads the daemon configuration file (normally C(/etc/docker/daemon.json)), merges
    O(settings) into it and writes it back only when the result differs as data.
  - Keys not named in O(settings) survive (for example C(runtimes.nvidia) written by
    C(nvidia-ctk runtime configure), or an operator's own keys). Nested objects are merged,
    other values replaced; a V(null) value removes the key.
  - Fails, changing nothing, when the existing file is not a JSON object.
version_added: 0.1.0
author:
  - inferops maintainers (@inferops)
options:
  path:
    description: The daemon configuration file.
    type: path
    default: /etc/docker/daemon.json
  settings:
    description: Keys to set (nested objects merge; V(null) removes a key).
    type: dict
    required: true
  mode:
    description: File mode of the file when written.
    type: str
    default: "0644"
  backup:
    description: Keep a timestamped copy of the previous file when it changes.
    type: bool
    default: false
extends_documentation_fragment:
  - inferops.cluster.attributes
  - inferops.cluster.attributes.files
attributes:
  diff_mode:
    details: Shows the file before and after as sorted JSON.
"""

EXAMPLES = r"""
- name: Registry mirrors and data root, keeping the toolkit's runtimes
  inferops.cluster.docker_daemon_config:
    settings:
      data-root: /mnt/docker
      registry-mirrors:
        - https://mirror.example.com
      log-driver: json-file
      log-opts:
        max-size: 100m
        max-file: "3"
"""

RETURN = r"""
config:
  description: The configuration after the merge.
  returned: always
  type: dict
  sample: {"data-root": "/mnt/docker", "runtimes": {"nvidia": {"path": "nvidia-container-runtime"}}}
backup_file:
  description: The copy of the previous file, when O(backup) made one.
  returned: when changed and backup is true
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.inferops.cluster.plugins.module_utils._docker_daemon import (
    DaemonJsonError,
    plan_update,
    render_daemon_json,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "default": "/etc/docker/daemon.json"},
            "settings": {"type": "dict", "required": True},
            "mode": {"type": "str", "default": "0644"},
            "backup": {"type": "bool", "default": False},
        },
        supports_check_mode=True,
    )
    path = module.params["path"]
    current = None
    if os.path.exists(path):
        with open(path, encoding="utf-8") as handle:
            current = handle.read()
    try:
        changed, before, after, text = plan_update(current, module.params["settings"])
    except DaemonJsonError as exc:
        module.fail_json(msg=f"{path}: {exc}")
    result = {"changed": changed, "config": after}
    if module._diff:
        result["diff"] = {
            "before": render_daemon_json(before) if current is not None else "",
            "after": text,
            "before_header": path,
            "after_header": path,
        }
    if changed and not module.check_mode:
        if module.params["backup"] and current is not None:
            result["backup_file"] = module.backup_local(path)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.inferops-tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
        module.atomic_move(tmp, path)
    if not module.check_mode and os.path.exists(path):
        file_args = module.load_file_common_arguments({"path": path, "mode": module.params["mode"]})
        result["changed"] = module.set_fs_attributes_if_different(file_args, result["changed"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
