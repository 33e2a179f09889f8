"""The stronger bounds (docs/solver.md "Lower bounds"): never above the proved optimum on small
instances solved exactly by an independent CP-SAT model, and stronger than the liquid bound where
big VMs cannot share a host."""
from __future__ import annotations

import random

import pytest
from ortools.sat.python import cp_model

from placement.bounds import hosts_lower_bound, memory_moved_bound, strong_hosts_bound
from placement.hostset import joint_cover_bound
from placement.model import load_model
from placement.problem import build_problem

from helpers import GIB, host, model, solve_checked, vm


def exact(prob, max_hosts: int | None = None) -> tuple[int, int]:
    """(fewest hosts, least memory moved with at most max_hosts hosts) by a dense CP-SAT model,
    written here without the solver's code; both proved optimal."""
    m = cp_model.CpModel()
    hosts = [h for h in range(prob.n_hosts) if prob.usable[h]]
    x = {(j, h): m.NewBoolVar("") for j in range(prob.n_vms) for h in hosts}
    used = {h: m.NewBoolVar("") for h in hosts}
    for j in range(prob.n_vms):
        m.AddExactlyOne(x[j, h] for h in hosts)
        if not prob.movable[j]:
            m.Add(x[j, prob.init[j]] == 1)
    for h in hosts:
        m.Add(sum(prob.cpu[j] * x[j, h] for j in range(prob.n_vms)) <= prob.cap_cpu[h] * used[h])
        m.Add(sum(prob.mem[j] * x[j, h] for j in range(prob.n_vms)) <= prob.cap_mem[h] * used[h])
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    if max_hosts is None:
        m.Minimize(sum(used.values()))
        status = solver.Solve(m)
        if status == cp_model.INFEASIBLE:
            return -1, -1
        assert status == cp_model.OPTIMAL
        return round(solver.ObjectiveValue()), -1
    m.Add(sum(used.values()) <= max_hosts)
    m.Minimize(sum(prob.mem[j] * (1 - x[j, prob.init[j]]) for j in range(prob.n_vms) if prob.init[j] in used))
    assert solver.Solve(m) == cp_model.OPTIMAL
    return max_hosts, round(solver.ObjectiveValue())


def random_instance(seed: int) -> dict:
    rng = random.Random(seed)
    types = [(16, 64), (24, 96), (8, 128)]
    hosts = [host(f"hv{i}", *rng.choice(types)) for i in range(rng.randint(3, 6))]
    vms = []
    for k in range(rng.randint(3, 9)):
        on = rng.choice(hosts)["name"]
        vms.append(vm(f"v{k}", on, cpu=round(rng.uniform(0.5, 12), 1), gib=rng.choice((6, 20, 34, 36, 40, 50, 66))))
    return model(hosts, vms)


def fits_somewhere(m: dict) -> bool:
    prob = build_problem(load_model(m))
    return all(any(prob.cpu[j] <= prob.cap_cpu[h] and prob.mem[j] <= prob.cap_mem[h] for h in range(prob.n_hosts))
               for j in range(prob.n_vms))


def test_strong_bound_beats_liquid_bound_on_big_vms():
    # three 40 GiB VMs, 64 GiB hosts: 120 GiB of liquid memory needs 2 hosts, but no two VMs share one
    m = model([host(f"hv{i}") for i in range(4)], [vm(f"v{i}", f"hv{i}", gib=40) for i in range(3)])
    prob = build_problem(load_model(m))
    assert max(hosts_lower_bound(prob), joint_cover_bound(prob)) == 2
    assert strong_hosts_bound(prob) == 3 == exact(prob)[0]
    s = solve_checked(m)["stats"]
    assert s["hosts_lower_bound"] == 2          # today's bound, unchanged
    assert s["hosts_lower_bound_strong"] == 3 == s["hosts_used_after"]
    assert s["hosts_gap_to_strong_bound_pct"] == 0.0


@pytest.mark.parametrize("first", range(0, 80, 20))
def test_bounds_never_exceed_the_proved_optimum(first):
    checked = 0
    for seed in range(first, first + 20):
        m = random_instance(seed)
        if not fits_somewhere(m):
            continue
        prob = build_problem(load_model(m))
        opt, _unused = exact(prob)
        if opt < 0:
            continue   # infeasible as a whole
        checked += 1
        assert strong_hosts_bound(prob) <= opt, seed
        assert hosts_lower_bound(prob) <= strong_hosts_bound(prob)
        for k in range(opt, prob.n_hosts + 1):
            _k, least = exact(prob, k)
            assert memory_moved_bound(prob, k) <= least, (seed, k, least)
    assert checked >= 8


def test_strong_bound_is_stronger_on_some_random_instances():
    stronger = 0
    for seed in range(60):
        m = random_instance(seed)
        if not fits_somewhere(m):
            continue
        prob = build_problem(load_model(m))
        stronger += strong_hosts_bound(prob) > max(hosts_lower_bound(prob), joint_cover_bound(prob) or 0)
    assert stronger >= 3


def test_memory_bound_is_the_lightest_hosts_emptied():
    hosts = [host(f"hv{i}") for i in range(4)]
    vms = [vm("a", "hv0", gib=8), vm("b", "hv1", gib=16), vm("c", "hv2", gib=4), vm("d", "hv3", gib=2)]
    prob = build_problem(load_model(model(hosts, vms)))
    assert memory_moved_bound(prob, 4) == 0
    assert memory_moved_bound(prob, 2) == (4 + 2) * GIB
    assert memory_moved_bound(prob, 1) == (8 + 4 + 2) * GIB
    s = solve_checked(model(hosts, vms))["stats"]
    assert s["memory_moved_lower_bound_mib"] == (8 + 4 + 2) * GIB == s["memory_moved_mib"]
    assert s["memory_moved_to_bound_ratio"] == 1.0


def test_memory_bound_counts_overload_to_shed():
    # hv0 carries 80 GiB on a 64 GiB host: at least 16 GiB leaves even if no host is emptied
    hosts = [host("hv0"), host("hv1")]
    vms = [vm("a", "hv0", gib=40), vm("b", "hv0", gib=24), vm("c", "hv0", gib=16), vm("d", "hv1", gib=8)]
    prob = build_problem(load_model(model(hosts, vms)))
    assert memory_moved_bound(prob, 2) == 16 * GIB
    assert exact(prob, 2)[1] == 16 * GIB
