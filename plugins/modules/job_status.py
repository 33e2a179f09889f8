#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: job_status
short_description: The state of one job or of every job, from the cluster store and what libvirt shows
version_added: 0.1.0
description:
  - Reads the job records of the cluster store (see M(entropy.cluster.job_record)) and the VMs of every hypervisor of
    O(hypervisors) whose metadata names a job, and returns one entry per job - its recorded state, owner, hosts and
    times, where each of its VMs is defined and in which state, and the problems seen (a running job's VM that runs
    nowhere, a VM still defined for a finished job, VMs without a record).
  - Read-only; anyone who can read the store and the hypervisors can run it.
author:
  - entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - entropy.cluster.attributes.info_module
  - entropy.cluster.connection.module_credentials
  - entropy.cluster.connection.cluster_store
  - entropy.cluster.connection.module_connect_timeout
attributes:
  platform:
    support: full
    platforms: posix
options:
  name:
    description: The job; every job when not set.
    type: str
  hypervisors:
    description: Hypervisor name -> libvirt URI, read for the jobs' VMs (readonly connections).
    type: dict
    required: true
requirements:
  - libvirt-python on the host that runs the module (usually the controller)
"""

EXAMPLES = r"""
- name: Where is job analysis-42?
  entropy.cluster.job_status:
    name: analysis-42
    hypervisors: {hv01: "qemu+ssh://root@hv01/system", hv02: "qemu+ssh://root@hv02/system"}
    uris: ["qemu+ssh://root@hv01/system", "qemu+ssh://root@hv02/system"]
  delegate_to: localhost
  register: status
"""

RETURN = r"""
jobs:
  description:
    - One entry per job, sorted by name. C(vms) are the VMs libvirt shows, C(recorded_vms) those of the record
      (C({name, host})), C(job) the job file's fields kept in the record, C(priority) and C(submitted) (epoch) what
      the queue orders by, C(exit_statuses) and C(ended_iso) set once the job has ended, C(queue_position) (1 is
      tried first) for a queued job - highest priority first, then the earliest submitted.
  returned: always
  type: list
  elements: dict
  sample:
    - name: analysis-42
      state: running
      owner: alice
      recorded: true
      submitted_iso: "2026-12-03T13:40:00+00:00"
      updated_iso: "2026-12-03T13:40:09+00:00"
      message: null
      hosts: [hv01, hv02]
      vms: [{name: analysis-42-1, host: hv01, state: running}]
      recorded_vms: [{name: analysis-42-1, host: hv01}]
      submitted: 1796305200.0
      priority: 0
      job: {name: analysis-42, owner: alice, vms: 1, share: /home/alice/analysis-42}
      exit_statuses: null
      ended_iso: null
      queue_position: null
      problems: []
unreachable:
  description: Hypervisors that could not be read, with the error (their VMs are not shown).
  returned: always
  type: dict
  sample: {}
store:
  description: The store's pool and the URI through which it was read.
  returned: always
  type: dict
  sample: {pool: entropy-cluster, via: qemu+ssh://root@hv01/system}
"""

from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import STORE_SPEC, StoreError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import CONNECT_TIMEOUT_SPEC, CREDENTIALS_SPEC, EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._job import job_status


def main() -> None:
    module = EntropyModule(
        argument_spec=dict(
            name=dict(type="str"),
            hypervisors=dict(type="dict", required=True),
            **STORE_SPEC,
            **CREDENTIALS_SPEC,
            **CONNECT_TIMEOUT_SPEC,
        ),
        supports_check_mode=True,
    )
    try:
        module.exit(**job_status(module.params))
    except StoreError as exc:
        module.fail(exc.message, exc.kind)


if __name__ == "__main__":
    main()
