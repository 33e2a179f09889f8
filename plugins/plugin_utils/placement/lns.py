"""Large-neighbourhood search with CP-SAT on small sub-problems.

Determinism: one worker, a deterministic time per sub-solve and an iteration budget give the same
result for the same seed; the wall-clock limit only cuts the search short (best-so-far is kept).
Neighbourhoods for consolidation are built around one host to empty plus receivers whose free
capacity matches its load; they grow on stagnation because a 10-host neighbourhood plateaus once
the slack left is spread thin.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Callable

from .cpsat import solve_sub
from .state import State

MAX_FREE_VMS = 160


@dataclass
class LnsConfig:
    objective: str
    deadline: float
    seed: int = 0
    workers: int = 1
    max_iterations: int = 2000
    max_migrations: int | None = None
    max_memory_moved_mib: int | None = None
    lower_bound: int = 0
    dtime: float = 0.04
    progress: Callable[[str], None] | None = None


class Lns:
    def __init__(self, st: State, cfg: LnsConfig) -> None:
        self.st = st
        self.prob = st.prob
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        self.iterations = 0
        self.improvements = 0
        self.initially_used = frozenset(self.prob.init)

    # --- helpers ----------------------------------------------------------------------------
    def used(self) -> list[int]:
        return [h for h in range(self.prob.n_hosts) if self.st.members[h]]

    def moved(self) -> tuple[int, int]:
        prob = self.prob
        n = m = 0
        for j, h in enumerate(self.st.host_of):
            if h != prob.init[j]:
                n += 1
                m += prob.mem[j]
        return n, m

    def _budgets(self, free: list[int]) -> tuple[int | None, int | None]:
        if self.cfg.max_migrations is None and self.cfg.max_memory_moved_mib is None:
            return None, None
        prob = self.prob
        n, m = self.moved()
        for j in free:
            if self.st.host_of[j] != prob.init[j]:
                n -= 1
                m -= prob.mem[j]
        left_n = None if self.cfg.max_migrations is None else self.cfg.max_migrations - n
        left_m = None if self.cfg.max_memory_moved_mib is None else self.cfg.max_memory_moved_mib - m
        return left_n, left_m

    def _free_vms(self, hosts: list[int]) -> list[int]:
        prob = self.prob
        free = []
        for h in hosts:
            free.extend(j for j in self.st.members[h] if prob.movable[j])
        return sorted(free)

    def _time_left(self) -> float:
        return self.cfg.deadline - time.monotonic()

    def _apply(self, free: list[int], assign: dict[int, int]) -> int:
        changed = sum(1 for j in free if assign[j] != self.st.host_of[j])
        for j in free:
            self.st.remove(j)
        for j in free:
            self.st.add(j, assign[j])
        return changed

    def _solve(self, free: list[int], hosts: list[int], mode: str, targets: frozenset | set = frozenset()) -> bool:
        if not free:
            return False
        self.iterations += 1
        res = solve_sub(self.st, free, hosts, mode, targets=targets, budgets=self._budgets(free),
                        seed=self.rng.randrange(1 << 30), workers=self.cfg.workers, dtime=self.cfg.dtime,
                        max_time=min(self._time_left(), 10 * self.cfg.dtime + 1), initially_used=self.initially_used)
        if res.assign is None or len(res.assign) != len(free):
            return False
        return self._apply(free, res.assign) > 0

    def _done(self) -> bool:
        return self.iterations >= self.cfg.max_iterations or self._time_left() <= 0

    def _report(self, what: str) -> None:
        if self.cfg.progress:
            n, m = self.moved()
            self.cfg.progress(f"{what}: iter {self.iterations}, hosts used {len(self.used())}, "
                              f"migrations {n}, memory moved {m} MiB")

    # --- consolidate ------------------------------------------------------------------------
    def _receivers(self, t: int, k: int) -> list[int]:
        st, prob = self.st, self.prob
        need_c = max(st.lc[t], 1)
        need_m = max(st.lm[t], 1)
        scored = []
        for h in range(prob.n_hosts):
            if h == t or not st.members[h]:
                continue
            fc = (prob.cap_cpu[h] - st.lc[h]) / need_c
            fm = (prob.cap_mem[h] - st.lm[h]) / need_m
            match = min(fc, fm, 1.0)
            scored.append((-match + self.rng.random() * 0.3, h))
        scored.sort()
        pool = [h for _s, h in scored[:3 * k]]
        self.rng.shuffle(pool)
        return pool[:k]

    def consolidate(self, share: float = 0.75) -> None:
        st, prob = self.st, self.prob
        stop = time.monotonic() + max(self._time_left(), 0) * share
        fails: dict[int, int] = {}
        size = 8
        stagnation = 0
        last_report = time.monotonic()
        while not self._done() and time.monotonic() < stop:
            used = self.used()
            if len(used) <= self.cfg.lower_bound:
                break
            cands = [h for h in used if all(prob.movable[j] for j in st.members[h])]
            if not cands:
                break
            cands.sort(key=lambda h: (st.fill(h) + 0.15 * fails.get(h, 0), h))
            t = cands[min(int(self.rng.random() ** 2 * len(cands)), 7, len(cands) - 1)]
            hosts = [t] + self._receivers(t, size)
            free = self._free_vms(hosts)
            while len(free) > MAX_FREE_VMS and len(hosts) > 2:
                hosts.pop()
                free = self._free_vms(hosts)
            before = len(used)
            self._solve(free, hosts, "consolidate", targets={t})
            if len(self.used()) < before:
                self.improvements += 1
                fails.pop(t, None)
                stagnation = 0
                size = 8
            else:
                fails[t] = fails.get(t, 0) + 1
                stagnation += 1
                if stagnation % 30 == 0:
                    size = min(size * 2, 32)
            if time.monotonic() - last_report > 1.0:
                self._report("consolidate")
                last_report = time.monotonic()

    # --- fewer migrations -------------------------------------------------------------------
    def reduce_moves(self, mode: str = "moves") -> None:
        """Bring moved VMs back home (or to cheaper spots) without using more hosts."""
        st, prob = self.st, self.prob
        last_report = time.monotonic()
        stale = 0
        while not self._done() and stale < 3:
            movers = [j for j in range(prob.n_vms) if st.host_of[j] != prob.init[j]]
            if not movers:
                return
            self.rng.shuffle(movers)
            gained = False
            for j in movers:
                if self._done():
                    return
                if st.host_of[j] == prob.init[j]:
                    continue
                hosts = {st.host_of[j], prob.init[j]}
                if mode == "moves" and not st.members[prob.init[j]]:
                    continue  # its home host is off now; bringing it back would switch a host on
                extra = [h for h in self.used() if h not in hosts]
                self.rng.shuffle(extra)
                hosts |= set(extra[:4])
                hl = sorted(hosts)
                free = self._free_vms(hl)
                if len(free) > MAX_FREE_VMS:
                    continue
                before = self.moved()
                if self._solve(free, hl, mode) and self.moved()[1] < before[1]:
                    gained = True
                if time.monotonic() - last_report > 1.0:
                    self._report("fewer migrations")
                    last_report = time.monotonic()
            stale = 0 if gained else stale + 1

    # --- balance ----------------------------------------------------------------------------
    def balance(self) -> None:
        st, prob = self.st, self.prob
        stale = 0
        while not self._done() and stale < 20:
            used = self.used()
            used.sort(key=lambda h: (st.lc[h] / max(prob.cap_cpu[h], 1), h))
            top = used[-3:]
            low = used[:max(3, min(8, len(used) // 4))]
            mid = [h for h in used if h not in top and h not in low]
            self.rng.shuffle(mid)
            hosts = sorted(set(top + low + mid[:3]))
            peak = max(st.lc[h] / max(prob.cap_cpu[h], 1) for h in used)
            self._solve(self._free_vms(hosts), hosts, "balance")
            now = max(st.lc[h] / max(prob.cap_cpu[h], 1) for h in self.used())
            stale = 0 if now < peak - 1e-9 else stale + 1
