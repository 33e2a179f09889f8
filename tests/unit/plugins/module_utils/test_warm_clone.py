# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The save-image header rewrite of warm clones (module_utils/_warm_clone.py) on images built here in libvirt's
layout: the clone's definition in, the cookie moved, QEMU's stream untouched; other magics, versions, compressed
images and broken offsets refused. A real image from a real save is restored on the lab (tests/integration/test_warm_clone.py)."""

from __future__ import annotations

import pytest

from ansible_collections.entropy.cluster.plugins.module_utils import _warm_clone as wc

XML = ("<domain type='qemu'><name>base</name><uuid>11111111-2222-3333-4444-555555555555</uuid><devices>"
       "<disk type='file' device='disk'><source file='/img/base.qcow2'/><target dev='hda'/></disk>"
       "<interface type='bridge'><mac address='52:54:00:00:00:01'/><source bridge='entropy0'/><target dev='vnet3'/></interface>"
       "</devices></domain>")
COOKIE = b"<qemu-migration><name>base</name></qemu-migration>"
STREAM = bytes(range(256)) * 64


def make_image(path, magic=wc.MAGIC, version=2, compressed=0, cookie_offset=None, data_len=4096):
    xml = XML.encode() + b"\0"
    offset = len(xml) if cookie_offset is None else cookie_offset
    data = (xml + COOKIE + b"\0").ljust(data_len, b"\0")
    with open(path, "wb") as handle:
        handle.write(wc.HEADER.pack(magic, version, data_len, 1, compressed, offset, *([0] * 14)))
        handle.write(data)
        handle.write(STREAM)
    return str(path)


def identity(name="it's {{ c }} 1", disks=None, macs=("52:54:00:aa:bb:cc",)):
    return wc.CloneIdentity(name=name, uuid="99999999-8888-7777-6666-555555555555", macs=macs,
                            disks={"/img/base.qcow2": "/img/clone 1.qcow2"} if disks is None else disks)


def test_header_is_92_bytes_as_libvirt_writes_it():
    assert wc.HEADER.size == 92


def test_clone_image_carries_the_new_identity_and_the_same_stream(tmp_path):
    image = wc.read_save_image(make_image(tmp_path / "base.save"))
    assert image.xml == XML and image.cookie == COOKIE and image.was_running == 1
    path = wc.write_clone_image(image, identity(), str(tmp_path / "clone.save"))
    clone = wc.read_save_image(path)
    assert "<name>it's {{ c }} 1</name>" in clone.xml and "99999999-8888-7777-6666-555555555555" in clone.xml
    assert "52:54:00:aa:bb:cc" in clone.xml and "/img/clone 1.qcow2" in clone.xml and "vnet3" not in clone.xml
    assert "/img/base.qcow2" not in clone.xml and clone.cookie == COOKIE and clone.data_len == image.data_len
    with open(path, "rb") as handle:
        handle.seek(clone.stream_offset)
        assert handle.read() == STREAM


def test_data_grows_when_the_new_definition_does_not_fit(tmp_path):
    image = wc.read_save_image(make_image(tmp_path / "base.save", data_len=len(XML) + len(COOKIE) + 2))
    clone = wc.read_save_image(wc.write_clone_image(image, identity(name="x" * 300), str(tmp_path / "clone.save")))
    assert clone.data_len > image.data_len and clone.cookie == COOKIE
    with open(clone.path, "rb") as handle:
        handle.seek(clone.stream_offset)
        assert handle.read() == STREAM


@pytest.mark.parametrize("kwargs, words", [
    (dict(magic=b"NotLibvirtSave!!"), "is not a libvirt QEMU save image"),
    (dict(magic=wc.PARTIAL_MAGIC), "is incomplete"),
    (dict(version=3), "has header version 3"),
    (dict(compressed=1), "is compressed"),
    (dict(cookie_offset=5000), "cookie offset 5000 out of range"),
    (dict(cookie_offset=3), "not where the header says"),
])
def test_other_images_are_refused(tmp_path, kwargs, words):
    with pytest.raises(wc.SaveImageError) as caught:
        wc.read_save_image(make_image(tmp_path / "base.save", **kwargs))
    assert words in str(caught.value) and str(tmp_path / "base.save") in str(caught.value)


def test_identity_must_match_the_base(tmp_path):
    image = wc.read_save_image(make_image(tmp_path / "base.save"))
    with pytest.raises(wc.SaveImageError, match="2 MAC addresses given for the base's 1 NICs"):
        wc.clone_xml(image.xml, identity(macs=("52:54:00:00:00:02", "52:54:00:00:00:03")))
    with pytest.raises(wc.SaveImageError, match="the base has no disk /elsewhere.qcow2"):
        wc.clone_xml(image.xml, identity(disks={"/elsewhere.qcow2": "/x.qcow2"}))


def test_a_console_log_file_of_the_base_becomes_the_clones_own():
    xml = XML.replace("</devices>", "<serial type='file'><source path='/var/log/base.log'/><target port='0'/></serial>"
                                    "<console type='file'><source path='/var/log/base.log'/><target type='serial'/></console></devices>")
    clone = wc.clone_xml(xml, identity())
    assert clone.count("/var/log/base.log.99999999-8888-7777-6666-555555555555") == 2 and "base.log'" not in clone


def test_derived_identities_are_stable_and_distinct():
    one, two = wc.default_uuid("11111111-2222-3333-4444-555555555555", "a"), wc.default_uuid("11111111-2222-3333-4444-555555555555", "b")
    assert one == wc.default_uuid("11111111-2222-3333-4444-555555555555", "a") != two
    assert wc.default_macs(one, 2) == wc.default_macs(one, 2) and len(set(wc.default_macs(one, 2) + wc.default_macs(two, 2))) == 4
    assert wc.is_overlay_of(wc.overlay_name("it's 1", 3), "it's 1") and not wc.is_overlay_of(wc.overlay_name("it's 1", 3), "it's 2")
    assert wc.free_target("<domain><devices><disk><target dev='vda'/></disk></devices></domain>") == "vdb"
