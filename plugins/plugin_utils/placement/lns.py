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

from .context import SolveContext
from .cpsat import solve_sub, squeeze_weight
from .greedy import place_units

# Sub-problem sizes. A sub-solve with ~10 hosts / ~50 VMs takes 0.15-0.2 s and keeps memory flat;
# beyond MAX_FREE_VMS free VMs the CP-SAT model gets slow for the deterministic time it is given.
MAX_FREE_VMS = 160
SUB_DTIME = 0.04              # deterministic seconds per sub-solve (reproducible, unlike wall time)
SUB_WALL_FACTOR = 10          # wall-clock cap per sub-solve: this many times SUB_DTIME, plus a second
REPORT_EVERY_S = 1.0          # progress line at most this often

# consolidate: empty one lightly filled host into receivers whose free capacity matches its load
NEIGHBOURHOOD_HOSTS = 8       # receivers per neighbourhood at first
MAX_NEIGHBOURHOOD_HOSTS = 32  # ... doubled on stagnation up to this (a 10-host neighbourhood plateaus)
GROW_AFTER = 30               # fruitless tries before the neighbourhood doubles
LIGHTEST_HOSTS = 8            # the host to empty is one of this many lightest (skewed to the lightest)
FAIL_PENALTY = 0.15           # fill added per failed try on a host, so others get their turn
RECEIVER_NOISE = 0.3          # random spread on the receiver score: diverse neighbourhoods
RECEIVER_POOL = 3             # receivers are drawn from this many times k best matches

# squeeze: place leftovers by rearranging a few hosts around the roomiest ones
SQUEEZE_ROOMY = 12            # roomiest hosts to draw from
SQUEEZE_SEEDS = 3             # of them in each neighbourhood
SQUEEZE_HOSTS = (8, 14)       # neighbourhood size, the larger once half the patience is spent
SQUEEZE_PAIR = 0.5            # chance of placing a second leftover in the same sub-solve

# reduce_moves / balance
HOME_EXTRA_HOSTS = 4          # used hosts added around a VM's current and home host
MOVES_PATIENCE = 3            # rounds without gain before reduce_moves stops
BALANCE_PATIENCE = 20         # sub-solves without a lower peak before balance stops
BALANCE_TOP = 3               # most loaded hosts in each balance neighbourhood
BALANCE_LOW = (3, 8)          # least loaded hosts: a quarter of the used hosts within these bounds
BALANCE_MID = 3               # random hosts from the middle


class Lns:
    """LNS over the solve's shared state; `budgets=False` ignores the migration budgets (the
    repair of a failed start), `report=False` prints no progress."""

    def __init__(self, ctx: SolveContext, *, max_iterations: int, lower_bound: int = 0, budgets: bool = True,
                 report: bool = True) -> None:
        self.st = ctx.st
        self.prob = ctx.prob
        opts = ctx.opts
        self.deadline = ctx.deadline
        self.workers = opts.workers
        self.max_iterations = max_iterations
        self.lower_bound = lower_bound
        self.max_migrations = opts.max_migrations if budgets else None
        self.max_memory_moved_mib = opts.max_memory_moved_mib if budgets else None
        self.progress = ctx.progress if report else None
        self.rng = random.Random(opts.seed)
        self.iterations = 0
        self.initially_used = frozenset(self.prob.init)

    # --- helpers ----------------------------------------------------------------------------
    def used(self) -> list[int]:
        return [h for h in range(self.prob.n_hosts) if self.st.members[h]]

    def moved(self) -> tuple[int, int]:
        return self.prob.moved(self.st.host_of)

    def _budgets(self, free: list[int]) -> tuple[int | None, int | None]:
        if self.max_migrations is None and self.max_memory_moved_mib is None:
            return None, None
        prob = self.prob
        n, m = self.moved()
        for j in free:
            if self.st.host_of[j] != prob.init[j]:
                n -= 1
                m -= prob.mem[j]
        left_n = None if self.max_migrations is None else self.max_migrations - n
        left_m = None if self.max_memory_moved_mib is None else self.max_memory_moved_mib - m
        return left_n, left_m

    def _free_vms(self, hosts: list[int]) -> list[int]:
        prob = self.prob
        free = []
        for h in hosts:
            free.extend(j for j in self.st.members[h] if prob.movable[j])
        return sorted(free)

    def _time_left(self) -> float:
        return self.deadline - time.monotonic()

    def _apply(self, free: list[int], assign: dict[int, int]) -> int:
        changed = sum(1 for j in free if assign.get(j, -1) != self.st.host_of[j])
        for j in free:
            if self.st.host_of[j] >= 0:
                self.st.remove(j)
        for j in free:
            if j in assign:
                self.st.add(j, assign[j])
        return changed

    def _solve(self, free: list[int], hosts: list[int], mode: str, targets: frozenset | set = frozenset(),
               dtime: float | None = None) -> bool:
        if not free:
            return False
        self.iterations += 1
        dtime = SUB_DTIME if dtime is None else dtime
        res = solve_sub(self.st, free, hosts, mode, targets=targets, budgets=self._budgets(free),
                        seed=self.rng.randrange(1 << 30), workers=self.workers, dtime=dtime,
                        max_time=min(self._time_left(), SUB_WALL_FACTOR * dtime + 1), initially_used=self.initially_used)
        if res.assign is None or (mode != "squeeze" and len(res.assign) != len(free)):
            return False
        return self._apply(free, res.assign) > 0

    def _done(self) -> bool:
        return self.iterations >= self.max_iterations or self._time_left() <= 0

    def _report(self, what: str) -> None:
        if self.progress:
            n, m = self.moved()
            self.progress(f"{what}: iter {self.iterations}, hosts used {len(self.used())}, "
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
            scored.append((-match + self.rng.random() * RECEIVER_NOISE, h))
        scored.sort()
        pool = [h for _s, h in scored[:RECEIVER_POOL * k]]
        self.rng.shuffle(pool)
        return pool[:k]

    def consolidate(self, share: float = 0.75) -> None:
        st, prob = self.st, self.prob
        stop = time.monotonic() + max(self._time_left(), 0) * share
        fails: dict[int, int] = {}
        size = NEIGHBOURHOOD_HOSTS
        stagnation = 0
        last_report = time.monotonic()
        while not self._done() and time.monotonic() < stop:
            used = self.used()
            if len(used) <= self.lower_bound:
                break
            cands = [h for h in used if all(prob.movable[j] for j in st.members[h])]
            if not cands:
                break
            cands.sort(key=lambda h: (st.fill(h) + FAIL_PENALTY * fails.get(h, 0), h))
            t = cands[min(int(self.rng.random() ** 2 * len(cands)), LIGHTEST_HOSTS - 1, len(cands) - 1)]
            hosts = [t] + self._receivers(t, size)
            free = self._free_vms(hosts)
            while len(free) > MAX_FREE_VMS and len(hosts) > 2:
                hosts.pop()
                free = self._free_vms(hosts)
            before = len(used)
            self._solve(free, hosts, "consolidate", targets={t})
            if len(self.used()) < before:
                fails.pop(t, None)
                stagnation = 0
                size = NEIGHBOURHOOD_HOSTS
            else:
                fails[t] = fails.get(t, 0) + 1
                stagnation += 1
                if stagnation % GROW_AFTER == 0:
                    size = min(size * 2, MAX_NEIGHBOURHOOD_HOSTS)
            if time.monotonic() - last_report > REPORT_EVERY_S:
                self._report("consolidate")
                last_report = time.monotonic()

    # --- squeeze leftovers into a fixed host set ------------------------------------------------
    def unplaced(self) -> list[int]:
        return [j for j, h in enumerate(self.st.host_of) if h < 0]

    def squeeze(self, keep: set[int], stop: float, patience: int = 40) -> None:
        """Place the VMs left over by packing into `keep`, rearranging small groups of hosts;
        after `patience` fruitless tries one more host joins the set."""
        st, prob = self.st, self.prob
        stale = 0
        last_report = time.monotonic()
        while not self._done() and time.monotonic() < stop:
            left = self.unplaced()
            if not left:
                return
            weight = sum(squeeze_weight(prob, j) for j in left)
            left.sort(key=lambda j: (-squeeze_weight(prob, j), j))
            picked = [left[min(int(self.rng.random() ** 2 * len(left)), len(left) - 1)]]
            if len(left) > 1 and self.rng.random() < SQUEEZE_PAIR:
                other = self.rng.choice(left)
                if other not in picked:
                    picked.append(other)
            u = picked[0]
            picked = sorted({k for j in picked for k in st.units[st.unit_of[j]]})   # gather groups move whole
            pool = [h for h in keep if prob.allowed(u, h)]
            if not pool:
                stale = patience
            else:
                def slack(h: int) -> float:
                    return ((prob.cap_cpu[h] - st.lc[h]) / max(prob.cap_cpu[h], 1)
                            + (prob.cap_mem[h] - st.lm[h]) / max(prob.cap_mem[h], 1))
                roomy = sorted(pool, key=lambda h: (-slack(h), h))[:SQUEEZE_ROOMY]
                self.rng.shuffle(roomy)
                k = SQUEEZE_HOSTS[0] if stale < patience // 2 else SQUEEZE_HOSTS[1]
                hosts = roomy[:SQUEEZE_SEEDS]
                others = [h for h in pool if h not in hosts]
                hosts += self.rng.sample(others, min(k - len(hosts), len(others)))
                free = sorted(set(picked) | set(self._free_vms(hosts)))
                self._solve(free, hosts, "squeeze")
                after = sum(squeeze_weight(prob, j) for j in self.unplaced())
                stale = 0 if after < weight else stale + 1
            if stale >= patience:
                added = self._open_one(keep, u)
                if added < 0:
                    return
                stale = 0
            if time.monotonic() - last_report > REPORT_EVERY_S:
                self._report(f"packing ({len(self.unplaced())} vms left, {len(keep)} hosts)")
                last_report = time.monotonic()

    def _open_one(self, keep: set[int], u: int) -> int:
        """Add the host that best takes leftover VM u (prefer one that already carries load)."""
        st, prob = self.st, self.prob
        best, best_key = -1, None
        for h in range(prob.n_hosts):
            if h in keep or not prob.usable[h] or not st.fits([u], h):
                continue
            key = (prob.cap_mem[h] / max(prob.avg_mem, 1) + prob.cap_cpu[h] / max(prob.avg_cpu, 1), -h)
            if best_key is None or key > best_key:
                best, best_key = h, key
        if best < 0:
            return -1
        keep.add(best)
        units = sorted({st.unit_of[j] for j in self.unplaced()})
        place_units(st, units, [], allow_open=False)
        if st.host_of[u] < 0 and st.fits(st.units[st.unit_of[u]], best):
            for j in st.units[st.unit_of[u]]:
                st.add(j, best)
        return best

    # --- fewer migrations -------------------------------------------------------------------
    def reduce_moves(self, mode: str = "moves") -> None:
        """Bring moved VMs back home (or to cheaper spots) without using more hosts."""
        st, prob = self.st, self.prob
        last_report = time.monotonic()
        stale = 0
        while not self._done() and stale < MOVES_PATIENCE:
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
                hosts |= set(extra[:HOME_EXTRA_HOSTS])
                hl = sorted(hosts)
                free = self._free_vms(hl)
                if len(free) > MAX_FREE_VMS:
                    continue
                before = self.moved()
                if self._solve(free, hl, mode) and self.moved()[1] < before[1]:
                    gained = True
                if time.monotonic() - last_report > REPORT_EVERY_S:
                    self._report("fewer migrations")
                    last_report = time.monotonic()
            stale = 0 if gained else stale + 1

    # --- balance ----------------------------------------------------------------------------
    def balance(self) -> None:
        st, prob = self.st, self.prob
        stale = 0
        while not self._done() and stale < BALANCE_PATIENCE:
            used = self.used()
            used.sort(key=lambda h: (st.lc[h] / max(prob.cap_cpu[h], 1), h))
            top = used[-BALANCE_TOP:]
            low = used[:max(BALANCE_LOW[0], min(BALANCE_LOW[1], len(used) // 4))]
            mid = [h for h in used if h not in top and h not in low]
            self.rng.shuffle(mid)
            hosts = sorted(set(top + low + mid[:BALANCE_MID]))
            peak = max(st.lc[h] / max(prob.cap_cpu[h], 1) for h in used)
            self._solve(self._free_vms(hosts), hosts, "balance")
            now = max(st.lc[h] / max(prob.cap_cpu[h], 1) for h in self.used())
            stale = 0 if now < peak - 1e-9 else stale + 1
