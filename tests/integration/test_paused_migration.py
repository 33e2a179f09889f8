# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Paused VMs moved again and again on the real lab (issue 9, part 1).

Under libvirt 9.0, QEMU 7.2 leaves the disks of a VM that arrived paused inactive until it runs;
migrating or saving it again then aborts QEMU and the VM is lost (shut off, reason crashed).
vm_migrate resumes and re-pauses a user-paused VM on the source before the move and on the
destination after it; vm_state does the same before a save. These tests fail with that removed.

"Same VM, same memory": the BIOS tick counter (BDA 0x46C, ticks since midnight, ~18.2/s) is read
from guest memory before and after. A paused guest does not count; a VM that was lost and booted
again would count from the time of day, hundreds of ticks further.
"""

from __future__ import annotations

import json
import struct
import subprocess
import time

from conftest import libvirt

TICKS_PER_DAY = 0x1800B0
MIGRATE_FLAGS = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
                 | libvirt.VIR_MIGRATE_UNSAFE)
VM = "vm2"


def bios_ticks(lab, host: str, vm: str) -> int:
    conn = lab.connect(host)
    try:
        return struct.unpack("<I", conn.lookupByName(vm).memoryPeek(0x46C, 4, libvirt.VIR_MEMORY_PHYSICAL))[0]
    finally:
        conn.close()


def state_of(lab, host: str, vm: str) -> tuple[int, int]:
    conn = lab.connect(host)
    try:
        return tuple(conn.lookupByName(vm).state())
    finally:
        conn.close()


def pause_booted(lab, vm: str) -> tuple[str, int]:
    """Pause ``vm`` where it runs once its BIOS counts ticks; (host, ticks at the pause)."""
    (host,) = lab.running_on(vm)
    deadline = time.monotonic() + 30
    while bios_ticks(lab, host, vm) == 0 and time.monotonic() < deadline:  # just (re)created by lab reset: SeaBIOS not there yet
        time.sleep(0.1)
    conn = lab.connect(host)
    try:
        conn.lookupByName(vm).suspend()
    finally:
        conn.close()
    return host, bios_ticks(lab, host, vm)


def assert_same_paused_vm(lab, vm: str, host: str, ticks_before: int) -> None:
    assert lab.running_on(vm) == [host], lab.placement().get(vm)
    assert lab.placement()[vm] == [(host, "paused")], lab.placement().get(vm)
    assert state_of(lab, host, vm) == (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_USER)
    ran = (bios_ticks(lab, host, vm) - ticks_before) % TICKS_PER_DAY
    assert ran <= 10, "the guest's tick counter moved by %d: not the same paused VM (lost and booted again?)" % ran
    lab.assert_each_vm_once()


def resume(lab, vm: str) -> None:
    for host in lab.running_on(vm):
        conn = lab.connect(host)
        try:
            dom = conn.lookupByName(vm)
            if dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED:
                dom.resume()
        finally:
            conn.close()


def migrate(lab, playbook, tmp_path, vm: str, source: str, destination: str, check: bool = False) -> dict:
    result_file = tmp_path / "migrate.json"
    if result_file.exists():
        result_file.unlink()
    proc = playbook("modules_migrate.yml", check=check, extra_vars=dict(
        vm=vm, source=lab.uri(source), destination=lab.uri(destination), result_file=str(result_file)))
    assert proc.returncode == 0, proc.stdout
    return json.loads(result_file.read_text())


def migrate_by_hand(lab, vm: str, source: str, destination: str) -> None:
    """What another tool (virsh migrate --live --persistent --undefinesource --unsafe) does: no re-activation."""
    src, dst = lab.connect(source), lab.connect(destination)
    try:
        src.lookupByName(vm).migrate3(dst, {}, MIGRATE_FLAGS)
    finally:
        src.close()
        dst.close()


def test_a_paused_vm_moved_three_times_stays_paused_and_whole(lab_reset, playbook, tmp_path):
    lab = lab_reset
    home, ticks = pause_booted(lab, VM)
    others = [h for h in sorted(lab.hosts) if h != home]
    route = [home, *others, home]
    try:
        predicted = migrate(lab, playbook, tmp_path, VM, home, others[0], check=True)
        assert predicted["changed"] and predicted["migration"]["paused"] is True, predicted
        assert predicted["reactivated_disks"] is False and "reactivation_ms" not in predicted
        assert_same_paused_vm(lab, VM, home, ticks)
        for source, destination in zip(route, route[1:]):
            result = migrate(lab, playbook, tmp_path, VM, source, destination)
            assert not result.get("failed"), result
            assert result["changed"] and result["location"] == "destination", result
            assert result["migration"]["paused"] is True and result["reactivated_disks"] is True, result
            assert set(result["reactivation_ms"]) == {"source", "destination"}, result
            assert_same_paused_vm(lab, VM, destination, ticks)
            again = migrate(lab, playbook, tmp_path, VM, source, destination)
            assert not again.get("failed") and again["changed"] is False, again
    finally:
        resume(lab, VM)
    assert lab.running_on(VM) == [home]


def test_a_vm_moved_paused_by_another_tool_survives_its_next_moves(lab_reset, playbook, tmp_path):
    """vm_migrate leaves the disks active for the next tool (destination side), and re-activates the
    disks of a VM that another tool moved paused before moving it (source side)."""
    lab = lab_reset
    home, ticks = pause_booted(lab, VM)
    hv_a, hv_b = [h for h in sorted(lab.hosts) if h != home]
    try:
        first = migrate(lab, playbook, tmp_path, VM, home, hv_a)
        assert not first.get("failed") and first["reactivated_disks"] is True, first
        migrate_by_hand(lab, VM, hv_a, hv_b)  # the VM dies here if vm_migrate left its disks inactive on hv_a
        assert_same_paused_vm(lab, VM, hv_b, ticks)
        back = migrate(lab, playbook, tmp_path, VM, hv_b, home)  # and here if vm_migrate moved it as it arrived
        assert not back.get("failed") and back["reactivated_disks"] is True, back
        assert_same_paused_vm(lab, VM, home, ticks)
    finally:
        resume(lab, VM)
    assert lab.running_on(VM) == [home]


def test_saving_a_vm_that_arrived_paused(lab_reset, playbook, tmp_path):
    """vm_state saved (a plan's suspend) of a VM another tool moved paused: libvirt's managed save
    aborts QEMU unless its disks are re-activated first."""
    lab = lab_reset
    home, _ticks = pause_booted(lab, VM)
    target = next(h for h in sorted(lab.hosts) if h != home)
    migrate_by_hand(lab, VM, home, target)
    state_file = tmp_path / "state.json"
    proc = playbook("modules_state_once.yml",
                    extra_vars=dict(vm=VM, uri=lab.uri(target), states=["saved", "running"], result_file=str(state_file)))
    assert proc.returncode == 0, proc.stdout
    saved, running = json.loads(state_file.read_text())
    assert not saved.get("failed"), saved
    assert saved["state"] == "saved" and saved["reactivated_disks"] is True, saved
    assert not running.get("failed") and running["state"] == "running", running
    assert lab.running_on(VM) == [target]
    lab.assert_each_vm_once()


def test_apply_a_plan_that_moves_a_paused_vm_twice(lab_reset, playbook, tmp_path):
    lab = lab_reset
    hops = 2
    home, ticks = pause_booted(lab, VM)
    route = [home] + [h for h in sorted(lab.hosts) if h != home][:hops]
    placement = lab.placement()
    initial = {vm: {"host": where[0][0], "state": where[0][1]} for vm, where in placement.items()}
    assert initial[VM] == {"host": home, "state": "paused"}
    target = {vm: w["host"] for vm, w in initial.items()}
    target[VM] = route[-1]
    plan = {"version": 1, "objective": "consolidate", "status": "feasible", "initial": initial, "target": target,
            "steps": [[{"action": "migrate", "vm": VM, "from": a, "to": b, "memory_mib": 64}] for a, b in zip(route, route[1:])],
            "stats": {"migrations": hops}}
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(plan))
    try:
        result = playbook("entropy.cluster.apply", inventory=lab.static_inventory,
                          extra_vars={"entropy_plan_file": str(plan_file), "entropy_lock_file": str(tmp_path / "lock"),
                                      "entropy_migrate_unsafe": True,
                                      "entropy_hypervisor_uris": {h: lab.uri(h) for h in lab.hosts}})
        assert result.returncode == 0, result.stdout[-4000:]
        assert_same_paused_vm(lab, VM, route[-1], ticks)
    finally:
        resume(lab, VM)


def test_a_vm_paused_by_an_io_error_is_never_resumed_nor_moved(lab_reset, playbook, tmp_path):
    """A real I/O error: the VM's only disk is served by qemu-nbd on a unix socket; the VM starts
    paused, qemu-nbd is killed, and on resume the BIOS's first disk read fails: QEMU stops the VM
    (rerror_policy=stop), libvirt says paused, reason ioerror. vm_migrate must refuse it and leave it
    paused on its host (moving it would need a resume, which must never happen to such a VM)."""
    lab = lab_reset
    source, target = sorted(lab.hosts)[:2]
    name = "ioerror-vm"
    image = tmp_path / "disk.raw"
    image.write_bytes(bytes(1024 * 1024))
    sock = tmp_path / "nbd.sock"
    nbd = subprocess.Popen(["qemu-nbd", "-k", str(sock), "-f", "raw", "-t", str(image)],  # pylint: disable=consider-using-with
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    conn = lab.connect(source)
    try:
        deadline = time.monotonic() + 30
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        dom = conn.defineXML(IOERROR_VM_XML % (name, sock))
        dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
        nbd.kill()
        nbd.wait()
        dom.resume()
        deadline = time.monotonic() + 30
        while dom.state()[0] != libvirt.VIR_DOMAIN_PAUSED and time.monotonic() < deadline:
            time.sleep(0.1)
        assert dom.state() == [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR]

        for check in (True, False):
            result = migrate(lab, playbook, tmp_path, name, source, target, check=check)
            assert result["failed"] and result["error_kind"] == "paused_reason", result
            assert "paused on %s after a disk I/O error (pause reason: ioerror)" % lab.uri(source) in result["msg"], result["msg"]
            assert "never resumes" in result["msg"] and "Fix the storage error" in result["msg"]
            assert result["changed"] is False and result["location"] == "source" and result["reactivated_disks"] is False
            assert dom.state() == [libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PAUSED_IOERROR], "never resumed"
            assert lab.running_on(name) == [source]
    finally:
        if nbd.poll() is None:
            nbd.kill()
            nbd.wait()
        conn.close()
        lab.remove_vm(name)
    lab.assert_each_vm_once()


IOERROR_VM_XML = """<domain type='qemu'><name>%s</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><tcg><tb-cache unit='MiB'>16</tb-cache></tcg></features>
  <devices>
    <disk type='network' device='disk'>
      <driver name='qemu' type='raw' error_policy='stop' rerror_policy='stop'/>
      <source protocol='nbd'><host transport='unix' socket='%s'/></source>
      <target dev='hda' bus='ide'/>
    </disk>
  </devices>
</domain>"""
