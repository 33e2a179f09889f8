# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters over reconfiguration plans; the logic lives in plugin_utils/plan_playbook.py."""

from __future__ import annotations

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError

from ansible_collections.entropy.cluster.plugins.module_utils.vm_states import ACTION_MODULE_STATE
from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import (
    action_host,
    failed_actions,
    load_plan,
    placement_differences,
    placement_leftovers as _placement_leftovers,
    placements_after_steps,
    plan_hosts,
    plan_problems,
    plan_progress,
    plan_table,
    render_playbook,
)


def _plan(value, filter_name: str) -> Mapping:
    if not isinstance(value, Mapping) or not isinstance(value.get("steps"), list):
        raise AnsibleFilterError("%s: expects a plan (a dictionary with a 'steps' list), got %s" % (filter_name, type(value).__name__))
    return value


def plan_playbook(plan, source: str = "") -> str:
    return render_playbook(_plan(plan, "plan_playbook"), source)


def plan_summary(plan, max_actions=50) -> str:
    if isinstance(max_actions, bool) or not isinstance(max_actions, int) or max_actions < 0:
        raise AnsibleFilterError("plan_summary: max_actions must be a non-negative integer, got %r" % (max_actions,))
    return plan_table(_plan(plan, "plan_summary"), max_actions)


def plan_timeline(plan) -> list:
    plan = _plan(plan, "plan_timeline")
    return placements_after_steps(plan.get("initial") or {}, plan["steps"])


def placement_diff(actual, expected, unreadable=None, ignore=None) -> list:
    if not isinstance(actual, Mapping) or not isinstance(expected, Mapping):
        raise AnsibleFilterError("placement_diff: expects two dictionaries (live placement, expected placement)")
    if ignore is not None and not (isinstance(ignore, list) and all(isinstance(copy, Mapping) for copy in ignore)):
        raise AnsibleFilterError("placement_diff: ignore must be a list of copies ({vm, host}), as placement_leftovers returns them")
    return placement_differences(actual, expected, _hosts(unreadable, "placement_diff"), ignore or ())


def placement_leftovers(actual) -> list:
    if not isinstance(actual, Mapping):
        raise AnsibleFilterError("placement_leftovers: expects the live placement (a dictionary, VM -> list of {host, state})")
    return _placement_leftovers(actual)


def plan_report(plan, actual, failed_step=None, unreadable=None) -> dict:
    if not isinstance(actual, Mapping):
        raise AnsibleFilterError("plan_report: expects the live placement (a dictionary) as argument")
    if unreadable is not None and not isinstance(unreadable, Mapping):
        raise AnsibleFilterError("plan_report: unreadable must map each hypervisor that could not be read to its error")
    return plan_progress(_plan(plan, "plan_report"), actual, failed_step, unreadable)


def plan_check(plan, hypervisors=None, resume_anywhere=False) -> list:
    return plan_problems(plan, None if hypervisors is None else list(_hosts(hypervisors, "plan_check")), bool(resume_anywhere))


def plan_hypervisors(plan) -> list:
    return sorted(plan_hosts(plan)) if isinstance(plan, Mapping) else []


def plan_action_host(action) -> str:
    if not isinstance(action, Mapping) or not isinstance(action_host(action), str):
        raise AnsibleFilterError("plan_action_host: expects a plan action with its hypervisor (from, host or to), got %r" % (action,))
    return action_host(action)


def plan_action_bandwidth(action, limit=0) -> int:
    """The migration bandwidth (MiB/s) to pass to vm_migrate: the plan's allotment, lowered to ``limit`` when
    that is positive; 0 when neither gives one (the playbook then omits the option)."""
    if not isinstance(action, Mapping):
        raise AnsibleFilterError("plan_action_bandwidth: expects a plan action, got %r" % (action,))
    allotted = action.get("bandwidth_mib_s")
    if allotted is not None and (isinstance(allotted, bool) or not isinstance(allotted, int) or allotted < 1):
        raise AnsibleFilterError("plan_action_bandwidth: action %r has bandwidth_mib_s %r; a plan allots a positive "
                                 "integer of MiB/s (compute the plan again)" % (action.get("vm"), allotted))
    try:
        limit = int(limit or 0)
    except (TypeError, ValueError):
        raise AnsibleFilterError("plan_action_bandwidth: the limit must be an integer of MiB/s, got %r" % (limit,))
    candidates = [v for v in (allotted, limit) if v]
    return min(candidates) if candidates else 0


def plan_failed_actions(results) -> list:
    if not isinstance(results, list):
        raise AnsibleFilterError("plan_failed_actions: expects the loop results of the tasks that ran the actions (a list)")
    return failed_actions(results)


def plan_load(content, path, encoding="base64", variable="") -> dict:
    if not isinstance(content, str):
        raise AnsibleFilterError("plan_load: expects the plan file's content (a string)")
    return load_plan(content, str(path), encoding, str(variable or ""))


def plan_action_state(action) -> str:
    if action not in ACTION_MODULE_STATE:
        raise AnsibleFilterError("plan_action_state: %r is not a plan action that changes a VM's state (known: %s)"
                                 % (action, ", ".join(ACTION_MODULE_STATE)))
    return ACTION_MODULE_STATE[action]


def _hosts(value, filter_name: str) -> tuple:
    """Host names from a list or from a dictionary keyed by host (URIs, errors)."""
    if value is None:
        return ()
    if isinstance(value, (Mapping, list)):
        return tuple(str(host) for host in value)
    raise AnsibleFilterError("%s: expects hypervisor names (a list or a dictionary keyed by name), got %s" % (filter_name, type(value).__name__))


class FilterModule:

    def filters(self):
        return {
            "plan_playbook": plan_playbook,
            "plan_summary": plan_summary,
            "plan_timeline": plan_timeline,
            "placement_diff": placement_diff,
            "placement_leftovers": placement_leftovers,
            "plan_report": plan_report,
            "plan_check": plan_check,
            "plan_hypervisors": plan_hypervisors,
            "plan_action_host": plan_action_host,
            "plan_action_bandwidth": plan_action_bandwidth,
            "plan_failed_actions": plan_failed_actions,
            "plan_load": plan_load,
            "plan_action_state": plan_action_state,
        }
