# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The user's environment in a job VM, on the lab: entropy.cluster.job_seed makes a VM's cloud-init NoCloud seed and
attaches it; the lab's OS guest boots with it, installs the owner's key for its SSH server, mounts the owner's share
from the lab's NFS server (inside the lab's network namespace) and runs the job's command, whose output and exit
status appear in the share. The owner logs in over SSH with their key (from inside the lab's namespace); another key
is refused. A VM name with quotes, spaces, braces and $( ) survives literally, through Ansible, the seed and the
guest's shell, into the names of the result files."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import libvirt
import pytest
import yaml

from conftest import LAB_TOOL

POOL = "entropy-job-seed-test"
VM = "job \"q\" 'x' {{ lookup('pipe', 'id') }} $(id) -1"
COMMAND = "echo \"ran in $(hostname) as $(id -u)\"\necho '{{ x }}' > literal.txt\nexit 3"
RESULT_TIMEOUT_S = 420  # a TCG boot on a shared 2-core machine: about 30 s idle, minutes under heavy load


class Unsafe(str):
    """A string Ansible must not template: written with the !unsafe tag."""


yaml.SafeDumper.add_representer(Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value)))


def ssh_keypair(directory: str, name: str) -> tuple[str, str]:
    path = os.path.join(directory, name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "owner@lab", "-f", path], check=True)
    with open(path + ".pub", encoding="utf-8") as handle:
        return path, handle.read().strip()


def guest_address(lab, dom, timeout: float = 120) -> str:
    """The VM's address from the lab's DHCP leases (by the MAC of its NIC)."""
    mac = ET.fromstring(dom.XMLDesc(0)).find("devices/interface/mac").get("address")
    leases = os.path.join(lab.dir, "net", "dnsmasq.leases")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(leases, encoding="utf-8") as handle:
            for line in handle:
                fields = line.split()
                if len(fields) >= 3 and fields[1].lower() == mac.lower():
                    return fields[2]
        time.sleep(1)
    raise AssertionError("no DHCP lease for %s (%s) in %s" % (dom.name(), mac, leases))


def ssh(lab, key: str, address: str, *command: str) -> subprocess.CompletedProcess:
    """ssh into a lab guest from inside the lab's network namespace (the guests' network is there only)."""
    return subprocess.run(["ip", "netns", "exec", lab.state["network"]["netns"], "ssh", "-i", key, "-o", "BatchMode=yes",
                           "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20",
                           "-o", "IdentitiesOnly=yes", "root@" + address, *command],
                          capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture()
def seed_pool(lab):
    host = sorted(lab.hosts)[0]
    pool_dir = os.path.join(lab.dir, "job-seed-test")
    shutil.rmtree(pool_dir, ignore_errors=True)
    os.makedirs(pool_dir)
    conn = lab.connect(host)
    pool = conn.storagePoolDefineXML("<pool type='dir'><name>%s</name><target><path>%s</path></target></pool>" % (POOL, pool_dir), 0)
    pool.create(0)
    yield host, pool_dir
    try:
        pool.destroy()
    except libvirt.libvirtError:
        pass
    pool.undefine()
    conn.close()
    shutil.rmtree(pool_dir, ignore_errors=True)


def test_job_vm_gets_key_share_and_command_from_its_seed(lab, playbook, seed_pool, tmp_path):
    host, pool_dir = seed_pool
    key, public = ssh_keypair(str(tmp_path), "owner")
    other_key, _other_public = ssh_keypair(str(tmp_path), "stranger")
    share = os.path.join(lab.dir, "shares", "job-guest-test")  # the lab's NFS export: <lab>/shares
    shutil.rmtree(share, ignore_errors=True)
    os.makedirs(share)
    os.chown(share, LAB_TOOL.NFS_ANON_ID, LAB_TOOL.NFS_ANON_ID)
    nfs_server = lab.state["network"]["address"].split("/")[0]
    # the lab's NFS server listens on the bridge address inside the lab's namespace, and nothing on the machine's network
    inside = subprocess.run(["ip", "netns", "exec", lab.state["network"]["netns"], "ss", "-Hltn"], capture_output=True, text=True, check=True)
    outside = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True)
    assert [line.split()[3] for line in inside.stdout.splitlines() if line.split()[3].endswith(":2049")] == ["[::ffff:%s]:2049" % nfs_server]
    assert not [line for line in outside.stdout.splitlines() if line.split()[3].endswith(":2049")], outside.stdout
    console_log = os.path.join(lab.dir, "job-guest-test.console.log")  # the guest's serial console, for a failure's story
    conn = lab.connect(host)
    try:
        conn.defineXML(LAB_TOOL.job_guest_xml(VM, console_log=console_log))
        made_file = str(tmp_path / "made.json")
        vars_file = tmp_path / "vars.yml"
        vars_file.write_text(yaml.safe_dump({
            "uri": lab.uri(host), "pool": POOL, "volume": Unsafe(VM + ".seed.iso"), "state": "present",
            "vm_name": Unsafe(VM), "ssh_key": Unsafe(public), "command": Unsafe(COMMAND), "nfs_server": nfs_server,
            "nfs_path": Unsafe(share), "domain": Unsafe(VM), "result_file": made_file}))
        made = playbook("job_seed.yml", extra_args=["-e", "@%s" % vars_file])
        assert made.returncode == 0, made.stdout[-4000:]
        with open(made_file, encoding="utf-8") as handle:
            result = json.load(handle)
        assert result["path"] == os.path.join(pool_dir, VM + ".seed.iso") and result["attached_to"] == VM
        disks = ET.fromstring(conn.lookupByName(VM).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findall("devices/disk")
        assert [d.find("source").get("file") for d in disks] == [result["path"]] and disks[0].find("readonly") is not None

        dom = conn.lookupByName(VM)
        dom.create()
        exit_file, out_file = os.path.join(share, VM + ".exit"), os.path.join(share, VM + ".out")
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        while not os.path.exists(exit_file) and time.monotonic() < deadline:
            time.sleep(2)
        assert os.path.exists(exit_file), "no %s after %d s; in the share: %s" % (exit_file, RESULT_TIMEOUT_S, os.listdir(share))
        with open(exit_file, encoding="utf-8") as handle:
            assert handle.read() == "3\n"
        with open(out_file, encoding="utf-8") as handle:
            assert handle.read() == "ran in %s as 0\n" % result["hostname"]
        with open(os.path.join(share, "literal.txt"), encoding="utf-8") as handle:
            assert handle.read() == "{{ x }}\n"
        # written over NFS by the guest's root, squashed to the export's anonymous user on this machine
        assert os.stat(out_file).st_uid == LAB_TOOL.NFS_ANON_ID

        address = guest_address(lab, dom)
        login = ssh(lab, key, address, "hostname; grep -c ' /mnt/entropy-share nfs4 ' /proc/mounts; ls /mnt/entropy-share")
        assert login.returncode == 0, login.stderr
        hostname, mounts, *listing = login.stdout.splitlines()
        assert hostname == result["hostname"] and mounts == "1"
        assert sorted(listing) == sorted(os.listdir(share))
        refused = ssh(lab, other_key, address, "true")
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, (refused.returncode, refused.stderr)
    finally:
        lab.remove_vm(VM)
        conn.close()
        shutil.rmtree(share, ignore_errors=True)
        if os.path.exists(console_log):
            os.unlink(console_log)
    gone = playbook("job_seed.yml", extra_vars={"uri": lab.uri(host), "pool": POOL, "state": "absent"},
                    extra_args=["-e", "@%s" % _write(tmp_path / "absent.yml", {"volume": Unsafe(VM + ".seed.iso")})])
    assert gone.returncode == 0, gone.stdout[-4000:]
    assert os.listdir(pool_dir) == []


def _write(path, data: dict) -> str:
    path.write_text(yaml.safe_dump(data))
    return str(path)


# --------------------------------------------------------------------------- a submitted job, start to end

JOB = "job \"q\" 'x' {{ lookup('pipe', 'touch templated-job') }} $(id)"
OWNER = "o'wner {{ 6 * 7 }}"
# Each VM waits for /tmp/go (made over SSH by the test: the command is still running when the queue runs first), then
# writes its result file into the share.
# The OS guest's smallest memory that boots it (its kernel and initramfs); 1 vCPU (the job file's vcpus).
JOB_MEMORY_MIB = 128
# Three TCG boots at once on a shared 2-core machine: minutes under load.
JOB_BOOT_TIMEOUT_S = 900
JOB_COMMAND = ("while [ ! -e /tmp/go ]; do sleep 0.2; done\n"
               "echo \"ran in $(hostname) as $(id -u)\"\n"
               "echo \"result of $(hostname)\" > \"result-$(hostname).txt\"\n"
               "echo '{{ x }}' > literal.txt\n")


def ssh_once_up(lab, key: str, address: str, command: str, timeout: float = JOB_BOOT_TIMEOUT_S) -> subprocess.CompletedProcess:
    """ssh as soon as the guest's SSH server answers (it makes its host key at the first connection: slow under TCG)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done = ssh(lab, key, address, command)
        except subprocess.TimeoutExpired:
            done = None
        if done is not None and (done.returncode != 255 or "Permission denied" in done.stderr) or time.monotonic() > deadline:
            return done
        time.sleep(2)


def test_a_submitted_job_runs_its_command_and_the_queue_finishes_it_then_starts_the_next(lab_reset, playbook, tmp_path):
    """submit a 3-VM job of the OS guest: each VM gets its seed (the owner's key, the share from the lab's NFS server, the
    command); the owner logs in with their key (another key is refused); the queue leaves the job alone while its
    command runs; the result files appear in the share; the next queue run finishes the job (done, exit statuses, VMs,
    overlays and seeds gone) and starts the job that was queued for lack of room."""
    from test_jobs import base_image, overlays, record  # pylint: disable=import-outside-toplevel
    from ansible_collections.entropy.cluster.plugins.module_utils._job_seed import hostname_for  # pylint: disable=import-outside-toplevel

    lab = lab_reset
    key, public = ssh_keypair(str(tmp_path), "owner")
    other_key, _other_public = ssh_keypair(str(tmp_path), "stranger")
    share = os.path.join(lab.dir, "shares", "job-guest-test")  # the lab's NFS export: <lab>/shares
    shutil.rmtree(share, ignore_errors=True)
    os.makedirs(share)
    os.chown(share, LAB_TOOL.NFS_ANON_ID, LAB_TOOL.NFS_ANON_ID)
    guest = LAB_TOOL.build_guest(lab.dir)  # the OS guest boots its kernel directly: the job's disk is a linked clone all the same
    boot = {"entropy_job_kernel": guest["kernel"], "entropy_job_initrd": guest["initrd"], "entropy_job_cmdline": "console=ttyS0 quiet panic=-1"}
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    for directory, fields in ((first, dict(name=JOB, owner=OWNER, vms=3, memory_mib=JOB_MEMORY_MIB, command=JOB_COMMAND, share=share,
                                           constraints=[{"type": "spread"}])),
                              # 3 x 150 MiB: more than the 192 MiB free while the first job runs, room once it is done
                              (second, dict(name="next", owner="bob", vms=3, memory_mib=150, command="true", share=share))):
        (directory / "job.yml").write_text(yaml.safe_dump(dict(dict(vcpus=1, cpu=0.05, image=base_image(lab), ssh_key=public,
                                                                    time_limit_s=600), **fields)))
    vms = ["%s-%d" % (JOB, i) for i in (1, 2, 3)]
    nexts = ["next-1", "next-2", "next-3"]
    try:
        submitted = playbook("entropy.cluster.submit", inventory=lab.inventory, cwd=str(first),
                             extra_vars=dict(boot, entropy_job_file=str(first / "job.yml")))
        assert submitted.returncode == 0, submitted.stdout[-6000:]
        queued = playbook("entropy.cluster.submit", inventory=lab.inventory, cwd=str(second), extra_vars={"entropy_job_file": str(second / "job.yml")})
        assert queued.returncode == 0 and record(lab, "next")["state"] == "queued", queued.stdout[-4000:]
        assert "needs 450 MiB" in record(lab, "next")["message"], record(lab, "next")["message"]
        hosts = {vm["name"]: vm["host"] for vm in record(lab, JOB)["vms"]}
        assert sorted(hosts) == vms and len(set(hosts.values())) == 3
        assert len(overlays(lab)) == 6  # each VM's overlay and its seed volume

        addresses = {}
        for vm in vms:  # the owner's key works in every VM, once its seed is read
            conn = lab.connect(hosts[vm])
            try:
                addresses[vm] = guest_address(lab, conn.lookupByName(vm), timeout=JOB_BOOT_TIMEOUT_S)
            finally:
                conn.close()
        login = ssh_once_up(lab, key, addresses[vms[0]], "hostname; id -u")
        assert login.returncode == 0, login.stderr
        assert login.stdout.splitlines() == [hostname_for(vms[0]), "0"], login.stdout
        refused = ssh(lab, other_key, addresses[vms[0]], "true")
        assert refused.returncode == 255 and "Permission denied" in refused.stderr, (refused.returncode, refused.stderr)

        # the queue while the command runs (waiting for /tmp/go): nothing of the job is touched, the next job still waits
        waiting = playbook("entropy.cluster.job_queue", inventory=lab.inventory, cwd=str(tmp_path))
        assert waiting.returncode == 0, waiting.stdout[-6000:]
        assert "still runs in 3 of its 3 VM(s)" in waiting.stdout, waiting.stdout[-4000:]
        placement = lab.placement()
        assert all(placement.get(vm) == [(hosts[vm], "running")] for vm in vms), placement
        assert record(lab, JOB)["state"] == "running" and record(lab, "next")["state"] == "queued" and len(overlays(lab)) == 6

        for vm in vms:
            went = ssh_once_up(lab, key, addresses[vm], "touch /tmp/go")
            assert went.returncode == 0, went.stderr
        deadline = time.monotonic() + RESULT_TIMEOUT_S
        exits = [os.path.join(share, vm + ".exit") for vm in vms]
        while not all(os.path.exists(path) for path in exits) and time.monotonic() < deadline:
            time.sleep(1)
        assert all(os.path.exists(path) for path in exits), os.listdir(share)
        results = sorted(n for n in os.listdir(share) if n.startswith("result-"))
        assert len(results) == 3, os.listdir(share)
        for name in results:
            with open(os.path.join(share, name), encoding="utf-8") as handle:
                assert handle.read() == "result of %s\n" % name[len("result-"):-len(".txt")]
        for vm in vms:
            with open(os.path.join(share, vm + ".out"), encoding="utf-8") as handle:
                assert handle.read() == "ran in %s as 0\n" % hostname_for(vm)
        with open(os.path.join(share, "literal.txt"), encoding="utf-8") as handle:
            assert handle.read() == "{{ x }}\n"

        # the next queue run: the job is done and gone, then the queued job fits and starts
        finished = playbook("entropy.cluster.job_queue", inventory=lab.inventory, cwd=str(tmp_path))
        assert finished.returncode == 0, finished.stdout[-6000:]
        data = record(lab, JOB)
        assert data["state"] == "done" and data["exit_statuses"] == dict.fromkeys(vms, 0) and data["ended_iso"], data
        assert [h["state"] for h in data["history"]] == ["queued", "running", "done"], data["history"]
        placement = lab.placement()
        assert not [vm for vm in vms if vm in placement], placement
        assert record(lab, "next")["state"] == "running", record(lab, "next")
        assert all(len(placement.get(vm, [])) == 1 and placement[vm][0][1] == "running" for vm in nexts), placement
        assert len(overlays(lab)) == 6  # the next job's overlays and seeds only
        again = playbook("entropy.cluster.job_queue", inventory=lab.inventory, cwd=str(tmp_path))
        assert again.returncode == 0 and "changed=0" in again.stdout, again.stdout[-4000:]
        cancelled = playbook("entropy.cluster.cancel", inventory=lab.inventory, cwd=str(second), extra_vars={"entropy_job_name": "next"})
        assert cancelled.returncode == 0 and overlays(lab) == [], cancelled.stdout[-4000:]
        # nothing was templated: no file made by the pipe lookup, no "42" for the owner
        assert not os.path.exists(first / "templated-job") and not os.path.exists(tmp_path / "templated-job")
        assert data["owner"] == OWNER
    finally:
        for vm in vms + nexts:
            lab.remove_vm(vm)
        shutil.rmtree(share, ignore_errors=True)
