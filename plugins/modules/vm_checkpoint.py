#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_checkpoint
short_description: Take a consistent checkpoint of a group of VMs across hypervisors
version_added: 0.1.0
description:
  - Pauses every VM of O(vms) at once (the spread between the first pause and the last must stay under O(max_skew_ms),
    else all are resumed and nothing is captured), then captures each one - its memory into a file and each disk
    frozen under a new qcow2 overlay that the VM writes from then on (a libvirt external snapshot without metadata) -
    and only when all are captured resumes those that were running.
  - No VM of the group runs while another is being captured, so the messages in flight between the VMs of a parallel
    application cannot be lost between two VMs' states.
  - Everything goes into O(directory), which every hypervisor must see (shared storage), with a manifest
    C(<checkpoint>.checkpoint.json) that lists, per VM, its memory image and its frozen disks.
  - A checkpoint whose manifest exists is not taken again (idempotent).
  - With O(keep), only the newest O(keep) checkpoints of the group (the manifests of O(directory) with exactly these VMs) are
    kept; each older one is deleted, oldest first, its disk overlays merged back into the disk below them in the running
    VMs (libvirt block commit), so the newer checkpoints stay whole, then its memory images and manifest removed. A
    checkpoint whose overlays the VMs no longer run on (restored from a checkpoint, say) is kept and reported in
    RV(kept_past_retention).
  - Restarting VMs from a checkpoint after a host failure is M(entropy.cluster.vm_recover).
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
      - In check mode the VMs are looked up and nothing is paused, written or deleted; the module reports whether it would take the
        checkpoint and which checkpoints the retention would delete.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  vms:
    description:
      - The group, VM name to the libvirt URI of the hypervisor it runs on, for example
        C({{ dict(groups['job_42'] | zip(groups['job_42'] | map('extract', hostvars, 'entropy_hypervisor_uri'))) }})
        with the entropy.cluster.libvirt_cluster inventory.
    type: dict
    required: true
  checkpoint:
    description: Name of the checkpoint (letters, digits, C(_), C(.), C(-); up to 100 characters). Required unless O(take=false).
    type: str
  directory:
    description:
      - Directory for the memory images, the overlays and the manifest, on storage every hypervisor sees, at the same path
        on each. It must exist.
    type: path
    required: true
  keep:
    description:
      - Keep the newest O(keep) checkpoints of this group, this one included, and delete the older ones. Unset, none is deleted.
    type: int
  take:
    description: V(false) only applies the retention, without taking a checkpoint (O(checkpoint) is then not needed).
    type: bool
    default: true
  max_skew_ms:
    description: Largest spread, in milliseconds, between the first VM paused and the last.
    type: float
    default: 1000
requirements:
  - libvirt-python on the host that runs the module (usually the controller)
notes:
  - After a checkpoint each VM runs on a new overlay over its frozen disk; libvirt refuses a live migration of a VM whose disks
    are not on storage both hypervisors see.
seealso:
  - module: entropy.cluster.vm_snapshot
"""

EXAMPLES = r"""
- name: Checkpoint the two VMs of job 42 together
  entropy.cluster.vm_checkpoint:
    vms:
      job42-a: qemu+tcp://hv01/system
      job42-b: qemu+tcp://hv02/system
    checkpoint: job42-0001
    directory: /srv/shared/checkpoints
  delegate_to: localhost
  run_once: true
  register: ck

- name: Every hour from cron or AWX, keeping the newest 3 (playbook entropy.cluster.checkpoint does this)
  entropy.cluster.vm_checkpoint:
    vms:
      job42-a: qemu+tcp://hv01/system
      job42-b: qemu+tcp://hv02/system
    checkpoint: "job42-{{ now(utc=true, fmt='%Y%m%dT%H%M%S') }}"
    directory: /srv/shared/checkpoints
    keep: 3
"""

RETURN = r"""
checkpoint:
  description: The checkpoint's name.
  returned: always
  type: str
  sample: job42-0001
manifest:
  description: Path of the checkpoint's manifest.
  returned: always
  type: str
  sample: /srv/shared/checkpoints/job42-0001.checkpoint.json
pause_ms:
  description: How long the group was paused, from the first pause to the last resume, in milliseconds; null when not taken now.
  returned: always
  type: float
  sample: 3120.5
skew_ms:
  description: Spread between the first pause and the last, in milliseconds; null when not taken now.
  returned: always
  type: float
  sample: 12.3
timeline:
  description: When (epoch seconds) all were paused, the first capture began, all were captured, and the first resume came.
  returned: when the checkpoint was taken now
  type: dict
  sample: {paused_by: 1764171192.1, captures_from: 1764171192.1, captured_by: 1764171195.2, resumes_from: 1764171195.2}
deleted:
  description: Checkpoints of the group deleted by the retention (in check mode, those it would delete).
  returned: always
  type: list
  elements: str
  sample: [job42-20260101T000000]
kept_past_retention:
  description: Checkpoints older than the retention that could not be deleted, with why.
  returned: always
  type: list
  elements: str
vms:
  description: Per VM, its hypervisor URI, the memory image, its size in bytes, and its disks (frozen file, new overlay).
  returned: always
  type: dict
  sample:
    job42-a:
      uri: qemu+tcp://hv01/system
      was_running: true
      memory_file: /srv/shared/checkpoints/job42-a.job42-0001.mem
      memory_bytes: 1587816
      disks: [{target: vda, frozen: /srv/shared/images/job42-a.qcow2, overlay: /srv/shared/checkpoints/job42-a.job42-0001.vda.qcow2}]
"""

import json
import os
import re

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import HAS_LIBVIRT, EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import CONNECT_TIMEOUT_SPEC, CREDENTIALS_SPEC, EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._checkpoint import GroupCheckpoint, Retention, manifest_path


def main() -> None:
    module = EntropyModule(
        argument_spec=dict(
            vms=dict(type="dict", required=True),
            checkpoint=dict(type="str"),
            directory=dict(type="path", required=True),
            keep=dict(type="int"),
            take=dict(type="bool", default=True),
            max_skew_ms=dict(type="float", default=1000),
            **CREDENTIALS_SPEC,
            **CONNECT_TIMEOUT_SPEC,
        ),
        required_if=[("take", True, ("checkpoint",))],
        supports_check_mode=True,
    )
    params = module.params
    if not HAS_LIBVIRT:
        module.fail("the Python module 'libvirt' (libvirt-python) is not installed: pip install libvirt-python", "missing_library")
    name = params["checkpoint"]
    if name is not None and not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$", name):
        module.fail("checkpoint %r: use letters, digits, '_', '.' and '-' (up to 100 characters)" % name, "config")
    if not params["vms"] or any(not isinstance(uri, str) or not uri for uri in params["vms"].values()):
        module.fail("vms: give each VM of the group the libvirt URI of its hypervisor (VM name: URI)", "config")
    if params["keep"] is not None and params["keep"] < 1:
        module.fail("keep must be at least 1 (the newest checkpoint), got %d" % params["keep"], "config")
    if not os.path.isdir(params["directory"]):
        module.fail("directory %s does not exist; create it on storage every hypervisor sees" % params["directory"], "config")
    manifest = manifest_path(params["directory"], name) if name else None
    module.result.update(checkpoint=name, manifest=manifest, pause_ms=None, skew_ms=None, vms={}, deleted=[], kept_past_retention=[])
    changed = False
    if not params["take"]:
        pass
    elif os.path.exists(manifest):
        with open(manifest, encoding="utf-8") as handle:
            module.result["vms"] = public(json.load(handle).get("vms", {}))
    else:
        group = GroupCheckpoint(params["vms"], name, params["directory"], params["max_skew_ms"], params["auth_username"],
                                params["auth_password"], params.get("connect_timeout"))
        try:
            group.connect()
            if not module.check_mode:
                taken = group.run()
                module.result.update(vms=public(taken["vms"]), pause_ms=taken["pause_ms"], skew_ms=taken["skew_ms"],
                                     timeline=taken["timeline"])
        except EntropyLibvirtError as exc:
            group.close()
            module.fail(exc.message, exc.kind)
        group.close()
        changed = True
    if params["keep"] is not None:
        # in check mode the checkpoint it would take counts among the newest
        retention = Retention(params["vms"], params["directory"], params["keep"] - (1 if changed and module.check_mode else 0),
                              params["auth_username"], params["auth_password"], params.get("connect_timeout"))
        try:
            deleted, kept = retention.run(module.check_mode)
        except EntropyLibvirtError as exc:
            module.fail(exc.message, exc.kind, changed=changed)
        module.result.update(deleted=deleted, kept_past_retention=kept)
        changed = changed or bool(deleted)
    module.exit(changed=changed)


def public(vms: dict) -> dict:
    """The manifest's VMs without their definitions (long, and in the manifest for vm_recover)."""
    return {vm: {k: v for k, v in entry.items() if k != "definition"} for vm, entry in vms.items()}


if __name__ == "__main__":
    main()
