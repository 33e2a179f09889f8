#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_info
short_description: Facts about a libvirt hypervisor
version_added: 0.1.0
description:
  - Returns CPU, memory, identity and versions of the hypervisor O(uri) and how many VMs it has in each state.
  - Read-only; never changes anything.
author:
  - entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - entropy.cluster.connection
  - entropy.cluster.attributes
  - entropy.cluster.attributes.info_module
options: {}
notes:
  - Memory figures are what libvirt reports at that moment; free memory varies from second to second.
  - The libvirt test driver reports no host UUID and no node memory statistics (RV(host.host_uuid) and
    RV(host.available_memory_mib) are null there).
seealso:
  - module: entropy.cluster.vm_info
"""

EXAMPLES = r"""
- name: What is hv01?
  entropy.cluster.host_info:
    uri: qemu+tcp://hv01/system
  register: hv01

- name: Show its free memory
  ansible.builtin.debug:
    msg: "{{ hv01.host.hostname }}: {{ hv01.host.free_memory_mib }} MiB free, {{ hv01.host.vms.active }} VMs active"
"""

RETURN = r"""
host:
  description: Facts about the hypervisor.
  returned: always
  type: dict
  contains:
    uri:
      description: The URI libvirt reports for the connection.
      type: str
      sample: qemu+tcp://hv01/system
    hostname:
      description: Hostname of the hypervisor.
      type: str
      sample: hv01
    host_uuid:
      description: Host UUID from the capabilities; null where the driver has none (test driver).
      type: str
      sample: cb72e75e-b7c0-4928-851d-a1c3cdc4cabe
    hypervisor:
      description: Hypervisor driver type (V(QEMU), V(TEST), ...).
      type: str
      sample: QEMU
    hypervisor_version:
      description: Version of the hypervisor (for QEMU, the QEMU version) as C(major.minor.release).
      type: str
      sample: 7.2.0
    libvirt_version:
      description: Version of the libvirt daemon as C(major.minor.release).
      type: str
      sample: 9.0.0
    arch:
      description: CPU architecture.
      type: str
      sample: x86_64
    cpu:
      description: Host CPUs.
      type: dict
      contains:
        count:
          description: Number of active logical CPUs.
          type: int
          sample: 16
        model:
          description: CPU model from the capabilities (the architecture where libvirt reports none).
          type: str
          sample: Skylake-Client-IBRS
        mhz:
          description: CPU frequency in MHz.
          type: int
          sample: 2400
        numa_nodes:
          description: Number of NUMA nodes.
          type: int
          sample: 1
        sockets:
          description: Sockets per NUMA node.
          type: int
          sample: 1
        cores:
          description: Cores per socket.
          type: int
          sample: 8
        threads:
          description: Threads per core.
          type: int
          sample: 2
    memory_mib:
      description: Total memory of the host in MiB.
      type: int
      sample: 64000
    free_memory_mib:
      description: Free memory in MiB (C(virNodeGetFreeMemory)); null if unknown.
      type: int
      sample: 20000
    available_memory_mib:
      description: Free + buffers + cache in MiB from the node memory statistics; null where the driver has none.
      type: int
      sample: 40000
    vms:
      description: VM counts.
      type: dict
      contains:
        total:
          description: Number of VMs defined or running.
          type: int
          sample: 12
        active:
          description: Number of active (running, paused, ...) VMs.
          type: int
          sample: 10
        by_state:
          description: Number of VMs per state (as RV(entropy.cluster.vm_info#module:vms[].condition) names them).
          type: dict
          sample: {running: 9, paused: 1, shutoff: 2}
"""

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import host_facts, libvirt


def main() -> None:
    module = LibvirtModule(argument_spec=dict(), supports_check_mode=True)
    uri = module.uri
    try:
        conn = module.connect(uri, readonly=True)
        host = host_facts(conn)
    except (EntropyLibvirtError, libvirt.libvirtError) as exc:
        module.fail_libvirt(exc, "reading the hypervisor facts", uri)
    module.exit(host=host)


if __name__ == "__main__":
    main()
