# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""vm_recover's pure parts: the option checks (one line naming the fix), which checkpoint a VM restarts from (the newest
whose files are all there), and a definition's size and priority for the solver. The recovery itself runs on the lab
(tests/integration/test_recover.py)."""

from __future__ import annotations

import json
import os

from ansible_collections.entropy.cluster.plugins.module_utils._recover import check_params, domain_facts, read_manifests, usable

HV = {"hv1": "qemu:///a", "hv2": "qemu:///b"}


def params(tmp_path, **over):
    return dict({"hypervisors": HV, "failed_host": "hv2", "directory": str(tmp_path), "placement": None}, **over)


def test_bad_options_are_named_in_one_line(tmp_path):
    assert check_params(params(tmp_path)) is None
    assert check_params(params(tmp_path, failed_host="hv9")) == "failed_host 'hv9' is not one of hypervisors (hv1, hv2)"
    assert "not a surviving hypervisor (hv1)" in check_params(params(tmp_path, placement={"vm3": "hv2"}))
    assert "does not exist" in check_params(params(tmp_path, directory=str(tmp_path / "nowhere")))
    assert "name the surviving hypervisors too" in check_params(params(tmp_path, hypervisors={"hv2": "qemu:///b"}))


def write(tmp_path, name: str, created: float, files: bool = True) -> None:
    mem = tmp_path / ("vm3.%s.mem" % name)
    frozen = tmp_path / ("frozen-%s.qcow2" % name)
    if files:
        mem.write_bytes(b"x")
        frozen.write_bytes(b"x")
    manifest = {"checkpoint": name, "created": created, "vms": {"vm3": {"uri": "qemu:///b", "memory_file": str(mem),
                                                                        "disks": [{"target": "hda", "frozen": str(frozen)}]}}}
    (tmp_path / ("%s.checkpoint.json" % name)).write_text(json.dumps(manifest))


def test_the_newest_checkpoint_whose_files_are_all_there_is_chosen(tmp_path):
    write(tmp_path, "a", 100.0)
    write(tmp_path, "b", 200.0, files=False)
    (tmp_path / "junk.checkpoint.json").write_text("{not json")
    found = read_manifests(str(tmp_path))
    assert [m["checkpoint"] for m in found] == ["b", "a"]
    assert "missing" in usable(found[0]) and usable(found[1]) is None
    os.unlink(tmp_path / "vm3.a.mem")
    assert "vm3.a.mem" in usable(read_manifests(str(tmp_path))[1])


def test_a_definition_gives_the_solver_its_size_and_priority():
    xml = ("<domain><name>vm3</name><memory unit='KiB'>131072</memory><vcpu>2</vcpu><metadata>"
           "<entropy:vm xmlns:entropy='urn:x-entropy-cluster:vm:1'><entropy:priority>7</entropy:priority></entropy:vm>"
           "</metadata></domain>")
    facts = domain_facts(xml, "vm3")
    assert facts["vcpus"] == 2 and facts["memory_mib"] == 128
    assert facts["priority"] == 7


def test_a_vm_definition_record_follows_where_the_vm_runs_not_a_stale_copy():
    from ansible_collections.entropy.cluster.plugins.module_utils._definitions import choose  # pylint: disable=import-outside-toplevel
    hvs = {"hv1": "qemu:///a", "hv2": "qemu:///b", "hv3": "qemu:///c"}
    seen = {"hv1": {"vm1": (False, "<old1/>")}, "hv2": {"vm1": (True, "<new1/>"), "vm2": (False, "<d2/>")},
            "hv3": {"vm2": (False, "<copy2/>")}}
    wanted = choose(seen, hvs, {"vm2": {"host": "hv3"}})
    assert wanted["vm1"] == {"host": "hv2", "uri": "qemu:///b", "definition": "<new1/>"}  # it runs on hv2: hv1 has a stale copy
    assert wanted["vm2"]["host"] == "hv3"  # shut off on both: its record's hypervisor stays
    assert choose(seen, hvs, {})["vm2"]["host"] == "hv2"
