# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over the plan's Slurm section (plugins/module_utils/_slurm.py): the sbatch script, the partition fit."""

from __future__ import annotations

from typing import Any

from ansible.errors import AnsibleFilterError

from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError
from ansible_collections.inferops.cluster.plugins.module_utils._slurm import (
    check_partition_fit,
    job_comment,
    keep_or_replace,
    parse_partition,
    parse_sinfo_nodes,
    queue_state,
    render_sbatch,
)


def _slurm(plan: Any) -> dict[str, Any]:
    section = plan.get("slurm") if isinstance(plan, dict) else None
    if not section:
        raise AnsibleFilterError("the plan has no slurm section: set inferops_runtime: slurm on inferops_nodes")
    return section


def slurm_sbatch(plan: Any) -> str:
    """``inferops_plan | inferops.cluster.slurm_sbatch``: the job's sbatch script."""
    return render_sbatch(_slurm(plan))


def slurm_comment(plan: Any) -> str:
    return job_comment(_slurm(plan))


def slurm_partition_problem(plan: Any, scontrol: str, sinfo: str) -> str:
    """ "" when the job fits the partition, else the refusal naming the host and the variable."""
    slurm = _slurm(plan)
    head = plan["replicas"][slurm["replica"]]["head"]
    lines = [parse_partition(line) for line in scontrol.splitlines() if "PartitionName=" in line]
    wanted = slurm.get("partition")
    found = [p for p in lines if (p.get("PartitionName") == wanted if wanted else p.get("Default") == "YES")]
    if not found:
        what = f"partition {wanted!r} does not exist" if wanted else "the cluster has no default partition"
        return f"host {head}: inferops_slurm_partition: {what} (scontrol show partition)"
    try:
        check_partition_fit(slurm, head, found[0], parse_sinfo_nodes(sinfo))
    except PlanError as exc:
        return str(exc)
    return ""


def slurm_queue(plan: Any, squeue: str) -> dict[str, Any]:
    """``squeue -h -n NAME -o '%i|%T|%k|%N'`` -> {keep: job id or None, keep_state, cancel: [ids]}."""
    slurm = _slurm(plan)
    return keep_or_replace(queue_state(squeue, slurm["job_name"]), slurm)


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "slurm_sbatch": slurm_sbatch,
            "slurm_comment": slurm_comment,
            "slurm_partition_problem": slurm_partition_problem,
            "slurm_queue": slurm_queue,
        }
