"""Integer view of a Model for the solver: arrays indexed by host and by active VM.

CPU is scaled to milli-cores; demands are rounded up and capacities down, so whatever the solver
accepts also passes the float checker.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

from .constraints import Ban, Fence, Gather, Lonely, MaxOnline, Root, Spread
from .model import Model

CPU_SCALE = 1000


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

    def loads(self, placement: list[int]) -> tuple[list[int], list[int]]:
        lc = [0] * self.n_hosts
        lm = [0] * self.n_hosts
        for j, h in enumerate(placement):
            lc[h] += self.cpu[j]
            lm[h] += self.mem[j]
        return lc, lm

    def used_hosts(self, placement: list[int]) -> set[int]:
        return set(placement)


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
    vpos = {n: j for j, n in enumerate(vm_names)}
    cpu = [int(math.ceil(model.demand(v.name, "cpu") * CPU_SCALE - 1e-6)) for v in active]
    mem = [int(math.ceil(model.demand(v.name, "memory") - 1e-9)) for v in active]
    init = [hidx[v.host] for v in active]
    allowed: list[set[int] | None] = [None] * len(active)
    banned: list[set[int]] = [set() for _unused in active]
    movable = [True] * len(active)
    lonely_sig: list[list[int]] = [[] for _unused in active]
    prob = Problem(model, host_names, cap_cpu, cap_mem, usable, vm_names, cpu, mem, init, [], movable, [])
    for con in model.constraints:
        members = [vpos[n] for n in con.vms if n in vpos]
        if isinstance(con, Fence):
            hs = {hidx[n] for n in con.hosts}
            for j in members:
                allowed[j] = hs if allowed[j] is None else allowed[j] & hs
        elif isinstance(con, Ban):
            hs = {hidx[n] for n in con.hosts}
            for j in members:
                banned[j] |= hs
        elif isinstance(con, Root):
            for j in members:
                movable[j] = False
        elif isinstance(con, Spread) and len(members) > 1:
            prob.spread_groups.append(members)
        elif isinstance(con, Gather) and len(members) > 1:
            prob.gather_groups.append(members)
            if con.continuous:
                # a migration makes the group span two hosts, so a continuous gather never moves
                for j in members:
                    movable[j] = False
        elif isinstance(con, Lonely):
            for j in members:
                lonely_sig[j].append(con.index)
        elif isinstance(con, MaxOnline):
            scope = frozenset(hidx[n] for n in con.hosts) if con.hosts else None
            prob.max_online.append((con.amount, scope, con))
    sigs: dict[tuple[int, ...], int] = {(): 0}
    prob.lonely_class = [sigs.setdefault(tuple(s), len(sigs)) for s in lonely_sig]
    for j in range(len(active)):
        if not movable[j]:
            prob.domain.append([init[j]])
            continue
        if allowed[j] is None and not banned[j]:
            prob.domain.append(None)
            continue
        base = allowed[j] if allowed[j] is not None else range(len(host_names))
        prob.domain.append(sorted(h for h in base if usable[h] and h not in banned[j]))
    prob.vm_spreads = [[] for _unused in active]
    for g, members in enumerate(prob.spread_groups):
        for j in members:
            prob.vm_spreads[j].append(g)
    return prob
