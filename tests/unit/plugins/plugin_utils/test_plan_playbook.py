# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plans rendered as playbooks: names survive literally and are never templated; timelines,
differences and progress reports say the right thing."""

from __future__ import annotations

import inspect

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.yaml.loader import AnsibleLoader
from ansible.template import Templar

from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import (
    placement_differences,
    placements_after_steps,
    plan_progress,
    plan_table,
    render_playbook,
    yaml_data,
)

NASTY = [
    "{{ lookup('pipe','id') }}",
    "{% for x in range(3) %}{{ x }}{% endfor %}",
    'quote " and \\ backslash',
    "colon: and # hash and - dash",
    "new\nline\ttab",
    "ünïcödé 漢字 😀",
    "!unsafe", "*alias", "&anchor", "[flow]", "{flow}", "'single'",
    "\x7f\x85\u2028 control",
]


def load_yaml(text: str):
    loader = AnsibleLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_as_a_playbook(text: str, directory) -> list:
    """The rendered text read the way ansible-playbook reads a playbook file: on ansible-core >= 2.19 its
    strings are trusted templates unless tagged !unsafe (a plain YAML load would trust nothing, and the
    injection tests below could not fail); on 2.17 / 2.18 every string not tagged !unsafe is templated."""
    path = directory / "plan.yml"
    path.write_text(text, encoding="utf-8")
    loader = DataLoader()
    if "trusted_as_template" in inspect.signature(loader.load_from_file).parameters:
        return loader.load_from_file(str(path), trusted_as_template=True)
    return loader.load_from_file(str(path))


def two_step_plan(vm_a: str, vm_b: str) -> dict:
    return {
        "version": 1, "objective": "consolidate", "status": "feasible",
        "initial": {vm_a: {"host": "hv1", "state": "running"}, vm_b: {"host": "hv2", "state": "running"}, "idle": {"host": "hv2", "state": "paused"}},
        "target": {vm_a: "hv2", vm_b: "hv3", "idle": "hv2"},
        "steps": [[{"action": "migrate", "vm": vm_a, "from": "hv1", "to": "hv2", "memory_mib": 64}],
                  [{"action": "migrate", "vm": vm_b, "from": "hv2", "to": "hv3", "memory_mib": 128},
                   {"action": "resume", "vm": "idle", "host": "hv2"}]],
        "stats": {"hosts_used_before": 2, "hosts_used_after": 2, "migrations": 2, "memory_moved_mib": 192},
    }


@pytest.mark.parametrize("name", NASTY)
def test_yaml_data_reads_back_exactly(name):
    data = {"vm": name, "list": [name, 1, 2.5, None, True], name: name}
    loaded = load_yaml(yaml_data(data, tag_keys=True))
    assert loaded == data


@pytest.mark.parametrize("name", NASTY)
def test_rendered_playbook_keeps_names_literal_and_untemplated(name, tmp_path):
    plan = two_step_plan(name, "second " + name)
    text = render_playbook(plan, source="the inventory")
    play = load_as_a_playbook(text, tmp_path)[0]
    embedded = play["vars"]["entropy_plan"]
    for key in ("initial", "target", "steps"):
        assert embedded[key] == plan[key]
    # Templating the plan data (as Ansible does with vars) must give the names back unchanged.
    templar = Templar(loader=DataLoader())
    assert templar.template(embedded["steps"]) == plan["steps"]
    assert templar.template(embedded["target"]) == plan["target"]
    # No name leaks into a task name or a comment (both are shown or templated).
    for line in text.splitlines():
        if line.lstrip().startswith(("#", "- name:", "name:")):
            assert "second " + name not in line


def test_rendered_playbook_structure():
    plan = two_step_plan("a", "b")
    play = load_yaml(render_playbook(plan))[0]
    block = play["tasks"][0]["block"]
    names = [task["name"] for task in block]
    assert names[0].startswith("Refuse a stale plan")
    assert names[1] == "Step 1 of 2 (1 action, 1 migration, in parallel)"
    assert names[2] == "Step 2 of 2 (2 actions, 1 migration, in parallel)"
    assert block[2]["vars"]["entropy_step"] == "{{ entropy_plan.steps[1] }}"
    assert play["tasks"][0]["always"][0]["ansible.builtin.include_role"]["tasks_from"] == "end.yml"


def test_timeline_replays_migrations_and_state_changes():
    plan = two_step_plan("a", "b")
    after = placements_after_steps(plan["initial"], plan["steps"])
    assert after[0]["a"] == {"host": "hv2", "state": "running"} and after[0]["b"]["host"] == "hv2"
    assert after[1]["b"]["host"] == "hv3" and after[1]["idle"] == {"host": "hv2", "state": "running"}
    assert plan["initial"]["a"]["host"] == "hv1", "the initial placement must not be modified"


def test_differences_name_every_problem():
    expected = {"a": {"host": "hv2", "state": "running"}, "b": {"host": "hv1"}, "c": {"host": "hv1"}, "d": {"host": "hv1", "state": "paused"}}
    actual = {
        "a": [{"host": "hv1", "state": "running"}],
        "b": [{"host": "hv1", "state": "running"}, {"host": "hv2", "state": "running"}],
        "d": [{"host": "hv1", "state": "running"}],
        "unplanned": [{"host": "hv9", "state": "running"}],
    }
    problems = placement_differences(actual, expected)
    assert "VM 'a': expected on hv2, found on hv1 (running)" in problems
    assert "VM 'b': active on several hypervisors at once: hv1, hv2" in problems
    assert "VM 'c': expected on hv1, found on no hypervisor" in problems
    assert "VM 'd' on hv1: expected paused, found running" in problems
    assert not any("unplanned" in p for p in problems)
    assert placement_differences({"a": [{"host": "hv2", "state": "running"}]}, {"a": {"host": "hv2"}}) == []


def test_progress_report_after_a_stopped_run():
    plan = two_step_plan("a", "b")
    live = {"a": [{"host": "hv2", "state": "running"}], "b": [{"host": "hv2", "state": "running"}]}
    assert plan_progress(plan, live) == {"moved": ["a: hv1 -> hv2"], "not_moved": ["b: still on hv2"], "elsewhere": []}
    live["b"] = []
    assert plan_progress(plan, live)["elsewhere"] == ["b: on no hypervisor"]


def test_table_lists_figures_and_actions():
    table = plan_table(two_step_plan("a", "b"))
    assert "hosts used          2 -> 2" in table
    assert "migrate a: hv1 -> hv2 (64 MiB)" in table
    assert "step 2 of 2 (2 actions in parallel)" in table
    assert "nothing to do" in plan_table({"steps": []})


def test_suspend_is_to_disk_and_cross_host_resumes_are_found():
    from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import cross_host_resumes

    plan = {"initial": {"a": {"host": "hv1", "state": "running"}},
            "steps": [[{"action": "suspend", "vm": "a", "host": "hv1"}], [{"action": "resume", "vm": "a", "host": "hv1"}]]}
    after = placements_after_steps(plan["initial"], plan["steps"])
    assert after[0]["a"] == {"host": "hv1", "state": "saved"} and after[1]["a"] == {"host": "hv1", "state": "running"}
    assert cross_host_resumes(plan) == []
    plan["steps"][1][0]["host"] = "hv2"
    assert cross_host_resumes(plan) == ["VM 'a' is suspended on hv1 and resumed on hv2"]
