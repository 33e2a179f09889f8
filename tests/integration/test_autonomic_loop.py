# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The autonomic loop on the lab: real ansible-rulebook runs the collection's rulebook (entropy.cluster.autonomic)
with its event source (entropy.cluster.cluster_load) over a copy of the lab's inventory. Once the source has taken its
first sample, the inventory file is rewritten with hv1 declared at 100 MiB: its two 64 MiB VMs overload it. (Memory,
not the CPU of the lab's loaded VMs: on a busy 2-core machine the TCG guests get little CPU and their measured demand
falls to a few hundredths of a core.) The repair playbook must start within 30 s of the overload, move a VM off hv1,
and run once: the samples taken during and after the repair raise no second event (hysteresis, cool-down, the rule's
throttle)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import COLLECTIONS, LAB_DIR

JAVA_HOME = "/usr/lib/jvm/java-17-openjdk-amd64"   # Debian's openjdk-17-jre-headless (tests/bindep.txt)
SAMPLE_S = 2


def _inventory_dir(lab, tmp_path) -> str:
    """A copy of the lab's inventory, its group_vars, and the controller as an explicit localhost (ansible-rulebook
    limits its playbooks to the inventory's hosts)."""
    inv = tmp_path / "inventory"
    shutil.copytree(os.path.join(lab.dir, "group_vars"), inv / "group_vars")
    shutil.copy(lab.inventory, inv / "lab.libvirt_cluster.yml")
    (inv / "localhost.yml").write_text(yaml.safe_dump(
        {"all": {"hosts": {"localhost": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    return str(inv)


def _overload_hv1(path: str) -> None:
    """hv1 declared with 100 MiB (its two 64 MiB VMs overload it), written atomically."""
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    for entry in data["hypervisors"]:
        if entry["name"] == "hv1":
            entry["memory_mib"] = 100
    with open(path + ".new", "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle)
    os.replace(path + ".new", path)


def _wait_for(path, what: str, deadline: float, proc) -> float:
    while time.monotonic() < deadline:
        if what in path.read_text(errors="replace"):
            return time.monotonic()
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    pytest.fail("no %r in ansible-rulebook's output (rc %s):\n%s" % (what, proc.poll(), path.read_text(errors="replace")[-4000:]))


def test_an_overloaded_host_is_repaired_within_30_s_once(lab_reset, tmp_path):
    lab = lab_reset
    on_hv1 = sorted(vm for vm, where in lab.placement().items() if where == [("hv1", "running")])
    assert len(on_hv1) == 2, lab.placement()
    inv = _inventory_dir(lab, tmp_path)
    log = tmp_path / "rulebook.log"
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS, ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCALHOST_WARNING="false", ENTROPY_LAB_DIR=LAB_DIR,
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               ENTROPY_INVENTORY=os.path.join(inv, "lab.libvirt_cluster.yml"), ENTROPY_SAMPLE_INTERVAL_S=str(SAMPLE_S),
               ENTROPY_UNDERUSED_MIN_GAIN="99")   # the lab uses a host more than it needs: no consolidation here
    if os.path.isdir(JAVA_HOME):
        env["JAVA_HOME"] = JAVA_HOME
    cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-rulebook"), "-r", "entropy.cluster.autonomic", "-i", inv,
           "-E", "ENTROPY_INVENTORY,ENTROPY_SAMPLE_INTERVAL_S,ENTROPY_UNDERUSED_MIN_GAIN"]
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path))  # pylint: disable=consider-using-with
    try:
        _wait_for(log, "cluster_load: sampling 3 hypervisor(s)", time.monotonic() + 120, proc)   # the loop is live
        _overload_hv1(env["ENTROPY_INVENTORY"])
        started = time.monotonic()
        began = _wait_for(log, "PLAY [Repair the libvirt cluster]", started + 30, proc)
        ended = _wait_for(log, "PLAY RECAP", began + 90, proc)
        # three more samples after the repair: any event they raised would start a second run at once
        deadline = ended + 3 * SAMPLE_S + 1
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    print("repair started %.1f s after the overload, finished %.1f s later" % (began - started, ended - began))
    assert text.count("PLAY [Repair the libvirt cluster]") == 1, text[-4000:]
    assert text.count("PLAY [") == 1, text[-4000:]    # nothing else ran (no consolidation, no fence)
    assert "failed=0" in text and "fatal:" not in text, text[-4000:]
    where = lab.placement()
    assert sum(1 for vm in on_hv1 if where[vm] == [("hv1", "running")]) == 1, where    # one VM left hv1
    assert not os.listdir(os.path.join(lab.dir, "store")), "the repair left its run lock in the cluster store"
