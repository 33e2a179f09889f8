#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: linked_clone
short_description: Create or remove a qcow2 linked clone of a base image in a libvirt storage pool
version_added: 0.1.0
description:
  - Makes one qcow2 volume in a libvirt storage pool whose backing file is a base image (a linked clone) present or
    absent. Nothing of the base image is copied; the clone holds only what its VM writes.
  - The volume is created through libvirt's storage API, so the base image must be a volume of a storage pool on the
    hypervisor (its capacity becomes the clone's).
  - A volume of that name with another backing file is never overwritten; the module fails and says so.
  - The disks of a job's VMs (see the collection's docs/jobs.md) are such clones.
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
      - The diff shows the volume (path, backing file, format) before and after.
options:
  pool:
    description:
      - Name of the active libvirt storage pool the clone is (or goes) in.
    type: str
    required: true
  name:
    description:
      - Name of the clone volume in O(pool), for example C(job1-1.qcow2). Taken literally.
    type: str
    required: true
  backing_file:
    description:
      - Absolute path of the base image (qcow2) on the hypervisor; required with O(state=present).
    type: path
  state:
    description:
      - V(present) creates the clone if it does not exist (an existing one with the same backing file is left as it is);
        V(absent) deletes the volume.
    type: str
    default: present
    choices: [present, absent]
"""

EXAMPLES = r"""
- name: A linked clone of the base image for a job VM
  entropy.cluster.linked_clone:
    uri: qemu+tcp://hv01/system
    pool: images
    name: job1-1.qcow2
    backing_file: /var/lib/libvirt/images/base.qcow2

- name: Remove it when the job is over
  entropy.cluster.linked_clone:
    uri: qemu+tcp://hv01/system
    pool: images
    name: job1-1.qcow2
    state: absent
"""

RETURN = r"""
uri:
  description: URI of the hypervisor.
  returned: always
  type: str
  sample: qemu+tcp://hv01/system
pool:
  description: The storage pool.
  returned: always
  type: str
  sample: images
name:
  description: The volume's name.
  returned: always
  type: str
  sample: job1-1.qcow2
state:
  description: V(present) or V(absent) when the module finished (in check mode, what it would be).
  returned: always
  type: str
  sample: present
path:
  description: Path of the clone on the hypervisor (not known before it is created in check mode).
  returned: when the volume exists or existed
  type: str
  sample: /var/lib/libvirt/images/job1-1.qcow2
backing_file:
  description: The clone's backing file.
  returned: when O(state=present)
  type: str
  sample: /var/lib/libvirt/images/base.qcow2
format:
  description: The clone's format.
  returned: when O(state=present)
  type: str
  sample: qcow2
error_kind:
  description:
    - Class of the failure, for example V(exists_different) (a volume of that name with another backing file),
      V(no_pool), V(pool_inactive), V(no_base) (the base image is in no storage pool), V(invalid_argument).
  returned: on failure
  type: str
  sample: exists_different
"""

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._linked_clone import LinkedClone
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt


def main() -> None:
    module = LibvirtModule(
        argument_spec=dict(
            pool=dict(type="str", required=True),
            name=dict(type="str", required=True),
            backing_file=dict(type="path"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_if=[("state", "present", ["backing_file"])],
        supports_check_mode=True,
    )
    runner = LinkedClone(module)
    try:
        runner.run()
    except (EntropyLibvirtError, libvirt.libvirtError) as exc:
        module.fail_libvirt(exc, "making linked clone %r in pool %r" % (runner.name, runner.pool_name), runner.uri)


if __name__ == "__main__":
    main()
