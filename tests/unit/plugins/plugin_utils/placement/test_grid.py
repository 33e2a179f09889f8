"""Partitioned solving of a grid of clusters (placement.grid), on small hand-checked instances."""
from __future__ import annotations

import copy

import pytest

import placement
from placement.grid import solve_grid
from bench_grid import make_grid


def grid_model(small1_disk: int = 0, constraints: list | None = None, b1_used: int = 3584, **options) -> dict:
    """Cluster A (a1, a2: 4 cpu, 4096 MiB each) is full: 8192 MiB of VMs, above the 0.9 fill limit by 820 MiB, so it
    must shed one 1 GiB VM. Cluster B (b1, b2) has room; b1 has `b1_used` MiB of it taken."""
    hosts = [{"name": n, "cpu": 4, "memory_mib": 4096, "cluster": c} for n, c in
             (("a1", "A"), ("a2", "A"), ("b1", "B"), ("b2", "B"))]
    vms = [{"name": "small1", "host": "a1", "cpu": 0.5, "memory_mib": 1024, "disk_mib": small1_disk},
           {"name": "small2", "host": "a1", "cpu": 0.5, "memory_mib": 1024, "disk_mib": 4096},
           {"name": "big", "host": "a1", "cpu": 0.5, "memory_mib": 2048, "disk_mib": 50000},
           {"name": "x", "host": "a2", "cpu": 0.5, "memory_mib": 2048, "disk_mib": 10000},
           {"name": "y", "host": "a2", "cpu": 0.5, "memory_mib": 2048, "disk_mib": 10000},
           {"name": "bvm", "host": "b1", "cpu": 0.5, "memory_mib": b1_used}]
    opts = {"time_limit_s": 2, "seed": 0}
    opts.update(options)
    return {"version": 1, "hosts": hosts, "vms": vms, "constraints": constraints or [], "options": opts}


def checked(m: dict, **kwargs) -> dict:
    plan = solve_grid(copy.deepcopy(m), **kwargs)
    assert placement.check_plan(copy.deepcopy(m), plan) == []
    return plan


def test_a_full_cluster_sheds_its_cheapest_vm_to_a_host_with_room():
    plan = checked(grid_model())
    # small1: 1024 MiB of memory, no disk, the least copied per MiB of relief; b1 (the fullest host of B) has only
    # 512 MiB free, so it goes to b2
    assert plan["grid"]["moves"] == [{"action": "migrate", "vm": "small1", "from": "a1", "to": "b2", "memory_mib": 1024,
                                      "disk_mib": 0, "from_cluster": "A", "to_cluster": "B"}]
    assert plan["steps"][0] == plan["grid"]["moves"]
    assert plan["stats"]["migrations_between_clusters"] == 1 and plan["stats"]["disk_copied_mib"] == 0
    assert plan["target"]["small1"] in ("b1", "b2") and {plan["target"][v] for v in ("small2", "big", "x", "y")} <= {"a1", "a2"}
    assert set(plan["grid"]["clusters"]) == {"A", "B"}


def test_the_disk_copied_counts_in_the_cost_of_a_move():
    """small1 with a 40 GiB disk costs more to move than small2 (4 GiB disk): small2 goes instead."""
    plan = checked(grid_model(small1_disk=40960))
    assert [m["vm"] for m in plan["grid"]["moves"]] == ["small2"]
    assert plan["stats"]["disk_copied_mib"] == 4096


def test_a_vm_named_by_a_constraint_stays_in_its_cluster_and_the_constraint_reaches_it():
    plan = checked(grid_model(constraints=[{"type": "root", "vms": ["small1"]}]))
    assert [m["vm"] for m in plan["grid"]["moves"]] == ["small2"]
    assert plan["target"]["small1"] == "a1"


def test_a_constraint_over_two_clusters_is_refused_naming_it():
    expected = r"constraints\[0\] \(spread\): names hosts or VMs of several clusters \('A', 'B'\)"
    with pytest.raises(placement.ModelError, match=expected):
        solve_grid(grid_model(constraints=[{"type": "spread", "vms": ["x", "bvm"]}]))


def test_no_room_anywhere_is_reported_naming_the_cluster():
    with pytest.raises(placement.InfeasibleError, match=r"cluster 'A' needs .* memory capacity more than the fill limit"):
        solve_grid(grid_model(b1_used=4096, time_limit_s=1), fill_limit=0.5)


def test_clusters_within_the_fill_limit_move_nothing_between_clusters():
    m = grid_model()
    m["vms"] = [v for v in m["vms"] if v["name"] != "y"]
    plan = checked(m)
    assert plan["grid"]["moves"] == [] and plan["stats"]["migrations_between_clusters"] == 0


def test_model_without_clusters_is_one_cluster():
    m = grid_model()
    for h in m["hosts"]:
        del h["cluster"]
    plan = checked(m)
    assert list(plan["grid"]["clusters"]) == [""] and plan["grid"]["moves"] == []


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"workers": 0}, "workers must be a positive integer"),
    ({"fill_limit": 1.5}, r"fill_limit must be a number in \(0, 1\]"),
    ({"objective": "schedule"}, "objective 'schedule' is not partitioned"),
])
def test_bad_arguments_are_refused(kwargs, expected):
    with pytest.raises(placement.ModelError, match=expected):
        solve_grid(grid_model(), **kwargs)


def test_clusters_are_solved_in_parallel_processes_each_to_its_lower_bound():
    m = make_grid(3, 40, 200)
    m["options"] = {"time_limit_s": 6, "seed": 0}
    plan = checked(m, workers=2)
    per = plan["grid"]["clusters"]
    assert sorted(per) == ["c0", "c1", "c2"]
    assert all(c["hosts_used_after"] == c["hosts_lower_bound"] for c in per.values()), per
    assert plan["stats"]["hosts_used_after"] == sum(c["hosts_used_after"] for c in per.values())


def test_an_overloaded_synthetic_cluster_sheds_to_the_others():
    m = make_grid(3, 30, 150, short=2 / 3)   # c0 keeps a third of its hosts: its VMs no longer fit within the fill limit
    m["options"] = {"time_limit_s": 4, "seed": 0}
    plan = checked(m)
    moves = plan["grid"]["moves"]
    assert moves and all(mv["from_cluster"] == "c0" and mv["disk_mib"] == 20480 for mv in moves)
    assert plan["stats"]["disk_copied_mib"] == 20480 * len(moves)


def test_moves_between_clusters_keep_the_parallel_migrations_cap():
    """Cluster A must shed two VMs onto B's one empty host: with one migration per host at a time, two grid steps."""
    m = grid_model(b1_used=4096, max_parallel_migrations_per_host=1)
    m["hosts"].append({"name": "b3", "cpu": 4, "memory_mib": 4096, "cluster": "B"})
    m["vms"].append({"name": "z", "host": "a2", "cpu": 0.5, "memory_mib": 1024})
    plan = checked(m)   # check_plan counts the migrations per host and step
    moves = plan["grid"]["moves"]
    assert len(moves) == 2
    assert plan["steps"][0] == moves[:1] and plan["steps"][1] == moves[1:]


def test_a_cluster_left_without_vms_and_a_saved_vm_named_by_a_constraint():
    m = grid_model()
    m["hosts"].append({"name": "c1", "cpu": 4, "memory_mib": 4096, "cluster": "C", "state": "offline"})   # no room, no VM
    m["vms"].append({"name": "saved1", "host": None, "state": "saved", "memory_mib": 512})
    m["constraints"] = [{"type": "ban", "vms": ["saved1"], "hosts": ["a1"]}]
    plan = checked(m)
    assert plan["grid"]["clusters"]["C"]["hosts_used_after"] == 0
