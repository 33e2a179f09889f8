"""Turn a target placement into steps of parallel actions that can really run.

A migrating VM holds its memory and cpu on the source and the destination until its step ends, so
memory freed by a departure is usable one step later. No host may go above max(capacity, its
initial load). When every pending migration is blocked, a VM sitting on a blocked destination is
moved to a pivot host (at most once per VM, which guarantees termination; "pivot the smallest
blocked VM" can loop forever); when no pivot host has room, that VM is suspended and later resumed
on its target.

Each step's estimated duration (``durations``, seconds; docs/plan-format.md#estimated-duration) is its slowest
host's: the memory migrating through its link over ``bandwidth_mib_s``, plus the VMs it saves to shared storage
and restores from it (``save_seconds`` / ``restore_seconds``: a fixed QEMU exit or start, overlapping between the
VMs of one host, plus the memory written or read back, one VM after the other through the host's storage link).
"""
from __future__ import annotations

from typing import Iterable

from .errors import PlacementError
from .problem import Problem


# Fitted on the lab (benchmarks/bench_save_restore.py, docs/benchmarks.md#save-and-restore-costs): a save
# (virDomainSaveFlags to the shared directory) and a restore (virDomainRestoreFlags on any host) of a VM whose
# memory is all in use, 64-512 MiB, TCG guests on a loaded 2-core machine: least squares of fixed + MiB / rate.
SAVE_FIXED_S = 0.8
SAVE_MIB_S = 67.0
RESTORE_FIXED_S = 0.4
RESTORE_MIB_S = 29.0


def save_seconds(memory_mib: float, vms: int = 1) -> float:
    """Estimated seconds for one host to save ``vms`` VMs holding ``memory_mib`` MiB in all to shared storage."""
    return (SAVE_FIXED_S if vms else 0.0) + memory_mib / SAVE_MIB_S


def restore_seconds(memory_mib: float, vms: int = 1) -> float:
    """Estimated seconds for one host to restore ``vms`` VMs holding ``memory_mib`` MiB in all from shared storage."""
    return (RESTORE_FIXED_S if vms else 0.0) + memory_mib / RESTORE_MIB_S


def step_seconds(traffic: dict[int, int], saved: dict[int, list[int]], restored: dict[int, list[int]],
                 bandwidth_mib_s: float) -> float:
    """A step's estimated duration: per host, migration memory (MiB) over the bandwidth plus the saves and restores
    it runs (host -> memory of each VM); the slowest host's."""
    hosts = set(traffic) | set(saved) | set(restored)
    return max((traffic.get(h, 0) / bandwidth_mib_s
                + (save_seconds(sum(saved[h]), len(saved[h])) if h in saved else 0.0)
                + (restore_seconds(sum(restored[h]), len(restored[h])) if h in restored else 0.0) for h in hosts),
               default=0.0)


class _Step:
    def __init__(self, n_hosts: int) -> None:
        self.in_c = [0] * n_hosts
        self.in_m = [0] * n_hosts
        self.touch = [0] * n_hosts
        self.actions: list[dict] = []
        self.traffic: dict[int, int] = {}
        self.saved: dict[int, list[int]] = {}      # host -> memory (MiB) of each VM it saves in this step
        self.restored: dict[int, list[int]] = {}   # host -> memory (MiB) of each VM it restores
        self.opened: set[int] = set()


class Planner:
    def __init__(self, prob: Problem, target: list[int], max_parallel: int | None = None,
                 allow_suspend: bool = True) -> None:
        self.prob = prob
        self.allow_suspend = allow_suspend
        self.target = target
        self.max_parallel = max_parallel
        self.cur = list(prob.init)
        self.lc, self.lm = prob.loads(self.cur)
        self.lim_c = [max(c, x) for c, x in zip(prob.cap_cpu, self.lc)]
        self.lim_m = [max(c, x) for c, x in zip(prob.cap_mem, self.lm)]
        self.occ: list[set[int]] = [set() for _unused in range(prob.n_hosts)]
        for j, h in enumerate(self.cur):
            self.occ[h].add(j)
        # continuous constraints decide whether each action may run now
        self.guards = [(con, data) for con, data in prob.rules if con.continuous and data is not None]
        self.pivoted: set[int] = set()
        self.suspended: set[int] = set()
        self.steps: list[list[dict]] = []
        self.durations: list[float] = []   # estimated seconds per step (step_seconds)
        self.pivots = 0
        self.migrations = 0
        self.memory_moved = 0

    # --- tests on the state at the start of the current step plus what the step already adds ---
    def _fits(self, step: _Step, j: int, d: int, src: int | None) -> bool:
        prob = self.prob
        if self.lc[d] + step.in_c[d] + prob.cpu[j] > self.lim_c[d]:
            return False
        if self.lm[d] + step.in_m[d] + prob.mem[j] > self.lim_m[d]:
            return False
        if self.max_parallel is not None:
            if step.touch[d] >= self.max_parallel or (src is not None and step.touch[src] >= self.max_parallel):
                return False
        for con, data in self.guards:
            if not con.guard(self, step, j, d, data):
                return False
        return True

    def dest_now(self, step: _Step, k: int) -> int:
        """Host VM k is migrating or resuming to in this step (-1 if none)."""
        for a in step.actions:
            if a["_j"] == k and a["action"] in ("migrate", "resume"):
                return a["_to"]
        return -1

    def _add(self, step: _Step, j: int, action: str, src: int | None, d: int) -> None:
        prob = self.prob
        names, vm = prob.host_names, prob.vm_names[j]
        mem_mib = prob.model.vm(vm).memory_mib
        if action == "migrate":
            act = {"action": "migrate", "vm": vm, "from": names[src], "to": names[d], "memory_mib": mem_mib}
            self.migrations += 1
            self.memory_moved += mem_mib
            step.traffic[src] = step.traffic.get(src, 0) + mem_mib
            step.traffic[d] = step.traffic.get(d, 0) + mem_mib
            step.touch[src] += 1
        elif action == "suspend":
            act = {"action": "suspend", "vm": vm, "host": names[src]}
            step.saved.setdefault(src, []).append(mem_mib)
        else:
            act = {"action": "resume", "vm": vm, "to": names[d]}
            step.restored.setdefault(d, []).append(mem_mib)
        if action != "suspend":
            step.in_c[d] += prob.cpu[j]
            step.in_m[d] += prob.mem[j]
            step.touch[d] += 1
            self.occ[d].add(j)   # occupied from the start of the step
        act["_j"], act["_to"], act["_from"] = j, d, src
        step.actions.append(act)

    def _commit(self, step: _Step) -> None:
        prob = self.prob
        for a in step.actions:
            j, d, s = a.pop("_j"), a.pop("_to"), a.pop("_from")
            if s is not None:
                self.lc[s] -= prob.cpu[j]
                self.lm[s] -= prob.mem[j]
                self.occ[s].discard(j)
            if a["action"] == "suspend":
                self.cur[j] = -1
                self.suspended.add(j)
            else:
                self.lc[d] += prob.cpu[j]
                self.lm[d] += prob.mem[j]
                self.cur[j] = d
                self.suspended.discard(j)
        self.steps.append(step.actions)
        self.durations.append(step_seconds(step.traffic, step.saved, step.restored, prob.model.options.bandwidth_mib_s))

    # --- main loop ------------------------------------------------------------------------------
    def run(self) -> None:
        prob = self.prob
        pending = sorted((j for j in range(prob.n_vms) if self.target[j] != self.cur[j]),
                         key=lambda j: (-prob.mem[j], j))
        guard = 4 * len(pending) + 10
        while pending or self.suspended:
            guard -= 1
            if guard < 0:
                raise PlacementError("plan building did not converge (internal error)")
            pending = self._one_step(pending, sorted(self.suspended))

    def _one_step(self, pending: list[int], resumable: list[int], suspends: Iterable[int] = ()) -> list[int]:
        """One step: the ``suspends``, every pending migration and every resume that fits now (a deadlock broken
        when nothing fits); returns the migrations still pending."""
        step = _Step(self.prob.n_hosts)
        for j in suspends:
            self._add(step, j, "suspend", self.cur[j], self.cur[j])
        blocked: list[int] = []
        for j in pending:
            d, s = self.target[j], self.cur[j]
            if self._fits(step, j, d, s):
                self._add(step, j, "migrate", s, d)
            else:
                blocked.append(j)
        for j in resumable:
            if self._fits(step, j, self.target[j], None):
                self._add(step, j, "resume", None, self.target[j])
        if not step.actions:
            self._break_deadlock(step, blocked)
        moved = {a["_j"] for a in step.actions}
        self._commit(step)
        if not moved:
            raise PlacementError("plan building is stuck: no action can run (a continuous constraint "
                                 "or the per-host migration cap blocks every move)")
        return [j for j in pending if self.cur[j] != self.target[j] and j not in self.suspended]

    def _break_deadlock(self, step: _Step, blocked: list[int]) -> None:
        prob = self.prob
        # one pivot per group of hosts linked by blocked migrations: one move breaks a whole cycle
        parent: dict[int, int] = {}

        def find(h: int) -> int:
            while parent.setdefault(h, h) != h:
                parent[h] = parent[parent[h]]
                h = parent[h]
            return h

        for j in blocked:
            parent[find(self.cur[j])] = find(self.target[j])
        done: set[int] = set()
        for j in blocked:
            d = self.target[j]
            if find(d) in done:
                continue
            # a VM sitting on the blocked destination that must leave anyway, never pivoted before
            cands = sorted((k for k in self.occ[d] if self.cur[k] == d and self.target[k] != d
                            and k not in self.pivoted and prob.movable[k]), key=lambda k: (-prob.mem[k], k))
            for k in cands:
                pivot = self._pivot_host(step, k, d)
                if pivot < 0 and not self.allow_suspend:
                    continue
                self.pivoted.add(k)
                done.add(find(d))
                if pivot >= 0:
                    self.pivots += 1
                    self._add(step, k, "migrate", d, pivot)
                else:
                    self._add(step, k, "suspend", d, d)
                break
        if not step.actions and self.allow_suspend:
            # every VM that could make room was pivoted once already: suspend one (each VM at most
            # once, it leaves all hosts), so the plan still terminates
            for j in blocked:
                d = self.target[j]
                cands = sorted((k for k in self.occ[d] if self.cur[k] == d and self.target[k] != d and prob.movable[k]),
                               key=lambda k: (-prob.mem[k], k))
                if cands:
                    self._add(step, cands[0], "suspend", d, d)
                    break
        if not step.actions:
            hint = "" if self.allow_suspend else " without suspending a VM (allow_suspend is false)"
            raise PlacementError(f"plan building is stuck: no VM can make room on a blocked host{hint}")

    def _pivot_host(self, step: _Step, k: int, src: int) -> int:
        """Host with most free memory that takes k now; hosts already in use first."""
        prob = self.prob
        best, best_key = -1, None
        for h in prob.hosts_of(k):
            if h in (src, self.target[k]) or not self._fits(step, k, h, src):
                continue
            key = (bool(self.occ[h]), self.lim_m[h] - self.lm[h] - step.in_m[h], -h)
            if best_key is None or key > best_key:
                best, best_key = h, key
        return best


def build_plan(prob: Problem, target: list[int], max_parallel: int | None = None,
               allow_suspend: bool = True) -> Planner:
    planner = Planner(prob, target, max_parallel, allow_suspend)
    planner.run()
    return planner
