"""Migration durations, bandwidth allotment and link caps (placement/migration.py), hand-computed."""
from __future__ import annotations

import copy

import pytest

import placement
from placement.migration import MIB_PER_MBIT, DurationModel, allot
from placement.model import load_model
from placement.solver import plan_for_target

from helpers import host, model, vm

DM = DurationModel(setup_s=1.0, memory_share=1.0, efficiency=1.0, max_downtime_ms=300)


def test_idle_vm_is_memory_over_bandwidth_plus_setup():
    assert DM.seconds(1024, 0, 256) == pytest.approx(1 + 4)


def test_dirty_vm_resends_what_each_pass_dirtied():
    # 1024 MiB at 256 MiB/s, 128 MiB/s dirtied: passes of 4, 2, 1, 0.5 s; then 64 MiB left <= 76.8 MiB
    # (300 ms at 256 MiB/s): switch-over sends it in 0.25 s
    assert DM.seconds(1024, 128, 256) == pytest.approx(1 + 4 + 2 + 1 + 0.5 + 0.25)


def test_memory_share_and_efficiency():
    dm = DurationModel(setup_s=0.5, memory_share=0.25, efficiency=0.8, max_downtime_ms=300)
    # first pass 256 MiB at 0.8 x 64 = 51.2 MiB/s: 5 s
    assert dm.seconds(1024, 0, 64) == pytest.approx(0.5 + 5)


def test_dirty_rate_at_or_above_bandwidth_does_not_converge():
    assert DM.seconds(1024, 256, 256) is None
    assert DM.seconds(1024, 300, 256) is None
    # post-copy: one pass (4 s), then what it dirtied meanwhile (all 1024 MiB) pulled: 4 s more
    assert DM.postcopy_seconds(1024, 300, 256) == pytest.approx(1 + 4 + 4)


def test_required_bandwidth_is_the_convergence_threshold():
    need = DM.required_bandwidth(1024, 128)
    assert 128 < need < 256
    assert DM.seconds(1024, 128, need) is not None
    assert DM.seconds(1024, 128, need * 0.98) is None
    assert DM.required_bandwidth(1024, 0) == 0


def test_allot_is_max_min_fair_and_respects_every_cap():
    # m0 a->b and m1 a->c share host a (100); m1 also crosses an uplink of 20: m1 = 20, m0 gets the rest (80)
    cap = {("host", "a"): 100, ("host", "b"): 100, ("host", "c"): 100, ("uplink", "r2"): 20}
    paths = [(("host", "a"), ("host", "b")), (("host", "a"), ("host", "c"), ("uplink", "r2"))]
    assert allot(paths, cap) == pytest.approx([80, 20])
    # three on one source: a third each
    three = [(("host", "a"), ("host", x)) for x in "bcb"]
    shares = allot(three, cap)
    assert shares == pytest.approx([100 / 3] * 3)


def net_model(dirty: list[float], **options) -> dict:
    hosts = [dict(host("hv1"), rack="r1"), dict(host("hv2"), rack="r1"), dict(host("hv3"), rack="r2")]
    vms = [dict(vm(f"v{i}", "hv1", gib=1), dirty_mib_s=d) for i, d in enumerate(dirty)]
    m = model(hosts, vms, bandwidth_mib_s=200, **options)
    m["version"] = 2
    m["racks"] = [{"name": "r1", "uplink_mbps": 100000}, {"name": "r2", "uplink_mbps": 800}]
    return m


def test_a_dirty_vm_is_not_shared_below_what_it_needs_and_steps_stay_short():
    # v0 (1 GiB, 50 MiB/s dirty) alone at 200 MiB/s: passes 5.12, 1.28, 0.32 s, then 16 MiB: 7.8 s.
    # Sharing hv1 three ways (66 MiB/s) would take it 64 s: it goes alone, the idle VMs after it.
    m = net_model([50, 0, 0])
    plan = plan_for_target(copy.deepcopy(m), {"v0": "hv2", "v1": "hv2", "v2": "hv2"})
    assert placement.check_plan(m, plan) == []
    steps = [[(a["vm"], a["bandwidth_mib_s"], a["estimated_s"]) for a in s] for s in plan["steps"]]
    assert steps == [[("v0", 200, 7.8)], [("v1", 100, 11.24), ("v2", 100, 11.24)]]   # 1 + 1024 / 100
    assert plan["stats"]["estimated_duration_s"] == pytest.approx(7.8 + 11.24, abs=0.05)


def test_uplink_cap_bounds_cross_rack_migrations():
    # r2's uplink: 800 Mbit/s = 95.4 MiB/s; two idle VMs to hv3 share it: 47 MiB/s each (rounded down)
    m = net_model([0, 0])
    plan = plan_for_target(copy.deepcopy(m), {"v0": "hv3", "v1": "hv3"})
    assert placement.check_plan(m, plan) == []
    assert [a["bandwidth_mib_s"] for s in plan["steps"] for a in s] == [int(800 * MIB_PER_MBIT / 2)] * 2


def test_a_vm_dirtying_faster_than_it_can_send_is_planned_post_copy():
    m = net_model([500, 0])
    plan = plan_for_target(copy.deepcopy(m), {"v0": "hv2", "v1": "hv1"})
    assert placement.check_plan(m, plan) == []
    (act,), = plan["steps"]
    assert act["postcopy"] is True and plan["stats"]["postcopy_migrations"] == 1
    assert any("'v0'" in w and "post-copy" in w for w in plan["warnings"])


def test_keep_leaves_a_non_converging_vm_in_place():
    m = net_model([500, 0, 0], objective="repair")
    m["constraints"] = [{"type": "offline", "hosts": ["hv1"]}]
    m["options"]["non_converging"] = "keep"
    with pytest.raises(placement.PlacementError) as exc:   # it cannot leave the host that goes offline
        placement.solve(copy.deepcopy(m))
    assert "v0" in str(exc.value) or "hv1" in str(exc.value)
    m["constraints"] = []
    m["options"]["objective"] = "consolidate"
    plan = placement.solve(copy.deepcopy(m))
    assert plan["target"]["v0"] == "hv1" and not any(a.get("postcopy") for s in plan["steps"] for a in s)


def test_checker_refuses_an_allotment_over_a_link_cap_or_one_that_cannot_converge():
    m = net_model([50, 0, 0])
    plan = plan_for_target(copy.deepcopy(m), {"v0": "hv2", "v1": "hv2", "v2": "hv2"})
    over = copy.deepcopy(plan)
    over["steps"][1][0]["bandwidth_mib_s"] = 150
    assert any("host link 'hv1' carries 250 MiB/s" in e for e in placement.check_plan(m, over))
    slow = copy.deepcopy(plan)
    slow["steps"][0][0]["bandwidth_mib_s"] = 40
    assert any("'v0'" in e and "does not converge" in e for e in placement.check_plan(m, slow))


def test_checker_sees_a_planner_that_shares_links_below_the_need():
    # two VMs dirtying 110 MiB/s each: at half of hv1's 200 MiB/s neither could converge
    m = net_model([110, 110])
    plan = plan_for_target(copy.deepcopy(m), {"v0": "hv2", "v1": "hv2"})
    assert placement.check_plan(m, plan) == []
    assert len(plan["steps"]) == 2
    merged = copy.deepcopy(plan)
    merged["steps"] = [[dict(a, bandwidth_mib_s=100) for s in plan["steps"] for a in s]]
    assert any("does not converge" in e for e in placement.check_plan(m, merged))


@pytest.mark.parametrize("key,val,msg", [
    ("migration_link_share", 1.5, "must be a fraction in (0, 1]"),
    ("migration_efficiency", 0, "must be a positive number"),
    ("non_converging", "drop", "non_converging"),
])
def test_bad_migration_options_are_one_line_errors(key, val, msg):
    m = net_model([0])
    m["options"][key] = val
    with pytest.raises(placement.ModelError) as exc:
        load_model(m)
    assert msg in str(exc.value) and "\n" not in str(exc.value)


def test_allot_weighted_by_memory_ends_the_migrations_of_a_link_together():
    cap = {("host", "a"): 90, ("host", "b"): 100, ("host", "c"): 100}
    paths = [(("host", "a"), ("host", "b")), (("host", "a"), ("host", "c"))]
    # 2 GiB and 1 GiB from host a (90 MiB/s): 60 and 30 MiB/s, both done in 34.1 s (equal shares: 45.5 s)
    assert allot(paths, cap, [2048, 1024]) == pytest.approx([60, 30])


def test_a_plan_shares_a_link_by_memory_when_nothing_dirties():
    m = net_model([0, 0])
    m["vms"][0]["memory_mib"] = 3072
    plan = plan_for_target(copy.deepcopy(m), {"v0": "hv2", "v1": "hv2"})
    assert placement.check_plan(m, plan) == []
    # hv1's 200 MiB/s: 150 for the 3 GiB VM, 50 for the 1 GiB one; both 1 + 20.48 s
    assert [(a["vm"], a["bandwidth_mib_s"], a["estimated_s"]) for s in plan["steps"] for a in s] == [
        ("v0", 150, 21.48), ("v1", 50, 21.48)]
