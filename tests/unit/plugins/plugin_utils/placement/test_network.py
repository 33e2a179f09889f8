"""Network model (version 2): validation, the independent checker on NICs and uplinks, the solver
obeying them on the dense and the LNS path, the planner guard, and the cross-rack objective."""
from __future__ import annotations

import copy

import pytest
from helpers import GIB, solve_checked

import placement
from placement import ModelError, check_plan, load_model, solve
from placement.network import Network
from placement.solver import plan_for_target


def host(name, rack=None, nic=10000, cpu=16, gib=64):
    h = {"name": name, "cpu": cpu, "memory_mib": gib * GIB, "net_mbps": nic}
    if rack is not None:
        h["rack"] = rack
    return h


def vm(name, on, net=0.0, cpu=1.0, gib=4, state="running"):
    return {"name": name, "host": on, "state": state, "cpu": cpu, "memory_mib": gib * GIB, "net_mbps": net}


def model(hosts, vms, racks=None, traffic=None, **options):
    opts = {"time_limit_s": 5, "seed": 0}
    opts.update(options)
    m = {"version": 2, "hosts": hosts, "vms": vms, "options": opts}
    if racks is not None:
        m["racks"] = racks
    if traffic is not None:
        m["traffic"] = traffic
    return m


def network_of(m):
    return next(c for c in load_model(copy.deepcopy(m)).constraints if isinstance(c, Network))


# --- validation ------------------------------------------------------------------------------
def _base():
    return model([host("hv1", "r1"), host("hv2", "r2")], [vm("a", "hv1", 100), vm("b", "hv2", 100)],
                 racks=[{"name": "r1", "uplink_mbps": 1000}, {"name": "r2", "uplink_mbps": 1000}],
                 traffic=[{"vms": ["a", "b"], "mbps": 50}])


@pytest.mark.parametrize("mutate, expected", [
    (lambda m: m.update(version=1), "model: field 'racks' needs model version 2; set \"version\": 2"),
    (lambda m: [m.update(version=1), m.pop("racks"), m.pop("traffic")], "hosts[0] (name 'hv1'): field 'net_mbps' needs model version 2"),
    (lambda m: m["hosts"][0].update(rack="r9"), "hosts[0] (name 'hv1'): rack 'r9' is not declared; add"),
    (lambda m: m["hosts"][0].update(net_mbps=-1), "hosts[0] (name 'hv1'): field 'net_mbps' must be a non-negative number"),
    (lambda m: m["vms"][1].update(net_mbps="fast"), "vms[1] (name 'b'): field 'net_mbps' must be a non-negative number"),
    (lambda m: m["vms"][1].update(dirty_mib_s=-2), "vms[1] (name 'b'): field 'dirty_mib_s' must be a non-negative number"),
    (lambda m: m["racks"].append({"name": "r1", "uplink_mbps": 5}), "racks[2] (name 'r1'): duplicate rack name 'r1'"),
    (lambda m: m["racks"].append({"name": "r3", "uplink_mbps": 5}), "racks (name 'r3'): no host is in this rack"),
    (lambda m: m["racks"][0].pop("uplink_mbps"), "racks[0] (name 'r1'): missing field 'uplink_mbps'"),
    (lambda m: m["racks"][0].update(speed=1), "racks[0] (name 'r1'): unknown field(s) 'speed'"),
    (lambda m: m.update(racks={}), "model: field 'racks' must be a list"),
    (lambda m: m["traffic"].append({"vms": ["a"], "mbps": 5}), "traffic[1]: field 'vms' must be a list of at least 2"),
    (lambda m: m["traffic"].append({"vms": ["a", "zz"], "mbps": 5}), "traffic[1]: unknown vm 'zz'; list only vms"),
    (lambda m: m["traffic"].append({"vms": ["a", "a"], "mbps": 5}), "traffic[1]: field 'vms' lists a vm twice"),
    (lambda m: m["traffic"].append({"vms": ["a", "b"]}), "traffic[1]: missing field 'mbps'"),
    (lambda m: m["options"].update(cross_rack_mbps_per_host=-3), "options: field 'cross_rack_mbps_per_host' must be"),
])
def test_malformed_network_fields_name_the_entry_and_the_fix(mutate, expected):
    m = _base()
    mutate(m)
    with pytest.raises(ModelError) as err:
        load_model(m)
    assert str(err.value).startswith(expected), str(err.value)
    assert "\n" not in str(err.value)


def test_version_1_models_are_read_as_before():
    m = {"version": 1, "hosts": [{"name": "hv1", "cpu": 4, "memory_mib": 4096}],
         "vms": [{"name": "a", "host": "hv1", "cpu": 1, "memory_mib": 1024}]}
    loaded = load_model(m)
    assert loaded.constraints == [] and loaded.hosts[0].net_mbps is None
    assert "cross_rack_mbps" not in solve(m, time_limit_s=1)["stats"]


def test_traffic_spread_evenly_over_the_pairs_of_a_group():
    m = model([host("hv1")], [vm(n, "hv1") for n in "abcd"], traffic=[{"vms": ["a", "b", "c"], "mbps": 30},
                                                                      {"vms": ["a", "b"], "mbps": 5}])
    assert network_of(m).pairs == {("a", "b"): 15.0, ("a", "c"): 10.0, ("b", "c"): 10.0}


# --- the independent checker -----------------------------------------------------------------
def _stay(m):
    return {"version": 1, "steps": [], "target": {v["name"]: v["host"] for v in m["vms"]}}


def test_checker_counts_own_rates_and_traffic_between_hosts_on_both_nics():
    m = model([host("hv1", nic=1000), host("hv2", nic=1000)],
              [vm("a", "hv1", 600), vm("b", "hv2", 100)], traffic=[{"vms": ["a", "b"], "mbps": 300}])
    assert check_plan(m, _stay(m)) == []          # hv1: 600 + 300, hv2: 100 + 300
    m["traffic"][0]["mbps"] = 500
    problems = check_plan(m, _stay(m))
    assert problems == ["end: network (host NICs and rack uplinks): host 'hv1' NIC carries 1100 Mbit/s, more than 1000"]


def test_checker_pair_on_one_host_loads_no_nic_and_a_paused_vm_sends_nothing():
    m = model([host("hv1", nic=1000), host("hv2", nic=1000)],
              [vm("a", "hv1", 600), vm("b", "hv1", 300), vm("c", "hv2", 900, state="paused")],
              traffic=[{"vms": ["a", "b"], "mbps": 5000}, {"vms": ["a", "c"], "mbps": 5000}])
    assert check_plan(m, _stay(m)) == []


def test_checker_uplinks_carry_traffic_crossing_racks_only():
    racks = [{"name": "r1", "uplink_mbps": 400}, {"name": "r2", "uplink_mbps": 400}]
    m = model([host("hv1", "r1"), host("hv2", "r1"), host("hv3", "r2")],
              [vm("a", "hv1", 5000), vm("b", "hv2"), vm("c", "hv3")], racks=racks,
              traffic=[{"vms": ["a", "b"], "mbps": 3000}, {"vms": ["b", "c"], "mbps": 300}])
    assert check_plan(m, _stay(m)) == []          # a-b stays in r1; b-c crosses: 300 on each uplink
    m["traffic"][1]["mbps"] = 500
    assert check_plan(m, _stay(m)) == [
        "end: network (host NICs and rack uplinks): rack 'r1' uplink carries 500 Mbit/s, more than 400",
        "end: network (host NICs and rack uplinks): rack 'r2' uplink carries 500 Mbit/s, more than 400"]


def test_checker_sees_a_nic_overloaded_during_a_step():
    """A migrating VM occupies both hosts: its rate loads both NICs until the step ends."""
    m = model([host("hv1", nic=1000), host("hv2", nic=1000)], [vm("a", "hv1", 600), vm("b", "hv2", 600)])
    swap_at_once = {"version": 1, "target": {"a": "hv2", "b": "hv1"},
                    "steps": [[{"action": "migrate", "vm": "a", "from": "hv1", "to": "hv2"},
                               {"action": "migrate", "vm": "b", "from": "hv2", "to": "hv1"}]]}
    problems = check_plan(m, swap_at_once)
    assert "step 0: network (host NICs and rack uplinks): host 'hv1' NIC carries 1200 Mbit/s during the step, " \
           "more than 1000" in problems
    assert not any(p.startswith("end:") for p in problems)


def test_checker_tolerates_an_initial_overload_during_the_plan_but_not_at_the_end():
    m = model([host("hv1", nic=1000), host("hv2", nic=1000)],
              [vm("a", "hv1", 700), vm("b", "hv1", 700), vm("c", "hv2", 100)])
    fix = {"version": 1, "target": {"a": "hv1", "b": "hv2", "c": "hv2"},
           "steps": [[{"action": "migrate", "vm": "b", "from": "hv1", "to": "hv2"}]]}
    assert check_plan(m, fix) == []
    assert check_plan(m, _stay(m)) == [
        "end: network (host NICs and rack uplinks): host 'hv1' NIC carries 1400 Mbit/s, more than 1000"]


# --- the solver obeys NICs and uplinks -------------------------------------------------------
def _nic_bound_model():
    # cpu and memory would fit on one host; the NICs (1000) take at most two VMs of 400 each
    return model([host(f"hv{i}", nic=1000) for i in range(4)], [vm(f"v{i}", f"hv{i}", 400) for i in range(4)])


@pytest.mark.parametrize("dense", [True, False])
def test_solver_packs_nic_capacity_like_cpu_and_memory(dense, monkeypatch):
    if not dense:
        monkeypatch.setattr(placement.solver, "DENSE_PAIRS", 0)
    plan = solve_checked(_nic_bound_model())
    assert plan["stats"]["hosts_used_after"] == 2
    assert plan["stats"]["hosts_lower_bound"] == 2    # the network-aware bound: 1600 Mbit/s on 1000 Mbit/s NICs


@pytest.mark.parametrize("dense", [True, False])
def test_solver_keeps_chatty_pairs_together_when_nics_require_it(dense, monkeypatch):
    if not dense:
        monkeypatch.setattr(placement.solver, "DENSE_PAIRS", 0)
    # two pairs with 900 Mbit/s each; a host takes two VMs by memory; NICs of 1000: a pair split
    # over two hosts would load both NICs with 900 + own rates
    hosts = [host(f"hv{i}", nic=1000, gib=10) for i in range(4)]
    vms = [vm("a1", "hv0", 200), vm("b1", "hv1", 200), vm("a2", "hv2", 200), vm("b2", "hv3", 200)]
    m = model(hosts, vms, traffic=[{"vms": ["a1", "a2"], "mbps": 900}, {"vms": ["b1", "b2"], "mbps": 900}])
    assert check_plan(m, _stay(m)) != []          # the initial placement overloads the NICs
    plan = solve_checked(m)
    t = plan["target"]
    assert t["a1"] == t["a2"] and t["b1"] == t["b2"] and t["a1"] != t["b1"]


@pytest.mark.parametrize("dense", [True, False])
def test_solver_keeps_cross_rack_traffic_under_the_uplinks(dense, monkeypatch):
    if not dense:
        monkeypatch.setattr(placement.solver, "DENSE_PAIRS", 0)
    racks = [{"name": "r1", "uplink_mbps": 100}, {"name": "r2", "uplink_mbps": 100}]
    hosts = [host("hv1", "r1", gib=10), host("hv2", "r1", gib=10), host("hv3", "r2", gib=10), host("hv4", "r2", gib=10)]
    vms = [vm("a", "hv1"), vm("b", "hv3"), vm("c", "hv2"), vm("d", "hv4"), vm("e", "hv1"), vm("f", "hv3")]
    m = model(hosts, vms, racks=racks, traffic=[{"vms": ["a", "b", "c", "d"], "mbps": 600}])
    plan = solve_checked(m)
    racks_of = {"hv1": "r1", "hv2": "r1", "hv3": "r2", "hv4": "r2"}
    assert len({racks_of[plan["target"][v]] for v in "abcd"}) == 1
    assert plan["stats"]["cross_rack_mbps"] == 0
    assert plan["stats"]["cross_rack_mbps_before"] == 400


def test_fewest_hosts_first_then_least_cross_rack_traffic():
    racks = [{"name": "r1", "uplink_mbps": 100000}, {"name": "r2", "uplink_mbps": 100000}]
    hosts = [host("hv1", "r1", gib=8), host("hv2", "r1", gib=8), host("hv3", "r2", gib=8), host("hv4", "r2", gib=8)]
    # 4 VMs of 4 GiB: 2 hosts are enough; the pairs (a, b) and (c, d) start in different racks
    vms = [vm("a", "hv1"), vm("b", "hv3"), vm("c", "hv2"), vm("d", "hv4")]
    m = model(hosts, vms, racks=racks, traffic=[{"vms": ["a", "b"], "mbps": 100}, {"vms": ["c", "d"], "mbps": 100}])
    plan = solve_checked(m)
    assert plan["stats"]["hosts_used_after"] == 2
    assert plan["stats"]["cross_rack_mbps"] == 0


def test_weight_option_lets_a_host_be_switched_on_for_enough_cross_rack_traffic():
    racks = [{"name": "r1", "uplink_mbps": 100000}, {"name": "r2", "uplink_mbps": 100000}]
    hosts = [host("hv1", "r1", gib=8), host("hv2", "r1", gib=8), host("hv3", "r2", gib=8)]
    # 2 hosts suffice (hv1: a, c; hv3: b, x), but b talks to a: only a third host (hv2, in r1) brings it over
    vms = [vm("a", "hv1"), vm("c", "hv1"), vm("b", "hv3"), vm("x", "hv3")]
    fences = [{"type": "fence", "vms": ["a", "c"], "hosts": ["hv1", "hv2"]}, {"type": "fence", "vms": ["x"], "hosts": ["hv3"]}]
    m = model(hosts, vms, racks=racks, traffic=[{"vms": ["a", "b"], "mbps": 500}])
    m["constraints"] = fences
    strict = solve_checked(m)
    assert strict["stats"]["hosts_used_after"] == 2 and strict["stats"]["cross_rack_mbps"] == 500
    cheap = solve_checked(m, cross_rack_mbps_per_host=400)
    assert cheap["stats"]["hosts_used_after"] == 3 and cheap["stats"]["cross_rack_mbps"] == 0
    assert cheap["target"]["b"] == "hv2"
    dear = solve_checked(m, cross_rack_mbps_per_host=600)
    assert dear["stats"]["hosts_used_after"] == 2 and dear["stats"]["cross_rack_mbps"] == 500


def test_a_vm_faster_than_every_nic_is_named():
    m = model([host("hv1", nic=1000)], [vm("a", "hv1", 1500)])
    with pytest.raises(placement.InfeasibleError) as err:
        solve(m)
    assert "vm 'a' sends and receives 1500 Mbit/s, more than any host NIC (1000)" in str(err.value)


# --- the planner -----------------------------------------------------------------------------
def _swap_model():
    # a and b swap hosts; each NIC takes one of them at a time; hv3 is the way round
    return model([host("hv1", nic=1000), host("hv2", nic=1000), host("hv3", nic=1000)],
                 [vm("a", "hv1", 600), vm("b", "hv2", 600)])


def test_planner_never_overloads_a_nic_during_a_step():
    m = _swap_model()
    plan = plan_for_target(copy.deepcopy(m), {"a": "hv2", "b": "hv1"})
    assert check_plan(m, plan) == []
    assert len(plan["steps"]) >= 2


def test_planner_guard_is_what_keeps_the_steps_valid(monkeypatch):
    """Without the network guard the planner swaps both VMs in one step and the checker objects."""
    monkeypatch.setattr(Network, "guard", lambda self, planner, step, j, d, data: True)
    m = _swap_model()
    plan = plan_for_target(copy.deepcopy(m), {"a": "hv2", "b": "hv1"})
    assert any("NIC carries 1200 Mbit/s during the step" in p for p in check_plan(m, plan))


def test_planner_counts_traffic_of_a_migrating_pair_on_both_ends():
    # a talks to c (on hv3) at 500; moving a from hv1 to hv2 loads hv1, hv2 and hv3 during the step
    m = model([host("hv1", nic=2000), host("hv2", nic=600), host("hv3", nic=2000)],
              [vm("a", "hv1", 0), vm("c", "hv3", 0), vm("d", "hv2", 200)],
              traffic=[{"vms": ["a", "c"], "mbps": 500}])
    plan = plan_for_target(copy.deepcopy(m), {"a": "hv2", "c": "hv3", "d": "hv1"})
    assert check_plan(m, plan) == []
    first = {a["vm"] for a in plan["steps"][0]}
    assert first == {"d"}      # hv2 carries d (200) + a's pair (500) > 600 until d has left


# --- the model built from the inventory -------------------------------------------------------
def test_entropy_solve_network_builds_version_2_from_inventory_output(tmp_path):
    """`python3 tools/entropy_solve.py INVENTORY.json --network`: VM net_mbps from the measured rx + tx rates."""
    import json
    import os
    import subprocess
    import sys
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), *([os.pardir] * 5)))
    hv = {"entropy_kind": "hypervisor", "entropy_cpu_cores": 4, "entropy_memory_mib": 4096, "entropy_reachable": True}
    guest = {"entropy_kind": "vm", "entropy_hypervisor": "hv1", "entropy_state": "running", "entropy_cpu_demand_cores": 0.5,
             "entropy_memory_mib": 512, "entropy_vcpus": 1, "entropy_net_rx_bytes_s": 1250000, "entropy_net_tx_bytes_s": 250000}
    inventory = {"_meta": {"hostvars": {"hv1": hv, "hv2": dict(hv), "vm1": guest}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    tool = os.path.join(root, "tools", "entropy_solve.py")
    for args, expect in (([], None), (["--network"], 12.0)):
        run = subprocess.run([sys.executable, tool, "inventory.json", "-o", "plan.json", "--time-limit", "2", *args],
                             cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120)
        assert run.returncode == 0, run.stderr
        plan = json.loads((tmp_path / "plan.json").read_text())
        assert ("cross_rack_mbps" in plan["stats"]) == (expect is not None)
    # the same model, as cluster_model builds it: (1.25 + 0.25) MB/s = 12 Mbit/s
    sys.path.insert(0, os.path.join(root, "tests", "unit", "plugins", "plugin_utils"))
    from test_cluster_model import cluster_model   # pylint: disable=import-outside-toplevel
    built = cluster_model.build_model(inventory["_meta"]["hostvars"], network=True)
    assert built["version"] == 2 and built["vms"][0]["net_mbps"] == 12.0
    assert cluster_model.build_model(inventory["_meta"]["hostvars"])["version"] == 1
    assert "net_mbps" not in cluster_model.build_model(inventory["_meta"]["hostvars"])["vms"][0]


def test_search_state_link_loads_stay_equal_to_a_recount_under_random_moves():
    """The incremental counters (Network.track) against a count from scratch, and against the float checker."""
    import random
    import sys
    sys.path.insert(0, "benchmarks")
    from synthetic_network import make_network_cluster   # pylint: disable=import-outside-toplevel
    from placement.problem import build_problem
    from placement.state import State
    m = make_network_cluster(12, 60, seed=3, rack_size=4)
    prob = build_problem(load_model(m))
    net, data = next((c, d) for c, d in prob.rules if isinstance(c, Network))
    st = State(prob)
    for j, h in enumerate(prob.init):
        st.add(j, h)
    rng = random.Random(0)
    for _unused in range(300):
        j = rng.randrange(prob.n_vms)
        if st.host_of[j] >= 0 and rng.random() < 0.3:
            st.remove(j)
        else:
            if st.host_of[j] >= 0:
                st.remove(j)
            st.add(j, rng.randrange(prob.n_hosts))
    fresh = State(prob)
    for j, h in enumerate(st.host_of):
        if h >= 0:
            fresh.add(j, h)
    assert data.state_loads(st) == data.state_loads(fresh)
    placed = {prob.vm_names[j]: prob.host_names[h] for j, h in enumerate(st.host_of) if h >= 0}
    floats = net.loads(prob.model, {v: {h} for v, h in placed.items()})
    for link, name in enumerate(data.link_names):
        assert abs(data.state_loads(st)[link] / 1000 - floats.get(name, 0.0)) < 0.002 * (1 + len(placed))


def test_cross_rack_pass_keeps_a_migration_budget():
    racks = [{"name": "r1", "uplink_mbps": 100000}, {"name": "r2", "uplink_mbps": 100000}]
    hosts = [host("hv1", "r1", gib=16), host("hv2", "r2", gib=16)]
    vms = [vm("a", "hv1"), vm("b", "hv2"), vm("c", "hv1"), vm("d", "hv2")]
    m = model(hosts, vms, racks=racks, traffic=[{"vms": ["a", "b"], "mbps": 100}, {"vms": ["c", "d"], "mbps": 100}])
    free = solve_checked(m)
    assert free["stats"]["cross_rack_mbps"] == 0
    budget = solve_checked(m, max_migrations=0)
    assert budget["stats"]["migrations"] == 0 and budget["stats"]["cross_rack_mbps"] == 200
