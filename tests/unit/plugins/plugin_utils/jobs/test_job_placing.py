"""A job's VMs placed by the real solver (OR-Tools CP-SAT), all of the group or none: waiting VMs on a staging
pseudo-host the solver must empty; the job plan starts each VM on its host after the moves that make room."""
from __future__ import annotations

import copy
import os
import sys

import pytest

# plugins/plugin_utils on sys.path: the packages import standalone as `jobs` and `placement` (no conftest of our
# own here: a second module named conftest would shadow the one other unit tests import from)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), *([os.pardir] * 5), "plugins", "plugin_utils"))

from jobs import JobError, parse_job, place_job, real_model, waiting_model  # noqa: E402  pylint: disable=wrong-import-position
from placement import check_plan  # noqa: E402  pylint: disable=wrong-import-position

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGwxrhaxd0mbyHjRwqQ4LGtl2AHMwHwMXBEjld3BfmMk alice@laptop"
SOLVE = {"time_limit_s": 10, "workers": 1}


def job(**fields):
    data = {"name": "j", "owner": "alice", "vms": 3, "vcpus": 1, "memory_mib": 64, "cpu": 0.1, "image": "/images/base.qcow2",
            "command": "true", "share": "/home/alice", "ssh_key": KEY, "time_limit_s": 60}
    data.update(fields)
    return parse_job(data)


def lab_model():
    """The lab's shape: 3 hosts of 2 cores / 320 MiB, two 64 MiB VMs on each."""
    return {"version": 1, "hosts": [{"name": "hv%d" % i, "cpu": 2, "memory_mib": 320} for i in (1, 2, 3)],
            "vms": [{"name": "vm%d" % n, "host": "hv%d" % ((n + 1) // 2), "memory_mib": 64, "cpu": 0.1} for n in range(1, 7)]}


def placed_and_valid(the_job, model):
    before = copy.deepcopy(model)
    plan = place_job(the_job, model, **SOLVE)
    assert model == before, "the caller's model was changed"
    assert sorted(plan["placement"]) == the_job.vm_names()
    starts = [a for step in plan["steps"] for a in step if a["action"] == "start"]
    assert sorted(a["vm"] for a in starts) == the_job.vm_names()
    assert not [a for step in plan["steps"] for a in step if "entropy-job-waiting" in a.values()]
    assert check_plan(real_model(the_job, model, plan["placement"]), plan) == []
    return plan


def test_spread_job_gets_one_vm_per_host():
    plan = placed_and_valid(job(constraints=[{"type": "spread"}]), lab_model())
    assert sorted(plan["placement"].values()) == ["hv1", "hv2", "hv3"]


def test_gather_job_larger_than_any_free_host_moves_running_vms_first():
    """4 x 64 MiB on one host, where each has 192 MiB free: the solver moves a running VM away before the group is all started."""
    plan = placed_and_valid(job(vms=4, constraints=[{"type": "gather"}]), lab_model())
    assert len(set(plan["placement"].values())) == 1
    migrations = [(i, a) for i, step in enumerate(plan["steps"]) for a in step if a["action"] == "migrate"]
    last_start = max(i for i, step in enumerate(plan["steps"]) for a in step if a["action"] == "start")
    # the whole group fits only once a running VM has left: its last start comes in a later step than that move
    # (check_plan above verified the capacities of every step, the in-flight migration counting on both ends)
    assert migrations and min(i for i, _a in migrations) < last_start, plan["steps"]


def test_all_or_none_when_only_part_of_the_group_fits():
    """Two hosts with 150 MiB free each behind VMs that may not move: 2 of 3 VMs of 100 MiB would fit, so none is placed."""
    model = {"version": 1, "hosts": [{"name": "a", "cpu": 4, "memory_mib": 300}, {"name": "b", "cpu": 4, "memory_mib": 300}],
             "vms": [{"name": "x", "host": "a", "memory_mib": 150, "cpu": 0.1}, {"name": "y", "host": "b", "memory_mib": 150, "cpu": 0.1}],
             "constraints": [{"type": "root", "vms": ["x", "y"]}]}
    with pytest.raises(JobError) as caught:
        place_job(job(vms=3, memory_mib=100), model, **SOLVE)
    message = str(caught.value)
    assert "found no placement of all its 3 VMs (needs 300 MiB, 300 MiB free on 2 online hosts" in message and "none is started" in message
    assert "\n" not in message


def test_larger_than_the_cluster_is_refused_before_the_solver_and_names_are_not_reused():
    with pytest.raises(JobError, match="needs 1280 MiB"):
        waiting_model(job(vms=20), lab_model())
    with pytest.raises(JobError, match="VM name 'vm-1' already exists"):
        waiting_model(job(name="vm"), dict(lab_model(), vms=lab_model()["vms"] + [{"name": "vm-1", "host": "hv1", "memory_mib": 1}]))


def test_a_host_named_like_the_staging_host_is_not_confused():
    model = lab_model()
    model["hosts"].append({"name": "entropy-job-waiting", "cpu": 2, "memory_mib": 320})
    waiting, staging = waiting_model(job(), model)
    assert staging == "entropy-job-waiting-2"
    plan = placed_and_valid(job(), model)
    assert "entropy-job-waiting-2" not in plan["placement"].values()
