# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster-wide context switch end to end on the lab (issue 13): the schedule playbook with a save directory
on shared storage. Priorities kept with the VMs (entropy.cluster.vm_priority) decide which VMs run when there is
less room than they need; the others are saved to the shared directory (entropy.cluster.vm_image, planned by the
objective schedule, carried out by apply_plan); when room comes back they resume, one of them on another host than
the one that saved it, with its memory state (the guest's 32-bit tick counter goes on, it did not boot again). A poller
(conftest.OneCopyWatch) reads every host's domain list during each run: no VM ever runs on two hosts, or on none
while it has no saved image."""

from __future__ import annotations

import os
import time

from conftest import OneCopyWatch
from test_schedule_playbook import ONE_VM_PER_HOST, recap
from test_vm_image import counter, definition, run, saves

HIGH = 10
TICK_HZ = 18.2065   # the PIT rate the lab guest counts at (1193182 / 65536)
MIN_TICKS = 400     # counted before the test starts, so that a resumed guest is far ahead of one that booted


def defined_on(lab, vm) -> list[str]:
    return [host for host in sorted(lab.hosts) if definition(lab, host, vm) is not None]


def qemu_age_s(lab, host, vm) -> float:
    """How long the QEMU process of ``vm`` on ``host`` has lived (its pidfile in the host's own run directory)."""
    with open(os.path.join(lab.hosts[host]["dir"], "run", "libvirt", "qemu", vm + ".pid"), encoding="utf-8") as handle:
        pid = int(handle.read().strip())
    with open("/proc/%d/stat" % pid, encoding="utf-8") as handle:
        stat = handle.read()
    started = int(stat[stat.rfind(")") + 2:].split()[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime", encoding="utf-8") as handle:
        return float(handle.read().split()[0]) - started


def booted_in_this_process(lab, host, vm) -> bool:
    """A guest that booted in its QEMU process counts at most TICK_HZ a second of that process's life; a guest
    restored from an image goes on from the count it was saved with, ahead of that by what it counted before."""
    age = qemu_age_s(lab, host, vm)
    return counter(lab, host, vm) <= TICK_HZ * age + 1


def test_schedule_saves_low_priorities_to_shared_storage_and_resumes_them_on_any_host(lab_reset, playbook, tmp_path):
    lab = lab_reset
    vms = sorted(lab.vms)
    high = vms[:3]
    save_dir = saves(lab)
    base = {"entropy_lock_file": str(tmp_path / "lock"), "entropy_save_dir": save_dir}
    set_priority = [{"module": "vm_priority", "name": vm, "host": lab.running_on(vm)[0], "priority": HIGH} for vm in high]
    try:
        results = run(playbook, lab, tmp_path, set_priority)
        assert all(r.get("priority") == HIGH for r in results), results
        deadline = time.monotonic() + 60
        while min(counter(lab, lab.running_on(vm)[0], vm) for vm in vms) < MIN_TICKS and time.monotonic() < deadline:
            time.sleep(2)
        ticks = {vm: counter(lab, lab.running_on(vm)[0], vm) for vm in vms}
        assert min(ticks.values()) >= MIN_TICKS, ticks

        # Less room than the VMs need: one lab VM per host. The three priority-10 VMs run, the others are saved.
        with OneCopyWatch(lab, vms, save_dir) as watch:
            tight = playbook("entropy.cluster.schedule", inventory=lab.inventory,
                             extra_vars=dict(base, entropy_constraints=ONE_VM_PER_HOST))
        watch.check()   # every VM ran on at most one host at every step, and on none only while saved
        assert tight.returncode == 0, tight.stdout[-5000:]
        low = sorted(set(vms) - set(high))
        assert sorted(lab.stopped_vms()) == low, lab.placement()
        lab.assert_each_vm_once(stopped=tuple(low))
        assert sorted(h for vm in high for h in lab.running_on(vm)) == sorted(lab.hosts)
        for vm in low:
            assert os.path.exists(os.path.join(save_dir, vm + ".save")), os.listdir(save_dir)
        saver = {vm: defined_on(lab, vm) for vm in low}
        assert all(len(hosts) == 1 for hosts in saver.values()), saver

        # A rerun finds the cluster where the schedule wants it.
        with OneCopyWatch(lab, vms, save_dir) as watch:
            again = playbook("entropy.cluster.schedule", inventory=lab.inventory,
                             extra_vars=dict(base, entropy_constraints=ONE_VM_PER_HOST))
        watch.check()
        assert again.returncode == 0 and recap(again.stdout) == (0, 0), again.stdout[-5000:]

        # Room again; one saved VM may not go back to the host that saved it: it resumes elsewhere.
        mover = low[0]
        with OneCopyWatch(lab, vms, save_dir) as watch:
            room = playbook("entropy.cluster.schedule", inventory=lab.inventory,
                            extra_vars=dict(base, entropy_constraints=[{"type": "ban", "vms": [mover], "hosts": saver[mover]}]))
        watch.check()
        assert room.returncode == 0, room.stdout[-5000:]
        lab.assert_each_vm_once()
        where = lab.running_on(mover)
        assert where and where != saver[mover], (mover, saver[mover], lab.placement())
        for vm in low:
            host = lab.running_on(vm)[0]
            assert defined_on(lab, vm) == [host], (vm, defined_on(lab, vm))
            # the guest kept its memory: its tick counter went on from where it was (a boot starts it at zero)
            assert counter(lab, host, vm) >= ticks[vm], (vm, ticks[vm])
            assert not booted_in_this_process(lab, host, vm), (vm, counter(lab, host, vm), qemu_age_s(lab, host, vm))
            assert not os.path.exists(os.path.join(save_dir, vm + ".save"))
    finally:
        run(playbook, lab, tmp_path, [{"module": "vm_priority", "name": vm, "host": (lab.running_on(vm) or defined_on(lab, vm))[0],
                                       "priority": None} for vm in high])
