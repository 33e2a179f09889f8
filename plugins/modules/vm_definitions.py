#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_definitions
short_description: Keep every VM's definition in the cluster store, for a recovery after its hypervisor dies
version_added: 0.1.0
description:
  - Reads every VM that the hypervisors of O(hypervisors) define or run, and keeps in the cluster store (the storage pool
    O(pool) on the shared storage, where every job sees it) one record per VM - kind C(definition) - with its hypervisor,
    that hypervisor's URI and its domain XML (the persistent definition, without secrets).
  - A dead hypervisor cannot be asked for the definitions of its VMs. With these records, M(entropy.cluster.vm_recover)
    (the P(entropy.cluster.recover#role) role) knows which VMs a failed hypervisor ran and can cold-boot those that have no
    checkpoint (its option O(entropy.cluster.vm_recover#module:without_checkpoint=cold_boot)).
  - A VM active on one hypervisor is recorded there; a VM only defined (shut off) keeps the hypervisor its record names
    when that one still defines it.
  - Only records that differ are written (idempotent). The record of a VM that no hypervisor defines any more is removed
    when its record names a hypervisor that answered; a record naming a hypervisor that did not answer, or that is not in
    O(hypervisors) (leave a fenced one out), is kept.
  - The C(entropy.cluster.checkpoint) playbook runs it after every checkpoint when C(entropy_store_pool) is set.
author:
  - entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - entropy.cluster.connection.module_credentials
  - entropy.cluster.connection.module_connect_timeout
attributes:
  check_mode:
    support: full
    details:
      - In check mode the hypervisors and the store are read, not changed; the module reports which records would be
        written or removed.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  hypervisors:
    description: The hypervisors whose VMs are recorded, name to libvirt URI (the names are those of the inventory).
    type: dict
    required: true
  pool:
    description:
      - The libvirt storage pool of the cluster store; it must be defined and active on the hypervisors over one shared
        directory (see the collection's docs/playbooks.md, "The cluster store").
    type: str
    default: entropy-cluster
requirements:
  - libvirt-python on the host that runs the module (usually the controller)
seealso:
  - module: entropy.cluster.vm_recover
  - module: entropy.cluster.vm_checkpoint
"""

EXAMPLES = r"""
- name: Keep the definitions of every VM where a recovery finds them
  entropy.cluster.vm_definitions:
    hypervisors: {hv01: "qemu+tcp://hv01/system", hv02: "qemu+tcp://hv02/system", hv03: "qemu+tcp://hv03/system"}
"""

RETURN = r"""
written:
  description: VMs whose record was written (new or changed), or would be in check mode.
  returned: always
  type: list
  elements: str
  sample: [web01]
removed:
  description: VMs whose record was removed (no hypervisor defines them any more), or would be in check mode.
  returned: always
  type: list
  elements: str
  sample: []
unchanged:
  description: How many records were already up to date.
  returned: always
  type: int
  sample: 41
unreachable:
  description: Hypervisors that did not answer, name to error; their VMs' records are left as they are.
  returned: always
  type: dict
  sample: {}
"""

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import HAS_LIBVIRT, EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import CONNECT_TIMEOUT_SPEC, CREDENTIALS_SPEC, EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._definitions import Definitions


def main() -> None:
    module = EntropyModule(
        argument_spec=dict(
            hypervisors=dict(type="dict", required=True),
            pool=dict(type="str", default="entropy-cluster"),
            **CREDENTIALS_SPEC,
            **CONNECT_TIMEOUT_SPEC,
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not HAS_LIBVIRT:
        module.fail("the Python module 'libvirt' (libvirt-python) is not installed: pip install libvirt-python", "missing_library")
    if not params["hypervisors"] or any(not isinstance(uri, str) or not uri for uri in params["hypervisors"].values()):
        module.fail("hypervisors: give the hypervisors as name: libvirt URI", "config")
    module.result.update(written=[], removed=[], unchanged=0, unreachable={})
    try:
        done = Definitions(params["hypervisors"], params["pool"], params["auth_username"], params["auth_password"],
                           params.get("connect_timeout")).run(module.check_mode)
    except EntropyLibvirtError as exc:
        module.fail(exc.message, exc.kind)
    module.result.update(done)
    module.exit(changed=bool(done["written"] or done["removed"]))


if __name__ == "__main__":
    main()
