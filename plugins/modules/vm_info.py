#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_info
short_description: Facts about the VMs of a libvirt hypervisor
version_added: 0.1.0
description:
  - Returns state, size, CPU time, persistence, snapshots, disks and network interfaces of one VM
    (O(name)) or of every VM defined on the hypervisor O(uri).
  - Read-only; never changes anything.
author:
  - entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - entropy.cluster.connection
  - entropy.cluster.attributes
  - entropy.cluster.attributes.info_module
options:
  name:
    description:
      - Name of one VM. When not set, every VM defined on the hypervisor is returned.
      - A VM of that name that is not defined there gives an empty RV(vms) list, not a failure.
    type: str
seealso:
  - module: entropy.cluster.host_info
  - module: entropy.cluster.vm_state
"""

EXAMPLES = r"""
- name: Everything about web01
  entropy.cluster.vm_info:
    uri: qemu+tcp://hv01/system
    name: web01
  register: web01

- name: All VMs of hv01
  entropy.cluster.vm_info:
    uri: qemu+tcp://hv01/system
  register: hv01_vms

- name: Names of the running ones
  ansible.builtin.debug:
    msg: "{{ hv01_vms.vms | selectattr('state', 'eq', 'running') | map(attribute='name') | list }}"
"""

RETURN = r"""
uri:
  description: URI of the hypervisor.
  returned: always
  type: str
  sample: qemu+tcp://hv01/system
vms:
  description: One entry per VM, sorted by name.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Name of the VM.
      type: str
      sample: web01
    uuid:
      description: UUID of the VM.
      type: str
      sample: 6695eb01-f6a4-8304-79aa-97f2502e193f
    id:
      description: libvirt domain ID while the VM runs, null when it is not active.
      type: int
      sample: 3
    state:
      description: libvirt state - V(running), V(blocked), V(paused), V(shutdown), V(shutoff), V(crashed), V(pmsuspended), V(nostate).
      type: str
      sample: running
    condition:
      description:
        - The state as M(entropy.cluster.vm_state) names it - like RV(vms[].state), but V(saved) for a shut-off
          VM with a managed save image and V(running) for V(blocked).
      type: str
      sample: running
    vcpus:
      description: Number of virtual CPUs (current).
      type: int
      sample: 2
    max_vcpus:
      description: Maximum number of virtual CPUs.
      type: int
      sample: 2
    memory_mib:
      description: Memory of the VM in MiB.
      type: dict
      contains:
        max:
          description: Maximum memory.
          type: int
          sample: 2048
        current:
          description: Current memory (balloon).
          type: int
          sample: 2048
    cpu_time_ns:
      description: CPU time the VM used, in nanoseconds.
      type: int
      sample: 1795707067557530000
    persistent:
      description: Whether the VM is defined persistently (survives a stop).
      type: bool
      sample: true
    autostart:
      description: Whether the VM starts with the hypervisor.
      type: bool
      sample: false
    has_managed_save:
      description: Whether a managed save image exists (the VM was saved with O(entropy.cluster.vm_state#module:state=saved)).
      type: bool
      sample: false
    snapshots:
      description: Names of the VM's snapshots, sorted.
      type: list
      elements: str
      sample: [before-upgrade]
    disks:
      description: Disks of the VM.
      type: list
      elements: dict
      contains:
        target:
          description: Device name in the guest.
          type: str
          sample: vda
        bus:
          description: Disk bus.
          type: str
          sample: virtio
        device:
          description: V(disk), V(cdrom), V(floppy) or V(lun).
          type: str
          sample: disk
        type:
          description: Source type (V(file), V(block), V(network), V(volume)).
          type: str
          sample: file
        source:
          description: File, device, network name or pool/volume of the disk; null for an empty drive.
          type: str
          sample: /var/lib/libvirt/images/web01.qcow2
        format:
          description: Image format (driver type).
          type: str
          sample: qcow2
    interfaces:
      description: Network interfaces of the VM.
      type: list
      elements: dict
      contains:
        type:
          description: Interface type (V(network), V(bridge), V(direct), V(user), ...).
          type: str
          sample: network
        mac:
          description: MAC address.
          type: str
          sample: "52:54:00:12:34:56"
        model:
          description: Device model.
          type: str
          sample: virtio
        source:
          description: Network, bridge or device it connects to.
          type: str
          sample: default
        target:
          description: Host-side device name while the VM runs.
          type: str
          sample: vnet0
"""

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError, find_domain
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import domain_facts, libvirt


def main() -> None:
    module = LibvirtModule(
        argument_spec=dict(name=dict(type="str")),
        supports_check_mode=True,
    )
    uri = module.uri
    name = module.params["name"]
    module.result.update(uri=uri, vms=[])
    try:
        conn = module.connect(uri, readonly=True)
        if name:
            dom = find_domain(conn, name)
            doms = [dom] if dom is not None else []
        else:
            doms = conn.listAllDomains(0)
        vms = []
        for dom in doms:
            try:
                vms.append(domain_facts(dom))
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue  # undefined while we looked
                raise
    except (EntropyLibvirtError, libvirt.libvirtError) as exc:
        module.fail_libvirt(exc, "reading the VMs" if not name else "reading VM %r" % name, uri)
    vms.sort(key=lambda vm: vm["name"])
    module.exit(vms=vms)


if __name__ == "__main__":
    main()
