"""Greedy start: keep VMs where they are, evict what breaks a rule, re-place by best fit.

FFD-style packers ignore the current placement and move nearly every VM, so they are never used as
a reconfiguration target; this keep-and-repair start moves only what must move. `drain` then
empties the least filled hosts one at a time when every VM of a host fits elsewhere.
"""
from __future__ import annotations

import time

from .problem import Problem
from .state import State


def host_order(prob: Problem) -> list[int]:
    """Hosts to switch on, largest normalised capacity first (packs more per host)."""
    mc = prob.max_cpu or 1
    mm = prob.max_mem or 1
    return sorted((h for h in range(prob.n_hosts) if prob.usable[h]),
                  key=lambda h: (-(prob.cap_cpu[h] / mc + prob.cap_mem[h] / mm), h))


def unit_size(prob: Problem, unit: list[int]) -> float:
    mc = prob.max_cpu or 1
    mm = prob.max_mem or 1
    return sum(prob.cpu[j] / mc + prob.mem[j] / mm for j in unit)


def _evict_overload(st: State, h: int) -> list[int]:
    """Evict movable units from overloaded host h, cheapest memory that fixes the overload first."""
    prob = st.prob
    evicted: list[int] = []
    while st.overloaded(h):
        over_c = max(0, st.lc[h] - prob.cap_cpu[h])
        over_m = max(0, st.lm[h] - prob.cap_mem[h])
        units = sorted({st.unit_of[j] for j in st.members[h] if all(prob.movable[k] for k in st.units[st.unit_of[j]])})
        if not units:
            break
        best, best_key = -1, None
        for u in units:
            cpu = sum(prob.cpu[j] for j in st.units[u])
            mem = sum(prob.mem[j] for j in st.units[u])
            solves = cpu >= over_c and mem >= over_m
            relief = min(cpu, over_c) / max(prob.cap_cpu[h], 1) + min(mem, over_m) / max(prob.cap_mem[h], 1)
            key = (0, mem, u) if solves else (1, -relief / (mem + 1), u)
            if best_key is None or key < best_key:
                best, best_key = u, key
        for j in st.units[best]:
            st.remove(j)
        evicted.append(best)
    return evicted


def place_units(st: State, units: list[int], order: list[int], allow_open: bool = True,
                exclude: frozenset | set = frozenset()) -> list[int]:
    """Best-fit the given units; returns the units that found no host."""
    prob = st.prob
    failed = []
    for u in sorted(units, key=lambda u: (-unit_size(prob, st.units[u]), u)):
        unit = st.units[u]
        h = st.best_used_host(unit, exclude)
        if h < 0 and allow_open:
            h = st.best_new_host(unit, [x for x in order if x not in exclude] if exclude else order)
        if h < 0:
            failed.append(u)
            continue
        for j in unit:
            st.add(j, h)
    return failed


def keep_and_repair(prob: Problem) -> tuple[State, list[int]]:
    """Initial state; the second value lists units that could not be placed (empty = feasible)."""
    st = State(prob)
    evicted: list[int] = []
    for u, unit in enumerate(st.units):
        if not unit:
            continue
        hosts = {prob.init[j] for j in unit}
        h = prob.init[unit[0]]
        if len(hosts) == 1 and st.fits(unit, h, capacity=False):
            for j in unit:
                st.add(j, h)
        else:
            evicted.append(u)
    for h in range(prob.n_hosts):
        if st.members[h] and st.overloaded(h):
            evicted.extend(_evict_overload(st, h))
    failed = place_units(st, evicted, host_order(prob))
    return st, failed


def drain(st: State, deadline: float, protect: frozenset | set = frozenset()) -> int:
    """Empty least-filled hosts whose VMs all fit on other used hosts. Returns hosts freed."""
    prob = st.prob
    freed = 0
    tried: set[int] = set()
    while time.monotonic() < deadline:
        cands = [h for h in range(prob.n_hosts) if st.members[h] and h not in tried and h not in protect]
        if not cands:
            break
        cands.sort(key=lambda h: (st.fill(h), h))
        progress = False
        for t in cands[:64]:
            tried.add(t)
            if time.monotonic() >= deadline:
                break
            units = sorted({st.unit_of[j] for j in st.members[t]})
            if any(not prob.movable[j] for u in units for j in st.units[u]):
                continue
            for u in units:
                for j in st.units[u]:
                    st.remove(j)
            moved: list[int] = []
            ok = True
            for u in sorted(units, key=lambda u: (-unit_size(prob, st.units[u]), u)):
                h = st.best_used_host(st.units[u], {t})
                if h < 0:
                    ok = False
                    break
                for j in st.units[u]:
                    st.add(j, h)
                moved.append(u)
            if ok:
                freed += 1
                progress = True
                continue
            for u in moved:
                for j in st.units[u]:
                    st.remove(j)
            for u in units:
                for j in st.units[u]:
                    st.add(j, t)
        if not progress and len(tried) >= len(cands):
            break
    return freed
