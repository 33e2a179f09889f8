"""Objective schedule: priorities, saved VMs, the plan's 'saved' list, and the checker's rules."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

import placement
from placement.model import load_model
from placement.problem import build_problem
from placement import planner
from placement.schedule import SchedulePlanner, _augmented

from conftest import ROOT
from bench_schedule import make_schedule_cluster
from helpers import GIB, host, model, solve_checked, vm


def saved(name: str, gib: int = 8, cpu: float = 1.0, priority: int = 0, on: str | None = None) -> dict:
    out = {"name": name, "state": "saved", "cpu": cpu, "memory_mib": gib * GIB, "priority": priority}
    if on is not None:
        out["host"] = on
    return out


def prio(d: dict, p: int) -> dict:
    return dict(d, priority=p)


def actions(plan: dict) -> list[tuple[int, str, str]]:
    return [(i, a["action"], a["vm"]) for i, s in enumerate(plan["steps"]) for a in s]


def full_cluster() -> dict:
    """Two 16 GiB hosts full of priority-0 VMs; two priority-10 VMs wait, saved."""
    hosts = [host("hv1", gib=16), host("hv2", gib=16)]
    vms = [vm("lo1", "hv1"), vm("lo2", "hv1"), vm("lo3", "hv2"), vm("lo4", "hv2"),
           saved("hi1", priority=10), saved("hi2", gib=4, priority=10, on="hv1")]
    return model(hosts, vms, objective="schedule")


# --- model ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["high", 1.5, True, [1]])
def test_a_priority_that_is_not_an_integer_is_refused_naming_the_vm(bad):
    m = full_cluster()
    m["vms"][4]["priority"] = bad
    with pytest.raises(placement.ModelError, match=r"vms\[4\] \(name 'hi1'\): field 'priority' must be an integer"):
        load_model(m)


def test_negative_priorities_are_allowed_and_absent_means_zero():
    m = model([host("hv1", gib=8)], [prio(vm("neg", "hv1"), -5), saved("zero", gib=8)], objective="schedule")
    plan = solve_checked(m)
    # 'zero' (priority 0) needs exactly neg's room: it runs, neg is saved
    assert plan["target"] == {"zero": "hv1"} and plan["saved"] == ["neg"]


# --- solver ---------------------------------------------------------------------------------------

def test_higher_priority_vms_run_and_lower_ones_are_saved():
    plan = solve_checked(full_cluster())
    assert plan["objective"] == "schedule"
    assert set(plan["target"]) == {"hi1", "hi2", "lo3", "lo4"}
    assert plan["saved"] == ["lo1", "lo2"]
    # both high VMs go where the low ones are saved: no migration at all
    assert plan["stats"]["migrations"] == 0
    assert plan["stats"]["suspends"] == 2 and plan["stats"]["resumes"] == 2
    for a in (a for s in plan["steps"] for a in s if a["action"] == "resume"):
        assert a["to"] == plan["target"][a["vm"]]
    # a resume waits for the suspend that frees its room
    steps = actions(plan)
    last_suspend = max(i for i, kind, _v in steps if kind == "suspend")
    assert all(i > last_suspend for i, kind, _v in steps if kind == "resume")


def test_when_room_frees_up_saved_vms_resume_on_any_host():
    # hv1, where 'back' was saved, is full; hv2 has room
    hosts = [host("hv1", gib=16), host("hv2", gib=16)]
    vms = [vm("a", "hv1", gib=16), vm("b", "hv2", gib=4), saved("back", gib=8, on="hv1")]
    plan = solve_checked(model(hosts, vms, objective="schedule"))
    assert plan["saved"] == []
    assert plan["steps"] == [[{"action": "resume", "vm": "back", "to": "hv2"}]]


def test_nothing_to_do_is_unchanged():
    hosts = [host("hv1", gib=16)]
    plan = solve_checked(model(hosts, [vm("a", "hv1"), saved("big", gib=16)], objective="schedule"))
    assert plan["status"] == "unchanged" and plan["steps"] == [] and plan["saved"] == ["big"]


def test_equal_priorities_keep_running_vms_running():
    hosts = [host("hv1", gib=16)]
    plan = solve_checked(model(hosts, [vm("a", "hv1", gib=16), saved("b", gib=4)], objective="schedule"))
    assert plan["saved"] == ["b"] and plan["steps"] == []


def test_an_overloaded_host_saves_its_lowest_priority_vm():
    hosts = [host("hv1", cpu=4, gib=32)]
    vms = [prio(vm("keep", "hv1", cpu=3), 5), prio(vm("drop", "hv1", cpu=3), 1)]
    plan = solve_checked(model(hosts, vms, objective="schedule"))
    assert plan["saved"] == ["drop"] and plan["steps"] == [[{"action": "suspend", "vm": "drop", "host": "hv1"}]]


def test_a_lower_vm_that_needs_less_than_the_saved_one_may_run():
    # s (10 GiB) fits nowhere; r (2 GiB, priority 0) uses less memory: the rule lets r run
    hosts = [host("hv1", gib=12)]
    vms = [prio(vm("mid", "hv1", gib=8), 5), vm("r", "hv1", gib=2), saved("s", gib=10, priority=10)]
    plan = solve_checked(model(hosts, vms, objective="schedule"))
    # s displaces mid (priority 5); r still fits beside s
    assert plan["target"] == {"s": "hv1", "r": "hv1"} and plan["saved"] == ["mid"]


def test_constraints_hold_for_resumed_vms():
    hosts = [host("hv1", gib=32), host("hv2", gib=32), host("hv3", gib=32)]
    vms = [saved("x", priority=1), saved("y", priority=1), saved("z", priority=1)]
    cons = [{"type": "spread", "vms": ["x", "y", "z"]}, {"type": "ban", "vms": ["x"], "hosts": ["hv1", "hv2"]}]
    plan = solve_checked(model(hosts, vms, cons, objective="schedule"))
    assert plan["target"]["x"] == "hv3" and len(set(plan["target"].values())) == 3


def test_a_gather_group_runs_together_or_not_at_all():
    hosts = [host("hv1", gib=16), host("hv2", gib=16)]
    vms = [vm("a", "hv1", gib=12), vm("b", "hv2", gib=12), saved("g1", gib=6, priority=3), saved("g2", gib=6, priority=3)]
    plan = solve_checked(model(hosts, vms, [{"type": "gather", "vms": ["g1", "g2"]}], objective="schedule"))
    assert plan["target"]["g1"] == plan["target"]["g2"]
    assert len(plan["saved"]) == 1   # one of a/b makes room for the pair


def test_paused_and_root_vms_are_never_saved():
    hosts = [host("hv1", gib=16)]
    vms = [vm("p", "hv1", state="paused"), vm("r", "hv1"), saved("hi", gib=8, priority=10)]
    m = model(hosts, vms, [{"type": "root", "vms": ["r"]}], objective="schedule")
    with pytest.raises(placement.InfeasibleError, match="saved vm 'hi' .* could take the place of running vm 'r'"):
        placement.solve(m)
    # without the root constraint r is saved; p stays paused where it is
    m["constraints"] = []
    plan = solve_checked(m)
    assert plan["target"] == {"p": "hv1", "hi": "hv1"} and plan["saved"] == ["r"]
    assert plan["steps"][0] == [{"action": "suspend", "vm": "r", "host": "hv1"}]


def test_a_saved_vm_in_a_root_constraint_resumes_only_on_its_host():
    hosts = [host("hv1", gib=16), host("hv2", gib=16)]
    vms = [vm("a", "hv1", gib=12), vm("b", "hv2", gib=4), saved("s", gib=8, on="hv1"), saved("t", gib=8)]
    plan = solve_checked(model(hosts, vms, [{"type": "root", "vms": ["s", "t"]}], objective="schedule"))
    assert plan["saved"] == ["s", "t"] and plan["steps"] == []
    vms[0]["memory_mib"] = 4 * GIB
    plan = solve_checked(model(hosts, vms, [{"type": "root", "vms": ["s", "t"]}], objective="schedule"))
    assert plan["target"]["s"] == "hv1" and plan["saved"] == ["t"]


def test_the_planner_breaks_a_cycle_with_a_suspend_and_resumes_a_saved_vm_after():
    # a and b swap full hosts, c waits saved: no pivot host has room
    m = load_model(model([host("hv1", gib=16), host("hv2", gib=16)],
                         [vm("a", "hv1", gib=12), vm("b", "hv2", gib=12), saved("c", gib=4)]))
    aug, names = _augmented(m)
    prob = build_problem(aug)
    init = [-1 if n in names else h for n, h in zip(prob.vm_names, prob.init)]
    pos = prob.vm_pos
    target = [0] * prob.n_vms
    target[pos["a"]], target[pos["b"]], target[pos["c"]] = 1, 0, 1
    planner = SchedulePlanner(prob, target, init)
    planner.run()
    kinds = [a["action"] for s in planner.steps for a in s]
    assert kinds.count("suspend") == 1 and kinds.count("resume") == 2
    plan = {"steps": planner.steps, "target": {"a": "hv2", "b": "hv1", "c": "hv2"}, "saved": []}
    assert placement.check_plan(m, plan) == []


def test_consolidate_and_repair_never_resume_or_save_to_free_hosts():
    hosts = [host("hv1", gib=16), host("hv2", gib=16), host("hv3", gib=16)]
    vms = [vm("a", "hv1", gib=4), vm("b", "hv2", gib=4), saved("s", gib=4, priority=99)]
    for objective in ("consolidate", "repair", "balance"):
        plan = solve_checked(model(hosts, vms), objective=objective, allow_suspend=False)
        assert not any(a["action"] in ("suspend", "resume") for s in plan["steps"] for a in s), objective
        assert "saved" not in plan and "s" not in plan["target"]


def test_a_large_overcommitted_cluster_meets_the_priority_rule():
    m = make_schedule_cluster(100, 500, over=0.2, seed=3)
    plan = solve_checked(m)
    assert plan["stats"]["vms_saved_after"] > 0
    prios = {v["name"]: v["priority"] for v in m["vms"]}
    # every priority-10 VM runs: there is room for all of them
    assert all(n in plan["target"] for n, p in prios.items() if p == 10)
    assert plan["stats"]["solve_seconds"] < 5


def test_cli_solves_schedule(tmp_path):
    src, out = tmp_path / "m.json", tmp_path / "p.json"
    src.write_text(json.dumps(full_cluster()), encoding="utf-8")
    res = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "entropy_solve.py"), str(src), "--objective",
                          "schedule", "-o", str(out)], capture_output=True, text=True, check=False, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "status feasible (schedule)" in res.stderr and "vms saved 2 -> 2 (2 suspends, 2 resumes)" in res.stderr
    assert json.loads(out.read_text())["saved"] == ["lo1", "lo2"]


# --- checker --------------------------------------------------------------------------------------

def hand_plan(steps: list, target: dict, kept: list) -> dict:
    return {"version": 1, "objective": "schedule", "steps": steps, "target": target, "saved": kept}


RULE_HOSTS = [host("hv1", cpu=8, gib=16)]


@pytest.mark.parametrize("r_gib,r_cpu,r_prio,r_state,broken", [
    (8, 1.0, 0, "running", True),      # same size, lower priority: s could take its place
    (12, 2.0, 0, "running", True),     # larger in both
    (8, 0.5, 0, "running", False),     # less cpu: s would not fit in its place
    (4, 4.0, 0, "running", False),     # less memory
    (8, 1.0, 10, "running", False),    # same priority
    (8, 1.0, 0, "paused", False),      # paused VMs are outside the rule
])
def test_checker_priority_rule(r_gib, r_cpu, r_prio, r_state, broken):
    m = model(RULE_HOSTS, [prio(vm("r", "hv1", cpu=r_cpu, gib=r_gib, state=r_state), r_prio),
                           saved("s", gib=8, cpu=1.0, priority=10)], objective="schedule")
    problems = placement.check_plan(m, hand_plan([], {"r": "hv1"}, ["s"]))
    assert any(p.startswith("priority: saved vm 's'") for p in problems) == broken, problems


def test_checker_priority_rule_counts_vms_the_plan_suspends():
    m = model(RULE_HOSTS, [prio(vm("hi", "hv1", gib=8), 10), vm("lo", "hv1", gib=8)], objective="schedule")
    plan = hand_plan([[{"action": "suspend", "vm": "hi", "host": "hv1"}]], {"lo": "hv1"}, ["hi"])
    assert placement.check_plan(m, plan) == [
        "priority: saved vm 'hi' (priority 10, 8192 MiB, cpu 1) could take the place of running vm 'lo' "
        "(priority 0, 8192 MiB, cpu 1)"]
    # the same plan is fine for the other objectives (which do not list saved VMs either)
    m["options"]["objective"] = "consolidate"
    plan["objective"] = "consolidate"
    assert placement.check_plan(m, plan) == []


def test_checker_resume_needs_an_image():
    m = model(RULE_HOSTS, [vm("run", "hv1", gib=4), vm("off", "hv1", gib=4, state="stopped"), saved("img", gib=4)],
              objective="schedule")
    never_saved = hand_plan([[{"action": "resume", "vm": "off", "to": "hv1"}]], {"run": "hv1"}, ["img"])
    assert placement.check_plan(m, never_saved) == ["step 0 action 0: vm 'off' is stopped, it cannot be acted on"]
    running = hand_plan([[{"action": "resume", "vm": "run", "to": "hv1"}]], {"run": "hv1"}, ["img"])
    assert placement.check_plan(m, running) == ["step 0 action 0: vm 'run' resumed but it is not suspended"]
    twice = hand_plan([[{"action": "resume", "vm": "img", "to": "hv1"}], [{"action": "resume", "vm": "img", "to": "hv1"}]],
                      {"run": "hv1", "img": "hv1"}, [])
    assert placement.check_plan(m, twice) == ["step 1 action 0: vm 'img' resumed but it is not suspended"]
    # suspended earlier in the plan: the image exists
    cycle = hand_plan([[{"action": "suspend", "vm": "run", "host": "hv1"}], [{"action": "resume", "vm": "run", "to": "hv1"}]],
                      {"run": "hv1"}, ["img"])
    assert placement.check_plan(m, cycle) == []


def test_checker_saved_list_must_match_the_end_state():
    m = model(RULE_HOSTS, [vm("a", "hv1", gib=4), vm("b", "hv1", gib=4), saved("img", gib=4)], objective="schedule")
    suspend_b = [[{"action": "suspend", "vm": "b", "host": "hv1"}]]
    assert placement.check_plan(m, hand_plan(suspend_b, {"a": "hv1"}, ["b", "img"])) == []
    assert placement.check_plan(m, hand_plan(suspend_b, {"a": "hv1"}, ["img"])) == [
        "end: vm 'b' is left suspended", "saved: vm 'b' ends saved but the plan does not list it"]
    assert placement.check_plan(m, hand_plan(suspend_b, {"a": "hv1"}, ["a", "b", "img"])) == [
        "saved: vm 'a' is listed as saved but ends on 'hv1'"]
    bad = hand_plan([], {"a": "hv1", "b": "hv1"}, "img")
    assert placement.check_plan(m, bad) == ["plan: 'saved' must be a list of vm names"]


def test_checker_catches_a_solver_that_breaks_the_priority_rule(monkeypatch):
    """The solver's own rule check removed and its choice made blind to priorities: the checker still says no."""
    from placement import schedule  # pylint: disable=import-outside-toplevel
    monkeypatch.setattr(schedule, "priority_violation", lambda *_a: None)
    real = schedule._Chooser.__init__

    def blind(self, *args):
        real(self, *args)
        self.prio = [0] * len(self.prio)
    monkeypatch.setattr(schedule._Chooser, "__init__", blind)
    m = full_cluster()
    plan = placement.solve(copy.deepcopy(m))
    assert plan["saved"] == ["hi1", "hi2"]
    assert any(p.startswith("priority: saved vm 'hi1'") for p in placement.check_plan(m, plan))


def test_the_rule_is_exact_even_when_a_constraint_keeps_the_saved_vm_off_the_lower_vms_host():
    # s may only run on hv1 (fence), which a priority-20 VM fills; r (priority 0, as large as s) runs on hv2:
    # the rule says r may not run while s is saved, even though s could not use hv2
    hosts = [host("hv1", gib=16), host("hv2", gib=16)]
    vms = [prio(vm("top", "hv1", gib=16), 20), vm("r", "hv2", gib=8), vm("small", "hv2", gib=4),
           saved("s", gib=8, priority=10)]
    plan = solve_checked(model(hosts, vms, [{"type": "fence", "vms": ["s"], "hosts": ["hv1"]}], objective="schedule"))
    assert plan["saved"] == ["r", "s"] and set(plan["target"]) == {"top", "small"}


def test_a_saved_lower_vm_as_large_as_a_saved_higher_one_stays_saved():
    hosts = [host("hv1", gib=16), host("hv2", gib=16)]
    vms = [prio(vm("top", "hv1", gib=16), 20), vm("small", "hv2", gib=4), saved("r", gib=8), saved("s", gib=8, priority=10)]
    plan = solve_checked(model(hosts, vms, [{"type": "fence", "vms": ["s"], "hosts": ["hv1"]}], objective="schedule"))
    assert plan["saved"] == ["r", "s"] and plan["steps"] == []


def test_budgets_are_not_traded_against_priorities():
    # 4 GiB free on each host: hi (8 GiB) runs without saving anyone only if lo2 (4 GiB) moves
    hosts = [host("hv1", gib=16), host("hv2", gib=16)]
    vms = [vm("lo1", "hv1", gib=8), vm("lo2", "hv1", gib=4), vm("lo3", "hv2", gib=12), saved("hi", gib=8, priority=10)]
    plan = solve_checked(model(hosts, vms, objective="schedule"))
    assert plan["stats"]["migrations"] == 1 and plan["saved"] == []
    with pytest.raises(placement.InfeasibleError, match="max_migrations 0: the schedule relocates 1 running vms"):
        placement.solve(model(hosts, vms, objective="schedule", max_migrations=0))


def test_a_saved_vm_resumes_on_the_host_that_saved_it_when_it_has_room():
    # best fit on memory alone would put all three on hv1 (the fullest host that takes them)
    hosts = [host("hv1", gib=32), host("hv2", gib=32), host("hv3", gib=32)]
    vms = [vm("a", "hv1", gib=8), saved("s2", gib=4, on="hv2"), saved("s3", gib=4, on="hv3"), saved("s1", gib=4, on="hv1")]
    plan = solve_checked(model(hosts, vms, objective="schedule"))
    assert {a["vm"]: a["to"] for s in plan["steps"] for a in s} == {"s1": "hv1", "s2": "hv2", "s3": "hv3"}


# --- the plan's duration estimate counts saves and restores (planner.step_seconds) ------------------------------------

def test_the_estimate_counts_the_memory_each_host_saves_and_restores():
    plan = solve_checked(full_cluster())
    expected = 0.0
    for step in plan["steps"]:
        per_host: dict[str, float] = {}
        for kind, fixed, rate in (("suspend", planner.SAVE_FIXED_S, planner.SAVE_MIB_S),
                                  ("resume", planner.RESTORE_FIXED_S, planner.RESTORE_MIB_S)):
            mine: dict[str, list[int]] = {}
            for a in step:
                if a["action"] == kind:
                    mine.setdefault(a.get("host") or a["to"], []).append(GIB * (4 if a["vm"] == "hi2" else 8))
            for h, mems in mine.items():
                per_host[h] = per_host.get(h, 0.0) + fixed + sum(mems) / rate
        expected += max(per_host.values())
    assert [s[0]["action"] for s in plan["steps"]] == ["suspend", "resume"]
    assert plan["stats"]["estimated_duration_s"] == round(expected, 1)
    # 16 GiB written by hv1 then 12 GiB read back: tens of seconds at the lab's rates, not the 0 s of memory over bandwidth
    assert plan["stats"]["estimated_duration_s"] >= 2 * planner.SAVE_FIXED_S
    assert plan["stats"]["estimated_duration_s"] > (16 + 12) * GIB / planner.SAVE_MIB_S


def test_a_step_costs_its_slowest_host_and_one_host_saves_its_vms_one_after_the_other():
    one = planner.step_seconds({}, {0: [1024]}, {}, 1000.0)
    assert one == pytest.approx(planner.SAVE_FIXED_S + 1024 / planner.SAVE_MIB_S)
    # two saves on one host: one fixed cost (the QEMU exits overlap), the memory written in turn
    assert planner.step_seconds({}, {0: [1024, 1024]}, {}, 1000.0) == pytest.approx(planner.SAVE_FIXED_S + 2048 / planner.SAVE_MIB_S)
    # on two hosts: in parallel
    assert planner.step_seconds({}, {0: [1024], 1: [1024]}, {}, 1000.0) == pytest.approx(one)
    # a host that restores a VM while migrations go through its link: both count
    both = planner.step_seconds({1: 2000}, {}, {1: [512]}, 1000.0)
    assert both == pytest.approx(2.0 + planner.RESTORE_FIXED_S + 512 / planner.RESTORE_MIB_S)
    assert planner.step_seconds({}, {}, {}, 1000.0) == 0.0
    # more memory, longer
    assert planner.restore_seconds(4096) > planner.restore_seconds(64) > 0
