# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moves between clusters that share no storage, on the lab. The two clusters are hv1 (cluster a) and hv2 (cluster b),
each with storage only it sees (its own /var/lib/libvirt, a private bind mount of tools/lab.py): the lab has no
directory shared by a subset of its hosts, so two clusters of two hosts each with its own shared directory cannot be
built on it. A test VM on hv1 has its disk in cluster a's directory.

1. vm_migrate with copy_storage all, disk_dir and remove_source_disks, aborted (1 s at 1 MiB/s): the VM stays on hv1
   with its disk.
2. The repair playbook on an inventory of the two clusters, hv1 declared with 200 MiB (its three 64 MiB VMs fill it
   above the grid level's 90 %), the lab's own VMs pinned (a root constraint): the plan moves the test VM to cluster b,
   and apply_plan migrates it with its disk copied into cluster b's directory (entropy_cluster_disk_dirs), the old
   disk removed. While the disk is copied, every socket QEMU listens on in the lab's network namespace (the incoming
   migration and the disk-copy NBD server) is recorded: each must be bound to hv2's loopback address, never a wildcard."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time

from conftest import LAB_TOOL

SOURCE_DIR = "/var/lib/libvirt/entropy-cluster-a"        # seen by hv1 only
DEST_DIR = "/var/lib/libvirt/entropy-cluster-b"          # seen by hv2 only
VM = "xcluster"


class Listeners(threading.Thread):
    """The TCP sockets qemu-system listens on in the lab's network namespace, polled until stopped."""

    def __init__(self, netns: str) -> None:
        super().__init__(daemon=True)
        self.netns, self.seen, self.done = netns, set(), threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            out = subprocess.run(["ip", "netns", "exec", self.netns, "ss", "-ltnpH"], capture_output=True, text=True, check=False).stdout
            self.seen |= {line.split()[3] for line in out.splitlines() if "qemu-system" in line}
            self.done.wait(0.05)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.done.set()
        self.join()


ABORT = """
- name: Abort a move between clusters, then look at the old disk
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Aborted after 1 s at 1 MiB/s
      entropy.cluster.vm_migrate:
        {name: "{{ vm }}", uri: "{{ source }}", destination_uri: "{{ destination }}", copy_storage: all, disk_dir: "{{ disk_dir }}",
         remove_source_disks: true, timeout: 1, bandwidth_mib_s: 1}
      register: aborted
      ignore_errors: true
    - name: The old disk after the abort
      ansible.builtin.stat: {path: "{{ old_disk }}"}
      register: old_after_abort
    - name: Save the results
      ansible.builtin.copy:
        content: "{{ {'aborted': aborted, 'old_after_abort': old_after_abort.stat.exists} | to_nice_json }}"
        dest: "{{ result_file }}"
        mode: "0644"
"""


def _grid_inventory(lab, tmp_path) -> str:
    """The lab's inventory as two clusters, a = hv1 (declared 200 MiB), b = hv2, with the lab's group_vars."""
    import shutil  # pylint: disable=import-outside-toplevel

    import yaml  # pylint: disable=import-outside-toplevel

    inv = tmp_path / "inventory"
    shutil.copytree(os.path.join(lab.dir, "group_vars"), inv / "group_vars")
    with open(lab.inventory, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    by_name = {h["name"]: h for h in data.pop("hypervisors")}
    by_name["hv1"]["memory_mib"] = 200
    data["clusters"] = [{"name": "a", "hypervisors": [by_name["hv1"]]}, {"name": "b", "hypervisors": [by_name["hv2"]]}]
    data.pop("save_dir", None)
    path = inv / "grid.libvirt_cluster.yml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_a_move_to_storage_the_source_does_not_see_copies_the_disk_then_removes_the_old_one(lab_reset, playbook, tmp_path):
    lab = lab_reset
    os.makedirs(lab.host_path("hv1", SOURCE_DIR), exist_ok=True)
    os.makedirs(lab.host_path("hv2", DEST_DIR), exist_ok=True)
    old = os.path.join(SOURCE_DIR, VM + ".qcow2")
    new = os.path.join(DEST_DIR, VM + ".qcow2")
    lab.add_vm(VM, "hv1", LAB_TOOL.boot_sector(0.0), disk=old)
    try:
        book = tmp_path / "abort.yml"
        book.write_text(ABORT)
        result_file = tmp_path / "results.json"
        started = time.monotonic()
        proc = playbook(str(book), extra_vars=dict(vm=VM, source=lab.uri("hv1"), destination=lab.uri("hv2"), disk_dir=DEST_DIR,
                                                   old_disk=lab.host_path("hv1", old), result_file=str(result_file)))
        print("abort %.1f s" % (time.monotonic() - started))
        assert proc.returncode == 0, proc.stdout[-4000:]
        results = json.loads(result_file.read_text())
        aborted = results["aborted"]
        # the aborted copy: the VM stayed on hv1 with its disk, nothing removed
        assert aborted["failed"] and aborted["timed_out"] and aborted["location"] == "source", aborted
        assert "removed_source_disks" not in aborted and results["old_after_abort"], aborted
        assert lab.running_on(VM) == ["hv1"]

        started = time.monotonic()
        with Listeners(lab.state["network"]["netns"]) as listeners:
            proc = playbook("entropy.cluster.repair", inventory=_grid_inventory(lab, tmp_path), extra_vars={
                "entropy_constraints": [{"type": "root", "vms": ["vm1", "vm2"]}],
                "entropy_cluster_disk_dirs": {"a": SOURCE_DIR, "b": DEST_DIR}})
        print("repair %.1f s" % (time.monotonic() - started))
        assert proc.returncode == 0, proc.stdout[-4000:]
        assert "clusters            2, 1 migrations between them" in proc.stdout, proc.stdout[-4000:]
        assert "migrate %s: hv1 -> hv2" % VM in proc.stdout, proc.stdout[-4000:]
        assert lab.placement()[VM] == [("hv2", "running")]
        assert lab.placement()["vm1"] == [("hv1", "running")] and lab.placement()["vm2"] == [("hv1", "running")]
        conn = lab.connect("hv2")
        try:
            assert "file='%s'" % new in conn.lookupByName(VM).XMLDesc(0)
        finally:
            conn.close()
        assert os.path.getsize(lab.host_path("hv2", new)) > 0
        assert not os.path.exists(lab.host_path("hv1", old)), "the old disk was not removed"
        # the incoming migration and the NBD disk-copy server: on hv2's loopback address only
        address = lab.hosts["hv2"]["address"]
        assert listeners.seen, "no QEMU listener seen during the migration"
        assert all(seen.rsplit(":", 1)[0] == address for seen in listeners.seen), listeners.seen
        assert len(listeners.seen) >= 2, listeners.seen   # migration stream and disk copy
    finally:
        lab.remove_vm(VM)
        for host, path in (("hv1", old), ("hv2", new)):
            if os.path.exists(lab.host_path(host, path)):
                os.remove(lab.host_path(host, path))
