from __future__ import annotations

import placement

from helpers import GIB, host, model, solve_checked, vm


def four_half_empty() -> dict:
    hosts = [host(f"hv{i}") for i in range(1, 5)]
    vms = [vm("a", "hv1", gib=8), vm("b", "hv2", gib=16), vm("c", "hv3", gib=4), vm("d", "hv4", gib=2)]
    return model(hosts, vms)


def test_consolidate_uses_fewest_hosts_then_least_memory():
    plan = solve_checked(four_half_empty())
    s = plan["stats"]
    assert s["hosts_used_before"] == 4 and s["hosts_used_after"] == 1 == s["hosts_lower_bound"]
    # the 16 GiB VM stays; everything else comes to it
    assert set(plan["target"].values()) == {"hv2"}
    assert s["memory_moved_mib"] == (8 + 4 + 2) * GIB
    assert s["migrations"] == 3
    assert plan["status"] == "optimal"
    assert sorted(plan["hosts_freed"]) == ["hv1", "hv3", "hv4"]
    assert s["estimated_duration_s"] > 0


def test_min_gain_hosts_keeps_cluster_unchanged():
    plan = solve_checked(four_half_empty(), min_gain_hosts=4)
    assert plan["status"] == "unchanged" and plan["steps"] == []


def test_repair_moves_least_memory_and_switches_on_nothing():
    hosts = [host("hv1", cpu=16), host("hv2", cpu=16), host("hv3", cpu=16)]
    vms = [vm("big", "hv1", cpu=10, gib=32), vm("small", "hv1", cpu=10, gib=8), vm("other", "hv2", cpu=2, gib=8)]
    plan = solve_checked(model(hosts, vms, objective="repair"))
    assert plan["target"] == {"big": "hv1", "small": "hv2", "other": "hv2"}
    assert plan["stats"]["memory_moved_mib"] == 8 * GIB
    assert plan["hosts_switched_on"] == []
    assert plan["stats"]["overloaded_hosts_before"] == 1


def test_repair_of_a_viable_cluster_is_unchanged():
    plan = solve_checked(four_half_empty(), objective="repair")
    assert plan["status"] == "unchanged" and plan["stats"]["migrations"] == 0


def test_balance_lowers_the_peak_on_the_same_hosts():
    hosts = [host("hv1", cpu=16), host("hv2", cpu=16), host("hv3", cpu=16)]
    vms = [vm("a", "hv1", cpu=4), vm("b", "hv1", cpu=4), vm("c", "hv1", cpu=4), vm("d", "hv2", cpu=1)]
    plan = solve_checked(model(hosts, vms, objective="balance"))
    s = plan["stats"]
    assert s["cpu_peak_utilisation_before"] == 0.75
    assert s["cpu_peak_utilisation_after"] == 0.5
    assert set(plan["target"].values()) == {"hv1", "hv2"}
    assert s["migrations"] == 1


def test_paused_vm_holds_memory_but_no_cpu():
    hosts = [host("hv1", cpu=4, gib=16), host("hv2", cpu=4, gib=16)]
    vms = [vm("p", "hv1", cpu=4, gib=12, state="paused"), vm("r", "hv2", cpu=4, gib=12)]
    plan = solve_checked(model(hosts, vms))
    assert plan["stats"]["hosts_used_after"] == 2   # memory blocks it, cpu would not


def test_same_seed_same_plan_lns():
    from synthetic import make_cluster  # pylint: disable=import-outside-toplevel
    m = make_cluster(40, 200, seed=3)
    m["options"] = {"time_limit_s": 60, "seed": 7, "max_iterations": 15}
    p1 = placement.solve(m)
    p2 = placement.solve(m)
    assert p1["target"] == p2["target"] and p1["steps"] == p2["steps"]
    assert placement.check_plan(m, p1) == []
    assert p1["stats"]["hosts_used_after"] < p1["stats"]["hosts_used_before"]


def test_same_seed_same_plan_dense():
    from synthetic import make_cluster  # pylint: disable=import-outside-toplevel
    m = make_cluster(12, 60, seed=5)
    p1 = solve_checked(m, time_limit_s=2, seed=1)
    p2 = placement.solve(m, time_limit_s=2, seed=1)
    assert p1["target"] == p2["target"]


def test_budget_max_migrations():
    plan = solve_checked(four_half_empty(), max_migrations=1)
    assert plan["stats"]["migrations"] == 1
    assert plan["stats"]["hosts_used_after"] == 3


def test_budget_max_memory_moved():
    plan = solve_checked(four_half_empty(), max_memory_moved_mib=6 * GIB)
    s = plan["stats"]
    assert s["memory_moved_mib"] <= 6 * GIB
    assert s["hosts_used_after"] == 2   # c (4) + d (2) can move, a (8) cannot


def test_budget_too_small_for_repair_is_infeasible():
    hosts = [host("hv1", cpu=16), host("hv2", cpu=16)]
    vms = [vm("a", "hv1", cpu=10), vm("b", "hv1", cpu=10)]
    try:
        placement.solve(model(hosts, vms, objective="repair", max_migrations=0))
    except placement.InfeasibleError as exc:
        assert "max_migrations" in exc.explanation or "max_migrations" in str(exc.details)
    else:
        raise AssertionError("expected InfeasibleError")
