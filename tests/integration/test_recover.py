# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Recovery after a host failure on the lab (issue 15): checkpoint a group, kill its host, recover from the checkpoint.

The lab VMs keep a 32-bit tick counter at guest physical address 0x500 (tools/lab.py boot_sector, 18.2 ticks/s): a VM
restored from the checkpoint's memory image resumes from the value it had when checkpointed, not from zero and not from
the value it reached before its host died.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from conftest import COLLECTIONS, LAB_TOOL, ROOT, lab_cmd

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

TICKS_PER_S = 18.2
MARGIN = 450  # ticks (~25 s): more than a recovery's VM runs before the test reads its counter


def wait_for_ticks(lab, host: str, vms, margin: int, base: dict | None = None) -> dict:
    """Wait until each VM's counter is ``margin`` past ``base`` (past zero by default); returns the counters."""
    deadline = time.monotonic() + 120
    while True:
        now = {vm: ticks(lab, host, vm) for vm in vms}
        if all(now[vm] - (base or {}).get(vm, 0) >= margin for vm in vms) or time.monotonic() > deadline:
            return now
        time.sleep(1)


def ticks(lab, host: str, vm: str) -> int:
    conn = lab.connect(host)
    try:
        return LAB_TOOL.read_tick_counter(conn.lookupByName(vm))
    finally:
        conn.close()


def running_on(lab, vm: str, hosts=("hv1", "hv3")) -> list[str]:
    """Hosts among ``hosts`` where ``vm`` is active (the dead host cannot be asked)."""
    found = []
    for host in hosts:
        conn = lab.connect(host)
        try:
            found += [host for dom in conn.listAllDomains() if dom.name() == vm and dom.isActive()]
        finally:
            conn.close()
    return found


def checkpoint_book(tmp_path, lab, group: dict, name: str, directory: str, out_file) -> str:
    book = tmp_path / ("ck-%s.yml" % name)
    book.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                    "    - entropy.cluster.vm_checkpoint: %s\n      register: ck\n"
                    "    - ansible.builtin.copy: {content: '{{ ck | to_json }}', dest: '%s'}\n"
                    % (json.dumps({"vms": group, "checkpoint": name, "directory": directory, "max_skew_ms": 3000}), out_file))
    return str(book)


def recover(lab, playbook, directory: str, report: str, **extra):
    return playbook("entropy.cluster.recover", inventory=lab.inventory, env={"ENTROPY_LIBVIRT_CONNECT_TIMEOUT": "3"},
                    extra_vars=dict({"entropy_recover_host": "hv2", "entropy_checkpoint_dir": directory,
                                     "entropy_recover_report": report, "entropy_recover_connect_timeout": 3}, **extra))


def restore_lab() -> None:
    for args in (("up",), ("reset",)):
        result = lab_cmd(*args)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.lab_vms_may_stop
def test_a_group_restarts_from_its_checkpoint_after_its_host_dies_and_never_runs_twice(lab_reset, playbook, tmp_path):
    lab = lab_reset  # vm3 and vm4 on hv2
    directory = os.path.join(lab.dir, "checkpoints-recover")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    report = str(tmp_path / "report.json")
    try:
        # 1. checkpoint the 2-VM group, and know the counters it holds: far from zero (a fresh boot), so that a restore
        # from the checkpoint and a boot from zero cannot be confused
        wait_for_ticks(lab, "hv2", ("vm3", "vm4"), MARGIN)
        before = {vm: ticks(lab, "hv2", vm) for vm in ("vm3", "vm4")}
        out = playbook(checkpoint_book(tmp_path, lab, {"vm3": lab.uri("hv2"), "vm4": lab.uri("hv2")}, "g-0001", directory,
                                       tmp_path / "ck.json"))
        assert out.returncode == 0, out.stdout
        after = {vm: ticks(lab, "hv2", vm) for vm in ("vm3", "vm4")}
        # the VMs run on past the checkpoint: ticks a recovery must not keep
        at_kill = wait_for_ticks(lab, "hv2", ("vm3", "vm4"), MARGIN, after)

        # 2. hv2 dies (its daemon and QEMUs killed by the PIDs in its pidfiles)
        killed = lab_cmd("fence", "hv2")
        assert killed.returncode == 0 and "qemu vm3" in killed.stdout and "qemu vm4" in killed.stdout, killed.stdout

        # 3. not fenced yet (no record): recovery refuses and starts nothing
        out = recover(lab, playbook, directory, report)
        assert out.returncode != 0 and "hv2 is not fenced" in out.stdout and "Traceback" not in out.stdout, out.stdout
        assert running_on(lab, "vm3") == [] and running_on(lab, "vm4") == []

        # 4. the fence playbook detects hv2 and records the fence; then recovery
        out = playbook("entropy.cluster.fence", inventory=lab.inventory, env={"ENTROPY_LIBVIRT_CONNECT_TIMEOUT": "3"},
                       extra_vars={"entropy_probe_grace_s": 2, "entropy_probe_interval_s": 1, "entropy_probe_timeout_s": 2})
        assert out.returncode == 0 and "failed: hv2;" in out.stdout, out.stdout
        out = recover(lab, playbook, directory, report)
        read_at = time.time()
        now = {vm: running_on(lab, vm) for vm in ("vm3", "vm4")}
        assert out.returncode == 0, out.stdout
        result = json.loads(open(report, encoding="utf-8").read())
        for vm in ("vm3", "vm4"):
            assert len(now[vm]) == 1 and now[vm][0] in ("hv1", "hv3"), now
            entry = result["vms"][vm]
            assert entry["action"] == "restore" and entry["done"] and entry["checkpoint"] == "g-0001" and entry["host"] == now[vm][0]
            assert 8 <= entry["checkpoint_age_s"] < 300 and "since checkpoint g-0001" in entry["lost"]
            # the memory state is the checkpoint's: the counter went on from its checkpointed value (between `before` and
            # `after`), at most at real time since the restore; not from zero, not from the state it died with
            counter = ticks(lab, now[vm][0], vm)
            ran = time.time() - entry["restored_at"]
            assert ran * TICKS_PER_S + 20 < MARGIN, ran  # else the figures below could not tell the three apart
            assert before[vm] <= counter <= after[vm] + ran * TICKS_PER_S + 20, (vm, before, after, counter, ran)
            assert counter < at_kill[vm], (vm, at_kill, counter)
        assert read_at - result["vms"]["vm3"]["restored_at"] < 60

        # 5. hv2 comes back: its old copies stay off; a second recovery removes their stale definitions, restores nothing
        assert lab_cmd("up").returncode == 0
        for vm in ("vm3", "vm4"):
            assert ("hv2", "shutoff") in lab.placement()[vm] and lab.running_on(vm) == now[vm]
        out = recover(lab, playbook, directory, report)
        assert out.returncode == 0, out.stdout
        again = json.loads(open(report, encoding="utf-8").read())
        assert again["stale_definitions_removed"] == ["vm3", "vm4"] and again["vms"] == {}, again
        for vm in ("vm3", "vm4"):
            assert lab.placement()[vm] == [(now[vm][0], "running")]
    finally:
        restore_lab()
        shutil.rmtree(directory, ignore_errors=True)


def disk_chain(lab, host: str, vm: str) -> list[str]:
    conn = lab.connect(host)
    try:
        from ansible_collections.entropy.cluster.plugins.module_utils._checkpoint import _chain  # pylint: disable=import-outside-toplevel
        return _chain(conn.lookupByName(vm), "hda")
    finally:
        conn.close()


@pytest.mark.lab_vms_may_stop
def test_checkpoint_retention_keeps_the_newest_and_merges_overlays_back(lab_reset, playbook, tmp_path):
    """The checkpoint playbook with keep 2: a third checkpoint deletes the first, its overlay merged back into the VM's
    disk by a block commit in the running VM; check mode and a second run change nothing."""
    lab = lab_reset
    directory = os.path.join(lab.dir, "checkpoints-retention")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    group = {"vm1": "hv1", "vm5": "hv3"}
    results = tmp_path / "results.json"

    def take(name: str, check: bool = False) -> dict:
        book = tmp_path / "ck.yml"
        book.write_text("- ansible.builtin.import_playbook: entropy.cluster.checkpoint\n"
                        "- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                        "    - ansible.builtin.copy: {content: '{{ entropy_checkpoint | to_json }}', dest: '%s'}\n"
                        "      check_mode: false\n" % results)
        out = playbook(str(book), inventory=lab.inventory, check=check,
                       extra_vars={"entropy_checkpoint_vms": sorted(group), "entropy_checkpoint_dir": directory,
                                   "entropy_checkpoint_name": name, "entropy_checkpoint_keep": 2,
                                   "entropy_checkpoint_max_skew_ms": 3000})
        assert out.returncode == 0, out.stdout
        return json.loads(results.read_text())

    try:
        first, second = take("r-0001"), take("r-0002")
        assert first["changed"] and second["changed"] and first["deleted"] == second["deleted"] == []
        assert disk_chain(lab, "hv1", "vm1") == [second["vms"]["vm1"]["disks"][0]["overlay"], first["vms"]["vm1"]["disks"][0]["overlay"],
                                                 lab.vms["vm1"]["disk"]]
        would = take("r-0003", check=True)
        assert would["changed"] and would["deleted"] == ["r-0001"] and os.path.exists(os.path.join(directory, "r-0001.checkpoint.json"))
        third = take("r-0003")
        assert third["changed"] and third["deleted"] == ["r-0001"], third
        assert sorted(os.listdir(directory)) == sorted(
            ["r-0002.checkpoint.json", "r-0003.checkpoint.json"]
            + ["%s.%s.%s" % (vm, ck, ext) for vm in group for ck in ("r-0002", "r-0003") for ext in ("mem", "hda.qcow2")])
        for vm, host in group.items():
            # r-0001's overlay merged into the VM's own disk: r-0002 now starts from it
            assert disk_chain(lab, host, vm) == [third["vms"][vm]["disks"][0]["overlay"], second["vms"][vm]["disks"][0]["overlay"],
                                                 lab.vms[vm]["disk"]]
            manifest = json.loads(open(os.path.join(directory, "r-0002.checkpoint.json"), encoding="utf-8").read())
            assert manifest["vms"][vm]["disks"][0]["frozen"] == lab.vms[vm]["disk"]
            check = subprocess.run(["qemu-img", "check", "-U", second["vms"][vm]["disks"][0]["overlay"]], capture_output=True, text=True,
                                   check=False)
            assert check.returncode == 0, check.stdout + check.stderr
            assert running_on(lab, vm, (host,)) == [host]
        again = take("r-0003")
        assert not again["changed"] and again["deleted"] == []
    finally:
        assert lab_cmd("reset").returncode == 0
        shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.lab_vms_may_stop
def test_the_recovery_benchmark_in_one_round(lab):
    """docs/fault-tolerance.md's recovery benchmark, one round with one checkpoint (it repairs the lab after the round)."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_recover.py"),
                          "--rounds", "1", "--checkpoints", "1"],
                         capture_output=True, text=True, check=False, timeout=600, env=dict(os.environ, ENTROPY_LAB_DIR=lab.dir))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "| kill -> all 4 VMs running |" in out.stdout and "round 1: kill -> all 4 VMs running" in out.stdout
    assert not lab.vm_problems()


@pytest.mark.lab_vms_may_stop
def test_a_vm_without_a_usable_checkpoint_is_cold_booted_or_reported_by_the_policy(lab_reset, playbook, tmp_path):
    """vm3's newest checkpoint lost its memory image, an older one is whole; vm4 never had a checkpoint, only its definition
    in the cluster store (the checkpoint playbook keeps every VM's there); vm9 is unknown. With without_checkpoint=cold_boot
    vm3 is restored from the older checkpoint, vm4 boots again from its disk (its counter starts from zero) with the
    definition from the store - hv2 being dead, nobody else knows it - and vm9 is reported lost."""
    lab = lab_reset
    directory = os.path.join(lab.dir, "checkpoints-policy")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    report = str(tmp_path / "report.json")
    try:
        out = playbook("entropy.cluster.checkpoint", inventory=lab.inventory,
                       extra_vars={"entropy_checkpoint_vms": ["vm3"], "entropy_checkpoint_dir": directory,
                                   "entropy_checkpoint_name": "p3-0001", "entropy_checkpoint_max_skew_ms": 3000})
        assert out.returncode == 0, out.stdout
        # the playbook kept every VM's definition in the store: a second look finds nothing to write (idempotent)
        from ansible_collections.entropy.cluster.plugins.module_utils._definitions import Definitions  # pylint: disable=import-outside-toplevel
        again = Definitions({name: host["uri"] for name, host in lab.hosts.items()}, LAB_TOOL.STORE_POOL).run(check_mode=True)
        assert again["written"] == again["removed"] == [] and again["unchanged"] == 6, again
        out = playbook(checkpoint_book(tmp_path, lab, {"vm3": lab.uri("hv2")}, "p3-0002", directory, tmp_path / "ck.json"))
        assert out.returncode == 0, out.stdout
        os.unlink(os.path.join(directory, "vm3.p3-0002.mem"))
        assert lab_cmd("fence", "hv2").returncode == 0
        out = playbook("entropy.cluster.fence", inventory=lab.inventory, env={"ENTROPY_LIBVIRT_CONNECT_TIMEOUT": "3"},
                       extra_vars={"entropy_fence_hosts": ["hv2"]})
        assert out.returncode == 0, out.stdout
        out = recover(lab, playbook, directory, report, entropy_recover_without_checkpoint="cold_boot", entropy_recover_vms=["vm9"])
        assert out.returncode == 0, out.stdout
        result = json.loads(open(report, encoding="utf-8").read())["vms"]
        assert result["vm3"]["action"] == "restore" and result["vm3"]["done"] and result["vm3"]["checkpoint"] == "p3-0001"
        assert result["vm4"]["action"] == "cold_boot" and result["vm4"]["done"] and "memory state" in result["vm4"]["lost"]
        assert result["vm4"]["definition_from"] == "the cluster store (recorded on hv2)", result["vm4"]
        assert result["vm9"]["action"] == "lost" and "no known definition" in result["vm9"]["lost"]
        for vm in ("vm3", "vm4"):
            assert running_on(lab, vm) == [result[vm]["host"]]
        booted = ticks(lab, result["vm4"]["host"], "vm4")
        assert booted <= (time.time() - result["vm4"]["restored_at"]) * TICKS_PER_S + 20, booted  # from zero: a fresh boot
    finally:
        restore_lab()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_fenced_host_that_still_runs_its_vms_is_not_recovered(lab_reset, playbook, tmp_path):
    """A fence recorded on trust (host_fence without its check) while hv2 still runs vm3: recovery refuses, nothing runs twice."""
    lab = lab_reset
    directory = os.path.join(lab.dir, "checkpoints-refuse")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    report = str(tmp_path / "report.json")
    uris = [h["uri"] for h in lab.hosts.values()]
    try:
        out = playbook(checkpoint_book(tmp_path, lab, {"vm3": lab.uri("hv2")}, "s-0001", directory, tmp_path / "ck.json"))
        assert out.returncode == 0, out.stdout
        book = tmp_path / "fence.yml"
        book.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                        "    - entropy.cluster.host_fence: {host: hv2, uris: %s, method: trusted}\n" % json.dumps(uris))
        out = playbook(str(book))
        assert out.returncode == 0, out.stdout
        out = recover(lab, playbook, directory, report)
        assert out.returncode != 0 and "hv2 is fenced but answers and runs vm3, vm4" in out.stdout, out.stdout
        assert lab.running_on("vm3") == ["hv2"] and lab.running_on("vm4") == ["hv2"]
    finally:
        assert lab_cmd("reset").returncode == 0  # also clears the fence record
        shutil.rmtree(directory, ignore_errors=True)


def hold_lock_book(tmp_path, lab) -> str:
    """A playbook that takes the lab's cluster run lock for this pytest process (alive: the lock is not stale)."""
    args = {"backend": "cluster", "pool": LAB_TOOL.STORE_POOL, "uris": [h["uri"] for h in lab.hosts.values()],
            "owner": "test holder", "owner_pid": os.getpid()}
    book = tmp_path / "lock.yml"
    book.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n    - entropy.cluster.run_lock: %s\n" % json.dumps(args))
    return str(book)


def break_lock(lab) -> None:
    from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import ClusterStore  # pylint: disable=import-outside-toplevel
    with ClusterStore([h["uri"] for h in lab.hosts.values()], LAB_TOOL.STORE_POOL) as store:
        store.delete("lock", "run")


def test_recover_and_checkpoint_are_refused_while_another_run_holds_the_lock(lab, playbook, tmp_path):
    """While another run (a plan being applied) holds the cluster run lock, recover and the checkpoint playbook refuse at once,
    naming the holder, and change nothing."""
    directory = os.path.join(lab.dir, "checkpoints-lock")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    out = playbook(hold_lock_book(tmp_path, lab))
    assert out.returncode == 0, out.stdout
    try:
        out = recover(lab, playbook, directory, str(tmp_path / "report.json"))
        assert out.returncode != 0 and "another entropy.cluster run holds" in out.stdout and "'test holder'" in out.stdout, out.stdout
        assert "is not fenced" not in out.stdout and "Traceback" not in out.stdout, out.stdout
        out = playbook("entropy.cluster.checkpoint", inventory=lab.inventory,
                       extra_vars={"entropy_checkpoint_vms": ["vm1"], "entropy_checkpoint_dir": directory})
        assert out.returncode != 0 and "another entropy.cluster run holds" in out.stdout and "'test holder'" in out.stdout, out.stdout
        assert os.listdir(directory) == []
    finally:
        break_lock(lab)
        shutil.rmtree(directory, ignore_errors=True)


def test_a_fenced_host_that_answers_again_during_the_recovery_keeps_its_vm_and_nothing_runs_twice(lab_reset, playbook, tmp_path):
    """hv2 is silent (its daemon stopped) while the recovery assesses, with a fence recorded on trust; it answers again, still
    running vm3, before the restore: the re-check right before the restore stops it, with a report naming hv2 and vm3."""
    from ansible_collections.entropy.cluster.plugins.module_utils._recover import Recovery  # pylint: disable=import-outside-toplevel
    from test_fault_tolerance import stopped_daemon  # pylint: disable=import-outside-toplevel

    lab = lab_reset
    directory = os.path.join(lab.dir, "checkpoints-back")
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    uris = {name: host["uri"] for name, host in lab.hosts.items()}
    try:
        book = checkpoint_book(tmp_path, lab, {"vm3": lab.uri("hv2")}, "b-0001", directory, tmp_path / "ck.json")
        with open(book, "a", encoding="utf-8") as handle:  # the same run records a fence on trust: hv2 still runs vm3
            handle.write("    - entropy.cluster.host_fence: {host: hv2, uris: %s, method: trusted}\n" % json.dumps(list(uris.values())))
        out = playbook(book)
        assert out.returncode == 0, out.stdout
        recovery = Recovery("hv2", uris, directory, "report", connect_timeout=2)
        try:
            with stopped_daemon(lab, "hv2"):  # silent while the recovery connects and assesses
                recovery.connect()
                assessed = recovery.assess()
            assert not assessed["failed_host_answers"] and assessed["vms"]["vm3"]["action"] == "restore", assessed
            done = recovery.carry_out(assessed, {"vm3": "hv1"})  # hv2 answers again, vm3 still running there
        finally:
            recovery.close()
        entry = done["vms"]["vm3"]
        assert not entry["done"] and "hypervisor hv2 answers again and runs vm3: vm3 not restored" in entry["error"], done
        assert done["problems"] and lab.running_on("vm3") == ["hv2"]
        assert [f for f in os.listdir(directory) if re.search(r"\.r[0-9]{14}\.", f)] == []  # no overlay left of the restore that did not happen
    finally:
        assert lab_cmd("reset").returncode == 0  # also clears the fence record
        shutil.rmtree(directory, ignore_errors=True)
