"""CP-SAT model of a sub-problem: some VMs are free, every other VM stays where it is.

The same builder serves the whole problem when it is small and the LNS neighbourhoods when it is
large: a dense boolean per VM-host pair costs 1.5-3.5 KB, so only ~100 hosts fit in one model.
"""
from __future__ import annotations

from typing import Any

from .errors import PlacementError
from .state import State

try:
    from ortools.sat.python import cp_model
except ImportError:  # the package must import without ortools; solving needs it
    cp_model = None


def require_ortools() -> None:
    if cp_model is None:
        raise PlacementError("ortools is required to optimise placements: pip install ortools")


class SubResult:
    def __init__(self, status: str, assign: dict[int, int] | None, objective: float | None) -> None:
        self.status = status
        self.assign = assign
        self.objective = objective


def solve_sub(st: State, free: list[int], hosts: list[int], mode: str, *, targets: frozenset | set = frozenset(),
              budgets: tuple[int | None, int | None] = (None, None), seed: int = 0, workers: int = 1,
              dtime: float = 0.1, max_time: float = 5.0, initially_used: frozenset | set = frozenset(),
              max_used: int | None = None) -> SubResult:
    """Re-place the `free` VMs onto `hosts`; modes: consolidate, hosts, repair, balance, moves.

    consolidate = fewest hosts, then least load left on `targets` (hosts we try to empty);
    hosts = fewest hosts only; moves = least memory moved; `max_used` caps the hosts in use.

    budgets = (migrations left, memory MiB left) for the free VMs, counted against their initial host.
    """
    require_ortools()
    prob = st.prob
    model = cp_model.CpModel()
    hset = set(hosts)
    free_set = set(free)
    fixed_c = {h: st.lc[h] for h in hosts}
    fixed_m = {h: st.lm[h] for h in hosts}
    for j in free:
        h = st.host_of[j]
        if h in hset:
            fixed_c[h] -= prob.cpu[j]
            fixed_m[h] -= prob.mem[j]
    x: dict[tuple[int, int], Any] = {}
    by_host: dict[int, list[int]] = {h: [] for h in hosts}
    optional = mode == "squeeze"   # VMs may stay unplaced; the objective places as much as it can
    for j in free:
        cands = [h for h in hosts if prob.allowed(j, h) and prob.cpu[j] <= prob.cap_cpu[h] - fixed_c[h]
                 and prob.mem[j] <= prob.cap_mem[h] - fixed_m[h]]
        if not cands:
            if optional:
                continue
            return SubResult("infeasible", None, None)
        for h in cands:
            x[j, h] = model.NewBoolVar("")
            by_host[h].append(j)
        if optional:
            model.AddAtMostOne(x[j, h] for h in cands)
        else:
            model.AddExactlyOne(x[j, h] for h in cands)
        cur = st.host_of[j]
        for h in cands:
            model.AddHint(x[j, h], h == cur)
    # gather units move together
    for j in free:
        unit = st.units[st.unit_of[j]]
        if len(unit) > 1 and j != unit[0]:
            j0 = unit[0]
            for h in hosts:
                a, b = x.get((j, h)), x.get((j0, h))
                if a is None and b is None:
                    continue
                if a is None or b is None:
                    model.Add((a if a is not None else b) == 0)
                else:
                    model.Add(a == b)
    for h in hosts:
        js = by_host[h]
        if not js:
            continue
        model.Add(sum(prob.cpu[j] * x[j, h] for j in js) <= prob.cap_cpu[h] - fixed_c[h])
        model.Add(sum(prob.mem[j] * x[j, h] for j in js) <= prob.cap_mem[h] - fixed_m[h])
    for g, members in enumerate(prob.spread_groups):
        fm = [j for j in members if j in free_set]
        if not fm:
            continue
        for h in hosts:
            vs = [x[j, h] for j in fm if (j, h) in x]
            if not vs:
                continue
            fixed = st.spread_count[g].get(h, 0) - sum(1 for j in fm if st.host_of[j] == h)
            model.Add(sum(vs) <= 1 - fixed)
    fixed_members = {h: len(st.members[h]) - sum(1 for j in st.members[h] if j in free_set) for h in hosts}
    need_used = mode in ("consolidate", "hosts", "repair") or prob.max_online or max_used is not None
    used: dict[int, Any] = {}
    if need_used:
        for h in hosts:
            if fixed_members[h]:
                used[h] = 1
                continue
            u = model.NewBoolVar("")
            used[h] = u
            for j in by_host[h]:
                model.AddImplication(x[j, h], u)
            model.AddHint(u, bool(st.members[h]))
    if any(prob.lonely_class[j] for j in range(prob.n_vms)):
        _lonely(model, st, x, by_host, hosts, free_set)
    for k, (amount, scope, _con) in enumerate(prob.max_online):
        inside = [h for h in hosts if scope is None or h in scope]
        outside = st.online_count[k] - sum(1 for h in inside if st.members[h])
        model.Add(sum(used[h] for h in inside) <= amount - outside)
    if max_used is not None:
        model.Add(sum(used[h] for h in hosts) <= max_used)
    moved_mem = []
    moved_n = []
    for j in free:
        stay = x.get((j, prob.init[j]))
        mv = 1 if stay is None else 1 - stay
        if optional:
            mv = 0   # leftovers are placed later; budgets are not used with squeezing
        moved_n.append(mv)
        moved_mem.append((prob.mem[j] + 1) * mv)
    left_n, left_m = budgets
    if left_n is not None:
        model.Add(sum(moved_n) <= left_n)
    if left_m is not None:
        model.Add(sum(prob.mem[j] * mv for j, mv in zip(free, moved_n)) <= left_m)
    cost = sum(moved_mem)
    big = sum(prob.mem[j] + 1 for j in free) + 1
    if mode == "consolidate":
        conc = []
        for h in targets:
            for j in by_host.get(h, []):
                conc.append(((1000 * prob.mem[j]) // max(prob.cap_mem[h], 1) + (1000 * prob.cpu[j]) // max(prob.cap_cpu[h], 1) + 1) * x[j, h])
        wh = 2002 * len(free) + 1
        model.Minimize(wh * sum(used[h] for h in hosts) + sum(conc))
    elif mode == "squeeze":
        placed = []
        for (j, h), var in x.items():
            placed.append(squeeze_weight(prob, j) * var)
        model.Maximize(sum(placed))
    elif mode == "hosts":
        model.Minimize(sum(used[h] for h in hosts))
    elif mode == "repair":
        opened = [used[h] for h in hosts if h not in initially_used]
        model.Minimize(big * sum(opened) + cost)
    elif mode == "balance":
        z = model.NewIntVar(0, 1000, "z")
        for h in hosts:
            js = by_host[h]
            if prob.cap_cpu[h] > 0:
                model.Add(1000 * (fixed_c[h] + sum(prob.cpu[j] * x[j, h] for j in js)) <= z * prob.cap_cpu[h])
        model.Minimize(big * z + cost)
    else:
        model.Minimize(cost)
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.num_workers = workers
    params.random_seed = seed
    params.max_deterministic_time = dtime
    params.max_time_in_seconds = max(max_time, 0.01)
    if len(free) < 400:
        # tiny neighbourhoods: presolve and LP relaxation cost more than they save (measured)
        params.cp_model_presolve = False
        params.linearization_level = 0
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SubResult("infeasible" if status == cp_model.INFEASIBLE else "unknown", None, None)
    assign = {}
    for (j, h), var in x.items():
        if solver.BooleanValue(var):
            assign[j] = h
    return SubResult("optimal" if status == cp_model.OPTIMAL else "feasible", assign, solver.ObjectiveValue())


def squeeze_weight(prob, j: int) -> int:
    """Size of a VM relative to an average host, so big leftovers count more than small ones."""
    return 1 + (1000 * prob.mem[j]) // max(prob.avg_mem, 1) + (1000 * prob.cpu[j]) // max(prob.avg_cpu, 1)


def _lonely(model: Any, st: State, x: dict, by_host: dict, hosts: list[int], free_set: set) -> None:
    """A host carries a single lonely class (class 0 = VMs under no lonely constraint)."""
    prob = st.prob
    for h in hosts:
        fixed = {prob.lonely_class[j] for j in st.members[h] if j not in free_set}
        classes = fixed | {prob.lonely_class[j] for j in by_host[h]}
        if len(classes) <= 1:
            continue
        b = {}
        for c in classes:
            b[c] = 1 if c in fixed else model.NewBoolVar("")
        for j in by_host[h]:
            c = prob.lonely_class[j]
            if not isinstance(b[c], int):
                model.AddImplication(x[j, h], b[c])
        model.Add(sum(b.values()) <= 1)
