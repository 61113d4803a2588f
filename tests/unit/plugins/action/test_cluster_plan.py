"""The cluster_plan action's helpers: saved facts (plan_facts_dir) and the API key digest."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from ansible.errors import AnsibleActionFail

from ansible_collections.inferops.cluster.plugins.action.cluster_plan import (
    api_key_digest,
    read_saved_facts,
    secret_problems,
)
from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError

RDMA = {"present": True, "devices": [], "route": {"dst": "10.0.0.1", "ifname": "xgbe0"}}
GPU = {"present": True, "count": 8}


@pytest.mark.parametrize(
    "content",
    [
        {"inferops_gpu": GPU, "inferops_rdma": RDMA, "ansible_hostname": "n1"},
        {"ansible_facts": {"inferops_gpu": GPU, "inferops_rdma": RDMA}, "changed": False},
    ],
    ids=["facts", "module-result"],
)
def test_saved_facts_keep_only_what_the_plan_reads(content, tmp_path: Path) -> None:
    (tmp_path / "n1.json").write_text(json.dumps(content))
    assert read_saved_facts(str(tmp_path), "n1") == {"inferops_gpu": GPU, "inferops_rdma": RDMA}


def test_missing_saved_facts_name_host_and_file(tmp_path: Path) -> None:
    with pytest.raises(AnsibleActionFail, match=r"no saved facts for host 'n2' \(.*/n2\.json\)"):
        read_saved_facts(str(tmp_path), "n2")


def test_unreadable_saved_facts(tmp_path: Path) -> None:
    (tmp_path / "n1.json").write_text("[1, 2]")
    with pytest.raises(AnsibleActionFail, match="must hold a JSON object"):
        read_saved_facts(str(tmp_path), "n1")
    (tmp_path / "n1.json").write_text("{not json")
    with pytest.raises(AnsibleActionFail, match="cannot read"):
        read_saved_facts(str(tmp_path), "n1")


def test_api_key_digest() -> None:
    assert api_key_digest("s3cret") == hashlib.sha256(b"s3cret").hexdigest()
    assert api_key_digest("") == api_key_digest(None) == ""


def test_a_key_no_http_header_can_carry_is_refused_naming_host_and_variable() -> None:
    secret_problems("n1", {"inferops_api_key": 'k"e\\y $x %y z', "inferops_hf_token": "hf_ok"})  # carried as is
    with pytest.raises(PlanError) as err:
        secret_problems("n1", {"inferops_api_key": "line1\nline2"})
    assert (err.value.host, err.value.variable) == ("n1", "inferops_api_key")
    assert "a newline" in str(err.value) and "line1" not in str(err.value)
    with pytest.raises(PlanError, match="inferops_hf_token: contains a character outside ASCII"):
        secret_problems("n2", {"inferops_hf_token": "hf_é"})
