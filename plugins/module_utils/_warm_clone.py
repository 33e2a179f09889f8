# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Warm clones from one saved memory image (private: names may change between releases).

SnowFlock's idea on stock libvirt: boot a base VM once, save it (``virDomainSave``), then restore N clones from
that image, each with its own name, UUID, MAC addresses and overlay disk (a qcow2 whose backing file is the base's
disk), so the group runs without booting. libvirt refuses to restore an image under another UUID through its API
("Target domain uuid ... does not match source"), so each clone gets its own copy of the image whose header
carries the clone's definition.

The image is libvirt's QEMU save format: a header (struct _virQEMUSaveHeader: the 16-byte magic
``LibvirtQemudSave``, uint32 version, data_len, was_running, compressed, cookieOffset, 14 unused uint32: 92 bytes), then
data_len bytes holding the domain XML (NUL-terminated) and, at cookieOffset from the start of those bytes, the
cookie (NUL-terminated), zero padding, then QEMU's migration stream to the end of the file. It is an internal
format: the magic and the version are checked, and anything else (a compressed image, another version, offsets
outside the data) is refused, never guessed. The base disk under the clones' overlays must stay frozen (its VM
shut off) while clones exist.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import re
import shutil
import struct
import time
import typing as t
import uuid as uuid_lib
import xml.etree.ElementTree as ET

from ansible_collections.entropy.cluster.plugins.module_utils._job_seed import seed_disk_xml
from ansible_collections.entropy.cluster.plugins.module_utils._storage import active_pool, find_volume

MAGIC = b"LibvirtQemudSave"
PARTIAL_MAGIC = b"LibvirtQemudPart"  # an image libvirt was still writing
SUPPORTED_VERSIONS = (2,)  # measured on libvirt 9.0; the layout of other versions is not assumed
HEADER = struct.Struct("<16s5I14I")  # 92 bytes, as libvirt 9.0 writes it (measured)
COMPRESSED_RAW = 0


class SaveImageError(ValueError):
    """A save image this code will not rewrite; the message names the file and why."""


@dataclasses.dataclass
class SaveImage:
    """The parts of a libvirt QEMU save image: its header fields, the domain XML, the cookie, where QEMU's stream starts."""

    path: str
    version: int
    was_running: int
    compressed: int
    xml: str
    cookie: bytes
    data_len: int
    unused: tuple

    @property
    def stream_offset(self) -> int:
        return HEADER.size + self.data_len


def read_save_image(path: str) -> SaveImage:
    """The header, XML and cookie of a save image, checked (magic, version, raw stream, offsets inside the data)."""
    with open(path, "rb") as handle:
        raw = handle.read(HEADER.size)
        if len(raw) < HEADER.size:
            raise SaveImageError("save image %s is too short for a libvirt QEMU save header (%d bytes)" % (path, len(raw)))
        fields = HEADER.unpack(raw)
        magic, version, data_len, was_running, compressed, cookie_offset = fields[:6]
        if magic == PARTIAL_MAGIC:
            raise SaveImageError("save image %s is incomplete (libvirt did not finish writing it): save the base VM again" % path)
        if magic != MAGIC:
            raise SaveImageError("%s is not a libvirt QEMU save image (magic %r, expected %r)" % (path, magic, MAGIC))
        if version not in SUPPORTED_VERSIONS:
            raise SaveImageError("save image %s has header version %d; warm clones know version %s only: use a save made by a "
                                 "libvirt whose version was measured" % (path, version, ", ".join(map(str, SUPPORTED_VERSIONS))))
        if compressed != COMPRESSED_RAW:
            raise SaveImageError("save image %s is compressed (format %d): save the base with save_image_format = \"raw\"" % (path, compressed))
        data = handle.read(data_len)
    if len(data) < data_len or not 0 < cookie_offset <= data_len:
        raise SaveImageError("save image %s: data length %d or cookie offset %d out of range" % (path, data_len, cookie_offset))
    xml_end = data.find(b"\0")
    cookie_end = data.find(b"\0", cookie_offset)
    if xml_end < 0 or xml_end >= cookie_offset or cookie_end < 0:
        raise SaveImageError("save image %s: its domain XML and cookie are not where the header says" % path)
    if not data[:xml_end].lstrip().startswith(b"<domain"):
        raise SaveImageError("save image %s: no domain definition after its header" % path)
    return SaveImage(path=path, version=version, was_running=was_running, compressed=compressed,
                     xml=data[:xml_end].decode("utf-8"), cookie=data[cookie_offset:cookie_end], data_len=data_len,
                     unused=tuple(fields[6:]))


@dataclasses.dataclass(frozen=True)
class CloneIdentity:
    """What makes a clone another VM: name, UUID, one MAC per NIC (in order), and disk paths to replace (old -> new)."""

    name: str
    uuid: str
    macs: tuple[str, ...]
    disks: t.Mapping[str, str]


def clone_xml(base_xml: str, identity: CloneIdentity) -> str:
    """The base's definition with the clone's identity (ElementTree: names and paths are text, never formatted in)."""
    root = ET.fromstring(base_xml)
    root.find("name").text = identity.name
    root.find("uuid").text = identity.uuid
    nics = root.findall("devices/interface")
    if len(identity.macs) != len(nics):
        raise SaveImageError("clone %r: %d MAC addresses given for the base's %d NICs" % (identity.name, len(identity.macs), len(nics)))
    for nic, mac in zip(nics, identity.macs):
        element = nic.find("mac")
        if element is None:
            element = ET.SubElement(nic, "mac")
        element.set("address", mac)
        target = nic.find("target")
        if target is not None:  # the base's tap name (vnetN) is the base's: the daemon names the clone's
            nic.remove(target)
    replaced = set()
    for disk in root.findall("devices/disk"):
        source = disk.find("source")
        path = source.get("file") if source is not None else None
        if path in identity.disks:
            source.set("file", identity.disks[path])
            replaced.add(path)
            backing = disk.find("backingStore")
            if backing is not None:  # the overlay's own chain is read from its header by libvirt
                disk.remove(backing)
    for kind in ("serial", "console", "channel"):
        for device in root.findall("devices/" + kind):
            source = device.find("source")
            if device.get("type") == "file" and source is not None and source.get("path"):  # the base's log file is the base's
                source.set("path", "%s.%s" % (source.get("path"), identity.uuid))
    missing = set(identity.disks) - replaced
    if missing:
        raise SaveImageError("clone %r: the base has no disk %s" % (identity.name, ", ".join(sorted(missing))))
    return ET.tostring(root, encoding="unicode")


def write_clone_image(image: SaveImage, identity: CloneIdentity, path: str) -> str:
    """A copy of the save image with the clone's definition in its header (cookie moved, data length kept when the
    new XML fits, else grown); QEMU's stream copied unchanged. Written to a temporary file, then renamed."""
    xml = clone_xml(image.xml, identity).encode("utf-8") + b"\0"
    cookie = image.cookie + b"\0"
    data_len = max(image.data_len, len(xml) + len(cookie))
    data = (xml + cookie).ljust(data_len, b"\0")
    header = HEADER.pack(MAGIC, image.version, data_len, image.was_running, image.compressed, len(xml), *image.unused)
    tmp = path + ".part"
    with open(image.path, "rb") as source, open(tmp, "wb") as target:
        target.write(header)
        target.write(data)
        target.flush()
        _copy_stream(source, target, image.stream_offset)
    os.replace(tmp, path)
    return path


def _copy_stream(source, target, offset: int) -> None:
    """QEMU's stream from ``offset`` to the end of ``source``, appended to ``target``: in the kernel (copy_file_range, a
    reflink where the file system has them) when it can, else through Python."""
    size = os.fstat(source.fileno()).st_size
    done = 0
    try:
        while offset + done < size:
            copied = os.copy_file_range(source.fileno(), target.fileno(), size - offset - done, offset + done)
            if copied == 0:
                break
            done += copied
    except (AttributeError, OSError):  # no copy_file_range (Python < 3.8, another kernel): copy the rest in Python
        pass
    source.seek(offset + done)
    target.seek(0, os.SEEK_END)
    shutil.copyfileobj(source, target, 1 << 20)


# --------------------------------------------------------------------------- entropy.cluster.warm_clone

# A clone's default UUID: stable for the same base and clone name, so a second run finds the clones of the first.
CLONE_NAMESPACE = uuid_lib.UUID("6f1d3c52-2a4b-5e8f-9c07-d41e2b7a9e55")
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def default_uuid(base_uuid: str, name: str) -> str:
    return str(uuid_lib.uuid5(CLONE_NAMESPACE, base_uuid + "\0" + name))


def default_macs(clone_uuid: str, count: int) -> tuple[str, ...]:
    """One locally administered QEMU MAC (52:54:00:...) per NIC, derived from the clone's UUID."""
    macs = []
    for index in range(count):
        digest = hashlib.sha256(("%s/%d" % (clone_uuid, index)).encode("ascii")).digest()
        macs.append("52:54:00:%02x:%02x:%02x" % (digest[0], digest[1], digest[2]))
    return tuple(macs)


def overlay_name(clone: str, index: int) -> str:
    """The overlay volume of a clone's disk number ``index``: the name made safe for a file name, plus a digest of the
    exact name (two names that differ only in unsafe characters never share a volume)."""
    prefix, suffix = _overlay_parts(clone)
    return "%s%d%s" % (prefix, index, suffix)


def _overlay_parts(clone: str) -> tuple[str, str]:
    return "entropy-warm-%s-" % _UNSAFE.sub("_", clone)[:48], "-%s.qcow2" % hashlib.sha256(clone.encode("utf-8")).hexdigest()[:10]


def is_overlay_of(volume: str, clone: str) -> bool:
    prefix, suffix = _overlay_parts(clone)
    middle = volume[len(prefix):-len(suffix)] if volume.startswith(prefix) and volume.endswith(suffix) else ""
    return middle.isdigit()


def writable_disks(xml: str) -> list[tuple[str, str]]:
    """(path, format) of the definition's writable file disks: each clone needs an overlay over each of them."""
    disks = []
    for disk in ET.fromstring(xml).findall("devices/disk"):
        source = disk.find("source")
        if disk.get("device", "disk") != "disk" or source is None or not source.get("file"):
            continue
        if disk.find("readonly") is not None or disk.find("shareable") is not None:
            continue
        driver = disk.find("driver")
        disks.append((source.get("file"), driver.get("type", "raw") if driver is not None else "raw"))
    return disks


def free_target(xml: str) -> str:
    """The first virtio disk name (vda, vdb, ...) the definition does not use, for a hot-plugged seed."""
    used = {target.get("dev") for target in ET.fromstring(xml).iter("target") if target.get("dev")}
    return next("vd" + chr(c) for c in range(ord("a"), ord("z") + 1) if "vd" + chr(c) not in used)


def overlay_xml(name: str, backing: str, backing_format: str, capacity: int) -> str:
    vol = ET.Element("volume")
    ET.SubElement(vol, "name").text = name
    ET.SubElement(vol, "capacity", unit="bytes").text = str(capacity)
    ET.SubElement(ET.SubElement(vol, "target"), "format", type="qcow2")
    store = ET.SubElement(vol, "backingStore")
    ET.SubElement(store, "path").text = backing
    ET.SubElement(store, "format", type=backing_format)
    return ET.tostring(vol, encoding="unicode")


@dataclasses.dataclass
class Clone:
    """One clone of the task: who it is, where it goes, and what happened to it."""

    name: str
    uri: str
    uuid: str
    macs: tuple[str, ...]
    seed: str | None = None
    state: str = "absent"
    found_uri: str | None = None
    overlays: list = dataclasses.field(default_factory=list)
    seed_target: str | None = None
    timings: dict = dataclasses.field(default_factory=dict)

    def result(self) -> dict:
        out = {"name": self.name, "uri": self.found_uri or self.uri, "uuid": self.uuid, "macs": list(self.macs), "state": self.state,
               "overlays": list(self.overlays), "seed": self.seed}
        if self.seed_target:
            out["seed_target"] = self.seed_target
        if self.timings:
            out["timings"] = dict(self.timings)
        return out


class WarmCloneSet:
    """entropy.cluster.warm_clone: clones of one saved base VM, restored (present) or gone with their overlays (absent).
    A VM of a clone's name with another UUID is never touched."""

    def __init__(self, module, libvirt) -> None:
        self.module = module
        self.libvirt = libvirt
        self.params = module.params
        self.base_name: str = self.params["base"]
        self.base_uri: str = self.params.get("base_uri") or module.uri
        self.uri: str = module.uri
        self.conns: dict = {}

    def fail(self, msg: str, kind: str) -> t.NoReturn:
        self.module.fail(msg, kind)

    # ------------------------------------------------------------------ reading

    def connect(self, uri: str):
        if uri not in self.conns:
            self.conns[uri] = self.module.connect(uri)
        return self.conns[uri]

    def lookup_base(self, required: bool):
        conn = self.connect(self.base_uri)
        try:
            return conn.lookupByName(self.base_name)
        except self.libvirt.libvirtError as exc:
            if exc.get_error_code() != self.libvirt.VIR_ERR_NO_DOMAIN:
                raise
        if required:
            self.fail("Base VM %r is not defined on %s: boot it once, save it to the image (virsh save, or entropy.cluster.vm_image) "
                      "and keep it shut off; or name the host it is on (base_uri)." % (self.base_name, self.base_uri), "no_base")
        return None

    def read_image(self, base) -> SaveImage:
        path = self.params["image"]
        try:
            image = read_save_image(path)
        except OSError as exc:
            self.fail("Save image %r of base %r cannot be read (%s): save the base there first (virsh save %s <image>)."
                      % (path, self.base_name, exc.strerror or exc, self.base_name), "no_image")
        except SaveImageError as exc:
            self.fail("warm_clone of base %r: %s" % (self.base_name, exc), "bad_image")
        saved_uuid = ET.fromstring(image.xml).findtext("uuid")
        if saved_uuid != base.UUIDString():
            self.fail("Save image %r holds VM %r (UUID %s), not the base %r (UUID %s): give the image saved from the base."
                      % (path, ET.fromstring(image.xml).findtext("name"), saved_uuid, self.base_name, base.UUIDString()), "image_mismatch")
        return image

    def clones(self, base_uuid: str | None, nics: int | None) -> list[Clone]:
        """The task's clones, checked: names and UUIDs distinct, MACs well formed and one per NIC of the base."""
        clones, names, uuids, macs = [], set(), set(), set()
        for item in self.params["clones"]:
            name = item["name"]
            if not name or "\0" in name or name != name.strip():
                self.fail("warm_clone: clone name %r is empty, holds a NUL character or blanks at an end: rename it." % name, "invalid_argument")
            if name in names:
                self.fail("warm_clone: clone %r is listed twice in clones: list each clone once." % name, "invalid_argument")
            names.add(name)
            if item.get("uuid"):
                try:
                    clone_uuid = str(uuid_lib.UUID(item["uuid"]))
                except ValueError:
                    self.fail("warm_clone: clone %r: uuid %r is not a UUID: write e.g. %s, or leave it out." % (name, item["uuid"], uuid_lib.uuid4()),
                              "invalid_argument")
            elif base_uuid is None:
                self.fail("warm_clone: clone %r has no uuid and the base %r, from which its UUID derives, is not defined on %s: give the "
                          "clone's uuid, or name the base's host (base_uri)." % (name, self.base_name, self.base_uri), "no_base")
            else:
                clone_uuid = default_uuid(base_uuid, name)
            if clone_uuid in uuids or clone_uuid == base_uuid:
                self.fail("warm_clone: clone %r: UUID %s is the base's or another clone's: every clone needs its own." % (name, clone_uuid),
                          "invalid_argument")
            uuids.add(clone_uuid)
            clone_macs = tuple(m.lower() for m in item.get("macs") or ()) or (default_macs(clone_uuid, nics) if nics is not None else ())
            if nics is not None and len(clone_macs) != nics:
                self.fail("warm_clone: clone %r: %d MAC addresses given for the base's %d NICs: give one per NIC, in order, or leave macs out."
                          % (name, len(clone_macs), nics), "invalid_argument")
            for mac in clone_macs:
                if not _MAC.fullmatch(mac) or mac in macs:
                    self.fail("warm_clone: clone %r: MAC %r is malformed or another clone's: write six hex bytes (52:54:00:12:34:56), one per "
                              "clone and NIC." % (name, mac), "invalid_argument")
                macs.add(mac)
            clones.append(Clone(name=name, uri=item.get("uri") or self.uri, uuid=clone_uuid, macs=clone_macs, seed=item.get("seed")))
        return clones

    def locate(self, clones: list[Clone]) -> dict:
        """Where each clone already runs, looked up on every host of the task (a clone found elsewhere is not made twice).
        A VM with a clone's name and another UUID, or a clone's UUID and another name, stops the task."""
        domains = {}
        for uri in dict.fromkeys([self.base_uri] + [c.uri for c in clones]):
            domains[uri] = self.connect(uri).listAllDomains(0)
        found = {}
        for clone in clones:
            for uri, doms in domains.items():
                for dom in doms:
                    name, dom_uuid = dom.name(), dom.UUIDString()
                    if name == clone.name and dom_uuid != clone.uuid:
                        self.fail("VM %r already exists on %s with UUID %s, not the clone's %s: it is not this clone and is left alone; choose "
                                  "another clone name, or remove that VM." % (name, uri, dom_uuid, clone.uuid), "name_taken")
                    if dom_uuid == clone.uuid and name != clone.name:
                        self.fail("UUID %s of clone %r belongs to VM %r on %s: give the clone another uuid, or remove that VM."
                                  % (dom_uuid, clone.name, name, uri), "uuid_taken")
                    if dom_uuid == clone.uuid:
                        if clone.name in found:
                            self.fail("Clone %r is defined on %s and on %s: two copies of one VM; remove the one that should not run."
                                      % (clone.name, found[clone.name][0], uri), "duplicate")
                        found[clone.name] = (uri, dom)
                        clone.found_uri = uri
        return found

    # ------------------------------------------------------------------ the task

    def run(self) -> t.NoReturn:
        module = self.module
        present = self.params["state"] == "present"
        base = self.lookup_base(required=present)
        if present:
            if base.isActive():
                self.fail("Base VM %r runs on %s: its disk would change under the clones' overlays and its image would be stale; save it "
                          "(virsh save) so that it stays shut off, then clone." % (self.base_name, self.base_uri), "base_running")
            image = self.read_image(base)
            nics = len(ET.fromstring(image.xml).findall("devices/interface"))
        clones = self.clones(base.UUIDString() if base is not None else None, nics if present else None)
        found = self.locate(clones)
        module.result.update(base=self.base_name, base_uri=self.base_uri)
        before = sorted(found)
        if present:
            self.present(clones, found, image)
            after = sorted(c.name for c in clones)
        else:
            self.absent(clones, found)
            after = []
        module.result["changed"] = any(c.state in ("created", "removed") for c in clones)
        module.set_diff({"clones": before}, {"clones": after})
        module.exit(clones=[c.result() for c in clones], state=self.params["state"])

    def pool(self, uri: str):
        name = self.params.get("pool")
        return active_pool(self.connect(uri), name, uri, self.fail, missing=(
            "Storage pool %r for the clones' overlays is not defined on %s: define it on every clone host, over a directory that "
            "host sees the base's disk from." % (name, uri)))

    def present(self, clones: list[Clone], found: dict, image: SaveImage) -> None:
        disks = writable_disks(image.xml)
        if disks and not self.params.get("pool"):
            self.fail("Base %r has the disk(s) %s: give pool, the storage pool where each clone's overlay over them goes."
                      % (self.base_name, ", ".join(p for p, _f in disks)), "invalid_argument")
        todo = []
        for clone in clones:
            if clone.name in found:
                clone.state = "present"
                dom = found[clone.name][1]
                clone.overlays = [s.get("file") for s in ET.fromstring(dom.XMLDesc(0)).findall("devices/disk/source") if s.get("file")
                                  and os.path.basename(s.get("file")).startswith("entropy-warm-")]
            else:
                clone.state = "created"
                todo.append(clone)
        if not todo or self.module.check_mode:
            return
        pools, capacities = {}, {}
        for clone in todo:
            if disks and clone.uri not in pools:
                pools[clone.uri] = self.pool(clone.uri)
                for path, _fmt in disks:
                    try:
                        capacities[clone.uri, path] = self.connect(clone.uri).storageVolLookupByPath(path).info()[1]
                    except self.libvirt.libvirtError as exc:
                        if exc.get_error_code() != self.libvirt.VIR_ERR_NO_STORAGE_VOL:
                            raise
                        self.fail("Disk %r of base %r is not a volume of any storage pool on %s: put it in a pool's directory that every "
                                  "clone host sees (and refresh the pool)." % (path, self.base_name, clone.uri), "no_base_volume")
        failures = []
        started = time.monotonic()
        workers = max(1, min(self.params.get("parallel") or 1, len(todo)))
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            jobs = {pool.submit(self.make, clone, image, disks, pools.get(clone.uri), capacities, started): clone for clone in todo}
            for job in concurrent.futures.as_completed(jobs):
                error = job.exception()
                if error is not None:
                    failures.append((jobs[job], error))
        if failures:
            clone, error = failures[0]
            made = [c.name for c in todo if c.state == "created"]
            self.module.result["clones"] = [c.result() for c in clones]
            self.module.result["changed"] = bool(made)
            kind = getattr(error, "kind", None) or ("bad_image" if isinstance(error, SaveImageError) else "restore_failed")
            self.fail("warm_clone of base %r: %d of %d clones failed and were removed (overlays included); first: clone %r on %s: %s; made: %s"
                      % (self.base_name, len(failures), len(todo), clone.name, clone.uri, _message(error), made or "none"), kind)

    def make(self, clone: Clone, image: SaveImage, disks: list, pool, capacities: dict, started: float) -> None:
        """One clone: its overlays, its copy of the image, the restore, its seed hot-plugged. Undone on any failure."""
        conn = self.conns[clone.uri]
        dom = None
        image_path = os.path.join(os.path.dirname(os.path.abspath(image.path)), ".warm-clone-%s.save" % clone.uuid)
        try:
            replaced = {}
            for index, (path, fmt) in enumerate(disks):
                name = overlay_name(clone.name, index)
                old = find_volume(pool, name)
                if old is not None:  # left by a clone of this name that is gone: its writes are not this clone's
                    old.delete(0)
                vol = pool.createXML(overlay_xml(name, path, fmt, capacities[clone.uri, path]), 0)
                replaced[path] = vol.path()
                clone.overlays.append(vol.path())
            identity = CloneIdentity(name=clone.name, uuid=clone.uuid, macs=clone.macs, disks=replaced)
            write_clone_image(image, identity, image_path)
            clone.timings["image_written_s"] = round(time.monotonic() - started, 3)
            conn.restore(image_path)
            clone.timings["restored_s"] = round(time.monotonic() - started, 3)
            dom = conn.lookupByUUIDString(clone.uuid)
            if clone.seed:
                clone.seed_target = free_target(dom.XMLDesc(0))
                dom.attachDeviceFlags(seed_disk_xml(clone.seed, clone.seed_target), self.libvirt.VIR_DOMAIN_AFFECT_LIVE)
                clone.timings["seeded_s"] = round(time.monotonic() - started, 3)
        except BaseException:
            clone.state = "failed"
            self.undo(conn, clone, dom, pool)
            raise
        finally:
            if os.path.exists(image_path):
                os.unlink(image_path)
            if os.path.exists(image_path + ".part"):
                os.unlink(image_path + ".part")

    def undo(self, conn, clone: Clone, dom, pool) -> None:
        if dom is None:
            try:
                dom = conn.lookupByUUIDString(clone.uuid)
            except self.libvirt.libvirtError:
                dom = None
        try:
            if dom is not None:
                self.remove_domain(dom)
            for index in range(len(clone.overlays)):
                vol = find_volume(pool, overlay_name(clone.name, index))
                if vol is not None:
                    vol.delete(0)
        except self.libvirt.libvirtError:
            pass  # the first error is the one reported
        clone.overlays = []

    def remove_domain(self, dom) -> None:
        persistent = dom.isPersistent()  # a transient clone is gone once destroyed
        if dom.isActive():
            dom.destroy()
        if persistent:
            dom.undefineFlags(self.libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | self.libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)

    def absent(self, clones: list[Clone], found: dict) -> None:
        for clone in clones:
            uri = found[clone.name][0] if clone.name in found else clone.uri
            leftovers = []
            if self.params.get("pool"):
                pool = self.pool(uri)
                leftovers = [v for v in pool.listAllVolumes(0) if is_overlay_of(v.name(), clone.name)]
            clone.overlays = [v.path() for v in leftovers]
            clone.state = "removed" if clone.name in found or leftovers else "absent"
            if self.module.check_mode:
                continue
            if clone.name in found:
                self.remove_domain(found[clone.name][1])
            for vol in leftovers:
                vol.delete(0)


def _message(error: BaseException) -> str:
    if hasattr(error, "get_error_message"):
        return (error.get_error_message() or str(error)).strip()
    return str(error).strip()
