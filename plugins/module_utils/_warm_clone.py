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

import dataclasses
import os
import shutil
import struct
import typing as t
import xml.etree.ElementTree as ET

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
        source.seek(image.stream_offset)
        shutil.copyfileobj(source, target, 1 << 20)
    os.replace(tmp, path)
    return path
