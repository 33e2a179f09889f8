"""Incremental placement state shared by the greedy heuristics and the LNS.

Tracks loads and the counters that let spread, lonely and max_online be tested in O(1) per VM
(every other constraint answers through its own `fits` hook), and keeps used hosts sorted by free
memory so best-fit does not scan every host.
"""
from __future__ import annotations

from bisect import bisect_left, insort

from .problem import Problem


class State:
    def __init__(self, prob: Problem) -> None:
        self.prob = prob
        n = prob.n_hosts
        self.host_of = [-1] * prob.n_vms
        self.lc = [0] * n
        self.lm = [0] * n
        self.members: list[set[int]] = [set() for _unused in range(n)]
        self.classes: list[dict[int, int]] = [{} for _unused in range(n)]
        self.spread_count: list[dict[int, int]] = [{} for _unused in prob.spread_groups]
        self.online_count = [0] * len(prob.max_online)
        self.free_list: list[tuple[int, int]] = []   # (free memory, host) of used hosts
        # units: gather groups move as one block
        self.unit_of = list(range(prob.n_vms))
        self.units: list[list[int]] = [[j] for j in range(prob.n_vms)]
        for group in prob.gather_groups:
            uid = self.unit_of[group[0]]
            for j in group[1:]:
                old = self.unit_of[j]
                if old == uid:
                    continue
                for k in self.units[old]:
                    self.unit_of[k] = uid
                self.units[uid].extend(self.units[old])
                self.units[old] = []
        self.units = [sorted(set(u)) for u in self.units]

    # --- bookkeeping -------------------------------------------------------------------------
    def _in_scope(self, k: int, h: int) -> bool:
        scope = self.prob.max_online[k][1]
        return scope is None or h in scope

    def _unlist(self, h: int) -> None:
        if self.members[h]:
            key = (self.prob.cap_mem[h] - self.lm[h], h)
            pos = bisect_left(self.free_list, key)
            if pos < len(self.free_list) and self.free_list[pos] == key:
                del self.free_list[pos]

    def _list(self, h: int) -> None:
        if self.members[h]:
            insort(self.free_list, (self.prob.cap_mem[h] - self.lm[h], h))

    def add(self, j: int, h: int) -> None:
        prob = self.prob
        was_used = bool(self.members[h])
        if not was_used:
            for k in range(len(prob.max_online)):
                if self._in_scope(k, h):
                    self.online_count[k] += 1
        self._unlist(h)
        for con, data in prob.trackers:
            con.track(self, data, j, h, 1)
        self.host_of[j] = h
        self.lc[h] += prob.cpu[j]
        self.lm[h] += prob.mem[j]
        self.members[h].add(j)
        self._list(h)
        c = prob.lonely_class[j]
        self.classes[h][c] = self.classes[h].get(c, 0) + 1
        for g in prob.vm_spreads[j]:
            self.spread_count[g][h] = self.spread_count[g].get(h, 0) + 1

    def remove(self, j: int) -> int:
        prob = self.prob
        h = self.host_of[j]
        self._unlist(h)
        for con, data in prob.trackers:
            con.track(self, data, j, h, -1)
        self.host_of[j] = -1
        self.lc[h] -= prob.cpu[j]
        self.lm[h] -= prob.mem[j]
        self.members[h].discard(j)
        self._list(h)
        c = prob.lonely_class[j]
        self.classes[h][c] -= 1
        if not self.classes[h][c]:
            del self.classes[h][c]
        for g in prob.vm_spreads[j]:
            self.spread_count[g][h] -= 1
        if not self.members[h]:
            for k in range(len(prob.max_online)):
                if self._in_scope(k, h):
                    self.online_count[k] -= 1
        return h

    # --- feasibility -------------------------------------------------------------------------
    def fits(self, unit: list[int], h: int, capacity: bool = True) -> bool:
        prob = self.prob
        if not prob.usable[h]:
            return False
        cpu = mem = 0
        cls = None
        for j in unit:
            if not prob.allowed(j, h):
                return False
            cpu += prob.cpu[j]
            mem += prob.mem[j]
            for con, data in prob.vm_rules[j]:
                if not con.fits(self, data, j, h):
                    return False
            c = prob.lonely_class[j]
            if cls is None:
                cls = c
            elif cls != c:
                return False
        if capacity and (self.lc[h] + cpu > prob.cap_cpu[h] or self.lm[h] + mem > prob.cap_mem[h]):
            return False
        present = self.classes[h]
        if present and (len(present) > 1 or cls not in present):
            return False
        if not self.members[h]:
            for k, (amount, _scope, _con) in enumerate(prob.max_online):
                if self._in_scope(k, h) and self.online_count[k] >= amount:
                    return False
        return True

    def overloaded(self, h: int) -> bool:
        return self.lc[h] > self.prob.cap_cpu[h] or self.lm[h] > self.prob.cap_mem[h]

    def fill(self, h: int) -> float:
        prob = self.prob
        fc = self.lc[h] / prob.cap_cpu[h] if prob.cap_cpu[h] else (1.0 if self.lc[h] else 0.0)
        fm = self.lm[h] / prob.cap_mem[h] if prob.cap_mem[h] else (1.0 if self.lm[h] else 0.0)
        return max(fc, fm)

    def slack_score(self, unit: list[int], h: int) -> float:
        """Normalised capacity left after adding `unit` (lower = tighter fit)."""
        prob = self.prob
        cpu = sum(prob.cpu[j] for j in unit)
        mem = sum(prob.mem[j] for j in unit)
        sc = (prob.cap_cpu[h] - self.lc[h] - cpu) / max(prob.cap_cpu[h], 1)
        sm = (prob.cap_mem[h] - self.lm[h] - mem) / max(prob.cap_mem[h], 1)
        return sc + sm

    def best_used_host(self, unit: list[int], exclude: set[int] | frozenset = frozenset(), scan: int = 48) -> int:
        """Best fit among hosts already in use (-1 if none fits)."""
        prob = self.prob
        mem = sum(prob.mem[j] for j in unit)
        dom = prob.domain[unit[0]]
        best, best_score = -1, 0.0
        if dom is not None and len(dom) < 4 * scan:
            cands = [h for h in dom if self.members[h] and h not in exclude]
        else:
            pos = bisect_left(self.free_list, (mem, -1))
            cands = [h for _f, h in self.free_list[pos:pos + 8 * scan] if h not in exclude]
        seen = 0
        for h in cands:
            if not self.fits(unit, h):
                continue
            score = self.slack_score(unit, h)
            if best < 0 or score < best_score:
                best, best_score = h, score
            seen += 1
            if seen >= scan:
                break
        return best

    def best_new_host(self, unit: list[int], order: list[int]) -> int:
        """First empty host in `order` (largest first) that takes the unit."""
        for h in order:
            if not self.members[h] and self.fits(unit, h):
                return h
        return -1

    def placement(self) -> list[int]:
        return list(self.host_of)
