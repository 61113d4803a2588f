"""Print the plan's validation table (bad input -> exact message) from the table-driven test fixture.

Usage: .venv/bin/python scripts/validation-table.py   (markdown on stdout; docs/plan.md "## Validation")
Each case of tests/unit/plugins/module_utils/fixtures/plan_invalid.yml is run through build_plan; the input
shown is the faulty host's value of the variable the message names (JSON, so control characters show);
"not set" where its absence or its default is at fault, or where other hosts' values are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".build" / "collections"
if not (COLLECTIONS / "ansible_collections" / "inferops" / "cluster").exists():
    sys.exit(f"{COLLECTIONS} does not hold the collection: run `make collection`")
sys.path.insert(0, str(COLLECTIONS))

from ansible_collections.inferops.cluster.plugins.module_utils._plan import PlanError, build_plan  # noqa: E402

FIXTURE = ROOT / "tests/unit/plugins/module_utils/fixtures/plan_invalid.yml"
ADDRESS_FROM = ("inferops_address", "ansible_host")


def cell(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def shown_input(hv: dict, variable: str) -> str:
    names = ADDRESS_FROM if variable == "inferops_address" else (variable,)
    shown = next((f"{n}: {json.dumps(hv[n], sort_keys=True)}" for n in names if n in hv), f"{variable}: not set")
    if variable.endswith("_port") and variable != "ansible_port" and "ansible_port" in hv:
        shown += f", ansible_port: {json.dumps(hv['ansible_port'])}"
    return shown


def main() -> None:
    rows = ["| case | bad input (on the host named) | message |", "| --- | --- | --- |"]
    for case in yaml.safe_load(FIXTURE.read_text()):
        hostvars = {h: {**case.get("common", {}), **(own or {})} for h, own in case["hosts"].items()}
        try:
            build_plan(hostvars, case.get("all_hosts"))
        except PlanError as exc:
            rows.append(f"| {case['id']} | {cell(shown_input(hostvars[exc.host], exc.variable))} | {cell(str(exc))} |")
        else:
            sys.exit(f"{case['id']}: no error")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
