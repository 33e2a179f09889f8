"""The checker must catch each kind of violation in hand-written bad plans."""
from __future__ import annotations

import pytest

import placement

from helpers import GIB, host, model, vm


def base(**opts) -> dict:
    hosts = [host("hv1", cpu=8, gib=16), host("hv2", cpu=8, gib=16), host("hv3", cpu=8, gib=16),
             host("off", state="offline")]
    vms = [vm("a", "hv1", cpu=2, gib=10), vm("b", "hv2", cpu=2, gib=10), vm("c", "hv3", cpu=1, gib=2),
           {"name": "s", "host": "hv3", "state": "stopped", "cpu": 1, "memory_mib": 1024}]
    return model(hosts, vms, **opts)


def mig(v: str, src: str, dst: str, gib: int = 10) -> dict:
    return {"action": "migrate", "vm": v, "from": src, "to": dst, "memory_mib": gib * GIB}


def plan(steps: list, target: dict | None = None) -> dict:
    return {"version": 1, "status": "feasible", "steps": steps,
            "target": target if target is not None else {"a": "hv1", "b": "hv2", "c": "hv3"}}


def test_good_plan_passes():
    p = plan([[mig("c", "hv3", "hv1", 2)]], {"a": "hv1", "b": "hv2", "c": "hv1"})
    assert placement.check_plan(base(), p) == []


@pytest.mark.parametrize("m, p, needle", [
    (base(), plan([[mig("c", "hv2", "hv1", 2)]], {"a": "hv1", "b": "hv2", "c": "hv1"}),
     "migrates from 'hv2' but is on 'hv3'"),
    # swap without pivot: a and b are on both hosts during the step -> 20 GiB on a 16 GiB host
    (base(), plan([[mig("a", "hv1", "hv2"), mig("b", "hv2", "hv1")]], {"a": "hv2", "b": "hv1", "c": "hv3"}),
     "host 'hv1' memory 20480 exceeds 16384 during the step"),
    (base(), plan([[mig("c", "hv3", "hv1", 2)], [mig("c", "hv3", "hv2", 2)]], {"a": "hv1", "b": "hv2", "c": "hv2"}),
     "step 1 action 0: vm 'c' migrates from 'hv3' but is on 'hv1'"),
    (base(), plan([[mig("c", "hv3", "hv1", 2), mig("c", "hv3", "hv2", 2)]], {"a": "hv1", "b": "hv2", "c": "hv1"}),
     "more than one action in this step"),
    (base(), plan([[mig("c", "hv3", "off", 2)]], {"a": "hv1", "b": "hv2", "c": "off"}), "offline host 'off'"),
    (base(), plan([[mig("s", "hv3", "hv1", 1)]]), "vm 's' is stopped, it cannot be acted on"),
    (base(), plan([[mig("zz", "hv3", "hv1", 1)]]), "unknown vm 'zz'"),
    (base(), plan([[{"action": "teleport", "vm": "c"}]]), "unknown action"),
    (base(), plan([]), None),
    (base(), plan([], {"a": "hv1", "b": "hv2", "c": "hv1"}), "target: vm 'c' ends on 'hv3', target says 'hv1'"),
    (base(), plan([], {"a": "hv1", "b": "hv2"}), "target: must list exactly the running/paused vms"),
    (base(), plan([[{"action": "suspend", "vm": "c", "host": "hv3"}]]), "end: vm 'c' is left suspended"),
    (base(), plan([[{"action": "resume", "vm": "c", "host": "hv1"}]]), "resumed but it is not suspended"),
    (base(constraints=[{"type": "ban", "vms": ["c"], "hosts": ["hv1"], "continuous": True}]),
     plan([[mig("c", "hv3", "hv1", 2)], [mig("c", "hv1", "hv2", 2)]], {"a": "hv1", "b": "hv2", "c": "hv2"}),
     "step 0: constraint #0 (ban ['c'] from ['hv1']): vm 'c' occupies banned host 'hv1'"),
    (base(constraints=[{"type": "ban", "vms": ["c"], "hosts": ["hv1"]}]),
     plan([[mig("c", "hv3", "hv1", 2)]], {"a": "hv1", "b": "hv2", "c": "hv1"}),
     "end: constraint #0 (ban ['c'] from ['hv1']): vm 'c' is on banned host 'hv1'"),
    (base(constraints=[{"type": "spread", "vms": ["a", "c"], "continuous": True}]),
     plan([[mig("c", "hv3", "hv1", 2)], [mig("c", "hv1", "hv2", 2)]], {"a": "hv1", "b": "hv2", "c": "hv2"}),
     "step 0: constraint #0 (spread ['a', 'c']): vms 'a' and 'c' share host 'hv1'"),
    (base(constraints=[{"type": "root", "vms": ["c"]}]),
     plan([[mig("c", "hv3", "hv1", 2)]], {"a": "hv1", "b": "hv2", "c": "hv1"}), "(root ['c']): vm 'c' occupies 'hv1'"),
    (base(constraints=[{"type": "offline", "hosts": ["hv3"]}]), plan([]), "end: constraint #0 (offline ['hv3']): vm 'c' is still on 'hv3'"),
    (base(constraints=[{"type": "max_online", "amount": 2}]), plan([]), "(max_online 2): 3 hosts in use"),
    (base(constraints=[{"type": "lonely", "vms": ["a"]}]),
     plan([[mig("c", "hv3", "hv1", 2)]], {"a": "hv1", "b": "hv2", "c": "hv1"}), "foreign vm 'c' shares host 'hv1'"),
    (base(constraints=[{"type": "gather", "vms": ["a", "b"]}]), plan([]), "vms are split over hosts"),
    (base(constraints=[{"type": "preserve", "vms": ["c"], "resource": "memory", "amount": 8 * GIB}]),
     plan([[mig("c", "hv3", "hv1", 2)]], {"a": "hv1", "b": "hv2", "c": "hv1"}), "host 'hv1' memory 18432 exceeds 16384"),
    (base(max_parallel_migrations_per_host=1),
     plan([[mig("c", "hv3", "hv1", 2), mig("b", "hv2", "hv3")]], {"a": "hv1", "b": "hv3", "c": "hv1"}),
     "host 'hv3' has 2 concurrent migrations, cap is 1"),
    (base(max_migrations=0), plan([[mig("c", "hv3", "hv1", 2)]], {"a": "hv1", "b": "hv2", "c": "hv1"}),
     "budget: 1 vms relocated, max_migrations is 0"),
    (base(max_memory_moved_mib=1024), plan([[mig("c", "hv3", "hv1", 2)]], {"a": "hv1", "b": "hv2", "c": "hv1"}),
     "budget: 2048 MiB relocated, max_memory_moved_mib is 1024"),
])
def test_checker_detects(m, p, needle):
    problems = placement.check_plan(m, p)
    if needle is None:
        assert problems == []
    else:
        assert any(needle in line for line in problems), problems


def test_cpu_overload_may_not_appear_but_may_stay():
    m = model([host("hv1", cpu=4), host("hv2", cpu=4)], [vm("a", "hv1", cpu=3, gib=1), vm("b", "hv1", cpu=3, gib=1),
                                                         vm("c", "hv2", cpu=3, gib=1)])
    # hv1 starts overloaded (6 > 4); moving b onto hv2 during a step would overload hv2 (6 > 4)
    bad = plan([[mig("b", "hv1", "hv2", 1)]], {"a": "hv1", "b": "hv2", "c": "hv2"})
    assert any("host 'hv2' cpu 6 exceeds 4" in e for e in placement.check_plan(m, bad))
    # leaving hv1 as it was is allowed during the plan, but not at the end
    assert any("end: host 'hv1' cpu 6 exceeds capacity 4" in e
               for e in placement.check_plan(m, plan([], {"a": "hv1", "b": "hv1", "c": "hv2"})))


def test_malformed_plan_and_model():
    assert placement.check_plan(base(), {"steps": 3, "target": {}}) == ["plan: 'steps' must be a list of lists of actions"]
    assert placement.check_plan({"version": 1}, plan([]))[0].startswith("model: ")


# start / stop (VM jobs and the context switch emit them): "to" is where a start runs, "host" where a stop runs.
ALL_THREE = {"a": "hv1", "b": "hv2", "c": "hv3"}


def test_start_and_stop_pass_and_change_what_the_target_must_list():
    p = plan([[{"action": "start", "vm": "s", "to": "hv1"}, {"action": "stop", "vm": "c", "host": "hv3"}]],
             {"a": "hv1", "b": "hv2", "s": "hv1"})
    assert placement.check_plan(base(), p) == []


def test_a_started_vm_counts_on_its_host_and_a_stopped_vm_frees_it_after_the_step():
    # s (1 GiB) started on hv1 next to a (10 GiB): fine; a second 10 GiB VM would not fit during the step
    m = base()
    m["vms"].append({"name": "t", "host": "hv3", "state": "stopped", "cpu": 1, "memory_mib": 10 * GIB})
    p = plan([[{"action": "start", "vm": "t", "to": "hv1"}]], dict(ALL_THREE, t="hv1"))
    assert "step 0: host 'hv1' memory 20480 exceeds 16384 during the step" in placement.check_plan(m, p)
    # stop a in step 0, start t on hv1 in step 1: a's memory is free again
    p = plan([[{"action": "stop", "vm": "a", "host": "hv1"}], [{"action": "start", "vm": "t", "to": "hv1"}]],
             {"b": "hv2", "c": "hv3", "t": "hv1"})
    assert placement.check_plan(m, p) == []


def test_budgets_do_not_count_a_started_vm():
    p = plan([[{"action": "start", "vm": "s", "to": "hv1"}]], dict(ALL_THREE, s="hv1"))
    assert placement.check_plan(base(max_migrations=0), p) == []


def test_a_saved_vm_may_be_resumed_on_any_host_but_a_stopped_one_may_not():
    m = base()
    m["vms"].append({"name": "z", "state": "saved", "cpu": 1, "memory_mib": GIB})
    assert placement.check_plan(m, plan([[{"action": "resume", "vm": "z", "to": "hv2"}]], dict(ALL_THREE, z="hv2"))) == []
    assert placement.check_plan(m, plan([], ALL_THREE)) == []  # it may also stay saved
    assert "vm 's' is stopped, it cannot be acted on" in placement.check_plan(
        m, plan([[{"action": "resume", "vm": "s", "to": "hv2"}]], dict(ALL_THREE, s="hv2")))[0]


@pytest.mark.parametrize("step, target, needle", [
    ([{"action": "start", "vm": "c", "to": "hv1"}], ALL_THREE, "vm 'c' is started but it is already running"),
    ([{"action": "start", "vm": "s", "to": "off"}], dict(ALL_THREE, s="off"), "started on unknown or offline host 'off'"),
    ([{"action": "start", "vm": "s", "to": "hv1"}], ALL_THREE, "target: must list exactly the running/paused vms (missing ['s']"),
    ([{"action": "stop", "vm": "c", "host": "hv1"}], {"a": "hv1", "b": "hv2"}, "vm 'c' stopped on 'hv1' but is on 'hv3'"),
    ([{"action": "stop", "vm": "c", "host": "hv3"}], ALL_THREE, "target: must list exactly the running/paused vms (missing [], extra ['c']"),
    ([{"action": "stop", "vm": "s", "host": "hv3"}], ALL_THREE, "vm 's' is stopped, it cannot be acted on"),
])
def test_start_and_stop_mistakes_are_caught(step, target, needle):
    errors = placement.check_plan(base(), plan([step], target))
    assert any(needle in e for e in errors), errors


def test_a_vm_stopped_by_the_plan_cannot_be_resumed_or_acted_on():
    m = base()
    m["vms"].append({"name": "z", "state": "saved", "cpu": 1, "memory_mib": GIB})
    steps = [[{"action": "resume", "vm": "z", "to": "hv2"}], [{"action": "stop", "vm": "z", "host": "hv2"}],
             [{"action": "resume", "vm": "z", "to": "hv2"}]]
    assert any("vm 'z' is stopped, it cannot be acted on" in e for e in placement.check_plan(m, plan(steps, dict(ALL_THREE, z="hv2"))))
