# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.vm_priority (private: names may change between releases)."""

from __future__ import annotations

from ansible_collections.entropy.cluster.plugins.module_utils import vm_metadata
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import lookup_domain
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import is_active, libvirt, libvirt_call

# The range a priority may take: a 32-bit signed integer, what every consumer (solver, databases) can hold.
PRIORITY_MIN, PRIORITY_MAX = -(2 ** 31), 2 ** 31 - 1


class VmPriority:
    """One run of entropy.cluster.vm_priority: the priority in the VM's metadata, on its definition and while it runs."""

    def __init__(self, module: LibvirtModule) -> None:
        self.module = module
        self.name: str = module.params["name"]
        self.uri = module.uri
        module.result.update(vm=self.name, uri=self.uri)

    def wanted(self) -> int | None:
        value = self.module.params["priority"]
        if value is None:
            return None
        try:
            number = vm_metadata.parse_priority(value, self.name)
        except vm_metadata.MetadataError as exc:
            self.module.fail("Cannot set the priority of %s. Nothing was done." % exc, "invalid_argument")
        if not PRIORITY_MIN <= number <= PRIORITY_MAX:
            self.module.fail("Cannot set the priority of VM %r: priority=%s is out of range (allowed: %d to %d). Nothing was done."
                             % (self.name, number, PRIORITY_MIN, PRIORITY_MAX), "invalid_argument")
        return number

    def run(self) -> None:
        wanted = self.wanted()
        conn = self.module.connect(self.uri)
        dom = lookup_domain(conn, self.name)
        persistent, active = bool(dom.isPersistent()), is_active(dom)
        # a priority written by hand that is no integer is replaced, not refused
        current = vm_metadata.read_domain(dom, libvirt, inactive=persistent, strict=False)
        live = vm_metadata.read_domain(dom, libvirt, strict=False) if active and persistent else current
        self.module.result.update(previous_priority=current["priority"], priority=wanted)
        unchanged = current["priority"] == wanted and live["priority"] == wanted
        self.module.set_diff({"priority": current["priority"]}, {"priority": wanted})
        if unchanged:
            self.module.exit()
        self.module.result["changed"] = True
        if self.module.check_mode:
            self.module.exit()
        if persistent:
            libvirt_call("setting the priority of VM %r" % self.name, self.uri, vm_metadata.write_domain, dom, libvirt,
                         dict(current, priority=wanted), False, True)
        if active:
            libvirt_call("setting the priority of running VM %r" % self.name, self.uri, vm_metadata.write_domain, dom, libvirt,
                         dict(live, saved=None, priority=wanted), True, False)
        self.module.exit()
