# Copyright: inferops.cluster contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The attributes every module declares, as community.docker's doc_fragments/attributes.py.

A module extends C(inferops.cluster.attributes) (what each attribute means) and one of the support
fragments below; its own C(attributes:) keeps only the C(details) particular to it.
"""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check mode and report what would change without changing anything.
  diff_mode:
    description: Returns what has changed (or would change, in check mode) in diff mode.
  idempotent:
    description: A second run with the same arguments changes nothing.
"""

    # Modules that only read (or only compute).
    READ_ONLY = r"""
options: {}
attributes:
  check_mode:
    support: full
    details: Only reads; runs the same in check mode.
  diff_mode:
    support: none
    details: Changes nothing, so there is no diff.
  idempotent:
    support: full
    details: Only reads.
"""

    # Modules that write files and show the change in diff mode.
    FILES = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
"""

    # Modules that write large binary files: the result lists them instead of a diff.
    BINARY_FILES = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
    details: The changes are large binary files; the result lists them.
  idempotent:
    support: full
"""
