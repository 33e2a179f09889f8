# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A move between clusters that share no storage, on the lab: vm_migrate with copy_storage all, disk_dir and
remove_source_disks. The two "clusters" are hv1 and hv2 with storage only each of them sees (its own
/var/lib/libvirt, a private bind mount of tools/lab.py). While the disk is copied, every socket QEMU listens on in the
lab's network namespace (the incoming migration and the disk-copy NBD server) is recorded: each must be bound to the
destination's loopback address, never to a wildcard. An aborted copy keeps the old disk; a finished one removes it."""

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


PLAYBOOK = """
- name: Abort a move between clusters, look at the old disk, then move
  hosts: localhost
  gather_facts: false
  module_defaults:
    entropy.cluster.vm_migrate: {name: "{{ vm }}", uri: "{{ source }}", destination_uri: "{{ destination }}",
                                 copy_storage: all, disk_dir: "{{ disk_dir }}", remove_source_disks: true}
  tasks:
    - name: Aborted after 1 s at 1 MiB/s
      entropy.cluster.vm_migrate: {timeout: 1, bandwidth_mib_s: 1}
      register: aborted
      ignore_errors: true
    - name: The old disk after the abort
      ansible.builtin.stat: {path: "{{ old_disk }}"}
      register: old_after_abort
    - name: The move
      entropy.cluster.vm_migrate: {}
      register: moved
    - name: Save the results
      ansible.builtin.copy:
        content: "{{ {'aborted': aborted, 'old_after_abort': old_after_abort.stat.exists, 'moved': moved} | to_nice_json }}"
        dest: "{{ result_file }}"
        mode: "0644"
"""


def test_a_move_to_storage_the_source_does_not_see_copies_the_disk_then_removes_the_old_one(lab, playbook, tmp_path):
    os.makedirs(lab.host_path("hv1", SOURCE_DIR), exist_ok=True)
    os.makedirs(lab.host_path("hv2", DEST_DIR), exist_ok=True)
    old = os.path.join(SOURCE_DIR, VM + ".qcow2")
    new = os.path.join(DEST_DIR, VM + ".qcow2")
    lab.add_vm(VM, "hv1", LAB_TOOL.boot_sector(0.0), disk=old)
    try:
        book = tmp_path / "between_clusters.yml"
        book.write_text(PLAYBOOK)
        result_file = tmp_path / "results.json"
        started = time.monotonic()
        with Listeners(lab.state["network"]["netns"]) as listeners:
            proc = playbook(str(book), extra_vars=dict(vm=VM, source=lab.uri("hv1"), destination=lab.uri("hv2"), disk_dir=DEST_DIR,
                                                       old_disk=lab.host_path("hv1", old), result_file=str(result_file)))
        print("abort + move %.1f s" % (time.monotonic() - started))
        assert proc.returncode == 0, proc.stdout[-4000:]
        results = json.loads(result_file.read_text())
        aborted, moved = results["aborted"], results["moved"]
        # the aborted copy: the VM stayed on hv1 with its disk, nothing removed
        assert aborted["failed"] and aborted["timed_out"] and aborted["location"] == "source", aborted
        assert "removed_source_disks" not in aborted and results["old_after_abort"], aborted
        assert not moved.get("failed") and moved["changed"] and moved["location"] == "destination", moved
        assert moved["disks"] == [{"source": old, "destination": new}], moved
        assert "NON_SHARED_DISK" in moved["migration"]["flags"] and "UNSAFE" not in moved["migration"]["flags"]
        assert lab.placement()[VM] == [("hv2", "running")]
        conn = lab.connect("hv2")
        try:
            assert "file='%s'" % new in conn.lookupByName(VM).XMLDesc(0)
        finally:
            conn.close()
        assert os.path.getsize(lab.host_path("hv2", new)) > 0
        assert moved["removed_source_disks"] == [old] and not os.path.exists(lab.host_path("hv1", old)), moved
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
