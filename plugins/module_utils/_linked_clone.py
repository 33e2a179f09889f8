# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The work of entropy.cluster.linked_clone (private: names may change between releases).

A linked clone is a qcow2 volume whose backing file is a base image: nothing of the base is
copied, the clone holds only what its VM writes. It is created through libvirt's storage API
(a volume with a backingStore in a pool), so it works on a remote hypervisor too."""

from __future__ import annotations

import typing as t
import xml.etree.ElementTree as ET

from ansible_collections.entropy.cluster.plugins.module_utils._storage import active_pool, find_volume
from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt


def volume_xml(name: str, backing_file: str, capacity: int) -> str:
    """The volume XML (names and paths as text nodes: escaped by ElementTree, never templated)."""
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    target = ET.SubElement(vol, "target")
    ET.SubElement(target, "format", type="qcow2")
    backing = ET.SubElement(vol, "backingStore")
    ET.SubElement(backing, "path").text = backing_file
    ET.SubElement(backing, "format", type="qcow2")
    return ET.tostring(vol, encoding="unicode")


def describe_volume(vol) -> dict:
    root = ET.fromstring(vol.XMLDesc(0))
    backing = root.findtext("backingStore/path")
    return {"path": vol.path(), "backing_file": backing, "format": root.find("target/format").get("type")
            if root.find("target/format") is not None else None}


class LinkedClone:
    """entropy.cluster.linked_clone: one qcow2 volume backed by a base image, present or absent."""

    def __init__(self, module) -> None:
        self.module = module
        self.params = module.params
        self.name: str = self.params["name"]
        self.pool_name: str = self.params["pool"]
        self.uri: str = module.uri

    def fail(self, msg: str, kind: str) -> t.NoReturn:
        self.module.fail(msg, kind, uri=self.uri)

    def lookup_pool(self, conn):
        return active_pool(conn, self.pool_name, self.uri, self.fail)

    def lookup_volume(self, pool):
        return find_volume(pool, self.name)

    def base_capacity(self, conn) -> int:
        backing = self.params["backing_file"]
        try:
            return conn.storageVolLookupByPath(backing).info()[1]
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_STORAGE_VOL:
                self.fail("Base image %r is not a volume of any storage pool on %s: put it in a pool's directory (and refresh "
                          "the pool), or define a pool over its directory." % (backing, self.uri), "no_base")
            raise

    def run(self) -> t.NoReturn:
        conn = self.module.connect()
        pool = self.lookup_pool(conn)
        vol = self.lookup_volume(pool)
        before = describe_volume(vol) if vol is not None else None
        self.module.result.update(uri=self.uri, pool=self.pool_name, name=self.name)
        if self.params["state"] == "absent":
            if vol is None:
                self.module.exit(state="absent")
            self.module.result["changed"] = True
            self.module.set_diff(dict(volume=before), dict(volume=None))
            if not self.module.check_mode:
                vol.delete(0)
            self.module.exit(state="absent", path=before["path"])
        backing = self.params["backing_file"]
        if not backing or not backing.startswith("/"):
            self.fail("linked_clone %r: backing_file must be the absolute path of the base image (got %r)." % (self.name, backing),
                      "invalid_argument")
        if vol is not None:
            if before["backing_file"] != backing:
                self.fail("Volume %r already exists in pool %r on %s with backing file %r, not %r: remove it (state: absent) or choose "
                          "another name." % (self.name, self.pool_name, self.uri, before["backing_file"], backing), "exists_different")
            self.module.exit(state="present", **before)
        capacity = self.base_capacity(conn)
        self.module.result["changed"] = True
        after = {"path": None, "backing_file": backing, "format": "qcow2"}
        if not self.module.check_mode:
            created = pool.createXML(volume_xml(self.name, backing, capacity), 0)
            after = describe_volume(created)
        self.module.set_diff(dict(volume=None), dict(volume=after))
        self.module.exit(state="present", **after)
