# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.vm_snapshot on the real lab through ansible-playbook (internal qcow2 snapshots)."""

from __future__ import annotations


def test_snapshot_lifecycle_and_migration_after_cleanup(lab, playbook):
    vm = "vm5"
    host = lab.running_on(vm)[0]
    other = next(h for h in sorted(lab.hosts) if h != host)
    conn = lab.connect(host)
    try:
        assert conn.lookupByName(vm).snapshotNum(0) == 0, "vm5 must start without snapshots (lab.py reset)"
    finally:
        conn.close()
    proc = playbook("modules_snapshot.yml", extra_vars=dict(vm=vm, uri=lab.uri(host), other_uri=lab.uri(other)))
    assert proc.returncode == 0, proc.stdout
    assert "failed=0" in proc.stdout
    assert lab.running_on(vm) == [host]
    lab.assert_each_vm_once()
    conn = lab.connect(host)
    try:
        assert conn.lookupByName(vm).snapshotNum(0) == 0
    finally:
        conn.close()
