"""Lower bound on the number of hosts any viable placement needs."""
from __future__ import annotations

from .problem import Problem


def _resource_bound(demand: int, caps: list[int]) -> int:
    """Hosts needed if demand were liquid: fill the largest hosts first."""
    if demand <= 0:
        return 0
    total = 0
    for n, cap in enumerate(sorted(caps, reverse=True), start=1):
        total += cap
        if total >= demand:
            return n
    return len(caps) + 1  # cannot fit at all; diagnosis reports why


def hosts_lower_bound(prob: Problem) -> int:
    usable = [h for h in range(prob.n_hosts) if prob.usable[h]]
    lb_cpu = _resource_bound(sum(prob.cpu), [prob.cap_cpu[h] for h in usable])
    lb_mem = _resource_bound(sum(prob.mem), [prob.cap_mem[h] for h in usable])
    # Root VMs pin their hosts: every distinct root host is in use.
    pinned = len({prob.init[j] for j in range(prob.n_vms) if not prob.movable[j]})
    # A spread group needs as many hosts as it has members.
    widest = max((len(g) for g in prob.spread_groups), default=0)
    return max(lb_cpu, lb_mem, pinned, widest, 1 if prob.n_vms else 0)
