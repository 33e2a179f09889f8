# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.vm_image (private: names may change between releases).

A VM saved to shared storage (virDomainSaveFlags to ``<save_dir>/<name>.save``; its disks stay where they are)
and restored on any host that sees that storage (virDomainRestoreFlags), its persistent definition moved with it,
so that the VM is defined on exactly one host and never runs twice.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
import xml.etree.ElementTree as ET
from typing import NoReturn
from xml.sax.saxutils import escape

from ansible_collections.entropy.cluster.plugins.module_utils import vm_metadata
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_common import (
    EntropyLibvirtError,
    describe_error,
    find_domain,
)
from ansible_collections.entropy.cluster.plugins.module_utils.libvirt_module import LibvirtModule
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import (
    is_active,
    libvirt,
    libvirt_call,
    pause_reason,
    reactivate_paused_disks,
    vm_condition,
)

IMAGE_SUFFIX = ".save"


def image_path(save_dir: str, name: str) -> str:
    """Where VM ``name`` is saved in ``save_dir``; ValueError for a name that cannot be a file name."""
    if not name or "/" in name or "\0" in name or name.startswith("."):
        raise ValueError("VM name %r cannot name an image file (it contains '/' or NUL, or starts with '.')" % name)
    if not os.path.isabs(save_dir):
        raise ValueError("save_dir %r is not an absolute path; give the directory of the shared storage as every host mounts it" % save_dir)
    return os.path.join(os.path.normpath(save_dir), name + IMAGE_SUFFIX)


def image_identity(image_xml: str) -> tuple[str | None, str | None]:
    """(name, uuid) of the domain a saved image holds."""
    root = ET.fromstring(image_xml)
    return root.findtext("name"), root.findtext("uuid")


def read_image(conn, path: str) -> str | None:
    """The domain XML of the image at ``path`` as the host of ``conn`` reads it, None when that host sees no file there."""
    try:
        return conn.saveImageGetXMLDesc(path, libvirt.VIR_DOMAIN_SAVE_IMAGE_XML_SECURE)
    except libvirt.libvirtError as exc:
        missing = exc.get_int1() == errno.ENOENT or "No such file" in (exc.get_error_message() or "")
        if exc.get_error_code() == libvirt.VIR_ERR_SYSTEM_ERROR and missing:
            return None
        raise describe_error(exc, "reading the saved image %s" % path, conn.getURI()) from None


def remove_image(conn, path: str) -> bool:
    """Delete the image file through the daemon of ``conn`` (the controller may not see the shared storage): through
    an active storage pool over its directory, else a transient one made for it. False when it was already gone."""
    directory, filename = os.path.split(path)
    pool, made = None, False
    for candidate in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
        target = ET.fromstring(candidate.XMLDesc(0)).findtext("target/path")
        if target and os.path.normpath(target) == directory:
            pool = candidate
            break
    try:
        if pool is None:
            name = "entropy-saves-%s" % hashlib.sha1(directory.encode()).hexdigest()[:12]
            pool = conn.storagePoolCreateXML("<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>"
                                             % (name, escape(directory)), 0)
            made = True
        pool.refresh(0)
        try:
            volume = pool.storageVolLookupByName(filename)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                return False
            raise
        volume.delete(0)
        return True
    finally:
        if made:
            try:
                pool.destroy()
            except libvirt.libvirtError:
                pass  # a transient pool left behind holds no data; the next removal reuses it


def adjust_for_host(domain_xml: str, conn) -> tuple[str, list[str]]:
    """``domain_xml`` made fit for the host of ``conn``: the emulator binary that host has for the domain's
    architecture and type (hosts of one cluster may install QEMU in different places). (xml, what changed)."""
    root = ET.fromstring(domain_xml)
    emulator = root.find("devices/emulator")
    os_type = root.find("os/type")
    if emulator is None or os_type is None:
        return domain_xml, []
    arch, kind = os_type.get("arch"), root.get("type")
    caps = ET.fromstring(conn.getCapabilities())
    for guest in caps.findall("guest"):
        arch_node = guest.find("arch")
        if arch_node is None or arch_node.get("name") != arch:
            continue
        wanted = None
        for domain in arch_node.findall("domain"):
            if domain.get("type") == kind:
                wanted = domain.findtext("emulator") or arch_node.findtext("emulator")
        wanted = wanted or arch_node.findtext("emulator")
        if wanted and wanted != emulator.text:
            changed = "emulator %s -> %s" % (emulator.text, wanted)
            emulator.text = wanted
            return ET.tostring(root, encoding="unicode"), [changed]
        break
    return domain_xml, []


class VmImage:
    """One run of entropy.cluster.vm_image."""

    def __init__(self, module: LibvirtModule) -> None:
        self.module = module
        params = module.params
        self.name: str = params["name"]
        self.target: str = params["state"]
        self.uri = module.uri
        self.uris: list[str] = []
        for uri in [self.uri] + list(params.get("uris") or []):
            if uri not in self.uris:
                self.uris.append(uri)
        self.result: dict = module.result
        self.result.update(vm=self.name, uri=self.uri)
        self.path = ""

    def fail(self, msg: str, kind: str | None = None, **extra) -> NoReturn:
        self.module.fail(msg, kind, **extra)

    def run(self) -> None:
        try:
            self.path = image_path(self.module.params["save_dir"], self.name)
        except ValueError as exc:
            self.fail("Cannot handle the saved image of VM %r: %s. Nothing was done." % (self.name, exc), "invalid_argument")
        self.result["image_path"] = self.path
        getattr(self, "to_" + self.target)()

    def finish(self, before: dict, after: dict, **extra) -> NoReturn:
        self.module.set_diff(before, after)
        self.module.exit(**extra)

    # ------------------------------------------------------------------ saved

    def to_saved(self) -> None:
        conn = self.module.connect(self.uri)
        dom = find_domain(conn, self.name)
        image = read_image(conn, self.path)
        if image is not None and image_identity(image)[0] != self.name:
            self.fail("The image %s holds VM %r, not %r: another VM's image has this VM's file name. Remove or move it "
                      "(entropy.cluster.vm_image state=absent name=%s), then save again. Nothing was done."
                      % (self.path, image_identity(image)[0], self.name, image_identity(image)[0]), "image_mismatch")
        condition = vm_condition(dom) if dom is not None else "undefined"
        self.result.update(previous_state=condition, state=condition)
        if image is not None and condition in ("shutoff", "undefined"):
            self.result["state"] = "saved"
            self.finish({"state": "saved"}, {"state": "saved"})  # already saved: idempotent
        if dom is None:
            self.fail("VM %r is not defined on %s and has no image at %s as that host sees it: nothing to save. Check the "
                      "name and uri (the host where the VM runs)." % (self.name, self.uri, self.path), "no_domain")
        if condition == "saved":
            self.fail("VM %r on %s has a managed save image (entropy.cluster.vm_state state=saved) that only this host can "
                      "restore. Start it first (vm_state state=running), then save it here. Nothing was done." % (self.name, self.uri),
                      "managed_save")
        if condition not in ("running", "paused"):
            self.fail("VM %r on %s is %s: only a running or paused VM can be saved (its memory written to %s). Start it "
                      "first (entropy.cluster.vm_state state=running). Nothing was done." % (self.name, self.uri, condition, self.path),
                      "not_active")
        self.result.update(changed=True, state="saved", persistent=bool(dom.isPersistent()))
        before, after = {"state": condition, "image": None}, {"state": "saved", "image": self.path}
        if self.module.check_mode:
            self.finish(before, after)
        persistent = bool(dom.isPersistent())
        if persistent:  # the guard first: from now on vm_state refuses to boot this definition
            marks = vm_metadata.read_domain(dom, libvirt, inactive=True)
            libvirt_call("marking the definition of VM %r as saved" % self.name, self.uri, vm_metadata.write_domain,
                         dom, libvirt, dict(marks, saved=self.path), False, True)
        if pause_reason(dom) == "user":
            # it may have arrived paused by live migration with its disks inactive: saving it would abort QEMU
            self.result["reactivation_ms"] = reactivate_paused_disks(dom, self.uri)
        started = time.monotonic()
        try:
            dom.saveFlags(self.path, None, 0)
        except libvirt.libvirtError as exc:
            err = describe_error(exc, "saving VM %r to %s" % (self.name, self.path), self.uri)
            if persistent and not is_active(dom):
                pass  # it stopped anyway (QEMU died): keep the mark, the image may be usable
            elif persistent:
                try:
                    vm_metadata.write_domain(dom, libvirt, dict(marks, saved=None), False, True)
                except libvirt.libvirtError:
                    pass
            self.fail("%s The VM is %s on %s; check that %s is writable by that host's libvirt and has room, then run again."
                      % (err.message, vm_condition(dom), self.uri, os.path.dirname(self.path)), err.kind, changed=True)
        self.result["duration_s"] = round(time.monotonic() - started, 3)
        self.finish(before, after)

    # ------------------------------------------------------------------ restored

    def connections(self) -> dict:
        return {uri: self.module.connect(uri) for uri in self.uris}

    def to_restored(self) -> None:
        conns = self.connections()
        dest = conns[self.uri]
        copies = {uri: dom for uri, conn in conns.items() for dom in [find_domain(conn, self.name)] if dom is not None}
        image = read_image(dest, self.path)
        here = copies.get(self.uri)
        if image is None:
            seen_from = [uri for uri, conn in conns.items() if uri != self.uri and read_image(conn, self.path) is not None]
            if seen_from:
                self.fail("Host %s cannot see the image file %s of VM %r, which %s sees: the save directory is not on storage "
                          "both hosts share. Mount it at the same path on %s, or restore on %s. Nothing was done; the image is kept."
                          % (self.uri, self.path, self.name, seen_from[0], self.uri, seen_from[0]), "image_not_visible")
            if here is not None and is_active(here):
                self.result.update(previous_state="running", state=vm_condition(here))
                self.finish({"state": "running", "image": None}, {"state": "running", "image": None})  # already restored
            self.fail("No saved image of VM %r at %s (looked from %s): nothing to restore. Save it first (state=saved), or check "
                      "name and save_dir. Nothing was done." % (self.name, self.path, ", ".join(self.uris)), "no_image")
        image_name, image_uuid = image_identity(image)
        if image_name != self.name:
            self.fail("The image %s holds VM %r, not %r. Restore it under its own name. Nothing was done."
                      % (self.path, image_name, self.name), "image_mismatch")
        self.result["previous_state"] = "saved"
        self.check_copies(copies, image_uuid)
        sources = [uri for uri, dom in copies.items() if dom.isPersistent()]
        source = sources[0] if sources else None
        self.result.update(changed=True, state="running", source_uri=source, definition_moved=bool(source and source != self.uri))
        before = {"state": "saved", "image": self.path, "defined_on": source}
        after = {"state": "running", "image": None, "defined_on": self.uri if source else None, "running_on": self.uri}
        if self.module.check_mode:
            self.finish(before, after)
        restore_xml, adjusted = adjust_for_host(image, dest)
        self.result["adjusted"] = adjusted
        started = time.monotonic()
        try:
            dest.restoreFlags(self.path, restore_xml if adjusted else None, 0)
        except libvirt.libvirtError as exc:
            err = describe_error(exc, "restoring VM %r from %s" % (self.name, self.path), self.uri)
            self.fail("%s Nothing else changed: the image is kept at %s and the VM's definition stays %s. Fix the cause and run "
                      "the same task again to retry." % (err.message, self.path, "on %s" % source if source else "nowhere (it was transient)"),
                      "restore_failed", changed=False)
        self.result["duration_s"] = round(time.monotonic() - started, 3)
        if source is not None:
            self.move_definition(conns, copies, source)
        try:
            self.result["image_removed"] = remove_image(dest, self.path)
        except libvirt.libvirtError as exc:
            self.fail("VM %r runs on %s (restored), but its image %s could not be removed (%s): remove it (entropy.cluster.vm_image "
                      "state=absent) before anything restores it again, which would start a second copy."
                      % (self.name, self.uri, self.path, exc), "image_not_removed", changed=True)
        self.finish(before, after)

    def check_copies(self, copies: dict, image_uuid: str | None) -> None:
        """Refuse a restore that would run a second copy or leave two definitions."""
        for uri, dom in copies.items():
            if is_active(dom):
                where = "already runs on %s" % uri if uri == self.uri else "runs on %s" % uri
                self.fail("VM %r %s: restoring its image %s on %s would start a second copy. Nothing was done; the image is kept "
                          "(stale if the VM ran since it was saved: remove it with state=absent)." % (self.name, where, self.path, self.uri),
                          "vm_running")
            if image_uuid and dom.UUIDString() != image_uuid:
                self.fail("A different VM named %r (UUID %s) is defined on %s; the image %s holds UUID %s. Rename or remove one of "
                          "them. Nothing was done." % (self.name, dom.UUIDString(), uri, self.path, image_uuid), "uuid_mismatch")
            if dom.hasManagedSaveImage(0):
                self.fail("VM %r on %s has a managed save image (another saved memory state): restoring %s would leave two. Discard "
                          "one first (vm_state state=destroyed on %s, or vm_image state=absent). Nothing was done."
                          % (self.name, uri, self.path, uri), "managed_save")
        defined = sorted(uri for uri, dom in copies.items() if dom.isPersistent())
        if len(defined) > 1:
            self.fail("VM %r is defined on several hosts (%s): a restore must move exactly one definition. Undefine the stale ones "
                      "(virsh undefine), then run again. Nothing was done." % (self.name, ", ".join(defined)), "several_definitions")

    def move_definition(self, conns: dict, copies: dict, source: str) -> None:
        """The persistent definition to the destination (without the saved mark), then away from its source."""
        source_dom = copies[source]
        definition = vm_metadata.without_saved_mark(source_dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE))
        definition, _adjusted = adjust_for_host(definition, conns[self.uri])
        autostart = bool(source_dom.autostart())
        try:
            dom = conns[self.uri].defineXML(definition)
            if autostart:
                dom.setAutostart(1)
        except libvirt.libvirtError as exc:
            self.fail("VM %r runs on %s (restored), but defining it there failed (%s): it is transient there and its definition "
                      "is still on %s. Define it on %s (virsh define) and undefine it on %s before anything starts it there."
                      % (self.name, self.uri, exc, source, self.uri, source), "define_failed", changed=True)
        if source == self.uri:
            return
        try:
            source_dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA)
        except libvirt.libvirtError as exc:
            self.fail("VM %r runs on %s (restored and defined there), but its old definition on %s could not be removed (%s). "
                      "Undefine it there (virsh undefine) before anything starts it: it would boot a second copy."
                      % (self.name, self.uri, source, exc), "undefine_failed", changed=True)

    # ------------------------------------------------------------------ absent

    def to_absent(self) -> None:
        conns = self.connections()
        image = read_image(conns[self.uri], self.path)
        marked = []
        for uri, conn in conns.items():
            dom = find_domain(conn, self.name)
            if dom is not None and dom.isPersistent() and vm_metadata.read_domain(dom, libvirt, inactive=True)["saved"] == self.path:
                marked.append((uri, dom))
        self.result.update(previous_state="saved" if image is not None else "absent", state="absent",
                           marks_cleared=[uri for uri, _dom in marked])
        if image is None and not marked:
            self.finish({"image": None}, {"image": None})
        self.result["changed"] = True
        if self.module.check_mode:
            self.finish({"image": self.path if image is not None else None}, {"image": None})
        if image is not None:
            libvirt_call("removing the saved image %s" % self.path, self.uri, remove_image, conns[self.uri], self.path)
        for uri, dom in marked:
            marks = vm_metadata.read_domain(dom, libvirt, inactive=True)
            libvirt_call("clearing the saved mark of VM %r" % self.name, uri, vm_metadata.write_domain, dom, libvirt,
                         dict(marks, saved=None), False, True)
        self.finish({"image": self.path if image is not None else None}, {"image": None})


__all__ = ["IMAGE_SUFFIX", "EntropyLibvirtError", "VmImage", "adjust_for_host", "image_identity", "image_path", "read_image", "remove_image"]
