# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Fault tolerance on the lab (issue 15): bounded connections, failure detection, fencing.

A host that "stops answering without refusing" is a lab daemon stopped with SIGSTOP (found by the PID in its
own pidfile): its TCP socket still completes handshakes, nothing answers, exactly what a client sees of a
powered-off host behind a firewall that drops packets. Every test resumes (or restarts) the daemon before
it ends, so the lab is whole for the next test.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import COLLECTIONS, LAB_DIR, LAB_TOOL, ROOT, lab_cmd

if COLLECTIONS not in sys.path:
    sys.path.insert(0, COLLECTIONS)


def daemon_pid(lab, host: str) -> int:
    """libvirtd's PID from the host's own pidfile, checked against lab.json."""
    with open(os.path.join(lab.hosts[host]["dir"], "run", "libvirt", "libvirtd.pid"), encoding="utf-8") as handle:
        pid = int(handle.read().strip())
    with open(os.path.join(LAB_DIR, "lab.json"), encoding="utf-8") as handle:
        recorded = {h["name"]: h["pid"] for h in json.load(handle)["hosts"]}
    assert pid == recorded[host], "pidfile of %s says %d, lab.json %s" % (host, pid, recorded[host])
    return pid


@contextlib.contextmanager
def stopped_daemon(lab, host: str):
    """The host's libvirtd stopped (SIGSTOP) inside the block, resumed after it whatever happens."""
    pid = daemon_pid(lab, host)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield pid
    finally:
        os.kill(pid, signal.SIGCONT)


def inventory(lab, env: dict | None = None) -> tuple[dict, float]:
    started = time.monotonic()
    out = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ansible-inventory"), "-i", lab.inventory, "--list"],
                         capture_output=True, text=True, check=False, timeout=90,
                         env=dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false",
                                  ANSIBLE_INVENTORY_UNPARSED_WARNING="false", **(env or {})), cwd=ROOT)
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout), elapsed


# --------------------------------------------------------------------------- 1. bounded connections

def test_a_stopped_hypervisor_is_unreachable_within_the_timeout_and_the_others_are_read(lab):
    with stopped_daemon(lab, "hv2"):
        data, elapsed = inventory(lab, {"ENTROPY_LIBVIRT_CONNECT_TIMEOUT": "3"})
    hostvars = data["_meta"]["hostvars"]
    assert data["unreachable"]["hosts"] == ["hv2"]
    assert "no answer within 3 s" in hostvars["hv2"]["entropy_error"]
    assert hostvars["hv1"]["entropy_reachable"] and hostvars["hv3"]["entropy_reachable"]
    assert {vm for vm, v in hostvars.items() if v.get("entropy_hypervisor") in ("hv1", "hv3")} >= {"vm1", "vm2", "vm5", "vm6"}
    # 3 s for hv2, one sampling interval (1 s), ansible's start-up: far below the minutes libvirt alone would wait
    assert elapsed < 25, elapsed


def test_a_module_on_a_stopped_hypervisor_fails_unreachable_within_the_timeout(lab, playbook, tmp_path):
    book = tmp_path / "info.yml"
    book.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                    "    - entropy.cluster.vm_info: {uri: '%s', connect_timeout: 2}\n      register: info\n      ignore_errors: true\n"
                    "    - ansible.builtin.debug: {var: info}\n" % lab.uri("hv2"))
    with stopped_daemon(lab, "hv2"):
        started = time.monotonic()
        out = playbook(str(book))
        elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stdout
    assert '"error_kind": "unreachable"' in out.stdout and "no answer within 2 s" in out.stdout
    assert elapsed < 20, elapsed


def test_a_call_on_an_open_connection_ends_when_its_host_stops(lab):
    """Keepalive: a connection opened while the host answered fails its next call once the host stops answering."""
    from ansible_collections.entropy.cluster.plugins.module_utils import libvirt_common as lc  # pylint: disable=import-outside-toplevel

    conn = lc.open_connection(lab.uri("hv3"), connect_timeout=2)
    try:
        with stopped_daemon(lab, "hv3"):
            started = time.monotonic()
            with pytest.raises(lc.libvirt.libvirtError) as err:
                conn.listAllDomains()
            elapsed = time.monotonic() - started
        assert "keepalive" in str(err.value)
        assert lc.describe_error(err.value, "listing VMs", lab.uri("hv3")).kind == "unreachable"
        assert elapsed < 8, elapsed
    finally:
        lc.close_quietly(conn)


# --------------------------------------------------------------------------- 2. failure detection

def run_probe(lab, playbook, tmp_path, **options) -> tuple[dict, float]:
    """entropy.cluster.host_probe over every lab host through ansible-playbook; (its result, wall seconds)."""
    args = dict({"hypervisors": {name: h["uri"] for name, h in lab.hosts.items()}}, **options)
    book = tmp_path / "probe.yml"
    out_file = tmp_path / "probe.json"
    book.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                    "    - entropy.cluster.host_probe: %s\n      register: probe\n"
                    "    - ansible.builtin.copy: {content: '{{ probe | to_json }}', dest: '%s'}\n" % (json.dumps(args), out_file))
    started = time.monotonic()
    out = playbook(str(book))
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stdout
    return json.loads(out_file.read_text()), elapsed


def test_a_stopped_host_is_declared_failed_after_the_grace_not_before(lab, playbook, tmp_path):
    with stopped_daemon(lab, "hv2"):
        result, _wall = run_probe(lab, playbook, tmp_path, probes=2, interval=1, grace=6, probe_timeout=2)
    hv2 = result["hosts"]["hv2"]
    assert result["failed_hosts"] == ["hv2"] and result["up_hosts"] == ["hv1", "hv3"]
    assert hv2["status"] == "failed" and hv2["failed_probes"] >= 2 and "no answer within 2 s" in hv2["last_error"]
    # not before the grace: the failed probes span at least 6 s; and not much after: one probe timeout + one interval
    assert 6 <= hv2["failed_for_seconds"] <= 6 + 2 + 1 + 1.5, hv2
    assert result["hosts"]["hv1"]["probes"] == 1 and result["hosts"]["hv1"]["status"] == "up"


def clients_of(lab, host: str) -> int:
    """Connections waiting on a stopped lab daemon's libvirt socket (the kernel still queues them on the listening
    socket: its Recv-Q), seen from inside the lab's network namespace where the daemon runs."""
    pid = daemon_pid(lab, host)
    out = subprocess.run(["ip", "netns", "exec", lab.state["network"]["netns"], "ss", "-Hxlnp"],
                         capture_output=True, text=True, check=True)
    return sum(int(line.split()[2]) for line in out.stdout.splitlines()
               if "pid=%d," % pid in line and line.split()[4].endswith("/libvirt-sock"))


def test_a_host_that_comes_back_within_the_grace_is_not_declared_failed(lab, playbook, tmp_path):
    pid = daemon_pid(lab, "hv3")
    os.kill(pid, signal.SIGSTOP)

    def resume_after_failed_probes() -> None:
        # wait for the module's first probe to reach the stopped daemon, then let one more probe fail
        deadline = time.monotonic() + 120
        while clients_of(lab, "hv3") == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3)
        os.kill(pid, signal.SIGCONT)

    resumer = threading.Thread(target=resume_after_failed_probes, daemon=True)
    resumer.start()
    try:
        result, _wall = run_probe(lab, playbook, tmp_path, probes=3, interval=1, grace=12, probe_timeout=2)
    finally:
        resumer.join(130)
        os.kill(pid, signal.SIGCONT)
    hv3 = result["hosts"]["hv3"]
    assert result["failed_hosts"] == [] and hv3["status"] == "up" and hv3["came_back"], hv3
    assert hv3["probes"] >= 2


def test_probe_settings_are_checked_in_one_line(lab, playbook, tmp_path):
    book = tmp_path / "bad.yml"
    book.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                    "    - entropy.cluster.host_probe: {hypervisors: {hv1: '%s'}, probes: 0}\n" % lab.uri("hv1"))
    out = playbook(str(book))
    assert out.returncode != 0 and "probes must be at least 1, got 0" in out.stdout and "Traceback" not in out.stdout


# --------------------------------------------------------------------------- 3. fencing

def qemu_pids(lab, host: str) -> dict[str, int]:
    """VM name -> PID of its QEMU, from the host's own pidfiles, for the QEMUs still alive."""
    run = os.path.join(lab.hosts[host]["dir"], "run", "libvirt", "qemu")
    alive = {}
    for entry in os.listdir(run) if os.path.isdir(run) else []:
        if entry.endswith(".pid") and entry != "driver.pid":
            with open(os.path.join(run, entry), encoding="utf-8") as handle:
                pid = int(handle.read().strip() or 0)
            if pid and LAB_TOOL.process_running(pid):  # a killed process may stay a zombie a while
                alive[entry[:-4]] = pid
    return alive


def fence_records(lab) -> list[str]:
    store = os.path.join(lab.dir, "store")
    return sorted(name for name in os.listdir(store) if name.startswith("entropy.fence."))


def restore_lab(lab) -> None:
    for args in (("up",), ("reset",)):
        result = lab_cmd(*args)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.lab_vms_may_stop
def test_a_failed_host_is_fenced_recorded_left_out_and_does_not_restart_its_vms(lab_reset, playbook):
    lab = lab_reset  # every VM on its home host: vm3 and vm4 on hv2
    assert lab_cmd("up").returncode == 0  # the lab's group_vars carry the fencing hook
    victims = sorted(qemu_pids(lab, "hv2"))
    assert victims == ["vm3", "vm4"]
    daemon = daemon_pid(lab, "hv2")
    os.kill(daemon, signal.SIGSTOP)  # hv2 stops answering without refusing
    try:
        started = time.monotonic()
        out = playbook("entropy.cluster.fence", inventory=lab.inventory, env={"ENTROPY_LIBVIRT_CONNECT_TIMEOUT": "3"},
                       extra_vars={"entropy_probe_grace_s": 4, "entropy_probe_interval_s": 1, "entropy_probe_timeout_s": 2})
        elapsed = time.monotonic() - started
        assert out.returncode == 0, out.stdout
        assert "failed: hv2;" in out.stdout
        # killed by the PIDs in hv2's pidfiles: its daemon and both QEMUs are gone, hv1's and hv3's VMs run on
        assert not LAB_TOOL.process_running(daemon)
        assert qemu_pids(lab, "hv2") == {}
        assert sorted(qemu_pids(lab, "hv1")) == ["vm1", "vm2"] and sorted(qemu_pids(lab, "hv3")) == ["vm5", "vm6"]
        assert fence_records(lab) == ["entropy.fence.hv2"]
        assert elapsed < 60, elapsed

        # hv2 comes back: its daemon starts again, its VMs stay shut off (no autostart), and every job sees the fence
        assert lab_cmd("up").returncode == 0
        assert lab.placement()["vm3"] == [("hv2", "shutoff")] and lab.placement()["vm4"] == [("hv2", "shutoff")]
        data, _elapsed = inventory(lab)
        assert data["fenced"]["hosts"] == ["hv2"]
        hostvars = data["_meta"]["hostvars"]
        assert hostvars["hv2"]["entropy_reachable"] and hostvars["hv2"]["entropy_fenced"]["reason"] == "fenced by entropy.cluster.fence"
        model = hostvars["entropy_cluster"]["entropy_model"]
        assert sorted(h["name"] for h in model["hosts"]) == ["hv1", "hv3"]
        assert sorted(v["name"] for v in model["vms"]) == ["vm1", "vm2", "vm5", "vm6"]
        assert any("hv2 left out of the model with its VMs: it is fenced" in w for w in model["warnings"])
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon, signal.SIGCONT)
        restore_lab(lab)
    assert fence_records(lab) == []  # the lab reset clears the store


def test_host_fence_refuses_a_host_that_still_runs_vms_and_is_idempotent(lab, playbook, tmp_path):
    uris = [h["uri"] for h in lab.hosts.values()]
    book = tmp_path / "fence.yml"
    book.write_text("""\
- hosts: localhost
  gather_facts: false
  vars: {uris: %s, hv1: '%s'}
  tasks:
    - name: hv1 runs its VMs, so it is not fenced
      entropy.cluster.host_fence: {host: hv1, uri: '{{ hv1 }}', uris: '{{ uris }}'}
      register: refused
      ignore_errors: true
    - ansible.builtin.assert:
        that:
          - refused is failed and refused.error_kind == 'not_fenced' and refused.active_vms == ['vm1', 'vm2']
          - "'no fence is recorded' in refused.msg"
    - name: without the check (the hook is trusted), in check mode nothing is written
      entropy.cluster.host_fence: {host: hv1, uris: '{{ uris }}'}
      check_mode: true
      register: check
    - ansible.builtin.assert: {that: [check is changed, check.previous is none]}
    - entropy.cluster.host_fence: {host: hv1, uris: '{{ uris }}', method: test}
      register: first
    - entropy.cluster.host_fence: {host: hv1, uris: '{{ uris }}', method: test}
      register: second
    - ansible.builtin.assert: {that: [first is changed, second is not changed, second.fence.method == 'test']}
    - entropy.cluster.host_fence: {host: hv1, uris: '{{ uris }}', state: absent}
      register: cleared
    - entropy.cluster.host_fence: {host: hv1, uris: '{{ uris }}', state: absent}
      register: again
    - ansible.builtin.assert: {that: [cleared is changed, again is not changed, again.fence is none]}
""" % (json.dumps(uris), lab.uri("hv1")))
    out = playbook(str(book))
    assert out.returncode == 0, out.stdout
    assert fence_records(lab) == []


# --------------------------------------------------------------------------- 4. figures

@pytest.mark.lab_vms_may_stop
def test_the_failure_benchmark_in_one_round(lab):
    """docs/fault-tolerance.md's benchmark, one round with a short grace (it repairs the lab after each round)."""
    out = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_host_failure.py"), "--rounds", "1", "--failure", "stop",
                          "--grace", "4", "--interval", "1", "--probe-timeout", "2", "--connect-timeout", "3"],
                         capture_output=True, text=True, check=False, timeout=600, env=dict(os.environ, ENTROPY_LAB_DIR=LAB_DIR))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "| failure -> fence recorded |" in out.stdout and "round 1: failure (stop)" in out.stdout
    assert fence_records(lab) == [] and not lab.vm_problems()


# --------------------------------------------------------------------------- 5. checkpoints of a VM group

def test_a_group_checkpoint_pauses_all_before_capturing_any_and_resumes_after(lab, playbook, tmp_path):
    from ansible_collections.entropy.cluster.plugins.module_utils import libvirt_common as lc  # pylint: disable=import-outside-toplevel

    directory = os.path.join(lab.dir, "checkpoints-test")
    os.makedirs(directory, exist_ok=True)
    group = {"vm1": lab.uri("hv1"), "vm3": lab.uri("hv2")}
    lc.ensure_event_loop()
    events: list[tuple[float, str, int]] = []
    conns = {vm: lc.libvirt.open(uri) for vm, uri in group.items()}
    callbacks = []
    for vm, conn in conns.items():
        def record(_conn, dom, event, _detail, _opaque):
            events.append((time.time(), dom.name(), event))
        callbacks.append(conn.domainEventRegisterAny(conn.lookupByName(vm), lc.libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, record, None))
    book = tmp_path / "checkpoint.yml"
    out_file = tmp_path / "checkpoint.json"
    args = {"vms": group, "checkpoint": "ck-0001", "directory": directory, "max_skew_ms": 2000}
    book.write_text("- hosts: localhost\n  gather_facts: false\n  tasks:\n"
                    "    - entropy.cluster.vm_checkpoint: %s\n      check_mode: true\n      register: check\n"
                    "    - entropy.cluster.vm_checkpoint: %s\n      register: ck\n"
                    "    - entropy.cluster.vm_checkpoint: %s\n      register: again\n"
                    "    - ansible.builtin.copy: {content: '{{ [check, ck, again] | to_json }}', dest: '%s'}\n"
                    % (json.dumps(args), json.dumps(args), json.dumps(args), out_file))
    try:
        out = playbook(str(book))
        assert out.returncode == 0, out.stdout
        time.sleep(1)  # the last lifecycle events
        check, taken, again = json.loads(out_file.read_text())
        assert check["changed"] and taken["changed"] and not again["changed"]
        suspended = [at for at, _vm, ev in events if ev == lc.libvirt.VIR_DOMAIN_EVENT_SUSPENDED]
        resumed = [at for at, _vm, ev in events if ev == lc.libvirt.VIR_DOMAIN_EVENT_RESUMED]
        assert {vm for _at, vm, ev in events if ev == lc.libvirt.VIR_DOMAIN_EVENT_SUSPENDED} == {"vm1", "vm3"}, events
        # no VM of the group ran while another was captured: every pause came before every resume, and the captures between
        assert max(suspended) < min(resumed), events
        timeline = taken["timeline"]
        assert timeline["paused_by"] <= timeline["captures_from"] and timeline["captured_by"] <= timeline["resumes_from"]
        assert taken["skew_ms"] < 2000 and taken["pause_ms"] > 0
        for vm in group:
            assert taken["vms"][vm]["memory_bytes"] > 100000
            assert os.path.exists(taken["vms"][vm]["disks"][0]["overlay"]) and taken["vms"][vm]["disks"][0]["frozen"] == lab.vms[vm]["disk"]
        assert os.path.exists(os.path.join(directory, "ck-0001.checkpoint.json"))
        assert lab.running_on("vm1") == ["hv1"] and lab.running_on("vm3") == ["hv2"]
        assert [s for h, s in lab.placement()["vm1"]] == ["running"] and [s for h, s in lab.placement()["vm3"]] == ["running"]
    finally:
        for (vm, conn), callback in zip(conns.items(), callbacks):
            conn.domainEventDeregisterAny(callback)
            conn.close()
        assert lab_cmd("reset").returncode == 0  # the VMs back on their own disks
        shutil.rmtree(directory, ignore_errors=True)
