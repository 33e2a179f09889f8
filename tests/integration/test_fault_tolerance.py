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
import signal
import subprocess
import sys
import time

import pytest

from conftest import COLLECTIONS, ROOT, LAB_DIR

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
