# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Before the solver: a job the cluster can never hold, refused with the numbers.

These are necessary conditions only (moving VMs creates no memory or CPU, so what is free in all
is an upper bound of what a job can get); whether the group really fits, the solver decides.
"""
from __future__ import annotations

from typing import Any

from .schema import Job, JobError

ACTIVE = ("running", "paused")


def _room(model: dict[str, Any]) -> dict[str, dict[str, float]]:
    """host -> {memory_mib, cpu, free_memory_mib, free_cpu} for every online host of a placement model."""
    hosts = {h["name"]: {"memory_mib": h.get("memory_mib", 0), "cpu": h.get("cpu", 0)}
             for h in model.get("hosts", []) if h.get("state", "online") == "online"}
    used = {name: [0, 0.0] for name in hosts}
    for vm in model.get("vms", []):
        state = vm.get("state", "running")
        if vm.get("host") in used and state in ACTIVE:
            used[vm["host"]][0] += vm.get("memory_mib", 0)
            if state == "running":
                used[vm["host"]][1] += vm.get("cpu", vm.get("vcpus", 0))
    for name, room in hosts.items():
        room["free_memory_mib"] = max(0, room["memory_mib"] - used[name][0])
        room["free_cpu"] = max(0.0, room["cpu"] - used[name][1])
    return hosts


def check_room(job: Job, model: dict[str, Any]) -> dict[str, Any]:
    """Refuse (JobError, one line with the numbers) a job that cannot fit in the cluster of ``model`` (a placement
    model, docs/model-format.md) whatever the solver moves; return the figures it compared otherwise."""
    hosts = _room(model)
    where = "job %r" % job.name
    if not hosts:
        raise JobError("%s cannot be placed: the cluster has no online host: bring a host online first" % where)
    free_memory = sum(h["free_memory_mib"] for h in hosts.values())
    total_memory = sum(h["memory_mib"] for h in hosts.values())
    free_cpu = sum(h["free_cpu"] for h in hosts.values())
    largest = max(h["memory_mib"] for h in hosts.values())
    need_memory = job.memory_total_mib
    need_cpu = job.vms * job.cpu
    figures = {"needs_memory_mib": need_memory, "free_memory_mib": free_memory, "total_memory_mib": total_memory,
               "needs_cpu": need_cpu, "free_cpu": round(free_cpu, 3), "online_hosts": len(hosts)}
    if job.memory_mib > largest:
        raise JobError("%s is larger than any host: each VM needs %d MiB, the largest online host has %d MiB in all: lower memory_mib"
                       % (where, job.memory_mib, largest), "memory_mib")
    if need_memory > free_memory:
        raise JobError("%s is larger than the cluster: needs %d MiB (%d VMs x %d MiB), %d MiB free on %d online hosts (%d MiB in all): "
                       "lower vms or memory_mib, or wait for room" % (where, need_memory, job.vms, job.memory_mib, free_memory,
                                                                      len(hosts), total_memory), "memory_mib")
    if need_cpu > free_cpu + 1e-9:
        raise JobError("%s is larger than the cluster: needs %g cores (%d VMs x %g), %g cores free on %d online hosts: lower vms or cpu, "
                       "or wait for room" % (where, need_cpu, job.vms, job.cpu, round(free_cpu, 3), len(hosts)), "cpu")
    for constraint in job.constraints:
        if constraint.type == "spread" and job.vms > len(hosts):
            raise JobError("%s asks to spread %d VMs over distinct hosts, the cluster has %d online hosts: lower vms or drop spread"
                           % (where, job.vms, len(hosts)), "constraints")
        if constraint.type == "gather":
            best = max(h["free_memory_mib"] for h in hosts.values())
            if need_memory > largest:
                raise JobError("%s asks to gather %d MiB on one host, the largest online host has %d MiB in all: lower vms or "
                               "memory_mib, or drop gather" % (where, need_memory, largest), "constraints")
            figures["largest_free_memory_mib"] = best
        if constraint.type == "among":
            known = {h["name"] for h in model.get("hosts", [])}
            for group in constraint.groups:
                for host in group:
                    if host not in known:
                        raise JobError("%s: constraints among names host %r, which is not in the cluster: use one of %s"
                                       % (where, host, ", ".join(sorted(known))), "constraints")
    return figures
