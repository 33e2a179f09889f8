# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.vm_info and entropy.cluster.host_info against the libvirt test driver."""

from __future__ import annotations

import pytest

pytest.importorskip("libvirt")

from conftest import TEST_URI, UNREACHABLE_URI  # noqa: E402  pylint: disable=wrong-import-position


def test_vm_info_one_vm(hv, run):
    hv.lookupByName("test").snapshotCreateXML("<domainsnapshot><name>s1</name></domainsnapshot>", 0)
    result = run("vm_info", dict(uri=TEST_URI, name="test"), check=True)
    assert result["changed"] is False and result["uri"] == TEST_URI
    (vm,) = result["vms"]
    assert vm["name"] == "test" and vm["state"] == "running" and vm["condition"] == "running"
    assert vm["vcpus"] == 2 and vm["memory_mib"] == {"max": 8192, "current": 2048}
    assert vm["persistent"] is True and vm["autostart"] is False and vm["has_managed_save"] is False
    assert vm["snapshots"] == ["s1"] and isinstance(vm["cpu_time_ns"], int)
    assert vm["disks"] == [dict(target="vda", bus="virtio", device="disk", type="file", source="/guest/diskimage1", format=None)]
    assert vm["interfaces"][0]["mac"] == "aa:bb:cc:dd:ee:ff" and vm["interfaces"][0]["source"] == "default"


def test_vm_info_saved_vm_and_all_vms(hv, run):
    hv.lookupByName("test").managedSave(0)
    result = run("vm_info", dict(uri=TEST_URI))
    (vm,) = result["vms"]
    assert vm["state"] == "shutoff" and vm["condition"] == "saved" and vm["has_managed_save"] is True and vm["id"] is None


def test_vm_info_unknown_vm_is_an_empty_list(hv, run):
    result = run("vm_info", dict(uri=TEST_URI, name="ghost"))
    assert not result.get("failed") and result["vms"] == []


def test_vm_info_unreachable(run):
    result = run("vm_info", dict(uri=UNREACHABLE_URI))
    assert result["failed"] and result["error_kind"] == "unreachable" and UNREACHABLE_URI in result["msg"]


def test_host_info(hv, run):
    hv.lookupByName("test").suspend()
    result = run("host_info", dict(uri=TEST_URI), check=True)
    host = result["host"]
    assert result["changed"] is False
    assert host["hypervisor"] == "TEST" and host["host_uuid"] is None and host["hostname"]
    assert host["cpu"]["count"] == 16 and host["memory_mib"] == 3072 and host["available_memory_mib"] is None
    assert host["libvirt_version"].count(".") == 2
    assert host["vms"] == {"total": 1, "active": 1, "by_state": {"paused": 1}}


def test_host_info_unreachable(run):
    result = run("host_info", dict(uri=UNREACHABLE_URI))
    assert result["failed"] and result["error_kind"] == "unreachable"
