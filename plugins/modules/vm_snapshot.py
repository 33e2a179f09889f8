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

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._snapshot import VmSnapshot
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt


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
