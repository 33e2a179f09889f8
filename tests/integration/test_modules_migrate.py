# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""entropy.cluster.vm_migrate on the real lab through ansible-playbook: a tour of all hosts
(direct and peer-to-peer, check mode, idempotency) and the refusals (same host, snapshots,
unsafe storage, timeout). After every step: each VM runs exactly once, where we expect it."""

from __future__ import annotations

import json

import pytest


def migrate_once(lab, playbook, tmp_path, vm, source, destination, check=False, **options):
    result_file = tmp_path / "migrate.json"
    stopped_before = lab.stopped_vms()
    if result_file.exists():
        result_file.unlink()
    proc = playbook("modules_migrate.yml", check=check, extra_vars=dict(
        vm=vm, source=lab.uri(source), destination=lab.uri(destination) if destination in lab.hosts else destination,
        result_file=str(result_file), **options))
    assert proc.returncode == 0, proc.stdout
    lab.assert_each_vm_once(stopped=stopped_before)
    return json.loads(result_file.read_text())


def test_tour_of_all_hosts_and_back(lab, playbook):
    vm = "vm4"
    start = lab.running_on(vm)[0]
    others = [h for h in sorted(lab.hosts) if h != start]
    route = [start, *others, start]
    modes = ["direct", "peer2peer"] + ["direct"] * (len(route) - 3)
    proc = playbook("modules_migrate_tour.yml", extra_vars=dict(vm=vm, route=[lab.uri(h) for h in route], modes=modes))
    assert proc.returncode == 0, proc.stdout
    assert "failed=0" in proc.stdout
    assert lab.running_on(vm) == [start]
    lab.assert_each_vm_once()


def test_check_mode_moves_nothing(lab, playbook, tmp_path):
    vm = "vm6"
    source = lab.running_on(vm)[0]
    target = next(h for h in sorted(lab.hosts) if h != source)
    result = migrate_once(lab, playbook, tmp_path, vm, source, target, check=True)
    assert result["changed"] is True and not result.get("failed"), result
    assert result["location"] == "source" and result["job"] == {}
    assert result["diff"]["before"]["host"] == source and result["diff"]["after"]["host"] == target
    assert lab.running_on(vm) == [source]


def test_refusals_leave_the_vm_where_it_was(lab, playbook, tmp_path):
    vm = "vm6"
    source = lab.running_on(vm)[0]
    target = next(h for h in sorted(lab.hosts) if h != source)

    same = migrate_once(lab, playbook, tmp_path, vm, source, source)
    assert same["failed"] and same["error_kind"] == "same_host" and "host UUID %s" % lab.host_uuid(source) in same["msg"]
    assert same["location"] == "source" and lab.running_on(vm) == [source]

    nowhere = "qemu+tcp://%s.250/system" % lab.state["subnet"]
    unreachable = migrate_once(lab, playbook, tmp_path, vm, source, nowhere)
    assert unreachable["failed"] and unreachable["error_kind"] == "unreachable", unreachable
    assert "destination is unreachable" in unreachable["msg"] and nowhere in unreachable["msg"]
    assert unreachable["location"] == "source" and lab.running_on(vm) == [source]

    unsafe = migrate_once(lab, playbook, tmp_path, vm, source, target, unsafe=False)
    assert unsafe["failed"] and unsafe["error_kind"] == "unsafe", unsafe
    assert "unsafe: true" in unsafe["msg"] and "copy_storage: all" in unsafe["msg"]
    assert unsafe["location"] == "source" and lab.running_on(vm) == [source]

    conn = lab.connect(source)
    try:
        conn.lookupByName(vm).snapshotCreateXML("<domainsnapshot><name>pin</name></domainsnapshot>", 0)
        snap = migrate_once(lab, playbook, tmp_path, vm, source, target)
        assert snap["failed"] and snap["error_kind"] == "snapshots", snap
        assert "1 snapshot" in snap["msg"] and "vm_snapshot" in snap["msg"]
        assert snap["location"] == "source" and lab.running_on(vm) == [source]
    finally:
        conn.lookupByName(vm).snapshotLookupByName("pin").delete(0)
        conn.close()


def test_timeout_aborts_and_the_vm_stays_on_the_source(lab, playbook, tmp_path):
    """1 MiB/s and 1 ms downtime rarely converge within 1 s for a VM that keeps writing memory (vm1..vm5
    with CPU load); if one attempt does finish, the VM moved and we try again from where it is."""
    vm = "vm3"
    home = lab.running_on(vm)[0]
    for _attempt in range(3):
        source = lab.running_on(vm)[0]
        target = next(h for h in sorted(lab.hosts) if h != source)
        result = migrate_once(lab, playbook, tmp_path, vm, source, target, timeout=1, bandwidth_mib_s=1, max_downtime_ms=1)
        if not result.get("failed"):
            assert result["location"] == "destination" and lab.running_on(vm) == [target]
            continue
        assert result["error_kind"] == "timeout" and result["timed_out"] is True, result
        assert "did not finish within timeout=1s and was aborted" in result["msg"]
        assert result["location"] == "source" and "runs on the source" in result["msg"]
        assert lab.running_on(vm) == [source]
        break
    else:
        raise AssertionError("three migrations at 1 MiB/s finished within 1 s: the timeout path was not exercised")
    # the module gave the QEMU process its old max downtime back (others' tests migrate this VM too)
    conn = lab.connect(lab.running_on(vm)[0])
    try:
        assert conn.lookupByName(vm).migrateGetMaxDowntime(0) != 1
    finally:
        conn.close()
    # put it back home (unlimited bandwidth)
    current = lab.running_on(vm)[0]
    if current != home:
        back = migrate_once(lab, playbook, tmp_path, vm, current, home, timeout=120)
        assert back["changed"] and back["location"] == "destination"
    assert lab.running_on(vm) == [home]


def test_offline_migration_of_a_shut_off_vm_and_back(lab, playbook, tmp_path):
    vm = "vm2"
    home = lab.running_on(vm)[0]
    target = next(h for h in sorted(lab.hosts) if h != home)
    state_file = tmp_path / "state.json"

    def set_state(host, state):
        proc = playbook("modules_state_once.yml", extra_vars=dict(vm=vm, uri=lab.uri(host), states=[state], result_file=str(state_file)))
        assert proc.returncode == 0, proc.stdout
        (result,) = json.loads(state_file.read_text())
        assert not result.get("failed"), result
        return result

    set_state(home, "destroyed")
    try:
        moved = migrate_once(lab, playbook, tmp_path, vm, home, target)
        assert moved["changed"] and moved["migration"]["kind"] == "offline" and "OFFLINE" in moved["migration"]["flags"], moved
        assert moved["location"] == "none" and moved["defined_on"] == ["destination"]
        assert lab.placement()[vm] == [(target, "shutoff")]
        again = migrate_once(lab, playbook, tmp_path, vm, home, target)
        assert again["changed"] is False and again["defined_on"] == ["destination"]
        back = migrate_once(lab, playbook, tmp_path, vm, target, home)
        assert back["changed"] and back["defined_on"] == ["destination"]
    finally:
        where = [h for h, _s in lab.placement().get(vm, [])]
        set_state(where[0] if where else home, "running")
    assert lab.running_on(vm) == [home]
    lab.assert_each_vm_once()


def _meminfo_mib(field: str) -> int:
    with open("/proc/meminfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1]) // 1024
    raise KeyError(field)


def test_destination_full_is_refused_and_the_vm_stays(lab, playbook, tmp_path):
    """A real "destination full": a VM nearly as large as this machine's RAM (QEMU maps guest memory
    lazily, so it starts) cannot fit in what the destination has available."""
    size_mib = _meminfo_mib("MemTotal") - 64
    if size_mib - _meminfo_mib("MemAvailable") < 256:
        pytest.skip("this machine has too little memory in use to build a destination-full case")
    source, destination = sorted(lab.hosts)[:2]
    name = "big-vm"
    conn = lab.connect(source)
    try:
        dom = conn.defineXML(
            "<domain type='qemu'><name>%s</name><memory unit='MiB'>%d</memory><vcpu>1</vcpu>"
            "<os><type arch='x86_64' machine='pc'>hvm</type></os>"
            "<features><tcg><tb-cache unit='MiB'>16</tb-cache></tcg></features><devices/></domain>" % (name, size_mib))
        dom.create()
    finally:
        conn.close()
    try:
        result = migrate_once(lab, playbook, tmp_path, name, source, destination)
        assert result.get("failed"), result
        assert result["error_kind"] == "destination_full", result
        assert "has only" in result["msg"] and "pick another destination" in result["msg"]
        assert result["location"] == "source"
        assert lab.running_on(name) == [source]
    finally:
        lab.remove_vm(name)


def test_bad_parameters_are_refused_and_leave_the_vm_where_it_was(lab, playbook, tmp_path):
    """Issue 9 part 4 on real daemons: each refusal comes before anything is done (check mode too),
    says which parameter and its range, reports changed=false, and the VM keeps running where it was."""
    vm = "vm6"
    source = lab.running_on(vm)[0]
    target = next(h for h in sorted(lab.hosts) if h != source)
    cases = [
        (dict(max_downtime_ms=99999999999999999999), "max_downtime_ms=99999999999999999999 is out of range (allowed: 1 to 2000000)"),
        (dict(bandwidth_mib_s=99999999999999999999), "bandwidth_mib_s=99999999999999999999 is out of range (allowed: 1 to 8796093022207)"),
        (dict(timeout=-5), "timeout=-5 is out of range (allowed: 0 to 604800)"),
    ]
    for check in (False, True):
        for options, message in cases:
            result = migrate_once(lab, playbook, tmp_path, vm, source, target, check=check, **options)
            assert result["failed"] and result["error_kind"] == "invalid_argument", result
            assert message in result["msg"] and "Nothing was done" in result["msg"], result
            assert result["changed"] is False and "Traceback" not in result["msg"], result
            assert lab.running_on(vm) == [source]
    empty = migrate_once(lab, playbook, tmp_path, vm, source, "")
    assert empty["failed"] and empty["error_kind"] == "invalid_argument", empty
    assert "destination_uri is empty" in empty["msg"] and empty["changed"] is False
    assert lab.running_on(vm) == [source]

    state_file = tmp_path / "state.json"
    proc = playbook("modules_state_once.yml",
                    extra_vars=dict(vm=vm, uri=lab.uri(source), states=["shutdown"], shutdown_timeout=-5, result_file=str(state_file)))
    assert proc.returncode == 0, proc.stdout
    (refused,) = json.loads(state_file.read_text())
    assert refused["failed"] and refused["error_kind"] == "invalid_argument", refused
    assert "shutdown_timeout=-5 is out of range (allowed: 0 to 604800)" in refused["msg"] and refused["changed"] is False
    assert lab.placement()[vm] == [(source, "running")]
    lab.assert_each_vm_once()
