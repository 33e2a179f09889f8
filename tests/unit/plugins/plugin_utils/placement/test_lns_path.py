"""The large-instance path (packing + LNS) on small clusters, with every kind of constraint."""
from __future__ import annotations

import pytest

import placement
from placement import solver as solver_mod
from synthetic import make_cluster


@pytest.fixture(name="lns_only")
def fixture_lns_only(monkeypatch):
    monkeypatch.setattr(solver_mod, "DENSE_PAIRS", 0)


def constrained(seed: int = 2) -> dict:
    m = make_cluster(30, 120, seed=seed)
    names = [v["name"] for v in m["vms"] if v["state"] == "running"]
    hosts = [h["name"] for h in m["hosts"]]
    m["constraints"] = [
        {"type": "spread", "vms": names[0:4], "continuous": True},
        {"type": "gather", "vms": names[4:6]},
        {"type": "lonely", "vms": names[6:8]},
        {"type": "root", "vms": names[8:9]},
        {"type": "ban", "vms": names[9:15], "hosts": hosts[0:10]},
        {"type": "fence", "vms": names[15:20], "hosts": hosts[10:25]},
        {"type": "offline", "hosts": hosts[29:30]},
        {"type": "preserve", "vms": names[20:22], "resource": "cpu", "amount": 8},
        {"type": "overbook", "resource": "cpu", "ratio": 1.2, "hosts": hosts[0:5]},
    ]
    return m


@pytest.mark.parametrize("objective", ["consolidate", "repair", "balance"])
def test_lns_path_respects_all_constraints(lns_only, objective):
    m = constrained()
    plan = placement.solve(m, objective=objective, time_limit_s=4, seed=1, max_iterations=40)
    assert placement.check_plan(m, plan) == []
    s = plan["stats"]
    if objective == "consolidate":
        assert s["hosts_used_after"] < s["hosts_used_before"]
    if objective == "balance":
        assert s["cpu_peak_utilisation_after"] <= s["cpu_peak_utilisation_before"]


def test_lns_path_with_budget(lns_only):
    m = make_cluster(30, 120, seed=4)
    plan = placement.solve(m, objective="consolidate", time_limit_s=4, seed=1, max_iterations=40,
                           max_migrations=25)
    assert plan["stats"]["migrations"] <= 25
    assert placement.check_plan(m, dict(plan)) == []


def test_lns_path_max_online(lns_only):
    m = make_cluster(30, 120, seed=5)
    m["constraints"] = [{"type": "max_online", "amount": 24}]
    plan = placement.solve(m, objective="repair", time_limit_s=4, seed=1, max_iterations=40)
    assert plan["stats"]["hosts_used_after"] <= 24
    assert placement.check_plan(m, plan) == []


def test_lns_path_repairs_a_failed_greedy_start(lns_only):
    from helpers import host, model, vm  # pylint: disable=import-outside-toplevel
    hosts = [host("h1", gib=16), host("h2", gib=16), host("h3", gib=16)]
    # evacuating h3: d (8 GiB) fits nowhere until c moves from h2 to h1
    vms = [vm("a", "h1", gib=10), vm("b", "h2", gib=6), vm("c", "h2", gib=4), vm("d", "h3", gib=8)]
    m = model(hosts, vms, [{"type": "offline", "hosts": ["h3"]}], objective="repair")
    plan = placement.solve(m)
    assert placement.check_plan(m, plan) == []
    assert plan["target"]["d"] == "h2" and plan["target"]["c"] == "h1"
