#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: host_probe
short_description: Tell which hypervisors have failed, after repeated failed probes over a grace period
version_added: 0.1.0
description:
  - Probes every hypervisor of O(hypervisors) at once (a read-only libvirt connection and one call), and again every
    O(interval) seconds those that did not answer, until each is decided.
  - A hypervisor is declared failed only after O(probes) failed probes in a row whose first is at least O(grace) seconds
    old, so one lost packet, a slow answer or a daemon restart never starts a fencing or a recovery. A hypervisor that
    answers again within the grace period is up, with C(came_back) in its entry of RV(hosts).
  - Each probe has its own timeout, O(probe_timeout); a hypervisor that stops answering without refusing (powered off,
    cable pulled, daemon stopped) costs that long per probe, never the system's TCP timeout. libvirt itself has no
    connect timeout.
  - Read-only; never changes anything. The result feeds the P(entropy.cluster.fence#role) role, which fences the
    failed hypervisors.
author:
  - entropy.cluster contributors (!UNKNOWN)
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
  - entropy.cluster.connection.module_credentials
attributes:
  check_mode:
    support: full
    details:
      - The module only reads; it probes in check mode too.
  diff_mode:
    support: none
  platform:
    support: full
    platforms: posix
options:
  hypervisors:
    description:
      - The hypervisors to probe, inventory name to libvirt URI, for example
        C({{ dict(groups['hypervisors'] | zip(groups['hypervisors'] | map('extract', hostvars, 'entropy_uri'))) }})
        with the entropy.cluster.libvirt_cluster inventory.
    type: dict
    required: true
  probes:
    description: Failed probes in a row before a hypervisor is declared failed.
    type: int
    default: 3
  interval:
    description: Seconds between two probes of a hypervisor that did not answer.
    type: float
    default: 2
  grace:
    description:
      - Seconds since the first failed probe before a hypervisor may be declared failed (with O(probes) failed probes).
        Detection takes about O(grace) plus one O(probe_timeout).
    type: float
    default: 10
  probe_timeout:
    description: Seconds one probe may take (connection and call); a probe that takes longer has failed.
    type: float
    default: 5
requirements:
  - libvirt-python on the host that runs the module (usually the controller)
notes:
  - The module reports; it never fails because a hypervisor failed. Test RV(failed_hosts).
seealso:
  - module: entropy.cluster.host_fence
  - module: entropy.cluster.host_info
"""

EXAMPLES = r"""
- name: Which hypervisors are down? (3 failed probes over at least 10 s, 5 s per probe)
  entropy.cluster.host_probe:
    hypervisors: "{{ dict(groups['hypervisors'] | zip(groups['hypervisors'] | map('extract', hostvars, 'entropy_uri'))) }}"
    probes: 3
    interval: 2
    grace: 10
    probe_timeout: 5
  delegate_to: localhost
  run_once: true
  register: probe

- name: Fence them
  ansible.builtin.include_role:
    name: entropy.cluster.fence
  vars:
    entropy_fence_hosts: "{{ probe.failed_hosts }}"
  when: probe.failed_hosts | length > 0
"""

RETURN = r"""
failed_hosts:
  description: The hypervisors declared failed, in name order.
  returned: always
  type: list
  elements: str
  sample: [hv02]
up_hosts:
  description: The hypervisors that answered, in name order.
  returned: always
  type: list
  elements: str
  sample: [hv01, hv03]
hosts:
  description: What the probes saw of each hypervisor.
  returned: always
  type: dict
  sample:
    hv02:
      uri: qemu+tcp://hv02/system
      status: failed
      probes: 6
      failed_probes: 6
      failed_for_seconds: 12.1
      last_error: "connecting to libvirt on qemu+tcp://hv02/system failed: no answer within 5 s (connect_timeout) ..."
      came_back: false
      decided_after_seconds: 12.1
  contains:
    uri:
      description: The URI probed.
      type: str
    status:
      description: V(up) or V(failed).
      type: str
    probes:
      description: Probes made.
      type: int
    failed_probes:
      description: Failed probes in a row at the end (0 for a hypervisor that is up).
      type: int
    failed_for_seconds:
      description: Seconds from the first failed probe in a row to the last probe.
      type: float
    last_error:
      description: The last failed probe's error; null when none failed.
      type: str
    came_back:
      description: True when the hypervisor failed probes and then answered within the grace period.
      type: bool
    decided_after_seconds:
      description: Seconds from the start of the module to the decision.
      type: float
elapsed_seconds:
  description: Seconds the probing took.
  returned: always
  type: float
  sample: 12.2
"""

import time

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import HAS_LIBVIRT
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import CREDENTIALS_SPEC, EntropyModule
from ansible_collections.entropy.cluster.plugins.module_utils._host_probe import FAILED, UP, check_settings, watch


def main() -> None:
    module = EntropyModule(
        argument_spec=dict(
            hypervisors=dict(type="dict", required=True),
            probes=dict(type="int", default=3),
            interval=dict(type="float", default=2),
            grace=dict(type="float", default=10),
            probe_timeout=dict(type="float", default=5),
            **CREDENTIALS_SPEC,
        ),
        supports_check_mode=True,
    )
    params = module.params
    if not HAS_LIBVIRT:
        module.fail("the Python module 'libvirt' (libvirt-python) is not installed: pip install libvirt-python", "missing_library")
    problem = check_settings(params["probes"], params["interval"], params["grace"], params["probe_timeout"])
    bad = sorted(str(name) for name, uri in params["hypervisors"].items() if not isinstance(uri, str) or not uri.strip())
    if bad:
        problem = "hypervisors: give each hypervisor its libvirt URI as a string (none for %s)" % ", ".join(bad)
    if problem:
        module.fail(problem, "config")
    started = time.monotonic()
    states = watch(params["hypervisors"], params["probes"], params["interval"], params["grace"], params["probe_timeout"],
                   params["auth_username"], params["auth_password"])
    module.exit(failed_hosts=[name for name, s in states.items() if s.status == FAILED],
                up_hosts=[name for name, s in states.items() if s.status == UP],
                hosts={name: s.as_dict() for name, s in states.items()},
                elapsed_seconds=round(time.monotonic() - started, 3))


if __name__ == "__main__":
    main()
