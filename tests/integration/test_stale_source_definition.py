# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shut-off definition a migration leaves on its source when the source daemon dies before its
last phase: the VM runs on the destination, a shut-off persistent copy with the same UUID stays on
the source (seen in the fault soak, docs/fault-soak.md). Starting that copy would run the VM twice
on the same disks.

The leftover is made deterministically with libvirt itself: a live migration with PERSIST_DEST and
without UNDEFINE_SOURCE ends in exactly that state (the last phase that undefines the source is the
one a dead source daemon never runs). vm_migrate must remove it, and must keep a copy that holds
more than a definition (managed save, snapshots) or that is the only persistent one.
"""

from __future__ import annotations

import json
import uuid

import libvirt
import pytest

LEFTOVER_VM = "vm3"
SAVED_VM = "entropy-leftover-saved"


def redefine_a_snapshot(dom, name: str = "before-upgrade"):
    """Snapshot metadata only: the disk is in use by the copy running on the destination."""
    return dom.snapshotCreateXML(
        "<domainsnapshot><name>%s</name><state>shutoff</state><creationTime>1700000000</creationTime>%s"
        "</domainsnapshot>" % (name, dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)), libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REDEFINE)


def run_migrate(lab, playbook, tmp_path, vm, source, destination, check=False, **options) -> dict:
    result_file = tmp_path / "migrate.json"
    if result_file.exists():
        result_file.unlink()
    proc = playbook("modules_migrate.yml", check=check, extra_vars=dict(
        vm=vm, source=lab.uri(source), destination=lab.uri(destination), result_file=str(result_file), **options))
    assert proc.returncode == 0, proc.stdout
    return json.loads(result_file.read_text())


def test_the_shut_off_copy_left_on_the_source_is_removed(lab_reset, playbook, tmp_path):
    lab = lab_reset
    source, destination = lab.leave_shut_off_copy(LEFTOVER_VM)

    checked = run_migrate(lab, playbook, tmp_path, LEFTOVER_VM, source, destination, check=True)
    assert not checked.get("failed"), checked["msg"]
    assert checked["changed"] is True and checked["source_definition_removed"] is True
    assert checked["diff"]["before"]["also_defined_shut_off_on"]["host"] == source
    assert sorted(lab.placement()[LEFTOVER_VM]) == sorted([(source, "shutoff"), (destination, "running")])

    removed = run_migrate(lab, playbook, tmp_path, LEFTOVER_VM, source, destination)
    assert not removed.get("failed"), removed["msg"]
    assert removed["changed"] is True and removed["source_definition_removed"] is True
    assert removed["location"] == "destination" and removed["defined_on"] == ["destination"]
    assert lab.placement()[LEFTOVER_VM] == [(destination, "running")]

    again = run_migrate(lab, playbook, tmp_path, LEFTOVER_VM, source, destination)
    assert again["changed"] is False and "source_definition_removed" not in again
    lab.assert_each_vm_once()


def test_a_copy_with_snapshots_is_kept_until_they_are_gone(lab_reset, playbook, tmp_path):
    lab = lab_reset
    source, destination = lab.leave_shut_off_copy(LEFTOVER_VM)
    conn = lab.connect(source)
    try:
        dom = conn.lookupByName(LEFTOVER_VM)
        snapshot = redefine_a_snapshot(dom)

        kept = run_migrate(lab, playbook, tmp_path, LEFTOVER_VM, source, destination)
        assert not kept.get("failed"), kept["msg"]
        assert kept["changed"] is False and kept["source_definition_removed"] is False
        assert "1 snapshot(s)" in kept["source_definition_kept"]
        assert sorted(lab.placement()[LEFTOVER_VM]) == sorted([(source, "shutoff"), (destination, "running")])

        snapshot.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
    finally:
        conn.close()
    removed = run_migrate(lab, playbook, tmp_path, LEFTOVER_VM, source, destination)
    assert removed["source_definition_removed"] is True and lab.placement()[LEFTOVER_VM] == [(destination, "running")]
    lab.assert_each_vm_once()


def test_the_only_persistent_definition_is_kept(lab_reset, playbook, tmp_path):
    lab = lab_reset
    source, destination = lab.leave_shut_off_copy(LEFTOVER_VM, persist=False)
    kept = run_migrate(lab, playbook, tmp_path, LEFTOVER_VM, source, destination)
    assert not kept.get("failed"), kept["msg"]
    assert kept["changed"] is False and kept["source_definition_removed"] is False
    assert "transient" in kept["source_definition_kept"]
    assert sorted(lab.placement()[LEFTOVER_VM]) == sorted([(source, "shutoff"), (destination, "running")])

    conn = lab.connect(destination)
    try:  # defining it there makes the running copy persistent: then the source copy is only a leftover
        conn.defineXML(conn.lookupByName(LEFTOVER_VM).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    finally:
        conn.close()
    removed = run_migrate(lab, playbook, tmp_path, LEFTOVER_VM, source, destination)
    assert removed["source_definition_removed"] is True and lab.placement()[LEFTOVER_VM] == [(destination, "running")]
    lab.assert_each_vm_once()


@pytest.fixture()
def saved_copy_and_running_copy(lab):
    """A diskless VM (two copies of it share nothing): on the first host shut off with a managed save
    image, on the second host running, same UUID."""
    first, second = sorted(lab.hosts)[:2]
    xml = ("<domain type='qemu'><name>%s</name><uuid>%s</uuid><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
           "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices/></domain>") % (SAVED_VM, uuid.uuid4())
    for host in (first, second):
        conn = lab.connect(host)
        try:
            conn.defineXML(xml).create()
            if host == first:
                conn.lookupByName(SAVED_VM).managedSave()
        finally:
            conn.close()
    yield first, second
    lab.remove_vm(SAVED_VM)


def test_a_copy_with_a_managed_save_is_kept(lab, playbook, tmp_path, saved_copy_and_running_copy):
    first, second = saved_copy_and_running_copy
    kept = run_migrate(lab, playbook, tmp_path, SAVED_VM, first, second)
    assert not kept.get("failed"), kept["msg"]
    assert kept["changed"] is False and kept["source_definition_removed"] is False
    assert "managed save image" in kept["source_definition_kept"]
    assert sorted(lab.placement()[SAVED_VM]) == sorted([(first, "shutoff"), (second, "running")])
    conn = lab.connect(first)
    try:
        assert conn.lookupByName(SAVED_VM).hasManagedSaveImage(0)
    finally:
        conn.close()


# --------------------------------------------------------------------------- through apply_plan

def plan_with_one_move(lab, tmp_path, leftover_vm: str) -> tuple[str, str, str]:
    """A plan (JSON file) that moves one other VM, written from the live placement (the leftover VM where it runs)."""
    initial = {}
    for vm, where in lab.placement().items():
        host, state = next((h, s) for h, s in where if s in ("running", "paused"))
        initial[vm] = {"host": host, "state": state}
    mover = next(vm for vm in sorted(initial) if vm != leftover_vm)
    source = initial[mover]["host"]
    target = next(h for h in sorted(lab.hosts) if h != source)
    plan = {"version": 1, "objective": "consolidate", "status": "feasible", "initial": initial,
            "target": dict({vm: where["host"] for vm, where in initial.items()}, **{mover: target}),
            "steps": [[{"action": "migrate", "vm": mover, "from": source, "to": target}]], "stats": {"migrations": 1}}
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return str(path), mover, target


def apply(lab, playbook, tmp_path, plan_file, check=False):
    return playbook("entropy.cluster.apply", inventory=lab.static_inventory, check=check, extra_vars={
        "entropy_plan_file": plan_file, "entropy_lock_file": str(tmp_path / "lock"), "entropy_migrate_unsafe": True})


def test_apply_removes_the_leftover_then_applies_the_plan(lab_reset, playbook, tmp_path):
    lab = lab_reset
    source, destination = lab.leave_shut_off_copy(LEFTOVER_VM)
    plan_file, mover, target = plan_with_one_move(lab, tmp_path, LEFTOVER_VM)
    line = "VM '%s': its shut-off copy on %s (the VM runs on %s)" % (LEFTOVER_VM, source, destination)

    checked = apply(lab, playbook, tmp_path, plan_file, check=True)
    assert checked.returncode == 0, checked.stdout[-4000:]
    assert line + " would be removed" in checked.stdout
    assert sorted(lab.placement()[LEFTOVER_VM]) == sorted([(source, "shutoff"), (destination, "running")])

    applied = apply(lab, playbook, tmp_path, plan_file)
    assert applied.returncode == 0, applied.stdout[-4000:]
    assert line + " was removed" in applied.stdout
    assert lab.placement()[LEFTOVER_VM] == [(destination, "running")]
    assert lab.running_on(mover) == [target]
    lab.assert_each_vm_once()


def test_apply_keeps_a_leftover_with_snapshots_and_refuses_the_plan(lab_reset, playbook, tmp_path):
    lab = lab_reset
    source, destination = lab.leave_shut_off_copy(LEFTOVER_VM)
    plan_file, mover, _target = plan_with_one_move(lab, tmp_path, LEFTOVER_VM)
    mover_host = lab.running_on(mover)
    conn = lab.connect(source)
    try:
        dom = conn.lookupByName(LEFTOVER_VM)
        snapshot = redefine_a_snapshot(dom)
        refused = apply(lab, playbook, tmp_path, plan_file)
        assert refused.returncode != 0
        assert "(the VM runs on %s) was kept: it has 1 snapshot(s) there" % destination in refused.stdout
        assert "the plan is stale, nothing was moved" in refused.stdout and "starting it there would run the VM twice" in refused.stdout
        assert sorted(lab.placement()[LEFTOVER_VM]) == sorted([(source, "shutoff"), (destination, "running")])
        assert lab.running_on(mover) == mover_host
        snapshot.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        dom.undefine()
    finally:
        conn.close()
    lab.assert_each_vm_once()
