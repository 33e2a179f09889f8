"""Choose which hosts stay in use before packing (host-type aware).

Hosts are grouped by capacity vector; a tiny CP-SAT model over the count per type picks the fewest
hosts whose summed capacity covers the demand (plus a margin, since packing is never perfect) for
every resource at once, then the most capacity among equal counts. Within a type the hosts that
already carry the most memory are kept (fewer migrations); hosts pinned by root VMs always stay.
"""
from __future__ import annotations

from .cpsat import cp_model, require_ortools
from .problem import Problem
from .state import State


def choose_hosts(st: State, margin: float = 0.0, seed: int = 0) -> set[int]:
    require_ortools()
    prob = st.prob
    pinned = {prob.init[j] for j in range(prob.n_vms) if not prob.movable[j]}
    types: dict[tuple[int, int], list[int]] = {}
    for h in range(prob.n_hosts):
        if prob.usable[h]:
            types.setdefault((prob.cap_cpu[h], prob.cap_mem[h]), []).append(h)
    keys = sorted(types)
    for key in keys:
        types[key].sort(key=lambda h: (h not in pinned, -st.lm[h], h))
    model = cp_model.CpModel()
    n = {}
    for key in keys:
        low = sum(1 for h in types[key] if h in pinned)
        n[key] = model.NewIntVar(low, len(types[key]), "")
    need_c = int(sum(prob.cpu) * (1 + margin))
    need_m = int(sum(prob.mem) * (1 + margin))
    model.Add(sum(key[0] * n[key] for key in keys) >= min(need_c, sum(k[0] * len(types[k]) for k in keys)))
    model.Add(sum(key[1] * n[key] for key in keys) >= min(need_m, sum(k[1] * len(types[k]) for k in keys)))
    avg_c, avg_m = max(prob.avg_cpu, 1), max(prob.avg_mem, 1)
    size = {key: int(100 * (key[0] / avg_c + key[1] / avg_m)) for key in keys}
    big = sum(size[key] * len(types[key]) for key in keys) + 1
    model.Minimize(big * sum(n.values()) - sum(size[key] * n[key] for key in keys))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    solver.parameters.max_deterministic_time = 2.0
    status = solver.Solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return {h for h in range(prob.n_hosts) if st.members[h]}
    keep: set[int] = set()
    for key in keys:
        keep.update(types[key][:solver.Value(n[key])])
    return keep


def joint_cover_bound(prob: Problem) -> int | None:
    """Fewest hosts covering every resource at once: a valid lower bound, used only when proved
    optimal. It beats the per-resource bound when host types trade cpu against memory."""
    require_ortools()
    types: dict[tuple[int, int], int] = {}
    for h in range(prob.n_hosts):
        if prob.usable[h]:
            types[prob.cap_cpu[h], prob.cap_mem[h]] = types.get((prob.cap_cpu[h], prob.cap_mem[h]), 0) + 1
    model = cp_model.CpModel()
    n = {key: model.NewIntVar(0, cnt, "") for key, cnt in types.items()}
    model.Add(sum(key[0] * v for key, v in n.items()) >= sum(prob.cpu))
    model.Add(sum(key[1] * v for key, v in n.items()) >= sum(prob.mem))
    pinned = {prob.init[j] for j in range(prob.n_vms) if not prob.movable[j]}
    model.Add(sum(n.values()) >= len(pinned))
    model.Minimize(sum(n.values()))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_deterministic_time = 1.0
    if solver.Solve(model) != cp_model.OPTIMAL:
        return None
    return int(solver.ObjectiveValue())
