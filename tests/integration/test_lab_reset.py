# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""`tools/lab.py reset` after what faults leave behind (docs/fault-soak.md): copies of a VM away from
its home host, a transient copy that vanishes when destroyed, and a copy libvirt refuses to remove
(then the host is rebuilt, not the whole lab)."""

from __future__ import annotations

import json
import os

from conftest import LAB_DIR, lab_cmd


def daemon_pids() -> dict[str, int]:
    with open(os.path.join(LAB_DIR, "lab.json"), encoding="utf-8") as handle:
        return {h["name"]: h["pid"] for h in json.load(handle)["hosts"]}


def assert_all_fresh_at_home(lab) -> None:
    placement = lab.placement()
    for vm in lab.vms.values():
        assert placement.get(vm["name"]) == [(vm["home"], "running")], (vm["name"], placement.get(vm["name"]))


def test_reset_removes_copies_away_from_home_and_transient_ones(lab_reset):
    lab = lab_reset
    # vm1: its home copy shut off, a persistent copy running on the next host (a migration's source
    # never undefined); vm3: its home copy shut off, a transient copy running elsewhere.
    for vm, persist in (("vm1", True), ("vm3", False)):
        home, _other = lab.leave_shut_off_copy(vm, persist)
        assert home == lab.vms[vm]["home"]
    result = lab_cmd("reset")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "(2 recreated)" in result.stdout and "rebuilt" not in result.stdout
    assert_all_fresh_at_home(lab)


def test_reset_rebuilds_a_host_whose_daemon_refuses_to_remove_a_copy(lab_reset, tmp_path):
    lab = lab_reset
    victim = "vm1"
    stubborn = next(h for h in sorted(lab.hosts) if h != lab.vms[victim]["home"])
    # A real refusal: libvirt cannot delete an NVRAM "file" that is a directory, so it refuses the undefine.
    (tmp_path / "nvram" / "keep").mkdir(parents=True)
    xml = ("<domain type='qemu'><name>%s</name><memory unit='MiB'>32</memory><vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>"
           "hvm</type><loader readonly='yes' type='pflash'>%s</loader><nvram>%s</nvram></os><features><acpi/></features><devices/>"
           "</domain>") % (victim, tmp_path / "no-code.fd", tmp_path / "nvram")
    conn = lab.connect(stubborn)
    try:
        conn.defineXML(xml)
    finally:
        conn.close()
    before = daemon_pids()

    result = lab_cmd("reset")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "libvirt on %s cannot remove a VM (%s: " % (stubborn, victim) in result.stderr
    assert "hosts rebuilt: %s" % stubborn in result.stdout
    after = daemon_pids()
    assert after[stubborn] != before[stubborn]
    assert all(after[h] == before[h] for h in lab.hosts if h != stubborn)
    assert_all_fresh_at_home(lab)


def test_reset_removes_a_vm_a_test_left_behind(lab_reset):
    """A test VM that outlived its test (a CI lab kept from an earlier run held one: 'abort-vm', shut off) is
    removed by reset, which every integration session starts with: it would enter every later model."""
    lab = lab_reset
    host = sorted(lab.hosts)[0]
    conn = lab.connect(host)
    try:
        xml = ("<domain type='qemu'><name>left-behind</name><memory unit='MiB'>32</memory><vcpu>1</vcpu>"
               "<os><type arch='x86_64' machine='pc'>hvm</type></os><devices/></domain>")
        conn.defineXML(xml)
    finally:
        conn.close()
    assert "left-behind" in lab.placement()
    result = lab_cmd("reset")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "removed what is not a lab VM: left-behind on %s" % host in result.stdout, result.stdout
    assert "left-behind" not in lab.placement()
    assert_all_fresh_at_home(lab)
