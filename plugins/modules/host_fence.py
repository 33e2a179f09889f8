#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_fence
short_description: Record in the cluster store that a failed hypervisor is fenced, or clear the record
version_added: 0.1.0
description:
  - Records (O(state=present)) or clears (O(state=absent)) the fence of a hypervisor in the cluster store, where every job
    sees it, a volume of the libvirt storage pool O(pool) on the cluster's shared storage, reached through the first of
    O(uris) that answers (the store of M(entropy.cluster.run_lock) and M(entropy.cluster.host_maintenance)).
  - The module does not stop the hypervisor itself; the P(entropy.cluster.fence#role) role runs the user's fencing hook
    (power off through IPMI or Redfish, say) and then this module. Record a fence only once the hypervisor's VMs are
    certainly stopped.
  - With O(uri), the module first checks what it can - when the hypervisor still answers there, none of its VMs may be
    active - and fails, recording nothing, when some are.
  - While a hypervisor is fenced, the entropy.cluster.libvirt_cluster inventory (with its C(store_pool) option) puts it in
    group C(fenced) with C(entropy_fenced), and the model it exports leaves out that hypervisor and its VMs, even when it
    answers again, until the record is cleared.
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
      - In check mode the store and the hypervisor are read, not changed; the module reports whether the record would be
        written or cleared.
  diff_mode:
    support: full
    details:
      - The diff shows the fence record before and after.
  platform:
    support: full
    platforms: posix
options:
  host:
    description:
      - Inventory name of the hypervisor, as in the C(hypervisors) option of the entropy.cluster.libvirt_cluster inventory.
    type: str
    required: true
  state:
    description:
      - V(present) records that the hypervisor is fenced; V(absent) clears the record (the hypervisor was repaired and its
        old VM definitions dealt with).
    type: str
    choices: [present, absent]
    default: present
  uri:
    description:
      - libvirt URI of the fenced hypervisor. When given with O(state=present), the module checks there that no VM is
        active before it records the fence (a hypervisor that does not answer passes).
    type: str
  method:
    description: How the hypervisor was fenced (the hook), kept in the record, for example C(ipmi power off).
    type: str
  reason:
    description: Why it was fenced, kept in the record. Only used with O(state=present).
    type: str
  by:
    description:
      - Who fenced it, for example C(awx job {{ awx_job_id }}). Only used with O(state=present).
      - Defaults to C(<user>@<hostname>).
    type: str
requirements:
  - libvirt-python on the host that runs the module (usually the controller)
seealso:
  - module: entropy.cluster.host_probe
  - module: entropy.cluster.host_maintenance
"""

EXAMPLES = r"""
- name: hv02 was powered off by the fencing hook; record it where every job sees it
  entropy.cluster.host_fence:
    host: hv02
    uri: qemu+tcp://hv02/system
    method: ipmi power off
    reason: declared failed by entropy.cluster.host_probe
    uris: ["qemu+tcp://hv01/system", "qemu+tcp://hv03/system"]
  delegate_to: localhost
  run_once: true

- name: hv02 is repaired and its old VM definitions removed; it may take VMs again
  entropy.cluster.host_fence:
    host: hv02
    state: absent
    uris: ["qemu+tcp://hv01/system", "qemu+tcp://hv03/system"]
  delegate_to: localhost
  run_once: true
"""

RETURN = r"""
host:
  description: The hypervisor.
  returned: always
  type: str
  sample: hv02
fence:
  description: The fence record after the module ran; null when the hypervisor is not fenced.
  returned: success
  type: dict
  sample:
    since: 1764171192.53
    since_iso: "2026-11-26T15:33:12+00:00"
    by: awx job 42
    reason: declared failed by entropy.cluster.host_probe
    method: ipmi power off
    host_answered: false
  contains:
    since:
      description: When the fence was recorded, in seconds since the epoch.
      type: float
    since_iso:
      description: When the fence was recorded, ISO 8601 in UTC.
      type: str
    by:
      description: Who fenced it.
      type: str
    reason:
      description: Why; null when none was given.
      type: str
    method:
      description: How; null when none was given.
      type: str
    host_answered:
      description: Whether the hypervisor answered the check before the record (with no VM active); null without O(uri).
      type: bool
previous:
  description: The fence record before the module ran; null when there was none.
  returned: success
  type: dict
  sample: null
host_answered:
  description: Whether the hypervisor answered at O(uri) this time; null when not checked.
  returned: always
  type: bool
  sample: false
active_vms:
  description: The VMs still active on a hypervisor that is not fenced (the module failed).
  returned: when the hypervisor still runs VMs
  type: list
  elements: str
  sample: [web01]
store:
  description: Where the record lives.
  returned: always
  type: dict
  sample:
    pool: entropy-cluster
    volume: entropy.fence.hv02
    via: qemu+tcp://hv01/system
  contains:
    pool:
      description: The storage pool of the store.
      type: str
    volume:
      description: The volume that holds the record.
      type: str
    via:
      description: The hypervisor URI through which the store was reached; null when none answered.
      type: str
"""

from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import STORE_SPEC
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import CONNECT_TIMEOUT_SPEC, CREDENTIALS_SPEC, EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._fence import HostFence


def main() -> None:
    module = EntropyModule(
        argument_spec=dict(
            host=dict(type="str", required=True),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            uri=dict(type="str"),
            method=dict(type="str"),
            reason=dict(type="str"),
            by=dict(type="str"),
            **STORE_SPEC,
            **CREDENTIALS_SPEC,
            **CONNECT_TIMEOUT_SPEC,
        ),
        supports_check_mode=True,
    )
    HostFence(module).run()


if __name__ == "__main__":
    main()
