"""Cheap, concrete explanations of why a model has no viable placement.

Run before solving so the common mistakes (contradicting constraints, a VM larger than every host it
may use, a cluster too small) are named precisely instead of ending in a time-out.
"""
from __future__ import annotations

from typing import Any

from .constraints import gib
from .errors import InfeasibleError
from .problem import CPU_SCALE, Problem


def _vm_size(prob: Problem, j: int) -> str:
    return f"{prob.cpu[j] / CPU_SCALE:g} cpu, {gib(prob.mem[j])}"


def diagnose(prob: Problem) -> list[str]:
    """Return explanations (empty when nothing obviously infeasible was found)."""
    problems = _per_vm(prob)
    for con, data in prob.rules:
        if data is not None:
            problems.extend(con.diagnose(prob, data))
    problems.extend(_totals(prob))
    return problems


def _per_vm(prob: Problem) -> list[str]:
    """VMs that no host can take: their constraints leave no usable host, or none that is big enough."""
    constraints = prob.model.constraints
    problems: list[str] = []
    usable = {h for h in range(prob.n_hosts) if prob.usable[h]}
    # distinct capacity vectors of usable hosts: a VM without restrictions fits iff one of them holds it
    kinds = {(prob.cap_cpu[h], prob.cap_mem[h]) for h in usable}
    by_vm: dict[int, list] = {}   # VM -> constraints that narrow its hosts, in model order
    for con in constraints:
        for n in con.vms:
            j = prob.vm_pos.get(n)
            if j is not None and con.narrow(prob, j, usable) is not None:
                by_vm.setdefault(j, []).append(con)
    for j in range(prob.n_vms):
        name = prob.vm_names[j]
        restricting = by_vm.get(j, [])
        if not restricting and prob.init[j] in usable:
            if not any(prob.cpu[j] <= c and prob.mem[j] <= m for c, m in kinds):
                problems.append(f"vm {name!r} ({_vm_size(prob, j)}) fits on no online host")
            continue
        init_name = prob.host_names[prob.init[j]]
        if prob.init[j] not in usable and not prob.movable[j]:
            off = [c.describe() for c in constraints if init_name in c.forbidden_hosts()]
            root = [c.describe() for c in restricting if c.pins(name)]
            problems.append(f"{' and '.join(root)} conflicts with {' and '.join(off) or 'the host state'}: "
                            f"vm {name!r} cannot stay on {init_name!r}")
            continue
        hosts = set(usable)
        blamed = []
        for con in restricting:
            hosts = con.narrow(prob, j, hosts)
            blamed.append(con)
            if not hosts:
                first = blamed[0].describe()
                rest = " and ".join(c.describe() for c in blamed[1:])
                why = f"{first} conflicts with {rest}" if rest else f"{first} allows no online host"
                problems.append(f"{why}: no host is left for vm {name!r}")
                break
        if not hosts:
            continue
        fits = [h for h in hosts if prob.cpu[j] <= prob.cap_cpu[h] and prob.mem[j] <= prob.cap_mem[h]]
        if not fits:
            scope = " and ".join(c.describe() for c in blamed) or "any online host"
            problems.append(f"vm {name!r} ({_vm_size(prob, j)}) fits on no host allowed by {scope}")
    return problems


def _totals(prob: Problem) -> list[str]:
    usable = [h for h in range(prob.n_hosts) if prob.usable[h]]
    out = []
    caps = [("cpu", sum(prob.cpu), [prob.cap_cpu[h] for h in usable], lambda v: f"{v / CPU_SCALE:g} cores"),
            ("memory", sum(prob.mem), [prob.cap_mem[h] for h in usable], gib)]
    # the tightest cluster-wide max_online
    global_caps = sorted(((amount, con.index, con) for amount, scope, con in prob.max_online if scope is None),
                         key=lambda t: t[:2])
    cap_k: tuple[int, Any] | None = (global_caps[0][0], global_caps[0][2]) if global_caps else None
    for res, demand, hcaps, fmt in caps:
        total = sum(hcaps)
        if demand > total:
            out.append(f"{res}: total demand {fmt(demand)} exceeds the {fmt(total)} of usable online hosts")
        elif cap_k is not None:
            amount, con = cap_k  # pylint: disable=unpacking-non-sequence
            best = sum(sorted(hcaps, reverse=True)[:amount])
            if demand > best:
                out.append(f"{res}: total demand {fmt(demand)} exceeds the {fmt(best)} of online hosts allowed by "
                           f"{con.describe()}")
    return out


def raise_if_infeasible(prob: Problem) -> None:
    problems = diagnose(prob)
    if problems:
        raise InfeasibleError(problems[0], problems)
