"""Cheap, concrete explanations of why a model has no viable placement.

Run before solving so the common mistakes (contradicting constraints, a VM larger than every host it
may use, a cluster too small) are named precisely instead of ending in a time-out.
"""
from __future__ import annotations

from typing import Any

from .constraints import Ban, Fence, Gather, Offline, Root, Spread
from .errors import InfeasibleError
from .problem import CPU_SCALE, Problem


def _gib(mib: float) -> str:
    return f"{mib / 1024:.4g} GiB"


def _vm_size(prob: Problem, j: int) -> str:
    return f"{prob.cpu[j] / CPU_SCALE:g} cpu, {_gib(prob.mem[j])}"


def diagnose(prob: Problem) -> list[str]:
    """Return explanations (empty when nothing obviously infeasible was found)."""
    model = prob.model
    hidx = model.host_index
    vpos = {n: j for j, n in enumerate(prob.vm_names)}
    problems: list[str] = []
    usable = {h for h in range(prob.n_hosts) if prob.usable[h]}
    restricting: dict[int, list] = {}
    for con in model.constraints:
        if isinstance(con, (Fence, Ban, Root)):
            for n in con.vms:
                if n in vpos:
                    restricting.setdefault(vpos[n], []).append(con)
    offline = [c for c in model.constraints if isinstance(c, Offline)]
    # distinct capacity vectors of usable hosts: a VM without restrictions fits iff one of them holds it
    kinds = {(prob.cap_cpu[h], prob.cap_mem[h]) for h in usable}
    for j in range(prob.n_vms):
        name = prob.vm_names[j]
        if j not in restricting and prob.init[j] in usable:
            if not any(prob.cpu[j] <= c and prob.mem[j] <= m for c, m in kinds):
                problems.append(f"vm {name!r} ({_vm_size(prob, j)}) fits on no online host")
            continue
        hosts = set(usable)
        blamed = []
        if prob.init[j] not in usable and not prob.movable[j]:
            off = [c.describe() for c in offline if prob.host_names[prob.init[j]] in c.hosts]
            root = [c.describe() for c in restricting.get(j, []) if isinstance(c, Root)]
            problems.append(f"{' and '.join(root)} conflicts with {' and '.join(off) or 'the host state'}: "
                            f"vm {name!r} cannot stay on {prob.host_names[prob.init[j]]!r}")
            continue
        for con in restricting.get(j, []):
            if isinstance(con, Fence):
                hosts &= {hidx[n] for n in con.hosts}
            elif isinstance(con, Ban):
                hosts -= {hidx[n] for n in con.hosts}
            else:
                hosts &= {prob.init[j]}
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
    for con in model.constraints:
        members = [vpos[n] for n in con.vms if n in vpos]
        if isinstance(con, Gather) and len(members) > 1:
            common = set(usable)
            for j in members:
                common &= set(prob.hosts_of(j))
            cpu = sum(prob.cpu[j] for j in members)
            mem = sum(prob.mem[j] for j in members)
            if not common:
                problems.append(f"{con.describe()}: no host is allowed for all its vms")
            elif not any(cpu <= prob.cap_cpu[h] and mem <= prob.cap_mem[h] for h in common):
                problems.append(f"{con.describe()}: together the vms need {cpu / CPU_SCALE:g} cpu and {_gib(mem)}, "
                                f"more than any allowed host offers")
            for other in model.constraints:
                if isinstance(other, Spread) and len(set(other.vms) & set(con.vms)) > 1:
                    problems.append(f"{con.describe()} conflicts with {other.describe()}")
        elif isinstance(con, Spread) and len(members) > 1:
            hosts = set()
            for j in members:
                hosts |= set(prob.hosts_of(j))
            if len(hosts) < len(members):
                problems.append(f"{con.describe()}: {len(members)} vms but only {len(hosts)} allowed hosts")
    problems.extend(_totals(prob))
    return problems


def _totals(prob: Problem) -> list[str]:
    usable = [h for h in range(prob.n_hosts) if prob.usable[h]]
    out = []
    caps = [("cpu", sum(prob.cpu), [prob.cap_cpu[h] for h in usable], lambda v: f"{v / CPU_SCALE:g} cores"),
            ("memory", sum(prob.mem), [prob.cap_mem[h] for h in usable], _gib)]
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
