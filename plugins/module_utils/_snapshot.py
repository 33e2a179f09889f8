# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.vm_snapshot (private: names may change between releases)."""

from __future__ import annotations

from typing import NoReturn
from xml.sax.saxutils import escape as xml_escape

from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    describe_error,
    lookup_domain,
)
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import (
    is_active,
    libvirt,
    snapshot_list,
    vm_condition,
)


class VmSnapshot:
    def __init__(self, module: LibvirtModule) -> None:
        self.module = module
        self.p = module.params
        self.name: str = module.params["name"]
        self.uri = module.uri
        self.result: dict = module.result
        self.result.update(vm=self.name, snapshots=[], created=None, deleted=[], reverted=None)

    def fail(self, msg: str) -> NoReturn:
        self.module.fail(msg)

    def validate(self) -> None:
        state = self.p["state"]
        if state in ("present", "reverted") and not self.p["snapshot"]:
            self.fail("snapshot (the snapshot's name) is required with state: %s." % state)
        if state == "absent" and not self.p["snapshot"] and not self.p["all"]:
            self.fail("state: absent needs snapshot (one snapshot's name) or all: true (every snapshot of the VM).")
        if state == "absent" and self.p["snapshot"] and self.p["all"]:
            self.fail("snapshot and all: true are mutually exclusive with state: absent.")
        if self.p["retain"] is not None and (state != "present" or self.p["retain"] < 1):
            self.fail("retain needs state: present and a value >= 1 (the new snapshot is one of those kept).")

    def run(self) -> None:
        self.validate()
        conn = self.module.connect(self.uri)
        dom = lookup_domain(conn, self.name)
        before = snapshot_list(dom)
        names = [s["name"] for s in before]
        self.result["snapshots"] = before
        self.result["vm_state"] = vm_condition(dom)
        getattr(self, "do_" + self.p["state"])(dom, before, names)

    def finish(self, dom, before: list[dict], planned: list[dict] | None = None) -> None:
        after = planned if planned is not None else snapshot_list(dom)
        self.result["snapshots"] = after
        if planned is None:
            self.result["vm_state"] = vm_condition(dom)
        self.module.set_diff(
            dict(snapshots=[s["name"] for s in before], current=next((s["name"] for s in before if s["current"]), None)),
            dict(snapshots=[s["name"] for s in after], current=next((s["name"] for s in after if s["current"]), None)),
        )
        self.module.exit()

    # ------------------------------------------------------------------ present

    def do_present(self, dom, before: list[dict], names: list[str]) -> None:
        wanted = self.p["snapshot"]
        planned = [dict(s) for s in before]
        if wanted not in names:
            self.result["changed"] = True
            self.result["created"] = wanted
            for snap in planned:
                snap["current"] = False
            planned.append(dict(name=wanted, description=self.p["description"] or "", creation_time=None,
                                state=vm_condition(dom) if vm_condition(dom) != "saved" else "shutoff", current=True,
                                parent=next((s["name"] for s in before if s["current"]), None),
                                memory="internal" if is_active(dom) and self.p["memory"] else "no"))
        doomed = []
        if self.p["retain"] is not None and len(planned) > self.p["retain"]:
            # oldest first; the new snapshot (creation_time None) is the newest
            doomed = [s["name"] for s in planned[: len(planned) - self.p["retain"]] if s["name"] != wanted]
        if doomed:
            self.result["changed"] = True
            self.result["deleted"] = doomed
        if self.module.check_mode or not self.result["changed"]:
            self.finish(dom, before, [s for s in planned if s["name"] not in doomed] if self.module.check_mode else None)
            return
        if self.result["created"]:
            self.create(dom, wanted)
        for name in doomed:
            self.delete(dom, name)
        self.finish(dom, before)

    def create(self, dom, name: str) -> None:
        desc = "<description>%s</description>" % xml_escape(self.p["description"]) if self.p["description"] else ""
        memory = ""
        if is_active(dom) and not self.p["memory"]:
            memory = "<memory snapshot='no'/>"
        xml = "<domainsnapshot><name>%s</name>%s%s</domainsnapshot>" % (xml_escape(name), desc, memory)
        try:
            dom.snapshotCreateXML(xml, 0)
        except libvirt.libvirtError as exc:
            err = describe_error(exc, "creating snapshot %r of VM %r" % (name, self.name), self.uri)
            hint = ""
            if memory and err.kind == "unsupported":
                hint = " This hypervisor cannot take a disk-only internal snapshot of a running VM: use memory: true, or stop the VM first."
            elif "qcow2" in err.message or "internal snapshot" in err.message:
                hint = " Internal snapshots need qcow2 disk images."
            raise EntropyLibvirtError(err.message + hint, kind=err.kind, libvirt_code=err.libvirt_code) from None

    def delete(self, dom, name: str) -> None:
        try:
            dom.snapshotLookupByName(name, 0).delete(0)
        except libvirt.libvirtError as exc:
            raise describe_error(exc, "deleting snapshot %r of VM %r" % (name, self.name), self.uri) from None

    # ------------------------------------------------------------------ absent

    def do_absent(self, dom, before: list[dict], names: list[str]) -> None:
        doomed = list(reversed(names)) if self.p["all"] else [n for n in names if n == self.p["snapshot"]]
        self.result["deleted"] = doomed
        self.result["changed"] = bool(doomed)
        if self.module.check_mode or not doomed:
            self.finish(dom, before, [s for s in before if s["name"] not in doomed] if self.module.check_mode else None)
            return
        for name in doomed:  # newest first: children before their parents
            self.delete(dom, name)
        self.finish(dom, before)

    # ------------------------------------------------------------------ reverted

    def do_reverted(self, dom, before: list[dict], names: list[str]) -> None:
        wanted = self.p["snapshot"]
        if wanted not in names:
            self.fail("VM %r on %s has no snapshot %r (its snapshots: %s). Check the name, or create it with state: present."
                      % (self.name, self.uri, wanted, ", ".join(repr(n) for n in names) or "none"))
        self.result["changed"] = True
        self.result["reverted"] = wanted
        if self.module.check_mode:
            planned = [dict(s, current=(s["name"] == wanted)) for s in before]
            snap_state = next(s["state"] for s in before if s["name"] == wanted)
            self.result["vm_state"] = {"snapshot": snap_state, "running": "running", "paused": "paused"}[self.p["revert_to"]]
            self.finish(dom, before, planned)
            return
        flags = {"snapshot": 0, "running": libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_RUNNING,
                 "paused": libvirt.VIR_DOMAIN_SNAPSHOT_REVERT_PAUSED}[self.p["revert_to"]]
        try:
            dom.revertToSnapshot(dom.snapshotLookupByName(wanted, 0), flags)
        except libvirt.libvirtError as exc:
            raise describe_error(exc, "reverting VM %r to snapshot %r" % (self.name, wanted), self.uri) from None
        self.finish(dom, before)
