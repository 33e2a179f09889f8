# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The start and stop plan actions (VM jobs and the context switch emit them) applied on the real lab:
a shut-off VM started on the host its plan names in ``to``, a running one stopped, in parallel, through
entropy.cluster.apply; then the stopped one started again through a rendered plan playbook."""

from __future__ import annotations

import json
import os
import sys

from conftest import COLLECTIONS
from test_apply_faults import apply, lab_initial, write_plan

sys.path.insert(0, COLLECTIONS)
# pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import render_playbook  # noqa: E402


def test_a_plan_starts_a_shut_off_vm_on_its_host_and_stops_another(lab_reset, playbook, tmp_path):
    lab = lab_reset
    hv1, hv2 = sorted(lab.hosts)[:2]
    initial = lab_initial(lab)
    to_start = sorted(vm for vm, where in initial.items() if where["host"] == hv2)[0]
    to_stop = sorted(vm for vm, where in initial.items() if where["host"] == hv1)[0]
    conn = lab.connect(hv2)
    try:
        conn.lookupByName(to_start).destroy()  # shut off, still defined on hv2
    finally:
        conn.close()
    initial[to_start]["state"] = "stopped"

    # The lab's firmware VMs ignore ACPI: the stop destroys the VM after the (short) shutdown timeout.
    plan_file = write_plan(tmp_path, initial, [[{"action": "start", "vm": to_start, "to": hv2},
                                                {"action": "stop", "vm": to_stop, "host": hv1}]])
    result = apply(playbook, lab, tmp_path, plan_file, entropy_shutdown_timeout_s=2)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "start %s on %s" % (to_start, hv2) in result.stdout and "stop %s on %s" % (to_stop, hv1) in result.stdout
    placement = lab.placement()
    assert placement[to_start] == [(hv2, "running")]
    assert placement[to_stop] == [(hv1, "shutoff")]
    lab.assert_each_vm_once(stopped=(to_stop,))

    # Back up again, this time through the standalone playbook the plan role renders.
    initial = lab_initial(lab)
    assert initial[to_stop] == {"host": hv1, "state": "stopped"}
    with open(write_plan(tmp_path, initial, [[{"action": "start", "vm": to_stop, "to": hv1}]], "again.json"), encoding="utf-8") as handle:
        again = json.load(handle)
    rendered = tmp_path / "again.yml"
    rendered.write_text(render_playbook(again), encoding="utf-8")
    result = playbook(str(rendered), inventory=lab.static_inventory, extra_vars={"entropy_lock_file": str(tmp_path / "lock")})
    assert result.returncode == 0, result.stdout[-4000:]
    assert "Step 1 of 1 (1 action, 0 migrations, in parallel)" in result.stdout
    assert lab.placement()[to_stop] == [(hv1, "running")]
    lab.assert_each_vm_once()
    assert not os.path.exists(tmp_path / "lock")
