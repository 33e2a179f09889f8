#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: wait_actions
short_description: Wait for the async actions of a plan step, printing their progress
version_added: 0.1.0
description:
  - Waits until every async job in O(jobs) (the registered results of tasks started with C(async) and C(poll=0)) has
    finished, reading each job's results file as M(ansible.builtin.async_status) does, and returns their results.
  - While it waits it prints progress, not failures - a line when it starts (how many actions), one per running
    migration whose progress changed (percent of the memory sent and MiB left, read from the libvirt job on the
    migration's source, at most every O(progress_interval) seconds), and one per action that finishes (C(done), or
    C(FAILED) with the module's message, and how many of the step's actions have finished). An until-loop over
    M(ansible.builtin.async_status) prints C(FAILED - RETRYING) on every poll instead.
  - Fails when an action failed or did not finish within O(timeout) seconds; RV(results) then says which, and the
    others' results are complete (it never stops waiting early).
  - The P(entropy.cluster.apply_plan#role) role waits for every step with it. It runs on the controller only
    (with C(delegate_to) V(localhost)), where the plan's actions run; this module's code is an action plugin.
author: entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
attributes:
  action:
    support: full
  async:
    support: none
  bypass_host_loop:
    support: none
  become:
    support: none
  connection:
    support: partial
    details:
      - Only the local connection - it reads the jobs' results files on the controller, where the plan's actions run.
  delegation:
    support: full
    details:
      - Run it with C(delegate_to) V(localhost), as the actions it waits for.
  check_mode:
    support: full
    details:
      - Nothing changes either way; in check mode the plan's actions are not started, so there is nothing to wait for.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  jobs:
    description:
      - The start results of the async tasks, for example C(started.results) of a loop with C(async) and C(poll=0).
        Each needs C(ansible_job_id) and C(results_file); C(item), the plan action, names it in the progress lines
        (C(action), C(vm), and for a migration C(from) and C(to)).
      - A start result without C(ansible_job_id) (a start that failed) is left out.
    type: list
    elements: dict
    required: true
  uris:
    description:
      - Hypervisor name -> libvirt URI, to read the progress of each migration on its source. Without the source's URI
        a migration's line only says it runs.
      - Read with the credentials of E(ENTROPY_LIBVIRT_USERNAME) and E(ENTROPY_LIBVIRT_PASSWORD), read-only.
    type: dict
    default: {}
  timeout:
    description: Stop waiting after this many seconds; the actions still running are reported as failed.
    type: int
    default: 420
  poll_interval:
    description: Seconds between two reads of the jobs.
    type: float
    default: 1.0
  progress_interval:
    description: At most one progress line per migration every this many seconds.
    type: float
    default: 5.0
  label:
    description: Put in front of every line, for example V(step 2 of 3).
    type: str
    default: ""
notes:
  - Progress lines are display output (in AWX, the job's output); the result of the task is RV(results).
seealso:
  - module: ansible.builtin.async_status
  - module: entropy.cluster.vm_migrate
"""

EXAMPLES = r"""
- name: Start the migrations
  entropy.cluster.vm_migrate:
    name: "{{ item.vm }}"
    uri: "{{ uris[item.from] }}"
    destination_uri: "{{ uris[item.to] }}"
  loop: "{{ migrations }}"
  async: 420
  poll: 0
  register: started
  delegate_to: localhost

- name: Wait for them, showing their progress
  entropy.cluster.wait_actions:
    jobs: "{{ started.results }}"
    uris: "{{ uris }}"
    label: step 1 of 2
  delegate_to: localhost
  register: finished
"""

RETURN = r"""
results:
  description:
    - One result per started job, in the order of O(jobs) - the module's own result (as
      M(ansible.builtin.async_status) returns it) with C(ansible_job_id), C(finished) (1; 0 for a job still running
      when the wait ended, which is then failed) and C(item) (the start result, whose own C(item) is the plan action).
  returned: always
  type: list
  elements: dict
  sample:
    - ansible_job_id: j1234.567
      finished: 1
      changed: true
      item: {ansible_job_id: j1234.567, item: {action: migrate, vm: vm2, from: hv1, to: hv3}}
msg:
  description: How many actions finished, or failed.
  returned: always
  type: str
  sample: "step 1 of 2: 2 action(s) finished"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.entropy.cluster.plugins.module_utils._wait_actions import ARGUMENT_SPEC


def main() -> None:
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    module.fail_json(msg="entropy.cluster.wait_actions runs in its action plugin on the controller; this module file only documents it")


if __name__ == "__main__":
    main()
