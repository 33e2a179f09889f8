# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.vm_state on the real lab through ansible-playbook."""

from __future__ import annotations

import json


def run_once(playbook, tmp_path, check=False, **extra_vars):
    result_file = tmp_path / "result.json"
    proc = playbook("modules_state_once.yml", extra_vars=dict(result_file=str(result_file), **extra_vars), check=check)
    assert proc.returncode == 0, proc.stdout
    return json.loads(result_file.read_text())


def state_of(lab, host, vm):
    conn = lab.connect(host)
    try:
        dom = conn.lookupByName(vm)
        state = dom.state()[0]
        return "saved" if state == 5 and dom.hasManagedSaveImage(0) else {1: "running", 3: "paused", 5: "shutoff"}.get(state, str(state))
    finally:
        conn.close()


def test_every_transition_twice(lab, playbook):
    vm = "vm2"
    host = lab.running_on(vm)[0]
    assert state_of(lab, host, vm) == "running"
    proc = playbook("modules_state.yml", extra_vars=dict(vm=vm, uri=lab.uri(host)))
    assert proc.returncode == 0, proc.stdout
    assert "failed=0" in proc.stdout
    assert lab.running_on(vm) == [host]
    lab.assert_each_vm_once()


def test_check_mode_changes_nothing_and_shutdown_without_force_fails(lab, playbook, tmp_path):
    vm = "vm4"
    host = lab.running_on(vm)[0]
    uri = lab.uri(host)
    states = ["paused", "saved", "destroyed", "shutdown", "running"]
    results = run_once(playbook, tmp_path, check=True, vm=vm, uri=uri, states=states)
    for state, result in zip(states, results):
        assert not result.get("failed"), result
        assert result["changed"] is (state != "running"), result
        assert result["previous_state"] == "running"
        assert result["diff"]["before"] == {"state": "running"}
        assert result["diff"]["after"] == {"state": {"paused": "paused", "saved": "saved", "running": "running"}.get(state, "shutoff")}
    assert state_of(lab, host, vm) == "running"
    # the lab VMs ignore ACPI: without force the module fails and says what to do; the VM keeps running
    result = run_once(playbook, tmp_path, vm=vm, uri=uri, states=["shutdown"], shutdown_timeout=1)[0]
    assert result.get("failed"), result
    assert "did not shut down within shutdown_timeout=1s" in result["msg"] and "force: true" in result["msg"]
    assert state_of(lab, host, vm) == "running"
    assert lab.running_on(vm) == [host]
    lab.assert_each_vm_once()
