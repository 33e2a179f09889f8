# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab itself: distinct real hypervisors, running VMs, and a raw libvirt live migration."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import libvirt
import pytest

from conftest import lab_cmd


def test_three_distinct_hosts_with_running_vms(lab):
    assert len(lab.hosts) >= 3
    uuids = {lab.host_uuid(h) for h in lab.hosts}
    assert len(uuids) == len(lab.hosts), "every lab host must have its own host UUID: %s" % uuids
    hostnames = set()
    for name in lab.hosts:
        conn = lab.connect(name)
        try:
            hostnames.add(conn.getHostname())
            assert conn.getType() == "QEMU"
        finally:
            conn.close()
    assert hostnames == set(lab.hosts)
    placement = lab.placement()
    running = [vm for vm, where in placement.items() if any(s == "running" for _h, s in where)]
    assert len(running) >= len(lab.hosts)
    lab.assert_each_vm_once()


def test_loaded_vm_burns_cpu(lab):
    vm = next(v for v in lab.vms.values() if v["load"] > 0)
    host = lab.running_on(vm["name"])[0]
    conn = lab.connect(host)
    try:
        dom = conn.lookupByName(vm["name"])
        before = dom.getCPUStats(True)[0]["cpu_time"]
        time.sleep(1.0)
        used = (dom.getCPUStats(True)[0]["cpu_time"] - before) / 1e9
    finally:
        conn.close()
    assert used > 0.02, "a loaded lab VM should use some CPU, measured %.3f cores" % used


def test_raw_live_migration_between_two_lab_hosts(lab):
    vm = sorted(lab.vms)[0]
    source = lab.running_on(vm)[0]
    target = next(h for h in sorted(lab.hosts) if h != source)
    src, dst = lab.connect(source), lab.connect(target)
    flags = libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE | libvirt.VIR_MIGRATE_UNSAFE
    try:
        src.lookupByName(vm).migrate3(dst, {}, flags)
        assert lab.running_on(vm) == [target]
        lab.assert_each_vm_once()
        # and back, so the lab is as we found it
        dst.lookupByName(vm).migrate3(src, {}, flags)
        assert lab.running_on(vm) == [source]
    finally:
        src.close()
        dst.close()
    lab.assert_each_vm_once()


def test_lab_refuses_clearly_without_root(tmp_path):
    """Not root: a one-line error that says what to run, no traceback (stdlib Python: the
    venv's interpreter may sit where an unprivileged user cannot read)."""
    python = shutil.which("python3", path="/usr/bin:/bin")
    if not python or not shutil.which("setpriv"):
        pytest.skip("needs /usr/bin/python3 and setpriv")
    with open(os.path.join(os.path.dirname(__file__), "..", "..", "tools", "lab.py"), encoding="utf-8") as handle:
        script = handle.read()  # given on stdin: the checkout may not be readable by that user
    result = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-", "up"], input=script,
                            capture_output=True, text=True, check=False, env={"PATH": "/usr/bin:/bin", "ENTROPY_LAB_DIR": str(tmp_path / "lab")})
    assert result.returncode == 2, result
    assert "the lab needs root" in result.stderr and "sudo" in result.stderr
    assert "Traceback" not in result.stderr


def test_up_again_is_idempotent_and_status_tells_what_runs(lab):
    before = lab.placement()
    started = time.monotonic()
    again = lab_cmd("up")
    assert again.returncode == 0, again.stderr
    assert "(0 started)" in again.stdout and "(0 created)" in again.stdout
    assert time.monotonic() - started < 10
    assert lab.placement() == before
    status = lab_cmd("status", "--check")
    assert status.returncode == 0 and "(up)" in status.stdout
    assert all(name in status.stdout for name in lab.hosts)
