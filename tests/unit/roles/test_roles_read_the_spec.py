"""Roles render the node spec: none reads a bare inventory variable that the plan reads or the spec holds.

The forbidden names are derived, not listed: the variables the plan reads (PLAN_VARIABLES) and those the
node spec's runtime reads (SPEC_VARIABLES). What a role needs of them it takes from ``inferops_node``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ansible_collections.inferops.cluster.plugins.module_utils import _plan
from ansible_collections.inferops.cluster.plugins.module_utils._spec import SPEC_VARIABLES

try:
    PLAN_VARIABLES = _plan.PLAN_VARIABLES
except AttributeError:  # not yet moved out of the action plugin on this branch
    from ansible_collections.inferops.cluster.plugins.action.cluster_plan import PLAN_VARIABLES

ROLES_DIR = Path(__file__).resolve().parents[3] / "roles"

# Cluster-wide settings roles may still read bare: one router for the whole cluster (firewall, router and
# open_webui run on hosts that may hold no node spec).
# inferops_hf_token: a secret; the plan reads only whether it is set, roles write its value (download client,
# the engine's 0600 secrets file) as they do inferops_api_key's.
# inferops_tls_cert / inferops_tls_key / inferops_tls_ca: PEM texts (the key a secret); the plan reads only whether
# each is set and names the files (inferops_node.tls), the roles write the texts into them.
ALLOWED = frozenset(
    {
        "inferops_router_host",
        "inferops_router_port",
        "inferops_hf_token",
        "inferops_tls_cert",
        "inferops_tls_key",
        "inferops_tls_ca",
    }
)
# Roles that write inventories rather than read them (the lab renders inventories/lab).
EXEMPT_ROLES = frozenset({"lab"})

FORBIDDEN = frozenset(name for name in (*PLAN_VARIABLES, *SPEC_VARIABLES) if name not in ALLOWED)
# Keys whose whole value is a Jinja expression without braces.
BARE_KEYS = frozenset({"when", "that", "failed_when", "changed_when", "until", "loop"})
JINJA = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}", re.S)
# A variable read: the name not preceded by a quote, dot or word character (not a fact key such as
# ansible_facts['inferops_rdma'], not an attribute such as inferops_node.model_path).
NAME = re.compile(r"(?<![\w.'\"])(inferops_\w+|inference_server_\w+)\b")


def _expressions(value, key=None):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _expressions(v, k)
    elif isinstance(value, list):
        for item in value:
            yield from _expressions(item, key)
    elif isinstance(value, str):
        if key in BARE_KEYS:
            yield value
        yield from ("".join(groups) for groups in JINJA.findall(value))


def _reads(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yml", ".yaml"):
        expressions = list(_expressions(yaml.safe_load(text)))
    else:
        expressions = ["".join(groups) for groups in JINJA.findall(text)]
    return {name for expr in expressions for name in NAME.findall(expr)}


ROLE_FILES = sorted(
    p
    for p in ROLES_DIR.glob("*/**/*")
    if p.is_file()
    and p.suffix in (".yml", ".yaml", ".j2")
    and p.relative_to(ROLES_DIR).parts[0] not in EXEMPT_ROLES
    and p.relative_to(ROLES_DIR).parts[1] in ("defaults", "vars", "tasks", "handlers", "templates", "meta")
)


def test_the_forbidden_list_is_derived_from_the_plan_and_the_spec():
    assert {"inferops_model_path", "inferops_engine", "inferops_address", "inferops_nccl_env"} <= FORBIDDEN
    assert {"inferops_runtime", "inferops_engine_image", "inference_server_venv", "inference_server_unit"} <= FORBIDDEN
    assert not FORBIDDEN & ALLOWED


@pytest.mark.parametrize("path", ROLE_FILES, ids=lambda p: str(p.relative_to(ROLES_DIR)))
def test_role_reads_no_variable_the_plan_or_spec_holds(path):
    bad = sorted(_reads(path) & FORBIDDEN)
    assert bad == [], f"{path.relative_to(ROLES_DIR)} reads {bad}: take them from inferops_node (the node spec)"


def test_the_scanner_sees_bare_reads():
    sample = {"when": "inferops_runtime == 'docker'", "x": "{{ inferops_node.runtime.kind ~ inferops_model_path }}"}
    found = {n for e in _expressions(sample) for n in NAME.findall(e)}
    assert found == {"inferops_node", "inferops_runtime", "inferops_model_path"}
    assert NAME.findall("ansible_facts['inferops_rdma'] ~ inferops_node.inferops_model_path") == ["inferops_node"]
