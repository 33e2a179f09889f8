# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The VM metadata of the collection (priority, saved mark) and the saved-image reader of the inventory, on plain data."""

from __future__ import annotations

import pytest

from ansible_collections.entropy.cluster.plugins.inventory.libvirt_cluster import read_saved_images
from ansible_collections.entropy.cluster.plugins.module_utils import vm_metadata
from ansible_collections.entropy.cluster.plugins.module_utils._vm_image import image_path
from ansible_collections.entropy.cluster.plugins.plugin_utils.cluster_model import build_model
from ansible_collections.entropy.cluster.plugins.plugin_utils.plan_playbook import plan_problems

DOMAIN = """<domain type='qemu'><name>web01</name><uuid>11111111-2222-3333-4444-555555555555</uuid>
<metadata>%s</metadata><memory unit='KiB'>65536</memory><currentMemory unit='KiB'>65536</currentMemory><vcpu>2</vcpu></domain>"""
ELEMENT = ('<entropy:vm xmlns:entropy="urn:x-entropy-cluster:vm:1"><entropy:priority>%s</entropy:priority>'
           '<entropy:saved path="/srv/saves/web01.save"/></entropy:vm>')


def test_priority_and_saved_mark_are_read_back():
    assert vm_metadata.read(DOMAIN % (ELEMENT % "10"), "web01") == {"priority": 10, "saved": "/srv/saves/web01.save", "job": None, "owner": None}
    assert vm_metadata.read(DOMAIN % "", "web01") == {"priority": None, "saved": None, "job": None, "owner": None}
    assert vm_metadata.read(DOMAIN % (ELEMENT % " -3 "), "web01")["priority"] == -3


def test_a_priority_that_is_no_integer_names_the_vm_and_the_fix():
    with pytest.raises(vm_metadata.MetadataError) as info:
        vm_metadata.read(DOMAIN % (ELEMENT % "high"), "web01")
    assert str(info.value) == ("VM 'web01': priority 'high' is not an integer; give a whole number such as 0 or 10 (higher runs "
                               "first) with entropy.cluster.vm_priority")
    assert vm_metadata.read(DOMAIN % (ELEMENT % "high"), "web01", strict=False)["priority"] == "high"
    for bad in (True, 1.5, None, "1e3", ""):
        with pytest.raises(vm_metadata.MetadataError):
            vm_metadata.parse_priority(bad, "web01")


def test_render_and_the_saved_mark_removed_from_a_definition():
    assert vm_metadata.render({"priority": None, "saved": None}) is None
    assert vm_metadata.render({"priority": 7, "saved": "/s/a.save"}) == '<vm><priority>7</priority><saved path="/s/a.save" /></vm>'
    cleaned = vm_metadata.without_saved_mark(DOMAIN % (ELEMENT % "10"))
    assert vm_metadata.read(cleaned, "web01") == {"priority": 10, "saved": None, "job": None, "owner": None}
    only_mark = DOMAIN % '<entropy:vm xmlns:entropy="urn:x-entropy-cluster:vm:1"><entropy:saved path="/x"/></entropy:vm>'
    assert "<metadata" not in vm_metadata.without_saved_mark(only_mark)


def test_image_paths_refuse_names_that_are_no_file_names():
    assert image_path("/srv/saves/", "web01") == "/srv/saves/web01.save"
    for name in ("a/b", ".hidden", ""):
        with pytest.raises(ValueError):
            image_path("/srv/saves", name)
    with pytest.raises(ValueError, match="not an absolute path"):
        image_path("saves", "web01")


def write_image(path, xml, magic=b"LibvirtQemudSave"):
    data = xml.encode() + b"\0"
    header = magic + (2).to_bytes(4, "little") + len(data).to_bytes(4, "little") + bytes(68)  # 92 bytes in all, as libvirt 9.0 writes
    path.write_bytes(header + data + b"QEVM")


def test_saved_images_are_read_from_their_header(tmp_path):
    write_image(tmp_path / "web01.save", DOMAIN % (ELEMENT % "10"))
    write_image(tmp_path / "web02.save", DOMAIN % "", magic=b"LibvirtQemudPart")
    write_image(tmp_path / "web03.save", DOMAIN % "")  # holds web01
    (tmp_path / "notes.txt").write_text("not an image")
    records = {r["path"].rsplit("/", 1)[1]: r for r in read_saved_images(str(tmp_path))}
    assert sorted(records) == ["web01.save", "web02.save", "web03.save"]
    assert records["web01.save"] == {"path": str(tmp_path / "web01.save"), "name": "web01", "uuid": "11111111-2222-3333-4444-555555555555",
                                     "vcpus": 2, "memory_mib": 64, "memory_max_mib": 64, "priority": 10}
    assert "unfinished" in records["web02.save"]["error"]
    assert records["web03.save"]["error"] == "it holds VM 'web01', not 'web03'"


def test_a_saved_vm_enters_the_model_on_no_host_with_its_priority():
    hostvars = {
        "hv1": {"entropy_kind": "hypervisor", "entropy_reachable": True, "entropy_cpu_cores": 2, "entropy_memory_mib": 1024},
        "a": {"entropy_kind": "vm", "entropy_hypervisor": "hv1", "entropy_state": "running", "entropy_memory_mib": 64,
              "entropy_vcpus": 1, "entropy_cpu_demand_cores": 0.5, "entropy_priority": 10},
        "b": {"entropy_kind": "vm", "entropy_hypervisor": None, "entropy_state": "saved", "entropy_memory_mib": 128, "entropy_vcpus": 2,
              "entropy_save_image": "/srv/saves/b.save", "entropy_priority": -1},
    }
    model = build_model(hostvars)
    assert model["vms"] == [{"name": "a", "host": "hv1", "state": "running", "memory_mib": 64, "priority": 10, "vcpus": 1, "cpu": 0.5},
                            {"name": "b", "host": None, "state": "saved", "memory_mib": 128, "cpu": 0.0, "vcpus": 2, "priority": -1}]
    assert model["warnings"] == []


def test_plan_check_accepts_a_resume_elsewhere_only_with_shared_saves():
    plan = {"initial": {"a": {"host": "hv1", "state": "running"}, "b": {"host": None, "state": "saved"}},
            "target": {"a": "hv2", "b": "hv1"},
            "steps": [[{"action": "suspend", "vm": "a", "host": "hv1"}],
                      [{"action": "resume", "vm": "a", "to": "hv2"}, {"action": "resume", "vm": "b", "to": "hv1"}]]}
    assert plan_problems(plan) == ["step 2, action 1 (resume a): runs on hv2, but the plan has VM 'a' on hv1 at that step"]
    assert plan_problems(plan, resume_anywhere=True) == []


def test_job_and_owner_are_kept_literally():
    job, owner = "it's {{ lookup('pipe','id') }} & <x>", 'bob "the" builder'
    element = vm_metadata.render({"priority": 3, "job": job, "owner": owner})
    root = "<domain><name>j-1</name><metadata>%s</metadata></domain>" % element.replace("<vm>", "<vm xmlns='%s'>" % vm_metadata.NAMESPACE, 1)
    assert vm_metadata.read(root, "j-1") == {"priority": 3, "saved": None, "job": job, "owner": owner}
