#!/usr/bin/python
# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: vm_state
short_description: Start, pause, save, shut down or destroy a libvirt VM
version_added: 0.1.0
description:
  - Brings one VM (libvirt domain) on one hypervisor into a run state, declaratively.
  - V(running) resumes a paused VM, restores a saved VM (managed save) or boots a shut-off VM.
  - V(paused) suspends the VM in memory (it keeps its memory on the host, its vCPUs stop).
  - V(saved) writes the VM's memory to disk on the hypervisor (libvirt managed save) and stops it;
    the next V(running) continues where it stopped. A VM paused by a user is first resumed and paused again at once
    (the guest runs a few milliseconds, RV(reactivation_ms)), because QEMU before 10.0 leaves the disks of a VM that arrived
    paused by live migration inactive, and saving it then aborts QEMU. A VM paused for another reason (an I/O error)
    is never resumed; it ran on this host, so its disks are active and it is saved as it is.
  - V(shutdown) asks the guest to shut down (ACPI) and waits up to O(shutdown_timeout) seconds;
    with O(force=true) a VM still running after that is destroyed, otherwise the module fails.
  - V(destroyed) stops the VM at once (pulls the plug).
  - V(running) and V(paused) refuse to boot a definition that entropy.cluster.vm_image marked as saved to shared storage
    (the memory state would be lost and a later restore would run a second copy); restore it with entropy.cluster.vm_image.
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
      - The diff shows the VM's state before and after.
options:
  name:
    description:
      - Name of the VM (libvirt domain) on the hypervisor O(uri).
    type: str
    required: true
  state:
    description:
      - The state the VM should be in. See the description for what each state means.
      - A saved VM (managed save image) counts as not running for V(destroyed), which discards the
        saved memory image. V(shutdown) of a saved VM fails unless O(force=true), which discards it too.
      - A crashed VM must be V(destroyed) before it can be started again.
    type: str
    required: true
    choices: [running, paused, saved, shutdown, destroyed]
  shutdown_timeout:
    description:
      - Seconds to wait for the guest to power off after the shutdown request (O(state=shutdown)),
        from V(0) to V(604800) (one week).
    type: int
    default: 120
  force:
    description:
      - With O(state=shutdown), destroy the VM when the guest has not powered off after O(shutdown_timeout)
        seconds (guests without ACPI support never do), and discard a managed save image.
    type: bool
    default: false
notes:
  - Every transition is idempotent; a VM already in the requested state is left alone (C(changed=false)).
  - A transient VM (not persistent) disappears from libvirt when it stops; the module then reports
    RV(state=undefined).
seealso:
  - module: entropy.cluster.vm_info
  - module: entropy.cluster.vm_migrate
"""

EXAMPLES = r"""
- name: Make sure web01 runs on hv01
  entropy.cluster.vm_state:
    uri: qemu+tcp://hv01/system
    name: web01
    state: running

- name: Suspend web01 to disk before host maintenance
  entropy.cluster.vm_state:
    uri: qemu+tcp://hv01/system
    name: web01
    state: saved

- name: Shut down gracefully, destroy if the guest ignores ACPI for 60 s
  entropy.cluster.vm_state:
    uri: qemu+tcp://hv01/system
    name: web01
    state: shutdown
    shutdown_timeout: 60
    force: true
"""

RETURN = r"""
vm:
  description: Name of the VM.
  returned: always
  type: str
  sample: web01
uri:
  description: URI of the hypervisor.
  returned: always
  type: str
  sample: qemu+tcp://hv01/system
previous_state:
  description:
    - State of the VM before the module ran (V(running), V(paused), V(saved), V(shutoff), V(crashed), V(pmsuspended), ...).
  returned: always
  type: str
  sample: shutoff
state:
  description:
    - State of the VM when the module finished; in check mode, the state it would have.
    - V(undefined) when a transient VM went away when it stopped.
  returned: always
  type: str
  sample: running
reactivated_disks:
  description: True when a VM paused by a user was resumed and paused again at once before it was saved, to re-activate its disks.
  returned: when O(state=saved)
  type: bool
  sample: false
reactivation_ms:
  description: Milliseconds between the resume and the pause calls (an upper bound of how long the guest ran).
  returned: when RV(reactivated_disks) is true
  type: float
  sample: 9.4
error_kind:
  description: Class of the failure, for example V(invalid_argument) (a parameter out of range or empty, nothing was done).
  returned: on failure
  type: str
  sample: invalid_argument
forced:
  description: True when the VM did not shut down in time and was destroyed (O(force=true)).
  returned: when O(state=shutdown)
  type: bool
  sample: false
"""

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import EntropyLibvirtError
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._vm_state import VmState
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt


def main() -> None:
    module = LibvirtModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", required=True, choices=["running", "paused", "saved", "shutdown", "destroyed"]),
            shutdown_timeout=dict(type="int", default=120),
            force=dict(type="bool", default=False),
        ),
        supports_check_mode=True,
    )
    runner = VmState(module)
    try:
        runner.run()
    except (EntropyLibvirtError, libvirt.libvirtError) as exc:
        module.fail_libvirt(exc, "changing the state of VM %r" % runner.name, runner.uri)


if __name__ == "__main__":
    main()
