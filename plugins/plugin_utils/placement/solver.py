"""The one public entry point: model in, executable plan out."""
from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable

from .bounds import bound_stats, hosts_lower_bound, memory_moved_bound, strong_hosts_bound
from .context import SolveContext
from .cpsat import require_ortools, solve_sub
from .diagnose import diagnose, raise_if_infeasible
from .errors import InfeasibleError, PlacementError
from .greedy import drain, host_order, keep_and_repair, place_units
from .hostset import choose_hosts, joint_cover_bound
from .pack import home_pass, pack_cosine, relabel
from .lns import Lns
from .neighbourhoods import balanced_stay, empty_hosts, is_big_vm_mix
from .model import Model, load_model
from .planner import build_plan, planner_warnings
from .schedule import solve_schedule
from .problem import CPU_SCALE, Problem, build_problem
from .state import State

PLAN_VERSION = 1
# VM x host pairs up to which one CP-SAT model over the whole cluster is used instead of the LNS.
DENSE_PAIRS = 3000
# Deterministic-time share of the remaining wall time for the dense model, so that the
# deterministic limit (reproducible) normally ends the search before the wall clock does.
DENSE_DTIME_SHARE = 0.15
# LNS iteration budget when the model sets no max_iterations (docs/model-format.md).
MAX_ITERATIONS = 100000
# Iterations the LNS gets to place what the greedy start could not, on large problems.
FIXER_ITERATIONS = 2000
# Constraints up to which an infeasible small model is re-solved without each one to name the culprit.
BLAME_LIMIT = 24
# Wall time for each of those re-solves (each gets a fifth of it and of the dense deterministic share).
BLAME_SECONDS = 1.0


def _over_budget(prob: Problem, placement: list[int]) -> str | None:
    opts = prob.model.options
    n, m = prob.moved(placement)
    if opts.max_migrations is not None and n > opts.max_migrations:
        return f"max_migrations {opts.max_migrations}: the best placement found needs {n} migrations"
    if opts.max_memory_moved_mib is not None and m > opts.max_memory_moved_mib:
        return f"max_memory_moved_mib {opts.max_memory_moved_mib}: the best placement found moves {m} MiB"
    return None


def _dense(ctx: SolveContext, mode: str, hosts: list[int] | None = None, share: float = 1.0,
           max_used: int | None = None) -> str:
    """Solve the whole problem in one CP-SAT model (on `hosts`, default every usable host) within
    `share` of the time left; returns the CP-SAT status."""
    st, prob, opts = ctx.st, ctx.prob, ctx.opts
    free = [j for j in range(prob.n_vms) if prob.movable[j]]
    left = max(ctx.deadline - time.monotonic(), 0.05)
    # the deterministic budget derives from the time limit, not from the wall time left, so that
    # the same model and seed give the same plan
    res = solve_sub(st, free, ctx.usable if hosts is None else hosts, mode,
                    budgets=(opts.max_migrations, opts.max_memory_moved_mib), seed=opts.seed, workers=opts.workers,
                    dtime=max(opts.time_limit_s * share * DENSE_DTIME_SHARE, 0.02), max_time=left * share,
                    initially_used=frozenset(prob.init), max_used=max_used)
    if res.assign is not None:
        for j in free:
            if st.host_of[j] >= 0:
                st.remove(j)
        for j in free:
            st.add(j, res.assign[j])
    return res.status


def _pack(ctx: SolveContext, lns: Lns) -> None:
    """Consolidate by packing into a host set chosen up front (type aware, cosine rule), placing
    the leftovers on extra hosts, then letting the LNS empty the least filled hosts."""
    st, prob = ctx.st, ctx.prob
    saved = st.placement()
    keep = choose_hosts(st, seed=ctx.opts.seed)
    # big-VM mixes: pack once repacking all, then (time permitting) once keeping balanced VMs in place
    stays = [set(), balanced_stay(st, keep)] if is_big_vm_mix(prob) else [set()]
    best: tuple[int, int, list[int]] | None = None
    began = time.monotonic()
    for stay in stays:
        if best is not None:
            # another packing only if it (as long as the first) ends before 60 % of the time limit
            if time.monotonic() + 2 * (time.monotonic() - began) > ctx.at(0.6):
                break
            _restore(st, saved)
        _pack_once(st, keep, stay)
        if len(set(st.host_of)) >= len(set(saved)):
            _restore(st, saved)
        relabel(st)
        home_pass(st)
        key = (len(set(st.host_of)), prob.moved(st.host_of)[1], st.placement())
        if best is None or key[:2] < best[:2]:
            best = key
    if best is not None and len(stays) > 1:
        _restore(st, best[2])
    if is_big_vm_mix(prob):
        empty_hosts(lns, time.monotonic() + max(ctx.deadline - time.monotonic(), 0) * 0.5)
    else:
        lns.consolidate(share=0.5)
    relabel(st)
    home_pass(st)


def _pack_once(st: State, keep: set[int], stay: set[int]) -> None:
    """Pack every movable unit but the `stay` VMs into `keep` (cosine rule), leftovers on extra hosts;
    a unit left unplaced sends the state back to where it was."""
    prob = st.prob
    saved = st.placement()
    movable = sorted({st.unit_of[j] for j in range(prob.n_vms)
                      if all(prob.movable[k] for k in st.units[st.unit_of[j]]) and j not in stay})
    for u in movable:
        for j in st.units[u]:
            st.remove(j)
    left = pack_cosine(st, keep, movable)
    if left:
        left = place_units(st, left, host_order(prob), allow_open=True)
    if left:
        _restore(st, saved)


def _restore(st: State, placement: list[int]) -> None:
    for j in range(st.prob.n_vms):
        if st.host_of[j] >= 0:
            st.remove(j)
    for j, h in enumerate(placement):
        st.add(j, h)


def _cpu_peak(prob: Problem, placement: list[int]) -> float:
    lc, _lm = prob.loads(placement)
    return max((lc[h] / prob.cap_cpu[h] for h in set(placement) if prob.cap_cpu[h]), default=0.0)


def solve(model_or_dict: Any, progress: Callable[[str], None] | None = None, **overrides: Any) -> dict:
    """Compute a target placement and an executable plan for a model (dict or Model).

    Keyword overrides replace model options (objective, time_limit_s, seed, ...).
    Raises ModelError (malformed input), InfeasibleError (no viable placement), PlacementError.
    """
    t0 = time.monotonic()
    model: Model = load_model(model_or_dict, **overrides)
    if model.options.objective == "schedule":
        return solve_schedule(model, t0, progress)   # greedy by priority: no CP-SAT needed
    require_ortools()
    prob = build_problem(model)
    raise_if_infeasible(prob)
    lb = max(hosts_lower_bound(prob), joint_cover_bound(prob) or 0,
             *(con.hosts_bound(prob, data) for con, data in prob.rules if data is not None))
    strong = max(lb, strong_hosts_bound(prob))
    st, failed = keep_and_repair(prob)
    ctx = SolveContext(model, prob, st, t0, progress)
    dense = prob.n_vms * max(len(ctx.usable), 1) <= DENSE_PAIRS
    if failed or _over_budget(prob, st.host_of):
        _viable_start(ctx, dense, bool(failed))
    improvers = [(con, data) for con, data in prob.rules if data is not None and con.IMPROVE_SHARE]
    keep = ctx.opts.time_limit_s * min(sum(con.IMPROVE_SHARE for con, _d in improvers), 0.5)
    ctx.deadline -= keep
    lns = Lns(ctx, lower_bound=strong, max_iterations=ctx.opts.max_iterations if ctx.opts.max_iterations is not None
              else MAX_ITERATIONS)
    proved, hosts_phase = _optimise(ctx, lns, dense)
    ctx.deadline += keep
    for con, data in improvers:
        con.improve(ctx, data)   # each constraint's own secondary objective (e.g. network: cross-rack traffic)
    target = _keep_if_not_worth_it(ctx, st.placement())
    plan = _plan(prob, target, lb, t0, proved, lns.iterations, strong)
    plan["stats"]["hosts_phase_seconds"] = None if hosts_phase is None else round(hosts_phase, 3)
    return plan


def _viable_start(ctx: SolveContext, dense: bool, failed: bool) -> None:
    """The greedy start left VMs unplaced or broke a budget: make it viable or say why not."""
    budget_msg = _over_budget(ctx.prob, ctx.st.host_of) if not failed else None
    if dense:
        _dense_start(ctx, budget_msg)
    elif budget_msg:
        raise InfeasibleError(budget_msg)
    else:
        # let the LNS rearrange hosts to make room for what the greedy could not place
        fixer = Lns(ctx, max_iterations=FIXER_ITERATIONS, budgets=False, report=False)
        fixer.squeeze(set(ctx.usable), ctx.at(0.5), patience=10 ** 9)
        left = fixer.unplaced()
        if left:
            names = ", ".join(repr(ctx.prob.vm_names[j]) for j in left[:3])
            raise PlacementError(f"no host found for vms {names} within the time limit; try a longer time limit "
                                 f"or relax constraints")


def _optimise(ctx: SolveContext, lns: Lns, dense: bool) -> tuple[bool, float | None]:
    """The objective's search; returns (proved optimal, seconds until the hosts count stopped falling)."""
    st, opts = ctx.st, ctx.opts
    proved = False
    hosts_phase: float | None = None
    if opts.objective == "consolidate":
        if dense and not ctx.budgeted:
            drain(st, ctx.at(0.2))
        if dense:
            # lexicographic: fewest hosts first, then least memory moved with that many hosts
            first = _dense(ctx, "hosts", share=0.5)
            hosts_phase = time.monotonic() - ctx.t0
            second = _dense(ctx, "moves", share=0.5, max_used=len(set(st.host_of)))
            proved = first == "optimal" and second == "optimal"
        else:
            if ctx.budgeted:
                lns.consolidate()
            else:
                _pack(ctx, lns)
            hosts_phase = time.monotonic() - ctx.t0
            if _moved_above_bound(ctx):
                lns.reduce_moves("moves")
    elif opts.objective == "repair":
        if dense:
            proved = _dense(ctx, "repair") == "optimal"
        else:
            home_pass(st)
            lns.reduce_moves("repair")
    elif dense:
        proved = _dense(ctx, "balance", sorted(set(st.host_of))) == "optimal"
    else:
        lns.balance()
    return proved, hosts_phase


def _moved_above_bound(ctx: SolveContext) -> bool:
    """False once the memory moved meets its lower bound at the current hosts count (stop early)."""
    placement = ctx.st.placement()
    return ctx.prob.moved(placement)[1] > memory_moved_bound(ctx.prob, len(set(placement)))


def _keep_if_not_worth_it(ctx: SolveContext, target: list[int]) -> list[int]:
    """Check the budgets; keep the initial placement when a consolidation frees fewer hosts than
    `min_gain_hosts` and the cluster is fine as it is."""
    prob, opts = ctx.prob, ctx.opts
    msg = _over_budget(prob, target)
    if msg:
        raise InfeasibleError(msg)
    gain = len(set(prob.init)) - len(set(target))
    if (opts.objective == "consolidate" and opts.min_gain_hosts and gain < opts.min_gain_hosts
            and not _overloaded_at_start(prob) and _constraints_ok(ctx.model, prob, prob.init)):
        return list(prob.init)
    return target


def _dense_start(ctx: SolveContext, budget_msg: str | None) -> None:
    """Small problems whose greedy start failed (or broke a budget): one CP-SAT model decides."""
    model = ctx.model
    status = _dense(ctx, "repair")
    if status == "infeasible":
        if budget_msg:
            raise InfeasibleError(budget_msg)
        culprits = _blame(model, ctx.opts.seed)
        if culprits:
            raise InfeasibleError(f"no placement satisfies all constraints and capacities together; "
                                  f"without {culprits[0]} one exists", [f"without {c} one exists" for c in culprits])
        raise InfeasibleError("no placement satisfies all constraints and capacities together "
                              f"({len(model.constraints)} constraints); relax one of them")
    if any(h < 0 for h in ctx.st.host_of):
        raise PlacementError("no viable placement found within the time limit")


def _blame(model: Model, seed: int, limit: int = BLAME_LIMIT) -> list[str]:
    """Constraints whose removal alone makes a small infeasible model feasible (cheap: few constraints)."""
    if len(model.constraints) > limit:
        return []
    culprits = []
    for i, con in enumerate(model.constraints):
        relaxed = dataclasses.replace(model, constraints=model.constraints[:i] + model.constraints[i + 1:],
                                      options=dataclasses.replace(model.options, seed=seed, workers=1))
        prob = build_problem(relaxed)
        if diagnose(prob):
            continue
        st, failed = keep_and_repair(prob)
        if failed:
            now = time.monotonic()
            ctx = SolveContext(relaxed, prob, st, now, deadline=now + BLAME_SECONDS)
            if _dense(ctx, "repair", share=0.2) in ("infeasible", "unknown"):
                continue
        culprits.append(con.describe())
    return culprits


def _overloaded_at_start(prob: Problem) -> set[int]:
    lc, lm = prob.loads(prob.init)
    return {h for h in set(prob.init) if lc[h] > prob.cap_cpu[h] or lm[h] > prob.cap_mem[h]}


def _constraints_ok(model: Model, prob: Problem, placement: list[int]) -> bool:
    names = {prob.vm_names[j]: prob.host_names[h] for j, h in enumerate(placement)}
    return not any(c.check_final(model, names) for c in model.constraints)


def plan_for_target(model_or_dict: Any, target: dict[str, str], **overrides: Any) -> dict:
    """Build and return the plan that moves the cluster to a given target placement {vm: host}."""
    t0 = time.monotonic()
    model = load_model(model_or_dict, **overrides)
    prob = build_problem(model)
    hidx = model.host_index
    try:
        placement = [hidx[target[n]] for n in prob.vm_names]
    except KeyError as exc:
        raise PlacementError(f"target: no host given for vm or unknown host {exc.args[0]!r}") from exc
    return _plan(prob, placement, hosts_lower_bound(prob), t0, False, 0)


def _plan(prob: Problem, target: list[int], lb: int, t0: float, proved: bool, iterations: int,
          strong: int | None = None) -> dict:
    model = prob.model
    solve_s = time.monotonic() - t0
    planner = build_plan(prob, target, model.options.max_parallel_migrations_per_host, model.options.allow_suspend)
    before_hosts = {prob.host_names[h] for h in set(prob.init)}
    after_hosts = {prob.host_names[h] for h in set(target)}
    changed = target != prob.init
    status = "unchanged" if not changed else ("optimal" if proved else "feasible")
    lc, lm = prob.loads(target)
    stats = {
        "hosts_used_before": len(before_hosts),
        "hosts_used_after": len(after_hosts),
        "hosts_lower_bound": lb,
        "migrations": planner.migrations,
        "memory_moved_mib": planner.memory_moved,
        "pivots": planner.pivots,
        "suspends": sum(1 for s in planner.steps for a in s if a["action"] == "suspend"),
        "steps": len(planner.steps),
        "estimated_duration_s": round(sum(planner.durations), 1),
        "postcopy_migrations": len(planner.postcopy),
        "solve_seconds": round(solve_s, 3),
        "plan_seconds": round(time.monotonic() - t0 - solve_s, 3),
        "lns_iterations": iterations,
        "cpu_peak_utilisation_before": round(_cpu_peak(prob, prob.init), 4),
        "cpu_peak_utilisation_after": round(_cpu_peak(prob, target), 4),
        "overloaded_hosts_before": len(_overloaded_at_start(prob)),
        "max_memory_used_mib": max(lm, default=0),
        "max_cpu_used": max(lc, default=0) / CPU_SCALE,
    }
    for con in model.constraints:
        stats.update(con.stats(model, {prob.vm_names[j]: prob.host_names[h] for j, h in enumerate(target)}))
    stats.update(bound_stats(prob, len(after_hosts), strong, planner.memory_moved))
    return {
        "version": PLAN_VERSION,
        "status": status,
        "objective": model.options.objective,
        "target": {prob.vm_names[j]: prob.host_names[h] for j, h in enumerate(target)},
        "steps": planner.steps,
        "hosts_freed": sorted(before_hosts - after_hosts),
        "hosts_switched_on": sorted(after_hosts - before_hosts),
        "stats": stats,
        "warnings": list(model.warnings) + planner_warnings(planner),
    }
