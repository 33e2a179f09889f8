#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_recover
short_description: Restart a fenced hypervisor's VMs from their latest group checkpoint on the surviving hypervisors
version_added: 0.1.0
description:
  - Refuses unless O(failed_host) is fenced (its fence record in the cluster store, see M(entropy.cluster.host_fence)), and
    refuses while the fenced hypervisor answers with VMs running.
  - The failed hypervisor's VMs are the VMs last seen there by a checkpoint of O(directory)
    (M(entropy.cluster.vm_checkpoint)), the VMs whose definition record in the cluster store names it
    (M(entropy.cluster.vm_definitions)), and the names in O(vms), that run on no surviving hypervisor.
  - Each restarts from the newest checkpoint that holds it and whose files are all there; the other VMs of that checkpoint's
    group roll back with it, on their own hypervisor, so the group restarts from one common state. Each VM is restored from
    its memory image onto a new qcow2 overlay over its frozen disk (the checkpoint stays usable), defined there with
    autostart off.
  - A VM without a usable checkpoint is cold-booted from its newest disk (O(without_checkpoint=cold_boot), with the newest
    definition known of it - its record in the cluster store or a checkpoint manifest) or reported lost
    (O(without_checkpoint=report), or when no definition is known).
  - Without O(placement) the module only assesses (nothing changes) and returns in RV(to_place) the VMs to place, with their
    size and priority, for the solver; the P(entropy.cluster.recover#role) role then asks the solver and runs it again with
    the placement.
  - Right before each group's restore and each VM's restore or cold boot, the fenced hypervisor is asked again (a fresh
    connection, bounded by O(connect_timeout)), since it may come back during the recovery; when it answers and runs the VM
    (or a member of its group), that restore does not happen, the VM's entry in RV(vms) says why and the module fails
    (never two copies). When the fenced hypervisor
    answers again, its inactive definitions of VMs that now run elsewhere are removed, so they cannot be started there.
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
      - In check mode the module assesses (the fence record, what runs where, the checkpoints) and changes nothing.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  failed_host:
    description: The fenced hypervisor, by name (a key of O(hypervisors)).
    type: str
    required: true
  hypervisors:
    description: Every hypervisor of the cluster, name to libvirt URI, the failed one included.
    type: dict
    required: true
  directory:
    description: The checkpoint directory of M(entropy.cluster.vm_checkpoint) (shared storage, the same path on every hypervisor).
    type: path
    required: true
  placement:
    description:
      - VM name to surviving hypervisor, for the VMs of RV(to_place) (the solver's target). Without it the module only assesses.
    type: dict
  vms:
    description: Names of VMs known to have run on the failed hypervisor besides those its checkpoints show.
    type: list
    elements: str
    default: []
  without_checkpoint:
    description: What happens to a VM without a usable checkpoint.
    type: str
    choices: [report, cold_boot]
    default: report
  pool:
    description: The cluster store's libvirt storage pool, where the fence record is read.
    type: str
    default: entropy-cluster
requirements:
  - libvirt-python and qemu-img on the host that runs the module (usually the controller, which must see O(directory))
seealso:
  - module: entropy.cluster.vm_checkpoint
  - module: entropy.cluster.host_fence
"""

EXAMPLES = r"""
- name: What would a recovery of hv02 do?
  entropy.cluster.vm_recover:
    failed_host: hv02
    hypervisors: {hv01: "qemu+tcp://hv01/system", hv02: "qemu+tcp://hv02/system", hv03: "qemu+tcp://hv03/system"}
    directory: /srv/shared/checkpoints
  register: assessed

- name: Restart them where the solver placed them
  entropy.cluster.vm_recover:
    failed_host: hv02
    hypervisors: {hv01: "qemu+tcp://hv01/system", hv02: "qemu+tcp://hv02/system", hv03: "qemu+tcp://hv03/system"}
    directory: /srv/shared/checkpoints
    placement: {job42-b: hv03}
"""

RETURN = r"""
vms:
  description:
    - Per VM, what happens to it - V(restore) (from the failed hypervisor, placed by the solver), V(roll_back) (a group member on a
      surviving hypervisor), V(cold_boot), V(lost) or V(kept) - with the checkpoint, its age in seconds, the hypervisor it runs on
      now (C(host)), C(done), when it was restored (C(restored_at), epoch seconds), how long its stop (a rolled-back member) and its
      restore took (C(seconds)), what was lost, C(error) when it was not
      restored, and for a cold boot where its definition came from (C(definition_from)).
  returned: always
  type: dict
  sample:
    job42-b: {action: restore, checkpoint: job42-0007, checkpoint_age_s: 312.4, host: hv03, done: true,
              lost: "its last 312 s of run time (memory and disk since checkpoint job42-0007)"}
to_place:
  description: The VMs the solver must place, with vcpus, memory_mib and priority.
  returned: always
  type: dict
  sample: {job42-b: {vcpus: 2, memory_mib: 4096, priority: 10}}
model_vms:
  description: The VMs of RV(to_place) as entries of the solver's model (state V(saved), no host), to add to the cluster's model.
  returned: always
  type: list
  elements: dict
  sample: [{name: job42-b, host: null, state: saved, cpu: 2.0, vcpus: 2, memory_mib: 4096, priority: 10}]
groups:
  description: Checkpoint name to manifest path, for the groups restarted.
  returned: always
  type: dict
skipped_checkpoints:
  description: Newer checkpoints that could not be used, with what is missing.
  returned: always
  type: dict
fence:
  description: The failed hypervisor's fence record.
  returned: always
  type: dict
unreachable:
  description: Surviving hypervisors that did not answer (their VMs are not seen), name to error.
  returned: always
  type: dict
started_at:
  description: When the module started (epoch seconds).
  returned: always
  type: float
assessed_at:
  description: When the assessment was over and the restores began (epoch seconds).
  returned: success
  type: float
finished_at:
  description: When it finished (epoch seconds).
  returned: success
  type: float
stale_definitions_removed:
  description: VMs whose inactive definition was removed from the fenced hypervisor, which answered again.
  returned: always
  type: list
  elements: str
"""

import time

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import HAS_LIBVIRT, EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import CONNECT_TIMEOUT_SPEC, CREDENTIALS_SPEC, EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._recover import POLICIES, Recovery, check_params


def main() -> None:
    module = EntropyModule(
        argument_spec=dict(
            failed_host=dict(type="str", required=True),
            hypervisors=dict(type="dict", required=True),
            directory=dict(type="path", required=True),
            placement=dict(type="dict"),
            vms=dict(type="list", elements="str", default=[]),
            without_checkpoint=dict(type="str", choices=list(POLICIES), default="report"),
            pool=dict(type="str", default="entropy-cluster"),
            **CREDENTIALS_SPEC,
            **CONNECT_TIMEOUT_SPEC,
        ),
        supports_check_mode=True,
    )
    params = module.params
    started = time.time()
    if not HAS_LIBVIRT:
        module.fail("the Python module 'libvirt' (libvirt-python) is not installed: pip install libvirt-python", "missing_library")
    problem = check_params(params)
    if problem:
        module.fail(problem, "config")
    module.result.update(vms={}, to_place={}, model_vms=[], groups={}, skipped_checkpoints={}, fence=None, stale_definitions_removed=[], unreachable={},
                         started_at=round(started, 2))
    recovery = Recovery(params["failed_host"], params["hypervisors"], params["directory"], params["without_checkpoint"],
                        params["vms"], params["pool"], params["auth_username"], params["auth_password"], params.get("connect_timeout"))
    try:
        recovery.connect()
        assessed = recovery.assess()
        module.result.update(fence=assessed["fence"], to_place=assessed["to_place"], model_vms=assessed["model_vms"], groups=assessed["groups"],
                             skipped_checkpoints=assessed["skipped_checkpoints"], unreachable=assessed["unreachable"],
                             vms={vm: {k: v for k, v in e.items() if k != "definition"} for vm, e in assessed["vms"].items()})
        acts = bool(assessed["groups"] or assessed["to_place"] or assessed["stale_definitions"])
        module.result["assessed_at"] = round(time.time(), 2)
        if module.check_mode or params["placement"] is None:
            recovery.close()
            module.exit(changed=acts and module.check_mode, finished_at=round(time.time(), 2))
        done = recovery.carry_out(assessed, params["placement"])
    except EntropyLibvirtError as exc:
        recovery.close()
        module.fail(exc.message, exc.kind)
    recovery.close()
    module.result.update(vms=done["vms"], stale_definitions_removed=done["stale_definitions_removed"])
    if done["problems"]:
        module.fail("recovery of %s incomplete: %s" % (params["failed_host"], "; ".join(done["problems"])), "recovery", changed=True)
    module.exit(changed=acts, finished_at=round(time.time(), 2))


if __name__ == "__main__":
    main()
