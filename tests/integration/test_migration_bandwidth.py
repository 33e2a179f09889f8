# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The bandwidth the plan allots each migration reaches libvirt: two VMs leave one host in one step, the planner
splits the host's migration link between them, entropy.cluster.apply passes each share to vm_migrate, and libvirt
both reports it (the domain's migration max speed while the job runs) and holds to it (its job's elapsed time is at
least what it sent over the share). No role-level bandwidth limit is set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import libvirt

from conftest import LAB_TOOL

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, ".tmp", "collections"))

# pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.plugin_utils.placement.solver import plan_for_target  # noqa: E402

LINK_MIB_S = 8      # the source's migration link: two migrations get 4 MiB/s each
VMS = ("bw-a", "bw-b")


def _initial(lab) -> dict:
    placement = lab.placement()
    for vm, where in placement.items():
        assert len(where) == 1, "the lab is not clean: %s on %s" % (vm, where)
    return {vm: {"host": where[0][0], "state": {"shutoff": "stopped"}.get(where[0][1], where[0][1])} for vm, where in placement.items()}


class SpeedWatcher(threading.Thread):
    """Reads each VM's migration max speed on the source while its migration job sends memory (before and after that
    phase libvirt shows QEMU's unlimited default: the job's parameters are set once it starts and reset at its end)."""

    def __init__(self, uri: str):
        super().__init__(daemon=True)
        self.uri, self.stop, self.seen = uri, threading.Event(), {}

    def run(self):
        conn = libvirt.open(self.uri)
        try:
            while not self.stop.is_set():
                for vm in VMS:
                    try:
                        dom = conn.lookupByName(vm)
                        job = dom.jobStats(0)
                        if job.get("memory_processed", 0) > 0 and job.get("memory_remaining", 0) > 0:
                            speed = dom.migrateGetMaxSpeed(0)
                            if dom.jobStats(0).get("memory_remaining", 0) > 0:   # still sending when read
                                self.seen.setdefault(vm, set()).add(speed)
                    except libvirt.libvirtError:
                        pass   # not there (yet, or any more)
                time.sleep(0.2)
        finally:
            conn.close()


def test_the_bandwidth_the_plan_allots_reaches_libvirt(lab, playbook, tmp_path):
    source, destination = sorted(lab.hosts)[:2]
    for vm in VMS:
        # the whole 64 MiB in use, no dirtying: a migration sends ~62 MiB, seconds at 4 MiB/s
        lab.add_vm(vm, source, LAB_TOOL.rate_dirtier_boot_sector(0))
    try:
        time.sleep(3)   # the guests have written their memory
        initial = _initial(lab)
        model = {"version": 2,
                 "hosts": [{"name": h, "cpu": 64, "memory_mib": 65536} for h in sorted(lab.hosts)],
                 "vms": [{"name": vm, "host": where["host"], "cpu": 0.1, "memory_mib": LAB_TOOL.VM_MEMORY_MIB,
                          "state": where["state"], "dirty_mib_s": 0} for vm, where in sorted(initial.items())],
                 "options": {"bandwidth_mib_s": LINK_MIB_S}}
        target = {vm: where["host"] for vm, where in initial.items()}
        target.update({vm: destination for vm in VMS})
        plan = plan_for_target(model, target)
        (step,) = plan["steps"]
        assert sorted((a["vm"], a["bandwidth_mib_s"]) for a in step) == [(vm, LINK_MIB_S // 2) for vm in VMS]
        plan["initial"] = initial
        plan_file = tmp_path / "plan.json"
        plan_file.write_text(json.dumps(plan))
        watcher = SpeedWatcher(lab.hosts[source]["uri"])
        watcher.start()
        try:
            proc = playbook("entropy.cluster.apply", inventory=lab.static_inventory,
                            extra_vars={"entropy_plan_file": str(plan_file), "entropy_lock_file": str(tmp_path / "lock"),
                                        "entropy_migrate_unsafe": True})
        finally:
            watcher.stop.set()
            watcher.join()
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert watcher.seen == {vm: {LINK_MIB_S // 2} for vm in VMS}, watcher.seen
        conn = lab.connect(destination)
        try:
            for vm in VMS:
                stats = conn.lookupByName(vm).jobStats(libvirt.VIR_DOMAIN_JOB_STATS_COMPLETED)
                sent_mib = stats["memory_processed"] / 1048576
                assert sent_mib > 48, stats   # the guest's memory really was sent
                # libvirt held the migration to its share: it cannot have sent faster than 4 MiB/s (+10 % for QEMU's
                # rate-limit windows)
                assert stats["time_elapsed"] / 1000 >= sent_mib / (LINK_MIB_S // 2) / 1.1, stats
        finally:
            conn.close()
    finally:
        for vm in VMS:
            lab.remove_vm(vm)


def test_migration_fit_prints_its_table(lab, tmp_path):
    """tools/migration_fit.py (README, docs/migration-durations.md) in a short run: it migrates its own VMs with the
    planner's allotment, fits, prints the scored table, and leaves no VM of its own behind."""
    out = tmp_path / "fit.json"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "migration_fit.py"), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=600, check=False, env=dict(os.environ, ENTROPY_LAB_DIR=lab.dir))
    assert proc.returncode in (0, 1), proc.stderr[-3000:]   # 1: the targets were not met in so few migrations
    assert "| # | dirty MiB/s | allotted MiB/s | plan estimate s | libvirt elapsed s |" in proc.stdout, proc.stdout
    rows = json.loads(out.read_text())["rows"]
    assert len(rows) == 4 and {r["bandwidth_mib_s"] for r in rows} == {24}
    assert all(r["elapsed_s"] > 0 and r["transferred_mib"] > 48 for r in rows), rows
    assert not any(vm.startswith("migfit-") for vm in lab.placement())
