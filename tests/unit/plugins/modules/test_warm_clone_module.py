# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.warm_clone against the libvirt test driver: check mode, derived identities, the errors (base missing
or running, not a save image, another VM's image, a name taken), idempotence, removal, and a restore that fails (the
test driver cannot restore QEMU's save format) leaving no clone and no overlay. The restores themselves run on the lab
(tests/integration/test_warm_clone.py)."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("libvirt")

from conftest import TEST_URI  # noqa: E402  pylint: disable=wrong-import-position
from ansible_collections.entropy.cluster.plugins.module_utils import _warm_clone as wc  # noqa: E402  pylint: disable=wrong-import-position

POOL = "default-pool"
BASE = "warm-base"
BASE_UUID = "11111111-2222-3333-4444-555555555555"
CLONES = [{"name": "it's {{ c }} 1"}, {"name": "clone-2"}]


def base_xml(disk: str) -> str:
    return ("<domain type='test'><name>%s</name><uuid>%s</uuid><memory>65536</memory><os><type>hvm</type></os><devices>"
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='%s'/><target dev='vda' bus='virtio'/></disk>"
            "<interface type='network'><mac address='52:54:00:00:00:01'/><source network='default'/></interface>"
            "</devices></domain>" % (BASE, BASE_UUID, disk))


def save_image(path, xml: str) -> str:
    """An image in libvirt's QEMU save layout (version 2, raw) holding ``xml``, a stream of a few bytes after it."""
    data = (xml.encode() + b"\0" + b"<qemu-migration/>\0").ljust(4096, b"\0")
    with open(path, "wb") as handle:
        handle.write(wc.HEADER.pack(wc.MAGIC, 2, len(data), 1, 0, len(xml.encode()) + 1, *([0] * 14)))
        handle.write(data)
        handle.write(b"QEVM" + bytes(64))
    return str(path)


@pytest.fixture()
def setup(hv, tmp_path):
    """The base (defined, shut off, its disk a volume of the pool) and its save image."""
    pool = hv.storagePoolLookupByName(POOL)
    disk = pool.createXML("<volume><name>warm-base.qcow2</name><capacity>1048576</capacity><target><format type='qcow2'/></target>"
                          "</volume>", 0)
    base = hv.defineXML(base_xml(disk.path()))
    image = save_image(tmp_path / "base.save", base_xml(disk.path()))
    yield {"image": image, "base": base, "pool": pool}
    for vol in pool.listAllVolumes(0):
        if vol.name().startswith("entropy-warm-") or vol.name() == "warm-base.qcow2":
            vol.delete(0)


def args(setup, **over):
    out = dict(uri=TEST_URI, base=BASE, image=setup["image"], pool=POOL, clones=CLONES)
    out.update(over)
    return out


def overlays(setup):
    return sorted(v.name() for v in setup["pool"].listAllVolumes(0) if v.name().startswith("entropy-warm-"))


def test_check_mode_says_which_clones_it_would_make_with_their_own_identity(hv, setup, run):
    result = run("warm_clone", args(setup), check=True, diff=True)
    assert result["changed"] is True and result["diff"] == {"before": {"clones": []}, "after": {"clones": sorted(c["name"] for c in CLONES)}}
    first, second = result["clones"]
    assert [first["state"], second["state"]] == ["created", "created"] and first["name"] == "it's {{ c }} 1"
    assert first["uuid"] == wc.default_uuid(BASE_UUID, "it's {{ c }} 1") != second["uuid"] != BASE_UUID
    assert first["macs"] != second["macs"] and len(first["macs"]) == 1 and first["macs"][0].startswith("52:54:00:")
    again = run("warm_clone", args(setup), check=True)
    assert [c["uuid"] for c in again["clones"]] == [first["uuid"], second["uuid"]]  # derived, stable across runs
    assert "it's {{ c }} 1" not in [d.name() for d in hv.listAllDomains()] and overlays(setup) == []


@pytest.mark.parametrize("over, kind, words", [
    (dict(base="no such base"), "no_base", "Base VM 'no such base' is not defined on test:///default"),
    (dict(image="/nonexistent/base.save"), "no_image", "Save image '/nonexistent/base.save' of base 'warm-base' cannot be read"),
    (dict(clones=[{"name": "a"}, {"name": "a"}]), "invalid_argument", "clone 'a' is listed twice"),
    (dict(clones=[{"name": "a", "macs": ["52:54:00:00:00:02", "52:54:00:00:00:03"]}]), "invalid_argument",
     "2 MAC addresses given for the base's 1 NICs"),
    (dict(clones=[{"name": "a", "uuid": "nope"}]), "invalid_argument", "uuid 'nope' is not a UUID"),
    (dict(clones=[{"name": "a", "uuid": BASE_UUID}]), "invalid_argument", "is the base's or another clone's"),
    (dict(pool=None), "invalid_argument", "give pool"),
])
def test_bad_input_fails_with_one_line_naming_it(hv, setup, run, over, kind, words):
    result = run("warm_clone", args(setup, **over))
    assert result["failed"] and result["error_kind"] == kind and words in result["msg"], result
    assert "\n" not in result["msg"] and overlays(setup) == []


def test_an_image_that_is_not_a_save_image_or_is_another_vms_is_refused(hv, setup, run, tmp_path):
    other = tmp_path / "not.save"
    other.write_bytes(b"QEVM" + bytes(200))
    result = run("warm_clone", args(setup, image=str(other)))
    assert result["failed"] and result["error_kind"] == "bad_image" and "is not a libvirt QEMU save image" in result["msg"]
    foreign = save_image(tmp_path / "foreign.save", base_xml("/x.qcow2").replace(BASE_UUID, "99999999-2222-3333-4444-555555555555"))
    result = run("warm_clone", args(setup, image=foreign))
    assert result["failed"] and result["error_kind"] == "image_mismatch" and "not the base 'warm-base'" in result["msg"]


def test_a_running_base_is_refused(hv, setup, run):
    setup["base"].create()
    result = run("warm_clone", args(setup), check=True)
    assert result["failed"] and result["error_kind"] == "base_running" and "Base VM 'warm-base' runs on" in result["msg"]


def test_a_vm_of_a_clones_name_with_another_uuid_is_left_alone(hv, setup, run):
    hv.defineXML("<domain type='test'><name>clone-2</name><memory>65536</memory><os><type>hvm</type></os></domain>")
    for state in ("present", "absent"):
        result = run("warm_clone", args(setup, state=state))
        assert result["failed"] and result["error_kind"] == "name_taken", result
        assert "VM 'clone-2' already exists on test:///default with UUID" in result["msg"] and "left alone" in result["msg"]
    assert "clone-2" in [d.name() for d in hv.listAllDomains()]


def test_existing_clones_are_not_made_again_and_absent_removes_them_with_their_overlays(hv, setup, run):
    planned = run("warm_clone", args(setup), check=True)["clones"]
    for clone in planned:  # as a restore leaves them: running, with an overlay in the pool
        xml = base_xml("/default-pool/" + wc.overlay_name(clone["name"], 0)).replace(BASE_UUID, clone["uuid"])
        hv.createXML(xml.replace("<name>%s</name>" % BASE, "<name>%s</name>" % clone["name"].replace("'", "&apos;")), 0)
        setup["pool"].createXML("<volume><name>%s</name><capacity>1048576</capacity></volume>" % wc.overlay_name(clone["name"], 0), 0)
    again = run("warm_clone", args(setup), diff=True)
    assert again["changed"] is False and [c["state"] for c in again["clones"]] == ["present", "present"]
    assert again["diff"]["before"] == again["diff"]["after"]
    check = run("warm_clone", args(setup, state="absent"), check=True)
    assert check["changed"] is True and [c["state"] for c in check["clones"]] == ["removed", "removed"]
    assert len(overlays(setup)) == 2
    gone = run("warm_clone", args(setup, state="absent", image=None))
    assert gone["changed"] is True and [c["state"] for c in gone["clones"]] == ["removed", "removed"]
    names = [d.name() for d in hv.listAllDomains()]
    assert "clone-2" not in names and "it's {{ c }} 1" not in names and BASE in names and overlays(setup) == []
    assert run("warm_clone", args(setup, state="absent", image=None))["changed"] is False


def test_a_failed_restore_leaves_no_clone_and_no_overlay(hv, setup, run):
    result = run("warm_clone", args(setup))  # the test driver cannot restore QEMU's format: a real failure of the restore
    assert result["failed"] and result["error_kind"] == "restore_failed", result
    assert "2 of 2 clones failed and were removed" in result["msg"] and "made: none" in result["msg"]
    assert overlays(setup) == [] and sorted(d.name() for d in hv.listAllDomains()) == sorted(["test", BASE])
    assert not any(name.startswith(".warm-clone-") for name in os.listdir(os.path.dirname(setup["image"])))  # no copy left
