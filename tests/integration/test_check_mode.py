# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""--check on every playbook that moves VMs: the plan is computed and shown, nothing moves, no lock
is left behind, and the recap reports no change (the run lock is taken and released within a run,
so it is no lasting change, and in check mode it is not taken at all)."""

from __future__ import annotations

import json
import os
import re

import pytest


def recap(output: str) -> tuple[int, int]:
    match = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", output)
    assert match, output[-3000:]
    return int(match.group(1)), int(match.group(2))


@pytest.mark.parametrize("name, extra", [
    ("entropy.cluster.consolidate", {}),
    ("entropy.cluster.evacuate", {"entropy_evacuate_hosts": ["hv1"]}),
    ("entropy.cluster.rebalance", {"entropy_min_gain_hosts": 0}),
])
def test_check_mode_of_the_playbooks_moves_nothing(lab_reset, playbook, tmp_path, name, extra):
    lab = lab_reset
    before = lab.placement()
    lock = tmp_path / "lock"
    result = playbook(name, inventory=lab.inventory, check=True, extra_vars=dict(extra, entropy_lock_file=str(lock)))
    assert result.returncode == 0, result.stdout[-4000:]
    assert recap(result.stdout) == (0, 0), result.stdout[-4000:]
    assert lab.placement() == before
    assert not lock.exists()
    assert not os.listdir(os.path.join(lab.dir, "store")), "check mode left a lock or a maintenance mark in the cluster store"
    if name != "entropy.cluster.rebalance":  # the reset lab is already balanced enough: rebalance may plan nothing
        assert "would run" in result.stdout, result.stdout[-4000:]


def test_check_mode_of_apply_moves_nothing(lab_reset, playbook, tmp_path):
    lab = lab_reset
    plan_file = tmp_path / "plan.json"
    planned = playbook("entropy.cluster.plan", inventory=lab.inventory, extra_vars={"entropy_plan_file": str(plan_file)})
    assert planned.returncode == 0, planned.stdout[-4000:]
    assert json.loads(plan_file.read_text())["steps"]
    before = lab.placement()
    lock = tmp_path / "lock"
    # As docs/playbooks.md writes it: paths relative to the directory the user runs ansible-playbook in.
    result = playbook("entropy.cluster.apply", inventory=lab.inventory, check=True, cwd=str(tmp_path),
                      extra_vars={"entropy_plan_file": "plan.json", "entropy_lock_file": "lock"})
    assert result.returncode == 0, result.stdout[-4000:]
    assert "would run" in result.stdout
    assert recap(result.stdout) == (0, 0), result.stdout[-4000:]
    assert lab.placement() == before
    assert not lock.exists()
    assert not os.listdir(os.path.join(lab.dir, "store")), "check mode left a lock in the cluster store"
