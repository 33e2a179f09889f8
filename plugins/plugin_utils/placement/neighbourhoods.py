"""Search pieces for mixes of big VMs (2-4 per host), where the general ones stall.

`balanced_stay` picks, before the packing, the VMs that keep their place on the hosts kept: on a
random initial placement, keeping the big VMs of a kept host while its cpu and memory fills stay
within 5 % of each other gave fewer hosts and less memory moved than repacking every VM (heavy
mix, docs/benchmarks.md); keeping more (unbalanced) cost hosts.

`empty_hosts` chooses the host to empty by the memory that must move off it (its VMs at home cost
their memory, VMs already away cost nothing more) as well as by fill, with receivers matching its
load; the number of receivers grows with the failures on that host and with the slack the used
hosts have left (capacity beyond the demand, in hosts), and every fifth try is an exact repack
of a few hosts (a longer CP-SAT solve). Exchanges of VMs between the host and its receivers are
part of every sub-solve. It stops at the lower bound.
"""
from __future__ import annotations

import time

from .lns import Lns
from .problem import Problem
from .state import State

STAY_BALANCE = 0.05     # balanced_stay: largest gap between a kept host's cpu and memory fill


def balanced_stay(st: State, keep: set[int], delta: float = STAY_BALANCE) -> set[int]:
    """VMs that keep their place on the hosts kept before packing: on each kept host, biggest first,
    a VM stays while the host's cpu and memory fills stay within `delta` of each other (its free
    capacity keeps the shape of the demand, so the packing around it still fits). Only VMs no rule
    watches (no gather, spread, lonely, domain or constraint hook) stay."""
    prob = st.prob
    stay: set[int] = set()
    for h in sorted(keep):
        c = m = 0
        for j in sorted(st.members[h], key=lambda j: (-prob.mem[j], j)):
            if (not prob.movable[j] or prob.domain[j] is not None or prob.vm_rules[j] or prob.lonely_class[j]
                    or prob.vm_spreads[j] or len(st.units[st.unit_of[j]]) != 1):
                continue
            fc = (c + prob.cpu[j]) / max(prob.cap_cpu[h], 1)
            fm = (m + prob.mem[j]) / max(prob.cap_mem[h], 1)
            if max(fc, fm) <= 1.0 and abs(fc - fm) <= delta:
                stay.add(j)
                c += prob.cpu[j]
                m += prob.mem[j]
    return stay


def is_big_vm_mix(prob: Problem) -> bool:
    """VMs large relative to hosts (mean VM memory >= BIG_MIX_SHARE of the mean host memory)."""
    if not prob.n_vms:
        return False
    return sum(prob.mem) / prob.n_vms >= BIG_MIX_SHARE * max(prob.avg_mem, 1)


# --- emptying hosts in big-VM mixes -------------------------------------------------------------
BIG_MIX_SHARE = 0.15            # mean VM memory / mean host memory from which empty_hosts is used
EMPTY_RECEIVERS = (6, 12, 24)   # receivers per neighbourhood: cycled, larger after failures
EMPTY_TOP = 12                  # the host to empty is one of this many cheapest (skewed to the cheapest)
EXACT_HOSTS = 4                 # hosts in an exact repack (solved to optimality if CP-SAT can)
EXACT_DTIME = 0.5
FAIL_WEIGHT = 0.25              # cost added per failed try, relative to a host's capacity


def must_move(lns: Lns, h: int) -> int:
    """Memory (MiB) that moving every VM off h adds to the memory moved: VMs at home count,
    VMs already away do not (they move anyway)."""
    prob = lns.prob
    return sum(prob.mem[j] for j in lns.st.members[h] if prob.init[j] == h)


def slack(lns: Lns) -> float:
    """Free capacity of the used hosts in hosts' worth (the larger of cpu and memory): how many
    hosts the demand could still spare at best; guides how wide the neighbourhoods are."""
    st, prob = lns.st, lns.prob
    used = lns.used()
    fc = sum(prob.cap_cpu[h] - st.lc[h] for h in used) / max(prob.avg_cpu, 1)
    fm = sum(prob.cap_mem[h] - st.lm[h] for h in used) / max(prob.avg_mem, 1)
    return min(fc, fm)


def empty_hosts(lns: Lns, stop: float) -> None:
    """Consolidate: empty the host with the least memory that must move (skewed random among the
    cheapest, failures penalised) into receivers matching its load; every few tries an exact
    repack of a few hosts. Stops at the lower bound."""
    st, prob = lns.st, lns.prob
    fails: dict[int, int] = {}
    tries = 0
    last_report = time.monotonic()
    while not lns._done() and time.monotonic() < stop:   # pylint: disable=protected-access
        used = lns.used()
        if len(used) <= lns.lower_bound:
            break
        cands = [h for h in used if all(prob.movable[j] for j in st.members[h])]
        if not cands:
            break
        cands.sort(key=lambda h: (must_move(lns, h) / max(prob.cap_mem[h], 1) + st.fill(h)
                                  + FAIL_WEIGHT * fails.get(h, 0), h))
        t = cands[min(int(lns.rng.random() ** 2 * len(cands)), EMPTY_TOP - 1, len(cands) - 1)]
        tries += 1
        if tries % 5 == 0:
            k, dtime = EXACT_HOSTS - 1, EXACT_DTIME
        else:
            k = EMPTY_RECEIVERS[min(fails.get(t, 0), len(EMPTY_RECEIVERS) - 1)]
            k = min(k, max(EMPTY_RECEIVERS[0], int(2 * max(slack(lns), 1.0)) + EMPTY_RECEIVERS[0]))
            dtime = None
        hosts = [t] + lns._receivers(t, k)   # pylint: disable=protected-access
        free = lns._free_vms(hosts)   # pylint: disable=protected-access
        while len(free) > 160 and len(hosts) > 2:
            hosts.pop()
            free = lns._free_vms(hosts)   # pylint: disable=protected-access
        before = len(used)
        lns._solve(free, hosts, "consolidate", targets={t}, dtime=dtime)   # pylint: disable=protected-access
        if len(lns.used()) < before:
            fails.pop(t, None)
        else:
            fails[t] = fails.get(t, 0) + 1
        if lns.progress and time.monotonic() - last_report > 1.0:
            lns._report("emptying hosts")   # pylint: disable=protected-access
            last_report = time.monotonic()
