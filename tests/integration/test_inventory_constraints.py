# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""model_constraints written in the lab's *.libvirt_cluster.yml file shape what consolidate and evacuate do,
with real migrations. Each test first asks the plan playbook where the VMs would go without the constraint,
then writes the constraint against exactly that choice, so it can only pass if the constraint is obeyed."""

from __future__ import annotations

import json
import os

import yaml


def inventory_with(lab, tmp_path, constraints) -> str:
    """The lab's inventory file with model_constraints added, as a user writes it (beside the lab's group_vars)."""
    with open(lab.inventory, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    config["model_constraints"] = constraints
    path = tmp_path / "constrained.libvirt_cluster.yml"
    path.write_text(yaml.safe_dump(config))
    (tmp_path / "group_vars").symlink_to(os.path.join(lab.dir, "group_vars"))
    return str(path)


def plan_of(playbook, tmp_path, inventory, **extra_vars) -> dict:
    plan_file = tmp_path / "plan.json"
    result = playbook("entropy.cluster.plan", inventory=inventory, extra_vars=dict(extra_vars, entropy_plan_file=str(plan_file)))
    assert result.returncode == 0, result.stdout[-4000:]
    return json.loads(plan_file.read_text())


def hosts_of(lab) -> dict[str, str]:
    return {vm: next(h for h, s in where if s in ("running", "paused")) for vm, where in lab.placement().items()}


def test_an_inventory_ban_decides_where_evacuate_sends_a_vm(lab_reset, playbook, tmp_path):
    lab = lab_reset
    source = "hv1"
    vm = sorted(v for v, host in hosts_of(lab).items() if host == source)[0]
    free_choice = plan_of(playbook, tmp_path, lab.inventory, entropy_objective="repair", entropy_evacuate_hosts=[source])["target"][vm]
    inventory = inventory_with(lab, tmp_path, [{"type": "ban", "vms": [vm], "hosts": [free_choice]}])
    result = playbook("entropy.cluster.evacuate", inventory=inventory,
                      extra_vars={"entropy_evacuate_hosts": [source], "entropy_lock_file": str(tmp_path / "lock")})
    assert result.returncode == 0, result.stdout[-4000:]
    lab.assert_each_vm_once()
    where = hosts_of(lab)
    assert source not in where.values()
    assert where[vm] not in (source, free_choice), "the ban in the inventory file was ignored: %s went to %s" % (vm, where[vm])


def test_an_inventory_ban_decides_which_host_consolidate_frees(lab_reset, playbook, tmp_path):
    lab = lab_reset
    freed = plan_of(playbook, tmp_path, lab.inventory, entropy_objective="consolidate")["hosts_freed"]
    assert len(freed) == 1, freed  # 6 x 64 MiB on 320 MiB hosts: two hosts are enough
    to_free = sorted(set(lab.hosts) - set(freed))[0]  # a host the solver would have kept
    inventory = inventory_with(lab, tmp_path, [{"type": "ban", "vms": sorted(lab.vms), "hosts": [to_free]}])
    result = playbook("entropy.cluster.consolidate", inventory=inventory, extra_vars={"entropy_lock_file": str(tmp_path / "lock")})
    assert result.returncode == 0, result.stdout[-4000:]
    lab.assert_each_vm_once()
    used = set(hosts_of(lab).values())
    assert to_free not in used, "the ban in the inventory file was ignored: %s still carries VMs" % to_free
    assert len(used) == 2, used
