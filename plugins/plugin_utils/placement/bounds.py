"""Lower bound on the number of hosts any viable placement needs."""
from __future__ import annotations

from .problem import Problem


def _resource_bound(demand: int, caps: list[int]) -> int:
    """Hosts needed if demand were liquid: fill the largest hosts first."""
    if demand <= 0:
        return 0
    total = 0
    for n, cap in enumerate(sorted(caps, reverse=True), start=1):
        total += cap
        if total >= demand:
            return n
    return len(caps) + 1  # cannot fit at all; diagnosis reports why


def hosts_lower_bound(prob: Problem) -> int:
    usable = [h for h in range(prob.n_hosts) if prob.usable[h]]
    lb_cpu = _resource_bound(sum(prob.cpu), [prob.cap_cpu[h] for h in usable])
    lb_mem = _resource_bound(sum(prob.mem), [prob.cap_mem[h] for h in usable])
    # Root VMs pin their hosts: every distinct root host is in use.
    pinned = len({prob.init[j] for j in range(prob.n_vms) if not prob.movable[j]})
    # A spread group needs as many hosts as it has members.
    widest = max((len(g) for g in prob.spread_groups), default=0)
    return max(lb_cpu, lb_mem, pinned, widest, 1 if prob.n_vms else 0)


# --- stronger bounds (docs/solver.md "Lower bounds") -----------------------------------------------
# Grid cells per host capacity in the knapsacks that evaluate a value function on one host type:
# item sizes are rounded down to the grid, which can only raise the per-host maximum (still valid).
KNAPSACK_CELLS = 512
# Host types above which only the liquid cuts are used (each cut costs one knapsack per type).
MAX_TYPES = 12
# Items of positive value per host above which a knapsack is not worth it (integrality barely bites).
MAX_ITEMS_DP = 8
# Size thresholds tried per resource (quantiles of the distinct VM sizes).
THRESHOLDS = 8
# Deterministic seconds for the small CP-SAT model over host-type counts.
TYPE_MODEL_DTIME = 1.0


def _host_types(prob: Problem) -> dict[tuple[int, int], int]:
    types: dict[tuple[int, int], int] = {}
    for h in range(prob.n_hosts):
        if prob.usable[h]:
            key = (prob.cap_cpu[h], prob.cap_mem[h])
            types[key] = types.get(key, 0) + 1
    return types


def _knapsack_max(items: list[tuple[int, int, int]], cap: int) -> int:
    """Upper bound on the largest total value of items (multiset) fitting in `cap`.

    Sizes are rounded down to a grid of cap / KNAPSACK_CELLS (more fits, so the result can only grow);
    a class of equal rounded size takes the largest value of its items; bounded counts by binary
    splitting. Never below the true maximum."""
    import numpy as np  # pylint: disable=import-outside-toplevel

    if cap <= 0:
        return 0
    grid = max(1, cap // KNAPSACK_CELLS)
    cells = cap // grid
    classes: dict[int, list[int]] = {}
    free_value = 0
    for s, v, cnt in items:
        if v <= 0 or s > cap:
            continue
        w = s // grid
        if w == 0:
            free_value += v * cnt    # fits for free on the grid: count it (an over-estimate)
            continue
        best, total = classes.get(w, (0, 0))
        classes[w] = (max(best, v), total + cnt)
    dp = np.zeros(cells + 1, dtype=np.int64)
    for w, (best, total) in sorted(classes.items()):
        count = min(total, cells // w)
        k = 1
        while count > 0:
            take = min(k, count)
            ww, vv = w * take, best * take
            if ww <= cells:
                new = dp.copy()
                np.maximum(new[ww:], dp[:-ww] + vv, out=new[ww:])
                dp = new
            count -= take
            k *= 2
    return int(dp[cells]) + free_value


def _thresholds(sizes: list[int]) -> list[int]:
    distinct = sorted(set(s for s in sizes if s > 0))
    if len(distinct) <= THRESHOLDS:
        return distinct
    return sorted({distinct[(i * (len(distinct) - 1)) // (THRESHOLDS - 1)] for i in range(THRESHOLDS)})


def _value_functions(sizes: list[int], caps: list[int]):
    """Dual-feasible style value functions f(s) >= 0 for one resource (see docs/solver.md):
    identity; 'drop items below K'; Martello-Toth L2 ('items above C-K count C, items below K count 0')
    for each host capacity C; 'count items above t'."""
    yield "liquid", lambda s: s
    ks = _thresholds(sizes)
    for k in ks:
        yield f"drop<{k}", (lambda s, k=k: s if s >= k else 0)
        yield f"count>={k}", (lambda s, k=k: 1 if s >= k else 0)
    for c in sorted(set(caps)):
        for k in [x for x in ks if 2 * x <= c] + [0]:
            yield f"mt2(C={c},K={k})", (lambda s, c=c, k=k: c if s > c - k else (s if s >= k else 0))


def _per_host_max(name: str, cap: int, items: list[tuple[int, int, int]]) -> int | None:
    """Upper bound on the value one host of capacity `cap` carries, or None to skip the cut.

    When many items of positive value fit in one host, integrality barely matters: 'drop' is
    bounded by the capacity, 'count' by the greedy cardinality (exact), others are skipped."""
    fits = [(s, v, c) for s, v, c in items if s <= cap and v > 0]
    if name == "liquid":
        return cap
    if not fits:
        return 0
    if name.startswith("count"):
        room, n = cap, 0
        for s, _v, c in sorted(fits):
            take = min(c, room // s) if s else c
            n += take
            room -= take * s
            if take < c:
                break
        return n
    smallest = min(s for s, _v, _c in fits)
    if smallest == 0 or cap // smallest > MAX_ITEMS_DP:
        return cap if name.startswith("drop") else None
    top = _knapsack_max(fits, cap)
    return min(top, cap) if name.startswith("drop") else top


def strong_hosts_bound(prob: Problem) -> int:
    """A lower bound on hosts at least as strong as today's `hosts_lower_bound` + joint cover bound.

    Every value function f on VM sizes of one resource gives a valid cut over host-type counts n_t:
    sum_t F_t n_t >= sum_j f(s_j), where F_t bounds the value one host of type t can carry
    (a knapsack). The cuts of both resources go into one small CP-SAT model over n_t; its proved
    bound (the best objective bound if it is not proved optimal) is the result."""
    from .cpsat import cp_model  # pylint: disable=import-outside-toplevel

    base = hosts_lower_bound(prob)
    if not prob.n_vms or cp_model is None:
        return base   # without ortools (plan_for_target only builds a plan): the liquid bound
    types = _host_types(prob)
    if not types:
        return base
    keys = sorted(types)
    cuts: list[tuple[list[int], int]] = []
    for r, all_sizes in ((0, prob.cpu), (1, prob.mem)):
        caps = [key[r] for key in keys]
        counts: dict[int, int] = {}
        for s in all_sizes:
            counts[s] = counts.get(s, 0) + 1
        sizes = sorted(counts)
        functions = _value_functions(sizes, caps) if len(keys) <= MAX_TYPES else [("liquid", lambda s: s)]
        for name, f in functions:
            items = [(s, f(s), counts[s]) for s in sizes]
            need = sum(v * c for _s, v, c in items)
            if need <= 0:
                continue
            per_type = []
            for key in keys:
                per_type.append(_per_host_max(name, key[r], items))
            if None not in per_type:
                cuts.append((per_type, need))
    model = cp_model.CpModel()
    n = [model.NewIntVar(0, types[key], "") for key in keys]
    for per_type, need in cuts:
        model.Add(sum(v * x for v, x in zip(per_type, n)) >= min(need, sum(v * types[k] for v, k in zip(per_type, keys))))
    pinned = len({prob.init[j] for j in range(prob.n_vms) if not prob.movable[j]})
    model.Add(sum(n) >= max(pinned, 1))
    model.Minimize(sum(n))
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.max_deterministic_time = TYPE_MODEL_DTIME
    status = solver.Solve(model)
    if status == cp_model.OPTIMAL:
        value = int(round(solver.ObjectiveValue()))
    elif status == cp_model.FEASIBLE:
        value = int(-(-solver.BestObjectiveBound() // 1))
    else:
        value = 0
    return max(base, value)


def _shed_memory(prob: Problem, h: int, load_c: int, load_m: int, vms: list[int]) -> float:
    """Least memory that must leave host h (kept in use) to fit its capacities, by a fractional
    knapsack over its movable VMs (a lower bound); inf if its pinned VMs alone do not fit."""
    movable = [j for j in vms if prob.movable[j]]
    fixed_c = load_c - sum(prob.cpu[j] for j in movable)
    fixed_m = load_m - sum(prob.mem[j] for j in movable)
    if fixed_c > prob.cap_cpu[h] or fixed_m > prob.cap_mem[h]:
        return float("inf")
    need_m = max(0, load_m - prob.cap_mem[h])
    excess_c = load_c - prob.cap_cpu[h]
    need_c = 0.0
    if excess_c > 0:
        for j in sorted(movable, key=lambda j: prob.mem[j] / max(prob.cpu[j], 1)):
            if excess_c <= 0:
                break
            if prob.cpu[j] <= 0:
                continue
            part = min(1.0, excess_c / prob.cpu[j])
            need_c += part * prob.mem[j]
            excess_c -= prob.cpu[j]
    return max(float(need_m), need_c)


def memory_moved_bound(prob: Problem, hosts_after: int) -> int:
    """Least memory (MiB) any placement on `hosts_after` hosts must move.

    Of the hosts in use at the start, at least (in use - hosts_after) end empty, and offline or
    forbidden ones all do: their movable VMs move. Every other host keeps its place but must shed
    its overload (fractional knapsack). The cheapest choice of hosts to empty is exact for this
    relaxation: sort by (memory to empty - memory to shed)."""
    on: dict[int, list[int]] = {}
    for j in range(prob.n_vms):
        on.setdefault(prob.init[j], []).append(j)
    lc, lm = prob.loads(prob.init)
    must = 0.0
    rest: list[tuple[float, float, float]] = []   # (empty - stay, empty, stay)
    for h, vms in on.items():
        pinned = any(not prob.movable[j] for j in vms)
        empty = float("inf") if pinned else float(sum(prob.mem[j] for j in vms))
        if not prob.usable[h]:
            must += sum(prob.mem[j] for j in vms if prob.movable[j])
            continue
        stay = _shed_memory(prob, h, lc[h], lm[h], vms)
        rest.append((empty - stay, empty, stay))
    forced = max(0, len(on) - hosts_after - sum(1 for h in on if not prob.usable[h]))
    rest.sort(key=lambda t: t[0])
    total = must
    for i, (diff, empty, stay) in enumerate(rest):
        if i < forced or diff < 0:
            total += empty
        else:
            total += stay
    if total == float("inf"):
        return 0
    return int(total)


def bound_stats(prob: Problem, hosts_after: int, strong: int | None, memory_moved_mib: int) -> dict:
    """The plan's stats on the stronger bounds: hosts bound and gap, memory-moved bound and ratio."""
    if strong is None:
        strong = strong_hosts_bound(prob)
    floor = memory_moved_bound(prob, hosts_after)
    return {
        "hosts_lower_bound_strong": strong,
        "hosts_gap_to_strong_bound_pct": round(100.0 * (hosts_after - strong) / strong, 2) if strong else 0.0,
        "memory_moved_lower_bound_mib": floor,
        "memory_moved_to_bound_ratio": round(memory_moved_mib / floor, 4) if floor else None,
    }
