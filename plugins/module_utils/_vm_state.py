# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.vm_state (private: names may change between releases)."""

from __future__ import annotations

from typing import NoReturn

from ansible_collections.entropy.cluster.plugins.module_utils import vm_metadata
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
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
        self.check_not_saved_elsewhere(dom, before)
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

    def check_not_saved_elsewhere(self, dom, before: str) -> None:
        """Refuse to boot the definition a VM left on the host that saved it to shared storage (entropy.cluster.vm_image):
        its memory state would be lost, and a later restore of the image would run a second copy."""
        if self.target not in ("running", "paused") or before != "shutoff" or not dom.isPersistent():
            return
        saved = vm_metadata.read_domain(dom, libvirt, inactive=True, strict=False)["saved"]
        if saved:
            self.fail("VM %r on %s is saved to %s (entropy.cluster.vm_image): booting it would lose its memory state and a "
                      "restore of that image would then run a second copy. Restore it (entropy.cluster.vm_image state=restored, on "
                      "any host) or discard the image (entropy.cluster.vm_image state=absent). Nothing was done."
                      % (self.name, self.uri, saved), error_kind="saved_elsewhere")

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
