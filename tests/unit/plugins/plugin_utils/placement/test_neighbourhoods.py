"""The big-VM-mix consolidation (neighbourhoods.empty_hosts) on the large-instance path."""
from __future__ import annotations

import time

import pytest

from placement import solver as solver_mod
from placement.bounds import strong_hosts_bound
from placement.context import SolveContext
from placement.greedy import keep_and_repair
from placement.lns import Lns
from placement.model import load_model
from placement.hostset import choose_hosts
from placement.neighbourhoods import STAY_BALANCE, balanced_stay, empty_hosts, is_big_vm_mix, must_move
from placement.problem import build_problem
from synthetic import HEAVY_WEIGHTS, make_cluster

from helpers import solve_checked


@pytest.fixture(name="lns_only")
def fixture_lns_only(monkeypatch):
    monkeypatch.setattr(solver_mod, "DENSE_PAIRS", 0)


def big_mix(seed: int = 3) -> dict:
    return make_cluster(40, 100, seed=seed, weights=HEAVY_WEIGHTS)


def test_heavy_mix_is_a_big_vm_mix_and_the_default_mix_is_not():
    assert is_big_vm_mix(build_problem(load_model(big_mix())))
    assert not is_big_vm_mix(build_problem(load_model(make_cluster(40, 200, seed=3))))


def test_big_mix_consolidation_with_constraints_gives_a_valid_plan(lns_only):
    m = big_mix()
    names = [v["name"] for v in m["vms"] if v["state"] == "running"]
    hosts = [h["name"] for h in m["hosts"]]
    m["constraints"] = [
        {"type": "spread", "vms": names[0:3], "continuous": True},
        {"type": "gather", "vms": names[3:5]},
        {"type": "ban", "vms": names[5:10], "hosts": hosts[0:10]},
        {"type": "root", "vms": names[10:11]},
    ]
    plan = solve_checked(m, time_limit_s=4, seed=1)
    s = plan["stats"]
    assert s["hosts_used_after"] < s["hosts_used_before"]
    assert s["hosts_lower_bound_strong"] >= s["hosts_lower_bound"]
    assert s["hosts_used_after"] >= s["hosts_lower_bound_strong"]
    assert s["memory_moved_mib"] >= s["memory_moved_lower_bound_mib"] > 0


def test_must_move_counts_only_vms_at_home():
    m = big_mix()
    model = load_model(m)
    prob = build_problem(model)
    st, _failed = keep_and_repair(prob)
    lns = Lns(SolveContext(model, prob, st, time.monotonic()), max_iterations=10)
    h = max(range(prob.n_hosts), key=lambda h: len(st.members[h]))
    at_home = sum(prob.mem[j] for j in st.members[h] if prob.init[j] == h)
    assert must_move(lns, h) == at_home > 0
    # a VM that came from elsewhere adds nothing: it moves anyway
    j = next(j for j in range(prob.n_vms) if st.host_of[j] != h and st.fits([j], h))
    st.remove(j)
    st.add(j, h)
    assert must_move(lns, h) == at_home


def test_empty_hosts_stops_at_the_lower_bound():
    m = big_mix()
    model = load_model(m)
    prob = build_problem(model)
    st, _failed = keep_and_repair(prob)
    used = len(set(st.host_of))
    lns = Lns(SolveContext(model, prob, st, time.monotonic()), max_iterations=1000, lower_bound=used)
    empty_hosts(lns, time.monotonic() + 5)
    assert lns.iterations == 0
    lns = Lns(SolveContext(model, prob, st, time.monotonic()), max_iterations=40,
              lower_bound=strong_hosts_bound(prob))
    empty_hosts(lns, time.monotonic() + 5)
    assert len(set(st.host_of)) < used


def test_balanced_stay_keeps_balanced_hosts_and_leaves_watched_vms_alone():
    m = big_mix()
    names = [v["name"] for v in m["vms"] if v["state"] == "running"]
    m["constraints"] = [{"type": "spread", "vms": names[0:40]}]
    model = load_model(m)
    prob = build_problem(model)
    st, _failed = keep_and_repair(prob)
    keep = choose_hosts(st, seed=1)
    stay = balanced_stay(st, keep)
    assert stay, "some VMs keep their place"
    watched = {prob.vm_pos[n] for n in names[0:40]}
    assert not stay & watched
    for h in keep:
        here = [j for j in stay if st.host_of[j] == h]
        fc = sum(prob.cpu[j] for j in here) / prob.cap_cpu[h]
        fm = sum(prob.mem[j] for j in here) / prob.cap_mem[h]
        assert abs(fc - fm) <= STAY_BALANCE + 1e-9 and max(fc, fm) <= 1.0
    assert all(st.host_of[j] in keep for j in stay)
