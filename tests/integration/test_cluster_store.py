# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster store on the lab (issue 12): a run lock that holds across jobs, and maintenance that persists.

The lock test runs two jobs with ansible-runner, the executor AWX uses, that share nothing but the libvirt
endpoints: separate private data dirs, HOME and TMPDIR, and (with bubblewrap) their own PID namespace and an
empty /tmp, as two AWX job containers would.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time

import pytest

from conftest import COLLECTIONS, ROOT, lab_cmd

ansible_runner = pytest.importorskip("ansible_runner")
if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)

POOL = "entropy-cluster"
HOLD = """\
- name: Take the cluster lock{{ ' and hold it' if hold else '' }}
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Take the cluster lock
      entropy.cluster.run_lock:
        backend: cluster
        pool: "{{ pool }}"
        uris: "{{ uris }}"
        owner: "{{ owner }}"
      register: lock
    - name: Hold it until the test says so
      ansible.builtin.wait_for:
        path: "{{ release_file }}"
        timeout: 600
      when: hold
    - name: Release it
      entropy.cluster.run_lock:
        backend: cluster
        pool: "{{ pool }}"
        uris: "{{ uris }}"
        state: absent
        token: "{{ lock.token }}"
"""


def vms_on(lab, host: str) -> list[str]:
    return sorted(vm for vm, where in lab.placement().items() if any(h == host for h, _s in where))


def read_lock(lab) -> dict | None:
    """The lock record, read through libvirt as any job would (None when there is none)."""
    from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import ClusterStore  # pylint: disable=import-outside-toplevel

    with ClusterStore([h["uri"] for h in lab.hosts.values()], POOL) as store:
        record = store.read("lock", "run")
    return None if record is None else record.data


def job(base, name: str, lab, uris: list[str], hold: bool = False):
    """Keyword arguments of ansible_runner.run for one job in its own private data dir."""
    private = os.path.join(str(base), name)
    for sub in ("project", "home", "tmp"):
        os.makedirs(os.path.join(private, sub), exist_ok=True)
    with open(os.path.join(private, "project", "lock.yml"), "w", encoding="utf-8") as handle:
        handle.write(HOLD)
    env = {
        "HOME": os.path.join(private, "home"), "TMPDIR": os.path.join(private, "tmp"),
        "ANSIBLE_LOCAL_TEMP": os.path.join(private, "tmp"), "ANSIBLE_REMOTE_TEMP": os.path.join(private, "tmp"),
        "ANSIBLE_COLLECTIONS_PATH": COLLECTIONS, "ANSIBLE_COLLECTIONS_SCAN_SYS_PATH": "false",
        "ANSIBLE_PYTHON_INTERPRETER": sys.executable, "ANSIBLE_NOCOLOR": "1",
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
    }
    kwargs = dict(private_data_dir=private, playbook="lock.yml", quiet=True, envvars=env, ident=name,
                  extravars={"pool": POOL, "uris": uris, "owner": name, "hold": hold,
                             "release_file": os.path.join(private, "release")})
    if shutil.which("bwrap"):
        # Own PID namespace, an empty /tmp, only the system, Python, the venv and this checkout visible (read-only),
        # and the directories of the lab daemons' unix sockets (the lab's URIs; a socket connects on a read-only mount).
        venv = os.path.dirname(os.path.dirname(sys.executable))
        sockets = {os.path.join(h["dir"], "run", "libvirt") for h in lab.hosts.values()}
        kwargs.update(process_isolation=True, process_isolation_executable="bwrap",
                      process_isolation_ro_paths=sorted({venv, os.path.realpath(venv), os.path.realpath(sys.base_prefix), ROOT, COLLECTIONS}
                                                        | sockets))
    return kwargs


def failure(runner) -> str:
    msgs = [e["event_data"]["res"].get("msg", "") for e in runner.events
            if e.get("event") == "runner_on_failed" and "res" in e.get("event_data", {})]
    return " | ".join(msgs)


def failed_result(runner) -> dict:
    return next(e["event_data"]["res"] for e in runner.events if e.get("event") == "runner_on_failed")


def kill_daemon(lab, host: str) -> None:
    with open(os.path.join(lab.dir, "lab.json"), encoding="utf-8") as handle:
        pid = next(h["pid"] for h in json.load(handle)["hosts"] if h["name"] == host)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while os.path.exists("/proc/%d" % pid) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_the_cluster_lock_holds_across_jobs_and_with_its_hypervisor_down(lab_reset, tmp_path):
    lab = lab_reset
    uris = [lab.uri(h) for h in sorted(lab.hosts)]
    first = sorted(lab.hosts)[0]
    a_args = job(tmp_path, "job-A", lab, uris, hold=True)
    thread, job_a = ansible_runner.run_async(**a_args)
    try:
        deadline = time.monotonic() + 120
        while read_lock(lab) is None and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.3)
        record = read_lock(lab)
        assert record is not None and record["owner"] == "job-A", (record, job_a.status, job_a.stdout.read()[-3000:])

        job_b = ansible_runner.run(**job(tmp_path, "job-B", lab, uris))
        assert job_b.rc != 0, job_b.stdout.read()[-3000:]
        refused = failure(job_b)
        assert "another entropy.cluster run holds the cluster lock 'run'" in refused, refused
        assert "owner 'job-A'" in refused and " s ago" in refused, refused
        assert read_lock(lab)["token"] == record["token"]

        # The hypervisor the lock was taken through goes down: the store is reached through the next one.
        assert failed_result(job_b)["store"]["via"] == lab.uri(first)
        kill_daemon(lab, first)
        job_c = ansible_runner.run(**job(tmp_path, "job-C", lab, uris))
        assert job_c.rc != 0, job_c.stdout.read()[-3000:]
        assert "owner 'job-A'" in failure(job_c), failure(job_c)
        assert failed_result(job_c)["store"]["via"] == lab.uri(sorted(lab.hosts)[1])
    finally:
        up = lab_cmd("up")
        with open(a_args["extravars"]["release_file"], "w", encoding="utf-8"):
            pass
        thread.join(300)
    assert up.returncode == 0, up.stdout + up.stderr
    assert job_a.rc == 0, job_a.stdout.read()[-3000:]
    assert read_lock(lab) is None

    # Released: the next job takes it.
    job_d = ansible_runner.run(**job(tmp_path, "job-D", lab, uris))
    assert job_d.rc == 0, job_d.stdout.read()[-3000:]


def test_two_jobs_taking_the_lock_at_once_through_two_hypervisors_one_wins(lab_reset, tmp_path):
    lab = lab_reset
    names = sorted(lab.hosts)
    jobs = []
    for name, order in (("job-X", names), ("job-Y", names[1:] + names[:1])):
        kwargs = job(tmp_path, name, lab, [lab.uri(h) for h in order], hold=True)
        jobs.append((name, kwargs) + tuple(ansible_runner.run_async(**kwargs)))
    try:
        # the loser fails at once, the winner holds until released
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and all(thread.is_alive() for _n, _k, thread, _r in jobs):
            time.sleep(0.3)
        holder = read_lock(lab)
    finally:
        for _n, kwargs, thread, _r in jobs:
            with open(kwargs["extravars"]["release_file"], "w", encoding="utf-8"):
                pass
        for _n, _k, thread, _r in jobs:
            thread.join(300)
    outcome = {name: (runner.rc, failure(runner)) for name, _k, _t, runner in jobs}
    winners = [name for name, (rc, _msg) in outcome.items() if rc == 0]
    assert len(winners) == 1, outcome
    assert holder is not None and holder["owner"] == winners[0], (holder, outcome)
    loser = next(name for name in outcome if name != winners[0])
    assert "owner '%s'" % winners[0] in outcome[loser][1] or "taking the lock at this moment" in outcome[loser][1], outcome
    assert read_lock(lab) is None


@pytest.mark.usefixtures("lab_reset")
def test_an_evacuated_host_stays_empty_until_its_maintenance_is_cleared(lab, playbook):
    hv1 = sorted(lab.hosts)[0]
    uris = [lab.uri(h) for h in sorted(lab.hosts)]
    evacuated = playbook("entropy.cluster.evacuate", inventory=lab.inventory, extra_vars={"entropy_evacuate_hosts": [hv1]})
    assert evacuated.returncode == 0, evacuated.stdout[-4000:]
    assert not vms_on(lab, hv1)

    consolidated = playbook("entropy.cluster.consolidate", inventory=lab.inventory)
    assert consolidated.returncode == 0, consolidated.stdout[-4000:]
    assert "%s in maintenance" % hv1 in consolidated.stdout
    assert not vms_on(lab, hv1)

    # Three VMs that must run on three different hosts: only possible on hv1, which the mark keeps out.
    spread = {"entropy_constraints": [{"type": "spread", "vms": sorted(lab.vms)[:3]}]}
    refused = playbook("entropy.cluster.consolidate", inventory=lab.inventory, extra_vars=spread)
    assert refused.returncode != 0, refused.stdout[-4000:]
    assert "no placement satisfies the request" in refused.stdout
    assert not vms_on(lab, hv1)

    clear = {"host": hv1, "state": "absent", "uris": uris, "pool": POOL}
    checked = playbook("clear_maintenance.yml", extra_vars={"args": clear}, check=True)
    assert checked.returncode == 0 and "changed=1" in checked.stdout, checked.stdout[-3000:]
    cleared = playbook("clear_maintenance.yml", extra_vars={"args": clear})
    assert cleared.returncode == 0 and "changed=1" in cleared.stdout, cleared.stdout[-3000:]
    again = playbook("clear_maintenance.yml", extra_vars={"args": clear})
    assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-3000:]

    used = playbook("entropy.cluster.consolidate", inventory=lab.inventory, extra_vars=spread)
    assert used.returncode == 0, used.stdout[-4000:]
    assert vms_on(lab, hv1)
    lab.assert_each_vm_once()


def test_the_lock_record_is_written_while_creation_races(lab):
    """Through three daemons at once, 20 rounds: exactly one create of a record succeeds each time."""
    from ansible_collections.entropy.cluster.plugins.module_utils.cluster_store import ClusterStore  # pylint: disable=import-outside-toplevel

    uris = [lab.uri(h) for h in sorted(lab.hosts)]
    for round_ in range(20):
        won = []
        barrier = threading.Barrier(len(uris))

        def take(i: int, key: str) -> None:
            with ClusterStore(uris[i:] + uris[:i], POOL) as store:
                barrier.wait()
                won.append(store.create("checkpoint", key, {"i": i}))

        threads = [threading.Thread(target=take, args=(i, "race-%d" % round_)) for i in range(len(uris))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(won) == [False] * (len(uris) - 1) + [True], (round_, won)
        with ClusterStore(uris, POOL) as store:
            assert store.read("checkpoint", "race-%d" % round_).data is not None
            assert store.delete("checkpoint", "race-%d" % round_)
