"""Integer view of a Model for the solver: arrays indexed by host and by active VM.

CPU is scaled to milli-cores; demands are rounded up and capacities down, so whatever the solver
accepts also passes the float checker.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from .constraints import CPU_SCALE, Constraint
from .migration import DurationModel, Links
from .model import Model


@dataclass
class Problem:
    model: Model
    host_names: list[str]
    cap_cpu: list[int]
    cap_mem: list[int]
    usable: list[bool]           # online and not forced offline
    vm_names: list[str]          # active VMs only
    cpu: list[int]
    mem: list[int]
    init: list[int]              # initial host index of each active VM
    domain: list[list[int] | None]   # allowed hosts (None = every usable host)
    movable: list[bool]
    lonely_class: list[int]      # 0 = not lonely; VMs share a host only with their own class if lonely
    spread_groups: list[list[int]] = field(default_factory=list)
    gather_groups: list[list[int]] = field(default_factory=list)
    max_online: list[tuple[int, frozenset | None, object]] = field(default_factory=list)
    vm_spreads: list[list[int]] = field(default_factory=list)
    # every constraint with its compiled data (Constraint.compile), in model order
    rules: list[tuple[Constraint, Any]] = field(default_factory=list)
    # per VM: the constraints whose `fits` hook judges where it may go
    vm_rules: list[list[tuple[Constraint, Any]]] = field(default_factory=list)
    # constraints that keep their own counters in the search state (Constraint.track)
    trackers: list[tuple[Constraint, Any]] = field(default_factory=list)

    @cached_property
    def vm_pos(self) -> dict[str, int]:
        return {n: j for j, n in enumerate(self.vm_names)}

    @cached_property
    def max_cpu(self) -> int:
        return max(self.cap_cpu, default=0)

    @cached_property
    def max_mem(self) -> int:
        return max(self.cap_mem, default=0)

    @cached_property
    def avg_cpu(self) -> int:
        caps = [c for c, u in zip(self.cap_cpu, self.usable) if u]
        return sum(caps) // max(len(caps), 1)

    @cached_property
    def avg_mem(self) -> int:
        caps = [c for c, u in zip(self.cap_mem, self.usable) if u]
        return sum(caps) // max(len(caps), 1)

    @property
    def n_hosts(self) -> int:
        return len(self.host_names)

    @property
    def n_vms(self) -> int:
        return len(self.vm_names)

    def allowed(self, j: int, h: int) -> bool:
        dom = self.domain[j]
        return self.usable[h] if dom is None else h in dom

    def hosts_of(self, j: int) -> list[int]:
        dom = self.domain[j]
        return [h for h in range(self.n_hosts) if self.usable[h]] if dom is None else dom

    def moved(self, placement: list[int]) -> tuple[int, int]:
        """VMs whose host differs from their initial one, and their memory (MiB)."""
        n = m = 0
        for j, h in enumerate(placement):
            if h != self.init[j]:
                n += 1
                m += self.mem[j]
        return n, m

    def loads(self, placement: list[int]) -> tuple[list[int], list[int]]:
        lc = [0] * self.n_hosts
        lm = [0] * self.n_hosts
        for j, h in enumerate(placement):
            lc[h] += self.cpu[j]
            lm[h] += self.mem[j]
        return lc, lm


class Builder:
    """What a constraint's `compile` hook may add to the problem being built."""

    def __init__(self, prob: Problem) -> None:
        self.prob = prob
        n = prob.n_vms
        self.allowed: list[set[int] | None] = [None] * n
        self.banned: list[set[int]] = [set() for _unused in range(n)]
        self.lonely_sig: list[list[int]] = [[] for _unused in range(n)]

    def restrict(self, members: list[int], hosts: set[int]) -> None:
        """The VMs may only end on `hosts`."""
        for j in members:
            self.allowed[j] = set(hosts) if self.allowed[j] is None else self.allowed[j] & hosts

    def ban(self, members: list[int], hosts: set[int]) -> None:
        for j in members:
            self.banned[j] |= hosts

    def pin(self, members: list[int]) -> None:
        """The VMs stay where they are."""
        for j in members:
            self.prob.movable[j] = False

    def spread_group(self, members: list[int], con: Constraint) -> int:
        self.prob.spread_groups.append(members)
        self.watch(members, con, len(self.prob.spread_groups) - 1)
        return len(self.prob.spread_groups) - 1

    def gather_group(self, members: list[int]) -> None:
        self.prob.gather_groups.append(members)

    def lonely(self, members: list[int], index: int) -> None:
        for j in members:
            self.lonely_sig[j].append(index)

    def max_online(self, amount: int, scope: frozenset | None, con: Constraint) -> int:
        self.prob.max_online.append((amount, scope, con))
        return len(self.prob.max_online) - 1

    def watch(self, members: list[int], con: Constraint, data: Any) -> None:
        """The search state asks `con.fits(state, data, j, h)` before VM j joins host h."""
        for j in members:
            self.prob.vm_rules[j].append((con, data))


def _converging(model: Model, active: list) -> list[bool]:
    """non_converging 'keep': a VM whose dirty rate outruns what its host's migration link can send stays put."""
    links, dm = Links(model), DurationModel.of(model.options)
    return [dm.required_bandwidth(v.memory_mib, v.dirty_mib_s or 0.0) <= math.floor(links.cap["host", v.host] + 1e-9)
            for v in active]


def build_problem(model: Model) -> Problem:
    hidx = model.host_index
    host_names = [h.name for h in model.hosts]
    forbidden: set[str] = set()
    for con in model.constraints:
        forbidden |= con.forbidden_hosts()
    cap_cpu = [int(math.floor(model.capacity(h, "cpu") * CPU_SCALE + 1e-6)) for h in host_names]
    cap_mem = [int(math.floor(model.capacity(h, "memory") + 1e-9)) for h in host_names]
    usable = [h.state == "online" and h.name not in forbidden for h in model.hosts]
    active = [v for v in model.vms if v.active]
    vm_names = [v.name for v in active]
    cpu = [int(math.ceil(model.demand(v.name, "cpu") * CPU_SCALE - 1e-6)) for v in active]
    mem = [int(math.ceil(model.demand(v.name, "memory") - 1e-9)) for v in active]
    init = [hidx[v.host] for v in active]
    movable = [True] * len(active)
    if model.options.non_converging == "keep":
        movable = _converging(model, active)
    prob = Problem(model, host_names, cap_cpu, cap_mem, usable, vm_names, cpu, mem, init, [], movable, [])
    prob.vm_spreads = [[] for _unused in active]
    prob.vm_rules = [[] for _unused in active]
    b = Builder(prob)
    prob.rules = [(con, con.compile(b)) for con in model.constraints]
    sigs: dict[tuple[int, ...], int] = {(): 0}
    prob.lonely_class = [sigs.setdefault(tuple(s), len(sigs)) for s in b.lonely_sig]
    for j in range(len(active)):
        allowed, banned = b.allowed[j], b.banned[j]
        if not movable[j]:
            prob.domain.append([init[j]])
            continue
        if allowed is None and not banned:
            prob.domain.append(None)
            continue
        base = allowed if allowed is not None else range(len(host_names))
        prob.domain.append(sorted(h for h in base if usable[h] and h not in banned))
    for g, members in enumerate(prob.spread_groups):
        for j in members:
            prob.vm_spreads[j].append(g)
    return prob
