# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Placing a job's VMs with the solver, all of the group or none.

The job's VMs enter the placement model as waiting VMs: running VMs on a staging pseudo-host that
holds exactly the group and that the solver must leave empty (an ``offline`` constraint on it). The
solver (objective ``repair``: least memory moved) therefore finds a host for every VM of the job or
raises InfeasibleError for the whole group, and may move running VMs to make room, with capacities
enforced at every step. In the plan, each move off the staging host becomes a ``start`` of that job
VM on its host; the moves of running VMs stay migrations, in the steps before.
"""
from __future__ import annotations

import copy
from typing import Any

from .admission import check_room
from .schema import Job, JobError

STAGING = "entropy-job-waiting"


def _staging_name(model: dict[str, Any]) -> str:
    names = {h.get("name") for h in model.get("hosts", [])}
    name, n = STAGING, 1
    while name in names:
        n += 1
        name = "%s-%d" % (STAGING, n)
    return name


def waiting_model(job: Job, model: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The placement model with the job's VMs waiting on a staging pseudo-host the solver must empty:
    (model, the staging host's name). Refuses (JobError) a job the cluster can never hold, or whose VM names exist."""
    check_room(job, model)
    names = job.vm_names()
    taken = sorted(set(names) & {vm.get("name") for vm in model.get("vms", [])})
    if taken:
        raise JobError("job %r: VM name %r already exists in the cluster: choose another job name" % (job.name, taken[0]), "name")
    out = copy.deepcopy(model)
    staging = _staging_name(model)
    out.setdefault("hosts", []).append({"name": staging, "cpu": job.vms * job.cpu, "memory_mib": job.memory_total_mib,
                                        "state": "online"})
    out.setdefault("vms", []).extend({"name": name, "host": staging, "state": "running", "vcpus": job.vcpus, "cpu": job.cpu,
                                      "memory_mib": job.memory_mib, "priority": job.priority} for name in names)
    constraints = out.setdefault("constraints", [])
    constraints.append({"type": "offline", "hosts": [staging]})
    for constraint in job.constraints:
        entry = constraint.to_model(names)
        entry.pop("continuous", None)  # the VMs do not exist yet: their rule holds from their start on
        constraints.append(entry)
    options = out.setdefault("options", {})
    options["objective"] = "repair"
    return out, staging


def job_plan(job: Job, plan: dict[str, Any], staging: str) -> dict[str, Any]:
    """The solver's plan on the waiting model, as a plan on the real cluster: moves off the staging host become
    starts of the job's VMs; ``placement`` maps each job VM to its host."""
    own = set(job.vm_names())
    steps = []
    for step in plan["steps"]:
        actions = []
        for action in step:
            if action.get("vm") in own and action.get("action") == "migrate" and action.get("from") == staging:
                actions.append({"action": "start", "vm": action["vm"], "to": action["to"]})
            elif action.get("vm") in own or staging in (action.get("from"), action.get("to"), action.get("host")):
                raise JobError("job %r: the solver's plan has an action the job path cannot run: %r" % (job.name, action))
            else:
                actions.append(dict(action))
        steps.append(actions)
    placement = {vm: host for vm, host in plan["target"].items() if vm in own}
    placed = [vm for vm, host in placement.items() if host != staging]
    if len(placed) != job.vms:
        raise JobError("job %r: the solver placed %d of its %d VMs: none is started" % (job.name, len(placed), job.vms))
    result = dict(plan, steps=steps, placement=placement, job=job.name)
    result["hosts_freed"] = [h for h in plan.get("hosts_freed", []) if h != staging]
    return result


def real_model(job: Job, model: dict[str, Any], placement: dict[str, str]) -> dict[str, Any]:
    """The cluster's model with the job's VMs shut off on their chosen hosts: the model a job plan is checked
    against (check_plan: each start of a job VM boots a VM defined, shut off, on that host)."""
    out = copy.deepcopy(model)
    out.setdefault("vms", []).extend({"name": name, "host": placement[name], "state": "stopped", "vcpus": job.vcpus,
                                      "cpu": job.cpu, "memory_mib": job.memory_mib} for name in job.vm_names())
    for constraint in job.constraints:
        entry = constraint.to_model(job.vm_names())
        entry.pop("continuous", None)
        out.setdefault("constraints", []).append(entry)
    return out


def place_job(job: Job, model: dict[str, Any], **solver_options: Any) -> dict[str, Any]:
    """Place all the job's VMs (or none: JobError) with the placement solver; returns the job plan (job_plan)."""
    try:
        from .. import placement as _solver  # pylint: disable=import-outside-toplevel
    except ImportError:  # imported standalone (plugins/plugin_utils on sys.path)
        import placement as _solver  # type: ignore[no-redef]  # pylint: disable=import-outside-toplevel

    waiting, staging = waiting_model(job, model)
    try:
        plan = _solver.solve(waiting, **solver_options)
    except _solver.InfeasibleError as exc:
        figures = check_room(job, model)
        raise JobError("job %r does not fit: the solver found no placement of all its %d VMs (needs %d MiB, %d MiB free on %d "
                       "online hosts; %s): none is started, lower vms or memory_mib, or wait for room"
                       % (job.name, job.vms, figures["needs_memory_mib"], figures["free_memory_mib"], figures["online_hosts"],
                          str(exc).splitlines()[0] if str(exc) else "infeasible")) from None
    return job_plan(job, plan, staging)
