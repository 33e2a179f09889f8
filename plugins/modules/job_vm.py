#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: job_vm
short_description: Define one VM of a job on a hypervisor (a linked clone of the job's image), or remove it
version_added: 0.1.0
description:
  - With O(state=present), makes the VM's disk, a qcow2 linked clone of the job's base image in the storage pool O(pool)
    (as M(entropy.cluster.linked_clone) does), and defines the VM, shut off, with the job's name and owner in its libvirt
    metadata (read back by the entropy.cluster.libvirt_cluster inventory and M(entropy.cluster.job_status)). The
    P(entropy.cluster.apply_plan#role) role then starts it on that hypervisor.
  - With O(state=absent), destroys the VM, undefines it and deletes its overlay and its seed volume (the volume
    M(entropy.cluster.job_seed) makes in O(pool) under the name RV(seed)).
  - A VM of that name that is not the job's (its metadata names another job, or none) is never changed or removed; the
    module fails and says so.
  - Names are taken literally, they go into the definition as XML text, never into a template or a shell.
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
      - The diff shows whether the VM is defined and active and whether its overlay exists, before and after.
options:
  name:
    description: Name of the VM, for example C(analysis-42-1).
    type: str
    required: true
  job:
    description: Name of the job the VM belongs to.
    type: str
    required: true
  owner:
    description: Who submitted the job; required with O(state=present).
    type: str
  pool:
    description:
      - Active storage pool, on storage every hypervisor sees, where the VM's overlay is made (named after the VM,
        C(entropy-job-<name>-<digest>.qcow2)). The base image must be a volume of a pool on that hypervisor.
    type: str
    required: true
  image:
    description: Absolute path of the base image (qcow2) on the hypervisor; required with O(state=present).
    type: path
  memory_mib:
    description: Memory of the VM in MiB; required with O(state=present).
    type: int
  vcpus:
    description: Virtual CPUs of the VM.
    type: int
    default: 1
  priority:
    description: The VM's priority, kept in its metadata as M(entropy.cluster.vm_priority) does.
    type: int
  domain_type:
    description: libvirt domain type, V(kvm) on real hypervisors, V(qemu) (TCG) where there is no KVM (the lab).
    type: str
    default: kvm
    choices: [kvm, qemu]
  bridge:
    description: Host bridge the VM's NIC (virtio) sits on; none when not set.
    type: str
  kernel:
    description:
      - Path of a kernel on the hypervisor to boot the VM with (direct kernel boot) instead of the boot loader of its
        disk, which stays the VM's first disk. For base images without a boot loader (the collection's lab guest).
    type: path
  initrd:
    description: Path of the initial ramdisk on the hypervisor, with O(kernel).
    type: path
  cmdline:
    description: The kernel's command line, with O(kernel).
    type: str
  state:
    description: V(present) defines the VM (shut off if it was not defined); V(absent) removes it and its overlay.
    type: str
    default: present
    choices: [present, absent]
"""

EXAMPLES = r"""
- name: Define the first VM of job analysis-42 on hv01
  entropy.cluster.job_vm:
    uri: qemu+ssh://root@hv01/system
    name: analysis-42-1
    job: analysis-42
    owner: alice
    pool: images
    image: /srv/images/debian-12.qcow2
    memory_mib: 512

- name: Remove it and its overlay
  entropy.cluster.job_vm:
    uri: qemu+ssh://root@hv01/system
    name: analysis-42-1
    job: analysis-42
    pool: images
    state: absent
"""

RETURN = r"""
name:
  description: The VM.
  returned: always
  type: str
  sample: analysis-42-1
job:
  description: Its job.
  returned: always
  type: str
  sample: analysis-42
uri:
  description: URI of the hypervisor.
  returned: always
  type: str
  sample: qemu+ssh://root@hv01/system
overlay:
  description: Name of the VM's overlay volume in O(pool).
  returned: always
  type: str
  sample: entropy-job-analysis-42-1-0c5e2a4b7d.qcow2
seed:
  description: Name of the VM's seed volume in O(pool) (made by M(entropy.cluster.job_seed), removed with O(state=absent)).
  returned: always
  type: str
  sample: entropy-job-analysis-42-1-0c5e2a4b7d.seed.iso
path:
  description: Path of the overlay on the hypervisor (null in check mode before it exists).
  returned: when O(state=present)
  type: str
  sample: /srv/images/entropy-job-analysis-42-1-0c5e2a4b7d.qcow2
state:
  description: V(present) or V(absent) when the module finished (in check mode, what it would be).
  returned: success
  type: str
  sample: present
error_kind:
  description:
    - Class of the failure, for example V(not_the_jobs) (a VM of that name belongs to no job or another one), V(no_pool),
      V(pool_inactive), V(no_base) (the base image is in no storage pool), V(invalid_argument).
  returned: on failure
  type: str
  sample: not_the_jobs
"""

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._job import JobVM
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt


def main() -> None:
    module = LibvirtModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            job=dict(type="str", required=True),
            owner=dict(type="str"),
            pool=dict(type="str", required=True),
            image=dict(type="path"),
            memory_mib=dict(type="int"),
            vcpus=dict(type="int", default=1),
            priority=dict(type="int"),
            domain_type=dict(type="str", default="kvm", choices=["kvm", "qemu"]),
            bridge=dict(type="str"),
            kernel=dict(type="path"),
            initrd=dict(type="path"),
            cmdline=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_if=[("state", "present", ["owner", "image", "memory_mib"])],
        required_by={"initrd": "kernel", "cmdline": "kernel"},
        supports_check_mode=True,
    )
    runner = JobVM(module)
    try:
        runner.run()
    except (EntropyLibvirtError, libvirt.libvirtError) as exc:
        action = "removing" if module.params["state"] == "absent" else "defining"
        module.fail_libvirt(exc, "%s VM %r of job %r" % (action, runner.name, runner.job), runner.uri)


if __name__ == "__main__":
    main()
