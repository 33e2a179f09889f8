#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_maintenance
short_description: Put a hypervisor in maintenance, or take it out, in the cluster store
version_added: 0.1.0
description:
  - Marks (O(state=present)) or clears (O(state=absent)) a hypervisor's maintenance in the cluster store, where every
    job sees it, a volume of the libvirt storage pool O(pool) on the cluster's shared storage, reached through the first
    of O(uris) that answers (the same store as the cluster run lock of M(entropy.cluster.run_lock)).
  - While a hypervisor is marked, the entropy.cluster.libvirt_cluster inventory (with its C(store_pool) option) gives it
    C(entropy_maintenance) and the model it exports places no VM there, so the consolidate and rebalance playbooks never
    refill it, and a VM still on it is moved off. The evacuate playbook marks the hosts it empties when
    C(entropy_store_pool) is set.
  - The mark is created by one exclusive create; marking a host that is already marked changes nothing and keeps the
    first mark.
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
      - In check mode the store is read, not changed; the module reports whether the mark would be set or cleared.
  diff_mode:
    support: full
    details:
      - The diff shows the mark before and after.
  platform:
    support: full
    platforms: posix
options:
  host:
    description:
      - Inventory name of the hypervisor, as in the C(hypervisors) option of the entropy.cluster.libvirt_cluster
        inventory.
    type: str
    required: true
  state:
    description:
      - V(present) puts the hypervisor in maintenance; V(absent) takes it out.
    type: str
    choices: [present, absent]
    default: present
  reason:
    description:
      - Why the hypervisor is in maintenance, shown to whoever reads the mark. Only used with O(state=present).
    type: str
  by:
    description:
      - Who puts the hypervisor in maintenance, for example C(awx job {{ awx_job_id }}). Only used with O(state=present).
      - Defaults to C(<user>@<hostname>).
    type: str
requirements:
  - libvirt-python on the host that runs the module (usually the controller)
notes:
  - The module does not move any VM; run the evacuate playbook to empty the hypervisor.
seealso:
  - module: entropy.cluster.run_lock
"""

EXAMPLES = r"""
- name: Keep hv02 out of every placement until its firmware is updated
  entropy.cluster.host_maintenance:
    host: hv02
    reason: firmware update, ticket 4711
    # every hypervisor, for example from the libvirt_cluster inventory:
    # "{{ groups['hypervisors'] | map('extract', hostvars, 'entropy_uri') | list }}"
    uris: ["qemu+tcp://hv01/system", "qemu+tcp://hv02/system"]
  delegate_to: localhost
  run_once: true

- name: hv02 may take VMs again
  entropy.cluster.host_maintenance:
    host: hv02
    state: absent
    uris: ["qemu+tcp://hv01/system", "qemu+tcp://hv02/system"]
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
host:
  description: The hypervisor.
  returned: always
  type: str
  sample: hv03
maintenance:
  description: The mark after the module ran; null when the hypervisor is not in maintenance.
  returned: success
  type: dict
  sample:
    since: 1764171192.53
    since_iso: "2026-11-26T15:33:12+00:00"
    by: awx job 42
    reason: firmware update
  contains:
    since:
      description: When the mark was set, in seconds since the epoch.
      type: float
    since_iso:
      description: When the mark was set, ISO 8601 in UTC.
      type: str
    by:
      description: Who set the mark.
      type: str
    reason:
      description: Why; null when none was given.
      type: str
previous:
  description: The mark before the module ran; null when there was none.
  returned: success
  type: dict
  sample: null
store:
  description: Where the mark lives.
  returned: always
  type: dict
  sample:
    pool: entropy-cluster
    volume: entropy.maintenance.hv03
    via: qemu+tcp://hv01/system
  contains:
    pool:
      description: The storage pool of the store.
      type: str
    volume:
      description: The volume that holds the mark.
      type: str
    via:
      description: The hypervisor URI through which the store was reached; null when none answered.
      type: str
"""

from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import STORE_SPEC
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import CONNECT_TIMEOUT_SPEC, CREDENTIALS_SPEC, EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._maintenance import HostMaintenance


def main() -> None:
    module = EntropyModule(
        argument_spec=dict(
            host=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            reason=dict(type="str"),
            by=dict(type="str"),
            **STORE_SPEC,
            **CREDENTIALS_SPEC,
            **CONNECT_TIMEOUT_SPEC,
        ),
        supports_check_mode=True,
    )
    HostMaintenance(module).run()


if __name__ == "__main__":
    main()
