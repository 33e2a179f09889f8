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

from typing import NoReturn

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    describe_error,
    find_domain,
    lookup_domain,
)
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import (
    TIMEOUT_MAX_S,
    invalid_parameters,
    is_active,
    libvirt,
    libvirt_call,
    pause_reason,
    reactivate_paused_disks,
    vm_condition,
    wait_for,
)

# Target state -> the condition words that already satisfy it.
SATISFIED = {
    "running": ("running",),
    "paused": ("paused",),
    "saved": ("saved",),
    "shutdown": ("shutoff",),
    "destroyed": ("shutoff",),
}
# What the module reports as the final state in check mode.
RESULT_STATE = {"running": "running", "paused": "paused", "saved": "saved", "shutdown": "shutoff", "destroyed": "shutoff"}


class VmState:
    def __init__(self, module: LibvirtModule) -> None:
        self.module = module
        self.name: str = module.params["name"]
        self.target: str = module.params["state"]
        self.uri = module.uri
        self.result: dict = module.result
        self.result.update(vm=self.name, uri=self.uri)

    def fail(self, msg: str, **extra) -> NoReturn:
        self.module.fail(msg, **extra)

    def call(self, action: str, func, *args):
        return libvirt_call("%s VM %r" % (action, self.name), self.uri, func, *args)

    def check_parameters(self) -> None:
        """Refuse out-of-range numbers and empty strings before connecting (check mode too)."""
        problems = invalid_parameters(
            self.module.params, ranges=dict(shutdown_timeout=(0, TIMEOUT_MAX_S)),
            texts=dict(name="the VM's name", uri="the hypervisor's libvirt URI, or leave uri unset for $LIBVIRT_DEFAULT_URI or qemu:///system"))
        if problems:
            self.module.fail("Cannot change the state of VM %r: %s. Nothing was done." % (self.name, "; ".join(problems)), "invalid_argument")

    def run(self) -> None:
        self.check_parameters()
        if self.target == "saved":
            self.result["reactivated_disks"] = False
        conn = self.module.connect(self.uri)
        dom = lookup_domain(conn, self.name)
        before = vm_condition(dom)
        self.result["previous_state"] = before
        self.result["state"] = before
        if self.target == "shutdown":
            self.result["forced"] = False
        if before in SATISFIED[self.target]:
            self.finish(before, before)
            return
        self.check_possible(before)
        self.result["changed"] = True
        if self.module.check_mode:
            self.finish(before, RESULT_STATE[self.target])
            return
        getattr(self, "to_" + self.target)(dom, before)
        dom = find_domain(conn, self.name)
        after = vm_condition(dom) if dom is not None else "undefined"
        self.finish(before, after)

    def finish(self, before: str, after: str) -> None:
        self.result["state"] = after
        self.module.set_diff(dict(state=before), dict(state=after))
        self.module.exit()

    def check_possible(self, before: str) -> None:
        """Fail before touching anything when the transition cannot be made."""
        if before == "crashed" and self.target in ("running", "paused", "saved"):
            self.fail("VM %r on %s has crashed; destroy it first (state: destroyed), then start it (state: running)." % (self.name, self.uri))
        if self.target == "saved" and before not in ("running", "paused", "pmsuspended", "shutdown"):
            self.fail("VM %r on %s is %s: only a running or paused VM can be saved (its memory written to disk). "
                      "Start it first (state: running)." % (self.name, self.uri, before))
        if self.target == "shutdown" and before == "saved" and not self.module.params["force"]:
            self.fail("VM %r on %s is saved (its memory is in a managed save image). A graceful shutdown would need to "
                      "restore it first: start it (state: running) and shut it down, or discard the saved memory with "
                      "force: true or state: destroyed." % (self.name, self.uri))

    # ------------------------------------------------------------------ transitions

    def to_running(self, dom, before: str) -> None:
        if before == "paused":
            self.call("resuming", dom.resume)
        elif before == "pmsuspended":
            self.call("waking up", dom.pMWakeup, 0)
        elif before == "shutdown":
            # a guest in the middle of shutting down: let it finish, then boot it again
            wait_for(lambda: not is_active(dom), self.module.params["shutdown_timeout"])
            self.call("starting", dom.create)
        else:  # shutoff or saved: create() restores a managed save image
            self.call("starting", dom.create)
        if vm_condition(dom) == "paused":  # a VM saved while paused comes back paused
            self.call("resuming", dom.resume)

    def to_paused(self, dom, before: str) -> None:
        if before in ("shutoff", "saved"):
            try:
                dom.createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
                return
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                    raise describe_error(exc, "starting VM %r paused" % self.name, self.uri) from None
            # the driver cannot start paused (the test driver): start, then suspend at once
            self.call("starting", dom.create)
        self.call("suspending", dom.suspend)

    def to_saved(self, dom, before: str) -> None:
        if pause_reason(dom) == "user":
            # it may have arrived paused by live migration, its disks still inactive: saving it as it is
            # would abort QEMU (see reactivate_paused_disks)
            self.result["reactivation_ms"] = reactivate_paused_disks(dom, self.uri)
            self.result["reactivated_disks"] = True
        self.call("saving (managed save)", dom.managedSave, 0)

    def to_shutdown(self, dom, before: str) -> None:
        if before == "saved":  # force is set (check_possible)
            self.call("discarding the managed save image of", dom.managedSaveRemove, 0)
            return
        if before == "paused":
            self.call("resuming (to let it shut down)", dom.resume)
        if before != "shutdown":
            self.call("shutting down", dom.shutdown)
        timeout = self.module.params["shutdown_timeout"]
        if wait_for(lambda: not is_active(dom), timeout):
            return
        if not self.module.params["force"]:
            self.result["state"] = vm_condition(dom)
            self.fail("VM %r on %s did not shut down within shutdown_timeout=%ss (does the guest handle ACPI power button "
                      "events?). Raise shutdown_timeout, set force: true to destroy it after the timeout, or use state: destroyed."
                      % (self.name, self.uri, timeout), changed=True)
        self.result["forced"] = True
        self.destroy(dom)

    def to_destroyed(self, dom, before: str) -> None:
        if before == "saved":
            self.call("discarding the managed save image of", dom.managedSaveRemove, 0)
            return
        self.destroy(dom)

    def destroy(self, dom) -> None:
        try:
            dom.destroy()
        except libvirt.libvirtError:
            if is_active(dom):
                raise
            # it stopped on its own meanwhile
        # QEMU may take a moment to exit after destroy returns
        wait_for(lambda: not is_active(dom), 10)


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
