# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Plan -> review -> apply on the real lab: consolidate, rerun, check mode, evacuate, stale plans,
a tenant name made of template code, and a hypervisor lost in the middle of a plan."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

from ansible.parsing.yaml.loader import AnsibleLoader

from conftest import lab_cmd
# slow_vm is a fixture: imported so that pytest finds it here too.
from test_apply_faults import (  # noqa: F401 pylint: disable=unused-import
    SLOW_VM,
    FaultWhenMigrating,
    apply,
    daemon_pid,
    failure_report,
    lab_initial,
    slow_vm,
    write_plan,
)

INJECTION = "{{ lookup('pipe','id') }}"


def recap_changed(output: str) -> int:
    match = re.search(r"localhost\s+: ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=(\d+)", output)
    assert match, output[-3000:]
    assert match.group(2) == "0", output[-3000:]
    return int(match.group(1))


def used_hosts(lab) -> set[str]:
    return {h for where in lab.placement().values() for h, s in where if s in ("running", "paused")}


def test_consolidate_frees_hosts_and_a_rerun_changes_nothing(lab_reset, playbook, tmp_path):
    lab = lab_reset
    before = used_hosts(lab)
    assert before == set(lab.hosts)
    result = playbook("entropy.cluster.consolidate", inventory=lab.inventory, extra_vars={"entropy_lock_file": str(tmp_path / "lock")})
    assert result.returncode == 0, result.stdout[-4000:]
    assert recap_changed(result.stdout) > 0
    assert "the cluster is at the plan's target" in result.stdout
    lab.assert_each_vm_once()
    after = used_hosts(lab)
    total = sum(v["memory_mib"] for v in lab.vms.values())
    capacity = next(iter(lab.hosts.values()))["memory_mib"]
    assert len(after) == -(-total // capacity), "consolidation must reach the lower bound here: %s" % after
    assert all(state == "running" for where in lab.placement().values() for _h, state in where)

    again = playbook("entropy.cluster.consolidate", inventory=lab.inventory, extra_vars={"entropy_lock_file": str(tmp_path / "lock")})
    assert again.returncode == 0, again.stdout[-4000:]
    assert recap_changed(again.stdout) == 0
    assert "nothing to do" in again.stdout
    assert used_hosts(lab) == after

    # Rebalancing evens the load but keeps the number of hosts used.
    balanced = playbook("entropy.cluster.rebalance", inventory=lab.inventory, extra_vars={"entropy_lock_file": str(tmp_path / "lock")})
    assert balanced.returncode == 0, balanced.stdout[-4000:]
    assert len(used_hosts(lab)) == len(after)
    lab.assert_each_vm_once()


def test_check_mode_moves_nothing(lab_reset, playbook, tmp_path):
    lab = lab_reset
    before = lab.placement()
    result = playbook("entropy.cluster.consolidate", inventory=lab.inventory, check=True,
                      extra_vars={"entropy_lock_file": str(tmp_path / "lock")})
    assert result.returncode == 0, result.stdout[-4000:]
    assert "migrate vm" in result.stdout, "check mode shows the plan"
    assert "would run" in result.stdout
    assert lab.placement() == before
    assert not lab.held_locks(tmp_path / "lock")


def test_evacuate_empties_the_named_host(lab_reset, playbook, tmp_path):
    lab = lab_reset
    victim = sorted(lab.hosts)[-1]
    result = playbook("entropy.cluster.evacuate", inventory=lab.inventory,
                      extra_vars={"entropy_evacuate_hosts": [victim], "entropy_lock_file": str(tmp_path / "lock")})
    assert result.returncode == 0, result.stdout[-4000:]
    lab.assert_each_vm_once()
    placement = lab.placement()
    assert not [vm for vm, where in placement.items() if any(h == victim for h, _s in where)]
    assert set(placement) == set(lab.vms)


def test_evacuate_without_hosts_says_what_to_pass(lab, playbook):
    result = playbook("entropy.cluster.evacuate", inventory=lab.inventory)
    assert result.returncode != 0
    assert "name the hypervisors to empty" in result.stdout


def _define_diskless(lab, host: str, name: str):
    xml = ("<domain type='qemu'><name>%s</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
           "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
           "<features><tcg><tb-cache unit='MiB'>16</tb-cache></tcg></features><devices/></domain>")
    conn = lab.connect(host)
    try:
        escaped = name.replace("&", "&amp;").replace("<", "&lt;").replace("'", "&apos;")
        dom = conn.defineXML(xml % escaped)
        dom.create()
        return dom.name()
    finally:
        conn.close()


def test_template_code_in_a_vm_name_stays_a_literal_name(lab_reset, playbook, tmp_path):
    lab = lab_reset
    first = sorted(lab.hosts)[0]
    assert _define_diskless(lab, first, INJECTION) == INJECTION
    try:
        plan_file = tmp_path / "plan.json"
        # Evacuating its host makes the plan migrate it: its name then reaches the modules' arguments,
        # where a templated name would run the lookup (not only plan keys, which Ansible never templates).
        result = playbook("entropy.cluster.plan", inventory=lab.inventory,
                          extra_vars={"entropy_plan_file": str(plan_file), "entropy_objective": "repair", "entropy_evacuate_hosts": [first]})
        assert result.returncode == 0, result.stdout[-4000:]
        plan = json.loads(plan_file.read_text())
        assert plan["initial"][INJECTION]["host"] == first
        assert plan["target"][INJECTION] != first
        assert any(action["vm"] == INJECTION for step in plan["steps"] for action in step)
        rendered = (tmp_path / "plan.yml").read_text()
        loader = AnsibleLoader(rendered)
        play = loader.get_single_data()[0]
        assert play["vars"]["entropy_plan"]["initial"][INJECTION] == {"host": first, "state": "running"}

        uid_line = subprocess.run(["id"], capture_output=True, text=True, check=True).stdout.strip()
        applied = playbook(str(tmp_path / "plan.yml"), inventory=lab.inventory, extra_vars={"entropy_lock_file": str(tmp_path / "lock")})
        assert applied.returncode == 0, applied.stdout[-4000:]
        assert uid_line not in applied.stdout and uid_line not in result.stdout, "the name was templated"
        where = lab.placement()[INJECTION]
        assert [h for h, _s in where] == [plan["target"][INJECTION]]
        lab.assert_each_vm_once()
    finally:
        lab.remove_vm(INJECTION)


def test_a_stale_plan_is_refused_before_anything_moves(lab_reset, playbook, tmp_path):
    lab = lab_reset
    plan_file = tmp_path / "plan.json"
    result = playbook("entropy.cluster.plan", inventory=lab.inventory, extra_vars={"entropy_plan_file": str(plan_file)})
    assert result.returncode == 0, result.stdout[-4000:]
    plan = json.loads(plan_file.read_text())
    assert plan["steps"]
    # Someone moves a VM by hand after the plan was computed.
    vm = sorted(lab.vms)[0]
    source = lab.running_on(vm)[0]
    other = next(h for h in sorted(lab.hosts) if h != source)
    import libvirt  # pylint: disable=import-outside-toplevel

    src, dst = lab.connect(source), lab.connect(other)
    try:
        src.lookupByName(vm).migrate3(dst, {}, libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST
                                      | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_UNSAFE)
    finally:
        src.close()
        dst.close()
    before = lab.placement()
    applied = playbook("entropy.cluster.apply", inventory=lab.inventory,
                       extra_vars={"entropy_plan_file": str(plan_file), "entropy_lock_file": str(tmp_path / "lock")})
    assert applied.returncode != 0
    assert "the plan is stale" in applied.stdout
    assert "VM '%s': expected on %s, found on %s" % (vm, source, other) in applied.stdout
    assert lab.placement() == before
    assert not lab.held_locks(tmp_path / "lock"), "the lock is released after a refusal"


def test_a_hypervisor_lost_mid_plan_stops_the_run_with_a_report(slow_vm, playbook, tmp_path):
    """hv3's libvirtd dies (SIGKILL) while step 1's slow migration is in flight, never by racing a
    poller: the check after step 1 cannot read hv3, the run stops there, step 2 (into hv3) is not
    run, and the report names hv3 and the VMs it hides instead of claiming they are fine."""
    lab = slow_vm
    hv1, hv2, hv3 = sorted(lab.hosts)[:3]
    initial = lab_initial(lab)
    vm_b = sorted(vm for vm, where in initial.items() if where["host"] == hv2)[0]
    on_hv3 = sorted(vm for vm, where in initial.items() if where["host"] == hv3)
    plan_file = write_plan(tmp_path, initial, [[{"action": "migrate", "vm": SLOW_VM, "from": hv1, "to": hv2, "memory_mib": 64}],
                                               [{"action": "migrate", "vm": vm_b, "from": hv2, "to": hv3, "memory_mib": 64}]])
    victim = daemon_pid(hv3)
    killer = FaultWhenMigrating(lab, hv1, SLOW_VM, lambda: os.kill(victim, signal.SIGKILL))
    killer.start()
    result = apply(playbook, lab, tmp_path, plan_file)
    killer.join()
    assert killer.injected, killer.error
    # Bring the killed daemon back (its VMs kept running) before judging where the VMs are.
    assert lab_cmd("up").returncode == 0
    assert result.returncode != 0, result.stdout[-4000:]
    report = failure_report(result.stdout)
    assert report["failed_step"] == "1 of 2", report
    assert report["moved"] == ["%s: %s -> %s" % (SLOW_VM, hv1, hv2)], report
    assert report["not_moved"] == ["%s: still on %s" % (vm_b, hv2)], report
    assert [line for line in report["hosts_not_read"] if line.startswith(hv3 + ": ")], report
    assert report["not_checked"] == ["%s: not read on %s (last seen running on %s)" % (vm, hv3, hv3) for vm in on_hv3], report
    assert report["every_vm_on_one_host"] == "unknown" and report["lost"] == [], report
    assert report["error"][0] == "after step 1 the cluster is not as planned:", report
    assert "VM '%s': expected on %s, which could not be read" % (on_hv3[0], hv3) in report["error"], report
    assert not lab.held_locks(tmp_path / "lock"), "the lock is released after a failure"
    # Never lose a VM: vm_b still runs on its source, the slow VM on its new host, once each.
    assert lab.running_on(vm_b) == [hv2]
    assert lab.running_on(SLOW_VM) == [hv2]
    lab.assert_each_vm_once()
