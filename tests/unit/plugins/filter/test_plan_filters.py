# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The plan filters as playbooks call them: arguments checked, the logic of plan_playbook.py reached."""

from __future__ import annotations

import base64
import os
import sys

import pytest
from ansible.errors import AnsibleFilterError
from ansible.plugins.loader import init_plugin_loader
from ansible.utils.collection_loader._collection_finder import _AnsibleCollectionFinder

# The collection loader first (as the other plugin tests do) unless the collection was already
# imported as a plain package (the loader refuses to start after that), then the collection's modules.
COLLECTIONS = next(path for path in sys.path if path.endswith(os.path.join(".tmp", "collections")))
if "ansible_collections" not in sys.modules and not any(isinstance(f, _AnsibleCollectionFinder) for f in sys.meta_path):
    init_plugin_loader([COLLECTIONS])

# pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.filter.plan import FilterModule  # noqa: E402

FILTERS = FilterModule().filters()
PLAN = {"initial": {"a": {"host": "hv1", "state": "running"}}, "target": {"a": "hv2"},
        "steps": [[{"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2"}]]}


def test_every_filter_is_registered():
    assert {"plan_playbook", "plan_summary", "plan_timeline", "placement_diff", "plan_report", "plan_check",
            "plan_hypervisors", "plan_failed_actions", "plan_load", "placement_leftovers",
            "plan_action_host", "plan_action_state"} <= set(FILTERS)


def test_plan_check_takes_the_uri_mapping():
    assert FILTERS["plan_check"](PLAN, {"hv1": "qemu:///1", "hv2": "qemu:///2"}) == []
    assert FILTERS["plan_check"](PLAN, {"hv1": "qemu:///1"})[0].startswith("the plan names hypervisors the inventory does not know: hv2.")
    assert FILTERS["plan_check"]("nonsense") == ["the plan is a str, not a dictionary with initial, target and steps"]
    with pytest.raises(AnsibleFilterError, match="plan_check: expects hypervisor names"):
        FILTERS["plan_check"](PLAN, "hv1")


def test_plan_report_with_hosts_not_read():
    report = FILTERS["plan_report"](PLAN, {}, 1, {"hv1": "refused"})
    assert report["every_vm_on_one_host"] == "unknown" and report["hosts_not_read"] == ["hv1: refused"]
    assert FILTERS["plan_report"](PLAN, {"a": [{"host": "hv2", "state": "running"}]})["moved"] == ["a: hv1 -> hv2"]
    with pytest.raises(AnsibleFilterError, match="unreadable must map"):
        FILTERS["plan_report"](PLAN, {}, 1, ["hv1"])


def test_placement_diff_takes_hosts_not_read_as_list_or_mapping():
    expected = {"a": {"host": "hv1"}}
    assert FILTERS["placement_diff"]({}, expected, ["hv1"]) == ["VM 'a': expected on hv1, which could not be read"]
    assert FILTERS["placement_diff"]({}, expected, {"hv1": "refused"}) == ["VM 'a': expected on hv1, which could not be read"]
    assert FILTERS["placement_diff"]({"a": [{"host": "hv1", "state": "running"}]}, expected) == []


def test_placement_leftovers_and_the_copies_placement_diff_ignores():
    live = {"a": [{"host": "hv1", "state": "stopped"}, {"host": "hv2", "state": "running"}]}
    leftovers = FILTERS["placement_leftovers"](live)
    assert leftovers == [{"vm": "a", "host": "hv1", "runs_on": "hv2"}]
    assert FILTERS["placement_diff"](live, {"a": {"host": "hv2"}}, None, leftovers) == []
    assert len(FILTERS["placement_diff"](live, {"a": {"host": "hv2"}})) == 1
    with pytest.raises(AnsibleFilterError, match="placement_leftovers: expects the live placement"):
        FILTERS["placement_leftovers"]([])
    with pytest.raises(AnsibleFilterError, match="ignore must be a list of copies"):
        FILTERS["placement_diff"](live, {}, None, "hv1")


def test_plan_hypervisors_and_failed_actions_and_load():
    assert FILTERS["plan_hypervisors"](PLAN) == ["hv1", "hv2"]
    assert FILTERS["plan_hypervisors"]("nonsense") == []
    assert FILTERS["plan_failed_actions"]([{"failed": True, "msg": "x", "item": PLAN["steps"][0][0]}]) == ["a: migrate hv1 -> hv2: x"]
    with pytest.raises(AnsibleFilterError):
        FILTERS["plan_failed_actions"]({"results": []})
    assert FILTERS["plan_load"](base64.b64encode(b"{}").decode(), "P") == {"plan": {}, "error": ""}
    with pytest.raises(AnsibleFilterError):
        FILTERS["plan_load"](None, "P")


def test_plan_action_state_maps_every_state_changing_action():
    assert {action: FILTERS["plan_action_state"](action) for action in ("suspend", "resume", "start", "stop")} == {
        "suspend": "saved", "resume": "running", "start": "running", "stop": "shutdown"}
    for action in ("migrate", "explode", None):
        with pytest.raises(AnsibleFilterError, match="is not a plan action that changes a VM's state"):
            FILTERS["plan_action_state"](action)


def test_the_apply_step_asks_vm_state_for_the_vocabularys_state():
    """roles/apply_plan/tasks/step.yml, rendered by Ansible's templar: the vm_state task's state for each action."""
    import yaml  # pylint: disable=import-outside-toplevel
    from ansible.parsing.dataloader import DataLoader  # pylint: disable=import-outside-toplevel
    from ansible.template import Templar  # pylint: disable=import-outside-toplevel
    from ansible_collections.entropy.cluster.plugins.module_utils.vm_states import ACTION_MODULE_STATE  # pylint: disable=import-outside-toplevel

    root = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, os.pardir, os.pardir)
    with open(os.path.join(root, "roles", "apply_plan", "tasks", "step.yml"), encoding="utf-8") as handle:
        tasks = [task for block in yaml.safe_load(handle) for task in block.get("block", [])]
    expression = next(task["entropy.cluster.vm_state"]["state"] for task in tasks if "entropy.cluster.vm_state" in task)
    try:
        from ansible.template import trust_as_template  # pylint: disable=import-outside-toplevel
    except ImportError:  # ansible-core < 2.19 templates every string
        def trust_as_template(value):
            return value
    for action, state in ACTION_MODULE_STATE.items():
        templar = Templar(loader=DataLoader(), variables={"item": {"action": action, "vm": "a", "host": "hv1"}})
        assert templar.template(trust_as_template(expression)) == state


@pytest.mark.parametrize("action, host", [
    ({"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2"}, "hv1"),
    ({"action": "suspend", "vm": "a", "host": "hv1"}, "hv1"),
    ({"action": "stop", "vm": "a", "host": "hv1"}, "hv1"),
    ({"action": "resume", "vm": "a", "to": "hv2"}, "hv2"),
    ({"action": "start", "vm": "a", "to": "hv2"}, "hv2"),
    ({"action": "start", "vm": "a", "host": "hv3"}, "hv3"),  # as plans of earlier releases spell it
])
def test_plan_action_host_is_where_the_action_runs(action, host):
    assert FILTERS["plan_action_host"](action) == host


def test_plan_action_host_without_a_host_says_so():
    with pytest.raises(AnsibleFilterError, match="plan_action_host: expects a plan action with its hypervisor"):
        FILTERS["plan_action_host"]({"action": "start", "vm": "a"})


@pytest.mark.parametrize("action, limit, expected", [
    ({"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2", "bandwidth_mib_s": 40}, 0, 40),
    ({"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2", "bandwidth_mib_s": 40}, 25, 25),
    ({"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2", "bandwidth_mib_s": 40}, "100", 40),
    ({"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2"}, 30, 30),   # a plan of an earlier release
    ({"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2"}, 0, 0),
])
def test_plan_action_bandwidth_is_the_allotment_under_the_limit(action, limit, expected):
    assert FILTERS["plan_action_bandwidth"](action, limit) == expected


def test_plan_action_bandwidth_refuses_a_bad_allotment():
    with pytest.raises(AnsibleFilterError, match="action 'a' has bandwidth_mib_s -3; a plan allots a positive integer"):
        FILTERS["plan_action_bandwidth"]({"action": "migrate", "vm": "a", "bandwidth_mib_s": -3})
