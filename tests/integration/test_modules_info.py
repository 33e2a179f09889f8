# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.host_info and entropy.cluster.vm_info on the real lab, compared with what libvirt says."""

from __future__ import annotations

import json


def test_host_and_vm_facts_match_the_lab(lab, playbook, tmp_path):
    names = sorted(lab.hosts)
    result_file = tmp_path / "facts.json"
    proc = playbook("modules_info.yml", extra_vars=dict(uris=[lab.uri(h) for h in names], result_file=str(result_file)), check=True)
    assert proc.returncode == 0, proc.stdout
    assert "changed=0" in proc.stdout
    facts = json.loads(result_file.read_text())
    placement = lab.placement()
    for name, host, vms in zip(names, facts["hosts"], facts["vms"]):
        assert host["hostname"] == name
        assert host["host_uuid"] == lab.host_uuid(name)
        assert host["hypervisor"] == "QEMU" and host["libvirt_version"].startswith("9.")
        assert host["cpu"]["count"] >= 1 and host["memory_mib"] > 0
        here = sorted(vm for vm, where in placement.items() if any(h == name for h, _s in where))
        assert sorted(vm["name"] for vm in vms) == here
        assert host["vms"]["total"] == len(here)
        for vm in vms:
            assert vm["memory_mib"]["max"] == 64 and vm["vcpus"] == 1
            assert vm["disks"][0]["format"] == "qcow2" and vm["disks"][0]["source"].endswith(".qcow2")
            assert vm["persistent"] is True
