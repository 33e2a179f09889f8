# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.linked_clone against the libvirt test driver (its pool "default-pool"); the real qcow2 backing
file is checked on the lab's QEMU daemons (tests/integration/test_linked_clone.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from conftest import TEST_URI  # noqa: E402  pylint: disable=wrong-import-position

POOL = "default-pool"


@pytest.fixture()
def base(hv):
    pool = hv.storagePoolLookupByName(POOL)
    vol = pool.createXML("<volume><name>base.qcow2</name><capacity>67108864</capacity><target><format type='qcow2'/></target></volume>", 0)
    yield vol.path()
    for v in pool.listAllVolumes(0):
        v.delete(0)


def clone(run, check=False, **args):
    return run("linked_clone", dict(dict(uri=TEST_URI, pool=POOL), **args), check=check, diff=True)


def volumes(hv):
    return sorted(v.name() for v in hv.storagePoolLookupByName(POOL).listAllVolumes(0))


def test_check_mode_then_create_then_idempotent_then_absent(hv, run, base):
    name = "it's {{ job }} 1.qcow2"
    checked = clone(run, check=True, name=name, backing_file=base)
    assert checked["changed"] is True and checked["backing_file"] == base and volumes(hv) == ["base.qcow2"]
    assert checked["diff"]["before"] == {"volume": None}
    created = clone(run, name=name, backing_file=base)
    assert created["changed"] is True and created["backing_file"] == base and created["format"] == "qcow2"
    assert volumes(hv) == ["base.qcow2", name]  # the name taken literally
    again = clone(run, name=name, backing_file=base)
    assert again["changed"] is False and again["path"] == created["path"]
    gone_check = clone(run, check=True, name=name, state="absent")
    assert gone_check["changed"] is True and name in volumes(hv)
    gone = clone(run, name=name, state="absent")
    assert gone["changed"] is True and volumes(hv) == ["base.qcow2"]
    assert clone(run, name=name, state="absent")["changed"] is False


def test_refusals_name_the_object_and_the_fix(hv, run, base):
    pool = hv.storagePoolLookupByName(POOL)
    pool.createXML("<volume><name>plain.qcow2</name><capacity>1048576</capacity><target><format type='qcow2'/></target></volume>", 0)
    other = clone(run, name="plain.qcow2", backing_file=base)
    assert other["failed"] and other["error_kind"] == "exists_different", other
    assert "already exists in pool 'default-pool'" in other["msg"] and "with backing file None" in other["msg"]
    nopool = run("linked_clone", dict(uri=TEST_URI, pool="nope", name="x", backing_file=base))
    assert nopool["failed"] and nopool["error_kind"] == "no_pool" and "'nope' is not defined" in nopool["msg"]
    nobase = clone(run, name="x", backing_file="/elsewhere/base.qcow2")
    assert nobase["failed"] and nobase["error_kind"] == "no_base" and "is not a volume of any storage pool" in nobase["msg"]
    missing = run("linked_clone", dict(uri=TEST_URI, pool=POOL, name="x"))
    assert missing["failed"] and "backing_file" in missing["msg"]
    assert volumes(hv) == ["base.qcow2", "plain.qcow2"]
