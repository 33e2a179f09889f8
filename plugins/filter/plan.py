# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over reconfiguration plans; the logic lives in plugin_utils/plan_playbook.py."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import (
    placement_differences,
    plan_progress,
    placements_after_steps,
    plan_table,
    render_playbook,
)


def _plan(value, filter_name: str) -> Mapping:
    if not isinstance(value, Mapping) or not isinstance(value.get("steps"), list):
        raise AnsibleFilterError("%s: expects a plan (a dictionary with a 'steps' list), got %s" % (filter_name, type(value).__name__))
    return value


def plan_playbook(plan, source: str = "") -> str:
    return render_playbook(_plan(plan, "plan_playbook"), source)


def plan_summary(plan) -> str:
    return plan_table(_plan(plan, "plan_summary"))


def plan_timeline(plan) -> list:
    plan = _plan(plan, "plan_timeline")
    return placements_after_steps(plan.get("initial") or {}, plan["steps"])


def placement_diff(actual, expected) -> list:
    if not isinstance(actual, Mapping) or not isinstance(expected, Mapping):
        raise AnsibleFilterError("placement_diff: expects two dictionaries (live placement, expected placement)")
    return placement_differences(actual, expected)


def plan_report(plan, actual) -> dict:
    if not isinstance(actual, Mapping):
        raise AnsibleFilterError("plan_report: expects the live placement (a dictionary) as argument")
    return plan_progress(_plan(plan, "plan_report"), actual)


class FilterModule:

    def filters(self):
        return {
            "plan_playbook": plan_playbook,
            "plan_summary": plan_summary,
            "plan_timeline": plan_timeline,
            "placement_diff": placement_diff,
            "plan_report": plan_report,
        }
