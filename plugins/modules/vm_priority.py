#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_priority
short_description: Set the scheduling priority a libvirt VM keeps with it
version_added: 0.1.0
description:
  - Keeps the VM's priority in its libvirt domain metadata, in the collection's own XML namespace
    C(urn:x-entropy-cluster:vm:1) (element C(vm), child C(priority)), on its persistent definition and, while it
    runs, on the running domain. It travels with the VM wherever it migrates, and into the image of a VM saved with
    entropy.cluster.vm_image.
  - The inventory (entropy.cluster.libvirt_cluster) reads it as C(entropy_priority) and puts it in the solver's
    model as the VM's C(priority) (higher runs first; a VM without one counts as 0).
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
      - The diff shows the priority before and after.
options:
  name:
    description:
      - Name of the VM (libvirt domain) on the hypervisor O(uri).
    type: str
    required: true
  priority:
    description:
      - The priority, a whole number from -2147483648 to 2147483647 (higher runs first). A number given as a string
        (C("10")) is accepted; anything else is refused with a message naming the VM.
      - V(null) removes the priority (the VM then counts as 0).
    type: raw
    required: true
notes:
  - Idempotent. A priority somebody wrote by hand that is no integer is replaced.
seealso:
  - module: entropy.cluster.vm_image
"""

EXAMPLES = r"""
- name: The database runs before the batch VMs when the cluster is short of room
  entropy.cluster.vm_priority:
    uri: qemu+ssh://root@hv01/system
    name: db01
    priority: 10

- name: Back to the default
  entropy.cluster.vm_priority:
    uri: qemu+ssh://root@hv01/system
    name: db01
    priority: null
"""

RETURN = r"""
vm:
  description: Name of the VM.
  returned: always
  type: str
  sample: db01
uri:
  description: URI of the hypervisor.
  returned: always
  type: str
  sample: qemu+ssh://root@hv01/system
previous_priority:
  description: The priority before (V(null) when none was set; the text of a hand-written one that is no integer).
  returned: success
  type: raw
  sample: null
priority:
  description: The priority now (in check mode, the one it would have).
  returned: success
  type: int
  sample: 10
error_kind:
  description: Class of the failure, for example V(invalid_argument) (a priority that is no integer, nothing was done).
  returned: on failure
  type: str
  sample: invalid_argument
"""

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._vm_priority import VmPriority
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt


def main() -> None:
    module = LibvirtModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            priority=dict(type="raw", required=True),
        ),
        supports_check_mode=True,
    )
    runner = VmPriority(module)
    try:
        runner.run()
    except (EntropyLibvirtError, libvirt.libvirtError) as exc:
        module.fail_libvirt(exc, "setting the priority of VM %r" % runner.name, runner.uri)


if __name__ == "__main__":
    main()
