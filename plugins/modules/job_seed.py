#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: job_seed
short_description: Give a job VM its user's environment through a cloud-init NoCloud seed volume
version_added: 0.1.0
description:
  - Makes the seed volume of one job VM present (with this content) or absent in a libvirt storage pool. It is an ISO 9660
    volume labelled C(cidata), a cloud-init NoCloud seed. Its C(meta-data) holds the instance id and the host name;
    its C(user-data) (C(#cloud-config)) holds the owner's SSH key, the owner's NFS share (mounted on
    C(/mnt/entropy-share)) and the job's command, run by C(runcmd) in the share, its output written to
    C(<vm_name>.out) and its exit status to C(<vm_name>.exit) in the share (the exit file last).
  - The same values are in plain files under C(entropy-job/) of the volume, for a guest without cloud-init (the
    collection's lab guest reads those).
  - The volume is built on the controller (Python, no external tool) and uploaded through libvirt's storage API, so
    it works on a remote hypervisor too.
  - With O(domain), the seed is also attached (a read-only virtio disk) to that VM's persistent definition; the guest
    reads it when it boots.
  - The VM name, key, command and share are taken literally; they are data in the seed (YAML written by a dumper),
    never templated, never part of a shell script's text.
author:
  - entropy.cluster contributors (!UNKNOWN)
requirements:
  - pycdlib
extends_documentation_fragment:
  - entropy.cluster.connection
  - entropy.cluster.attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows the files of the seed before and after.
options:
  pool:
    description:
      - Name of the active libvirt storage pool the seed volume is (or goes) in.
    type: str
    required: true
  name:
    description:
      - Name of the seed volume in O(pool), for example C(job1-1-seed.iso). Taken literally.
    type: str
    required: true
  vm_name:
    description:
      - The job VM's name; its result files in the share are named after it. No C(/), no newline.
      - Required with O(state=present).
    type: str
  hostname:
    description:
      - Host name of the VM. Default, O(vm_name) made a valid host name (lower case letters, digits, C(-)).
    type: str
  ssh_key:
    description:
      - The owner's SSH public key (one line), installed for login. Required with O(state=present).
    type: str
  command:
    description:
      - The job's command, run by C(sh) in the share. Required with O(state=present).
    type: str
  nfs_server:
    description:
      - Host name or address of the NFS server of the owner's share. Required with O(state=present).
    type: str
  nfs_path:
    description:
      - Absolute path of the owner's share on the NFS server (NFS 4.1). Required with O(state=present).
    type: str
  domain:
    description:
      - A defined VM to attach the seed to (its persistent definition), if it is not attached yet.
    type: str
  state:
    description:
      - V(present) makes the volume hold this seed (rewritten when its content differs); V(absent) deletes it.
    type: str
    default: present
    choices: [present, absent]
"""

EXAMPLES = r"""
- name: The seed of job analysis-42's first VM, attached to it
  entropy.cluster.job_seed:
    uri: qemu+ssh://root@hv01/system
    pool: images
    name: analysis-42-1-seed.iso
    vm_name: analysis-42-1
    ssh_key: "{{ lookup('file', 'alice.pub') }}"
    command: ./run.sh > result.txt
    nfs_server: storage01
    nfs_path: /home/alice/analysis-42
    domain: analysis-42-1

- name: Remove it when the job is over
  entropy.cluster.job_seed:
    uri: qemu+ssh://root@hv01/system
    pool: images
    name: analysis-42-1-seed.iso
    state: absent
"""

RETURN = r"""
uri:
  description: URI of the hypervisor.
  returned: always
  type: str
  sample: qemu+ssh://root@hv01/system
pool:
  description: The storage pool.
  returned: always
  type: str
  sample: images
name:
  description: The volume's name.
  returned: always
  type: str
  sample: analysis-42-1-seed.iso
state:
  description: V(present) or V(absent) when the module finished (in check mode, what it would be).
  returned: always
  type: str
  sample: present
path:
  description: Path of the seed volume on the hypervisor (not known before it is created in check mode).
  returned: when the volume exists or existed
  type: str
  sample: /var/lib/libvirt/images/analysis-42-1-seed.iso
hostname:
  description: The VM's host name in the seed.
  returned: when O(state=present)
  type: str
  sample: analysis-42-1
instance_id:
  description: cloud-init's instance id (it changes with the content, so cloud-init applies a new seed).
  returned: when O(state=present)
  type: str
  sample: entropy-8bbcfc8d56fe0250
files:
  description: The files of the seed volume.
  returned: when O(state=present)
  type: list
  elements: str
  sample: [meta-data, user-data, entropy-job/command]
attached_to:
  description: The domain the seed is attached to.
  returned: when O(domain) is given and O(state=present)
  type: str
  sample: analysis-42-1
error_kind:
  description:
    - Class of the failure, for example V(invalid_argument) (a value that cannot go into a seed), V(no_pool),
      V(pool_inactive), V(no_domain), V(no_target).
  returned: on failure
  type: str
  sample: invalid_argument
"""

from ansible.module_utils.basic import missing_required_lib

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._job_seed import HAS_PYCDLIB, PYCDLIB_IMPORT_ERROR, JobSeedVolume
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt


def main() -> None:
    module = LibvirtModule(
        argument_spec=dict(
            pool=dict(type="str", required=True),
            name=dict(type="str", required=True),
            vm_name=dict(type="str"),
            hostname=dict(type="str"),
            ssh_key=dict(type="str", no_log=False),
            command=dict(type="str"),
            nfs_server=dict(type="str"),
            nfs_path=dict(type="str"),
            domain=dict(type="str"),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_if=[("state", "present", ["vm_name", "ssh_key", "command", "nfs_server", "nfs_path"])],
        supports_check_mode=True,
    )
    if not HAS_PYCDLIB:
        module.fail_json(msg=missing_required_lib("pycdlib"), exception=str(PYCDLIB_IMPORT_ERROR))
    runner = JobSeedVolume(module, libvirt)
    try:
        runner.run()
    except (EntropyLibvirtError, libvirt.libvirtError) as exc:
        module.fail_libvirt(exc, "making job seed %r in pool %r" % (runner.name, runner.pool_name), runner.uri)


if __name__ == "__main__":
    main()
