#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_image
short_description: Save a libvirt VM to shared storage and restore it on any hypervisor
version_added: 0.1.0
description:
  - Suspends a VM to disk in a directory every hypervisor sees (O(save_dir)), and resumes it on any of them, the
    cluster-wide context switch of Entropy 2.0. Unlike libvirt's managed save (entropy.cluster.vm_state V(saved)),
    the image is not tied to the host that wrote it.
  - V(saved) writes the memory of a running or paused VM to C(<save_dir>/<name>.save) on the host O(uri)
    (virDomainSaveFlags) and stops it there. Its disks stay where they are. Its persistent definition stays on that
    host, shut off, marked as saved, so that entropy.cluster.vm_state refuses to boot it (that would lose the memory
    state and let a later restore run a second copy).
  - V(restored) restores the image on the host O(uri), which may be another host than the one that saved it
    (virDomainRestoreFlags; the emulator path is adjusted to the destination's). The persistent definition moves with
    it, defined on the destination, then undefined on its old host, so the VM is defined on exactly one host. Then the
    image is removed. It refuses, and changes nothing, when the VM runs on any host of O(uri) and O(uris), when a
    different VM of that name is defined there, when the VM has a managed save image, or when it is defined on several of them.
    A destination that cannot see the image file while another host can is told so (the storage is not shared).
    A failed restore keeps the image and the definition where they were, the same task run again retries.
  - V(absent) removes the image (the saved memory state is lost; the VM's definition stays, shut off) and clears the
    saved mark of its definition on the hosts of O(uri) and O(uris).
  - Files are read and removed through the hypervisors' libvirt (the controller need not see the shared storage);
    a removal goes through an active storage pool over O(save_dir), else a transient one the module creates and destroys.
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
      - The diff shows the VM's state and image before and after (and, for V(restored), where it is defined).
options:
  name:
    description:
      - Name of the VM (libvirt domain). The image file is C(<save_dir>/<name>.save).
    type: str
    required: true
  state:
    description:
      - V(saved), V(restored) or V(absent) (the image); see the description.
    type: str
    required: true
    choices: [saved, restored, absent]
  save_dir:
    description:
      - Absolute path of the directory on shared storage, as every hypervisor mounts it (the same path on each).
    type: path
    required: true
    aliases: [save_location]
  uris:
    description:
      - The libvirt URIs of the other hypervisors of the cluster (O(uri) may be among them). With V(restored), the VM
        must not run on any of them, and its definition is moved from the one that has it; with V(absent), their saved marks are cleared.
      - Give every hypervisor that could hold the VM's definition; a host left out is not checked.
    type: list
    elements: str
    default: []
notes:
  - Idempotent - V(saved) of a VM whose image is there and that no longer runs, V(restored) of a VM that runs on O(uri)
    with no image left, and V(absent) with no image and no mark change nothing.
  - The guest's clock and network connections see the time between save and restore as a pause.
seealso:
  - module: entropy.cluster.vm_state
  - module: entropy.cluster.vm_priority
"""

EXAMPLES = r"""
- name: Save web01 from hv01 to the shared save directory
  entropy.cluster.vm_image:
    uri: qemu+ssh://root@hv01/system
    name: web01
    state: saved
    save_dir: /srv/cluster/saves

- name: Resume it on hv02; it must not run anywhere in the cluster, its definition moves from hv01
  entropy.cluster.vm_image:
    uri: qemu+ssh://root@hv02/system
    uris: [qemu+ssh://root@hv01/system, qemu+ssh://root@hv03/system]
    name: web01
    state: restored
    save_dir: /srv/cluster/saves

- name: Discard a saved image (the memory state is lost; the VM stays defined, shut off)
  entropy.cluster.vm_image:
    uri: qemu+ssh://root@hv01/system
    uris: [qemu+ssh://root@hv02/system]
    name: web02
    state: absent
    save_dir: /srv/cluster/saves
"""

RETURN = r"""
vm:
  description: Name of the VM.
  returned: always
  type: str
  sample: web01
uri:
  description: URI of the hypervisor that saved, restored or removed.
  returned: always
  type: str
  sample: qemu+ssh://root@hv02/system
image_path:
  description: Path of the image file.
  returned: always
  type: str
  sample: /srv/cluster/saves/web01.save
previous_state:
  description: The VM's state before (V(running), V(paused), V(saved), V(absent), V(undefined), ...).
  returned: success
  type: str
  sample: saved
state:
  description: The VM's state after (in check mode, the state it would have).
  returned: success
  type: str
  sample: running
persistent:
  description: Whether the saved VM had a persistent definition (it stays on the saving host, marked as saved).
  returned: when O(state=saved) and changed
  type: bool
  sample: true
source_uri:
  description: The host whose definition of the VM was moved to O(uri) (V(null) for a transient VM).
  returned: when O(state=restored) and changed
  type: str
  sample: qemu+ssh://root@hv01/system
definition_moved:
  description: True when the definition moved from another host.
  returned: when O(state=restored) and changed
  type: bool
  sample: true
adjusted:
  description: What was changed in the saved XML for the destination (the emulator path), empty when nothing.
  returned: when O(state=restored) and the image was restored
  type: list
  elements: str
  sample: []
image_removed:
  description: True when the image was removed after the restore.
  returned: when O(state=restored) and the image was restored
  type: bool
  sample: true
marks_cleared:
  description: The hosts where the saved mark of the VM's definition was cleared.
  returned: when O(state=absent)
  type: list
  elements: str
  sample: [qemu+ssh://root@hv01/system]
duration_s:
  description: Seconds the save or the restore call took.
  returned: when an image was written or restored
  type: float
  sample: 1.45
reactivation_ms:
  description: Milliseconds a VM paused by a user ran to re-activate its disks before it was saved (see entropy.cluster.vm_state).
  returned: when a VM paused by a user was saved
  type: float
  sample: 9.4
error_kind:
  description: Class of the failure, for example V(image_not_visible), V(no_image), V(vm_running), V(restore_failed).
  returned: on failure
  type: str
  sample: image_not_visible
"""

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._vm_image import VmImage
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt


def main() -> None:
    module = LibvirtModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", required=True, choices=["saved", "restored", "absent"]),
            save_dir=dict(type="path", required=True, aliases=["save_location"]),
            uris=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    runner = VmImage(module)
    try:
        runner.run()
    except (EntropyLibvirtError, libvirt.libvirtError) as exc:
        module.fail_libvirt(exc, "handling the saved image of VM %r" % runner.name, runner.uri)


if __name__ == "__main__":
    main()
