from __future__ import annotations

import pytest

import placement
from placement import InfeasibleError

from helpers import GIB, host, model, solve_checked, vm


def cluster(n_hosts: int = 4, **kw) -> tuple[list, list]:
    hosts = [host(f"hv{i}", **kw) for i in range(1, n_hosts + 1)]
    vms = [vm(f"v{i}", f"hv{i}", gib=8 + i) for i in range(1, n_hosts + 1)]
    return hosts, vms


def test_ban_keeps_vm_off_host():
    hosts, vms = cluster()
    # unconstrained, everything would gather on hv4 (largest vm)
    plan = solve_checked(model(hosts, vms, [{"type": "ban", "vms": ["v1"], "hosts": ["hv4"], "continuous": True}]))
    assert plan["target"]["v1"] != "hv4"
    assert plan["stats"]["hosts_used_after"] == 1
    free = solve_checked(model(hosts, vms))
    assert set(free["target"].values()) == {"hv4"}


def test_fence_keeps_vms_inside():
    hosts, vms = cluster()
    plan = solve_checked(model(hosts, vms, [{"type": "fence", "vms": ["v4", "v3"], "hosts": ["hv1", "hv2"]}]))
    assert plan["target"]["v4"] in ("hv1", "hv2") and plan["target"]["v3"] in ("hv1", "hv2")
    assert plan["stats"]["hosts_used_after"] == 1


def test_spread_keeps_vms_apart():
    hosts, vms = cluster()
    plan = solve_checked(model(hosts, vms, [{"type": "spread", "vms": ["v1", "v2", "v3"], "continuous": True}]))
    t = plan["target"]
    assert len({t["v1"], t["v2"], t["v3"]}) == 3
    assert plan["stats"]["hosts_used_after"] == 3


def test_gather_brings_vms_together():
    hosts, vms = cluster()
    plan = solve_checked(model(hosts, vms, [{"type": "gather", "vms": ["v1", "v2"]}]), objective="repair")
    assert plan["target"]["v1"] == plan["target"]["v2"]
    assert plan["stats"]["migrations"] == 1   # the smaller one moves


def test_continuous_gather_never_moves():
    hosts = [host("hv1"), host("hv2")]
    vms = [vm("a", "hv1", gib=4), vm("b", "hv1", gib=4), vm("c", "hv2", gib=30)]
    plan = solve_checked(model(hosts, vms, [{"type": "gather", "vms": ["a", "b"], "continuous": True}]))
    assert plan["target"]["a"] == plan["target"]["b"] == "hv1"


def test_lonely_has_no_foreign_neighbours():
    hosts, vms = cluster()
    plan = solve_checked(model(hosts, vms, [{"type": "lonely", "vms": ["v4"], "continuous": True}]))
    t = plan["target"]
    assert all(h != t["v4"] for v, h in t.items() if v != "v4")
    assert plan["stats"]["hosts_used_after"] == 2


def test_root_never_moves():
    hosts, vms = cluster()
    plan = solve_checked(model(hosts, vms, [{"type": "root", "vms": ["v1"]}]))
    assert plan["target"]["v1"] == "hv1"
    assert all(a["vm"] != "v1" for step in plan["steps"] for a in step)
    assert plan["stats"]["hosts_used_after"] == 1


def test_offline_evacuates_host():
    hosts, vms = cluster()
    plan = solve_checked(model(hosts, vms, [{"type": "offline", "hosts": ["hv2"]}], objective="repair"))
    assert plan["target"]["v2"] != "hv2"
    assert "hv2" in plan["hosts_freed"]
    assert plan["stats"]["migrations"] == 1


def test_max_online_caps_hosts_used_in_repair():
    hosts, vms = cluster()
    plan = solve_checked(model(hosts, vms, [{"type": "max_online", "amount": 2}], objective="repair"))
    assert plan["stats"]["hosts_used_after"] <= 2


def test_continuous_max_online_plan_never_exceeds_cap():
    hosts = [host("hv1", gib=16), host("hv2", gib=16), host("hv3", gib=16)]
    vms = [vm("a", "hv1", gib=12), vm("b", "hv2", gib=2)]
    m = model(hosts, vms, [{"type": "max_online", "amount": 2, "continuous": True},
                           {"type": "offline", "hosts": ["hv1"]}], objective="repair")
    plan = solve_checked(m)
    assert plan["target"]["a"] in ("hv2", "hv3")


def test_overbook_cpu_allows_more_vcpus():
    hosts = [host("hv1", cpu=8), host("hv2", cpu=8)]
    vms = [vm("a", "hv1", cpu=6), vm("b", "hv1", cpu=6)]
    without = solve_checked(model(hosts, vms, objective="repair"))
    assert without["stats"]["migrations"] == 1
    plan = solve_checked(model(hosts, vms, [{"type": "overbook", "resource": "cpu", "ratio": 2.0}], objective="repair"))
    assert plan["status"] == "unchanged"


def test_overbook_memory_below_one_reserves_headroom():
    hosts = [host("hv1", gib=64), host("hv2", gib=64)]
    vms = [vm("a", "hv1", gib=30), vm("b", "hv2", gib=30)]
    plan = solve_checked(model(hosts, vms, [{"type": "overbook", "resource": "memory", "ratio": 0.9, "hosts": ["hv1", "hv2"]}]))
    assert plan["stats"]["hosts_used_after"] == 2   # 60 GiB > 57.6 GiB usable


def test_preserve_reserves_resources():
    hosts = [host("hv1", cpu=16), host("hv2", cpu=16)]
    vms = [vm("a", "hv1", cpu=1), vm("b", "hv2", cpu=2)]
    plan = solve_checked(model(hosts, vms, [{"type": "preserve", "vms": ["a"], "resource": "cpu", "amount": 15}]))
    assert plan["stats"]["hosts_used_after"] == 2
    plain = solve_checked(model(hosts, vms))
    assert plain["stats"]["hosts_used_after"] == 1


def test_capacity_constraint_limits_a_host():
    hosts = [host("hv1", gib=64), host("hv2", gib=64)]
    vms = [vm("a", "hv1", gib=20), vm("b", "hv2", gib=20)]
    plan = solve_checked(model(hosts, vms, [{"type": "capacity", "hosts": ["hv1", "hv2"], "resource": "memory",
                                             "amount": 30 * GIB}]))
    assert plan["stats"]["hosts_used_after"] == 2


@pytest.mark.parametrize("constraints, vms_extra, needle", [
    ([{"type": "fence", "vms": ["v1"], "hosts": ["hv3"]}, {"type": "ban", "vms": ["v1"], "hosts": ["hv3"]}], [],
     "constraint #0 (fence ['v1'] to ['hv3']) conflicts with constraint #1 (ban ['v1'] from ['hv3'])"),
    ([{"type": "fence", "vms": ["big"], "hosts": ["hv1", "hv2"]}], [vm("big", "hv3", gib=100)],
     "vm 'big' (1 cpu, 100 GiB) fits on no host allowed by constraint #0 (fence"),
    ([{"type": "max_online", "amount": 1}], [],
     "memory: total demand 46 GiB exceeds the 40 GiB of online hosts allowed by constraint #0 (max_online 1)"),
    ([{"type": "spread", "vms": ["v1", "v2", "v3"]}, {"type": "fence", "vms": ["v1", "v2", "v3"], "hosts": ["hv1", "hv2"]}],
     [], "constraint #0 (spread ['v1', 'v2', 'v3']): 3 vms but only 2 allowed hosts"),
    ([{"type": "gather", "vms": ["v1", "v2"]}, {"type": "spread", "vms": ["v1", "v2"]}], [],
     "constraint #0 (gather ['v1', 'v2']) conflicts with constraint #1 (spread"),
    ([{"type": "root", "vms": ["v1"]}, {"type": "offline", "hosts": ["hv1"]}], [],
     "constraint #0 (root ['v1']) conflicts with constraint #1 (offline ['hv1'])"),
    ([{"type": "gather", "vms": ["v1", "v2", "v3"]}], [],
     "constraint #0 (gather ['v1', 'v2', 'v3']): together the vms need"),
])
def test_infeasible_explanations_name_the_constraint(constraints, vms_extra, needle):
    hosts = [host(f"hv{i}", gib=40) for i in range(1, 4)]
    vms = [vm("v1", "hv1", gib=15), vm("v2", "hv2", gib=15), vm("v3", "hv3", gib=16)] + vms_extra
    if vms_extra:
        hosts[2]["memory_mib"] = 128 * GIB
    with pytest.raises(InfeasibleError) as err:
        placement.solve(model(hosts, vms, constraints))
    assert needle in " | ".join([err.value.explanation] + err.value.details)


def test_infeasible_after_solving_is_reported():
    # lonely + fence squeeze: every check passes alone, only the solver sees the conflict
    hosts = [host("hv1", gib=40), host("hv2", gib=40)]
    vms = [vm("a", "hv1", gib=10), vm("b", "hv2", gib=10), vm("c", "hv2", gib=10)]
    cons = [{"type": "lonely", "vms": ["a"]}, {"type": "fence", "vms": ["a", "b", "c"], "hosts": ["hv1"]}]
    with pytest.raises(InfeasibleError, match="no placement satisfies") as err:
        placement.solve(model(hosts, vms, cons))
    # each of the two constraints alone is satisfiable: both are named as the one to relax
    assert "without constraint #0 (lonely ['a']) one exists" in err.value.explanation
    assert any("constraint #1 (fence" in d for d in err.value.details)
