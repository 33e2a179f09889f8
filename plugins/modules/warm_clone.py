#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: warm_clone
short_description: Run a group of VMs at once as warm clones of one saved base VM
version_added: 0.1.0
description:
  - Warm cloning (SnowFlock's idea on stock libvirt) - a base VM is booted once and saved to a memory image
    (C(virsh save), or M(entropy.cluster.vm_image)); this module restores clones of it, each under its own name, UUID
    and MAC addresses, with its own qcow2 overlay over each writable disk of the base, on the hosts you choose. A clone
    runs with the base's memory at once, without booting.
  - libvirt refuses to restore an image under another UUID through its API, so each clone is restored from its own
    copy of the image whose header carries the clone's definition (libvirt's QEMU save format, version 2; a compressed
    image or another version is refused). The copy is removed after the restore.
  - A clone never boots, so it cannot read a seed at boot; the seed volume given for a clone (M(entropy.cluster.job_seed))
    is hot-plugged into it after the restore as a read-only virtio disk; the guest must watch for it (the lab's guest does).
  - The base must stay shut off while clones exist; its disks are the backing files of their overlays.
  - Idempotent - a clone found running (by its UUID, on any host of the task) is left as it is; a VM of a clone's name
    with another UUID is never touched, the module fails and says so.
  - Clones restored from a save are transient domains (as C(virsh restore) makes them); O(state=absent) destroys them
    (and undefines a clone that was made persistent since) and removes their overlays.
  - The module writes the clones' images next to O(image), so it must run where that directory and the hypervisors see
    the same files (a hypervisor, or a host that mounts the same shared storage).
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
      - The diff lists the clones that run before and after.
options:
  base:
    description:
      - Name of the base VM (defined, shut off) whose save image the clones start from. Taken literally.
    type: str
    required: true
  base_uri:
    description:
      - URI of the hypervisor the base is defined on (default O(uri)).
    type: str
  image:
    description:
      - Path of the base's save image (libvirt's QEMU save format, raw), on storage every clone host sees at that path.
      - Required with O(state=present).
    type: path
  pool:
    description:
      - Name of the active storage pool, on every clone host, where each clone's overlays go (one per writable disk of
        the base, named C(entropy-warm-<clone>-<n>-<digest>.qcow2)). Required when the base has a writable disk.
      - With O(state=absent), the pool the overlays are removed from.
    type: str
  clones:
    description:
      - The clones, each a name and optionally its host, UUID, MAC addresses and seed.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - The clone's VM name. Taken literally (quotes, spaces and braces stay as written).
        type: str
        required: true
      uri:
        description:
          - URI of the hypervisor the clone runs on (default O(uri)).
        type: str
      uuid:
        description:
          - The clone's UUID. Default - derived from the base's UUID and the clone's name (the same on every run).
        type: str
      macs:
        description:
          - One MAC address per NIC of the base, in order. Default - derived from the clone's UUID (C(52:54:00:...)).
        type: list
        elements: str
      seed:
        description:
          - Path, on the clone's host, of a seed volume (M(entropy.cluster.job_seed)) hot-plugged into the clone after
            its restore as a read-only virtio disk (the first free C(vdX) name), which delivers its identity (host
            name, owner's key, address, the job's command).
        type: path
  parallel:
    description:
      - How many clones are restored at the same time (restores on one host run side by side too).
    type: int
    default: 8
  state:
    description:
      - V(present) restores every clone that does not run yet; V(absent) destroys the clones and removes their overlays.
    type: str
    default: present
    choices: [present, absent]
"""

EXAMPLES = r"""
- name: Boot the base once, wait until it is ready, then save it (it stays shut off)
  ansible.builtin.command: virsh -c qemu+ssh://root@hv01/system save job-base /srv/shared/job-base.save
  changed_when: true

- name: Three clones of it on hv01, with the UUIDs and MACs the module derives
  entropy.cluster.warm_clone:
    uri: qemu+ssh://root@hv01/system
    base: job-base
    image: /srv/shared/job-base.save
    pool: jobs
    clones: [{name: job42-1}, {name: job42-2}, {name: job42-3}]

- name: Two clones, one per host, with their identities
  entropy.cluster.warm_clone:
    uri: qemu+ssh://root@hv01/system
    base: job-base
    image: /srv/shared/job-base.save
    pool: jobs
    clones:
      - {name: job42-1, seed: /srv/shared/seeds/job42-1.iso}
      - {name: job42-2, uri: "qemu+ssh://root@hv02/system", seed: /srv/shared/seeds/job42-2.iso}

- name: The job is over - destroy the clones and remove their overlays
  entropy.cluster.warm_clone:
    uri: qemu+ssh://root@hv01/system
    base: job-base
    pool: jobs
    clones:
      - {name: job42-1}
      - {name: job42-2, uri: "qemu+ssh://root@hv02/system"}
    state: absent
"""

RETURN = r"""
base:
  description: The base VM's name.
  returned: always
  type: str
  sample: job-base
base_uri:
  description: URI of the base's hypervisor.
  returned: always
  type: str
  sample: qemu+ssh://root@hv01/system
state:
  description: The requested state.
  returned: success
  type: str
  sample: present
clones:
  description:
    - One entry per clone. C(state) is V(created) (restored by this run; in check mode, would be), V(present) (found
      running, left as it is), V(removed) (destroyed, overlays removed; in check mode, would be), V(absent) (nothing
      to remove) or V(failed).
    - C(timings) (seconds from the start of the restores) has C(image_written_s), C(restored_s) and C(seeded_s).
  returned: always
  type: list
  elements: dict
  sample:
    - name: job42-1
      uri: qemu+ssh://root@hv01/system
      uuid: 2f6a3c1e-7b1d-5d62-9a3e-1c4b7e9f0a21
      macs: ["52:54:00:3a:91:0c"]
      overlays: []
      seed: /srv/shared/seeds/job42-1.iso
      seed_target: vda
      state: created
      timings: {image_written_s: 0.21, restored_s: 0.9, seeded_s: 1.02}
error_kind:
  description:
    - Class of the failure, for example V(no_base) (the base is not defined), V(base_running), V(no_image), V(bad_image)
      (not a libvirt QEMU save image, compressed, another version), V(image_mismatch) (the image is another VM's),
      V(name_taken) (a VM of a clone's name with another UUID), V(uuid_taken), V(duplicate), V(no_pool),
      V(no_base_volume), V(invalid_argument), V(restore_failed).
  returned: on failure
  type: str
  sample: name_taken
"""

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._warm_clone import WarmCloneSet
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt


def main() -> None:
    module = LibvirtModule(
        argument_spec=dict(
            base=dict(type="str", required=True),
            base_uri=dict(type="str"),
            image=dict(type="path"),
            pool=dict(type="str"),
            clones=dict(type="list", elements="dict", required=True, options=dict(
                name=dict(type="str", required=True),
                uri=dict(type="str"),
                uuid=dict(type="str"),
                macs=dict(type="list", elements="str"),
                seed=dict(type="path"),
            )),
            parallel=dict(type="int", default=8),
            state=dict(type="str", default="present", choices=["present", "absent"]),
        ),
        required_if=[("state", "present", ["image"])],
        supports_check_mode=True,
    )
    runner = WarmCloneSet(module, libvirt)
    try:
        runner.run()
    except (EntropyLibvirtError, libvirt.libvirtError) as exc:
        module.fail_libvirt(exc, "warm clones of base %r" % runner.base_name, runner.base_uri)


if __name__ == "__main__":
    main()
