#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: job_record
short_description: Write a job's state into its record in the cluster store
version_added: 0.1.0
description:
  - Keeps one record per job (see the collection's docs/jobs.md) in the cluster store, a volume of the libvirt storage
    pool O(pool) on the cluster's shared storage reached through the first of O(uris) that answers, so that every run
    and every user (M(entropy.cluster.job_status)) sees it while any one hypervisor is down.
  - The record holds the job's state, owner, VMs and their hosts, a message, the submit and update times and the
    history of its states. The first write creates it (one exclusive create); later ones rewrite it.
  - V(done), V(cancelled) and V(failed) are final; writing another state over them fails, naming the job. The write
    that makes the state final adds the time the job ended (C(ended), C(ended_iso)).
  - The playbooks entropy.cluster.submit, entropy.cluster.job_queue and entropy.cluster.cancel write these records.
author:
  - entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - entropy.cluster.connection.module_credentials
  - entropy.cluster.connection.cluster_store
  - entropy.cluster.connection.module_connect_timeout
attributes:
  check_mode:
    support: full
    details:
      - In check mode the store is read, not changed.
  diff_mode:
    support: full
    details:
      - The diff shows the job's state before and after.
  platform:
    support: full
    platforms: posix
options:
  name:
    description: The job's name (taken literally; the record's volume name encodes it).
    type: str
    required: true
  state:
    description: The job's state.
    type: str
    required: true
    choices: [queued, running, done, cancelled, failed]
  owner:
    description: Who submitted the job.
    type: str
  vms:
    description: The job's VMs, each C({name, host}) (host null while queued).
    type: list
    elements: dict
  detail:
    description: What happened last, in one line (the numbers of a queued job, the error of a failed one); the record's C(message).
    type: str
  job:
    description: The validated job file's fields, kept with the record.
    type: dict
  exit_statuses:
    description: VM name -> the exit status of the job's command in it (M(entropy.cluster.job_result)), kept with the record.
    type: dict
  by:
    description: Who writes the record; defaults to C(<user>@<hostname>).
    type: str
requirements:
  - libvirt-python on the host that runs the module (usually the controller)
seealso:
  - module: entropy.cluster.job_status
"""

EXAMPLES = r"""
- name: Job analysis-42 runs
  entropy.cluster.job_record:
    name: analysis-42
    state: running
    owner: alice
    vms: [{name: analysis-42-1, host: hv01}, {name: analysis-42-2, host: hv02}]
    uris: ["qemu+ssh://root@hv01/system", "qemu+ssh://root@hv02/system"]
  delegate_to: localhost
"""

RETURN = r"""
name:
  description: The job.
  returned: always
  type: str
  sample: analysis-42
record:
  description: The record after the module ran (what it would be in check mode).
  returned: success
  type: dict
  sample: {name: analysis-42, state: running, owner: alice, hosts: [hv01, hv02], submitted_iso: "2026-12-03T13:40:00+00:00"}
previous:
  description: The record before; null when there was none.
  returned: success
  type: dict
  sample: null
store:
  description: Where the record lives (pool, volume, and the URI through which the store was reached).
  returned: always
  type: dict
  sample: {pool: entropy-cluster, volume: entropy.job.analysis-42, via: qemu+ssh://root@hv01/system}
error_kind:
  description: Class of the failure, for example V(job_final) (the job is already done, cancelled or failed), V(unreachable).
  returned: on failure
  type: str
  sample: job_final
"""

from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import STORE_SPEC
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import CONNECT_TIMEOUT_SPEC, CREDENTIALS_SPEC, EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._job import STATES, JobRecord


def main() -> None:
    module = EntropyModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", required=True, choices=list(STATES)),
            owner=dict(type="str"),
            vms=dict(type="list", elements="dict"),
            detail=dict(type="str"),
            job=dict(type="dict"),
            exit_statuses=dict(type="dict"),
            by=dict(type="str"),
            **STORE_SPEC,
            **CREDENTIALS_SPEC,
            **CONNECT_TIMEOUT_SPEC,
        ),
        supports_check_mode=True,
    )
    JobRecord(module).run()


if __name__ == "__main__":
    main()
