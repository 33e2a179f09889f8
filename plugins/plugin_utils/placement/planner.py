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

import math
from typing import Iterable

from .errors import PlacementError
from .migration import DurationModel, Links, allot, floor_mib_s
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
                 bandwidth_mib_s: float, migrating: dict[int, float] | None = None) -> float:
    """A step's estimated duration: per host, its migrations plus the saves and restores it runs (host -> memory
    of each VM); the slowest host's. The migrations take ``migrating[host]`` seconds (the longest migration
    through the host, from the duration model of migration.py) or, without it, their memory (MiB) over the bandwidth."""
    hosts = set(traffic) | set(saved) | set(restored) | set(migrating or ())
    return max(((migrating.get(h, 0.0) if migrating is not None else traffic.get(h, 0) / bandwidth_mib_s)
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
        self.link_count: dict[tuple, int] = {}   # migrations of the step on each link
        self.link_need: dict[tuple, float] = {}  # the largest bandwidth one of them needs to converge
        self.paths: list[tuple[dict, tuple, int]] = []   # (action, links, vm) of each migration
        self.on_link: dict[tuple, list[int]] = {}   # VMs migrating on each link
        self.path_of: dict[int, tuple] = {}
        self.est: dict[int, float] = {}             # their durations at an equal share of their links
        self.pending: tuple | None = None          # (vm, destination, new est) of the last migration that fitted


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
        # migration bandwidth and durations (migration.py): links, the allotment a VM needs to converge
        self.links = Links(prob.model)
        self.dm = DurationModel.of(prob.model.options)
        self.need = [self.dm.required_bandwidth(prob.model.vm(v).memory_mib, prob.model.vm(v).dirty_mib_s or 0.0)
                     for v in prob.vm_names]
        self.postcopy: list[str] = []   # VMs whose dirty rate exceeds the bandwidth they can get alone
        self.dirty = [prob.model.vm(v).dirty_mib_s or 0.0 for v in prob.vm_names]
        self.any_dirty = any(self.dirty)
        self.host_index = {name: i for i, name in enumerate(prob.host_names)}
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
        if src is not None and not self._bandwidth_fits(step, j, src, d):
            return False
        for con, data in self.guards:
            if not con.guard(self, step, j, d, data):
                return False
        return True

    def _bandwidth_fits(self, step: _Step, j: int, src: int, d: int) -> bool:
        """With j added, an equal share of every link of j still gives each of its migrations what it needs to
        converge (the max-min fair allotment gives at least that) and at least 1 MiB/s."""
        names = self.prob.host_names
        path = self.links.of(names[src], names[d])
        need_j = self._need(j, path)
        for link in path:
            n = step.link_count.get(link, 0)
            if n and math.floor(self.links.cap[link] / (n + 1) + 1e-9) < max(step.link_need.get(link, 0.0), need_j, 1.0):
                return False
        if not self.any_dirty:
            return True   # sharing links costs what running one after the other costs, minus the setup
        if not any(step.link_count.get(link) for link in path):
            step.pending = (j, d, {j: self._estimate(j, self.links.alone(names[src], names[d]))})
            return True
        return self._faster_together(step, j, src, d, path)

    def _estimate(self, j: int, bandwidth: float) -> float:
        vm = self.prob.model.vm(self.prob.vm_names[j])
        secs = self.dm.seconds(vm.memory_mib, self.dirty[j], bandwidth)
        return secs if secs is not None else self.dm.postcopy_seconds(vm.memory_mib, self.dirty[j], bandwidth)

    def _faster_together(self, step: _Step, j: int, src: int, d: int, path: tuple) -> bool:
        """Only when a migration sharing a link with j dirties memory (without, sharing a link costs what
        running one after the other costs, minus the setup): j joins the step only if the step, estimated at
        an equal share of each link, then ends no later than it would followed by j alone."""
        affected = {k for link in path for k in step.on_link.get(link, ())}
        step.pending = None
        if not self.dirty[j] and not any(self.dirty[k] for k in affected):
            return True
        cap, count = self.links.cap, step.link_count
        extra = set(path)

        def share(k: int) -> float:
            return min(cap[lk] / (count.get(lk, 0) + (lk in extra)) for lk in step.path_of[k])

        new = {k: self._estimate(k, share(k)) for k in affected}
        new[j] = self._estimate(j, min(cap[lk] / (count.get(lk, 0) + 1) for lk in path))
        before = max(step.est.values(), default=0.0)
        after = max(before, *new.values())
        names = self.prob.host_names
        if after > before + self._estimate(j, self.links.alone(names[src], names[d])) + 1e-9:
            return False
        step.pending = (j, d, new)
        return True

    def _need(self, j: int, path: tuple) -> float:
        """The allotment j needs to converge; 0 when even alone it cannot (it goes post-copy)."""
        return self.need[j] if self.need[j] <= math.floor(min(self.links.cap[link] for link in path) + 1e-9) else 0.0

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
            path = self.links.of(names[src], names[d])
            need = self._need(j, path)
            for link in path:
                step.link_count[link] = step.link_count.get(link, 0) + 1
                step.link_need[link] = max(step.link_need.get(link, 0.0), need)
            step.paths.append((act, path, j))
            for link in path:
                step.on_link.setdefault(link, []).append(j)
            step.path_of[j] = path
            if step.pending is not None and step.pending[:2] == (j, d):
                step.est.update(step.pending[2])
            step.pending = None
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
        self.durations.append(self._timing(step))

    def _timing(self, step: _Step) -> float:
        """Allot the step's migration bandwidth, estimate each migration's duration; the step's duration."""
        model, opt = self.prob.model, self.prob.model.options
        paths = [p for _a, p, _j in step.paths]
        # weighted by memory, the migrations sharing a link end together (libvirt holds each to its share to
        # the end); equal shares instead when that would leave a dirtying VM below what it needs to converge
        shares = allot(paths, self.links.cap, [float(a["memory_mib"]) or 1.0 for a, _p, _j in step.paths])
        if self.any_dirty and any(floor_mib_s(sh) < self._need(j, p) for (_a, p, j), sh in zip(step.paths, shares)):
            shares = allot(paths, self.links.cap)
        migrating: dict[int, float] = {}   # host -> its longest migration (they share its link in parallel)
        for (act, _p, _j), share in zip(step.paths, shares):
            bw = floor_mib_s(share)
            vm = model.vm(act["vm"])
            dirty = vm.dirty_mib_s or 0.0
            secs = self.dm.seconds(vm.memory_mib, dirty, bw)
            act["bandwidth_mib_s"] = bw
            if secs is None:   # cannot converge even alone on its links (the planner never shares below the need)
                act["postcopy"] = True
                self.postcopy.append(act["vm"])
                secs = self.dm.postcopy_seconds(vm.memory_mib, dirty, bw)
            act["estimated_s"] = round(secs, 2)
            for host in (self.host_index[act["from"]], self.host_index[act["to"]]):
                migrating[host] = max(migrating.get(host, 0.0), secs)
        return step_seconds(step.traffic, step.saved, step.restored, opt.bandwidth_mib_s, migrating)

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


def planner_warnings(planner: Planner) -> list[str]:
    """One line per migration planned with post-copy: its dirty rate outruns the bandwidth it can get."""
    model = planner.prob.model
    return [f"vm {vm!r}: dirties {model.vm(vm).dirty_mib_s:g} MiB/s, more than its migration can send on its links: "
            f"planned with post-copy (set options.non_converging to 'keep' to leave it where it is)"
            for vm in planner.postcopy]


def build_plan(prob: Problem, target: list[int], max_parallel: int | None = None,
               allow_suspend: bool = True) -> Planner:
    planner = Planner(prob, target, max_parallel, allow_suspend)
    planner.run()
    return planner
