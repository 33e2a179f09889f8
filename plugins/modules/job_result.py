#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: job_result
short_description: Read whether a job's command has ended in all its VMs, and their exit statuses, from the job's share
version_added: 0.1.0
description:
  - Each VM of a job writes the output of the job's command to C(<vm>.out) and then its exit status to C(<vm>.exit) in
    the owner's share (the seed of M(entropy.cluster.job_seed); the exit file last, so its presence says the command
    ended). This module reads the C(<vm>.exit) files of the given VMs in O(share) on the host it runs on.
  - Run it where the shares are seen at the paths the job files give - the NFS server, or a host that mounts the
    shares there (the playbook entropy.cluster.job_queue delegates it to C(entropy_job_share_host), the controller by
    default).
  - Read-only. The job has ended when every VM has an exit status; its record then becomes V(done) (every status 0)
    or V(failed) (naming the VMs and their statuses), as RV(state) says.
  - The VM names are file names (taken literally, never templated or passed to a shell).
author:
  - entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - entropy.cluster.attributes.info_module
attributes:
  platform:
    support: full
    platforms: posix
options:
  job:
    description: The job's name, for the messages.
    type: str
    required: true
  share:
    description: Absolute path of the job's share (the job file's C(share)) on the host the module runs on, taken literally.
    type: str
    required: true
  vms:
    description: The names of the job's VMs.
    type: list
    elements: str
    required: true
seealso:
  - module: entropy.cluster.job_seed
  - module: entropy.cluster.job_record
"""

EXAMPLES = r"""
- name: Has job analysis-42 ended?
  entropy.cluster.job_result:
    job: analysis-42
    share: /home/alice/analysis-42
    vms: [analysis-42-1, analysis-42-2]
  delegate_to: storage01
  register: result
"""

RETURN = r"""
job:
  description: The job.
  returned: always
  type: str
  sample: analysis-42
share:
  description: The share that was read.
  returned: always
  type: str
  sample: /home/alice/analysis-42
ended:
  description: Whether the command has ended in every VM (each has an exit status).
  returned: success
  type: bool
  sample: true
state:
  description: What the job's record becomes - V(running) while it has not ended, else V(done) or V(failed).
  returned: success
  type: str
  sample: done
detail:
  description: One line saying so (the VMs still running the command, or those that failed with their statuses).
  returned: success
  type: str
  sample: the command ended with exit status 0 in all 2 VM(s)
exit_statuses:
  description: VM name -> its command's exit status, null while it runs.
  returned: success
  type: dict
  sample: {analysis-42-1: 0, analysis-42-2: null}
outputs:
  description: VM name -> the path of its command's output in the share.
  returned: success
  type: dict
  sample: {analysis-42-1: /home/alice/analysis-42/analysis-42-1.out}
problems:
  description: Exit files that could not be read or hold no exit status (those VMs count as not ended).
  returned: success
  type: list
  elements: str
  sample: []
error_kind:
  description: Class of the failure, V(no_share) (the share is not a directory on this host).
  returned: on failure
  type: str
  sample: no_share
"""

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._job import JobResult


def main() -> None:
    module = EntropyModule(
        argument_spec=dict(
            job=dict(type="str", required=True),
            share=dict(type="str", required=True),
            vms=dict(type="list", elements="str", required=True),
        ),
        supports_check_mode=True,
    )
    JobResult(module).run()


if __name__ == "__main__":
    main()
