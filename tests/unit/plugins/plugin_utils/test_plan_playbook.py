# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plans rendered as playbooks: names survive literally and are never templated; timelines,
differences and progress reports say the right thing."""

from __future__ import annotations

import base64
import inspect

import pytest
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.yaml.loader import AnsibleLoader
from ansible.template import Templar

from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import (
    failed_actions,
    load_plan,
    placement_differences,
    placement_leftovers,
    placements_after_steps,
    plan_hosts,
    plan_problems,
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


def test_a_stale_definition_left_by_a_dead_source_is_named_with_its_danger():
    """Seen in the fault soak: the source daemon died at the end of a live migration; the VM runs on the
    destination and its old definition stays, shut off, on the source."""
    actual = {"a": [{"host": "hv1", "state": "stopped"}, {"host": "hv3", "state": "running"}]}
    (problem,) = placement_differences(actual, {"a": {"host": "hv1", "state": "running"}})
    assert problem.startswith("VM 'a': defined on several hypervisors: runs on hv3 and is also defined, shut off, on hv1")
    assert "would run the VM twice" in problem and "virsh undefine on hv1" in problem
    # a copy that is saved (managed save) or paused is not called a leftover
    saved = {"a": [{"host": "hv1", "state": "saved"}, {"host": "hv3", "state": "running"}]}
    assert placement_differences(saved, {"a": {"host": "hv3"}}) == ["VM 'a': defined on several hypervisors: hv1, hv3"]


def test_leftovers_are_the_shut_off_copies_of_a_vm_active_on_one_other_host():
    actual = {
        "a": [{"host": "hv1", "state": "stopped"}, {"host": "hv3", "state": "running"}],
        "b": [{"host": "hv1", "state": "paused"}, {"host": "hv2", "state": "stopped"}, {"host": "hv3", "state": "stopped"}],
        "saved": [{"host": "hv1", "state": "saved"}, {"host": "hv3", "state": "running"}],
        "twice": [{"host": "hv1", "state": "running"}, {"host": "hv2", "state": "running"}, {"host": "hv3", "state": "stopped"}],
        "nowhere": [{"host": "hv1", "state": "stopped"}, {"host": "hv2", "state": "stopped"}],
        "once": [{"host": "hv2", "state": "running"}],
    }
    assert placement_leftovers(actual) == [{"vm": "a", "host": "hv1", "runs_on": "hv3"}, {"vm": "b", "host": "hv2", "runs_on": "hv1"},
                                           {"vm": "b", "host": "hv3", "runs_on": "hv1"}]


def test_ignored_copies_are_left_out_of_the_differences():
    """Check mode leaves out the leftovers a real run would remove."""
    actual = {"a": [{"host": "hv1", "state": "stopped"}, {"host": "hv3", "state": "running"}]}
    assert placement_differences(actual, {"a": {"host": "hv3"}}, ignore=[{"vm": "a", "host": "hv1", "runs_on": "hv3"}]) == []
    assert len(placement_differences(actual, {"a": {"host": "hv3"}}, ignore=[{"vm": "other", "host": "hv1"}])) == 1


def test_progress_report_after_a_stopped_run():
    plan = two_step_plan("a", "b")
    live = {"a": [{"host": "hv2", "state": "running"}], "b": [{"host": "hv2", "state": "running"}],
            "idle": [{"host": "hv2", "state": "paused"}]}
    report = plan_progress(plan, live, failed_step=2)
    assert report["moved"] == ["a: hv1 -> hv2"] and report["not_moved"] == ["b: still on hv2"] and report["elsewhere"] == []
    assert report["vms"] == {"a": "running on hv2", "b": "running on hv2", "idle": "paused on hv2"}
    assert report["lost"] == [] and report["every_vm_on_one_host"] is True
    assert report["hosts_not_read"] == [] and report["not_checked"] == []


def test_a_vm_that_stopped_running_is_lost_not_still_on():
    plan = two_step_plan("a", "b")
    live = {"a": [{"host": "hv1", "state": "stopped"}], "b": [{"host": "hv2", "state": "running"}], "idle": [{"host": "hv2", "state": "paused"}]}
    report = plan_progress(plan, live, failed_step=1)
    assert report["lost"] == ["a: was running on hv1, now stopped on hv1"]
    assert report["not_moved"] == ["b: still on hv2"], "a lost VM is never 'still on' its host"
    assert report["vms"]["a"] == "stopped on hv1"
    assert report["every_vm_on_one_host"] is False
    del live["a"]
    report = plan_progress(plan, live, failed_step=1)
    assert report["lost"] == ["a: was running on hv1, now on no hypervisor"] and report["elsewhere"] == []


@pytest.mark.parametrize("name", NASTY)
def test_a_lost_vm_with_any_name_is_only_lost(name):
    plan = two_step_plan(name, "b")
    report = plan_progress(plan, {name: [{"host": "hv1", "state": "stopped"}]}, failed_step=1)
    assert "%s: was running on hv1, now stopped on hv1" % name in report["lost"]
    assert not [line for line in report["moved"] + report["not_moved"] + report["elsewhere"] if line.startswith(name + ":")]


def test_a_planned_suspend_is_no_loss_but_a_vanished_saved_vm_is():
    plan = {"initial": {"s": {"host": "hv1", "state": "running"}, "z": {"host": "hv1", "state": "saved"}}, "target": {},
            "steps": [[{"action": "suspend", "vm": "s", "host": "hv1"}]]}
    report = plan_progress(plan, {"s": [{"host": "hv1", "state": "saved"}]}, failed_step=1)
    assert report["lost"] == ["z: was saved on hv1, now on no hypervisor"]


def test_a_host_not_read_hides_its_vms_and_claims_nothing():
    plan = two_step_plan("a", "b")
    # hv2 died during step 2: b was migrating hv2 -> hv3, idle was on hv2.
    report = plan_progress(plan, {}, failed_step=2, unreadable={"hv2": "connection refused"})
    assert report["hosts_not_read"] == ["hv2: connection refused"]
    assert report["every_vm_on_one_host"] == "unknown"
    assert report["not_checked"] == ["a: not read on hv2 (last seen running on hv2)", "b: not read on hv2 (last seen running on hv2)",
                                     "idle: not read on hv2 (last seen paused on hv2)"]
    assert report["lost"] == [] and report["elsewhere"] == [] and report["moved"] == [] and report["not_moved"] == []
    # The destination of an in-flight migration not read: the VM found on its source is still not checked.
    live = {"a": [{"host": "hv2", "state": "running"}], "b": [{"host": "hv2", "state": "running"}], "idle": [{"host": "hv2", "state": "paused"}]}
    report = plan_progress(plan, live, failed_step=2, unreadable={"hv3": "connection refused"})
    assert report["not_checked"] == ["b: running on hv2; not read on hv3 (last seen running on hv2)"]
    assert report["moved"] == ["a: hv1 -> hv2"] and report["not_moved"] == []


def test_duplicates_are_reported():
    plan = two_step_plan("a", "b")
    live = {"a": [{"host": "hv1", "state": "running"}, {"host": "hv2", "state": "paused"}], "b": [{"host": "hv2", "state": "running"}],
            "idle": [{"host": "hv2", "state": "paused"}]}
    report = plan_progress(plan, live, failed_step=1)
    assert report["duplicated"] == ["a: running on hv1, paused on hv2"]
    assert report["elsewhere"] == ["a: running on hv1, paused on hv2"]
    assert report["every_vm_on_one_host"] is False


def test_failed_actions_name_the_vm_the_action_and_the_message():
    migrate = {"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2"}
    start_failed = {"failed": True, "msg": "template error\nwhile templating", "item": {"action": "frobnicate", "vm": "b", "host": "hv1"}}
    job_failed = {"failed": True, "finished": 1, "msg": "cannot migrate domain with 1 snapshots", "ansible_job_id": "j1",
                  "item": {"ansible_job_id": "j1", "item": migrate}}
    job_ok = {"failed": False, "finished": 1, "item": {"ansible_job_id": "j2", "item": {"action": "stop", "vm": "c", "host": "hv3"}}}
    still = {"failed": True, "finished": 0, "ansible_job_id": "j3", "item": {"ansible_job_id": "j3", "item": dict(migrate, vm="d")}}
    assert failed_actions([start_failed, job_failed, job_ok, still]) == [
        "b: frobnicate on hv1: template error while templating",
        "a: migrate hv1 -> hv2: cannot migrate domain with 1 snapshots",
        "d: migrate hv1 -> hv2: still running when the wait ended (async job j3)",
    ]
    assert failed_actions([{"failed": True, "msg": "no item"}]) == ["no item"]


def test_differences_on_hosts_not_read():
    expected = {"a": {"host": "hv2", "state": "running"}, "b": {"host": "hv1", "state": "running"}}
    actual = {"b": [{"host": "hv1", "state": "running"}]}
    assert placement_differences(actual, expected, ["hv2"]) == ["VM 'a': expected on hv2, which could not be read"]
    assert placement_differences(actual, {"b": expected["b"]}, ["hv3"]) == ["hypervisor hv3 could not be read"]
    assert placement_differences(actual, expected) == ["VM 'a': expected on hv2, found on no hypervisor"]


def plan_with(*steps, initial=None):
    initial = initial or {"a": {"host": "hv1", "state": "running"}, "b": {"host": "hv2", "state": "running"}}
    return {"initial": initial, "target": {vm: w["host"] for vm, w in initial.items()}, "steps": list(steps)}


def test_a_valid_plan_has_no_problems():
    plan = two_step_plan("a", "b")
    plan["steps"][1][1] = {"action": "stop", "vm": "idle", "host": "hv2"}
    assert plan_problems(plan, ["hv1", "hv2", "hv3"]) == []
    assert plan_problems(plan_with([{"action": "suspend", "vm": "a", "host": "hv1"}], [{"action": "resume", "vm": "a", "host": "hv1"}])) == []


@pytest.mark.parametrize("plan, problem", [
    ([], "the plan is a list, not a dictionary with initial, target and steps"),
    ({"initial": {}, "target": {}}, "the plan has no 'steps' list"),
    ({"initial": {"a": "hv1"}, "target": {}, "steps": []}, "initial placement of VM 'a': expected {host, state} with state one of "
                                                           "running, paused, saved, stopped, got 'hv1'"),
    (plan_with([{"action": "frobnicate", "vm": "a", "host": "hv1"}]),
     "step 1, action 1: unknown action 'frobnicate' (known: migrate, suspend, resume, start, stop)"),
    (plan_with(["migrate a"]), "step 1, action 1: not an action (a dictionary with action and vm)"),
    (plan_with([{"action": "migrate", "vm": "a", "from": "hv1"}]), "step 1, action 1 (migrate a): no 'to'"),
    (plan_with([{"action": "stop", "vm": "a"}]), "step 1, action 1 (stop a): no 'host'"),
    (plan_with([{"action": "migrate", "from": "hv1", "to": "hv2"}]), "step 1, action 1 (migrate): no VM name ('vm')"),
    (plan_with([], [{"action": "migrate", "vm": "ghost", "from": "hv1", "to": "hv2"}]),
     "step 2, action 1 (migrate ghost): VM 'ghost' is not in the plan's initial placement, so the plan cannot be checked against the cluster"),
    (plan_with([{"action": "migrate", "vm": "a", "from": "hv1", "to": "hv1"}]), "step 1, action 1 (migrate a): migrates from hv1 to itself"),
    (plan_with([{"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2"}], [{"action": "migrate", "vm": "a", "from": "hv1", "to": "hv3"}]),
     "step 2, action 1 (migrate a): runs on hv1, but the plan has VM 'a' on hv2 at that step"),
    (plan_with([{"action": "suspend", "vm": "a", "host": "hv1"}], [{"action": "resume", "vm": "a", "host": "hv2"}]),
     "step 2, action 1 (resume a): runs on hv2, but the plan has VM 'a' on hv1 at that step"),
    (plan_with([{"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2"}, {"action": "stop", "vm": "a", "host": "hv1"}]),
     "step 1, action 2 (stop a): VM 'a' has another action in the same step"),
    (plan_with([{"action": "migrate", "vm": "a", "from": "hv1", "to": "hv9"}]),
     "the plan names hypervisors the inventory does not know: hv9. Run it with the cluster's inventory "
     "(-i <cluster>.libvirt_cluster.yml) or set entropy_hypervisor_uris"),
])
def test_plan_problems_name_each_problem_on_one_line(plan, problem):
    problems = plan_problems(plan, ["hv1", "hv2", "hv3"])
    assert problem in problems, problems
    assert all("\n" not in line for line in problems)


def test_plan_hosts_lists_every_hypervisor_named():
    plan = two_step_plan("a", "b")
    assert plan_hosts(plan) == {"hv1", "hv2", "hv3"}
    assert plan_hosts({"initial": {"a": {"host": "hv1"}}, "target": {}, "steps": [[{"action": "resume", "vm": "a", "host": "hv4"}]]}) == {"hv1", "hv4"}


@pytest.mark.parametrize("content, encoding, error", [
    (base64.b64encode(b'{"initial": {}, "target": {}, "steps": []}').decode(), "base64", ""),
    (base64.b64encode(b'{"steps": [').decode(), "base64", "the plan file P is not valid JSON (line 1, column 12: Expecting value): "),
    (base64.b64encode(b"\xff\xfe").decode(), "base64", "the plan file P is not UTF-8 text: "),
    ("[1]", "text", "the plan file P holds a JSON array, not a plan (an object with initial, target and steps): "),
    ('"x"', "text", "the plan file P holds a JSON string, not a plan"),
])
def test_load_plan_gives_one_line_naming_the_file_and_the_fix(content, encoding, error):
    loaded = load_plan(content, "P", encoding)
    if not error:
        assert loaded == {"plan": {"initial": {}, "target": {}, "steps": []}, "error": ""}
        return
    assert loaded["plan"] is None and loaded["error"].startswith(error), loaded
    assert loaded["error"].endswith("(-e entropy_plan_file=<plan>.json)") and "\n" not in loaded["error"]


def test_table_lists_figures_and_actions():
    table = plan_table(two_step_plan("a", "b"))
    assert "hosts used          2 -> 2" in table
    assert "migrate a: hv1 -> hv2 (64 MiB)" in table
    assert "step 2 of 2 (2 actions in parallel)" in table
    assert "nothing to do" in plan_table({"steps": []})


def test_table_of_a_schedule_lists_the_vms_left_saved_and_no_lower_bound():
    stats = {"hosts_used_before": 2, "hosts_used_after": 2, "hosts_lower_bound": None}
    plan = {"objective": "schedule", "saved": ["lo1", "lo2"], "stats": stats,
            "steps": [[{"action": "suspend", "vm": "lo1", "host": "hv1"}], [{"action": "resume", "vm": "hi", "to": "hv1"}]]}
    table = plan_table(plan)
    assert "hosts used          2 -> 2\n" in table
    assert "vms left saved      2: lo1, lo2" in table
    assert "resume hi on hv1" in table


def test_suspend_is_to_disk_and_cross_host_resumes_are_found():
    from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import cross_host_resumes

    plan = {"initial": {"a": {"host": "hv1", "state": "running"}},
            "steps": [[{"action": "suspend", "vm": "a", "host": "hv1"}], [{"action": "resume", "vm": "a", "host": "hv1"}]]}
    after = placements_after_steps(plan["initial"], plan["steps"])
    assert after[0]["a"] == {"host": "hv1", "state": "saved"} and after[1]["a"] == {"host": "hv1", "state": "running"}
    assert cross_host_resumes(plan) == []
    plan["steps"][1][0]["host"] = "hv2"
    assert cross_host_resumes(plan) == ["VM 'a' is suspended on hv1 and resumed on hv2"]


def start_stop_plan(started: str = "s", stopped: str = "r") -> dict:
    """The plan VM jobs and the context switch emit: a shut-off VM started on its host (``to``), a running one stopped."""
    return {"initial": {started: {"host": "hv2", "state": "stopped"}, stopped: {"host": "hv1", "state": "running"},
                        "m": {"host": "hv1", "state": "running"}},
            "target": {started: "hv2", "m": "hv3"},
            "steps": [[{"action": "start", "vm": started, "to": "hv2"}, {"action": "stop", "vm": stopped, "host": "hv1"},
                       {"action": "migrate", "vm": "m", "from": "hv1", "to": "hv3", "memory_mib": 64}]]}


def test_start_and_stop_are_plan_actions_with_their_hosts():
    plan = start_stop_plan()
    assert plan_problems(plan, ["hv1", "hv2", "hv3"]) == []
    (after,) = placements_after_steps(plan["initial"], plan["steps"])
    assert after == {"s": {"host": "hv2", "state": "running"}, "r": {"host": "hv1", "state": "stopped"}, "m": {"host": "hv3", "state": "running"}}
    assert plan_hosts(plan) == {"hv1", "hv2", "hv3"}
    table = plan_table(dict(plan, stats={}))
    assert "start s on hv2" in table and "stop r on hv1" in table
    # a resume, like a start, brings the VM up on "to"
    resumed = plan_with([{"action": "suspend", "vm": "a", "host": "hv1"}], [{"action": "resume", "vm": "a", "to": "hv1"}])
    assert plan_problems(resumed) == []
    assert placements_after_steps(resumed["initial"], resumed["steps"])[1]["a"] == {"host": "hv1", "state": "running"}


@pytest.mark.parametrize("action, problem", [
    ({"action": "start", "vm": "s"}, "step 1, action 1 (start s): no 'to'"),
    ({"action": "start", "vm": "s", "to": "hv1"}, "step 1, action 1 (start s): runs on hv1, but the plan has VM 's' on hv2 at that step"),
    ({"action": "stop", "vm": "r", "to": "hv1"}, "step 1, action 1 (stop r): no 'host'"),
    ({"action": "resume", "vm": "s", "host": "hv1"}, "step 1, action 1 (resume s): runs on hv1, but the plan has VM 's' on hv2 at that step"),
])
def test_a_start_or_stop_on_the_wrong_host_is_refused(action, problem):
    plan = start_stop_plan()
    plan["steps"] = [[action]]
    assert problem in plan_problems(plan, ["hv1", "hv2", "hv3"])


@pytest.mark.parametrize("name", NASTY)
def test_rendered_start_and_stop_keep_names_literal_and_untemplated(name, tmp_path):
    plan = dict(start_stop_plan("start " + name, "stop " + name), stats={})
    text = render_playbook(plan)
    embedded = load_as_a_playbook(text, tmp_path)[0]["vars"]["entropy_plan"]
    assert embedded["steps"] == plan["steps"] and embedded["initial"] == plan["initial"]
    assert Templar(loader=DataLoader()).template(embedded["steps"]) == plan["steps"]
    assert "Step 1 of 1 (3 actions, 1 migration, in parallel)" in text


class _SelfText(str):
    """Like ansible-core 2.17's AnsibleUnsafeText, which str() gives back unchanged."""

    def __str__(self):  # pylint: disable=invalid-str-returned
        return self


class _TaggedInt(int):
    """Like ansible-core 2.19's tagged ints."""


def test_a_plan_as_ansible_hands_it_to_the_filter_renders(tmp_path):
    """Playbooks pass the plan with Ansible's own str / int / dict subclasses, keys included."""
    plan = two_step_plan("a", "b")

    def wrap(value):
        if isinstance(value, dict):
            return {_SelfText(key): wrap(item) for key, item in value.items()}
        if isinstance(value, list):
            return [wrap(item) for item in value]
        if isinstance(value, str):
            return _SelfText(value)
        return _TaggedInt(value) if isinstance(value, int) and not isinstance(value, bool) else value

    embedded = load_as_a_playbook(render_playbook(wrap(plan)), tmp_path)[0]["vars"]["entropy_plan"]
    assert {key: embedded[key] for key in ("initial", "target", "steps", "stats")} == {key: plan[key] for key in ("initial", "target", "steps", "stats")}


@pytest.mark.parametrize("content, error", [
    ("not base64!", "the plan in entropy_plan_base64 is not base64 of a plan JSON: pass the entropy_plan_base64 artifact that "
                    "entropy.cluster.plan published (set_stats), unchanged"),
    (base64.b64encode(b'{"steps": [').decode(), "the plan in entropy_plan_base64 is not valid JSON (line 1, column 12: Expecting value): "),
    (base64.b64encode(b'"x"').decode(), "the plan in entropy_plan_base64 holds a JSON string, not a plan"),
])
def test_load_plan_from_a_variable_names_the_variable(content, error):
    loaded = load_plan(content, "", "base64", "entropy_plan_base64")
    assert loaded["plan"] is None and loaded["error"].startswith(error) and "\n" not in loaded["error"]
    assert load_plan(base64.b64encode(b'{"steps": []}').decode(), "", "base64", "entropy_plan_base64") == {"plan": {"steps": []}, "error": ""}


def test_table_of_a_large_plan_is_bounded_and_says_what_it_leaves_out():
    """100 000 migrations in 40 steps: at most 50 action lines, 30 step lines, 20 freed hosts, each cut counted."""
    steps = [[{"action": "migrate", "vm": "vm%d-%d" % (s, i), "from": "hv%d" % i, "to": "hv%d" % (i + 1), "memory_mib": 64}
              for i in range(2500)] for s in range(40)]
    plan = {"objective": "consolidate", "status": "feasible", "steps": steps, "hosts_freed": ["hv%d" % i for i in range(1000)],
            "stats": {"migrations": 100000}, "grid": {"clusters": {"a": {}, "b": {}}, "moves": [steps[0][0]]}}
    lines = plan_table(plan).splitlines()
    assert sum(1 for line in lines if line.startswith("  migrate ")) == 50
    assert "  ... and 2450 more actions (see the plan file)" in lines
    assert "step 30 of 40 (2500 actions in parallel)" in lines and "step 31 of 40 (2500 actions in parallel)" not in lines
    assert lines[-1] == "... and 10 more steps (see the plan file)"
    assert any(line.endswith("hv19 ... and 980 more") for line in lines)
    assert "  clusters            2, 1 migrations between them" in lines
    assert len(lines) < 120
    # every action when asked
    assert sum(1 for line in plan_table(plan, max_actions=10 ** 6).splitlines() if line.startswith("  migrate ")) == 30 * 2500
