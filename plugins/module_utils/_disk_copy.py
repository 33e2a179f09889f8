# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Moves between clusters that share no storage (private: names may change between releases): vm_migrate's
``disk_dir`` and ``remove_source_disks``.

A live migration with storage copy (``VIR_MIGRATE_NON_SHARED_DISK``) writes each disk of the VM into a directory of
the destination: the destination XML names the new paths, and a ``dir`` storage pool over that directory lets libvirt
create the copies before QEMU's disk-copy (NBD) server receives them. The disk files the VM used on the source are
removed through the source's libvirt only once the VM runs on the destination and is no longer defined on the source.
"""

from __future__ import annotations

import hashlib
import os
import xml.etree.ElementTree as ET

from ansible_collections.entropy.cluster.plugins.module_utils._vm_ops import libvirt

POOL_PREFIX = "entropy-disks-"


class DiskCopyError(Exception):
    """A VM whose disks cannot be copied this way: the message names the disk and the fix."""


def retarget_disks(xml: str, disk_dir: str) -> tuple[str, list[dict]]:
    """The VM's migratable XML with every file-backed disk moved into ``disk_dir`` (same file name), and the moves
    ({source, destination} paths). Refuses disks with a backing chain (their base would be missing on the destination)
    and two disks of the same file name."""
    root = ET.fromstring(xml)
    moves, names = [], {}
    for disk in root.findall("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue
        source = disk.find("source")
        path = source.get("file") if source is not None and disk.get("type") == "file" else None
        if path is None:
            raise DiskCopyError("disk %s is not a file (type %s): only file disks can be copied into disk_dir"
                                % (_target(disk), disk.get("type")))
        backing = disk.find("backingStore")
        if backing is not None and backing.find("source") is not None:
            raise DiskCopyError("disk %s (%s) has a backing file: copy_storage all copies only its top image; flatten it "
                                "(virsh blockpull) before moving the VM to storage the source does not share" % (_target(disk), path))
        name = os.path.basename(path)
        if name in names:
            raise DiskCopyError("disks %s and %s have the same file name %r: they cannot both go into disk_dir" % (names[name], path, name))
        names[name] = path
        new = os.path.join(disk_dir, name)
        source.set("file", new)
        moves.append({"source": path, "destination": new})
    return ET.tostring(root, encoding="unicode"), moves


def disk_paths(xml: str) -> list[str]:
    """The files of the VM's file-backed disks (cdroms and other devices left out)."""
    root = ET.fromstring(xml)
    return [disk.find("source").get("file") for disk in root.findall("devices/disk")
            if disk.get("device", "disk") == "disk" and disk.get("type") == "file" and disk.find("source") is not None
            and disk.find("source").get("file")]


def _target(disk) -> str:
    target = disk.find("target")
    return target.get("dev", "?") if target is not None else "?"


def dir_pool(conn, path: str, create: bool = True):
    """An active ``dir`` storage pool whose target is ``path`` on ``conn``: an existing one, else (``create``) a transient
    pool started for it (gone when the daemon restarts; the files stay). None when there is none and ``create`` is false."""
    for pool in conn.listAllStoragePools(0):
        target = ET.fromstring(pool.XMLDesc(0)).findtext("target/path")
        if target and os.path.normpath(target) == os.path.normpath(path):
            if not pool.isActive():
                pool.create(0)
            pool.refresh(0)
            return pool
    if not create:
        return None
    name = POOL_PREFIX + hashlib.sha1(path.encode("utf-8")).hexdigest()[:10]
    root = ET.Element("pool", type="dir")
    ET.SubElement(root, "name").text = name
    ET.SubElement(ET.SubElement(root, "target"), "path").text = path
    return conn.storagePoolCreateXML(ET.tostring(root, encoding="unicode"), libvirt.VIR_STORAGE_POOL_CREATE_WITH_BUILD)


def remove_files(conn, paths: list[str]) -> tuple[list[str], list[str]]:
    """Delete each disk file through ``conn``'s libvirt (storage volume delete); (removed, problems)."""
    removed, problems = [], []
    for path in paths:
        try:
            pool = dir_pool(conn, os.path.dirname(path))
            pool.storageVolLookupByName(os.path.basename(path)).delete(0)
            removed.append(path)
        except libvirt.libvirtError as exc:
            problems.append("%s: %s" % (path, exc.get_error_message() or exc))
    return removed, problems
