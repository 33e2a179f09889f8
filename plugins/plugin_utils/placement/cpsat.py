"""CP-SAT model of a sub-problem: some VMs are free, every other VM stays where it is.

The same builder serves the whole problem when it is small and the LNS neighbourhoods when it is
large: a dense boolean per VM-host pair costs 1.5-3.5 KB, so only ~100 hosts fit in one model.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import PlacementError
from .problem import Problem
from .state import State

try:
    from ortools.sat.python import cp_model
except ImportError:  # the package must import without ortools; solving needs it
    cp_model = None


# Free VMs below which presolve and the LP relaxation are switched off.
SMALL_NEIGHBOURHOOD = 400


def require_ortools() -> None:
    if cp_model is None:
        raise PlacementError("ortools is required to optimise placements: pip install ortools")


@dataclass
class SubResult:
    status: str                       # optimal, feasible, infeasible or unknown
    assign: dict[int, int] | None     # free VM -> host (None when no solution was found)


@dataclass
class Encoding:
    """One CP-SAT sub-model under construction: what a constraint's `encode` hook works on."""
    model: Any
    st: State
    hosts: list[int]                  # hosts of the sub-problem
    free_set: set[int]                # VMs the sub-model may move; every other VM stays put
    x: dict[tuple[int, int], Any] = field(default_factory=dict)     # (vm, host) -> bool var
    by_host: dict[int, list[int]] = field(default_factory=dict)     # host -> free VMs that may go there
    used: dict[int, Any] = field(default_factory=dict)              # host -> 1 or bool var (when needed)

    @property
    def prob(self) -> Problem:
        return self.st.prob


def solve_sub(st: State, free: list[int], hosts: list[int], mode: str, *, targets: frozenset | set = frozenset(),
              budgets: tuple[int | None, int | None] = (None, None), seed: int = 0, workers: int = 1,
              dtime: float = 0.1, max_time: float = 5.0, initially_used: frozenset | set = frozenset(),
              max_used: int | None = None) -> SubResult:
    """Re-place the `free` VMs onto `hosts`; modes: consolidate, hosts, repair, balance, moves, squeeze.

    consolidate = fewest hosts, then least load left on `targets` (hosts we try to empty);
    hosts = fewest hosts only; moves = least memory moved; squeeze = place as many (weighted) of
    the free VMs as possible, the others stay unplaced; `max_used` caps the hosts in use.

    budgets = (migrations left, memory MiB left) for the free VMs, counted against their initial host.
    """
    require_ortools()
    enc = Encoding(cp_model.CpModel(), st, hosts, set(free))
    fixed_c, fixed_m = _fixed_loads(st, free, hosts)
    if not _place_vars(enc, free, fixed_c, fixed_m, optional=mode == "squeeze"):
        return SubResult("infeasible", None)
    _units_together(enc, free)
    _capacities(enc, fixed_c, fixed_m)
    if mode in ("consolidate", "hosts", "repair") or st.prob.max_online or max_used is not None:
        _used_vars(enc)
    for con, data in st.prob.rules:
        if data is not None:
            con.encode(enc, data)
    if max_used is not None:
        enc.model.Add(sum(enc.used[h] for h in hosts) <= max_used)
    cost = _moves_and_budgets(enc, free, budgets, optional=mode == "squeeze")
    _objective(enc, mode, free, cost, targets, initially_used, fixed_c)
    return _run(enc, len(free), seed, workers, dtime, max_time)


def _fixed_loads(st: State, free: list[int], hosts: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Load of each host from the VMs that stay (free VMs taken off)."""
    prob = st.prob
    hset = set(hosts)
    fixed_c = {h: st.lc[h] for h in hosts}
    fixed_m = {h: st.lm[h] for h in hosts}
    for j in free:
        h = st.host_of[j]
        if h in hset:
            fixed_c[h] -= prob.cpu[j]
            fixed_m[h] -= prob.mem[j]
    return fixed_c, fixed_m


def _place_vars(enc: Encoding, free: list[int], fixed_c: dict[int, int], fixed_m: dict[int, int],
                optional: bool) -> bool:
    """A boolean per free VM and candidate host, hinted at the current host; False = a VM has no
    candidate at all (only possible when placing is compulsory)."""
    st, prob, model = enc.st, enc.prob, enc.model
    enc.by_host = {h: [] for h in enc.hosts}
    for j in free:
        cands = [h for h in enc.hosts if prob.allowed(j, h) and prob.cpu[j] <= prob.cap_cpu[h] - fixed_c[h]
                 and prob.mem[j] <= prob.cap_mem[h] - fixed_m[h]]
        if not cands:
            if optional:
                continue
            return False
        for h in cands:
            enc.x[j, h] = model.NewBoolVar("")
            enc.by_host[h].append(j)
        if optional:
            model.AddAtMostOne(enc.x[j, h] for h in cands)
        else:
            model.AddExactlyOne(enc.x[j, h] for h in cands)
        cur = st.host_of[j]
        for h in cands:
            model.AddHint(enc.x[j, h], h == cur)
    return True


def _units_together(enc: Encoding, free: list[int]) -> None:
    """Units (gather groups) move as one: every member goes where the first member goes."""
    st, x, model = enc.st, enc.x, enc.model
    for j in free:
        unit = st.units[st.unit_of[j]]
        if len(unit) > 1 and j != unit[0]:
            j0 = unit[0]
            for h in enc.hosts:
                a, b = x.get((j, h)), x.get((j0, h))
                if a is None and b is None:
                    continue
                if a is None or b is None:
                    model.Add((a if a is not None else b) == 0)
                else:
                    model.Add(a == b)


def _capacities(enc: Encoding, fixed_c: dict[int, int], fixed_m: dict[int, int]) -> None:
    prob, x = enc.prob, enc.x
    for h in enc.hosts:
        js = enc.by_host[h]
        if not js:
            continue
        enc.model.Add(sum(prob.cpu[j] * x[j, h] for j in js) <= prob.cap_cpu[h] - fixed_c[h])
        enc.model.Add(sum(prob.mem[j] * x[j, h] for j in js) <= prob.cap_mem[h] - fixed_m[h])


def _used_vars(enc: Encoding) -> None:
    """used[h] = 1 when a VM stays on h, else a boolean implied by every VM that may go there."""
    st, model = enc.st, enc.model
    for h in enc.hosts:
        if any(j not in enc.free_set for j in st.members[h]):
            enc.used[h] = 1
            continue
        u = model.NewBoolVar("")
        enc.used[h] = u
        for j in enc.by_host[h]:
            model.AddImplication(enc.x[j, h], u)
        model.AddHint(u, bool(st.members[h]))


def _moves_and_budgets(enc: Encoding, free: list[int], budgets: tuple[int | None, int | None],
                       optional: bool) -> Any:
    """Apply the migration budgets; returns the memory-moved cost (each move costs memory + 1)."""
    prob, model = enc.prob, enc.model
    moved_mem = []
    moved_n = []
    for j in free:
        stay = enc.x.get((j, prob.init[j]))
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
    return sum(moved_mem)


def _objective(enc: Encoding, mode: str, free: list[int], cost: Any, targets: frozenset | set,
               initially_used: frozenset | set, fixed_c: dict[int, int]) -> None:
    prob, model, x, hosts, used = enc.prob, enc.model, enc.x, enc.hosts, enc.used
    # weight that makes one unit of the first criterion outweigh any amount of memory moved
    big = sum(prob.mem[j] + 1 for j in free) + 1
    if mode == "consolidate":
        conc = []
        for h in targets:
            for j in enc.by_host.get(h, []):
                conc.append(((1000 * prob.mem[j]) // max(prob.cap_mem[h], 1) + (1000 * prob.cpu[j]) // max(prob.cap_cpu[h], 1) + 1) * x[j, h])
        # each term of conc is at most 2001: one host less always beats any load left on the targets
        wh = 2002 * len(free) + 1
        model.Minimize(wh * sum(used[h] for h in hosts) + sum(conc))
    elif mode == "squeeze":
        model.Maximize(sum(squeeze_weight(prob, j) * var for (j, _h), var in x.items()))
    elif mode == "hosts":
        model.Minimize(sum(used[h] for h in hosts))
    elif mode == "repair":
        opened = [used[h] for h in hosts if h not in initially_used]
        model.Minimize(big * sum(opened) + cost)
    elif mode == "balance":
        z = model.NewIntVar(0, 1000, "z")
        for h in hosts:
            js = enc.by_host[h]
            if prob.cap_cpu[h] > 0:
                model.Add(1000 * (fixed_c[h] + sum(prob.cpu[j] * x[j, h] for j in js)) <= z * prob.cap_cpu[h])
        model.Minimize(big * z + cost)
    else:
        model.Minimize(cost)


def _run(enc: Encoding, n_free: int, seed: int, workers: int, dtime: float, max_time: float) -> SubResult:
    solver = cp_model.CpSolver()
    params = solver.parameters
    params.num_workers = workers
    params.random_seed = seed
    params.max_deterministic_time = dtime
    params.max_time_in_seconds = max(max_time, 0.01)
    if n_free < SMALL_NEIGHBOURHOOD:
        # tiny neighbourhoods: presolve and LP relaxation cost more than they save (measured)
        params.cp_model_presolve = False
        params.linearization_level = 0
    status = solver.Solve(enc.model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SubResult("infeasible" if status == cp_model.INFEASIBLE else "unknown", None)
    assign = {j: h for (j, h), var in enc.x.items() if solver.BooleanValue(var)}
    return SubResult("optimal" if status == cp_model.OPTIMAL else "feasible", assign)


def squeeze_weight(prob, j: int) -> int:
    """Size of a VM relative to an average host, so big leftovers count more than small ones."""
    return 1 + (1000 * prob.mem[j]) // max(prob.avg_mem, 1) + (1000 * prob.cpu[j]) // max(prob.avg_cpu, 1)
