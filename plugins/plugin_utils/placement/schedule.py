"""Objective `schedule`: which VMs run, where, and the plan (migrate, suspend, resume) that gets there.

Entropy 2.0 (Hermenier, Lèbre, Menaud, VTDC 2010): when demand exceeds capacity, VMs of lower
priority are suspended to disk so that higher ones run; saved VMs resume on whichever host has room.

The run set is chosen greedily in decreasing priority, so it obeys the priority rule by
construction: no saved VM s and running VM r with priority(r) < priority(s), memory(r) >= memory(s)
and cpu(r) >= cpu(s) (s could take r's place). Within one priority, running VMs come before saved
ones (keeping a running VM where it is costs nothing), larger ones first. A running VM stays on its
host when it still fits there, and a saved VM resumes on the host that saved it when it fits there
without displacing anyone; otherwise the host is chosen where the VM fits
without displacing the running VMs not yet considered (best fit on memory), else where it fits
among the VMs already chosen with the least displaced memory; else it is saved (or stays saved).

Paused VMs and VMs a `root` (or continuous `gather`) constraint pins never change state and stay
where they are. Stopped VMs are never started. The plan is built by the common planner: suspends
first (their memory is free one step later), resumes wait until their room is free, and migration
cycles are broken through a pivot host, or a suspend when `allow_suspend` is true (the VMs the
schedule leaves saved are suspended whatever that option says: that is what schedule is for).
"""
from __future__ import annotations

import time
from bisect import bisect_left, insort
from dataclasses import replace
from typing import Callable

from .constraints import CPU_SCALE
from .errors import InfeasibleError, PlacementError
from .model import VM, Model
from .planner import Planner, _Step, planner_warnings
from .problem import Problem, build_problem
from .state import State

# Candidate hosts examined per VM in each of the two host searches (best fit first).
SCAN = 64


def solve_schedule(model: Model, t0: float, progress: Callable[[str], None] | None = None) -> dict:
    """Choose the VMs that run and their hosts, and build the plan; see the module docstring."""
    aug, saved_names = _augmented(model)
    prob = build_problem(aug)
    init = [-1 if name in saved_names else h for name, h in zip(prob.vm_names, prob.init)]
    for j, h in enumerate(init):
        if h < 0 and not prob.movable[j] and model.vm(prob.vm_names[j]).host != prob.host_names[prob.init[j]]:
            prob.domain[j] = []   # `root` on a saved VM without an online host: it stays saved
    target = _choose(model, prob, init)
    _check_budgets(model, prob, init, target)
    if progress is not None:
        progress(f"schedule: {sum(1 for h in target if h >= 0)} vms run, {sum(1 for h in target if h < 0)} saved")
    solve_s = time.monotonic() - t0
    planner = SchedulePlanner(prob, target, init, model.options.max_parallel_migrations_per_host,
                              model.options.allow_suspend)
    planner.run()
    return _plan(model, prob, init, target, planner, solve_s, time.monotonic() - t0 - solve_s)


def _check_budgets(model: Model, prob: Problem, init: list[int], target: list[int]) -> None:
    """Budgets are not traded against priorities: a schedule that needs more relocations says so."""
    opts = model.options
    moved = [j for j, (a, b) in enumerate(zip(init, target)) if a >= 0 and b >= 0 and a != b]
    memory = sum(model.vm(prob.vm_names[j]).memory_mib for j in moved)
    if opts.max_migrations is not None and len(moved) > opts.max_migrations:
        raise InfeasibleError(f"max_migrations {opts.max_migrations}: the schedule relocates {len(moved)} running vms; "
                              f"raise the budget or leave it unset for objective schedule")
    if opts.max_memory_moved_mib is not None and memory > opts.max_memory_moved_mib:
        raise InfeasibleError(f"max_memory_moved_mib {opts.max_memory_moved_mib}: the schedule relocates {memory} MiB; "
                              f"raise the budget or leave it unset for objective schedule")


def _augmented(model: Model) -> tuple[Model, set[str]]:
    """The model with every saved VM turned into a running VM (on a placeholder host when it has none),
    so the integer problem, the search state and the constraints see it as a VM that may run."""
    online = [h.name for h in model.hosts if h.state == "online"]
    if not online:
        raise InfeasibleError("schedule: no host is online")
    saved: set[str] = set()
    vms: list[VM] = []
    for v in model.vms:
        if v.state == "saved":
            saved.add(v.name)
            home = v.host if v.host is not None and model.host(v.host).state == "online" else online[0]
            v = replace(v, state="running", host=home)
        vms.append(v)
    return replace(model, vms=vms), saved


class _Sorted:
    """Hosts sorted by one free-memory figure, updated in place."""

    def __init__(self, keys: dict[int, int]) -> None:
        self.key = dict(keys)
        self.items = sorted((k, h) for h, k in keys.items())

    def set(self, h: int, key: int) -> None:
        old = (self.key[h], h)
        pos = bisect_left(self.items, old)
        del self.items[pos]
        self.key[h] = key
        insort(self.items, (key, h))

    def at_least(self, need: int) -> list[int]:
        pos = bisect_left(self.items, (need, -1))
        return [h for _k, h in self.items[pos:pos + 4 * SCAN]]


class _Chooser:
    """The greedy choice of the run set and its placement."""

    def __init__(self, model: Model, prob: Problem, init: list[int]) -> None:
        self.model, self.prob, self.init = model, prob, init
        self.st = State(prob)
        n = prob.n_hosts
        usable = [h for h in range(n) if prob.usable[h]]
        # loads of the running VMs not considered yet, on their current hosts
        self.rc, self.rm = [0] * n, [0] * n
        for j, h in enumerate(init):
            if h >= 0:
                self.rc[h] += prob.cpu[j]
                self.rm[h] += prob.mem[j]
        self.room = _Sorted({h: prob.cap_mem[h] - self.rm[h] for h in usable})    # without displacing anyone
        self.free = _Sorted({h: prob.cap_mem[h] for h in usable})                 # among the chosen VMs only
        self.target = [-1] * prob.n_vms
        # where each saved VM was saved (its host in the model), -1 for the others
        self.saved_on = [-1] * prob.n_vms
        for j, name in enumerate(prob.vm_names):
            where = model.vm(name).host
            if init[j] < 0 and where is not None and where in model.host_index:
                self.saved_on[j] = model.host_index[where]
        self.prio = [model.vm(name).priority or 0 for name in prob.vm_names]
        raw = [model.vm(name) for name in prob.vm_names]
        self.rule_mem = [v.memory_mib for v in raw]
        self.rule_cpu = [v.cpu for v in raw]

    def _sync(self, h: int) -> None:
        if h in self.room.key:
            free = self.prob.cap_mem[h] - self.st.lm[h]
            self.room.set(h, free - self.rm[h])
            self.free.set(h, free)

    def considered(self, unit: list[int]) -> None:
        for j in unit:
            h = self.init[j]
            if h >= 0:
                self.rc[h] -= self.prob.cpu[j]
                self.rm[h] -= self.prob.mem[j]
                self._sync(h)

    def place(self, unit: list[int], h: int) -> None:
        for j in unit:
            self.st.add(j, h)
            self.target[j] = h
        self._sync(h)

    def host_for(self, unit: list[int]) -> int:
        prob, st = self.prob, self.st
        cpu = sum(prob.cpu[j] for j in unit)
        mem = sum(prob.mem[j] for j in unit)
        homes = {self.init[j] for j in unit}
        if len(homes) == 1 and -1 not in homes:
            home = homes.pop()
            if st.fits(unit, home):
                return home
        saved_on = {self.saved_on[j] for j in unit}
        if len(saved_on) == 1 and -1 not in saved_on:
            # a saved VM resumes where it was saved when there is room (no image to move)
            home = saved_on.pop()
            if (st.lm[home] + self.rm[home] + mem <= prob.cap_mem[home] and st.lc[home] + self.rc[home] + cpu <= prob.cap_cpu[home]
                    and st.fits(unit, home)):
                return home
        seen = 0
        for h in self.room.at_least(mem):
            if st.lc[h] + self.rc[h] + cpu <= prob.cap_cpu[h] and st.fits(unit, h):
                return h
            seen += 1
            if seen >= SCAN:
                break
        best, best_key = -1, None
        seen = 0
        for h in self.free.at_least(mem):
            if st.lc[h] + cpu > prob.cap_cpu[h] or not st.fits(unit, h):
                continue
            # memory and cpu of the running VMs not considered yet that this VM pushes out of h
            over_m = st.lm[h] + self.rm[h] - prob.cap_mem[h]
            over_c = st.lc[h] + self.rc[h] - prob.cap_cpu[h]
            displaced = ((max(0, over_m + mem) - max(0, over_m)) / max(prob.cap_mem[h], 1)
                         + (max(0, over_c + cpu) - max(0, over_c)) / max(prob.cap_cpu[h], 1))
            key = (displaced, self.free.key[h])
            if best_key is None or key < best_key:
                best, best_key = h, key
            seen += 1
            if seen >= SCAN:
                break
        return best


def _choose(model: Model, prob: Problem, init: list[int]) -> list[int]:
    """Target host of every VM of the problem, -1 = saved at the end."""
    ch = _Chooser(model, prob, init)
    st = ch.st
    units = [u for u in st.units if u]
    paused = {j for j, name in enumerate(prob.vm_names) if model.vm(name).state == "paused"}
    fixed = [u for u in units if any(j in paused or (not prob.movable[j] and init[j] >= 0) for j in u)]
    fixed_ids = {id(u) for u in fixed}
    rest = [u for u in units if id(u) not in fixed_ids]
    for u in fixed:   # never change state: stay where they are
        ch.considered(u)
        running = [j for j in u if init[j] >= 0]
        if running:
            home = init[running[0]]
            ch.place(running, home)

    def size(u: list[int]) -> float:
        return sum(prob.mem[j] / max(prob.max_mem, 1) + prob.cpu[j] / max(prob.max_cpu, 1) for j in u)

    levels: dict[int, list[list[int]]] = {}
    for u in rest:
        levels.setdefault(max(ch.prio[j] for j in u), []).append(u)
    # rejected VMs of strictly higher priority, as (memory, cpu) sorted by memory with prefix minima of cpu
    higher: list[tuple[int, float]] = []
    mems: list[int] = []
    min_cpu: list[float] = []

    def dominates(u: list[int]) -> bool:
        """A VM that would use at least the room of a higher-priority VM left saved may not run."""
        for j in u:
            pos = bisect_left(mems, ch.rule_mem[j] + 1) - 1
            if pos >= 0 and min_cpu[pos] <= ch.rule_cpu[j]:
                return True
        return False

    for level in sorted(levels, reverse=True):
        group = sorted(levels[level], key=lambda u: (-size(u), u[0]))
        running = [u for u in group if all(init[j] >= 0 for j in u)]
        saved = [u for u in group if any(init[j] < 0 for j in u)]
        rejected: list[tuple[int, float]] = []
        moving: list[list[int]] = []
        # running VMs that still fit where they are stay there; the others move or are saved, then saved
        # VMs of this priority take the room left
        for u in running:
            ch.considered(u)
            homes = {init[j] for j in u}
            home = homes.pop() if len(homes) == 1 else -1
            if dominates(u):
                rejected.extend((ch.rule_mem[j], ch.rule_cpu[j]) for j in u)
            elif home >= 0 and ch.st.fits(u, home):
                ch.place(u, home)
            else:
                moving.append(u)
        for u in saved:
            ch.considered(u)   # (no running load to release)
        for u in [u for u in saved if dominates(u)]:
            rejected.extend((ch.rule_mem[j], ch.rule_cpu[j]) for j in u)
        saved = [u for u in saved if not dominates(u)]
        for u in moving + saved:
            h = ch.host_for(u)
            if h >= 0:
                ch.place(u, h)
            else:
                rejected.extend((ch.rule_mem[j], ch.rule_cpu[j]) for j in u)
        if rejected:
            higher = sorted(higher + rejected)
            mems = [m for m, _c in higher]
            min_cpu = []
            for _m, c in higher:
                min_cpu.append(c if not min_cpu else min(c, min_cpu[-1]))
    violation = priority_violation(model, prob, ch.target, paused)
    if violation:
        raise InfeasibleError(f"schedule: {violation}; the VMs that cannot be saved (paused, or pinned by a root or "
                              f"continuous gather constraint) leave no room for it")
    return ch.target


def priority_violation(model: Model, prob: Problem, target: list[int], paused: set[int]) -> str | None:
    """The first breach of the priority rule by a target (-1 = saved), or None."""
    prio = [model.vm(name).priority or 0 for name in prob.vm_names]
    mem = [model.vm(name).memory_mib for name in prob.vm_names]
    cpu = [model.vm(name).cpu for name in prob.vm_names]
    saved = sorted((prio[j], j) for j, h in enumerate(target) if h < 0)
    running = sorted((prio[j], j) for j, h in enumerate(target) if h >= 0 and j not in paused)
    lower: list[tuple[int, float, int]] = []   # running VMs of lower priority than the current level
    i = 0
    for level in sorted({p for p, _j in saved}):
        added = False
        while i < len(running) and running[i][0] < level:
            j = running[i][1]
            lower.append((mem[j], cpu[j], j))
            i += 1
            added = True
        if added:
            lower.sort()
            mems = [m for m, _c, _j in lower]
            best = [0] * len(lower)   # suffix maxima of cpu, with the VM that has it
            for k in range(len(lower) - 1, -1, -1):
                nxt = best[k + 1] if k + 1 < len(lower) else None
                best[k] = k if nxt is None or lower[k][1] >= lower[nxt][1] else nxt
        if not lower:
            continue
        for p, s in saved:
            if p != level:
                continue
            pos = bisect_left(mems, mem[s])
            if pos < len(lower) and lower[best[pos]][1] >= cpu[s]:
                r = lower[best[pos]][2]
                return (f"saved vm {prob.vm_names[s]!r} (priority {p}) could take the place of running vm "
                        f"{prob.vm_names[r]!r} (priority {prio[r]})")
    return None


class SchedulePlanner(Planner):
    """The common planner, started from a state where saved VMs are on no host; VMs whose target is
    -1 are suspended in the first step, saved VMs with a host in the target are resumed there (higher
    priority first) once their room is free."""

    def __init__(self, prob: Problem, target: list[int], init: list[int], max_parallel: int | None = None,
                 allow_suspend: bool = True) -> None:
        super().__init__(prob, target, max_parallel, allow_suspend)
        self.cur = list(init)
        self.lc, self.lm = [0] * prob.n_hosts, [0] * prob.n_hosts
        self.occ = [set() for _unused in range(prob.n_hosts)]
        for j, h in enumerate(self.cur):
            if h >= 0:
                self.lc[h] += prob.cpu[j]
                self.lm[h] += prob.mem[j]
                self.occ[h].add(j)
        self.lim_c = [max(c, x) for c, x in zip(prob.cap_cpu, self.lc)]
        self.lim_m = [max(c, x) for c, x in zip(prob.cap_mem, self.lm)]
        self.suspended = {j for j, h in enumerate(self.cur) if h < 0}
        self.prio = [prob.model.vm(name).priority or 0 for name in prob.vm_names]

    def _to_resume(self) -> list[int]:
        return sorted((j for j in self.suspended if self.target[j] >= 0), key=lambda j: (-self.prio[j], j))

    def run(self) -> None:
        prob = self.prob
        evict = [j for j in range(prob.n_vms) if self.cur[j] >= 0 and self.target[j] < 0]
        pending = sorted((j for j in range(prob.n_vms) if self.target[j] >= 0 and self.cur[j] >= 0
                          and self.target[j] != self.cur[j]), key=lambda j: (-prob.mem[j], j))
        guard = 4 * (len(pending) + len(self._to_resume())) + 10
        suspends = evict   # all in the first step: their memory is free one step later
        while pending or self._to_resume() or suspends:
            guard -= 1
            if guard < 0:
                raise PlacementError("plan building did not converge (internal error)")
            pending = self._one_step(pending, self._to_resume(), suspends)
            suspends = []

    def _break_deadlock(self, step: _Step, blocked: list[int]) -> None:
        if blocked:
            super()._break_deadlock(step, blocked)
            return
        # only resumes wait: they wait for room that no pending move will free
        names = ", ".join(repr(self.prob.vm_names[j]) for j in self._to_resume()[:3])
        raise PlacementError(f"plan building is stuck: no room frees up to resume vms {names} (internal error)")


def _plan(model: Model, prob: Problem, init: list[int], target: list[int], planner: SchedulePlanner,
          solve_s: float, plan_s: float) -> dict:
    names = prob.host_names
    placed_before = [h for h in init if h >= 0]
    placed_after = [h for h in target if h >= 0]
    before_hosts = {names[h] for h in placed_before}
    after_hosts = {names[h] for h in placed_after}
    saved_after = sorted(prob.vm_names[j] for j, h in enumerate(target) if h < 0)
    steps = planner.steps
    suspends = sum(1 for s in steps for a in s if a["action"] == "suspend")
    resumes = sum(1 for s in steps for a in s if a["action"] == "resume")

    def loads(pl: list[int]) -> tuple[list[int], list[int]]:
        lc, lm = [0] * prob.n_hosts, [0] * prob.n_hosts
        for j, h in enumerate(pl):
            if h >= 0:
                lc[h] += prob.cpu[j]
                lm[h] += prob.mem[j]
        return lc, lm

    def peak(pl: list[int]) -> float:
        lc, _lm = loads(pl)
        return max((lc[h] / prob.cap_cpu[h] for h in {h for h in pl if h >= 0} if prob.cap_cpu[h]), default=0.0)

    lc0, lm0 = loads(init)
    lc1, lm1 = loads(target)
    stats = {
        "hosts_used_before": len(before_hosts),
        "hosts_used_after": len(after_hosts),
        "hosts_lower_bound": None,
        "migrations": planner.migrations,
        "memory_moved_mib": planner.memory_moved,
        "pivots": planner.pivots,
        "suspends": suspends,
        "resumes": resumes,
        "vms_saved_before": sum(1 for h in init if h < 0),
        "vms_saved_after": len(saved_after),
        "steps": len(steps),
        "estimated_duration_s": round(sum(planner.durations), 1),
        "postcopy_migrations": len(planner.postcopy),
        "solve_seconds": round(solve_s, 3),
        "plan_seconds": round(plan_s, 3),
        "lns_iterations": 0,
        "cpu_peak_utilisation_before": round(peak(init), 4),
        "cpu_peak_utilisation_after": round(peak(target), 4),
        "overloaded_hosts_before": sum(1 for h in set(placed_before)
                                       if lc0[h] > prob.cap_cpu[h] or lm0[h] > prob.cap_mem[h]),
        "max_memory_used_mib": max(lm1, default=0),
        "max_cpu_used": max(lc1, default=0) / CPU_SCALE,
        "hosts_phase_seconds": None,
    }
    return {
        "version": 1,
        "status": "feasible" if steps else "unchanged",
        "objective": "schedule",
        "target": {prob.vm_names[j]: names[h] for j, h in enumerate(target) if h >= 0},
        "saved": saved_after,
        "steps": steps,
        "hosts_freed": sorted(before_hosts - after_hosts),
        "hosts_switched_on": sorted(after_hosts - before_hosts),
        "stats": stats,
        "warnings": list(model.warnings) + planner_warnings(planner),
    }
