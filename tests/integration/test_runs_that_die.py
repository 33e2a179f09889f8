# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs killed with kill -9 (issue 9, part 6): the run lock of a dead run is taken over at once, a live
run keeps it; a migration left running by a killed apply goes on, and the next run sees it and refuses
to plan until it is finished or aborted."""

from __future__ import annotations

import glob
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

from conftest import COLLECTIONS, LAB_DIR, ROOT, lab_cmd, libvirt, run_playbook

LOCK_PLAYBOOK = """\
- name: Take the run lock and hold it
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Take the run lock
      entropy.cluster.run_lock:
        path: "{{ lock_path }}"
        owner: "{{ lock_owner }}"
      register: taken

    - name: Say the lock is taken
      ansible.builtin.copy:
        content: "{{ taken | to_json }}"
        dest: "{{ result_file }}"
        mode: "0644"

    - name: Hold it
      ansible.builtin.wait_for:
        path: "{{ release_file }}"
        timeout: 900
      when: hold | bool
"""

GUEST = "osvm"  # tools/lab.py guest: a Linux guest whose memory is not mostly zero pages (slow at 1 MiB/s)


def start_playbook(playbook: str, inventory: str | None = None, extra_vars: dict | None = None,
                   env: dict | None = None) -> subprocess.Popen:
    """ansible-playbook in the background, as run_playbook runs it, in its own process group (so that what it
    leaves behind after kill -9 of its top process can be stopped by the group's id)."""
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), playbook]
    if inventory:
        cmd += ["-i", inventory]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    run_env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
                   ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false", ANSIBLE_RETRY_FILES_ENABLED="false",
                   ENTROPY_LAB_DIR=LAB_DIR, ANSIBLE_PYTHON_INTERPRETER=sys.executable)
    run_env.update(env or {})
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=run_env, cwd=ROOT,
                            start_new_session=True)


def stop_group(proc: subprocess.Popen) -> str:
    """Kill what is left of the process group the test started; its output."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return proc.communicate(timeout=60)[0] or ""


def wait_until(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("timed out after %d s waiting for %s" % (timeout, what))


def test_a_killed_run_frees_the_lock_at_once_and_a_live_one_keeps_it(tmp_path):
    book = tmp_path / "hold_lock.yml"
    book.write_text(LOCK_PLAYBOOK)
    lock = tmp_path / "cluster.lock"
    args = dict(lock_path=str(lock), release_file=str(tmp_path / "never"))
    first = start_playbook(str(book), extra_vars=dict(args, lock_owner="run A", result_file=str(tmp_path / "a.json"), hold=True))
    try:
        wait_until(lambda: (tmp_path / "a.json").exists() or first.poll() is not None, 300, "run A to take the lock")
        assert first.poll() is None, stop_group(first)[-3000:]
        # the owner is the ansible-playbook process itself, not its worker nor the shell around the module
        record = json.loads(lock.read_text())
        assert record["pid"] == first.pid and record["host"] == socket.gethostname(), record

        second = run_playbook(str(book), extra_vars=dict(args, lock_owner="run B", result_file=str(tmp_path / "b.json"), hold=False))
        assert second.returncode != 0, second.stdout[-3000:]
        assert "another entropy.cluster run holds %s" % lock in second.stdout, second.stdout[-3000:]
        assert "owner 'run A' on %s pid %d, still running" % (socket.gethostname(), first.pid) in second.stdout, second.stdout[-3000:]
        assert not (tmp_path / "b.json").exists()

        os.kill(first.pid, signal.SIGKILL)  # the top process only: its worker and wait_for live on
        first.wait(timeout=60)
        third = run_playbook(str(book), extra_vars=dict(args, lock_owner="run B", result_file=str(tmp_path / "b.json"), hold=False))
        assert third.returncode == 0, third.stdout[-3000:]
        taken = json.loads((tmp_path / "b.json").read_text())
        assert taken["stale_taken_over"] is True, taken
        assert taken["stale_reason"] == "its owner process, pid %d on %s, is gone" % (first.pid, socket.gethostname()), taken
        assert taken["previous_holder"]["owner"] == "run A" and taken["previous_holder"]["owner_alive"] is False
        assert "took over the lock %s of 'run A'" % lock in third.stdout, third.stdout[-3000:]
        assert json.loads(lock.read_text())["owner"] == "run B"
    finally:
        stop_group(first)


def lab_placement(lab) -> dict:
    """vm -> {host, state} of the lab's VMs, as a plan's initial placement (each VM is on one host here)."""
    placement = {}
    for vm, where in lab.placement().items():
        assert len(where) == 1, (vm, where)
        placement[vm] = {"host": where[0][0], "state": where[0][1]}
    return placement


def settled_placement(lab) -> dict:
    """lab.placement(), or {} while a domain vanishes under it (the incoming copy of an aborted migration)."""
    try:
        return lab.placement()
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
        return {}


def migration_job(dom) -> dict:
    """The source side's job statistics while a migration is in flight, else {}."""
    try:
        stats = dom.jobStats(0)
    except libvirt.libvirtError:
        return {}
    if stats.get("type", 0) and stats.get("operation") == libvirt.VIR_DOMAIN_JOB_OPERATION_MIGRATION_OUT:
        return stats
    return {}


def failed_async_result(async_dir) -> dict | None:
    """The result an async module process wrote into the async directory, once it has failed."""
    for path in glob.glob(str(async_dir / "*")):
        try:
            with open(path, encoding="utf-8") as handle:
                result = json.load(handle)
        except (OSError, ValueError):
            continue
        if result.get("failed"):
            return result
    return None


def test_after_kill_9_the_migration_goes_on_and_the_next_run_refuses_to_plan(lab_reset, tmp_path):
    lab = lab_reset
    src, dst = sorted(lab.hosts)[:2]
    guest = lab_cmd("guest", "--host", src)
    assert guest.returncode == 0, guest.stdout + guest.stderr
    run = None
    src_conn, dst_conn = lab.connect(src), lab.connect(dst)
    dom = src_conn.lookupByName(GUEST)
    try:
        # at 1 MiB/s with 1 ms of tolerated downtime the guest's memory takes minutes and cannot converge while
        # it runs: the migration is still in flight whenever the test looks, until the test aborts it
        dom.migrateSetMaxDowntime(1, 0)
        initial = lab_placement(lab)
        plan = {"version": 1, "initial": initial, "target": dict({vm: p["host"] for vm, p in initial.items()}, **{GUEST: dst}),
                "steps": [[{"action": "migrate", "vm": GUEST, "from": src, "to": dst, "memory_mib": 96}]]}
        plan_file = tmp_path / "plan.json"
        plan_file.write_text(json.dumps(plan))
        lock = tmp_path / "cluster.lock"
        async_dir = tmp_path / "async"
        run = start_playbook("entropy.cluster.apply", inventory=lab.inventory,
                             extra_vars={"entropy_plan_file": str(plan_file), "entropy_lock_file": str(lock), "entropy_store_pool": "",
                                         "entropy_migration_bandwidth_mib_s": 1, "entropy_migration_timeout_s": 900},
                             env={"ANSIBLE_ASYNC_DIR": str(async_dir)})
        wait_until(lambda: migration_job(dom) or run.poll() is not None, 300, "the migration of %s to start" % GUEST)
        assert run.poll() is None, stop_group(run)[-4000:]
        assert json.loads(lock.read_text())["pid"] == run.pid

        os.kill(run.pid, signal.SIGKILL)  # the top process: its async module process lives on, unattended
        run.wait(timeout=60)
        # the migration goes on: the job's clock advances, the paused incoming copy is on the destination
        elapsed = migration_job(dom)["time_elapsed"]
        wait_until(lambda: migration_job(dom).get("time_elapsed", 0) > elapsed + 2000, 120, "the migration to go on after kill -9")
        incoming = dst_conn.lookupByName(GUEST)
        # paused: reason "starting up" during the migration's setup, then "migration"
        assert incoming.state()[0] == libvirt.VIR_DOMAIN_PAUSED, incoming.state()

        # the inventory shows both sides of the job
        listed = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", lab.inventory, "--list"],
                                capture_output=True, text=True, check=False, cwd=ROOT,
                                env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false"))
        assert listed.returncode == 0, listed.stderr
        copies = json.loads(listed.stdout, object_hook=lambda d: d.get("__ansible_unsafe", d))["_meta"]["hostvars"][GUEST]["entropy_copies"]
        jobs = {copy["hypervisor"]: copy["job"] and copy["job"]["operation"] for copy in copies}
        assert jobs == {src: "migration_out", dst: "migration_in"}, copies

        before = lab.placement()
        refused = run_playbook("entropy.cluster.consolidate", inventory=lab.inventory, extra_vars={"entropy_lock_file": str(tmp_path / "lock2")})
        assert refused.returncode != 0, refused.stdout[-4000:]
        out = refused.stdout
        assert "nothing was planned: 1 VM(s) have a libvirt job in flight" in out, out[-4000:]
        assert "%s: migration from %s to %s, running for " % (GUEST, src, dst) in out, out[-4000:]
        abort = "virsh -c %s domjobabort %s" % (shlex.quote(lab.uri(src)), GUEST)  # a shell line (the lab's URI has a '?')
        assert abort in out, out[-4000:]
        assert "Compute the plan" not in out, out[-4000:]
        assert lab.placement() == before and migration_job(dom), "the refused run changed something"

        # a migration aborted on its source, with the command the refusal prints, leaves the VM running there, once
        aborted = subprocess.run(shlex.split(abort), capture_output=True, text=True, check=False, timeout=60)  # as printed
        assert aborted.returncode == 0, aborted.stdout + aborted.stderr
        wait_until(lambda: settled_placement(lab).get(GUEST) == [(src, "running")], 120, "%s to run on %s only" % (GUEST, src))
        # the orphaned module process notices and writes its result where nobody reads it any more
        result = wait_until(lambda: failed_async_result(async_dir), 120, "the orphaned vm_migrate module to finish")
        assert "aborted" in result["msg"] and result["location"] == "source", json.dumps(result)  # a str: shown whole
    finally:
        if run is not None:
            stop_group(run)
        if migration_job(dom):  # the test failed before it aborted the migration
            dom.abortJob()
        wait_until(lambda: not migration_job(dom) and GUEST not in [d.name() for d in dst_conn.listAllDomains()], 120,
                   "the incoming copy of %s to go" % GUEST)
        src_conn.close()
        dst_conn.close()
        removed = lab_cmd("guest", "--remove")
        assert removed.returncode == 0, removed.stdout + removed.stderr
    lab.assert_each_vm_once()
