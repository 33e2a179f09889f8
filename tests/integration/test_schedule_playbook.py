# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The schedule playbook on the lab: with less room than the VMs need (a capacity constraint leaves
room for one lab VM per host), the plan saves the VMs of lowest priority; --check shows that plan
and moves nothing, and the plan role writes it with the VMs it leaves saved."""

from __future__ import annotations

import json
import os
import re

# one 64 MiB lab VM per host fits under 100 MiB
ONE_VM_PER_HOST = [{"type": "capacity", "resource": "memory", "amount": 100, "hosts": ["hv1", "hv2", "hv3"]}]


def recap(output: str) -> tuple[int, int]:
    match = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1)), int(match.group(2))


def test_check_mode_of_schedule_shows_the_suspends_and_moves_nothing(lab_reset, playbook, tmp_path):
    lab = lab_reset
    before = lab.placement()
    lock = tmp_path / "lock"
    result = playbook("entropy.cluster.schedule", inventory=lab.inventory, check=True,
                      extra_vars={"entropy_constraints": ONE_VM_PER_HOST, "entropy_lock_file": str(lock)})
    assert result.returncode == 0, result.stdout[-4000:]
    assert recap(result.stdout) == (0, 0), result.stdout[-4000:]
    assert "plan: objective schedule" in result.stdout and "vms left saved      3" in result.stdout, result.stdout[-4000:]
    assert "would run" in result.stdout and "suspend vm" in result.stdout, result.stdout[-4000:]
    assert lab.placement() == before
    assert not lock.exists()
    assert not os.listdir(os.path.join(lab.dir, "store")), "check mode left a lock or a maintenance mark in the cluster store"


def test_the_plan_role_writes_a_schedule_plan(lab_reset, playbook, tmp_path):
    lab = lab_reset
    before = lab.placement()
    plan_file = tmp_path / "plan.json"
    result = playbook("entropy.cluster.plan", inventory=lab.inventory,
                      extra_vars={"entropy_objective": "schedule", "entropy_constraints": ONE_VM_PER_HOST,
                                  "entropy_plan_file": str(plan_file)})
    assert result.returncode == 0, result.stdout[-4000:]
    plan = json.loads(plan_file.read_text())
    assert plan["objective"] == "schedule" and len(plan["saved"]) == 3 and len(plan["target"]) == 3
    assert sorted(set(plan["target"].values())) == ["hv1", "hv2", "hv3"]
    suspends = [a for step in plan["steps"] for a in step if a["action"] == "suspend"]
    assert sorted(a["vm"] for a in suspends) == plan["saved"]
    assert lab.placement() == before


def test_schedule_saves_the_vms_it_leaves_out_and_resumes_them_when_room_frees_up(lab_reset, playbook, tmp_path):
    """A real context switch on the lab (managed saves on the hosts): less room -> three VMs saved, each VM
    defined on one host throughout; a rerun changes nothing; room back -> they resume; a rerun changes nothing."""
    lab = lab_reset
    lock = str(tmp_path / "lock")
    tight = playbook("entropy.cluster.schedule", inventory=lab.inventory,
                     extra_vars={"entropy_constraints": ONE_VM_PER_HOST, "entropy_lock_file": lock})
    assert tight.returncode == 0, tight.stdout[-4000:]
    saved = lab.stopped_vms()
    assert len(saved) == 3, lab.placement()
    lab.assert_each_vm_once(stopped=saved)
    assert sorted(h for vm in lab.vms if vm not in saved for h in lab.running_on(vm)) == ["hv1", "hv2", "hv3"]
    again = playbook("entropy.cluster.schedule", inventory=lab.inventory,
                     extra_vars={"entropy_constraints": ONE_VM_PER_HOST, "entropy_lock_file": lock})
    assert again.returncode == 0 and recap(again.stdout) == (0, 0), again.stdout[-4000:]
    room = playbook("entropy.cluster.schedule", inventory=lab.inventory, extra_vars={"entropy_lock_file": lock})
    assert room.returncode == 0, room.stdout[-4000:]
    assert "vms left saved      0" in room.stdout and all("resume %s" % vm in room.stdout for vm in saved), room.stdout[-4000:]
    lab.assert_each_vm_once()
    again = playbook("entropy.cluster.schedule", inventory=lab.inventory, extra_vars={"entropy_lock_file": lock})
    assert again.returncode == 0 and recap(again.stdout) == (0, 0), again.stdout[-4000:]
