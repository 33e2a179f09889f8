# Copyright: entropy.cluster contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A job, start to end, on the lab: entropy.cluster.submit places a 3-VM job of the lab's OS guest and gives each VM its
seed (entropy.cluster.job_seed: the owner's key, the share from the lab's NFS server inside the lab's network namespace,
the command); each VM boots, installs the key for its SSH server, mounts the share and runs the command, whose output
and exit status appear in the share. The owner logs in over SSH with their key (from inside the lab's namespace);
another key is refused. entropy.cluster.job_queue leaves the job alone while its command runs, then records it done
and removes its VMs, overlays and seeds, and starts the job that was queued for lack of room. A job name with quotes,
spaces, braces and $( ) survives literally, through Ansible, the seed and the guest's shell, into the names of the
result files. One test: the OS guest's boots are slow (TCG)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import xml.etree.ElementTree as ET

import yaml

from conftest import LAB_TOOL

RESULT_TIMEOUT_S = 420  # the commands, once started: seconds idle, minutes under heavy load


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


# --------------------------------------------------------------------------- a submitted job, start to end

JOB = "job \"q\" 'x' {{ lookup('pipe', 'touch templated-job') }} $(id)"
OWNER = "o'wner {{ 6 * 7 }}"
# Each VM waits for /tmp/go (made over SSH by the test: the command is still running when the queue runs first), then
# writes its result file into the share.
# The OS guest's smallest memory that boots it: with 64 MiB its kernel reboots right after "Probing EDD" (seen on its
# serial console), 96 MiB boot; 1 vCPU (the job file's vcpus).
JOB_MEMORY_MIB = 96
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
    nfs_server = lab.state["network"]["address"].split("/")[0]
    with open(os.path.join(lab.dir, "group_vars", "all.yml"), encoding="utf-8") as handle:  # where submit finds it
        assert yaml.safe_load(handle)["entropy_job_nfs_server"] == nfs_server
    # the lab's NFS server listens on the bridge address inside the lab's namespace, and nothing on the machine's network
    inside = subprocess.run(["ip", "netns", "exec", lab.state["network"]["netns"], "ss", "-Hltn"], capture_output=True, text=True, check=True)
    outside = subprocess.run(["ss", "-Hltn"], capture_output=True, text=True, check=True)
    assert [line.split()[3] for line in inside.stdout.splitlines() if line.split()[3].endswith(":2049")] == ["[::ffff:%s]:2049" % nfs_server]
    assert not [line for line in outside.stdout.splitlines() if line.split()[3].endswith(":2049")], outside.stdout
    guest = LAB_TOOL.build_guest(lab.dir)  # the OS guest boots its kernel directly: the job's disk is a linked clone all the same
    boot = {"entropy_job_kernel": guest["kernel"], "entropy_job_initrd": guest["initrd"], "entropy_job_cmdline": "console=ttyS0 quiet panic=-1"}
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    for directory, fields in ((first, dict(name=JOB, owner=OWNER, vms=3, memory_mib=JOB_MEMORY_MIB, command=JOB_COMMAND, share=share,
                                           constraints=[{"type": "spread"}])),
                              # 3 x 150 MiB: more than the 288 MiB free while the first job runs, room once it is done
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
        # written over NFS by the guest's root, squashed to the export's anonymous user on this machine
        assert os.stat(exits[0]).st_uid == LAB_TOOL.NFS_ANON_ID

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
