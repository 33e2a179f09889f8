#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_snapshot
short_description: Create, delete and revert snapshots of a libvirt VM
version_added: 0.1.0
description:
  - Manages the snapshots of one VM (O(name)) on the hypervisor O(uri).
  - V(present) creates the snapshot O(snapshot) unless one of that name exists; with O(retain) it then
    deletes the oldest snapshots so that only the newest O(retain) are kept.
  - V(absent) deletes the snapshot O(snapshot), or every snapshot of the VM with O(all=true)
    (libvirt refuses to migrate a VM that has snapshots).
  - V(reverted) reverts the VM to the snapshot O(snapshot).
  - Snapshots are internal (inside the VM's qcow2 images) where the hypervisor supports it.
author:
  - entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - entropy.cluster.connection
  - entropy.cluster.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows the names of the VM's snapshots before and after; for V(reverted), the current snapshot.
options:
  name:
    description:
      - Name of the VM (libvirt domain).
    type: str
    required: true
  snapshot:
    description:
      - Name of the snapshot.
      - Required with O(state=present) and O(state=reverted), and with O(state=absent) unless O(all=true).
    type: str
  state:
    description:
      - V(present), V(absent) or V(reverted), see the description.
      - V(reverted) always reports C(changed=true) (also in check mode) - whether the VM's disks and memory
        changed since the snapshot cannot be detected reliably.
    type: str
    choices: [present, absent, reverted]
    default: present
  description:
    description:
      - Description of a new snapshot. An existing snapshot is not modified.
    type: str
  memory:
    description:
      - For a running or paused VM, V(true) includes the memory state (the snapshot restores a running VM);
        V(false) takes the disks only, which needs a hypervisor that supports disk-only internal snapshots of
        a running VM (QEMU with libvirt 9.0 does not; the module then fails and says so).
      - Ignored for a shut-off VM (there is no memory to save).
    type: bool
    default: true
  retain:
    description:
      - With O(state=present), keep only the newest O(retain) snapshots of the VM (by creation time, the
        new one included) and delete the older ones.
    type: int
  all:
    description:
      - With O(state=absent), delete every snapshot of the VM.
    type: bool
    default: false
  revert_to:
    description:
      - With O(state=reverted), the run state of the VM after the revert - V(snapshot) as it was when the
        snapshot was taken, V(running) or V(paused).
    type: str
    choices: [snapshot, running, paused]
    default: snapshot
notes:
  - libvirt keeps snapshot metadata per hypervisor, and refuses to migrate a VM that has snapshots.
seealso:
  - module: entropy.cluster.vm_migrate
  - module: entropy.cluster.vm_info
"""

EXAMPLES = r"""
- name: Snapshot web01 before an upgrade, keep the three newest
  entropy.cluster.vm_snapshot:
    uri: qemu+tcp://hv01/system
    name: web01
    snapshot: before-upgrade
    description: before the upgrade
    retain: 3

- name: The upgrade went wrong, go back
  entropy.cluster.vm_snapshot:
    uri: qemu+tcp://hv01/system
    name: web01
    snapshot: before-upgrade
    state: reverted

- name: Drop every snapshot so web01 can be migrated
  entropy.cluster.vm_snapshot:
    uri: qemu+tcp://hv01/system
    name: web01
    state: absent
    all: true
"""

RETURN = r"""
vm:
  description: Name of the VM.
  returned: always
  type: str
  sample: web01
snapshots:
  description:
    - The VM's snapshots when the module finished (in check mode, as they would be), oldest first.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the snapshot.
      type: str
      sample: before-upgrade
    description:
      description: Description (empty string if none).
      type: str
      sample: before the upgrade
    creation_time:
      description: Creation time, seconds since the epoch; null in check mode for a snapshot not created yet.
      type: int
      sample: 1795707731
    state:
      description: State of the VM when the snapshot was taken (V(running), V(paused), V(shutoff), V(disk-snapshot), ...).
      type: str
      sample: running
    current:
      description: Whether this is the VM's current snapshot.
      type: bool
      sample: true
    parent:
      description: Name of the parent snapshot, null for a root snapshot.
      type: str
      sample: null
    memory:
      description: How memory was saved (V(internal), V(external), V(no)), null if libvirt does not say.
      type: str
      sample: internal
created:
  description: Name of the snapshot created, null if none was.
  returned: always
  type: str
  sample: before-upgrade
deleted:
  description: Names of the snapshots deleted (or that would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [nightly-1, nightly-2]
reverted:
  description: Name of the snapshot the VM was reverted to, null if none.
  returned: always
  type: str
  sample: null
vm_state:
  description: State of the VM when the module finished (after a revert, the state it was reverted to).
  returned: always
  type: str
  sample: running
"""

from typing import NoReturn

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    describe_error,
    lookup_domain,
)
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import (
    is_active,
    libvirt,
    snapshot_list,
    vm_condition,
)

from xml.sax.saxutils import escape as xml_escape


class VmSnapshot:
    def __init__(self, module: LibvirtModule) -> None:
        self.module = module
        self.p = module.params
        self.name: str = module.params["name"]
        self.uri = module.uri
        self.result: dict = module.result
        self.result.update(vm=self.name, snapshots=[], created=None, deleted=[], reverted=None)

    def fail(self, msg: str) -> NoReturn:
        self.module.fail(msg)

    def validate(self) -> None:
        state = self.p["state"]
        if state in ("present", "reverted") and not self.p["snapshot"]:
            self.fail("snapshot (the snapshot's name) is required with state: %s." % state)
        if state == "absent" and not self.p["snapshot"] and not self.p["all"]:
            self.fail("state: absent needs snapshot (one snapshot's name) or all: true (every snapshot of the VM).")
        if state == "absent" and self.p["snapshot"] and self.p["all"]:
            self.fail("snapshot and all: true are mutually exclusive with state: absent.")
        if self.p["retain"] is not None and (state != "present" or self.p["retain"] < 1):
            self.fail("retain needs state: present and a value >= 1 (the new snapshot is one of those kept).")

    def run(self) -> None:
        self.validate()
        conn = self.module.connect(self.uri)
        dom = lookup_domain(conn, self.name)
        before = snapshot_list(dom)
        names = [s["name"] for s in before]
        self.result["snapshots"] = before
        self.result["vm_state"] = vm_condition(dom)
        getattr(self, "do_" + self.p["state"])(dom, before, names)

    def finish(self, dom, before: list[dict], planned: list[dict] | None = None) -> None:
        after = planned if planned is not None else snapshot_list(dom)
        self.result["snapshots"] = after
        if planned is None:
            self.result["vm_state"] = vm_condition(dom)
        self.module.set_diff(
            dict(snapshots=[s["name"] for s in before], current=next((s["name"] for s in before if s["current"]), None)),
            dict(snapshots=[s["name"] for s in after], current=next((s["name"] for s in after if s["current"]), None)),
        )
        self.module.exit()

    # ------------------------------------------------------------------ present

    def do_present(self, dom, before: list[dict], names: list[str]) -> None:
        wanted = self.p["snapshot"]
        planned = [dict(s) for s in before]
        if wanted not in names:
            self.result["changed"] = True
            self.result["created"] = wanted
            for snap in planned:
                snap["current"] = False
            planned.append(dict(name=wanted, description=self.p["description"] or "", creation_time=None,
                                state=vm_condition(dom) if vm_condition(dom) != "saved" else "shutoff", current=True,
                                parent=next((s["name"] for s in before if s["current"]), None),
                                memory="internal" if is_active(dom) and self.p["memory"] else "no"))
        doomed = []
        if self.p["retain"] is not None and len(planned) > self.p["retain"]:
            # oldest first; the new snapshot (creation_time None) is the newest
            doomed = [s["name"] for s in planned[: len(planned) - self.p["retain"]] if s["name"] != wanted]
        if doomed:
            self.result["changed"] = True
            self.result["deleted"] = doomed
        if self.module.check_mode or not self.result["changed"]:
            self.finish(dom, before, [s for s in planned if s["name"] not in doomed] if self.module.check_mode else None)
            return
        if self.result["created"]:
            self.create(dom, wanted)
        for name in doomed:
            self.delete(dom, name)
        self.finish(dom, before)

    def create(self, dom, name: str) -> None:
        desc = "<description>%s</description>" % xml_escape(self.p["description"]) if self.p["description"] else ""
        memory = ""
        if is_active(dom) and not self.p["memory"]:
            memory = "<memory snapshot='no'/>"
        xml = "<domainsnapshot><name>%s</name>%s%s</domainsnapshot>" % (xml_escape(name), desc, memory)
        try:
            dom.snapshotCreateXML(xml, 0)
        except libvirt.libvirtError as exc:
            err = describe_error(exc, "creating snapshot %r of VM %r" % (name, self.name), self.uri)
            hint = ""
            if memory and err.kind == "unsupported":
                hint = " This hypervisor cannot take a disk-only internal snapshot of a running VM: use memory: true, or stop the VM first."
            elif "qcow2" in err.message or "internal snapshot" in err.message:
                hint = " Internal snapshots need qcow2 disk images."
            raise EntropyLibvirtError(err.message + hint, kind=err.kind, libvirt_code=err.libvirt_code) from None

    def delete(self, dom, name: str) -> None:
        try:
            dom.snapshotLookupByName(name, 0).delete(0)
        except libvirt.libvirtError as exc:
            raise describe_error(exc, "deleting snapshot %r of VM %r" % (name, self.name), self.uri) from None

    # ------------------------------------------------------------------ absent

    def do_absent(self, dom, before: list[dict], names: list[str]) -> None:
        doomed = list(reversed(names)) if self.p["all"] else [n for n in names if n == self.p["snapshot"]]
        self.result["deleted"] = doomed
        self.result["changed"] = bool(doomed)
        if self.module.check_mode or not doomed:
            self.finish(dom, before, [s for s in before if s["name"] not in doomed] if self.module.check_mode else None)
            return
        for name in doomed:  # newest first: children before their parents
            self.delete(dom, name)
        self.finish(dom, before)

    # ------------------------------------------------------------------ reverted

    def do_reverted(self, dom, before: list[dict], names: list[str]) -> None:
        wanted = self.p["snapshot"]
        if wanted not in names:
            self.fail("VM %r on %s has no snapshot %r (its snapshots: %s). Check the name, or create it with state: present."
                      % (self.name, self.uri, wanted, ", ".join(repr(n) for n in names) or "none"))
        self.result["changed"] = True
        self.result["reverted"] = wanted
        if self.module.check_mode:
            planned = [dict(s, current=(s["name"] == wanted)) for s in before]
            snap_state = next(s["state"] for s in before if s["name"] == wanted)
            self.result["vm_state"] = {"snapshot": snap_state, "running": "running", "paused": "paused"}[self.p["revert_to"]]
            self.finish(dom, before, planned)
            return
        flags = {"snapshot": 0, "running": libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING,
                 "paused": libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED}[self.p["revert_to"]]
        try:
            dom.revertToSnapshot(dom.snapshotLookupByName(wanted, 0), flags)
        except libvirt.libvirtError as exc:
            raise describe_error(exc, "reverting VM %r to snapshot %r" % (self.name, wanted), self.uri) from None
        self.finish(dom, before)


def main() -> None:
    module = LibvirtModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            snapshot=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent", "reverted"]),
            description=dict(type="str"),
            memory=dict(type="bool", default=True),
            retain=dict(type="int"),
            all=dict(type="bool", default=False),
            revert_to=dict(type="str", default="snapshot", choices=["snapshot", "running", "paused"]),
        ),
        supports_check_mode=True,
    )
    runner = VmSnapshot(module)
    try:
        runner.run()
    except (EntropyLibvirtError, libvirt.libvirtError) as exc:
        module.fail_libvirt(exc, "managing the snapshots of VM %r" % runner.name, runner.uri)


if __name__ == "__main__":
    main()
