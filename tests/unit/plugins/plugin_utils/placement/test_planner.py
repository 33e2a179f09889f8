from __future__ import annotations

import pytest

import placement
from placement.solver import plan_for_target

from helpers import GIB, host, model, solve_checked, vm


def swap_model(third_vm: bool = True) -> dict:
    hosts = [host("hv1", gib=16), host("hv2", gib=16), host("hv3", gib=16)]
    vms = [vm("a", "hv1", gib=12), vm("b", "hv2", gib=12)]
    if third_vm:
        vms.append(vm("c", "hv3", gib=2))
    return model(hosts, vms)


def test_swap_of_two_full_hosts_needs_a_pivot():
    m = swap_model()
    target = {"a": "hv2", "b": "hv1", "c": "hv3"}
    plan = plan_for_target(m, target)
    assert placement.check_plan(m, plan) == []
    assert plan["stats"]["pivots"] == 1
    assert plan["target"] == target
    pivot_moves = [a for s in plan["steps"] for a in s if a["to"] == "hv3"]
    assert len(pivot_moves) == 1 and plan["stats"]["migrations"] == 3


def test_swap_without_room_anywhere_suspends_and_resumes():
    hosts = [host("hv1", gib=16), host("hv2", gib=16)]
    m = model(hosts, [vm("a", "hv1", gib=12), vm("b", "hv2", gib=12)])
    plan = plan_for_target(m, {"a": "hv2", "b": "hv1"})
    assert placement.check_plan(m, plan) == []
    kinds = [a["action"] for s in plan["steps"] for a in s]
    assert kinds.count("suspend") == 1 and kinds.count("resume") == 1


def test_three_cycle_terminates():
    hosts = [host(f"hv{i}", gib=16) for i in range(1, 5)]
    vms = [vm("a", "hv1", gib=12), vm("b", "hv2", gib=12), vm("c", "hv3", gib=12), vm("d", "hv4", gib=1)]
    m = model(hosts, vms)
    plan = plan_for_target(m, {"a": "hv2", "b": "hv3", "c": "hv1", "d": "hv4"})
    assert placement.check_plan(m, plan) == []
    assert plan["stats"]["pivots"] >= 1


def test_in_flight_memory_counts_on_both_ends():
    # b must leave hv2 before a can arrive: two steps, never one
    hosts = [host("hv1", gib=16), host("hv2", gib=16), host("hv3", gib=64)]
    vms = [vm("a", "hv1", gib=10), vm("b", "hv2", gib=10), vm("c", "hv3", gib=1)]
    m = model(hosts, vms)
    plan = plan_for_target(m, {"a": "hv2", "b": "hv3", "c": "hv3"})
    assert placement.check_plan(m, plan) == []
    assert [[a["vm"] for a in s] for s in plan["steps"]] == [["b"], ["a"]]


def test_per_host_migration_cap():
    hosts = [host("hv1", gib=64)] + [host(f"hv{i}", gib=64) for i in range(2, 6)]
    vms = [vm(f"v{i}", "hv1", gib=4) for i in range(4)] + [vm(f"w{i}", f"hv{i}", gib=40) for i in range(2, 6)]
    cons = [{"type": "offline", "hosts": ["hv1"]}]
    free = solve_checked(model(hosts, vms, cons, objective="repair"))
    assert free["stats"]["steps"] == 1
    capped = solve_checked(model(hosts, vms, cons, objective="repair", max_parallel_migrations_per_host=1))
    assert capped["stats"]["steps"] == 4
    # hv1 sends the same 16 GiB either way: the source link is the bottleneck
    assert capped["stats"]["estimated_duration_s"] >= free["stats"]["estimated_duration_s"]


def test_duration_uses_bandwidth():
    hosts = [host("hv1"), host("hv2")]
    m = model(hosts, [vm("a", "hv1", gib=10), vm("b", "hv2", gib=20)], bandwidth_mib_s=1024)
    plan = solve_checked(m)
    assert plan["stats"]["estimated_duration_s"] == 11.0   # 10 GiB at 1024 MiB/s plus the 1 s setup (migration.py)
    assert plan["stats"]["memory_moved_mib"] == 10 * GIB


def test_continuous_spread_is_kept_during_the_plan():
    hosts = [host("hv1", gib=32), host("hv2", gib=32), host("hv3", gib=32)]
    vms = [vm("a", "hv1", gib=4), vm("b", "hv2", gib=4), vm("c", "hv3", gib=4)]
    m = model(hosts, vms, [{"type": "spread", "vms": ["a", "b"], "continuous": True}])
    plan = plan_for_target(m, {"a": "hv2", "b": "hv1", "c": "hv3"})
    assert placement.check_plan(m, plan) == []
    assert plan["stats"]["pivots"] >= 1  # a and b may not even meet in flight


def test_random_tight_reconfigurations_always_yield_valid_plans():
    """Random pairs of packings on small full hosts: the planner must terminate with a valid plan."""
    import random  # pylint: disable=import-outside-toplevel
    done = 0
    for seed in range(80):
        rng = random.Random(seed)
        n_hosts = rng.randint(2, 5)
        n_vms = rng.randint(2, 4 * n_hosts)
        sizes = [rng.randint(1, 10) for _unused in range(n_vms)]

        def packing(rng=rng, n_hosts=n_hosts, n_vms=n_vms, sizes=sizes):
            load = [0] * n_hosts
            out = []
            for j in range(n_vms):
                cands = [h for h in range(n_hosts) if load[h] + sizes[j] <= 16]
                if not cands:
                    return None
                h = rng.choice(cands)
                load[h] += sizes[j]
                out.append(h)
            return out

        start, end = packing(), packing()
        if start is None or end is None:
            continue
        m = model([{"name": f"h{i}", "cpu": 16, "memory_mib": 16} for i in range(n_hosts)],
                  [{"name": f"v{j}", "host": f"h{start[j]}", "cpu": 1, "memory_mib": sizes[j]} for j in range(n_vms)],
                  max_parallel_migrations_per_host=rng.choice([None, 1, 2]))
        plan = plan_for_target(m, {f"v{j}": f"h{end[j]}" for j in range(n_vms)})
        assert placement.check_plan(m, plan) == [], seed
        done += 1
    assert done > 40


def test_allow_suspend_false_uses_a_pivot_or_fails_cleanly():
    hosts = [host("hv1", gib=16), host("hv2", gib=16)]
    m = model(hosts, [vm("a", "hv1", gib=12), vm("b", "hv2", gib=12)], allow_suspend=False)
    with pytest.raises(placement.PlacementError, match="allow_suspend is false"):
        plan_for_target(m, {"a": "hv2", "b": "hv1"})
    m3 = swap_model()
    m3["options"]["allow_suspend"] = False
    plan = plan_for_target(m3, {"a": "hv2", "b": "hv1", "c": "hv3"})
    assert placement.check_plan(m3, plan) == [] and plan["stats"]["pivots"] == 1


def test_a_suspend_names_its_host_and_the_resume_its_target_in_to():
    """Plan actions: suspend (and stop) on the VM's "host"; resume (and start) on "to", the VM's target."""
    m = model([host("hv1", gib=16), host("hv2", gib=16)], [vm("a", "hv1", gib=12), vm("b", "hv2", gib=12)])
    plan = plan_for_target(m, {"a": "hv2", "b": "hv1"})
    (suspend,) = [a for s in plan["steps"] for a in s if a["action"] == "suspend"]
    (resume,) = [a for s in plan["steps"] for a in s if a["action"] == "resume"]
    assert set(suspend) == {"action", "vm", "host"} and set(resume) == {"action", "vm", "to"}
    assert resume["vm"] == suspend["vm"] and resume["to"] == plan["target"][resume["vm"]]
    assert suspend["host"] == {"a": "hv1", "b": "hv2"}[suspend["vm"]]
    # the independent checker reads the resume's host from "to": the plan holds, a wrong one is a violation
    assert placement.check_plan(m, plan) == []
    resume["to"] = suspend["host"]
    assert placement.check_plan(m, plan) != []
